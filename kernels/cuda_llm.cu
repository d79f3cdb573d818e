/*
 * cuda_llm.cu -- the language model's ops in the CUDA plugin (ABI 3).
 *
 * Weights stay on the device in their GGUF block formats and are decoded
 * inside the kernels ("dequantize on the fly"); activations are float.
 * Semantics follow src/llm/tl_llm.c and src/core/tl_quant.c, which are
 * the reference for the parity test (test/cuda/test_parity.c):
 *
 *	 qmatmul     y (n, rows) = x (n, cols) . W^T, W in F32, F16, Q4_0, Q4_1,
 *				 Q5_0, Q5_1 or Q8_0; one warp per (row, vector)
 *	 get_rows    out (n, cols) = the rows idx of W, decoded
 *	 rope        rotate (n, heads, head_dim) in place at positions pos0..
 *	 kv_store    write float rows into a half-precision cache at pos0..
 *	 attention_cached  token t attends to cache positions 0..pos0+t; one
 *				 block per (token, head), scores in a global scratch row
 *	 swiglu, add elementwise
 *
 * The arithmetic is plain float (no int8 activations, no llama.cpp
 * ordering): the GPU path agrees with the CPU path within a tolerance,
 * not bit for bit.
 */
#include <cmath>

#include <cuda_fp16.h>

#include "tl_cuda_internal.cuh"

extern "C"
{
#include "tl_quant.h"
}

#define TLCU_CHECK_ARG(cond, ...) \
	do { if (!(cond)) return tlcu_fail(TL_ERR_ARG, __VA_ARGS__); } while (0)

/* ---- block decoding ---------------------------------------------------------- */

/*
 * Elements and bytes per block of the types with kernels here (the
 * plugin does not link the core, so not tl_qtype_info).  0 when none.
 */
static void
tlcu_type_geometry(int type, int *block, size_t *bytes)
{
	*block = 32;
	switch (type)
	{
		case TL_QT_F32:
			*block = 1, *bytes = 4;
			break;
		case TL_QT_F16:
			*block = 1, *bytes = 2;
			break;
		case TL_QT_Q4_0:
			*bytes = sizeof(tl_block_q4_0);
			break;
		case TL_QT_Q4_1:
			*bytes = sizeof(tl_block_q4_1);
			break;
		case TL_QT_Q5_0:
			*bytes = sizeof(tl_block_q5_0);
			break;
		case TL_QT_Q5_1:
			*bytes = sizeof(tl_block_q5_1);
			break;
		case TL_QT_Q8_0:
			*bytes = sizeof(tl_block_q8_0);
			break;
		default:
			*block = 0, *bytes = 0;
	}
}

template <int TYPE> struct tlcu_block;
template <> struct tlcu_block<TL_QT_Q4_0> { typedef tl_block_q4_0 type; };
template <> struct tlcu_block<TL_QT_Q4_1> { typedef tl_block_q4_1 type; };
template <> struct tlcu_block<TL_QT_Q5_0> { typedef tl_block_q5_0 type; };
template <> struct tlcu_block<TL_QT_Q5_1> { typedef tl_block_q5_1 type; };
template <> struct tlcu_block<TL_QT_Q8_0> { typedef tl_block_q8_0 type; };

__device__ __forceinline__ float
half_bits(uint16_t h)
{
	return __half2float(__ushort_as_half(h));
}

/* Element j (0..31) of a 32-block; the layouts of tl_quant.h. */
template <int TYPE>
__device__ __forceinline__ float block32_value(const uint8_t *b, int j);

template <> __device__ __forceinline__ float
block32_value<TL_QT_Q4_0>(const uint8_t *b, int j)
{
	const tl_block_q4_0 *x = (const tl_block_q4_0 *) b;
	int			q = j < 16 ? (x->qs[j] & 0x0f) : (x->qs[j - 16] >> 4);

	return half_bits(x->d) * (float) (q - 8);
}

template <> __device__ __forceinline__ float
block32_value<TL_QT_Q4_1>(const uint8_t *b, int j)
{
	const tl_block_q4_1 *x = (const tl_block_q4_1 *) b;
	int			q = j < 16 ? (x->qs[j] & 0x0f) : (x->qs[j - 16] >> 4);

	return half_bits(x->d) * (float) q + half_bits(x->m);
}

