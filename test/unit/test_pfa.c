/*
 * test_pfa.c -- Performance Factors Analysis: configuration and batch
 * checks, the logit by hand, gradients against finite differences, the
 * prior-count construction, and training on students simulated from a
 * known PFA model (parameter recovery, held-out AUC, determinism).
 */
#include "unit.h"
#include "tl_metrics.h"
#include "tl_pfa.h"

static float *
param_values(tl_pfa *m, int index)
{
	return m->params.value + m->params.items[index].offset;
}

static void
test_create_and_layout(void **state)
{
	tl_pfa		m;
	tl_pfa_config cfg = {.n_items = 7, .n_skills = 3, .lr = 0.01f, .weight_decay = 0.1f};
	tl_pfa_config bad;
	static const char *names[] = {"pfa.bias", "pfa.beta", "pfa.theta", "pfa.gamma", "pfa.rho"};
	static const int64_t sizes[] = {1, 7, 3, 3, 3};

	ASSERT_OK(tl_pfa_create(&m, &cfg));
	assert_int_equal(m.params.count, 5);
	assert_int_equal(m.params.total, 1 + 7 + 3 * 3);
	for (int i = 0; i < 5; i++)
	{
		assert_string_equal(m.params.items[i].name, names[i]);
		assert_int_equal(m.params.items[i].numel, sizes[i]);
		/* only item easiness is decayed */
		assert_int_equal(m.params.items[i].decay, i == m.beta);
	}
	for (int64_t i = 0; i < m.params.total; i++)
		assert_true(m.params.value[i] == 0.0f);
	tl_pfa_free(&m);
	assert_null(m.params.value);

	bad = cfg;
	bad.n_items = 0;
	ASSERT_FAILS(TL_ERR_ARG, tl_pfa_create(&m, &bad));
	bad = cfg;
	bad.n_skills = 0;
	ASSERT_FAILS(TL_ERR_ARG, tl_pfa_create(&m, &bad));
	bad = cfg;
	bad.lr = 0.0f;
	ASSERT_FAILS(TL_ERR_ARG, tl_pfa_create(&m, &bad));
	bad.lr = INFINITY;
	ASSERT_FAILS(TL_ERR_ARG, tl_pfa_create(&m, &bad));
	bad.lr = NAN;
	ASSERT_FAILS(TL_ERR_ARG, tl_pfa_create(&m, &bad));
	bad = cfg;
	bad.weight_decay = -0.5f;
	ASSERT_FAILS(TL_ERR_ARG, tl_pfa_create(&m, &bad));
	assert_null(m.params.value);
	/* one item (the unknown one) and one skill is a valid, if dull, model */
	bad = cfg;
	bad.n_items = 1;
	bad.n_skills = 1;
	ASSERT_OK(tl_pfa_create(&m, &bad));
	tl_pfa_free(&m);
}

static void
test_logit_by_hand(void **state)
{
	tl_pfa		m;
	tl_pfa_config cfg = {.n_items = 4, .n_skills = 3, .lr = 0.01f};
	tl_pfa_obs	o = {.item = 2, .skill = 1, .successes = 3.0f, .failures = 1.5f};
	tl_pfa_obs	unknown = {.item = 0, .skill = 0, .successes = 3.0f, .failures = 1.5f};
	double		expect;

	ASSERT_OK(tl_pfa_create(&m, &cfg));
	param_values(&m, m.bias)[0] = 0.25f;
	param_values(&m, m.beta)[0] = 100.0f;	/* must be ignored: item 0 is unknown */
	param_values(&m, m.beta)[2] = -0.5f;
	param_values(&m, m.theta)[0] = 0.125f;
	param_values(&m, m.theta)[1] = 0.75f;
	param_values(&m, m.gamma)[0] = 0.5f;
	param_values(&m, m.gamma)[1] = 0.4f;
	param_values(&m, m.rho)[0] = -0.25f;
	param_values(&m, m.rho)[1] = -0.3f;

	expect = 0.25 - 0.5 + 0.75 + 0.4 * log1p(3.0) - 0.3 * log1p(1.5);
	assert_float_equal(tl_pfa_logit(&m, &o), expect, 1e-6);
	expect = 0.25 + 0.125 + 0.5 * log1p(3.0) - 0.25 * log1p(1.5);
	assert_float_equal(tl_pfa_logit(&m, &unknown), expect, 1e-6);

	/* out-of-range indices predict as the unknown item and skill */
	o.item = 4;
	o.skill = -1;
	assert_float_equal(tl_pfa_logit(&m, &o), expect, 1e-6);
	o.item = -7;
	o.skill = 3;
	assert_float_equal(tl_pfa_logit(&m, &o), expect, 1e-6);
	/* negative or NaN counts count as none */
	o.successes = -2.0f;
	o.failures = NAN;
	assert_float_equal(tl_pfa_logit(&m, &o), 0.25 + 0.125, 1e-6);
	tl_pfa_free(&m);
}

