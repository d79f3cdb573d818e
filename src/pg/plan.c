/*
 * plan.c -- learning plans in SQL: tutor.generate_plan(),
 * tutor.personalize() and tutor.configure_plans().
 *
 * A request (plan_request) holds what every student of a call shares:
 * the model, the options, the plan's skills and items with their
 * prerequisites and goals, and each item's difficulty offset.  Per
 * student, the glue reads the answers up to as_of, asks the model for
 * P(correct) on every skill, shifts that by each item's offset, derives
 * memory from the answer times, and hands the problem to the core
 * planner (src/plan/tl_plan.c).  The steps come back as rows.
 */
#include "kt.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "options.h"
#include "tl_plan.h"
#include "tl_pool.h"
#include "tutor_llm.h"

PG_FUNCTION_INFO_V1(tutor_generate_plan);
PG_FUNCTION_INFO_V1(tutor_personalize);
PG_FUNCTION_INFO_V1(tutor_configure_plans);

/* Where an option may appear. */
#define OPT_CALL		0x1		/* generate_plan / personalize */
#define OPT_SETTING		0x2		/* configure_plans */
#define OPT_BATCH		0x4		/* personalize only */

static const struct
{
	const char *key;
	int			where;
}			plan_option_keys[] = {
	{"model", OPT_CALL},
	{"as_of", OPT_CALL},
	{"source", OPT_CALL | OPT_SETTING},
	{"columns", OPT_CALL | OPT_SETTING},
	{"items", OPT_CALL | OPT_SETTING},
	{"prerequisites", OPT_CALL | OPT_SETTING},
	{"goals", OPT_CALL | OPT_SETTING},
	{"budget_items", OPT_CALL | OPT_SETTING},
	{"budget_minutes", OPT_CALL | OPT_SETTING},
	{"horizon_days", OPT_CALL | OPT_SETTING},
	{"language", OPT_CALL | OPT_SETTING},
	{"items_per_step", OPT_CALL | OPT_SETTING},
	{"mastery_threshold", OPT_CALL | OPT_SETTING},
	{"assess_margin", OPT_CALL | OPT_SETTING},
	{"band_low", OPT_CALL | OPT_SETTING},
	{"band_high", OPT_CALL | OPT_SETTING},
	{"retention", OPT_CALL | OPT_SETTING},
	{"item_spacing_days", OPT_CALL | OPT_SETTING},
	{"learn_rate", OPT_CALL | OPT_SETTING},
	{"default_minutes", OPT_CALL | OPT_SETTING},
	{"max_students", OPT_BATCH},
	{"skip_planned_since", OPT_BATCH},
};

#define MAX_HORIZON_DAYS 365
#define MAX_BUDGET_ITEMS 1000
#define MAX_BUDGET_MINUTES (24 * 60)
#define PERSONALIZE_FLUSH_STUDENTS 2000

typedef enum plan_language
{
	LANG_EN,
	LANG_ZH
} plan_language;

/* Options after merging stored defaults, checked and typed. */
typedef struct plan_settings
{
	char	   *model;			/* NULL = the default model */
	bool		as_of_set;
	TimestampTz as_of;
	char	   *source;			/* NULL = the model's source */
	Jsonb	   *columns;
	char	   *items;			/* NULL = the model's items */
	char	   *prerequisites;	/* NULL = none */
	List	   *goal_skills;	/* skill ids as text */
	bool		deadline_set;
	TimestampTz deadline;
	plan_language language;
	float		default_minutes;
	tl_plan_options opt;
	int64		max_students;	/* 0 = all */
	bool		skip_set;
	TimestampTz skip_since;
} plan_settings;

/* What every student of one call shares. */
typedef struct plan_request
{
	plan_settings set;
	Jsonb	   *options;		/* the merged options, as stored with plans */
	tutor_kt_model *model;
	tutor_kt_source source;
	TimestampTz as_of;
	/* skills: plan index k has id skill_ids.strings[k + 1] */
	tutor_vocab skill_ids;
	int32		n_skills;
	int32	   *skill_model;	/* model skill index, 0 = unknown to the model */
	float	   *goal;
	int32	   *prereq_start;	/* n_skills + 1 */
	int32	   *prereq;
	/* items: plan index i has id item_ids.strings[i + 1] */
	tutor_vocab item_ids;
	int32		n_items;
	tl_plan_item *item_template;	/* skill, minutes, active */
	float	   *item_offset;	/* logit offset from the skill's typical item */
	/* per-student scratch */
	tl_kt_query *queries;		/* n_skills */
	tl_plan_skill *skills;		/* n_skills */
	tl_plan_item *items;		/* n_items */
	tl_kt	  **kts;			/* Transformer instances that predict: the model's own, */
	int			n_kts;			/* or one batch-sized copy per thread */
	tl_plan		plan;			/* its buffers live in cxt, reused per student */
	MemoryContext cxt;
	/* seconds spent, for personalize's report */
	double		predict_seconds;
	double		plan_seconds;
	double		write_seconds;
} plan_request;

/* ---- options -------------------------------------------------------------- */

static void
check_keys(Jsonb *options, int where, const char *what)
{
	const char *allowed[lengthof(plan_option_keys) + 1];
	int			n = 0;

	for (int i = 0; i < lengthof(plan_option_keys); i++)
		if (plan_option_keys[i].where & where)
			allowed[n++] = plan_option_keys[i].key;
	allowed[n] = NULL;
	tutor_options_check(options, allowed, what);
}

static TimestampTz
option_timestamptz(Jsonb *options, const char *key, bool *set)
{
	char	   *text = tutor_option_text(options, key, NULL);

	*set = text != NULL;
	if (!text)
		return 0;
	return DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(text),
												   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
}

/* A JSON scalar as text: strings as they are, numbers in their JSON form. */
static char *
json_scalar_text(JsonbValue *v, const char *what)
{
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s must hold skill ids (strings or numbers)", what)));
	return NULL;
}

/* goals: [skill, ...] or {"skills": [skill, ...], "deadline": "timestamptz"} */
static void
parse_goals(plan_settings *s, Jsonb *options)
{
	JsonbValue	buf;
	JsonbValue *v = tutor_option(options, "goals", &buf);
	JsonbValue *list = v;
	JsonbValue	list_buf;
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;

	if (!v)
		return;
	if (v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data))
	{
		Jsonb	   *obj = JsonbValueToJsonb(v);
		static const char *const goal_keys[] = {"skills", "deadline", NULL};

		tutor_options_check(obj, goal_keys, "goals");
		s->deadline = option_timestamptz(obj, "deadline", &s->deadline_set);
		list = tutor_option(obj, "skills", &list_buf);
		if (!list)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("goals needs \"skills\", an array of skill ids")));
	}
	if (list->type != jbvBinary || !JsonContainerIsArray(list->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("goals must be an array of skill ids, or an object with \"skills\" and \"deadline\"")));
	it = JsonbIteratorInit(list->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		if (tok == WJB_ELEM)
			s->goal_skills = lappend(s->goal_skills, json_scalar_text(&elem, "goals"));
}

