/*
 * test_ops.c -- forward values and finite-difference backward checks of
 * the pointwise, row-wise, linear, dropout and loss ops.
 */
#include "unit.h"
#include "tl_math.h"

#define EPS 1e-3
#define ATOL 2e-3
#define RTOL 2e-2

/* ---- linear ------------------------------------------------------------ */

typedef struct
{
	tl_tensor	x,
				w,
				b,
				y,
				r;
} linear_ctx;

static double
linear_loss(void *arg)
{
	linear_ctx *c = arg;

	if (tl_linear_fwd(&c->y, &c->x, &c->w, &c->b) != TL_OK)
		fail_msg("%s", tl_last_error());
	return weighted_sum(&c->y, &c->r);
}

static void
test_linear(void **state)
{
	tl_rng		rng;
	linear_ctx	c;
	tl_tensor	dx,
				dw,
				db;

	tl_rng_seed(&rng, 1);
	c.x = RAND(&rng, 1.0f, 2, 3, 5);	/* (B=2, T=3, in=5) */
	c.w = RAND(&rng, 0.5f, 4, 5);
	c.b = RAND(&rng, 0.5f, 4);
	c.y = ZEROS(2, 3, 4);
	c.r = RAND(&rng, 1.0f, 2, 3, 4);
	dx = ZEROS(2, 3, 5);
	dw = ZEROS(4, 5);
	db = ZEROS(4);

	linear_loss(&c);
	/* forward against the definition */
	for (int n = 0; n < 6; n++)
		for (int o = 0; o < 4; o++)
		{
			double		ref = c.b.data[o];

			for (int i = 0; i < 5; i++)
				ref += (double) c.x.data[n * 5 + i] * c.w.data[o * 5 + i];
			assert_float_equal(c.y.data[n * 4 + o], ref, 1e-5);
		}
	ASSERT_OK(tl_linear_bwd(&dx, &dw, &db, &c.r, &c.x, &c.w));
	check_gradient("linear dx", c.x.data, c.x.numel, dx.data, linear_loss, &c, EPS, ATOL, RTOL);
	check_gradient("linear dw", c.w.data, c.w.numel, dw.data, linear_loss, &c, EPS, ATOL, RTOL);
	check_gradient("linear db", c.b.data, c.b.numel, db.data, linear_loss, &c, EPS, ATOL, RTOL);

	/* parameter gradients accumulate */
	ASSERT_OK(tl_linear_bwd(&dx, &dw, &db, &c.r, &c.x, &c.w));
	{
		tl_tensor	once = ZEROS(4, 5);

		ASSERT_OK(tl_linear_bwd(NULL, &once, NULL, &c.r, &c.x, &c.w));
		for (int i = 0; i < 20; i++)
			assert_float_equal(dw.data[i], 2.0f * once.data[i], 1e-5);
		tl_tensor_free(&once);
	}

	/* shape errors leave a message naming the tensor */
	{
		tl_tensor	bad = ZEROS(2, 3, 7);

		ASSERT_FAILS(TL_ERR_SHAPE, tl_linear_fwd(&c.y, &bad, &c.w, &c.b));
		assert_non_null(strstr(tl_last_error(), "linear input"));
		tl_tensor_free(&bad);
	}
	tl_tensor_free(&c.x);
	tl_tensor_free(&c.w);
	tl_tensor_free(&c.b);
	tl_tensor_free(&c.y);
	tl_tensor_free(&c.r);
	tl_tensor_free(&dx);
	tl_tensor_free(&dw);
	tl_tensor_free(&db);
}

/* ---- embedding --------------------------------------------------------- */

typedef struct
{
	tl_tensor	table,
				out,
				r;
	int32_t		idx[5];
} embedding_ctx;

static double
embedding_loss(void *arg)
{
	embedding_ctx *c = arg;

	if (tl_embedding_fwd(&c->out, &c->table, c->idx) != TL_OK)
		fail_msg("%s", tl_last_error());
	return weighted_sum(&c->out, &c->r);
}

