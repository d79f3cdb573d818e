/*
 * tl_block.c -- forward and backward of the pre-LN Transformer block.
 */
#include <stdio.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_block.h"

/*
 * Name, shape and init of each parameter.  Shape letters: D = d_model,
 * F = d_ff.  Matrices get N(0, 0.02) (GPT-2 style) and weight decay;
 * gains and biases get neither.
 */
static const struct
{
	const char *name;
	const char *shape;
	tl_init		init;
}			tl_block_layout[TL_BLK_NPARAMS] = {
	[TL_BLK_LN1_G] = {"ln1.g", "D", TL_INIT_ONES},
	[TL_BLK_LN1_B] = {"ln1.b", "D", TL_INIT_ZEROS},
	[TL_BLK_WQ] = {"wq", "DD", TL_INIT_NORMAL},
	[TL_BLK_BQ] = {"bq", "D", TL_INIT_ZEROS},
	[TL_BLK_WK] = {"wk", "DD", TL_INIT_NORMAL},
	[TL_BLK_BK] = {"bk", "D", TL_INIT_ZEROS},
	[TL_BLK_WV] = {"wv", "DD", TL_INIT_NORMAL},
	[TL_BLK_BV] = {"bv", "D", TL_INIT_ZEROS},
	[TL_BLK_WO] = {"wo", "DD", TL_INIT_NORMAL},
	[TL_BLK_BO] = {"bo", "D", TL_INIT_ZEROS},
	[TL_BLK_LN2_G] = {"ln2.g", "D", TL_INIT_ONES},
	[TL_BLK_LN2_B] = {"ln2.b", "D", TL_INIT_ZEROS},
	[TL_BLK_W1] = {"w1", "FD", TL_INIT_NORMAL},
	[TL_BLK_B1] = {"b1", "F", TL_INIT_ZEROS},
	[TL_BLK_W2] = {"w2", "DF", TL_INIT_NORMAL},
	[TL_BLK_B2] = {"b2", "D", TL_INIT_ZEROS},
};

tl_status
tl_block_declare(tl_block *block, const tl_block_config *cfg, tl_params *ps, const char *prefix)
{
	if (cfg->d_model <= 0 || cfg->heads <= 0 || cfg->d_model % cfg->heads != 0)
		return tl_fail(TL_ERR_ARG, "d_model %lld must be a positive multiple of heads %lld",
					   (long long) cfg->d_model, (long long) cfg->heads);
	if (cfg->d_ff <= 0)
		return tl_fail(TL_ERR_ARG, "d_ff must be positive");
	if (!(cfg->dropout >= 0.0f && cfg->dropout < 1.0f))
		return tl_fail(TL_ERR_ARG, "dropout %g is outside [0, 1)", (double) cfg->dropout);
	if (!(cfg->ln_eps > 0.0f))
		return tl_fail(TL_ERR_ARG, "layer norm epsilon must be positive");
	memset(block, 0, sizeof(*block));
	block->cfg = *cfg;
	for (int i = 0; i < TL_BLK_NPARAMS; i++)
	{
		const char *letters = tl_block_layout[i].shape;
		int			ndim = (int) strlen(letters);
		int64_t		shape[2];
		char		full[TL_PARAM_NAME_LEN];
		bool		matrix = (ndim == 2);

		for (int d = 0; d < ndim; d++)
			shape[d] = letters[d] == 'F' ? cfg->d_ff : cfg->d_model;
		snprintf(full, sizeof(full), "%s.%s", prefix, tl_block_layout[i].name);
		TL_TRY(tl_params_declare(ps, full, ndim, shape, tl_block_layout[i].init,
								 matrix ? 0.02f : 0.0f, matrix, &block->param[i]));
	}
	return TL_OK;
}

/* The cache's buffers, listed once for allocation and release. */
#define TL_BLOCK_CACHE_BUFFERS 21

