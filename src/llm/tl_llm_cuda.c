/*
 * tl_llm_cuda.c -- the forward pass of tl_llm.h on a CUDA device, through
 * the plugin's function table (src/core/tl_cuda_api.h, kernels/cuda_llm.cu).
 *
 * The weights are copied to the device once, in their GGUF types; the KV
 * cache (half precision, n_ctx positions per layer) and the activations
 * of one batch live there too.  Per call the host uploads the token ids
 * and downloads the last token's logits; everything else stays on the
 * device.  The arithmetic is float with weights decoded in the kernels,
 * so logits agree with the CPU path within a tolerance, not bit for bit
 * (test/cuda/test_parity.c measures it on the real model).
 *
 * Like the rest of the core this never includes postgres.h; the device's
 * errors come back as TL_ERR_DEVICE or TL_ERR_NOMEM with the plugin's
 * message.
 */
#include <math.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_llm_impl.h"

/* The device copies of one layer. */
typedef struct tl_cuda_layer
{
	void	   *wq,
			   *wk,
			   *wv,
			   *wo,
			   *w_gate,
			   *w_up,
			   *w_down;
	float	   *attn_norm,
			   *ffn_norm;
	float	   *bq,				/* biases repeated TL_LLM_BATCH times, or NULL */
			   *bk,
			   *bv,
			   *bo;
	uint16_t   *k_cache,		/* (n_ctx, G*D) half */
			   *v_cache;
} tl_cuda_layer;

struct tl_llm_cuda
{
	const tl_llm_model *m;
	const tl_cuda_api *cu;
	int32_t		n_ctx;
	tl_cuda_layer *layers;
	void	   *tok_embd,
			   *output;			/* == tok_embd when tied */
	float	   *output_norm,
			   *rope_factors;
	/* one batch of B <= TL_LLM_BATCH tokens */
	int32_t    *tokens;			/* (B) */
	float	   *x,				/* (B, E) */
			   *h,				/* (B, E) */
			   *q,				/* (B, H*D) */
			   *k,				/* (B, G*D) */
			   *v,				/* (B, G*D) */
			   *att,			/* (B, H*D) */
			   *proj,			/* (B, E) */
			   *gate,			/* (B, F) */
			   *up,				/* (B, F) */
			   *logits;			/* (n_vocab) */
	/* every device allocation, for freeing */
	void	  **allocs;
	int			n_allocs,
				cap_allocs;
};

static tl_status
cuda_fail(const tl_llm_cuda *g, int rc, const char *what)
{
	return tl_fail(rc == TL_ERR_NOMEM ? TL_ERR_NOMEM : rc == TL_ERR_UNAVAILABLE ? TL_ERR_UNAVAILABLE :
				   rc == TL_ERR_ARG ? TL_ERR_ARG : TL_ERR_DEVICE,
				   "CUDA language model: %s: %s", what, g->cu->last_error());
}

#define CU_TRY(g, call, what) \
	do { int cu_rc_ = (call); if (cu_rc_ != 0) return cuda_fail((g), cu_rc_, (what)); } while (0)

/* A device buffer of `bytes`, remembered for tl_llm_cuda_free. */
static tl_status
dev_alloc(tl_llm_cuda *g, void **out, size_t bytes)
{
	void	   *d = NULL;

	*out = NULL;
	if (g->n_allocs == g->cap_allocs)
	{
		int			cap = g->cap_allocs ? 2 * g->cap_allocs : 64;
		void	  **grown = tl_alloc((size_t) cap, sizeof(void *));

		if (!grown)
			return tl_fail(TL_ERR_NOMEM, "CUDA language model: no memory for the allocation list");
		if (g->n_allocs)
			memcpy(grown, g->allocs, sizeof(void *) * (size_t) g->n_allocs);
		tl_free(g->allocs);
		g->allocs = grown;
		g->cap_allocs = cap;
	}
	CU_TRY(g, g->cu->alloc(&d, bytes ? bytes : 1), "device allocation");
	g->allocs[g->n_allocs++] = d;
	*out = d;
	return TL_OK;
}

static tl_status
dev_copy(tl_llm_cuda *g, void **out, const void *host, size_t bytes)
{
	TL_TRY(dev_alloc(g, out, bytes));
	CU_TRY(g, g->cu->upload(*out, host, bytes), "upload");
	return TL_OK;
}

