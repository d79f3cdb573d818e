/*
 * cuda_ops.cu -- forward ops of the CUDA plugin.
 *
 * Layouts and semantics are those of the CPU ops in src/core/tl_ops.h;
 * the CPU result is the reference.  The kernels aim at being plainly
 * correct: elementwise ops use grid-stride loops, row ops (norms,
 * softmax, cross entropy) one block per row with shared-memory
 * reductions, attention one block per (batch, head, query) row.
 * Everything runs on the legacy default stream, in order.
 *
 * Each op checks its arguments before touching any output and returns
 * TL_ERR_ARG for NULL pointers or non-positive sizes.
 */
#include <cfloat>
#include <climits>
#include <cmath>

#include "tl_cuda_internal.cuh"

/* ---- launch helpers ------------------------------------------------------- */

/* Enough blocks to cover `work` items, capped: the kernels loop over the rest. */
static unsigned
tlcu_blocks(int64_t work, int per_block)
{
	int64_t		b = (work + per_block - 1) / per_block;

	if (b < 1)
		b = 1;
	if (b > (1 << 20))
		b = 1 << 20;
	return (unsigned) b;
}

#define TLCU_CHECK_PTR(op, p) \
	do { if ((p) == NULL) return tlcu_fail(TL_ERR_ARG, "%s: %s is NULL", (op), #p); } while (0)
#define TLCU_CHECK_POS(op, v) \
	do { if ((v) <= 0) return tlcu_fail(TL_ERR_ARG, "%s: %s must be positive, got %lld", \
										 (op), #v, (long long) (v)); } while (0)

/*
 * Header of the scratch buffer used by the ops that report back to the
 * host: the loss sums and the first bad index position (ULLONG_MAX when
 * none).  256 bytes keep what follows aligned.
 */
struct tlcu_hdr
{
	double		sum;
	double		count;
	unsigned long long bad_pos;
};

#define TLCU_HDR_BYTES 256

/* Scratch with a reset header at the front and `extra` bytes after it. */
static int
tlcu_hdr_scratch(tlcu_hdr **hdr, void **extra, size_t extra_bytes)
{
	void	   *p = NULL;
	int			rc = tlcu_scratch(&p, TLCU_HDR_BYTES + extra_bytes);

	if (rc != TL_OK)
		return rc;
	*hdr = (tlcu_hdr *) p;
	if (extra != NULL)
		*extra = (char *) p + TLCU_HDR_BYTES;
	TLCU_CUDA_TRY(cudaMemsetAsync(p, 0, sizeof(tlcu_hdr), 0), "cudaMemsetAsync");
	/* all bits set: ULLONG_MAX, "no bad index" */
	TLCU_CUDA_TRY(cudaMemsetAsync(&((tlcu_hdr *) p)->bad_pos, 0xFF, sizeof(unsigned long long), 0),
				  "cudaMemsetAsync");
	return TL_OK;
}

static int
tlcu_hdr_read(tlcu_hdr *h_hdr, const tlcu_hdr *d_hdr, const char *what)
{
	TLCU_CUDA_TRY(cudaMemcpy(h_hdr, d_hdr, sizeof(*h_hdr), cudaMemcpyDeviceToHost), what);
	return TL_OK;
}

/* ---- embedding ------------------------------------------------------------- */

/* Records the smallest position holding an index outside [0, vocab) and not -1. */
__global__ void
embedding_check_kernel(const int32_t *idx, int64_t n, int64_t vocab, unsigned long long *bad_pos)
{
	for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
		 i += (int64_t) gridDim.x * blockDim.x)
	{
		int32_t		v = idx[i];

		if (v != -1 && (v < 0 || (int64_t) v >= vocab))
			atomicMin(bad_pos, (unsigned long long) i);
	}
}

__global__ void
embedding_gather_kernel(float *out, const float *table, const int32_t *idx, int64_t n, int64_t d)
{
	for (int64_t r = blockIdx.x; r < n; r += gridDim.x)
	{
		int32_t		v = idx[r];
		float	   *orow = out + r * d;

		if (v < 0)				/* TL_PAD_INDEX: a zero row */
		{
			for (int64_t c = threadIdx.x; c < d; c += blockDim.x)
				orow[c] = 0.0f;
		}
		else
		{
			const float *trow = table + (int64_t) v * d;

			for (int64_t c = threadIdx.x; c < d; c += blockDim.x)
				orow[c] = trow[c];
		}
	}
}

int
tlcu_embedding_fwd(float *d_out, const float *d_table, const int32_t *d_idx,
				   int64_t n, int64_t vocab, int64_t d)
{
	const char *op = "embedding_fwd";
	tlcu_hdr   *hdr = NULL;
	tlcu_hdr	h;
	int			rc;

	TLCU_CHECK_PTR(op, d_out);
	TLCU_CHECK_PTR(op, d_table);
	TLCU_CHECK_PTR(op, d_idx);
	TLCU_CHECK_POS(op, n);
	TLCU_CHECK_POS(op, vocab);
	TLCU_CHECK_POS(op, d);
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;

	/*
	 * Validate every index before writing anything, as the CPU op does;
	 * this makes the op synchronous (one small copy back).
	 */
	if ((rc = tlcu_hdr_scratch(&hdr, NULL, 0)) != TL_OK)
		return rc;
	embedding_check_kernel<<<tlcu_blocks(n, TLCU_BLOCK), TLCU_BLOCK>>>(d_idx, n, vocab, &hdr->bad_pos);
	TLCU_LAUNCH_CHECK("embedding_fwd (check kernel)");
	if ((rc = tlcu_hdr_read(&h, hdr, "embedding_fwd (reading the check)")) != TL_OK)
		return rc;
	if (h.bad_pos != ULLONG_MAX)
	{
		int32_t		bad = 0;

		TLCU_CUDA_TRY(cudaMemcpy(&bad, d_idx + h.bad_pos, sizeof(bad), cudaMemcpyDeviceToHost),
					  "embedding_fwd (reading the bad index)");
		return tlcu_fail(TL_ERR_ARG, "embedding index %d at position %lld is outside 0..%lld",
						 (int) bad, (long long) h.bad_pos, (long long) vocab - 1);
	}

	embedding_gather_kernel<<<tlcu_blocks(n, 1), TLCU_BLOCK>>>(d_out, d_table, d_idx, n, d);
	TLCU_LAUNCH_CHECK("embedding_fwd (gather kernel)");
	return TL_OK;
}

/* ---- linear ---------------------------------------------------------------- */

__global__ void
add_bias_kernel(float *y, const float *b, int64_t n, int64_t out)
{
	for (int64_t r = blockIdx.x; r < n; r += gridDim.x)
		for (int64_t c = threadIdx.x; c < out; c += blockDim.x)
			y[r * out + c] += b[c];
}

int
tlcu_linear_fwd(float *d_y, const float *d_x, const float *d_w, const float *d_b,
				int64_t n, int64_t in, int64_t out)
{
	const char *op = "linear_fwd";
	const float one = 1.0f,
				zero = 0.0f;
	cublasStatus_t st;
	int			rc;

	TLCU_CHECK_PTR(op, d_y);
	TLCU_CHECK_PTR(op, d_x);
	TLCU_CHECK_PTR(op, d_w);
	TLCU_CHECK_POS(op, n);
	TLCU_CHECK_POS(op, in);
	TLCU_CHECK_POS(op, out);
	if (n > INT_MAX || in > INT_MAX || out > INT_MAX)
		return tlcu_fail(TL_ERR_ARG, "linear_fwd: dimensions (%lld, %lld, %lld) exceed cuBLAS's int range",
						 (long long) n, (long long) in, (long long) out);
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;

	/*
	 * cuBLAS is column-major.  A row-major (r, c) matrix is the same bytes
	 * as a column-major (c, r) one, i.e. its transpose.  Row-major
	 * y = x w^T is, transposed, y^T (out, n) = w (out, in) @ x^T (in, n).
	 * In column-major terms x's buffer already is x^T (in, n), ld = in;
	 * w's buffer is w^T (in, out), ld = in, so it is used with OP_T; and
	 * y's buffer is y^T (out, n), ld = out.
	 */
	st = cublasSgemm(tlcu_cublas(), CUBLAS_OP_T, CUBLAS_OP_N,
					 (int) out, (int) n, (int) in,
					 &one, d_w, (int) in, d_x, (int) in,
					 &zero, d_y, (int) out);
	if (st != CUBLAS_STATUS_SUCCESS)
		return tlcu_cublas_fail(st, "linear_fwd (cublasSgemm)");

	if (d_b != NULL)
	{
		add_bias_kernel<<<tlcu_blocks(n, 1), TLCU_BLOCK>>>(d_y, d_b, n, out);
		TLCU_LAUNCH_CHECK("linear_fwd (bias kernel)");
	}
	return TL_OK;
}

/* ---- normalisation --------------------------------------------------------- */

/*
 * Each thread only ever reads x[c] and writes y[c] for its own columns c,
 * and all reads of the row end before the first write (the reductions
 * synchronise), so y may alias x.
 */
__global__ void
layernorm_kernel(float *y, float *mean_out, float *rstd_out, const float *x,
				 const float *gamma, const float *beta, int64_t n, int64_t d, float eps)
{
	__shared__ float sh[33];

	for (int64_t r = blockIdx.x; r < n; r += gridDim.x)
	{
		const float *xr = x + r * d;
		float	   *yr = y + r * d;
		float		s = 0.0f;

		for (int64_t c = threadIdx.x; c < d; c += blockDim.x)
			s += xr[c];
		const float mean = block_sum(s, sh) / (float) d;

		/* Two passes: the biased variance around the mean, no cancellation. */
		float		s2 = 0.0f;

		for (int64_t c = threadIdx.x; c < d; c += blockDim.x)
		{
			float		t = xr[c] - mean;

			s2 += t * t;
		}
		const float var = block_sum(s2, sh) / (float) d;
		const float rstd = 1.0f / sqrtf(var + eps);

		if (threadIdx.x == 0)
		{
			if (mean_out != NULL)
				mean_out[r] = mean;
			if (rstd_out != NULL)
				rstd_out[r] = rstd;
		}
		for (int64_t c = threadIdx.x; c < d; c += blockDim.x)
			yr[c] = (xr[c] - mean) * rstd * gamma[c] + beta[c];
	}
}

/* d_mean and d_rstd may be NULL (inference needs no saved statistics). */
int
tlcu_layernorm_fwd(float *d_y, float *d_mean, float *d_rstd, const float *d_x,
				   const float *d_gamma, const float *d_beta,
				   int64_t n, int64_t d, float eps)
{
	const char *op = "layernorm_fwd";
	int			rc;

	TLCU_CHECK_PTR(op, d_y);
	TLCU_CHECK_PTR(op, d_x);
	TLCU_CHECK_PTR(op, d_gamma);
	TLCU_CHECK_PTR(op, d_beta);
	TLCU_CHECK_POS(op, n);
	TLCU_CHECK_POS(op, d);
	if (!(eps > 0.0f))
		return tlcu_fail(TL_ERR_ARG, "layernorm_fwd: epsilon must be positive, got %g", (double) eps);
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;

	layernorm_kernel<<<tlcu_blocks(n, 1), TLCU_BLOCK>>>(d_y, d_mean, d_rstd, d_x, d_gamma, d_beta,
														  n, d, eps);
	TLCU_LAUNCH_CHECK("layernorm_fwd");
	return TL_OK;
}

__global__ void
rmsnorm_kernel(float *y, float *rstd_out, const float *x, const float *gamma,
			   int64_t n, int64_t d, float eps)
{
	__shared__ float sh[33];

	for (int64_t r = blockIdx.x; r < n; r += gridDim.x)
	{
		const float *xr = x + r * d;
		float	   *yr = y + r * d;
		float		s2 = 0.0f;

		for (int64_t c = threadIdx.x; c < d; c += blockDim.x)
			s2 += xr[c] * xr[c];
		const float ms = block_sum(s2, sh) / (float) d;
		const float rstd = 1.0f / sqrtf(ms + eps);

		if (threadIdx.x == 0 && rstd_out != NULL)
			rstd_out[r] = rstd;
		for (int64_t c = threadIdx.x; c < d; c += blockDim.x)
			yr[c] = xr[c] * rstd * gamma[c];
	}
}

/* d_rstd may be NULL. */
int
tlcu_rmsnorm_fwd(float *d_y, float *d_rstd, const float *d_x, const float *d_gamma,
				 int64_t n, int64_t d, float eps)
{
	const char *op = "rmsnorm_fwd";
	int			rc;

	TLCU_CHECK_PTR(op, d_y);
	TLCU_CHECK_PTR(op, d_x);
	TLCU_CHECK_PTR(op, d_gamma);
	TLCU_CHECK_POS(op, n);
	TLCU_CHECK_POS(op, d);
	if (!(eps > 0.0f))
		return tlcu_fail(TL_ERR_ARG, "rmsnorm_fwd: epsilon must be positive, got %g", (double) eps);
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;

	rmsnorm_kernel<<<tlcu_blocks(n, 1), TLCU_BLOCK>>>(d_y, d_rstd, d_x, d_gamma, n, d, eps);
	TLCU_LAUNCH_CHECK("rmsnorm_fwd");
	return TL_OK;
}

/* ---- activations (y may alias x) ------------------------------------------- */

__global__ void
gelu_kernel(float *y, const float *x, int64_t n)
{
	for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
		 i += (int64_t) gridDim.x * blockDim.x)
	{
		float		v = x[i];

		/* exact form: 0.5 x (1 + erf(x / sqrt(2))) */
		y[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f));
	}
}

__global__ void
silu_kernel(float *y, const float *x, int64_t n)
{
	for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
		 i += (int64_t) gridDim.x * blockDim.x)
	{
		float		v = x[i];

		y[i] = v / (1.0f + expf(-v));
	}
}