static void
block_cache_buffers(tl_block_cache *c, int64_t D, int64_t F, int64_t H, tl_buffer *b)
{
	int64_t		N = c->max_tokens;
	int			n = 0;

	b[n++] = TL_BUFFER(c->x, N * D);
	b[n++] = TL_BUFFER(c->ln1, N * D);
	b[n++] = TL_BUFFER(c->ln1_mean, N);
	b[n++] = TL_BUFFER(c->ln1_rstd, N);
	b[n++] = TL_BUFFER(c->q, N * D);
	b[n++] = TL_BUFFER(c->k, N * D);
	b[n++] = TL_BUFFER(c->v, N * D);
	b[n++] = TL_BUFFER(c->probs, N * H * c->max_seq);
	b[n++] = TL_BUFFER(c->attn, N * D);
	b[n++] = TL_BUFFER(c->x2, N * D);
	b[n++] = TL_BUFFER(c->ln2, N * D);
	b[n++] = TL_BUFFER(c->ln2_mean, N);
	b[n++] = TL_BUFFER(c->ln2_rstd, N);
	b[n++] = TL_BUFFER(c->u, N * F);
	b[n++] = TL_BUFFER(c->g, N * F);
	b[n++] = TL_BUFFER(c->tmp_d1, N * D);
	b[n++] = TL_BUFFER(c->tmp_d2, N * D);
	b[n++] = TL_BUFFER(c->dq, N * D);
	b[n++] = TL_BUFFER(c->dk, N * D);
	b[n++] = TL_BUFFER(c->dv, N * D);
	b[n++] = TL_BUFFER(c->tmp_f, N * F);
}

tl_status
tl_block_cache_alloc(tl_block_cache *c, const tl_block_config *cfg, int64_t max_tokens, int64_t max_seq)
{
	int64_t		D = cfg->d_model,
				F = cfg->d_ff;
	tl_buffer	b[TL_BLOCK_CACHE_BUFFERS];

	memset(c, 0, sizeof(*c));
	if (D <= 0 || F <= 0 || cfg->heads <= 0 || max_tokens <= 0 || max_seq <= 0 || max_seq > max_tokens ||
		max_tokens > INT64_MAX / max_seq / cfg->heads / (F > D ? F : D))
		return tl_fail(TL_ERR_ARG, "block cache needs 0 < max_seq <= max_tokens within range");
	c->max_tokens = max_tokens;
	c->max_seq = max_seq;
	block_cache_buffers(c, D, F, cfg->heads, b);
	return tl_alloc_buffers(b, TL_BLOCK_CACHE_BUFFERS, "block activations");
}

void
tl_block_cache_free(tl_block_cache *c)
{
	tl_buffer	b[TL_BLOCK_CACHE_BUFFERS];

	block_cache_buffers(c, 0, 0, 0, b);
	tl_free_buffers(b, TL_BLOCK_CACHE_BUFFERS);
}

/* Dropout seeds of the two residual branches, derived from the pass seed. */
#define TL_SITE_ATTN 1
#define TL_SITE_MLP 2

static inline uint64_t
tl_site_seed(uint64_t seed, int site)
{
	return tl_mix64(seed * 4 + (uint64_t) site);
}

