/*
 * tl_llm.c -- loading a Llama-family GGUF model and running it (see
 * tl_llm.h for the computation).  Sampling and the generation loop are
 * in tl_generate.c.
 *
 * The forward pass follows llama.cpp's arithmetic where that is cheap,
 * so that greedy decoding agrees with it as far as possible: RMSNorm sums
 * squares in double, rotary angles are built by repeated multiplication
 * as ggml's cache does, queries and attention probabilities are rounded
 * to half precision where its default attention rounds them, and the
 * products sum in its order (tl_quant).  Its SIMD exp and SiLU are not
 * reproduced, so near-ties can still go the other way (docs/design.md).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_llm.h"
#include "tl_llm_impl.h"
#include "tl_pool.h"
#include "tl_quant.h"
#include "tl_vmath.h"

struct tl_llm_state
{
	const tl_llm_model *m;
	int32_t		n_ctx;
	int32_t		n_past;
	int32_t		kv_dim;			/* G*D */
	int32_t		n_pages;		/* pages per layer for n_ctx */
	uint16_t  **k_pages;		/* [layer * n_pages + page] -> (PAGE, G*D) half */
	uint16_t  **v_pages;
	int32_t		pages_ready;	/* pages allocated in every layer */
	/* scratch for one batch of B <= TL_LLM_BATCH tokens */
	float	   *x;				/* (B, E) residual stream */
	float	   *h;				/* (B, E) normalised input of a block */
	float	   *q;				/* (B, H*D) */
	float	   *k;				/* (B, G*D) */
	float	   *v;				/* (B, G*D) */
	float	   *att;			/* (B, H*D) attention output */
	float	   *proj;			/* (B, E) output of Wo or Wdown */
	float	   *gate;			/* (B, F) */
	float	   *up;				/* (B, F) */
	float	   *rope_cos;		/* (B, rope_dim/2) */
	float	   *rope_sin;
	float	   *scores;			/* per pool worker: (group, n_ctx) scores, then
								 * (group, TL_F16_MAX_LANES, D) lanes */
	int			scores_rows;	/* workers it has room for */
	size_t		scores_per_worker;
	tl_f16_scores_fn scores_f16;	/* K.q over cached keys */
	tl_f16_mix_fn mix_f16;		/* probabilities times cached values */
	tl_from_float_fn to_half;	/* float keys and values into the cache */
	tl_llm_cuda *cuda;			/* the device copy, or NULL: the CPU runs it */
	tl_llm_trace_fn trace;		/* diagnostic hook, or NULL */
	void	   *trace_user;
};

/* Hand an intermediate to the trace hook, if any. */
#define TL_TRACE(st, name, layer, data, rows, cols) \
	do { \
		if ((st)->trace) \
			(st)->trace((st)->trace_user, (name), (layer), (data), (rows), (cols)); \
	} while (0)

/* ======================================================================
 * Loading
 * ====================================================================== */

static tl_status
tl_llm_get_i32(const tl_gguf *g, const char *arch, const char *key, bool required,
			   int32_t dflt, int32_t lo, int32_t hi, int32_t *out)
{
	char		name[128];
	uint32_t	v;

	snprintf(name, sizeof(name), "%s.%s", arch, key);
	if (!tl_gguf_find(g, name))
	{
		if (required)
			return tl_fail(TL_ERR_ARG, "GGUF model: metadata %s is missing", name);
		*out = dflt;
		return TL_OK;
	}
	if (tl_gguf_get_u32(g, name, &v) != TL_OK)
		return tl_fail(TL_ERR_ARG, "GGUF model: metadata %s is not an unsigned 32-bit count", name);
	if ((int64_t) v < lo || (int64_t) v > hi)
		return tl_fail(TL_ERR_ARG, "GGUF model: %s = %u is outside %d..%d", name, v, lo, hi);
	*out = (int32_t) v;
	return TL_OK;
}

static tl_status
tl_llm_get_f32(const tl_gguf *g, const char *arch, const char *key, float dflt,
			   float lo, float hi, float *out)
{
	char		name[128];
	float		v;

	snprintf(name, sizeof(name), "%s.%s", arch, key);
	if (!tl_gguf_find(g, name))
	{
		*out = dflt;
		return TL_OK;
	}
	if (tl_gguf_get_f32(g, name, &v) != TL_OK)
		return tl_fail(TL_ERR_ARG, "GGUF model: metadata %s is not a float", name);
	if (!(v >= lo && v <= hi))
		return tl_fail(TL_ERR_ARG, "GGUF model: %s = %g is outside %g..%g", name, v, lo, hi);
	*out = v;
	return TL_OK;
}

/*
 * Find a tensor and check it is a matrix of `rows` rows of `cols`
 * (ggml's dims: [cols, rows]) in a type the kernels can multiply.
 */