int
tlcu_gelu_fwd(float *d_y, const float *d_x, int64_t n)
{
	const char *op = "gelu_fwd";
	int			rc;

	TLCU_CHECK_PTR(op, d_y);
	TLCU_CHECK_PTR(op, d_x);
	TLCU_CHECK_POS(op, n);
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;
	gelu_kernel<<<tlcu_blocks(n, TLCU_BLOCK), TLCU_BLOCK>>>(d_y, d_x, n);
	TLCU_LAUNCH_CHECK("gelu_fwd");
	return TL_OK;
}

int
tlcu_silu_fwd(float *d_y, const float *d_x, int64_t n)
{
	const char *op = "silu_fwd";
	int			rc;

	TLCU_CHECK_PTR(op, d_y);
	TLCU_CHECK_PTR(op, d_x);
	TLCU_CHECK_POS(op, n);
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;
	silu_kernel<<<tlcu_blocks(n, TLCU_BLOCK), TLCU_BLOCK>>>(d_y, d_x, n);
	TLCU_LAUNCH_CHECK("silu_fwd");
	return TL_OK;
}

/* ---- softmax --------------------------------------------------------------- */

/* Row softmax; y may alias x (each thread rewrites only its own columns). */
__global__ void
softmax_kernel(float *y, const float *x, int64_t rows, int64_t cols)
{
	__shared__ float sh[33];

	for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
	{
		const float *xr = x + r * cols;
		float	   *yr = y + r * cols;
		float		m = -INFINITY;

		for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
			m = fmaxf(m, xr[c]);
		m = block_max(m, sh);

		float		s = 0.0f;

		for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
		{
			float		e = expf(xr[c] - m);

			yr[c] = e;
			s += e;
		}
		const float inv = 1.0f / block_sum(s, sh);

		for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
			yr[c] *= inv;
	}
}

