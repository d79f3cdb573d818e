/*
 * bench_core.c -- figures for the compute core (a benchmark, not a test).
 *
 *   bench_core [--threads N] [--cuda PLUGIN.so] [--kt-only]
 *
 * Prints:
 *   1. sgemm GFLOP/s through OpenBLAS at several shapes, beside a plain C
 *      triple loop on the same machine and the ratio between them;
 *   2. forward and backward time of the reference Transformer block
 *      (d_model 256, 8 heads, d_ff 1024, sequence 200, batch 32), its
 *      achieved GFLOP/s and that as a share of sgemm's at the block's
 *      main matmul shape;
 *   3. with a usable CUDA device, the block's chain of forward ops on the
 *      GPU and the CPU/GPU time ratio;
 *   4. knowledge-tracing inference at tutor_llm's default model size
 *      (d_model 128, 8 heads, 2 layers): students per second for 30
 *      answers and 20 skills asked: one model instance per thread with
 *      groups of students side by side (what personalize does), one
 *      instance with its ops split across threads, and one student at a
 *      time (what generate_plan does);
 *   5. quantized matrix-vector products (GGUF formats) at a small LLM's
 *      MLP shape, scalar reference against the AVX2 dot products.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "bench_util.h"
#include "tl_alloc.h"
#include "tl_block.h"
#include "tl_device.h"
#include "tl_kt.h"
#include "tl_ops.h"
#include "tl_quant.h"

#define BLK_BATCH 32
#define BLK_SEQ 200
#define BLK_D 256
#define BLK_HEADS 8
#define BLK_FF 1024

static float *
random_floats(tl_rng *rng, int64_t n, float scale)
{
	float	   *p = tl_alloc((size_t) n, sizeof(float));

	if (!p)
	{
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	for (int64_t i = 0; i < n; i++)
		p[i] = scale * tl_rng_normal(rng);
	return p;
}

/* C = A B^T, row-major, the layout of tl_linear_fwd; the compiler vectorises the inner loop. */
static void
naive_sgemm_nt(int m, int n, int k, const float *a, const float *b, float *c)
{
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++)
		{
			float		acc = 0.0f;

			for (int p = 0; p < k; p++)
				acc += a[(int64_t) i * k + p] * b[(int64_t) j * k + p];
			c[(int64_t) i * n + j] = acc;
		}
}

/* Best GFLOP/s of repeated runs lasting at least min_s in total. */
static double
time_sgemm(int m, int n, int k, bool naive, double min_s)
{
	tl_rng		rng;
	float	   *a,
			   *b,
			   *c;
	double		best = 0.0,
				start = now_s();
	int			reps = 0;

	tl_rng_seed(&rng, 1);
	a = random_floats(&rng, (int64_t) m * k, 1.0f);
	b = random_floats(&rng, (int64_t) n * k, 1.0f);
	c = random_floats(&rng, (int64_t) m * n, 0.0f);
	while (reps < 3 || now_s() - start < min_s)
	{
		double		t0 = now_s(),
					dt;

		if (naive)
			naive_sgemm_nt(m, n, k, a, b, c);
		else
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
		dt = now_s() - t0;
		if (best == 0.0 || dt < best)
			best = dt;
		reps++;
	}
	tl_free(a);
	tl_free(b);
	tl_free(c);
	return 2.0 * m * n * k / best * 1e-9;
}

static int
compare_doubles(const void *x, const void *y)
{
	double		a = *(const double *) x,
				b = *(const double *) y;

	return (a > b) - (a < b);
}

/* FLOPs of one block forward pass: the four D x D and two D x F linears, QK^T and PV. */
static double
block_forward_flops(void)
{
	double		n = (double) BLK_BATCH * BLK_SEQ;

	return n * (8.0 * BLK_D * BLK_D + 4.0 * BLK_D * BLK_FF) + 4.0 * BLK_BATCH * BLK_SEQ * BLK_SEQ * BLK_D;
}

typedef struct
{
	double		fwd_ms;
	double		bwd_ms;
} block_times;