static tl_status
tl_llm_bind_matrix(const tl_gguf *g, const char *name, int64_t rows, int64_t cols,
				   bool required, tl_llm_weight *w)
{
	const tl_gguf_tensor *t = tl_gguf_find_tensor(g, name);

	memset(w, 0, sizeof(*w));
	if (!t)
		return required ? tl_fail(TL_ERR_ARG, "GGUF model: tensor %s is missing", name) : TL_OK;
	if (t->n_dims != 2 || (int64_t) t->dims[0] != cols || (int64_t) t->dims[1] != rows)
		return tl_fail(TL_ERR_ARG, "GGUF model: tensor %s has shape [%llu, %llu, %llu], expected [%lld, %lld]",
					   name, (unsigned long long) t->dims[0], (unsigned long long) t->dims[1],
					   (unsigned long long) t->dims[2], (long long) cols, (long long) rows);
	if (!tl_quant_vec_dot(t->type))
		return tl_fail(TL_ERR_UNAVAILABLE, "GGUF model: tensor %s is %s, which has no kernel here",
					   name, tl_qtype_name(t->type));
	if (t->row_size != tl_qtype_row_size(t->type, cols))
		return tl_fail(TL_ERR_ARG, "GGUF model: tensor %s has a bad row size", name);
	w->data = t->data;
	w->type = t->type;
	w->rows = rows;
	w->cols = cols;
	return TL_OK;
}

/* A float vector of n elements (norm weights, biases, rope factors). */
static tl_status
tl_llm_bind_vector(const tl_gguf *g, const char *name, int64_t n, bool required,
				   const float **out)
{
	const tl_gguf_tensor *t = tl_gguf_find_tensor(g, name);

	*out = NULL;
	if (!t)
		return required ? tl_fail(TL_ERR_ARG, "GGUF model: tensor %s is missing", name) : TL_OK;
	if (t->n_elements != (uint64_t) n || t->dims[0] != (uint64_t) n)
		return tl_fail(TL_ERR_ARG, "GGUF model: tensor %s has %llu elements, expected %lld",
					   name, (unsigned long long) t->n_elements, (long long) n);
	if (t->type != TL_QT_F32)
		return tl_fail(TL_ERR_UNAVAILABLE, "GGUF model: tensor %s is %s; norms and biases must be F32",
					   name, tl_qtype_name(t->type));
	*out = t->data;
	return TL_OK;
}

static tl_status
tl_llm_bind_layer(tl_llm_model *m, int il)
{
	const tl_llm_config *c = &m->cfg;
	tl_llm_layer *L = &m->layers[il];
	const tl_gguf *g = &m->gguf;
	int64_t		E = c->n_embd,
				QD = (int64_t) c->n_head * c->head_dim,
				KD = (int64_t) c->n_head_kv * c->head_dim,
				F = c->n_ff;
	char		n[TL_GGUF_MAX_NAME_LEN + 1];

#define TL_NAME(suffix) (snprintf(n, sizeof(n), "blk.%d." suffix, il), n)
	TL_TRY(tl_llm_bind_vector(g, TL_NAME("attn_norm.weight"), E, true, &L->attn_norm));
	TL_TRY(tl_llm_bind_matrix(g, TL_NAME("attn_q.weight"), QD, E, true, &L->wq));
	TL_TRY(tl_llm_bind_matrix(g, TL_NAME("attn_k.weight"), KD, E, true, &L->wk));
	TL_TRY(tl_llm_bind_matrix(g, TL_NAME("attn_v.weight"), KD, E, true, &L->wv));
	TL_TRY(tl_llm_bind_matrix(g, TL_NAME("attn_output.weight"), E, QD, true, &L->wo));
	TL_TRY(tl_llm_bind_vector(g, TL_NAME("attn_q.bias"), QD, c->qkv_bias, &L->bq));
	TL_TRY(tl_llm_bind_vector(g, TL_NAME("attn_k.bias"), KD, c->qkv_bias, &L->bk));
	TL_TRY(tl_llm_bind_vector(g, TL_NAME("attn_v.bias"), KD, c->qkv_bias, &L->bv));
	TL_TRY(tl_llm_bind_vector(g, TL_NAME("attn_output.bias"), E, false, &L->bo));
	TL_TRY(tl_llm_bind_vector(g, TL_NAME("ffn_norm.weight"), E, true, &L->ffn_norm));
	TL_TRY(tl_llm_bind_matrix(g, TL_NAME("ffn_gate.weight"), F, E, true, &L->w_gate));
	TL_TRY(tl_llm_bind_matrix(g, TL_NAME("ffn_up.weight"), F, E, true, &L->w_up));
	TL_TRY(tl_llm_bind_matrix(g, TL_NAME("ffn_down.weight"), E, F, true, &L->w_down));
#undef TL_NAME
	return TL_OK;
}