int
tlcu_softmax_fwd(float *d_y, const float *d_x, int64_t rows, int64_t cols)
{
	const char *op = "softmax_fwd";
	int			rc;

	TLCU_CHECK_PTR(op, d_y);
	TLCU_CHECK_PTR(op, d_x);
	TLCU_CHECK_POS(op, rows);
	TLCU_CHECK_POS(op, cols);
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;
	softmax_kernel<<<tlcu_blocks(rows, 1), TLCU_BLOCK>>>(d_y, d_x, rows, cols);
	TLCU_LAUNCH_CHECK("softmax_fwd");
	return TL_OK;
}

/* ---- attention ------------------------------------------------------------- */

#define TLCU_ATTN_BLOCK 128

/*
 * One block per (b, h, i) query row, rows numbered (b*H + h)*T + i, which
 * is also the row of probs (B, H, T, T).  The probs row doubles as the
 * score buffer:
 *   1. one warp per key j <= i: s_j = q_i . k_j * scale - slope * (i - j),
 *      or -inf when the key is padding; keys j > i are not looked at
 *      (causal); slope is the head's ALiBi slope, 0 without ALiBi;
 *   2. block max; if it is -inf no key is visible: zero probs and output;
 *   3. p_j = exp(s_j - max) / sum, and p_j = 0 for j > i;
 *   4. out_i = sum_j p_j v_j, one thread per output column.
 * The q row sits in dynamic shared memory (head_dim floats).
 */
