/*
 * tl_quant_impl.h -- internal to tl_quant.c, tl_quant_avx2.c and tl_vmath.c: what
 * the references share with the AVX2+FMA+F16C dot products (x86-64 only).
 * Call those only through the traits table (tl_quant_vec_dot), which
 * checks the CPU first.
 */
#ifndef TL_QUANT_IMPL_H
#define TL_QUANT_IMPL_H

#include <stdint.h>
#include <string.h>

#include "tl_quant.h"

/* Whether the AVX2 kernels exist in this build (x86-64, GCC or clang). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TL_QUANT_X86 1
/* every AVX2 function carries this, so files build with baseline flags */
#define TL_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define TL_QUANT_X86 0
#endif

#if TL_QUANT_X86
#include <immintrin.h>

/* The sum of eight floats as ((0+4)+(2+6)) + ((1+5)+(3+7)). */
static inline TL_AVX2 float
tl_hsum_ps(__m256 v)
{
	__m128		s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}
#endif

/* fp16 bits to float, exact; inline for the per-block scales. */
static inline float
tl_half_to_float(uint16_t h)
{
	uint32_t	sign = (uint32_t) (h & 0x8000) << 16;
	uint32_t	exp = (h >> 10) & 0x1f;
	uint32_t	mant = h & 0x3ff;
	uint32_t	bits;
	float		f;

	if (__builtin_expect(exp == 0, 0))
	{
		/* zero or subnormal: mant * 2^-24, exact in float */
		f = (float) mant * 0x1p-24f;
		return sign ? -f : f;
	}
	if (__builtin_expect(exp == 0x1f, 0))	/* inf, or NaN keeping its payload */
		bits = sign | 0x7f800000u | (mant << 13);
	else
		bits = sign | ((exp + 112) << 23) | (mant << 13);
	memcpy(&f, &bits, sizeof(f));
	return f;
}

/*
 * Q8_0 and Q8_1 rows from one block quantizer (scalar or AVX2): it fills
 * 32 int8, returns the unrounded scale and the sum of the int8.
 */
typedef float (*tl_q8_block_fn) (const float *x, int8_t *qs, int *sum);

static inline void
tl_q8_0_rows(const float *x, void *dst, int64_t n, tl_q8_block_fn block)
{
	uint8_t    *y = dst;

	for (int64_t b = 0; b < n / 32; b++, x += 32, y += 34)
	{
		int			sum;
		uint16_t	d = tl_f32_to_fp16(block(x, (int8_t *) (y + 2), &sum));

		memcpy(y, &d, 2);
	}
}

static inline void
tl_q8_1_rows(const float *x, void *dst, int64_t n, tl_q8_block_fn block)
{
	uint8_t    *y = dst;

	for (int64_t b = 0; b < n / 32; b++, x += 32, y += 36)
	{
		int			sum;
		float		d = block(x, (int8_t *) (y + 4), &sum);
		uint16_t	h[2] = {tl_f32_to_fp16(d), tl_f32_to_fp16(d * (float) sum)};

		memcpy(y, h, 4);
	}
}

/* Eight 6-bit scales and mins from the 12 scale bytes of Q4_K / Q5_K. */
void		tl_k4_unpack_scales(const uint8_t *s, uint8_t *sc, uint8_t *m);

float		tl_vec_dot_f32_avx2(int64_t n, const void *w, const void *a);
float		tl_vec_dot_f16_avx2(int64_t n, const void *w, const void *a);
float		tl_vec_dot_f16_batch_avx2(int64_t n, const void *w, const void *a);
/* the scalar attention kernels (fmaf), which the AVX2 ones equal bit for bit */
void		tl_f16_scores_ref(int D, int n_heads, const float *q, const uint16_t *k,
							  size_t k_stride, int n_pos, float *out, size_t out_stride,
							  tl_f16_order order);
void		tl_f16_mix_ref(int D, int n_heads, const float *prob, size_t prob_stride,
						   const uint16_t *v, size_t v_stride, int n_pos, int first, float *lanes,
						   tl_f16_order order);
void		tl_f16_scores_avx2(int D, int n_heads, const float *q, const uint16_t *k,
							   size_t k_stride, int n_pos, float *out, size_t out_stride,
							   tl_f16_order order);
void		tl_f16_mix_avx2(int D, int n_heads, const float *prob, size_t prob_stride,
							const uint16_t *v, size_t v_stride, int n_pos, int first, float *lanes,
							tl_f16_order order);
void		tl_f16_from_float_avx2(const float *src, void *dst, int64_t n);
void		tl_round_half_avx2(float *x, int64_t n);
void		tl_q8_0_from_float_avx2(const float *src, void *dst, int64_t n);
void		tl_q8_1_from_float_avx2(const float *src, void *dst, int64_t n);
float		tl_vec_dot_bf16_avx2(int64_t n, const void *w, const void *a);
float		tl_vec_dot_q4_0_q8_0_avx2(int64_t n, const void *w, const void *a);
float		tl_vec_dot_q4_1_q8_1_avx2(int64_t n, const void *w, const void *a);
float		tl_vec_dot_q5_0_q8_0_avx2(int64_t n, const void *w, const void *a);
float		tl_vec_dot_q5_1_q8_1_avx2(int64_t n, const void *w, const void *a);
float		tl_vec_dot_q8_0_q8_0_avx2(int64_t n, const void *w, const void *a);
void		tl_vec_dot4_q4_0_q8_0_avx2(int64_t n, const void *w, size_t stride, const void *a, float *out);
void		tl_vec_dot4_q4_1_q8_1_avx2(int64_t n, const void *w, size_t stride, const void *a, float *out);
void		tl_vec_dot4_q5_0_q8_0_avx2(int64_t n, const void *w, size_t stride, const void *a, float *out);
void		tl_vec_dot4_q5_1_q8_1_avx2(int64_t n, const void *w, size_t stride, const void *a, float *out);
void		tl_vec_dot4_q8_0_q8_0_avx2(int64_t n, const void *w, size_t stride, const void *a, float *out);
float		tl_vec_dot_q4_K_q8_K_avx2(int64_t n, const void *w, const void *a);
float		tl_vec_dot_q5_K_q8_K_avx2(int64_t n, const void *w, const void *a);
float		tl_vec_dot_q6_K_q8_K_avx2(int64_t n, const void *w, const void *a);

#endif							/* TL_QUANT_IMPL_H */
