/*
 * tl_vmath.c -- see tl_vmath.h.  Scalar versions with fmaf, and AVX2
 * versions chosen at run time with the quantized kernels; both give the
 * same bits.
 */
#include <math.h>
#include <string.h>

#include "tl_quant.h"
#include "tl_quant_impl.h"
#include "tl_vmath.h"

/*
 * The constants of the evaluation: 1.5 * 2^23 (adding it rounds to an
 * integer in the low mantissa bits), log2(e), ln 2 as a short high part
 * and the rest, and the coefficients of p(b) ~ e^b - 1 on |b| <= ln2/2.
 */
#define VEXP_SHIFT	0x1.8p23f
#define VEXP_LOG2E	0x1.715476p+0f
#define VEXP_LN2_HI 0x1.62e4p-1f
#define VEXP_LN2_LO 0x1.7f7d1cp-20f
#define VEXP_C1		0x1.ffffecp-1f
#define VEXP_C2		0x1.fffdb6p-2f
#define VEXP_C3		0x1.555e66p-3f
#define VEXP_C4		0x1.573e2ep-5f
#define VEXP_C5		0x1.0e4020p-7f

static inline uint32_t
f2u(float f)
{
	uint32_t	u;

	memcpy(&u, &f, 4);
	return u;
}

static inline float
u2f(uint32_t u)
{
	float		f;

	memcpy(&f, &u, 4);
	return f;
}

float
tl_vexpf(float x)
{
	float		z = fmaf(x, VEXP_LOG2E, VEXP_SHIFT);
	float		n = z - VEXP_SHIFT;	/* round(x / ln 2) */
	float		b = fmaf(-n, VEXP_LN2_LO, fmaf(-n, VEXP_LN2_HI, x));
	uint32_t	e = f2u(z) << 23;	/* n in the exponent field */
	float		scale = u2f(e + 0x3f800000u);	/* 2^n while |n| <= 126 */
	float		u = b * b;
	float		p = fmaf(fmaf(fmaf(VEXP_C5, b, VEXP_C4), u, fmaf(VEXP_C3, b, VEXP_C2)), u,
						 VEXP_C1 * b);

	if (!(fabsf(n) > 126.0f))	/* NaN takes this path too, and stays NaN */
		return fmaf(p, scale, scale);

	/*
	 * 2^n does not fit one float: split it into two factors.  Past 192
	 * the result is 0 or inf whatever p is.
	 */
	{
		uint32_t	d = n <= 0.0f ? 0x82000000u : 0u;
		float		s1 = u2f(d + 0x7f000000u),
					s2 = u2f(e - d);

		if (fabsf(n) > 192.0f)
			return s1 * s1;
		return fmaf(s2, p, s2) * s1;
	}
}

static double
tl_exp_sum_scalar(float *y, const float *x, int64_t n, float sub)
{
	double		sum = 0.0;

	for (int64_t i = 0; i < n; i += 8)
	{
		float		v[8] = {0};

		for (int k = 0; k < 8 && i + k < n; k++)
			y[i + k] = v[k] = tl_vexpf(x[i + k] - sub);
		sum += (double) (((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7])));
	}
	return sum;
}

static float
tl_silu_libm(float x)
{
	return x / (1.0f + expf(-x));
}

static void
tl_swiglu_scalar(float *gate, const float *up, int64_t n)
{
	int64_t		whole = n - n % 8;

	for (int64_t i = 0; i < whole; i++)
		gate[i] = gate[i] / (1.0f + tl_vexpf(0.0f - gate[i])) * up[i];
	for (int64_t i = whole; i < n; i++)
		gate[i] = tl_silu_libm(gate[i]) * up[i];
}

#if TL_QUANT_X86

