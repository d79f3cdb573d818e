/*
 * tl_ops.h -- forward and backward passes of the core neural-net ops.
 *
 * Conventions shared by every op:
 *   - Tensors are contiguous float32.  "Rows" are all leading dims
 *     flattened, so a (B, T, D) activation is N = B*T rows of D.
 *   - Parameter gradients (dW, db, dgamma, ...) ACCUMULATE (+=), so one
 *     buffer can gather several micro-batches.  Activation gradients
 *     (dx, dq, ...) are OVERWRITTEN.
 *   - Every op checks shapes first and returns TL_ERR_SHAPE/TL_ERR_ARG
 *     without touching its outputs when something is off.
 *   - Where an op needs values from its forward pass for the backward
 *     pass (norm statistics, attention probabilities), the caller owns
 *     that buffer and passes it to both.
 * The CUDA plugin (kernels/) implements the forward ops with the same
 * layouts, so a CPU result is the reference for the CUDA one.
 */
#ifndef TL_OPS_H
#define TL_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "tl_tensor.h"

/* Index value meaning "no token": embeds to a zero row, gets no gradient. */
#define TL_PAD_INDEX (-1)

/* ---- embedding ------------------------------------------------------- */
/* out (N, D) = table (V, D) [idx[n]]; idx in [0, V) or TL_PAD_INDEX. */
tl_status	tl_embedding_fwd(tl_tensor *out, const tl_tensor *table, const int32_t *idx);
/* dtable[idx[n]] += dout[n]. */
tl_status	tl_embedding_bwd(tl_tensor *dtable, const tl_tensor *dout, const int32_t *idx);

/* ---- linear (cblas_sgemm) -------------------------------------------- */
/* y (N, out) = x (N, in) @ w (out, in)^T + b (out); b may be NULL. */
tl_status	tl_linear_fwd(tl_tensor *y, const tl_tensor *x, const tl_tensor *w, const tl_tensor *b);
/* dx = dy @ w (dx may be NULL); dw += dy^T @ x; db += colsum(dy) (db may be NULL). */
tl_status	tl_linear_bwd(tl_tensor *dx, tl_tensor *dw, tl_tensor *db,
						  const tl_tensor *dy, const tl_tensor *x, const tl_tensor *w);

/* ---- normalisation ---------------------------------------------------- */
/* y = (x - mean) * rstd * gamma + beta per row; mean, rstd (N) are saved. */
tl_status	tl_layernorm_fwd(tl_tensor *y, tl_tensor *mean, tl_tensor *rstd,
							 const tl_tensor *x, const tl_tensor *gamma, const tl_tensor *beta,
							 float eps);
tl_status	tl_layernorm_bwd(tl_tensor *dx, tl_tensor *dgamma, tl_tensor *dbeta,
							 const tl_tensor *dy, const tl_tensor *x,
							 const tl_tensor *mean, const tl_tensor *rstd, const tl_tensor *gamma);

/* y = x * rstd * gamma, rstd = 1/sqrt(mean(x^2) + eps) per row (saved). */
tl_status	tl_rmsnorm_fwd(tl_tensor *y, tl_tensor *rstd,
						   const tl_tensor *x, const tl_tensor *gamma, float eps);
tl_status	tl_rmsnorm_bwd(tl_tensor *dx, tl_tensor *dgamma,
						   const tl_tensor *dy, const tl_tensor *x,
						   const tl_tensor *rstd, const tl_tensor *gamma);

/* ---- activations (any shape; y may alias x in forward) ---------------- */
/* GELU with the exact erf form, as torch.nn.GELU() by default. */
tl_status	tl_gelu_fwd(tl_tensor *y, const tl_tensor *x);
tl_status	tl_gelu_bwd(tl_tensor *dx, const tl_tensor *dy, const tl_tensor *x);
tl_status	tl_silu_fwd(tl_tensor *y, const tl_tensor *x);
tl_status	tl_silu_bwd(tl_tensor *dx, const tl_tensor *dy, const tl_tensor *x);

/* Row softmax over the last dim; backward needs the forward output y. */
tl_status	tl_softmax_fwd(tl_tensor *y, const tl_tensor *x);
tl_status	tl_softmax_bwd(tl_tensor *dx, const tl_tensor *dy, const tl_tensor *y);

