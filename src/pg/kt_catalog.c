/*
 * kt_catalog.c -- tutor.models: saving trained models, loading them with
 * every byte checked, deploying versions, ownership, and a small cache
 * of loaded models per backend.
 *
 * Rows are written as the extension's owner (the table is read-only for
 * everyone else), after checking that the caller owns the model name.
 * Sources are never read here: they are read by the caller, as the
 * caller, elsewhere.
 */
#include "kt.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "tl_alloc.h"
#include "tl_blob.h"
#include "tutor_llm.h"

#define KT_BLOB_KIND_TRANSFORMER 1
#define KT_BLOB_KIND_PFA 2
#define KT_TAG_CONFIG TL_BLOB_TAG('C', 'O', 'N', 'F')
#define KT_TAG_ITEMS TL_BLOB_TAG('I', 'T', 'E', 'M')
#define KT_TAG_SKILLS TL_BLOB_TAG('S', 'K', 'I', 'L')
#define KT_TAG_ITEM_SKILL TL_BLOB_TAG('I', 'S', 'K', 'L')
#define KT_CACHE_SIZE 4
#define KT_MAX_VOCAB (1 << 24)

const char *
tutor_kt_kind_name(tutor_kt_kind kind)
{
	return kind == KT_KIND_PFA ? "pfa" : "transformer";
}

/* Model names are identifiers, also usable in file names and logs. */
static void
check_model_name(const char *name)
{
	bool		ok = name && (isalpha((unsigned char) name[0]) || name[0] == '_') && strlen(name) <= 63;

	for (const char *p = name; ok && *p; p++)
		ok = isalnum((unsigned char) *p) || *p == '_' || *p == '.' || *p == '-';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid model name \"%s\"", name ? name : ""),
				 errdetail("A model name starts with a letter or underscore and has at most 63 letters, digits, \"_\", \".\" or \"-\".")));
}

/* Run a catalog statement with parameters, as the calling user. */
static int
catalog_query(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, bool read_only)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, 0);

	if (rc < 0)
		elog(ERROR, "catalog query failed: %s", SPI_result_code_string(rc));
	return rc;
}

void
tutor_kt_check_owner(const char *name, bool must_exist)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	bool		isnull;
	Oid			owner;

	check_model_name(name);
	catalog_query("SELECT created_by::oid FROM tutor.models WHERE name = $1 ORDER BY version LIMIT 1",
				  1, types, values, NULL, true);
	if (SPI_processed == 0)
	{
		if (must_exist)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("model \"%s\" does not exist", name)));
		return;
	}
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be a member of role \"%s\", the owner of model \"%s\"",
						GetUserNameFromId(owner, false), name),
				 errdetail("Only the owner of a model, or a role with its privileges, may add versions or deploy.")));
}

/* The role that owns the extension, who owns tutor.models. */
static Oid
extension_owner(void)
{
	bool		isnull;

	catalog_query("SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'tutor_llm'",
				  0, NULL, NULL, NULL, true);
	if (SPI_processed != 1)
		elog(ERROR, "extension tutor_llm is not installed in this database");
	return DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Raise a core failure while (de)serialising a model. */
static void
blob_check(tl_status rc, const char *what, const char *name, int32 version)
{
	if (rc == TL_OK)
		return;
	if (rc == TL_ERR_NOMEM)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while %s model \"%s\"", what, name)));
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("model \"%s\" version %d has damaged weights", name, version),
			 errdetail("%s", tl_last_error()),
			 errhint("Deploy another version with tutor.deploy(), or train the model again.")));
}

/* Write a vocabulary section: count, then the strings of indexes 1..count-1. */
static void
put_vocab(tl_blob_writer *w, uint32 tag, const tutor_vocab *v, const char *name)
{
	blob_check(tl_blob_begin_section(w, tag), "saving", name, 0);
	blob_check(tl_blob_put_u32(w, (uint32) v->count), "saving", name, 0);
	for (int32 i = 1; i < v->count; i++)
		blob_check(tl_blob_put_string(w, v->strings[i], v->lengths[i]), "saving", name, 0);
	blob_check(tl_blob_end_section(w), "saving", name, 0);
}