static void
test_embedding(void **state)
{
	tl_rng		rng;
	embedding_ctx c = {.idx = {2, 0, TL_PAD_INDEX, 2, 3}};
	tl_tensor	dtable;

	tl_rng_seed(&rng, 2);
	c.table = RAND(&rng, 1.0f, 4, 3);
	c.out = ZEROS(5, 3);
	c.r = RAND(&rng, 1.0f, 5, 3);
	dtable = ZEROS(4, 3);
	embedding_loss(&c);
	for (int j = 0; j < 3; j++)
	{
		assert_float_equal(c.out.data[0 * 3 + j], c.table.data[2 * 3 + j], 0);
		assert_float_equal(c.out.data[2 * 3 + j], 0.0f, 0);	/* padding row */
	}
	ASSERT_OK(tl_embedding_bwd(&dtable, &c.r, c.idx));
	check_gradient("embedding dtable", c.table.data, c.table.numel, dtable.data,
				   embedding_loss, &c, EPS, ATOL, RTOL);
	/* row 1 is never looked up: no gradient */
	for (int j = 0; j < 3; j++)
		assert_float_equal(dtable.data[1 * 3 + j], 0.0f, 0);

	c.idx[1] = 4;
	ASSERT_FAILS(TL_ERR_ARG, tl_embedding_fwd(&c.out, &c.table, c.idx));
	c.idx[1] = -7;
	ASSERT_FAILS(TL_ERR_ARG, tl_embedding_bwd(&dtable, &c.r, c.idx));
	tl_tensor_free(&c.table);
	tl_tensor_free(&c.out);
	tl_tensor_free(&c.r);
	tl_tensor_free(&dtable);
}

/* ---- layer norm and RMS norm ------------------------------------------- */

typedef struct
{
	bool		rms;
	tl_tensor	x,
				g,
				b,
				y,
				mean,
				rstd,
				r;
} norm_ctx;

static double
norm_loss(void *arg)
{
	norm_ctx   *c = arg;
	tl_status	rc = c->rms ? tl_rmsnorm_fwd(&c->y, &c->rstd, &c->x, &c->g, 1e-5f)
		: tl_layernorm_fwd(&c->y, &c->mean, &c->rstd, &c->x, &c->g, &c->b, 1e-5f);

	if (rc != TL_OK)
		fail_msg("%s", tl_last_error());
	return weighted_sum(&c->y, &c->r);
}

