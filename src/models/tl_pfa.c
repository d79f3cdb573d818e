/*
 * tl_pfa.c -- Performance Factors Analysis: logistic regression on item,
 * skill and prior successes/failures, trained with AdamW.
 */
#include <math.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_pfa.h"

/* Validate the configuration, then declare and allocate zeroed parameters and AdamW. */
tl_status
tl_pfa_create(tl_pfa *m, const tl_pfa_config *cfg)
{
	tl_params  *ps;
	tl_rng		rng;
	tl_status	rc;

	memset(m, 0, sizeof(*m));
	if (!cfg)
		return tl_fail(TL_ERR_ARG, "pfa needs a configuration");
	if (cfg->n_items < 1 || cfg->n_skills < 1)
		return tl_fail(TL_ERR_ARG, "pfa needs n_items >= 1 and n_skills >= 1, got %d and %d",
					   cfg->n_items, cfg->n_skills);
	if (!(cfg->lr > 0.0f) || !isfinite(cfg->lr))
		return tl_fail(TL_ERR_ARG, "pfa learning rate must be a positive number, got %g",
					   (double) cfg->lr);
	if (!(cfg->weight_decay >= 0.0f) || !isfinite(cfg->weight_decay))
		return tl_fail(TL_ERR_ARG, "pfa weight decay must be a non-negative number, got %g",
					   (double) cfg->weight_decay);
	m->cfg = *cfg;
	ps = &m->params;

#define TRY(expr) do { if ((rc = (expr)) != TL_OK) goto fail; } while (0)
	/* only item easiness is decayed: a rarely seen item is pulled towards its skill's level */
	TRY(tl_params_declare(ps, "pfa.bias", 1, TL_SHAPE(1), TL_INIT_ZEROS, 0, false, &m->bias));
	TRY(tl_params_declare(ps, "pfa.beta", 1, TL_SHAPE(cfg->n_items), TL_INIT_ZEROS, 0, true, &m->beta));
	TRY(tl_params_declare(ps, "pfa.theta", 1, TL_SHAPE(cfg->n_skills), TL_INIT_ZEROS, 0, false, &m->theta));
	TRY(tl_params_declare(ps, "pfa.gamma", 1, TL_SHAPE(cfg->n_skills), TL_INIT_ZEROS, 0, false, &m->gamma));
	TRY(tl_params_declare(ps, "pfa.rho", 1, TL_SHAPE(cfg->n_skills), TL_INIT_ZEROS, 0, false, &m->rho));
	/* all-zero init draws nothing, but tl_params_alloc wants a generator */
	tl_rng_seed(&rng, 0);
	TRY(tl_params_alloc(ps, &rng));
	TRY(tl_adamw_init(&m->opt, ps, cfg->lr, cfg->weight_decay));
#undef TRY
	return TL_OK;

fail:
	tl_pfa_free(m);
	return rc;
}

/* Release parameters and optimiser state; safe on a zeroed or failed model. */
void
tl_pfa_free(tl_pfa *m)
{
	tl_adamw_free(&m->opt);
	tl_params_free(&m->params);
	memset(m, 0, sizeof(*m));
}

/* Start of one parameter's values in the flat array. */
static inline const float *
pfa_value(const tl_pfa *m, int index)
{
	return m->params.value + m->params.items[index].offset;
}

/* Start of one parameter's gradients in the flat array. */
static inline float *
pfa_grad(tl_pfa *m, int index)
{
	return m->params.grad + m->params.items[index].offset;
}

/*
 * The logit in double, for an observation already known to be in range.
 * Double keeps the loss smooth enough for finite-difference checks; the
 * cost is a handful of flops per answer either way.
 */
static double
pfa_logit_checked(const tl_pfa *m, int32_t item, int32_t skill, float successes, float failures)
{
	double		logit = pfa_value(m, m->bias)[0];

	/* the unknown item contributes nothing, so beta[0] stays meaningless and 0 */
	if (item > 0)
		logit += pfa_value(m, m->beta)[item];
	logit += pfa_value(m, m->theta)[skill];
	logit += pfa_value(m, m->gamma)[skill] * log1p((double) successes);
	logit += pfa_value(m, m->rho)[skill] * log1p((double) failures);
	return logit;
}

