/*
 * llm.c -- the language model in SQL: tutor.llm_load, tutor.generate,
 * tutor.chat, tutor.tokenize, tutor.detokenize and friends.
 *
 * Models are per backend.  A loaded model is a read-only shared mapping
 * of its GGUF file (so every backend that loads the same file shares
 * the weights through the page cache), its tokenizer, and one
 * conversation state (KV cache and scratch) reused by each call.  All of
 * it lives in a memory context of its own under TopMemoryContext, which
 * unloading (or loading another file under the same name) deletes.
 *
 * Core calls never raise: they return a status.  Generation runs in the
 * model's context (the state's cache pages must outlive the call), and
 * everything it allocates there besides the cache is freed before it
 * returns, on every path.  A cancel request is seen between tokens (the
 * core asks keep_going), the core returns, and CHECK_FOR_INTERRUPTS
 * raises the cancel here, outside core code.
 *
 * Files load only from under tutor.model_dir, which only a superuser
 * sets: "..", absolute paths elsewhere and symbolic links that lead out
 * of the directory are refused before anything is opened.
 */
#include "tutor_llm.h"

#include <sys/stat.h>
#include <math.h>
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "kt.h"
#include "options.h"
#include "tl_alloc.h"
#include "tl_chat.h"
#include "tl_device.h"
#include "tl_llm.h"
#include "tl_pool.h"

char	   *tutor_model_dir = NULL;
char	   *tutor_llm_model = NULL;
int			tutor_llm_context = 2048;

#define LLM_DEFAULT_NAME "default"
#define LLM_MAX_PROMPT_BYTES (16 * 1024 * 1024)

typedef struct llm_entry
{
	char		name[NAMEDATALEN];
	char		path[MAXPGPATH];	/* as given, relative to tutor.model_dir */
	char		resolved[MAXPGPATH];
	MemoryContext cxt;
	tl_llm_model *model;
	tl_llm_state *state;		/* NULL until first use */
	int32	   *cached;			/* the tokens whose keys and values the state holds */
	int32		n_cached;
	int32		cap_cached;
	tl_chat_template chat;
	bool		chat_ok;
	char		chat_error[256];
	double		load_seconds;
	int64		file_bytes;
	struct llm_entry *next;
} llm_entry;

static llm_entry *llm_entries = NULL;
static llm_entry *llm_latest = NULL;	/* used when no model is named */