__device__ __forceinline__ int
level5(const uint8_t *qs, const uint8_t *qh, int j)
{
	uint32_t	h = (uint32_t) qh[0] | ((uint32_t) qh[1] << 8) | ((uint32_t) qh[2] << 16) | ((uint32_t) qh[3] << 24);
	int			lo = j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);

	return lo | (int) (((h >> j) & 1u) << 4);
}

template <> __device__ __forceinline__ float
block32_value<TL_QT_Q5_0>(const uint8_t *b, int j)
{
	const tl_block_q5_0 *x = (const tl_block_q5_0 *) b;

	return half_bits(x->d) * (float) (level5(x->qs, x->qh, j) - 16);
}

template <> __device__ __forceinline__ float
block32_value<TL_QT_Q5_1>(const uint8_t *b, int j)
{
	const tl_block_q5_1 *x = (const tl_block_q5_1 *) b;

	return half_bits(x->d) * (float) level5(x->qs, x->qh, j) + half_bits(x->m);
}

template <> __device__ __forceinline__ float
block32_value<TL_QT_Q8_0>(const uint8_t *b, int j)
{
	const tl_block_q8_0 *x = (const tl_block_q8_0 *) b;

	return half_bits(x->d) * (float) x->qs[j];
}

/* Element c of a row of a 32-block type, of F32, or of F16. */
template <int TYPE>
__device__ __forceinline__ float
row_value(const uint8_t *row, int64_t c)
{
	return block32_value<TYPE>(row + (c / 32) * sizeof(typename tlcu_block<TYPE>::type), (int) (c % 32));
}

template <> __device__ __forceinline__ float
row_value<TL_QT_F32>(const uint8_t *row, int64_t c)
{
	return ((const float *) row)[c];
}

template <> __device__ __forceinline__ float
row_value<TL_QT_F16>(const uint8_t *row, int64_t c)
{
	return half_bits(((const uint16_t *) row)[c]);
}

/* ---- qmatmul ---------------------------------------------------------------- */

/*
 * One warp per (row, vector): lanes walk the row's elements 32 apart, so
 * lane j decodes element j of each block (neighbouring lanes read
 * neighbouring bytes), and a shuffle sum ends it.
 */
template <int TYPE>
__global__ void
qmatmul_kernel(float *y, const uint8_t *w, size_t row_bytes, int64_t rows, int64_t cols,
			   const float *x, int64_t n)
{
	const int	lane = threadIdx.x & 31;
	const int64_t warps_per_block = blockDim.x >> 5;

	for (int64_t r = blockIdx.x * warps_per_block + (threadIdx.x >> 5); r < rows; r += gridDim.x * warps_per_block)
		for (int64_t v = blockIdx.y; v < n; v += gridDim.y)
		{
			const uint8_t *wr = w + (size_t) r * row_bytes;
			const float *xv = x + v * cols;
			float		s = 0.0f;

			for (int64_t c = lane; c < cols; c += 32)
				s += row_value<TYPE>(wr, c) * xv[c];
			for (int o = 16; o > 0; o >>= 1)
				s += __shfl_xor_sync(0xffffffffu, s, o);
			if (lane == 0)
				y[v * rows + r] = s;
		}
}

template <int TYPE>
__global__ void
get_rows_kernel(float *out, const uint8_t *w, size_t row_bytes, int64_t rows, int64_t cols,
				const int32_t *idx, int64_t n)
{
	for (int64_t t = blockIdx.x; t < n; t += gridDim.x)
	{
		int32_t		r = idx[t];

		for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
			out[t * cols + c] = (r >= 0 && r < rows) ? row_value<TYPE>(w + (size_t) r * row_bytes, c) : 0.0f;
	}
}

