/*
 * tl_llm.h -- the language model: a Llama-family decoder read from a
 * GGUF file, its KV cache, and text generation.
 *
 * Architectures (general.architecture):
 *	 llama   SmolLM2, TinyLlama, Llama 2/3.x: RMSNorm, rotary embeddings
 *			 on adjacent pairs, grouped-query attention, SwiGLU.
 *	 qwen2   the same with biases on Q, K and V and rotary embeddings on
 *			 the two halves of each head (NEOX style).
 *
 * One token through one layer (shapes per token; H heads, G key/value
 * heads, D = head_dim, E = n_embd, F = n_ff):
 *
 *	 h  = rmsnorm(x) * attn_norm                         (E)
 *	 q  = Wq h + bq,  k = Wk h + bk,  v = Wv h + bv      (H*D), (G*D), (G*D)
 *	 q, k rotated by position (theta = pos * base^(-2i/rope_dim),
 *			  scaled by the linear factor and the rope_freqs table)
 *	 k, v appended to the cache (half precision, as llama.cpp keeps them)
 *	 a_h = softmax(q_h . K_g / sqrt(D)) V_g,  g = h / (H/G)
 *			  (q and the probabilities rounded to half precision, exp and
 *			  the sums as llama.cpp's CPU backend forms them: tl_vmath.h)
 *	 x  = x + Wo a (+ bo)
 *	 h  = rmsnorm(x) * ffn_norm
 *	 x  = x + Wdown (silu(Wgate h) * Wup h)
 *
 * and after the last layer logits = Wout (rmsnorm(x) * output_norm),
 * where Wout is token_embd when the file has no output.weight (tied).
 *
 * Weights stay in the file's mapping in whatever types it holds (read
 * from each tensor, not assumed); products run on tl_quant's kernels,
 * which convert activations once per product and split rows over the
 * thread pool.  Every tensor's presence, shape and type is checked at
 * load, so evaluation never meets a surprise.
 *
 * Memory: a model holds the mapping, its tokenizer and a small table.
 * A state (one conversation) holds the KV cache, allocated in pages of
 * TL_LLM_KV_PAGE positions as it fills, so a short generation touches
 * only what it uses, and scratch for one batch of TL_LLM_BATCH tokens.
 * Everything is allocated through tl_alloc on the calling thread; pool
 * workers only compute.  A model may be shared by many states; a state
 * by one caller at a time.
 */
#ifndef TL_LLM_H
#define TL_LLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_cuda_api.h"
#include "tl_gguf.h"
#include "tl_status.h"
#include "tl_tokenizer.h"

#define TL_LLM_BATCH 64			/* tokens per evaluation step */
#define TL_LLM_KV_PAGE 64		/* positions per KV cache page */
#define TL_LLM_MAX_HEAD_DIM 512

typedef enum tl_llm_arch
{
	TL_LLM_ARCH_LLAMA = 0,
	TL_LLM_ARCH_QWEN2
} tl_llm_arch;

typedef enum tl_llm_rope_style
{
	TL_ROPE_ADJACENT = 0,		/* pairs (2i, 2i+1): llama */
	TL_ROPE_HALVES				/* pairs (i, i+rope_dim/2): qwen2 (NEOX) */
} tl_llm_rope_style;

typedef struct tl_llm_config
{
	tl_llm_arch arch;
	const char *arch_name;		/* "llama", "qwen2" */
	int32_t		n_vocab;
	int32_t		n_ctx_train;	/* context length the model was trained for */
	int32_t		n_embd;			/* E */
	int32_t		n_layer;
	int32_t		n_head;			/* H */
	int32_t		n_head_kv;		/* G, divides H */
	int32_t		head_dim;		/* D */
	int32_t		n_ff;			/* F */
	int32_t		rope_dim;		/* leading dims of a head that rotate; even, <= D */
	tl_llm_rope_style rope_style;
	float		rope_base;
	float		rope_freq_scale;	/* 1 / linear scaling factor */
	bool		rope_freq_factors;	/* a rope_freqs.weight table divides the frequencies */
	float		rms_eps;
	bool		tied_embeddings;
	bool		qkv_bias;
	int64_t		n_params;		/* elements of all tensors */
} tl_llm_config;

typedef struct tl_llm_model tl_llm_model;
typedef struct tl_llm_state tl_llm_state;

