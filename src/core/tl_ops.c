/*
 * tl_ops.c -- forward and backward passes of the pointwise, row-wise,
 * linear and loss ops.  Semantics are documented in tl_ops.h; attention
 * lives in tl_attention.c.
 */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "tl_math.h"
#include "tl_ops.h"
#include "tl_pool.h"
#include "tl_rng.h"

/* cblas takes int extents; refuse anything larger instead of truncating. */
static tl_status
tl_check_blas_extent(int64_t value, const char *what)
{
	if (value <= 0 || value > INT_MAX)
		return tl_fail(TL_ERR_SHAPE, "%s extent %lld is outside 1..%d", what, (long long) value, INT_MAX);
	return TL_OK;
}

/* Shape check for a "(N, cols)" tensor given by its row view. */
static tl_status
tl_expect_rows_cols(const tl_tensor *t, const char *what, int64_t rows, int64_t cols)
{
	if (!t || !t->data)
		return tl_fail(TL_ERR_ARG, "%s is missing", what);
	if (tl_cols(t) != cols || tl_rows(t) != rows)
		return tl_fail(TL_ERR_SHAPE, "%s has %lld rows of %lld, expected %lld rows of %lld",
					   what, (long long) tl_rows(t), (long long) tl_cols(t),
					   (long long) rows, (long long) cols);
	return TL_OK;
}

/* Shape check for a vector of n elements (any rank, numel == n). */
static tl_status
tl_expect_numel(const tl_tensor *t, const char *what, int64_t n)
{
	if (!t || !t->data)
		return tl_fail(TL_ERR_ARG, "%s is missing", what);
	if (t->numel != n)
		return tl_fail(TL_ERR_SHAPE, "%s has %lld elements, expected %lld",
					   what, (long long) t->numel, (long long) n);
	return TL_OK;
}

/* ======================================================================
 * embedding
 * ====================================================================== */

static tl_status
tl_check_indices(const int32_t *idx, int64_t n, int64_t vocab)
{
	if (!idx)
		return tl_fail(TL_ERR_ARG, "embedding indices are missing");
	for (int64_t i = 0; i < n; i++)
		if (idx[i] != TL_PAD_INDEX && (idx[i] < 0 || idx[i] >= vocab))
			return tl_fail(TL_ERR_ARG, "embedding index %d at position %lld is outside 0..%lld",
						   idx[i], (long long) i, (long long) vocab - 1);
	return TL_OK;
}

tl_status
tl_embedding_fwd(tl_tensor *out, const tl_tensor *table, const int32_t *idx)
{
	int64_t		d,
				n;

	TL_TRY(tl_expect_shape(table, "embedding table", 2, TL_SHAPE(-1, -1)));
	d = table->shape[1];
	if (!out || !out->data || tl_cols(out) != d)
		return tl_fail(TL_ERR_SHAPE, "embedding output must have rows of %lld", (long long) d);
	n = tl_rows(out);
	TL_TRY(tl_check_indices(idx, n, table->shape[0]));
	for (int64_t i = 0; i < n; i++)
	{
		float	   *dst = out->data + i * d;

		if (idx[i] == TL_PAD_INDEX)
			memset(dst, 0, sizeof(float) * d);
		else
			memcpy(dst, table->data + (int64_t) idx[i] * d, sizeof(float) * d);
	}
	return TL_OK;
}

tl_status
tl_embedding_bwd(tl_tensor *dtable, const tl_tensor *dout, const int32_t *idx)
{
	int64_t		d,
				n;

	TL_TRY(tl_expect_shape(dtable, "embedding gradient", 2, TL_SHAPE(-1, -1)));
	d = dtable->shape[1];
	if (!dout || !dout->data || tl_cols(dout) != d)
		return tl_fail(TL_ERR_SHAPE, "embedding output gradient must have rows of %lld", (long long) d);
	n = tl_rows(dout);
	TL_TRY(tl_check_indices(idx, n, dtable->shape[0]));
	for (int64_t i = 0; i < n; i++)
	{
		float	   *dst;
		const float *src = dout->data + i * d;

		if (idx[i] == TL_PAD_INDEX)
			continue;
		dst = dtable->data + (int64_t) idx[i] * d;
		for (int64_t j = 0; j < d; j++)
			dst[j] += src[j];
	}
	return TL_OK;
}

