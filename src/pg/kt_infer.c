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

/* Append the mastery rows of one student to a tuplestore. */
static void
emit_mastery(ReturnSetInfo *rsinfo, tutor_kt_model *m, const tutor_kt_history *h, const char *student_id)
{
	int64		nq;
	tl_kt_query *q = skill_queries(m, &nq);
	float	   *probs = palloc(sizeof(float) * Max(nq, 1));
	int			off = student_id ? 1 : 0;

	if (nq == 0)
		return;
	tutor_kt_predict(m, h, q, nq, probs);
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

/* State of a mastery_all scan. */
typedef struct mastery_all_state
{
	ReturnSetInfo *rsinfo;
	tutor_kt_model *model;
	tutor_kt_history h;
	MemoryContext per_student;
	int64		students;
} mastery_all_state;

static void
mastery_all_student(const tutor_kt_student *st, void *arg)
{
	mastery_all_state *s = arg;
	MemoryContext old = MemoryContextSwitchTo(s->per_student);

	CHECK_FOR_INTERRUPTS();
	tutor_kt_history_init(&s->h, s->model);
	tutor_kt_history_load(st, &s->h);
	emit_mastery(s->rsinfo, s->model, &s->h, st->id);
	MemoryContextSwitchTo(old);
	MemoryContextReset(s->per_student);
	s->students++;
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
	state.per_student = AllocSetContextCreate(CurrentMemoryContext, "tutor mastery_all student",
											  ALLOCSET_DEFAULT_SIZES);
	filter.students_sql = students ? tutor_source_from_sql(students) : NULL;
	tutor_kt_scan(&state.model->source, &filter, mastery_all_student, &state, &stats);
	SPI_finish();
	return (Datum) 0;
}