void
tutor_llm_define_gucs(void)
{
	DefineCustomStringVariable("tutor.model_dir",
							   "Directory that language-model files (GGUF) are loaded from.",
							   "tutor.llm_load and the default model resolve paths under it only. "
							   "Empty: no model can be loaded.",
							   &tutor_model_dir, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("tutor.llm_model",
							   "GGUF file (under tutor.model_dir) loaded as model \"default\" on first use.",
							   NULL,
							   &tutor_llm_model, "SmolLM2-135M-Instruct.Q4_1.gguf",
							   PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tutor.llm_context",
							"Positions (prompt plus generated tokens) of a language-model conversation.",
							"Capped by the model's own context length.",
							&tutor_llm_context, 2048, 16, 1 << 20,
							PGC_USERSET, 0, NULL, NULL, NULL);
}

/* ======================================================================
 * Paths
 * ====================================================================== */

/* Whether any "/"-separated component of path is "..". */
static bool
llm_has_parent_component(const char *path)
{
	for (const char *p = path; *p;)
	{
		const char *end = strchr(p, '/');
		size_t		len = end ? (size_t) (end - p) : strlen(p);

		if (len == 2 && p[0] == '.' && p[1] == '.')
			return true;
		p += len;
		while (*p == '/')
			p++;
	}
	return false;
}

/*
 * The canonical path of a model file under tutor.model_dir.  The checks
 * run on the text first ("..", absolute paths), then on the real path
 * after symbolic links are followed.
 */
static void
llm_resolve_path(const char *path, char *out)
{
	char		dir[PATH_MAX];
	char		joined[MAXPGPATH * 2];
	char		real[PATH_MAX];
	size_t		dlen;
	struct stat st;

	if (tutor_model_dir == NULL || tutor_model_dir[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tutor.model_dir is not set"),
				 errhint("A superuser sets it, e.g. ALTER SYSTEM SET tutor.model_dir = '/srv/models'; "
						 "SELECT pg_reload_conf();")));
	if (!is_absolute_path(tutor_model_dir))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tutor.model_dir must be an absolute path, not \"%s\"", tutor_model_dir)));
	if (path == NULL || path[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model path must not be empty")));
	if (llm_has_parent_component(path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model path \"%s\" must not contain \"..\"", path)));
	if (realpath(tutor_model_dir, dir) == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not resolve tutor.model_dir \"%s\": %m", tutor_model_dir)));
	dlen = strlen(dir);

	if (is_absolute_path(path))
		snprintf(joined, sizeof(joined), "%s", path);
	else
		snprintf(joined, sizeof(joined), "%s/%s", dir, path);
	if (strlen(joined) >= MAXPGPATH)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("model path \"%s\" is too long", path)));
	if (realpath(joined, real) == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open model file \"%s\": %m", path),
				 errdetail("Paths are resolved under tutor.model_dir.")));
	if (strncmp(real, dir, dlen) != 0 || (real[dlen] != '/' && !(dlen == 1 && dir[0] == '/')))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("model file \"%s\" is outside tutor.model_dir", path),
				 errdetail("Its real path, after symbolic links, is not under the directory.")));
	if (stat(real, &st) != 0 || !S_ISREG(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model path \"%s\" is not a regular file", path)));
	strlcpy(out, real, MAXPGPATH);
}

/* ======================================================================
 * The registry
 * ====================================================================== */

static void
llm_check_name(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0 || len >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model name must have 1 to %d characters", NAMEDATALEN - 1)));
	for (size_t i = 0; i < len; i++)
		if (!(isalnum((unsigned char) name[i]) || name[i] == '_' || name[i] == '-' || name[i] == '.'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("model name \"%s\" may hold only letters, digits, \"_\", \"-\" and \".\"", name)));
}