/* ======================================================================
 * linear
 * ====================================================================== */

/*
 * Linear layers run on the core's pool: forward and the input gradient
 * split the rows of the batch, the weight gradient splits the output
 * features, so no two threads write the same memory and no reduction
 * across threads is needed.  Each chunk is one single-threaded sgemm.
 */
typedef struct tl_linear_job
{
	int64_t		n;
	int64_t		in;
	int64_t		out;
	const float *x;				/* (n, in) */
	const float *w;				/* (out, in) */
	const float *b;				/* (out) or NULL */
	const float *dy;			/* (n, out) */
	float	   *y;				/* (n, out) */
	float	   *dx;				/* (n, in) */
	float	   *dw;				/* (out, in) */
	float	   *db;				/* (out) or NULL */
} tl_linear_job;

/* y[rows] = x[rows] w^T + b, starting from the bias with beta = 1 (one pass over y fewer). */
static void
tl_linear_fwd_rows(void *arg, int64_t begin, int64_t end, int worker)
{
	const tl_linear_job *j = arg;
	float	   *y = j->y + begin * j->out;

	if (j->b)
		for (int64_t i = begin; i < end; i++)
			memcpy(j->y + i * j->out, j->b, sizeof(float) * j->out);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) (end - begin), (int) j->out, (int) j->in,
				1.0f, j->x + begin * j->in, (int) j->in, j->w, (int) j->in, j->b ? 1.0f : 0.0f,
				y, (int) j->out);
}

/* dx[rows] = dy[rows] w */
static void
tl_linear_bwd_input_rows(void *arg, int64_t begin, int64_t end, int worker)
{
	const tl_linear_job *j = arg;

	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) (end - begin), (int) j->in, (int) j->out,
				1.0f, j->dy + begin * j->out, (int) j->out, j->w, (int) j->in, 0.0f,
				j->dx + begin * j->in, (int) j->in);
}

/* dw[features] += dy[:, features]^T x;  db[features] += column sums of dy */
static void
tl_linear_bwd_weight_rows(void *arg, int64_t begin, int64_t end, int worker)
{
	const tl_linear_job *j = arg;

	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int) (end - begin), (int) j->in, (int) j->n,
				1.0f, j->dy + begin, (int) j->out, j->x, (int) j->in, 1.0f, j->dw + begin * j->in, (int) j->in);
	if (j->db)
		for (int64_t i = 0; i < j->n; i++)
		{
			const float *row = j->dy + i * j->out;

			for (int64_t f = begin; f < end; f++)
				j->db[f] += row[f];
		}
}

/* Chunks of at least `floor` items, about two per thread. */
static int64_t
tl_pool_grain(int64_t n, int64_t floor)
{
	int64_t		per = (n + 2 * tl_pool_threads() - 1) / (2 * tl_pool_threads());

	return per > floor ? per : floor;
}

tl_status
tl_linear_fwd(tl_tensor *y, const tl_tensor *x, const tl_tensor *w, const tl_tensor *b)
{
	tl_linear_job job = {0};

	TL_TRY(tl_expect_shape(w, "linear weight", 2, TL_SHAPE(-1, -1)));
	job.out = w->shape[0];
	job.in = w->shape[1];
	if (!x || !x->data)
		return tl_fail(TL_ERR_ARG, "linear input is missing");
	job.n = tl_rows(x);
	TL_TRY(tl_expect_rows_cols(x, "linear input", job.n, job.in));
	TL_TRY(tl_expect_rows_cols(y, "linear output", job.n, job.out));
	if (b)
		TL_TRY(tl_expect_numel(b, "linear bias", job.out));
	TL_TRY(tl_check_blas_extent(job.n, "linear rows"));
	job.x = x->data;
	job.w = w->data;
	job.b = b ? b->data : NULL;
	job.y = y->data;
	tl_pool_run(job.n, tl_pool_grain(job.n, 32), tl_linear_fwd_rows, &job);
	return TL_OK;
}