/* ---- gradients ------------------------------------------------------------ */

typedef struct
{
	tl_pfa		model;
	tl_pfa_obs *obs;
	int64_t		n;
} pfa_ctx;

static double
pfa_loss_fn(void *arg)
{
	pfa_ctx    *c = arg;
	float		loss;

	ASSERT_OK(tl_pfa_loss(&c->model, c->obs, c->n, &loss));
	return loss;
}

static void
test_gradient_matches_finite_differences(void **state)
{
	tl_pfa_config cfg = {.n_items = 6, .n_skills = 3, .lr = 0.01f};
	pfa_ctx		c = {.n = 40};
	tl_rng		rng;
	float	   *analytic;
	float		loss,
				loss_only;
	static const char *names[] = {"pfa.bias", "pfa.beta", "pfa.theta", "pfa.gamma", "pfa.rho"};

	ASSERT_OK(tl_pfa_create(&c.model, &cfg));
	tl_rng_seed(&rng, 31);
	/* random parameters, so every path carries signal */
	for (int64_t i = 0; i < c.model.params.total; i++)
		c.model.params.value[i] = 0.5f * tl_rng_normal(&rng);
	c.obs = calloc((size_t) c.n, sizeof(tl_pfa_obs));
	for (int64_t i = 0; i < c.n; i++)
	{
		c.obs[i].item = (int32_t) tl_rng_below(&rng, 6);	/* item 0 included */
		c.obs[i].skill = (int32_t) tl_rng_below(&rng, 3);
		c.obs[i].successes = (float) tl_rng_below(&rng, 6) + 0.5f * tl_rng_uniform(&rng);
		c.obs[i].failures = (float) tl_rng_below(&rng, 4);
		/* binary and fractional targets */
		c.obs[i].correct = i % 3 == 0 ? tl_rng_uniform(&rng) : (float) tl_rng_below(&rng, 2);
	}

	ASSERT_OK(tl_pfa_gradient(&c.model, c.obs, c.n, &loss));
	ASSERT_OK(tl_pfa_loss(&c.model, c.obs, c.n, &loss_only));
	assert_float_equal(loss, loss_only, 1e-6);
	analytic = malloc(sizeof(float) * c.model.params.total);
	memcpy(analytic, c.model.params.grad, sizeof(float) * c.model.params.total);
	/* the unknown item takes no part, so its gradient is exactly zero */
	assert_true(analytic[c.model.params.items[c.model.beta].offset] == 0.0f);
	for (int p = 0; p < c.model.params.count; p++)
	{
		const tl_param *param = &c.model.params.items[p];

		check_gradient(names[p], c.model.params.value + param->offset, param->numel,
					   analytic + param->offset, pfa_loss_fn, &c, 1e-3, 1e-4, 1e-3);
	}
	free(analytic);
	free(c.obs);
	tl_pfa_free(&c.model);
}

static void
test_batch_validation(void **state)
{
	tl_pfa_config cfg = {.n_items = 5, .n_skills = 2, .lr = 0.1f};
	tl_pfa		m;
	tl_pfa_obs	obs[3] = {
		{.item = 1, .skill = 0, .successes = 1, .failures = 0, .correct = 1},
		{.item = 4, .skill = 1, .successes = 0, .failures = 2, .correct = 0},
		{.item = 0, .skill = 1, .successes = 0.5f, .failures = 0.5f, .correct = 0.5f},
	};
	tl_pfa_obs	bad[3];
	float		before[1 + 5 + 3 * 2];
	float		loss = -1.0f;

	ASSERT_OK(tl_pfa_create(&m, &cfg));
	ASSERT_OK(tl_pfa_train_batch(&m, obs, 3, &loss));
	/* all-zero parameters predict 0.5: loss log 2 before the step */
	assert_float_equal(loss, log(2.0), 1e-6);
	memcpy(before, m.params.value, sizeof(before));

#define EXPECT_REJECTED(field, value) \
	do { \
		memcpy(bad, obs, sizeof(obs)); \
		bad[2].field = (value); \
		ASSERT_FAILS(TL_ERR_ARG, tl_pfa_train_batch(&m, bad, 3, &loss)); \
		ASSERT_FAILS(TL_ERR_ARG, tl_pfa_loss(&m, bad, 3, &loss)); \
		assert_non_null(strstr(tl_last_error(), "observation 2")); \
	} while (0)
	EXPECT_REJECTED(item, 5);
	EXPECT_REJECTED(item, -1);
	EXPECT_REJECTED(skill, 2);
	EXPECT_REJECTED(skill, -1);
	EXPECT_REJECTED(correct, 1.5f);
	EXPECT_REJECTED(correct, -0.1f);
	EXPECT_REJECTED(correct, NAN);
	EXPECT_REJECTED(successes, -1.0f);
	EXPECT_REJECTED(failures, NAN);
	EXPECT_REJECTED(failures, INFINITY);
#undef EXPECT_REJECTED
	ASSERT_FAILS(TL_ERR_ARG, tl_pfa_train_batch(&m, obs, 0, &loss));
	ASSERT_FAILS(TL_ERR_ARG, tl_pfa_loss(&m, obs, 0, &loss));

	/* rejected batches change neither parameters nor optimiser state */
	assert_memory_equal(before, m.params.value, sizeof(before));
	assert_int_equal(m.opt.step, 1);
	tl_pfa_free(&m);
}

