/*
 * fuzz_tokenizer.c -- libFuzzer target for the tokenizer and the model
 * loader (make fuzz-tokenizer).
 *
 * The first byte picks what the rest of the input is:
 *
 *	 even  a GGUF file: its tokenizer metadata is loaded (hostile merges,
 *		   scores, token types, special ids), and an accepted tokenizer
 *		   encodes and decodes a few fixed texts; the language-model loader
 *		   then reads the same bytes (hyperparameters, tensor bindings);
 *	 odd   text, encoded with the SentencePiece fixture vocabulary
 *		   (test/fixtures/spm_vocab.gguf, which has byte fallback): valid
 *		   UTF-8 must decode back to itself.
 *
 * Seeds: the GGUF reader's sample files and the fixture vocabulary
 * (written by make fuzz-tokenizer).  Crashes, sanitizer reports, leaks and
 * a failed round trip are the bugs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE				/* memmem */
#endif
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_gguf.h"
#include "tl_llm.h"
#include "tl_tokenizer.h"

#define SPM_VOCAB "test/fixtures/spm_vocab.gguf"

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tl_tokenizer *spm;
static volatile uint64_t sink;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	tl_gguf		g = {0};

	if (tl_gguf_open(&g, SPM_VOCAB) != TL_OK || tl_tokenizer_load(&spm, &g) != TL_OK)
		abort();				/* run from the repository root */
	tl_gguf_close(&g);
	return 0;
}

static void
encode_decode(const tl_tokenizer *tok, const char *text, size_t len, unsigned flags, bool must_round_trip)
{
	int32_t    *ids = NULL;
	size_t		n = 0;
	char	   *back = NULL;
	size_t		back_len = 0;

	if (tl_tokenizer_encode(tok, text, len, flags, &ids, &n) != TL_OK)
		return;					/* out of memory only */
	if (n > 3 * len + 4)
		abort();				/* the documented bound */
	for (size_t i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= tl_tokenizer_n_vocab(tok))
			abort();
	if (tl_tokenizer_decode(tok, ids, n, TL_TOK_STRIP_PREFIX, &back, &back_len) == TL_OK)
	{
		if (must_round_trip && (back_len != len || memcmp(back, text, len) != 0))
			abort();
		sink += back_len;
		tl_free(back);
	}
	tl_free(ids);
}

static void
fuzz_gguf(const uint8_t *data, size_t size)
{
	static const char *const texts[] = {
		"Hello world! 123 4567", "  spaces\tand\nlines  ", "caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x91\x8B",
		"<|im_start|>user\nhi<|im_end|><s></s>", "\xFF\xFE broken \xC3", "",
	};
	uint8_t    *exact = malloc(size ? size : 1);
	tl_gguf		g;
	tl_tokenizer *tok = NULL;
	tl_llm_model *m = NULL;

	if (!exact)
		return;
	if (size)
		memcpy(exact, data, size);
	if (tl_gguf_open_memory(&g, exact, size) == TL_OK)
	{
		if (tl_tokenizer_load(&tok, &g) == TL_OK)
		{
			for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
			{
				encode_decode(tok, texts[i], strlen(texts[i]), 0, false);
				encode_decode(tok, texts[i], strlen(texts[i]), TL_TOK_PARSE_SPECIAL | TL_TOK_ADD_BOS, false);
			}
			tl_tokenizer_free(tok);
		}
		tl_gguf_close(&g);
	}
	/* the model loader validates the rest: shapes, types, hyperparameters */
	if (tl_llm_load_memory(&m, exact, size) == TL_OK)
	{
		tl_llm_state *st = NULL;

		if (tl_llm_state_new(&st, m, 8) == TL_OK)
		{
			int32_t		ids[2] = {0, tl_llm_config_of(m)->n_vocab - 1};
			float	   *logits = malloc(sizeof(float) * (size_t) tl_llm_config_of(m)->n_vocab);

			if (logits && tl_llm_eval(st, ids, 2, logits) == TL_OK)
				sink += logits[0] == logits[0];
			free(logits);
			tl_llm_state_free(st);
		}
		tl_llm_free(m);
	}
	free(exact);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] % 2 == 0)
		fuzz_gguf(data + 1, size - 1);
	else
	{
		/*
		 * valid UTF-8 (what SQL text always is): byte fallback makes the
		 * round trip exact, except for a literal U+2581, which decodes as
		 * the space it stands for.  Invalid UTF-8 is cut into symbols by
		 * lead bytes alone, as llama.cpp cuts it, and need not come back.
		 */
		char	   *clean = NULL;
		size_t		clean_len = 0;
		bool		exact;

		if (tl_utf8_clean((const char *) data + 1, size - 1, &clean, &clean_len) != TL_OK)
			return 0;
		exact = clean_len == size - 1 && memcmp(clean, data + 1, size - 1) == 0 &&
			!memmem(data + 1, size - 1, "\xE2\x96\x81", 3);
		tl_free(clean);

		encode_decode(spm, (const char *) data + 1, size - 1, 0, exact);
		encode_decode(spm, (const char *) data + 1, size - 1, TL_TOK_PARSE_SPECIAL, false);
	}
	return 0;
}