tl_status
tl_linear_bwd(tl_tensor *dx, tl_tensor *dw, tl_tensor *db,
			  const tl_tensor *dy, const tl_tensor *x, const tl_tensor *w)
{
	tl_linear_job job = {0};

	TL_TRY(tl_expect_shape(w, "linear weight", 2, TL_SHAPE(-1, -1)));
	job.out = w->shape[0];
	job.in = w->shape[1];
	TL_TRY(tl_expect_shape(dw, "linear weight gradient", 2, TL_SHAPE(job.out, job.in)));
	if (!x || !x->data)
		return tl_fail(TL_ERR_ARG, "linear input is missing");
	job.n = tl_rows(x);
	TL_TRY(tl_expect_rows_cols(x, "linear input", job.n, job.in));
	TL_TRY(tl_expect_rows_cols(dy, "linear output gradient", job.n, job.out));
	if (dx)
		TL_TRY(tl_expect_rows_cols(dx, "linear input gradient", job.n, job.in));
	if (db)
		TL_TRY(tl_expect_numel(db, "linear bias gradient", job.out));
	TL_TRY(tl_check_blas_extent(job.n, "linear rows"));
	job.x = x->data;
	job.w = w->data;
	job.dy = dy->data;
	job.dx = dx ? dx->data : NULL;
	job.dw = dw->data;
	job.db = db ? db->data : NULL;
	if (dx)
		tl_pool_run(job.n, tl_pool_grain(job.n, 32), tl_linear_bwd_input_rows, &job);
	tl_pool_run(job.out, tl_pool_grain(job.out, 8), tl_linear_bwd_weight_rows, &job);
	return TL_OK;
}

/* ======================================================================
 * layer norm and RMS norm
 * ====================================================================== */

/* One row of layer norm; returns mean and rstd. */
TL_SIMD_CLONES static void
tl_layernorm_row(float *y, float *mean_out, float *rstd_out, const float *x,
				 const float *gamma, const float *beta, int64_t d, float eps)
{
	float		sum = 0.0f,
				sq = 0.0f,
				mu,
				rs;

#pragma omp simd reduction(+:sum)
	for (int64_t j = 0; j < d; j++)
		sum += x[j];
	mu = sum / (float) d;
#pragma omp simd reduction(+:sq)
	for (int64_t j = 0; j < d; j++)
		sq += (x[j] - mu) * (x[j] - mu);
	rs = 1.0f / sqrtf(sq / (float) d + eps);
#pragma omp simd
	for (int64_t j = 0; j < d; j++)
		y[j] = (x[j] - mu) * rs * gamma[j] + beta[j];
	*mean_out = mu;
	*rstd_out = rs;
}

tl_status
tl_layernorm_fwd(tl_tensor *y, tl_tensor *mean, tl_tensor *rstd,
				 const tl_tensor *x, const tl_tensor *gamma, const tl_tensor *beta, float eps)
{
	int64_t		n,
				d;

	if (!x || !x->data)
		return tl_fail(TL_ERR_ARG, "layer norm input is missing");
	n = tl_rows(x);
	d = tl_cols(x);
	TL_TRY(tl_expect_same_shape(y, "layer norm output", x, "layer norm input"));
	TL_TRY(tl_expect_numel(mean, "layer norm mean", n));
	TL_TRY(tl_expect_numel(rstd, "layer norm rstd", n));
	TL_TRY(tl_expect_numel(gamma, "layer norm gain", d));
	TL_TRY(tl_expect_numel(beta, "layer norm bias", d));
	if (!(eps > 0.0f))
		return tl_fail(TL_ERR_ARG, "layer norm epsilon must be positive");

	for (int64_t i = 0; i < n; i++)
		tl_layernorm_row(y->data + i * d, &mean->data[i], &rstd->data[i], x->data + i * d,
						 gamma->data, beta->data, d, eps);
	return TL_OK;
}

/* One row of the layer norm backward pass; gamma/beta grads accumulate. */
TL_SIMD_CLONES static void
tl_layernorm_bwd_row(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
					 float mu, float rs, const float *gamma, int64_t d)
{
	float		sum_g = 0.0f,
				sum_gx = 0.0f,
				mean_g,
				mean_gx;

#pragma omp simd reduction(+:sum_g, sum_gx)
	for (int64_t j = 0; j < d; j++)
	{
		float		xhat = (x[j] - mu) * rs;
		float		g = dy[j] * gamma[j];

		sum_g += g;
		sum_gx += g * xhat;
		dgamma[j] += dy[j] * xhat;
		dbeta[j] += dy[j];
	}
	mean_g = sum_g / (float) d;
	mean_gx = sum_gx / (float) d;
#pragma omp simd
	for (int64_t j = 0; j < d; j++)
		dx[j] = rs * (dy[j] * gamma[j] - mean_g - (x[j] - mu) * rs * mean_gx);
}

