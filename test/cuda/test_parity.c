/*
 * test_parity.c -- the CUDA plugin's forward ops against the CPU ops.
 *
 * Usage: test_cuda_parity path/to/tutor_llm_cuda.so
 *
 * Loads the plugin through the core (tl_cuda_open), so this program
 * links no CUDA library.  Where the plugin, the driver or a GPU is
 * missing it prints one line, "cuda parity: SKIPPED (reason)", and
 * exits 0.  Otherwise every forward op runs on random inputs on both
 * sides and the results must agree within a tolerance (exactly, for
 * the embedding gather and the dropout mask); the largest error of
 * each op is printed.  The language model's ops (quantized products, row
 * lookups, rotary embeddings, the half-precision KV cache and attention
 * over it, SwiGLU) are checked the same way.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bench_util.h"
#include "tl_alloc.h"
#include "tl_cuda_api.h"
#include "tl_device.h"
#include "tl_llm.h"
#include "tl_ops.h"
#include "tl_quant.h"
#include "tl_rng.h"
#include "tl_status.h"
#include "tl_tensor.h"

static const tl_cuda_api *cu;
static tl_rng rng;

/* ---- bookkeeping: everything a test allocates is freed by its teardown ---- */

#define MAX_ALLOCS 64

static void *host_allocs[MAX_ALLOCS];
static int	n_host_allocs;
static void *dev_allocs[MAX_ALLOCS];
static int	n_dev_allocs;

static int
teardown(void **state)
{
	(void) state;
	for (int i = 0; i < n_host_allocs; i++)
		free(host_allocs[i]);
	n_host_allocs = 0;
	for (int i = 0; i < n_dev_allocs; i++)
		(void) cu->release(dev_allocs[i]);
	n_dev_allocs = 0;
	return 0;
}

