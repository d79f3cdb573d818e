/*
 * tutor_llm.h -- shared declarations of the PostgreSQL glue (src/pg).
 *
 * Only files in src/pg include postgres.h.  They translate between SQL
 * and the compute core: settings, memory contexts, error reports.
 */
#ifndef TUTOR_LLM_H
#define TUTOR_LLM_H

#include "postgres.h"

#include "portability/instr_time.h"

#include "tl_device.h"
#include "tl_status.h"

#define TUTOR_LLM_VERSION "0.4.0"

/* GUC values (tutor.*) */
extern int	tutor_device;		/* a tl_device_kind */
extern int	tutor_threads;		/* 0 = one per CPU */
extern char *tutor_default_model;	/* "" = the most recently deployed */
extern char *tutor_model_dir;	/* where GGUF files load from (superuser) */
extern char *tutor_llm_model;	/* the file of model "default" */
extern int	tutor_llm_context;	/* positions per generation */

/* Define the language model's settings (llm.c); called from _PG_init. */
extern void tutor_llm_define_gucs(void);

/* $libdir/tutor_llm_cuda.so, or "" before _PG_init. */
extern char tutor_cuda_plugin_path[MAXPGPATH];

/*
 * Raise a core failure as an ERROR with an SQLSTATE that fits the
 * status; `context` says what was being done ("selftest training").
 */
extern void tutor_raise(tl_status status, const char *context) pg_attribute_noreturn();

/* Call a core function and raise its failure. */
#define TUTOR_CHECK(expr, context) \
	do { tl_status tutor_rc_ = (expr); if (tutor_rc_ != TL_OK) tutor_raise(tutor_rc_, (context)); } while (0)

/*
 * Prepare the core for a computation: apply tutor.threads and resolve
 * tutor.device to CPU or CUDA (ERROR when CUDA is required but absent).
 */
extern tl_device_kind tutor_begin_compute(void);

/* Seconds from start to now. */
static inline double
tutor_seconds_since(instr_time start)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	return INSTR_TIME_GET_DOUBLE(now);
}

#endif							/* TUTOR_LLM_H */