/* Kernels exist for these weight types (kernels/cuda_llm.cu). */
static bool
cuda_type_ok(tl_qtype t)
{
	return t == TL_QT_F32 || t == TL_QT_F16 || t == TL_QT_Q4_0 || t == TL_QT_Q4_1 ||
		t == TL_QT_Q5_0 || t == TL_QT_Q5_1 || t == TL_QT_Q8_0;
}

static tl_status
upload_weight(tl_llm_cuda *g, void **out, const tl_llm_weight *w, const char *name)
{
	if (!cuda_type_ok(w->type))
		return tl_fail(TL_ERR_UNAVAILABLE, "CUDA language model: %s is %s, which has no CUDA kernel",
					   name, tl_qtype_name(w->type));
	return dev_copy(g, out, w->data, tl_qtype_row_size(w->type, w->cols) * (size_t) w->rows);
}

static tl_status
upload_vector(tl_llm_cuda *g, float **out, const float *v, int64_t n)
{
	*out = NULL;
	if (!v)
		return TL_OK;
	return dev_copy(g, (void **) out, v, sizeof(float) * (size_t) n);
}

/* A bias repeated for every row of a batch, so that `add` applies it. */
static tl_status
upload_bias(tl_llm_cuda *g, float **out, const float *b, int64_t width)
{
	float	   *rep;
	tl_status	rc;

	*out = NULL;
	if (!b)
		return TL_OK;
	if (!(rep = tl_alloc((size_t) TL_LLM_BATCH * (size_t) width, sizeof(float))))
		return tl_fail(TL_ERR_NOMEM, "CUDA language model: no memory for a bias");
	for (int t = 0; t < TL_LLM_BATCH; t++)
		memcpy(rep + (size_t) t * width, b, sizeof(float) * (size_t) width);
	rc = dev_copy(g, (void **) out, rep, sizeof(float) * (size_t) TL_LLM_BATCH * (size_t) width);
	tl_free(rep);
	return rc;
}

static tl_status
cuda_build(tl_llm_cuda *g)
{
	const tl_llm_model *m = g->m;
	const tl_llm_config *c = &m->cfg;
	size_t		B = TL_LLM_BATCH,
				E = (size_t) c->n_embd,
				QD = (size_t) c->n_head * c->head_dim,
				KD = (size_t) c->n_head_kv * c->head_dim,
				F = (size_t) c->n_ff;

	if (!(g->layers = tl_alloc((size_t) c->n_layer, sizeof(tl_cuda_layer))))
		return tl_fail(TL_ERR_NOMEM, "CUDA language model: no memory for %d layers", c->n_layer);
	TL_TRY(upload_weight(g, &g->tok_embd, &m->tok_embd, "token_embd.weight"));
	if (c->tied_embeddings)
		g->output = g->tok_embd;
	else
		TL_TRY(upload_weight(g, &g->output, &m->output, "output.weight"));
	TL_TRY(upload_vector(g, &g->output_norm, m->output_norm, c->n_embd));
	TL_TRY(upload_vector(g, &g->rope_factors, m->rope_factors, c->rope_dim / 2));
	for (int il = 0; il < c->n_layer; il++)
	{
		const tl_llm_layer *L = &m->layers[il];
		tl_cuda_layer *D = &g->layers[il];

		TL_TRY(upload_weight(g, &D->wq, &L->wq, "attn_q"));
		TL_TRY(upload_weight(g, &D->wk, &L->wk, "attn_k"));
		TL_TRY(upload_weight(g, &D->wv, &L->wv, "attn_v"));
		TL_TRY(upload_weight(g, &D->wo, &L->wo, "attn_output"));
		TL_TRY(upload_weight(g, &D->w_gate, &L->w_gate, "ffn_gate"));
		TL_TRY(upload_weight(g, &D->w_up, &L->w_up, "ffn_up"));
		TL_TRY(upload_weight(g, &D->w_down, &L->w_down, "ffn_down"));
		TL_TRY(upload_vector(g, &D->attn_norm, L->attn_norm, c->n_embd));
		TL_TRY(upload_vector(g, &D->ffn_norm, L->ffn_norm, c->n_embd));
		TL_TRY(upload_bias(g, &D->bq, L->bq, (int64_t) QD));
		TL_TRY(upload_bias(g, &D->bk, L->bk, (int64_t) KD));
		TL_TRY(upload_bias(g, &D->bv, L->bv, (int64_t) KD));
		TL_TRY(upload_bias(g, &D->bo, L->bo, (int64_t) E));
		TL_TRY(dev_alloc(g, (void **) &D->k_cache, sizeof(uint16_t) * (size_t) g->n_ctx * KD));
		TL_TRY(dev_alloc(g, (void **) &D->v_cache, sizeof(uint16_t) * (size_t) g->n_ctx * KD));
	}
	TL_TRY(dev_alloc(g, (void **) &g->tokens, sizeof(int32_t) * B));
	TL_TRY(dev_alloc(g, (void **) &g->x, sizeof(float) * B * E));
	TL_TRY(dev_alloc(g, (void **) &g->h, sizeof(float) * B * E));
	TL_TRY(dev_alloc(g, (void **) &g->q, sizeof(float) * B * QD));
	TL_TRY(dev_alloc(g, (void **) &g->k, sizeof(float) * B * KD));
	TL_TRY(dev_alloc(g, (void **) &g->v, sizeof(float) * B * KD));
	TL_TRY(dev_alloc(g, (void **) &g->att, sizeof(float) * B * QD));
	TL_TRY(dev_alloc(g, (void **) &g->proj, sizeof(float) * B * E));
	TL_TRY(dev_alloc(g, (void **) &g->gate, sizeof(float) * B * F));
	TL_TRY(dev_alloc(g, (void **) &g->up, sizeof(float) * B * F));
	TL_TRY(dev_alloc(g, (void **) &g->logits, sizeof(float) * (size_t) c->n_vocab));
	return TL_OK;
}

