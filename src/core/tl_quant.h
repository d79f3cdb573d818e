/*
 * tl_quant.h -- the tensor storage formats of GGUF files: conversion to
 * and from float, dot products on the stored bytes, and a matrix-vector
 * product for weights kept in any of them.
 *
 * Type codes are the numbers ggml gives them, so a code read from a GGUF
 * tensor header can be passed here as it is.  Every format stores a row
 * as a whole number of blocks; block layouts are byte for byte those of
 * GGUF files (little-endian, scale fields in IEEE half precision):
 *
 *   type   block  bytes  layout
 *   F32        1      4  float
 *   F16        1      2  IEEE binary16
 *   BF16       1      2  the high half of a float
 *   Q4_0      32     18  d:f16, qs[16]: x[j] = d*(lo(qs[j])-8), x[j+16] = d*(hi(qs[j])-8)
 *   Q4_1      32     20  d:f16, m:f16, qs[16]: x = d*q + m, nibbles as in Q4_0
 *   Q5_0      32     22  d:f16, qh:u32, qs[16]: 5th bit of x[i] is bit i of qh; x = d*(q-16)
 *   Q5_1      32     24  d:f16, m:f16, qh:u32, qs[16]: x = d*q + m
 *   Q8_0      32     34  d:f16, qs[32] int8: x = d*q
 *   Q8_1      32     36  d:f16, s:f16 (d times the sum of qs), qs[32] int8  (activations only)
 *   Q2_K     256     84  scales[16], qs[64], d:f16, dmin:f16               (storage only)
 *   Q3_K     256    110  hmask[32], qs[64], scales[12], d:f16              (storage only)
 *   Q4_K     256    144  d:f16, dmin:f16, scales[12], qs[128]
 *   Q5_K     256    176  d:f16, dmin:f16, scales[12], qh[32], qs[128]
 *   Q6_K     256    210  ql[128], qh[64], scales[16] int8, d:f16
 *   Q8_K     256    292  d:f32, qs[256] int8, bsums[16] int16 (sums of 16 qs)
 *
 * Q4_K and Q5_K split a block into eight sub-blocks of 32, each with a
 * 6-bit scale and a 6-bit min packed into the 12 scale bytes; x = d*sc*q
 * - dmin*m.  Q6_K has sixteen sub-blocks of 16 with int8 scales; x =
 * d*sc*(q-32).  The details are in tl_quant.c.
 *
 * A type may be storage-only: it is in the table with its name and block
 * geometry, so a GGUF file holding it can be read and sized, but it has
 * no conversions or dot products yet (its function pointers are NULL).
 * tl_quant_vec_dot gives NULL for it and the matrix products refuse it
 * with TL_ERR_UNAVAILABLE.  Anyone calling the traits' functions directly
 * must check them for NULL first.
 *
 * Dot products take one row of weights and one row of activations
 * already converted to the weight type's activation type (vec_dot_type):
 * Q8_1 for Q4_1 and Q5_1 (its stored block sums serve their minimums),
 * Q8_0 for the other 32-blocks, Q8_K for the K-quants, F32 for the float
 * formats.  Each type has a scalar reference; most have an AVX2 version
 * as well, chosen at run time when the CPU has AVX2, FMA and F16C (set the
 * environment variable TL_QUANT_SCALAR=1, or call
 * tl_quant_force_scalar(true), to use the references everywhere).
 *
 * Rows passed to these functions must be aligned to 2 bytes (4 for F32
 * and Q8_K): GGUF aligns tensor data to 32 bytes, so rows of a mapped
 * file are.  Q8_0 activations must lie in -127..127, as from_float makes
 * them (the AVX2 dot products rely on it).  Only tl_quant_matmul and
 * tl_quant_matvec allocate or report errors; everything else may run on
 * pool workers.
 */
#ifndef TL_QUANT_H
#define TL_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_status.h"

