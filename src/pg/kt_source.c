/*
 * kt_source.c -- where answers come from: a table, a view or a query,
 * checked column by column, then streamed through an SPI cursor in
 * chunks, grouped by student and ordered by time.
 *
 * The source is always read with the caller's privileges, so table
 * grants and row-level security apply as for any query the caller runs.
 */
#include "kt.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/typcache.h"
#include "utils/varlena.h"

#include "options.h"

#define KT_FETCH_ROWS 10000		/* rows per cursor fetch: bounded memory */

const char *const tutor_kt_role_names[KT_NCOLS] = {
	[KT_COL_STUDENT] = "student_id",
	[KT_COL_ITEM] = "item_id",
	[KT_COL_SKILL] = "skill_id",
	[KT_COL_CORRECT] = "correct",
	[KT_COL_TIME] = "answered_at",
};

/* Does the text start with a keyword that begins a query? */
static bool
looks_like_query(const char *s)
{
	static const char *const starts[] = {"select", "with", "values", "table", "("};

	while (*s && isspace((unsigned char) *s))
		s++;
	for (size_t i = 0; i < lengthof(starts); i++)
	{
		size_t		n = strlen(starts[i]);

		if (pg_strncasecmp(s, starts[i], n) == 0 &&
			(n == 1 || s[n] == '\0' || !(isalnum((unsigned char) s[n]) || s[n] == '_')))
			return true;
	}
	return false;
}

char *
tutor_source_from_sql(const char *source)
{
	if (source == NULL || source[strspn(source, " \t\r\n")] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source must name a table or view, or be a SELECT query")));
	if (looks_like_query(source))
	{
		char	   *q = pstrdup(source);
		int			len = strlen(q);

		/* a trailing ";" would end the subquery early */
		while (len > 0 && (isspace((unsigned char) q[len - 1]) || q[len - 1] == ';'))
			q[--len] = '\0';
		return psprintf("(%s)", q);
	}
	else
	{
		List	   *names = stringToQualifiedNameList(source);
		RangeVar   *rv = makeRangeVarFromNameList(names);
		Oid			relid = RangeVarGetRelid(rv, NoLock, true);

		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation \"%s\" does not exist", source),
					 errhint("The source is a table or view name, or a query starting with SELECT, WITH, VALUES or TABLE.")));
		return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										  get_rel_name(relid));
	}
}

/* Is this a type we accept for the correctness column? */
static bool
correct_type_ok(Oid type)
{
	switch (type)
	{
		case BOOLOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			return true;
		default:
			return false;
	}
}