static tl_status
tl_llm_read_config(tl_llm_model *m)
{
	const tl_gguf *g = &m->gguf;
	tl_llm_config *c = &m->cfg;
	tl_gguf_str arch;
	const char *a;
	int32_t		key_len,
				value_len;
	const tl_gguf_tensor *embd;

	if (tl_gguf_get_string(g, "general.architecture", &arch) != TL_OK)
		return tl_fail(TL_ERR_ARG, "GGUF model: general.architecture is missing");
	if (tl_gguf_str_eq(arch, "llama"))
	{
		c->arch = TL_LLM_ARCH_LLAMA;
		c->arch_name = "llama";
		c->rope_style = TL_ROPE_ADJACENT;
	}
	else if (tl_gguf_str_eq(arch, "qwen2"))
	{
		c->arch = TL_LLM_ARCH_QWEN2;
		c->arch_name = "qwen2";
		c->rope_style = TL_ROPE_HALVES;
		c->qkv_bias = true;
	}
	else
		return tl_fail(TL_ERR_UNAVAILABLE, "GGUF model: architecture \"%.*s\" is not supported (llama, qwen2)",
					   (int) (arch.len > 40 ? 40 : arch.len), arch.ptr);
	a = c->arch_name;

	TL_TRY(tl_llm_get_i32(g, a, "context_length", true, 0, 1, 1 << 24, &c->n_ctx_train));
	TL_TRY(tl_llm_get_i32(g, a, "embedding_length", true, 0, 1, 1 << 16, &c->n_embd));
	TL_TRY(tl_llm_get_i32(g, a, "block_count", true, 0, 1, 1024, &c->n_layer));
	TL_TRY(tl_llm_get_i32(g, a, "feed_forward_length", true, 0, 1, 1 << 20, &c->n_ff));
	TL_TRY(tl_llm_get_i32(g, a, "attention.head_count", true, 0, 1, 1024, &c->n_head));
	TL_TRY(tl_llm_get_i32(g, a, "attention.head_count_kv", false, c->n_head, 1, c->n_head, &c->n_head_kv));
	if (c->n_head % c->n_head_kv != 0)
		return tl_fail(TL_ERR_ARG, "GGUF model: %d heads do not group evenly over %d key/value heads",
					   c->n_head, c->n_head_kv);
	TL_TRY(tl_llm_get_i32(g, a, "attention.key_length", false, c->n_embd / c->n_head,
						  1, TL_LLM_MAX_HEAD_DIM, &key_len));
	TL_TRY(tl_llm_get_i32(g, a, "attention.value_length", false, key_len,
						  1, TL_LLM_MAX_HEAD_DIM, &value_len));
	if (key_len != value_len || key_len < 2)
		return tl_fail(TL_ERR_UNAVAILABLE, "GGUF model: key length %d and value length %d must be equal and >= 2",
					   key_len, value_len);
	c->head_dim = key_len;
	TL_TRY(tl_llm_get_i32(g, a, "rope.dimension_count", false, c->head_dim, 2, c->head_dim, &c->rope_dim));
	if (c->rope_dim % 2 != 0)
		return tl_fail(TL_ERR_ARG, "GGUF model: rope.dimension_count %d is odd", c->rope_dim);
	TL_TRY(tl_llm_get_f32(g, a, "rope.freq_base", 10000.0f, 1.0f, 1e12f, &c->rope_base));
	TL_TRY(tl_llm_get_f32(g, a, "attention.layer_norm_rms_epsilon", 1e-5f, 1e-12f, 1.0f, &c->rms_eps));
	c->rope_freq_scale = 1.0f;
	{
		char		key[96];
		tl_gguf_str type;

		snprintf(key, sizeof(key), "%s.rope.scaling.type", a);
		if (tl_gguf_get_string(g, key, &type) == TL_OK &&
			!tl_gguf_str_eq(type, "none"))
		{
			float		factor;

			if (!tl_gguf_str_eq(type, "linear"))
				return tl_fail(TL_ERR_UNAVAILABLE, "GGUF model: rope scaling \"%.*s\" is not supported (none, linear)",
							   (int) (type.len > 20 ? 20 : type.len), type.ptr);
			TL_TRY(tl_llm_get_f32(g, a, "rope.scaling.factor", 1.0f, 1e-3f, 1e6f, &factor));
			c->rope_freq_scale = 1.0f / factor;
		}
	}

	embd = tl_gguf_find_tensor(g, "token_embd.weight");
	if (!embd || embd->n_dims != 2)
		return tl_fail(TL_ERR_ARG, "GGUF model: token_embd.weight is missing or not a matrix");
	if (embd->dims[1] > INT32_MAX)
		return tl_fail(TL_ERR_ARG, "GGUF model: vocabulary of %llu tokens is too large",
					   (unsigned long long) embd->dims[1]);
	c->n_vocab = (int32_t) embd->dims[1];

	/* the whole model must be addressable with int32 row counts */
	if ((int64_t) c->n_head * c->head_dim > (1 << 20) || (int64_t) c->n_head_kv * c->head_dim > (1 << 20))
		return tl_fail(TL_ERR_ARG, "GGUF model: attention width too large");

	c->n_params = 0;
	for (size_t i = 0; i < g->n_tensors; i++)
		c->n_params += (int64_t) g->tensors[i].n_elements;
	return TL_OK;
}

/* End-of-generation tokens: the declared ids, then well-known texts. */
static void
tl_llm_find_end_tokens(tl_llm_model *m)
{
	static const char *const texts[] = {
		"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "</s>"
	};
	static const char *const keys[] = {
		"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"
	};

	m->n_end_tokens = 0;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
	{
		uint32_t	id;

		if (tl_gguf_get_u32(&m->gguf, keys[i], &id) == TL_OK &&
			(int64_t) id < m->cfg.n_vocab && m->n_end_tokens < TL_LLM_MAX_END_TOKENS)
			m->end_tokens[m->n_end_tokens++] = (int32_t) id;
	}
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
	{
		int32_t		id = tl_tokenizer_lookup(m->tok, texts[i], strlen(texts[i]));
		tl_token_type type;

		if (id < 0 || tl_tokenizer_token_type(m->tok, id, &type) != TL_OK ||
			(type != TL_TOKEN_CONTROL && type != TL_TOKEN_USER_DEFINED))
			continue;
		if (!tl_llm_is_end(m, id) && m->n_end_tokens < TL_LLM_MAX_END_TOKENS)
			m->end_tokens[m->n_end_tokens++] = id;
	}
}

