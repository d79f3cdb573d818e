/*
 * test_tokenizer.c -- the byte-level BPE tokenizer: a small vocabulary
 * written with gguf_writer.h (merge order, pre-tokenizer choice, special
 * tokens, decoding, hostile metadata), then the real SmolLM2 model
 * against the fixtures that test/bench/tokenizer_oracle.py wrote from
 * llama.cpp, a round trip of arbitrary bytes, concurrent encoders, and
 * the speed on 100 KB of text.  The real-model tests skip when
 * scripts/fetch_model.sh has not fetched the model.
 */
#include <pthread.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"
#include "gguf_writer.h"
#include "tl_gguf.h"
#include "tl_tokenizer.h"

#define REAL_MODEL "build/models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define FIXTURE "test/fixtures/tokenizer_smollm2.txt"
#define SPM_VOCAB "test/fixtures/spm_vocab.gguf"
#define SPM_FIXTURE "test/fixtures/tokenizer_spm.txt"

#define ASSERT_MESSAGE_HAS(fragment) \
	do { if (!strstr(tl_last_error(), (fragment))) \
			fail_msg("message \"%s\" lacks \"%s\"", tl_last_error(), (fragment)); \
	} while (0)

/* ------------------------------------------------- a synthetic vocabulary */

/* Ġ is the byte alphabet's space (U+0120), Ċ its newline (U+010A). */
#define G_SPACE "\xC4\xA0"
#define G_NL "\xC4\x8A"

static const char *const small_tokens[] = {
	"<s>", "</s>", "<x>", "a", "b", "c", G_SPACE, G_NL, "<", ">", "s", "/", "x",
	"ab", "bc", "abc", G_SPACE "a", G_SPACE "ab", "1", "2", "12",
};
enum
{
	T_BOS, T_EOS, T_USER, T_A, T_B, T_C, T_SP, T_NL, T_LT, T_GT, T_S, T_SLASH, T_X,
	T_AB, T_BC, T_ABC, T_SPA, T_SPAB, T_1, T_2, T_12, N_SMALL
};

static const char *const small_merges[] = {
	G_SPACE " a", "a b", "b c", "ab c", G_SPACE "a b", "1 2",
};

/* What to write; zeroed fields take the defaults of the small vocabulary. */
typedef struct tok_opts
{
	const char *model;			/* "gpt2" */
	const char *pre;			/* "gpt2"; "-" leaves the key out */
	const char *const *tokens;	/* small_tokens */
	int			n_tokens;		/* N_SMALL; -1: an empty array */
	const char *const *merges;	/* small_merges */
	int			n_merges;
	int			n_types;		/* N_SMALL; -1: no token_type key */
	int64_t		bos;			/* 0: T_BOS; -1: no key */
	bool		add_bos;
	bool		tokens_as_u32;	/* write tokenizer.ggml.tokens as a u32 */
} tok_opts;

static uint8_t *
build_gguf(const tok_opts *o, size_t *len)
{
	gw_buf		w = {0};
	uint64_t	n_kv = 0;
	const char *const *tokens = o->tokens ? o->tokens : small_tokens;
	int			n_tokens = o->n_tokens < 0 ? 0 : o->n_tokens ? o->n_tokens : N_SMALL;
	const char *const *merges = o->merges ? o->merges : small_merges;
	int			n_merges = o->merges ? o->n_merges : (int) (sizeof(small_merges) / sizeof(small_merges[0]));
	int			n_types = o->n_types < 0 ? -1 : o->n_types ? o->n_types : n_tokens;
	size_t		at_n_kv;

	at_n_kv = gw_begin(&w);
	gw_key(&w, "general.architecture", GW_STRING);
	gw_cstr(&w, "llama");
	n_kv++;
	gw_key(&w, "tokenizer.ggml.model", GW_STRING);
	gw_cstr(&w, o->model ? o->model : "gpt2");
	n_kv++;
	if (!o->pre || strcmp(o->pre, "-") != 0)
	{
		gw_key(&w, "tokenizer.ggml.pre", GW_STRING);
		gw_cstr(&w, o->pre ? o->pre : "gpt2");
		n_kv++;
	}
	if (o->tokens_as_u32)
	{
		gw_key(&w, "tokenizer.ggml.tokens", GW_U32);
		gw_u32(&w, 7);
	}
	else
	{
		gw_array(&w, "tokenizer.ggml.tokens", GW_STRING, (uint64_t) n_tokens);
		for (int i = 0; i < n_tokens; i++)
			gw_cstr(&w, tokens[i]);
	}
	n_kv++;
	if (n_types >= 0)
	{
		gw_array(&w, "tokenizer.ggml.token_type", GW_I32, (uint64_t) n_types);
		for (int i = 0; i < n_types; i++)
			gw_u32(&w, i == T_BOS || i == T_EOS ? 3 : i == T_USER ? 4 : 1);
		n_kv++;
	}
	gw_array(&w, "tokenizer.ggml.merges", GW_STRING, (uint64_t) n_merges);
	for (int i = 0; i < n_merges; i++)
		gw_cstr(&w, merges[i]);
	n_kv++;
	if (o->bos >= 0)
	{
		gw_key(&w, "tokenizer.ggml.bos_token_id", GW_U32);
		gw_u32(&w, (uint32_t) (o->bos ? o->bos : T_BOS));
		gw_key(&w, "tokenizer.ggml.eos_token_id", GW_U32);
		gw_u32(&w, T_EOS);
		n_kv += 2;
	}
	gw_key(&w, "tokenizer.ggml.add_bos_token", GW_BOOL);
	gw_u8(&w, o->add_bos ? 1 : 0);
	n_kv++;
	return gw_finish(&w, at_n_kv, n_kv, len);
}