/* ---- causal multi-head self-attention --------------------------------- */
/*
 * q, k, v, out: (B, T, H*hd), head h in columns [h*hd, (h+1)*hd).
 * probs: (B, H, T, T), written by forward and read by backward.
 * key_valid: B*T bytes, nonzero where position t of sequence b is a real
 * token, or NULL for "all valid".  Query i attends to keys j <= i that
 * are valid; a query with no valid key gets a zero output and gradient.
 * The scale is 1/sqrt(hd).  With alibi, head h adds -slope_h * (i - j) to
 * each score (ALiBi, Press et al. 2022): a recency bias with no
 * parameters that works at any distance, so positions need no embedding.
 */
typedef struct tl_attn_dims
{
	int64_t		batch;			/* B */
	int64_t		seq;			/* T */
	int64_t		heads;			/* H */
	int64_t		head_dim;		/* hd */
	bool		alibi;			/* add the distance bias */
} tl_attn_dims;

/* ALiBi slope of head h of H: 2^(-8 (h+1) / H). */
float		tl_alibi_slope(int64_t head, int64_t heads);

/*
 * Attention of M queries placed at position `pos` over keys 0..pos of one
 * sequence (inference: "what does the state after the history say about
 * each of these questions?").  q, out: (M, H*hd); k, v: (T, H*hd) with
 * T > pos; key_valid: T bytes or NULL.  The result for a query equals
 * what tl_attention_fwd gives at row pos for the same query there.
 */
tl_status	tl_attention_query_fwd(tl_tensor *out, const tl_tensor *q, const tl_tensor *k,
								   const tl_tensor *v, const uint8_t *key_valid,
								   int64_t pos, int64_t heads, bool alibi);
/* The same with caller-provided scratch of M * (pos + 1) floats (no allocation: pool workers may call it). */
tl_status	tl_attention_query_fwd_scratch(tl_tensor *out, const tl_tensor *q, const tl_tensor *k,
										   const tl_tensor *v, const uint8_t *key_valid,
										   int64_t pos, int64_t heads, bool alibi, float *scores);

tl_status	tl_attention_fwd(tl_tensor *out, tl_tensor *probs,
							 const tl_tensor *q, const tl_tensor *k, const tl_tensor *v,
							 const uint8_t *key_valid, tl_attn_dims dims);
tl_status	tl_attention_bwd(tl_tensor *dq, tl_tensor *dk, tl_tensor *dv,
							 const tl_tensor *dout, const tl_tensor *probs,
							 const tl_tensor *q, const tl_tensor *k, const tl_tensor *v,
							 tl_attn_dims dims);

/* ---- dropout (counter-based, see tl_rng.h) ----------------------------- */
/*
 * Element i is dropped when tl_hash_uniform(seed, offset + i) < p and the
 * survivors are scaled by 1/(1-p).  The backward pass regenerates the
 * same mask from (seed, offset), so no mask is stored.  p in [0, 1).
 */
tl_status	tl_dropout_fwd(tl_tensor *y, const tl_tensor *x, float p, uint64_t seed, uint64_t offset);
tl_status	tl_dropout_bwd(tl_tensor *dx, const tl_tensor *dy, float p, uint64_t seed, uint64_t offset);

/* ---- losses ------------------------------------------------------------ */
/*
 * Mean cross-entropy of logits (N, C) against class targets (N); targets
 * equal to TL_PAD_INDEX are ignored.  *loss = 0 when nothing is counted.
 */
tl_status	tl_cross_entropy_fwd(float *loss, const tl_tensor *logits, const int32_t *targets);
/* dlogits = dloss * (softmax(logits) - onehot) / count. */
tl_status	tl_cross_entropy_bwd(tl_tensor *dlogits, const tl_tensor *logits,
								 const int32_t *targets, float dloss);

/*
 * Weighted mean binary cross-entropy with logits (N) and targets in
 * [0, 1] (N): sum(w * bce) / sum(w).  weights (N) may be NULL (all 1);
 * weight 0 masks a position out.
 */
tl_status	tl_bce_logits_fwd(float *loss, const tl_tensor *logits,
							  const tl_tensor *targets, const tl_tensor *weights);
tl_status	tl_bce_logits_bwd(tl_tensor *dlogits, const tl_tensor *logits,
							  const tl_tensor *targets, const tl_tensor *weights, float dloss);

/* ---- small helpers ------------------------------------------------------ */
/* y = a + b (any equal shapes; y may alias a or b). */
tl_status	tl_add(tl_tensor *y, const tl_tensor *a, const tl_tensor *b);

#endif							/* TL_OPS_H */