static void
run_norm_test(bool rms)
{
	tl_rng		rng;
	norm_ctx	c = {.rms = rms};
	tl_tensor	dx,
				dg,
				db;

	tl_rng_seed(&rng, rms ? 4 : 3);
	c.x = RAND(&rng, 2.0f, 3, 8);
	for (int i = 0; i < 8; i++)
		c.x.data[i] += 3.0f;	/* a row with a large mean */
	c.g = RAND(&rng, 1.0f, 8);
	c.b = RAND(&rng, 1.0f, 8);
	c.y = ZEROS(3, 8);
	c.mean = ZEROS(3);
	c.rstd = ZEROS(3);
	c.r = RAND(&rng, 1.0f, 3, 8);
	dx = ZEROS(3, 8);
	dg = ZEROS(8);
	db = ZEROS(8);

	norm_loss(&c);
	if (!rms)
	{
		/* with unit gain and zero bias each row has mean 0 and variance ~1 */
		tl_tensor	ones = ZEROS(8),
					zero = ZEROS(8);

		tl_tensor_fill(&ones, 1.0f);
		ASSERT_OK(tl_layernorm_fwd(&c.y, &c.mean, &c.rstd, &c.x, &ones, &zero, 1e-5f));
		for (int r = 0; r < 3; r++)
		{
			double		m = 0,
						v = 0;

			for (int j = 0; j < 8; j++)
				m += c.y.data[r * 8 + j];
			for (int j = 0; j < 8; j++)
				v += pow(c.y.data[r * 8 + j] - m / 8, 2);
			assert_float_equal(m / 8, 0.0, 1e-5);
			assert_float_equal(v / 8, 1.0, 1e-3);
		}
		tl_tensor_free(&ones);
		tl_tensor_free(&zero);
		norm_loss(&c);
		ASSERT_OK(tl_layernorm_bwd(&dx, &dg, &db, &c.r, &c.x, &c.mean, &c.rstd, &c.g));
		check_gradient("layernorm dx", c.x.data, c.x.numel, dx.data, norm_loss, &c, EPS, ATOL, RTOL);
		check_gradient("layernorm dgamma", c.g.data, c.g.numel, dg.data, norm_loss, &c, EPS, ATOL, RTOL);
		check_gradient("layernorm dbeta", c.b.data, c.b.numel, db.data, norm_loss, &c, EPS, ATOL, RTOL);
	}
	else
	{
		/* y * rstd^-1 / g recovers x */
		for (int r = 0; r < 3; r++)
			for (int j = 0; j < 8; j++)
				assert_float_equal(c.y.data[r * 8 + j] / c.rstd.data[r] / c.g.data[j],
								   c.x.data[r * 8 + j], 1e-3);
		ASSERT_OK(tl_rmsnorm_bwd(&dx, &dg, &c.r, &c.x, &c.rstd, &c.g));
		check_gradient("rmsnorm dx", c.x.data, c.x.numel, dx.data, norm_loss, &c, EPS, ATOL, RTOL);
		check_gradient("rmsnorm dgamma", c.g.data, c.g.numel, dg.data, norm_loss, &c, EPS, ATOL, RTOL);
	}
	tl_tensor_free(&c.x);
	tl_tensor_free(&c.g);
	tl_tensor_free(&c.b);
	tl_tensor_free(&c.y);
	tl_tensor_free(&c.mean);
	tl_tensor_free(&c.rstd);
	tl_tensor_free(&c.r);
	tl_tensor_free(&dx);
	tl_tensor_free(&dg);
	tl_tensor_free(&db);
}

static void
test_layernorm(void **state)
{
	run_norm_test(false);
}

static void
test_rmsnorm(void **state)
{
	run_norm_test(true);
}

/* ---- activations and softmax ------------------------------------------- */

typedef enum
{
	ACT_GELU,
	ACT_SILU,
	ACT_SOFTMAX
} act_kind;

typedef struct
{
	act_kind	kind;
	tl_tensor	x,
				y,
				r;
} act_ctx;

static double
act_loss(void *arg)
{
	act_ctx    *c = arg;
	tl_status	rc = c->kind == ACT_GELU ? tl_gelu_fwd(&c->y, &c->x)
		: c->kind == ACT_SILU ? tl_silu_fwd(&c->y, &c->x)
		: tl_softmax_fwd(&c->y, &c->x);

	if (rc != TL_OK)
		fail_msg("%s", tl_last_error());
	return weighted_sum(&c->y, &c->r);
}

static void
run_activation_test(act_kind kind, const char *name)
{
	tl_rng		rng;
	act_ctx		c = {.kind = kind};
	tl_tensor	dx;

	tl_rng_seed(&rng, 5 + kind);
	c.x = RAND(&rng, 2.0f, 4, 6);
	c.y = ZEROS(4, 6);
	c.r = RAND(&rng, 1.0f, 4, 6);
	dx = ZEROS(4, 6);
	act_loss(&c);
	if (kind == ACT_GELU)
		ASSERT_OK(tl_gelu_bwd(&dx, &c.r, &c.x));
	else if (kind == ACT_SILU)
		ASSERT_OK(tl_silu_bwd(&dx, &c.r, &c.x));
	else
		ASSERT_OK(tl_softmax_bwd(&dx, &c.r, &c.y));
	check_gradient(name, c.x.data, c.x.numel, dx.data, act_loss, &c, EPS, ATOL, RTOL);
	tl_tensor_free(&c.x);
	tl_tensor_free(&c.y);
	tl_tensor_free(&c.r);
	tl_tensor_free(&dx);
}