static tl_status
tl_llm_build(tl_llm_model *m)
{
	tl_llm_config *c = &m->cfg;

	TL_TRY(tl_llm_read_config(m));
	TL_TRY(tl_llm_bind_matrix(&m->gguf, "token_embd.weight", c->n_vocab, c->n_embd, true, &m->tok_embd));
	if (!tl_qtype_info(m->tok_embd.type)->to_float)
		return tl_fail(TL_ERR_UNAVAILABLE, "GGUF model: token_embd.weight is %s, which cannot be read here",
					   tl_qtype_name(m->tok_embd.type));
	TL_TRY(tl_llm_bind_matrix(&m->gguf, "output.weight", c->n_vocab, c->n_embd, false, &m->output));
	c->tied_embeddings = m->output.data == NULL;
	if (c->tied_embeddings)
		m->output = m->tok_embd;
	TL_TRY(tl_llm_bind_vector(&m->gguf, "output_norm.weight", c->n_embd, true, &m->output_norm));
	TL_TRY(tl_llm_bind_vector(&m->gguf, "rope_freqs.weight", c->rope_dim / 2, false, &m->rope_factors));
	c->rope_freq_factors = m->rope_factors != NULL;
	if (m->rope_factors)
		for (int i = 0; i < c->rope_dim / 2; i++)
			if (!(m->rope_factors[i] > 0.0f && isfinite(m->rope_factors[i])))
				return tl_fail(TL_ERR_ARG, "GGUF model: rope_freqs.weight[%d] is not a positive number", i);

	m->layers = tl_alloc((size_t) c->n_layer, sizeof(tl_llm_layer));
	if (!m->layers)
		return tl_fail(TL_ERR_NOMEM, "GGUF model: no memory for %d layers", c->n_layer);
	for (int il = 0; il < c->n_layer; il++)
		TL_TRY(tl_llm_bind_layer(m, il));

	TL_TRY(tl_tokenizer_load(&m->tok, &m->gguf));
	if (tl_tokenizer_n_vocab(m->tok) > c->n_vocab)
		return tl_fail(TL_ERR_ARG, "GGUF model: the tokenizer has %d tokens but token_embd.weight only %d rows",
					   tl_tokenizer_n_vocab(m->tok), c->n_vocab);
	tl_llm_find_end_tokens(m);
	return TL_OK;
}

static tl_status
tl_llm_finish_load(tl_llm_model *m, tl_status rc, tl_llm_model **out)
{
	if (rc == TL_OK)
		rc = tl_llm_build(m);
	if (rc != TL_OK)
	{
		tl_llm_free(m);
		return rc;
	}
	*out = m;
	return TL_OK;
}

tl_status
tl_llm_load(tl_llm_model **out, const char *path)
{
	tl_llm_model *m;

	*out = NULL;
	if (!(m = tl_alloc(1, sizeof(*m))))
		return tl_fail(TL_ERR_NOMEM, "GGUF model: no memory");
	return tl_llm_finish_load(m, tl_gguf_open(&m->gguf, path), out);
}

tl_status
tl_llm_load_memory(tl_llm_model **out, const void *data, size_t size)
{
	tl_llm_model *m;

	*out = NULL;
	if (!(m = tl_alloc(1, sizeof(*m))))
		return tl_fail(TL_ERR_NOMEM, "GGUF model: no memory");
	return tl_llm_finish_load(m, tl_gguf_open_memory(&m->gguf, data, size), out);
}

void
tl_llm_free(tl_llm_model *m)
{
	if (!m)
		return;
	tl_tokenizer_free(m->tok);
	tl_free(m->layers);
	tl_gguf_close(&m->gguf);
	tl_free(m);
}

const tl_llm_config *
tl_llm_config_of(const tl_llm_model *m)
{
	return &m->cfg;
}

const tl_tokenizer *
tl_llm_tokenizer(const tl_llm_model *m)
{
	return m->tok;
}

const tl_gguf *
tl_llm_gguf(const tl_llm_model *m)
{
	return &m->gguf;
}

bool
tl_llm_is_end(const tl_llm_model *m, int32_t token)
{
	for (int i = 0; i < m->n_end_tokens; i++)
		if (m->end_tokens[i] == token)
			return true;
	return false;
}

/* ======================================================================
 * State
 * ====================================================================== */

static tl_buffer *
tl_llm_scratch(tl_llm_state *st, tl_buffer *b, int *n)
{
	const tl_llm_config *c = &st->m->cfg;
	size_t		B = TL_LLM_BATCH,
				E = (size_t) c->n_embd,
				QD = (size_t) c->n_head * c->head_dim,
				KD = (size_t) st->kv_dim,
				F = (size_t) c->n_ff,
				R = (size_t) c->rope_dim / 2;
	int			i = 0;

	b[i++] = TL_BUFFER(st->x, B * E);
	b[i++] = TL_BUFFER(st->h, B * E);
	b[i++] = TL_BUFFER(st->q, B * QD);
	b[i++] = TL_BUFFER(st->k, B * KD);
	b[i++] = TL_BUFFER(st->v, B * KD);
	b[i++] = TL_BUFFER(st->att, B * QD);
	b[i++] = TL_BUFFER(st->proj, B * E);
	b[i++] = TL_BUFFER(st->gate, B * F);
	b[i++] = TL_BUFFER(st->up, B * F);
	b[i++] = TL_BUFFER(st->rope_cos, B * R);
	b[i++] = TL_BUFFER(st->rope_sin, B * R);
	*n = i;
	return b;
}