/* Read and check every option of `options` (already merged). */
static void
parse_settings(plan_settings *s, Jsonb *options, int where)
{
	static const char *const languages[] = {"en", "zh", NULL};
	tl_plan_options *o = &s->opt;
	char	   *lang;

	memset(s, 0, sizeof(*s));
	check_keys(options, where, "plan option");
	tl_plan_default_options(o);
	s->model = tutor_option_text(options, "model", NULL);
	s->as_of = option_timestamptz(options, "as_of", &s->as_of_set);
	s->source = tutor_option_text(options, "source", NULL);
	s->columns = tutor_option_object(options, "columns");
	s->items = tutor_option_text(options, "items", NULL);
	s->prerequisites = tutor_option_text(options, "prerequisites", NULL);
	parse_goals(s, options);
	o->budget_items = (int32) tutor_option_int(options, "budget_items", o->budget_items, 0, MAX_BUDGET_ITEMS);
	o->budget_minutes = (float) tutor_option_float(options, "budget_minutes", 0.0, 0.0, MAX_BUDGET_MINUTES);
	/* a minute budget alone replaces the default item budget */
	if (o->budget_minutes > 0 && tutor_option(options, "budget_items", &(JsonbValue) {0}) == NULL)
		o->budget_items = 0;
	if (o->budget_items == 0 && o->budget_minutes == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a plan needs a daily budget: budget_items or budget_minutes above 0")));
	o->horizon_days = (int32) tutor_option_int(options, "horizon_days", o->horizon_days, 1, MAX_HORIZON_DAYS);
	lang = tutor_option_choice(options, "language", "en", languages);
	s->language = strcmp(lang, "zh") == 0 ? LANG_ZH : LANG_EN;
	o->items_per_step = (int32) tutor_option_int(options, "items_per_step", o->items_per_step, 1, 100);
	o->mastery = (float) tutor_option_float(options, "mastery_threshold", o->mastery, 0.5, 0.99);
	o->assess_margin = (float) tutor_option_float(options, "assess_margin", o->assess_margin, 0.0, 0.3);
	o->band_lo = (float) tutor_option_float(options, "band_low", o->band_lo, 0.05, 0.95);
	o->band_hi = (float) tutor_option_float(options, "band_high", o->band_hi, 0.05, 0.99);
	if (o->band_lo > o->band_hi)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("band_low (%g) must not be above band_high (%g)", o->band_lo, o->band_hi)));
	o->retention = (float) tutor_option_float(options, "retention", o->retention, 0.5, 0.99);
	o->item_spacing_days = (float) tutor_option_float(options, "item_spacing_days", o->item_spacing_days, 0.0, 365.0);
	o->learn_rate = (float) tutor_option_float(options, "learn_rate", o->learn_rate, 0.0, 2.0);
	s->default_minutes = (float) tutor_option_float(options, "default_minutes", 5.0, 0.1, 600.0);
	s->max_students = tutor_option_int(options, "max_students", 0, 0, INT32_MAX);
	s->skip_since = option_timestamptz(options, "skip_planned_since", &s->skip_set);
}

/* Stored defaults for model `name` ('*' first, then the model's), then the call's options. */
static Jsonb *
merge_settings(const char *name, Jsonb *options)
{
	Oid			types[2] = {TEXTOID, JSONBOID};
	Datum		values[2] = {CStringGetTextDatum(name), JsonbPGetDatum(options)};
	bool		isnull;

	if (SPI_execute_with_args("SELECT coalesce((SELECT options FROM tutor.plan_settings WHERE model_name = '*'), '{}')"
							  " || coalesce((SELECT options FROM tutor.plan_settings WHERE model_name = $1), '{}')"
							  " || $2",
							  2, types, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read tutor.plan_settings");
	return DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* ---- the request ---------------------------------------------------------- */

static int32
skill_index(plan_request *r, const char *id, bool add)
{
	int32		k = tutor_vocab_lookup(&r->skill_ids, id, strlen(id), add, "skill_id");

	return k - 1;				/* -1 = not a skill of the plan */
}

/* The column numbers of `names` in the result of SELECT * FROM from_sql; 0 = absent. */
static void
source_columns(const char *from_sql, const char *what, const char *const *names, int n, int *attno)
{
	char	   *sql = psprintf("SELECT * FROM %s AS src LIMIT 0", from_sql);

	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the %s source", what);
	for (int i = 0; i < n; i++)
	{
		attno[i] = SPI_fnumber(SPI_tuptable->tupdesc, names[i]);
		if (attno[i] <= 0)
			attno[i] = 0;
	}
	SPI_freetuptable(SPI_tuptable);
}

/* Items from options->items: columns item_id, skill_id, [minutes], [active]. */
static void
read_items(plan_request *r, List **skill_of, List **minutes, List **active)
{
	static const char *const names[] = {"item_id", "skill_id", "minutes", "active"};
	char	   *from = tutor_source_from_sql(r->set.items);
	int			attno[4];
	char	   *sql;
	Portal		portal;

	source_columns(from, "items", names, 4, attno);
	for (int i = 0; i < 2; i++)
		if (!attno[i])
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("the items source has no column \"%s\"", names[i]),
					 errhint("items is a table or query with columns item_id, skill_id and optionally minutes and active.")));
	sql = psprintf("SELECT i.item_id::text, i.skill_id::text, %s, %s FROM %s AS i ORDER BY 1",
				   attno[2] ? "i.minutes::float8" : "NULL::float8",
				   attno[3] ? "i.active::bool" : "NULL::bool", from);
	portal = SPI_cursor_open_with_args(NULL, sql, 0, NULL, NULL, NULL, true, CURSOR_OPT_NO_SCROLL);
	for (;;)
	{
		uint64		nrows;
		SPITupleTable *tab;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, 10000);
		nrows = SPI_processed;
		tab = SPI_tuptable;
		if (nrows == 0)
			break;
		for (uint64 row = 0; row < nrows; row++)
		{
			bool		null_item,
						null_skill,
						null_minutes,
						null_active;
			Datum		item = SPI_getbinval(tab->vals[row], tab->tupdesc, 1, &null_item);
			Datum		skill = SPI_getbinval(tab->vals[row], tab->tupdesc, 2, &null_skill);
			double		mins = DatumGetFloat8(SPI_getbinval(tab->vals[row], tab->tupdesc, 3, &null_minutes));
			bool		act = DatumGetBool(SPI_getbinval(tab->vals[row], tab->tupdesc, 4, &null_active));
			char	   *item_text;
			int32		before = r->item_ids.count;

			if (null_item || null_skill)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("the items source has a row with a NULL item_id or skill_id")));
			item_text = TextDatumGetCString(item);
			if (!null_minutes && !(mins > 0 && mins <= 600))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("item \"%s\" has minutes = %g; minutes must be in (0, 600]", item_text, mins)));
			tutor_vocab_lookup(&r->item_ids, item_text, strlen(item_text), true, "item_id");
			if (r->item_ids.count == before)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("item \"%s\" appears more than once in the items source", item_text)));
			*skill_of = lappend_int(*skill_of, skill_index(r, TextDatumGetCString(skill), true));
			*minutes = lappend(*minutes, null_minutes ? NULL : psprintf("%g", mins));
			*active = lappend_int(*active, null_active ? true : act);
		}
		SPI_freetuptable(tab);
	}
	SPI_cursor_close(portal);
}