__global__ void
attention_kernel(float *out, float *probs, const float *q, const float *k, const float *v,
				 const uint8_t *key_valid, int64_t B, int64_t T, int64_t H, int64_t hd,
				 float scale, int alibi)
{
	extern __shared__ float sq[];
	__shared__ float sh[33];
	const int	lane = threadIdx.x & 31;
	const int	warp = threadIdx.x >> 5;
	const int	nwarps = blockDim.x >> 5;
	const int64_t D = H * hd;	/* row stride of q, k, v, out */
	const int64_t nrows = B * H * T;

	for (int64_t row = blockIdx.x; row < nrows; row += gridDim.x)
	{
		const int64_t i = row % T;
		const int64_t h = (row / T) % H;
		const int64_t b = row / (T * H);
		const float *qi = q + (b * T + i) * D + h * hd;
		float	   *oi = out + (b * T + i) * D + h * hd;
		float	   *prow = probs + row * T;
		/* the same expression as tl_alibi_slope() on the CPU */
		const float slope = alibi ? exp2f(-8.0f * (float) (h + 1) / (float) H) : 0.0f;

		__syncthreads();		/* the previous row is done with sq */
		for (int64_t c = threadIdx.x; c < hd; c += blockDim.x)
			sq[c] = qi[c];
		__syncthreads();

		/* 1. scores */
		float		lmax = -INFINITY;

		for (int64_t j = warp; j <= i; j += nwarps)
		{
			float		s = -INFINITY;

			/* warp-uniform branch: every lane sees the same key */
			if (key_valid == NULL || key_valid[b * T + j] != 0)
			{
				const float *kj = k + (b * T + j) * D + h * hd;
				float		acc = 0.0f;

				for (int64_t c = lane; c < hd; c += 32)
					acc += sq[c] * kj[c];
				s = warp_sum(acc) * scale - slope * (float) (i - j);
			}
			if (lane == 0)
				prow[j] = s;
			lmax = fmaxf(lmax, s);
		}
		/* block_max synchronises, so the prow writes above are visible after it */
		const float m = block_max(lmax, sh);

		/* 2. a query that sees no key: zero row (m is the same in every thread) */
		if (m == -INFINITY)
		{
			for (int64_t j = threadIdx.x; j < T; j += blockDim.x)
				prow[j] = 0.0f;
			for (int64_t c = threadIdx.x; c < hd; c += blockDim.x)
				oi[c] = 0.0f;
			continue;
		}

		/* 3. masked softmax into probs */
		float		lsum = 0.0f;

		for (int64_t j = threadIdx.x; j <= i; j += blockDim.x)
		{
			const float s = prow[j];
			const float e = (s == -INFINITY) ? 0.0f : expf(s - m);

			prow[j] = e;
			lsum += e;
		}
		for (int64_t j = i + 1 + threadIdx.x; j < T; j += blockDim.x)
			prow[j] = 0.0f;
		const float inv = 1.0f / block_sum(lsum, sh);

		for (int64_t j = threadIdx.x; j <= i; j += blockDim.x)
			prow[j] *= inv;
		__syncthreads();		/* all of prow is final before step 4 reads it */

		/* 4. out = probs @ V; masked keys (p = 0) are skipped, never read */
		for (int64_t c = threadIdx.x; c < hd; c += blockDim.x)
		{
			const float *vc = v + b * T * D + h * hd + c;
			float		acc = 0.0f;

			for (int64_t j = 0; j <= i; j++)
			{
				const float p = prow[j];

				if (p != 0.0f)
					acc += p * vc[j * D];
			}
			oi[c] = acc;
		}
	}
}