tl_status
tl_block_forward(const tl_block *block, const tl_params *ps, tl_block_cache *c,
				 const tl_tensor *x, tl_tensor *y, const uint8_t *key_valid,
				 bool training, uint64_t seed)
{
	const tl_block_config *cfg = &block->cfg;
	int64_t		B,
				T,
				N,
				D = cfg->d_model,
				F = cfg->d_ff,
				H = cfg->heads;
	float		p = training ? cfg->dropout : 0.0f;
	tl_tensor	w[TL_BLK_NPARAMS];
	tl_tensor	tx,
				ln1,
				mean1,
				rstd1,
				q,
				k,
				v,
				probs,
				attn,
				x2,
				ln2,
				mean2,
				rstd2,
				u,
				g,
				branch;
	tl_attn_dims dims;

	TL_TRY(tl_expect_shape(x, "block input", 3, TL_SHAPE(-1, -1, D)));
	TL_TRY(tl_expect_same_shape(y, "block output", x, "block input"));
	B = x->shape[0];
	T = x->shape[1];
	if (T > c->max_seq || B > c->max_tokens / T)
		return tl_fail(TL_ERR_SHAPE, "block input (%lld x %lld) exceeds the cache (%lld tokens, sequences up to %lld)",
					   (long long) B, (long long) T, (long long) c->max_tokens, (long long) c->max_seq);
	N = B * T;
	c->batch = B;
	c->seq = T;
	c->training = training;
	c->seed = seed;
	c->key_valid = key_valid;
	dims = (tl_attn_dims) {B, T, H, D / H, cfg->alibi};

	for (int i = 0; i < TL_BLK_NPARAMS; i++)
		w[i] = tl_params_value(ps, block->param[i]);
#define P(NAME) (&w[TL_BLK_##NAME])

	tx = TL_VIEW(c->x, B, T, D);
	ln1 = TL_VIEW(c->ln1, B, T, D);
	mean1 = TL_VIEW(c->ln1_mean, N);
	rstd1 = TL_VIEW(c->ln1_rstd, N);
	q = TL_VIEW(c->q, B, T, D);
	k = TL_VIEW(c->k, B, T, D);
	v = TL_VIEW(c->v, B, T, D);
	probs = TL_VIEW(c->probs, B, H, T, T);
	attn = TL_VIEW(c->attn, B, T, D);
	x2 = TL_VIEW(c->x2, B, T, D);
	ln2 = TL_VIEW(c->ln2, B, T, D);
	mean2 = TL_VIEW(c->ln2_mean, N);
	rstd2 = TL_VIEW(c->ln2_rstd, N);
	u = TL_VIEW(c->u, B, T, F);
	g = TL_VIEW(c->g, B, T, F);
	branch = TL_VIEW(c->tmp_d1, B, T, D);

	memcpy(c->x, x->data, sizeof(float) * N * D);
	/* attention branch */
	TL_TRY(tl_layernorm_fwd(&ln1, &mean1, &rstd1, &tx, P(LN1_G), P(LN1_B), cfg->ln_eps));
	TL_TRY(tl_linear_fwd(&q, &ln1, P(WQ), P(BQ)));
	TL_TRY(tl_linear_fwd(&k, &ln1, P(WK), P(BK)));
	TL_TRY(tl_linear_fwd(&v, &ln1, P(WV), P(BV)));
	TL_TRY(tl_attention_fwd(&attn, &probs, &q, &k, &v, key_valid, dims));
	TL_TRY(tl_linear_fwd(&branch, &attn, P(WO), P(BO)));
	TL_TRY(tl_dropout_fwd(&branch, &branch, p, tl_site_seed(seed, TL_SITE_ATTN), 0));
	TL_TRY(tl_add(&x2, &tx, &branch));
	/* MLP branch */
	TL_TRY(tl_layernorm_fwd(&ln2, &mean2, &rstd2, &x2, P(LN2_G), P(LN2_B), cfg->ln_eps));
	TL_TRY(tl_linear_fwd(&u, &ln2, P(W1), P(B1)));
	TL_TRY(tl_gelu_fwd(&g, &u));
	TL_TRY(tl_linear_fwd(&branch, &g, P(W2), P(B2)));
	TL_TRY(tl_dropout_fwd(&branch, &branch, p, tl_site_seed(seed, TL_SITE_MLP), 0));
	TL_TRY(tl_add(y, &x2, &branch));
#undef P
	return TL_OK;
}

