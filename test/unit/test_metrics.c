/*
 * test_metrics.c -- binary prediction metrics: AUC against a brute-force
 * pair count, the edge cases of AUC, the other figures against values
 * worked out by hand, argument checks, and a million-prediction run
 * checked against a histogram count.
 */
#include "unit.h"
#include "tl_metrics.h"

/*
 * AUC by definition: over every (positive, negative) pair, 1 when the
 * positive is predicted higher, 1/2 on a tie.  O(n^2); NAN for one class.
 */
static double
pairwise_auc(const float *prob, const float *label, int64_t n)
{
	double		wins = 0.0;
	double		pairs = 0.0;

	for (int64_t i = 0; i < n; i++)
	{
		if (!(label[i] >= 0.5f))
			continue;
		for (int64_t j = 0; j < n; j++)
		{
			if (label[j] >= 0.5f)
				continue;
			pairs += 1.0;
			if (prob[i] > prob[j])
				wins += 1.0;
			else if (prob[i] == prob[j])
				wins += 0.5;
		}
	}
	return pairs > 0 ? wins / pairs : NAN;
}

static tl_binary_metrics
compute(const float *prob, const float *label, int64_t n)
{
	tl_binary_metrics m;

	ASSERT_OK(tl_binary_metrics_compute(prob, label, n, &m));
	assert_int_equal(m.n, n);
	return m;
}

static void
test_auc_matches_pairwise_count(void **state)
{
	/* few distinct predictions so that most of them are tied */
	static const int64_t sizes[] = {2, 3, 7, 50, 333, 2000};
	static const int levels[] = {2, 3, 5, 21, 1000};
	tl_rng		rng;

	tl_rng_seed(&rng, 11);
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
	{
		for (size_t li = 0; li < sizeof(levels) / sizeof(levels[0]); li++)
		{
			int64_t		n = sizes[si];
			float	   *prob = malloc(sizeof(float) * n);
			float	   *label = malloc(sizeof(float) * n);
			tl_binary_metrics m;
			double		expect;

			for (int64_t i = 0; i < n; i++)
			{
				int			level = (int) tl_rng_below(&rng, (uint64_t) levels[li]);

				prob[i] = (float) level / (float) (levels[li] - 1);
				/* labels loosely follow prob; a quarter are fractional */
				label[i] = tl_rng_uniform(&rng) < 0.25f ? tl_rng_uniform(&rng) :
					(tl_rng_uniform(&rng) < 0.3f + 0.4f * prob[i] ? 1.0f : 0.0f);
			}
			/* make sure both classes occur */
			label[0] = 1.0f;
			label[n - 1] = 0.0f;
			expect = pairwise_auc(prob, label, n);
			m = compute(prob, label, n);
			if (fabs(m.auc - expect) > 1e-12)
				fail_msg("n=%lld levels=%d: auc %.15f, pairwise %.15f",
						 (long long) n, levels[li], m.auc, expect);
			free(prob);
			free(label);
		}
	}
}

static void
test_auc_edge_cases(void **state)
{
	const float label[6] = {0, 0, 0, 1, 1, 1};
	const float rising[6] = {0.1f, 0.2f, 0.3f, 0.7f, 0.8f, 0.9f};
	const float falling[6] = {0.9f, 0.8f, 0.7f, 0.3f, 0.2f, 0.1f};
	const float constant[6] = {0.4f, 0.4f, 0.4f, 0.4f, 0.4f, 0.4f};
	/* -0.0 must tie with +0.0, not sort above 1.0 by its sign bit */
	const float signed_zero[2] = {-0.0f, 0.0f};
	const float one_each[2] = {1.0f, 0.0f};
	const float zero_tie[2] = {-0.0f, 1.0f};
	const float all_correct[3] = {1, 0.75f, 1};
	const float all_wrong[3] = {0, 0.25f, 0};
	tl_binary_metrics m;

	assert_float_equal(compute(rising, label, 6).auc, 1.0, 0);
	assert_float_equal(compute(falling, label, 6).auc, 0.0, 0);
	assert_float_equal(compute(constant, label, 6).auc, 0.5, 0);
	assert_float_equal(compute(signed_zero, one_each, 2).auc, 0.5, 0);
	/* negative (label 0) at 1.0 above a positive at -0.0 */
	assert_float_equal(compute(zero_tie, one_each, 2).auc, 0.0, 0);

	/* one class only: AUC undefined, the rest still reported */
	m = compute(rising, all_correct, 3);
	assert_true(isnan(m.auc));
	assert_float_equal(m.accuracy, 0.0, 0);	/* every prob below 0.5 */
	m = compute(rising, all_wrong, 3);
	assert_true(isnan(m.auc));
	assert_float_equal(m.accuracy, 1.0, 0);
	m = compute(rising, label, 1);
	assert_true(isnan(m.auc));
}