int
tlcu_attention_fwd(float *d_out, float *d_probs, const float *d_q, const float *d_k,
				   const float *d_v, const uint8_t *d_key_valid,
				   int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, int alibi)
{
	const char *op = "attention_fwd";
	size_t		smem;
	int			rc;

	TLCU_CHECK_PTR(op, d_out);
	TLCU_CHECK_PTR(op, d_probs);
	TLCU_CHECK_PTR(op, d_q);
	TLCU_CHECK_PTR(op, d_k);
	TLCU_CHECK_PTR(op, d_v);
	TLCU_CHECK_POS(op, batch);
	TLCU_CHECK_POS(op, seq);
	TLCU_CHECK_POS(op, heads);
	TLCU_CHECK_POS(op, head_dim);
	/* The q row must fit the default 48 KiB of dynamic shared memory. */
	if (head_dim > 8192)
		return tlcu_fail(TL_ERR_ARG, "attention_fwd: head_dim %lld is above the supported 8192",
						 (long long) head_dim);
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;

	smem = (size_t) head_dim * sizeof(float);
	attention_kernel<<<tlcu_blocks(batch * heads * seq, 1), TLCU_ATTN_BLOCK, smem>>>(
		d_out, d_probs, d_q, d_k, d_v, d_key_valid, batch, seq, heads, head_dim,
		1.0f / sqrtf((float) head_dim), alibi);
	TLCU_LAUNCH_CHECK("attention_fwd");
	return TL_OK;
}