/* Serialise a trained model. */
static bytea *
serialise_model(const tutor_kt_trained *t)
{
	tl_blob_writer w;
	uint8	   *data;
	size_t		len;
	bytea	   *out;
	const char *n = t->name;

	blob_check(tl_blob_writer_init(&w, t->kind == KT_KIND_PFA ? KT_BLOB_KIND_PFA : KT_BLOB_KIND_TRANSFORMER),
			   "saving", n, 0);
	blob_check(tl_blob_begin_section(&w, KT_TAG_CONFIG), "saving", n, 0);
	blob_check(tl_blob_put_i64(&w, t->items->count), "saving", n, 0);
	blob_check(tl_blob_put_i64(&w, t->skills->count), "saving", n, 0);
	blob_check(tl_blob_put_u32(&w, t->skill_from_item ? 1 : 0), "saving", n, 0);
	if (t->kind == KT_KIND_TRANSFORMER)
	{
		const tl_kt_config *c = t->kt_config;

		blob_check(tl_blob_put_i64(&w, c->d_model), "saving", n, 0);
		blob_check(tl_blob_put_i64(&w, c->heads), "saving", n, 0);
		blob_check(tl_blob_put_i64(&w, c->layers), "saving", n, 0);
		blob_check(tl_blob_put_i64(&w, c->d_ff), "saving", n, 0);
		blob_check(tl_blob_put_i64(&w, c->window), "saving", n, 0);
	}
	blob_check(tl_blob_end_section(&w), "saving", n, 0);
	blob_check(tl_blob_put_params(&w, t->params), "saving", n, 0);
	put_vocab(&w, KT_TAG_ITEMS, t->items, n);
	put_vocab(&w, KT_TAG_SKILLS, t->skills, n);
	blob_check(tl_blob_begin_section(&w, KT_TAG_ITEM_SKILL), "saving", n, 0);
	for (int32 i = 0; i < t->items->count; i++)
		blob_check(tl_blob_put_i32(&w, t->item_skill[i]), "saving", n, 0);
	blob_check(tl_blob_end_section(&w), "saving", n, 0);
	blob_check(tl_blob_finish(&w, &data, &len), "saving", n, 0);

	out = palloc(VARHDRSZ + len);
	SET_VARSIZE(out, VARHDRSZ + len);
	memcpy(VARDATA(out), data, len);
	tl_free(data);
	return out;
}

int32
tutor_kt_save(const tutor_kt_trained *t, bool *deployed)
{
	bytea	   *weights = serialise_model(t);
	Oid			save_userid;
	int			save_sec;
	int32		version = 0;
	StringInfoData config;

	initStringInfo(&config);
	appendStringInfo(&config, "{\"source\": ");
	escape_json(&config, t->source->text);
	appendStringInfo(&config, ", \"columns\": ");
	tutor_kt_source_to_config(t->source, &config);
	appendStringInfo(&config, ", \"options\": %s, \"n_items\": %d, \"n_skills\": %d, \"skill_from_item\": %s}",
					 t->options_json, t->items->count - 1, t->skills->count - 1,
					 t->skill_from_item ? "true" : "false");

	GetUserIdAndSecContext(&save_userid, &save_sec);
	/* two trainings of one name in parallel get distinct versions */
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(t->name)};

		catalog_query("SELECT pg_catalog.pg_advisory_xact_lock(hashtext('tutor.models'), hashtext($1))",
					  1, types, values, NULL, false);
	}
	tutor_kt_check_owner(t->name, false);
	SetUserIdAndSecContext(extension_owner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		Oid			types[7] = {TEXTOID, TEXTOID, OIDOID, JSONBOID, JSONBOID, TEXTOID, BYTEAOID};
		Datum		values[7];
		bool		isnull;

		values[0] = CStringGetTextDatum(t->name);
		values[1] = CStringGetTextDatum(tutor_kt_kind_name(t->kind));
		values[2] = ObjectIdGetDatum(save_userid);
		values[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(config.data));
		values[4] = DirectFunctionCall1(jsonb_in, CStringGetDatum(t->metrics_json));
		values[5] = CStringGetTextDatum(t->source->text);
		values[6] = PointerGetDatum(weights);
		catalog_query("INSERT INTO tutor.models (name, version, kind, created_by, config, metrics, source, weights, deployed_at) "
					  "SELECT $1, coalesce(max(version), 0) + 1, $2, $3::regrole, $4, $5, $6, $7, "
					  "  CASE WHEN bool_or(deployed_at IS NOT NULL) IS NOT TRUE THEN now() END "
					  "FROM tutor.models WHERE name = $1 "
					  "RETURNING version, deployed_at IS NOT NULL",
					  7, types, values, NULL, false);
		version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		*deployed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
	return version;
}