/* Prediction-time logit: clamps what it does not recognise instead of failing. */
float
tl_pfa_logit(const tl_pfa *m, const tl_pfa_obs *o)
{
	int32_t		item = o->item;
	int32_t		skill = o->skill;

	/* prediction must not fail: anything unrecognised is "unknown" */
	if (item < 0 || item >= m->cfg.n_items)
		item = 0;
	if (skill < 0 || skill >= m->cfg.n_skills)
		skill = 0;
	return (float) pfa_logit_checked(m, item, skill,
									 fmaxf(o->successes, 0.0f), fmaxf(o->failures, 0.0f));
}

/* Numerically stable sigmoid in double. */
static inline double
sigmoid(double x)
{
	if (x >= 0.0)
		return 1.0 / (1.0 + exp(-x));
	else
	{
		double		e = exp(x);

		return e / (1.0 + e);
	}
}

/* Binary cross-entropy of logit x against target t without overflow. */
static inline double
bce_with_logit(double x, double t)
{
	return fmax(x, 0.0) - x * t + log1p(exp(-fabs(x)));
}

/* Check every observation of a batch before any of it is used. */
static tl_status
pfa_validate(const tl_pfa *m, const tl_pfa_obs *obs, int64_t n)
{
	if (!m->params.value)
		return tl_fail(TL_ERR_ARG, "pfa model is not created");
	if (n <= 0 || !obs)
		return tl_fail(TL_ERR_ARG, "pfa needs a batch of at least one observation, got %lld",
					   (long long) n);
	for (int64_t i = 0; i < n; i++)
	{
		const tl_pfa_obs *o = &obs[i];

		if (o->item < 0 || o->item >= m->cfg.n_items)
			return tl_fail(TL_ERR_ARG, "pfa observation %lld: item %d is not in 0..%d",
						   (long long) i, o->item, m->cfg.n_items - 1);
		if (o->skill < 0 || o->skill >= m->cfg.n_skills)
			return tl_fail(TL_ERR_ARG, "pfa observation %lld: skill %d is not in 0..%d",
						   (long long) i, o->skill, m->cfg.n_skills - 1);
		/* also rejects NaN; +Inf would make the logit infinite */
		if (!(o->successes >= 0.0f) || !(o->failures >= 0.0f) ||
			!isfinite(o->successes) || !isfinite(o->failures))
			return tl_fail(TL_ERR_ARG, "pfa observation %lld: counts %g and %g must be finite and >= 0",
						   (long long) i, (double) o->successes, (double) o->failures);
		if (!(o->correct >= 0.0f && o->correct <= 1.0f))
			return tl_fail(TL_ERR_ARG, "pfa observation %lld: correct = %g is not in [0, 1]",
						   (long long) i, (double) o->correct);
	}
	return TL_OK;
}

/* Mean cross-entropy of a validated batch, without touching the gradients. */
tl_status
tl_pfa_loss(const tl_pfa *m, const tl_pfa_obs *obs, int64_t n, float *loss)
{
	double		sum = 0.0;

	TL_TRY(pfa_validate(m, obs, n));
	for (int64_t i = 0; i < n; i++)
	{
		const tl_pfa_obs *o = &obs[i];

		sum += bce_with_logit(pfa_logit_checked(m, o->item, o->skill, o->successes, o->failures),
							  o->correct);
	}
	if (loss)
		*loss = (float) (sum / (double) n);
	return TL_OK;
}

/*
 * Loss and gradient of a batch.  Each observation touches one entry of
 * beta, theta, gamma and rho plus the bias, so the pass is O(n) however
 * many items and skills there are (apart from zeroing the gradients).
 */