static void
test_figures_by_hand(void **state)
{
	const float prob[6] = {0.95f, 0.91f, 0.2f, 0.65f, 0.4f, 1.0f};
	const float label[6] = {1, 0, 0, 1, 0.5f, 1};
	tl_binary_metrics m = compute(prob, label, 6);
	double		log_loss;

	/*
	 * positives (label >= 0.5) 0.95 0.65 0.4 1.0, negatives 0.91 0.2:
	 * 1.0 and 0.95 beat both, 0.65 and 0.4 beat only 0.2 -> 6 of 8 pairs
	 */
	assert_float_equal(m.auc, 0.75, 1e-12);
	/* agree: 0.95/1, 0.2/0, 0.65/1, 1.0/1; disagree: 0.91/0, 0.4/0.5 */
	assert_float_equal(m.accuracy, 4.0 / 6.0, 1e-12);
	/* squared errors .0025 + .8281 + .04 + .1225 + .01 + 0 = 1.0031 */
	assert_float_equal(m.rmse, sqrt(1.0031 / 6.0), 1e-6);
	/* p = 1.0 is clamped to 1 - 1e-7 and costs -log(1 - 1e-7) */
	log_loss = (-log(0.95) - log(0.09) - log(0.8) - log(0.65)
				- 0.5 * log(0.4) - 0.5 * log(0.6) - log(1 - 1e-7)) / 6.0;
	assert_float_equal(m.log_loss, log_loss, 1e-6);
	assert_float_equal(log_loss, 0.637787, 1e-6);	/* worked out separately */

	/*
	 * bins: [0.9, 1.0] holds 0.95 0.91 1.0 (mean 0.95333) with labels
	 * 1 0 1 (mean 0.66667): 3/6 * 0.28667; [0.2, 0.3) 0.2 vs 0: 1/6 * 0.2;
	 * [0.6, 0.7) 0.65 vs 1: 1/6 * 0.35; [0.4, 0.5) 0.4 vs 0.5: 1/6 * 0.1;
	 * total (0.86 + 0.2 + 0.35 + 0.1) / 6
	 */
	assert_float_equal(m.ece, 1.51 / 6.0, 1e-6);

	/* a perfect, certain predictor */
	{
		const float p2[4] = {0, 1, 1, 0};
		tl_binary_metrics m2 = compute(p2, p2, 4);

		assert_float_equal(m2.auc, 1.0, 0);
		assert_float_equal(m2.accuracy, 1.0, 0);
		assert_float_equal(m2.rmse, 0.0, 0);
		assert_float_equal(m2.ece, 0.0, 0);
		assert_float_equal(m2.log_loss, -log(1 - 1e-7), 1e-12);
	}
}

