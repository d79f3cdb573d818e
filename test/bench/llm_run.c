/*
 * llm_run.c -- the LLM runtime from the command line, for the oracle
 * script (test/bench/llm_oracle.py) and for people: not a test.
 *
 *   llm_run MODEL.gguf [options] generate TEXT
 *	   greedy (or sampled) continuation of TEXT, tokenized with special
 *	   tokens parsed and BOS added when the model asks for it
 *   llm_run MODEL.gguf [options] chat TEXT
 *	   the same for TEXT as one user message in the model's chat template
 *   llm_run MODEL.gguf [options] ids IDS
 *	   the same from comma-separated token ids
 *   llm_run MODEL.gguf [options] tokenize TEXT
 *   llm_run MODEL.gguf [options] teacher PROMPT_IDS CONTINUATION_IDS
 *	   feed the continuation token by token and print, before each, the
 *	   model's top-1 token (agreement with another runtime's greedy run)
 *   llm_run MODEL.gguf [options] trace PROMPT_IDS CONTINUATION_IDS FILE
 *	   the same feeding, writing every traced intermediate to FILE as
 *	   records (int32 step, int32 layer, char name[32], int32 rows,
 *	   int64 cols, rows*cols float32), step 0 being the prompt; read by
 *	   test/bench/llm_trace.py
 *   llm_run MODEL.gguf [options] bench PROMPT_TOKENS GEN_TOKENS
 *	   prefill a prompt of that many tokens, then decode that many tokens
 *	   greedily without stopping at an end token; print tokens/s
 *
 * options: --threads N (default 1), --ctx N (default 2048), --max N
 * (generate: new tokens, default 64), --temperature T, --seed S,
 * --ignore-end 1 (generate past end-of-turn tokens).
 *
 * Output lines are "key: value" so that a script can read them.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "tl_alloc.h"
#include "tl_chat.h"
#include "tl_llm.h"
#include "tl_pool.h"

static void
print_ids(const char *key, const int32_t *ids, size_t n)
{
	printf("%s:", key);
	for (size_t i = 0; i < n; i++)
		printf("%s%d", i ? "," : " ", ids[i]);
	printf("\n");
}

/* Parse "1,2,3" into a malloc'd array. */
static int32_t *
parse_ids(const char *s, int32_t *n)
{
	int32_t    *ids = malloc(sizeof(int32_t) * (strlen(s) + 1));
	char	   *end;

	*n = 0;
	while (*s)
	{
		long		v = strtol(s, &end, 10);

		if (end == s)
		{
			fprintf(stderr, "llm_run: bad id list near \"%s\"\n", s);
			exit(2);
		}
		ids[(*n)++] = (int32_t) v;
		s = *end == ',' ? end + 1 : end;
	}
	return ids;
}

/* Print text escaped on one line. */
static void
print_text(const char *key, const char *s, size_t len)
{
	printf("%s: ", key);
	for (size_t i = 0; i < len; i++)
	{
		unsigned char ch = (unsigned char) s[i];

		if (ch == '\n')
			printf("\\n");
		else if (ch == '\\')
			printf("\\\\");
		else if (ch < 0x20)
			printf("\\x%02x", ch);
		else
			putchar(ch);
	}
	printf("\n");
}


/* Evaluate ids in batches; logits of the last one. */
typedef struct trace_file
{
	FILE	   *f;
	int32_t		step;
} trace_file;

static void
trace_write(void *user, const char *name, int layer, const float *data, int32_t rows, int64_t cols)
{
	trace_file *t = user;
	char		nm[32] = {0};
	int32_t		l = layer;

	strncpy(nm, name, sizeof(nm) - 1);
	if (fwrite(&t->step, 4, 1, t->f) != 1 || fwrite(&l, 4, 1, t->f) != 1 ||
		fwrite(nm, 1, sizeof(nm), t->f) != sizeof(nm) || fwrite(&rows, 4, 1, t->f) != 1 ||
		fwrite(&cols, 8, 1, t->f) != 1 ||
		fwrite(data, sizeof(float), (size_t) rows * (size_t) cols, t->f) != (size_t) rows * (size_t) cols)
	{
		fprintf(stderr, "llm_run: cannot write the trace\n");
		exit(1);
	}
}

