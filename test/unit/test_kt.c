/*
 * test_kt.c -- the knowledge-tracing Transformer: every parameter's
 * gradient against finite differences, next-answer inference against the
 * training-time forward pass, and learning on simulated students.
 */
#include "unit.h"
#include "tl_device.h"
#include "tl_kt.h"
#include "tl_math.h"
#include "tl_metrics.h"
#include "tl_pfa.h"
#include "tl_pool.h"

static tl_kt_config
tiny_config(void)
{
	return (tl_kt_config) {
		.n_items = 7, .n_skills = 4, .d_model = 8, .heads = 2, .layers = 2, .d_ff = 16,
			.dropout = 0.0f, .window = 6, .max_tokens = 24,
			.lr = 1e-3f, .weight_decay = 0.0f, .clip_norm = 0.0f,
	};
}

/* Two rows of 6: the second is 4 answers long; fractional answers included. */
typedef struct
{
	tl_kt		m;
	int32_t		items[12];
	int32_t		skills[12];
	float		correct[12];
	uint8_t		valid[12];
	float		weight[12];
	tl_kt_batch batch;
	bool		training;
} kt_ctx;

static double
kt_loss(void *arg)
{
	kt_ctx	   *c = arg;
	float		loss;

	if (tl_kt_forward(&c->m, &c->batch, c->training, 5, &loss) != TL_OK)
		fail_msg("%s", tl_last_error());
	return loss;
}

static void
make_ctx(kt_ctx *c, float dropout)
{
	tl_kt_config cfg = tiny_config();
	tl_rng		rng;
	static const int32_t items[12] = {1, 2, 3, 3, 4, 5, 6, 2, 0, 3, 0, 0};	/* 3, 3: a repeat */
	static const int32_t skills[12] = {1, 1, 2, 1, 3, 3, 2, 1, 2, 3, 0, 0};
	static const float correct[12] = {1, 0, 0.5f, 1, 0.5f, 0, 1, 1, 0, 1, 0, 0};

	cfg.dropout = dropout;
	memset(c, 0, sizeof(*c));
	ASSERT_OK(tl_kt_create(&c->m, &cfg, 3));
	tl_rng_seed(&rng, 4);
	/* larger weights than the init, so every path carries signal */
	for (int64_t i = 0; i < c->m.params.total; i++)
		c->m.params.value[i] += 0.3f * tl_rng_normal(&rng);
	c->m.params.value[c->m.params.items[c->m.param[TL_KT_ITEM_MU_A]].offset] = 0.0f;
	c->m.params.value[c->m.params.items[c->m.param[TL_KT_ITEM_MU_Q]].offset] = 0.0f;
	c->m.params.value[c->m.params.items[c->m.param[TL_KT_ITEM_BIAS]].offset] = 0.0f;
	memcpy(c->items, items, sizeof(items));
	memcpy(c->skills, skills, sizeof(skills));
	memcpy(c->correct, correct, sizeof(correct));
	for (int i = 0; i < 12; i++)
	{
		c->valid[i] = i < 6 || i < 10;
		c->weight[i] = c->valid[i] ? (i == 2 ? 0.0f : 1.0f) : 0.0f;	/* one context-only answer */
	}
	c->batch = (tl_kt_batch) {2, 6, c->items, c->skills, c->correct, c->valid, c->weight};
	c->training = dropout > 0;
}