static llm_entry *
llm_find(const char *name)
{
	for (llm_entry *e = llm_entries; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

static void
llm_free_entry(llm_entry *e)
{
	/* the mapping is not memory-context memory: close it explicitly */
	tl_llm_state_free(e->state);
	tl_llm_free(e->model);
	MemoryContextDelete(e->cxt);
}

static void
llm_remove(llm_entry *e)
{
	for (llm_entry **p = &llm_entries; *p; p = &(*p)->next)
		if (*p == e)
		{
			*p = e->next;
			break;
		}
	if (llm_latest == e)
		llm_latest = llm_entries;
	llm_free_entry(e);
}

/* Load a file under a name, replacing a model of that name on success. */
static llm_entry *
llm_load(const char *name, const char *path)
{
	char		resolved[MAXPGPATH];
	MemoryContext cxt,
				old;
	llm_entry  *e,
			   *prev;
	tl_status	rc;
	instr_time	start;
	struct stat st;

	llm_check_name(name);
	llm_resolve_path(path, resolved);
	INSTR_TIME_SET_CURRENT(start);

	cxt = AllocSetContextCreate(TopMemoryContext, "tutor_llm language model", ALLOCSET_DEFAULT_SIZES);
	e = MemoryContextAllocZero(cxt, sizeof(llm_entry));
	e->cxt = cxt;
	strlcpy(e->name, name, sizeof(e->name));
	strlcpy(e->path, path, sizeof(e->path));
	strlcpy(e->resolved, resolved, sizeof(e->resolved));
	old = MemoryContextSwitchTo(cxt);
	rc = tl_llm_load(&e->model, resolved);
	MemoryContextSwitchTo(old);
	if (rc != TL_OK)
	{
		/* the core names the resolved file; the caller knows it by path */
		const char *msg = tl_last_error();
		size_t		rlen = strlen(resolved);
		char	   *detail;

		if (strncmp(msg, resolved, rlen) == 0 && strncmp(msg + rlen, ": ", 2) == 0)
			msg += rlen + 2;
		detail = pstrdup(msg);
		MemoryContextDelete(cxt);
		ereport(ERROR,
				(errcode(rc == TL_ERR_NOMEM ? ERRCODE_OUT_OF_MEMORY :
						 rc == TL_ERR_UNAVAILABLE ? ERRCODE_FEATURE_NOT_SUPPORTED :
						 ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not load language model \"%s\": %s", path, detail)));
	}
	e->chat_ok = tl_chat_template_detect(tl_llm_gguf(e->model), &e->chat) == TL_OK;
	if (!e->chat_ok)
		strlcpy(e->chat_error, tl_last_error(), sizeof(e->chat_error));
	e->load_seconds = tutor_seconds_since(start);
	e->file_bytes = stat(resolved, &st) == 0 ? (int64) st.st_size : -1;

	if ((prev = llm_find(name)) != NULL)
		llm_remove(prev);
	e->next = llm_entries;
	llm_entries = e;
	llm_latest = e;
	return e;
}

/*
 * The model a call names, or the latest loaded, or "default" loaded from
 * tutor.llm_model on first use.
 */
static llm_entry *
llm_get(const char *name)
{
	llm_entry  *e;

	if (name == NULL)
	{
		if (llm_latest)
			return llm_latest;
		name = LLM_DEFAULT_NAME;
	}
	if ((e = llm_find(name)) != NULL)
		return e;
	if (strcmp(name, LLM_DEFAULT_NAME) == 0)
	{
		if (tutor_llm_model == NULL || tutor_llm_model[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no language model is loaded and tutor.llm_model is empty"),
					 errhint("SELECT tutor.llm_load('default', 'model.gguf');")));
		return llm_load(LLM_DEFAULT_NAME, tutor_llm_model);
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("language model \"%s\" is not loaded in this session", name),
			 errhint("Models are loaded per session: SELECT tutor.llm_load('%s', 'file.gguf');", name)));
	pg_unreachable();
}

/*
 * The CUDA plugin, initialised once per backend, for tutor.device =
 * 'cuda' (tutor_begin_compute has raised the error if no device is
 * usable).
 */
static const tl_cuda_api *
llm_cuda_api(void)
{
	static bool initialised = false;
	const tl_cuda_api *api = NULL;
	int			count = 0;

	if (tl_cuda_open(tutor_cuda_plugin_path, &api, &count) != TL_OK || api == NULL)
		tutor_raise(TL_ERR_UNAVAILABLE, "opening the CUDA plugin");
	if (!initialised)
	{
		if (api->init(0) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not initialise CUDA device 0: %s", api->last_error())));
		initialised = true;
	}
	return api;
}

/*
 * The entry's state, sized for n_ctx positions and empty.  With
 * tutor.device = 'cuda' it runs on the GPU (its weights are copied there
 * once); 'auto' and 'cpu' keep the language model on the CPU, whose path
 * is the one measured against llama.cpp.
 */
static tl_llm_state *
llm_state(llm_entry *e, int32 n_ctx)
{
	bool		want_cuda = tutor_device == TL_DEVICE_CUDA;

	if (e->state && (tl_llm_state_n_ctx(e->state) != n_ctx || tl_llm_state_on_cuda(e->state) != want_cuda))
	{
		tl_llm_state_free(e->state);
		e->state = NULL;
		e->n_cached = 0;
	}
	if (e->state == NULL)
	{
		MemoryContext old;
		tl_status	rc;
		const tl_cuda_api *api = NULL;

		if (want_cuda)
		{
			tutor_begin_compute();	/* raises when no device is usable */
			api = llm_cuda_api();
		}
		old = MemoryContextSwitchTo(e->cxt);
		rc = tl_llm_state_new(&e->state, e->model, n_ctx);
		if (rc == TL_OK && api)
		{
			rc = tl_llm_state_use_cuda(e->state, api);
			if (rc != TL_OK)
			{
				tl_llm_state_free(e->state);
				e->state = NULL;
			}
		}
		MemoryContextSwitchTo(old);
		if (rc != TL_OK)
			tutor_raise(rc, want_cuda ? "preparing the language model on the GPU" : "preparing the language model");
		e->n_cached = 0;
	}
	return e->state;
}

/* ======================================================================
 * Text in and out: the server encoding on the SQL side, UTF-8 in the core
 * ====================================================================== */

static char *
llm_text_to_utf8(text *t, size_t *len)
{
	char	   *s = text_to_cstring(t);
	size_t		n = strlen(s);
	char	   *u;

	if (n > LLM_MAX_PROMPT_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("text of %zu bytes is longer than the %d bytes a prompt may have",
						n, LLM_MAX_PROMPT_BYTES)));
	u = pg_server_to_any(s, (int) n, PG_UTF8);
	*len = strlen(u);
	return u;
}

static text *
llm_utf8_to_text(const char *s, size_t len)
{
	char	   *conv = pg_any_to_server(s, (int) len, PG_UTF8);

	return cstring_to_text(conv);
}

/* Encode with special tokens recognised and BOS when the model wants it. */
static int32 *
llm_encode(llm_entry *e, const char *s, size_t len, size_t *n)
{
	int32_t    *ids;
	int32	   *out;
	tl_status	rc = tl_tokenizer_encode(tl_llm_tokenizer(e->model), s, len,
										 TL_TOK_PARSE_SPECIAL | TL_TOK_ADD_BOS, &ids, n);

	if (rc != TL_OK)
		tutor_raise(rc, "tokenizing");
	out = palloc(sizeof(int32) * (*n + 1));
	if (*n)
		memcpy(out, ids, sizeof(int32) * *n);
	tl_free(ids);
	return out;
}

/* ======================================================================
 * Generation options
 * ====================================================================== */

typedef struct llm_options
{
	char	   *model;
	tl_generate_params params;
	int32		n_ctx;
	bool		truncate;
	bool		cache;			/* reuse a prompt prefix the state holds */
} llm_options;

static const char *const llm_option_keys[] = {
	"model", "max_tokens", "temperature", "top_k", "top_p", "min_p", "repeat_penalty",
	"repeat_last_n", "seed", "stop", "truncate", "context", "ignore_end", "cache", NULL
};

static void
llm_read_options(Jsonb *opts, llm_options *o)
{
	char	  **stops;
	int			n_stops;

	tutor_options_check(opts, llm_option_keys, "generation options");
	memset(o, 0, sizeof(*o));
	o->model = tutor_option_text(opts, "model", NULL);
	o->params.sampler = tl_sampler_defaults();
	o->params.max_tokens = (int32) tutor_option_int(opts, "max_tokens", 128, 0, 1 << 20);
	o->params.sampler.temperature = (float) tutor_option_float(opts, "temperature", 0.0, 0.0, 100.0);
	o->params.sampler.top_k = (int32) tutor_option_int(opts, "top_k", 0, 0, INT32_MAX);
	o->params.sampler.top_p = (float) tutor_option_float(opts, "top_p", 1.0, 0.0, 1.0);
	o->params.sampler.min_p = (float) tutor_option_float(opts, "min_p", 0.0, 0.0, 1.0);
	o->params.sampler.repeat_penalty = (float) tutor_option_float(opts, "repeat_penalty", 1.0, 0.0, 100.0);
	o->params.sampler.repeat_last_n = (int32) tutor_option_int(opts, "repeat_last_n", 64, 0, 1 << 20);
	o->params.sampler.seed = (uint64) tutor_option_int(opts, "seed", 0, 0, PG_INT64_MAX);
	if (tl_sampler_check(&o->params.sampler) != TL_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid generation option: %s", tl_last_error())));
	stops = tutor_option_strings(opts, "stop", TL_LLM_MAX_STOPS, &n_stops);
	for (int i = 0; i < n_stops; i++)
	{
		size_t		len = strlen(stops[i]);

		if (len == 0 || len > 256)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stop strings must have 1 to 256 bytes")));
		o->params.stops[i] = pg_server_to_any(stops[i], (int) len, PG_UTF8);
	}
	o->params.n_stops = n_stops;
	o->n_ctx = (int32) tutor_option_int(opts, "context", tutor_llm_context, 16, 1 << 20);
	o->truncate = tutor_option_bool(opts, "truncate", false);
	o->params.ignore_end = tutor_option_bool(opts, "ignore_end", false);
	o->cache = tutor_option_bool(opts, "cache", true);
}

/*
 * Between tokens: report progress (tutor.training_progress, kind
 * "generate": rows_read = prompt tokens evaluated, batches_done = tokens
 * written, batches_per_epoch = max_tokens), and stop for a cancel or
 * termination; other interrupts wait until the core has returned.
 */
static bool
llm_keep_going(void *arg, int32_t prompt_done, int32_t generated)
{
	bool	   *decoding = arg;

	if (generated > 0 && !*decoding)
	{
		tutor_progress_phase("decode");
		*decoding = true;
	}
	if (generated > 0)
		tutor_progress_batch(generated, NAN);
	else
		tutor_progress_scan(prompt_done, 0, 0);
	return !(QueryCancelPending || ProcDiePending);
}

/*
 * Fit a prompt to the context: an error, or with truncate the first
 * token (BOS or a template's opening) and the most recent ones, leaving
 * room for min(max_tokens, half the context) new tokens.
 */
static int32 *
llm_fit_prompt(int32 *ids, size_t *n, int32 n_ctx, const llm_options *o)
{
	int32		room = Min(o->params.max_tokens, n_ctx / 2);
	int32		keep;

	if (room < 1)
		room = 1;
	if (*n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the prompt is empty")));
	if ((int64) *n + 1 <= n_ctx)
		return ids;
	if (!o->truncate)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("prompt of %zu tokens does not fit the context of %d positions", *n, n_ctx),
				 errhint("Shorten it, raise tutor.llm_context (or the \"context\" option, up to the model's "
						 "length), or pass {\"truncate\": true} to keep its end.")));
	keep = n_ctx - room;
	memmove(ids + 1, ids + *n - (keep - 1), sizeof(int32) * (keep - 1));
	*n = keep;
	return ids;
}

/*
 * Continue from the longest prefix of the prompt that the state already
 * holds (a shared system message, a nightly job's common instructions):
 * rewind the state to it and return its length.  At least the prompt's
 * last two tokens are evaluated again: its last for the logits, and two
 * because a batch of one sums in another order (tl_llm_eval), which would
 * make the text differ from a fresh run's.  The repeat penalty looks at
 * the prompt's tokens, so with a penalty nothing is reused.
 */
static int32
llm_reuse_prefix(llm_entry *e, tl_llm_state *st, const int32 *ids, size_t n, const llm_options *o)
{
	int32		keep = 0;

	if (o->cache && o->params.sampler.repeat_penalty == 1.0f)
		while (keep < e->n_cached && (size_t) keep < n && e->cached[keep] == ids[keep])
			keep++;
	if ((size_t) keep + 2 > n)
		keep = n >= 2 ? (int32) n - 2 : 0;
	if (tl_llm_state_rewind(st, keep) != TL_OK)
		keep = 0;
	if (keep == 0)
		tl_llm_state_reset(st);
	return keep;
}

/*
 * Remember what the state holds after a generation, up to the end of the
 * prompt: the generated tokens were evaluated one at a time, and so hold
 * other bits than a prompt containing them would (tl_llm_eval).
 */
static void
llm_remember(llm_entry *e, tl_llm_state *st, const int32 *ids, size_t n)
{
	int32		held = Min(tl_llm_state_n_past(st), (int32) n);

	if (held > e->cap_cached)
	{
		int32		cap = Max(held, 2 * e->cap_cached);

		e->cached = e->cached ? repalloc(e->cached, sizeof(int32) * cap)
			: MemoryContextAlloc(e->cxt, sizeof(int32) * cap);
		e->cap_cached = cap;
	}
	memcpy(e->cached, ids, sizeof(int32) * held);
	e->n_cached = held;
}

static text *
llm_run(llm_entry *e, int32 *ids, size_t n, llm_options *o)
{
	const tl_llm_config *c = tl_llm_config_of(e->model);
	int32		n_ctx = Min(o->n_ctx, c->n_ctx_train);
	tl_llm_state *st;
	tl_generation g;
	MemoryContext old;
	tl_status	rc;
	text	   *result;
	bool		decoding = false;
	int32		reused;

	ids = llm_fit_prompt(ids, &n, n_ctx, o);

	/*
	 * Only the thread count applies unless tutor.device is 'cuda' (see
	 * llm_state): resolving 'auto' would load the CUDA plugin and its
	 * libraries into every backend that generates, for nothing.
	 */
	tl_set_num_threads(tutor_threads);
	st = llm_state(e, n_ctx);
	o->params.keep_going = llm_keep_going;
	o->params.keep_going_arg = &decoding;

	tutor_progress_begin(e->name, "generate");
	tutor_progress_phase("prefill");
	tutor_progress_epoch(0, 0, o->params.max_tokens);
	reused = llm_reuse_prefix(e, st, ids, n, o);
	old = MemoryContextSwitchTo(e->cxt);
	rc = tl_llm_generate(st, ids + reused, (int32_t) (n - reused), &o->params, &g);
	MemoryContextSwitchTo(old);
	tutor_progress_end();
	if (rc != TL_OK)
	{
		e->n_cached = 0;
		tutor_raise(rc, "generating");
	}
	llm_remember(e, st, ids, n);

	CHECK_FOR_INTERRUPTS();
	if (g.finish == TL_FINISH_INTERRUPTED)
	{
		tl_generation_free(&g);
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("generation was interrupted")));
	}
	ereport(DEBUG1,
			(errmsg_internal("tutor_llm: %d prompt tokens reused, %d in %.3f s, %d new tokens in %.3f s (%s)",
							 reused, g.n_prompt, g.prefill_seconds, g.n_tokens, g.decode_seconds,
							 tl_finish_name(g.finish))));
	result = llm_utf8_to_text(g.text, g.len);
	tl_generation_free(&g);
	return result;
}

