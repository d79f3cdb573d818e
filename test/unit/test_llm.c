/*
 * test_llm.c -- the LLM runtime (tl_llm.c, tl_generate.c) on tiny random
 * models written with gguf_writer.h and loaded from memory.
 *
 * 1. The forward pass against a plain reference written here from the
 *    computation tl_llm.h documents: weights dequantized, everything in
 *    double except that q, k, v and the attention probabilities go
 *    through half precision where the runtime rounds them (the F16
 *    cache, the query before K.q, the probabilities before V).  Both
 *    architectures (adjacent and half-split rotary pairs, Q/K/V biases),
 *    grouped-query, multi-query and plain attention, tied and untied
 *    output, linear rope scaling, a rope_freqs table, partial rotation.
 * 2. A batched prefill gives bitwise the logits of one token at a time,
 *    on one thread or two: batching and threads only group the work.
 * 3. Q8_0 and Q4_1 weights against the same reference, more loosely:
 *    activations are quantized to 8 bits for each product.
 * 4. A context over several KV pages still matches the reference, and a
 *    reset state forgets everything.
 * 5. Load and eval errors name the culprit and leave the state usable.
 * 6. Generation against a greedy loop over tl_llm_eval written here (with
 *    and without the repeat penalty); every finish reason is provoked.
 * 7. tl_utf8_clean against an independent validator.
 */
#include <stdbool.h>

#include "unit.h"
#include "gguf_writer.h"
#include "tl_llm.h"
#include "tl_pool.h"
#include "tl_quant.h"

#define ASSERT_MESSAGE_HAS(fragment) \
	do { if (!strstr(tl_last_error(), (fragment))) \
			fail_msg("message \"%s\" lacks \"%s\"", tl_last_error(), (fragment)); \
	} while (0)

/* ------------------------------------------------------ the vocabulary */

/*
 * Specials, the letters, then a few more: Ġ and Ċ are the byte
 * alphabet's space and newline; Ã and © stand for the bytes 0xC3 and
 * 0xA9, halves of "é", so generated text can hold broken UTF-8.
 */
enum
{
	T_IM_START, T_IM_END, T_ENDOFTEXT, T_A
};
static const char *const specials[] = {"<|im_start|>", "<|im_end|>", "<|endoftext|>"};
static const char *const extras[] = {
	"\xC4\xA0", "\xC4\x8A", ".", ",", "!", "th", "the", "\xC4\xA0the", "\xC3\x83", "\xC2\xA9",
};
static const char *const merges[] = {"t h", "th e", "\xC4\xA0 the"};
#define N_EXTRAS ((int) (sizeof(extras) / sizeof(extras[0])))
#define N_VOCAB (T_A + 26 + N_EXTRAS)
#define IS_LETTER(id) ((id) >= T_A && (id) < T_A + 26)

/* ------------------------------------------------------ a model in memory */

#define N_EMBD 64
#define N_FF 96
#define N_HEAD 4
#define HEAD_DIM (N_EMBD / N_HEAD)
#define N_LAYER 2

typedef struct model_opts
{
	const char *arch;			/* general.architecture */
	int			n_ctx;			/* context_length */
	int			n_head_kv;
	int			rope_dim;		/* 0: no rope.dimension_count key */
	float		rope_base;
	float		linear;			/* 0: no rope.scaling keys */
	float		eps;
	bool		rope_freqs;		/* write rope_freqs.weight */
	bool		untied;			/* write output.weight */
	tl_qtype	wtype;			/* the matrices' type */
	uint64_t	seed;
	/* output rows, to steer generation (untied only) */
	bool		mute_ends;		/* end tokens' rows zero: never the argmax */
	int			eos_from;		/* > 0: <|im_end|>'s row = 1.5 x this token's */
	int			twin;			/* > 0: this token's row = the next token's */
	/* damage, for the load errors */
	const char *omit;			/* a tensor left out */
	const char *misshape;		/* a matrix written with one row too many */
	const char *as_f16;			/* a vector written as F16 */
} model_opts;

static model_opts
default_opts(void)
{
	model_opts	o = {.arch = "llama", .n_ctx = 64, .n_head_kv = 2, .rope_base = 10000.0f,
	.eps = 1e-5f, .untied = true, .wtype = TL_QT_F32, .seed = 1};

	return o;
}

typedef struct tensor_spec
{
	char		name[48];
	int64_t		ne0,			/* columns (ggml's first dim) */
				ne1;			/* rows; 0 for a vector */
	tl_qtype	type;
	float	   *src;			/* the values drawn */
	float	   *deq;			/* what the file holds, read back as float */
	uint8_t    *bytes;
	size_t		size;
} tensor_spec;

#define MAX_TENSORS 40

typedef struct test_model
{
	model_opts	o;
	int			KD;				/* key/value width: n_head_kv * HEAD_DIM */
	int			R;				/* rope_dim in effect */
	int			n_t;
	tensor_spec t[MAX_TENSORS];
	uint8_t    *file;
	size_t		len;
	tl_llm_model *m;
} test_model;

/* A tensor of values mean + scale * N(0, 1); converted at the end. */
static tensor_spec *
add_tensor(test_model *tm, tl_rng *rng, const char *name, int64_t ne0, int64_t ne1,
		   tl_qtype type, float scale, float mean)
{
	tensor_spec *t = &tm->t[tm->n_t++];
	int64_t		n = ne0 * (ne1 ? ne1 : 1);

	assert_true(tm->n_t <= MAX_TENSORS);
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->ne0 = ne0;
	t->ne1 = ne1;
	t->type = type;
	t->src = malloc(sizeof(float) * (size_t) (n + ne0));	/* room for misshape */
	assert_non_null(t->src);
	for (int64_t i = 0; i < n; i++)
		t->src[i] = mean + scale * tl_rng_normal(rng);
	return t;
}

/* The file's values of a tensor (name may hold %d for the layer), or NULL. */
static const float *
weights(const test_model *tm, const char *fmt, int layer)
{
	char		name[48];

	snprintf(name, sizeof(name), fmt, layer);
	for (int i = 0; i < tm->n_t; i++)
		if (strcmp(tm->t[i].name, name) == 0)
			return tm->t[i].deq;
	return NULL;
}

static void
free_model(test_model *tm)
{
	tl_llm_free(tm->m);
	for (int i = 0; i < tm->n_t; i++)
	{
		free(tm->t[i].src);
		free(tm->t[i].deq);
		free(tm->t[i].bytes);
	}
	free(tm->file);
	memset(tm, 0, sizeof(*tm));
}

/* "<arch>.key" = a u32 (type GW_U32) or an f32 (GW_F32) */
static void
kv_arch(gw_buf *w, uint64_t *n_kv, const char *arch, const char *key, uint32_t type, double v)
{
	char		name[96];

	snprintf(name, sizeof(name), "%s.%s", arch, key);
	gw_key(w, name, type);
	if (type == GW_U32)
		gw_u32(w, (uint32_t) v);
	else
		gw_f32(w, (float) v);
	(*n_kv)++;
}

/*
 * Draw the weights, write the GGUF (tokenizer, hyperparameters, tensors
 * aligned to 32 bytes) and load it.  Returns tl_llm_load_memory's status;
 * tm is filled either way and must be freed.
 */
