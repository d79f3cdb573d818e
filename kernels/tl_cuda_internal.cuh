/*
 * tl_cuda_internal.cuh -- shared between the plugin's translation units.
 *
 * Not part of the plugin's interface: the core only sees tl_cuda_api.h.
 * The plugin keeps a little global state (the cuBLAS handle, a scratch
 * buffer); PostgreSQL backends are single-threaded, so it is not locked.
 * The last-error message is thread-local, as in the core.
 */
#ifndef TL_CUDA_INTERNAL_CUH
#define TL_CUDA_INTERNAL_CUH

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>
#include <cublas_v2.h>

extern "C"
{
#include "tl_cuda_api.h"
#include "tl_status.h"
}

/* Everything but the entry point stays out of the dynamic symbol table. */
#define TLCU_HIDDEN __attribute__((visibility("hidden")))

/* Threads per block for elementwise and row kernels. */
#define TLCU_BLOCK 256

/* Record a printf-style message; returns code. */
TLCU_HIDDEN int tlcu_fail(int code, const char *fmt, ...)
			__attribute__((format(printf, 2, 3)));

/*
 * Turn a CUDA runtime error into a status: allocation failure is
 * TL_ERR_NOMEM, anything else TL_ERR_DEVICE.  `what` names the call.
 */
TLCU_HIDDEN int tlcu_cuda_fail(cudaError_t err, const char *what);
TLCU_HIDDEN int tlcu_cublas_fail(cublasStatus_t st, const char *what);

/* TL_ERR_DEVICE unless init() succeeded; `op` names the caller. */
TLCU_HIDDEN int tlcu_require_init(const char *op);

/* The handle created by init(); NULL before. */
TLCU_HIDDEN cublasHandle_t tlcu_cublas(void);

/*
 * A device scratch buffer of at least `bytes`, kept between calls and
 * freed by shutdown().  Every kernel runs on the legacy default stream,
 * so a later user of the buffer is ordered after an earlier one; growing
 * it uses cudaFree, which waits for the device first.
 */
TLCU_HIDDEN int tlcu_scratch(void **d_ptr, size_t bytes);

/* Free the scratch buffer (shutdown). */
TLCU_HIDDEN void tlcu_scratch_release(void);

#define TLCU_CUDA_TRY(expr, what) \
	do { \
		cudaError_t tlcu_err_ = (expr); \
		if (tlcu_err_ != cudaSuccess) \
			return tlcu_cuda_fail(tlcu_err_, (what)); \
	} while (0)

/* Launch errors (bad configuration, no kernel image for this device). */
#define TLCU_LAUNCH_CHECK(what) TLCU_CUDA_TRY(cudaGetLastError(), (what))

/* ---- reductions, for the kernels of every translation unit ---- */

struct SumOp
{
	template <typename T> __device__ __forceinline__ T operator() (T a, T b) const { return a + b; }
};

struct MaxOp
{
	template <typename T> __device__ __forceinline__ T operator() (T a, T b) const { return a > b ? a : b; }
};