/* Dispatch a templated kernel on a runtime type code. */
#define TLCU_FOR_TYPE(type, launch) \
	switch (type) \
	{ \
		case TL_QT_F32: launch(TL_QT_F32); break; \
		case TL_QT_F16: launch(TL_QT_F16); break; \
		case TL_QT_Q4_0: launch(TL_QT_Q4_0); break; \
		case TL_QT_Q4_1: launch(TL_QT_Q4_1); break; \
		case TL_QT_Q5_0: launch(TL_QT_Q5_0); break; \
		case TL_QT_Q5_1: launch(TL_QT_Q5_1); break; \
		case TL_QT_Q8_0: launch(TL_QT_Q8_0); break; \
		default: \
			return tlcu_fail(TL_ERR_UNAVAILABLE, "%s: tensor type %d has no CUDA kernel", op, type); \
	}

static int
tlcu_check_matrix(const char *op, int type, int64_t rows, int64_t cols, size_t *row_bytes)
{
	int			block;
	size_t		bytes;

	tlcu_type_geometry(type, &block, &bytes);
	if (block == 0)
		return tlcu_fail(TL_ERR_UNAVAILABLE, "%s: tensor type %d has no CUDA kernel", op, type);
	TLCU_CHECK_ARG(rows > 0 && cols > 0, "%s: extents %lld x %lld must be positive", op,
				   (long long) rows, (long long) cols);
	TLCU_CHECK_ARG(cols % block == 0, "%s: rows of %lld are not whole blocks of %d", op,
				   (long long) cols, block);
	*row_bytes = (size_t) (cols / block) * bytes;
	return TL_OK;
}

int
tlcu_qmatmul(float *d_y, const void *d_w, int type, int64_t rows, int64_t cols,
			 const float *d_x, int64_t n)
{
	const char *op = "qmatmul";
	size_t		row_bytes;
	int			rc;
	dim3		grid;

	TLCU_CHECK_ARG(d_y && d_w && d_x, "%s: NULL pointer", op);
	TLCU_CHECK_ARG(n > 0, "%s: %lld vectors", op, (long long) n);
	if ((rc = tlcu_check_matrix(op, type, rows, cols, &row_bytes)) != TL_OK)
		return rc;
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;
	grid = dim3((unsigned) ((rows + 7) / 8 < (1 << 20) ? (rows + 7) / 8 : (1 << 20)),
				(unsigned) (n < 65535 ? n : 65535));
#define TLCU_QMM(T) \
	qmatmul_kernel<T><<<grid, 256>>>(d_y, (const uint8_t *) d_w, row_bytes, rows, cols, d_x, n)
	TLCU_FOR_TYPE(type, TLCU_QMM);
#undef TLCU_QMM
	TLCU_LAUNCH_CHECK(op);
	return TL_OK;
}

int
tlcu_get_rows(float *d_out, const void *d_w, int type, int64_t rows, int64_t cols,
			  const int32_t *d_idx, int64_t n)
{
	const char *op = "get_rows";
	size_t		row_bytes;
	int			rc;
	unsigned	blocks = (unsigned) (n < (1 << 20) ? n : (1 << 20));

	TLCU_CHECK_ARG(d_out && d_w && d_idx, "%s: NULL pointer", op);
	TLCU_CHECK_ARG(n > 0, "%s: %lld rows asked", op, (long long) n);
	if ((rc = tlcu_check_matrix(op, type, rows, cols, &row_bytes)) != TL_OK)
		return rc;
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;
#define TLCU_ROWS(T) \
	get_rows_kernel<T><<<blocks, TLCU_BLOCK>>>(d_out, (const uint8_t *) d_w, row_bytes, rows, cols, d_idx, n)
	TLCU_FOR_TYPE(type, TLCU_ROWS);
#undef TLCU_ROWS
	TLCU_LAUNCH_CHECK(op);
	return TL_OK;
}

/* ---- rotary embeddings --------------------------------------------------------- */

/*
 * Pair i of each head turns by (pos * freq_scale / factor_i) * base^(-2i/rope_dim);
 * pairs are (2i, 2i+1) or, with halves, (i, i + rope_dim/2).
 */
