/*
 * options.h -- reading a jsonb options argument: known keys only, typed
 * values, ranges, and an error that names the key.
 */
#ifndef TUTOR_OPTIONS_H
#define TUTOR_OPTIONS_H

#include "postgres.h"

#include "utils/jsonb.h"

/* Reject keys not in `allowed` (NULL-terminated); NULL options are {}. */
extern void tutor_options_check(Jsonb *options, const char *const *allowed, const char *what);

/* The value of a top-level key, or NULL when absent or JSON null. */
extern JsonbValue *tutor_option(Jsonb *options, const char *key, JsonbValue *buf);

extern int64 tutor_option_int(Jsonb *options, const char *key, int64 dflt, int64 min, int64 max);
extern double tutor_option_float(Jsonb *options, const char *key, double dflt, double min, double max);
extern bool tutor_option_bool(Jsonb *options, const char *key, bool dflt);
/* A string option, palloc'd, or dflt (which may be NULL). */
extern char *tutor_option_text(Jsonb *options, const char *key, const char *dflt);
/* A string option that must be one of `choices` (NULL-terminated). */
extern char *tutor_option_choice(Jsonb *options, const char *key, const char *dflt,
								 const char *const *choices);
/*
 * A string, or an array of at most max_count strings, as a palloc'd
 * array (NULL when absent); *count gets the number.
 */
extern char **tutor_option_strings(Jsonb *options, const char *key, int max_count, int *count);
/* s as a JSON string literal, quotes and escapes included (palloc'd). */
extern char *tutor_json_string(const char *s);
/* A nested object option, or NULL. */
extern Jsonb *tutor_option_object(Jsonb *options, const char *key);

#endif							/* TUTOR_OPTIONS_H */