static block_times
bench_block_cpu(int iters)
{
	tl_block_config cfg = {BLK_D, BLK_HEADS, BLK_FF, 0.1f, 1e-5f, false};
	tl_block	block;
	tl_params	ps = {0};
	tl_block_cache cache;
	tl_rng		rng;
	float	   *x,
			   *y,
			   *dy,
			   *dx;
	tl_tensor	tx,
				ty,
				tdy,
				tdx;
	double	   *fwd = calloc(iters, sizeof(double)),
			   *bwd = calloc(iters, sizeof(double));
	int64_t		n = (int64_t) BLK_BATCH * BLK_SEQ * BLK_D;
	block_times out;

	check(tl_block_declare(&block, &cfg, &ps, "bench"), "declare");
	tl_rng_seed(&rng, 3);
	check(tl_params_alloc(&ps, &rng), "params");
	check(tl_block_cache_alloc(&cache, &cfg, BLK_BATCH * BLK_SEQ, BLK_SEQ), "cache");
	x = random_floats(&rng, n, 1.0f);
	y = random_floats(&rng, n, 0.0f);
	dy = random_floats(&rng, n, 1.0f);
	dx = random_floats(&rng, n, 0.0f);
	tx = TL_VIEW(x, BLK_BATCH, BLK_SEQ, BLK_D);
	ty = TL_VIEW(y, BLK_BATCH, BLK_SEQ, BLK_D);
	tdy = TL_VIEW(dy, BLK_BATCH, BLK_SEQ, BLK_D);
	tdx = TL_VIEW(dx, BLK_BATCH, BLK_SEQ, BLK_D);

	for (int i = -1; i < iters; i++)	/* one warm-up pass */
	{
		double		t0 = now_s(),
					t1;

		check(tl_block_forward(&block, &ps, &cache, &tx, &ty, NULL, true, (uint64_t) i + 10), "forward");
		t1 = now_s();
		check(tl_block_backward(&block, &ps, &cache, &tdy, &tdx), "backward");
		if (i >= 0)
		{
			fwd[i] = (t1 - t0) * 1e3;
			bwd[i] = (now_s() - t1) * 1e3;
		}
	}
	qsort(fwd, iters, sizeof(double), compare_doubles);
	qsort(bwd, iters, sizeof(double), compare_doubles);
	out.fwd_ms = fwd[iters / 2];
	out.bwd_ms = bwd[iters / 2];
	free(fwd);
	free(bwd);
	tl_free(x);
	tl_free(y);
	tl_free(dy);
	tl_free(dx);
	tl_block_cache_free(&cache);
	tl_params_free(&ps);
	return out;
}

/* Upload n floats from the host to a new device buffer. */
static float *
to_device(const tl_cuda_api *api, const float *host, int64_t n)
{
	void	   *d = NULL;

	if (api->alloc(&d, sizeof(float) * n) != 0 ||
		(host && api->upload(d, host, sizeof(float) * n) != 0))
	{
		fprintf(stderr, "CUDA: %s\n", api->last_error());
		exit(1);
	}
	return d;
}

#define CU(call) do { if ((call) != 0) { fprintf(stderr, "CUDA: %s\n", api->last_error()); exit(1); } } while (0)