static void
test_bad_arguments(void **state)
{
	const float ok[3] = {0.2f, 0.5f, 0.9f};
	const float nan_at_2[3] = {0.2f, 0.5f, NAN};
	const float high_at_1[3] = {0.2f, 1.5f, 0.9f};
	const float low_at_0[3] = {-0.1f, 0.5f, 0.9f};
	tl_binary_metrics m = {.n = 42};

	ASSERT_FAILS(TL_ERR_ARG, tl_binary_metrics_compute(ok, ok, 0, &m));
	ASSERT_FAILS(TL_ERR_ARG, tl_binary_metrics_compute(ok, ok, -1, &m));
	ASSERT_FAILS(TL_ERR_ARG, tl_binary_metrics_compute(NULL, ok, 3, &m));
	ASSERT_FAILS(TL_ERR_ARG, tl_binary_metrics_compute(ok, NULL, 3, &m));
	ASSERT_FAILS(TL_ERR_ARG, tl_binary_metrics_compute(ok, ok, 3, NULL));

	ASSERT_FAILS(TL_ERR_ARG, tl_binary_metrics_compute(nan_at_2, ok, 3, &m));
	assert_non_null(strstr(tl_last_error(), "prob[2]"));
	ASSERT_FAILS(TL_ERR_ARG, tl_binary_metrics_compute(high_at_1, ok, 3, &m));
	assert_non_null(strstr(tl_last_error(), "prob[1]"));
	ASSERT_FAILS(TL_ERR_ARG, tl_binary_metrics_compute(low_at_0, ok, 3, &m));
	assert_non_null(strstr(tl_last_error(), "prob[0]"));
	ASSERT_FAILS(TL_ERR_ARG, tl_binary_metrics_compute(ok, high_at_1, 3, &m));
	assert_non_null(strstr(tl_last_error(), "label[1]"));
	ASSERT_FAILS(TL_ERR_ARG, tl_binary_metrics_compute(ok, nan_at_2, 3, &m));
	assert_non_null(strstr(tl_last_error(), "label[2]"));
	/* failures leave *out alone */
	assert_int_equal(m.n, 42);
}

/*
 * A million predictions on 1001 levels.  With so few distinct values the
 * AUC can also be counted from per-level histograms in O(n + levels),
 * an independent check of the ranking at scale.
 */
static void
test_million_predictions(void **state)
{
	const int64_t n = 1000000;
	const int	levels = 1001;
	float	   *prob = malloc(sizeof(float) * n);
	float	   *label = malloc(sizeof(float) * n);
	double	   *pos = calloc(levels, sizeof(double));
	double	   *neg = calloc(levels, sizeof(double));
	double		wins = 0.0,
				neg_below = 0.0,
				n_pos = 0.0,
				n_neg = 0.0,
				expect;
	tl_binary_metrics m;
	tl_rng		rng;

	tl_rng_seed(&rng, 2024);
	for (int64_t i = 0; i < n; i++)
	{
		int			level = (int) tl_rng_below(&rng, (uint64_t) levels);

		prob[i] = (float) level / (float) (levels - 1);
		label[i] = tl_rng_uniform(&rng) < prob[i] ? 1.0f : 0.0f;
		if (label[i] >= 0.5f)
			pos[level] += 1.0;
		else
			neg[level] += 1.0;
	}
	for (int l = 0; l < levels; l++)
	{
		wins += pos[l] * (neg_below + 0.5 * neg[l]);
		neg_below += neg[l];
		n_pos += pos[l];
		n_neg += neg[l];
	}
	expect = wins / (n_pos * n_neg);

	m = compute(prob, label, n);
	print_message("  n=%lld auc %.6f (histogram %.6f) acc %.4f rmse %.4f log_loss %.4f ece %.5f\n",
				  (long long) n, m.auc, expect, m.accuracy, m.rmse, m.log_loss, m.ece);
	assert_float_equal(m.auc, expect, 1e-9);
	/* labels drawn from prob: calibrated, AUC of a uniform score is 5/6 */
	assert_float_equal(m.auc, 5.0 / 6.0, 0.005);
	assert_true(m.ece < 0.01);
	free(prob);
	free(label);
	free(pos);
	free(neg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auc_matches_pairwise_count),
		cmocka_unit_test(test_auc_edge_cases),
		cmocka_unit_test(test_figures_by_hand),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_million_predictions),
	};

	return cmocka_run_group_tests_name("binary metrics", tests, NULL, NULL);
}
