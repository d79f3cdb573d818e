/*
 * tl_status.h -- error codes of the compute core.
 *
 * The core never aborts, prints or longjmps.  Every fallible function
 * returns a tl_status; on failure a one-line message is left in a
 * thread-local buffer that the caller (the PostgreSQL glue, a test, the
 * benchmark) turns into its own kind of error report.
 */
#ifndef TL_STATUS_H
#define TL_STATUS_H

typedef enum tl_status
{
	TL_OK = 0,
	TL_ERR_ARG,					/* a bad argument: range, NULL, option */
	TL_ERR_SHAPE,				/* tensor shapes do not agree */
	TL_ERR_NOMEM,				/* an allocation failed */
	TL_ERR_DEVICE,				/* the CUDA plugin or device failed */
	TL_ERR_UNAVAILABLE,			/* a requested backend or kernel is not present */
	TL_ERR_NUMERIC				/* NaN or Inf where a finite value is needed */
} tl_status;

/* Record a printf-style message for the current thread; returns code. */
tl_status	tl_fail(tl_status code, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

/* The message of the last failure on this thread ("" if none). */
const char *tl_last_error(void);

/* A short, fixed name for a status code ("shape mismatch", ...). */
const char *tl_status_name(tl_status code);

/* Propagate a non-OK status to the caller. */
#define TL_TRY(expr) \
	do { tl_status tl_try_rc_ = (expr); if (tl_try_rc_ != TL_OK) return tl_try_rc_; } while (0)

#endif							/* TL_STATUS_H */
