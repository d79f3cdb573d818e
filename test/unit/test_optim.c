/*
 * test_optim.c -- parameter sets, AdamW against hand-computed updates,
 * gradient clipping and the random number generators.
 */
#include "unit.h"
#include "tl_optim.h"

static void
test_params_layout(void **state)
{
	tl_params	ps = {0};
	tl_rng		rng;
	int			a,
				b;
	tl_tensor	va,
				gb;

	ASSERT_OK(tl_params_declare(&ps, "a", 2, TL_SHAPE(3, 4), TL_INIT_NORMAL, 0.5f, true, &a));
	ASSERT_OK(tl_params_declare(&ps, "b", 1, TL_SHAPE(4), TL_INIT_ONES, 0, false, &b));
	ASSERT_FAILS(TL_ERR_SHAPE, tl_params_declare(&ps, "c", 1, TL_SHAPE(0), TL_INIT_ZEROS, 0, false, NULL));
	assert_int_equal(ps.total, 16);
	tl_rng_seed(&rng, 1);
	ASSERT_OK(tl_params_alloc(&ps, &rng));
	ASSERT_FAILS(TL_ERR_ARG, tl_params_declare(&ps, "late", 1, TL_SHAPE(2), TL_INIT_ZEROS, 0, false, NULL));
	va = tl_params_value(&ps, a);
	gb = tl_params_grad(&ps, b);
	assert_int_equal(va.ndim, 2);
	assert_int_equal(va.shape[1], 4);
	assert_ptr_equal(va.data, ps.value);
	assert_ptr_equal(gb.data, ps.grad + 12);
	for (int i = 0; i < 4; i++)
		assert_float_equal(ps.value[12 + i], 1.0f, 0);
	tl_params_free(&ps);
}

static void
test_adamw_matches_hand_computation(void **state)
{
	tl_params	ps = {0};
	tl_adamw	opt;
	tl_rng		rng;
	int			w,
				g;
	double		m = 0,
				v = 0,
				expect_w,
				expect_g;
	const float lr = 0.1f,
				wd = 0.5f;

	ASSERT_OK(tl_params_declare(&ps, "w", 1, TL_SHAPE(1), TL_INIT_ONES, 0, true, &w));
	ASSERT_OK(tl_params_declare(&ps, "g", 1, TL_SHAPE(1), TL_INIT_ONES, 0, false, &g));
	tl_rng_seed(&rng, 1);
	ASSERT_OK(tl_params_alloc(&ps, &rng));
	ASSERT_OK(tl_adamw_init(&opt, &ps, lr, wd));
	expect_w = expect_g = 1.0;
	for (int step = 1; step <= 3; step++)
	{
		double		grad = 0.5 * step;
		double		mhat,
					vhat,
					update;

		ps.grad[0] = ps.grad[1] = (float) grad;
		ASSERT_OK(tl_adamw_step(&opt, &ps));
		m = 0.9 * m + 0.1 * grad;
		v = 0.999 * v + 0.001 * grad * grad;
		mhat = m / (1 - pow(0.9, step));
		vhat = v / (1 - pow(0.999, step));
		update = lr * mhat / (sqrt(vhat) + 1e-8);
		expect_w = expect_w * (1 - lr * wd) - update;	/* decayed */
		expect_g = expect_g - update;	/* not decayed */
		assert_float_equal(ps.value[0], expect_w, 1e-5);
		assert_float_equal(ps.value[1], expect_g, 1e-5);
	}
	tl_adamw_free(&opt);
	ASSERT_FAILS(TL_ERR_ARG, tl_adamw_init(&opt, &ps, 0.0f, 0.0f));
	ASSERT_FAILS(TL_ERR_ARG, tl_adamw_init(&opt, &ps, NAN, 0.0f));
	ASSERT_FAILS(TL_ERR_ARG, tl_adamw_init(&opt, &ps, 1e-3f, -1.0f));
	tl_params_free(&ps);
}

