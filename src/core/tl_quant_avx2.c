/*
 * tl_quant_avx2.c -- AVX2 dot products for the GGUF formats.
 *
 * Every function here carries a target attribute (AVX2, FMA, F16C), so
 * the file builds with the project's baseline flags; tl_quant.c picks
 * these at run time only when the CPU has all three.
 *
 * Integer products are summed exactly per block, as in the references:
 * weights as unsigned bytes (or |w| with the sign moved onto the
 * activation) times int8 activations via maddubs, pairs widened to int32
 * by madd, then converted and scaled once per block.  The results differ
 * from the references only in the order of the float additions.
 *
 * Two limits of maddubs shape these.  Moving a sign onto an activation
 * of -128 has no int8 result, and a pair of products 2 * 128 * 128
 * saturates int16.  Q8_0 activations (from tl_quant's quantizer, as from
 * ggml's) lie in -127..127, so the sign trick is safe for the 32-blocks,
 * even with a -128 weight.  Q8_K activations reach -128, so the K-quants
 * feed their unsigned levels to maddubs and take offsets off through the
 * 16-element sums; Q8_K x Q8_K has no AVX2 version.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <math.h>

#include "tl_quant.h"
#include "tl_quant_impl.h"

/* an fp16 scale to float (F16C: exact, as tl_fp16_to_f32) */
#define H2F(h) _cvtsh_ss(h)

/* 16 bytes of nibble pairs to 32 bytes: low nibbles, then high ones. */
static inline TL_AVX2 __m256i
tl_nibbles32(const uint8_t *qs)
{
	__m128i		b = _mm_loadu_si128((const __m128i *) qs);
	__m256i		v = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);

	return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

/* Byte i is 0xff where bit i of bits is set, else 0. */
static inline TL_AVX2 __m256i
tl_bits_to_bytes(uint32_t bits)
{
	const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
											2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
	const __m256i bit = _mm256_set1_epi64x((long long) 0x8040201008040201ULL);
	__m256i		v = _mm256_shuffle_epi8(_mm256_set1_epi32((int) bits), spread);

	return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* Sums of four adjacent products u[i]*s[i] (u unsigned, s signed). */
static inline TL_AVX2 __m256i
tl_dot_u8_i8(__m256i u, __m256i s)
{
	return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* The same for two signed operands: |x| times y with x's sign. */
static inline TL_AVX2 __m256i
tl_dot_i8_i8(__m256i x, __m256i y)
{
	return tl_dot_u8_i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

static inline TL_AVX2 __m256i
tl_load32(const void *p)
{
	return _mm256_loadu_si256((const __m256i *) p);
}

/* ---------------------------------------------------------------------- */

TL_AVX2 float
tl_vec_dot_f32_avx2(int64_t n, const void *w, const void *a)
{
	const float *x = w,
			   *y = a;
	__m256		s0 = _mm256_setzero_ps(),
				s1 = _mm256_setzero_ps(),
				s2 = _mm256_setzero_ps(),
				s3 = _mm256_setzero_ps();
	int64_t		i = 0;
	float		s;

	for (; i + 32 <= n; i += 32)
	{
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
		s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), s2);
		s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), s3);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
	s = tl_hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
	for (; i < n; i++)
		s += x[i] * y[i];
	return s;
}

static inline TL_AVX2 __m256
tl_load_f16x8(const uint16_t *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) p));
}

/* The VEC order's sum of four accumulators (see tl_quant_f16_lanes_sum). */
static inline TL_AVX2 float
tl_hsum_vec4(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
	__m256		x = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
	__m128		t = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));

	t = _mm_hadd_ps(t, t);
	return _mm_cvtss_f32(_mm_hadd_ps(t, t));
}

