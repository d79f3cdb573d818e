/*
 * test_pool.c -- the worker pool: every index exactly once, for many
 * shapes of work and thread counts, repeatedly; and attention computed
 * on the pool against the same computation on one thread.
 */
#include <stdatomic.h>

#include "unit.h"
#include "tl_device.h"
#include "tl_pool.h"

typedef struct
{
	atomic_int *hits;
	atomic_int	max_worker;
} count_ctx;

static void
count_task(void *arg, int64_t begin, int64_t end, int worker)
{
	count_ctx  *c = arg;

	for (int64_t i = begin; i < end; i++)
		atomic_fetch_add(&c->hits[i], 1);
	if (worker > atomic_load(&c->max_worker))
		atomic_store(&c->max_worker, worker);
}

static void
test_every_index_once(void **state)
{
	static const int64_t sizes[] = {1, 2, 7, 64, 1000, 4097};
	static const int64_t grains[] = {1, 3, 64, 5000};
	atomic_int *hits = calloc(4097, sizeof(atomic_int));

	for (int threads = 1; threads <= 4; threads++)
	{
		tl_pool_set_threads(threads);
		assert_int_equal(tl_pool_threads(), threads);
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
			for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++)
				for (int rep = 0; rep < 20; rep++)
				{
					count_ctx	c = {hits, 0};

					for (int64_t i = 0; i < sizes[s]; i++)
						atomic_store(&hits[i], 0);
					tl_pool_run(sizes[s], grains[g], count_task, &c);
					for (int64_t i = 0; i < sizes[s]; i++)
						assert_int_equal(atomic_load(&hits[i]), 1);
					assert_true(atomic_load(&c.max_worker) < threads);
				}
	}
	tl_pool_set_threads(0);		/* clamps to one */
	assert_int_equal(tl_pool_threads(), 1);
	free(hits);
}

/* Attention on two pool threads equals attention on one. */
static void
test_attention_on_pool(void **state)
{
	tl_rng		rng;
	tl_attn_dims dims = {4, 33, 4, 8, true};
	tl_tensor	q,
				k,
				v,
				out1 = ZEROS(4, 33, 32),
				out2 = ZEROS(4, 33, 32),
				p1 = ZEROS(4, 4, 33, 33),
				p2 = ZEROS(4, 4, 33, 33),
				dq1 = ZEROS(4, 33, 32),
				dk1 = ZEROS(4, 33, 32),
				dv1 = ZEROS(4, 33, 32),
				dq2 = ZEROS(4, 33, 32),
				dk2 = ZEROS(4, 33, 32),
				dv2 = ZEROS(4, 33, 32);

	tl_rng_seed(&rng, 5);
	q = RAND(&rng, 1.0f, 4, 33, 32);
	k = RAND(&rng, 1.0f, 4, 33, 32);
	v = RAND(&rng, 1.0f, 4, 33, 32);
	tl_set_num_threads(1);
	ASSERT_OK(tl_attention_fwd(&out1, &p1, &q, &k, &v, NULL, dims));
	ASSERT_OK(tl_attention_bwd(&dq1, &dk1, &dv1, &out1, &p1, &q, &k, &v, dims));
	tl_set_num_threads(2);
	ASSERT_OK(tl_attention_fwd(&out2, &p2, &q, &k, &v, NULL, dims));
	ASSERT_OK(tl_attention_bwd(&dq2, &dk2, &dv2, &out1, &p2, &q, &k, &v, dims));
	tl_set_num_threads(1);
	for (int64_t i = 0; i < out1.numel; i++)
	{
		assert_float_equal(out1.data[i], out2.data[i], 1e-6);
		assert_float_equal(dq1.data[i], dq2.data[i], 1e-6);
		assert_float_equal(dk1.data[i], dk2.data[i], 1e-6);
		assert_float_equal(dv1.data[i], dv2.data[i], 1e-6);
	}
	tl_tensor	*all[] = {&q, &k, &v, &out1, &out2, &p1, &p2, &dq1, &dk1, &dv1, &dq2, &dk2, &dv2};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tl_tensor_free(all[i]);
}

/* Linear forward and backward on two pool threads equal one thread. */
static void
test_linear_on_pool(void **state)
{
	tl_rng		rng;
	tl_tensor	x,
				w,
				b,
				dy,
				y[2],
				dx[2],
				dw[2],
				db[2];

	tl_rng_seed(&rng, 6);
	x = RAND(&rng, 1.0f, 3, 77, 40);
	w = RAND(&rng, 0.5f, 24, 40);
	b = RAND(&rng, 0.5f, 24);
	dy = RAND(&rng, 1.0f, 3, 77, 24);
	for (int t = 0; t < 2; t++)
	{
		y[t] = ZEROS(3, 77, 24);
		dx[t] = ZEROS(3, 77, 40);
		dw[t] = ZEROS(24, 40);
		db[t] = ZEROS(24);
		tl_set_num_threads(t + 1);
		ASSERT_OK(tl_linear_fwd(&y[t], &x, &w, &b));
		ASSERT_OK(tl_linear_bwd(&dx[t], &dw[t], &db[t], &dy, &x, &w));
	}
	tl_set_num_threads(1);
	for (int64_t i = 0; i < y[0].numel; i++)
		assert_float_equal(y[0].data[i], y[1].data[i], 1e-5);
	for (int64_t i = 0; i < dx[0].numel; i++)
		assert_float_equal(dx[0].data[i], dx[1].data[i], 1e-5);
	for (int64_t i = 0; i < dw[0].numel; i++)
		assert_float_equal(dw[0].data[i], dw[1].data[i], 1e-4);
	for (int64_t i = 0; i < db[0].numel; i++)
		assert_float_equal(db[0].data[i], db[1].data[i], 1e-4);
	for (int t = 0; t < 2; t++)
	{
		tl_tensor_free(&y[t]);
		tl_tensor_free(&dx[t]);
		tl_tensor_free(&dw[t]);
		tl_tensor_free(&db[t]);
	}
	tl_tensor_free(&x);
	tl_tensor_free(&w);
	tl_tensor_free(&b);
	tl_tensor_free(&dy);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_index_once),
		cmocka_unit_test(test_attention_on_pool),
		cmocka_unit_test(test_linear_on_pool),
	};

	return cmocka_run_group_tests_name("worker pool", tests, NULL, NULL);
}