/* ---- dropout ---------------------------------------------------------------- */

/*
 * The counter-based hash of tl_rng.h (tl_mix64, tl_hash_uniform), same
 * constants and same float conversion, so the mask is bit-identical to
 * the CPU's.  __host__ too, so a host-side test can compare the two.
 */
__host__ __device__ __forceinline__ uint64_t
tlcu_mix64(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ULL;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	return x ^ (x >> 31);
}

__host__ __device__ __forceinline__ float
tlcu_hash_uniform(uint64_t seed, uint64_t counter)
{
	uint64_t	h = tlcu_mix64(seed ^ tlcu_mix64(counter));

	/* h >> 40 has 24 bits: the conversion and the scaling are exact */
	return (float) (h >> 40) * (1.0f / 16777216.0f);
}

__global__ void
dropout_kernel(float *y, const float *x, int64_t n, float p, float scale,
			   uint64_t seed, uint64_t offset)
{
	for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
		 i += (int64_t) gridDim.x * blockDim.x)
	{
		const bool	drop = tlcu_hash_uniform(seed, offset + (uint64_t) i) < p;

		y[i] = drop ? 0.0f : x[i] * scale;
	}
}

int
tlcu_dropout_fwd(float *d_y, const float *d_x, int64_t n, float p, uint64_t seed, uint64_t offset)
{
	const char *op = "dropout_fwd";
	int			rc;

	TLCU_CHECK_PTR(op, d_y);
	TLCU_CHECK_PTR(op, d_x);
	TLCU_CHECK_POS(op, n);
	if (!(p >= 0.0f && p < 1.0f))
		return tlcu_fail(TL_ERR_ARG, "dropout_fwd: p must be in [0, 1), got %g", (double) p);
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;

	/* The scale is computed once, on the host, in float: 1/(1-p). */
	dropout_kernel<<<tlcu_blocks(n, TLCU_BLOCK), TLCU_BLOCK>>>(d_y, d_x, n, p, 1.0f / (1.0f - p),
															   seed, offset);
	TLCU_LAUNCH_CHECK("dropout_fwd");
	return TL_OK;
}

