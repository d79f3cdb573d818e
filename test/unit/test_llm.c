/*
 * test_llm.c -- the LLM runtime (tl_llm.c, tl_generate.c) on tiny random
 * models written with gguf_writer.h and loaded from memory.
 *
 * The forward pass is checked against a plain reference written here
 * from the computation tl_llm.h documents: every weight dequantized,
 * everything in double, except that q, k and v go through half precision
 * exactly where the runtime rounds them (the F16 cache, the query before
 * K.q), so that with F32 weights the two agree to float rounding.  The
 * cases cover both architectures (adjacent and half-split rotary
 * pairs, Q/K/V biases), grouped-query and multi-query attention, tied and
 * untied output, linear rope scaling, a rope_freqs table and partial
 * rotary dimensions.  Quantized weights (Q8_0, Q4_1) are compared with the
 * same reference on their dequantized values, more loosely since the
 * activations are quantized to 8 bits.
 *
 * Batched prefill must give bitwise the logits of one token at a time on
 * any thread count (the batch only groups work); a context past one KV
 * page must still match the reference, and a reset state must forget
 * everything.  Load and eval errors must name the culprit and leave the
 * state usable.  Generation is checked against a greedy loop over
 * tl_llm_eval written here (and one with the repeat penalty), and its
 * finish reasons are each provoked on purpose.  tl_utf8_clean is checked
 * against an independent validator on hand-made and random bytes.
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

/* Ġ and Ċ are the byte alphabet's space and newline; Ã and © stand for
 * the bytes 0xC3 and 0xA9, halves of "é", so generated text can hold a
 * broken UTF-8 sequence that the runtime must clean. */
#define G_SPACE "\xC4\xA0"
#define G_NL "\xC4\x8A"
enum
{
	T_IM_START, T_IM_END, T_ENDOFTEXT, T_FIRST_NORMAL
};
static const char *const specials[] = {"<|im_start|>", "<|im_end|>", "<|endoftext|>"};
static const char *const extras[] = {
	G_SPACE, G_NL, ".", ",", "!", "th", "the", G_SPACE "the", "\xC3\x83", "\xC2\xA9",
};
static const char *const merges[] = {"t h", "th e", G_SPACE " the"};
#define N_LETTERS 26
#define N_EXTRAS ((int) (sizeof(extras) / sizeof(extras[0])))
#define N_VOCAB (T_FIRST_NORMAL + N_LETTERS + N_EXTRAS)

static const char *
token_text(int i, char *buf)
{
	if (i < T_FIRST_NORMAL)
		return specials[i];
	if (i < T_FIRST_NORMAL + N_LETTERS)
	{
		buf[0] = (char) ('a' + i - T_FIRST_NORMAL);
		buf[1] = '\0';
		return buf;
	}
	return extras[i - T_FIRST_NORMAL - N_LETTERS];
}

/* ------------------------------------------------------ a model in memory */

typedef struct model_opts
{
	const char *arch;			/* general.architecture */
	int			n_ctx,			/* context_length */
				n_embd,
				n_ff,
				n_head,
				n_head_kv,
				n_layer,
				rope_dim;		/* 0: no rope.dimension_count key */
	float		rope_base;
	float		linear;			/* 0: no rope.scaling keys */
	float		eps;
	bool		rope_freqs;		/* write rope_freqs.weight */
	bool		untied;			/* write output.weight */
	tl_qtype	wtype;			/* type of every matrix */
	uint64_t	seed;
	bool		mute_ends;		/* output rows of the end tokens zero (untied) */
	int			eos_from;		/* > 0: output row of <|im_end|> = 1.5 x this one's */
	const char *omit;			/* a tensor left out */
	const char *misshape;		/* a matrix written with one row too many */
	const char *as_f16;			/* a vector written as F16 */
} model_opts;

static model_opts
default_opts(void)
{
	model_opts	o = {
		.arch = "llama", .n_ctx = 64, .n_embd = 64, .n_ff = 96, .n_head = 4,
		.n_head_kv = 2, .n_layer = 2, .rope_base = 10000.0f, .eps = 1e-5f,
		.untied = true, .wtype = TL_QT_F32, .seed = 1,
	};

	return o;
}

typedef struct tensor_spec
{
	char		name[48];
	int64_t		ne0,			/* columns (ggml's first dim) */
				ne1;			/* rows; 0 for a vector */
	tl_qtype	type;
	float	   *src;			/* the random values */
	float	   *deq;			/* what the file holds, read back as float */
	uint8_t    *bytes;
	size_t		size;
} tensor_spec;

#define MAX_TENSORS 64

typedef struct test_model
{
	model_opts	o;
	int			E,
				H,
				G,
				D,
				F,
				V,
				R;				/* rope_dim in effect */
	int			n_t;
	tensor_spec t[MAX_TENSORS];
	uint8_t    *file;
	size_t		len;
	tl_llm_model *m;
} test_model;

/* A tensor of random values around `mean`; converted later. */
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
	t->src = malloc(sizeof(float) * (size_t) n);
	assert_non_null(t->src);
	for (int64_t i = 0; i < n; i++)
		t->src[i] = mean + scale * tl_rng_normal(rng);
	return t;
}

static const float *
find_tensor(const test_model *tm, const char *fmt, int layer)
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

static void
kv_u32(gw_buf *w, uint64_t *n_kv, const char *arch, const char *key, uint32_t v)
{
	char		name[96];

	snprintf(name, sizeof(name), "%s.%s", arch, key);
	gw_key(w, name, GW_U32);
	gw_u32(w, v);
	(*n_kv)++;
}