/* F16 x F16 for one vector: 32 lanes, the remainder in double (tl_quant.c) */
TL_AVX2 float
tl_vec_dot_f16_avx2(int64_t n, const void *w, const void *a)
{
	const uint16_t *x = w,
			   *y = a;
	__m256		acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
	int64_t		i = 0;
	double		s;

	for (; i + 32 <= n; i += 32)
		for (int j = 0; j < 4; j++)
			acc[j] = _mm256_fmadd_ps(tl_load_f16x8(x + i + 8 * j), tl_load_f16x8(y + i + 8 * j), acc[j]);
	s = tl_hsum_vec4(acc[0], acc[1], acc[2], acc[3]);
	for (; i < n; i++)
		s += (double) (H2F(x[i]) * H2F(y[i]));
	return (float) s;
}

/* F16 x F16 in a batch: one accumulator of 8 lanes */
TL_AVX2 float
tl_vec_dot_f16_batch_avx2(int64_t n, const void *w, const void *a)
{
	const uint16_t *x = w,
			   *y = a;
	__m256		acc = _mm256_setzero_ps();

	if (n % 8 != 0)
		return tl_vec_dot_f16_avx2(n, w, a);
	for (int64_t i = 0; i < n; i += 8)
		acc = _mm256_fmadd_ps(tl_load_f16x8(x + i), tl_load_f16x8(y + i), acc);
	return tl_hsum_ps(acc);
}

#define TL_F16_MAX_CHUNKS 64		/* head_dim up to 512 in registers' worth of chunks */

/*
 * Scores for head sizes of 8 * chunks; inlined with a constant chunk
 * count (64 and 128, the common head sizes) so the converted key row
 * stays in registers for all the heads of the group.
 */
static inline __attribute__((always_inline)) TL_AVX2 void
tl_f16_scores_chunks(const int chunks, int n_heads, const float *q, const uint16_t *k,
					 size_t k_stride, int n_pos, float *out, size_t out_stride, tl_f16_order order)
{
	const int	whole = order == TL_F16_VEC ? chunks - chunks % 4 : chunks;

	for (int p = 0; p < n_pos; p++)
	{
		const uint16_t *kp = k + (size_t) p * k_stride;
		__m256		kv[TL_F16_MAX_CHUNKS];

		for (int c = 0; c < chunks; c++)
			kv[c] = tl_load_f16x8(kp + 8 * c);
		for (int h = 0; h < n_heads; h++)
		{
			const float *qh = q + (size_t) h * 8 * chunks;
			__m256		acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
			_mm256_setzero_ps()};

			if (order == TL_F16_TILED)
			{
				for (int c = 0; c < chunks; c++)
					acc[0] = _mm256_fmadd_ps(kv[c], _mm256_loadu_ps(qh + 8 * c), acc[0]);
				out[(size_t) h * out_stride + p] = tl_hsum_ps(acc[0]);
			}
			else
			{
				double		s;

				for (int c = 0; c < whole; c++)
					acc[c % 4] = _mm256_fmadd_ps(kv[c], _mm256_loadu_ps(qh + 8 * c), acc[c % 4]);
				s = tl_hsum_vec4(acc[0], acc[1], acc[2], acc[3]);
				for (int d = 8 * whole; d < 8 * chunks; d++)
					s += (double) (H2F(kp[d]) * qh[d]);
				out[(size_t) h * out_stride + p] = (float) s;
			}
		}
	}
}

TL_AVX2 void
tl_f16_scores_avx2(int D, int n_heads, const float *q, const uint16_t *k, size_t k_stride,
				   int n_pos, float *out, size_t out_stride, tl_f16_order order)
{
	if (D == 64)
		tl_f16_scores_chunks(8, n_heads, q, k, k_stride, n_pos, out, out_stride, order);
	else if (D == 128)
		tl_f16_scores_chunks(16, n_heads, q, k, k_stride, n_pos, out, out_stride, order);
	else if (D % 8 == 0 && D / 8 <= TL_F16_MAX_CHUNKS)
		tl_f16_scores_chunks(D / 8, n_heads, q, k, k_stride, n_pos, out, out_stride, order);
	else
		tl_f16_scores_ref(D, n_heads, q, k, k_stride, n_pos, out, out_stride, order);
}

