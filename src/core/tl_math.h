/*
 * tl_math.h -- exp and erf for float that the compiler can vectorise.
 *
 * libm's expf/erff are scalar calls: in GELU and the attention softmax
 * they cost more than the matmuls around them.  These versions are
 * branch-free straight-line code, so loops over them vectorise with the
 * rest of the loop body.  Accuracy (checked in test/unit/test_ops.c):
 *   tl_expf: relative error < 3e-7 on [-87, 88] (Cephes' polynomial after
 *            Cody-Waite reduction); inputs outside are clamped.
 *   tl_erff: absolute error < 6e-7 (Abramowitz & Stegun 7.1.26, with
 *            tl_expf inside).
 */
#ifndef TL_MATH_H
#define TL_MATH_H

#include <stdint.h>
#include <string.h>

/* Hot elementwise loops get an AVX2+FMA clone chosen at load time (ifunc). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(TL_NO_CLONES)
#define TL_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define TL_SIMD_CLONES
#endif

static inline float
tl_expf(float x)
{
	const float log2e = 1.44269504088896341f;
	const float round_magic = 12582912.0f;	/* 1.5 * 2^23: adding it rounds to an integer */
	float		n,
				r,
				p,
				scale;
	int32_t		bits;

	x = x < -87.0f ? -87.0f : x;
	x = x > 88.0f ? 88.0f : x;
	n = (x * log2e + round_magic) - round_magic;
	/* r = x - n*ln2, with ln2 split in two for precision (Cody-Waite) */
	r = x - n * 0.693359375f;
	r = r + n * 2.12194440e-4f;
	p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * r * r + r + 1.0f;
	bits = ((int32_t) n + 127) << 23;
	memcpy(&scale, &bits, sizeof(scale));
	return p * scale;
}

static inline float
tl_erff(float x)
{
	float		ax = x < 0.0f ? -x : x;
	float		t = 1.0f / (1.0f + 0.3275911f * ax);
	float		poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f +
																t * (-1.453152027f + t * 1.061405429f))));
	float		y = 1.0f - poly * tl_expf(-ax * ax);

	return x < 0.0f ? -y : y;
}

static inline float
tl_sigmoidf(float x)
{
	return 1.0f / (1.0f + tl_expf(-x));
}

#endif							/* TL_MATH_H */