static tl_status
build_model(test_model *tm, const model_opts *o)
{
	static const struct
	{
		const char *suffix;
		char		rows,		/* E, Q(D), K(D) or F */
					cols;		/* the same, 0 for a vector */
		float		scale,
					mean;
	}			layer_tensors[] = {
		{"attn_norm.weight", 'E', 0, 0.1f, 1.0f}, {"attn_q.weight", 'Q', 'E', 0.2f, 0.0f},
		{"attn_k.weight", 'K', 'E', 0.2f, 0.0f}, {"attn_v.weight", 'K', 'E', 0.2f, 0.0f},
		{"attn_output.weight", 'E', 'Q', 0.1f, 0.0f}, {"attn_q.bias", 'Q', 0, 0.2f, 0.0f},
		{"attn_k.bias", 'K', 0, 0.2f, 0.0f}, {"attn_v.bias", 'K', 0, 0.2f, 0.0f},
		{"ffn_norm.weight", 'E', 0, 0.1f, 1.0f}, {"ffn_gate.weight", 'F', 'E', 0.15f, 0.0f},
		{"ffn_up.weight", 'F', 'E', 0.15f, 0.0f}, {"ffn_down.weight", 'E', 'F', 0.1f, 0.0f},
	};
	bool		qwen = strcmp(o->arch, "qwen2") == 0;
	tl_rng		rng;
	gw_buf		w = {0};
	uint64_t	n_kv = 7,
				offset = 0;
	char		name[48];

	memset(tm, 0, sizeof(*tm));
	tm->o = *o;
	tm->KD = o->n_head_kv * HEAD_DIM;
	tm->R = o->rope_dim ? o->rope_dim : HEAD_DIM;
	tl_rng_seed(&rng, o->seed);

	add_tensor(tm, &rng, "token_embd.weight", N_EMBD, N_VOCAB, o->wtype, 0.3f, 0.0f);
	add_tensor(tm, &rng, "output_norm.weight", N_EMBD, 0, TL_QT_F32, 0.1f, 1.0f);
	if (o->untied)
	{
		float	   *out = add_tensor(tm, &rng, "output.weight", N_EMBD, N_VOCAB, o->wtype, 0.2f, 0.0f)->src;

		for (int i = 0; i < N_EMBD; i++)
		{
			if (o->mute_ends)
				out[T_IM_END * N_EMBD + i] = out[T_ENDOFTEXT * N_EMBD + i] = 0.0f;
			if (o->eos_from > 0)
				out[T_IM_END * N_EMBD + i] = 1.5f * out[o->eos_from * N_EMBD + i];
			if (o->twin > 0)
				out[o->twin * N_EMBD + i] = out[(o->twin + 1) * N_EMBD + i];
		}
	}
	if (o->rope_freqs)
	{
		/* factors of 1 to about 5, as llama 3 divides its low frequencies */
		float	   *ff = add_tensor(tm, &rng, "rope_freqs.weight", tm->R / 2, 0, TL_QT_F32, 1.5f, 0.0f)->src;

		for (int i = 0; i < tm->R / 2; i++)
			ff[i] = 1.0f + fabsf(ff[i]);
	}
	for (int il = 0; il < N_LAYER; il++)
		for (size_t i = 0; i < sizeof(layer_tensors) / sizeof(layer_tensors[0]); i++)
		{
			char		r = layer_tensors[i].rows,
						c = layer_tensors[i].cols;
			int64_t		rows = r == 'E' ? N_EMBD : r == 'Q' ? N_EMBD : r == 'K' ? tm->KD : N_FF,
						cols = c == 'E' ? N_EMBD : c == 'Q' ? N_EMBD : c == 'F' ? N_FF : 0;

			if (strstr(layer_tensors[i].suffix, "bias") && !qwen)
				continue;
			snprintf(name, sizeof(name), "blk.%d.%s", il, layer_tensors[i].suffix);
			/* ggml's dims are [cols, rows] for a matrix, [n] for a vector */
			add_tensor(tm, &rng, name, cols ? cols : rows, cols ? rows : 0, cols ? o->wtype : TL_QT_F32,
					   layer_tensors[i].scale, layer_tensors[i].mean);
		}

	/* convert, and read back what the file holds as the reference's weights */
	for (int i = 0; i < tm->n_t; i++)
	{
		tensor_spec *t = &tm->t[i];

		if (o->misshape && strcmp(t->name, o->misshape) == 0)
			memset(t->src + t->ne0 * t->ne1++, 0, sizeof(float) * (size_t) t->ne0);
		if (o->as_f16 && strcmp(t->name, o->as_f16) == 0)
			t->type = TL_QT_F16;
		t->size = tl_qtype_row_size(t->type, t->ne0) * (size_t) (t->ne1 ? t->ne1 : 1);
		t->bytes = malloc(t->size);
		t->deq = malloc(sizeof(float) * (size_t) t->ne0 * (size_t) (t->ne1 ? t->ne1 : 1));
		assert_true(t->size > 0 && t->bytes && t->deq);
		tl_qtype_info(t->type)->from_float(t->src, t->bytes, t->ne0 * (t->ne1 ? t->ne1 : 1));
		tl_qtype_info(t->type)->to_float(t->bytes, t->deq, t->ne0 * (t->ne1 ? t->ne1 : 1));
	}

	gw_put(&w, "GGUF", 4);
	gw_u32(&w, 3);
	gw_u64(&w, (uint64_t) (tm->n_t - (o->omit ? 1 : 0)));
	gw_u64(&w, 0);				/* n_kv, patched below */
	gw_key(&w, "general.architecture", GW_STRING);
	gw_cstr(&w, o->arch);
	gw_key(&w, "tokenizer.ggml.model", GW_STRING);
	gw_cstr(&w, "gpt2");
	gw_key(&w, "tokenizer.ggml.pre", GW_STRING);
	gw_cstr(&w, "gpt2");
	gw_array(&w, "tokenizer.ggml.tokens", GW_STRING, N_VOCAB);
	for (int i = 0; i < N_VOCAB; i++)
	{
		char		letter[2] = {(char) ('a' + i - T_A), '\0'};

		gw_cstr(&w, i < T_A ? specials[i] : IS_LETTER(i) ? letter : extras[i - T_A - 26]);
	}
	gw_array(&w, "tokenizer.ggml.token_type", GW_I32, N_VOCAB);
	for (int i = 0; i < N_VOCAB; i++)
		gw_u32(&w, i < T_A ? 3 : 1);
	gw_array(&w, "tokenizer.ggml.merges", GW_STRING, sizeof(merges) / sizeof(merges[0]));
	for (size_t i = 0; i < sizeof(merges) / sizeof(merges[0]); i++)
		gw_cstr(&w, merges[i]);
	gw_key(&w, "tokenizer.ggml.eos_token_id", GW_U32);
	gw_u32(&w, T_IM_END);
	kv_arch(&w, &n_kv, o->arch, "context_length", GW_U32, o->n_ctx);
	kv_arch(&w, &n_kv, o->arch, "embedding_length", GW_U32, N_EMBD);
	kv_arch(&w, &n_kv, o->arch, "block_count", GW_U32, N_LAYER);
	kv_arch(&w, &n_kv, o->arch, "feed_forward_length", GW_U32, N_FF);
	kv_arch(&w, &n_kv, o->arch, "attention.head_count", GW_U32, N_HEAD);
	kv_arch(&w, &n_kv, o->arch, "attention.head_count_kv", GW_U32, o->n_head_kv);
	kv_arch(&w, &n_kv, o->arch, "attention.layer_norm_rms_epsilon", GW_F32, o->eps);
	kv_arch(&w, &n_kv, o->arch, "rope.freq_base", GW_F32, o->rope_base);
	if (o->rope_dim)
		kv_arch(&w, &n_kv, o->arch, "rope.dimension_count", GW_U32, o->rope_dim);
	if (o->linear > 0.0f)
	{
		snprintf(name, sizeof(name), "%s.rope.scaling.type", o->arch);
		gw_key(&w, name, GW_STRING);
		gw_cstr(&w, "linear");
		n_kv++;
		kv_arch(&w, &n_kv, o->arch, "rope.scaling.factor", GW_F32, o->linear);
	}
	put_le64(w.p + 16, n_kv);

	for (int pass = 0; pass < 2; pass++)	/* the tensor infos, then the data */
	{
		if (pass)
			gw_pad(&w, 32);
		for (int i = 0; i < tm->n_t; i++)
		{
			tensor_spec *t = &tm->t[i];

			if (o->omit && strcmp(t->name, o->omit) == 0)
				continue;
			if (pass)
			{
				gw_put(&w, t->bytes, t->size);
				gw_pad(&w, 32);
				continue;
			}
			gw_cstr(&w, t->name);
			gw_u32(&w, t->ne1 ? 2 : 1);
			gw_u64(&w, (uint64_t) t->ne0);
			if (t->ne1)
				gw_u64(&w, (uint64_t) t->ne1);
			gw_u32(&w, (uint32_t) t->type);
			gw_u64(&w, offset);
			offset += (t->size + 31) / 32 * 32;
		}
	}
	tm->file = copy_exact(w.p, w.len);
	tm->len = w.len;
	free(w.p);
	return tl_llm_load_memory(&tm->m, tm->file, tm->len);
}

