/*
 * tl_bytes.h -- little-endian loads from file bytes (model blobs, GGUF),
 * byte by byte: no alignment or host byte-order assumption; and float
 * <-> bit pattern without aliasing tricks.
 */
#ifndef TL_BYTES_H
#define TL_BYTES_H

#include <stdint.h>
#include <string.h>

static inline uint16_t
tl_load_u16(const uint8_t *p)
{
	return (uint16_t) (p[0] | (p[1] << 8));
}

static inline uint32_t
tl_load_u32(const uint8_t *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) |
		((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

static inline uint64_t
tl_load_u64(const uint8_t *p)
{
	return (uint64_t) tl_load_u32(p) | ((uint64_t) tl_load_u32(p + 4) << 32);
}

static inline uint32_t
tl_f32_bits(float f)
{
	uint32_t	u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static inline float
tl_bits_f32(uint32_t u)
{
	float		f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

#endif							/* TL_BYTES_H */