tl_status
tl_layernorm_bwd(tl_tensor *dx, tl_tensor *dgamma, tl_tensor *dbeta,
				 const tl_tensor *dy, const tl_tensor *x,
				 const tl_tensor *mean, const tl_tensor *rstd, const tl_tensor *gamma)
{
	int64_t		n,
				d;

	if (!x || !x->data)
		return tl_fail(TL_ERR_ARG, "layer norm input is missing");
	n = tl_rows(x);
	d = tl_cols(x);
	TL_TRY(tl_expect_same_shape(dy, "layer norm output gradient", x, "layer norm input"));
	TL_TRY(tl_expect_same_shape(dx, "layer norm input gradient", x, "layer norm input"));
	TL_TRY(tl_expect_numel(mean, "layer norm mean", n));
	TL_TRY(tl_expect_numel(rstd, "layer norm rstd", n));
	TL_TRY(tl_expect_numel(gamma, "layer norm gain", d));
	TL_TRY(tl_expect_numel(dgamma, "layer norm gain gradient", d));
	TL_TRY(tl_expect_numel(dbeta, "layer norm bias gradient", d));

	for (int64_t i = 0; i < n; i++)
		tl_layernorm_bwd_row(dx->data + i * d, dgamma->data, dbeta->data, dy->data + i * d,
							 x->data + i * d, mean->data[i], rstd->data[i], gamma->data, d);
	return TL_OK;
}

tl_status
tl_rmsnorm_fwd(tl_tensor *y, tl_tensor *rstd, const tl_tensor *x, const tl_tensor *gamma, float eps)
{
	int64_t		n,
				d;

	if (!x || !x->data)
		return tl_fail(TL_ERR_ARG, "RMS norm input is missing");
	n = tl_rows(x);
	d = tl_cols(x);
	TL_TRY(tl_expect_same_shape(y, "RMS norm output", x, "RMS norm input"));
	TL_TRY(tl_expect_numel(rstd, "RMS norm rstd", n));
	TL_TRY(tl_expect_numel(gamma, "RMS norm gain", d));
	if (!(eps > 0.0f))
		return tl_fail(TL_ERR_ARG, "RMS norm epsilon must be positive");

	for (int64_t i = 0; i < n; i++)
	{
		const float *xr = x->data + i * d;
		float	   *yr = y->data + i * d;
		double		sq = 0.0;
		float		rs;

		for (int64_t j = 0; j < d; j++)
			sq += (double) xr[j] * xr[j];
		rs = (float) (1.0 / sqrt(sq / d + eps));
		rstd->data[i] = rs;
		for (int64_t j = 0; j < d; j++)
			yr[j] = xr[j] * rs * gamma->data[j];
	}
	return TL_OK;
}

tl_status
tl_rmsnorm_bwd(tl_tensor *dx, tl_tensor *dgamma, const tl_tensor *dy, const tl_tensor *x,
			   const tl_tensor *rstd, const tl_tensor *gamma)
{
	int64_t		n,
				d;

	if (!x || !x->data)
		return tl_fail(TL_ERR_ARG, "RMS norm input is missing");
	n = tl_rows(x);
	d = tl_cols(x);
	TL_TRY(tl_expect_same_shape(dy, "RMS norm output gradient", x, "RMS norm input"));
	TL_TRY(tl_expect_same_shape(dx, "RMS norm input gradient", x, "RMS norm input"));
	TL_TRY(tl_expect_numel(rstd, "RMS norm rstd", n));
	TL_TRY(tl_expect_numel(gamma, "RMS norm gain", d));
	TL_TRY(tl_expect_numel(dgamma, "RMS norm gain gradient", d));

	for (int64_t i = 0; i < n; i++)
	{
		const float *xr = x->data + i * d;
		const float *dyr = dy->data + i * d;
		float	   *dxr = dx->data + i * d;
		float		rs = rstd->data[i];
		double		dot = 0.0;
		float		coef;

		for (int64_t j = 0; j < d; j++)
		{
			dot += (double) dyr[j] * gamma->data[j] * xr[j];
			dgamma->data[j] += dyr[j] * xr[j] * rs;
		}
		/* d(x*rs)/dx = rs*I - x x^T rs^3 / d */
		coef = (float) (dot / d) * rs * rs * rs;
		for (int64_t j = 0; j < d; j++)
			dxr[j] = dyr[j] * gamma->data[j] * rs - xr[j] * coef;
	}
	return TL_OK;
}

