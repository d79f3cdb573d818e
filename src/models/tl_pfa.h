/*
 * tl_pfa.h -- Performance Factors Analysis (Pavlik, Cen & Koedinger,
 * 2009): the logistic-regression baseline of knowledge tracing.
 *
 * The chance that a student answers item i of skill s correctly is
 *
 *     sigmoid(bias + beta[i] + theta[s] + gamma[s] * log1p(S) + rho[s] * log1p(F))
 *
 * where S and F are the student's earlier successes and failures on
 * skill s (an answer with fractional correctness a adds a to S and
 * 1 - a to F).  beta is item easiness, theta skill easiness, gamma and
 * rho how much one more success or failure moves the prediction; log1p
 * lets the first practice count most.
 *
 * Index 0 of items and of skills means "unknown".  The unknown item has
 * no difficulty estimate: beta[0] takes no part in predictions and is
 * never updated, so it stays 0.  Unknown-skill answers share skill 0's
 * theta, gamma and rho like any other skill.
 *
 * The model trains one batch at a time; shuffling, batching and epochs
 * belong to the caller.
 */
#ifndef TL_PFA_H
#define TL_PFA_H

#include <stdint.h>

#include "tl_optim.h"
#include "tl_status.h"

/* One answer to predict or learn from. */
typedef struct tl_pfa_obs
{
	int32_t		item;			/* 0 .. n_items - 1, 0 = unknown item */
	int32_t		skill;			/* 0 .. n_skills - 1, 0 = unknown skill */
	float		successes;		/* S: earlier correctness on this skill, >= 0 */
	float		failures;		/* F: earlier incorrectness on this skill, >= 0 */
	float		correct;		/* observed correctness in [0, 1] (ignored by tl_pfa_logit) */
} tl_pfa_obs;

typedef struct tl_pfa_config
{
	int32_t		n_items;		/* I, >= 1, counting the unknown item 0 */
	int32_t		n_skills;		/* K, >= 1, counting the unknown skill 0 */
	float		lr;				/* AdamW learning rate, > 0 */
	float		weight_decay;	/* AdamW decoupled decay, >= 0, applied to beta only */
} tl_pfa_config;

/*
 * The parameters are one tl_params, laid out in declaration order as a
 * single flat array of 1 + I + 3K floats, ready to be saved as is.
 */
typedef struct tl_pfa
{
	tl_pfa_config cfg;
	tl_params	params;
	int			bias;			/* "pfa.bias"  (1) */
	int			beta;			/* "pfa.beta"  (I) item easiness; beta[0] == 0; decayed */
	int			theta;			/* "pfa.theta" (K) skill easiness */
	int			gamma;			/* "pfa.gamma" (K) weight of log1p(successes) */
	int			rho;			/* "pfa.rho"   (K) weight of log1p(failures) */
	tl_adamw	opt;
} tl_pfa;

/*
 * Validate cfg (n_items >= 1, n_skills >= 1, lr > 0 and finite,
 * weight_decay >= 0 and finite), then declare and allocate the
 * parameters, all zero, and the optimiser state.  On failure nothing is
 * left allocated and *m is zeroed.
 */
tl_status	tl_pfa_create(tl_pfa *m, const tl_pfa_config *cfg);

/* Release everything tl_pfa_create allocated; *m is zeroed. */
void		tl_pfa_free(tl_pfa *m);

/*
 * The logit of a correct answer for one observation (o->correct is not
 * read).  Meant for prediction, so it never fails: an item or skill out
 * of range is treated as 0 (unknown), and a negative or NaN count as 0.
 */
float		tl_pfa_logit(const tl_pfa *m, const tl_pfa_obs *o);

/*
 * Mean binary cross-entropy over n >= 1 observations, computed from the
 * logits in the stable form; no gradient.  Fails with TL_ERR_ARG on an
 * item or skill out of range, a count that is negative or not finite,
 * or correct outside [0, 1].
 */
tl_status	tl_pfa_loss(const tl_pfa *m, const tl_pfa_obs *obs, int64_t n, float *loss);

/*
 * Internal, exposed for the gradient tests: zero the gradients, then
 * write the gradient of the mean cross-entropy over the batch into
 * m->params.grad and the loss into *loss.  Validates like tl_pfa_loss.
 */
tl_status	tl_pfa_gradient(tl_pfa *m, const tl_pfa_obs *obs, int64_t n, float *loss);

/*
 * One optimisation step: tl_pfa_gradient, then one AdamW update.  *loss
 * (may be NULL) receives the batch loss before the update.  A batch that
 * fails validation changes nothing.
 */
tl_status	tl_pfa_train_batch(tl_pfa *m, const tl_pfa_obs *obs, int64_t n, float *loss);

/*
 * Turn one student's time-ordered answers (n >= 0 of them) into
 * observations: out[t] gets items[t], skills[t], correct[t] and the
 * successes and failures of answers 0 .. t-1 on skills[t].
 *
 * counts is caller scratch of 2 * n_skills floats (successes of skill s
 * at 2s, failures at 2s + 1) that must be all zero on entry; it is left
 * all zero on return, success or not.  Only the entries of skills that
 * occur are touched, so the cost is O(n), not O(n_skills), and one
 * scratch array serves any number of students.  Fails with TL_ERR_ARG,
 * before touching counts or out, on a skill outside 0 .. n_skills - 1,
 * a negative item, or correct outside [0, 1].
 */
tl_status	tl_pfa_sequence_obs(const int32_t *items, const int32_t *skills, const float *correct,
								int64_t n, int32_t n_skills, float *counts, tl_pfa_obs *out);

#endif							/* TL_PFA_H */