#define TL_LLM_SCRATCH_BUFFERS 11

tl_status
tl_llm_state_new(tl_llm_state **out, const tl_llm_model *m, int32_t n_ctx)
{
	tl_llm_state *st;
	tl_buffer	b[TL_LLM_SCRATCH_BUFFERS];
	int			nb = 0;
	size_t		slots;
	tl_status	rc;

	*out = NULL;
	if (!m)
		return tl_fail(TL_ERR_ARG, "LLM state: no model");
	if (n_ctx < 1 || n_ctx > m->cfg.n_ctx_train)
		return tl_fail(TL_ERR_ARG, "LLM state: context of %d positions is outside 1..%d",
					   n_ctx, m->cfg.n_ctx_train);
	if (!(st = tl_alloc(1, sizeof(*st))))
		return tl_fail(TL_ERR_NOMEM, "LLM state: no memory");
	st->m = m;
	st->n_ctx = n_ctx;
	st->kv_dim = m->cfg.n_head_kv * m->cfg.head_dim;
	st->n_pages = (n_ctx + TL_LLM_KV_PAGE - 1) / TL_LLM_KV_PAGE;
	slots = (size_t) st->n_pages * (size_t) m->cfg.n_layer;
	st->k_pages = tl_alloc(slots, sizeof(uint16_t *));
	st->v_pages = tl_alloc(slots, sizeof(uint16_t *));
	if (!st->k_pages || !st->v_pages)
	{
		tl_llm_state_free(st);
		return tl_fail(TL_ERR_NOMEM, "LLM state: no memory for the cache table");
	}
	tl_llm_scratch(st, b, &nb);
	if ((rc = tl_alloc_buffers(b, nb, "LLM state scratch")) != TL_OK)
	{
		tl_llm_state_free(st);
		return rc;
	}
	st->scores_f16 = tl_quant_f16_scores();
	st->mix_f16 = tl_quant_f16_mix();
	st->to_half = tl_quant_from_float(TL_QT_F16);
	*out = st;
	return TL_OK;
}

void
tl_llm_state_free(tl_llm_state *st)
{
	tl_buffer	b[TL_LLM_SCRATCH_BUFFERS];
	int			nb = 0;

	if (!st)
		return;
	if (st->k_pages && st->v_pages)
		for (int32_t i = 0; i < st->pages_ready; i++)
			for (int32_t il = 0; il < st->m->cfg.n_layer; il++)
			{
				tl_free(st->k_pages[(size_t) il * st->n_pages + i]);
				tl_free(st->v_pages[(size_t) il * st->n_pages + i]);
			}
	tl_llm_cuda_free(st->cuda);
	tl_free(st->k_pages);
	tl_free(st->v_pages);
	tl_free(st->scores);
	tl_llm_scratch(st, b, &nb);	/* fills nb: not in the same call as its use */
	tl_free_buffers(b, nb);
	tl_free(st);
}

tl_status
tl_llm_state_use_cuda(tl_llm_state *st, const tl_cuda_api *cu)
{
	tl_llm_cuda *g;

	if (!st || !cu)
		return tl_fail(TL_ERR_ARG, "LLM state: no state or device");
	TL_TRY(tl_llm_cuda_new(&g, st->m, cu, st->n_ctx));
	tl_llm_cuda_free(st->cuda);
	st->cuda = g;
	st->n_past = 0;
	return TL_OK;
}

void
tl_llm_state_set_trace(tl_llm_state *st, tl_llm_trace_fn fn, void *user)
{
	st->trace = fn;
	st->trace_user = user;
}

bool
tl_llm_state_on_cuda(const tl_llm_state *st)
{
	return st && st->cuda;
}

tl_status
tl_llm_state_rewind(tl_llm_state *st, int32_t n)
{
	if (!st || n < 0 || n > st->n_past)
		return tl_fail(TL_ERR_ARG, "LLM state: cannot keep %d of %d positions", n, st ? st->n_past : 0);
	st->n_past = n;
	return TL_OK;
}

void
tl_llm_state_reset(tl_llm_state *st)
{
	st->n_past = 0;
}

int32_t
tl_llm_state_n_past(const tl_llm_state *st)
{
	return st->n_past;
}

int32_t
tl_llm_state_n_ctx(const tl_llm_state *st)
{
	return st->n_ctx;
}

const tl_llm_model *
tl_llm_state_model(const tl_llm_state *st)
{
	return st->m;
}

/* Allocate cache pages (in every layer) until position `upto` fits. */
static tl_status
tl_llm_reserve(tl_llm_state *st, int32_t upto)
{
	int32_t		need = upto / TL_LLM_KV_PAGE + 1;
	size_t		page = (size_t) TL_LLM_KV_PAGE * (size_t) st->kv_dim;

	while (st->pages_ready < need)
	{
		int32_t		p = st->pages_ready;

		for (int32_t il = 0; il < st->m->cfg.n_layer; il++)
		{
			size_t		slot = (size_t) il * st->n_pages + p;

			if (!st->k_pages[slot])
				st->k_pages[slot] = tl_alloc(page, sizeof(uint16_t));
			if (!st->v_pages[slot])
				st->v_pages[slot] = tl_alloc(page, sizeof(uint16_t));
			if (!st->k_pages[slot] || !st->v_pages[slot])
				return tl_fail(TL_ERR_NOMEM, "LLM state: no memory for the KV cache at position %d", upto);
		}
		st->pages_ready++;
	}
	return TL_OK;
}

