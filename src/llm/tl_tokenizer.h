/*
 * tl_tokenizer.h -- the tokenizer of the LLM runtime, read from a GGUF
 * file's tokenizer.ggml.* metadata.
 *
 * Supported: tokenizer.ggml.model "gpt2", the byte-level BPE of GPT-2
 * and its descendants (SmolLM2, Llama 3, Qwen2).  "llama"
 * (SentencePiece) gives TL_ERR_UNAVAILABLE for now.
 *
 * Encoding a text, as llama.cpp does it for these models:
 *
 *	 1. special tokens: tokens of type control, user-defined or unknown
 *		whose text appears literally in the input are cut out first,
 *		longest text first.  Control and unknown tokens only when
 *		TL_TOK_PARSE_SPECIAL is set; user-defined tokens always (as in
 *		llama.cpp).
 *	 2. pre-tokenization of each remaining fragment by the regular
 *		expression that tokenizer.ggml.pre names, hand-written over
 *		UTF-8 (see TL_TOK_PRE_* below for the expressions);
 *	 3. every byte of a piece mapped to the GPT-2 byte alphabet (printable
 *		bytes stand for themselves, the others map to U+0100..U+0143);
 *	 4. BPE: adjacent symbols merged by rank (the index of "a b" in
 *		tokenizer.ggml.merges), lowest rank first, leftmost first among
 *		equals, with a binary heap;
 *	 5. the final symbols are token ids (symbols are ids throughout; the
 *		vocabulary is an open-addressing hash table of the texts).  A byte
 *		whose alphabet symbol is not in the vocabulary is dropped, as
 *		llama.cpp drops it (SmolLM2 lacks 21 of the 256: some control
 *		characters and bytes that never occur in UTF-8 such as 0xC0,
 *		0xF5..0xFF), so only texts without those bytes round-trip.
 *
 * Unicode: the pre-tokenizers need the categories letter (\p{L}),
 * number (\p{N}) and whitespace (\s).  A compact range classifier
 * stands in for the full Unicode tables: ASCII, Latin-1, Latin Extended
 * A/B and Additional, IPA, Greek, Cyrillic, Armenian, Hebrew, Arabic
 * (letters and digits), Devanagari letters and digits, Thai letters,
 * Hangul (Jamo and syllables), Hiragana, Katakana, CJK ideographs
 * (including extensions A-G and compatibility ideographs), fullwidth
 * Latin letters and digits, superscript/subscript digits, Roman
 * numerals, and every whitespace code point Unicode lists.  Anything
 * else (emoji, symbols, punctuation, combining marks, scripts not
 * listed) counts as "other"; text in unlisted scripts still round-trips
 * exactly but may split differently from llama.cpp.  Bytes that are not
 * valid UTF-8 count as one "other" character each, so any byte string
 * whose bytes all have tokens (step 5) decodes back to itself.
 *
 * Decoding maps ids back to token texts and normal tokens' texts back
 * through the byte alphabet (a code point outside the alphabet, which
 * only a hand-made vocabulary has, is copied as it is).  Control, unknown and user-defined tokens
 * come out as their text; with TL_TOK_SKIP_SPECIAL control and unknown
 * tokens are left out.
 *
 * The metadata is treated as hostile: an empty vocabulary, a merge
 * naming a token (or producing a text) that is not in the vocabulary,
 * a merge without a space, a token_type array of the wrong length, a
 * special id out of range all give TL_ERR_ARG with a message.
 *
 * SentencePiece ("llama"), as llama.cpp does it: spaces become U+2581
 * and, with tokenizer.ggml.add_space_prefix (default true), one is put
 * before the text and after each special token; symbols start as UTF-8
 * characters and adjacent pairs whose text is a token merge, the highest
 * score first; a symbol left that is no token becomes <0xXX> byte tokens
 * (or unk).  BOS is added by default (tokenizer.ggml.add_bos_token).
 * Decoding turns U+2581 back into spaces and byte tokens into bytes;
 * TL_TOK_STRIP_PREFIX drops the one space the encoder added.
 *
 * Memory comes from tl_alloc only.  tl_tokenizer_load copies what it
 * keeps, so the GGUF may be closed afterwards.  A loaded tokenizer is
 * never modified: any number of threads may encode and decode with it
 * at once (each call allocates its own scratch through tl_alloc, so the
 * installed allocator must allow that thread to allocate).
 */
#ifndef TL_TOKENIZER_H
#define TL_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_gguf.h"
#include "tl_status.h"

/* Token types, numbered as tokenizer.ggml.token_type stores them. */
typedef enum tl_token_type
{
	TL_TOKEN_UNDEFINED = 0,
	TL_TOKEN_NORMAL = 1,
	TL_TOKEN_UNKNOWN = 2,
	TL_TOKEN_CONTROL = 3,
	TL_TOKEN_USER_DEFINED = 4,
	TL_TOKEN_UNUSED = 5,
	TL_TOKEN_BYTE = 6
} tl_token_type;