/* The plan's skills and items: the model's, or options->items. */
static void
build_items(plan_request *r)
{
	tutor_kt_model *m = r->model;
	List	   *skill_of = NIL,
			   *minutes = NIL,
			   *active = NIL;

	tutor_vocab_init(&r->skill_ids, INT32_MAX / 2);
	tutor_vocab_init(&r->item_ids, INT32_MAX / 2);
	/* the model's skills first, in the model's order: plan skill k = model skill k + 1 */
	for (int32 s = 1; s < m->skills.count; s++)
		tutor_vocab_lookup(&r->skill_ids, m->skills.strings[s], m->skills.lengths[s], true, "skill_id");
	if (r->set.items)
		read_items(r, &skill_of, &minutes, &active);
	else
	{
		if (m->items.count <= 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("model \"%s\" was trained without item ids, so it knows no items to plan", m->name),
					 errhint("Pass options->'items', a table or query with columns item_id and skill_id.")));
		for (int32 i = 1; i < m->items.count; i++)
		{
			int32		s = m->skill_from_item ? i : m->item_skill[i];

			tutor_vocab_lookup(&r->item_ids, m->items.strings[i], m->items.lengths[i], true, "item_id");
			skill_of = lappend_int(skill_of, s - 1);	/* -1: an item of no known skill */
			minutes = lappend(minutes, NULL);
			active = lappend_int(active, s > 0);
		}
	}
	r->n_items = r->item_ids.count - 1;
	if (r->n_items == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("there are no items to plan")));
	r->item_template = palloc0(sizeof(tl_plan_item) * r->n_items);
	for (int32 i = 0; i < r->n_items; i++)
	{
		char	   *mins = list_nth(minutes, i);
		int32		s = list_nth_int(skill_of, i);

		r->item_template[i].skill = Max(s, 0);
		r->item_template[i].minutes = mins ? (float) strtod(mins, NULL) : r->set.default_minutes;
		r->item_template[i].active = list_nth_int(active, i) && s >= 0;
		r->item_template[i].last_seen = NAN;
	}
}

/* Prerequisites from options->prerequisites: columns skill_id, prerequisite_id. */
static void
build_prerequisites(plan_request *r)
{
	static const char *const names[] = {"skill_id", "prerequisite_id"};
	List	   *from_skill = NIL,
			   *to_skill = NIL;
	int32		cycle_skill = -1;

	if (r->set.prerequisites)
	{
		char	   *from = tutor_source_from_sql(r->set.prerequisites);
		int			attno[2];

		source_columns(from, "prerequisites", names, 2, attno);
		for (int i = 0; i < 2; i++)
			if (!attno[i])
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("the prerequisites source has no column \"%s\"", names[i]),
						 errhint("prerequisites is a table or query with columns skill_id and prerequisite_id.")));
		if (SPI_execute(psprintf("SELECT DISTINCT p.skill_id::text, p.prerequisite_id::text FROM %s AS p"
								 " WHERE p.skill_id IS NOT NULL AND p.prerequisite_id IS NOT NULL ORDER BY 1, 2",
								 from), true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read the prerequisites");
		for (uint64 row = 0; row < SPI_processed; row++)
		{
			/* a skill named only here has no items: it can block, never be practised */
			int32		a = skill_index(r, SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1), true);
			int32		b = skill_index(r, SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 2), true);

			from_skill = lappend_int(from_skill, a);
			to_skill = lappend_int(to_skill, b);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	r->n_skills = r->skill_ids.count - 1;
	r->prereq_start = palloc0(sizeof(int32) * (r->n_skills + 1));
	r->prereq = palloc(sizeof(int32) * Max(list_length(from_skill), 1));
	for (int i = 0; i < list_length(from_skill); i++)
		r->prereq_start[list_nth_int(from_skill, i) + 1]++;
	for (int32 s = 0; s < r->n_skills; s++)
		r->prereq_start[s + 1] += r->prereq_start[s];
	{
		int32	   *fill = palloc0(sizeof(int32) * Max(r->n_skills, 1));

		for (int i = 0; i < list_length(from_skill); i++)
		{
			int32		s = list_nth_int(from_skill, i);

			r->prereq[r->prereq_start[s] + fill[s]++] = list_nth_int(to_skill, i);
		}
	}
	if (tl_plan_check_prerequisites(r->n_skills, r->prereq_start, r->prereq, &cycle_skill) != TL_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the prerequisites form a cycle through skill \"%s\"",
						cycle_skill >= 0 ? r->skill_ids.strings[cycle_skill + 1] : "?")));
}

static void
build_goals(plan_request *r)
{
	ListCell   *lc;

	r->goal = palloc0(sizeof(float) * Max(r->n_skills, 1));
	foreach(lc, r->set.goal_skills)
	{
		const char *id = lfirst(lc);
		int32		k = skill_index(r, id, false);

		if (k < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("goal skill \"%s\" is not a skill of the model, the items or the prerequisites", id)));
		r->goal[k] = 1.0f;
	}
	if (r->set.deadline_set)
	{
		double		days = (double) (r->set.deadline - r->as_of) / USECS_PER_DAY;

		if (days <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the goals' deadline is not after as_of")));
		/* plan no further than the deadline */
		r->set.opt.horizon_days = Min(r->set.opt.horizon_days, (int32) ceil(days));
	}
}

static float
logit(float p)
{
	p = Min(Max(p, 1e-4f), 1.0f - 1e-4f);
	return logf(p / (1.0f - p));
}

static float
sigmoid(float x)
{
	return 1.0f / (1.0f + expf(-x));
}

/*
 * Item difficulty, estimated by the model: how much more (or less) likely
 * a new student is to answer this item than a typical item of its skill,
 * on the logit scale.  Per student, P(item) = sigmoid(logit(mastery of the
 * skill) + offset); exact for the Rasch-like item terms of both models,
 * an approximation of the Transformer's item-question interaction.
 */