/* The block's forward ops on the GPU (residual adds excluded: no add op in the plugin yet). */
static double
bench_block_cuda_forward(const tl_cuda_api *api, int iters)
{
	const int64_t N = (int64_t) BLK_BATCH * BLK_SEQ,
				D = BLK_D,
				F = BLK_FF;
	tl_rng		rng;
	float	   *h;
	float	   *x,
			   *ln,
			   *mean,
			   *rstd,
			   *q,
			   *k,
			   *v,
			   *probs,
			   *attn,
			   *o,
			   *u,
			   *g,
			   *m,
			   *wq,
			   *wk,
			   *wv,
			   *wo,
			   *w1,
			   *w2,
			   *gain,
			   *bias,
			   *bf;
	double	   *times = calloc(iters, sizeof(double)),
				median;

	tl_rng_seed(&rng, 5);
	h = random_floats(&rng, N * F, 0.05f);
	x = to_device(api, h, N * D);
	wq = to_device(api, h, D * D);
	wk = to_device(api, h + 1, D * D);
	wv = to_device(api, h + 2, D * D);
	wo = to_device(api, h + 3, D * D);
	w1 = to_device(api, h + 4, F * D);
	w2 = to_device(api, h + 5, D * F);
	gain = to_device(api, h, D);
	bias = to_device(api, h + 7, D);
	bf = to_device(api, h + 9, F);
	ln = to_device(api, NULL, N * D);
	mean = to_device(api, NULL, N);
	rstd = to_device(api, NULL, N);
	q = to_device(api, NULL, N * D);
	k = to_device(api, NULL, N * D);
	v = to_device(api, NULL, N * D);
	probs = to_device(api, NULL, (int64_t) BLK_BATCH * BLK_HEADS * BLK_SEQ * BLK_SEQ);
	attn = to_device(api, NULL, N * D);
	o = to_device(api, NULL, N * D);
	u = to_device(api, NULL, N * F);
	g = to_device(api, NULL, N * F);
	m = to_device(api, NULL, N * D);
	for (int i = -1; i < iters; i++)
	{
		double		t0 = now_s();

		CU(api->layernorm_fwd(ln, mean, rstd, x, gain, bias, N, D, 1e-5f));
		CU(api->linear_fwd(q, ln, wq, bias, N, D, D));
		CU(api->linear_fwd(k, ln, wk, bias, N, D, D));
		CU(api->linear_fwd(v, ln, wv, bias, N, D, D));
		CU(api->attention_fwd(attn, probs, q, k, v, NULL, BLK_BATCH, BLK_SEQ, BLK_HEADS, D / BLK_HEADS, 0));
		CU(api->linear_fwd(o, attn, wo, bias, N, D, D));
		CU(api->dropout_fwd(o, o, N * D, 0.1f, 1, 0));
		CU(api->layernorm_fwd(ln, mean, rstd, o, gain, bias, N, D, 1e-5f));
		CU(api->linear_fwd(u, ln, w1, bf, N, D, F));
		CU(api->gelu_fwd(g, u, N * F));
		CU(api->linear_fwd(m, g, w2, bias, N, F, D));
		CU(api->dropout_fwd(m, m, N * D, 0.1f, 2, 0));
		CU(api->synchronize());
		if (i >= 0)
			times[i] = (now_s() - t0) * 1e3;
	}
	qsort(times, iters, sizeof(double), compare_doubles);
	median = times[iters / 2];
	free(times);
	tl_free(h);
	{
		float	   *all[] = {x, ln, mean, rstd, q, k, v, probs, attn, o, u, g, m, wq, wk, wv, wo, w1, w2, gain, bias, bf};

		for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
			api->release(all[i]);
	}
	return median;
}

/*
 * y = W x for W of 576 x 1536 (the MLP down projection of a 576-wide
 * model; K-quant rows must be whole blocks of 256) in several GGUF
 * formats, on one thread.
 */
static void
bench_quant_matvec(void)
{
	static const tl_qtype types[] = {TL_QT_Q4_0, TL_QT_Q4_1, TL_QT_Q8_0, TL_QT_Q4_K, TL_QT_Q6_K, TL_QT_F16};
	const int64_t rows = 576,
				cols = 1536;
	tl_rng		rng;
	float	   *wf,
			   *x,
			   *y = malloc(sizeof(float) * rows);

	tl_rng_seed(&rng, 11);
	wf = random_floats(&rng, rows * cols, 1.0f);
	x = random_floats(&rng, cols, 1.0f);

	printf("\nquantized matvec %lld x %lld, one thread (ms per call; scalar / AVX2)\n",
		   (long long) rows, (long long) cols);
	tl_set_num_threads(1);
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
	{
		const tl_qtype_traits *tr = tl_qtype_info(types[t]);
		size_t		row_bytes = tl_qtype_row_size(types[t], cols);
		unsigned char *w = malloc(row_bytes * rows);
		double		ms[2];

		for (int64_t r = 0; r < rows; r++)
			tr->from_float(wf + r * cols, w + r * row_bytes, cols);
		for (int simd = 0; simd < 2; simd++)
		{
			int			calls = 0;
			double		t0,
						t1;

			tl_quant_force_scalar(!simd);
			check(tl_quant_matvec(y, w, types[t], rows, cols, x), "quantized matvec");
			t0 = now_s();
			do
			{
				check(tl_quant_matvec(y, w, types[t], rows, cols, x), "quantized matvec");
				calls++;
				t1 = now_s();
			} while (t1 - t0 < 0.2);
			ms[simd] = (t1 - t0) / calls * 1e3;
		}
		if (tl_quant_simd_active() && tr->vec_dot_avx2)
			printf("%-5s %8.3f / %.3f ms  (%.1fx, %.1f GB/s of weights)\n", tr->name, ms[0], ms[1],
				   ms[0] / ms[1], row_bytes * rows / (ms[1] * 1e-3) * 1e-9);
		else
			printf("%-5s %8.3f ms (no AVX2 path here)\n", tr->name, ms[0]);
		free(w);
	}
	tl_quant_force_scalar(false);
	tl_free(wf);
	tl_free(x);
	free(y);
}