static void
load_model(test_model *tm, model_opts o)
{
	ASSERT_OK(build_model(tm, &o));
}

/* ------------------------------------------------------ the reference */

static void
ref_rmsnorm(double *y, const double *x, const float *w, double eps)
{
	double		ss = 0.0;

	for (int i = 0; i < N_EMBD; i++)
		ss += x[i] * x[i];
	for (int i = 0; i < N_EMBD; i++)
		y[i] = x[i] / sqrt(ss / N_EMBD + eps) * w[i];
}

/* y = W x (+ b) for W (rows, cols) row-major */
static void
ref_linear(double *y, const float *W, const float *b, const double *x, int rows, int cols)
{
	for (int r = 0; r < rows; r++)
	{
		y[r] = b ? b[r] : 0.0;
		for (int c = 0; c < cols; c++)
			y[r] += (double) W[(size_t) r * cols + c] * x[c];
	}
}

/* theta_i = pos * base^(-2i/rope_dim) * freq_scale / factor_i */
static void
ref_rope(const test_model *tm, double *x, int n_heads, int pos)
{
	const float *ff = weights(tm, "rope_freqs.weight", 0);
	double		scale = tm->o.linear > 0.0f ? 1.0 / tm->o.linear : 1.0;
	int			half = tm->R / 2;
	bool		halves = strcmp(tm->o.arch, "qwen2") == 0;

	for (int h = 0; h < n_heads; h++)
		for (int i = 0; i < half; i++)
		{
			double	   *v = x + h * HEAD_DIM;
			double		theta = pos * pow(tm->o.rope_base, -2.0 * i / tm->R) * scale / (ff ? ff[i] : 1.0);
			int			a = halves ? i : 2 * i,
						b = halves ? i + half : 2 * i + 1;
			double		x0 = v[a],
						x1 = v[b];

			v[a] = x0 * cos(theta) - x1 * sin(theta);
			v[b] = x0 * sin(theta) + x1 * cos(theta);
		}
}

static double
to_half(double v)
{
	return tl_fp16_to_f32(tl_f32_to_fp16((float) v));
}

/* Logits (n, N_VOCAB) of every position of the sequence; malloc'ed. */
static double *
ref_forward(const test_model *tm, const int32_t *tokens, int n)
{
	int			KD = tm->KD,
				group = N_HEAD / tm->o.n_head_kv;
	double	   *logits = malloc(sizeof(double) * (size_t) n * N_VOCAB),
			   *kc = malloc(sizeof(double) * (size_t) N_LAYER * n * KD),
			   *vc = malloc(sizeof(double) * (size_t) N_LAYER * n * KD),
			   *sc = malloc(sizeof(double) * (size_t) n);
	double		x[N_EMBD],
				h[N_EMBD],
				y[N_EMBD],
				q[N_EMBD],
				a[N_EMBD],
				g[N_FF],
				u[N_FF];
	const float *embd = weights(tm, "token_embd.weight", 0),
			   *out = weights(tm, "output.weight", 0);

	assert_true(logits && kc && vc && sc);
	for (int pos = 0; pos < n; pos++)
	{
		for (int i = 0; i < N_EMBD; i++)
			x[i] = embd[(size_t) tokens[pos] * N_EMBD + i];
		for (int l = 0; l < N_LAYER; l++)
		{
			double	   *K = kc + (size_t) l * n * KD,	/* (n, KD) of the layer */
					   *V = vc + (size_t) l * n * KD;

			ref_rmsnorm(h, x, weights(tm, "blk.%d.attn_norm.weight", l), tm->o.eps);
			ref_linear(q, weights(tm, "blk.%d.attn_q.weight", l), weights(tm, "blk.%d.attn_q.bias", l), h, N_EMBD, N_EMBD);
			ref_linear(K + pos * KD, weights(tm, "blk.%d.attn_k.weight", l), weights(tm, "blk.%d.attn_k.bias", l), h, KD, N_EMBD);
			ref_linear(V + pos * KD, weights(tm, "blk.%d.attn_v.weight", l), weights(tm, "blk.%d.attn_v.bias", l), h, KD, N_EMBD);
			ref_rope(tm, q, N_HEAD, pos);
			ref_rope(tm, K + pos * KD, tm->o.n_head_kv, pos);
			/* where the runtime keeps half precision */
			for (int i = 0; i < N_EMBD; i++)
				q[i] = to_half(q[i]);
			for (int i = 0; i < KD; i++)
				K[pos * KD + i] = to_half(K[pos * KD + i]), V[pos * KD + i] = to_half(V[pos * KD + i]);
			/* head hh reads key/value head hh / group; causal softmax */
			for (int hh = 0; hh < N_HEAD; hh++)
			{
				int			kv = hh / group * HEAD_DIM;
				double		mx = -INFINITY,
							sum = 0.0;

				for (int p = 0; p <= pos; p++)
				{
					sc[p] = 0.0;
					for (int d = 0; d < HEAD_DIM; d++)
						sc[p] += q[hh * HEAD_DIM + d] * K[p * KD + kv + d] / sqrt(HEAD_DIM);
					mx = fmax(mx, sc[p]);
				}
				for (int p = 0; p <= pos; p++)
					sum += (sc[p] = exp(sc[p] - mx));
				for (int p = 0; p <= pos; p++)
					sc[p] = to_half(sc[p] / sum);	/* as are the probabilities */
				for (int d = 0; d < HEAD_DIM; d++)
				{
					a[hh * HEAD_DIM + d] = 0.0;
					for (int p = 0; p <= pos; p++)
						a[hh * HEAD_DIM + d] += sc[p] * V[p * KD + kv + d];
				}
			}
			ref_linear(y, weights(tm, "blk.%d.attn_output.weight", l), NULL, a, N_EMBD, N_EMBD);
			for (int i = 0; i < N_EMBD; i++)
				x[i] += y[i];
			ref_rmsnorm(h, x, weights(tm, "blk.%d.ffn_norm.weight", l), tm->o.eps);
			ref_linear(g, weights(tm, "blk.%d.ffn_gate.weight", l), NULL, h, N_FF, N_EMBD);
			ref_linear(u, weights(tm, "blk.%d.ffn_up.weight", l), NULL, h, N_FF, N_EMBD);
			for (int i = 0; i < N_FF; i++)
				g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
			ref_linear(y, weights(tm, "blk.%d.ffn_down.weight", l), NULL, g, N_EMBD, N_FF);
			for (int i = 0; i < N_EMBD; i++)
				x[i] += y[i];
		}
		ref_rmsnorm(h, x, weights(tm, "output_norm.weight", 0), tm->o.eps);
		ref_linear(logits + (size_t) pos * N_VOCAB, out ? out : embd, NULL, h, N_VOCAB, N_EMBD);
	}
	free(kc);
	free(vc);
	free(sc);
	return logits;
}