/* Load a tokenizer from a synthetic file; the GGUF is closed at once. */
static tl_status
load_small(const tok_opts *o, tl_tokenizer **tok)
{
	size_t		len;
	uint8_t    *bytes = build_gguf(o, &len);
	tl_gguf		g;
	tl_status	rc;

	memset(&g, 0, sizeof(g));
	ASSERT_OK(tl_gguf_open_memory(&g, bytes, len));
	rc = tl_tokenizer_load(tok, &g);
	tl_gguf_close(&g);
	free(bytes);
	return rc;
}

/* Encode text and compare with the expected ids (n of them). */
static void
expect_ids(const tl_tokenizer *tok, const char *text, unsigned flags, const int32_t *want, size_t n)
{
	int32_t    *ids = NULL;
	size_t		got = 0;

	ASSERT_OK(tl_tokenizer_encode(tok, text, strlen(text), flags, &ids, &got));
	if (got != n)
		fail_msg("\"%s\": %zu ids, expected %zu", text, got, n);
	for (size_t i = 0; i < n; i++)
		if (ids[i] != want[i])
			fail_msg("\"%s\": id %zu is %d, expected %d", text, i, ids[i], want[i]);
	tl_free(ids);
}

#define EXPECT(tok, text, flags, ...) \
	do { const int32_t want_[] = {__VA_ARGS__}; \
		expect_ids((tok), (text), (flags), want_, sizeof(want_) / sizeof(want_[0])); } while (0)

static void
expect_decode(const tl_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags, const char *want)
{
	char	   *text = NULL;
	size_t		len = 0;

	ASSERT_OK(tl_tokenizer_decode(tok, ids, n, flags, &text, &len));
	assert_int_equal(len, strlen(want));
	assert_string_equal(text, want);
	tl_free(text);
}