/* Values for head sizes of 8 * chunks, inlined with a constant count as above. */
static inline __attribute__((always_inline)) TL_AVX2 void
tl_f16_mix_chunks(const int chunks, int n_heads, const float *prob, size_t prob_stride,
				  const uint16_t *v, size_t v_stride, int n_pos, int first, float *lanes,
				  tl_f16_order order)
{
	const int	D = 8 * chunks,
				L = tl_f16_lanes(order);

	for (int p = 0; p < n_pos; p++)
	{
		const uint16_t *vp = v + (size_t) p * v_stride;
		size_t		lane = (size_t) ((first + p) % L);
		__m256		vv[TL_F16_MAX_CHUNKS];

		for (int c = 0; c < chunks; c++)
			vv[c] = tl_load_f16x8(vp + 8 * c);
		for (int h = 0; h < n_heads; h++)
		{
			__m256		w = _mm256_set1_ps(prob[(size_t) h * prob_stride + p]);
			float	   *l = lanes + ((size_t) h * L + lane) * D;

			for (int c = 0; c < chunks; c++)
				_mm256_storeu_ps(l + 8 * c, _mm256_fmadd_ps(w, vv[c], _mm256_loadu_ps(l + 8 * c)));
		}
	}
}

TL_AVX2 void
tl_f16_mix_avx2(int D, int n_heads, const float *prob, size_t prob_stride, const uint16_t *v,
				size_t v_stride, int n_pos, int first, float *lanes, tl_f16_order order)
{
	if (D == 64)
		tl_f16_mix_chunks(8, n_heads, prob, prob_stride, v, v_stride, n_pos, first, lanes, order);
	else if (D == 128)
		tl_f16_mix_chunks(16, n_heads, prob, prob_stride, v, v_stride, n_pos, first, lanes, order);
	else if (D % 8 == 0 && D / 8 <= TL_F16_MAX_CHUNKS)
		tl_f16_mix_chunks(D / 8, n_heads, prob, prob_stride, v, v_stride, n_pos, first, lanes, order);
	else
		tl_f16_mix_ref(D, n_heads, prob, prob_stride, v, v_stride, n_pos, first, lanes, order);
}

TL_AVX2 void
tl_f16_from_float_avx2(const float *src, void *dst, int64_t n)
{
	uint16_t   *d = dst;
	int64_t		i = 0;

	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *) (d + i),
						 _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
	for (; i < n; i++)
		d[i] = tl_f32_to_fp16(src[i]);
}

TL_AVX2 void
tl_round_half_avx2(float *x, int64_t n)
{
	int64_t		i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i),
															   _MM_FROUND_TO_NEAREST_INT)));
	for (; i < n; i++)
		x[i] = tl_fp16_to_f32(tl_f32_to_fp16(x[i]));
}

/*
 * One block of 32 activations to int8 as the scalar tl_q8_block does:
 * q = round-half-even(x * 127/amax) clamped to -127..127; returns the
 * unrounded scale amax/127 and the sum of q.
 */
static TL_AVX2 float
tl_q8_block_avx2(const float *x, int8_t *qs, int *sum)
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	__m256		v[4];
	__m256		m;
	__m128		h;
	__m256i		q[4],
				packed;
	float		amax,
				id;

	for (int k = 0; k < 4; k++)
		v[k] = _mm256_loadu_ps(x + 8 * k);
	m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
					  _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
	h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
	h = _mm_max_ps(h, _mm_movehl_ps(h, h));
	h = _mm_max_ss(h, _mm_movehdup_ps(h));
	amax = _mm_cvtss_f32(h);
	id = amax > 0.0f && isfinite(amax) ? 127.0f / amax : 0.0f;
	for (int k = 0; k < 4; k++)
	{
		__m256		r = _mm256_round_ps(_mm256_mul_ps(v[k], _mm256_set1_ps(id)),
										_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);

		q[k] = _mm256_cvtps_epi32(r);
		q[k] = _mm256_max_epi32(_mm256_min_epi32(q[k], _mm256_set1_epi32(127)), _mm256_set1_epi32(-127));
	}
	{
		__m256i		s4 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
		__m128i		s2 = _mm_add_epi32(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));

		s2 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, _MM_SHUFFLE(1, 0, 3, 2)));
		s2 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, _MM_SHUFFLE(2, 3, 0, 1)));
		*sum = _mm_cvtsi128_si32(s2);
	}
	/* packs work within 128-bit lanes; the permutation restores the order */
	packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
	packed = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
	_mm256_storeu_si256((__m256i *) qs, packed);
	return isfinite(amax) ? amax / 127.0f : 0.0f;
}