void
tutor_kt_source_resolve(tutor_kt_source *src, const char *source, Jsonb *columns)
{
	static const char *const roles[] = {"student_id", "item_id", "skill_id", "correct", "answered_at", NULL};
	TupleDesc	desc;
	StringInfoData have;
	int			rc;

	memset(src, 0, sizeof(*src));
	src->text = pstrdup(source);
	src->from_sql = tutor_source_from_sql(source);

	tutor_options_check(columns, roles, "options->'columns'");
	for (int r = 0; r < KT_NCOLS; r++)
	{
		JsonbValue	buf,
				   *v = NULL;
		bool		mapped = false;

		if (columns)
		{
			JsonbValue	k;

			k.type = jbvString;
			k.val.string.val = (char *) tutor_kt_role_names[r];
			k.val.string.len = strlen(tutor_kt_role_names[r]);
			v = findJsonbValueFromContainer(&columns->root, JB_FOBJECT, &k);
			mapped = v != NULL;
			if (v)
				buf = *v, v = &buf;
		}
		if (!mapped)
			src->column[r] = pstrdup(tutor_kt_role_names[r]);
		else if (v->type == jbvString && v->val.string.len > 0)
			src->column[r] = pnstrdup(v->val.string.val, v->val.string.len);
		else if (v->type == jbvNull && (r == KT_COL_ITEM || r == KT_COL_SKILL))
			src->column[r] = NULL;	/* the source has no such column */
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("options->'columns'->'%s' must be a column name%s", tutor_kt_role_names[r],
							(r == KT_COL_ITEM || r == KT_COL_SKILL) ? " or null" : "")));
	}
	if (!src->column[KT_COL_ITEM] && !src->column[KT_COL_SKILL])
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the source needs an item_id or a skill_id column")));

	/* describe the source without reading it */
	rc = SPI_execute(psprintf("SELECT * FROM %s AS src LIMIT 0", src->from_sql), true, 0);
	if (rc != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source must return rows")));
	desc = SPI_tuptable->tupdesc;
	initStringInfo(&have);
	for (int a = 0; a < desc->natts; a++)
		if (!TupleDescAttr(desc, a)->attisdropped)
			appendStringInfo(&have, "%s%s", have.len ? ", " : "", NameStr(TupleDescAttr(desc, a)->attname));

	for (int r = 0; r < KT_NCOLS; r++)
	{
		int			found = -1;

		if (!src->column[r])
			continue;
		for (int a = 0; a < desc->natts && found < 0; a++)
			if (!TupleDescAttr(desc, a)->attisdropped &&
				strcmp(NameStr(TupleDescAttr(desc, a)->attname), src->column[r]) == 0)
				found = a;
		if (found < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" (%s) does not exist in the source", src->column[r],
							tutor_kt_role_names[r]),
					 errdetail("The source has columns: %s.", have.data),
					 errhint("Map other names with options->'columns', for example '{\"columns\": {\"%s\": \"my_column\"}}'.",
							 tutor_kt_role_names[r])));
		src->type[r] = TupleDescAttr(desc, found)->atttypid;
	}
	SPI_freetuptable(SPI_tuptable);

	if (!correct_type_ok(src->type[KT_COL_CORRECT]))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" (correct) must be boolean or numeric, not %s",
						src->column[KT_COL_CORRECT], format_type_be(src->type[KT_COL_CORRECT]))));
	if (!OidIsValid(lookup_type_cache(src->type[KT_COL_TIME], TYPECACHE_LT_OPR)->lt_opr))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" (answered_at) has type %s, which cannot be ordered",
						src->column[KT_COL_TIME], format_type_be(src->type[KT_COL_TIME]))));
	src->time_is_timestamp = src->type[KT_COL_TIME] == TIMESTAMPTZOID ||
		src->type[KT_COL_TIME] == TIMESTAMPOID || src->type[KT_COL_TIME] == DATEOID;
}

void
tutor_kt_source_to_config(const tutor_kt_source *src, StringInfo json)
{
	appendStringInfoString(json, "{");
	for (int r = 0; r < KT_NCOLS; r++)
	{
		appendStringInfo(json, "%s\"%s\": ", r ? ", " : "", tutor_kt_role_names[r]);
		if (src->column[r])
			escape_json(json, src->column[r]);
		else
			appendStringInfoString(json, "null");
	}
	appendStringInfoString(json, "}");
}

void
tutor_kt_source_from_config(tutor_kt_source *src, Jsonb *config)
{
	JsonbValue	buf,
			   *src_text = tutor_option(config, "source", &buf);
	char	   *text;

	if (!src_text || src_text->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("model configuration has no source")));
	text = pnstrdup(src_text->val.string.val, src_text->val.string.len);
	tutor_kt_source_resolve(src, text, tutor_option_object(config, "columns"));
}

/* ---- scanning ---------------------------------------------------------------- */

/* Growable arrays of one student's answers, in a context reset per student. */
typedef struct kt_group
{
	MemoryContext cxt;
	char	   *student;
	int32		n;
	int32		cap;
	char	  **items;
	char	  **skills;
	float	   *correct;
	TimestampTz *time;
	bool	   *time_null;
} kt_group;