/* Students per second of KT inference, batched or one at a time. */
static void
bench_kt_inference(void)
{
	enum
	{
		STUDENTS = 2000, ANSWERS = 30, SKILLS = 20, ITEMS = 200
	};
	tl_kt_config cfg = {
		.n_items = ITEMS + 1, .n_skills = SKILLS + 1, .d_model = 128, .heads = 8, .layers = 2,
		.d_ff = 512, .dropout = 0.0f, .window = 200, .max_tokens = 1024, .lr = 0.0f,
	};
	tl_kt		m;
	int64_t    *offsets = malloc(sizeof(int64_t) * (STUDENTS + 1));
	int32_t    *items = malloc(sizeof(int32_t) * STUDENTS * ANSWERS),
			   *skills = malloc(sizeof(int32_t) * STUDENTS * ANSWERS);
	float	   *correct = malloc(sizeof(float) * STUDENTS * ANSWERS),
			   *probs = malloc(sizeof(float) * STUDENTS * SKILLS),
				mu_avg[SKILLS + 1] = {0},
				bias_avg[SKILLS + 1] = {0};
	tl_kt_query queries[SKILLS];
	double		t0,
				batched,
				side_by_side = 0.0,
				single;
	const int	single_students = 200;

	check(tl_kt_create(&m, &cfg, 1), "kt create");
	for (int b = 0; b <= STUDENTS; b++)
		offsets[b] = (int64_t) b * ANSWERS;
	for (int i = 0; i < STUDENTS * ANSWERS; i++)
	{
		items[i] = 1 + (i * 7919) % ITEMS;
		skills[i] = 1 + (items[i] - 1) % SKILLS;
		correct[i] = (float) ((i * 31) % 3 != 0);
	}
	for (int q = 0; q < SKILLS; q++)
		queries[q] = (tl_kt_query) {-1, q + 1};
	t0 = now_s();
	check(tl_kt_predict_batch(&m, STUDENTS, offsets, items, skills, correct, queries, SKILLS,
							  mu_avg, bias_avg, probs), "kt predict batch");
	batched = STUDENTS / (now_s() - t0);
	/* one instance per thread, groups side by side (what personalize does) */
	{
		int			n = tl_get_num_threads();
		tl_kt	   *models[64];

		for (int i = 0; i < n && i < 64; i++)
		{
			models[i] = malloc(sizeof(tl_kt));
			check(tl_kt_create(models[i], &cfg, 1), "kt create");
		}
		t0 = now_s();
		check(tl_kt_predict_many(models, n < 64 ? n : 64, STUDENTS, offsets, items, skills, correct, queries,
								 SKILLS, mu_avg, bias_avg, probs), "kt predict many");
		side_by_side = STUDENTS / (now_s() - t0);
		for (int i = 0; i < n && i < 64; i++)
		{
			tl_kt_free(models[i]);
			free(models[i]);
		}
	}
	t0 = now_s();
	for (int b = 0; b < single_students; b++)
		check(tl_kt_predict_next(&m, items + offsets[b], skills + offsets[b], correct + offsets[b], ANSWERS,
								 queries, SKILLS, mu_avg, bias_avg, probs), "kt predict next");
	single = single_students / (now_s() - t0);
	printf("\nKT inference: d_model 128, 8 heads, 2 layers, %d answers, %d skills asked\n", ANSWERS, SKILLS);
	printf("CPU  one instance per thread %.0f students/s, batched %.0f students/s, one at a time %.0f students/s\n",
		   side_by_side, batched, single);
	tl_kt_free(&m);
	free(offsets);
	free(items);
	free(skills);
	free(correct);
	free(probs);
}

