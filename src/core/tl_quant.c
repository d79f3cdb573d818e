/*
 * tl_quant.c -- scalar references of the GGUF storage formats (see
 * tl_quant.h): half-precision conversions, quantizers, dequantizers and
 * dot products, the traits table that ties them together, the run-time
 * choice of the AVX2 versions (tl_quant_avx2.c), and the matrix-vector
 * product on the thread pool.
 *
 * The dot products sum integer products exactly within a block and
 * scale once per block (per sub-block for the K-quants), so the only
 * rounding is in the float accumulation across blocks.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_bytes.h"
#include "tl_pool.h"
#include "tl_quant.h"
#include "tl_quant_impl.h"

#if TL_QUANT_X86
#include <cpuid.h>
#endif

_Static_assert(sizeof(tl_block_q4_0) == 2 + TL_QK / 2, "Q4_0 block size");
_Static_assert(sizeof(tl_block_q4_1) == 4 + TL_QK / 2, "Q4_1 block size");
_Static_assert(sizeof(tl_block_q5_0) == 2 + 4 + TL_QK / 2, "Q5_0 block size");
_Static_assert(sizeof(tl_block_q5_1) == 4 + 4 + TL_QK / 2, "Q5_1 block size");
_Static_assert(sizeof(tl_block_q8_0) == 2 + TL_QK, "Q8_0 block size");
_Static_assert(sizeof(tl_block_q4_K) == 4 + TL_K_SCALE_SIZE + TL_QK_K / 2, "Q4_K block size");
_Static_assert(sizeof(tl_block_q5_K) == 4 + TL_K_SCALE_SIZE + TL_QK_K / 8 + TL_QK_K / 2, "Q5_K block size");
_Static_assert(sizeof(tl_block_q6_K) == 2 + TL_QK_K / 16 + 3 * TL_QK_K / 4, "Q6_K block size");
_Static_assert(sizeof(tl_block_q8_K) == 4 + TL_QK_K + 2 * TL_QK_K / 16, "Q8_K block size");
_Static_assert(sizeof(tl_block_q4_0) == 18 && sizeof(tl_block_q4_1) == 20 &&
			   sizeof(tl_block_q5_0) == 22 && sizeof(tl_block_q5_1) == 24 &&
			   sizeof(tl_block_q8_0) == 34 && sizeof(tl_block_q4_K) == 144 &&
			   sizeof(tl_block_q5_K) == 176 && sizeof(tl_block_q6_K) == 210 &&
			   sizeof(tl_block_q8_K) == 292, "GGUF block sizes");

/* ======================================================================
 * Half precision and bfloat16
 * ====================================================================== */

float
tl_fp16_to_f32(uint16_t h)
{
	return tl_half_to_float(h);
}

uint16_t
tl_f32_to_fp16(float f)
{
	uint32_t	u = tl_f32_bits(f);
	uint16_t	sign = (uint16_t) ((u >> 16) & 0x8000);
	uint32_t	a = u & 0x7fffffffu;

	if (a > 0x7f800000u)		/* NaN: keep the top payload bits, set quiet */
		return sign | 0x7e00 | (uint16_t) ((a >> 13) & 0x3ff);
	if (a >= 0x477ff000u)		/* >= 65520 (or inf) rounds to inf */
		return sign | 0x7c00;
	if (a >= 0x38800000u)
	{
		/* normal half: rebias, round the 13 dropped bits to nearest even */
		uint32_t	base = (a >> 13) - (112u << 10);
		uint32_t	rest = a & 0x1fff;

		if (rest > 0x1000 || (rest == 0x1000 && (base & 1)))
			base++;				/* a carry into the exponent is right */
		return sign | (uint16_t) base;
	}
	else
	{
		/* subnormal half (or zero): round m * 2^(e-126) to an integer */
		uint32_t	e = a >> 23;
		uint32_t	m = (a & 0x7fffff) | 0x800000;
		uint32_t	shift = 126 - e;
		uint32_t	q,
					rest,
					half;

		if (e == 0 || shift > 24)
			return sign;
		q = m >> shift;
		rest = m & ((1u << shift) - 1);
		half = 1u << (shift - 1);
		if (rest > half || (rest == half && (q & 1)))
			q++;				/* may become the smallest normal: right too */
		return sign | (uint16_t) q;
	}
}

float
tl_bf16_to_f32(uint16_t h)
{
	return tl_bits_f32((uint32_t) h << 16);
}

