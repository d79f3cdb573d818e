/*
 * tl_llm_impl.h -- the loaded model's layout, shared by the CPU forward
 * pass (tl_llm.c) and the CUDA one (tl_llm_cuda.c).  Not for callers
 * outside src/llm: they use tl_llm.h.
 */
#ifndef TL_LLM_IMPL_H
#define TL_LLM_IMPL_H

#include "tl_cuda_api.h"
#include "tl_llm.h"
#include "tl_quant.h"

/* A weight matrix in the file: rows = output features, cols = input. */
typedef struct tl_llm_weight
{
	const void *data;
	tl_qtype	type;
	int64_t		rows;
	int64_t		cols;
} tl_llm_weight;

typedef struct tl_llm_layer
{
	const float *attn_norm;		/* (E) */
	tl_llm_weight wq,			/* (H*D, E) */
				wk,				/* (G*D, E) */
				wv,				/* (G*D, E) */
				wo;				/* (E, H*D) */
	const float *bq,			/* (H*D) or NULL */
			   *bk,				/* (G*D) or NULL */
			   *bv,				/* (G*D) or NULL */
			   *bo;				/* (E) or NULL */
	const float *ffn_norm;		/* (E) */
	tl_llm_weight w_gate,		/* (F, E) */
				w_up,			/* (F, E) */
				w_down;			/* (E, F) */
} tl_llm_layer;

#define TL_LLM_MAX_END_TOKENS 8

struct tl_llm_model
{
	tl_gguf		gguf;
	tl_llm_config cfg;
	tl_llm_weight tok_embd;		/* (n_vocab, E): rows are looked up */
	tl_llm_weight output;		/* (n_vocab, E): tok_embd when tied */
	const float *output_norm;	/* (E) */
	const float *rope_factors;	/* (rope_dim/2) or NULL */
	tl_llm_layer *layers;		/* n_layer */
	tl_tokenizer *tok;
	int32_t		end_tokens[TL_LLM_MAX_END_TOKENS];
	int			n_end_tokens;
};

/* ---- the CUDA path (tl_llm_cuda.c) ---- */

typedef struct tl_llm_cuda tl_llm_cuda;

/*
 * Copy a model's weights to the device behind `cu` (already init()ed) and
 * make a KV cache of n_ctx positions there.  TL_ERR_UNAVAILABLE when a
 * tensor's type has no CUDA kernel (the CPU path then runs the model),
 * TL_ERR_NOMEM / TL_ERR_DEVICE when the device refuses.
 */
tl_status	tl_llm_cuda_new(tl_llm_cuda **out, const tl_llm_model *m, const tl_cuda_api *cu, int32_t n_ctx);
void		tl_llm_cuda_free(tl_llm_cuda *g);

/* tl_llm_eval on the device: n tokens at positions pos0.. (checked by the caller). */
tl_status	tl_llm_cuda_eval(tl_llm_cuda *g, const int32_t *tokens, int32_t n, int32_t pos0, float *logits);

#endif							/* TL_LLM_IMPL_H */