/*
 * Pre-tokenizers (tokenizer.ggml.pre names in brackets):
 *
 * GPT2 ["gpt2", "mpt", "olmo", "jais"]:
 *	 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * SMOLLM ["smollm", "starcoder", "refact", "command-r", "codeshell",
 *	 "exaone", "minerva"]: first every \p{N} is cut out as a piece of its
 *	 own, then each remaining stretch is split with the GPT2 expression.
 * LLAMA3 ["llama-bpe", "llama3", "llama-v3", "smaug-bpe", "falcon3"]:
 *	 (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *	  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * QWEN2 ["qwen2", "deepseek-r1-qwen"]: LLAMA3 with \p{N} for \p{N}{1,3}.
 *	 (The contractions' case folding is ASCII only.)
 */
typedef enum tl_tok_pre
{
	TL_TOK_PRE_GPT2 = 0,
	TL_TOK_PRE_SMOLLM,
	TL_TOK_PRE_LLAMA3,
	TL_TOK_PRE_QWEN2
} tl_tok_pre;

/* Encoding flags. */
#define TL_TOK_PARSE_SPECIAL	0x1u	/* cut out control tokens' texts */
#define TL_TOK_ADD_BOS			0x2u	/* prepend BOS when the model asks for it
										 * (tokenizer.ggml.add_bos_token) */
#define TL_TOK_FORCE_BOS		0x4u	/* prepend BOS whenever there is one */

/* Decoding flags. */
#define TL_TOK_SKIP_SPECIAL		0x1u	/* leave out control and unknown tokens */
#define TL_TOK_STRIP_PREFIX		0x2u	/* drop the space an SPM encoder put before
										 * the text (a whole sequence, not a piece) */

typedef struct tl_tokenizer tl_tokenizer;

/*
 * Build a tokenizer from an open GGUF's metadata.  On failure *out is
 * NULL: TL_ERR_ARG for bad metadata, TL_ERR_UNAVAILABLE for a tokenizer
 * model or pre-tokenizer not supported, TL_ERR_NOMEM.  A missing
 * tokenizer.ggml.pre, or "default", means "gpt2" (llama.cpp's "default"
 * differs slightly; no supported model uses it).
 */
tl_status	tl_tokenizer_load(tl_tokenizer **out, const tl_gguf *g);

/* Free; NULL is fine. */
void		tl_tokenizer_free(tl_tokenizer *tok);

/* Vocabulary size. */
int32_t		tl_tokenizer_n_vocab(const tl_tokenizer *tok);

/* The pre-tokenizer in use and its metadata name. */
tl_tok_pre	tl_tokenizer_pre(const tl_tokenizer *tok);
const char *tl_tokenizer_pre_name(const tl_tokenizer *tok);

/* Special ids; -1 when the metadata does not name one. */
int32_t		tl_tokenizer_bos(const tl_tokenizer *tok);
int32_t		tl_tokenizer_eos(const tl_tokenizer *tok);
int32_t		tl_tokenizer_unk(const tl_tokenizer *tok);
int32_t		tl_tokenizer_pad(const tl_tokenizer *tok);

/* tokenizer.ggml.add_bos_token (false when absent). */
bool		tl_tokenizer_add_bos(const tl_tokenizer *tok);

/*
 * A token's stored text (in the byte alphabet for normal tokens; not
 * NUL-terminated) and type.  TL_ERR_ARG for an id out of range.
 */
tl_status	tl_tokenizer_token_text(const tl_tokenizer *tok, int32_t id,
									const char **text, size_t *len);
tl_status	tl_tokenizer_token_type(const tl_tokenizer *tok, int32_t id,
									tl_token_type *type);

/* The id whose stored text is exactly these bytes, or -1. */
int32_t		tl_tokenizer_lookup(const tl_tokenizer *tok, const char *text, size_t len);

/*
 * Encode len bytes of text.  *ids is tl_alloc'd (the caller tl_free's
 * it; NULL with *n_ids 0 for an empty result) and holds *n_ids ids, at
 * most len + 1 (3 * len + 4 for SentencePiece, whose spaces are three
 * bytes that may each fall back to a byte token).  flags: TL_TOK_PARSE_SPECIAL, TL_TOK_ADD_BOS,
 * TL_TOK_FORCE_BOS.
 */
tl_status	tl_tokenizer_encode(const tl_tokenizer *tok, const char *text, size_t len,
								unsigned flags, int32_t **ids, size_t *n_ids);

/*
 * Decode n ids into *text (tl_alloc'd, NUL-terminated, *len bytes
 * without the terminator).  TL_ERR_ARG for an id out of range.  flags:
 * TL_TOK_SKIP_SPECIAL.
 */
tl_status	tl_tokenizer_decode(const tl_tokenizer *tok, const int32_t *ids, size_t n,
								unsigned flags, char **text, size_t *len);

#endif							/* TL_TOKENIZER_H */