static inline uint16_t *
tl_llm_k_at(const tl_llm_state *st, int il, int32_t pos)
{
	return st->k_pages[(size_t) il * st->n_pages + pos / TL_LLM_KV_PAGE] +
		(size_t) (pos % TL_LLM_KV_PAGE) * st->kv_dim;
}

static inline uint16_t *
tl_llm_v_at(const tl_llm_state *st, int il, int32_t pos)
{
	return st->v_pages[(size_t) il * st->n_pages + pos / TL_LLM_KV_PAGE] +
		(size_t) (pos % TL_LLM_KV_PAGE) * st->kv_dim;
}

/* ======================================================================
 * Forward pass
 * ====================================================================== */

/* y = x / sqrt(mean(x^2) + eps) * w, squares summed in double as ggml does */
static void
tl_llm_rmsnorm(float *y, const float *x, const float *w, int n, float eps)
{
	double		ss = 0.0;
	float		scale;

	for (int i = 0; i < n; i++)
		ss += (double) (x[i] * x[i]);
	scale = 1.0f / sqrtf((float) (ss / n) + eps);
	for (int i = 0; i < n; i++)
		y[i] = (x[i] * scale) * w[i];
}

/* The rotation angles of each token of the batch. */
static void
tl_llm_rope_angles(tl_llm_state *st, int32_t pos0, int32_t n)
{
	const tl_llm_config *c = &st->m->cfg;
	const float *ff = st->m->rope_factors;
	int			half = c->rope_dim / 2;
	float		theta_scale = powf(c->rope_base, -2.0f / (float) c->rope_dim);

	for (int32_t t = 0; t < n; t++)
	{
		float		theta = (float) (pos0 + t);

		for (int i = 0; i < half; i++)
		{
			float		angle = c->rope_freq_scale * (ff ? theta / ff[i] : theta);

			st->rope_cos[(size_t) t * half + i] = cosf(angle);
			st->rope_sin[(size_t) t * half + i] = sinf(angle);
			theta *= theta_scale;
		}
	}
}

/* Rotate n_heads heads of one token in place. */
static void
tl_llm_rope(const tl_llm_config *c, float *x, int n_heads, const float *cs, const float *sn)
{
	int			half = c->rope_dim / 2;

	for (int h = 0; h < n_heads; h++)
	{
		float	   *v = x + (size_t) h * c->head_dim;

		for (int i = 0; i < half; i++)
		{
			int			a = c->rope_style == TL_ROPE_ADJACENT ? 2 * i : i;
			int			b = c->rope_style == TL_ROPE_ADJACENT ? 2 * i + 1 : i + half;
			float		x0 = v[a],
						x1 = v[b];

			/* the multiply-adds fused as llama.cpp's build fuses them */
			v[a] = fmaf(x0, cs[i], -(x1 * sn[i]));
			v[b] = fmaf(x0, sn[i], x1 * cs[i]);
		}
	}
}

static void
tl_llm_add_bias(float *y, const float *b, int32_t n_tokens, int64_t width)
{
	if (!b)
		return;
	for (int32_t t = 0; t < n_tokens; t++)
		for (int64_t i = 0; i < width; i++)
			y[t * width + i] += b[i];
}

typedef struct tl_attn_job
{
	const tl_llm_state *st;
	int			layer;
	int32_t		pos0;			/* position of the batch's first token */
	float		scale;
	int			heads_per_item; /* query heads of one key/value head done together */
	int			splits;			/* items per (token, key/value head) */
	tl_f16_order order;			/* summation order of the half-precision products */
} tl_attn_job;

#define Min(a, b) ((a) < (b) ? (a) : (b))

/*
 * Attention for one token and up to a group of query heads that share a
 * key/value head, in llama.cpp's arithmetic (its default path, without
 * flash attention): scores K.q with q in half precision; a softmax of the
 * scaled scores with its exponential and its sum as llama.cpp forms them
 * (tl_vmath_exp_sum); probabilities rounded to half precision; values
 * summed in lanes by position.  Scores and values follow the summation
 * order of the batch (j->order).  Each head's numbers are the same however
 * heads are grouped into items, so results do not depend on the thread
 * count.  Cached rows are converted once per item and page.  Scratch is
 * the worker's slice of st->scores.  Runs on pool workers: no allocation,
 * no errors.
 */