uint16_t
tl_f32_to_bf16(float f)
{
	uint32_t	u = tl_f32_bits(f);

	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t) ((u >> 16) | 0x40);	/* quiet NaN */
	return (uint16_t) ((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

#define FP16(h) tl_half_to_float(h)

/* Round to the nearest integer in [lo, hi]; NaN gives lo. */
static inline int
tl_qround(float v, int lo, int hi)
{
	v = fmaxf(v, (float) lo);
	v = fminf(v, (float) hi);
	return (int) lrintf(v);
}

/* A scale through fp16 and back, with its inverse (0 for 0). */
static inline uint16_t
tl_half_scale(float d, float *rounded, float *inverse)
{
	uint16_t	h = tl_f32_to_fp16(d);

	*rounded = tl_half_to_float(h);
	*inverse = (*rounded != 0.0f && isfinite(*rounded)) ? 1.0f / *rounded : 0.0f;
	return h;
}

static inline uint32_t
tl_load_u32le(const uint8_t *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static inline void
tl_store_u32le(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
	p[2] = (uint8_t) (v >> 16);
	p[3] = (uint8_t) (v >> 24);
}

/* ======================================================================
 * Float formats
 * ====================================================================== */

static void
tl_f32_to_float(const void *src, float *dst, int64_t n)
{
	memcpy(dst, src, sizeof(float) * (size_t) n);
}

static void
tl_f32_from_float(const float *src, void *dst, int64_t n)
{
	memcpy(dst, src, sizeof(float) * (size_t) n);
}

static void
tl_f16_to_float(const void *src, float *dst, int64_t n)
{
	const uint16_t *s = src;

	for (int64_t i = 0; i < n; i++)
		dst[i] = tl_half_to_float(s[i]);
}

static void
tl_f16_from_float(const float *src, void *dst, int64_t n)
{
	uint16_t   *d = dst;

	for (int64_t i = 0; i < n; i++)
		d[i] = tl_f32_to_fp16(src[i]);
}

static void
tl_bf16_to_float(const void *src, float *dst, int64_t n)
{
	const uint16_t *s = src;

	for (int64_t i = 0; i < n; i++)
		dst[i] = tl_bf16_to_f32(s[i]);
}

static void
tl_bf16_from_float(const float *src, void *dst, int64_t n)
{
	uint16_t   *d = dst;

	for (int64_t i = 0; i < n; i++)
		d[i] = tl_f32_to_bf16(src[i]);
}

static float
tl_vec_dot_f32(int64_t n, const void *w, const void *a)
{
	const float *x = w,
			   *y = a;
	float		s = 0.0f;

	for (int64_t i = 0; i < n; i++)
		s += x[i] * y[i];
	return s;
}

/*
 * x . y for a half-precision row x and a row y given as floats (yf) or
 * as halves (yh), summed in an order's lanes with fused multiply-adds; in
 * the VEC order the elements past the last whole 32 are added in double
 * (see tl_f16_order).  The scalar form of every half-precision product.
 */
static float
tl_f16_dot_in_order(int64_t n, const uint16_t *x, const float *yf, const uint16_t *yh,
					tl_f16_order order)
{
	int			L = tl_f16_lanes(order);
	int64_t		laned = order == TL_F16_VEC ? n - n % 32 : n;
	float		lane[TL_F16_MAX_LANES] = {0};
	double		s;

#define Y(i) (yf ? yf[i] : tl_half_to_float(yh[i]))
	for (int64_t i = 0; i < laned; i++)
		lane[i % L] = fmaf(tl_half_to_float(x[i]), Y(i), lane[i % L]);
	s = tl_quant_f16_lanes_sum(lane, 1, order);
	for (int64_t i = laned; i < n; i++)
		s += (double) (tl_half_to_float(x[i]) * Y(i));
#undef Y
	return (float) s;
}

/*
 * F16 weights against F16 activations, in llama.cpp's two orders: a
 * single vector in VEC order, a batch in TILED order (its tiled GEMM
 * needs a length that is a multiple of 8; other lengths take the VEC
 * order there too).
 */
static float
tl_vec_dot_f16(int64_t n, const void *w, const void *a)
{
	return tl_f16_dot_in_order(n, w, NULL, a, TL_F16_VEC);
}

static float
tl_vec_dot_f16_batch(int64_t n, const void *w, const void *a)
{
	return tl_f16_dot_in_order(n, w, NULL, a, n % 8 == 0 ? TL_F16_TILED : TL_F16_VEC);
}

float
tl_quant_f16_lanes_sum(const float *l, size_t stride, tl_f16_order order)
{
	float		a[8];

	if (order == TL_F16_TILED)
		for (int i = 0; i < 8; i++)
			a[i] = l[i * stride];
	else
		for (int i = 0; i < 8; i++)
			a[i] = (l[i * stride] + l[(i + 16) * stride]) + (l[(i + 8) * stride] + l[(i + 24) * stride]);
	if (order == TL_F16_TILED)
		return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
	return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

void
tl_f16_scores_ref(int D, int n_heads, const float *q, const uint16_t *k, size_t k_stride,
				  int n_pos, float *out, size_t out_stride, tl_f16_order order)
{
	for (int p = 0; p < n_pos; p++)
		for (int h = 0; h < n_heads; h++)
			out[(size_t) h * out_stride + p] =
				tl_f16_dot_in_order(D, k + (size_t) p * k_stride, q + (size_t) h * D, NULL, order);
}

void
tl_f16_mix_ref(int D, int n_heads, const float *prob, size_t prob_stride, const uint16_t *v,
		   size_t v_stride, int n_pos, int first, float *lanes, tl_f16_order order)
{
	int			L = tl_f16_lanes(order);

	for (int p = 0; p < n_pos; p++)
		for (int h = 0; h < n_heads; h++)
		{
			float		w = prob[(size_t) h * prob_stride + p];
			float	   *l = lanes + ((size_t) h * L + (size_t) ((first + p) % L)) * D;

			for (int d = 0; d < D; d++)
				l[d] = fmaf(w, tl_half_to_float(v[(size_t) p * v_stride + d]), l[d]);
		}
}

static float
tl_vec_dot_bf16(int64_t n, const void *w, const void *a)
{
	const uint16_t *x = w;
	const float *y = a;
	float		s = 0.0f;

	for (int64_t i = 0; i < n; i++)
		s += tl_bf16_to_f32(x[i]) * y[i];
	return s;
}

/* ======================================================================
 * Blocks of 32: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
 * ====================================================================== */

/* The value of largest magnitude (with its sign), and min and max. */
static void
tl_block_range(const float *x, int n, float *signed_max, float *lo, float *hi)
{
	float		amax = 0.0f,
				smax = 0.0f,
				mn = x[0],
				mx = x[0];

	for (int j = 0; j < n; j++)
	{
		if (fabsf(x[j]) > amax)
		{
			amax = fabsf(x[j]);
			smax = x[j];
		}
		mn = fminf(mn, x[j]);
		mx = fmaxf(mx, x[j]);
	}
	*signed_max = smax;
	*lo = mn;
	*hi = mx;
}

static void
tl_q4_0_from_float(const float *x, void *dst, int64_t n)
{
	tl_block_q4_0 *y = dst;

	for (int64_t b = 0; b < n / TL_QK; b++, x += TL_QK)
	{
		float		smax,
					lo,
					hi,
					d,
					id;

		tl_block_range(x, TL_QK, &smax, &lo, &hi);
		/* the extreme value maps to -8, the end with one more level */
		y[b].d = tl_half_scale(smax / -8.0f, &d, &id);
		for (int j = 0; j < TL_QK / 2; j++)
		{
			int			q0 = tl_qround(x[j] * id + 8.0f, 0, 15);
			int			q1 = tl_qround(x[j + TL_QK / 2] * id + 8.0f, 0, 15);

			y[b].qs[j] = (uint8_t) (q0 | q1 << 4);
		}
	}
}

static void
tl_q4_0_to_float(const void *src, float *y, int64_t n)
{
	const tl_block_q4_0 *x = src;

	for (int64_t b = 0; b < n / TL_QK; b++, y += TL_QK)
	{
		float		d = FP16(x[b].d);

		for (int j = 0; j < TL_QK / 2; j++)
		{
			y[j] = d * (float) ((x[b].qs[j] & 0x0f) - 8);
			y[j + TL_QK / 2] = d * (float) ((x[b].qs[j] >> 4) - 8);
		}
	}
}

static void
tl_q4_1_from_float(const float *x, void *dst, int64_t n)
{
	tl_block_q4_1 *y = dst;

	for (int64_t b = 0; b < n / TL_QK; b++, x += TL_QK)
	{
		float		smax,
					lo,
					hi,
					d,
					id,
					m,
					unused;

		tl_block_range(x, TL_QK, &smax, &lo, &hi);
		y[b].m = tl_half_scale(lo, &m, &unused);
		y[b].d = tl_half_scale((hi - m) / 15.0f, &d, &id);
		for (int j = 0; j < TL_QK / 2; j++)
		{
			int			q0 = tl_qround((x[j] - m) * id, 0, 15);
			int			q1 = tl_qround((x[j + TL_QK / 2] - m) * id, 0, 15);

			y[b].qs[j] = (uint8_t) (q0 | q1 << 4);
		}
	}
}

static void
tl_q4_1_to_float(const void *src, float *y, int64_t n)
{
	const tl_block_q4_1 *x = src;

	for (int64_t b = 0; b < n / TL_QK; b++, y += TL_QK)
	{
		float		d = FP16(x[b].d),
					m = FP16(x[b].m);

		for (int j = 0; j < TL_QK / 2; j++)
		{
			y[j] = d * (float) (x[b].qs[j] & 0x0f) + m;
			y[j + TL_QK / 2] = d * (float) (x[b].qs[j] >> 4) + m;
		}
	}
}

/* 5-bit values: low nibbles as in Q4, bit i of qh is bit 4 of element i */
static void
tl_pack5(const int *q, uint8_t *qs, uint8_t *qh)
{
	uint32_t	h = 0;

	for (int j = 0; j < TL_QK / 2; j++)
		qs[j] = (uint8_t) ((q[j] & 0x0f) | (q[j + TL_QK / 2] & 0x0f) << 4);
	for (int j = 0; j < TL_QK; j++)
		h |= (uint32_t) ((q[j] >> 4) & 1) << j;
	tl_store_u32le(qh, h);
}

static void
tl_unpack5(const uint8_t *qs, const uint8_t *qh, int *q)
{
	uint32_t	h = tl_load_u32le(qh);

	for (int j = 0; j < TL_QK / 2; j++)
	{
		q[j] = (qs[j] & 0x0f) | (int) ((h >> j) & 1) << 4;
		q[j + TL_QK / 2] = (qs[j] >> 4) | (int) ((h >> (j + TL_QK / 2)) & 1) << 4;
	}
}

static void
tl_q5_0_from_float(const float *x, void *dst, int64_t n)
{
	tl_block_q5_0 *y = dst;

	for (int64_t b = 0; b < n / TL_QK; b++, x += TL_QK)
	{
		float		smax,
					lo,
					hi,
					d,
					id;
		int			q[TL_QK];

		tl_block_range(x, TL_QK, &smax, &lo, &hi);
		y[b].d = tl_half_scale(smax / -16.0f, &d, &id);
		for (int j = 0; j < TL_QK; j++)
			q[j] = tl_qround(x[j] * id + 16.0f, 0, 31);
		tl_pack5(q, y[b].qs, y[b].qh);
	}
}

static void
tl_q5_0_to_float(const void *src, float *y, int64_t n)
{
	const tl_block_q5_0 *x = src;

	for (int64_t b = 0; b < n / TL_QK; b++, y += TL_QK)
	{
		float		d = FP16(x[b].d);
		int			q[TL_QK];

		tl_unpack5(x[b].qs, x[b].qh, q);
		for (int j = 0; j < TL_QK; j++)
			y[j] = d * (float) (q[j] - 16);
	}
}

static void
tl_q5_1_from_float(const float *x, void *dst, int64_t n)
{
	tl_block_q5_1 *y = dst;

	for (int64_t b = 0; b < n / TL_QK; b++, x += TL_QK)
	{
		float		smax,
					lo,
					hi,
					d,
					id,
					m,
					unused;
		int			q[TL_QK];

		tl_block_range(x, TL_QK, &smax, &lo, &hi);
		y[b].m = tl_half_scale(lo, &m, &unused);
		y[b].d = tl_half_scale((hi - m) / 31.0f, &d, &id);
		for (int j = 0; j < TL_QK; j++)
			q[j] = tl_qround((x[j] - m) * id, 0, 31);
		tl_pack5(q, y[b].qs, y[b].qh);
	}
}

static void
tl_q5_1_to_float(const void *src, float *y, int64_t n)
{
	const tl_block_q5_1 *x = src;

	for (int64_t b = 0; b < n / TL_QK; b++, y += TL_QK)
	{
		float		d = FP16(x[b].d),
					m = FP16(x[b].m);
		int			q[TL_QK];

		tl_unpack5(x[b].qs, x[b].qh, q);
		for (int j = 0; j < TL_QK; j++)
			y[j] = d * (float) q[j] + m;
	}
}

/*
 * Q8_0 and Q8_1 quantize as ggml's AVX2 path does (its activations go
 * through it): q = round-half-even(x * 127/amax), with the unrounded
 * scale, and d stored in fp16.  Q8_1 keeps s = fp16(d * sum(q)) as well,
 * for the min term of Q4_1 and Q5_1.
 */
static float
tl_q8_block(const float *x, int8_t *qs, int *sum)
{
	float		amax = 0.0f,
				id;
	int			s = 0;

	for (int j = 0; j < TL_QK; j++)
		amax = fmaxf(amax, fabsf(x[j]));
	id = amax > 0.0f && isfinite(amax) ? 127.0f / amax : 0.0f;
	for (int j = 0; j < TL_QK; j++)
		s += (qs[j] = (int8_t) tl_qround(x[j] * id, -127, 127));
	*sum = s;
	return isfinite(amax) ? amax / 127.0f : 0.0f;
}

static void
tl_q8_0_from_float(const float *x, void *dst, int64_t n)
{
	tl_q8_0_rows(x, dst, n, tl_q8_block);
}

static void
tl_q8_1_from_float(const float *x, void *dst, int64_t n)
{
	tl_q8_1_rows(x, dst, n, tl_q8_block);
}

static void
tl_q8_1_to_float(const void *src, float *y, int64_t n)
{
	const tl_block_q8_1 *x = src;

	for (int64_t b = 0; b < n / TL_QK; b++, y += TL_QK)
	{
		float		d = FP16(x[b].d);

		for (int j = 0; j < TL_QK; j++)
			y[j] = d * (float) x[b].qs[j];
	}
}

static void
tl_q8_0_to_float(const void *src, float *y, int64_t n)
{
	const tl_block_q8_0 *x = src;

	for (int64_t b = 0; b < n / TL_QK; b++, y += TL_QK)
	{
		float		d = FP16(x[b].d);

		for (int j = 0; j < TL_QK; j++)
			y[j] = d * (float) x[b].qs[j];
	}
}

static float
tl_vec_dot_q4_0_q8_0(int64_t n, const void *w, const void *act)
{
	const tl_block_q4_0 *x = w;
	const tl_block_q8_0 *a = act;
	float		s = 0.0f;

	for (int64_t b = 0; b < n / TL_QK; b++)
	{
		int			isum = 0;

		for (int j = 0; j < TL_QK / 2; j++)
			isum += ((x[b].qs[j] & 0x0f) - 8) * a[b].qs[j] +
				((x[b].qs[j] >> 4) - 8) * a[b].qs[j + TL_QK / 2];
		/* in sequence, fused: llama.cpp's order for Q4_0 (tl_quant_avx2.c) */
		s = fmaf((float) isum, FP16(x[b].d) * FP16(a[b].d), s);
	}
	return s;
}

/* Q4_1 and Q5_1 against Q8_1: d*da*sum(q*qa) + m*s, as ggml computes it */
static float
tl_vec_dot_q4_1_q8_1(int64_t n, const void *w, const void *act)
{
	const tl_block_q4_1 *x = w;
	const tl_block_q8_1 *a = act;
	float		s = 0.0f;

	for (int64_t b = 0; b < n / TL_QK; b++)
	{
		int			isum = 0;

		for (int j = 0; j < TL_QK / 2; j++)
			isum += (x[b].qs[j] & 0x0f) * a[b].qs[j] + (x[b].qs[j] >> 4) * a[b].qs[j + TL_QK / 2];
		s += FP16(x[b].d) * FP16(a[b].d) * (float) isum + FP16(x[b].m) * FP16(a[b].s);
	}
	return s;
}

static float
tl_vec_dot_q5_0_q8_0(int64_t n, const void *w, const void *act)
{
	const tl_block_q5_0 *x = w;
	const tl_block_q8_0 *a = act;
	float		s = 0.0f;

	for (int64_t b = 0; b < n / TL_QK; b++)
	{
		int			q[TL_QK],
					isum = 0;

		tl_unpack5(x[b].qs, x[b].qh, q);
		for (int j = 0; j < TL_QK; j++)
			isum += (q[j] - 16) * a[b].qs[j];
		s += FP16(x[b].d) * FP16(a[b].d) * (float) isum;
	}
	return s;
}

static float
tl_vec_dot_q5_1_q8_1(int64_t n, const void *w, const void *act)
{
	const tl_block_q5_1 *x = w;
	const tl_block_q8_1 *a = act;
	float		s = 0.0f;

	for (int64_t b = 0; b < n / TL_QK; b++)
	{
		int			q[TL_QK],
					isum = 0;

		tl_unpack5(x[b].qs, x[b].qh, q);
		for (int j = 0; j < TL_QK; j++)
			isum += q[j] * a[b].qs[j];
		s += FP16(x[b].d) * FP16(a[b].d) * (float) isum + FP16(x[b].m) * FP16(a[b].s);
	}
	return s;
}

static float
tl_vec_dot_q8_0_q8_0(int64_t n, const void *w, const void *act)
{
	const tl_block_q8_0 *x = w;
	const tl_block_q8_0 *a = act;
	float		s = 0.0f;

	for (int64_t b = 0; b < n / TL_QK; b++)
	{
		int			isum = 0;

		for (int j = 0; j < TL_QK; j++)
			isum += x[b].qs[j] * a[b].qs[j];
		s += FP16(x[b].d) * FP16(a[b].d) * (float) isum;
	}
	return s;
}

/* ======================================================================
 * K-quants: blocks of 256
 * ====================================================================== */

/*
 * The 12 scale bytes of Q4_K and Q5_K hold eight 6-bit scales sc[] and
 * eight 6-bit mins m[]:
 *   bytes 0..3:  sc[0..3] in bits 0-5, bits 4-5 of sc[4..7] in bits 6-7
 *   bytes 4..7:  m[0..3]  in bits 0-5, bits 4-5 of m[4..7]  in bits 6-7
 *   bytes 8..11: bits 0-3 of sc[4..7] in the low nibble, of m[4..7] high
 */
void
tl_k4_unpack_scales(const uint8_t *s, uint8_t *sc, uint8_t *m)
{
	for (int j = 0; j < 4; j++)
	{
		sc[j] = s[j] & 63;
		m[j] = s[j + 4] & 63;
		sc[j + 4] = (uint8_t) ((s[j + 8] & 0x0f) | (s[j] >> 6) << 4);
		m[j + 4] = (uint8_t) ((s[j + 8] >> 4) | (s[j + 4] >> 6) << 4);
	}
}

static void
tl_k4_pack_scales(const uint8_t *sc, const uint8_t *m, uint8_t *s)
{
	for (int j = 0; j < 4; j++)
	{
		s[j] = (uint8_t) (sc[j] | (sc[j + 4] >> 4) << 6);
		s[j + 4] = (uint8_t) (m[j] | (m[j + 4] >> 4) << 6);
		s[j + 8] = (uint8_t) ((sc[j + 4] & 0x0f) | (m[j + 4] & 0x0f) << 4);
	}
}

/*
 * Fit x ~ scale * q - min with q in 0..nmax, min >= 0 (the format cannot
 * offset upwards): start from the range, then alternate rounding and a
 * least-squares fit of (scale, min) to the rounded q, keeping the best.
 */
static void
tl_fit_affine(const float *x, int n, int nmax, float *scale, float *min)
{
	float		lo = 0.0f,
				hi = x[0],
				best_err = INFINITY,
				best_s = 0.0f,
				best_m = 0.0f,
				s,
				off;

	for (int j = 0; j < n; j++)
	{
		lo = fminf(lo, x[j]);
		hi = fmaxf(hi, x[j]);
	}
	if (hi <= lo)
	{
		*scale = 0.0f;
		*min = -lo;
		return;
	}
	s = (hi - lo) / (float) nmax;
	off = lo;					/* x ~ s*q + off, off <= 0 */
	for (int iter = 0; iter < 6; iter++)
	{
		double		sq = 0,
					sqq = 0,
					sx = 0,
					sqx = 0,
					err = 0,
					det;
		float		is = s > 0.0f ? 1.0f / s : 0.0f;

		for (int j = 0; j < n; j++)
		{
			int			q = tl_qround((x[j] - off) * is, 0, nmax);
			double		e = (double) s * q + off - x[j];

			err += e * e;
			sq += q;
			sqq += (double) q * q;
			sx += x[j];
			sqx += (double) q * x[j];
		}
		if (err < best_err)
		{
			best_err = (float) err;
			best_s = s;
			best_m = -off;
		}
		det = n * sqq - sq * sq;
		if (det <= 0)
			break;
		s = (float) ((n * sqx - sq * sx) / det);
		off = (float) ((sx - s * sq) / n);
		if (off > 0.0f)
		{
			off = 0.0f;
			s = sqq > 0 ? (float) (sqx / sqq) : 0.0f;
		}
		if (!(s > 0.0f))
			break;
	}
	*scale = best_s;
	*min = best_m;
}

/*
 * Shared by Q4_K and Q5_K: fit the eight sub-blocks, quantize their
 * scales and mins to 6 bits against fp16 super-scales, and return each
 * element's level 0..nmax in L.
 */
static void
tl_quantize_k_affine(const float *x, int nmax, uint16_t *dh, uint16_t *dminh,
					 uint8_t *scales12, uint8_t *L)
{
	float		sc_f[8],
				m_f[8],
				max_sc = 0.0f,
				max_m = 0.0f,
				d,
				id,
				dmin,
				idmin;
	uint8_t		sc[8],
				m[8];

	for (int s = 0; s < 8; s++)
	{
		tl_fit_affine(x + 32 * s, 32, nmax, &sc_f[s], &m_f[s]);
		max_sc = fmaxf(max_sc, sc_f[s]);
		max_m = fmaxf(max_m, m_f[s]);
	}
	*dh = tl_half_scale(max_sc / 63.0f, &d, &id);
	*dminh = tl_half_scale(max_m / 63.0f, &dmin, &idmin);
	for (int s = 0; s < 8; s++)
	{
		float		es,
					em;

		sc[s] = (uint8_t) tl_qround(sc_f[s] * id, 0, 63);
		m[s] = (uint8_t) tl_qround(m_f[s] * idmin, 0, 63);
		es = d * sc[s];
		em = dmin * m[s];
		for (int j = 0; j < 32; j++)
			L[32 * s + j] = (uint8_t) (es > 0.0f ? tl_qround((x[32 * s + j] + em) / es, 0, nmax) : 0);
	}
	tl_k4_pack_scales(sc, m, scales12);
}

static void
tl_q4_K_from_float(const float *x, void *dst, int64_t n)
{
	tl_block_q4_K *y = dst;

	for (int64_t b = 0; b < n / TL_QK_K; b++, x += TL_QK_K)
	{
		uint8_t		L[TL_QK_K];

		tl_quantize_k_affine(x, 15, &y[b].d, &y[b].dmin, y[b].scales, L);
		/* each 32 bytes hold two sub-blocks: low nibbles, then high */
		for (int c = 0; c < 4; c++)
			for (int l = 0; l < 32; l++)
				y[b].qs[32 * c + l] = (uint8_t) (L[64 * c + l] | L[64 * c + 32 + l] << 4);
	}
}

static void
tl_q4_K_to_float(const void *src, float *y, int64_t n)
{
	const tl_block_q4_K *x = src;

	for (int64_t b = 0; b < n / TL_QK_K; b++, y += TL_QK_K)
	{
		float		d = FP16(x[b].d),
					dmin = FP16(x[b].dmin);
		uint8_t		sc[8],
					m[8];

		tl_k4_unpack_scales(x[b].scales, sc, m);
		for (int c = 0; c < 4; c++)
			for (int l = 0; l < 32; l++)
			{
				uint8_t		q = x[b].qs[32 * c + l];

				y[64 * c + l] = d * sc[2 * c] * (float) (q & 0x0f) - dmin * m[2 * c];
				y[64 * c + 32 + l] = d * sc[2 * c + 1] * (float) (q >> 4) - dmin * m[2 * c + 1];
			}
	}
}

static void
tl_q5_K_from_float(const float *x, void *dst, int64_t n)
{
	tl_block_q5_K *y = dst;

	for (int64_t b = 0; b < n / TL_QK_K; b++, x += TL_QK_K)
	{
		uint8_t		L[TL_QK_K];

		tl_quantize_k_affine(x, 31, &y[b].d, &y[b].dmin, y[b].scales, L);
		memset(y[b].qh, 0, sizeof(y[b].qh));
		/* as Q4_K, with bit 4 of sub-block s in bit s of qh[l] */
		for (int c = 0; c < 4; c++)
			for (int l = 0; l < 32; l++)
			{
				int			lo = L[64 * c + l],
							hi = L[64 * c + 32 + l];

				y[b].qs[32 * c + l] = (uint8_t) ((lo & 0x0f) | (hi & 0x0f) << 4);
				y[b].qh[l] |= (uint8_t) ((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
			}
	}
}

static void
tl_q5_K_to_float(const void *src, float *y, int64_t n)
{
	const tl_block_q5_K *x = src;

	for (int64_t b = 0; b < n / TL_QK_K; b++, y += TL_QK_K)
	{
		float		d = FP16(x[b].d),
					dmin = FP16(x[b].dmin);
		uint8_t		sc[8],
					m[8];

		tl_k4_unpack_scales(x[b].scales, sc, m);
		for (int c = 0; c < 4; c++)
			for (int l = 0; l < 32; l++)
			{
				uint8_t		q = x[b].qs[32 * c + l],
							h = x[b].qh[l];
				int			lo = (q & 0x0f) | ((h >> (2 * c)) & 1) << 4,
							hi = (q >> 4) | ((h >> (2 * c + 1)) & 1) << 4;

				y[64 * c + l] = d * sc[2 * c] * (float) lo - dmin * m[2 * c];
				y[64 * c + 32 + l] = d * sc[2 * c + 1] * (float) hi - dmin * m[2 * c + 1];
			}
	}
}

/*
 * Q6_K: element e of a block (level 0..63, value level - 32) keeps its
 * low 4 bits and high 2 bits at, for h = e / 128, r = e % 128, l = r % 32:
 *   r / 32 = 0: ql[64h + l] low nibble,      qh[32h + l] bits 0-1
 *   r / 32 = 1: ql[64h + 32 + l] low nibble, qh[32h + l] bits 2-3
 *   r / 32 = 2: ql[64h + l] high nibble,     qh[32h + l] bits 4-5
 *   r / 32 = 3: ql[64h + 32 + l] high nibble, qh[32h + l] bits 6-7
 * and scales[e / 16] is its sub-block's scale.
 */
static inline int
tl_q6_level(const tl_block_q6_K *x, int e)
{
	int			h = e / 128,
				r = e % 128,
				l = r % 32,
				k = r / 32;
	uint8_t		lq = x->ql[64 * h + 32 * (k & 1) + l];
	int			low = (k < 2) ? (lq & 0x0f) : (lq >> 4);
	int			high = (x->qh[32 * h + l] >> (2 * k)) & 3;

	return low | high << 4;
}

/* Fit x ~ scale * q, q in -32..31, over n values: try a few scales. */
static float
tl_fit_symmetric6(const float *x, int n)
{
	float		smax,
				lo,
				hi,
				best = 0.0f,
				best_err = INFINITY;

	tl_block_range(x, n, &smax, &lo, &hi);
	if (smax == 0.0f)
		return 0.0f;
	for (int k = 0; k < 6; k++)
	{
		float		s = smax / -(32.0f - 0.25f * k),
					is = 1.0f / s;
		double		sqq = 0,
					sqx = 0,
					err = 0;

		/* round to the candidate, refit the scale, measure that */
		for (int j = 0; j < n; j++)
		{
			int			q = tl_qround(x[j] * is, -32, 31);

			sqq += (double) q * q;
			sqx += (double) q * x[j];
		}
		if (sqq > 0)
			s = (float) (sqx / sqq);
		is = 1.0f / s;
		for (int j = 0; j < n; j++)
		{
			double		e = (double) s * tl_qround(x[j] * is, -32, 31) - x[j];

			err += e * e;
		}
		if (err < best_err)
		{
			best_err = (float) err;
			best = s;
		}
	}
	return best;
}

static void
tl_q6_K_from_float(const float *x, void *dst, int64_t n)
{
	tl_block_q6_K *y = dst;

	for (int64_t b = 0; b < n / TL_QK_K; b++, x += TL_QK_K)
	{
		float		sf[16],
					amax = 0.0f,
					d,
					id;
		uint8_t		L[TL_QK_K];

		for (int g = 0; g < 16; g++)
		{
			sf[g] = tl_fit_symmetric6(x + 16 * g, 16);
			amax = fmaxf(amax, fabsf(sf[g]));
		}
		y[b].d = tl_half_scale(amax / 127.0f, &d, &id);
		for (int g = 0; g < 16; g++)
		{
			float		es;

			y[b].scales[g] = (int8_t) tl_qround(sf[g] * id, -127, 127);
			es = d * y[b].scales[g];
			for (int j = 0; j < 16; j++)
				L[16 * g + j] = (uint8_t) (es != 0.0f ? tl_qround(x[16 * g + j] / es, -32, 31) + 32 : 32);
		}
		memset(y[b].qh, 0, sizeof(y[b].qh));
		for (int h = 0; h < 2; h++)
			for (int l = 0; l < 32; l++)
			{
				const uint8_t *q = L + 128 * h + l;

				y[b].ql[64 * h + l] = (uint8_t) ((q[0] & 0x0f) | (q[64] & 0x0f) << 4);
				y[b].ql[64 * h + 32 + l] = (uint8_t) ((q[32] & 0x0f) | (q[96] & 0x0f) << 4);
				y[b].qh[32 * h + l] = (uint8_t) ((q[0] >> 4) | (q[32] >> 4) << 2 |
												 (q[64] >> 4) << 4 | (q[96] >> 4) << 6);
			}
	}
}

static void
tl_q6_K_to_float(const void *src, float *y, int64_t n)
{
	const tl_block_q6_K *x = src;

	for (int64_t b = 0; b < n / TL_QK_K; b++, y += TL_QK_K)
	{
		float		d = FP16(x[b].d);

		for (int e = 0; e < TL_QK_K; e++)
			y[e] = d * x[b].scales[e / 16] * (float) (tl_q6_level(&x[b], e) - 32);
	}
}

/* Q8_K: the extreme value maps to -128; bsums[g] sums qs[16g .. 16g+15]. */
static void
tl_q8_K_from_float(const float *x, void *dst, int64_t n)
{
	tl_block_q8_K *y = dst;

	for (int64_t b = 0; b < n / TL_QK_K; b++, x += TL_QK_K)
	{
		float		smax,
					lo,
					hi,
					is;

		tl_block_range(x, TL_QK_K, &smax, &lo, &hi);
		if (smax == 0.0f || !isfinite(smax))
		{
			memset(&y[b], 0, sizeof(y[b]));
			continue;
		}
		is = -128.0f / smax;
		for (int j = 0; j < TL_QK_K; j++)
			y[b].qs[j] = (int8_t) tl_qround(x[j] * is, -128, 127);
		for (int g = 0; g < TL_QK_K / 16; g++)
		{
			int			s = 0;

			for (int j = 0; j < 16; j++)
				s += y[b].qs[16 * g + j];
			y[b].bsums[g] = (int16_t) s;
		}
		y[b].d = 1.0f / is;
	}
}

static void
tl_q8_K_to_float(const void *src, float *y, int64_t n)
{
	const tl_block_q8_K *x = src;

	for (int64_t b = 0; b < n / TL_QK_K; b++, y += TL_QK_K)
		for (int j = 0; j < TL_QK_K; j++)
			y[j] = x[b].d * (float) x[b].qs[j];
}

static float
tl_vec_dot_q4_K_q8_K(int64_t n, const void *w, const void *act)
{
	const tl_block_q4_K *x = w;
	const tl_block_q8_K *a = act;
	float		s = 0.0f;

	for (int64_t b = 0; b < n / TL_QK_K; b++)
	{
		uint8_t		sc[8],
					m[8];
		int			sumi = 0,
					summ = 0;

		tl_k4_unpack_scales(x[b].scales, sc, m);
		for (int c = 0; c < 4; c++)
		{
			int			lo = 0,
						hi = 0;

			for (int l = 0; l < 32; l++)
			{
				uint8_t		q = x[b].qs[32 * c + l];

				lo += (q & 0x0f) * a[b].qs[64 * c + l];
				hi += (q >> 4) * a[b].qs[64 * c + 32 + l];
			}
			sumi += sc[2 * c] * lo + sc[2 * c + 1] * hi;
		}
		for (int j = 0; j < 8; j++)
			summ += m[j] * (a[b].bsums[2 * j] + a[b].bsums[2 * j + 1]);
		s += a[b].d * FP16(x[b].d) * (float) sumi - a[b].d * FP16(x[b].dmin) * (float) summ;
	}
	return s;
}

static float
tl_vec_dot_q5_K_q8_K(int64_t n, const void *w, const void *act)
{
	const tl_block_q5_K *x = w;
	const tl_block_q8_K *a = act;
	float		s = 0.0f;

	for (int64_t b = 0; b < n / TL_QK_K; b++)
	{
		uint8_t		sc[8],
					m[8];
		int			sumi = 0,
					summ = 0;

		tl_k4_unpack_scales(x[b].scales, sc, m);
		for (int c = 0; c < 4; c++)
		{
			int			lo = 0,
						hi = 0;

			for (int l = 0; l < 32; l++)
			{
				uint8_t		q = x[b].qs[32 * c + l],
							h = x[b].qh[l];

				lo += ((q & 0x0f) | ((h >> (2 * c)) & 1) << 4) * a[b].qs[64 * c + l];
				hi += ((q >> 4) | ((h >> (2 * c + 1)) & 1) << 4) * a[b].qs[64 * c + 32 + l];
			}
			sumi += sc[2 * c] * lo + sc[2 * c + 1] * hi;
		}
		for (int j = 0; j < 8; j++)
			summ += m[j] * (a[b].bsums[2 * j] + a[b].bsums[2 * j + 1]);
		s += a[b].d * FP16(x[b].d) * (float) sumi - a[b].d * FP16(x[b].dmin) * (float) summ;
	}
	return s;
}

static float
tl_vec_dot_q6_K_q8_K(int64_t n, const void *w, const void *act)
{
	const tl_block_q6_K *x = w;
	const tl_block_q8_K *a = act;
	float		s = 0.0f;

	for (int64_t b = 0; b < n / TL_QK_K; b++)
	{
		int			sumi = 0;

		for (int g = 0; g < 16; g++)
		{
			int			gs = 0;

			for (int j = 0; j < 16; j++)
				gs += (tl_q6_level(&x[b], 16 * g + j) - 32) * a[b].qs[16 * g + j];
			sumi += x[b].scales[g] * gs;
		}
		s += a[b].d * FP16(x[b].d) * (float) sumi;
	}
	return s;
}

static float
tl_vec_dot_q8_K_q8_K(int64_t n, const void *w, const void *act)
{
	const tl_block_q8_K *x = w;
	const tl_block_q8_K *a = act;
	float		s = 0.0f;

	for (int64_t b = 0; b < n / TL_QK_K; b++)
	{
		int			sumi = 0;

		for (int j = 0; j < TL_QK_K; j++)
			sumi += x[b].qs[j] * a[b].qs[j];
		s += x[b].d * a[b].d * (float) sumi;
	}
	return s;
}

/* ======================================================================
 * The traits table and the run-time choice
 * ====================================================================== */

#if TL_QUANT_X86
#define AVX2(fn) fn
#else
#define AVX2(fn) NULL
#endif

static const tl_qtype_traits tl_qtype_table[TL_QT_LIMIT] = {
	[TL_QT_F32] = {"F32", 1, 4, TL_QT_F32, tl_f32_to_float, tl_f32_from_float,
	tl_vec_dot_f32, AVX2(tl_vec_dot_f32_avx2), NULL, NULL},
	[TL_QT_F16] = {"F16", 1, 2, TL_QT_F16, tl_f16_to_float, tl_f16_from_float,
		tl_vec_dot_f16, AVX2(tl_vec_dot_f16_avx2), AVX2(tl_f16_from_float_avx2), NULL,
	tl_vec_dot_f16_batch, AVX2(tl_vec_dot_f16_batch_avx2)},
	[TL_QT_BF16] = {"BF16", 1, 2, TL_QT_F32, tl_bf16_to_float, tl_bf16_from_float,
	tl_vec_dot_bf16, AVX2(tl_vec_dot_bf16_avx2), NULL, NULL},
	[TL_QT_Q4_0] = {"Q4_0", TL_QK, sizeof(tl_block_q4_0), TL_QT_Q8_0, tl_q4_0_to_float, tl_q4_0_from_float,
	tl_vec_dot_q4_0_q8_0, AVX2(tl_vec_dot_q4_0_q8_0_avx2), NULL, AVX2(tl_vec_dot4_q4_0_q8_0_avx2)},
	[TL_QT_Q4_1] = {"Q4_1", TL_QK, sizeof(tl_block_q4_1), TL_QT_Q8_1, tl_q4_1_to_float, tl_q4_1_from_float,
	tl_vec_dot_q4_1_q8_1, AVX2(tl_vec_dot_q4_1_q8_1_avx2), NULL, AVX2(tl_vec_dot4_q4_1_q8_1_avx2)},
	[TL_QT_Q5_0] = {"Q5_0", TL_QK, sizeof(tl_block_q5_0), TL_QT_Q8_0, tl_q5_0_to_float, tl_q5_0_from_float,
	tl_vec_dot_q5_0_q8_0, AVX2(tl_vec_dot_q5_0_q8_0_avx2), NULL, AVX2(tl_vec_dot4_q5_0_q8_0_avx2)},
	[TL_QT_Q5_1] = {"Q5_1", TL_QK, sizeof(tl_block_q5_1), TL_QT_Q8_1, tl_q5_1_to_float, tl_q5_1_from_float,
	tl_vec_dot_q5_1_q8_1, AVX2(tl_vec_dot_q5_1_q8_1_avx2), NULL, AVX2(tl_vec_dot4_q5_1_q8_1_avx2)},
	[TL_QT_Q8_0] = {"Q8_0", TL_QK, sizeof(tl_block_q8_0), TL_QT_Q8_0, tl_q8_0_to_float, tl_q8_0_from_float,
	tl_vec_dot_q8_0_q8_0, AVX2(tl_vec_dot_q8_0_q8_0_avx2), AVX2(tl_q8_0_from_float_avx2), AVX2(tl_vec_dot4_q8_0_q8_0_avx2)},
	[TL_QT_Q4_K] = {"Q4_K", TL_QK_K, sizeof(tl_block_q4_K), TL_QT_Q8_K, tl_q4_K_to_float, tl_q4_K_from_float,
	tl_vec_dot_q4_K_q8_K, AVX2(tl_vec_dot_q4_K_q8_K_avx2), NULL, NULL},
	[TL_QT_Q5_K] = {"Q5_K", TL_QK_K, sizeof(tl_block_q5_K), TL_QT_Q8_K, tl_q5_K_to_float, tl_q5_K_from_float,
	tl_vec_dot_q5_K_q8_K, AVX2(tl_vec_dot_q5_K_q8_K_avx2), NULL, NULL},
	[TL_QT_Q6_K] = {"Q6_K", TL_QK_K, sizeof(tl_block_q6_K), TL_QT_Q8_K, tl_q6_K_to_float, tl_q6_K_from_float,
	tl_vec_dot_q6_K_q8_K, AVX2(tl_vec_dot_q6_K_q8_K_avx2), NULL, NULL},
	[TL_QT_Q8_K] = {"Q8_K", TL_QK_K, sizeof(tl_block_q8_K), TL_QT_Q8_K, tl_q8_K_to_float, tl_q8_K_from_float,
	tl_vec_dot_q8_K_q8_K, NULL, NULL, NULL},

	/* an activation format: conversions, but no dot product as weights */
	[TL_QT_Q8_1] = {"Q8_1", TL_QK, sizeof(tl_block_q8_1), TL_QT_Q8_1, tl_q8_1_to_float, tl_q8_1_from_float,
	NULL, NULL, AVX2(tl_q8_1_from_float_avx2), NULL},

	/*
	 * Storage only: readable in a GGUF file, not computable yet.  Bytes per
	 * block as ggml lays them out (see tl_quant.h).
	 */
	[TL_QT_Q2_K] = {"Q2_K", TL_QK_K, TL_QK_K / 16 + TL_QK_K / 4 + 2 + 2, TL_QT_Q8_K, NULL, NULL, NULL, NULL, NULL, NULL},
	[TL_QT_Q3_K] = {"Q3_K", TL_QK_K, TL_QK_K / 8 + TL_QK_K / 4 + 12 + 2, TL_QT_Q8_K, NULL, NULL, NULL, NULL, NULL, NULL},
};

const tl_qtype_traits *
tl_qtype_info(int type)
{
	if (type < 0 || type >= TL_QT_LIMIT || tl_qtype_table[type].name == NULL)
		return NULL;
	return &tl_qtype_table[type];
}

const char *
tl_qtype_name(int type)
{
	const tl_qtype_traits *t = tl_qtype_info(type);

	return t ? t->name : "unknown";
}

size_t
tl_qtype_row_size(tl_qtype type, int64_t n)
{
	const tl_qtype_traits *t = tl_qtype_info((int) type);

	if (!t || n < 0 || n % t->block_size != 0)
		return 0;
	return (size_t) (n / t->block_size) * (size_t) t->type_size;
}

static atomic_bool tl_quant_scalar_forced;

void
tl_quant_force_scalar(bool on)
{
	atomic_store(&tl_quant_scalar_forced, on);
}

#if TL_QUANT_X86
/* F16C (cpuid leaf 1, ecx bit 29): every AVX2 CPU known has it, but ask. */
static bool
tl_cpu_has_f16c(void)
{
	unsigned int eax,
				ebx,
				ecx,
				edx;

	if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
		return false;
	return (ecx >> 29) & 1;
}
#endif

/* What the CPU and the environment allow, decided once (-1: not yet). */
static atomic_int tl_quant_simd_usable = -1;

bool
tl_quant_simd_active(void)
{
#if TL_QUANT_X86
	int			usable = atomic_load(&tl_quant_simd_usable);

	if (usable < 0)
	{
		const char *env = getenv("TL_QUANT_SCALAR");

		usable = !(env && *env && strcmp(env, "0") != 0) &&
			__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && tl_cpu_has_f16c();
		atomic_store(&tl_quant_simd_usable, usable);
	}
	return usable && !atomic_load(&tl_quant_scalar_forced);
#else
	return false;
#endif
}

tl_vec_dot_fn
tl_quant_vec_dot(tl_qtype type)
{
	const tl_qtype_traits *t = tl_qtype_info((int) type);

	if (!t || !t->vec_dot)
		return NULL;
	if (t->vec_dot_avx2 && tl_quant_simd_active())
		return t->vec_dot_avx2;
	return t->vec_dot;
}

tl_vec_dot_fn
tl_quant_vec_dot_for(tl_qtype type, int64_t n)
{
	const tl_qtype_traits *t = tl_qtype_info((int) type);

	if (n < 2 || !t || !t->vec_dot_batch)
		return tl_quant_vec_dot(type);
	if (t->vec_dot_batch_avx2 && tl_quant_simd_active())
		return t->vec_dot_batch_avx2;
	return t->vec_dot_batch;
}

tl_vec_dot4_fn
tl_quant_vec_dot4(tl_qtype type)
{
	const tl_qtype_traits *t = tl_qtype_info((int) type);

	if (!t || !t->vec_dot4_avx2 || !tl_quant_simd_active())
		return NULL;
	return t->vec_dot4_avx2;
}

tl_from_float_fn
tl_quant_from_float(tl_qtype type)
{
	const tl_qtype_traits *t = tl_qtype_info((int) type);

	if (!t || !t->from_float)
		return NULL;
	if (t->from_float_avx2 && tl_quant_simd_active())
		return t->from_float_avx2;
	return t->from_float;
}

void
tl_quant_round_half(float *x, int64_t n)
{
#if TL_QUANT_X86
	if (tl_quant_simd_active())
	{
		tl_round_half_avx2(x, n);
		return;
	}
#endif
	for (int64_t i = 0; i < n; i++)
		x[i] = tl_half_to_float(tl_f32_to_fp16(x[i]));
}

tl_f16_scores_fn
tl_quant_f16_scores(void)
{
#if TL_QUANT_X86
	if (tl_quant_simd_active())
		return tl_f16_scores_avx2;
#endif
	return tl_f16_scores_ref;
}

tl_f16_mix_fn
tl_quant_f16_mix(void)
{
#if TL_QUANT_X86
	if (tl_quant_simd_active())
		return tl_f16_mix_avx2;
#endif
	return tl_f16_mix_ref;
}

/* ======================================================================
 * Matrix-vector products on the pool
 * ====================================================================== */

/*
 * One matmul job covers several weight matrices that read the same input
 * (Q, K and V; gate and up): the input is converted once per activation
 * type, and one pool run covers the rows of all of them, so the threads
 * meet once per group instead of once per matrix.
 */
#define TL_QMM_MAX 4

typedef struct tl_qmm_part
{
	const uint8_t *w;
	size_t		w_row;			/* bytes per weight row */
	const uint8_t *a;			/* activations in the part's vec_dot_type */
	size_t		a_row;			/* bytes per activation row */
	float	   *y;
	int64_t		rows;
	int64_t		first;			/* index of its first row in the job */
	tl_vec_dot_fn dot;
	tl_vec_dot4_fn dot4;		/* or NULL */
} tl_qmm_part;

typedef struct tl_qmm_job
{
	tl_qmm_part parts[TL_QMM_MAX];
	int			n_parts;
	int64_t		n;				/* vectors */
	/* activation conversion, one type at a time */
	const float *x;
	int64_t		cols;
	uint8_t    *abuf;
	size_t		a_row;
	tl_from_float_fn quantize;
} tl_qmm_job;

static void
tl_qmm_quantize(void *arg, int64_t begin, int64_t end, int worker)
{
	const tl_qmm_job *j = arg;

	for (int64_t v = begin; v < end; v++)
		j->quantize(j->x + v * j->cols, j->abuf + (size_t) v * j->a_row, j->cols);
}

/*
 * Ask for weight rows a little ahead of use.  Weights stream from memory
 * once per token; without this, each chunk of rows (and every short
 * matrix) waits for the hardware prefetcher to notice the stream, which
 * cost a third of the decoding speed of a small model.
 */
static inline void
tl_qmm_prefetch(const uint8_t *p, size_t bytes)
{
	for (size_t off = 0; off < bytes; off += 64)
		__builtin_prefetch(p + off, 0, 0);
}

static void
tl_qmm_rows(void *arg, int64_t begin, int64_t end, int worker)
{
	const tl_qmm_job *j = arg;
	int			p = 0;

	for (int64_t i = begin; i < end;)
	{
		const tl_qmm_part *part;
		int64_t		r,
					stop;

		while (p + 1 < j->n_parts && i >= j->parts[p + 1].first)
			p++;
		part = &j->parts[p];
		r = i - part->first;
		stop = end - part->first < part->rows ? end - part->first : part->rows;
		/* four rows at a time where the kernel has a four-row form */
		for (; part->dot4 && r + 4 <= stop; r += 4)
		{
			const uint8_t *wr = part->w + (size_t) r * part->w_row;

			if (r + 8 <= stop)
				tl_qmm_prefetch(wr + 4 * part->w_row, 4 * part->w_row);

			for (int64_t v = 0; v < j->n; v++)
			{
				float		out[4];
				float	   *y = part->y + v * part->rows + r;

				part->dot4(j->cols, wr, part->w_row, part->a + (size_t) v * part->a_row, out);
				y[0] = out[0];
				y[1] = out[1];
				y[2] = out[2];
				y[3] = out[3];
			}
		}
		for (; r < stop; r++)
		{
			const uint8_t *wr = part->w + (size_t) r * part->w_row;

			if (r + 4 < stop)
				tl_qmm_prefetch(wr + 4 * part->w_row, part->w_row);

			for (int64_t v = 0; v < j->n; v++)
				part->y[v * part->rows + r] = part->dot(j->cols, wr, part->a + (size_t) v * part->a_row);
		}
		i = part->first + stop;
	}
}

/* Check one product's arguments; returns its traits through *tp. */
static tl_status
tl_qmm_check(const tl_qmm_spec *s, int64_t cols, const float *x, int64_t n,
			 const tl_qtype_traits **tp)
{
	const tl_qtype_traits *t = tl_qtype_info((int) s->type);
	const tl_qtype_traits *at;
	size_t		align;

	if (!t)
		return tl_fail(TL_ERR_ARG, "quantized matmul: unknown tensor type %d", (int) s->type);
	at = tl_qtype_info((int) t->vec_dot_type);
	if (!t->vec_dot || !at || (t->vec_dot_type != TL_QT_F32 && !at->from_float))
		return tl_fail(TL_ERR_UNAVAILABLE,
					   "quantized matmul: %s is storage-only here (no dot product for it yet)", t->name);
	if (!s->y || !s->w || !x)
		return tl_fail(TL_ERR_ARG, "quantized matmul: missing %s", !s->y ? "output" : !s->w ? "weights" : "input");
	if (s->rows < 1 || cols < 1 || n < 1)
		return tl_fail(TL_ERR_SHAPE, "quantized matmul: extents %lld x %lld with %lld vectors must be positive",
					   (long long) s->rows, (long long) cols, (long long) n);
	if (cols % t->block_size != 0 || cols % at->block_size != 0)
		return tl_fail(TL_ERR_SHAPE, "quantized matmul: %s rows of %lld are not whole blocks of %d",
					   t->name, (long long) cols,
					   (int) (cols % t->block_size != 0 ? t->block_size : at->block_size));
	if (s->rows > INT64_MAX / cols || n > INT64_MAX / cols || n > INT64_MAX / s->rows ||
		(size_t) s->rows > SIZE_MAX / tl_qtype_row_size(s->type, cols))
		return tl_fail(TL_ERR_SHAPE, "quantized matmul: extents overflow");
	align = (s->type == TL_QT_F32 || s->type == TL_QT_Q8_K) ? 4 : 2;
	if ((uintptr_t) s->w % align != 0 || (uintptr_t) x % sizeof(float) != 0 ||
		(uintptr_t) s->y % sizeof(float) != 0)
		return tl_fail(TL_ERR_ARG, "quantized matmul: %s weights, input or output misaligned", t->name);
	*tp = t;
	return TL_OK;
}

tl_status
tl_quant_matmul_multi(const tl_qmm_spec *specs, int n_specs, int64_t cols,
					  const float *x, int64_t n)
{
	tl_qmm_job	job = {0};
	const tl_qtype_traits *traits[TL_QMM_MAX];
	uint8_t    *converted[TL_QMM_MAX] = {0};
	tl_qtype	converted_type[TL_QMM_MAX];
	int			n_converted = 0;
	int64_t		total = 0,
				threads,
				grain;
	tl_status	rc = TL_OK;

	if (!specs || n_specs < 1 || n_specs > TL_QMM_MAX)
		return tl_fail(TL_ERR_ARG, "quantized matmul: %d products in one call (1..%d)", n_specs, TL_QMM_MAX);
	for (int i = 0; i < n_specs; i++)
	{
		TL_TRY(tl_qmm_check(&specs[i], cols, x, n, &traits[i]));
		if (specs[i].rows > INT64_MAX - total)
			return tl_fail(TL_ERR_SHAPE, "quantized matmul: extents overflow");
		total += specs[i].rows;
	}

	job.n = n;
	job.x = x;
	job.cols = cols;
	job.n_parts = n_specs;
	for (int i = 0; i < n_specs; i++)
	{
		tl_qmm_part *part = &job.parts[i];
		tl_qtype	at = traits[i]->vec_dot_type;

		part->w = specs[i].w;
		part->w_row = tl_qtype_row_size(specs[i].type, cols);
		part->y = specs[i].y;
		part->rows = specs[i].rows;
		part->first = i == 0 ? 0 : job.parts[i - 1].first + job.parts[i - 1].rows;
		part->dot = tl_quant_vec_dot_for(specs[i].type, n);
		part->dot4 = part->dot == tl_quant_vec_dot(specs[i].type) ? tl_quant_vec_dot4(specs[i].type) : NULL;
		part->a_row = tl_qtype_row_size(at, cols);
		if (at == TL_QT_F32)
		{
			part->a = (const uint8_t *) x;
			continue;
		}
		/* convert the input once per activation type */
		for (int c = 0; c < n_converted; c++)
			if (converted_type[c] == at)
				part->a = converted[c];
		if (part->a)
			continue;
		if ((size_t) n > SIZE_MAX / part->a_row ||
			!(converted[n_converted] = tl_alloc((size_t) n, part->a_row)))
		{
			rc = tl_fail(TL_ERR_NOMEM, "quantized matmul: no memory for %lld x %lld activations",
						 (long long) n, (long long) cols);
			goto done;
		}
		converted_type[n_converted] = at;
		part->a = converted[n_converted++];
		job.abuf = (uint8_t *) part->a;
		job.a_row = part->a_row;
		job.quantize = tl_quant_from_float(at);
		tl_pool_run(n, 1, tl_qmm_quantize, &job);
	}

	/* small chunks balance the threads; each covers >= 16 rows, a multiple of 4 */
	threads = tl_pool_threads();
	grain = total / (4 * threads);
	if (grain < 16)
		grain = 16;
	grain -= grain % 4;
	tl_pool_run(total, grain, tl_qmm_rows, &job);

done:
	for (int c = 0; c < n_converted; c++)
		tl_free(converted[c]);
	return rc;
}

tl_status
tl_quant_matmul(float *y, const void *w, tl_qtype type, int64_t rows, int64_t cols,
				const float *x, int64_t n)
{
	tl_qmm_spec spec = {.y = y, .w = w, .type = type, .rows = rows};

	return tl_quant_matmul_multi(&spec, 1, cols, x, n);
}

tl_status
tl_quant_matvec(float *y, const void *w, tl_qtype type, int64_t rows, int64_t cols, const float *x)
{
	return tl_quant_matmul(y, w, type, rows, cols, x, 1);
}