tl_status
tl_llm_cuda_new(tl_llm_cuda **out, const tl_llm_model *m, const tl_cuda_api *cu, int32_t n_ctx)
{
	tl_llm_cuda *g;
	tl_status	rc;

	*out = NULL;
	if (!m || !cu || n_ctx < 1)
		return tl_fail(TL_ERR_ARG, "CUDA language model: missing model or device, or no context");
	if (!cu->qmatmul || !cu->attention_cached)
		return tl_fail(TL_ERR_UNAVAILABLE, "CUDA language model: the plugin has no language-model ops");
	if (!(g = tl_alloc(1, sizeof(*g))))
		return tl_fail(TL_ERR_NOMEM, "CUDA language model: no memory");
	g->m = m;
	g->cu = cu;
	g->n_ctx = n_ctx;
	if ((rc = cuda_build(g)) != TL_OK)
	{
		tl_llm_cuda_free(g);
		return rc;
	}
	*out = g;
	return TL_OK;
}

void
tl_llm_cuda_free(tl_llm_cuda *g)
{
	if (!g)
		return;
	for (int i = 0; i < g->n_allocs; i++)
		(void) g->cu->release(g->allocs[i]);
	tl_free(g->allocs);
	tl_free(g->layers);
	tl_free(g);
}

/* y (n, rows) = x (n, cols) W^T for a device weight of the model's matrix w */
static tl_status
cuda_matmul(tl_llm_cuda *g, float *y, const void *dw, const tl_llm_weight *w, const float *x, int32_t n)
{
	CU_TRY(g, g->cu->qmatmul(y, dw, (int) w->type, w->rows, w->cols, x, n), "matmul");
	return TL_OK;
}

