/*
 * options.c -- typed access to jsonb options with clear errors.
 */
#include "options.h"

#include <math.h>

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/numeric.h"

void
tutor_options_check(Jsonb *options, const char *const *allowed, const char *what)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			depth = 0;

	if (options == NULL)
		return;
	if (!JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", what)));
	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_OBJECT || tok == WJB_BEGIN_ARRAY)
			depth++;
		else if (tok == WJB_END_OBJECT || tok == WJB_END_ARRAY)
			depth--;
		else if (tok == WJB_KEY && depth == 1)
		{
			bool		known = false;
			char	   *key = pnstrdup(v.val.string.val, v.val.string.len);

			for (const char *const *a = allowed; *a; a++)
				known |= strcmp(*a, key) == 0;
			if (!known)
			{
				StringInfoData names;

				initStringInfo(&names);
				for (const char *const *a = allowed; *a; a++)
					appendStringInfo(&names, "%s%s", a == allowed ? "" : ", ", *a);
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown key \"%s\" in %s", key, what),
						 errhint("Known keys: %s.", names.data)));
			}
		}
	}
}

JsonbValue *
tutor_option(Jsonb *options, const char *key, JsonbValue *buf)
{
	JsonbValue	k;
	JsonbValue *found;

	if (options == NULL || !JB_ROOT_IS_OBJECT(options))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	found = findJsonbValueFromContainer(&options->root, JB_FOBJECT, &k);
	if (found == NULL || found->type == jbvNull)
		return NULL;
	*buf = *found;
	return buf;
}

/* A numeric option as double, with a type error that names the key. */
static double
option_number(JsonbValue *v, const char *key)
{
	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a number", key)));
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
}

int64
tutor_option_int(Jsonb *options, const char *key, int64 dflt, int64 min, int64 max)
{
	JsonbValue	buf,
			   *v = tutor_option(options, key, &buf);
	double		d;

	if (v == NULL)
		return dflt;
	d = option_number(v, key);
	if (d != floor(d) || d < (double) min || d > (double) max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be an integer between " INT64_FORMAT " and " INT64_FORMAT ", got %g",
						key, min, max, d)));
	return (int64) d;
}

double
tutor_option_float(Jsonb *options, const char *key, double dflt, double min, double max)
{
	JsonbValue	buf,
			   *v = tutor_option(options, key, &buf);
	double		d;

	if (v == NULL)
		return dflt;
	d = option_number(v, key);
	if (!isfinite(d) || d < min || d > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be between %g and %g, got %g", key, min, max, d)));
	return d;
}

char *
tutor_option_text(Jsonb *options, const char *key, const char *dflt)
{
	JsonbValue	buf,
			   *v = tutor_option(options, key, &buf);

	if (v == NULL)
		return dflt ? pstrdup(dflt) : NULL;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a string", key)));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

char *
tutor_option_choice(Jsonb *options, const char *key, const char *dflt, const char *const *choices)
{
	char	   *value = tutor_option_text(options, key, dflt);
	StringInfoData names;

	for (const char *const *c = choices; *c; c++)
		if (value && strcmp(*c, value) == 0)
			return value;
	initStringInfo(&names);
	for (const char *const *c = choices; *c; c++)
		appendStringInfo(&names, "%s%s", c == choices ? "" : ", ", *c);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("option \"%s\" must be one of %s, got \"%s\"", key, names.data, value ? value : "")));
	pg_unreachable();
}

Jsonb *
tutor_option_object(Jsonb *options, const char *key)
{
	JsonbValue	buf,
			   *v = tutor_option(options, key, &buf);

	if (v == NULL)
		return NULL;
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a JSON object", key)));
	return JsonbValueToJsonb(v);
}

char	  **
tutor_option_strings(Jsonb *options, const char *key, int max_count, int *count)
{
	JsonbValue	buf,
			   *v = tutor_option(options, key, &buf);
	char	  **out;
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;

	*count = 0;
	if (v == NULL)
		return NULL;
	out = palloc0(sizeof(char *) * (max_count + 1));
	if (v->type == jbvString)
	{
		out[(*count)++] = pnstrdup(v->val.string.val, v->val.string.len);
		return out;
	}
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a string or an array of strings", key)));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (elem.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" must hold only strings", key)));
		if (*count >= max_count)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" holds more than %d strings", key, max_count)));
		out[(*count)++] = pnstrdup(elem.val.string.val, elem.val.string.len);
	}
	return out;
}

bool
tutor_option_bool(Jsonb *options, const char *key, bool dflt)
{
	JsonbValue	buf,
			   *v = tutor_option(options, key, &buf);

	if (v == NULL)
		return dflt;
	if (v->type != jbvBool)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be true or false", key)));
	return v->val.boolean;
}

char *
tutor_json_string(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	escape_json(&buf, s);
	return buf.data;
}