/*
 * Tolerances, relative to the reference's largest |logit|.
 *
 * F32: the arithmetic agrees to about 1e-7, but a value that the runtime
 * computes in float and the reference in double now and then falls on
 * the other side of a half-precision rounding boundary (a key, a value,
 * a query or a probability), and one cached key moved by a whole f16
 * step shifts the logits after it by up to ~8e-4: over 246 random
 * models the worst position was at 4e-5 in the median model and 8.4e-4
 * at most.  Such flips are rare, so most positions agree to float
 * rounding: the median position over all the F32 cases stayed below
 * 2.2e-6 over 20 draws of them, while leaving out one of the runtime's
 * roundings (the query, or the probabilities) puts it above 2.6e-4.
 * Errors of substance (a rotation, a head grouping, a scale) are orders
 * of magnitude above both bounds.
 *
 * Quantized: activations are rounded to 8 bits for every product (Q8_1
 * with block sums in half precision for Q4_1, as ggml does), which costs
 * about 2% at the median position and up to ~8% at the worst (of 164
 * models); wrong blocks or types give errors of order 1.
 */
#define RTOL_F32 2e-3
#define RTOL_F32_MEDIAN 2e-5
#define RTOL_QUANT 0.15

/* max |got - want| relative to max |want| */
static double
rel_error(const float *got, const double *want)
{
	double		err = 0.0,
				mag = 0.0;

	for (int i = 0; i < N_VOCAB; i++)
	{
		err = fmax(err, fabs(got[i] - want[i]));
		mag = fmax(mag, fabs(want[i]));
	}
	return err / mag;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

static void
random_tokens(int32_t *tokens, int n, uint64_t seed)
{
	tl_rng		rng;

	tl_rng_seed(&rng, seed);
	for (int i = 0; i < n; i++)
		tokens[i] = (int32_t) tl_rng_below(&rng, N_VOCAB);
}

/*
 * Feed n tokens in batches of `batch`; the logits of the last token.
 * With batch > 1 no batch is a lone token (which sums attention in the
 * single-token order): a remainder of one joins the batch before it.
 */
static void
feed(tl_llm_state *st, const int32_t *tokens, int n, int batch, float *logits)
{
	for (int at = 0, b; at < n; at += b)
	{
		b = batch < n - at ? batch : n - at;
		if (batch > 1 && n - at - b == 1)
			b = b < TL_LLM_BATCH ? b + 1 : b - 1;
		ASSERT_OK(tl_llm_eval(st, tokens + at, b, at + b == n ? logits : NULL));
	}
}

/* ======================================================================
 * 1. The forward pass against the reference, F32 weights
 * ====================================================================== */

#define SEQ 20

/*
 * Feed SEQ tokens one at a time: every position's logits within rtol.
 * Each position's error is appended to errs (if not NULL).
 */
static double
check_against_reference(const test_model *tm, double rtol, uint64_t token_seed, double *errs)
{
	tl_llm_state *st;
	int32_t		tokens[SEQ];
	float		logits[N_VOCAB];
	double	   *want,
				worst = 0.0;

	random_tokens(tokens, SEQ, token_seed);
	want = ref_forward(tm, tokens, SEQ);
	ASSERT_OK(tl_llm_state_new(&st, tm->m, tm->o.n_ctx));
	for (int pos = 0; pos < SEQ; pos++)
	{
		double		e;

		ASSERT_OK(tl_llm_eval(st, &tokens[pos], 1, logits));
		e = rel_error(logits, want + (size_t) pos * N_VOCAB);
		if (e > rtol)
			fail_msg("%s: position %d: relative error %.3g > %.3g", tm->o.arch, pos, e, rtol);
		worst = fmax(worst, e);
		if (errs)
			errs[pos] = e;
	}
	assert_int_equal(tl_llm_state_n_past(st), SEQ);
	tl_llm_state_free(st);
	free(want);
	return worst;
}

static void
test_forward_reference(void **state)
{
	static const struct
	{
		const char *what,
				   *arch;
		bool		untied;
		int			n_head_kv;
		float		linear;
		bool		rope_freqs;
		int			rope_dim;
	}			cases[] = {
		{"llama GQA untied", "llama", true, 2, 0.0f, false, 0},
		{"llama GQA tied, freqs, x2", "llama", false, 2, 2.0f, true, 0},
		{"llama MQA, partial rope", "llama", true, 1, 0.0f, false, 8},
		{"llama MHA tied", "llama", false, 4, 0.0f, false, 0},
		{"qwen2 GQA untied, x4", "qwen2", true, 2, 4.0f, false, 0},
		{"qwen2 tied, freqs, partial", "qwen2", false, 2, 0.0f, true, 8},
	};
#define N_CASES ((int) (sizeof(cases) / sizeof(cases[0])))
	double		errs[N_CASES * SEQ];

	for (int i = 0; i < N_CASES; i++)
	{
		model_opts	o = default_opts();
		test_model	tm;
		const tl_llm_config *c;
		int64_t		n_params = 0;
		bool		qwen = strcmp(cases[i].arch, "qwen2") == 0;

		o.arch = cases[i].arch;
		o.untied = cases[i].untied;
		o.n_head_kv = cases[i].n_head_kv;
		o.linear = cases[i].linear;
		o.rope_freqs = cases[i].rope_freqs;
		o.rope_dim = cases[i].rope_dim;
		o.eps = i % 2 ? 1e-6f : 1e-5f;
		o.rope_base = i % 2 ? 1000000.0f : 10000.0f;
		o.seed = 100 + i;
		load_model(&tm, o);

		/* what the loader read */
		c = tl_llm_config_of(tm.m);
		assert_string_equal(c->arch_name, o.arch);
		assert_true(c->n_vocab == N_VOCAB && c->n_ctx_train == o.n_ctx && c->n_embd == N_EMBD &&
					c->n_layer == N_LAYER && c->n_head == N_HEAD && c->n_head_kv == o.n_head_kv &&
					c->head_dim == HEAD_DIM && c->n_ff == N_FF && c->rope_dim == tm.R);
		assert_int_equal(c->rope_style, qwen ? TL_ROPE_HALVES : TL_ROPE_ADJACENT);
		assert_true(c->rope_base == o.rope_base && c->rms_eps == o.eps);
		assert_true(c->rope_freq_scale == (o.linear > 0.0f ? 1.0f / o.linear : 1.0f));
		assert_true(c->rope_freq_factors == o.rope_freqs && c->tied_embeddings == !o.untied);
		assert_int_equal(c->qkv_bias, qwen);
		for (int t = 0; t < tm.n_t; t++)
			n_params += tm.t[t].ne0 * (tm.t[t].ne1 ? tm.t[t].ne1 : 1);
		assert_int_equal(c->n_params, n_params);
		assert_int_equal(tl_tokenizer_n_vocab(tl_llm_tokenizer(tm.m)), N_VOCAB);
		/* <|im_end|> by its id, <|endoftext|> by its text */
		assert_true(tl_llm_is_end(tm.m, T_IM_END) && tl_llm_is_end(tm.m, T_ENDOFTEXT));
		assert_false(tl_llm_is_end(tm.m, T_IM_START) || tl_llm_is_end(tm.m, T_A));

		print_message("  %-28s max relative error %.2e\n", cases[i].what,
					  check_against_reference(&tm, RTOL_F32, 7 + i, errs + i * SEQ));
		free_model(&tm);
	}
	qsort(errs, N_CASES * SEQ, sizeof(double), cmp_double);
	print_message("  median over all positions   %.2e\n", errs[N_CASES * SEQ / 2]);
	if (errs[N_CASES * SEQ / 2] > RTOL_F32_MEDIAN)
		fail_msg("median relative error %.3g > %.3g", errs[N_CASES * SEQ / 2], RTOL_F32_MEDIAN);
}

/* ======================================================================
 * 2. A prompt's numbers do not depend on how it is split into batches
 * ====================================================================== */

/*
 * Batches of two or more tokens give every token the same bits however
 * the prompt is split and on any number of threads.  Tokens fed one at a
 * time sum attention (and F16 products) in the single-token order
 * (llama.cpp's split, see tl_llm_eval): their own bits, the same on any
 * number of threads, and within rounding of the batched ones.
 */
static void
test_batch_splits(void **state)
{
	int			threads = tl_pool_threads();

	for (int a = 0; a < 3; a++)
	{
		model_opts	o = default_opts();
		test_model	tm;
		int32_t		tokens[TL_LLM_BATCH];
		float		batched[N_VOCAB],
					whole[N_VOCAB],
					pairs[N_VOCAB],
					single[N_VOCAB],
					first13[N_VOCAB],
					split13[N_VOCAB],
					one_thread[N_VOCAB],
					one_thread_single[N_VOCAB];
		double		whole_d[N_VOCAB];

		o.arch = a == 1 ? "qwen2" : "llama";
		o.wtype = a == 2 ? TL_QT_F16 : TL_QT_F32;	/* F16: products whose order follows the batch too */
		o.seed = 200 + a;
		load_model(&tm, o);
		random_tokens(tokens, TL_LLM_BATCH, 300 + a);
		for (int nt = 1; nt <= 2; nt++)
		{
			tl_llm_state *st;

			/* 13 (on one thread), then 7 and 44 */
			tl_pool_set_threads(1);
			ASSERT_OK(tl_llm_state_new(&st, tm.m, o.n_ctx));
			ASSERT_OK(tl_llm_eval(st, tokens, 13, first13));
			tl_pool_set_threads(nt);
			ASSERT_OK(tl_llm_eval(st, tokens + 13, 7, NULL));
			ASSERT_OK(tl_llm_eval(st, tokens + 20, TL_LLM_BATCH - 20, batched));
			tl_llm_state_free(st);
			/* all 64 at once */
			ASSERT_OK(tl_llm_state_new(&st, tm.m, o.n_ctx));
			feed(st, tokens, TL_LLM_BATCH, TL_LLM_BATCH, whole);
			tl_llm_state_free(st);
			/* 6 and 7, then pairs */
			ASSERT_OK(tl_llm_state_new(&st, tm.m, o.n_ctx));
			ASSERT_OK(tl_llm_eval(st, tokens, 6, NULL));
			ASSERT_OK(tl_llm_eval(st, tokens + 6, 7, split13));
			feed(st, tokens + 13, TL_LLM_BATCH - 13, 2, pairs);
			tl_llm_state_free(st);
			/* one at a time */
			ASSERT_OK(tl_llm_state_new(&st, tm.m, o.n_ctx));
			feed(st, tokens, TL_LLM_BATCH, 1, single);
			tl_llm_state_free(st);

			assert_memory_equal(first13, split13, sizeof(single));
			assert_memory_equal(batched, whole, sizeof(single));
			assert_memory_equal(pairs, whole, sizeof(single));
			for (int i = 0; i < N_VOCAB; i++)
				whole_d[i] = whole[i];
			if (rel_error(single, whole_d) > RTOL_F32)
				fail_msg("one token at a time is further from the batch than rounding");
			if (nt == 1)
			{
				memcpy(one_thread, whole, sizeof(whole));
				memcpy(one_thread_single, single, sizeof(single));
			}
			else
			{
				assert_memory_equal(one_thread, whole, sizeof(whole));
				assert_memory_equal(one_thread_single, single, sizeof(single));
			}
		}
		free_model(&tm);
	}
	tl_pool_set_threads(threads);
}

/*
 * How tl_generate splits a prompt: whole, batches of at most
 * TL_LLM_BATCH, and no lone token unless the prompt is one token.
 */
static void
test_prefill_chunks(void **state)
{
	for (int32_t len = 1; len <= 5 * TL_LLM_BATCH + 3; len++)
	{
		int32_t		done = 0;

		while (done < len)
		{
			int32_t		k = tl_llm_prefill_chunk(len - done);

			if (k < 1 || k > TL_LLM_BATCH || (k == 1 && len > 1))
				fail_msg("a prompt of %d tokens: a batch of %d after %d", len, k, done);
			done += k;
		}
		assert_int_equal(done, len);
	}
}

/* ======================================================================
 * 3. Quantized weights
 * ====================================================================== */

static void
test_quantized_weights(void **state)
{
	static const tl_qtype types[] = {TL_QT_Q8_0, TL_QT_Q4_1};

	for (int i = 0; i < 4; i++)
	{
		model_opts	o = default_opts();
		test_model	tm;
		const tl_gguf_tensor *t;

		o.wtype = types[i / 2];
		o.arch = i % 2 ? "qwen2" : "llama";
		o.untied = i == 0 || i == 3;
		o.seed = 400 + i;
		load_model(&tm, o);
		/* the file really holds the quantized type */
		t = tl_gguf_find_tensor(tl_llm_gguf(tm.m), "blk.1.ffn_down.weight");
		assert_true(t && t->type == o.wtype);
		print_message("  %-5s %-5s %-7s max relative error %.2e\n", tl_qtype_name(o.wtype), o.arch,
					  o.untied ? "untied" : "tied", check_against_reference(&tm, RTOL_QUANT, 9 + i, NULL));
		free_model(&tm);
	}
}

/* ======================================================================
 * 4. A context over several KV pages
 * ====================================================================== */

#define LONG 300
#define CHUNK 50				/* batches that straddle page boundaries */

static void
test_kv_pages(void **state)
{
	model_opts	o = default_opts();
	test_model	tm;
	tl_llm_state *st,
			   *fresh;
	int32_t		tokens[LONG],
				other[10];
	float		got[N_VOCAB],
				again[N_VOCAB],
				short1[N_VOCAB],
				short2[N_VOCAB];
	double	   *want,
				worst = 0.0;

	assert_true(LONG > TL_LLM_KV_PAGE && TL_LLM_KV_PAGE % CHUNK != 0 && LONG % CHUNK == 0);
	o.n_ctx = 512;
	o.arch = "qwen2";
	o.seed = 500;
	load_model(&tm, o);
	random_tokens(tokens, LONG, 501);
	random_tokens(other, 10, 502);
	want = ref_forward(&tm, tokens, LONG);

	/* the last logits of each batch against the reference */
	ASSERT_OK(tl_llm_state_new(&st, tm.m, o.n_ctx));
	for (int at = 0; at < LONG; at += CHUNK)
	{
		double		e;

		ASSERT_OK(tl_llm_eval(st, tokens + at, CHUNK, got));
		e = rel_error(got, want + (size_t) (at + CHUNK - 1) * N_VOCAB);
		if (e > RTOL_F32)
			fail_msg("position %d: relative error %.3g", at + CHUNK - 1, e);
		worst = fmax(worst, e);
	}
	print_message("  %d positions, max relative error %.2e\n", LONG, worst);
	assert_int_equal(tl_llm_state_n_past(st), LONG);

	/* reset, then batches of another size: the same logits */
	tl_llm_state_reset(st);
	assert_int_equal(tl_llm_state_n_past(st), 0);
	feed(st, tokens, LONG, 7, again);
	assert_memory_equal(got, again, sizeof(got));
	/*
	 * rewind into the cache (across a page boundary) and continue with
	 * other tokens: the logits equal a fresh state fed the whole sequence,
	 * bit for bit (what reusing a shared prompt prefix relies on)
	 */
	{
		int32_t		mixed[LONG];
		float		cont[N_VOCAB],
					whole[N_VOCAB];
		tl_llm_state *other_st;
		int			keep = TL_LLM_KV_PAGE + 7;

		memcpy(mixed, tokens, sizeof(int32_t) * keep);
		random_tokens(mixed + keep, LONG - keep, 503);
		ASSERT_OK(tl_llm_state_rewind(st, keep));
		assert_int_equal(tl_llm_state_n_past(st), keep);
		feed(st, mixed + keep, LONG - keep, 37, cont);
		ASSERT_OK(tl_llm_state_new(&other_st, tm.m, o.n_ctx));
		feed(other_st, mixed, LONG, 64, whole);
		assert_memory_equal(cont, whole, sizeof(cont));
		assert_int_equal(tl_llm_state_rewind(st, LONG + 1), TL_ERR_ARG);
		assert_int_equal(tl_llm_state_rewind(st, -1), TL_ERR_ARG);
		tl_llm_state_free(other_st);
	}

	/* reset, and a short other sequence: nothing of the old one is seen */
	tl_llm_state_reset(st);
	feed(st, other, 10, 10, short1);
	ASSERT_OK(tl_llm_state_new(&fresh, tm.m, o.n_ctx));
	feed(fresh, other, 10, 10, short2);
	assert_memory_equal(short1, short2, sizeof(short1));

	tl_llm_state_free(fresh);
	tl_llm_state_free(st);
	free(want);
	free_model(&tm);
}

/* ======================================================================
 * 5. Errors
 * ====================================================================== */

static void
expect_load_error(model_opts o, tl_status code, const char *fragment, const char *fragment2)
{
	test_model	tm;

	ASSERT_FAILS(code, build_model(&tm, &o));
	assert_null(tm.m);
	ASSERT_MESSAGE_HAS(fragment);
	ASSERT_MESSAGE_HAS(fragment2);
	free_model(&tm);
}

static void
test_errors(void **state)
{
	model_opts	o;
	test_model	tm;
	tl_llm_state *st,
			   *st2;
	int32_t		tokens[TL_LLM_BATCH + 1];
	float		logits[N_VOCAB],
				logits2[N_VOCAB];
	char		what[32];

	o = default_opts(), o.arch = "gpt2";
	expect_load_error(o, TL_ERR_UNAVAILABLE, "\"gpt2\"", "not supported");
	o = default_opts(), o.omit = "blk.1.ffn_up.weight";
	expect_load_error(o, TL_ERR_ARG, "blk.1.ffn_up.weight", "missing");
	o = default_opts(), o.omit = "output_norm.weight";
	expect_load_error(o, TL_ERR_ARG, "output_norm.weight", "missing");
	o = default_opts(), o.arch = "qwen2", o.omit = "blk.0.attn_v.bias";
	expect_load_error(o, TL_ERR_ARG, "blk.0.attn_v.bias", "missing");
	o = default_opts(), o.misshape = "blk.0.attn_k.weight";
	expect_load_error(o, TL_ERR_ARG, "blk.0.attn_k.weight", "shape");
	o = default_opts(), o.as_f16 = "blk.1.ffn_norm.weight";
	expect_load_error(o, TL_ERR_UNAVAILABLE, "blk.1.ffn_norm.weight", "F32");
	o = default_opts(), o.n_head_kv = 3;
	expect_load_error(o, TL_ERR_ARG, "4 heads", "3 key/value heads");

	/* a good model, and states refusing what does not fit */
	o = default_opts(), o.n_ctx = 16;
	load_model(&tm, o);
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_state_new(&st, tm.m, 17));
	assert_null(st);
	ASSERT_MESSAGE_HAS("17");
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_state_new(&st, tm.m, 0));
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_state_new(&st, NULL, 8));
	ASSERT_OK(tl_llm_state_new(&st, tm.m, 8));
	assert_int_equal(tl_llm_state_n_ctx(st), 8);
	assert_ptr_equal(tl_llm_state_model(st), tm.m);
	random_tokens(tokens, TL_LLM_BATCH + 1, 600);

	tokens[2] = N_VOCAB;
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_eval(st, tokens, 3, logits));
	snprintf(what, sizeof(what), "token %d", N_VOCAB);
	ASSERT_MESSAGE_HAS(what);
	tokens[2] = -1;
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_eval(st, tokens, 3, logits));
	ASSERT_MESSAGE_HAS("token -1");
	tokens[2] = T_A;
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_eval(st, tokens, 0, logits));
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_eval(st, tokens, TL_LLM_BATCH + 1, logits));
	snprintf(what, sizeof(what), "%d tokens", TL_LLM_BATCH + 1);
	ASSERT_MESSAGE_HAS(what);
	assert_int_equal(tl_llm_state_n_past(st), 0);

	/* 5 fit, 4 more do not, 3 more do: as if the failure never happened */
	ASSERT_OK(tl_llm_eval(st, tokens, 5, NULL));
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_eval(st, tokens + 5, 4, logits));
	ASSERT_MESSAGE_HAS("5 of 8");
	assert_int_equal(tl_llm_state_n_past(st), 5);
	ASSERT_OK(tl_llm_eval(st, tokens + 5, 3, logits));
	assert_int_equal(tl_llm_state_n_past(st), 8);
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_eval(st, tokens, 1, NULL));
	ASSERT_OK(tl_llm_state_new(&st2, tm.m, 8));
	ASSERT_OK(tl_llm_eval(st2, tokens, 5, NULL));
	ASSERT_OK(tl_llm_eval(st2, tokens + 5, 3, logits2));
	assert_memory_equal(logits, logits2, sizeof(logits));

	tl_llm_state_free(st2);
	tl_llm_state_free(st);
	free_model(&tm);
	tl_llm_free(NULL);
	tl_llm_state_free(NULL);
}

