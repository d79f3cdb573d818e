/*
 * tl_cuda_api.h -- the boundary between the core and the CUDA plugin.
 *
 * The CUDA sources under kernels/ build into a separate shared object
 * that links the CUDA runtime and cuBLAS.  The core never links them: it
 * dlopen()s the plugin on first use and asks it for this table.  Where
 * the CUDA libraries, the driver or a device are missing, the dlopen or
 * init fails softly and the core stays on the CPU.
 *
 * Rules for every entry:
 *   - returns 0 (TL_OK) on success, a tl_status code otherwise, with a
 *     message available from last_error();
 *   - never aborts, exits or prints;
 *   - pointers named d_* are device pointers; layouts and semantics are
 *     exactly those of the CPU op of the same name in tl_ops.h;
 *   - every call is synchronous with respect to the host when it returns
 *     a scalar to host memory (losses), otherwise it may be asynchronous
 *     until synchronize() or a memcpy.
 */
#ifndef TL_CUDA_API_H
#define TL_CUDA_API_H

#include <stddef.h>
#include <stdint.h>

#define TL_CUDA_ABI_VERSION 3
#define TL_CUDA_ENTRY "tl_cuda_get_api"

typedef struct tl_cuda_device_props
{
	char		name[256];
	uint64_t	total_memory;	/* bytes */
	uint64_t	free_memory;	/* bytes, at the time of the call */
	int			compute_major;
	int			compute_minor;
} tl_cuda_device_props;

typedef struct tl_cuda_api
{
	int			abi_version;	/* TL_CUDA_ABI_VERSION */

	/* ---- life cycle ---- */
	int			(*device_count) (int *count);	/* 0 devices is success */
	int			(*device_props) (int ordinal, tl_cuda_device_props *props);
	int			(*init) (int ordinal);	/* select device, create cuBLAS handle */
	int			(*shutdown) (void);
	const char *(*last_error) (void);

	/* ---- memory ---- */
	int			(*alloc) (void **d_ptr, size_t bytes);
	int			(*release) (void *d_ptr);
	int			(*upload) (void *d_dst, const void *h_src, size_t bytes);
	int			(*download) (void *h_dst, const void *d_src, size_t bytes);
	int			(*synchronize) (void);

	/* ---- forward ops (see tl_ops.h for semantics) ---- */
	/* out (n, d) = table (vocab, d)[idx]; idx -1 gives a zero row; other out-of-range idx fail. */
	int			(*embedding_fwd) (float *d_out, const float *d_table, const int32_t *d_idx,
								  int64_t n, int64_t vocab, int64_t d);
	/* y (n, out) = x (n, in) @ w (out, in)^T + b; d_b may be NULL.  cuBLAS sgemm. */
	int			(*linear_fwd) (float *d_y, const float *d_x, const float *d_w, const float *d_b,
							   int64_t n, int64_t in, int64_t out);
	int			(*layernorm_fwd) (float *d_y, float *d_mean, float *d_rstd, const float *d_x,
								  const float *d_gamma, const float *d_beta,
								  int64_t n, int64_t d, float eps);
	int			(*rmsnorm_fwd) (float *d_y, float *d_rstd, const float *d_x, const float *d_gamma,
								int64_t n, int64_t d, float eps);
	int			(*gelu_fwd) (float *d_y, const float *d_x, int64_t n);
	int			(*silu_fwd) (float *d_y, const float *d_x, int64_t n);
	int			(*softmax_fwd) (float *d_y, const float *d_x, int64_t rows, int64_t cols);
	/*
	 * q, k, v, out (B, T, H*hd); probs (B, H, T, T); key_valid B*T bytes or
	 * NULL; alibi nonzero adds -tl_alibi_slope(h, H) * (i - j) to scores.
	 */
	int			(*attention_fwd) (float *d_out, float *d_probs, const float *d_q, const float *d_k,
								  const float *d_v, const uint8_t *d_key_valid,
								  int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
								  int alibi);
	int			(*dropout_fwd) (float *d_y, const float *d_x, int64_t n, float p,
								uint64_t seed, uint64_t offset);
	/* Mean loss written to host *h_loss. */
	int			(*cross_entropy_fwd) (float *h_loss, const float *d_logits, const int32_t *d_targets,
									  int64_t n, int64_t classes);
	int			(*bce_logits_fwd) (float *h_loss, const float *d_logits, const float *d_targets,
								   const float *d_weights, int64_t n);

	/*
	 * ---- the language model (ABI 3; see kernels/cuda_llm.cu) ----
	 * Weights in GGUF block types (F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0;
	 * TL_ERR_UNAVAILABLE for others), decoded in the kernels; caches in
	 * half precision as uint16_t bits.
	 */
	/* y (n, rows) = x (n, cols) . W^T, W (rows, cols) of `type` (a tl_qtype) */
	int			(*qmatmul) (float *d_y, const void *d_w, int type, int64_t rows, int64_t cols,
							const float *d_x, int64_t n);
	/* out (n, cols) = W's rows idx, decoded; an index outside [0, rows) gives zeros */
	int			(*get_rows) (float *d_out, const void *d_w, int type, int64_t rows, int64_t cols,
							 const int32_t *d_idx, int64_t n);
	/* rotate x (n, heads, head_dim) in place for positions pos0..pos0+n-1 (tl_llm.h) */
	int			(*rope) (float *d_x, int64_t n, int64_t heads, int64_t head_dim, int64_t rope_dim,
						 int64_t pos0, float base, float freq_scale, const float *d_factors, int halves);
	/* cache rows pos0..pos0+n-1 (each `width` halves) = x (n, width) rounded to half */
	int			(*kv_store) (uint16_t *d_cache, const float *d_x, int64_t n, int64_t width, int64_t pos0);
	/*
	 * out, q (n, heads, head_dim); k, v caches (n_ctx, kv_heads, head_dim):
	 * token t attends to positions 0..pos0+t with scores scaled by `scale`
	 */
	int			(*attention_cached) (float *d_out, const float *d_q, const uint16_t *d_k,
									 const uint16_t *d_v, int64_t n, int64_t heads, int64_t kv_heads,
									 int64_t head_dim, int64_t pos0, int64_t n_ctx, float scale);
	/* gate = silu(gate) * up over n elements */
	int			(*swiglu) (float *d_gate, const float *d_up, int64_t n);
	/* y += x over n elements */
	int			(*add) (float *d_y, const float *d_x, int64_t n);
} tl_cuda_api;

typedef const tl_cuda_api *(*tl_cuda_get_api_fn) (void);

#endif							/* TL_CUDA_API_H */