static void
test_small_vocab(void **state)
{
	tok_opts	o = {0};
	tl_tokenizer *tok;
	const char *text;
	size_t		len;
	tl_token_type type;

	ASSERT_OK(load_small(&o, &tok));
	assert_int_equal(tl_tokenizer_n_vocab(tok), N_SMALL);
	assert_int_equal(tl_tokenizer_pre(tok), TL_TOK_PRE_GPT2);
	assert_string_equal(tl_tokenizer_pre_name(tok), "gpt2");
	assert_int_equal(tl_tokenizer_bos(tok), T_BOS);
	assert_int_equal(tl_tokenizer_eos(tok), T_EOS);
	assert_int_equal(tl_tokenizer_unk(tok), -1);
	assert_int_equal(tl_tokenizer_pad(tok), -1);
	assert_false(tl_tokenizer_add_bos(tok));
	ASSERT_OK(tl_tokenizer_token_text(tok, T_SPAB, &text, &len));
	assert_int_equal(len, 4);
	assert_memory_equal(text, G_SPACE "ab", 4);
	ASSERT_OK(tl_tokenizer_token_type(tok, T_USER, &type));
	assert_int_equal(type, TL_TOKEN_USER_DEFINED);
	assert_int_equal(tl_tokenizer_lookup(tok, "abc", 3), T_ABC);
	assert_int_equal(tl_tokenizer_lookup(tok, "abcd", 4), -1);

	/* merges by rank: a+b (1) before b+c (2), then ab+c (3) */
	EXPECT(tok, "abc", 0, T_ABC);
	EXPECT(tok, "bca", 0, T_BC, T_A);
	EXPECT(tok, "cab", 0, T_C, T_AB);
	/* the space joins the letters that follow it: Ġ+a (0), then Ġa+b (4) */
	EXPECT(tok, " ab", 0, T_SPAB);
	EXPECT(tok, "ab ab", 0, T_AB, T_SPAB);
	/* runs of spaces: all but the last stay apart from the next word */
	EXPECT(tok, "a   ab", 0, T_A, T_SP, T_SP, T_SPAB);
	EXPECT(tok, "a\n\nb", 0, T_A, T_NL, T_NL, T_B);
	/* gpt2 keeps digits together */
	EXPECT(tok, "12", 0, T_12);
	/* bytes without a token are dropped, as llama.cpp drops them */
	EXPECT(tok, "aqb", 0, T_A, T_B);

	/* special tokens: control only when asked, user-defined always, longest first */
	EXPECT(tok, "a<s>b", TL_TOK_PARSE_SPECIAL, T_A, T_BOS, T_B);
	EXPECT(tok, "a<s>b", 0, T_A, T_LT, T_S, T_GT, T_B);
	EXPECT(tok, "</s><s>", TL_TOK_PARSE_SPECIAL, T_EOS, T_BOS);
	EXPECT(tok, "a<x>", 0, T_A, T_USER);
	EXPECT(tok, "<x><x>", TL_TOK_PARSE_SPECIAL, T_USER, T_USER);

	/* BOS: forced, or when the model asks for it (this one does not) */
	EXPECT(tok, "a", TL_TOK_FORCE_BOS, T_BOS, T_A);
	EXPECT(tok, "a", TL_TOK_ADD_BOS, T_A);
	EXPECT(tok, "", TL_TOK_FORCE_BOS, T_BOS);

	{
		int32_t    *ids = (int32_t *) 1;
		size_t		n = 7;

		ASSERT_OK(tl_tokenizer_encode(tok, "", 0, 0, &ids, &n));
		assert_null(ids);
		assert_int_equal(n, 0);
	}

	/* decoding */
	{
		const int32_t ids[] = {T_BOS, T_SPAB, T_NL, T_USER, T_C, T_EOS};

		expect_decode(tok, ids, 6, 0, "<s> ab\n<x>c</s>");
		expect_decode(tok, ids, 6, TL_TOK_SKIP_SPECIAL, " ab\n<x>c");
		expect_decode(tok, ids, 0, 0, "");
	}
	/* bad ids */
	{
		const int32_t bad1[] = {T_A, N_SMALL};
		const int32_t bad2[] = {-1};
		char	   *out = (char *) 1;
		size_t		n = 3;

		ASSERT_FAILS(TL_ERR_ARG, tl_tokenizer_decode(tok, bad1, 2, 0, &out, &n));
		ASSERT_MESSAGE_HAS("out of range");
		assert_null(out);
		ASSERT_FAILS(TL_ERR_ARG, tl_tokenizer_decode(tok, bad2, 1, 0, &out, &n));
		ASSERT_FAILS(TL_ERR_ARG, tl_tokenizer_token_text(tok, N_SMALL, &text, &len));
		ASSERT_FAILS(TL_ERR_ARG, tl_tokenizer_token_type(tok, -5, &type));
		ASSERT_FAILS(TL_ERR_ARG, tl_tokenizer_encode(tok, NULL, 3, 0, (int32_t **) &out, &n));
	}
	tl_tokenizer_free(tok);
	tl_tokenizer_free(NULL);

	/* the same vocabulary with smollm's pre-tokenizer: digits one by one */
	o.pre = "smollm";
	ASSERT_OK(load_small(&o, &tok));
	assert_int_equal(tl_tokenizer_pre(tok), TL_TOK_PRE_SMOLLM);
	EXPECT(tok, "12", 0, T_1, T_2);
	EXPECT(tok, "ab12 ab", 0, T_AB, T_1, T_2, T_SPAB);
	tl_tokenizer_free(tok);

	/* and llama3's: a digit group of up to three, a word may take one non-letter before it */
	o.pre = "llama-bpe";
	ASSERT_OK(load_small(&o, &tok));
	assert_int_equal(tl_tokenizer_pre(tok), TL_TOK_PRE_LLAMA3);
	EXPECT(tok, "12", 0, T_12);
	EXPECT(tok, "a\n\nb", 0, T_A, T_NL, T_NL, T_B);
	tl_tokenizer_free(tok);
	o.pre = "qwen2";
	ASSERT_OK(load_small(&o, &tok));
	EXPECT(tok, "12", 0, T_1, T_2);
	tl_tokenizer_free(tok);

	/* no pre key: gpt2; add_bos honoured */
	o.pre = "-";
	o.add_bos = true;
	ASSERT_OK(load_small(&o, &tok));
	assert_int_equal(tl_tokenizer_pre(tok), TL_TOK_PRE_GPT2);
	EXPECT(tok, "a", TL_TOK_ADD_BOS, T_BOS, T_A);
	tl_tokenizer_free(tok);
}