#define CU_OK(call) \
	do { \
		int cu_rc_ = (call); \
		if (cu_rc_ != 0) \
			fail_msg("%s failed (%d): %s", #call, cu_rc_, cu->last_error()); \
	} while (0)

#define CPU_OK(call) \
	do { \
		tl_status cpu_rc_ = (call); \
		if (cpu_rc_ != TL_OK) \
			fail_msg("%s failed (%d): %s", #call, (int) cpu_rc_, tl_last_error()); \
	} while (0)

static void *
host_alloc(size_t bytes)
{
	void	   *p;

	assert_true(n_host_allocs < MAX_ALLOCS);
	p = calloc(1, bytes > 0 ? bytes : 1);
	assert_non_null(p);
	host_allocs[n_host_allocs++] = p;
	return p;
}

static float *
host_floats(size_t n)
{
	return host_alloc(n * sizeof(float));
}

static void *
dev_alloc(size_t bytes)
{
	void	   *d = NULL;

	assert_true(n_dev_allocs < MAX_ALLOCS);
	CU_OK(cu->alloc(&d, bytes));
	dev_allocs[n_dev_allocs++] = d;
	return d;
}

static void *
dev_copy(const void *h, size_t bytes)
{
	void	   *d = dev_alloc(bytes);

	CU_OK(cu->upload(d, h, bytes));
	return d;
}

static float *
fetch_floats(const float *d, size_t n)
{
	float	   *h = host_floats(n);

	CU_OK(cu->download(h, d, n * sizeof(float)));
	return h;
}

static void
fill_normal(float *p, size_t n, float scale, float shift)
{
	for (size_t i = 0; i < n; i++)
		p[i] = tl_rng_normal(&rng) * scale + shift;
}

static void
fill_uniform(float *p, size_t n, float lo, float hi)
{
	for (size_t i = 0; i < n; i++)
		p[i] = lo + (hi - lo) * tl_rng_uniform(&rng);
}

static tl_tensor
view(float *data, int ndim, const int64_t *shape)
{
	tl_tensor	t;

	CPU_OK(tl_tensor_view(&t, data, ndim, shape));
	return t;
}

/*
 * Every element must satisfy |got - ref| <= atol + rtol * |ref|.  Prints
 * the largest absolute error and the largest relative one (over elements
 * with |ref| >= 1e-3, where a relative error means something).
 */
static void
expect_close(const char *what, const float *ref, const float *got, size_t n,
			 double atol, double rtol)
{
	double		max_abs = 0.0,
				max_rel = 0.0;
	size_t		n_bad = 0,
				first_bad = 0;

	for (size_t i = 0; i < n; i++)
	{
		double		a = ref[i],
					b = got[i],
					d = fabs(a - b);

		if (isnan(a) != isnan(b) || isinf(a) != isinf(b) || (isfinite(a) && !(d <= atol + rtol * fabs(a))))
		{
			if (n_bad++ == 0)
				first_bad = i;
		}
		if (isfinite(d))
		{
			if (d > max_abs)
				max_abs = d;
			if (fabs(a) >= 1e-3 && d / fabs(a) > max_rel)
				max_rel = d / fabs(a);
		}
	}
	printf("cuda parity: %-36s n=%-8zu max abs err %.3e  max rel err %.3e\n",
		   what, n, max_abs, max_rel);
	if (n_bad > 0)
		fail_msg("%s: %zu of %zu elements off (first at %zu: cpu %.9g, cuda %.9g; atol %g rtol %g)",
				 what, n_bad, n, first_bad, (double) ref[first_bad], (double) got[first_bad],
				 atol, rtol);
}

static void
expect_close_scalar(const char *what, float ref, float got, double atol, double rtol)
{
	expect_close(what, &ref, &got, 1, atol, rtol);
}

/* ---- embedding ----------------------------------------------------------- */

static void
test_embedding(void **state)
{
	const int64_t V = 50,
				D = 33,
				N = 40;
	float	   *table = host_floats(V * D);
	int32_t    *idx = host_alloc(N * sizeof(int32_t));
	float	   *out = host_floats(N * D);
	float	   *d_table,
			   *d_out,
			   *got;
	int32_t    *d_idx;
	tl_tensor	t_table,
				t_out;

	(void) state;
	fill_normal(table, V * D, 1.0f, 0.0f);
	for (int64_t i = 0; i < N; i++)
		idx[i] = (i % 7 == 3) ? TL_PAD_INDEX : (int32_t) tl_rng_below(&rng, V);
	idx[0] = 0;
	idx[1] = (int32_t) (V - 1);

	t_table = view(table, 2, TL_SHAPE(V, D));
	t_out = view(out, 2, TL_SHAPE(N, D));
	CPU_OK(tl_embedding_fwd(&t_out, &t_table, idx));

	d_table = dev_copy(table, V * D * sizeof(float));
	d_idx = dev_copy(idx, N * sizeof(int32_t));
	d_out = dev_alloc(N * D * sizeof(float));
	CU_OK(cu->embedding_fwd(d_out, d_table, d_idx, N, V, D));
	got = fetch_floats(d_out, N * D);
	/* a gather: bit-identical */
	expect_close("embedding", out, got, N * D, 0.0, 0.0);
}

/* An index out of range fails with TL_ERR_ARG on both sides and leaves the output alone. */
static void
test_embedding_out_of_range(void **state)
{
	const int64_t V = 50,
				D = 8,
				N = 20;
	const int32_t bad_values[] = {(int32_t) V, -2, INT32_MAX};
	float	   *table = host_floats(V * D);
	int32_t    *idx = host_alloc(N * sizeof(int32_t));
	float	   *out = host_floats(N * D);
	float	   *sentinel = host_floats(N * D);
	float	   *d_table,
			   *d_out,
			   *got;
	int32_t    *d_idx;
	tl_tensor	t_table,
				t_out;

	(void) state;
	fill_normal(table, V * D, 1.0f, 0.0f);
	for (int64_t i = 0; i < N * D; i++)
		sentinel[i] = 7.0f;
	d_table = dev_copy(table, V * D * sizeof(float));
	d_out = dev_copy(sentinel, N * D * sizeof(float));
	d_idx = dev_alloc(N * sizeof(int32_t));
	t_table = view(table, 2, TL_SHAPE(V, D));
	t_out = view(out, 2, TL_SHAPE(N, D));

	for (size_t k = 0; k < sizeof(bad_values) / sizeof(bad_values[0]); k++)
	{
		int			rc;

		for (int64_t i = 0; i < N; i++)
			idx[i] = (int32_t) (i % V);
		idx[13] = bad_values[k];
		idx[17] = bad_values[k];
		CU_OK(cu->upload(d_idx, idx, N * sizeof(int32_t)));

		assert_int_equal(tl_embedding_fwd(&t_out, &t_table, idx), TL_ERR_ARG);
		rc = cu->embedding_fwd(d_out, d_table, d_idx, N, V, D);
		printf("cuda parity: embedding index %d -> status %d (%s)\n",
			   (int) bad_values[k], rc, cu->last_error());
		assert_int_equal(rc, TL_ERR_ARG);
		got = fetch_floats(d_out, N * D);
		expect_close("embedding error: untouched", sentinel, got, N * D, 0.0, 0.0);
	}

	/* the device is still usable after a reported error */
	for (int64_t i = 0; i < N; i++)
		idx[i] = (int32_t) (i % V);
	CU_OK(cu->upload(d_idx, idx, N * sizeof(int32_t)));
	CU_OK(cu->embedding_fwd(d_out, d_table, d_idx, N, V, D));
	CPU_OK(tl_embedding_fwd(&t_out, &t_table, idx));
	got = fetch_floats(d_out, N * D);
	expect_close("embedding after error", out, got, N * D, 0.0, 0.0);
}

/* ---- linear ----------------------------------------------------------------- */

static void
run_linear(const char *what, int64_t N, int64_t in, int64_t out, int with_bias)
{
	float	   *x = host_floats(N * in);
	float	   *w = host_floats(out * in);
	float	   *b = host_floats(out);
	float	   *y = host_floats(N * out);
	float	   *d_x,
			   *d_w,
			   *d_b = NULL,
			   *d_y,
			   *got;
	tl_tensor	t_x,
				t_w,
				t_b,
				t_y;

	fill_normal(x, N * in, 1.0f, 0.0f);
	fill_normal(w, out * in, 1.0f / sqrtf((float) in), 0.0f);
	fill_normal(b, out, 0.5f, 0.0f);
	t_x = view(x, 2, TL_SHAPE(N, in));
	t_w = view(w, 2, TL_SHAPE(out, in));
	t_b = view(b, 1, TL_SHAPE(out));
	t_y = view(y, 2, TL_SHAPE(N, out));
	CPU_OK(tl_linear_fwd(&t_y, &t_x, &t_w, with_bias ? &t_b : NULL));

	d_x = dev_copy(x, N * in * sizeof(float));
	d_w = dev_copy(w, out * in * sizeof(float));
	if (with_bias)
		d_b = dev_copy(b, out * sizeof(float));
	d_y = dev_alloc(N * out * sizeof(float));
	CU_OK(cu->linear_fwd(d_y, d_x, d_w, d_b, N, in, out));
	got = fetch_floats(d_y, N * out);
	/*
	 * FP32 on both sides: the error is summation order only.  TF32 would
	 * be off by about 1e-3 here and fail.
	 */
	expect_close(what, y, got, N * out, 1e-4, 1e-4);
}

static void
test_linear(void **state)
{
	(void) state;
	run_linear("linear (bias)", 37, 129, 65, 1);
	run_linear("linear (no bias)", 37, 129, 65, 0);
	run_linear("linear (512x768 -> 384)", 512, 768, 384, 1);
}

/* ---- normalisation ---------------------------------------------------------- */

static void
test_layernorm(void **state)
{
	const int64_t N = 19,
				D = 300;		/* more than a block's threads */
	const float eps = 1e-5f;
	float	   *x = host_floats(N * D),
			   *gamma = host_floats(D),
			   *beta = host_floats(D),
			   *y = host_floats(N * D),
			   *mean = host_floats(N),
			   *rstd = host_floats(N);
	float	   *d_x,
			   *d_gamma,
			   *d_beta,
			   *d_y,
			   *d_mean,
			   *d_rstd;
	tl_tensor	t_x,
				t_gamma,
				t_beta,
				t_y,
				t_mean,
				t_rstd;

	(void) state;
	fill_normal(x, N * D, 2.0f, 0.5f);
	fill_normal(gamma, D, 0.3f, 1.0f);
	fill_normal(beta, D, 0.3f, 0.0f);
	t_x = view(x, 2, TL_SHAPE(N, D));
	t_gamma = view(gamma, 1, TL_SHAPE(D));
	t_beta = view(beta, 1, TL_SHAPE(D));
	t_y = view(y, 2, TL_SHAPE(N, D));
	t_mean = view(mean, 1, TL_SHAPE(N));
	t_rstd = view(rstd, 1, TL_SHAPE(N));
	CPU_OK(tl_layernorm_fwd(&t_y, &t_mean, &t_rstd, &t_x, &t_gamma, &t_beta, eps));

	d_x = dev_copy(x, N * D * sizeof(float));
	d_gamma = dev_copy(gamma, D * sizeof(float));
	d_beta = dev_copy(beta, D * sizeof(float));
	d_y = dev_alloc(N * D * sizeof(float));
	d_mean = dev_alloc(N * sizeof(float));
	d_rstd = dev_alloc(N * sizeof(float));
	CU_OK(cu->layernorm_fwd(d_y, d_mean, d_rstd, d_x, d_gamma, d_beta, N, D, eps));
	expect_close("layernorm y", y, fetch_floats(d_y, N * D), N * D, 1e-5, 1e-4);
	expect_close("layernorm mean", mean, fetch_floats(d_mean, N), N, 1e-5, 1e-4);
	expect_close("layernorm rstd", rstd, fetch_floats(d_rstd, N), N, 1e-6, 1e-4);
}

static void
test_rmsnorm(void **state)
{
	const int64_t N = 19,
				D = 300;
	const float eps = 1e-6f;
	float	   *x = host_floats(N * D),
			   *gamma = host_floats(D),
			   *y = host_floats(N * D),
			   *rstd = host_floats(N);
	float	   *d_x,
			   *d_gamma,
			   *d_y,
			   *d_rstd;
	tl_tensor	t_x,
				t_gamma,
				t_y,
				t_rstd;

	(void) state;
	fill_normal(x, N * D, 2.0f, 0.5f);
	fill_normal(gamma, D, 0.3f, 1.0f);
	t_x = view(x, 2, TL_SHAPE(N, D));
	t_gamma = view(gamma, 1, TL_SHAPE(D));
	t_y = view(y, 2, TL_SHAPE(N, D));
	t_rstd = view(rstd, 1, TL_SHAPE(N));
	CPU_OK(tl_rmsnorm_fwd(&t_y, &t_rstd, &t_x, &t_gamma, eps));

	d_x = dev_copy(x, N * D * sizeof(float));
	d_gamma = dev_copy(gamma, D * sizeof(float));
	d_y = dev_alloc(N * D * sizeof(float));
	d_rstd = dev_alloc(N * sizeof(float));
	CU_OK(cu->rmsnorm_fwd(d_y, d_rstd, d_x, d_gamma, N, D, eps));
	expect_close("rmsnorm y", y, fetch_floats(d_y, N * D), N * D, 1e-5, 1e-4);
	expect_close("rmsnorm rstd", rstd, fetch_floats(d_rstd, N), N, 1e-6, 1e-4);
}

/* ---- activations and softmax ----------------------------------------------- */

static void
test_activations(void **state)
{
	const int64_t N = 10007;
	float	   *x = host_floats(N),
			   *y = host_floats(N);
	float	   *d_x,
			   *d_y;
	tl_tensor	t_x,
				t_y;

	(void) state;
	fill_normal(x, N, 3.0f, 0.0f);
	x[0] = 0.0f;
	x[1] = -30.0f;
	x[2] = 30.0f;
	t_x = view(x, 1, TL_SHAPE(N));
	t_y = view(y, 1, TL_SHAPE(N));
	d_x = dev_copy(x, N * sizeof(float));
	d_y = dev_alloc(N * sizeof(float));

	CPU_OK(tl_gelu_fwd(&t_y, &t_x));
	CU_OK(cu->gelu_fwd(d_y, d_x, N));
	expect_close("gelu", y, fetch_floats(d_y, N), N, 1e-6, 1e-5);

	CPU_OK(tl_silu_fwd(&t_y, &t_x));
	CU_OK(cu->silu_fwd(d_y, d_x, N));
	expect_close("silu", y, fetch_floats(d_y, N), N, 1e-6, 1e-5);
}

static void
test_softmax(void **state)
{
	const int64_t R = 13,
				C = 1000;
	float	   *x = host_floats(R * C),
			   *y = host_floats(R * C);
	float	   *d_x,
			   *d_y;
	tl_tensor	t_x,
				t_y;

	(void) state;
	fill_normal(x, R * C, 5.0f, 0.0f);
	t_x = view(x, 2, TL_SHAPE(R, C));
	t_y = view(y, 2, TL_SHAPE(R, C));
	CPU_OK(tl_softmax_fwd(&t_y, &t_x));
	d_x = dev_copy(x, R * C * sizeof(float));
	d_y = dev_alloc(R * C * sizeof(float));
	CU_OK(cu->softmax_fwd(d_y, d_x, R, C));
	expect_close("softmax", y, fetch_floats(d_y, R * C), R * C, 1e-7, 1e-4);
}

/* ---- attention ----------------------------------------------------------------- */

static void
run_attention(const char *what, int64_t B, int64_t T, int64_t H, int64_t hd, const uint8_t *key_valid,
			  bool alibi)
{
	const int64_t nq = B * T * H * hd,
				np = B * H * T * T;
	float	   *q = host_floats(nq),
			   *k = host_floats(nq),
			   *v = host_floats(nq),
			   *out = host_floats(nq),
			   *probs = host_floats(np);
	float	   *d_q,
			   *d_k,
			   *d_v,
			   *d_out,
			   *d_probs,
			   *got_out,
			   *got_probs;
	uint8_t    *d_valid = NULL;
	tl_tensor	t_q,
				t_k,
				t_v,
				t_out,
				t_probs;
	tl_attn_dims dims = {B, T, H, hd, alibi};
	char		label[96];

	fill_normal(q, nq, 1.0f, 0.0f);
	fill_normal(k, nq, 1.0f, 0.0f);
	fill_normal(v, nq, 1.0f, 0.0f);
	t_q = view(q, 3, TL_SHAPE(B, T, H * hd));
	t_k = view(k, 3, TL_SHAPE(B, T, H * hd));
	t_v = view(v, 3, TL_SHAPE(B, T, H * hd));
	t_out = view(out, 3, TL_SHAPE(B, T, H * hd));
	t_probs = view(probs, 4, TL_SHAPE(B, H, T, T));
	CPU_OK(tl_attention_fwd(&t_out, &t_probs, &t_q, &t_k, &t_v, key_valid, dims));

	d_q = dev_copy(q, nq * sizeof(float));
	d_k = dev_copy(k, nq * sizeof(float));
	d_v = dev_copy(v, nq * sizeof(float));
	if (key_valid != NULL)
		d_valid = dev_copy(key_valid, B * T);
	d_out = dev_alloc(nq * sizeof(float));
	d_probs = dev_alloc(np * sizeof(float));
	CU_OK(cu->attention_fwd(d_out, d_probs, d_q, d_k, d_v, d_valid, B, T, H, hd, alibi));
	got_out = fetch_floats(d_out, nq);
	got_probs = fetch_floats(d_probs, np);

	snprintf(label, sizeof(label), "%s out", what);
	expect_close(label, out, got_out, nq, 1e-5, 1e-4);
	snprintf(label, sizeof(label), "%s probs", what);
	expect_close(label, probs, got_probs, np, 1e-6, 1e-4);

	/* causal: nothing above the diagonal, on the device */
	for (int64_t r = 0; r < B * H * T; r++)
		for (int64_t j = r % T + 1; j < T; j++)
			if (got_probs[r * T + j] != 0.0f)
				fail_msg("%s: probs row %lld has weight on future key %lld",
						 what, (long long) r, (long long) j);
}

static void
test_attention(void **state)
{
	const int64_t B = 2,
				T = 17,
				H = 3,
				hd = 24;
	uint8_t		valid[2 * 17];

	(void) state;
	run_attention("attention", B, T, H, hd, NULL, false);

	/*
	 * Padding: sequence 0 has its last two positions padded; sequence 1
	 * is left-padded (0..2) and right-padded (13..16), so its queries
	 * 0..2 see no valid key and must give zero rows.
	 */
	for (int64_t t = 0; t < T; t++)
	{
		valid[t] = (t < T - 2);
		valid[T + t] = (t >= 3 && t <= 12);
	}
	run_attention("attention (padded)", B, T, H, hd, valid, false);
	run_attention("attention (padded, ALiBi)", B, T, H, hd, valid, true);

	/* more keys than a block has threads, head_dim above a warp */
	run_attention("attention (T=150, hd=80)", 1, 150, 2, 80, NULL, false);
}

/* ---- dropout ------------------------------------------------------------------- */

static void
run_dropout(int64_t N, float p, uint64_t seed, uint64_t offset)
{
	float	   *x = host_floats(N),
			   *y = host_floats(N),
			   *got;
	float	   *d_x,
			   *d_y;
	tl_tensor	t_x,
				t_y;
	int64_t		mask_diff = 0,
				bit_diff = 0,
				dropped = 0;
	char		label[96];

	/* no zeros in x, so a zero in y is a dropped element */
	fill_uniform(x, N, 1.0f, 2.0f);
	t_x = view(x, 1, TL_SHAPE(N));
	t_y = view(y, 1, TL_SHAPE(N));
	CPU_OK(tl_dropout_fwd(&t_y, &t_x, p, seed, offset));
	d_x = dev_copy(x, N * sizeof(float));
	d_y = dev_alloc(N * sizeof(float));
	CU_OK(cu->dropout_fwd(d_y, d_x, N, p, seed, offset));
	got = fetch_floats(d_y, N);

	for (int64_t i = 0; i < N; i++)
	{
		mask_diff += ((y[i] == 0.0f) != (got[i] == 0.0f));
		bit_diff += (memcmp(&y[i], &got[i], sizeof(float)) != 0);
		dropped += (got[i] == 0.0f);
	}
	printf("cuda parity: dropout p=%.2f offset=%llu: %lld of %lld dropped, %lld mask differences, "
		   "%lld values not bit-identical\n",
		   (double) p, (unsigned long long) offset, (long long) dropped, (long long) N,
		   (long long) mask_diff, (long long) bit_diff);
	snprintf(label, sizeof(label), "dropout p=%.2f", (double) p);
	expect_close(label, y, got, N, 0.0, 0.0);
	/*
	 * The same counter-based hash on both sides gives the same mask, and
	 * both scale survivors by the float 1/(1-p): bit-identical results.
	 */
	assert_int_equal(mask_diff, 0);
	assert_int_equal(bit_diff, 0);
}

static void
test_dropout(void **state)
{
	(void) state;
	run_dropout(100003, 0.1f, 0x1234ULL, 777);
	run_dropout(4099, 0.5f, 0xDEADBEEFCAFEULL, (uint64_t) 1 << 40);
	run_dropout(1000, 0.0f, 42, 0);
}

/* ---- losses -------------------------------------------------------------------- */

static void
test_cross_entropy(void **state)
{
	const int64_t N = 31,
				C = 257;
	float	   *logits = host_floats(N * C);
	int32_t    *targets = host_alloc(N * sizeof(int32_t));
	float	   *d_logits;
	int32_t    *d_targets;
	tl_tensor	t_logits;
	float		cpu_loss = -1.0f,
				cu_loss = -1.0f;
	int			rc;

	(void) state;
	fill_normal(logits, N * C, 3.0f, 0.0f);
	for (int64_t i = 0; i < N; i++)
		targets[i] = (i % 5 == 0) ? TL_PAD_INDEX : (int32_t) tl_rng_below(&rng, C);
	t_logits = view(logits, 2, TL_SHAPE(N, C));
	d_logits = dev_copy(logits, N * C * sizeof(float));
	d_targets = dev_copy(targets, N * sizeof(int32_t));

	CPU_OK(tl_cross_entropy_fwd(&cpu_loss, &t_logits, targets));
	CU_OK(cu->cross_entropy_fwd(&cu_loss, d_logits, d_targets, N, C));
	expect_close_scalar("cross_entropy", cpu_loss, cu_loss, 1e-5, 1e-5);

	/* nothing counted: loss 0 */
	for (int64_t i = 0; i < N; i++)
		targets[i] = TL_PAD_INDEX;
	CU_OK(cu->upload(d_targets, targets, N * sizeof(int32_t)));
	CPU_OK(tl_cross_entropy_fwd(&cpu_loss, &t_logits, targets));
	CU_OK(cu->cross_entropy_fwd(&cu_loss, d_logits, d_targets, N, C));
	assert_true(cpu_loss == 0.0f);
	assert_true(cu_loss == 0.0f);

	/* a target out of range is an argument error; the loss is not written */
	targets[4] = (int32_t) C;
	CU_OK(cu->upload(d_targets, targets, N * sizeof(int32_t)));
	cu_loss = 123.0f;
	rc = cu->cross_entropy_fwd(&cu_loss, d_logits, d_targets, N, C);
	printf("cuda parity: cross_entropy target %d -> status %d (%s)\n", (int) C, rc, cu->last_error());
	assert_int_equal(rc, TL_ERR_ARG);
	assert_true(cu_loss == 123.0f);
}

static void
test_bce_logits(void **state)
{
	const int64_t N = 1001;
	float	   *logits = host_floats(N),
			   *targets = host_floats(N),
			   *weights = host_floats(N),
			   *zeros = host_floats(N);
	float	   *d_logits,
			   *d_targets,
			   *d_weights,
			   *d_zeros;
	tl_tensor	t_logits,
				t_targets,
				t_weights,
				t_zeros;
	float		cpu_loss = -1.0f,
				cu_loss = -1.0f;
	int			rc;

	(void) state;
	fill_normal(logits, N, 4.0f, 0.0f);
	logits[0] = 60.0f;			/* far in the tails: the stable form matters */
	logits[1] = -60.0f;
	fill_uniform(targets, N, 0.0f, 1.0f);
	fill_uniform(weights, N, 0.0f, 2.0f);
	for (int64_t i = 0; i < N; i += 4)
		weights[i] = 0.0f;
	t_logits = view(logits, 1, TL_SHAPE(N));
	t_targets = view(targets, 1, TL_SHAPE(N));
	t_weights = view(weights, 1, TL_SHAPE(N));
	t_zeros = view(zeros, 1, TL_SHAPE(N));
	d_logits = dev_copy(logits, N * sizeof(float));
	d_targets = dev_copy(targets, N * sizeof(float));
	d_weights = dev_copy(weights, N * sizeof(float));
	d_zeros = dev_copy(zeros, N * sizeof(float));

	CPU_OK(tl_bce_logits_fwd(&cpu_loss, &t_logits, &t_targets, &t_weights));
	CU_OK(cu->bce_logits_fwd(&cu_loss, d_logits, d_targets, d_weights, N));
	expect_close_scalar("bce_logits (weighted)", cpu_loss, cu_loss, 1e-5, 1e-5);

	CPU_OK(tl_bce_logits_fwd(&cpu_loss, &t_logits, &t_targets, NULL));
	CU_OK(cu->bce_logits_fwd(&cu_loss, d_logits, d_targets, NULL, N));
	expect_close_scalar("bce_logits (no weights)", cpu_loss, cu_loss, 1e-5, 1e-5);

	/* every weight 0: loss 0 */
	CPU_OK(tl_bce_logits_fwd(&cpu_loss, &t_logits, &t_targets, &t_zeros));
	CU_OK(cu->bce_logits_fwd(&cu_loss, d_logits, d_targets, d_zeros, N));
	assert_true(cpu_loss == 0.0f);
	assert_true(cu_loss == 0.0f);

	/* a target outside [0, 1] or a negative weight: argument errors on both sides */
	targets[7] = 1.5f;
	CU_OK(cu->upload(d_targets, targets, N * sizeof(float)));
	assert_int_equal(tl_bce_logits_fwd(&cpu_loss, &t_logits, &t_targets, NULL), TL_ERR_ARG);
	cu_loss = 123.0f;
	rc = cu->bce_logits_fwd(&cu_loss, d_logits, d_targets, NULL, N);
	printf("cuda parity: bce target 1.5 -> status %d (%s)\n", rc, cu->last_error());
	assert_int_equal(rc, TL_ERR_ARG);
	assert_true(cu_loss == 123.0f);
	targets[7] = 0.5f;
	weights[9] = -1.0f;
	CU_OK(cu->upload(d_targets, targets, N * sizeof(float)));
	CU_OK(cu->upload(d_weights, weights, N * sizeof(float)));
	assert_int_equal(tl_bce_logits_fwd(&cpu_loss, &t_logits, &t_targets, &t_weights), TL_ERR_ARG);
	rc = cu->bce_logits_fwd(&cu_loss, d_logits, d_targets, d_weights, N);
	printf("cuda parity: bce weight -1 -> status %d (%s)\n", rc, cu->last_error());
	assert_int_equal(rc, TL_ERR_ARG);
}

/* ---- the language model's ops -------------------------------------------------- */

/*
 * Quantized products: weights quantized on the host, decoded on the CPU
 * in double for the reference, uploaded as the GGUF bytes for the GPU.
 */
static void
test_llm_qmatmul(void **state)
{
	static const tl_qtype types[] = {TL_QT_F32, TL_QT_F16, TL_QT_Q4_0, TL_QT_Q4_1, TL_QT_Q5_0,
	TL_QT_Q5_1, TL_QT_Q8_0};
	const int64_t R = 37,
				C = 160,
				N = 3;

	(void) state;
	for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++)
	{
		const tl_qtype_traits *t = tl_qtype_info(types[k]);
		size_t		bytes = tl_qtype_row_size(types[k], C) * R;
		float	   *w = host_floats(R * C),
				   *wd = host_floats(R * C),
				   *x = host_floats(N * C),
				   *ref = host_floats(N * R);
		void	   *wq = host_alloc(bytes);
		float	   *d_y = dev_alloc(N * R * sizeof(float));
		char		what[64];

		fill_normal(w, R * C, 0.2f, 0.01f);
		fill_normal(x, N * C, 1.0f, 0.0f);
		t->from_float(w, wq, R * C);
		t->to_float(wq, wd, R * C);
		for (int64_t v = 0; v < N; v++)
			for (int64_t r = 0; r < R; r++)
			{
				double		s = 0.0;

				for (int64_t c = 0; c < C; c++)
					s += (double) wd[r * C + c] * x[v * C + c];
				ref[v * R + r] = (float) s;
			}
		CU_OK(cu->qmatmul(d_y, dev_copy(wq, bytes), types[k], R, C, dev_copy(x, N * C * sizeof(float)), N));
		snprintf(what, sizeof(what), "llm qmatmul %s", t->name);
		expect_close(what, ref, fetch_floats(d_y, N * R), N * R, 1e-4, 1e-4);
	}
	/* a type without a kernel is refused, not guessed at */
	{
		float	   *d = dev_alloc(256 * 4 * sizeof(float));

		assert_int_equal(cu->qmatmul(d, d, TL_QT_Q4_K, 2, 256, d, 1), TL_ERR_UNAVAILABLE);
		assert_int_equal(cu->qmatmul(d, d, TL_QT_Q4_0, 2, 33, d, 1), TL_ERR_ARG);
	}
}

/* Row lookups decode exactly what tl_quant decodes; a bad index gives zeros. */
static void
test_llm_get_rows(void **state)
{
	const int64_t R = 20,
				C = 64,
				N = 4;
	size_t		bytes = tl_qtype_row_size(TL_QT_Q4_1, C) * R;
	float	   *w = host_floats(R * C),
			   *wd = host_floats(R * C),
			   *ref = host_floats(N * C);
	void	   *wq = host_alloc(bytes);
	int32_t		idx[4] = {3, 0, 19, 20};
	float	   *d_out = dev_alloc(N * C * sizeof(float));

	(void) state;
	fill_normal(w, R * C, 1.0f, 0.0f);
	tl_qtype_info(TL_QT_Q4_1)->from_float(w, wq, R * C);
	tl_qtype_info(TL_QT_Q4_1)->to_float(wq, wd, R * C);
	for (int64_t t = 0; t < N; t++)
		for (int64_t c = 0; c < C; c++)
			ref[t * C + c] = idx[t] < R ? wd[idx[t] * C + c] : 0.0f;
	CU_OK(cu->get_rows(d_out, dev_copy(wq, bytes), TL_QT_Q4_1, R, C, dev_copy(idx, sizeof(idx)), N));
	expect_close("llm get_rows Q4_1", ref, fetch_floats(d_out, N * C), N * C, 0.0, 0.0);
}

/* Rotary embeddings, both pair layouts, partial rotation, factors, scaling. */
static void
test_llm_rope(void **state)
{
	const int64_t N = 3,
				H = 4,
				D = 16,
				pos0 = 7;

	(void) state;
	for (int halves = 0; halves <= 1; halves++)
		for (int64_t rope_dim = 8; rope_dim <= D; rope_dim += 8)
		{
			float	   *x = host_floats(N * H * D),
					   *ref = host_floats(N * H * D),
					   *ff = host_floats(rope_dim / 2);
			float	   *d_x;
			float		base = 10000.0f,
						scale = 0.5f;
			char		what[64];

			fill_normal(x, N * H * D, 1.0f, 0.0f);
			fill_uniform(ff, rope_dim / 2, 0.5f, 4.0f);
			memcpy(ref, x, sizeof(float) * N * H * D);
			for (int64_t t = 0; t < N; t++)
				for (int64_t h = 0; h < H; h++)
					for (int64_t i = 0; i < rope_dim / 2; i++)
					{
						float	   *v = ref + (t * H + h) * D;
						double		angle = scale * (pos0 + t) * pow(base, -2.0 * i / rope_dim) / ff[i];
						int64_t		a = halves ? i : 2 * i,
									b = halves ? i + rope_dim / 2 : 2 * i + 1;
						double		x0 = v[a],
									x1 = v[b];

						v[a] = (float) (x0 * cos(angle) - x1 * sin(angle));
						v[b] = (float) (x0 * sin(angle) + x1 * cos(angle));
					}
			d_x = dev_copy(x, N * H * D * sizeof(float));
			CU_OK(cu->rope(d_x, N, H, D, rope_dim, pos0, base, scale,
						   dev_copy(ff, (rope_dim / 2) * sizeof(float)), halves));
			snprintf(what, sizeof(what), "llm rope %s, %lld of %lld", halves ? "halves" : "pairs",
					 (long long) rope_dim, (long long) D);
			expect_close(what, ref, fetch_floats(d_x, N * H * D), N * H * D, 1e-5, 1e-4);
		}
}

/*
 * The half-precision cache: rows stored are the host's rounding exactly,
 * and attention over it (grouped heads, a causal window per token)
 * matches a double-precision reference with q rounded to half.
 */
static void
test_llm_attention_cached(void **state)
{
	const int64_t CTX = 40,
				G = 2,
				H = 6,
				D = 16,
				N = 3,
				pos0 = 11,
				W = G * D;
	float	   *kf = host_floats(CTX * W),
			   *vf = host_floats(CTX * W),
			   *q = host_floats(N * H * D),
			   *ref = host_floats(N * H * D);
	uint16_t   *kh = host_alloc(CTX * W * sizeof(uint16_t)),
			   *vh = host_alloc(CTX * W * sizeof(uint16_t)),
			   *back = host_alloc(CTX * W * sizeof(uint16_t));
	uint16_t   *d_k = dev_alloc(CTX * W * sizeof(uint16_t)),
			   *d_v = dev_alloc(CTX * W * sizeof(uint16_t));
	float	   *d_out = dev_alloc(N * H * D * sizeof(float));
	float		scale = 0.25f;

	(void) state;
	fill_normal(kf, CTX * W, 1.0f, 0.0f);
	fill_normal(vf, CTX * W, 1.0f, 0.0f);
	fill_normal(q, N * H * D, 1.0f, 0.0f);
	for (int64_t i = 0; i < CTX * W; i++)
	{
		kh[i] = tl_f32_to_fp16(kf[i]);
		vh[i] = tl_f32_to_fp16(vf[i]);
	}
	/* the whole cache written by kv_store, in two calls */
	CU_OK(cu->kv_store(d_k, dev_copy(kf, CTX * W * sizeof(float)), CTX, W, 0));
	CU_OK(cu->kv_store(d_v, dev_copy(vf, 10 * W * sizeof(float)), 10, W, 0));
	CU_OK(cu->kv_store(d_v, dev_copy(vf + 10 * W, (CTX - 10) * W * sizeof(float)), CTX - 10, W, 10));
	CU_OK(cu->download(back, d_k, CTX * W * sizeof(uint16_t)));
	assert_memory_equal(back, kh, CTX * W * sizeof(uint16_t));
	CU_OK(cu->download(back, d_v, CTX * W * sizeof(uint16_t)));
	assert_memory_equal(back, vh, CTX * W * sizeof(uint16_t));
	printf("cuda parity: llm kv_store                         rounding identical to the host's\n");

	for (int64_t t = 0; t < N; t++)
		for (int64_t h = 0; h < H; h++)
		{
			int64_t		g = h / (H / G),
						n_pos = pos0 + t + 1;
			double		sc[64],
						mx = -INFINITY,
						sum = 0.0;

			for (int64_t p = 0; p < n_pos; p++)
			{
				double		s = 0.0;

				for (int64_t d = 0; d < D; d++)
					s += (double) tl_fp16_to_f32(kh[p * W + g * D + d]) *
						tl_fp16_to_f32(tl_f32_to_fp16(q[(t * H + h) * D + d]));
				sc[p] = s * scale;
				mx = fmax(mx, sc[p]);
			}
			for (int64_t p = 0; p < n_pos; p++)
				sum += (sc[p] = exp(sc[p] - mx));
			for (int64_t d = 0; d < D; d++)
			{
				double		acc = 0.0;

				for (int64_t p = 0; p < n_pos; p++)
					acc += sc[p] / sum * tl_fp16_to_f32(vh[p * W + g * D + d]);
				ref[(t * H + h) * D + d] = (float) acc;
			}
		}
	CU_OK(cu->attention_cached(d_out, dev_copy(q, N * H * D * sizeof(float)), d_k, d_v,
							   N, H, G, D, pos0, CTX, scale));
	expect_close("llm attention_cached", ref, fetch_floats(d_out, N * H * D), N * H * D, 1e-5, 1e-4);
	assert_int_equal(cu->attention_cached(d_out, d_out, d_k, d_v, N, 5, G, D, pos0, CTX, scale), TL_ERR_ARG);
	assert_int_equal(cu->attention_cached(d_out, d_out, d_k, d_v, N, H, G, D, CTX - 1, CTX, scale), TL_ERR_ARG);
}

static void
test_llm_elementwise(void **state)
{
	const int64_t n = 1000;
	float	   *g = host_floats(n),
			   *u = host_floats(n),
			   *ref = host_floats(n),
			   *ref_add = host_floats(n);
	float	   *d_g,
			   *d_u;

	(void) state;
	fill_normal(g, n, 3.0f, 0.0f);
	fill_normal(u, n, 1.0f, 0.0f);
	for (int64_t i = 0; i < n; i++)
	{
		ref[i] = (float) (g[i] / (1.0 + exp(-(double) g[i])) * u[i]);
		ref_add[i] = ref[i] + u[i];
	}
	d_g = dev_copy(g, n * sizeof(float));
	d_u = dev_copy(u, n * sizeof(float));
	CU_OK(cu->swiglu(d_g, d_u, n));
	expect_close("llm swiglu", ref, fetch_floats(d_g, n), n, 1e-6, 1e-5);
	CU_OK(cu->add(d_g, d_u, n));
	expect_close("llm add", ref_add, fetch_floats(d_g, n), n, 1e-6, 1e-5);
}

/*
 * The whole model on the device against the CPU path, on the real default
 * model when scripts/fetch_model.sh has fetched it: logits after a prompt
 * and along 24 tokens of the CPU's greedy continuation (teacher forcing),
 * the top-1 choice at each step, and decode speed on the device.  The CPU
 * quantizes activations to 8 bits and the device does not, so logits
 * differ by a few hundredths; near-ties may flip.
 */
#define REAL_MODEL "build/models/SmolLM2-135M-Instruct.Q4_1.gguf"

static void
test_llm_model(void **state)
{
	const char *text = "The three most important things to learn in algebra are";
	tl_llm_model *m = NULL;
	tl_llm_state *cpu = NULL,
			   *gpu = NULL;
	int32_t    *prompt;
	size_t		n_prompt;
	int32_t		n_vocab,
				agree = 0,
				steps = 24;
	float	   *lc,
			   *lg;
	double		worst = 0.0,
				t0,
				dt;

	(void) state;
	if (access(REAL_MODEL, R_OK) != 0)
	{
		printf("cuda parity: llm model                            skipped (%s absent)\n", REAL_MODEL);
		return;
	}
	CPU_OK(tl_llm_load(&m, REAL_MODEL));
	n_vocab = tl_llm_config_of(m)->n_vocab;
	CPU_OK(tl_llm_state_new(&cpu, m, 512));
	CPU_OK(tl_llm_state_new(&gpu, m, 512));
	CPU_OK(tl_llm_state_use_cuda(gpu, cu));
	assert_true(tl_llm_state_on_cuda(gpu));
	CPU_OK(tl_tokenizer_encode(tl_llm_tokenizer(m), text, strlen(text), TL_TOK_ADD_BOS, &prompt, &n_prompt));
	lc = host_floats((size_t) n_vocab);
	lg = host_floats((size_t) n_vocab);
	CPU_OK(tl_llm_eval(cpu, prompt, (int32_t) n_prompt, lc));
	CPU_OK(tl_llm_eval(gpu, prompt, (int32_t) n_prompt, lg));
	for (int32_t s = 0; s < steps; s++)
	{
		int32_t		next = tl_llm_argmax(lc, n_vocab);

		for (int32_t i = 0; i < n_vocab; i++)
			worst = fmax(worst, fabs((double) lc[i] - lg[i]));
		agree += tl_llm_argmax(lg, n_vocab) == next;
		CPU_OK(tl_llm_eval(cpu, &next, 1, lc));
		CPU_OK(tl_llm_eval(gpu, &next, 1, lg));
	}
	printf("cuda parity: llm model (SmolLM2-135M)             top-1 %d of %d, max |logit diff| %.3f\n",
		   agree, steps, worst);
	assert_true(agree >= steps * 9 / 10);
	assert_true(worst < 1.0);

	/* decode speed on the device: 128 tokens after the prompt */
	tl_llm_state_reset(gpu);
	CPU_OK(tl_llm_eval(gpu, prompt, (int32_t) n_prompt, lg));
	t0 = now_s();
	for (int i = 0; i < 128; i++)
	{
		int32_t		next = tl_llm_argmax(lg, n_vocab);

		CPU_OK(tl_llm_eval(gpu, &next, 1, lg));
	}
	dt = now_s() - t0;
	printf("cuda parity: llm decode on the device             %.1f tokens/s (128 tokens)\n", 128 / dt);

	tl_free(prompt);
	tl_llm_state_free(gpu);
	tl_llm_state_free(cpu);
	tl_llm_free(m);
}

/* ---- argument checks ------------------------------------------------------------ */

static void
test_bad_arguments(void **state)
{
	float	   *d = dev_alloc(64 * sizeof(float));
	float		loss = 0.0f;

	(void) state;
	assert_int_equal(cu->gelu_fwd(d, d, 0), TL_ERR_ARG);
	assert_int_equal(cu->gelu_fwd(NULL, d, 4), TL_ERR_ARG);
	assert_int_equal(cu->softmax_fwd(d, d, -1, 4), TL_ERR_ARG);
	assert_int_equal(cu->linear_fwd(d, d, NULL, NULL, 2, 2, 2), TL_ERR_ARG);
	assert_int_equal(cu->dropout_fwd(d, d, 4, 1.0f, 1, 0), TL_ERR_ARG);
	assert_int_equal(cu->dropout_fwd(d, d, 4, -0.5f, 1, 0), TL_ERR_ARG);
	assert_int_equal(cu->layernorm_fwd(d, NULL, NULL, d, d, d, 2, 4, 0.0f), TL_ERR_ARG);
	assert_int_equal(cu->rmsnorm_fwd(d, NULL, d, d, 2, 4, -1.0f), TL_ERR_ARG);
	assert_int_equal(cu->attention_fwd(d, d, d, d, d, NULL, 1, 0, 1, 4, 0), TL_ERR_ARG);
	assert_int_equal(cu->bce_logits_fwd(NULL, d, d, NULL, 4), TL_ERR_ARG);
	assert_int_equal(cu->cross_entropy_fwd(&loss, d, NULL, 4, 4), TL_ERR_ARG);
	assert_int_equal(cu->alloc(NULL, 16), TL_ERR_ARG);
	assert_int_equal(cu->release(NULL), TL_OK);
	CU_OK(cu->synchronize());
	printf("cuda parity: argument checks ok (last: %s)\n", cu->last_error());
}

int
main(int argc, char **argv)
{
	const char *path = (argc > 1) ? argv[1] : "build/tutor_llm_cuda.so";
	int			count = 0;
	int			rc;
	int			failed;
	tl_cuda_device_props props;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_embedding, teardown),
		cmocka_unit_test_teardown(test_embedding_out_of_range, teardown),
		cmocka_unit_test_teardown(test_linear, teardown),
		cmocka_unit_test_teardown(test_layernorm, teardown),
		cmocka_unit_test_teardown(test_rmsnorm, teardown),
		cmocka_unit_test_teardown(test_activations, teardown),
		cmocka_unit_test_teardown(test_softmax, teardown),
		cmocka_unit_test_teardown(test_attention, teardown),
		cmocka_unit_test_teardown(test_dropout, teardown),
		cmocka_unit_test_teardown(test_cross_entropy, teardown),
		cmocka_unit_test_teardown(test_bce_logits, teardown),
		cmocka_unit_test_teardown(test_llm_qmatmul, teardown),
		cmocka_unit_test_teardown(test_llm_get_rows, teardown),
		cmocka_unit_test_teardown(test_llm_rope, teardown),
		cmocka_unit_test_teardown(test_llm_attention_cached, teardown),
		cmocka_unit_test_teardown(test_llm_elementwise, teardown),
		cmocka_unit_test_teardown(test_llm_model, teardown),
		cmocka_unit_test_teardown(test_bad_arguments, teardown),
	};

	if (tl_cuda_open(path, &cu, &count) != TL_OK || cu == NULL || count <= 0)
	{
		const char *why = tl_last_error();

		printf("cuda parity: SKIPPED (%s)\n", (why != NULL && why[0] != '\0') ? why : "no CUDA device");
		return 0;
	}
	rc = cu->init(0);
	if (rc != 0)
	{
		printf("cuda parity: FAILED: init(0) returned %d: %s\n", rc, cu->last_error());
		return 1;
	}
	if (cu->device_props(0, &props) == 0)
		printf("cuda parity: device 0 of %d: %s, compute %d.%d, %.1f GiB (%.1f free)\n",
			   count, props.name, props.compute_major, props.compute_minor,
			   props.total_memory / 1073741824.0, props.free_memory / 1073741824.0);

	tl_rng_seed(&rng, 20240611);
	failed = cmocka_run_group_tests_name("cuda parity", tests, NULL, NULL);
	rc = cu->shutdown();
	if (rc != 0)
	{
		printf("cuda parity: shutdown returned %d: %s\n", rc, cu->last_error());
		failed++;
	}
	return failed ? 1 : 0;
}