tl_status
tl_block_backward(const tl_block *block, tl_params *ps, tl_block_cache *c,
				  const tl_tensor *dy, tl_tensor *dx)
{
	const tl_block_config *cfg = &block->cfg;
	int64_t		B = c->batch,
				T = c->seq,
				N = B * T,
				D = cfg->d_model,
				F = cfg->d_ff,
				H = cfg->heads;
	float		p = c->training ? cfg->dropout : 0.0f;
	tl_tensor	w[TL_BLK_NPARAMS],
				dw[TL_BLK_NPARAMS];
	tl_tensor	tx,
				ln1,
				mean1,
				rstd1,
				q,
				k,
				v,
				probs,
				attn,
				x2,
				ln2,
				mean2,
				rstd2,
				u,
				g,
				t1,
				t2,
				dq,
				dk,
				dv,
				tf;
	tl_attn_dims dims = {B, T, H, D / H, cfg->alibi};

	if (B <= 0 || T <= 0)
		return tl_fail(TL_ERR_ARG, "block backward called before a forward pass");
	TL_TRY(tl_expect_shape(dy, "block output gradient", 3, TL_SHAPE(B, T, D)));
	TL_TRY(tl_expect_same_shape(dx, "block input gradient", dy, "block output gradient"));
	if (dx->data == dy->data)
		return tl_fail(TL_ERR_ARG, "block backward needs separate dx and dy buffers");

	for (int i = 0; i < TL_BLK_NPARAMS; i++)
	{
		w[i] = tl_params_value(ps, block->param[i]);
		dw[i] = tl_params_grad(ps, block->param[i]);
	}
#define P(NAME) (&w[TL_BLK_##NAME])
#define G(NAME) (&dw[TL_BLK_##NAME])

	tx = TL_VIEW(c->x, B, T, D);
	ln1 = TL_VIEW(c->ln1, B, T, D);
	mean1 = TL_VIEW(c->ln1_mean, N);
	rstd1 = TL_VIEW(c->ln1_rstd, N);
	q = TL_VIEW(c->q, B, T, D);
	k = TL_VIEW(c->k, B, T, D);
	v = TL_VIEW(c->v, B, T, D);
	probs = TL_VIEW(c->probs, B, H, T, T);
	attn = TL_VIEW(c->attn, B, T, D);
	x2 = TL_VIEW(c->x2, B, T, D);
	ln2 = TL_VIEW(c->ln2, B, T, D);
	mean2 = TL_VIEW(c->ln2_mean, N);
	rstd2 = TL_VIEW(c->ln2_rstd, N);
	u = TL_VIEW(c->u, B, T, F);
	g = TL_VIEW(c->g, B, T, F);
	t1 = TL_VIEW(c->tmp_d1, B, T, D);
	t2 = TL_VIEW(c->tmp_d2, B, T, D);
	dq = TL_VIEW(c->dq, B, T, D);
	dk = TL_VIEW(c->dk, B, T, D);
	dv = TL_VIEW(c->dv, B, T, D);
	tf = TL_VIEW(c->tmp_f, B, T, F);

	/* MLP branch: y = x2 + drop(W2 gelu(W1 LN2(x2))) */
	TL_TRY(tl_dropout_bwd(&t1, dy, p, tl_site_seed(c->seed, TL_SITE_MLP), 0));
	TL_TRY(tl_linear_bwd(&tf, G(W2), G(B2), &t1, &g, P(W2)));
	TL_TRY(tl_gelu_bwd(&tf, &tf, &u));
	TL_TRY(tl_linear_bwd(&t1, G(W1), G(B1), &tf, &ln2, P(W1)));
	TL_TRY(tl_layernorm_bwd(&t2, G(LN2_G), G(LN2_B), &t1, &x2, &mean2, &rstd2, P(LN2_G)));
	TL_TRY(tl_add(dx, dy, &t2));	/* dx now holds d(loss)/d(x2) */

	/* attention branch: x2 = x + drop(Wo Attn(LN1(x))) */
	TL_TRY(tl_dropout_bwd(&t1, dx, p, tl_site_seed(c->seed, TL_SITE_ATTN), 0));
	TL_TRY(tl_linear_bwd(&t2, G(WO), G(BO), &t1, &attn, P(WO)));
	TL_TRY(tl_attention_bwd(&dq, &dk, &dv, &t2, &probs, &q, &k, &v, dims));
	TL_TRY(tl_linear_bwd(&t1, G(WQ), G(BQ), &dq, &ln1, P(WQ)));
	TL_TRY(tl_linear_bwd(&t2, G(WK), G(BK), &dk, &ln1, P(WK)));
	TL_TRY(tl_add(&t1, &t1, &t2));
	TL_TRY(tl_linear_bwd(&t2, G(WV), G(BV), &dv, &ln1, P(WV)));
	TL_TRY(tl_add(&t1, &t1, &t2));
	TL_TRY(tl_layernorm_bwd(&t2, G(LN1_G), G(LN1_B), &t1, &tx, &mean1, &rstd1, P(LN1_G)));
	TL_TRY(tl_add(dx, dx, &t2));
#undef P
#undef G
	return TL_OK;
}