typedef enum tl_qtype
{
	TL_QT_F32 = 0,
	TL_QT_F16 = 1,
	TL_QT_Q4_0 = 2,
	TL_QT_Q4_1 = 3,
	TL_QT_Q5_0 = 6,
	TL_QT_Q5_1 = 7,
	TL_QT_Q8_0 = 8,
	TL_QT_Q8_1 = 9,				/* activations of Q4_1, Q5_1 */
	TL_QT_Q2_K = 10,			/* storage only */
	TL_QT_Q3_K = 11,			/* storage only */
	TL_QT_Q4_K = 12,
	TL_QT_Q5_K = 13,
	TL_QT_Q6_K = 14,
	TL_QT_Q8_K = 15,
	TL_QT_BF16 = 30,
	TL_QT_LIMIT = 31			/* every known code is below this */
} tl_qtype;

#define TL_QK 32				/* elements per block of Q4_0 .. Q8_0 */
#define TL_QK_K 256				/* elements per block of the K-quants */
#define TL_K_SCALE_SIZE 12		/* packed scale bytes of Q4_K and Q5_K */

/* Block layouts.  Half-precision fields are raw uint16_t bits. */
typedef struct tl_block_q4_0
{
	uint16_t	d;
	uint8_t		qs[TL_QK / 2];
} tl_block_q4_0;

typedef struct tl_block_q4_1
{
	uint16_t	d;
	uint16_t	m;
	uint8_t		qs[TL_QK / 2];
} tl_block_q4_1;

typedef struct tl_block_q5_0
{
	uint16_t	d;
	uint8_t		qh[4];			/* a little-endian u32; not aligned to 4 */
	uint8_t		qs[TL_QK / 2];
} tl_block_q5_0;

typedef struct tl_block_q5_1
{
	uint16_t	d;
	uint16_t	m;
	uint8_t		qh[4];
	uint8_t		qs[TL_QK / 2];
} tl_block_q5_1;

typedef struct tl_block_q8_0
{
	uint16_t	d;
	int8_t		qs[TL_QK];
} tl_block_q8_0;

typedef struct tl_block_q8_1
{
	uint16_t	d;
	uint16_t	s;				/* d times the sum of qs */
	int8_t		qs[TL_QK];
} tl_block_q8_1;

typedef struct tl_block_q4_K
{
	uint16_t	d;
	uint16_t	dmin;
	uint8_t		scales[TL_K_SCALE_SIZE];
	uint8_t		qs[TL_QK_K / 2];
} tl_block_q4_K;

typedef struct tl_block_q5_K
{
	uint16_t	d;
	uint16_t	dmin;
	uint8_t		scales[TL_K_SCALE_SIZE];
	uint8_t		qh[TL_QK_K / 8];
	uint8_t		qs[TL_QK_K / 2];
} tl_block_q5_K;

typedef struct tl_block_q6_K
{
	uint8_t		ql[TL_QK_K / 2];	/* low 4 bits */
	uint8_t		qh[TL_QK_K / 4];	/* high 2 bits */
	int8_t		scales[TL_QK_K / 16];
	uint16_t	d;
} tl_block_q6_K;

typedef struct tl_block_q8_K
{
	float		d;
	int8_t		qs[TL_QK_K];
	int16_t		bsums[TL_QK_K / 16];
} tl_block_q8_K;

/* n elements: n is a multiple of the type's block size. */
typedef void (*tl_to_float_fn) (const void *src, float *dst, int64_t n);
typedef void (*tl_from_float_fn) (const float *src, void *dst, int64_t n);
/* sum_i w[i]*a[i] over n elements; a is in the type's vec_dot_type. */
typedef float (*tl_vec_dot_fn) (int64_t n, const void *w, const void *a);
/*
 * Four rows at once: out[r] = dot(row r, a) for the rows at w, w + stride,
 * w + 2 stride, w + 3 stride, each summed exactly as the one-row function
 * sums it (the activations are loaded and converted once for the four).
 */
typedef void (*tl_vec_dot4_fn) (int64_t n, const void *w, size_t stride, const void *a, float *out);