/* ---- losses ------------------------------------------------------------------ */

/*
 * Per row: loss_r = logsumexp(x_r) - x_r[t_r], or 0 for t_r == -1.  A
 * target outside [0, C) other than -1 marks the row in bad_pos.
 */
__global__ void
cross_entropy_rows_kernel(float *row_loss, const float *logits, const int32_t *targets,
						  int64_t n, int64_t C, unsigned long long *bad_pos)
{
	__shared__ float sh[33];

	for (int64_t r = blockIdx.x; r < n; r += gridDim.x)
	{
		const int32_t t = targets[r];

		/* t is the same in every thread of the block: uniform branches */
		if (t == -1 || t < 0 || (int64_t) t >= C)
		{
			if (threadIdx.x == 0)
			{
				row_loss[r] = 0.0f;
				if (t != -1)
					atomicMin(bad_pos, (unsigned long long) r);
			}
			continue;
		}

		const float *xr = logits + r * C;
		float		m = -INFINITY;

		for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
			m = fmaxf(m, xr[c]);
		m = block_max(m, sh);

		float		s = 0.0f;

		for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
			s += expf(xr[c] - m);
		s = block_sum(s, sh);

		if (threadIdx.x == 0)
			row_loss[r] = (m + logf(s)) - xr[t];
	}
}

/* One block: sum of the row losses and count of counted rows, in double. */
__global__ void
cross_entropy_reduce_kernel(tlcu_hdr *hdr, const float *row_loss, const int32_t *targets, int64_t n)
{
	__shared__ double sh[33];
	double		s = 0.0,
				cnt = 0.0;

	for (int64_t r = threadIdx.x; r < n; r += blockDim.x)
	{
		if (targets[r] != -1)
		{
			s += row_loss[r];
			cnt += 1.0;
		}
	}
	s = block_sum_d(s, sh);
	cnt = block_sum_d(cnt, sh);
	if (threadIdx.x == 0)
	{
		hdr->sum = s;
		hdr->count = cnt;
	}
}

int
tlcu_cross_entropy_fwd(float *h_loss, const float *d_logits, const int32_t *d_targets,
					   int64_t n, int64_t classes)
{
	const char *op = "cross_entropy_fwd";
	tlcu_hdr   *hdr = NULL;
	tlcu_hdr	h;
	void	   *extra = NULL;
	int			rc;

	TLCU_CHECK_PTR(op, h_loss);
	TLCU_CHECK_PTR(op, d_logits);
	TLCU_CHECK_PTR(op, d_targets);
	TLCU_CHECK_POS(op, n);
	TLCU_CHECK_POS(op, classes);
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;

	if ((rc = tlcu_hdr_scratch(&hdr, &extra, (size_t) n * sizeof(float))) != TL_OK)
		return rc;
	cross_entropy_rows_kernel<<<tlcu_blocks(n, 1), TLCU_BLOCK>>>((float *) extra, d_logits, d_targets,
																   n, classes, &hdr->bad_pos);
	TLCU_LAUNCH_CHECK("cross_entropy_fwd (row kernel)");
	cross_entropy_reduce_kernel<<<1, 1024>>>(hdr, (const float *) extra, d_targets, n);
	TLCU_LAUNCH_CHECK("cross_entropy_fwd (reduce kernel)");
	if ((rc = tlcu_hdr_read(&h, hdr, "cross_entropy_fwd (reading the loss)")) != TL_OK)
		return rc;

	if (h.bad_pos != ULLONG_MAX)
	{
		int32_t		bad = 0;

		TLCU_CUDA_TRY(cudaMemcpy(&bad, d_targets + h.bad_pos, sizeof(bad), cudaMemcpyDeviceToHost),
					  "cross_entropy_fwd (reading the bad target)");
		return tlcu_fail(TL_ERR_ARG, "cross-entropy target %d at row %lld is outside 0..%lld",
						 (int) bad, (long long) h.bad_pos, (long long) classes - 1);
	}
	*h_loss = (h.count > 0.0) ? (float) (h.sum / h.count) : 0.0f;
	return TL_OK;
}