static void
kv_f32(gw_buf *w, uint64_t *n_kv, const char *arch, const char *key, float v)
{
	char		name[96];

	snprintf(name, sizeof(name), "%s.%s", arch, key);
	gw_key(w, name, GW_F32);
	gw_f32(w, v);
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
	tl_rng		rng;
	gw_buf		w = {0};
	uint64_t	n_kv = 0,
				offset = 0;
	size_t		at_n_kv;
	char		buf[2],
				name[48];
	bool		qwen = strcmp(o->arch, "qwen2") == 0;

	memset(tm, 0, sizeof(*tm));
	tm->o = *o;
	tm->E = o->n_embd;
	tm->H = o->n_head;
	tm->G = o->n_head_kv;
	tm->D = o->n_embd / o->n_head;
	tm->F = o->n_ff;
	tm->V = N_VOCAB;
	tm->R = o->rope_dim ? o->rope_dim : tm->D;
	tl_rng_seed(&rng, o->seed);

	/* the weights, in the order they are written */
	add_tensor(tm, &rng, "token_embd.weight", tm->E, tm->V, o->wtype, 0.3f, 0.0f);
	add_tensor(tm, &rng, "output_norm.weight", tm->E, 0, TL_QT_F32, 0.1f, 1.0f);
	if (o->untied)
	{
		tensor_spec *out = add_tensor(tm, &rng, "output.weight", tm->E, tm->V, o->wtype, 0.2f, 0.0f);

		for (int i = 0; i < tm->E; i++)
		{
			if (o->mute_ends)
				out->src[T_IM_END * tm->E + i] = out->src[T_ENDOFTEXT * tm->E + i] = 0.0f;
			if (o->eos_from > 0)
				out->src[T_IM_END * tm->E + i] = 1.5f * out->src[o->eos_from * tm->E + i];
		}
	}
	if (o->rope_freqs)
	{
		/* factors of 1 to about 5, as llama 3 divides its low frequencies */
		tensor_spec *ff = add_tensor(tm, &rng, "rope_freqs.weight", tm->R / 2, 0, TL_QT_F32, 1.5f, 0.0f);

		for (int i = 0; i < tm->R / 2; i++)
			ff->src[i] = 1.0f + fabsf(ff->src[i]);
	}
	for (int il = 0; il < o->n_layer; il++)
	{
		int			QD = tm->H * tm->D,
					KD = tm->G * tm->D;
		static const struct
		{
			const char *suffix;
			char		rows,	/* E, Q(D), K(D), F or 0 for a vector */
						cols;
			float		scale,
						mean;
			bool		qwen_only;
		}			layer_tensors[] = {
			{"attn_norm.weight", 'E', 0, 0.1f, 1.0f, false},
			{"attn_q.weight", 'Q', 'E', 0.2f, 0.0f, false},
			{"attn_k.weight", 'K', 'E', 0.2f, 0.0f, false},
			{"attn_v.weight", 'K', 'E', 0.2f, 0.0f, false},
			{"attn_output.weight", 'E', 'Q', 0.1f, 0.0f, false},
			{"attn_q.bias", 'Q', 0, 0.2f, 0.0f, true},
			{"attn_k.bias", 'K', 0, 0.2f, 0.0f, true},
			{"attn_v.bias", 'K', 0, 0.2f, 0.0f, true},
			{"ffn_norm.weight", 'E', 0, 0.1f, 1.0f, false},
			{"ffn_gate.weight", 'F', 'E', 0.15f, 0.0f, false},
			{"ffn_up.weight", 'F', 'E', 0.15f, 0.0f, false},
			{"ffn_down.weight", 'E', 'F', 0.1f, 0.0f, false},
		};

		for (size_t i = 0; i < sizeof(layer_tensors) / sizeof(layer_tensors[0]); i++)
		{
			int64_t		ext[2];

			if (layer_tensors[i].qwen_only && !qwen)
				continue;
			for (int k = 0; k < 2; k++)
			{
				char		c = k ? layer_tensors[i].cols : layer_tensors[i].rows;

				ext[k] = c == 'E' ? tm->E : c == 'Q' ? QD : c == 'K' ? KD : c == 'F' ? tm->F : 0;
			}
			snprintf(name, sizeof(name), "blk.%d.%s", il, layer_tensors[i].suffix);
			if (ext[1])			/* a matrix: ggml dims are [cols, rows] */
				add_tensor(tm, &rng, name, ext[1], ext[0], o->wtype,
						   layer_tensors[i].scale, layer_tensors[i].mean);
			else
				add_tensor(tm, &rng, name, ext[0], 0, TL_QT_F32,
						   layer_tensors[i].scale, layer_tensors[i].mean);
		}
	}
	/* the file's values: convert, then read back as the reference's weights */
	for (int i = 0; i < tm->n_t; i++)
	{
		tensor_spec *t = &tm->t[i];
		int64_t		rows = t->ne1 ? t->ne1 : 1;

		if (o->misshape && strcmp(t->name, o->misshape) == 0)
		{
			float	   *more = realloc(t->src, sizeof(float) * (size_t) (t->ne0 * (rows + 1)));

			assert_non_null(more);
			t->src = more;
			memset(t->src + t->ne0 * rows, 0, sizeof(float) * (size_t) t->ne0);
			t->ne1 = ++rows;
		}
		if (o->as_f16 && strcmp(t->name, o->as_f16) == 0)
			t->type = TL_QT_F16;
		t->size = tl_qtype_row_size(t->type, t->ne0) * (size_t) rows;
		assert_true(t->size > 0);
		t->bytes = malloc(t->size);
		t->deq = malloc(sizeof(float) * (size_t) (t->ne0 * rows));
		assert_true(t->bytes && t->deq);
		tl_qtype_info(t->type)->from_float(t->src, t->bytes, t->ne0 * rows);
		tl_qtype_info(t->type)->to_float(t->bytes, t->deq, t->ne0 * rows);
	}

	gw_put(&w, "GGUF", 4);
	gw_u32(&w, 3);
	gw_u64(&w, (uint64_t) (tm->n_t - (o->omit ? 1 : 0)));
	at_n_kv = w.len;
	gw_u64(&w, 0);
	gw_key(&w, "general.architecture", GW_STRING);
	gw_cstr(&w, o->arch);
	gw_key(&w, "tokenizer.ggml.model", GW_STRING);
	gw_cstr(&w, "gpt2");
	gw_key(&w, "tokenizer.ggml.pre", GW_STRING);
	gw_cstr(&w, "gpt2");
	gw_array(&w, "tokenizer.ggml.tokens", GW_STRING, N_VOCAB);
	for (int i = 0; i < N_VOCAB; i++)
		gw_cstr(&w, token_text(i, buf));
	gw_array(&w, "tokenizer.ggml.token_type", GW_I32, N_VOCAB);
	for (int i = 0; i < N_VOCAB; i++)
		gw_u32(&w, i < T_FIRST_NORMAL ? 3 : 1);
	gw_array(&w, "tokenizer.ggml.merges", GW_STRING, sizeof(merges) / sizeof(merges[0]));
	for (size_t i = 0; i < sizeof(merges) / sizeof(merges[0]); i++)
		gw_cstr(&w, merges[i]);
	gw_key(&w, "tokenizer.ggml.eos_token_id", GW_U32);
	gw_u32(&w, T_IM_END);
	n_kv += 7;
	kv_u32(&w, &n_kv, o->arch, "context_length", (uint32_t) o->n_ctx);
	kv_u32(&w, &n_kv, o->arch, "embedding_length", (uint32_t) o->n_embd);
	kv_u32(&w, &n_kv, o->arch, "block_count", (uint32_t) o->n_layer);
	kv_u32(&w, &n_kv, o->arch, "feed_forward_length", (uint32_t) o->n_ff);
	kv_u32(&w, &n_kv, o->arch, "attention.head_count", (uint32_t) o->n_head);
	kv_u32(&w, &n_kv, o->arch, "attention.head_count_kv", (uint32_t) o->n_head_kv);
	kv_f32(&w, &n_kv, o->arch, "attention.layer_norm_rms_epsilon", o->eps);
	kv_f32(&w, &n_kv, o->arch, "rope.freq_base", o->rope_base);
	if (o->rope_dim)
		kv_u32(&w, &n_kv, o->arch, "rope.dimension_count", (uint32_t) o->rope_dim);
	if (o->linear > 0.0f)
	{
		snprintf(name, sizeof(name), "%s.rope.scaling.type", o->arch);
		gw_key(&w, name, GW_STRING);
		gw_cstr(&w, "linear");
		n_kv++;
		kv_f32(&w, &n_kv, o->arch, "rope.scaling.factor", o->linear);
	}
	put_le64(w.p + at_n_kv, n_kv);

	for (int i = 0; i < tm->n_t; i++)
	{
		tensor_spec *t = &tm->t[i];

		if (o->omit && strcmp(t->name, o->omit) == 0)
			continue;
		gw_cstr(&w, t->name);
		gw_u32(&w, t->ne1 ? 2 : 1);
		gw_u64(&w, (uint64_t) t->ne0);
		if (t->ne1)
			gw_u64(&w, (uint64_t) t->ne1);
		gw_u32(&w, (uint32_t) t->type);
		gw_u64(&w, offset);
		offset += (t->size + 31) / 32 * 32;
	}
	gw_pad(&w, 32);
	for (int i = 0; i < tm->n_t; i++)
	{
		if (o->omit && strcmp(tm->t[i].name, o->omit) == 0)
			continue;
		gw_put(&w, tm->t[i].bytes, tm->t[i].size);
		gw_pad(&w, 32);
	}
	tm->file = copy_exact(w.p, w.len);
	tm->len = w.len;
	free(w.p);
	return tl_llm_load_memory(&tm->m, tm->file, tm->len);
}