/* ======================================================================
 * activations
 * ====================================================================== */

#define TL_INV_SQRT2 0.70710678118654752440f
#define TL_INV_SQRT_2PI 0.39894228040143267794f

TL_SIMD_CLONES static void
tl_gelu_loop(float *y, const float *x, int64_t n)
{
#pragma omp simd
	for (int64_t i = 0; i < n; i++)
		y[i] = 0.5f * x[i] * (1.0f + tl_erff(x[i] * TL_INV_SQRT2));
}

/* dx = dy * (Phi(x) + x * phi(x)); dx may alias dy. */
TL_SIMD_CLONES static void
tl_gelu_bwd_loop(float *dx, const float *dy, const float *x, int64_t n)
{
#pragma omp simd
	for (int64_t i = 0; i < n; i++)
	{
		float		v = x[i];
		float		cdf = 0.5f * (1.0f + tl_erff(v * TL_INV_SQRT2));
		float		pdf = TL_INV_SQRT_2PI * tl_expf(-0.5f * v * v);

		dx[i] = dy[i] * (cdf + v * pdf);
	}
}

TL_SIMD_CLONES static void
tl_silu_loop(float *y, const float *x, int64_t n)
{
#pragma omp simd
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] * tl_sigmoidf(x[i]);
}

TL_SIMD_CLONES static void
tl_silu_bwd_loop(float *dx, const float *dy, const float *x, int64_t n)
{
#pragma omp simd
	for (int64_t i = 0; i < n; i++)
	{
		float		s = tl_sigmoidf(x[i]);

		dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
	}
}

tl_status
tl_gelu_fwd(tl_tensor *y, const tl_tensor *x)
{
	TL_TRY(tl_expect_same_shape(y, "GELU output", x, "GELU input"));
	tl_gelu_loop(y->data, x->data, x->numel);
	return TL_OK;
}

tl_status
tl_gelu_bwd(tl_tensor *dx, const tl_tensor *dy, const tl_tensor *x)
{
	TL_TRY(tl_expect_same_shape(dy, "GELU output gradient", x, "GELU input"));
	TL_TRY(tl_expect_same_shape(dx, "GELU input gradient", x, "GELU input"));
	tl_gelu_bwd_loop(dx->data, dy->data, x->data, x->numel);
	return TL_OK;
}

tl_status
tl_silu_fwd(tl_tensor *y, const tl_tensor *x)
{
	TL_TRY(tl_expect_same_shape(y, "SiLU output", x, "SiLU input"));
	tl_silu_loop(y->data, x->data, x->numel);
	return TL_OK;
}

tl_status
tl_silu_bwd(tl_tensor *dx, const tl_tensor *dy, const tl_tensor *x)
{
	TL_TRY(tl_expect_same_shape(dy, "SiLU output gradient", x, "SiLU input"));
	TL_TRY(tl_expect_same_shape(dx, "SiLU input gradient", x, "SiLU input"));
	tl_silu_bwd_loop(dx->data, dy->data, x->data, x->numel);
	return TL_OK;
}

/* Softmax of one row, stable against large logits. */
TL_SIMD_CLONES static void
tl_softmax_row(float *y, const float *x, int64_t d)
{
	float		max = x[0],
				sum = 0.0f,
				inv;

#pragma omp simd reduction(max:max)
	for (int64_t j = 1; j < d; j++)
		max = x[j] > max ? x[j] : max;
#pragma omp simd reduction(+:sum)
	for (int64_t j = 0; j < d; j++)
	{
		y[j] = tl_expf(x[j] - max);
		sum += y[j];
	}
	inv = 1.0f / sum;
#pragma omp simd
	for (int64_t j = 0; j < d; j++)
		y[j] *= inv;
}

tl_status
tl_softmax_fwd(tl_tensor *y, const tl_tensor *x)
{
	int64_t		d;

	TL_TRY(tl_expect_same_shape(y, "softmax output", x, "softmax input"));
	d = tl_cols(x);
	for (int64_t i = 0; i < tl_rows(x); i++)
		tl_softmax_row(y->data + i * d, x->data + i * d, d);
	return TL_OK;
}