TL_AVX2 void
tl_q8_0_from_float_avx2(const float *src, void *dst, int64_t n)
{
	tl_q8_0_rows(src, dst, n, tl_q8_block_avx2);
}

TL_AVX2 void
tl_q8_1_from_float_avx2(const float *src, void *dst, int64_t n)
{
	tl_q8_1_rows(src, dst, n, tl_q8_block_avx2);
}

static inline TL_AVX2 __m256
tl_load_bf16x8(const uint16_t *p)
{
	__m256i		v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *) p));

	return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

TL_AVX2 float
tl_vec_dot_bf16_avx2(int64_t n, const void *w, const void *a)
{
	const uint16_t *x = w;
	const float *y = a;
	__m256		s0 = _mm256_setzero_ps(),
				s1 = _mm256_setzero_ps();
	int64_t		i = 0;
	float		s;

	for (; i + 16 <= n; i += 16)
	{
		s0 = _mm256_fmadd_ps(tl_load_bf16x8(x + i), _mm256_loadu_ps(y + i), s0);
		s1 = _mm256_fmadd_ps(tl_load_bf16x8(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(tl_load_bf16x8(x + i), _mm256_loadu_ps(y + i), s0);
	s = tl_hsum_ps(_mm256_add_ps(s0, s1));
	for (; i < n; i++)
		s += tl_bf16_to_f32(x[i]) * y[i];
	return s;
}

/* ---------------------------------------------------------------------- */

/*
 * The 32-blocks: one inline function per block adds its terms to one
 * accumulator (and the min term to a second); the loops take two blocks
 * a step into separate accumulators, so the FMA chains overlap.
 */
/*
 * The 32-blocks are summed in ggml's order, so that a model run here and
 * under llama.cpp rounds alike: one vector accumulator, blocks in
 * sequence (an FMA each), the min terms of Q4_1 and Q5_1 in a scalar
 * float beside it, and the horizontal sum at the end.  Greedy decoding
 * can turn on a near-tie of two logits, and a different summation order
 * alone is enough to flip one.
 */
#define TL_BLOCKS_IN_ORDER(block_fn, x, a, nb) \
	do { \
		for (int64_t b_ = 0; b_ < (nb); b_++) \
			block_fn(&(x)[b_], &(a)[b_], &acc, &summ); \
	} while (0)

#define TL_ACCUMULATORS \
	__m256		acc = _mm256_setzero_ps(); \
	__m128		summ = _mm_setzero_ps()

/* lane 1 of summ holds the min terms, summed in order */
#define TL_ACCUMULATED (tl_hsum_ps(acc) + _mm_cvtss_f32(_mm_shuffle_ps(summ, summ, 1)))

/*
 * Four rows against the same activations: the block function is inlined
 * four times per block with the same activation block, so its loads and
 * conversions are shared while each row keeps its own accumulators and
 * order.
 */
#define TL_FOUR_ROWS(block_fn, wtype, w, stride, a, nb, out) \
	do { \
		const uint8_t *w_ = (const uint8_t *) (w); \
		const wtype *r0_ = (const wtype *) w_, \
				   *r1_ = (const wtype *) (w_ + (stride)), \
				   *r2_ = (const wtype *) (w_ + 2 * (stride)), \
				   *r3_ = (const wtype *) (w_ + 3 * (stride)); \
		__m256		c0_ = _mm256_setzero_ps(), c1_ = c0_, c2_ = c0_, c3_ = c0_; \
		__m128		m0_ = _mm_setzero_ps(), m1_ = m0_, m2_ = m0_, m3_ = m0_; \
		for (int64_t b_ = 0; b_ < (nb); b_++) \
		{ \
			block_fn(&r0_[b_], &(a)[b_], &c0_, &m0_); \
			block_fn(&r1_[b_], &(a)[b_], &c1_, &m1_); \
			block_fn(&r2_[b_], &(a)[b_], &c2_, &m2_); \
			block_fn(&r3_[b_], &(a)[b_], &c3_, &m3_); \
		} \
		(out)[0] = tl_hsum_ps(c0_) + _mm_cvtss_f32(_mm_shuffle_ps(m0_, m0_, 1)); \
		(out)[1] = tl_hsum_ps(c1_) + _mm_cvtss_f32(_mm_shuffle_ps(m1_, m1_, 1)); \
		(out)[2] = tl_hsum_ps(c2_) + _mm_cvtss_f32(_mm_shuffle_ps(m2_, m2_, 1)); \
		(out)[3] = tl_hsum_ps(c3_) + _mm_cvtss_f32(_mm_shuffle_ps(m3_, m3_, 1)); \
	} while (0)

/*
 * A block's two leading fp16 fields (d, then m for Q4_1/Q5_1 weights or
 * s for Q8_1 activations) as floats in lanes 0 and 1, with one
 * conversion.  For blocks with d alone, lane 1 holds whatever follows d
 * and is never used.  Multiplying a weight pair by an activation pair
 * gives d*da in lane 0 and m*s in lane 1, each the product the scalar
 * code forms.
 */
static inline TL_AVX2 __m128
tl_half_pair(const void *p)
{
	int32_t		v;

	memcpy(&v, p, sizeof(v));
	return _mm_cvtph_ps(_mm_cvtsi32_si128(v));
}

/* acc += (d * da) * p for the block's integer dot products p */
static inline TL_AVX2 __m128
tl_block_scales(const void *w, const void *a, __m256i p, __m256 *acc)
{
	__m128		ds = _mm_mul_ps(tl_half_pair(w), tl_half_pair(a));

	*acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(ds), _mm256_cvtepi32_ps(p), *acc);
	return ds;
}

/*
 * Q4_0 sums its blocks in sequence: acc = fma(q.a, d * da, acc), block
 * after block, one float per row.  That is the order of llama.cpp's AVX2
 * build, which repacks Q4_0 weights eight rows interleaved and keeps one
 * lane per row (its Q8_0 and Q4_1 products keep eight lanes per row and
 * add them at the end, as the other kernels here do).
 */
static inline TL_AVX2 int
tl_hsum_epi32(__m256i v)
{
	__m128i		s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));

	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
	return _mm_cvtsi128_si32(s);
}

