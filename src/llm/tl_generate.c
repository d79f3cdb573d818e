/*
 * tl_generate.c -- sampling the next token and the generation loop (see
 * tl_llm.h).
 *
 * The sampler applies its steps in llama.cpp's default order: repeat
 * penalty, top-k, top-p, min-p (the three filters on probabilities at
 * temperature 1), temperature, then a draw.  Temperature 0 is greedy:
 * the highest logit after the penalty, the lowest id among equals.
 * Draws come from the core's xoshiro generator seeded with `seed`, so a
 * seed gives the same text every time on any machine with the same
 * logits.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tl_alloc.h"
#include "tl_llm.h"
#include "tl_rng.h"

/*
 * Candidates with a logit this far below the best have probability below
 * e^-40 relative to it; dropping them before sorting changes no draw that
 * a float could resolve, and keeps the sort short.
 */
#define TL_SAMPLE_LOGIT_WINDOW 40.0f

typedef struct tl_candidate
{
	int32_t		id;
	float		logit;
	float		p;
} tl_candidate;

int32_t
tl_llm_argmax(const float *logits, int32_t n)
{
	int32_t		best = 0;

	for (int32_t i = 1; i < n; i++)
		if (logits[i] > logits[best])
			best = i;
	return best;
}

tl_sampler
tl_sampler_defaults(void)
{
	tl_sampler	s = {
		.temperature = 0.0f,
		.top_k = 0,
		.top_p = 1.0f,
		.min_p = 0.0f,
		.repeat_penalty = 1.0f,
		.repeat_last_n = 64,
		.seed = 0,
	};

	return s;
}

tl_status
tl_sampler_check(const tl_sampler *s)
{
	if (!(s->temperature >= 0.0f && s->temperature <= 100.0f))
		return tl_fail(TL_ERR_ARG, "temperature must be between 0 and 100");
	if (s->top_k < 0)
		return tl_fail(TL_ERR_ARG, "top_k must be 0 (off) or positive");
	if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
		return tl_fail(TL_ERR_ARG, "top_p must be in (0, 1]");
	if (!(s->min_p >= 0.0f && s->min_p < 1.0f))
		return tl_fail(TL_ERR_ARG, "min_p must be in [0, 1)");
	if (!(s->repeat_penalty > 0.0f && s->repeat_penalty <= 100.0f))
		return tl_fail(TL_ERR_ARG, "repeat_penalty must be in (0, 100]");
	if (s->repeat_last_n < 0)
		return tl_fail(TL_ERR_ARG, "repeat_last_n must not be negative");
	return TL_OK;
}