/* tl_vexpf on eight lanes, operation for operation. */
static inline TL_AVX2 __m256
tl_vexpf8(__m256 x)
{
	const __m256 shift = _mm256_set1_ps(VEXP_SHIFT);
	const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	__m256		z = _mm256_fmadd_ps(x, _mm256_set1_ps(VEXP_LOG2E), shift);
	__m256		n = _mm256_sub_ps(z, shift);
	__m256		b = _mm256_fnmadd_ps(n, _mm256_set1_ps(VEXP_LN2_LO),
									 _mm256_fnmadd_ps(n, _mm256_set1_ps(VEXP_LN2_HI), x));
	__m256i		e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
	__m256		scale = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_set1_epi32(0x3f800000)));
	__m256		u = _mm256_mul_ps(b, b);
	__m256		p = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(VEXP_C5), b,
																  _mm256_set1_ps(VEXP_C4)),
												 u,
												 _mm256_fmadd_ps(_mm256_set1_ps(VEXP_C3), b,
																 _mm256_set1_ps(VEXP_C2))),
								   u, _mm256_mul_ps(_mm256_set1_ps(VEXP_C1), b));
	__m256		an = _mm256_and_ps(n, abs_mask);
	__m256		big = _mm256_cmp_ps(an, _mm256_set1_ps(126.0f), _CMP_GT_OQ);

	if (_mm256_movemask_ps(big) == 0)
		return _mm256_fmadd_ps(p, scale, scale);
	{
		__m256i		d = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(),
																		   _CMP_LE_OQ)),
										 _mm256_set1_epi32((int) 0x82000000u));
		__m256		s1 = _mm256_castsi256_ps(_mm256_add_epi32(d, _mm256_set1_epi32(0x7f000000)));
		__m256		s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, d));
		__m256		huge = _mm256_cmp_ps(an, _mm256_set1_ps(192.0f), _CMP_GT_OQ);
		__m256		split = _mm256_mul_ps(_mm256_fmadd_ps(s2, p, s2), s1);
		__m256		r = _mm256_blendv_ps(_mm256_fmadd_ps(p, scale, scale), split, big);

		return _mm256_blendv_ps(r, _mm256_mul_ps(s1, s1), huge);
	}
}

static TL_AVX2 double
tl_exp_sum_avx2(float *y, const float *x, int64_t n, float sub)
{
	const __m256 vsub = _mm256_set1_ps(sub);
	double		sum = 0.0;
	int64_t		i = 0;

	for (; i + 8 <= n; i += 8)
	{
		__m256		v = tl_vexpf8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vsub));

		_mm256_storeu_ps(y + i, v);
		sum += (double) tl_hsum_ps(v);
	}
	if (i < n)
	{
		float		t[8];
		__m256		v;

		for (int k = 0; k < 8; k++)
			t[k] = i + k < n ? x[i + k] : -INFINITY;	/* exp gives 0 there */
		v = tl_vexpf8(_mm256_sub_ps(_mm256_loadu_ps(t), vsub));
		_mm256_storeu_ps(t, v);
		memcpy(y + i, t, sizeof(float) * (size_t) (n - i));
		sum += (double) tl_hsum_ps(v);
	}
	return sum;
}

static TL_AVX2 void
tl_swiglu_avx2(float *gate, const float *up, int64_t n)
{
	const __m256 one = _mm256_set1_ps(1.0f);
	int64_t		i = 0;

	for (; i + 8 <= n; i += 8)
	{
		__m256		g = _mm256_loadu_ps(gate + i);
		__m256		e = tl_vexpf8(_mm256_sub_ps(_mm256_setzero_ps(), g));

		_mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)),
												 _mm256_loadu_ps(up + i)));
	}
	for (; i < n; i++)
		gate[i] = tl_silu_libm(gate[i]) * up[i];
}
#endif

double
tl_vmath_exp_sum(float *y, const float *x, int64_t n, float sub)
{
#if TL_QUANT_X86
	if (tl_quant_simd_active())
		return tl_exp_sum_avx2(y, x, n, sub);
#endif
	return tl_exp_sum_scalar(y, x, n, sub);
}

void
tl_vmath_swiglu(float *gate, const float *up, int64_t n)
{
#if TL_QUANT_X86
	if (tl_quant_simd_active())
	{
		tl_swiglu_avx2(gate, up, n);
		return;
	}
#endif
	tl_swiglu_scalar(gate, up, n);
}
