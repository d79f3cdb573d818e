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

#endif							/* TL_CUDA_INTERNAL_CUH */
