/*
 * tl_block.h -- one pre-LayerNorm causal Transformer block, forward and
 * backward, built from the core ops.
 *
 *   h1 = LN1(x);  a = Attn(h1 Wq^T+bq, h1 Wk^T+bk, h1 Wv^T+bv)
 *   x2 = x + Dropout(a Wo^T + bo)
 *   y  = x2 + Dropout(GELU(LN2(x2) W1^T + b1) W2^T + b2)
 *
 * Parameters live in a tl_params shared with the rest of the model; the
 * block keeps only their indices.  A tl_block_cache holds the activations
 * of the last forward pass for up to max_tokens tokens; the
 * backward pass reads them and accumulates parameter gradients.
 */
#ifndef TL_BLOCK_H
#define TL_BLOCK_H

#include <stdbool.h>

#include "tl_ops.h"
#include "tl_optim.h"

typedef struct tl_block_config
{
	int64_t		d_model;		/* D */
	int64_t		heads;			/* H, divides D */
	int64_t		d_ff;			/* F, hidden width of the MLP */
	float		dropout;		/* on both residual branches while training */
	float		ln_eps;
	bool		alibi;			/* distance bias in attention instead of positions */
} tl_block_config;

/* The block's parameters, in declaration order. */
typedef enum tl_block_param
{
	TL_BLK_LN1_G,				/* (D) */
	TL_BLK_LN1_B,				/* (D) */
	TL_BLK_WQ,					/* (D, D) */
	TL_BLK_BQ,					/* (D) */
	TL_BLK_WK,					/* (D, D) */
	TL_BLK_BK,					/* (D) */
	TL_BLK_WV,					/* (D, D) */
	TL_BLK_BV,					/* (D) */
	TL_BLK_WO,					/* (D, D) */
	TL_BLK_BO,					/* (D) */
	TL_BLK_LN2_G,				/* (D) */
	TL_BLK_LN2_B,				/* (D) */
	TL_BLK_W1,					/* (F, D) */
	TL_BLK_B1,					/* (F) */
	TL_BLK_W2,					/* (D, F) */
	TL_BLK_B2,					/* (D) */
	TL_BLK_NPARAMS
} tl_block_param;

typedef struct tl_block
{
	tl_block_config cfg;
	int			param[TL_BLK_NPARAMS];	/* indices into the model's tl_params */
} tl_block;

typedef struct tl_block_cache
{
	int64_t		max_tokens;		/* B * T of any pass is at most this */
	int64_t		max_seq;		/* T of any pass is at most this */
	/* shape of the last forward pass */
	int64_t		batch;
	int64_t		seq;
	bool		training;
	uint64_t	seed;			/* dropout seed of the last forward pass */
	const uint8_t *key_valid;	/* caller-owned, B*T or NULL */
	/* saved activations, each sized for N = max_tokens rows */
	float	   *x;				/* (N, D) block input */
	float	   *ln1;			/* (N, D) */
	float	   *ln1_mean;		/* (N) */
	float	   *ln1_rstd;		/* (N) */
	float	   *q;				/* (N, D) */
	float	   *k;				/* (N, D) */
	float	   *v;				/* (N, D) */
	float	   *probs;			/* (B, H, T, T), at most max_tokens * H * max_seq */
	float	   *attn;			/* (N, D) attention output before Wo */
	float	   *x2;				/* (N, D) after the first residual */
	float	   *ln2;			/* (N, D) */
	float	   *ln2_mean;		/* (N) */
	float	   *ln2_rstd;		/* (N) */
	float	   *u;				/* (N, F) pre-activation */
	float	   *g;				/* (N, F) GELU(u) */
	/* backward scratch */
	float	   *tmp_d1;			/* (N, D) */
	float	   *tmp_d2;			/* (N, D) */
	float	   *dq;				/* (N, D) */
	float	   *dk;				/* (N, D) */
	float	   *dv;				/* (N, D) */
	float	   *tmp_f;			/* (N, F) */
} tl_block_cache;

/* Validate cfg and declare the block's parameters with a name prefix. */
tl_status	tl_block_declare(tl_block *block, const tl_block_config *cfg,
							 tl_params *ps, const char *prefix);

/*
 * Activations for passes of B sequences of length T with B*T <= max_tokens
 * and T <= max_seq: many short sequences or few long ones fit alike.
 */
tl_status	tl_block_cache_alloc(tl_block_cache *cache, const tl_block_config *cfg,
								 int64_t max_tokens, int64_t max_seq);
void		tl_block_cache_free(tl_block_cache *cache);

/*
 * y (B, T, D) = block(x (B, T, D)).  key_valid (B*T bytes, or NULL) must
 * stay valid until the backward pass.  Dropout applies when training.
 */
tl_status	tl_block_forward(const tl_block *block, const tl_params *ps, tl_block_cache *cache,
							 const tl_tensor *x, tl_tensor *y, const uint8_t *key_valid,
							 bool training, uint64_t seed);

/* dx = d(loss)/dx from dy; parameter gradients accumulate into ps->grad. */
tl_status	tl_block_backward(const tl_block *block, tl_params *ps, tl_block_cache *cache,
							  const tl_tensor *dy, tl_tensor *dx);

/*
 * A stack of L blocks applied in turn, with their caches: the trunk of a
 * model.  Activations are (L + 1) buffers of B*T*D floats laid end to
 * end: acts[0] is the input, acts[l + 1] the output of block l.
 */
typedef struct tl_block_stack
{
	int64_t		layers;
	tl_block   *blocks;			/* layers */
	tl_block_cache *caches;		/* layers */
} tl_block_stack;

/* Declare the parameters of L blocks, named "<prefix><l>.<param>". */
tl_status	tl_stack_declare(tl_block_stack *s, const tl_block_config *cfg, int64_t layers,
							 tl_params *ps, const char *prefix);
tl_status	tl_stack_cache_alloc(tl_block_stack *s, int64_t max_tokens, int64_t max_seq);
void		tl_stack_free(tl_block_stack *s);
/* acts[l + 1] = block l (acts[l]) for every layer; block l's dropout seed is seed + l. */
tl_status	tl_stack_forward(tl_block_stack *s, const tl_params *ps, float *acts,
							 int64_t batch, int64_t seq, const uint8_t *key_valid,
							 bool training, uint64_t seed);
/* grad: d/d(last output) in, d/d(acts[0]) out; scratch holds B*T*D floats. */
tl_status	tl_stack_backward(tl_block_stack *s, tl_params *ps, float *grad, float *scratch,
							  int64_t batch, int64_t seq);

#endif							/* TL_BLOCK_H */
