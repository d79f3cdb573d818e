-- tutor_llm 0.3.0 -> 0.4.0: the language model.
--   tutor.llm_load        map a GGUF file (under tutor.model_dir) in this session
--   tutor.llm_unload      drop it again
--   tutor.llm_models      what this session has loaded
--   tutor.generate        continue a prompt
--   tutor.chat            answer a conversation, in the model's chat template
--   tutor.tokenize / tutor.detokenize

\echo Use "ALTER EXTENSION tutor_llm UPDATE TO '0.4.0'" to load this file. \quit

-- Load a GGUF model under a name, for this session (replacing one of the
-- same name).  path is relative to tutor.model_dir, which only a
-- superuser sets; "..", paths outside it and symbolic links that lead out
-- of it are refused.  Returns the architecture, sizes and tensor types.
CREATE FUNCTION tutor.llm_load(name text, path text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'tutor_llm_load'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION tutor.llm_unload(name text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tutor_llm_unload'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

-- Models loaded in this session; is_default marks the one used when a
-- call names none (the latest loaded).
CREATE FUNCTION tutor.llm_models(OUT name text, OUT path text, OUT is_default boolean, OUT info jsonb)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'tutor_llm_models'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Continue prompt.  options: model, max_tokens (128), temperature (0 =
-- greedy), top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed,
-- stop (a string or an array of strings), context (positions), truncate
-- (keep the end of a prompt too long for the context instead of failing),
-- ignore_end (write past the model's end of turn: benchmarks), cache (false:
-- evaluate the whole prompt even when the session holds a prefix of it).
-- Special tokens written in the prompt (<|im_start|>) are recognised.
CREATE FUNCTION tutor.generate(prompt text, options jsonb DEFAULT '{}')
RETURNS text
AS 'MODULE_PATHNAME', 'tutor_generate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Answer a conversation: messages is [{"role": "system"|"user"|"assistant",
-- "content": "..."}, ...]; the model's chat template (ChatML for SmolLM2
-- and Qwen2) applies.  Options as for generate.
CREATE FUNCTION tutor.chat(messages jsonb, options jsonb DEFAULT '{}')
RETURNS text
AS 'MODULE_PATHNAME', 'tutor_chat'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION tutor.tokenize(text, model text DEFAULT NULL)
RETURNS int[]
AS 'MODULE_PATHNAME', 'tutor_tokenize'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION tutor.detokenize(int[], model text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'tutor_detokenize'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