static void
expect_load_fails(const tok_opts *o, tl_status code, const char *fragment)
{
	tl_tokenizer *tok = (tl_tokenizer *) 1;
	tl_status	rc = load_small(o, &tok);

	if (rc != code)
		fail_msg("expected %s with \"%s\", got %s: %s", tl_status_name(code), fragment,
				 tl_status_name(rc), tl_last_error());
	ASSERT_MESSAGE_HAS(fragment);
	assert_null(tok);
}

static void
test_hostile_metadata(void **state)
{
	static const char *const merge_unknown[] = {"a b", "a q"};
	static const char *const merge_no_space[] = {"ab"};
	static const char *const merge_no_result[] = {"a c"};
	static const char *const merge_trailing[] = {"a "};
	tok_opts	o;

	memset(&o, 0, sizeof(o));
	o.n_tokens = -1;
	o.n_types = -1;
	o.merges = merge_no_space;
	o.n_merges = 0;
	expect_load_fails(&o, TL_ERR_ARG, "empty");

	memset(&o, 0, sizeof(o));
	o.merges = merge_unknown;
	o.n_merges = 2;
	expect_load_fails(&o, TL_ERR_ARG, "merge 1 names a right token that is not in the vocabulary");

	o.merges = merge_no_result;
	o.n_merges = 1;
	expect_load_fails(&o, TL_ERR_ARG, "merge 0 names a result");

	o.merges = merge_no_space;
	expect_load_fails(&o, TL_ERR_ARG, "separated by a space");
	o.merges = merge_trailing;
	expect_load_fails(&o, TL_ERR_ARG, "separated by a space");

	memset(&o, 0, sizeof(o));
	o.n_types = N_SMALL - 1;
	expect_load_fails(&o, TL_ERR_ARG, "token_type has 20 entries for 21 tokens");

	memset(&o, 0, sizeof(o));
	o.bos = N_SMALL;
	expect_load_fails(&o, TL_ERR_ARG, "bos_token_id = 21 is out of range");

	memset(&o, 0, sizeof(o));
	o.model = "bert";
	expect_load_fails(&o, TL_ERR_UNAVAILABLE, "\"bert\" is not supported");

	/* a SentencePiece vocabulary needs its scores */
	memset(&o, 0, sizeof(o));
	o.model = "llama";
	expect_load_fails(&o, TL_ERR_ARG, "tokenizer.ggml.scores");

	memset(&o, 0, sizeof(o));
	o.pre = "made-up";
	expect_load_fails(&o, TL_ERR_UNAVAILABLE, "\"made-up\" is not supported");

	memset(&o, 0, sizeof(o));
	o.tokens_as_u32 = true;
	o.n_types = -1;
	o.merges = merge_no_space;
	o.n_merges = 0;
	expect_load_fails(&o, TL_ERR_ARG, "tokenizer.ggml.tokens");

	/* an empty GGUF: no tokenizer at all */
	{
		static const uint8_t empty[24] = {'G', 'G', 'U', 'F', 3};
		uint8_t    *bytes = copy_exact(empty, sizeof(empty));
		tl_gguf		g;
		tl_tokenizer *tok;

		memset(&g, 0, sizeof(g));
		ASSERT_OK(tl_gguf_open_memory(&g, bytes, sizeof(empty)));
		ASSERT_FAILS(TL_ERR_ARG, tl_tokenizer_load(&tok, &g));
		ASSERT_MESSAGE_HAS("tokenizer.ggml.model is missing");
		assert_null(tok);
		tl_gguf_close(&g);
		free(bytes);
	}
	ASSERT_FAILS(TL_ERR_ARG, tl_tokenizer_load(NULL, NULL));
}

/*
 * Every byte of the synthetic file damaged in turn: whatever the GGUF
 * reader lets through, the tokenizer loads or refuses cleanly, and a
 * loaded one encodes and decodes without touching memory it should not
 * (the sanitizer build watches).
 */