/* A parameter's lr_scale scales its step (here: the first step, exactly lr * scale). */
static void
test_adamw_lr_scale(void **state)
{
	tl_params	ps = {0};
	tl_adamw	opt;
	tl_rng		rng;
	int			a,
				b;

	ASSERT_OK(tl_params_declare(&ps, "a", 1, TL_SHAPE(1), TL_INIT_ZEROS, 0, false, &a));
	ASSERT_OK(tl_params_declare(&ps, "b", 1, TL_SHAPE(1), TL_INIT_ZEROS, 0, false, &b));
	assert_float_equal(ps.items[a].lr_scale, 1.0f, 0);
	ps.items[b].lr_scale = 0.25f;
	tl_rng_seed(&rng, 1);
	ASSERT_OK(tl_params_alloc(&ps, &rng));
	ASSERT_OK(tl_adamw_init(&opt, &ps, 0.1f, 0.0f));
	ps.grad[0] = ps.grad[1] = 3.0f;
	ASSERT_OK(tl_adamw_step(&opt, &ps));
	/* Adam's first step is lr * sign(g) (up to eps) */
	assert_float_equal(ps.value[0], -0.1f, 1e-6);
	assert_float_equal(ps.value[1], -0.025f, 1e-6);
	tl_adamw_free(&opt);
	tl_params_free(&ps);
}

static void
test_adamw_minimises_quadratic(void **state)
{
	tl_params	ps = {0};
	tl_adamw	opt;
	tl_rng		rng;
	int			x;

	ASSERT_OK(tl_params_declare(&ps, "x", 1, TL_SHAPE(5), TL_INIT_NORMAL, 3.0f, false, &x));
	tl_rng_seed(&rng, 2);
	ASSERT_OK(tl_params_alloc(&ps, &rng));
	ASSERT_OK(tl_adamw_init(&opt, &ps, 0.05f, 0.0f));
	/* f(x) = sum (x_i - i)^2 */
	for (int step = 0; step < 2000; step++)
	{
		for (int i = 0; i < 5; i++)
			ps.grad[i] = 2.0f * (ps.value[i] - (float) i);
		ASSERT_OK(tl_adamw_step(&opt, &ps));
	}
	for (int i = 0; i < 5; i++)
		assert_float_equal(ps.value[i], (float) i, 1e-2);
	tl_adamw_free(&opt);
	tl_params_free(&ps);
}

static void
test_clip_grad_norm(void **state)
{
	float		g[4] = {3.0f, 0.0f, 4.0f, 0.0f};
	float		norm = tl_clip_grad_norm(g, 4, 1.0f);

	assert_float_equal(norm, 5.0f, 1e-6);
	assert_float_equal(sqrtf(g[0] * g[0] + g[2] * g[2]), 1.0f, 1e-4);
	assert_float_equal(g[0] / g[2], 0.75f, 1e-6);	/* direction kept */
	/* below the bound nothing changes */
	norm = tl_clip_grad_norm(g, 4, 10.0f);
	assert_float_equal(norm, 1.0f, 1e-4);
	assert_float_equal(g[0], 0.6f, 1e-4);
}

static void
test_rng(void **state)
{
	tl_rng		a,
				b;
	double		sum = 0,
				sq = 0;
	int			counts[7] = {0};
	const int	n = 200000;

	tl_rng_seed(&a, 123);
	tl_rng_seed(&b, 123);
	for (int i = 0; i < 100; i++)
		assert_int_equal(tl_rng_next(&a), tl_rng_next(&b));
	tl_rng_seed(&b, 124);
	assert_true(tl_rng_next(&a) != tl_rng_next(&b));

	for (int i = 0; i < n; i++)
	{
		double		x = tl_rng_normal(&a);

		sum += x;
		sq += x * x;
		counts[tl_rng_below(&a, 7)]++;
	}
	assert_float_equal(sum / n, 0.0, 0.01);
	assert_float_equal(sq / n, 1.0, 0.02);
	for (int i = 0; i < 7; i++)
		assert_in_range(counts[i], n / 7 - 1000, n / 7 + 1000);
	for (int i = 0; i < 1000; i++)
	{
		float		u = tl_hash_uniform(9, (uint64_t) i);

		assert_true(u >= 0.0f && u < 1.0f);
		assert_true(u == tl_hash_uniform(9, (uint64_t) i));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_params_layout),
		cmocka_unit_test(test_adamw_matches_hand_computation),
		cmocka_unit_test(test_adamw_lr_scale),
		cmocka_unit_test(test_adamw_minimises_quadratic),
		cmocka_unit_test(test_clip_grad_norm),
		cmocka_unit_test(test_rng),
	};

	return cmocka_run_group_tests_name("optimiser and rng", tests, NULL, NULL);
}