PG_FUNCTION_INFO_V1(tutor_deploy);

/* tutor.deploy(model_name, version): make one version the deployed one. */
Datum
tutor_deploy(PG_FUNCTION_ARGS)
{
	char	   *name;
	int32		version;
	Oid			save_userid;
	int			save_sec;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2];

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model_name and version must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	version = PG_GETARG_INT32(1);
	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(version);

	SPI_connect();
	tutor_kt_check_owner(name, true);
	catalog_query("SELECT 1 FROM tutor.models WHERE name = $1 AND version = $2", 2, types, values, NULL, true);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" has no version %d", name, version)));
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(extension_owner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		/* two statements: the unique index on deployed rows is checked per row */
		catalog_query("UPDATE tutor.models SET deployed_at = NULL WHERE name = $1 AND deployed_at IS NOT NULL",
					  1, types, values, NULL, false);
		catalog_query("UPDATE tutor.models SET deployed_at = now() WHERE name = $1 AND version = $2",
					  2, types, values, NULL, false);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
	SPI_finish();
	PG_RETURN_VOID();
}

/* ---- loading ----------------------------------------------------------------- */

static tutor_kt_model *model_cache[KT_CACHE_SIZE];
static uint64 model_cache_used[KT_CACHE_SIZE];
static uint64 model_cache_clock;

/* Read a vocabulary section back into a lookup table. */
static void
get_vocab(const tl_blob_reader *r, uint32 tag, tutor_vocab *v, int64 expected,
		  const char *name, int32 version)
{
	tl_blob_cursor c;
	uint32		count;

	blob_check(tl_blob_find_section(r, tag, &c), "loading", name, version);
	blob_check(tl_blob_get_u32(&c, &count), "loading", name, version);
	if (count != expected || count < 1 || count > KT_MAX_VOCAB)
		blob_check(tl_fail(TL_ERR_ARG, "a vocabulary holds %u entries, expected %lld",
						   count, (long long) expected), "loading", name, version);
	tutor_vocab_init(v, KT_MAX_VOCAB);
	for (uint32 i = 1; i < count; i++)
	{
		const char *s;
		size_t		len;

		blob_check(tl_blob_get_string(&c, &s, &len), "loading", name, version);
		if (len > MaxAllocSize / 2 || tutor_vocab_lookup(v, s, (int32) len, true, "identifier") != (int32) i)
			blob_check(tl_fail(TL_ERR_ARG, "vocabulary entry %u is repeated or too long", i),
					   "loading", name, version);
	}
	blob_check(tl_blob_expect_end(&c), "loading", name, version);
}

/* PFA: each skill's mean item easiness, for questions about "a typical item". */
static void
pfa_skill_averages(tutor_kt_model *m, int64 n_items, int64 n_skills)
{
	tl_tensor	beta = tl_params_value(&m->pfa.params, m->pfa.beta);
	int64	   *counts = palloc0(sizeof(int64) * n_skills);

	for (int64 i = 1; i < n_items; i++)
	{
		m->skill_bias_avg[m->item_skill[i]] += beta.data[i];
		counts[m->item_skill[i]]++;
	}
	for (int64 s = 0; s < n_skills; s++)
		if (counts[s] > 0)
			m->skill_bias_avg[s] /= (float) counts[s];
	pfree(counts);
}

