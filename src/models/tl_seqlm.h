/*
 * tl_seqlm.h -- a small causal Transformer language model over token ids:
 * token + learned position embeddings, N pre-LN blocks, a final layer
 * norm and a linear head trained with cross-entropy.
 *
 * It is the smallest whole model the core can train, and serves the unit
 * tests, the benchmark and tutor.selftest().  It also carries a toy task
 * (reverse a digit string) whose loss shows whether training works:
 * reversing needs attention and positions, and cannot be done from
 * token frequencies alone.
 */
#ifndef TL_SEQLM_H
#define TL_SEQLM_H

#include "tl_block.h"
#include "tl_optim.h"
#include "tl_rng.h"

typedef struct tl_seqlm_config
{
	int64_t		vocab;			/* V */
	int64_t		max_seq;		/* T_max */
	int64_t		d_model;		/* D */
	int64_t		heads;
	int64_t		d_ff;
	int64_t		layers;
	float		dropout;
	int64_t		max_batch;		/* B_max: activations are sized for it */
	float		lr;
	float		weight_decay;
	float		clip_norm;		/* <= 0: no clipping */
} tl_seqlm_config;

typedef struct tl_seqlm
{
	tl_seqlm_config cfg;
	tl_params	params;
	int			tok_emb;		/* (V, D) */
	int			pos_emb;		/* (T_max, D) */
	int			lnf_g;			/* (D) */
	int			lnf_b;			/* (D) */
	int			head_w;			/* (V, D) */
	int			head_b;			/* (V) */
	tl_block_stack blocks;		/* layers blocks */
	tl_adamw	opt;
	/* activations of the last forward pass, N = B_max * T_max rows */
	float	   *acts;			/* (layers + 1, N, D): input of block l, then final output */
	float	   *pos_tmp;		/* (N, D) position embeddings, then scratch */
	float	   *lnf;			/* (N, D) */
	float	   *lnf_mean;		/* (N) */
	float	   *lnf_rstd;		/* (N) */
	float	   *logits;			/* (N, V) */
	float	   *dlogits;		/* (N, V) */
	float	   *grad_a;			/* (N, D) */
	float	   *grad_b;			/* (N, D) */
	int32_t    *tokens;			/* (N) copy of the last input */
	int32_t    *targets;		/* (N) */
	int32_t    *positions;		/* (N) */
	uint8_t    *key_valid;		/* (N) */
	int64_t		batch;			/* of the last forward pass */
	int64_t		seq;
} tl_seqlm;

/* Declare, allocate and initialise the model from seed. */
tl_status	tl_seqlm_create(tl_seqlm *m, const tl_seqlm_config *cfg, uint64_t seed);
void		tl_seqlm_free(tl_seqlm *m);

/*
 * Mean next-token cross-entropy of tokens (B*T ids, TL_PAD_INDEX for
 * padding) against targets (B*T ids, TL_PAD_INDEX = not scored).
 */
tl_status	tl_seqlm_forward(tl_seqlm *m, const int32_t *tokens, const int32_t *targets,
							 int64_t batch, int64_t seq, bool training, uint64_t seed, float *loss);
/* Gradients of the last forward pass, accumulated into m->params.grad. */
tl_status	tl_seqlm_backward(tl_seqlm *m);
/* zero grads, forward, backward, clip, AdamW: one optimisation step. */
tl_status	tl_seqlm_train_step(tl_seqlm *m, const int32_t *tokens, const int32_t *targets,
								int64_t batch, int64_t seq, uint64_t seed, float *loss);

/*
 * The reverse task: each row is d_1..d_k SEP d_k..d_1 over digits 0..9
 * (SEP = 10, so the vocabulary is 11).  Only the reversed half is scored.
 * tokens and targets have batch * (2k + 1) entries.
 */
#define TL_REVERSE_VOCAB 11
void		tl_reverse_task_batch(tl_rng *rng, int64_t batch, int64_t k,
								  int32_t *tokens, int32_t *targets);

#endif							/* TL_SEQLM_H */