static void
run_gradient_check(float dropout)
{
	kt_ctx		c;
	float	   *analytic;

	make_ctx(&c, dropout);
	kt_loss(&c);
	tl_params_zero_grad(&c.m.params);
	ASSERT_OK(tl_kt_backward(&c.m));
	analytic = malloc(sizeof(float) * c.m.params.total);
	memcpy(analytic, c.m.params.grad, sizeof(float) * c.m.params.total);
	for (int i = 0; i < c.m.params.count; i++)
	{
		const tl_param *p = &c.m.params.items[i];
		/* item 0 ("unknown") is frozen by design: its gradient is zeroed */
		int64_t		skip = strncmp(p->name, "item.", 5) == 0 ? 1 : 0;
		char		name[80];

		snprintf(name, sizeof(name), "%s%s", p->name, dropout > 0 ? " (dropout)" : "");
		check_gradient(name, c.m.params.value + p->offset + skip, p->numel - skip,
					   analytic + p->offset + skip, kt_loss, &c, 1e-3, 2e-3, 3e-2);
	}
	/* the unknown item (index 0) never moves */
	assert_float_equal(analytic[c.m.params.items[c.m.param[TL_KT_ITEM_BIAS]].offset], 0.0f, 0);
	free(analytic);
	tl_kt_free(&c.m);
}

static void
test_gradients(void **state)
{
	run_gradient_check(0.0f);
}

static void
test_gradients_with_dropout(void **state)
{
	run_gradient_check(0.25f);
}

/* Inference at the end of a history equals the forward pass at that position. */
static void
test_predict_next_matches_forward(void **state)
{
	kt_ctx		c;
	float		all[12],
				next[2];
	tl_kt_query queries[2] = {{6, 2}, {-1, 1}};
	float		mu_avg[4],
				bias_avg[4];
	int32_t		item_skill[7] = {0, 1, 1, 2, 3, 3, 2};
	float		loss;

	make_ctx(&c, 0.0f);
	ASSERT_OK(tl_kt_forward(&c.m, &c.batch, false, 0, &loss));
	tl_kt_probabilities(&c.m, all);
	/* row 0, position 5 asks item 5 (skill 3) after answers 0..4 */
	queries[0] = (tl_kt_query) {5, 3};
	tl_kt_skill_averages(&c.m, item_skill, mu_avg, bias_avg);
	ASSERT_OK(tl_kt_predict_next(&c.m, c.items, c.skills, c.correct, 5, queries, 2,
								 mu_avg, bias_avg, next));
	assert_float_equal(next[0], all[5], 1e-5);
	assert_true(next[1] > 0.0f && next[1] < 1.0f);
	/* a repeat: row 0, position 3 asks item 3 again right after answering it */
	ASSERT_OK(tl_kt_predict_next(&c.m, c.items, c.skills, c.correct, 3,
								 (tl_kt_query[]) {{3, 1}}, 1, mu_avg, bias_avg, next));
	assert_float_equal(next[0], all[3], 1e-5);
	/* an empty history is the prior: position 0 */
	ASSERT_OK(tl_kt_predict_next(&c.m, c.items + 6, c.skills + 6, c.correct + 6, 0,
								 (tl_kt_query[]) {{6, 2}}, 1, mu_avg, bias_avg, next));
	assert_float_equal(next[0], all[6], 1e-5);
	/* histories longer than the window keep the last window - 1 answers */
	ASSERT_OK(tl_kt_predict_next(&c.m, c.items, c.skills, c.correct, 6, queries, 1,
								 mu_avg, bias_avg, next));
	assert_true(isfinite(next[0]));
	/* bad questions */
	ASSERT_FAILS(TL_ERR_ARG, tl_kt_predict_next(&c.m, c.items, c.skills, c.correct, 5,
												(tl_kt_query[]) {{9, 1}}, 1, NULL, NULL, next));
	ASSERT_FAILS(TL_ERR_ARG, tl_kt_predict_next(&c.m, c.items, c.skills, c.correct, 5,
												(tl_kt_query[]) {{-1, 1}}, 1, NULL, NULL, next));
	tl_kt_free(&c.m);
}

/*
 * Many students at once equals one at a time: histories of every length
 * from empty to past the window, in groups that max_tokens (24 here)
 * splits, with a repeat of the last item among the questions.
 */