/*
 * Map and check a GGUF file and build its tokenizer.  TL_ERR_ARG for a
 * bad file or missing/misshapen tensor, TL_ERR_UNAVAILABLE for an
 * architecture, tokenizer or tensor type not supported, TL_ERR_NOMEM.
 */
tl_status	tl_llm_load(tl_llm_model **out, const char *path);

/* The same over a GGUF image in memory, which must outlive the model. */
tl_status	tl_llm_load_memory(tl_llm_model **out, const void *data, size_t size);

/* Free; NULL is fine.  No state of the model may remain. */
void		tl_llm_free(tl_llm_model *m);

const tl_llm_config *tl_llm_config_of(const tl_llm_model *m);
const tl_tokenizer *tl_llm_tokenizer(const tl_llm_model *m);
const tl_gguf *tl_llm_gguf(const tl_llm_model *m);

/* Whether a token ends generation (EOS, EOT, <|im_end|>, <|eot_id|>...). */
bool		tl_llm_is_end(const tl_llm_model *m, int32_t token);

/*
 * A state with room for n_ctx positions (1..n_ctx_train).  The cache's
 * pages are allocated as positions are filled.
 */
tl_status	tl_llm_state_new(tl_llm_state **out, const tl_llm_model *m, int32_t n_ctx);
void		tl_llm_state_free(tl_llm_state *st);
/*
 * Run this state's evaluations on a CUDA device from now on: the weights
 * and a KV cache of n_ctx positions are copied to the device behind cu
 * (which the caller has init()ed) and the state starts empty.  On failure
 * the state stays on the CPU: TL_ERR_UNAVAILABLE when a tensor type has
 * no CUDA kernel (F32, F16, Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 do),
 * TL_ERR_NOMEM or TL_ERR_DEVICE when the device refuses.
 */
tl_status	tl_llm_state_use_cuda(tl_llm_state *st, const tl_cuda_api *cu);
bool		tl_llm_state_on_cuda(const tl_llm_state *st);

/*
 * A diagnostic hook: when set, the CPU forward pass hands each named
 * intermediate to fn as (rows, cols) floats, one row per token of the
 * batch; layer is -1 for the final norm and the logits.  The names are
 * llama.cpp's graph names ("attn_norm", "Qcur", "kqv_out", "ffn_out",
 * "l_out"...), so test/bench/llm_trace.py can compare the two runtimes op
 * by op.  Called on the caller's thread; NULL turns it off.
 */
typedef void (*tl_llm_trace_fn) (void *user, const char *name, int layer,
								 const float *data, int32_t rows, int64_t cols);
void		tl_llm_state_set_trace(tl_llm_state *st, tl_llm_trace_fn fn, void *user);

/*
 * Keep only the first n positions (0 <= n <= n_past): a prompt that
 * shares a prefix with what the cache holds continues from there.  Every
 * position's keys and values depend only on the tokens up to it and on
 * whether it was evaluated alone or in a batch of two or more (see
 * tl_llm_eval), so when both runs batch alike the result equals
 * evaluating the whole prompt again.
 */
tl_status	tl_llm_state_rewind(tl_llm_state *st, int32_t n);

/* Forget every position (the pages are kept for reuse). */
void		tl_llm_state_reset(tl_llm_state *st);
int32_t		tl_llm_state_n_past(const tl_llm_state *st);
int32_t		tl_llm_state_n_ctx(const tl_llm_state *st);
const tl_llm_model *tl_llm_state_model(const tl_llm_state *st);

/*
 * Run n tokens (1..TL_LLM_BATCH) at the next positions, extending the
 * cache, and write the logits of the last one to logits (n_vocab floats)
 * unless it is NULL.  Every token's numbers are the same in any batch of
 * two or more tokens; a batch of one sums attention in another order,
 * as llama.cpp does for a generated token.  TL_ERR_ARG for a token out of range or too many
 * positions for the context; the state is unchanged on error.
 */
tl_status	tl_llm_eval(tl_llm_state *st, const int32_t *tokens, int32_t n, float *logits);

/*
 * How many of the `left` tokens of a prompt to evaluate next: up to
 * TL_LLM_BATCH, but never a lone last token of a longer prompt.  A batch
 * of several tokens sums its attention products in llama.cpp's batched
 * order and a batch of one in its single-token order (as llama.cpp
 * does), so chunking this way gives every prompt token the bits of
 * llama.cpp's one-batch prompt evaluation.
 */