/* ======================================================================
 * 6. Generation
 * ====================================================================== */

#define GEN_MAX 30

static const int32_t prompt[] = {T_IM_START, T_A + 7, T_A + 4, T_A + 11, T_A + 11};
#define N_PROMPT ((int32_t) (sizeof(prompt) / sizeof(prompt[0])))

/*
 * The greedy continuation of the prompt by tl_llm_eval and an argmax
 * written here (the lowest id among equals), after llama.cpp's repeat
 * penalty over the last last_n tokens when penalty != 1.  Stops before
 * an end token (*ended) unless through_end, or at max tokens.
 */
static int
greedy_by_eval(const test_model *tm, int max, float penalty, int last_n, bool through_end,
			   int32_t *out, bool *ended)
{
	tl_llm_state *st;
	int32_t		hist[N_PROMPT + GEN_MAX];
	float		logits[N_VOCAB];
	int			n = 0,
				n_hist = N_PROMPT;

	*ended = false;
	memcpy(hist, prompt, sizeof(prompt));
	ASSERT_OK(tl_llm_state_new(&st, tm->m, tm->o.n_ctx));
	ASSERT_OK(tl_llm_eval(st, prompt, N_PROMPT, logits));
	while (n < max)
	{
		int32_t		best = 0;

		for (int32_t id = 0; id < N_VOCAB && penalty != 1.0f; id++)
			for (int j = n_hist > last_n ? n_hist - last_n : 0; j < n_hist; j++)
				if (hist[j] == id)
				{
					logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty;
					break;
				}
		for (int32_t id = 1; id < N_VOCAB; id++)
			if (logits[id] > logits[best])
				best = id;
		if (!through_end && tl_llm_is_end(tm->m, best))
		{
			*ended = true;
			break;
		}
		out[n++] = hist[n_hist++] = best;
		if (n < max)
			ASSERT_OK(tl_llm_eval(st, &best, 1, logits));
	}
	tl_llm_state_free(st);
	return n;
}