static void
build_item_offsets(plan_request *r)
{
	tutor_kt_model *m = r->model;
	tutor_kt_history empty;
	tl_kt_query *q = palloc(sizeof(tl_kt_query) * 2 * r->n_items);
	float	   *p = palloc(sizeof(float) * 2 * r->n_items);
	int64	   *first = palloc(sizeof(int64) * r->n_items);	/* item i's two questions, or -1 */
	int64		nq = 0;

	r->item_offset = palloc0(sizeof(float) * r->n_items);
	tutor_kt_history_init(&empty, m);
	for (int32 i = 0; i < r->n_items; i++)
	{
		const char *id = r->item_ids.strings[i + 1];
		int32		mi = m->items.count > 1 ? tutor_vocab_lookup(&m->items, id, strlen(id), false, "item_id") : 0;
		int32		ms = r->skill_model[r->item_template[i].skill];

		first[i] = -1;
		if (mi <= 0 || ms <= 0)
			continue;			/* unknown to the model: a typical item of its skill */
		first[i] = nq;
		q[nq++] = (tl_kt_query) {mi, ms};
		q[nq++] = (tl_kt_query) {m->skill_from_item ? ms : -1, ms};
	}
	if (nq > 0)
		tutor_kt_predict(m, &empty, q, nq, p);
	for (int32 i = 0; i < r->n_items; i++)
		if (first[i] >= 0)
			r->item_offset[i] = logit(p[first[i]]) - logit(p[first[i] + 1]);
}

/* Everything a call shares; SPI is connected. */
static void
plan_request_init(plan_request *r, Jsonb *call_options, int where)
{
	plan_settings first;

	memset(r, 0, sizeof(*r));
	r->cxt = CurrentMemoryContext;
	/* the model first: its name selects the stored defaults */
	parse_settings(&first, call_options, where);
	r->model = tutor_kt_load(first.model);
	r->options = merge_settings(r->model->name, call_options);
	parse_settings(&r->set, r->options, where);
	r->as_of = r->set.as_of_set ? r->set.as_of : GetCurrentTransactionStartTimestamp();
	/* due dates run to as_of + horizon_days: keep them inside the timestamp range */
	if (TIMESTAMP_NOT_FINITE(r->as_of) ||
		!IS_VALID_TIMESTAMP(r->as_of + (int64) r->set.opt.horizon_days * USECS_PER_DAY))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("as_of must be a finite time, with room for horizon_days after it")));
	if (r->set.deadline_set && TIMESTAMP_NOT_FINITE(r->set.deadline))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("the goals' deadline must be a finite time")));
	if (r->set.source)
		tutor_kt_source_resolve(&r->source, r->set.source, r->set.columns);
	else
		r->source = r->model->source;
	if (!r->source.time_is_timestamp && r->set.as_of_set)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("as_of needs a source whose answered_at column is a date or time")));
	build_items(r);
	build_prerequisites(r);
	r->skill_model = palloc0(sizeof(int32) * Max(r->n_skills, 1));
	for (int32 k = 0; k < r->n_skills; k++)
		r->skill_model[k] = k + 1 < r->model->skills.count ? k + 1 : 0;
	build_goals(r);
	build_item_offsets(r);
	r->set.opt.today = (double) r->as_of / USECS_PER_DAY;

	r->queries = palloc(sizeof(tl_kt_query) * Max(r->n_skills, 1));
	for (int32 k = 0; k < r->n_skills; k++)
	{
		int32		ms = r->skill_model[k];

		/* a skill the model never saw gets its prediction for an unknown skill */
		r->queries[k] = (tl_kt_query) {r->model->skill_from_item && ms > 0 ? ms : -1, ms};
	}
	r->skills = palloc0(sizeof(tl_plan_skill) * Max(r->n_skills, 1));
	r->kts = palloc(sizeof(tl_kt *));
	r->kts[0] = &r->model->kt;
	r->n_kts = 1;
	r->items = palloc0(sizeof(tl_plan_item) * r->n_items);
	tl_plan_init(&r->plan);
}

/*
 * Students waiting for their predictions.  Plans are made a batch at a
 * time so the model sees many histories in one pass (large matrix
 * products); generate_plan is a batch of one.
 */
typedef struct plan_batch
{
	int32		n;				/* students */
	int32		cap;
	char	  **ids;			/* cap */
	int64	   *offsets;		/* cap + 1: answers of student b */
	int64	   *seen_offsets;	/* cap + 1: item sightings of student b */
	tl_plan_skill *state;		/* cap * n_skills: attempts and memory */
	int64		n_answers,
				cap_answers;
	int32	   *items;			/* model indexes of every answer */
	int32	   *skills;
	float	   *correct;
	int64		n_seen,
				cap_seen;
	int32	   *seen_item;		/* plan item index */
	double	   *seen_day;
	float	   *probs;			/* cap * n_skills */
	MemoryContext cxt;			/* all of the above */
} plan_batch;

#define PLAN_BATCH_STUDENTS 256