/* the block's integer dot product q.a, in eight int32 lanes */
static inline TL_AVX2 __m256i
tl_q4_0_products(const tl_block_q4_0 *x, const tl_block_q8_0 *a)
{
	return tl_dot_i8_i8(_mm256_sub_epi8(tl_nibbles32(x->qs), _mm256_set1_epi8(8)), tl_load32(a->qs));
}

TL_AVX2 float
tl_vec_dot_q4_0_q8_0_avx2(int64_t n, const void *w, const void *act)
{
	const tl_block_q4_0 *x = w;
	const tl_block_q8_0 *a = act;
	float		acc = 0.0f;

	for (int64_t b = 0; b < n / TL_QK; b++)
		acc = fmaf((float) tl_hsum_epi32(tl_q4_0_products(&x[b], &a[b])), H2F(x[b].d) * H2F(a[b].d), acc);
	return acc;
}

TL_AVX2 void
tl_vec_dot4_q4_0_q8_0_avx2(int64_t n, const void *w, size_t stride, const void *act, float *out)
{
	const tl_block_q8_0 *a = act;
	const tl_block_q4_0 *r[4];
	__m128		acc = _mm_setzero_ps();

	for (int i = 0; i < 4; i++)
		r[i] = (const tl_block_q4_0 *) ((const uint8_t *) w + (size_t) i * stride);
	for (int64_t b = 0; b < n / TL_QK; b++)
	{
		/* the four rows' sums side by side: exact, so any order will do */
		__m256i		p01 = _mm256_hadd_epi32(tl_q4_0_products(&r[0][b], &a[b]),
											tl_q4_0_products(&r[1][b], &a[b]));
		__m256i		p23 = _mm256_hadd_epi32(tl_q4_0_products(&r[2][b], &a[b]),
											tl_q4_0_products(&r[3][b], &a[b]));
		__m256i		p = _mm256_hadd_epi32(p01, p23);
		__m128i		sums = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
		__m128		d = _mm_cvtph_ps(_mm_setr_epi16((short) r[0][b].d, (short) r[1][b].d,
													(short) r[2][b].d, (short) r[3][b].d, 0, 0, 0, 0));

		acc = _mm_fmadd_ps(_mm_cvtepi32_ps(sums), _mm_mul_ps(d, _mm_set1_ps(H2F(a[b].d))), acc);
	}
	_mm_storeu_ps(out, acc);
}