/* ---- prior counts ---------------------------------------------------------- */

static void
test_sequence_obs(void **state)
{
	/* one student: skills 1 and 2 interleaved, one unknown-skill answer */
	const int32_t items[7] = {3, 4, 3, 5, 0, 7, 4};
	const int32_t skills[7] = {1, 2, 1, 1, 2, 0, 2};
	const float correct[7] = {1, 0, 0.5f, 1, 1, 0, 0.25f};
	const float expect_s[7] = {0, 0, 1, 1.5f, 0, 0, 1};
	const float expect_f[7] = {0, 0, 0, 0.5f, 1, 0, 1};
	const int32_t n_skills = 4;
	float		counts[2 * 4 + 2] = {0};	/* a guard entry on each side */
	tl_pfa_obs	out[7];
	int32_t		bad_skills[7];
	float		bad_correct[7];

	ASSERT_OK(tl_pfa_sequence_obs(items, skills, correct, 7, n_skills, counts + 1, out));
	for (int t = 0; t < 7; t++)
	{
		assert_int_equal(out[t].item, items[t]);
		assert_int_equal(out[t].skill, skills[t]);
		assert_true(out[t].correct == correct[t]);
		assert_float_equal(out[t].successes, expect_s[t], 0);
		assert_float_equal(out[t].failures, expect_f[t], 0);
	}
	for (int i = 0; i < 2 * n_skills + 2; i++)
		assert_true(counts[i] == 0.0f);

	/* the same scratch serves the next student from a clean start */
	ASSERT_OK(tl_pfa_sequence_obs(items + 2, skills + 2, correct + 2, 5, n_skills, counts + 1, out));
	assert_float_equal(out[0].successes, 0, 0);
	assert_float_equal(out[1].successes, 0.5f, 0);
	assert_float_equal(out[1].failures, 0.5f, 0);
	ASSERT_OK(tl_pfa_sequence_obs(items, skills, correct, 0, n_skills, counts + 1, out));

	/* bad answers late in the sequence fail without leaving counts behind */
	memcpy(bad_skills, skills, sizeof(skills));
	bad_skills[5] = n_skills;
	ASSERT_FAILS(TL_ERR_ARG, tl_pfa_sequence_obs(items, bad_skills, correct, 7, n_skills, counts + 1, out));
	assert_non_null(strstr(tl_last_error(), "answer 5"));
	memcpy(bad_correct, correct, sizeof(correct));
	bad_correct[6] = 2.0f;
	ASSERT_FAILS(TL_ERR_ARG, tl_pfa_sequence_obs(items, skills, bad_correct, 7, n_skills, counts + 1, out));
	ASSERT_FAILS(TL_ERR_ARG, tl_pfa_sequence_obs(items, skills, correct, -1, n_skills, counts + 1, out));
	ASSERT_FAILS(TL_ERR_ARG, tl_pfa_sequence_obs(items, skills, correct, 7, 0, counts + 1, out));
	for (int i = 0; i < 2 * n_skills + 2; i++)
		assert_true(counts[i] == 0.0f);
}

/* ---- training on simulated students ---------------------------------------- */

#define SIM_STUDENTS 300
#define SIM_ANSWERS 40
#define SIM_TRAIN_STUDENTS 240
#define SIM_ITEMS 20
#define SIM_SKILLS 5

typedef struct
{
	/* the generating model */
	float		bias;
	float		beta[SIM_ITEMS];
	float		theta[SIM_SKILLS];
	float		gamma[SIM_SKILLS];
	float		rho[SIM_SKILLS];
	/* SIM_STUDENTS * SIM_ANSWERS observations, student by student */
	tl_pfa_obs *obs;
	float	   *true_prob;
} sim_data;