static void
test_predict_batch_matches_single(void **state)
{
	kt_ctx		c;
	enum
	{
		STUDENTS = 9, Q = 3
	};
	static const int64_t lengths[STUDENTS] = {0, 1, 5, 7, 2, 0, 12, 3, 6};
	int64_t		offsets[STUDENTS + 1] = {0};
	int32_t		items[64],
				skills[64];
	float		correct[64],
				batch[STUDENTS * Q],
				one[Q],
				mu_avg[4],
				bias_avg[4];
	int32_t		item_skill[7] = {0, 1, 1, 2, 3, 3, 2};
	tl_kt_query queries[Q] = {{3, 1}, {-1, 2}, {6, 2}};
	tl_rng		rng;

	make_ctx(&c, 0.0f);
	tl_kt_skill_averages(&c.m, item_skill, mu_avg, bias_avg);
	tl_rng_seed(&rng, 11);
	for (int b = 0; b < STUDENTS; b++)
		offsets[b + 1] = offsets[b] + lengths[b];
	for (int64_t i = 0; i < offsets[STUDENTS]; i++)
	{
		items[i] = 1 + (int32_t) (tl_rng_uniform(&rng) * 6) % 6;
		skills[i] = item_skill[items[i]];
		correct[i] = tl_rng_uniform(&rng) < 0.5f ? 0.0f : 1.0f;
	}
	items[offsets[3] - 1] = 3;	/* student 2 ends on item 3: question 0 is a repeat */
	skills[offsets[3] - 1] = 1;
	ASSERT_OK(tl_kt_predict_batch(&c.m, STUDENTS, offsets, items, skills, correct, queries, Q,
								  mu_avg, bias_avg, batch));
	for (int b = 0; b < STUDENTS; b++)
	{
		ASSERT_OK(tl_kt_predict_next(&c.m, items + offsets[b], skills + offsets[b], correct + offsets[b],
									 lengths[b], queries, Q, mu_avg, bias_avg, one));
		for (int q = 0; q < Q; q++)
			assert_float_equal(batch[b * Q + q], one[q], 1e-5);
	}
	/* two instances side by side on a pool of two threads give the same answers */
	{
		kt_ctx		c2;
		tl_kt	   *models[2] = {&c.m, &c2.m};
		float		many[STUDENTS * Q];
		int			threads = tl_pool_threads();

		make_ctx(&c2, 0.0f);
		tl_pool_set_threads(2);
		ASSERT_OK(tl_kt_predict_many(models, 2, STUDENTS, offsets, items, skills, correct, queries, Q,
									 mu_avg, bias_avg, many));
		for (int i = 0; i < STUDENTS * Q; i++)
			assert_float_equal(many[i], batch[i], 1e-5);
		/* instances must agree on their configuration */
		c2.m.cfg.window = 5;
		ASSERT_FAILS(TL_ERR_ARG, tl_kt_predict_many(models, 2, STUDENTS, offsets, items, skills, correct,
													queries, Q, mu_avg, bias_avg, many));
		c2.m.cfg.window = 6;
		tl_pool_set_threads(threads);
		tl_kt_free(&c2.m);
	}
	/* nothing to do, and bad offsets */
	ASSERT_OK(tl_kt_predict_batch(&c.m, 0, offsets, items, skills, correct, queries, Q, mu_avg, bias_avg, batch));
	offsets[2] = offsets[1] - 1;
	ASSERT_FAILS(TL_ERR_ARG, tl_kt_predict_batch(&c.m, STUDENTS, offsets, items, skills, correct, queries, Q,
												 mu_avg, bias_avg, batch));
	tl_kt_free(&c.m);
}