/* d * da * q.a, and m * s (s = da * sum(a), kept in the Q8_1 block) */
static inline TL_AVX2 void
tl_q4_1_block(const tl_block_q4_1 *x, const tl_block_q8_1 *a, __m256 *acc, __m128 *summ)
{
	__m256i		p = tl_dot_u8_i8(tl_nibbles32(x->qs), tl_load32(a->qs));

	*summ = _mm_add_ps(*summ, tl_block_scales(x, a, p, acc));
}

TL_AVX2 float
tl_vec_dot_q4_1_q8_1_avx2(int64_t n, const void *w, const void *act)
{
	const tl_block_q4_1 *x = w;
	const tl_block_q8_1 *a = act;
	TL_ACCUMULATORS;

	TL_BLOCKS_IN_ORDER(tl_q4_1_block, x, a, n / TL_QK);
	return TL_ACCUMULATED;
}

TL_AVX2 void
tl_vec_dot4_q4_1_q8_1_avx2(int64_t n, const void *w, size_t stride, const void *act, float *out)
{
	const tl_block_q8_1 *a = act;

	TL_FOUR_ROWS(tl_q4_1_block, tl_block_q4_1, w, stride, a, n / TL_QK, out);
}

/* the 5-bit levels of a Q5 block: nibbles, with bit i of qh as bit 4 */
static inline TL_AVX2 __m256i
tl_levels5(const uint8_t *qs, const uint8_t *qh)
{
	uint32_t	h;

	memcpy(&h, qh, sizeof(h));	/* x86 is little-endian, as the file */
	return _mm256_or_si256(tl_nibbles32(qs), _mm256_and_si256(tl_bits_to_bytes(h), _mm256_set1_epi8(0x10)));
}

static inline TL_AVX2 void
tl_q5_0_block(const tl_block_q5_0 *x, const tl_block_q8_0 *a, __m256 *acc, __m128 *summ)
{
	__m256i		q = _mm256_sub_epi8(tl_levels5(x->qs, x->qh), _mm256_set1_epi8(16));
	__m256i		p = tl_dot_i8_i8(q, tl_load32(a->qs));

	(void) summ;
	tl_block_scales(x, a, p, acc);
}

TL_AVX2 float
tl_vec_dot_q5_0_q8_0_avx2(int64_t n, const void *w, const void *act)
{
	const tl_block_q5_0 *x = w;
	const tl_block_q8_0 *a = act;
	TL_ACCUMULATORS;

	TL_BLOCKS_IN_ORDER(tl_q5_0_block, x, a, n / TL_QK);
	return TL_ACCUMULATED;
}

TL_AVX2 void
tl_vec_dot4_q5_0_q8_0_avx2(int64_t n, const void *w, size_t stride, const void *act, float *out)
{
	const tl_block_q8_0 *a = act;

	TL_FOUR_ROWS(tl_q5_0_block, tl_block_q5_0, w, stride, a, n / TL_QK, out);
}

static inline TL_AVX2 void
tl_q5_1_block(const tl_block_q5_1 *x, const tl_block_q8_1 *a, __m256 *acc, __m128 *summ)
{
	__m256i		p = tl_dot_u8_i8(tl_levels5(x->qs, x->qh), tl_load32(a->qs));

	*summ = _mm_add_ps(*summ, tl_block_scales(x, a, p, acc));
}