static void
tl_llm_attention_task(void *arg, int64_t begin, int64_t end, int worker)
{
	const tl_attn_job *j = arg;
	const tl_llm_state *st = j->st;
	const tl_llm_config *c = &st->m->cfg;
	int			D = c->head_dim,
				group = c->n_head / c->n_head_kv,
				L = tl_f16_lanes(j->order);
	float	   *sc = st->scores + (size_t) worker * st->scores_per_worker;
	float	   *lanes = sc + (size_t) group * st->n_ctx;

	for (int64_t item = begin; item < end; item++)
	{
		int64_t		pair = item / j->splits;
		int32_t		t = (int32_t) (pair / c->n_head_kv);
		int			g = (int) (pair % c->n_head_kv);
		int			h0 = g * group + (int) (item % j->splits) * j->heads_per_item;
		int			nh = Min(j->heads_per_item, (g + 1) * group - h0);
		int32_t		n_pos = j->pos0 + t + 1;
		const float *q = st->q + ((size_t) t * c->n_head + h0) * D;

		/* scores, a page of cached keys at a time */
		for (int32_t p0 = 0; p0 < n_pos; p0 += TL_LLM_KV_PAGE)
			st->scores_f16(D, nh, q, tl_llm_k_at(st, j->layer, p0) + (size_t) g * D, st->kv_dim,
						   Min(TL_LLM_KV_PAGE, n_pos - p0), sc + p0, st->n_ctx, j->order);

		/* softmax per head, probabilities rounded to half precision */
		for (int h = 0; h < nh; h++)
		{
			float	   *s = sc + (size_t) h * st->n_ctx;
			float		mx = -INFINITY,
						inv;

			for (int32_t p = 0; p < n_pos; p++)
			{
				s[p] *= j->scale;
				if (s[p] > mx)
					mx = s[p];
			}
			inv = (float) (1.0 / tl_vmath_exp_sum(s, s, n_pos, mx));
			for (int32_t p = 0; p < n_pos; p++)
				s[p] *= inv;
			tl_quant_round_half(s, n_pos);
		}

		/* values, a page at a time, into L lanes per head */
		memset(lanes, 0, sizeof(float) * (size_t) nh * L * D);
		for (int32_t p0 = 0; p0 < n_pos; p0 += TL_LLM_KV_PAGE)
			st->mix_f16(D, nh, sc + p0, st->n_ctx, tl_llm_v_at(st, j->layer, p0) + (size_t) g * D,
						st->kv_dim, Min(TL_LLM_KV_PAGE, n_pos - p0), p0, lanes, j->order);
		for (int h = 0; h < nh; h++)
		{
			const float *l = lanes + (size_t) h * L * D;
			float	   *out = st->att + ((size_t) t * c->n_head + h0 + h) * D;

			for (int d = 0; d < D; d++)
				out[d] = tl_quant_f16_lanes_sum(l + d, (size_t) D, j->order);
		}
	}
}

/*
 * One layer for a batch of n tokens.  The feed-forward block runs for the
 * last ff_rows tokens only: in the last layer nothing but the last
 * token's output is read (and nothing at all when no logits are asked
 * for).  llama.cpp trims the last layer the same way, so its single-row
 * products there sum in the single-vector order (F16: tl_quant).
 */
static tl_status
tl_llm_layer_forward(tl_llm_state *st, int il, int32_t n, int32_t ff_rows)
{
	float	   *xs;
	const tl_llm_config *c = &st->m->cfg;
	const tl_llm_layer *L = &st->m->layers[il];
	int			E = c->n_embd,
				D = c->head_dim,
				QD = c->n_head * D,
				KD = st->kv_dim,
				F = c->n_ff,
				half = c->rope_dim / 2;
	tl_qmm_spec qkv[3] = {
		{st->q, L->wq.data, L->wq.type, QD},
		{st->k, L->wk.data, L->wk.type, KD},
		{st->v, L->wv.data, L->wv.type, KD},
	};
	tl_qmm_spec ffn[2] = {
		{st->gate, L->w_gate.data, L->w_gate.type, F},
		{st->up, L->w_up.data, L->w_up.type, F},
	};
	/*
	 * llama.cpp sums a batch's half-precision products in its tiled order
	 * and a single token's in its vector order (so a prompt of several
	 * tokens is never prefilled with a batch of one: tl_llm_prefill).
	 */
	tl_attn_job job = {st, il, st->n_past, 1.0f / sqrtf((float) D), 1, 1,
	n == 1 ? TL_F16_VEC : TL_F16_TILED};

	/* attention */
	for (int32_t t = 0; t < n; t++)
		tl_llm_rmsnorm(st->h + (size_t) t * E, st->x + (size_t) t * E, L->attn_norm, E, c->rms_eps);
	TL_TRACE(st, "attn_norm", il, st->h, n, E);
	TL_TRY(tl_quant_matmul_multi(qkv, 3, E, st->h, n));
	tl_llm_add_bias(st->q, L->bq, n, QD);
	tl_llm_add_bias(st->k, L->bk, n, KD);
	tl_llm_add_bias(st->v, L->bv, n, KD);
	for (int32_t t = 0; t < n; t++)
	{
		const float *cs = st->rope_cos + (size_t) t * half,
				   *sn = st->rope_sin + (size_t) t * half;

		tl_llm_rope(c, st->q + (size_t) t * QD, c->n_head, cs, sn);
		tl_llm_rope(c, st->k + (size_t) t * KD, c->n_head_kv, cs, sn);
		st->to_half(st->k + (size_t) t * KD, tl_llm_k_at(st, il, st->n_past + t), KD);
		st->to_half(st->v + (size_t) t * KD, tl_llm_v_at(st, il, st->n_past + t), KD);
	}
	TL_TRACE(st, "Qcur", il, st->q, n, QD);
	TL_TRACE(st, "Kcur", il, st->k, n, KD);
	TL_TRACE(st, "Vcur", il, st->v, n, KD);
	tl_quant_round_half(st->q, (int64_t) n * QD);
	/*
	 * A whole group of query heads per item shares the cached rows' loads;
	 * when that leaves fewer items than threads (decoding one token) the
	 * groups are split so every thread has work.
	 */
	{
		int			group = c->n_head / c->n_head_kv;
		int64_t		pairs = (int64_t) n * c->n_head_kv;

		job.splits = 1;
		while (job.splits < group && pairs * job.splits < 2 * tl_pool_threads())
			job.splits++;
		job.heads_per_item = (group + job.splits - 1) / job.splits;
		job.splits = (group + job.heads_per_item - 1) / job.heads_per_item;
		tl_pool_run(pairs * job.splits, 1, tl_llm_attention_task, &job);
	}
	TL_TRACE(st, "kqv_out", il, st->att, n, QD);
	TL_TRY(tl_quant_matmul(st->proj, L->wo.data, L->wo.type, E, QD, st->att, n));
	tl_llm_add_bias(st->proj, L->bo, n, E);
	TL_TRACE(st, "attn_out", il, st->proj, n, E);
	for (size_t i = 0; i < (size_t) n * E; i++)
		st->x[i] += st->proj[i];
	TL_TRACE(st, "ffn_inp", il, st->x, n, E);

	/* feed-forward, for the last `ff_rows` tokens of the batch */
	if (ff_rows == 0)
		return TL_OK;
	xs = st->x + (size_t) (n - ff_rows) * E;
	for (int32_t t = 0; t < ff_rows; t++)
		tl_llm_rmsnorm(st->h + (size_t) t * E, xs + (size_t) t * E, L->ffn_norm, E, c->rms_eps);
	TL_TRACE(st, "ffn_norm", il, st->h, ff_rows, E);
	TL_TRY(tl_quant_matmul_multi(ffn, 2, E, st->h, ff_rows));
	TL_TRACE(st, "ffn_gate", il, st->gate, ff_rows, F);
	TL_TRACE(st, "ffn_up", il, st->up, ff_rows, F);
	for (int32_t t = 0; t < ff_rows; t++)
		tl_vmath_swiglu(st->gate + (size_t) t * F, st->up + (size_t) t * F, F);
	TL_TRACE(st, "ffn_swiglu", il, st->gate, ff_rows, F);
	TL_TRY(tl_quant_matmul(st->proj, L->w_down.data, L->w_down.type, E, F, st->gate, ff_rows));
	TL_TRACE(st, "ffn_out", il, st->proj, ff_rows, E);
	for (size_t i = 0; i < (size_t) ff_rows * E; i++)
		xs[i] += st->proj[i];
	TL_TRACE(st, "l_out", il, xs, ff_rows, E);
	return TL_OK;
}