typedef struct tl_qtype_traits
{
	const char *name;			/* "Q4_K", as ggml names it */
	int32_t		block_size;		/* elements per block */
	int32_t		type_size;		/* bytes per block */
	tl_qtype	vec_dot_type;	/* what activations are converted to (for a
								 * storage-only type: what ggml pairs it
								 * with; unused here) */
	/* all four NULL for a storage-only type */
	tl_to_float_fn to_float;
	tl_from_float_fn from_float;
	tl_vec_dot_fn vec_dot;		/* scalar reference */
	tl_vec_dot_fn vec_dot_avx2; /* AVX2+FMA+F16C version, or NULL */
	tl_from_float_fn from_float_avx2;	/* the same for from_float (same
										 * result), or NULL */
	tl_vec_dot4_fn vec_dot4_avx2;	/* four rows of vec_dot_avx2, or NULL */
	/*
	 * The dot product for a matmul of two or more vectors, where llama.cpp
	 * sums those in another order than a single vector's (F16: its tiled
	 * GEMM against its vector dot product), or NULL: vec_dot serves all.
	 */
	tl_vec_dot_fn vec_dot_batch;
	tl_vec_dot_fn vec_dot_batch_avx2;
} tl_qtype_traits;

/*
 * The traits of a type code, or NULL when it is not one of the above.
 * Storage-only types have traits too: test vec_dot before computing.
 */
const tl_qtype_traits *tl_qtype_info(int type);

/* The name of a type code ("Q6_K"), or "unknown". */
const char *tl_qtype_name(int type);

/* Bytes of a row of n elements; 0 when n is not a whole number of blocks. */
size_t		tl_qtype_row_size(tl_qtype type, int64_t n);

/*
 * The dot product used for a type on this machine: the AVX2 version when
 * there is one, the CPU has AVX2, FMA and F16C, and scalar use is not
 * forced; else the reference.  NULL for an unknown or storage-only type.
 */
tl_vec_dot_fn tl_quant_vec_dot(tl_qtype type);

/* The same for a matmul of n vectors (vec_dot_batch when n >= 2 and the type has one). */
tl_vec_dot_fn tl_quant_vec_dot_for(tl_qtype type, int64_t n);

/*
 * Summation orders for products of half-precision rows.  llama.cpp's CPU
 * backend sums K.q and probabilities x V one way for a batch of tokens
 * (its tiled matrix product: one accumulator of eight lanes along the
 * whole length) and another for a single token (its vector dot product:
 * four accumulators of eight lanes over chunks of 32, a remainder added
 * in double).  Following both is what lets a prompt and the tokens
 * generated after it match llama.cpp bit for bit.
 */
typedef enum tl_f16_order
{
	TL_F16_TILED,				/* 8 lanes: element i in lane i % 8 */
	TL_F16_VEC					/* 32 lanes: element i in lane i % 32 */
} tl_f16_order;

#define TL_F16_MAX_LANES 32

static inline int
tl_f16_lanes(tl_f16_order order)
{
	return order == TL_F16_VEC ? 32 : 8;
}

/*
 * The sum of the lanes lane[i * stride], i < tl_f16_lanes(order), in the
 * order's own tree: TILED ((0+4)+(2+6)) + ((1+5)+(3+7)); VEC first
 * a_i = (l_i + l_i+16) + (l_i+8 + l_i+24), then the TILED tree's shape
 * over a_0..a_7 as ((a0+a4)+(a1+a5)) + ((a2+a6)+(a3+a7)).
 */
float		tl_quant_f16_lanes_sum(const float *lane, size_t stride, tl_f16_order order);