static int
tl_candidate_cmp(const void *a, const void *b)
{
	const tl_candidate *x = a,
			   *y = b;

	if (x->logit != y->logit)
		return x->logit > y->logit ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * Divide positive logits (multiply negative ones) of the tokens seen in
 * the last repeat_last_n of history, once per distinct token.
 */
static void
tl_apply_penalty(const tl_sampler *s, float *logits, int32_t n_vocab,
				 const int32_t *history, int32_t n_hist, uint8_t *seen)
{
	int32_t		from = n_hist > s->repeat_last_n ? n_hist - s->repeat_last_n : 0;

	if (s->repeat_penalty == 1.0f || s->repeat_last_n == 0)
		return;
	for (int32_t i = from; i < n_hist; i++)
	{
		int32_t		id = history[i];

		if (id < 0 || id >= n_vocab || seen[id])
			continue;
		seen[id] = 1;
		logits[id] = logits[id] > 0.0f ? logits[id] / s->repeat_penalty : logits[id] * s->repeat_penalty;
	}
	for (int32_t i = from; i < n_hist; i++)
		if (history[i] >= 0 && history[i] < n_vocab)
			seen[history[i]] = 0;
}

/* softmax of the first n candidates' logits divided by temp into p */
static void
tl_softmax_candidates(tl_candidate *c, int32_t n, float temp)
{
	float		mx = c[0].logit,
				sum = 0.0f;

	for (int32_t i = 1; i < n; i++)
		if (c[i].logit > mx)
			mx = c[i].logit;
	for (int32_t i = 0; i < n; i++)
		sum += (c[i].p = expf((c[i].logit - mx) / temp));
	for (int32_t i = 0; i < n; i++)
		c[i].p /= sum;
}

/* One token from logits (modified by the penalty); scratch as below. */
static int32_t
tl_sample(const tl_sampler *s, float *logits, int32_t n_vocab, const int32_t *history,
		  int32_t n_hist, tl_rng *rng, tl_candidate *cand, uint8_t *seen)
{
	int32_t		best = 0,
				n = 0;
	float		cut;

	tl_apply_penalty(s, logits, n_vocab, history, n_hist, seen);
	best = tl_llm_argmax(logits, n_vocab);
	if (s->temperature <= 0.0f || s->top_k == 1)
		return best;

	cut = logits[best] - TL_SAMPLE_LOGIT_WINDOW;
	for (int32_t i = 0; i < n_vocab; i++)
		if (logits[i] >= cut)
			cand[n++] = (tl_candidate) {i, logits[i], 0.0f};
	qsort(cand, (size_t) n, sizeof(tl_candidate), tl_candidate_cmp);
	if (s->top_k > 0 && s->top_k < n)
		n = s->top_k;

	tl_softmax_candidates(cand, n, 1.0f);
	if (s->top_p < 1.0f)
	{
		float		cum = 0.0f;
		int32_t		keep = n;

		for (int32_t i = 0; i < n; i++)
		{
			cum += cand[i].p;
			if (cum >= s->top_p)
			{
				keep = i + 1;
				break;
			}
		}
		n = keep;
	}
	if (s->min_p > 0.0f)
	{
		float		floor_p = s->min_p * cand[0].p;
		int32_t		keep = 1;

		while (keep < n && cand[keep].p >= floor_p)
			keep++;
		n = keep;
	}

	tl_softmax_candidates(cand, n, s->temperature);
	{
		float		u = tl_rng_uniform(rng),
					cum = 0.0f;

		for (int32_t i = 0; i < n; i++)
		{
			cum += cand[i].p;
			if (u < cum)
				return cand[i].id;
		}
	}
	return cand[n - 1].id;
}

/* ======================================================================
 * UTF-8
 * ====================================================================== */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid, -1 if cut off. */
static int
tl_utf8_seq(const unsigned char *s, size_t n)
{
	int			len;
	uint32_t	cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		len = 2, cp = s[0] & 0x1F;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		len = 3, cp = s[0] & 0x0F;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	/* the second byte's range excludes overlong forms, surrogates and > U+10FFFF */
	if (n >= 2 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
				   (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F)))
		return 0;
	for (int i = 1; i < len; i++)
	{
		if ((size_t) i >= n)
			return -1;			/* a valid beginning, cut off */
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
		(len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return len;
}

tl_status
tl_utf8_clean(const char *s, size_t len, char **out, size_t *out_len)
{
	const unsigned char *u = (const unsigned char *) s;
	char	   *d;
	size_t		o = 0;

	*out = NULL;
	*out_len = 0;
	if (len > (SIZE_MAX - 1) / 3 || !(d = tl_alloc(len * 3 + 1, 1)))
		return tl_fail(TL_ERR_NOMEM, "no memory for %zu bytes of text", len);
	for (size_t i = 0; i < len;)
	{
		int			k = tl_utf8_seq(u + i, len - i);

		if (k < 0)
			break;				/* a character cut off at the end */
		if (k == 0)
		{
			memcpy(d + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(d + o, s + i, (size_t) k);
		o += (size_t) k;
		i += (size_t) k;
	}
	d[o] = '\0';
	*out = d;
	*out_len = o;
	return TL_OK;
}

/* ======================================================================
 * Generation
 * ====================================================================== */

const char *
tl_finish_name(tl_finish f)
{
	switch (f)
	{
		case TL_FINISH_LENGTH:
			return "length";
		case TL_FINISH_END:
			return "end";
		case TL_FINISH_STOP:
			return "stop";
		case TL_FINISH_CONTEXT:
			return "context";
		case TL_FINISH_INTERRUPTED:
			return "interrupted";
	}
	return "unknown";
}

static double
tl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

void
tl_generation_free(tl_generation *g)
{
	if (!g)
		return;
	tl_free(g->text);
	tl_free(g->tokens);
	memset(g, 0, sizeof(*g));
}

/* The earliest stop string in text[from..len), or -1. */
static ptrdiff_t
tl_find_stop(const tl_generate_params *p, const char *text, size_t len, size_t from)
{
	ptrdiff_t	found = -1;

	for (int i = 0; i < p->n_stops; i++)
	{
		size_t		sl = strlen(p->stops[i]);

		if (sl == 0 || sl > len)
			continue;
		for (size_t at = from; at + sl <= len; at++)
			if (memcmp(text + at, p->stops[i], sl) == 0)
			{
				if (found < 0 || (ptrdiff_t) at < found)
					found = (ptrdiff_t) at;
				break;
			}
	}
	return found;
}

typedef struct tl_gen_work
{
	float	   *logits;			/* (n_vocab) */
	tl_candidate *cand;			/* (n_vocab) */
	uint8_t    *seen;			/* (n_vocab) */
	int32_t    *history;		/* prompt + generated */
	char	   *bytes;			/* generated text so far */
	size_t		n_bytes,
				cap_bytes;
} tl_gen_work;

static void
tl_gen_work_free(tl_gen_work *w)
{
	tl_free(w->logits);
	tl_free(w->cand);
	tl_free(w->seen);
	tl_free(w->history);
	tl_free(w->bytes);
}

/* Append a token's text (special tokens left out) to w->bytes. */
static tl_status
tl_gen_append(tl_gen_work *w, const tl_tokenizer *tok, int32_t id)
{
	char	   *piece;
	size_t		len;

	TL_TRY(tl_tokenizer_decode(tok, &id, 1, TL_TOK_SKIP_SPECIAL, &piece, &len));
	if (w->n_bytes + len + 1 > w->cap_bytes)
	{
		size_t		cap = (w->cap_bytes ? w->cap_bytes * 2 : 256) + len;
		char	   *grown = tl_alloc(cap, 1);

		if (!grown)
		{
			tl_free(piece);
			return tl_fail(TL_ERR_NOMEM, "generate: no memory for the text");
		}
		if (w->n_bytes)
			memcpy(grown, w->bytes, w->n_bytes);
		tl_free(w->bytes);
		w->bytes = grown;
		w->cap_bytes = cap;
	}
	memcpy(w->bytes + w->n_bytes, piece, len);
	w->n_bytes += len;
	tl_free(piece);
	return TL_OK;
}

tl_status
tl_llm_generate(tl_llm_state *st, const int32_t *prompt, int32_t n_prompt,
				const tl_generate_params *params, tl_generation *out)
{
	const tl_llm_model *m;
	const tl_llm_config *c;
	const tl_tokenizer *tok;
	tl_gen_work w = {0};
	tl_rng		rng;
	int32_t		n_hist = 0;
	size_t		max_stop = 0;
	double		t0;
	tl_status	rc = TL_OK;

	memset(out, 0, sizeof(*out));
	if (!st || !params || (!prompt && n_prompt > 0))
		return tl_fail(TL_ERR_ARG, "generate: missing state, prompt or parameters");
	if (n_prompt < 1)
		return tl_fail(TL_ERR_ARG, "generate: the prompt has no tokens");
	if (params->max_tokens < 0)
		return tl_fail(TL_ERR_ARG, "max_tokens must not be negative");
	if (params->n_stops < 0 || params->n_stops > TL_LLM_MAX_STOPS)
		return tl_fail(TL_ERR_ARG, "at most %d stop strings", TL_LLM_MAX_STOPS);
	TL_TRY(tl_sampler_check(&params->sampler));
	for (int i = 0; i < params->n_stops; i++)
	{
		if (!params->stops[i])
			return tl_fail(TL_ERR_ARG, "stop string %d is missing", i + 1);
		if (strlen(params->stops[i]) > max_stop)
			max_stop = strlen(params->stops[i]);
	}
	if (n_prompt > tl_llm_state_n_ctx(st) - tl_llm_state_n_past(st))
		return tl_fail(TL_ERR_ARG, "generate: a prompt of %d tokens does not fit in the %d free positions of the context",
					   n_prompt, tl_llm_state_n_ctx(st) - tl_llm_state_n_past(st));

	m = tl_llm_state_model(st);
	c = tl_llm_config_of(m);
	tok = tl_llm_tokenizer(m);

	w.logits = tl_alloc((size_t) c->n_vocab, sizeof(float));
	w.cand = tl_alloc((size_t) c->n_vocab, sizeof(tl_candidate));
	w.seen = tl_alloc((size_t) c->n_vocab, 1);
	w.history = tl_alloc((size_t) n_prompt + (size_t) params->max_tokens, sizeof(int32_t));
	out->tokens = tl_alloc((size_t) params->max_tokens + 1, sizeof(int32_t));
	if (!w.logits || !w.cand || !w.seen || !w.history || !out->tokens)
	{
		rc = tl_fail(TL_ERR_NOMEM, "generate: no memory for the sampler");
		goto done;
	}
	memcpy(w.history, prompt, sizeof(int32_t) * (size_t) n_prompt);
	n_hist = n_prompt;
	out->n_prompt = n_prompt;
	tl_rng_seed(&rng, params->sampler.seed);

	/* prefill */
	t0 = tl_now();
	for (int32_t at = 0, n; at < n_prompt; at += n)
	{
		n = tl_llm_prefill_chunk(n_prompt - at);
		if ((rc = tl_llm_eval(st, prompt + at, n, at + n == n_prompt ? w.logits : NULL)) != TL_OK)
			goto done;
		if (params->keep_going && !params->keep_going(params->keep_going_arg, at + n, 0))
		{
			out->finish = TL_FINISH_INTERRUPTED;
			out->prefill_seconds = tl_now() - t0;
			goto text;
		}
	}
	out->prefill_seconds = tl_now() - t0;

	/* decode */
	t0 = tl_now();
	out->finish = TL_FINISH_LENGTH;
	for (int32_t i = 0; i < params->max_tokens; i++)
	{
		int32_t		id = tl_sample(&params->sampler, w.logits, c->n_vocab, w.history, n_hist,
								   &rng, w.cand, w.seen);
		size_t		before = w.n_bytes;
		ptrdiff_t	stop;

		if (!params->ignore_end && tl_llm_is_end(m, id))
		{
			out->finish = TL_FINISH_END;
			break;
		}
		out->tokens[out->n_tokens++] = id;
		w.history[n_hist++] = id;
		if ((rc = tl_gen_append(&w, tok, id)) != TL_OK)
			goto done;
		stop = tl_find_stop(params, w.bytes, w.n_bytes, before > max_stop ? before - max_stop : 0);
		if (stop >= 0)
		{
			w.n_bytes = (size_t) stop;
			out->finish = TL_FINISH_STOP;
			break;
		}
		if (i + 1 == params->max_tokens)
			break;
		if (tl_llm_state_n_past(st) >= tl_llm_state_n_ctx(st))
		{
			out->finish = TL_FINISH_CONTEXT;
			break;
		}
		if ((rc = tl_llm_eval(st, &id, 1, w.logits)) != TL_OK)
			goto done;
		if (params->keep_going && !params->keep_going(params->keep_going_arg, n_prompt, out->n_tokens))
		{
			out->finish = TL_FINISH_INTERRUPTED;
			break;
		}
	}
	out->decode_seconds = tl_now() - t0;

text:
	rc = tl_utf8_clean(w.bytes ? w.bytes : "", w.n_bytes, &out->text, &out->len);

done:
	tl_gen_work_free(&w);
	if (rc != TL_OK)
		tl_generation_free(out);
	return rc;
}