tl_status
tl_pfa_gradient(tl_pfa *m, const tl_pfa_obs *obs, int64_t n, float *loss)
{
	float	   *g_bias,
			   *g_beta,
			   *g_theta,
			   *g_gamma,
			   *g_rho;
	double		sum = 0.0;
	double		bias_grad = 0.0;
	double		inv_n = 1.0 / (double) n;

	TL_TRY(pfa_validate(m, obs, n));
	tl_params_zero_grad(&m->params);
	g_bias = pfa_grad(m, m->bias);
	g_beta = pfa_grad(m, m->beta);
	g_theta = pfa_grad(m, m->theta);
	g_gamma = pfa_grad(m, m->gamma);
	g_rho = pfa_grad(m, m->rho);
	for (int64_t i = 0; i < n; i++)
	{
		const tl_pfa_obs *o = &obs[i];
		double		x = pfa_logit_checked(m, o->item, o->skill, o->successes, o->failures);
		/* d mean-BCE / d logit of this observation */
		double		d = (sigmoid(x) - o->correct) * inv_n;

		sum += bce_with_logit(x, o->correct);
		bias_grad += d;			/* every observation hits it: keep the sum in double */
		if (o->item > 0)
			g_beta[o->item] += (float) d;
		g_theta[o->skill] += (float) d;
		g_gamma[o->skill] += (float) (d * log1p((double) o->successes));
		g_rho[o->skill] += (float) (d * log1p((double) o->failures));
	}
	g_bias[0] = (float) bias_grad;
	if (loss)
		*loss = (float) (sum * inv_n);
	return TL_OK;
}

/* Gradient then one AdamW step; beta[0] keeps a zero gradient and so stays 0. */
tl_status
tl_pfa_train_batch(tl_pfa *m, const tl_pfa_obs *obs, int64_t n, float *loss)
{
	TL_TRY(tl_pfa_gradient(m, obs, n, loss));
	return tl_adamw_step(&m->opt, &m->params);
}

/* Prior success/failure counts per skill for one student's ordered answers. */
tl_status
tl_pfa_sequence_obs(const int32_t *items, const int32_t *skills, const float *correct,
					int64_t n, int32_t n_skills, float *counts, tl_pfa_obs *out)
{
	if (n < 0 || n_skills < 1)
		return tl_fail(TL_ERR_ARG, "pfa sequence needs n >= 0 and n_skills >= 1, got %lld and %d",
					   (long long) n, n_skills);
	if (n == 0)
		return TL_OK;
	if (!items || !skills || !correct || !counts || !out)
		return tl_fail(TL_ERR_ARG, "pfa sequence needs items, skills, correct, counts and out");

	/* validate first, so a failure leaves counts untouched (all zero) */
	for (int64_t t = 0; t < n; t++)
	{
		if (skills[t] < 0 || skills[t] >= n_skills)
			return tl_fail(TL_ERR_ARG, "pfa sequence answer %lld: skill %d is not in 0..%d",
						   (long long) t, skills[t], n_skills - 1);
		if (items[t] < 0)
			return tl_fail(TL_ERR_ARG, "pfa sequence answer %lld: item %d is negative",
						   (long long) t, items[t]);
		if (!(correct[t] >= 0.0f && correct[t] <= 1.0f))
			return tl_fail(TL_ERR_ARG, "pfa sequence answer %lld: correct = %g is not in [0, 1]",
						   (long long) t, (double) correct[t]);
	}

	for (int64_t t = 0; t < n; t++)
	{
		float	   *skill_counts = counts + 2 * (int64_t) skills[t];

		out[t].item = items[t];
		out[t].skill = skills[t];
		out[t].successes = skill_counts[0];
		out[t].failures = skill_counts[1];
		out[t].correct = correct[t];
		/* the current answer counts only for later ones */
		skill_counts[0] += correct[t];
		skill_counts[1] += 1.0f - correct[t];
	}

	/* hand the scratch back all zero, touching only what was used */
	for (int64_t t = 0; t < n; t++)
	{
		counts[2 * (int64_t) skills[t]] = 0.0f;
		counts[2 * (int64_t) skills[t] + 1] = 0.0f;
	}
	return TL_OK;
}