/*
 * Attention over a half-precision KV cache, for n_heads query heads of
 * head_dim D that share one key/value head (grouped-query attention):
 * each cached row is converted once for all of them.  L below is
 * tl_f16_lanes(order); every product is a fused multiply-add.
 *
 *	 scores: out[h * out_stride + p] = k_p . q_h for p < n_pos, where
 *			 k_p = k + p * k_stride and q_h = q + h * D: element d in lane
 *			 d % L, the lanes summed by tl_quant_f16_lanes_sum; in VEC
 *			 order the elements past the last whole 32 are added to that
 *			 sum in double instead
 *	 mix:    lanes[(h * L + (first + p) % L) * D + d] += prob[h * prob_stride + p] * v_p[d]
 *			 (a caller sums the lanes of each (h, d) with
 *			 tl_quant_f16_lanes_sum, stride D; llama.cpp pads the cache
 *			 to a multiple of 256 positions, so its VEC order has no
 *			 remainder there)
 *
 * The AVX2 versions are chosen as for the dot products; the scalar ones
 * use fmaf in the same order and give the same bits.
 */
typedef void (*tl_f16_scores_fn) (int D, int n_heads, const float *q, const uint16_t *k,
								  size_t k_stride, int n_pos, float *out, size_t out_stride,
								  tl_f16_order order);
typedef void (*tl_f16_mix_fn) (int D, int n_heads, const float *prob, size_t prob_stride,
							   const uint16_t *v, size_t v_stride, int n_pos, int first,
							   float *lanes, tl_f16_order order);
tl_f16_scores_fn tl_quant_f16_scores(void);
tl_f16_mix_fn tl_quant_f16_mix(void);

/* The four-row dot product for a type on this machine, or NULL (use vec_dot). */
tl_vec_dot4_fn tl_quant_vec_dot4(tl_qtype type);

/*
 * The conversion from float used for a type on this machine (the AVX2
 * version when there is one and it may be chosen; results are identical).
 * NULL for an unknown or storage-only type.
 */
tl_from_float_fn tl_quant_from_float(tl_qtype type);

/* x[i] rounded to half precision and back, in place (as ggml rounds F16 operands). */
void		tl_quant_round_half(float *x, int64_t n);

/* Force (or stop forcing) the scalar references; for tests and benches. */
void		tl_quant_force_scalar(bool on);

/* Whether the AVX2 versions may be chosen (CPU support, not forced off). */
bool		tl_quant_simd_active(void);

/* Exact conversions: round to nearest even; NaN stays NaN (quietened). */
float		tl_fp16_to_f32(uint16_t h);
uint16_t	tl_f32_to_fp16(float f);
float		tl_bf16_to_f32(uint16_t h);
uint16_t	tl_f32_to_bf16(float f);

/*
 * y = W x for W (rows x cols) stored in `type`, row-major as in GGUF (cols
 * varies fastest), and x a float vector of cols.  x is converted once to
 * the activation type; rows are split across the core's thread pool.
 * TL_ERR_ARG for NULLs, unknown types, misaligned W; TL_ERR_UNAVAILABLE
 * for a storage-only type; TL_ERR_SHAPE for extents below 1 or cols not
 * a multiple of the block size.
 */
tl_status	tl_quant_matvec(float *y, const void *w, tl_qtype type,
							int64_t rows, int64_t cols, const float *x);

/*
 * The same for n vectors: x is (n, cols), y is (n, rows), so
 * y[v][r] = dot(W[r], x[v]) -- a linear layer without bias.
 */
tl_status	tl_quant_matmul(float *y, const void *w, tl_qtype type,
							int64_t rows, int64_t cols, const float *x, int64_t n);

/*
 * Several products that share one input: specs[i].y = W_i x for each of
 * 1..4 weight matrices with `cols` columns (Q, K and V of an attention
 * layer; the gate and up projections of a feed-forward one).  The input
 * is converted once per activation type and all rows go to the pool in
 * one run.  Errors as for tl_quant_matmul, checked before any work.
 */
typedef struct tl_qmm_spec
{
	float	   *y;				/* (n, rows) */
	const void *w;				/* (rows, cols) in type */
	tl_qtype	type;
	int64_t		rows;
} tl_qmm_spec;

tl_status	tl_quant_matmul_multi(const tl_qmm_spec *specs, int n_specs, int64_t cols,
								  const float *x, int64_t n);

#endif							/* TL_QUANT_H */
