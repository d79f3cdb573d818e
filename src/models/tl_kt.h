/*
 * tl_kt.h -- a Transformer for knowledge tracing.
 *
 * Given a student's answers so far, predict whether the next answer, to a
 * given item of a given skill, will be correct.
 *
 *   interaction embedding (answer t):  a*C[s] + (1-a)*W[s] + mu_a[i]*V[s]
 *   question embedding (item i of skill s):  u = Qs[s] + mu_q[i]*Qv[s]
 *
 * The mu terms are Rasch-style item offsets (as in AKT, Ghosh et al.
 * 2020): each item adds one scalar times its skill's variation vector,
 * so thousands of items cost two floats each rather than a vector.
 * Fractional correctness a in [0,1] interpolates the two answer vectors.
 *
 *   encoder: [BOS, x_0 .. x_{T-2}] -> L causal blocks with ALiBi -> LN -> h
 *            (h_p is the student's state after answers 0..p-1)
 *   decoder: question u_p attends to h_0..h_p (causal, ALiBi), then
 *            z = LN(u + attn), logit_p = w2 . GELU(W1 z + b1) + b2
 *                                        + item_bias[i_p] + skill_bias[s_p]
 *
 * When the question's item is the item of the answer just before (a
 * retry, or the next row of a problem filed once per skill), u also gets
 * a*Rc + (1-a)*Rw from that answer a: item identity is otherwise only a
 * scalar, too weak for the model to notice "the same problem again".
 *
 * Position p therefore predicts answer p from answers 0..p-1 only; the
 * first answer is predicted from the BOS state (the prior).  ALiBi
 * replaces position embeddings, so a window can start anywhere in a
 * student's history and recency still matters.
 *
 * Index 0 of the item and skill vocabularies means "unknown"; the item-0
 * parameters (mu_a, mu_q, item_bias) stay at zero.
 */
#ifndef TL_KT_H
#define TL_KT_H

#include <stdbool.h>
#include <stdint.h>

#include "tl_block.h"
#include "tl_optim.h"

typedef struct tl_kt_config
{
	int32_t		n_items;		/* item vocabulary, index 0 = unknown */
	int32_t		n_skills;		/* skill vocabulary, index 0 = unknown */
	int64_t		d_model;		/* D */
	int64_t		heads;			/* H, divides D */
	int64_t		layers;			/* encoder blocks */
	int64_t		d_ff;			/* hidden width of the blocks' MLPs */
	float		dropout;
	int64_t		window;			/* T_max: answers per window */
	int64_t		max_tokens;		/* B*T of one pass, at least window */
	float		lr;				/* 0: inference only (no optimiser state) */
	float		weight_decay;
	float		clip_norm;		/* <= 0: none */
	float		item_lr_scale;	/* learning-rate factor of the per-item scalars; <= 0 means 1 */
} tl_kt_config;

/*
 * B windows of T answers each, row-major (B, T).  Each row's answers are
 * a prefix: valid is 1 for positions 0..len-1 and 0 after.
 */
typedef struct tl_kt_batch
{
	int64_t		batch;			/* B */
	int64_t		seq;			/* T */
	const int32_t *items;		/* (B*T) item index */
	const int32_t *skills;		/* (B*T) skill index */
	const float *correct;		/* (B*T) in [0, 1] */
	const uint8_t *valid;		/* (B*T) */
	const float *weight;		/* (B*T) loss weight, 0 = context only; NULL = valid */
} tl_kt_batch;

/* Parameters, in declaration order. */
typedef enum tl_kt_param
{
	TL_KT_ANS_CORRECT,			/* (S, D) C */
	TL_KT_ANS_WRONG,			/* (S, D) W */
	TL_KT_ANS_VAR,				/* (S, D) V */
	TL_KT_ITEM_MU_A,			/* (I) */
	TL_KT_BOS,					/* (D) */
	TL_KT_Q_SKILL,				/* (S, D) Qs */
	TL_KT_Q_VAR,				/* (S, D) Qv */
	TL_KT_ITEM_MU_Q,			/* (I) */
	TL_KT_ENC_LN_G,				/* (D) */
	TL_KT_ENC_LN_B,				/* (D) */
	TL_KT_DEC_WQ,				/* (D, D) */
	TL_KT_DEC_BQ,				/* (D) */
	TL_KT_DEC_WK,				/* (D, D) */
	TL_KT_DEC_BK,				/* (D) */
	TL_KT_DEC_WV,				/* (D, D) */
	TL_KT_DEC_BV,				/* (D) */
	TL_KT_DEC_WO,				/* (D, D) */
	TL_KT_DEC_BO,				/* (D) */
	TL_KT_DEC_LN_G,				/* (D) */
	TL_KT_DEC_LN_B,				/* (D) */
	TL_KT_HEAD_W1,				/* (D, D) */
	TL_KT_HEAD_B1,				/* (D) */
	TL_KT_HEAD_W2,				/* (1, D) */
	TL_KT_HEAD_B2,				/* (1) */
	TL_KT_ITEM_BIAS,			/* (I) */
	TL_KT_SKILL_BIAS,			/* (S) */
	TL_KT_REPEAT_CORRECT,		/* (D) */
	TL_KT_REPEAT_WRONG,			/* (D) */
	TL_KT_NPARAMS
} tl_kt_param;