static void
load_model(test_model *tm, const model_opts *o)
{
	ASSERT_OK(build_model(tm, o));
}

/* ------------------------------------------------------ the reference */

static void
ref_rmsnorm(double *y, const double *x, const float *w, int n, double eps)
{
	double		ss = 0.0;

	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	for (int i = 0; i < n; i++)
		y[i] = x[i] / sqrt(ss / n + eps) * w[i];
}

/* y = W x + b for W (rows, cols) row-major; b may be NULL */
static void
ref_linear(double *y, const float *W, const float *b, const double *x, int rows, int cols)
{
	for (int r = 0; r < rows; r++)
	{
		double		s = b ? b[r] : 0.0;

		for (int c = 0; c < cols; c++)
			s += (double) W[(size_t) r * cols + c] * x[c];
		y[r] = s;
	}
}

static void
ref_rope(const test_model *tm, double *x, int n_heads, int pos)
{
	const float *ff = find_tensor(tm, "rope_freqs.weight", 0);
	double		scale = tm->o.linear > 0.0f ? 1.0 / tm->o.linear : 1.0;
	int			half = tm->R / 2;
	bool		halves = strcmp(tm->o.arch, "qwen2") == 0;

	for (int h = 0; h < n_heads; h++)
		for (int i = 0; i < half; i++)
		{
			double	   *v = x + (size_t) h * tm->D;
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

/* Logits (n, V) of every position of the sequence; malloc'ed. */
static double *
ref_forward(const test_model *tm, const int32_t *tokens, int n)
{
	int			E = tm->E,
				D = tm->D,
				QD = tm->H * D,
				KD = tm->G * D,
				F = tm->F,
				V = tm->V,
				L = tm->o.n_layer;
	double		eps = tm->o.eps;
	double	   *logits = malloc(sizeof(double) * (size_t) n * V),
			   *kc = malloc(sizeof(double) * (size_t) L * n * KD),
			   *vc = malloc(sizeof(double) * (size_t) L * n * KD),
			   *sc = malloc(sizeof(double) * (size_t) n),
			   *x = malloc(sizeof(double) * E),
			   *h = malloc(sizeof(double) * E),
			   *y = malloc(sizeof(double) * E),
			   *q = malloc(sizeof(double) * QD),
			   *a = malloc(sizeof(double) * QD),
			   *g = malloc(sizeof(double) * F),
			   *u = malloc(sizeof(double) * F);
	const float *embd = find_tensor(tm, "token_embd.weight", 0),
			   *out = find_tensor(tm, "output.weight", 0);

	assert_true(logits && kc && vc && sc && x && h && y && q && a && g && u);
	for (int pos = 0; pos < n; pos++)
	{
		for (int i = 0; i < E; i++)
			x[i] = embd[(size_t) tokens[pos] * E + i];
		for (int l = 0; l < L; l++)
		{
			double	   *k = kc + ((size_t) l * n + pos) * KD,
					   *v = vc + ((size_t) l * n + pos) * KD;

			ref_rmsnorm(h, x, find_tensor(tm, "blk.%d.attn_norm.weight", l), E, eps);
			ref_linear(q, find_tensor(tm, "blk.%d.attn_q.weight", l), find_tensor(tm, "blk.%d.attn_q.bias", l), h, QD, E);
			ref_linear(k, find_tensor(tm, "blk.%d.attn_k.weight", l), find_tensor(tm, "blk.%d.attn_k.bias", l), h, KD, E);
			ref_linear(v, find_tensor(tm, "blk.%d.attn_v.weight", l), find_tensor(tm, "blk.%d.attn_v.bias", l), h, KD, E);
			ref_rope(tm, q, tm->H, pos);
			ref_rope(tm, k, tm->G, pos);
			/* where the runtime keeps half precision */
			for (int i = 0; i < QD; i++)
				q[i] = to_half(q[i]);
			for (int i = 0; i < KD; i++)
				k[i] = to_half(k[i]), v[i] = to_half(v[i]);
			for (int hh = 0; hh < tm->H; hh++)
			{
				int			grp = hh / (tm->H / tm->G);
				double		mx = -INFINITY,
							sum = 0.0;

				for (int p = 0; p <= pos; p++)
				{
					const double *kp = kc + ((size_t) l * n + p) * KD + (size_t) grp * D;

					sc[p] = 0.0;
					for (int d = 0; d < D; d++)
						sc[p] += q[hh * D + d] * kp[d];
					sc[p] /= sqrt((double) D);
					mx = fmax(mx, sc[p]);
				}
				for (int p = 0; p <= pos; p++)
					sum += (sc[p] = exp(sc[p] - mx));
				for (int d = 0; d < D; d++)
				{
					double		s = 0.0;

					for (int p = 0; p <= pos; p++)
						s += sc[p] * vc[((size_t) l * n + p) * KD + (size_t) grp * D + d];
					a[hh * D + d] = s / sum;
				}
			}
			ref_linear(y, find_tensor(tm, "blk.%d.attn_output.weight", l), NULL, a, E, QD);
			for (int i = 0; i < E; i++)
				x[i] += y[i];
			ref_rmsnorm(h, x, find_tensor(tm, "blk.%d.ffn_norm.weight", l), E, eps);
			ref_linear(g, find_tensor(tm, "blk.%d.ffn_gate.weight", l), NULL, h, F, E);
			ref_linear(u, find_tensor(tm, "blk.%d.ffn_up.weight", l), NULL, h, F, E);
			for (int i = 0; i < F; i++)
				g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
			ref_linear(y, find_tensor(tm, "blk.%d.ffn_down.weight", l), NULL, g, E, F);
			for (int i = 0; i < E; i++)
				x[i] += y[i];
		}
		ref_rmsnorm(h, x, find_tensor(tm, "output_norm.weight", 0), E, eps);
		ref_linear(logits + (size_t) pos * V, out ? out : embd, NULL, h, V, E);
	}
	free(kc), free(vc), free(sc), free(x), free(h), free(y), free(q), free(a), free(g), free(u);
	return logits;
}

/*
 * Tolerances, relative to the reference's largest |logit|.
 *
 * F32: the arithmetic agrees to about 1e-7, but a value that the runtime
 * computes in float and the reference in double now and then lies on the
 * other side of a half-precision rounding boundary, and one cached key
 * moved by a whole f16 step shifts the logits after it by up to ~6e-4
 * (the worst of 186 random models; the median position is at 1e-7 to
 * 1e-4).  Any error of substance (a rotation, a head grouping, a scale)
 * is far above this.
 *
 * Quantized: activations are rounded to 8 bits for every product (Q8_1
 * with the block sums in half precision for Q4_1, as ggml does), which
 * costs about 2% at the median position and up to ~9% at the worst
 * (same 124 models); wrong blocks or types give errors of order 1.
 */
#define RTOL_F32 1e-3
#define RTOL_QUANT 0.15

/* max |got - want| relative to max |want| */
static double
rel_error(const float *got, const double *want, int n)
{
	double		err = 0.0,
				mag = 0.0;

	for (int i = 0; i < n; i++)
	{
		err = fmax(err, fabs(got[i] - want[i]));
		mag = fmax(mag, fabs(want[i]));
	}
	return err / mag;
}

static void
random_tokens(int32_t *tokens, int n, uint64_t seed)
{
	tl_rng		rng;

	tl_rng_seed(&rng, seed);
	for (int i = 0; i < n; i++)
		tokens[i] = (int32_t) tl_rng_below(&rng, N_VOCAB);
}

/* Feed tokens in batches of the given sizes (cycled), logits of the last. */
static void
feed(tl_llm_state *st, const int32_t *tokens, int n, const int *sizes, int n_sizes, float *logits)
{
	for (int at = 0, i = 0; at < n; i++)
	{
		int			b = sizes[i % n_sizes] < n - at ? sizes[i % n_sizes] : n - at;

		ASSERT_OK(tl_llm_eval(st, tokens + at, b, at + b == n ? logits : NULL));
		at += b;
	}
}

/* ======================================================================
 * 1. The forward pass against the reference, F32 weights
 * ====================================================================== */

#define SEQ 20

/* Feed SEQ tokens one at a time; every position's logits within rtol. */
static double
check_against_reference(const test_model *tm, double rtol, uint64_t token_seed)
{
	tl_llm_state *st;
	int32_t		tokens[SEQ];
	float	   *logits = malloc(sizeof(float) * tm->V);
	double	   *want,
				worst = 0.0;

	assert_non_null(logits);
	random_tokens(tokens, SEQ, token_seed);
	want = ref_forward(tm, tokens, SEQ);
	ASSERT_OK(tl_llm_state_new(&st, tm->m, tm->o.n_ctx));
	for (int pos = 0; pos < SEQ; pos++)
	{
		double		e;

		ASSERT_OK(tl_llm_eval(st, &tokens[pos], 1, logits));
		e = rel_error(logits, want + (size_t) pos * tm->V, tm->V);
		if (e > rtol)
			fail_msg("%s: position %d: relative error %.3g > %.3g", tm->o.arch, pos, e, rtol);
		worst = fmax(worst, e);
	}
	assert_int_equal(tl_llm_state_n_past(st), SEQ);
	tl_llm_state_free(st);
	free(logits);
	free(want);
	return worst;
}

static void
test_forward_reference(void **state)
{
	struct
	{
		const char *what;
		const char *arch;
		bool		untied;
		int			n_head_kv;
		float		linear;
		bool		rope_freqs;
		int			rope_dim;
	}			cases[] = {
		{"llama GQA untied", "llama", true, 2, 0.0f, false, 0},
		{"llama GQA tied, freqs x2", "llama", false, 2, 2.0f, true, 0},
		{"llama MQA, partial rope", "llama", true, 1, 0.0f, false, 8},
		{"llama MHA tied", "llama", false, 4, 0.0f, false, 0},
		{"qwen2 GQA untied, x4", "qwen2", true, 2, 4.0f, false, 0},
		{"qwen2 tied, freqs, partial", "qwen2", false, 2, 0.0f, true, 8},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		model_opts	o = default_opts();
		test_model	tm;
		const tl_llm_config *c;
		int64_t		n_params = 0;

		o.arch = cases[i].arch;
		o.untied = cases[i].untied;
		o.n_head_kv = cases[i].n_head_kv;
		o.linear = cases[i].linear;
		o.rope_freqs = cases[i].rope_freqs;
		o.rope_dim = cases[i].rope_dim;
		o.eps = i % 2 ? 1e-6f : 1e-5f;
		o.rope_base = i % 2 ? 1000000.0f : 10000.0f;
		o.seed = 100 + i;
		load_model(&tm, &o);

		/* what the loader read */
		c = tl_llm_config_of(tm.m);
		assert_string_equal(c->arch_name, o.arch);
		assert_int_equal(c->n_vocab, N_VOCAB);
		assert_int_equal(c->n_ctx_train, o.n_ctx);
		assert_int_equal(c->n_embd, o.n_embd);
		assert_int_equal(c->n_layer, o.n_layer);
		assert_int_equal(c->n_head, o.n_head);
		assert_int_equal(c->n_head_kv, o.n_head_kv);
		assert_int_equal(c->head_dim, o.n_embd / o.n_head);
		assert_int_equal(c->n_ff, o.n_ff);
		assert_int_equal(c->rope_dim, tm.R);
		assert_int_equal(c->rope_style, strcmp(o.arch, "qwen2") == 0 ? TL_ROPE_HALVES : TL_ROPE_ADJACENT);
		assert_true(c->rope_base == o.rope_base && c->rms_eps == o.eps);
		assert_true(c->rope_freq_scale == (o.linear > 0.0f ? 1.0f / o.linear : 1.0f));
		assert_int_equal(c->rope_freq_factors, o.rope_freqs);
		assert_int_equal(c->tied_embeddings, !o.untied);
		assert_int_equal(c->qkv_bias, strcmp(o.arch, "qwen2") == 0);
		for (int t = 0; t < tm.n_t; t++)
			n_params += tm.t[t].ne0 * (tm.t[t].ne1 ? tm.t[t].ne1 : 1);
		assert_int_equal(c->n_params, n_params);
		assert_int_equal(tl_tokenizer_n_vocab(tl_llm_tokenizer(tm.m)), N_VOCAB);
		assert_true(tl_llm_is_end(tm.m, T_IM_END) && tl_llm_is_end(tm.m, T_ENDOFTEXT));
		assert_false(tl_llm_is_end(tm.m, T_IM_START) || tl_llm_is_end(tm.m, T_FIRST_NORMAL));

		print_message("  %-28s max relative error %.2e\n", cases[i].what,
					  check_against_reference(&tm, RTOL_F32, 7 + i));
		free_model(&tm);
	}
}

/* ======================================================================
 * 2. Batched prefill is one token at a time, bitwise
 * ====================================================================== */

static void
test_batch_equals_single(void **state)
{
	static const int sizes[] = {13, 7, 44};
	static const int one = 1,
				full = TL_LLM_BATCH;
	const char *archs[] = {"llama", "qwen2"};
	int			threads = tl_pool_threads();

	for (int a = 0; a < 2; a++)
	{
		model_opts	o = default_opts();
		test_model	tm;
		int32_t		tokens[TL_LLM_BATCH];
		float		got[3][N_VOCAB],
					first[N_VOCAB],
					after13[N_VOCAB],
					single13[N_VOCAB];

		o.arch = archs[a];
		o.seed = 200 + a;
		load_model(&tm, &o);
		random_tokens(tokens, TL_LLM_BATCH, 300 + a);
		for (int nt = 1; nt <= 2; nt++)
		{
			tl_llm_state *st;

			tl_pool_set_threads(nt);
			/* 13, 7, 44; then 64 in one batch; then one at a time */
			ASSERT_OK(tl_llm_state_new(&st, tm.m, o.n_ctx));
			ASSERT_OK(tl_llm_eval(st, tokens, 13, after13));
			feed(st, tokens + 13, TL_LLM_BATCH - 13, sizes + 1, 2, got[0]);
			tl_llm_state_free(st);
			ASSERT_OK(tl_llm_state_new(&st, tm.m, o.n_ctx));
			feed(st, tokens, TL_LLM_BATCH, &full, 1, got[1]);
			tl_llm_state_free(st);
			ASSERT_OK(tl_llm_state_new(&st, tm.m, o.n_ctx));
			feed(st, tokens, 13, &one, 1, single13);
			feed(st, tokens + 13, TL_LLM_BATCH - 13, &one, 1, got[2]);
			tl_llm_state_free(st);

			assert_memory_equal(after13, single13, sizeof(after13));
			assert_memory_equal(got[0], got[2], sizeof(got[0]));
			assert_memory_equal(got[1], got[2], sizeof(got[0]));
			/* and the thread count changes nothing either */
			if (nt == 1)
				memcpy(first, got[0], sizeof(first));
			else
				assert_memory_equal(first, got[0], sizeof(first));
		}
		free_model(&tm);
	}
	tl_pool_set_threads(threads);
}

/* ======================================================================
 * 3. Quantized weights
 * ====================================================================== */

static void
test_quantized_weights(void **state)
{
	static const struct
	{
		tl_qtype	type;
		const char *arch;
		bool		untied;
	}			cases[] = {
		{TL_QT_Q8_0, "llama", true},
		{TL_QT_Q8_0, "qwen2", false},
		{TL_QT_Q4_1, "llama", false},
		{TL_QT_Q4_1, "qwen2", true},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		model_opts	o = default_opts();
		test_model	tm;
		const tl_gguf_tensor *t;

		o.wtype = cases[i].type;
		o.arch = cases[i].arch;
		o.untied = cases[i].untied;
		o.seed = 400 + i;
		load_model(&tm, &o);
		/* the file really holds the quantized type */
		t = tl_gguf_find_tensor(tl_llm_gguf(tm.m), "blk.1.ffn_down.weight");
		assert_non_null(t);
		assert_int_equal(t->type, cases[i].type);
		print_message("  %-5s %-5s max relative error %.2e\n", tl_qtype_name(cases[i].type), cases[i].arch,
					  check_against_reference(&tm, RTOL_QUANT, 9 + i));
		free_model(&tm);
	}
}

/* ======================================================================
 * 4. A context longer than a KV page
 * ====================================================================== */

#define LONG 300

static void
test_kv_pages(void **state)
{
	static const int batch = TL_LLM_BATCH,
				one = 1;
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

	assert_true(LONG > TL_LLM_KV_PAGE);
	o.n_ctx = 512;
	o.arch = "qwen2";
	o.seed = 500;
	load_model(&tm, &o);
	random_tokens(tokens, LONG, 501);
	random_tokens(other, 10, 502);
	want = ref_forward(&tm, tokens, LONG);

	/* batches of 64: the last logits of each against the reference */
	ASSERT_OK(tl_llm_state_new(&st, tm.m, o.n_ctx));
	for (int at = 0; at < LONG; at += TL_LLM_BATCH)
	{
		int			n = LONG - at < TL_LLM_BATCH ? LONG - at : TL_LLM_BATCH;
		double		e;

		ASSERT_OK(tl_llm_eval(st, tokens + at, n, got));
		e = rel_error(got, want + (size_t) (at + n - 1) * tm.V, tm.V);
		if (e > RTOL_F32)
			fail_msg("position %d: relative error %.3g", at + n - 1, e);
		worst = fmax(worst, e);
	}
	print_message("  %d positions, max relative error %.2e\n", LONG, worst);
	assert_int_equal(tl_llm_state_n_past(st), LONG);

	/* reset, then one token at a time: the same logits */
	tl_llm_state_reset(st);
	assert_int_equal(tl_llm_state_n_past(st), 0);
	feed(st, tokens, LONG, &one, 1, again);
	assert_memory_equal(got, again, sizeof(got));
	/* reset, and a short other sequence: nothing of the old one is seen */
	tl_llm_state_reset(st);
	feed(st, other, 10, &batch, 1, short1);
	ASSERT_OK(tl_llm_state_new(&fresh, tm.m, o.n_ctx));
	feed(fresh, other, 10, &batch, 1, short2);
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
	if (fragment2)
		ASSERT_MESSAGE_HAS(fragment2);
	free_model(&tm);
}

static void
test_errors(void **state)
{
	model_opts	o = default_opts();
	test_model	tm;
	tl_llm_state *st,
			   *st2;
	int32_t		tokens[TL_LLM_BATCH + 1];
	float		logits[N_VOCAB],
				logits2[N_VOCAB];
	char		what[32];

	o.arch = "gpt2";
	expect_load_error(o, TL_ERR_UNAVAILABLE, "gpt2", NULL);
	o = default_opts();
	o.omit = "blk.1.ffn_up.weight";
	expect_load_error(o, TL_ERR_ARG, "blk.1.ffn_up.weight", "missing");
	o = default_opts();
	o.omit = "output_norm.weight";
	expect_load_error(o, TL_ERR_ARG, "output_norm.weight", "missing");
	o = default_opts();
	o.arch = "qwen2";
	o.omit = "blk.0.attn_v.bias";
	expect_load_error(o, TL_ERR_ARG, "blk.0.attn_v.bias", NULL);
	o = default_opts();
	o.misshape = "blk.0.attn_k.weight";
	expect_load_error(o, TL_ERR_ARG, "blk.0.attn_k.weight", "shape");
	o = default_opts();
	o.as_f16 = "blk.1.ffn_norm.weight";
	expect_load_error(o, TL_ERR_UNAVAILABLE, "blk.1.ffn_norm.weight", "F32");
	o = default_opts();
	o.n_head_kv = 3;
	expect_load_error(o, TL_ERR_ARG, "4 heads", "3 key/value heads");

	/* a good model, and a state refusing what does not fit */
	o = default_opts();
	o.n_ctx = 16;
	load_model(&tm, &o);
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_state_new(&st, tm.m, 17));
	assert_null(st);
	ASSERT_MESSAGE_HAS("17");
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_state_new(&st, tm.m, 0));
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
	assert_int_equal(tl_llm_state_n_past(st), 0);
	tokens[2] = 5;
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
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_state_new(&st, NULL, 8));
	tl_llm_free(NULL);
	tl_llm_state_free(NULL);
}