static inline int32_t
tl_llm_prefill_chunk(int32_t left)
{
	if (left <= TL_LLM_BATCH)
		return left;
	return left == TL_LLM_BATCH + 1 ? TL_LLM_BATCH - 1 : TL_LLM_BATCH;
}

/* ---------------------------------------------------------------------
 * Sampling
 * --------------------------------------------------------------------- */

typedef struct tl_sampler
{
	float		temperature;	/* 0: greedy (argmax) */
	int32_t		top_k;			/* 0: off */
	float		top_p;			/* 1: off */
	float		min_p;			/* 0: off */
	float		repeat_penalty; /* 1: off */
	int32_t		repeat_last_n;	/* tokens the penalty looks back over */
	uint64_t	seed;
} tl_sampler;

/* The greedy choice: the highest logit, the lowest id among equals. */
int32_t		tl_llm_argmax(const float *logits, int32_t n);

/* The defaults: greedy, no filters, penalty off, last 64, seed 0. */
tl_sampler	tl_sampler_defaults(void);

/* TL_ERR_ARG with a message naming the option that is out of range. */
tl_status	tl_sampler_check(const tl_sampler *s);

/* ---------------------------------------------------------------------
 * Generation
 * --------------------------------------------------------------------- */

#define TL_LLM_MAX_STOPS 8

/*
 * Called on the caller's thread after each prompt batch and each new
 * token, with the prompt tokens evaluated and the tokens generated so
 * far (for progress reports); false stops early.
 */
typedef bool (*tl_llm_continue_fn) (void *arg, int32_t prompt_done, int32_t generated);

typedef struct tl_generate_params
{
	tl_sampler	sampler;
	int32_t		max_tokens;		/* new tokens, >= 0 */
	const char *stops[TL_LLM_MAX_STOPS];	/* NUL-terminated; text stops before one */
	int			n_stops;
	bool		ignore_end;		/* go on past end-of-turn tokens (benchmarks) */
	tl_llm_continue_fn keep_going;	/* NULL: never interrupted */
	void	   *keep_going_arg;
} tl_generate_params;

typedef enum tl_finish
{
	TL_FINISH_LENGTH = 0,		/* max_tokens reached */
	TL_FINISH_END,				/* the model ended its turn */
	TL_FINISH_STOP,				/* a stop string appeared */
	TL_FINISH_CONTEXT,			/* the context is full */
	TL_FINISH_INTERRUPTED		/* keep_going said no */
} tl_finish;

typedef struct tl_generation
{
	char	   *text;			/* tl_alloc'd, NUL-terminated, valid UTF-8 */
	size_t		len;
	int32_t    *tokens;			/* tl_alloc'd: the generated ids, end token excluded */
	int32_t		n_tokens;
	int32_t		n_prompt;
	tl_finish	finish;
	double		prefill_seconds;
	double		decode_seconds;
} tl_generation;

/*
 * Continue from the state's current position: evaluate the prompt tokens
 * in batches, then sample and evaluate one token at a time.  The caller
 * checks the prompt against the context first (tl_llm_eval refuses a
 * batch that does not fit); generation stops with TL_FINISH_CONTEXT when
 * the cache is full.  Free the result with tl_generation_free.
 *
 * tokens holds every token sampled, including one that completed a stop
 * string (the text ends before the stop string).  The last token sampled
 * is not evaluated unless generation was interrupted after it, so the
 * cache then holds the prompt and all tokens but the last: a caller that
 * continues the conversation on the same state feeds that token first
 * (compare tl_llm_state_n_past with n_prompt + n_tokens).
 */
tl_status	tl_llm_generate(tl_llm_state *st, const int32_t *prompt, int32_t n_prompt,
							const tl_generate_params *params, tl_generation *out);
void		tl_generation_free(tl_generation *g);

/* Name of a finish reason: "length", "end", "stop", "context", "interrupted". */
const char *tl_finish_name(tl_finish f);

/*
 * Copy len bytes as valid UTF-8: a sequence cut off at the end is
 * dropped, any other invalid byte becomes U+FFFD.  *out is tl_alloc'd
 * and NUL-terminated.
 */
tl_status	tl_utf8_clean(const char *s, size_t len, char **out, size_t *out_len);

#endif							/* TL_LLM_H */