static void
batch_init(plan_batch *bt, const plan_request *r, int32 cap)
{
	MemoryContext old;

	memset(bt, 0, sizeof(*bt));
	bt->cxt = AllocSetContextCreate(CurrentMemoryContext, "tutor plan batch", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(bt->cxt);
	bt->cap = cap;
	bt->ids = palloc(sizeof(char *) * cap);
	bt->offsets = palloc(sizeof(int64) * (cap + 1));
	bt->seen_offsets = palloc(sizeof(int64) * (cap + 1));
	bt->state = palloc(sizeof(tl_plan_skill) * cap * Max(r->n_skills, 1));
	bt->probs = palloc(sizeof(float) * cap * Max(r->n_skills, 1));
	bt->cap_answers = bt->cap_seen = 1024;
	bt->items = palloc(sizeof(int32) * bt->cap_answers);
	bt->skills = palloc(sizeof(int32) * bt->cap_answers);
	bt->correct = palloc(sizeof(float) * bt->cap_answers);
	bt->seen_item = palloc(sizeof(int32) * bt->cap_seen);
	bt->seen_day = palloc(sizeof(double) * bt->cap_seen);
	bt->offsets[0] = bt->seen_offsets[0] = 0;
	MemoryContextSwitchTo(old);
}

/* Room for `more` answers and sightings. */
static void
batch_reserve(plan_batch *bt, int64 more)
{
	if (bt->n_answers + more > bt->cap_answers)
	{
		bt->cap_answers = Max(bt->cap_answers * 2, bt->n_answers + more);
		bt->items = repalloc_huge(bt->items, sizeof(int32) * bt->cap_answers);
		bt->skills = repalloc_huge(bt->skills, sizeof(int32) * bt->cap_answers);
		bt->correct = repalloc_huge(bt->correct, sizeof(float) * bt->cap_answers);
	}
	if (bt->n_seen + more > bt->cap_seen)
	{
		bt->cap_seen = Max(bt->cap_seen * 2, bt->n_seen + more);
		bt->seen_item = repalloc_huge(bt->seen_item, sizeof(int32) * bt->cap_seen);
		bt->seen_day = repalloc_huge(bt->seen_day, sizeof(double) * bt->cap_seen);
	}
}

/*
 * Queue one student: answers st (NULL: a student without answers) as
 * model indexes, attempts and memory per plan skill, item sightings.
 */
static void
batch_add(plan_request *r, plan_batch *bt, const char *id, const tutor_kt_student *st)
{
	tutor_kt_model *m = r->model;
	MemoryContext old = MemoryContextSwitchTo(bt->cxt);
	tl_plan_skill *state = bt->state + (int64) bt->n * r->n_skills;
	int32		n = st ? st->n : 0;

	Assert(bt->n < bt->cap);
	bt->ids[bt->n] = pstrdup(id);
	batch_reserve(bt, n);
	if (n > 0)
	{
		tutor_kt_history h;

		tutor_kt_history_init(&h, m);
		tutor_kt_history_load(st, &h);
		memcpy(bt->items + bt->n_answers, h.items, sizeof(int32) * n);
		memcpy(bt->skills + bt->n_answers, h.skills, sizeof(int32) * n);
		memcpy(bt->correct + bt->n_answers, h.correct, sizeof(float) * n);
		bt->n_answers += n;
	}
	for (int32 k = 0; k < r->n_skills; k++)
		state[k] = (tl_plan_skill) {0.0f, 0, {0.0f, 0.0}, r->goal[k]};
	/* attempts and memory per skill, last sight per item, oldest answer first */
	for (int32 a = 0; a < n; a++)
	{
		const char *skill = m->skill_from_item ? st->item_ids[a] : st->skill_ids[a];
		int32		k = skill ? skill_index(r, skill, false) : -1;
		bool		timed = st->time && !st->time_null[a];
		double		day = timed ? (double) st->time[a] / USECS_PER_DAY : 0.0;

		if (k >= 0)
		{
			state[k].attempts++;
			if (timed)
				tl_memory_update(&state[k].memory, day, st->correct[a]);
		}
		if (timed && st->item_ids[a])
		{
			int32		i = tutor_vocab_lookup(&r->item_ids, st->item_ids[a], strlen(st->item_ids[a]),
											   false, "item_id") - 1;

			if (i >= 0)
			{
				bt->seen_item[bt->n_seen] = i;
				bt->seen_day[bt->n_seen++] = day;
			}
		}
	}
	bt->n++;
	bt->offsets[bt->n] = bt->n_answers;
	bt->seen_offsets[bt->n] = bt->n_seen;
	MemoryContextSwitchTo(old);
}

/* P(correct) on every plan skill for every queued student. */
static void
batch_predict(plan_request *r, plan_batch *bt)
{
	tutor_kt_model *m = r->model;

	if (m->kind == KT_KIND_TRANSFORMER)
	{
		MemoryContext old = MemoryContextSwitchTo(bt->cxt);

		TUTOR_CHECK(tl_kt_predict_many(r->kts, r->n_kts, bt->n, bt->offsets, bt->items, bt->skills,
									   bt->correct, r->queries, r->n_skills, m->skill_mu_avg,
									   m->skill_bias_avg, bt->probs),
					"knowledge-tracing prediction");
		MemoryContextSwitchTo(old);
		return;
	}
	for (int32 b = 0; b < bt->n; b++)
	{
		tutor_kt_history h;

		tutor_kt_history_init(&h, m);
		h.n = (int32) (bt->offsets[b + 1] - bt->offsets[b]);
		h.items = bt->items + bt->offsets[b];
		h.skills = bt->skills + bt->offsets[b];
		h.correct = bt->correct + bt->offsets[b];
		tutor_kt_predict(m, &h, r->queries, r->n_skills, bt->probs + (int64) b * r->n_skills);
	}
}

typedef void (*plan_sink) (plan_request *r, const char *student, void *arg);

/* Predict, plan and hand every queued student's plan (in r->plan) to sink; empty the batch. */
static void
batch_plan(plan_request *r, plan_batch *bt, plan_sink sink, void *arg)
{
	instr_time	start;

	if (bt->n == 0)
		return;
	INSTR_TIME_SET_CURRENT(start);
	batch_predict(r, bt);
	r->predict_seconds += tutor_seconds_since(start);
	for (int32 b = 0; b < bt->n; b++)
	{
		const float *probs = bt->probs + (int64) b * r->n_skills;
		tl_plan_problem problem;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		memcpy(r->skills, bt->state + (int64) b * r->n_skills, sizeof(tl_plan_skill) * r->n_skills);
		for (int32 k = 0; k < r->n_skills; k++)
			r->skills[k].mastery = probs[k];
		memcpy(r->items, r->item_template, sizeof(tl_plan_item) * r->n_items);
		for (int32 i = 0; i < r->n_items; i++)
			r->items[i].p = sigmoid(logit(probs[r->items[i].skill]) + r->item_offset[i]);
		for (int64 j = bt->seen_offsets[b]; j < bt->seen_offsets[b + 1]; j++)
			r->items[bt->seen_item[j]].last_seen = bt->seen_day[j];

		problem.n_skills = r->n_skills;
		problem.skills = r->skills;
		problem.n_items = r->n_items;
		problem.items = r->items;
		problem.prereq_start = r->prereq_start;
		problem.prereq = r->prereq;
		problem.opt = r->set.opt;
		/* the plan's buffers are reused for every student: they live with the request */
		old = MemoryContextSwitchTo(r->cxt);
		INSTR_TIME_SET_CURRENT(start);
		TUTOR_CHECK(tl_plan_make(&problem, &r->plan), "planning");
		r->plan_seconds += tutor_seconds_since(start);
		MemoryContextSwitchTo(old);
		sink(r, bt->ids[b], arg);
	}
	/* empty the batch, keep its arrays */
	bt->n = 0;
	bt->n_answers = bt->n_seen = 0;
}

/* ---- steps as rows -------------------------------------------------------- */

static const char *const activity_names[] = {"learn", "practice", "review", "assess"};

static const char *
skill_text(const plan_request *r, int32 k)
{
	return r->skill_ids.strings[k + 1];
}

/* The step's reason, one sentence in the request's language. */
static char *
reason_text(const plan_request *r, const tl_plan_step *s)
{
	const char *skill = skill_text(r, s->skill);
	const char *about = skill_text(r, s->about);
	bool		zh = r->set.language == LANG_ZH;

	switch (s->reason)
	{
		case TL_REASON_GOAL:
			return zh ? psprintf("技能 %s 是学习目标；当前预测正确率 %.2f", skill, s->value)
				: psprintf("skill %s is a goal; predicted %.2f now", skill, s->value);
		case TL_REASON_PREREQUISITE:
			return zh ? psprintf("技能 %s 是目标 %s 的先修；当前预测正确率 %.2f", skill, about, s->value)
				: psprintf("prerequisite for skill %s; predicted %.2f now", about, s->value);
		case TL_REASON_START:
			return zh ? psprintf("起步：技能 %s 不需要先修；预测正确率 %.2f", skill, s->value)
				: psprintf("a first step: skill %s needs no prerequisite; predicted %.2f", skill, s->value);
		case TL_REASON_REVIEW:
			return zh ? psprintf("复习技能 %s，以免遗忘：届时预测记忆保持率 %.2f", skill, s->value)
				: psprintf("review skill %s before it fades: recall predicted %.2f by then", skill, s->value);
		case TL_REASON_NEAR_MASTERY:
			return zh ? psprintf("技能 %s 已接近或达到掌握（%.2f，阈值 %.2f）：做一次测评", skill, s->value, r->set.opt.mastery)
				: psprintf("skill %s is at or near mastery (%.2f, threshold %.2f): assess it", skill, s->value, r->set.opt.mastery);
		case TL_REASON_CONFIRM:
			return zh ? psprintf("技能 %s 看来已掌握（%.2f）：确认一下", skill, s->value)
				: psprintf("skill %s looks mastered (%.2f): confirm it", skill, s->value);
	}
	return pstrdup("");
}

static TimestampTz
step_due(const plan_request *r, const tl_plan_step *s)
{
	return r->as_of + (TimestampTz) s->day * USECS_PER_DAY;
}

static int32
step_minutes(const tl_plan_step *s)
{
	return (int32) ceilf(s->minutes - 1e-4f);
}

/* Context for errors while converting ids to the caller's type. */
typedef struct convert_context
{
	const char *id;
	Oid			type;
} convert_context;

static void
convert_error_callback(void *arg)
{
	convert_context *c = arg;

	errcontext("converting id \"%s\" to %s (pass student_id::text to get text ids)",
			   c->id, format_type_be(c->type));
}

/* generate_plan's output: rows into a tuplestore, ids in the caller's type. */
typedef struct plan_emitter
{
	plan_request *r;
	ReturnSetInfo *rsinfo;
	Oid			id_type;
	FmgrInfo	input;
	Oid			ioparam;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	plan_batch *batch;
} plan_emitter;

static Datum
id_datum(plan_emitter *e, const char *id)
{
	convert_context conv = {id, e->id_type};
	ErrorContextCallback errcb = {error_context_stack, convert_error_callback, &conv};
	Datum		d;

	error_context_stack = &errcb;
	d = InputFunctionCall(&e->input, (char *) id, e->ioparam, -1);
	error_context_stack = errcb.previous;
	return d;
}

static void
emit_plan(plan_emitter *e)
{
	plan_request *r = e->r;

	for (int32 i = 0; i < r->plan.n_steps; i++)
	{
		const tl_plan_step *s = &r->plan.steps[i];
		Datum	   *items = palloc(sizeof(Datum) * s->n_items);
		Datum		values[8];
		bool		nulls[8] = {0};

		for (int32 j = 0; j < s->n_items; j++)
			items[j] = id_datum(e, r->item_ids.strings[r->plan.items[s->first_item + j] + 1]);
		values[0] = Int32GetDatum(i + 1);
		values[1] = CStringGetTextDatum(activity_names[s->activity]);
		values[2] = id_datum(e, skill_text(r, s->skill));
		values[3] = PointerGetDatum(construct_array(items, s->n_items, e->id_type,
													e->typlen, e->typbyval, e->typalign));
		values[4] = Float8GetDatum((double) s->expected_p);
		values[5] = TimestampTzGetDatum(step_due(r, s));
		values[6] = Int32GetDatum(step_minutes(s));
		values[7] = CStringGetTextDatum(reason_text(r, s));
		tuplestore_putvalues(e->rsinfo->setResult, e->rsinfo->setDesc, values, nulls);
	}
}

static void
emit_sink(plan_request *r, const char *student, void *arg)
{
	emit_plan((plan_emitter *) arg);
}

static void
generate_plan_student(const tutor_kt_student *st, void *arg)
{
	plan_emitter *e = arg;

	batch_add(e->r, e->batch, st->id, st);
}

/* tutor.generate_plan(student_id anyelement, options jsonb) */
Datum
tutor_generate_plan(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			id_type = get_fn_expr_argtype(fcinfo->flinfo, 0);
	plan_request r;
	plan_emitter e = {0};
	plan_batch	bt;
	tutor_kt_filter filter = {0};
	tutor_kt_scan_stats stats;
	Oid			input_fn;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("student_id and options must not be NULL")));
	if (!OidIsValid(id_type))
		elog(ERROR, "could not determine the type of student_id");
	tutor_begin_compute();
	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	plan_request_init(&r, PG_GETARG_JSONB_P(1), OPT_CALL);

	e.r = &r;
	e.rsinfo = rsinfo;
	/* the result's id type, as resolved from student_id (unknown literals become text) */
	e.id_type = TupleDescAttr(rsinfo->setDesc, 2)->atttypid;
	getTypeInputInfo(e.id_type, &input_fn, &e.ioparam);
	fmgr_info(input_fn, &e.input);
	get_typlenbyvalalign(e.id_type, &e.typlen, &e.typbyval, &e.typalign);

	batch_init(&bt, &r, 1);
	e.batch = &bt;
	filter.student_type = r.source.type[KT_COL_STUDENT];
	filter.student = tutor_convert_datum(PG_GETARG_DATUM(0), id_type, filter.student_type);
	filter.until_set = r.source.time_is_timestamp;
	filter.until = r.as_of;
	tutor_kt_scan(&r.source, &filter, generate_plan_student, &e, &stats);
	if (bt.n == 0)
		batch_add(&r, &bt, "", NULL);	/* no answers (new, or none before as_of): cold start */
	batch_plan(&r, &bt, emit_sink, &e);
	tl_plan_free(&r.plan);
	SPI_finish();
	return (Datum) 0;
}