template <typename T, typename Op>
__device__ __forceinline__ T
warp_reduce(T v, Op op)
{
	for (int o = 16; o > 0; o >>= 1)
		v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

/*
 * Block-wide reduction, returned to every thread.  Every thread of the
 * block must call it (it synchronises); blockDim.x is a multiple of 32.
 * `sh` holds 33 values.  The leading barrier lets one `sh` serve calls in
 * a row: nobody overwrites it while another thread still reads sh[32].
 * `identity` fills the lanes past the last warp.
 */
template <typename T, typename Op>
__device__ T
block_reduce(T v, T *sh, T identity, Op op)
{
	const int	lane = threadIdx.x & 31;
	const int	warp = threadIdx.x >> 5;
	const int	nwarps = blockDim.x >> 5;

	v = warp_reduce(v, op);
	__syncthreads();
	if (lane == 0)
		sh[warp] = v;
	__syncthreads();
	if (warp == 0)
	{
		v = (lane < nwarps) ? sh[lane] : identity;
		v = warp_reduce(v, op);
		if (lane == 0)
			sh[32] = v;
	}
	__syncthreads();
	return sh[32];
}

__device__ __forceinline__ float warp_sum(float v) { return warp_reduce(v, SumOp()); }
__device__ __forceinline__ float block_sum(float v, float *sh) { return block_reduce(v, sh, 0.0f, SumOp()); }
__device__ __forceinline__ double block_sum_d(double v, double *sh) { return block_reduce(v, sh, 0.0, SumOp()); }
__device__ __forceinline__ float block_max(float v, float *sh) { return block_reduce(v, sh, -INFINITY, MaxOp()); }

/* The forward ops, defined in cuda_ops.cu, put in the table by cuda_runtime.cu. */
TLCU_HIDDEN int tlcu_embedding_fwd(float *d_out, const float *d_table, const int32_t *d_idx,
								   int64_t n, int64_t vocab, int64_t d);
TLCU_HIDDEN int tlcu_linear_fwd(float *d_y, const float *d_x, const float *d_w, const float *d_b,
								int64_t n, int64_t in, int64_t out);
TLCU_HIDDEN int tlcu_layernorm_fwd(float *d_y, float *d_mean, float *d_rstd, const float *d_x,
								   const float *d_gamma, const float *d_beta,
								   int64_t n, int64_t d, float eps);
TLCU_HIDDEN int tlcu_rmsnorm_fwd(float *d_y, float *d_rstd, const float *d_x, const float *d_gamma,
								 int64_t n, int64_t d, float eps);
TLCU_HIDDEN int tlcu_gelu_fwd(float *d_y, const float *d_x, int64_t n);
TLCU_HIDDEN int tlcu_silu_fwd(float *d_y, const float *d_x, int64_t n);
TLCU_HIDDEN int tlcu_softmax_fwd(float *d_y, const float *d_x, int64_t rows, int64_t cols);
TLCU_HIDDEN int tlcu_attention_fwd(float *d_out, float *d_probs, const float *d_q, const float *d_k,
								   const float *d_v, const uint8_t *d_key_valid,
								   int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
								   int alibi);
TLCU_HIDDEN int tlcu_dropout_fwd(float *d_y, const float *d_x, int64_t n, float p,
								 uint64_t seed, uint64_t offset);
TLCU_HIDDEN int tlcu_cross_entropy_fwd(float *h_loss, const float *d_logits, const int32_t *d_targets,
									   int64_t n, int64_t classes);
TLCU_HIDDEN int tlcu_bce_logits_fwd(float *h_loss, const float *d_logits, const float *d_targets,
									const float *d_weights, int64_t n);

/* The language model's ops (cuda_llm.cu). */
TLCU_HIDDEN int tlcu_qmatmul(float *d_y, const void *d_w, int type, int64_t rows, int64_t cols,
							 const float *d_x, int64_t n);
TLCU_HIDDEN int tlcu_get_rows(float *d_out, const void *d_w, int type, int64_t rows, int64_t cols,
							  const int32_t *d_idx, int64_t n);
TLCU_HIDDEN int tlcu_rope(float *d_x, int64_t n, int64_t heads, int64_t head_dim, int64_t rope_dim,
						  int64_t pos0, float base, float freq_scale, const float *d_factors, int halves);
TLCU_HIDDEN int tlcu_kv_store(uint16_t *d_cache, const float *d_x, int64_t n, int64_t width, int64_t pos0);
TLCU_HIDDEN int tlcu_attention_cached(float *d_out, const float *d_q, const uint16_t *d_k, const uint16_t *d_v,
									  int64_t n, int64_t heads, int64_t kv_heads, int64_t head_dim,
									  int64_t pos0, int64_t n_ctx, float scale);
TLCU_HIDDEN int tlcu_swiglu(float *d_gate, const float *d_up, int64_t n);
TLCU_HIDDEN int tlcu_add(float *d_y, const float *d_x, int64_t n);

#endif							/* TL_CUDA_INTERNAL_CUH */