static void
test_damaged_metadata(void **state)
{
	tok_opts	o = {0};
	size_t		len;
	uint8_t    *clean = build_gguf(&o, &len);
	static const uint8_t values[] = {0x00, 0x01, 0x20, 0x7F, 0xFF};
	int			loaded = 0,
				refused = 0;

	for (size_t at = 0; at < len; at++)
		for (size_t v = 0; v < sizeof(values); v++)
		{
			uint8_t    *bytes;
			tl_gguf		g;
			tl_tokenizer *tok = NULL;
			tl_status	rc;

			if (clean[at] == values[v])
				continue;
			bytes = copy_exact(clean, len);
			bytes[at] = values[v];
			memset(&g, 0, sizeof(g));
			if (tl_gguf_open_memory(&g, bytes, len) != TL_OK)
			{
				free(bytes);
				continue;
			}
			rc = tl_tokenizer_load(&tok, &g);
			tl_gguf_close(&g);
			free(bytes);
			if (rc != TL_OK)
			{
				assert_null(tok);
				assert_true(rc == TL_ERR_ARG || rc == TL_ERR_UNAVAILABLE);
				refused++;
				continue;
			}
			loaded++;
			{
				const char *text = "</s>ab c<s> 12\n<x>  abc";
				int32_t    *ids = NULL;
				size_t		n = 0;
				char	   *back = NULL;
				size_t		back_len = 0;

				ASSERT_OK(tl_tokenizer_encode(tok, text, strlen(text),
											  TL_TOK_PARSE_SPECIAL | TL_TOK_FORCE_BOS, &ids, &n));
				assert_true(n <= strlen(text) + 1);
				ASSERT_OK(tl_tokenizer_decode(tok, ids, n, 0, &back, &back_len));
				tl_free(back);
				tl_free(ids);
			}
			tl_tokenizer_free(tok);
		}
	print_message("  damaged files the reader accepted: %d tokenizers loaded, %d refused\n",
				  loaded, refused);
	assert_true(loaded > 0 && refused > 0);
	free(clean);
}

/* ------------------------------------------------------------ real model */

typedef struct fixture_case
{
	unsigned	flags;
	char	   *text;
	size_t		len;
	int32_t    *ids;
	size_t		n_ids;
} fixture_case;

typedef struct fixture
{
	fixture_case *cases;
	size_t		n;
	size_t		big_bytes,
				big_tokens;
	uint64_t	big_hash;
} fixture;

static int
hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
		c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static char *