static double
sigmoid(double x)
{
	return 1.0 / (1.0 + exp(-x));
}

/*
 * Students answer random items in time order; each item belongs to one
 * skill (item % 5), and one answer in twenty is logged without its item
 * (item 0).  Correctness is drawn from the PFA model itself, so a fitted
 * model can at best match the generating one.
 */
static void
simulate(sim_data *d, uint64_t seed)
{
	tl_rng		rng;
	int32_t		items[SIM_ANSWERS];
	int32_t		skills[SIM_ANSWERS];
	float		correct[SIM_ANSWERS];
	float		prior_s[SIM_ANSWERS];
	float		prior_f[SIM_ANSWERS];
	float		counts[2 * SIM_SKILLS] = {0};

	tl_rng_seed(&rng, seed);
	d->bias = 0.3f;
	d->beta[0] = 0.0f;
	for (int i = 1; i < SIM_ITEMS; i++)
		d->beta[i] = 1.0f * tl_rng_normal(&rng);
	for (int s = 0; s < SIM_SKILLS; s++)
	{
		d->theta[s] = 0.5f * tl_rng_normal(&rng);
		d->gamma[s] = 0.4f + 0.1f * s;	/* practice that went well helps */
		d->rho[s] = -0.4f - 0.05f * s;	/* repeated failure predicts more */
	}
	d->obs = calloc(SIM_STUDENTS * SIM_ANSWERS, sizeof(tl_pfa_obs));
	d->true_prob = calloc(SIM_STUDENTS * SIM_ANSWERS, sizeof(float));

	for (int st = 0; st < SIM_STUDENTS; st++)
	{
		float		succ[SIM_SKILLS] = {0};
		float		fail[SIM_SKILLS] = {0};

		for (int t = 0; t < SIM_ANSWERS; t++)
		{
			int			item = 1 + (int) tl_rng_below(&rng, SIM_ITEMS - 1);
			int			skill = item % SIM_SKILLS;
			double		logit;
			float		p;

			if (tl_rng_below(&rng, 20) == 0)
				item = 0;
			logit = d->bias + d->beta[item] + d->theta[skill] +
				d->gamma[skill] * log1p(succ[skill]) + d->rho[skill] * log1p(fail[skill]);
			p = (float) sigmoid(logit);
			prior_s[t] = succ[skill];
			prior_f[t] = fail[skill];
			items[t] = item;
			skills[t] = skill;
			correct[t] = tl_rng_uniform(&rng) < p ? 1.0f : 0.0f;
			d->true_prob[st * SIM_ANSWERS + t] = p;
			succ[skill] += correct[t];
			fail[skill] += 1.0f - correct[t];
		}
		ASSERT_OK(tl_pfa_sequence_obs(items, skills, correct, SIM_ANSWERS, SIM_SKILLS,
									  counts, d->obs + st * SIM_ANSWERS));
		/* the library's prior counts agree with the ones the simulation used */
		for (int t = 0; t < SIM_ANSWERS; t++)
		{
			const tl_pfa_obs *o = &d->obs[st * SIM_ANSWERS + t];

			assert_true(o->successes == prior_s[t] && o->failures == prior_f[t]);
		}
	}
}

static void
free_sim(sim_data *d)
{
	free(d->obs);
	free(d->true_prob);
}

/*
 * Fit a PFA model to the training students: a fixed number of epochs of
 * shuffled mini-batches, the shuffle drawn from seed.
 */
static void
train_on(tl_pfa *m, const sim_data *d, uint64_t seed, float *first_loss, float *last_loss)
{
	const int64_t n = SIM_TRAIN_STUDENTS * SIM_ANSWERS;
	const int64_t batch = 128;
	const int	epochs = 60;
	tl_pfa_config cfg = {.n_items = SIM_ITEMS, .n_skills = SIM_SKILLS, .lr = 0.01f, .weight_decay = 0.01f};
	tl_pfa_obs *shuffled = malloc(sizeof(tl_pfa_obs) * n);
	tl_rng		rng;
	float		loss = 0;

	ASSERT_OK(tl_pfa_create(m, &cfg));
	memcpy(shuffled, d->obs, sizeof(tl_pfa_obs) * n);
	tl_rng_seed(&rng, seed);
	for (int e = 0; e < epochs; e++)
	{
		for (int64_t i = n - 1; i > 0; i--)
		{
			int64_t		j = (int64_t) tl_rng_below(&rng, (uint64_t) i + 1);
			tl_pfa_obs	tmp = shuffled[i];

			shuffled[i] = shuffled[j];
			shuffled[j] = tmp;
		}
		for (int64_t start = 0; start < n; start += batch)
		{
			int64_t		len = n - start < batch ? n - start : batch;

			ASSERT_OK(tl_pfa_train_batch(m, shuffled + start, len, &loss));
			if (e == 0 && start == 0 && first_loss)
				*first_loss = loss;
		}
	}
	if (last_loss)
		ASSERT_OK(tl_pfa_loss(m, d->obs, n, last_loss));
	free(shuffled);
}