/* ======================================================================
 * SQL functions
 * ====================================================================== */

static void
llm_json_kv(StringInfo b, const char *key, const char *value, bool first)
{
	if (!first)
		appendStringInfoString(b, ", ");
	escape_json(b, key);
	appendStringInfoString(b, ": ");
	appendStringInfoString(b, value);
}


/* A description of a loaded model as jsonb. */
static Datum
llm_describe(llm_entry *e)
{
	const tl_llm_config *c = tl_llm_config_of(e->model);
	const tl_gguf *g = tl_llm_gguf(e->model);
	StringInfoData b;
	int			counts[TL_QT_LIMIT] = {0};
	bool		first = true;

	for (size_t i = 0; i < g->n_tensors; i++)
		if ((int) g->tensors[i].type >= 0 && (int) g->tensors[i].type < TL_QT_LIMIT)
			counts[g->tensors[i].type]++;

	initStringInfo(&b);
	appendStringInfoChar(&b, '{');
	llm_json_kv(&b, "name", tutor_json_string(e->name), true);
	llm_json_kv(&b, "path", tutor_json_string(e->path), false);
	llm_json_kv(&b, "architecture", tutor_json_string(c->arch_name), false);
	llm_json_kv(&b, "parameters", psprintf(INT64_FORMAT, c->n_params), false);
	llm_json_kv(&b, "context_length", psprintf("%d", c->n_ctx_train), false);
	llm_json_kv(&b, "vocab_size", psprintf("%d", c->n_vocab), false);
	llm_json_kv(&b, "embedding_length", psprintf("%d", c->n_embd), false);
	llm_json_kv(&b, "layers", psprintf("%d", c->n_layer), false);
	llm_json_kv(&b, "heads", psprintf("%d", c->n_head), false);
	llm_json_kv(&b, "kv_heads", psprintf("%d", c->n_head_kv), false);
	llm_json_kv(&b, "head_dim", psprintf("%d", c->head_dim), false);
	llm_json_kv(&b, "feed_forward_length", psprintf("%d", c->n_ff), false);
	llm_json_kv(&b, "rope_base", psprintf("%g", c->rope_base), false);
	llm_json_kv(&b, "tied_embeddings", c->tied_embeddings ? "true" : "false", false);
	llm_json_kv(&b, "tokenizer", tutor_json_string(tl_tokenizer_pre_name(tl_llm_tokenizer(e->model))), false);
	llm_json_kv(&b, "chat_template",
				e->chat_ok ? tutor_json_string(tl_chat_style_name(e->chat.style)) : "null", false);
	llm_json_kv(&b, "file_bytes", psprintf(INT64_FORMAT, e->file_bytes), false);
	appendStringInfoString(&b, ", \"tensor_types\": {");
	for (int t = 0; t < TL_QT_LIMIT; t++)
		if (counts[t])
		{
			llm_json_kv(&b, tl_qtype_name(t), psprintf("%d", counts[t]), first);
			first = false;
		}
	appendStringInfoString(&b, "}}");
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(b.data));
}