tl_status
tl_softmax_bwd(tl_tensor *dx, const tl_tensor *dy, const tl_tensor *y)
{
	int64_t		d;

	TL_TRY(tl_expect_same_shape(dy, "softmax output gradient", y, "softmax output"));
	TL_TRY(tl_expect_same_shape(dx, "softmax input gradient", y, "softmax output"));
	d = tl_cols(y);
	for (int64_t i = 0; i < tl_rows(y); i++)
	{
		const float *yr = y->data + i * d;
		const float *dyr = dy->data + i * d;
		float	   *dxr = dx->data + i * d;
		double		dot = 0.0;

		for (int64_t j = 0; j < d; j++)
			dot += (double) dyr[j] * yr[j];
		for (int64_t j = 0; j < d; j++)
			dxr[j] = yr[j] * (dyr[j] - (float) dot);
	}
	return TL_OK;
}

/* ======================================================================
 * dropout
 * ====================================================================== */

static tl_status
tl_dropout_apply(tl_tensor *y, const tl_tensor *x, float p, uint64_t seed, uint64_t offset,
				 const char *what)
{
	float		scale;

	TL_TRY(tl_expect_same_shape(y, what, x, what));
	if (!(p >= 0.0f && p < 1.0f))
		return tl_fail(TL_ERR_ARG, "dropout probability %g is outside [0, 1)", (double) p);
	if (p == 0.0f)
	{
		if (y->data != x->data)
			memcpy(y->data, x->data, sizeof(float) * x->numel);
		return TL_OK;
	}
	scale = 1.0f / (1.0f - p);
	for (int64_t i = 0; i < x->numel; i++)
		y->data[i] = tl_hash_uniform(seed, offset + (uint64_t) i) < p ? 0.0f : x->data[i] * scale;
	return TL_OK;
}

tl_status
tl_dropout_fwd(tl_tensor *y, const tl_tensor *x, float p, uint64_t seed, uint64_t offset)
{
	return tl_dropout_apply(y, x, p, seed, offset, "dropout tensor");
}

/* The gradient of dropout is the same masked scaling, applied to dy. */
tl_status
tl_dropout_bwd(tl_tensor *dx, const tl_tensor *dy, float p, uint64_t seed, uint64_t offset)
{
	return tl_dropout_apply(dx, dy, p, seed, offset, "dropout gradient");
}

/* ======================================================================
 * losses
 * ====================================================================== */

static tl_status
tl_check_targets(const int32_t *targets, int64_t n, int64_t classes, int64_t *counted)
{
	int64_t		count = 0;

	if (!targets)
		return tl_fail(TL_ERR_ARG, "cross-entropy targets are missing");
	for (int64_t i = 0; i < n; i++)
	{
		if (targets[i] == TL_PAD_INDEX)
			continue;
		if (targets[i] < 0 || targets[i] >= classes)
			return tl_fail(TL_ERR_ARG, "cross-entropy target %d at row %lld is outside 0..%lld",
						   targets[i], (long long) i, (long long) classes - 1);
		count++;
	}
	*counted = count;
	return TL_OK;
}

tl_status
tl_cross_entropy_fwd(float *loss, const tl_tensor *logits, const int32_t *targets)
{
	int64_t		n,
				c,
				count = 0;
	double		total = 0.0;

	if (!loss || !logits || !logits->data)
		return tl_fail(TL_ERR_ARG, "cross-entropy arguments are missing");
	n = tl_rows(logits);
	c = tl_cols(logits);
	TL_TRY(tl_check_targets(targets, n, c, &count));
	for (int64_t i = 0; i < n; i++)
	{
		const float *row = logits->data + i * c;
		float		max = row[0];
		double		sum = 0.0;

		if (targets[i] == TL_PAD_INDEX)
			continue;
		for (int64_t j = 1; j < c; j++)
			if (row[j] > max)
				max = row[j];
		for (int64_t j = 0; j < c; j++)
			sum += exp((double) row[j] - max);
		total += log(sum) + max - row[targets[i]];
	}
	*loss = count ? (float) (total / count) : 0.0f;
	return TL_OK;
}