__global__ void
rope_kernel(float *x, int64_t n, int64_t heads, int64_t head_dim, int64_t rope_dim, int64_t pos0,
			float base, float freq_scale, const float *factors, int halves)
{
	const int64_t half = rope_dim / 2;
	const int64_t total = n * heads * half;

	for (int64_t k = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; k < total; k += (int64_t) gridDim.x * blockDim.x)
	{
		int64_t		i = k % half,
					th = k / half,
					t = th / heads;
		float	   *v = x + th * head_dim;
		float		theta = (float) (pos0 + t) * powf(base, -2.0f * (float) i / (float) rope_dim);
		float		angle = freq_scale * (factors ? theta / factors[i] : theta);
		float		c = cosf(angle),
					s = sinf(angle);
		int64_t		a = halves ? i : 2 * i,
					b = halves ? i + half : 2 * i + 1;
		float		x0 = v[a],
					x1 = v[b];

		v[a] = x0 * c - x1 * s;
		v[b] = x0 * s + x1 * c;
	}
}

int
tlcu_rope(float *d_x, int64_t n, int64_t heads, int64_t head_dim, int64_t rope_dim, int64_t pos0,
		  float base, float freq_scale, const float *d_factors, int halves)
{
	const char *op = "rope";
	int			rc;

	TLCU_CHECK_ARG(d_x != NULL, "%s: NULL pointer", op);
	TLCU_CHECK_ARG(n > 0 && heads > 0 && head_dim > 0 && pos0 >= 0, "%s: bad extents", op);
	TLCU_CHECK_ARG(rope_dim >= 2 && rope_dim <= head_dim && rope_dim % 2 == 0,
				   "%s: rope_dim %lld must be even and in 2..%lld", op, (long long) rope_dim, (long long) head_dim);
	TLCU_CHECK_ARG(base > 0.0f && freq_scale > 0.0f, "%s: base and scale must be positive", op);
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;
	rope_kernel<<<(unsigned) ((n * heads * (rope_dim / 2) + TLCU_BLOCK - 1) / TLCU_BLOCK < (1 << 20) ?
							  (n * heads * (rope_dim / 2) + TLCU_BLOCK - 1) / TLCU_BLOCK : (1 << 20)),
		TLCU_BLOCK>>>(d_x, n, heads, head_dim, rope_dim, pos0, base, freq_scale, d_factors, halves);
	TLCU_LAUNCH_CHECK(op);
	return TL_OK;
}

/* ---- the half-precision KV cache ------------------------------------------------ */

__global__ void
kv_store_kernel(uint16_t *cache, const float *x, int64_t count, int64_t offset)
{
	for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < count; i += (int64_t) gridDim.x * blockDim.x)
		cache[offset + i] = __half_as_ushort(__float2half_rn(x[i]));
}

int
tlcu_kv_store(uint16_t *d_cache, const float *d_x, int64_t n, int64_t width, int64_t pos0)
{
	const char *op = "kv_store";
	int			rc;

	TLCU_CHECK_ARG(d_cache && d_x, "%s: NULL pointer", op);
	TLCU_CHECK_ARG(n > 0 && width > 0 && pos0 >= 0, "%s: bad extents", op);
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;
	kv_store_kernel<<<(unsigned) ((n * width + TLCU_BLOCK - 1) / TLCU_BLOCK < (1 << 20) ?
								  (n * width + TLCU_BLOCK - 1) / TLCU_BLOCK : (1 << 20)),
		TLCU_BLOCK>>>(d_cache, d_x, n * width, pos0 * width);
	TLCU_LAUNCH_CHECK(op);
	return TL_OK;
}

/*
 * One block per (token, head): scores of positions 0..pos0+t into the
 * block's scratch row, softmax, then each thread sums one or more output
 * dimensions over the positions.  k and v are (positions, kv_heads,
 * head_dim) in half precision; query head h reads kv head h / (heads /
 * kv_heads).  q is rounded to half precision first, as the CPU path does.
 */