static tl_status
cuda_layer(tl_llm_cuda *g, int il, int32_t n, int32_t pos0)
{
	const tl_cuda_api *cu = g->cu;
	const tl_llm_config *c = &g->m->cfg;
	const tl_llm_layer *L = &g->m->layers[il];
	const tl_cuda_layer *D = &g->layers[il];
	int64_t		E = c->n_embd,
				QD = (int64_t) c->n_head * c->head_dim,
				KD = (int64_t) c->n_head_kv * c->head_dim,
				F = c->n_ff;

	CU_TRY(g, cu->rmsnorm_fwd(g->h, NULL, g->x, D->attn_norm, n, E, c->rms_eps), "attention norm");
	TL_TRY(cuda_matmul(g, g->q, D->wq, &L->wq, g->h, n));
	TL_TRY(cuda_matmul(g, g->k, D->wk, &L->wk, g->h, n));
	TL_TRY(cuda_matmul(g, g->v, D->wv, &L->wv, g->h, n));
	if (D->bq)
		CU_TRY(g, cu->add(g->q, D->bq, n * QD), "q bias");
	if (D->bk)
		CU_TRY(g, cu->add(g->k, D->bk, n * KD), "k bias");
	if (D->bv)
		CU_TRY(g, cu->add(g->v, D->bv, n * KD), "v bias");
	CU_TRY(g, cu->rope(g->q, n, c->n_head, c->head_dim, c->rope_dim, pos0, c->rope_base,
					   c->rope_freq_scale, g->rope_factors, c->rope_style == TL_ROPE_HALVES), "rope q");
	CU_TRY(g, cu->rope(g->k, n, c->n_head_kv, c->head_dim, c->rope_dim, pos0, c->rope_base,
					   c->rope_freq_scale, g->rope_factors, c->rope_style == TL_ROPE_HALVES), "rope k");
	CU_TRY(g, cu->kv_store(D->k_cache, g->k, n, KD, pos0), "key cache");
	CU_TRY(g, cu->kv_store(D->v_cache, g->v, n, KD, pos0), "value cache");
	CU_TRY(g, cu->attention_cached(g->att, g->q, D->k_cache, D->v_cache, n, c->n_head, c->n_head_kv,
								   c->head_dim, pos0, g->n_ctx, 1.0f / sqrtf((float) c->head_dim)),
		   "attention");
	TL_TRY(cuda_matmul(g, g->proj, D->wo, &L->wo, g->att, n));
	if (D->bo)
		CU_TRY(g, cu->add(g->proj, D->bo, n * E), "output bias");
	CU_TRY(g, cu->add(g->x, g->proj, n * E), "residual");

	CU_TRY(g, cu->rmsnorm_fwd(g->h, NULL, g->x, D->ffn_norm, n, E, c->rms_eps), "feed-forward norm");
	TL_TRY(cuda_matmul(g, g->gate, D->w_gate, &L->w_gate, g->h, n));
	TL_TRY(cuda_matmul(g, g->up, D->w_up, &L->w_up, g->h, n));
	CU_TRY(g, cu->swiglu(g->gate, g->up, n * F), "swiglu");
	TL_TRY(cuda_matmul(g, g->proj, D->w_down, &L->w_down, g->gate, n));
	CU_TRY(g, cu->add(g->x, g->proj, n * E), "residual");
	return TL_OK;
}

tl_status
tl_llm_cuda_eval(tl_llm_cuda *g, const int32_t *tokens, int32_t n, int32_t pos0, float *logits)
{
	const tl_llm_config *c = &g->m->cfg;

	if (n < 1 || n > TL_LLM_BATCH || pos0 < 0 || pos0 + n > g->n_ctx)
		return tl_fail(TL_ERR_ARG, "CUDA language model: %d tokens at position %d do not fit %d positions",
					   n, pos0, g->n_ctx);
	CU_TRY(g, g->cu->upload(g->tokens, tokens, sizeof(int32_t) * (size_t) n), "token upload");
	CU_TRY(g, g->cu->get_rows(g->x, g->tok_embd, (int) g->m->tok_embd.type, c->n_vocab, c->n_embd,
							  g->tokens, n), "embedding");
	for (int il = 0; il < c->n_layer; il++)
		TL_TRY(cuda_layer(g, il, n, pos0));
	if (logits)
	{
		CU_TRY(g, g->cu->rmsnorm_fwd(g->h, NULL, g->x + (size_t) (n - 1) * c->n_embd, g->output_norm,
									 1, c->n_embd, c->rms_eps), "output norm");
		TL_TRY(cuda_matmul(g, g->logits, g->output, &g->m->output, g->h, 1));
		CU_TRY(g, g->cu->download(logits, g->logits, sizeof(float) * (size_t) c->n_vocab), "logits download");
	}
	else
		CU_TRY(g, g->cu->synchronize(), "synchronize");
	return TL_OK;
}