/* ======================================================================
 * 6. Generation
 * ====================================================================== */

#define GEN_MAX 30

static const int32_t prompt[] = {T_IM_START, T_FIRST_NORMAL + 7, T_FIRST_NORMAL + 4, T_FIRST_NORMAL + 11, T_FIRST_NORMAL + 11};
#define N_PROMPT ((int32_t) (sizeof(prompt) / sizeof(prompt[0])))

/*
 * The greedy continuation by tl_llm_eval and an argmax written here
 * (lowest id among equals), with llama.cpp's repeat penalty over the last
 * `last_n` tokens when penalty != 1.  Returns the count of tokens
 * before an end token or max; *ended says whether one came.
 */
static int
greedy_by_eval(const test_model *tm, int max, float penalty, int last_n, int32_t *out, bool *ended)
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
		if (tl_llm_is_end(tm->m, best))
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

/* The text of tokens as generation must give it: special ones left out, cleaned. */
static void
expect_text(const test_model *tm, const tl_generation *g, const int32_t *ids, int n)
{
	char	   *raw,
			   *clean;
	size_t		len,
				clean_len;

	ASSERT_OK(tl_tokenizer_decode(tl_llm_tokenizer(tm->m), ids, (size_t) n, TL_TOK_SKIP_SPECIAL, &raw, &len));
	ASSERT_OK(tl_utf8_clean(raw, len, &clean, &clean_len));
	assert_int_equal(g->len, clean_len);
	assert_memory_equal(g->text, clean, clean_len);
	tl_free(raw);
	tl_free(clean);
}