PG_FUNCTION_INFO_V1(tutor_llm_load);
Datum
tutor_llm_load(PG_FUNCTION_ARGS)
{
	char	   *name,
			   *path;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model name and path must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	PG_RETURN_DATUM(llm_describe(llm_load(name, path)));
}

PG_FUNCTION_INFO_V1(tutor_llm_unload);
Datum
tutor_llm_unload(PG_FUNCTION_ARGS)
{
	llm_entry  *e;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	e = llm_find(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	if (e == NULL)
		PG_RETURN_BOOL(false);
	llm_remove(e);
	PG_RETURN_BOOL(true);
}

PG_FUNCTION_INFO_V1(tutor_llm_models);
Datum
tutor_llm_models(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (llm_entry *e = llm_entries; e; e = e->next)
	{
		Datum		values[4];
		bool		nulls[4] = {false};

		values[0] = CStringGetTextDatum(e->name);
		values[1] = CStringGetTextDatum(e->path);
		values[2] = BoolGetDatum(e == llm_latest);
		values[3] = llm_describe(e);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(tutor_generate);
Datum
tutor_generate(PG_FUNCTION_ARGS)
{
	llm_options o;
	llm_entry  *e;
	char	   *prompt;
	size_t		len,
				n;
	int32	   *ids;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	llm_read_options(PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1), &o);
	e = llm_get(o.model);
	prompt = llm_text_to_utf8(PG_GETARG_TEXT_PP(0), &len);
	ids = llm_encode(e, prompt, len, &n);
	PG_RETURN_TEXT_P(llm_run(e, ids, n, &o));
}

/* messages: [{"role": ..., "content": ...}, ...] */
static tl_chat_message *
llm_read_messages(Jsonb *messages, int *count)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;
	tl_chat_message *out;

	if (!JB_ROOT_IS_ARRAY(messages) || JB_ROOT_IS_SCALAR(messages))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("messages must be a JSON array of {\"role\": ..., \"content\": ...} objects")));
	*count = JB_ROOT_COUNT(messages);
	if (*count == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("messages must not be empty")));
	out = palloc0(sizeof(tl_chat_message) * *count);
	it = JsonbIteratorInit(&messages->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		Jsonb	   *m;
		JsonbValue	buf,
				   *role,
				   *content;

		if (tok != WJB_ELEM)
			continue;
		if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("message %d is not a JSON object", n + 1)));
		m = JsonbValueToJsonb(&v);
		role = tutor_option(m, "role", &buf);
		if (role == NULL || role->type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("message %d needs a string \"role\"", n + 1)));
		out[n].role = pnstrdup(role->val.string.val, role->val.string.len);
		content = tutor_option(m, "content", &buf);
		if (content == NULL || content->type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("message %d needs a string \"content\"", n + 1)));
		out[n].content = pg_server_to_any(content->val.string.val, content->val.string.len, PG_UTF8);
		if (out[n].content == content->val.string.val)
			out[n].content = pnstrdup(content->val.string.val, content->val.string.len);
		out[n].content_len = strlen(out[n].content);
		n++;
	}
	*count = n;
	return out;
}

