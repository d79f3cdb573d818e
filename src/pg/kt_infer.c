/*
 * kt_infer.c -- asking a trained model about students:
 * tutor.mastery(), tutor.predict_correct() and tutor.mastery_all().
 *
 * A student's answers are read from the model's source at call time (as
 * the caller), so predictions always reflect the latest answers without
 * retraining; the model itself is loaded once per backend and cached.
 */
#include "kt_data.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "tl_pool.h"
#include "tutor_llm.h"

PG_FUNCTION_INFO_V1(tutor_mastery);
PG_FUNCTION_INFO_V1(tutor_predict_correct);
PG_FUNCTION_INFO_V1(tutor_mastery_all);

void
tutor_kt_history_init(tutor_kt_history *h, const tutor_kt_model *m)
{
	memset(h, 0, sizeof(*h));
	h->model = m;
	h->attempts = palloc0(sizeof(int32) * m->skills.count);
	h->last_seen = palloc0(sizeof(TimestampTz) * m->skills.count);
	h->seen = palloc0(sizeof(bool) * m->skills.count);
}

/* Scan callback: turn one student's answers into indexes and per-skill counts. */
void
tutor_kt_history_load(const tutor_kt_student *st, void *arg)
{
	tutor_kt_history *h = arg;
	const tutor_kt_model *m = h->model;

	h->n = st->n;
	h->items = palloc(sizeof(int32) * Max(st->n, 1));
	h->skills = palloc(sizeof(int32) * Max(st->n, 1));
	h->correct = palloc(sizeof(float) * Max(st->n, 1));
	memset(h->attempts, 0, sizeof(int32) * m->skills.count);
	memset(h->seen, 0, sizeof(bool) * m->skills.count);
	for (int32 i = 0; i < st->n; i++)
	{
		int32		item = st->item_ids[i] ? tutor_vocab_lookup((tutor_vocab *) &m->items, st->item_ids[i],
																strlen(st->item_ids[i]), false, "item_id") : 0;
		int32		skill = m->skill_from_item ? item
			: st->skill_ids[i] ? tutor_vocab_lookup((tutor_vocab *) &m->skills, st->skill_ids[i],
													strlen(st->skill_ids[i]), false, "skill_id") : 0;

		h->items[i] = item;
		h->skills[i] = skill;
		h->correct[i] = st->correct[i];
		h->attempts[skill]++;
		if (st->time && !st->time_null[i] && (!h->seen[skill] || st->time[i] > h->last_seen[skill]))
		{
			h->last_seen[skill] = st->time[i];
			h->seen[skill] = true;
		}
	}
}

/* Convert a value of any type to another through text (the source's id types). */
Datum
tutor_convert_datum(Datum value, Oid from, Oid to)
{
	char	   *text;
	Oid			fn,
				ioparam;
	bool		varlena;

	if (from == to)
		return value;
	if (from == UNKNOWNOID)
		text = DatumGetCString(value);
	else
	{
		getTypeOutputInfo(from, &fn, &varlena);
		text = OidOutputFunctionCall(fn, value);
	}
	getTypeInputInfo(to, &fn, &ioparam);
	return OidInputFunctionCall(fn, text, ioparam, -1);
}

/* Any value as text (item ids). */
static char *
as_text(Datum value, Oid type)
{
	Oid			fn;
	bool		varlena;

	if (type == UNKNOWNOID)
		return pstrdup(DatumGetCString(value));
	getTypeOutputInfo(type, &fn, &varlena);
	return OidOutputFunctionCall(fn, value);
}

/* Read one student's answers from the model's source. */
static void
read_history(tutor_kt_history *h, const tutor_kt_model *m, FunctionCallInfo fcinfo, int argno)
{
	Oid			from = get_fn_expr_argtype(fcinfo->flinfo, argno);
	Oid			to = m->source.type[KT_COL_STUDENT];
	tutor_kt_scan_stats stats;
	tutor_kt_filter filter = {0};

	if (!OidIsValid(from))
		elog(ERROR, "could not determine the type of student_id");
	tutor_kt_history_init(h, m);
	filter.student = tutor_convert_datum(PG_GETARG_DATUM(argno), from, to);
	filter.student_type = to;
	tutor_kt_scan(&m->source, &filter, tutor_kt_history_load, h, &stats);
}