/*
 * One block: sum(w * bce) and sum(w), in double, with the stable form
 * bce = max(x, 0) - x t + log1p(exp(-|x|)); no weights means w = 1.
 * Positions with w = 0 are skipped (a non-finite logit there does not
 * poison the sum).  As on the CPU, a target outside [0, 1] or a weight
 * that is negative, NaN or infinite marks its position in bad_pos.
 */
__global__ void
bce_logits_kernel(tlcu_hdr *hdr, const float *x, const float *t, const float *w, int64_t n)
{
	__shared__ double sh[33];
	double		s = 0.0,
				ws = 0.0;

	for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
	{
		const float xi = x[i];
		const float ti = t[i];
		const float wi = (w != NULL) ? w[i] : 1.0f;

		if (!(ti >= 0.0f && ti <= 1.0f) || !(wi >= 0.0f) || isinf(wi))
		{
			atomicMin(&hdr->bad_pos, (unsigned long long) i);
			continue;
		}
		if (wi == 0.0f)
			continue;

		const float l = fmaxf(xi, 0.0f) - xi * ti + log1pf(expf(-fabsf(xi)));

		s += (double) wi * (double) l;
		ws += (double) wi;
	}
	s = block_sum_d(s, sh);
	ws = block_sum_d(ws, sh);
	if (threadIdx.x == 0)
	{
		hdr->sum = s;
		hdr->count = ws;
	}
}

/*
 * d_weights may be NULL (all ones); the loss is 0 when sum(w) == 0.
 * Synchronous: the loss is copied back to the host.
 */
int
tlcu_bce_logits_fwd(float *h_loss, const float *d_logits, const float *d_targets,
					const float *d_weights, int64_t n)
{
	const char *op = "bce_logits_fwd";
	tlcu_hdr   *hdr = NULL;
	tlcu_hdr	h;
	int			rc;

	TLCU_CHECK_PTR(op, h_loss);
	TLCU_CHECK_PTR(op, d_logits);
	TLCU_CHECK_PTR(op, d_targets);
	TLCU_CHECK_POS(op, n);
	if ((rc = tlcu_require_init(op)) != TL_OK)
		return rc;

	if ((rc = tlcu_hdr_scratch(&hdr, NULL, 0)) != TL_OK)
		return rc;
	bce_logits_kernel<<<1, 1024>>>(hdr, d_logits, d_targets, d_weights, n);
	TLCU_LAUNCH_CHECK("bce_logits_fwd");
	if ((rc = tlcu_hdr_read(&h, hdr, "bce_logits_fwd (reading the loss)")) != TL_OK)
		return rc;
	if (h.bad_pos != ULLONG_MAX)
	{
		float		t = 0.0f,
					w = 1.0f;

		TLCU_CUDA_TRY(cudaMemcpy(&t, d_targets + h.bad_pos, sizeof(t), cudaMemcpyDeviceToHost),
					  "bce_logits_fwd (reading the bad target)");
		if (d_weights != NULL)
			TLCU_CUDA_TRY(cudaMemcpy(&w, d_weights + h.bad_pos, sizeof(w), cudaMemcpyDeviceToHost),
						  "bce_logits_fwd (reading the bad weight)");
		if (!(t >= 0.0f && t <= 1.0f))
			return tlcu_fail(TL_ERR_ARG, "BCE target %g at %lld is outside [0, 1]",
							 (double) t, (long long) h.bad_pos);
		return tlcu_fail(TL_ERR_ARG, "BCE weight %g at %lld is not a finite non-negative value",
						 (double) w, (long long) h.bad_pos);
	}
	*h_loss = (h.count > 0.0) ? (float) (h.sum / h.count) : 0.0f;
	return TL_OK;
}