/* Build a model object from a catalog row; everything in m->context. */
static void
load_model(tutor_kt_model *m, const char *kind, bytea *weights, Jsonb *config)
{
	tl_blob_reader r;
	tl_blob_cursor c;
	uint32		blob_kind,
				from_item;
	int64		n_items,
				n_skills;
	const char *n = m->name;
	int32		v = m->version;

	blob_check(tl_blob_open(&r, VARDATA_ANY(weights), VARSIZE_ANY_EXHDR(weights), &blob_kind),
			   "loading", n, v);
	m->kind = strcmp(kind, "pfa") == 0 ? KT_KIND_PFA : KT_KIND_TRANSFORMER;
	if (blob_kind != (m->kind == KT_KIND_PFA ? KT_BLOB_KIND_PFA : KT_BLOB_KIND_TRANSFORMER))
		blob_check(tl_fail(TL_ERR_ARG, "the weights are of kind %u, the row says %s", blob_kind, kind),
				   "loading", n, v);
	blob_check(tl_blob_find_section(&r, KT_TAG_CONFIG, &c), "loading", n, v);
	blob_check(tl_blob_get_i64(&c, &n_items), "loading", n, v);
	blob_check(tl_blob_get_i64(&c, &n_skills), "loading", n, v);
	blob_check(tl_blob_get_u32(&c, &from_item), "loading", n, v);
	if (n_items < 1 || n_items > KT_MAX_VOCAB || n_skills < 1 || n_skills > KT_MAX_VOCAB || from_item > 1)
		blob_check(tl_fail(TL_ERR_ARG, "vocabulary sizes %lld and %lld are out of range",
						   (long long) n_items, (long long) n_skills), "loading", n, v);
	m->skill_from_item = from_item == 1;
	if (m->kind == KT_KIND_TRANSFORMER)
	{
		tl_kt_config cfg = {0};

		cfg.n_items = (int32) n_items;
		cfg.n_skills = (int32) n_skills;
		blob_check(tl_blob_get_i64(&c, &cfg.d_model), "loading", n, v);
		blob_check(tl_blob_get_i64(&c, &cfg.heads), "loading", n, v);
		blob_check(tl_blob_get_i64(&c, &cfg.layers), "loading", n, v);
		blob_check(tl_blob_get_i64(&c, &cfg.d_ff), "loading", n, v);
		blob_check(tl_blob_get_i64(&c, &cfg.window), "loading", n, v);
		blob_check(tl_blob_expect_end(&c), "loading", n, v);
		cfg.max_tokens = cfg.window;	/* inference: one history at a time */
		cfg.lr = 0.0f;
		blob_check(tl_kt_create(&m->kt, &cfg, 0), "loading", n, v);
		blob_check(tl_blob_get_params(&r, &m->kt.params), "loading", n, v);
	}
	else
	{
		tl_pfa_config cfg = {(int32) n_items, (int32) n_skills, 0.01f, 0.0f};

		blob_check(tl_blob_expect_end(&c), "loading", n, v);
		blob_check(tl_pfa_create(&m->pfa, &cfg), "loading", n, v);
		blob_check(tl_blob_get_params(&r, &m->pfa.params), "loading", n, v);
	}
	get_vocab(&r, KT_TAG_ITEMS, &m->items, n_items, n, v);
	get_vocab(&r, KT_TAG_SKILLS, &m->skills, n_skills, n, v);
	blob_check(tl_blob_find_section(&r, KT_TAG_ITEM_SKILL, &c), "loading", n, v);
	m->item_skill = palloc(sizeof(int32) * n_items);
	for (int64 i = 0; i < n_items; i++)
	{
		blob_check(tl_blob_get_i32(&c, &m->item_skill[i]), "loading", n, v);
		if (m->item_skill[i] < 0 || m->item_skill[i] >= n_skills)
			blob_check(tl_fail(TL_ERR_ARG, "item %lld maps to skill %d of %lld",
							   (long long) i, m->item_skill[i], (long long) n_skills), "loading", n, v);
	}
	blob_check(tl_blob_expect_end(&c), "loading", n, v);
	m->skill_mu_avg = palloc0(sizeof(float) * n_skills);
	m->skill_bias_avg = palloc0(sizeof(float) * n_skills);
	if (m->kind == KT_KIND_TRANSFORMER)
		tl_kt_skill_averages(&m->kt, m->item_skill, m->skill_mu_avg, m->skill_bias_avg);
	else
		pfa_skill_averages(m, n_items, n_skills);
	tutor_kt_source_from_config(&m->source, config);
}