tl_kt	  **
tutor_kt_batch_instances(const tutor_kt_model *m, int *n)
{
	const tl_kt *kt = &m->kt;
	int			threads = tl_pool_threads();
	tl_kt	  **kts = palloc0(sizeof(tl_kt *) * threads);

	*n = 0;
	for (int i = 0; i < threads; i++)
	{
		tl_kt_config cfg = kt->cfg;

		cfg.max_tokens = Max(cfg.window, TUTOR_KT_BATCH_TOKENS / threads);
		cfg.lr = 0.0f;
		kts[i] = palloc0(sizeof(tl_kt));
		TUTOR_CHECK(tl_kt_create(kts[i], &cfg, 0), "preparing batch inference");
		*n = i + 1;
		memcpy(kts[i]->params.value, kt->params.value, sizeof(float) * kt->params.total);
	}
	return kts;
}

void
tutor_kt_batch_instances_free(const tutor_kt_model *m, tl_kt **kts, int n)
{
	for (int i = 0; i < n; i++)
		if (kts[i] != &m->kt)
			tl_kt_free(kts[i]);
}

/* PFA: P(correct) on skill s for a student with history h, on item (or the skill's typical item). */
static float
pfa_predict(const tutor_kt_model *m, const tutor_kt_history *h, int32 item, int32 skill)
{
	tl_pfa_obs	o = {item, skill, 0.0f, 0.0f, 0.0f};
	float		logit;

	for (int32 i = 0; i < h->n; i++)
		if (h->skills[i] == skill)
		{
			o.successes += h->correct[i];
			o.failures += 1.0f - h->correct[i];
		}
	logit = tl_pfa_logit(&m->pfa, &o);
	if (item < 0)
	{
		o.item = 0;
		logit = tl_pfa_logit(&m->pfa, &o) + m->skill_bias_avg[skill];
	}
	return 1.0f / (1.0f + expf(-logit));
}

/* P(correct) for each of n questions after history h. */
void
tutor_kt_predict(tutor_kt_model *m, const tutor_kt_history *h, const tl_kt_query *q, int64 n, float *probs)
{
	if (m->kind == KT_KIND_TRANSFORMER)
		TUTOR_CHECK(tl_kt_predict_next(&m->kt, h->items, h->skills, h->correct, h->n, q, n,
									   m->skill_mu_avg, m->skill_bias_avg, probs),
					"knowledge-tracing prediction");
	else
		for (int64 i = 0; i < n; i++)
			probs[i] = pfa_predict(m, h, q[i].item, q[i].skill);
}

/* The questions "a typical item of each skill", skills 1..S-1. */
static tl_kt_query *
skill_queries(const tutor_kt_model *m, int64 *n)
{
	tl_kt_query *q = palloc(sizeof(tl_kt_query) * Max(m->skills.count - 1, 1));

	for (int32 s = 1; s < m->skills.count; s++)
		/* in item-only models each item is its own skill: ask about the item itself */
		q[s - 1] = (tl_kt_query) {m->skill_from_item ? s : -1, s};
	*n = m->skills.count - 1;
	return q;
}