static void
test_activations(void **state)
{
	float		xs[4] = {-2.0f, 0.0f, 1.0f, 3.0f};
	tl_tensor	x,
				y = ZEROS(4);

	ASSERT_OK(tl_tensor_view(&x, xs, 1, TL_SHAPE(4)));
	/* exact GELU values: x * Phi(x) */
	ASSERT_OK(tl_gelu_fwd(&y, &x));
	assert_float_equal(y.data[0], -0.04550026f, 1e-6);
	assert_float_equal(y.data[1], 0.0f, 0);
	assert_float_equal(y.data[2], 0.84134475f, 1e-6);
	assert_float_equal(y.data[3], 2.99595031f, 1e-6);
	ASSERT_OK(tl_silu_fwd(&y, &x));
	assert_float_equal(y.data[2], 0.7310586f, 1e-6);
	tl_tensor_free(&y);

	run_activation_test(ACT_GELU, "gelu dx");
	run_activation_test(ACT_SILU, "silu dx");
	run_activation_test(ACT_SOFTMAX, "softmax dx");
}

static void
test_softmax_values(void **state)
{
	float		xs[6] = {1000.0f, 1001.0f, 1002.0f, -5.0f, 0.0f, 5.0f};
	tl_tensor	x,
				y = ZEROS(2, 3);

	ASSERT_OK(tl_tensor_view(&x, xs, 2, TL_SHAPE(2, 3)));
	ASSERT_OK(tl_softmax_fwd(&y, &x));
	/* huge logits stay finite; rows sum to one */
	assert_float_equal(y.data[0], 0.09003057f, 1e-6);
	assert_float_equal(y.data[2], 0.66524096f, 1e-6);
	for (int r = 0; r < 2; r++)
		assert_float_equal(y.data[r * 3] + y.data[r * 3 + 1] + y.data[r * 3 + 2], 1.0f, 1e-6);
	tl_tensor_free(&y);
}

/* ---- dropout ------------------------------------------------------------ */

static void
test_dropout(void **state)
{
	tl_tensor	x = ZEROS(100, 100),
				y = ZEROS(100, 100),
				y2 = ZEROS(100, 100),
				dx = ZEROS(100, 100);
	int64_t		dropped = 0;

	tl_tensor_fill(&x, 1.0f);
	ASSERT_OK(tl_dropout_fwd(&y, &x, 0.25f, 42, 7));
	for (int64_t i = 0; i < y.numel; i++)
	{
		if (y.data[i] == 0.0f)
			dropped++;
		else
			assert_float_equal(y.data[i], 1.0f / 0.75f, 1e-6);
	}
	/* 10,000 draws: 2,500 +- 5 sigma (sigma ~ 43) */
	assert_in_range(dropped, 2280, 2720);

	/* same seed and offset, same mask; another seed, another mask */
	ASSERT_OK(tl_dropout_fwd(&y2, &x, 0.25f, 42, 7));
	assert_memory_equal(y.data, y2.data, sizeof(float) * y.numel);
	ASSERT_OK(tl_dropout_fwd(&y2, &x, 0.25f, 43, 7));
	assert_memory_not_equal(y.data, y2.data, sizeof(float) * y.numel);

	/* backward applies the forward mask to the incoming gradient */
	ASSERT_OK(tl_dropout_bwd(&dx, &x, 0.25f, 42, 7));
	assert_memory_equal(dx.data, y.data, sizeof(float) * y.numel);

	ASSERT_OK(tl_dropout_fwd(&y2, &x, 0.0f, 42, 7));
	assert_memory_equal(y2.data, x.data, sizeof(float) * x.numel);
	ASSERT_FAILS(TL_ERR_ARG, tl_dropout_fwd(&y2, &x, 1.0f, 42, 7));
	ASSERT_FAILS(TL_ERR_ARG, tl_dropout_fwd(&y2, &x, -0.1f, 42, 7));
	tl_tensor_free(&x);
	tl_tensor_free(&y);
	tl_tensor_free(&y2);
	tl_tensor_free(&dx);
}