static tl_generation
generate(const test_model *tm, int n_ctx, const tl_generate_params *p)
{
	tl_llm_state *st;
	tl_generation g;

	ASSERT_OK(tl_llm_state_new(&st, tm->m, n_ctx));
	ASSERT_OK(tl_llm_generate(st, prompt, N_PROMPT, p, &g));
	assert_int_equal(g.n_prompt, N_PROMPT);
	assert_int_equal(strlen(g.text), g.len);
	tl_llm_state_free(st);
	return g;
}

/*
 * g holds the first n of ids and finishes so; its text is theirs with
 * special tokens left out, cut at `cut` bytes (or whole if cut < 0),
 * cleaned as UTF-8.  Frees g.
 */
static void
expect_generation(const test_model *tm, tl_generation *g, const int32_t *ids, int n,
				  tl_finish finish, ptrdiff_t cut)
{
	char	   *raw,
			   *clean;
	size_t		len,
				clean_len;

	if (g->finish != finish)
		fail_msg("finish %s, expected %s", tl_finish_name(g->finish), tl_finish_name(finish));
	assert_int_equal(g->n_tokens, n);
	if (n)
		assert_memory_equal(g->tokens, ids, sizeof(int32_t) * (size_t) n);
	ASSERT_OK(tl_tokenizer_decode(tl_llm_tokenizer(tm->m), ids, (size_t) n, TL_TOK_SKIP_SPECIAL, &raw, &len));
	ASSERT_OK(tl_utf8_clean(raw, cut >= 0 ? (size_t) cut : len, &clean, &clean_len));
	assert_int_equal(g->len, clean_len);
	assert_memory_equal(g->text, clean, clean_len);
	tl_free(raw);
	tl_free(clean);
	tl_generation_free(g);
}