tl_status
tl_llm_eval(tl_llm_state *st, const int32_t *tokens, int32_t n, float *logits)
{
	const tl_llm_model *m;
	const tl_llm_config *c;
	const tl_qtype_traits *et;
	size_t		E;

	if (!st || !tokens)
		return tl_fail(TL_ERR_ARG, "LLM eval: missing state or tokens");
	m = st->m;
	c = &m->cfg;
	E = (size_t) c->n_embd;
	if (n < 1 || n > TL_LLM_BATCH)
		return tl_fail(TL_ERR_ARG, "LLM eval: %d tokens in one step (1..%d)", n, TL_LLM_BATCH);
	if (n > st->n_ctx - st->n_past)
		return tl_fail(TL_ERR_ARG, "LLM eval: %d more tokens do not fit: %d of %d positions are used",
					   n, st->n_past, st->n_ctx);
	for (int32_t t = 0; t < n; t++)
		if (tokens[t] < 0 || tokens[t] >= c->n_vocab)
			return tl_fail(TL_ERR_ARG, "LLM eval: token %d is outside the vocabulary (0..%d)",
						   tokens[t], c->n_vocab - 1);
	if (st->cuda)
	{
		TL_TRY(tl_llm_cuda_eval(st->cuda, tokens, n, st->n_past, logits));
		st->n_past += n;
		return TL_OK;
	}
	TL_TRY(tl_llm_reserve(st, st->n_past + n - 1));
	if (st->scores_rows < tl_pool_threads())
	{
		size_t		group = (size_t) (c->n_head / c->n_head_kv);

		tl_free(st->scores);
		st->scores_rows = 0;
		st->scores_per_worker = group * ((size_t) st->n_ctx + TL_F16_MAX_LANES * (size_t) c->head_dim);
		if (!(st->scores = tl_alloc((size_t) tl_pool_threads() * st->scores_per_worker, sizeof(float))))
			return tl_fail(TL_ERR_NOMEM, "LLM eval: no memory for attention scratch");
		st->scores_rows = tl_pool_threads();
	}

	et = tl_qtype_info(m->tok_embd.type);
	for (int32_t t = 0; t < n; t++)
		et->to_float((const uint8_t *) m->tok_embd.data +
					 (size_t) tokens[t] * tl_qtype_row_size(m->tok_embd.type, c->n_embd),
					 st->x + t * E, c->n_embd);
	TL_TRACE(st, "embd", -1, st->x, n, c->n_embd);
	tl_llm_rope_angles(st, st->n_past, n);

	for (int il = 0; il < c->n_layer; il++)
		TL_TRY(tl_llm_layer_forward(st, il, n, il < c->n_layer - 1 ? n : logits ? 1 : 0));

	if (logits)
	{
		tl_llm_rmsnorm(st->h, st->x + (size_t) (n - 1) * E, m->output_norm, c->n_embd, c->rms_eps);
		TL_TRACE(st, "result_norm", -1, st->h, 1, c->n_embd);
		TL_TRY(tl_quant_matvec(logits, m->output.data, m->output.type, c->n_vocab, c->n_embd, st->h));
		TL_TRACE(st, "result_output", -1, logits, 1, c->n_vocab);
	}
	st->n_past += n;
	return TL_OK;
}