/* Append one student's mastery rows (probs answer the nq questions q) to a tuplestore. */
static void
emit_mastery_rows(ReturnSetInfo *rsinfo, const tutor_kt_model *m, const tutor_kt_history *h,
				  const char *student_id, const tl_kt_query *q, int64 nq, const float *probs)
{
	int			off = student_id ? 1 : 0;

	for (int64 i = 0; i < nq; i++)
	{
		int32		s = q[i].skill;
		Datum		values[5];
		bool		nulls[5] = {0};

		if (student_id)
			values[0] = CStringGetTextDatum(student_id);
		values[off + 0] = PointerGetDatum(cstring_to_text_with_len(m->skills.strings[s], m->skills.lengths[s]));
		values[off + 1] = Float8GetDatum(probs[i]);
		values[off + 2] = Int32GetDatum(h->attempts[s]);
		values[off + 3] = TimestampTzGetDatum(h->last_seen[s]);
		nulls[off + 3] = !h->seen[s];
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/* Predict and append the mastery rows of one student. */
static void
emit_mastery(ReturnSetInfo *rsinfo, tutor_kt_model *m, const tutor_kt_history *h, const char *student_id)
{
	int64		nq;
	tl_kt_query *q = skill_queries(m, &nq);
	float	   *probs = palloc(sizeof(float) * Max(nq, 1));

	if (nq == 0)
		return;
	tutor_kt_predict(m, h, q, nq, probs);
	emit_mastery_rows(rsinfo, m, h, student_id, q, nq, probs);
	pfree(q);
	pfree(probs);
}

static char *
model_name_arg(FunctionCallInfo fcinfo, int argno)
{
	return PG_NARGS() > argno && !PG_ARGISNULL(argno) ? text_to_cstring(PG_GETARG_TEXT_PP(argno)) : NULL;
}

/* tutor.mastery(student_id, model_name): one row per skill of the model. */
Datum
tutor_mastery(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *model_name = model_name_arg(fcinfo, 1);
	tutor_kt_model *m;
	tutor_kt_history h;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("student_id must not be NULL")));
	tutor_begin_compute();
	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	m = tutor_kt_load(model_name);
	read_history(&h, m, fcinfo, 0);	/* an unknown student has no answers: the prior */
	emit_mastery(rsinfo, m, &h, NULL);
	SPI_finish();
	return (Datum) 0;
}

/* tutor.predict_correct(student_id, item_id, model_name) */
Datum
tutor_predict_correct(PG_FUNCTION_ARGS)
{
	char	   *model_name = model_name_arg(fcinfo, 2);
	char	   *item_text;
	tutor_kt_model *m;
	tutor_kt_history h;
	tl_kt_query q;
	float		p;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("student_id and item_id must not be NULL")));
	tutor_begin_compute();
	item_text = as_text(PG_GETARG_DATUM(1), get_fn_expr_argtype(fcinfo->flinfo, 1));
	SPI_connect();
	m = tutor_kt_load(model_name);
	read_history(&h, m, fcinfo, 0);
	if (m->items.count == 1)
	{
		/* a model trained without items: the id names a skill */
		q.item = -1;
		q.skill = tutor_vocab_lookup(&m->skills, item_text, strlen(item_text), false, "skill_id");
	}
	else
	{
		/* an item the model never saw: its skill is unknown too, the prediction is the student's general level */
		q.item = tutor_vocab_lookup(&m->items, item_text, strlen(item_text), false, "item_id");
		q.skill = m->skill_from_item ? q.item : m->item_skill[q.item];
	}
	tutor_kt_predict(m, &h, &q, 1, &p);
	SPI_finish();
	PG_RETURN_FLOAT8((double) p);
}

#define MASTERY_BATCH_STUDENTS 256

/*
 * State of a mastery_all scan: students are queued and predicted a batch
 * at a time (one Transformer copy per thread, as personalize does).
 */
typedef struct mastery_all_state
{
	ReturnSetInfo *rsinfo;
	tutor_kt_model *model;
	tl_kt	  **kts;			/* Transformer copies (NULL for PFA) */
	int			n_kts;
	tl_kt_query *queries;
	int64		n_queries;
	MemoryContext batch_cxt;	/* the queued students; reset per batch */
	int32		n;
	char	   *ids[MASTERY_BATCH_STUDENTS];
	tutor_kt_history hist[MASTERY_BATCH_STUDENTS];
} mastery_all_state;