/* ---- losses ------------------------------------------------------------ */

typedef struct
{
	tl_tensor	logits;
	int32_t		targets[4];
} ce_ctx;

static double
ce_loss(void *arg)
{
	ce_ctx	   *c = arg;
	float		loss;

	if (tl_cross_entropy_fwd(&loss, &c->logits, c->targets) != TL_OK)
		fail_msg("%s", tl_last_error());
	return loss;
}

static void
test_cross_entropy(void **state)
{
	tl_rng		rng;
	ce_ctx		c = {.targets = {2, 0, TL_PAD_INDEX, 4}};
	tl_tensor	dlogits = ZEROS(4, 5);
	double		expected = 0.0;

	tl_rng_seed(&rng, 8);
	c.logits = RAND(&rng, 2.0f, 4, 5);
	/* mean over the three counted rows of logsumexp - logit[target] */
	for (int r = 0; r < 4; r++)
	{
		double		lse = 0;

		if (c.targets[r] < 0)
			continue;
		for (int j = 0; j < 5; j++)
			lse += exp(c.logits.data[r * 5 + j]);
		expected += log(lse) - c.logits.data[r * 5 + c.targets[r]];
	}
	assert_float_equal(ce_loss(&c), expected / 3, 1e-5);
	ASSERT_OK(tl_cross_entropy_bwd(&dlogits, &c.logits, c.targets, 1.0f));
	check_gradient("cross-entropy dlogits", c.logits.data, c.logits.numel, dlogits.data,
				   ce_loss, &c, EPS, ATOL, RTOL);
	c.targets[0] = 5;
	{
		float		loss;

		ASSERT_FAILS(TL_ERR_ARG, tl_cross_entropy_fwd(&loss, &c.logits, c.targets));
	}
	tl_tensor_free(&c.logits);
	tl_tensor_free(&dlogits);
}

typedef struct
{
	tl_tensor	logits,
				targets,
				weights;
} bce_ctx;

static double
bce_loss(void *arg)
{
	bce_ctx    *c = arg;
	float		loss;

	if (tl_bce_logits_fwd(&loss, &c->logits, &c->targets, &c->weights) != TL_OK)
		fail_msg("%s", tl_last_error());
	return loss;
}

static void
test_bce(void **state)
{
	tl_rng		rng;
	bce_ctx		c;
	tl_tensor	dlogits = ZEROS(6);
	float		loss;
	float		big[2] = {100.0f, -100.0f},
				tgt[2] = {0.0f, 0.0f};
	tl_tensor	bl,
				bt;

	tl_rng_seed(&rng, 9);
	c.logits = RAND(&rng, 2.0f, 6);
	c.targets = ZEROS(6);
	c.weights = ZEROS(6);
	for (int i = 0; i < 6; i++)
	{
		c.targets.data[i] = i % 3 == 0 ? 1.0f : i % 3 == 1 ? 0.0f : 0.3f;
		c.weights.data[i] = i == 5 ? 0.0f : 1.0f + i;
	}
	ASSERT_OK(tl_bce_logits_bwd(&dlogits, &c.logits, &c.targets, &c.weights, 1.0f));
	check_gradient("bce dlogits", c.logits.data, c.logits.numel, dlogits.data,
				   bce_loss, &c, EPS, ATOL, RTOL);
	assert_float_equal(dlogits.data[5], 0.0f, 0);	/* weight 0 masks out */

	/* stable at extreme logits: loss of (100, t=0) is 100, of (-100, t=0) ~0 */
	ASSERT_OK(tl_tensor_view(&bl, big, 1, TL_SHAPE(2)));
	ASSERT_OK(tl_tensor_view(&bt, tgt, 1, TL_SHAPE(2)));
	ASSERT_OK(tl_bce_logits_fwd(&loss, &bl, &bt, NULL));
	assert_float_equal(loss, 50.0f, 1e-4);
	assert_true(isfinite(loss));

	c.targets.data[0] = 1.5f;
	ASSERT_FAILS(TL_ERR_ARG, tl_bce_logits_fwd(&loss, &c.logits, &c.targets, NULL));
	tl_tensor_free(&c.logits);
	tl_tensor_free(&c.targets);
	tl_tensor_free(&c.weights);
	tl_tensor_free(&dlogits);
}