typedef struct tl_kt
{
	tl_kt_config cfg;
	tl_params	params;
	int			param[TL_KT_NPARAMS];	/* indices into params */
	tl_block_stack encoder;		/* layers blocks */
	tl_adamw	opt;
	/* activations of the last pass, N = max_tokens rows */
	int64_t		batch;
	int64_t		seq;
	bool		training;
	uint64_t	seed;
	float	   *enc;			/* (layers + 1, N, D): input of block l, then output */
	float	   *hs;				/* (N, D) LN(encoder output) */
	float	   *hs_mean;		/* (N) */
	float	   *hs_rstd;		/* (N) */
	float	   *u;				/* (N, D) question embeddings */
	float	   *dq;				/* (N, D) decoder query, later its gradient */
	float	   *dk;				/* (N, D) */
	float	   *dv;				/* (N, D) */
	float	   *dprobs;			/* (N, H, T) decoder attention probabilities */
	float	   *dattn;			/* (N, D) decoder attention output */
	float	   *zpre;			/* (N, D) u + Wo attn */
	float	   *z;				/* (N, D) */
	float	   *z_mean;			/* (N) */
	float	   *z_rstd;			/* (N) */
	float	   *h1;				/* (N, D) W1 z + b1 */
	float	   *hid;			/* (N, D) GELU(h1) */
	float	   *logits;			/* (N) */
	float	   *g1;				/* (N, D) backward scratch */
	float	   *g2;				/* (N, D) */
	float	   *g3;				/* (N, D) */
	float	   *g4;				/* (N, D) */
	float	   *g5;				/* (N, D) */
	float	   *gq;				/* (N, D) */
	float	   *gk;				/* (N, D) */
	float	   *gv;				/* (N, D) */
	float	   *dlogits;		/* (N) */
	float	   *weights;		/* (N) loss weights of the last pass */
	float	   *targets;		/* (N) */
	int32_t    *items;			/* (N) copy of the last batch */
	int32_t    *skills;			/* (N) */
	float	   *answers;		/* (N) */
	uint8_t    *valid;			/* (N) */
} tl_kt;

/* Validate cfg, declare and initialise the parameters from seed. */
tl_status	tl_kt_create(tl_kt *m, const tl_kt_config *cfg, uint64_t seed);
void		tl_kt_free(tl_kt *m);

/* Mean weighted BCE of the batch; keeps activations for tl_kt_backward. */
tl_status	tl_kt_forward(tl_kt *m, const tl_kt_batch *batch, bool training, uint64_t seed,
						  float *loss);
/* Gradients of the last forward pass, accumulated into params.grad. */
tl_status	tl_kt_backward(tl_kt *m);
/* zero grads, forward, backward, clip, AdamW. */
tl_status	tl_kt_train_step(tl_kt *m, const tl_kt_batch *batch, uint64_t seed, float *loss);
/* P(correct) of every position of the last forward pass, B*T values. */
void		tl_kt_probabilities(const tl_kt *m, float *out);

/*
 * The state after one student's history (n answers, oldest first; only
 * the last window-1 are used), asked about M questions at once:
 * probs[m] = P(correct on question m next).  A question's item may be -1
 * for "a typical item of the skill": its item terms are then the skill's
 * averages in item_mu_q_avg/item_bias_avg (see tl_kt_skill_averages).
 */
typedef struct tl_kt_query
{
	int32_t		item;			/* index, or -1 for the skill's typical item */
	int32_t		skill;
} tl_kt_query;

tl_status	tl_kt_predict_next(tl_kt *m, const int32_t *items, const int32_t *skills,
							   const float *correct, int64_t n,
							   const tl_kt_query *queries, int64_t n_queries,
							   const float *skill_mu_avg, const float *skill_bias_avg,
							   float *probs);

/*
 * tl_kt_predict_next for many students at once, each asked the same M
 * questions: student b's history is items/skills/correct[offsets[b] ..
 * offsets[b+1]) and its answers land in probs[b*M .. b*M+M).  Students
 * are encoded together in groups that fill max_tokens, so the matrix
 * products are large; results equal one tl_kt_predict_next per student.
 */
tl_status	tl_kt_predict_batch(tl_kt *m, int64_t n_students, const int64_t *offsets,
								const int32_t *items, const int32_t *skills, const float *correct,
								const tl_kt_query *queries, int64_t n_queries,
								const float *skill_mu_avg, const float *skill_bias_avg,
								float *probs);

/*
 * tl_kt_predict_batch over n_models instances of one model (same config
 * and parameters; separate activations).  With at least one instance per
 * pool thread, groups of students run side by side, one per thread, with
 * every op inside a group single-threaded: small products scale better
 * that way than split across threads.  Results equal tl_kt_predict_batch.
 */
tl_status	tl_kt_predict_many(tl_kt *const *models, int n_models, int64_t n_students,
							   const int64_t *offsets, const int32_t *items, const int32_t *skills,
							   const float *correct, const tl_kt_query *queries, int64_t n_queries,
							   const float *skill_mu_avg, const float *skill_bias_avg,
							   float *probs);

/*
 * Per-skill averages of the item terms (mu_q and item_bias) over the
 * items that belong to the skill (item_skill[i] for i >= 1; entries
 * outside 1..S-1 are ignored).  Both outputs have n_skills entries.
 */
void		tl_kt_skill_averages(const tl_kt *m, const int32_t *item_skill,
								 float *skill_mu_avg, float *skill_bias_avg);

#endif							/* TL_KT_H */