__global__ void
attention_cached_kernel(float *out, const float *q, const uint16_t *k, const uint16_t *v, float *scratch,
						int64_t n, int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t pos0,
						int64_t n_ctx, float scale)
{
	__shared__ float sh[33];
	const int64_t group = heads / kv_heads;
	const int64_t kv_width = kv_heads * head_dim;

	for (int64_t item = blockIdx.x; item < n * heads; item += gridDim.x)
	{
		const int64_t t = item / heads,
					h = item % heads,
					g = h / group,
					n_pos = pos0 + t + 1;
		const float *qh = q + item * head_dim;
		float	   *sc = scratch + item * n_ctx;
		float		mx = -INFINITY,
					sum = 0.0f;

		for (int64_t p = threadIdx.x; p < n_pos; p += blockDim.x)
		{
			const uint16_t *kp = k + p * kv_width + g * head_dim;
			float		s = 0.0f;

			for (int64_t d = 0; d < head_dim; d++)
				s += half_bits(kp[d]) * __half2float(__float2half_rn(qh[d]));
			sc[p] = s * scale;
			mx = fmaxf(mx, sc[p]);
		}
		mx = block_max(mx, sh);
		for (int64_t p = threadIdx.x; p < n_pos; p += blockDim.x)
		{
			sc[p] = expf(sc[p] - mx);
			sum += sc[p];
		}
		sum = block_sum(sum, sh);
		__syncthreads();
		for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x)
		{
			float		acc = 0.0f;

			for (int64_t p = 0; p < n_pos; p++)
				acc += sc[p] * half_bits(v[p * kv_width + g * head_dim + d]);
			out[item * head_dim + d] = acc / sum;
		}
		__syncthreads();
	}
}

int
tlcu_attention_cached(float *d_out, const float *d_q, const uint16_t *d_k, const uint16_t *d_v,
					  int64_t n, int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t pos0,
					  int64_t n_ctx, float scale)
{
	const char *op = "attention_cached";
	void	   *scratch = NULL;
	int			rc;

	TLCU_CHECK_ARG(d_out && d_q && d_k && d_v, "%s: NULL pointer", op);
	TLCU_CHECK_ARG(n > 0 && heads > 0 && kv_heads > 0 && head_dim > 0 && pos0 >= 0,
				   "%s: bad extents", op);
	TLCU_CHECK_ARG(heads % kv_heads == 0, "%s: %lld heads over %lld key/value heads", op,
				   (long long) heads, (long long) kv_heads);
	TLCU_CHECK_ARG(pos0 + n <= n_ctx, "%s: positions up to %lld exceed the context of %lld", op,
				   (long long) (pos0 + n), (long long) n_ctx);
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;
	if ((rc = tlcu_scratch(&scratch, sizeof(float) * (size_t) (n * heads) * (size_t) n_ctx)) != TL_OK)
		return rc;
	attention_cached_kernel<<<(unsigned) (n * heads < (1 << 20) ? n * heads : (1 << 20)), 128>>>(
		d_out, d_q, d_k, d_v, (float *) scratch, n, heads, kv_heads, head_dim, pos0, n_ctx, scale);
	TLCU_LAUNCH_CHECK(op);
	return TL_OK;
}

/* ---- elementwise ----------------------------------------------------------------- */

__global__ void
swiglu_kernel(float *gate, const float *up, int64_t n)
{
	for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x)
		gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

__global__ void
add_kernel(float *y, const float *x, int64_t n)
{
	for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x)
		y[i] += x[i];
}

static unsigned
tlcu_elem_blocks(int64_t n)
{
	int64_t		b = (n + TLCU_BLOCK - 1) / TLCU_BLOCK;

	return (unsigned) (b < 1 ? 1 : b > (1 << 20) ? (1 << 20) : b);
}

int
tlcu_swiglu(float *d_gate, const float *d_up, int64_t n)
{
	int			rc;

	TLCU_CHECK_ARG(d_gate && d_up && n > 0, "swiglu: NULL pointer or empty");
	if ((rc = tlcu_require_init("swiglu")) != TL_OK)
		return rc;
	swiglu_kernel<<<tlcu_elem_blocks(n), TLCU_BLOCK>>>(d_gate, d_up, n);
	TLCU_LAUNCH_CHECK("swiglu");
	return TL_OK;
}

int
tlcu_add(float *d_y, const float *d_x, int64_t n)
{
	int			rc;

	TLCU_CHECK_ARG(d_y && d_x && n > 0, "add: NULL pointer or empty");
	if ((rc = tlcu_require_init("add")) != TL_OK)
		return rc;
	add_kernel<<<tlcu_elem_blocks(n), TLCU_BLOCK>>>(d_y, d_x, n);
	TLCU_LAUNCH_CHECK("add");
	return TL_OK;
}