/* ---- vectorisable exp and erf against libm ------------------------------- */

static void
test_fast_math_accuracy(void **state)
{
	double		worst_exp = 0.0,
				worst_erf = 0.0;

	for (int i = 0; i <= 200000; i++)
	{
		float		x = -87.0f + 175.0f * (float) i / 200000.0f;
		double		rel = fabs(tl_expf(x) - exp((double) x)) / exp((double) x);

		worst_exp = fmax(worst_exp, rel);
	}
	for (int i = 0; i <= 200000; i++)
	{
		float		x = -6.0f + 12.0f * (float) i / 200000.0f;

		worst_erf = fmax(worst_erf, fabs(tl_erff(x) - erf((double) x)));
	}
	print_message("  tl_expf max relative error %.2e, tl_erff max absolute error %.2e\n",
				  worst_exp, worst_erf);
	assert_true(worst_exp < 3e-7);
	assert_true(worst_erf < 6e-7);
	/* clamped, finite, and exact where it matters */
	assert_true(isfinite(tl_expf(1000.0f)));
	assert_true(tl_expf(-1000.0f) >= 0.0f && tl_expf(-1000.0f) < 1e-37f);
	assert_float_equal(tl_expf(0.0f), 1.0f, 0);
	assert_float_equal(tl_erff(0.0f), 0.0f, 1e-7);
}

/* ---- tensors ------------------------------------------------------------ */

static void
test_tensor_checks(void **state)
{
	tl_tensor	t,
				u;

	ASSERT_FAILS(TL_ERR_SHAPE, tl_tensor_alloc(&t, 2, TL_SHAPE(3, 0)));
	ASSERT_FAILS(TL_ERR_SHAPE, tl_tensor_alloc(&t, 5, TL_SHAPE(1, 1, 1, 1, 1)));
	ASSERT_FAILS(TL_ERR_SHAPE, tl_tensor_alloc(&t, 2, TL_SHAPE(INT64_MAX, 4)));
	ASSERT_FAILS(TL_ERR_ARG, tl_tensor_view(&t, NULL, 1, TL_SHAPE(3)));
	ASSERT_OK(tl_tensor_alloc(&t, 3, TL_SHAPE(2, 3, 4)));
	assert_int_equal(t.numel, 24);
	assert_int_equal(tl_rows(&t), 6);
	assert_int_equal(tl_cols(&t), 4);
	ASSERT_OK(tl_expect_shape(&t, "t", 3, TL_SHAPE(-1, 3, 4)));
	ASSERT_FAILS(TL_ERR_SHAPE, tl_expect_shape(&t, "t", 3, TL_SHAPE(2, 4, 4)));
	assert_string_equal(tl_last_error(), "t has shape (2, 3, 4), expected (2, 4, 4)");
	ASSERT_OK(tl_tensor_alloc(&u, 2, TL_SHAPE(6, 4)));
	ASSERT_FAILS(TL_ERR_SHAPE, tl_add(&t, &t, &u));
	tl_tensor_free(&t);
	tl_tensor_free(&u);
	tl_tensor_free(&u);			/* freeing twice is harmless */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tensor_checks),
		cmocka_unit_test(test_fast_math_accuracy),
		cmocka_unit_test(test_linear),
		cmocka_unit_test(test_embedding),
		cmocka_unit_test(test_layernorm),
		cmocka_unit_test(test_rmsnorm),
		cmocka_unit_test(test_activations),
		cmocka_unit_test(test_softmax_values),
		cmocka_unit_test(test_dropout),
		cmocka_unit_test(test_cross_entropy),
		cmocka_unit_test(test_bce),
	};

	return cmocka_run_group_tests_name("core ops", tests, NULL, NULL);
}