static void
test_bad_batches(void **state)
{
	kt_ctx		c;
	float		loss;

	make_ctx(&c, 0.0f);
	c.items[1] = 7;				/* outside the vocabulary */
	ASSERT_FAILS(TL_ERR_ARG, tl_kt_forward(&c.m, &c.batch, false, 0, &loss));
	c.items[1] = 2;
	c.correct[1] = 1.5f;
	ASSERT_FAILS(TL_ERR_ARG, tl_kt_forward(&c.m, &c.batch, false, 0, &loss));
	c.correct[1] = 0.0f;
	c.valid[3] = 0;				/* a hole in the prefix */
	ASSERT_FAILS(TL_ERR_ARG, tl_kt_forward(&c.m, &c.batch, false, 0, &loss));
	c.valid[3] = 1;
	c.batch.seq = 7;			/* longer than the window */
	ASSERT_FAILS(TL_ERR_ARG, tl_kt_forward(&c.m, &c.batch, false, 0, &loss));
	tl_kt_free(&c.m);
	{
		tl_kt_config cfg = tiny_config();
		tl_kt		m;

		cfg.heads = 3;
		ASSERT_FAILS(TL_ERR_ARG, tl_kt_create(&m, &cfg, 1));
		cfg = tiny_config();
		cfg.max_tokens = 3;
		ASSERT_FAILS(TL_ERR_ARG, tl_kt_create(&m, &cfg, 1));
	}
}

/*
 * Simulated students: each has a hidden ability per skill that grows with
 * practice; items have difficulties.  A trained model must rank held-out
 * answers well above chance.  The simulator's own probabilities are an
 * upper bound no model reaches: they know each student's ability before
 * the first answer, while a model has to infer it from the answers.
 */
enum
{
	SIM_STUDENTS = 240, SIM_LEN = 30, SIM_SKILLS = 4, SIM_ITEMS = 16
};

static void
simulate(tl_rng *rng, int32_t *items, int32_t *skills, float *correct, float *truth, int students)
{
	float		difficulty[SIM_ITEMS + 1];

	for (int i = 1; i <= SIM_ITEMS; i++)
		difficulty[i] = -1.5f + 3.0f * (float) ((i * 7) % SIM_ITEMS) / SIM_ITEMS;
	for (int st = 0; st < students; st++)
	{
		float		ability[SIM_SKILLS + 1];
		float		general = tl_rng_normal(rng);

		for (int s = 1; s <= SIM_SKILLS; s++)
			ability[s] = general + 0.5f * tl_rng_normal(rng);
		for (int t = 0; t < SIM_LEN; t++)
		{
			int			idx = st * SIM_LEN + t;
			int32_t		item = 1 + (int32_t) tl_rng_below(rng, SIM_ITEMS);
			int32_t		skill = 1 + (item - 1) % SIM_SKILLS;
			float		p = tl_sigmoidf(ability[skill] - difficulty[item]);

			items[idx] = item;
			skills[idx] = skill;
			truth[idx] = p;
			correct[idx] = tl_rng_uniform(rng) < p ? 1.0f : 0.0f;
			ability[skill] += 0.15f;	/* learning from practice */
		}
	}
}