typedef struct counter
{
	int			calls;
	int			allow;
	int32_t		last_prompt;	/* what the last call reported */
	int32_t		last_generated;
} counter;

static bool
keep_going(void *arg, int32_t prompt_done, int32_t generated)
{
	counter    *c = arg;

	/* progress only grows: the prompt first, then the tokens */
	assert_true(prompt_done >= c->last_prompt && generated >= c->last_generated);
	assert_true(generated == 0 || prompt_done == c->last_prompt);
	c->last_prompt = prompt_done;
	c->last_generated = generated;
	return c->calls++ < c->allow;
}

static void
test_generate(void **state)
{
	model_opts	o = default_opts();
	test_model	tm;
	tl_generate_params p = {.sampler = tl_sampler_defaults(), .max_tokens = GEN_MAX};
	tl_generation g,
				g2;
	int32_t		greedy[GEN_MAX],
				ref[GEN_MAX];
	int			n;
	bool		ended;

	/* end tokens muted: no early end in the greedy run */
	o.mute_ends = true;
	o.seed = 700;
	load_model(&tm, o);
	assert_int_equal(greedy_by_eval(&tm, GEN_MAX, 1.0f, 0, false, greedy, &ended), GEN_MAX);

	/* greedy, and samplers that can only take the top token */
	g = generate(&tm, 64, &p);
	expect_generation(&tm, &g, greedy, GEN_MAX, TL_FINISH_LENGTH, -1);
	p.sampler.temperature = 0.8f;
	p.sampler.top_k = 1;
	g = generate(&tm, 64, &p);
	expect_generation(&tm, &g, greedy, GEN_MAX, TL_FINISH_LENGTH, -1);
	p.sampler.top_k = 0;
	p.sampler.top_p = 1e-6f;
	g = generate(&tm, 64, &p);
	expect_generation(&tm, &g, greedy, GEN_MAX, TL_FINISH_LENGTH, -1);

	/* sampling: a seed repeats itself, and differs from greedy and from another seed */
	p.sampler.top_p = 1.0f;
	p.sampler.seed = 1;
	g = generate(&tm, 64, &p);
	g2 = generate(&tm, 64, &p);
	assert_int_equal(g.n_tokens, g2.n_tokens);
	assert_memory_equal(g.tokens, g2.tokens, sizeof(int32_t) * (size_t) g.n_tokens);
	assert_string_equal(g.text, g2.text);
	assert_false(g.n_tokens == GEN_MAX && memcmp(g.tokens, greedy, sizeof(greedy)) == 0);
	tl_generation_free(&g2);
	p.sampler.seed = 2;
	g2 = generate(&tm, 64, &p);
	assert_false(g.n_tokens == g2.n_tokens &&
				 memcmp(g.tokens, g2.tokens, sizeof(int32_t) * (size_t) g.n_tokens) == 0);
	tl_generation_free(&g);
	tl_generation_free(&g2);

	/* the repeat penalty: a short window, then the whole history */
	for (int k = 0; k < 2; k++)
	{
		p.sampler = tl_sampler_defaults();
		p.sampler.repeat_penalty = k ? 1.3f : 1.7f;
		p.sampler.repeat_last_n = k ? 64 : 6;
		n = greedy_by_eval(&tm, GEN_MAX, p.sampler.repeat_penalty, p.sampler.repeat_last_n, false, ref, &ended);
		assert_int_equal(n, GEN_MAX);
		assert_memory_not_equal(ref, greedy, sizeof(greedy));
		g = generate(&tm, 64, &p);
		expect_generation(&tm, &g, ref, n, TL_FINISH_LENGTH, -1);
	}
	p.sampler = tl_sampler_defaults();

	/* no new tokens */
	p.max_tokens = 0;
	g = generate(&tm, 64, &p);
	assert_string_equal(tl_finish_name(g.finish), "length");
	expect_generation(&tm, &g, NULL, 0, TL_FINISH_LENGTH, -1);
	p.max_tokens = GEN_MAX;

	/* a stop string: two letters of the greedy text, from token 3 on */
	{
		char	   *raw,
					stop[3] = {0};
		size_t		len,
					upto = 0;
		int			k = 3,
					need = 0;
		ptrdiff_t	at;

		while (k < GEN_MAX - 1 && !(IS_LETTER(greedy[k]) && IS_LETTER(greedy[k + 1])))
			k++;
		assert_true(k < GEN_MAX - 1);
		stop[0] = (char) ('a' + greedy[k] - T_A);
		stop[1] = (char) ('a' + greedy[k + 1] - T_A);
		ASSERT_OK(tl_tokenizer_decode(tl_llm_tokenizer(tm.m), greedy, GEN_MAX, TL_TOK_SKIP_SPECIAL, &raw, &len));
		at = strstr(raw, stop) - raw;
		tl_free(raw);
		/* the text stops before it; the tokens with the one that completes it */
		while (upto < (size_t) at + 2)
		{
			ASSERT_OK(tl_tokenizer_decode(tl_llm_tokenizer(tm.m), &greedy[need++], 1, TL_TOK_SKIP_SPECIAL, &raw, &len));
			upto += len;
			tl_free(raw);
		}
		p.stops[0] = "no-such-stop";	/* '-' has no token */
		p.stops[1] = stop;
		p.n_stops = 2;
		g = generate(&tm, 64, &p);
		expect_generation(&tm, &g, greedy, need, TL_FINISH_STOP, at);
		p.n_stops = 1;			/* only the one that never comes */
		g = generate(&tm, 64, &p);
		expect_generation(&tm, &g, greedy, GEN_MAX, TL_FINISH_LENGTH, -1);
		p.n_stops = 0;
	}

	/* the context fills: the token sampled at the last position still counts */
	g = generate(&tm, 12, &p);
	expect_generation(&tm, &g, greedy, 12 - N_PROMPT + 1, TL_FINISH_CONTEXT, -1);

	/* interrupted after the prompt, or after three tokens */
	for (int allow = 0; allow <= 3; allow += 3)
	{
		counter		c = {0, allow, 0, 0};

		p.keep_going = keep_going;
		p.keep_going_arg = &c;
		g = generate(&tm, 64, &p);
		assert_int_equal(c.calls, allow + 1);
		assert_int_equal(c.last_prompt, N_PROMPT);
		assert_int_equal(c.last_generated, allow);
		expect_generation(&tm, &g, greedy, allow, TL_FINISH_INTERRUPTED, -1);
	}
	p.keep_going = NULL;
	free_model(&tm);

	/*
	 * An end token: <|im_end|>'s output row is 1.5 times that of the
	 * 6th greedy token, so it outbids that token when it would win, if
	 * not sooner.  And a tie: the token below the first greedy one gets
	 * the same row, so the same logit, and greedy takes the lower id.
	 */
	o.mute_ends = false;
	o.eos_from = greedy[5];
	o.twin = greedy[0] - 1;
	assert_true(o.twin >= T_A);
	load_model(&tm, o);
	n = greedy_by_eval(&tm, GEN_MAX, 1.0f, 0, false, ref, &ended);
	assert_true(ended && n >= 1 && n <= 5);
	assert_int_equal(ref[0], o.twin);
	g = generate(&tm, 64, &p);
	expect_generation(&tm, &g, ref, n, TL_FINISH_END, -1);
	/* ignore_end goes on through it (its text is left out) */
	p.ignore_end = true;
	assert_int_equal(greedy_by_eval(&tm, GEN_MAX, 1.0f, 0, true, ref, &ended), GEN_MAX);
	assert_true(tl_llm_is_end(tm.m, ref[n]));
	n = GEN_MAX;
	g = generate(&tm, 64, &p);
	expect_generation(&tm, &g, ref, n, TL_FINISH_LENGTH, -1);
	free_model(&tm);
}