/* ---- stacks of blocks ------------------------------------------------------ */

tl_status
tl_stack_declare(tl_block_stack *s, const tl_block_config *cfg, int64_t layers, tl_params *ps,
				 const char *prefix)
{
	memset(s, 0, sizeof(*s));
	if (layers < 1 || layers > 64)
		return tl_fail(TL_ERR_ARG, "a stack needs 1..64 blocks, not %lld", (long long) layers);
	s->blocks = tl_alloc((size_t) layers, sizeof(tl_block));
	s->caches = tl_alloc((size_t) layers, sizeof(tl_block_cache));
	if (!s->blocks || !s->caches)
	{
		tl_stack_free(s);
		return tl_fail(TL_ERR_NOMEM, "cannot allocate %lld blocks", (long long) layers);
	}
	s->layers = layers;
	for (int64_t l = 0; l < layers; l++)
	{
		char		name[32];

		snprintf(name, sizeof(name), "%s%lld", prefix, (long long) l);
		TL_TRY(tl_block_declare(&s->blocks[l], cfg, ps, name));
	}
	return TL_OK;
}

tl_status
tl_stack_cache_alloc(tl_block_stack *s, int64_t max_tokens, int64_t max_seq)
{
	for (int64_t l = 0; l < s->layers; l++)
		TL_TRY(tl_block_cache_alloc(&s->caches[l], &s->blocks[l].cfg, max_tokens, max_seq));
	return TL_OK;
}

void
tl_stack_free(tl_block_stack *s)
{
	if (s->caches)
		for (int64_t l = 0; l < s->layers; l++)
			tl_block_cache_free(&s->caches[l]);
	tl_free(s->blocks);
	tl_free(s->caches);
	memset(s, 0, sizeof(*s));
}

tl_status
tl_stack_forward(tl_block_stack *s, const tl_params *ps, float *acts, int64_t B, int64_t T,
				 const uint8_t *key_valid, bool training, uint64_t seed)
{
	int64_t		D;

	if (s->layers < 1)
		return tl_fail(TL_ERR_ARG, "empty block stack");
	D = s->blocks[0].cfg.d_model;
	for (int64_t l = 0; l < s->layers; l++)
	{
		tl_tensor	in = TL_VIEW(acts + l * B * T * D, B, T, D);
		tl_tensor	out = TL_VIEW(acts + (l + 1) * B * T * D, B, T, D);

		TL_TRY(tl_block_forward(&s->blocks[l], ps, &s->caches[l], &in, &out, key_valid,
								training, seed + (uint64_t) l));
	}
	return TL_OK;
}

tl_status
tl_stack_backward(tl_block_stack *s, tl_params *ps, float *grad, float *scratch, int64_t B, int64_t T)
{
	int64_t		D;

	if (s->layers < 1)
		return tl_fail(TL_ERR_ARG, "empty block stack");
	D = s->blocks[0].cfg.d_model;
	for (int64_t l = s->layers - 1; l >= 0; l--)
	{
		tl_tensor	dy = TL_VIEW(grad, B, T, D);
		tl_tensor	dx = TL_VIEW(scratch, B, T, D);

		TL_TRY(tl_block_backward(&s->blocks[l], ps, &s->caches[l], &dy, &dx));
		memcpy(grad, scratch, sizeof(float) * B * T * D);
	}
	return TL_OK;
}