static void
group_reset(kt_group *g)
{
	MemoryContextReset(g->cxt);
	g->student = NULL;
	g->n = g->cap = 0;
}

static void
group_append(kt_group *g, char *item, char *skill, float correct, TimestampTz t, bool t_null)
{
	MemoryContext old = MemoryContextSwitchTo(g->cxt);

	if (g->n == g->cap)
	{
		int32		cap = g->cap ? g->cap * 2 : 64;

		if (g->cap)
		{
			g->items = repalloc(g->items, sizeof(char *) * cap);
			g->skills = repalloc(g->skills, sizeof(char *) * cap);
			g->correct = repalloc(g->correct, sizeof(float) * cap);
			g->time = repalloc(g->time, sizeof(TimestampTz) * cap);
			g->time_null = repalloc(g->time_null, sizeof(bool) * cap);
		}
		else
		{
			g->items = palloc(sizeof(char *) * cap);
			g->skills = palloc(sizeof(char *) * cap);
			g->correct = palloc(sizeof(float) * cap);
			g->time = palloc(sizeof(TimestampTz) * cap);
			g->time_null = palloc(sizeof(bool) * cap);
		}
		g->cap = cap;
	}
	g->items[g->n] = item ? pstrdup(item) : NULL;
	g->skills[g->n] = skill ? pstrdup(skill) : NULL;
	g->correct[g->n] = correct;
	g->time[g->n] = t;
	g->time_null[g->n] = t_null;
	g->n++;
	MemoryContextSwitchTo(old);
}

static void
group_flush(kt_group *g, const tutor_kt_source *src, tutor_kt_student_fn fn, void *arg)
{
	tutor_kt_student st;

	if (g->n == 0)
		return;
	st.id = g->student;
	st.n = g->n;
	st.item_ids = (const char *const *) g->items;
	st.skill_ids = (const char *const *) g->skills;
	st.correct = g->correct;
	st.time = src->time_is_timestamp ? g->time : NULL;
	st.time_null = g->time_null;
	fn(&st, arg);
	group_reset(g);
}