static void
expect_tokens(const tl_generation *g, const int32_t *ids, int n, tl_finish finish)
{
	if (g->finish != finish)
		fail_msg("finish %s, expected %s", tl_finish_name(g->finish), tl_finish_name(finish));
	assert_int_equal(g->n_tokens, n);
	if (n)
		assert_memory_equal(g->tokens, ids, sizeof(int32_t) * (size_t) n);
}

typedef struct counter
{
	int			calls;
	int			allow;
} counter;

static bool
keep_going(void *arg)
{
	counter    *c = arg;

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
	int			n_greedy,
				n;
	bool		ended;
	char		stop[8];

	/* end tokens muted (zero logit, never the argmax): no early END */
	o.mute_ends = true;
	o.seed = 700;
	load_model(&tm, &o);
	n_greedy = greedy_by_eval(&tm, GEN_MAX, 1.0f, 0, greedy, &ended);
	assert_int_equal(n_greedy, GEN_MAX);

	/* greedy, and the samplers that can only pick the top token */
	g = generate(&tm, 64, &p);
	expect_tokens(&g, greedy, GEN_MAX, TL_FINISH_LENGTH);
	expect_text(&tm, &g, greedy, GEN_MAX);
	tl_generation_free(&g);
	p.sampler.temperature = 0.8f;
	p.sampler.top_k = 1;
	g = generate(&tm, 64, &p);
	expect_tokens(&g, greedy, GEN_MAX, TL_FINISH_LENGTH);
	tl_generation_free(&g);
	p.sampler.top_k = 0;
	p.sampler.top_p = 1e-6f;
	g = generate(&tm, 64, &p);
	expect_tokens(&g, greedy, GEN_MAX, TL_FINISH_LENGTH);
	tl_generation_free(&g);

	/* sampling: a seed repeats itself; another seed goes elsewhere */
	p.sampler.top_p = 1.0f;
	p.sampler.seed = 1;
	g = generate(&tm, 64, &p);
	g2 = generate(&tm, 64, &p);
	assert_int_equal(g.n_tokens, g2.n_tokens);
	assert_memory_equal(g.tokens, g2.tokens, sizeof(int32_t) * (size_t) g.n_tokens);
	assert_string_equal(g.text, g2.text);
	assert_false(g.n_tokens == n_greedy && memcmp(g.tokens, greedy, sizeof(greedy)) == 0);
	tl_generation_free(&g2);
	p.sampler.seed = 2;
	g2 = generate(&tm, 64, &p);
	assert_false(g.n_tokens == g2.n_tokens &&
				 memcmp(g.tokens, g2.tokens, sizeof(int32_t) * (size_t) g.n_tokens) == 0);
	tl_generation_free(&g);
	tl_generation_free(&g2);

	/* the repeat penalty against the reference loop: a short window, a whole history */
	for (int k = 0; k < 2; k++)
	{
		p.sampler = tl_sampler_defaults();
		p.sampler.repeat_penalty = k ? 1.3f : 1.7f;
		p.sampler.repeat_last_n = k ? 64 : 6;
		n = greedy_by_eval(&tm, GEN_MAX, p.sampler.repeat_penalty, p.sampler.repeat_last_n, ref, &ended);
		assert_int_equal(n, GEN_MAX);
		assert_memory_not_equal(ref, greedy, sizeof(greedy));
		g = generate(&tm, 64, &p);
		expect_tokens(&g, ref, n, TL_FINISH_LENGTH);
		tl_generation_free(&g);
	}
	p.sampler = tl_sampler_defaults();

	/* no new tokens */
	p.max_tokens = 0;
	g = generate(&tm, 64, &p);
	expect_tokens(&g, NULL, 0, TL_FINISH_LENGTH);
	assert_string_equal(g.text, "");
	assert_string_equal(tl_finish_name(g.finish), "length");
	tl_generation_free(&g);
	p.max_tokens = GEN_MAX;

	/* a stop string: two letters that the greedy text holds from token 3 on */
	{
		char	   *raw;
		size_t		len,
					upto = 0;
		const char *at;
		int			k = 3,
					need;

		ASSERT_OK(tl_tokenizer_decode(tl_llm_tokenizer(tm.m), greedy, GEN_MAX, TL_TOK_SKIP_SPECIAL, &raw, &len));
		while (k < GEN_MAX - 1 && !(greedy[k] >= T_FIRST_NORMAL && greedy[k] < T_FIRST_NORMAL + N_LETTERS &&
									greedy[k + 1] >= T_FIRST_NORMAL && greedy[k + 1] < T_FIRST_NORMAL + N_LETTERS))
			k++;
		assert_true(k < GEN_MAX - 1);
		stop[0] = (char) ('a' + greedy[k] - T_FIRST_NORMAL);
		stop[1] = (char) ('a' + greedy[k + 1] - T_FIRST_NORMAL);
		stop[2] = '\0';
		at = strstr(raw, stop);
		assert_non_null(at);
		/* generation ends with the token that completes the stop */
		for (need = 0; upto < (size_t) (at - raw) + 2; need++)
		{
			char	   *piece;
			size_t		plen;

			ASSERT_OK(tl_tokenizer_decode(tl_llm_tokenizer(tm.m), &greedy[need], 1, TL_TOK_SKIP_SPECIAL, &piece, &plen));
			upto += plen;
			tl_free(piece);
		}
		p.stops[0] = "no-such-stop";	/* '-' has no token */
		p.stops[1] = stop;
		p.n_stops = 2;
		g = generate(&tm, 64, &p);
		expect_tokens(&g, greedy, need, TL_FINISH_STOP);
		assert_int_equal(g.len, at - raw);
		assert_memory_equal(g.text, raw, g.len);
		tl_generation_free(&g);
		tl_free(raw);
		p.n_stops = 1;			/* only the one that never comes */
		g = generate(&tm, 64, &p);
		expect_tokens(&g, greedy, GEN_MAX, TL_FINISH_LENGTH);
		tl_generation_free(&g);
		p.n_stops = 0;
	}

	/* the context fills: the token sampled at the last position still counts */
	g = generate(&tm, 12, &p);
	expect_tokens(&g, greedy, 12 - N_PROMPT + 1, TL_FINISH_CONTEXT);
	expect_text(&tm, &g, greedy, 12 - N_PROMPT + 1);
	tl_generation_free(&g);

	/* interrupted, after the prompt or after a few tokens */
	for (int allow = 0; allow <= 3; allow += 3)
	{
		counter		c = {0, allow};

		p.keep_going = keep_going;
		p.keep_going_arg = &c;
		g = generate(&tm, 64, &p);
		assert_int_equal(g.finish, TL_FINISH_INTERRUPTED);
		assert_int_equal(c.calls, allow + 1);
		assert_true(g.n_tokens <= allow);
		expect_tokens(&g, greedy, g.n_tokens, TL_FINISH_INTERRUPTED);
		expect_text(&tm, &g, greedy, g.n_tokens);
		tl_generation_free(&g);
	}
	p.keep_going = NULL;
	free_model(&tm);

	/*
	 * An end token: make <|im_end|>'s output row 1.5 times that of the
	 * 6th greedy token, so it outbids that token when it would win (if
	 * not sooner).  The loop over tl_llm_eval says where it ends.
	 */
	o.mute_ends = false;
	o.eos_from = greedy[5];
	load_model(&tm, &o);
	n = greedy_by_eval(&tm, GEN_MAX, 1.0f, 0, ref, &ended);
	assert_true(ended && n <= 5);
	g = generate(&tm, 64, &p);
	expect_tokens(&g, ref, n, TL_FINISH_END);
	expect_text(&tm, &g, ref, n);
	tl_generation_free(&g);
	free_model(&tm);
}