/* ---- tutor.personalize ---------------------------------------------------- */

/* personalize's writer: plans accumulate per chunk, then one INSERT ... SELECT unnest(...). */
typedef struct plan_writer
{
	plan_request *r;
	SPIPlanPtr	insert;
	DateADT		plan_date;
	MemoryContext chunk_cxt;	/* the chunk's arrays */
	plan_batch	batch;			/* students waiting for predictions */
	tutor_vocab planned;		/* students seen in the source */
	/* the chunk */
	int32		n_plans;
	Datum	   *plan_student;	/* PERSONALIZE_FLUSH_STUDENTS */
	int64		n_steps;
	int64		cap_steps;
	Datum	   *col[9];			/* per step: student, step, activity, skill, items, p, due, minutes, reason */
	/* totals */
	int64		students;
	int64		cold_start;
	int64		steps;
} plan_writer;

static const Oid step_col_types[9] = {TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, FLOAT8OID,
TIMESTAMPTZOID, INT4OID, TEXTOID};

static void
writer_reset_chunk(plan_writer *w)
{
	MemoryContext old;

	MemoryContextReset(w->chunk_cxt);
	old = MemoryContextSwitchTo(w->chunk_cxt);
	w->n_plans = 0;
	w->n_steps = 0;
	w->cap_steps = 16 * PERSONALIZE_FLUSH_STUDENTS;
	w->plan_student = palloc(sizeof(Datum) * PERSONALIZE_FLUSH_STUDENTS);
	for (int c = 0; c < 9; c++)
		w->col[c] = palloc(sizeof(Datum) * w->cap_steps);
	MemoryContextSwitchTo(old);
}