static void
test_learns_simulated_students(void **state)
{
	tl_kt_config cfg = {
		.n_items = SIM_ITEMS + 1, .n_skills = SIM_SKILLS + 1, .d_model = 32, .heads = 4,
		.layers = 1, .d_ff = 64, .dropout = 0.0f, .window = SIM_LEN, .max_tokens = 40 * SIM_LEN,
		.lr = 3e-3f, .weight_decay = 0.01f, .clip_norm = 1.0f,
	};
	const int	train = 200,
				test = SIM_STUDENTS - train;
	int32_t    *items = malloc(sizeof(int32_t) * SIM_STUDENTS * SIM_LEN);
	int32_t    *skills = malloc(sizeof(int32_t) * SIM_STUDENTS * SIM_LEN);
	float	   *correct = malloc(sizeof(float) * SIM_STUDENTS * SIM_LEN);
	float	   *truth = malloc(sizeof(float) * SIM_STUDENTS * SIM_LEN);
	uint8_t    *valid = malloc(SIM_STUDENTS * SIM_LEN);
	float	   *pred = malloc(sizeof(float) * test * SIM_LEN);
	tl_kt		m;
	tl_rng		rng;
	tl_binary_metrics model_metrics,
				truth_metrics;
	float		loss;

	tl_set_num_threads(2);		/* train on the pool, as a backend does */
	tl_rng_seed(&rng, 77);
	simulate(&rng, items, skills, correct, truth, SIM_STUDENTS);
	memset(valid, 1, SIM_STUDENTS * SIM_LEN);
	ASSERT_OK(tl_kt_create(&m, &cfg, 1));
	for (int epoch = 0; epoch < 25; epoch++)
		for (int first = 0; first < train; first += 20)
		{
			int			off = first * SIM_LEN;
			tl_kt_batch b = {20, SIM_LEN, items + off, skills + off, correct + off, valid + off, NULL};

			ASSERT_OK(tl_kt_train_step(&m, &b, (uint64_t) (epoch * 100 + first), &loss));
		}
	{
		int			off = train * SIM_LEN;
		tl_kt_batch b = {test, SIM_LEN, items + off, skills + off, correct + off, valid + off, NULL};

		ASSERT_OK(tl_kt_forward(&m, &b, false, 0, &loss));
		tl_kt_probabilities(&m, pred);
		ASSERT_OK(tl_binary_metrics_compute(pred, correct + off, test * SIM_LEN, &model_metrics));
		ASSERT_OK(tl_binary_metrics_compute(truth + off, correct + off, test * SIM_LEN, &truth_metrics));
	}
	{
		/* the PFA baseline on the same students: the Transformer must not lose to it */
		tl_pfa		pfa;
		tl_pfa_config pcfg = {SIM_ITEMS + 1, SIM_SKILLS + 1, 0.01f, 0.0f};
		tl_pfa_obs *obs = malloc(sizeof(tl_pfa_obs) * SIM_STUDENTS * SIM_LEN);
		float	   *counts = calloc(2 * (SIM_SKILLS + 1), sizeof(float));
		int			off = train * SIM_LEN;
		tl_binary_metrics pfa_metrics;

		for (int st = 0; st < SIM_STUDENTS; st++)
			ASSERT_OK(tl_pfa_sequence_obs(items + st * SIM_LEN, skills + st * SIM_LEN, correct + st * SIM_LEN,
										  SIM_LEN, SIM_SKILLS + 1, counts, obs + st * SIM_LEN));
		ASSERT_OK(tl_pfa_create(&pfa, &pcfg));
		for (int epoch = 0; epoch < 60; epoch++)
			for (int first = 0; first < off; first += 128)
				ASSERT_OK(tl_pfa_train_batch(&pfa, obs + first, first + 128 <= off ? 128 : off - first, &loss));
		for (int i = 0; i < test * SIM_LEN; i++)
			pred[i] = tl_sigmoidf(tl_pfa_logit(&pfa, obs + off + i));
		ASSERT_OK(tl_binary_metrics_compute(pred, correct + off, test * SIM_LEN, &pfa_metrics));
		print_message("  simulated students: held-out AUC %.3f, PFA baseline %.3f, simulator's own probabilities %.3f\n",
					  model_metrics.auc, pfa_metrics.auc, truth_metrics.auc);
		assert_true(model_metrics.auc > 0.72);
		assert_true(model_metrics.auc > pfa_metrics.auc - 0.01);
		assert_true(model_metrics.auc < truth_metrics.auc);
		tl_pfa_free(&pfa);
		free(obs);
		free(counts);
	}
	tl_set_num_threads(1);
	tl_kt_free(&m);
	free(items);
	free(skills);
	free(correct);
	free(truth);
	free(valid);
	free(pred);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gradients),
		cmocka_unit_test(test_gradients_with_dropout),
		cmocka_unit_test(test_predict_next_matches_forward),
		cmocka_unit_test(test_predict_batch_matches_single),
		cmocka_unit_test(test_bad_batches),
		cmocka_unit_test(test_learns_simulated_students),
	};

	return cmocka_run_group_tests_name("knowledge tracing", tests, NULL, NULL);
}