unescape(const char *s, size_t n, size_t *out_len)
{
	char	   *out = malloc(n + 1);
	size_t		k = 0;

	assert_non_null(out);
	for (size_t i = 0; i < n; i++)
	{
		if (s[i] != '\\' || i + 1 >= n)
		{
			out[k++] = s[i];
			continue;
		}
		switch (s[++i])
		{
			case 'n':
				out[k++] = '\n';
				break;
			case 't':
				out[k++] = '\t';
				break;
			case 'r':
				out[k++] = '\r';
				break;
			case 'x':
				assert_true(i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0);
				out[k++] = (char) (hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
				i += 2;
				break;
			default:
				out[k++] = s[i];
		}
	}
	out[k] = '\0';
	*out_len = k;
	return out;
}

static bool
fixture_load(fixture *fx, const char *path)
{
	FILE	   *f = fopen(path, "r");
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		got;

	memset(fx, 0, sizeof(*fx));
	if (!f)
		return false;
	while ((got = getline(&line, &cap, f)) > 0)
	{
		char	   *tab1,
				   *tab2,
				   *p;
		fixture_case *c;

		if (line[got - 1] == '\n')
			line[--got] = '\0';
		if (got == 0 || line[0] == '#')
			continue;
		if (strncmp(line, "big\t", 4) == 0)
		{
			unsigned long long b,
						t,
						h;

			assert_int_equal(sscanf(line + 4, "%llu\t%llu\t%llu", &b, &t, &h), 3);
			fx->big_bytes = b;
			fx->big_tokens = t;
			fx->big_hash = h;
			continue;
		}
		tab1 = strchr(line, '\t');
		assert_non_null(tab1);
		tab2 = strchr(tab1 + 1, '\t');
		assert_non_null(tab2);
		fx->cases = realloc(fx->cases, (fx->n + 1) * sizeof(fixture_case));
		assert_non_null(fx->cases);
		c = &fx->cases[fx->n++];
		c->flags = line[0] == '1' ? TL_TOK_PARSE_SPECIAL : 0;
		c->text = unescape(tab1 + 1, (size_t) (tab2 - tab1 - 1), &c->len);
		c->ids = malloc(((size_t) (got) + 1) * sizeof(int32_t));
		assert_non_null(c->ids);
		c->n_ids = 0;
		p = tab2 + 1;
		while (*p)
		{
			char	   *end;
			long		v = strtol(p, &end, 10);

			assert_true(end != p);
			c->ids[c->n_ids++] = (int32_t) v;
			p = end;
			while (*p == ' ')
				p++;
		}
	}
	free(line);
	fclose(f);
	return fx->n > 0;
}

static void
fixture_free(fixture *fx)
{
	for (size_t i = 0; i < fx->n; i++)
	{
		free(fx->cases[i].text);
		free(fx->cases[i].ids);
	}
	free(fx->cases);
}

typedef struct real
{
	tl_gguf		g;
	tl_tokenizer *tok;
	fixture		fx;
} real;

static int
real_setup(void **state)
{
	real	   *r = calloc(1, sizeof(real));

	assert_non_null(r);
	*state = r;
	if (access(REAL_MODEL, R_OK) != 0)
		return 0;
	ASSERT_OK(tl_gguf_open(&r->g, REAL_MODEL));
	ASSERT_OK(tl_tokenizer_load(&r->tok, &r->g));
	fixture_load(&r->fx, FIXTURE);
	return 0;
}

static int
real_teardown(void **state)
{
	real	   *r = *state;

	tl_tokenizer_free(r->tok);
	tl_gguf_close(&r->g);
	fixture_free(&r->fx);
	free(r);
	return 0;
}

static real *
need_model(void **state, bool fixtures)
{
	real	   *r = *state;

	if (!r->tok)
	{
		print_message("  %s is absent (run scripts/fetch_model.sh): real-model checks skipped\n", REAL_MODEL);
		skip();
	}
	if (fixtures && r->fx.n == 0)
		fail_msg("%s is missing or empty", FIXTURE);
	return r;
}

static void
test_real_metadata(void **state)
{
	real	   *r = need_model(state, false);
	tl_token_type type;

	assert_int_equal(tl_tokenizer_n_vocab(r->tok), 49152);
	assert_string_equal(tl_tokenizer_pre_name(r->tok), "smollm");
	assert_int_equal(tl_tokenizer_bos(r->tok), 1);
	assert_int_equal(tl_tokenizer_eos(r->tok), 2);
	assert_false(tl_tokenizer_add_bos(r->tok));
	ASSERT_OK(tl_tokenizer_token_type(r->tok, 1, &type));
	assert_int_equal(type, TL_TOKEN_CONTROL);
	assert_int_equal(tl_tokenizer_lookup(r->tok, "<|im_start|>", 12), 1);
}

/*
 * Every fixture line encodes to llama.cpp's ids and decodes back to its
 * text; returns the number of tokens.
 */
static size_t
check_fixture(const tl_tokenizer *tok, const fixture *fx, unsigned decode_flags, const char *label)
{
	size_t		tokens = 0;

	for (size_t i = 0; i < fx->n; i++)
	{
		const fixture_case *c = &fx->cases[i];
		int32_t    *ids = NULL;
		size_t		n = 0;
		char	   *back = NULL;
		size_t		back_len = 0;

		ASSERT_OK(tl_tokenizer_encode(tok, c->text, c->len, c->flags, &ids, &n));
		if (n != c->n_ids || (n && memcmp(ids, c->ids, n * sizeof(int32_t)) != 0))
		{
			size_t		k = 0;

			while (k < n && k < c->n_ids && ids[k] == c->ids[k])
				k++;
			fail_msg("%s fixture %zu (special %u) \"%s\": %zu ids, expected %zu; first difference at %zu (%d vs %d)",
					 label, i, c->flags, c->text, n, c->n_ids, k, k < n ? ids[k] : -1,
					 k < c->n_ids ? c->ids[k] : -1);
		}
		tokens += n;
		ASSERT_OK(tl_tokenizer_decode(tok, ids, n, decode_flags, &back, &back_len));
		if (back_len != c->len || memcmp(back, c->text, c->len) != 0)
			fail_msg("%s fixture %zu: decode(encode(x)) is \"%s\", expected \"%s\"", label, i, back, c->text);
		tl_free(back);
		tl_free(ids);
	}
	return tokens;
}

static void
test_real_fixtures(void **state)
{
	real	   *r = need_model(state, true);
	size_t		tokens = check_fixture(r->tok, &r->fx, 0, "SmolLM2");

	print_message("  %zu fixture lines, %zu tokens: all match llama.cpp and round-trip\n",
				  r->fx.n, tokens);
}

/*
 * A SentencePiece vocabulary (test/fixtures/spm_vocab.gguf, trained and
 * written by test/bench/spm_oracle.py) against llama.cpp's ids for the
 * same corpus; decoding with the prefix space stripped gives the text
 * back, byte-fallback pieces included.
 */
static void
test_spm_fixtures(void **state)
{
	tl_gguf		g = {0};
	tl_tokenizer *tok = NULL;
	fixture		fx;
	size_t		tokens = 0;
	int32_t    *ids = NULL;
	size_t		n = 0;

	ASSERT_OK(tl_gguf_open(&g, SPM_VOCAB));
	ASSERT_OK(tl_tokenizer_load(&tok, &g));
	tl_gguf_close(&g);				/* the tokenizer keeps copies */
	assert_string_equal(tl_tokenizer_pre_name(tok), "llama");
	assert_true(tl_tokenizer_add_bos(tok));
	assert_int_equal(tl_tokenizer_bos(tok), 1);
	if (!fixture_load(&fx, SPM_FIXTURE))
		fail_msg("%s is missing or empty", SPM_FIXTURE);
	tokens = check_fixture(tok, &fx, TL_TOK_STRIP_PREFIX, "SentencePiece");
	/* BOS by default; stripping skips it; pieces keep their spaces */
	ASSERT_OK(tl_tokenizer_encode(tok, "the student", 11, TL_TOK_ADD_BOS, &ids, &n));
	assert_true(n >= 2 && ids[0] == 1);
	{
		char	   *back;
		size_t		len;

		ASSERT_OK(tl_tokenizer_decode(tok, ids, n, TL_TOK_STRIP_PREFIX | TL_TOK_SKIP_SPECIAL, &back, &len));
		assert_string_equal(back, "the student");
		tl_free(back);
		ASSERT_OK(tl_tokenizer_decode(tok, ids + 1, 1, 0, &back, &len));
		assert_true(back[0] == ' ');	/* a piece alone keeps its space */
		tl_free(back);
	}
	tl_free(ids);

	/*
	 * Invalid UTF-8 whose lead bytes swallow the spaces' U+2581: each space
	 * falls back to three byte tokens (found by the fuzzer: more ids than
	 * bytes, which once overflowed the output)
	 */
	{
		char		text[121];

		for (int i = 0; i < 40; i++)
			memcpy(text + 3 * i, "\xF7\xF7 ", 3);
		text[120] = '\0';
		ASSERT_OK(tl_tokenizer_encode(tok, text, 120, 0, &ids, &n));
		assert_true(n > 121 && n <= 3 * 120 + 4);
		tl_free(ids);
	}
	print_message("  %zu SentencePiece fixture lines, %zu tokens: all match llama.cpp and round-trip\n",
				  fx.n, tokens);
	fixture_free(&fx);
	tl_tokenizer_free(tok);
}

static void
test_real_special(void **state)
{
	real	   *r = need_model(state, false);
	const char *chat = "<|im_start|>user\nHi<|im_end|>";
	int32_t    *on = NULL,
			   *off = NULL;
	size_t		n_on,
				n_off;
	char	   *text;
	size_t		len;

	ASSERT_OK(tl_tokenizer_encode(r->tok, chat, strlen(chat), TL_TOK_PARSE_SPECIAL, &on, &n_on));
	assert_int_equal(on[0], 1);
	assert_int_equal(on[n_on - 1], 2);
	ASSERT_OK(tl_tokenizer_encode(r->tok, chat, strlen(chat), 0, &off, &n_off));
	assert_true(n_off > n_on);
	for (size_t i = 0; i < n_off; i++)
		assert_true(off[i] != 1 && off[i] != 2);
	ASSERT_OK(tl_tokenizer_decode(r->tok, on, n_on, TL_TOK_SKIP_SPECIAL, &text, &len));
	assert_string_equal(text, "user\nHi");
	tl_free(text);
	ASSERT_OK(tl_tokenizer_decode(r->tok, off, n_off, TL_TOK_SKIP_SPECIAL, &text, &len));
	assert_string_equal(text, chat);
	tl_free(text);
	tl_free(on);
	tl_free(off);
}

/*
 * Any bytes, valid UTF-8 or not, come back unchanged, as long as each
 * byte has a token: SmolLM2's vocabulary lacks 21 of the 256 byte
 * symbols (some control characters, 0xC0, 0xC1, 0xF1, 0xF2, 0xF5..0xFF),
 * and those bytes are dropped, as llama.cpp drops them.
 */
static void
test_real_random_bytes(void **state)
{
	real	   *r = need_model(state, false);
	uint64_t	seed = 12345;
	uint8_t		usable[256];
	int			n_usable = 0,
				n_missing = 0;
	static const char common[] = " ab\n\t1.<|>Z\xC3\xA9";

	for (int b = 0; b < 256; b++)
	{
		char		c = (char) b;
		int32_t    *ids = NULL;
		size_t		n = 0;

		ASSERT_OK(tl_tokenizer_encode(r->tok, &c, 1, 0, &ids, &n));
		if (n == 1)
			usable[n_usable++] = (uint8_t) b;
		else
			n_missing++;
		tl_free(ids);
	}
	assert_int_equal(n_missing, 21);
	for (int round = 0; round < 200; round++)
	{
		char		buf[300];
		size_t		n = (size_t) (round * 7 % 300);
		int32_t    *ids = NULL;
		size_t		n_ids = 0;
		char	   *back = NULL;
		size_t		back_len = 0;

		for (size_t i = 0; i < n; i++)
		{
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			/* mostly ASCII and spaces and a valid 2-byte letter, some any byte */
			if ((seed >> 33) % 4 == 0)
				buf[i] = (char) usable[(seed >> 40) % (uint64_t) n_usable];
			else
				buf[i] = common[(seed >> 40) % (sizeof(common) - 1)];
		}
		ASSERT_OK(tl_tokenizer_encode(r->tok, buf, n, round % 2 ? TL_TOK_PARSE_SPECIAL : 0, &ids, &n_ids));
		ASSERT_OK(tl_tokenizer_decode(r->tok, ids, n_ids, 0, &back, &back_len));
		assert_int_equal(back_len, n);
		if (n)
			assert_memory_equal(back, buf, n);
		tl_free(ids);
		tl_free(back);
	}
}

/* The long text of the fixture: the special-off texts, each with a newline, repeated. */
static char *
big_text(const fixture *fx, size_t *len)
{
	size_t		block = 0,
				at = 0,
				cap;
	char	   *text;

	for (size_t i = 0; i < fx->n; i++)
		if (fx->cases[i].flags == 0)
			block += fx->cases[i].len + 1;
	assert_true(block > 0);
	cap = (100000 / block + 1) * block;
	text = malloc(cap + 1);
	assert_non_null(text);
	while (at < 100000)
		for (size_t i = 0; i < fx->n; i++)
			if (fx->cases[i].flags == 0)
			{
				memcpy(text + at, fx->cases[i].text, fx->cases[i].len);
				at += fx->cases[i].len;
				text[at++] = '\n';
			}
	text[at] = '\0';
	*len = at;
	return text;
}

static void
test_real_speed(void **state)
{
	real	   *r = need_model(state, true);
	size_t		len,
				n = 0;
	char	   *text = big_text(&r->fx, &len);
	int32_t    *ids = NULL;
	struct timespec t0,
				t1;
	double		sec;
	uint64_t	h = 1469598103934665603ull;
	char	   *back;
	size_t		back_len;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_OK(tl_tokenizer_encode(r->tok, text, len, 0, &ids, &n));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	sec = (double) (t1.tv_sec - t0.tv_sec) + 1e-9 * (double) (t1.tv_nsec - t0.tv_nsec);
	print_message("  %zu bytes -> %zu tokens in %.1f ms (%.0f tokens/s, %.1f MB/s)\n",
				  len, n, sec * 1e3, (double) n / sec, (double) len / sec / 1e6);
	for (size_t i = 0; i < n; i++)
	{
		h ^= (uint32_t) ids[i];
		h *= 1099511628211ull;
	}
	if (r->fx.big_bytes)
	{
		assert_int_equal(len, r->fx.big_bytes);
		assert_int_equal(n, r->fx.big_tokens);
		assert_true(h == r->fx.big_hash);
	}
	ASSERT_OK(tl_tokenizer_decode(r->tok, ids, n, 0, &back, &back_len));
	assert_int_equal(back_len, len);
	assert_memory_equal(back, text, len);
	/* generous: a sanitizer build is many times slower than -O3 */
	assert_true(sec < 5.0);
	tl_free(back);
	tl_free(ids);
	free(text);
}

typedef struct worker
{
	const tl_tokenizer *tok;
	const fixture *fx;
	int			mismatches;
} worker;

static void *
work(void *arg)
{
	worker	   *w = arg;

	for (int round = 0; round < 5; round++)
		for (size_t i = 0; i < w->fx->n; i++)
		{
			const fixture_case *c = &w->fx->cases[i];
			int32_t    *ids = NULL;
			size_t		n = 0;

			if (tl_tokenizer_encode(w->tok, c->text, c->len, c->flags, &ids, &n) != TL_OK ||
				n != c->n_ids || (n && memcmp(ids, c->ids, n * sizeof(int32_t)) != 0))
				w->mismatches++;
			tl_free(ids);
		}
	return NULL;
}

/* One loaded tokenizer, four threads encoding at once. */
static void
test_real_threads(void **state)
{
	real	   *r = need_model(state, true);
	pthread_t	th[4];
	worker		w[4];

	for (int i = 0; i < 4; i++)
	{
		w[i] = (worker) {r->tok, &r->fx, 0};
		assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++)
	{
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].mismatches, 0);
	}
}

int
main(void)
{
	const struct CMUnitTest synthetic[] = {
		cmocka_unit_test(test_small_vocab),
		cmocka_unit_test(test_hostile_metadata),
		cmocka_unit_test(test_damaged_metadata),
	};
	const struct CMUnitTest real_model[] = {
		cmocka_unit_test(test_real_metadata),
		cmocka_unit_test(test_real_fixtures),
		cmocka_unit_test(test_spm_fixtures),
		cmocka_unit_test(test_real_special),
		cmocka_unit_test(test_real_random_bytes),
		cmocka_unit_test(test_real_speed),
		cmocka_unit_test(test_real_threads),
	};
	int			failed = cmocka_run_group_tests_name("tokenizer (synthetic)", synthetic, NULL, NULL);

	failed += cmocka_run_group_tests_name("tokenizer (SmolLM2)", real_model, real_setup, real_teardown);
	return failed;
}