static void
mastery_all_flush(mastery_all_state *s)
{
	tutor_kt_model *m = s->model;
	MemoryContext old;
	float	   *probs;

	if (s->n == 0)
		return;
	old = MemoryContextSwitchTo(s->batch_cxt);
	probs = palloc(sizeof(float) * s->n * s->n_queries);
	if (s->kts)
	{
		int64	   *offsets = palloc(sizeof(int64) * (s->n + 1));
		int64		total = 0;
		int32	   *items,
				   *skills;
		float	   *correct;

		for (int32 b = 0; b < s->n; b++)
			total += s->hist[b].n;
		items = palloc(sizeof(int32) * Max(total, 1));
		skills = palloc(sizeof(int32) * Max(total, 1));
		correct = palloc(sizeof(float) * Max(total, 1));
		offsets[0] = 0;
		for (int32 b = 0; b < s->n; b++)
		{
			const tutor_kt_history *h = &s->hist[b];

			memcpy(items + offsets[b], h->items, sizeof(int32) * h->n);
			memcpy(skills + offsets[b], h->skills, sizeof(int32) * h->n);
			memcpy(correct + offsets[b], h->correct, sizeof(float) * h->n);
			offsets[b + 1] = offsets[b] + h->n;
		}
		TUTOR_CHECK(tl_kt_predict_many(s->kts, s->n_kts, s->n, offsets, items, skills, correct,
									   s->queries, s->n_queries, m->skill_mu_avg, m->skill_bias_avg, probs),
					"knowledge-tracing prediction");
	}
	else
		for (int32 b = 0; b < s->n; b++)
			tutor_kt_predict(m, &s->hist[b], s->queries, s->n_queries, probs + b * s->n_queries);
	for (int32 b = 0; b < s->n; b++)
		emit_mastery_rows(s->rsinfo, m, &s->hist[b], s->ids[b], s->queries, s->n_queries,
						  probs + b * s->n_queries);
	MemoryContextSwitchTo(old);
	MemoryContextReset(s->batch_cxt);
	s->n = 0;
}

static void
mastery_all_student(const tutor_kt_student *st, void *arg)
{
	mastery_all_state *s = arg;
	MemoryContext old = MemoryContextSwitchTo(s->batch_cxt);

	CHECK_FOR_INTERRUPTS();
	s->ids[s->n] = pstrdup(st->id);
	tutor_kt_history_init(&s->hist[s->n], s->model);
	tutor_kt_history_load(st, &s->hist[s->n]);
	s->n++;
	MemoryContextSwitchTo(old);
	if (s->n == MASTERY_BATCH_STUDENTS)
		mastery_all_flush(s);
}

/* tutor.mastery_all(model_name, students): every student of the source, one pass. */
Datum
tutor_mastery_all(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *model_name = model_name_arg(fcinfo, 0);
	char	   *students = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	mastery_all_state state = {0};
	tutor_kt_filter filter = {0};
	tutor_kt_scan_stats stats;

	tutor_begin_compute();
	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	state.rsinfo = rsinfo;
	state.model = tutor_kt_load(model_name);
	state.queries = skill_queries(state.model, &state.n_queries);
	if (state.n_queries == 0)
	{
		SPI_finish();
		return (Datum) 0;
	}
	if (state.model->kind == KT_KIND_TRANSFORMER)
		state.kts = tutor_kt_batch_instances(state.model, &state.n_kts);
	state.batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "tutor mastery_all batch",
											ALLOCSET_DEFAULT_SIZES);
	filter.students_sql = students ? tutor_source_from_sql(students) : NULL;
	tutor_kt_scan(&state.model->source, &filter, mastery_all_student, &state, &stats);
	mastery_all_flush(&state);
	if (state.kts)
		tutor_kt_batch_instances_free(state.model, state.kts, state.n_kts);
	SPI_finish();
	return (Datum) 0;
}