TL_AVX2 float
tl_vec_dot_q5_1_q8_1_avx2(int64_t n, const void *w, const void *act)
{
	const tl_block_q5_1 *x = w;
	const tl_block_q8_1 *a = act;
	TL_ACCUMULATORS;

	TL_BLOCKS_IN_ORDER(tl_q5_1_block, x, a, n / TL_QK);
	return TL_ACCUMULATED;
}

TL_AVX2 void
tl_vec_dot4_q5_1_q8_1_avx2(int64_t n, const void *w, size_t stride, const void *act, float *out)
{
	const tl_block_q8_1 *a = act;

	TL_FOUR_ROWS(tl_q5_1_block, tl_block_q5_1, w, stride, a, n / TL_QK, out);
}

static inline TL_AVX2 void
tl_q8_0_block(const tl_block_q8_0 *x, const tl_block_q8_0 *a, __m256 *acc, __m128 *summ)
{
	__m256i		p = tl_dot_i8_i8(tl_load32(x->qs), tl_load32(a->qs));

	(void) summ;
	tl_block_scales(x, a, p, acc);
}

TL_AVX2 float
tl_vec_dot_q8_0_q8_0_avx2(int64_t n, const void *w, const void *act)
{
	const tl_block_q8_0 *x = w;
	const tl_block_q8_0 *a = act;
	TL_ACCUMULATORS;

	TL_BLOCKS_IN_ORDER(tl_q8_0_block, x, a, n / TL_QK);
	return TL_ACCUMULATED;
}

TL_AVX2 void
tl_vec_dot4_q8_0_q8_0_avx2(int64_t n, const void *w, size_t stride, const void *act, float *out)
{
	const tl_block_q8_0 *a = act;

	TL_FOUR_ROWS(tl_q8_0_block, tl_block_q8_0, w, stride, a, n / TL_QK, out);
}

/* ---------------------------------------------------------------------- */

/* sum_j m[j] * (activations of sub-block j), from the 16-element sums */
static inline TL_AVX2 int
tl_k4_min_sum(const uint8_t *m, const int16_t *bsums)
{
	int			s = 0;

	for (int j = 0; j < 8; j++)
		s += m[j] * (bsums[2 * j] + bsums[2 * j + 1]);
	return s;
}

TL_AVX2 float
tl_vec_dot_q4_K_q8_K_avx2(int64_t n, const void *w, const void *act)
{
	const tl_block_q4_K *x = w;
	const tl_block_q8_K *a = act;
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	__m256		acc = _mm256_setzero_ps();
	float		mins = 0.0f;

	for (int64_t b = 0; b < n / TL_QK_K; b++)
	{
		uint8_t		sc[8],
					m[8];
		__m256i		sumi = _mm256_setzero_si256();

		tl_k4_unpack_scales(x[b].scales, sc, m);
		for (int c = 0; c < 4; c++)
		{
			__m256i		q = tl_load32(x[b].qs + 32 * c);
			__m256i		lo = _mm256_and_si256(q, m4);
			__m256i		hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
			__m256i		p0 = _mm256_maddubs_epi16(lo, tl_load32(a[b].qs + 64 * c));
			__m256i		p1 = _mm256_maddubs_epi16(hi, tl_load32(a[b].qs + 64 * c + 32));

			p0 = _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * c]));
			p1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * c + 1]));
			sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
		}
		acc = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * H2F(x[b].d)), _mm256_cvtepi32_ps(sumi), acc);
		mins += a[b].d * H2F(x[b].dmin) * (float) tl_k4_min_sum(m, a[b].bsums);
	}
	return tl_hsum_ps(acc) - mins;
}