static void
test_generate_bad_args(void **state)
{
	model_opts	o = default_opts();
	test_model	tm;
	tl_llm_state *st;
	tl_generation g;
	tl_generate_params p = {.sampler = tl_sampler_defaults(), .max_tokens = 4};
	static const struct
	{
		const char *option;
		float		temperature,
					top_p,
					min_p,
					repeat_penalty;
		int32_t		top_k,
					repeat_last_n;
	}			bad[] = {
		{"temperature", -0.1f, 1.0f, 0.0f, 1.0f, 0, 64},
		{"temperature", NAN, 1.0f, 0.0f, 1.0f, 0, 64},
		{"top_k", 0.0f, 1.0f, 0.0f, 1.0f, -1, 64},
		{"top_p", 0.0f, 0.0f, 0.0f, 1.0f, 0, 64},
		{"top_p", 0.0f, 1.5f, 0.0f, 1.0f, 0, 64},
		{"min_p", 0.0f, 1.0f, 1.0f, 1.0f, 0, 64},
		{"min_p", 0.0f, 1.0f, -0.5f, 1.0f, 0, 64},
		{"repeat_penalty", 0.0f, 1.0f, 0.0f, 0.0f, 0, 64},
		{"repeat_penalty", 0.0f, 1.0f, 0.0f, -1.0f, 0, 64},
		{"repeat_last_n", 0.0f, 1.0f, 0.0f, 1.0f, 0, -1},
	};

	ASSERT_OK(tl_sampler_check(&p.sampler));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		tl_sampler	s = tl_sampler_defaults();

		s.temperature = bad[i].temperature;
		s.top_p = bad[i].top_p;
		s.min_p = bad[i].min_p;
		s.repeat_penalty = bad[i].repeat_penalty;
		s.top_k = bad[i].top_k;
		s.repeat_last_n = bad[i].repeat_last_n;
		ASSERT_FAILS(TL_ERR_ARG, tl_sampler_check(&s));
		ASSERT_MESSAGE_HAS(bad[i].option);
	}

	o.n_ctx = 16;
	load_model(&tm, &o);
	ASSERT_OK(tl_llm_state_new(&st, tm.m, 8));
	p.sampler.min_p = 1.0f;
	ASSERT_FAILS(TL_ERR_ARG, tl_llm_generate(st, prompt, N_PROMPT, &p, &g));
	ASSERT_MESSAGE_HAS("min_p");
	assert_null(g.text);
	assert_null(g.tokens);
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
	size_t		i = 0;

	while (i < n)
	{
		unsigned	c = s[i],
					lo = 0x80,
					hi = 0xBF;
		int			len;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
		if (!len || i + len > n)
			return false;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
		else if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (int k = 2; k < len; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xBF)
				return false;
		i += len;
	}
	return true;
}