/* An array literal of the step's item ids: {"a","b"} with quotes escaped. */
static char *
items_literal(const plan_request *r, const tl_plan_step *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int32 j = 0; j < s->n_items; j++)
	{
		const char *id = r->item_ids.strings[r->plan.items[s->first_item + j] + 1];

		if (j > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfoChar(&buf, '"');
		for (const char *c = id; *c; c++)
		{
			if (*c == '"' || *c == '\\')
				appendStringInfoChar(&buf, '\\');
			appendStringInfoChar(&buf, *c);
		}
		appendStringInfoChar(&buf, '"');
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

static ArrayType *
datum_array(Datum *values, int64 n, Oid type)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return construct_array(values, (int) n, type, typlen, typbyval, typalign);
}

static void
writer_flush(plan_writer *w)
{
	plan_request *r = w->r;
	Datum		values[15];
	MemoryContext old;

	instr_time	start;

	if (w->n_plans == 0)
		return;
	INSTR_TIME_SET_CURRENT(start);
	old = MemoryContextSwitchTo(w->chunk_cxt);
	values[0] = PointerGetDatum(datum_array(w->plan_student, w->n_plans, TEXTOID));
	values[1] = DateADTGetDatum(w->plan_date);
	values[2] = TimestampTzGetDatum(r->as_of);
	values[3] = CStringGetTextDatum(r->model->name);
	values[4] = Int32GetDatum(r->model->version);
	values[5] = JsonbPGetDatum(r->options);
	for (int c = 0; c < 9; c++)
		values[6 + c] = PointerGetDatum(datum_array(w->col[c], w->n_steps, step_col_types[c]));
	MemoryContextSwitchTo(old);
	if (SPI_execute_plan(w->insert, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write the plans");
	w->steps += SPI_processed;
	writer_reset_chunk(w);
	r->write_seconds += tutor_seconds_since(start);
}

/* Add r->plan, the plan of `student`, to the chunk. */
static void
writer_add(plan_writer *w, const char *student)
{
	plan_request *r = w->r;
	MemoryContext old = MemoryContextSwitchTo(w->chunk_cxt);

	if (w->n_steps + r->plan.n_steps > w->cap_steps)
	{
		w->cap_steps = Max(w->cap_steps * 2, w->n_steps + r->plan.n_steps);
		for (int c = 0; c < 9; c++)
			w->col[c] = repalloc_huge(w->col[c], sizeof(Datum) * w->cap_steps);
	}
	w->plan_student[w->n_plans++] = CStringGetTextDatum(student);
	for (int32 i = 0; i < r->plan.n_steps; i++)
	{
		const tl_plan_step *s = &r->plan.steps[i];
		int64		k = w->n_steps++;

		w->col[0][k] = w->plan_student[w->n_plans - 1];
		w->col[1][k] = Int32GetDatum(i + 1);
		w->col[2][k] = CStringGetTextDatum(activity_names[s->activity]);
		w->col[3][k] = CStringGetTextDatum(skill_text(r, s->skill));
		w->col[4][k] = CStringGetTextDatum(items_literal(r, s));
		w->col[5][k] = Float8GetDatum((double) s->expected_p);
		w->col[6][k] = TimestampTzGetDatum(step_due(r, s));
		w->col[7][k] = Int32GetDatum(step_minutes(s));
		w->col[8][k] = CStringGetTextDatum(reason_text(r, s));
	}
	MemoryContextSwitchTo(old);
	w->students++;
	if (w->n_plans == PERSONALIZE_FLUSH_STUDENTS)
		writer_flush(w);
	if (w->students % 1000 == 0)
		tutor_progress_scan(0, w->students, w->steps + w->n_steps);
}

static void
writer_sink(plan_request *r, const char *student, void *arg)
{
	writer_add((plan_writer *) arg, student);
}

/* Queue a student; plan the batch when it is full. */
static void
personalize_queue(plan_writer *w, const char *id, const tutor_kt_student *st)
{
	CHECK_FOR_INTERRUPTS();
	batch_add(w->r, &w->batch, id, st);
	if (w->batch.n == w->batch.cap)
		batch_plan(w->r, &w->batch, writer_sink, w);
}

static void
personalize_student(const tutor_kt_student *st, void *arg)
{
	plan_writer *w = arg;
	MemoryContext old;

	/* the set of students seen outlives every per-row context */
	old = MemoryContextSwitchTo(w->r->cxt);
	tutor_vocab_lookup(&w->planned, st->id, strlen(st->id), true, "student_id");
	MemoryContextSwitchTo(old);
	personalize_queue(w, st->id, st);
}

static const char *const insert_plans_sql =
"WITH p AS ("
" INSERT INTO tutor.plans (student_id, plan_date, as_of, model_name, model_version, options)"
" SELECT u.s, $2, $3, $4, $5, $6 FROM unnest($1) AS u(s)"
" RETURNING plan_id, student_id)"
" INSERT INTO tutor.plan_steps (plan_id, step, activity, skill_id, item_ids, expected_p_correct, due, minutes, reason)"
" SELECT p.plan_id, u.step, u.activity, u.skill, u.items::text[], u.p, u.due, u.minutes, u.reason"
" FROM unnest($7, $8, $9, $10, $11, $12, $13, $14, $15)"
"  AS u(student, step, activity, skill, items, p, due, minutes, reason)"
" JOIN p ON p.student_id = u.student";

/* The students of a personalize call, as text, in id order. */
static ArrayType *
personalize_students(plan_request *r, const char *students, DateADT plan_date, int *count)
{
	StringInfoData sql;
	Oid			types[2] = {DATEOID, TIMESTAMPTZOID};
	Datum		values[2] = {DateADTGetDatum(plan_date), TimestampTzGetDatum(r->set.skip_since)};
	Datum	   *ids;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT DISTINCT st.x::text FROM %s AS st(x) WHERE st.x IS NOT NULL",
					 tutor_source_from_sql(students));
	if (r->set.skip_set)
		appendStringInfoString(&sql, " AND NOT EXISTS (SELECT 1 FROM tutor.plans p WHERE p.plan_date = $1"
							   " AND p.student_id = st.x::text AND p.created_at >= $2)");
	appendStringInfoString(&sql, " ORDER BY 1");
	if (r->set.max_students > 0)
		appendStringInfo(&sql, " LIMIT " INT64_FORMAT, r->set.max_students);
	if (SPI_execute_with_args(sql.data, 2, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the students");
	*count = (int) SPI_processed;
	ids = palloc(sizeof(Datum) * Max(*count, 1));
	for (int i = 0; i < *count; i++)
	{
		bool		isnull;

		ids[i] = PointerGetDatum(PG_DETOAST_DATUM_COPY(SPI_getbinval(SPI_tuptable->vals[i],
																	 SPI_tuptable->tupdesc, 1, &isnull)));
	}
	SPI_freetuptable(SPI_tuptable);
	return datum_array(ids, *count, TEXTOID);
}


/* tutor.personalize(students text, options jsonb) */
Datum
tutor_personalize(PG_FUNCTION_ARGS)
{
	plan_request r;
	plan_writer w = {0};
	tutor_kt_filter filter = {0};
	tutor_kt_scan_stats stats = {0};
	ArrayType  *ids;
	int			n_ids;
	int64		replaced;
	instr_time	start,
				elapsed;
	double		seconds;
	Oid			insert_types[15] = {TEXTARRAYOID, DATEOID, TIMESTAMPTZOID, TEXTOID, INT4OID, JSONBOID,
		TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID,
	TIMESTAMPTZARRAYOID, INT4ARRAYOID, TEXTARRAYOID};
	StringInfoData report;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("students and options must not be NULL")));
	INSTR_TIME_SET_CURRENT(start);
	tutor_begin_compute();
	SPI_connect();
	plan_request_init(&r, PG_GETARG_JSONB_P(1), OPT_CALL | OPT_BATCH);
	w.r = &r;
	w.plan_date = DatumGetDateADT(DirectFunctionCall1(timestamptz_date, TimestampTzGetDatum(r.as_of)));

	/* one run per day at a time: two runs for the same students would collide */
	if (SPI_execute(psprintf("SELECT pg_advisory_xact_lock(%d, %d)", (int) 0x7475746f, (int) w.plan_date),
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not lock the plan day");
	ids = personalize_students(&r, text_to_cstring(PG_GETARG_TEXT_PP(0)), w.plan_date, &n_ids);

	/* today's earlier plans of these students are replaced, never duplicated */
	{
		Oid			types[2] = {DATEOID, TEXTARRAYOID};
		Datum		values[2] = {DateADTGetDatum(w.plan_date), PointerGetDatum(ids)};

		bool		isnull;

		/* steps by plan_id = ANY (array): an index scan, never a pass over every stored step */
		if (SPI_execute_with_args("WITH gone AS (DELETE FROM tutor.plans WHERE plan_date = $1 AND student_id = ANY ($2)"
								  " RETURNING plan_id),"
								  " steps AS (DELETE FROM tutor.plan_steps WHERE plan_id = ANY (ARRAY(SELECT plan_id FROM gone)))"
								  " SELECT count(*) FROM gone",
								  2, types, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not replace earlier plans");
		replaced = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}

	w.insert = SPI_prepare(insert_plans_sql, 15, insert_types);
	if (!w.insert)
		elog(ERROR, "could not prepare the plan insert: %s", SPI_result_code_string(SPI_result));
	w.chunk_cxt = AllocSetContextCreate(CurrentMemoryContext, "tutor plans chunk", ALLOCSET_DEFAULT_SIZES);
	tutor_vocab_init(&w.planned, INT32_MAX / 2);
	writer_reset_chunk(&w);
	batch_init(&w.batch, &r, PLAN_BATCH_STUDENTS);
	if (r.model->kind == KT_KIND_TRANSFORMER)
		r.kts = tutor_kt_batch_instances(r.model, &r.n_kts);

	tutor_progress_begin(r.model->name, "personalize");
	PG_TRY();
	{
		tutor_progress_phase("planning");
		if (n_ids > 0)
		{
			filter.students = ids;
			filter.until_set = r.source.time_is_timestamp;
			filter.until = r.as_of;
			tutor_kt_scan(&r.source, &filter, personalize_student, &w, &stats);
		}
		/* students without answers (yet): cold-start plans */
		if (n_ids > 0)
		{
			Datum	   *id_datums;
			int			n;

			deconstruct_array(ids, TEXTOID, -1, false, TYPALIGN_INT, &id_datums, NULL, &n);
			for (int i = 0; i < n; i++)
			{
				char	   *id = TextDatumGetCString(id_datums[i]);

				if (tutor_vocab_lookup(&w.planned, id, strlen(id), false, "student_id") > 0)
					continue;
				personalize_queue(&w, id, NULL);
				w.cold_start++;
			}
		}
		batch_plan(&r, &w.batch, writer_sink, &w);
		writer_flush(&w);
		tutor_progress_scan(stats.rows_read, w.students, w.steps);
	}
	PG_FINALLY();
	{
		tutor_progress_end();
	}
	PG_END_TRY();
	tl_plan_free(&r.plan);
	tutor_kt_batch_instances_free(r.model, r.kts, r.n_kts);

	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, start);
	seconds = INSTR_TIME_GET_DOUBLE(elapsed);
	initStringInfo(&report);
	appendStringInfo(&report,
					 "{\"students\": " INT64_FORMAT ", \"cold_start\": " INT64_FORMAT
					 ", \"steps\": " INT64_FORMAT ", \"replaced\": " INT64_FORMAT
					 ", \"answers_read\": " INT64_FORMAT ", \"plan_date\": \"%s\""
					 ", \"model\": %s, \"model_version\": %d"
					 ", \"seconds\": %.3f, \"students_per_second\": %.1f"
					 ", \"predict_seconds\": %.3f, \"plan_seconds\": %.3f, \"write_seconds\": %.3f}",
					 w.students, w.cold_start, w.steps, replaced, stats.rows_read - stats.rows_skipped,
					 DatumGetCString(DirectFunctionCall1(date_out, DateADTGetDatum(w.plan_date))),
					 tutor_json_string(r.model->name), r.model->version,
					 seconds, seconds > 0 ? w.students / seconds : 0.0,
					 r.predict_seconds, r.plan_seconds, r.write_seconds);
	SPI_finish();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(report.data)));
}

/* tutor.configure_plans(options jsonb, model_name text) */
Datum
tutor_configure_plans(PG_FUNCTION_ARGS)
{
	Jsonb	   *options;
	char	   *name = PG_ARGISNULL(1) ? "*" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	plan_settings set;
	Oid			types[2] = {TEXTOID, JSONBOID};
	Datum		values[2];
	bool		isnull;
	Datum		result;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("options must not be NULL"),
				 errhint("'{}' removes the stored defaults.")));
	options = PG_GETARG_JSONB_P(0);
	SPI_connect();
	parse_settings(&set, options, OPT_SETTING);
	/* named tables must exist now, not at the next nightly run */
	if (set.items)
		(void) tutor_source_from_sql(set.items);
	if (set.prerequisites)
		(void) tutor_source_from_sql(set.prerequisites);
	if (set.source)
		(void) tutor_source_from_sql(set.source);
	values[0] = CStringGetTextDatum(name);
	values[1] = JsonbPGetDatum(options);
	if (JB_ROOT_COUNT(options) == 0)
	{
		if (SPI_execute_with_args("DELETE FROM tutor.plan_settings WHERE model_name = $1",
								  1, types, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not update tutor.plan_settings");
		SPI_finish();
		PG_RETURN_JSONB_P(options);
	}
	if (SPI_execute_with_args("INSERT INTO tutor.plan_settings AS s (model_name, options, updated_by) VALUES ($1, $2, session_user)"
							  " ON CONFLICT (model_name) DO UPDATE SET options = excluded.options,"
							  " updated_at = now(), updated_by = session_user"
							  " RETURNING s.options",
							  2, types, values, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not update tutor.plan_settings");
	result = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
							   false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