TL_AVX2 float
tl_vec_dot_q5_K_q8_K_avx2(int64_t n, const void *w, const void *act)
{
	const tl_block_q5_K *x = w;
	const tl_block_q8_K *a = act;
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	const __m256i one = _mm256_set1_epi8(1);
	__m256		acc = _mm256_setzero_ps();
	float		mins = 0.0f;

	for (int64_t b = 0; b < n / TL_QK_K; b++)
	{
		uint8_t		sc[8],
					m[8];
		__m256i		sumi = _mm256_setzero_si256();
		__m256i		qh = tl_load32(x[b].qh);

		tl_k4_unpack_scales(x[b].scales, sc, m);
		for (int c = 0; c < 4; c++)
		{
			__m256i		q = tl_load32(x[b].qs + 32 * c);
			/* bit 2c of qh[l] tops the low nibble, bit 2c+1 the high one */
			__m256i		hl = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c)), one);
			__m256i		hh = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c + 1)), one);
			__m256i		lo = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_slli_epi16(hl, 4));
			__m256i		hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), _mm256_slli_epi16(hh, 4));
			__m256i		p0 = _mm256_maddubs_epi16(lo, tl_load32(a[b].qs + 64 * c));
			__m256i		p1 = _mm256_maddubs_epi16(hi, tl_load32(a[b].qs + 64 * c + 32));

			p0 = _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * c]));
			p1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * c + 1]));
			sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
		}
		acc = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * H2F(x[b].d)), _mm256_cvtepi32_ps(sumi), acc);
		mins += a[b].d * H2F(x[b].dmin) * (float) tl_k4_min_sum(m, a[b].bsums);
	}
	return tl_hsum_ps(acc) - mins;
}

/* sc[0] * q.a over the first 16 bytes plus sc[1] * q.a over the next 16 */
static inline TL_AVX2 __m256i
tl_q6_part(__m256i q, const int8_t *av, const int8_t *sc)
{
	__m256i		p = _mm256_maddubs_epi16(q, tl_load32(av));

	return _mm256_madd_epi16(p, _mm256_set_m128i(_mm_set1_epi16(sc[1]), _mm_set1_epi16(sc[0])));
}

/*
 * The levels 0..63 go into maddubs unsigned (an activation of -128 has no
 * positive int8, so moving signs onto the activations would be wrong);
 * the offset of 32 comes off in integers through the 16-element sums.
 * The block sum is exact, so this returns what the reference does.
 */
TL_AVX2 float
tl_vec_dot_q6_K_q8_K_avx2(int64_t n, const void *w, const void *act)
{
	const tl_block_q6_K *x = w;
	const tl_block_q8_K *a = act;
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	const __m256i m2 = _mm256_set1_epi8(0x03);
	float		s = 0.0f;

	for (int64_t b = 0; b < n / TL_QK_K; b++)
	{
		__m256i		sumi = _mm256_setzero_si256();
		int			offset = 0;

		for (int h = 0; h < 2; h++)
		{
			__m256i		ql0 = tl_load32(x[b].ql + 64 * h);
			__m256i		ql1 = tl_load32(x[b].ql + 64 * h + 32);
			__m256i		qh = tl_load32(x[b].qh + 32 * h);
			const int8_t *av = a[b].qs + 128 * h;
			const int8_t *sc = x[b].scales + 8 * h;
			__m256i		q1,
						q2,
						q3,
						q4;

			q1 = _mm256_or_si256(_mm256_and_si256(ql0, m4),
								 _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
			q2 = _mm256_or_si256(_mm256_and_si256(ql1, m4),
								 _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
			q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
								 _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
			q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
								 _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
			sumi = _mm256_add_epi32(sumi, tl_q6_part(q1, av, sc));
			sumi = _mm256_add_epi32(sumi, tl_q6_part(q2, av + 32, sc + 2));
			sumi = _mm256_add_epi32(sumi, tl_q6_part(q3, av + 64, sc + 4));
			sumi = _mm256_add_epi32(sumi, tl_q6_part(q4, av + 96, sc + 6));
		}
		for (int g = 0; g < TL_QK_K / 16; g++)
			offset += x[b].scales[g] * a[b].bsums[g];
		s += a[b].d * H2F(x[b].d) * (float) (tl_hsum_epi32(sumi) - 32 * offset);
	}
	return s;
}

#else

/* Not x86-64: the references are all there is. */
typedef int tl_quant_avx2_unused;

#endif