/* A text column of the current row as a C string, or NULL. */
static char *
row_text(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

void
tutor_kt_scan(const tutor_kt_source *src, const tutor_kt_filter *filter,
			  tutor_kt_student_fn fn, void *arg, tutor_kt_scan_stats *stats)
{
	StringInfoData sql;
	const char *stu = quote_identifier(src->column[KT_COL_STUDENT]);
	const char *tim = quote_identifier(src->column[KT_COL_TIME]);
	const char *cor = quote_identifier(src->column[KT_COL_CORRECT]);
	Portal		portal;
	kt_group	group = {0};
	MemoryContext row_cxt;
	Oid			argtypes[2];
	Datum		values[2];
	int			nargs = 0;
	const char *glue = " WHERE";

	memset(stats, 0, sizeof(*stats));
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT s.%s::text, ", stu);
	if (src->column[KT_COL_ITEM])
		appendStringInfo(&sql, "s.%s::text, ", quote_identifier(src->column[KT_COL_ITEM]));
	else
		appendStringInfoString(&sql, "NULL::text, ");
	if (src->column[KT_COL_SKILL])
		appendStringInfo(&sql, "s.%s::text, ", quote_identifier(src->column[KT_COL_SKILL]));
	else
		appendStringInfoString(&sql, "NULL::text, ");
	if (src->type[KT_COL_CORRECT] == BOOLOID)
		appendStringInfo(&sql, "CASE WHEN s.%s THEN 1.0::float8 WHEN NOT s.%s THEN 0.0::float8 END, ", cor, cor);
	else
		appendStringInfo(&sql, "s.%s::float8, ", cor);
	if (src->time_is_timestamp)
		appendStringInfo(&sql, "s.%s::timestamptz ", tim);
	else
		appendStringInfoString(&sql, "NULL::timestamptz ");
	appendStringInfo(&sql, "FROM %s AS s", src->from_sql);
	if (filter && OidIsValid(filter->student_type))
	{
		argtypes[nargs] = filter->student_type;
		values[nargs++] = filter->student;
		appendStringInfo(&sql, "%s s.%s = $%d", glue, stu, nargs);
		glue = " AND";
	}
	else if (filter && filter->students_sql)
	{
		appendStringInfo(&sql, "%s s.%s IN (SELECT st.x::%s FROM %s AS st(x))", glue, stu,
						 format_type_be(src->type[KT_COL_STUDENT]), filter->students_sql);
		glue = " AND";
	}
	else if (filter && filter->students)
	{
		/* ids arrive as text; compare in the column's own type so an index can serve */
		argtypes[nargs] = TEXTARRAYOID;
		values[nargs++] = PointerGetDatum(filter->students);
		appendStringInfo(&sql, "%s s.%s IN (SELECT u.x::%s FROM unnest($%d) AS u(x))", glue, stu,
						 format_type_be(src->type[KT_COL_STUDENT]), nargs);
		glue = " AND";
	}
	if (filter && filter->until_set)
	{
		if (!src->time_is_timestamp)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("as_of needs a source whose \"%s\" column is a date or time", src->column[KT_COL_TIME])));
		argtypes[nargs] = TIMESTAMPTZOID;
		values[nargs++] = TimestampTzGetDatum(filter->until);
		appendStringInfo(&sql, "%s s.%s::timestamptz <= $%d", glue, tim, nargs);
	}
	/* the tie-breakers make the order, and so training, deterministic */
	appendStringInfo(&sql, " ORDER BY s.%s, s.%s, 2, 3, 4", stu, tim);

	portal = SPI_cursor_open_with_args(NULL, sql.data, nargs, argtypes, values, NULL, true,
									   CURSOR_OPT_NO_SCROLL);

	group.cxt = AllocSetContextCreate(CurrentMemoryContext, "tutor student answers", ALLOCSET_DEFAULT_SIZES);
	row_cxt = AllocSetContextCreate(CurrentMemoryContext, "tutor source chunk", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		SPITupleTable *tab;
		MemoryContext old;

		uint64		nrows;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, KT_FETCH_ROWS);
		/* fn may run SPI statements of its own: keep this chunk's rows */
		nrows = SPI_processed;
		tab = SPI_tuptable;
		if (nrows == 0)
			break;
		old = MemoryContextSwitchTo(row_cxt);
		for (uint64 r = 0; r < nrows; r++)
		{
			HeapTuple	tup = tab->vals[r];
			char	   *student = row_text(tup, tab->tupdesc, 1);
			char	   *item = row_text(tup, tab->tupdesc, 2);
			char	   *skill = row_text(tup, tab->tupdesc, 3);
			bool		cnull,
						tnull;
			double		c = DatumGetFloat8(SPI_getbinval(tup, tab->tupdesc, 4, &cnull));
			Datum		t = SPI_getbinval(tup, tab->tupdesc, 5, &tnull);

			stats->rows_read++;
			if (student == NULL || cnull || (item == NULL && skill == NULL))
			{
				stats->rows_skipped++;
				continue;
			}
			if (!(c >= 0.0 && c <= 1.0))
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("column \"%s\" (correct) has the value %g, outside 0..1",
								src->column[KT_COL_CORRECT], c),
						 errdetail("Student \"%s\".", student)));
			if (group.student == NULL || strcmp(group.student, student) != 0)
			{
				group_flush(&group, src, fn, arg);
				group.student = MemoryContextStrdup(group.cxt, student);
			}
			group_append(&group, item, skill, (float) c, tnull ? 0 : DatumGetTimestampTz(t), tnull);
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(row_cxt);
		SPI_freetuptable(tab);
	}
	group_flush(&group, src, fn, arg);
	SPI_cursor_close(portal);
	MemoryContextDelete(row_cxt);
	MemoryContextDelete(group.cxt);
}