static void
expect_clean(const char *in, size_t len, const char *want)
{
	char	   *out;
	size_t		out_len;

	ASSERT_OK(tl_utf8_clean(in, len, &out, &out_len));
	assert_int_equal(out_len, strlen(want));
	assert_memory_equal(out, want, out_len);
	assert_int_equal(out[out_len], '\0');
	tl_free(out);
}

#define CLEAN(lit, want) expect_clean((lit), sizeof(lit) - 1, (want))
#define FFFD "\xEF\xBF\xBD"

static void
test_utf8_clean(void **state)
{
	tl_rng		rng;

	CLEAN("", "");
	CLEAN("plain ascii", "plain ascii");
	CLEAN("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF");
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
	/* a NUL byte is valid UTF-8 and kept */
	{
		char	   *out;
		size_t		out_len;

		ASSERT_OK(tl_utf8_clean("a\0b", 3, &out, &out_len));
		assert_int_equal(out_len, 3);
		assert_memory_equal(out, "a\0b", 3);
		tl_free(out);
	}

	/* random bytes biased to UTF-8's: always valid out, valid in unchanged */
	tl_rng_seed(&rng, 800);
	for (int trial = 0; trial < 2000; trial++)
	{
		static const unsigned char pool[] = {
			'a', 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xEF,
			0xF0, 0xF4, 0xF5, 0xFF
		};
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
		cmocka_unit_test(test_batch_equals_single),
		cmocka_unit_test(test_quantized_weights),
		cmocka_unit_test(test_kv_pages),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_generate_bad_args),
		cmocka_unit_test(test_utf8_clean),
	};

	return cmocka_run_group_tests_name("LLM runtime", tests, NULL, NULL);
}