/*
 * The model_id and row version (xmin) of the model a call asks for, with
 * errors for each miss.  The cache is keyed by both, so a row changed in
 * place (a deploy, or a repair of its weights) is loaded afresh.
 */
static int64
resolve_model_id(const char *name, TransactionId *row_xmin)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	const char *want = name;

	if (want == NULL && tutor_default_model && tutor_default_model[0])
		want = tutor_default_model;
	if (want == NULL)
	{
		catalog_query("SELECT model_id, xmin FROM tutor.models WHERE deployed_at IS NOT NULL "
					  "ORDER BY deployed_at DESC, model_id DESC LIMIT 1", 0, NULL, NULL, NULL, true);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("no model is deployed"),
					 errhint("Train one with tutor.train_kt(), or name a model.")));
	}
	else
	{
		values[0] = CStringGetTextDatum(want);
		catalog_query("SELECT model_id, xmin FROM tutor.models WHERE name = $1 AND deployed_at IS NOT NULL",
					  1, types, values, NULL, true);
		if (SPI_processed == 0)
		{
			catalog_query("SELECT 1 FROM tutor.models WHERE name = $1", 1, types, values, NULL, true);
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 SPI_processed == 0 ? errmsg("model \"%s\" does not exist", want)
					 : errmsg("model \"%s\" has no deployed version", want),
					 name == NULL ? errdetail("tutor.default_model names it.") : 0));
		}
	}
	*row_xmin = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

tutor_kt_model *
tutor_kt_load(const char *name)
{
	TransactionId row_xmin;
	int64		model_id = resolve_model_id(name, &row_xmin);
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(model_id)};
	int			slot = 0;
	MemoryContext cxt,
				old;
	tutor_kt_model *m;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	for (int i = 0; i < KT_CACHE_SIZE; i++)
		if (model_cache[i] && model_cache[i]->model_id == model_id && model_cache[i]->row_xmin == row_xmin)
		{
			model_cache_used[i] = ++model_cache_clock;
			return model_cache[i];
		}

	catalog_query("SELECT name, version, kind, weights, config FROM tutor.models WHERE model_id = $1",
				  1, types, values, NULL, true);
	if (SPI_processed != 1)
		elog(ERROR, "model %lld vanished while loading", (long long) model_id);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	/* built under the caller's context, so an error frees it; kept on success */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "tutor model", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	m = palloc0(sizeof(*m));
	m->context = cxt;
	m->model_id = model_id;
	m->row_xmin = row_xmin;
	m->name = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
	m->version = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
	load_model(m, TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull)),
			   DatumGetByteaPP(SPI_getbinval(tup, desc, 4, &isnull)),
			   DatumGetJsonbP(SPI_getbinval(tup, desc, 5, &isnull)));
	MemoryContextSwitchTo(old);

	/* replace the least recently used entry */
	for (int i = 1; i < KT_CACHE_SIZE; i++)
		if (model_cache_used[i] < model_cache_used[slot])
			slot = i;
	if (model_cache[slot])
		MemoryContextDelete(model_cache[slot]->context);
	MemoryContextSetParent(cxt, CacheMemoryContext);
	model_cache[slot] = m;
	model_cache_used[slot] = ++model_cache_clock;
	return m;
}