int
main(int argc, char **argv)
{
	const char *plugin = NULL;
	int			threads = 0;
	bool		kt_only = false;
	char		info[512];
	static const int shapes[][3] = {
		{256, 256, 256}, {1024, 1024, 1024}, {6400, 256, 256}, {6400, 1024, 256}, {6400, 256, 1024},
	};
	double		ref_gflops = 0.0;
	block_times cpu;
	double		flops,
				block_gflops;

	for (int i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--cuda") == 0 && i + 1 < argc)
			plugin = argv[++i];
		else if (strcmp(argv[i], "--kt-only") == 0)
			kt_only = true;
		else if (argv[i][0] != '-')
			plugin = argv[i];
		else
		{
			fprintf(stderr, "usage: %s [--threads N] [--cuda PLUGIN.so] [--kt-only]\n", argv[0]);
			return 2;
		}
	}
	/* the sgemm reference runs OpenBLAS on its own threads; the block runs on the core's pool */
	tl_set_num_threads(threads);
	openblas_set_num_threads(tl_get_num_threads());
	tl_blas_info(info, sizeof(info));
	printf("BLAS: %s\nthreads: %d of %d CPUs\n", info, tl_get_num_threads(), tl_cpu_count());
	tl_cpu_name(info, sizeof(info));
	printf("CPU: %s\n\n", info);
	if (kt_only)
	{
		tl_set_num_threads(threads);
		bench_kt_inference();
		return 0;
	}

	printf("sgemm, C = A B^T (m x k times n x k), OpenBLAS on its own %d threads\n", openblas_get_num_threads());
	printf("%-22s %14s %14s %8s\n", "m x n x k", "OpenBLAS GF/s", "plain C GF/s", "ratio");
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
	{
		int			m = shapes[s][0],
					n = shapes[s][1],
					k = shapes[s][2];
		double		blas = time_sgemm(m, n, k, false, 0.5);
		double		plain = (int64_t) m * n * k <= 256LL * 256 * 256 * 4 ? time_sgemm(m, n, k, true, 0.3) : 0.0;
		char		label[32];

		snprintf(label, sizeof(label), "%d x %d x %d", m, n, k);
		if (plain > 0)
			printf("%-22s %14.1f %14.2f %7.1fx\n", label, blas, plain, blas / plain);
		else
			printf("%-22s %14.1f %14s %8s\n", label, blas, "-", "-");
		if (m == 6400 && n == 1024)
			ref_gflops = blas;
	}

	tl_set_num_threads(threads);	/* back to single-threaded BLAS under the core's pool */
	printf("\nreference block: d_model %d, %d heads, d_ff %d, sequence %d, batch %d, dropout 0.1\n",
		   BLK_D, BLK_HEADS, BLK_FF, BLK_SEQ, BLK_BATCH);
	cpu = bench_block_cpu(7);
	flops = 3.0 * block_forward_flops();	/* backward ~ 2x forward */
	block_gflops = flops / ((cpu.fwd_ms + cpu.bwd_ms) * 1e-3) * 1e-9;
	printf("CPU  forward %.1f ms, backward %.1f ms, forward+backward %.1f ms (median of 7)\n",
		   cpu.fwd_ms, cpu.bwd_ms, cpu.fwd_ms + cpu.bwd_ms);
	printf("CPU  %.0f tokens/s for training, %.1f GFLOP/s = %.0f%% of sgemm at 6400 x 1024 x 256\n",
		   BLK_BATCH * BLK_SEQ / ((cpu.fwd_ms + cpu.bwd_ms) * 1e-3), block_gflops,
		   100.0 * block_gflops / ref_gflops);

	{
		const tl_cuda_api *api;
		int			ndev = 0;

		if (tl_cuda_open(plugin, &api, &ndev) != TL_OK)
			printf("CUDA skipped: %s\n", tl_last_error());
		else if (api->init(0) != 0)
			printf("CUDA skipped: %s\n", api->last_error());
		else
		{
			tl_cuda_device_props props;
			double		gpu_ms;

			api->device_props(0, &props);
			gpu_ms = bench_block_cuda_forward(api, 20);
			printf("CUDA %s: forward ops %.2f ms (median of 20; CPU/CUDA forward ratio %.1fx)\n",
				   props.name, gpu_ms, cpu.fwd_ms / gpu_ms);
			printf("CUDA backward: not measured, the plugin has forward ops only in this version\n");
			api->shutdown();
		}
	}
	bench_kt_inference();
	bench_quant_matvec();
	return 0;
}