static void
test_training_recovers_generating_model(void **state)
{
	sim_data	d;
	tl_pfa		m;
	const int64_t held_start = SIM_TRAIN_STUDENTS * SIM_ANSWERS;
	const int64_t held_n = (SIM_STUDENTS - SIM_TRAIN_STUDENTS) * SIM_ANSWERS;
	float	   *pred = malloc(sizeof(float) * held_n);
	float	   *label = malloc(sizeof(float) * held_n);
	float		first_loss,
				train_loss;
	tl_binary_metrics fitted,
				truth;
	const float *gamma,
			   *rho;
	double		gamma_error = 0.0,
				rho_error = 0.0;

	simulate(&d, 4242);
	train_on(&m, &d, 7, &first_loss, &train_loss);
	for (int64_t i = 0; i < held_n; i++)
	{
		pred[i] = (float) sigmoid(tl_pfa_logit(&m, &d.obs[held_start + i]));
		label[i] = d.obs[held_start + i].correct;
	}
	ASSERT_OK(tl_binary_metrics_compute(pred, label, held_n, &fitted));
	ASSERT_OK(tl_binary_metrics_compute(d.true_prob + held_start, label, held_n, &truth));

	gamma = param_values(&m, m.gamma);
	rho = param_values(&m, m.rho);
	print_message("  train loss %.4f -> %.4f; held-out AUC %.4f (generating model %.4f), "
				  "log loss %.4f (%.4f)\n", first_loss, train_loss, fitted.auc, truth.auc,
				  fitted.log_loss, truth.log_loss);
	for (int s = 0; s < SIM_SKILLS; s++)
		print_message("  skill %d: gamma %+.3f (true %+.3f)  rho %+.3f (true %+.3f)\n",
					  s, gamma[s], d.gamma[s], rho[s], d.rho[s]);

	/*
	 * About 1,900 answers per skill leave each gamma and rho a sampling
	 * error of roughly 0.1 (up to 0.31 over sixteen simulation seeds tried
	 * while writing this test, with every sign right); the mean over the
	 * skills is tighter (within 0.11 on those seeds).
	 */
	for (int s = 0; s < SIM_SKILLS; s++)
	{
		assert_true(gamma[s] > 0.0f);
		assert_true(rho[s] < 0.0f);
		assert_float_equal(gamma[s], d.gamma[s], 0.35);
		assert_float_equal(rho[s], d.rho[s], 0.35);
		gamma_error += (gamma[s] - d.gamma[s]) / SIM_SKILLS;
		rho_error += (rho[s] - d.rho[s]) / SIM_SKILLS;
	}
	assert_float_equal(gamma_error, 0.0, 0.15);
	assert_float_equal(rho_error, 0.0, 0.15);
	assert_true(fitted.auc > 0.65);
	assert_float_equal(fitted.auc, truth.auc, 0.03);
	assert_true(train_loss < first_loss);
	/* the unknown item was trained on but never given a difficulty */
	assert_true(param_values(&m, m.beta)[0] == 0.0f);

	tl_pfa_free(&m);
	free(pred);
	free(label);
	free_sim(&d);
}

static void
test_training_is_deterministic(void **state)
{
	sim_data	d;
	tl_pfa		a,
				b;

	simulate(&d, 99);
	train_on(&a, &d, 5, NULL, NULL);
	train_on(&b, &d, 5, NULL, NULL);
	assert_int_equal(a.params.total, b.params.total);
	assert_memory_equal(a.params.value, b.params.value, sizeof(float) * a.params.total);
	tl_pfa_free(&a);
	tl_pfa_free(&b);
	free_sim(&d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_and_layout),
		cmocka_unit_test(test_logit_by_hand),
		cmocka_unit_test(test_gradient_matches_finite_differences),
		cmocka_unit_test(test_batch_validation),
		cmocka_unit_test(test_sequence_obs),
		cmocka_unit_test(test_training_recovers_generating_model),
		cmocka_unit_test(test_training_is_deterministic),
	};

	return cmocka_run_group_tests_name("performance factors analysis", tests, NULL, NULL);
}