static void
test_generate_bad_args(void **state)
{
	test_model	tm;
	tl_llm_state *st;
	tl_generation g;
	tl_generate_params p = {.sampler = tl_sampler_defaults(), .max_tokens = 4};

#define BAD_SAMPLER(field, value) \
	do { tl_sampler s_ = tl_sampler_defaults(); s_.field = (value); \
		ASSERT_FAILS(TL_ERR_ARG, tl_sampler_check(&s_)); ASSERT_MESSAGE_HAS(#field); } while (0)
	ASSERT_OK(tl_sampler_check(&p.sampler));
	BAD_SAMPLER(temperature, -0.1f);
	BAD_SAMPLER(temperature, NAN);
	BAD_SAMPLER(top_k, -1);
	BAD_SAMPLER(top_p, 0.0f);
	BAD_SAMPLER(top_p, 1.5f);
	BAD_SAMPLER(min_p, 1.0f);
	BAD_SAMPLER(min_p, -0.5f);
	BAD_SAMPLER(repeat_penalty, 0.0f);
	BAD_SAMPLER(repeat_penalty, -1.0f);
	BAD_SAMPLER(repeat_last_n, -1);
#undef BAD_SAMPLER

	load_model(&tm, default_opts());
	ASSERT_OK(tl_llm_state_new(&st, tm.m, 8));
	p.sampler.min_p = 1.0f;
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_generate(st, prompt, N_PROMPT, &p, &g));
	ASSERT_MESSAGE_HAS("min_p");
	assert_true(g.text == NULL && g.tokens == NULL);
	p.sampler.min_p = 0.0f;
	p.max_tokens = -1;
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_generate(st, prompt, N_PROMPT, &p, &g));
	ASSERT_MESSAGE_HAS("max_tokens");
	p.max_tokens = 4;
	p.n_stops = TL_LLM_MAX_STOPS + 1;
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_generate(st, prompt, N_PROMPT, &p, &g));
	p.n_stops = 1;				/* stops[0] is NULL */
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_generate(st, prompt, N_PROMPT, &p, &g));
	p.n_stops = 0;
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_generate(st, prompt, 0, &p, &g));
	/* 5 + 5 > 8: refused before anything is evaluated */
	ASSERT_OK(tl_llm_eval(st, prompt, N_PROMPT, NULL));
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_generate(st, prompt, N_PROMPT, &p, &g));
	ASSERT_MESSAGE_HAS("does not fit");
	assert_int_equal(tl_llm_state_n_past(st), N_PROMPT);
	tl_llm_state_free(st);
	free_model(&tm);
}

/* ======================================================================
 * 7. UTF-8 cleaning
 * ====================================================================== */

/* Independent of the runtime: RFC 3629's table of well-formed sequences. */
static bool
valid_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;)
	{
		unsigned	c = s[i],
					lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80,
					hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
		size_t		len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 :
			c >= 0xF0 && c <= 0xF4 ? 4 : 0;

		if (!len || i + len > n || (len > 1 && (s[i + 1] < lo || s[i + 1] > hi)))
			return false;
		for (size_t k = 2; k < len; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xBF)
				return false;
		i += len;
	}
	return true;
}

static void
expect_clean(const char *in, size_t len, const char *want, size_t want_len)
{
	char	   *out;
	size_t		out_len;

	ASSERT_OK(tl_utf8_clean(in, len, &out, &out_len));
	assert_int_equal(out_len, want_len);
	assert_memory_equal(out, want, out_len);
	assert_int_equal(out[out_len], '\0');
	tl_free(out);
}

#define CLEAN(in, want) expect_clean((in), sizeof(in) - 1, (want), sizeof(want) - 1)
#define FFFD "\xEF\xBF\xBD"

static void
test_utf8_clean(void **state)
{
	static const unsigned char pool[] = {
		'a', 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF
	};
	tl_rng		rng;

	CLEAN("", "");
	CLEAN("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF \xED\x9F\xBF", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF \xED\x9F\xBF");
	CLEAN("a\0b", "a\0b");
	/* cut off at the end: dropped, whatever its length */
	CLEAN("ab\xC3", "ab");
	CLEAN("ab\xE2\x82", "ab");
	CLEAN("ab\xF0\x9F\x98", "ab");
	/* invalid in the middle: one U+FFFD per bad byte */
	CLEAN("a\xFFz", "a" FFFD "z");
	CLEAN("a\x80z", "a" FFFD "z");
	CLEAN("a\xC3z", "a" FFFD "z");
	CLEAN("a\xE2\x82z", "a" FFFD FFFD "z");
	/* overlong forms, surrogates, beyond U+10FFFF */
	CLEAN("a\xC0\xAFz", "a" FFFD FFFD "z");
	CLEAN("a\xE0\x80\xAFz", "a" FFFD FFFD FFFD "z");
	CLEAN("a\xF0\x80\x80\xAFz", "a" FFFD FFFD FFFD FFFD "z");
	CLEAN("a\xED\xA0\x80z", "a" FFFD FFFD FFFD "z");
	CLEAN("a\xF4\x90\x80\x80z", "a" FFFD FFFD FFFD FFFD "z");

	/* random bytes, mostly UTF-8's edges: always valid out, valid in kept */
	tl_rng_seed(&rng, 800);
	for (int trial = 0; trial < 2000; trial++)
	{
		unsigned char in[12];
		size_t		n = (size_t) tl_rng_below(&rng, sizeof(in) + 1),
					out_len;
		char	   *out;

		for (size_t i = 0; i < n; i++)
			in[i] = pool[tl_rng_below(&rng, sizeof(pool))];
		ASSERT_OK(tl_utf8_clean((const char *) in, n, &out, &out_len));
		if (!valid_utf8((const unsigned char *) out, out_len))
			fail_msg("trial %d: output is not valid UTF-8", trial);
		if (valid_utf8(in, n) && (out_len != n || memcmp(out, in, n) != 0))
			fail_msg("trial %d: valid input changed", trial);
		tl_free(out);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forward_reference),
		cmocka_unit_test(test_batch_splits),
		cmocka_unit_test(test_prefill_chunks),
		cmocka_unit_test(test_quantized_weights),
		cmocka_unit_test(test_kv_pages),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_generate_bad_args),
		cmocka_unit_test(test_utf8_clean),
	};

	return cmocka_run_group_tests_name("LLM runtime", tests, NULL, NULL);
}