PG_FUNCTION_INFO_V1(tutor_chat);
Datum
tutor_chat(PG_FUNCTION_ARGS)
{
	llm_options o;
	llm_entry  *e;
	tl_chat_message *msgs;
	int			n_msgs;
	int32_t    *ids;
	int32	   *copy;
	size_t		n;
	tl_status	rc;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	llm_read_options(PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1), &o);
	msgs = llm_read_messages(PG_GETARG_JSONB_P(0), &n_msgs);
	e = llm_get(o.model);
	if (!e->chat_ok)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("model \"%s\" has no chat template tutor_llm knows", e->name),
				 errdetail("%s", e->chat_error)));
	rc = tl_chat_tokenize(&e->chat, tl_llm_tokenizer(e->model), msgs, n_msgs, &ids, &n);
	if (rc != TL_OK)
		tutor_raise(rc, "building the chat prompt");
	copy = palloc(sizeof(int32) * (n + 1));
	memcpy(copy, ids, sizeof(int32) * n);
	tl_free(ids);
	PG_RETURN_TEXT_P(llm_run(e, copy, n, &o));
}

PG_FUNCTION_INFO_V1(tutor_tokenize);
Datum
tutor_tokenize(PG_FUNCTION_ARGS)
{
	llm_entry  *e;
	char	   *s;
	size_t		len,
				n;
	int32	   *ids;
	Datum	   *elems;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	e = llm_get(PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)));
	s = llm_text_to_utf8(PG_GETARG_TEXT_PP(0), &len);
	ids = llm_encode(e, s, len, &n);
	elems = palloc(sizeof(Datum) * (n + 1));
	for (size_t i = 0; i < n; i++)
		elems[i] = Int32GetDatum(ids[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, (int) n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
}

PG_FUNCTION_INFO_V1(tutor_detokenize);
Datum
tutor_detokenize(PG_FUNCTION_ARGS)
{
	llm_entry  *e;
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int32_t    *ids;
	char	   *raw,
			   *clean;
	size_t		len,
				clean_len;
	tl_status	rc;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	e = llm_get(PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)));
	arr = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("token ids must be a one-dimensional array")));
	deconstruct_array(arr, INT4OID, sizeof(int32), true, TYPALIGN_INT, &elems, &nulls, &n);
	ids = palloc(sizeof(int32_t) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("token id %d is null", i + 1)));
		ids[i] = DatumGetInt32(elems[i]);
	}
	rc = tl_tokenizer_decode(tl_llm_tokenizer(e->model), ids, (size_t) n, TL_TOK_STRIP_PREFIX, &raw, &len);
	if (rc != TL_OK)
		tutor_raise(rc, "detokenizing");
	rc = tl_utf8_clean(raw, len, &clean, &clean_len);
	tl_free(raw);
	if (rc != TL_OK)
		tutor_raise(rc, "detokenizing");
	{
		text	   *t = llm_utf8_to_text(clean, clean_len);

		tl_free(clean);
		PG_RETURN_TEXT_P(t);
	}
}