tl_status
tl_cross_entropy_bwd(tl_tensor *dlogits, const tl_tensor *logits, const int32_t *targets, float dloss)
{
	int64_t		n,
				c,
				count = 0;
	float		scale;

	TL_TRY(tl_expect_same_shape(dlogits, "cross-entropy logit gradient", logits, "cross-entropy logits"));
	n = tl_rows(logits);
	c = tl_cols(logits);
	TL_TRY(tl_check_targets(targets, n, c, &count));
	scale = count ? dloss / (float) count : 0.0f;
	for (int64_t i = 0; i < n; i++)
	{
		float	   *drow = dlogits->data + i * c;

		if (targets[i] == TL_PAD_INDEX)
		{
			memset(drow, 0, sizeof(float) * c);
			continue;
		}
		tl_softmax_row(drow, logits->data + i * c, c);
		drow[targets[i]] -= 1.0f;
		for (int64_t j = 0; j < c; j++)
			drow[j] *= scale;
	}
	return TL_OK;
}

/* Validate BCE inputs and return the weight sum. */
static tl_status
tl_check_bce(const tl_tensor *logits, const tl_tensor *targets, const tl_tensor *weights,
			 double *weight_sum)
{
	double		sum = 0.0;

	if (!logits || !logits->data)
		return tl_fail(TL_ERR_ARG, "BCE logits are missing");
	TL_TRY(tl_expect_numel(targets, "BCE targets", logits->numel));
	if (weights)
		TL_TRY(tl_expect_numel(weights, "BCE weights", logits->numel));
	for (int64_t i = 0; i < logits->numel; i++)
	{
		float		t = targets->data[i];
		float		w = weights ? weights->data[i] : 1.0f;

		if (!(t >= 0.0f && t <= 1.0f))
			return tl_fail(TL_ERR_ARG, "BCE target %g at %lld is outside [0, 1]", (double) t, (long long) i);
		if (!(w >= 0.0f) || isinf(w))
			return tl_fail(TL_ERR_ARG, "BCE weight %g at %lld is not a finite non-negative value",
						   (double) w, (long long) i);
		sum += w;
	}
	*weight_sum = sum;
	return TL_OK;
}

tl_status
tl_bce_logits_fwd(float *loss, const tl_tensor *logits, const tl_tensor *targets, const tl_tensor *weights)
{
	double		weight_sum,
				total = 0.0;

	if (!loss)
		return tl_fail(TL_ERR_ARG, "BCE loss output is missing");
	TL_TRY(tl_check_bce(logits, targets, weights, &weight_sum));
	for (int64_t i = 0; i < logits->numel; i++)
	{
		float		x = logits->data[i];
		float		w = weights ? weights->data[i] : 1.0f;

		if (w == 0.0f)
			continue;
		/* max(x,0) - x*t + log(1 + e^-|x|): no overflow for any x */
		total += w * ((x > 0.0f ? x : 0.0f) - x * targets->data[i] + log1pf(expf(-fabsf(x))));
	}
	*loss = weight_sum > 0.0 ? (float) (total / weight_sum) : 0.0f;
	return TL_OK;
}

tl_status
tl_bce_logits_bwd(tl_tensor *dlogits, const tl_tensor *logits, const tl_tensor *targets,
				  const tl_tensor *weights, float dloss)
{
	double		weight_sum;
	float		scale;

	TL_TRY(tl_check_bce(logits, targets, weights, &weight_sum));
	TL_TRY(tl_expect_same_shape(dlogits, "BCE logit gradient", logits, "BCE logits"));
	scale = weight_sum > 0.0 ? (float) (dloss / weight_sum) : 0.0f;
	for (int64_t i = 0; i < logits->numel; i++)
	{
		float		w = weights ? weights->data[i] : 1.0f;

		dlogits->data[i] = w * scale * (tl_sigmoidf(logits->data[i]) - targets->data[i]);
	}
	return TL_OK;
}

/* ======================================================================
 * helpers
 * ====================================================================== */

tl_status
tl_add(tl_tensor *y, const tl_tensor *a, const tl_tensor *b)
{
	TL_TRY(tl_expect_same_shape(a, "addend", b, "addend"));
	TL_TRY(tl_expect_same_shape(y, "sum", a, "addend"));
	for (int64_t i = 0; i < a->numel; i++)
		y->data[i] = a->data[i] + b->data[i];
	return TL_OK;
}