static void
prefill(tl_llm_state *st, const int32_t *ids, int32_t n, float *logits)
{
	for (int32_t at = 0, k; at < n; at += k)
	{
		k = tl_llm_prefill_chunk(n - at);
		check(tl_llm_eval(st, ids + at, k, at + k == n ? logits : NULL), "eval");
	}
}

int
main(int argc, char **argv)
{
	const char *path;
	int			threads = 1,
				ctx = 2048,
				max = 64;
	float		temperature = 0.0f;
	unsigned long long seed = 0;
	bool		ignore_end = false;
	int			a = 2;
	tl_llm_model *m;
	tl_llm_state *st;
	const tl_llm_config *c;
	const char *mode;
	double		t0;

	if (argc < 4)
	{
		fprintf(stderr, "usage: llm_run MODEL.gguf [--threads N] [--ctx N] [--max N] [--temperature T] [--seed S]\n"
				"               generate TEXT | chat TEXT | ids IDS | tokenize TEXT | teacher PROMPT_IDS IDS | bench P G\n");
		return 2;
	}
	path = argv[1];
	while (a < argc && strncmp(argv[a], "--", 2) == 0 && a + 1 < argc)
	{
		if (!strcmp(argv[a], "--threads"))
			threads = atoi(argv[a + 1]);
		else if (!strcmp(argv[a], "--ctx"))
			ctx = atoi(argv[a + 1]);
		else if (!strcmp(argv[a], "--max"))
			max = atoi(argv[a + 1]);
		else if (!strcmp(argv[a], "--temperature"))
			temperature = strtof(argv[a + 1], NULL);
		else if (!strcmp(argv[a], "--seed"))
			seed = strtoull(argv[a + 1], NULL, 10);
		else if (!strcmp(argv[a], "--ignore-end"))
			ignore_end = atoi(argv[a + 1]) != 0;
		else
		{
			fprintf(stderr, "llm_run: unknown option %s\n", argv[a]);
			return 2;
		}
		a += 2;
	}
	if (a >= argc)
		return 2;
	mode = argv[a++];
	tl_pool_set_threads(threads);

	t0 = now_s();
	check(tl_llm_load(&m, path), "load");
	c = tl_llm_config_of(m);
	printf("load_seconds: %.4f\n", now_s() - t0);
	printf("model: %s, %d layers, %d heads (%d kv) of %d, embd %d, ff %d, vocab %d, ctx %d\n",
		   c->arch_name, c->n_layer, c->n_head, c->n_head_kv, c->head_dim, c->n_embd, c->n_ff,
		   c->n_vocab, c->n_ctx_train);
	if (ctx > c->n_ctx_train)
		ctx = c->n_ctx_train;
	check(tl_llm_state_new(&st, m, ctx), "state");

	if (!strcmp(mode, "tokenize") || !strcmp(mode, "generate") || !strcmp(mode, "ids") ||
		!strcmp(mode, "chat"))
	{
		int32_t    *ids;
		size_t		n;
		int32_t		n32;
		tl_generate_params p = {0};
		tl_generation g;

		if (a >= argc)
			return 2;
		if (!strcmp(mode, "ids"))
		{
			ids = parse_ids(argv[a], &n32);
			n = (size_t) n32;
		}
		else if (!strcmp(mode, "chat"))
		{
			tl_chat_template t;
			tl_chat_message msg = {"user", argv[a], strlen(argv[a])};

			check(tl_chat_template_detect(tl_llm_gguf(m), &t), "chat template");
			check(tl_chat_tokenize(&t, tl_llm_tokenizer(m), &msg, 1, &ids, &n), "chat");
		}
		else
			check(tl_tokenizer_encode(tl_llm_tokenizer(m), argv[a], strlen(argv[a]),
									  TL_TOK_PARSE_SPECIAL | TL_TOK_ADD_BOS, &ids, &n), "tokenize");
		print_ids("prompt_ids", ids, n);
		if (!strcmp(mode, "tokenize"))
			return 0;
		p.sampler = tl_sampler_defaults();
		p.sampler.temperature = temperature;
		p.sampler.seed = seed;
		p.max_tokens = max;
		p.ignore_end = ignore_end;
		check(tl_llm_generate(st, ids, (int32_t) n, &p, &g), "generate");
		print_ids("ids", g.tokens, (size_t) g.n_tokens);
		print_text("text", g.text, g.len);
		printf("finish: %s\n", tl_finish_name(g.finish));
		printf("prefill: %d tokens in %.4f s\n", g.n_prompt, g.prefill_seconds);
		printf("decode: %d tokens in %.4f s\n", g.n_tokens, g.decode_seconds);
		tl_generation_free(&g);
	}
	else if (!strcmp(mode, "trace"))
	{
		int32_t		np,
					nc;
		int32_t    *pr,
				   *co;
		trace_file	t = {0};
		float	   *logits = malloc(sizeof(float) * (size_t) c->n_vocab);

		if (a + 2 >= argc)
			return 2;
		pr = parse_ids(argv[a], &np);
		co = parse_ids(argv[a + 1], &nc);
		if (!(t.f = fopen(argv[a + 2], "wb")))
		{
			fprintf(stderr, "llm_run: cannot open %s\n", argv[a + 2]);
			return 1;
		}
		tl_llm_state_set_trace(st, trace_write, &t);
		prefill(st, pr, np, logits);
		for (int32_t i = 0; i < nc; i++)
		{
			t.step = i + 1;
			check(tl_llm_eval(st, &co[i], 1, logits), "eval");
		}
		fclose(t.f);
		printf("steps: %d\n", nc + 1);
	}
	else if (!strcmp(mode, "teacher"))
	{
		int32_t		np,
					nc;
		int32_t    *pr,
				   *co,
				   *top;
		float	   *logits = malloc(sizeof(float) * (size_t) c->n_vocab);

		if (a + 1 >= argc)
			return 2;
		pr = parse_ids(argv[a], &np);
		co = parse_ids(argv[a + 1], &nc);
		top = malloc(sizeof(int32_t) * (size_t) (nc + 1));
		prefill(st, pr, np, logits);
		for (int32_t i = 0; i < nc; i++)
		{
			top[i] = tl_llm_argmax(logits, c->n_vocab);
			check(tl_llm_eval(st, &co[i], 1, logits), "eval");
		}
		print_ids("top1", top, (size_t) nc);
		{
			/* the final logits, for comparing with another runtime */
			printf("logits:");
			for (int32_t i = 0; i < c->n_vocab; i++)
				printf("%s%.6g", i ? "," : " ", logits[i]);
			printf("\n");
		}
	}
	else if (!strcmp(mode, "bench"))
	{
		int32_t		np,
					ng;
		int32_t    *ids;
		float	   *logits = malloc(sizeof(float) * (size_t) c->n_vocab);
		double		tp,
					td;
		int32_t		tok;

		if (a + 1 >= argc)
			return 2;
		np = atoi(argv[a]);
		ng = atoi(argv[a + 1]);
		if (np < 1 || ng < 1 || np + ng > ctx)
		{
			fprintf(stderr, "llm_run: bench needs 1 <= P, 1 <= G, P + G <= ctx\n");
			return 2;
		}
		ids = malloc(sizeof(int32_t) * (size_t) np);
		for (int32_t i = 0; i < np; i++)
			ids[i] = (int32_t) ((1000 + 7919 * (int64_t) i) % c->n_vocab);
		t0 = now_s();
		prefill(st, ids, np, logits);
		tp = now_s() - t0;
		t0 = now_s();
		for (int32_t i = 0; i < ng; i++)
		{
			tok = tl_llm_argmax(logits, c->n_vocab);
			check(tl_llm_eval(st, &tok, 1, logits), "eval");
		}
		td = now_s() - t0;
		printf("prefill: %d tokens in %.4f s = %.1f tokens/s\n", np, tp, np / tp);
		printf("decode: %d tokens in %.4f s = %.1f tokens/s\n", ng, td, ng / td);
	}
	else
	{
		fprintf(stderr, "llm_run: unknown mode %s\n", mode);
		return 2;
	}
	tl_llm_state_free(st);
	tl_llm_free(m);
	return 0;
}
