/*
 * tl_status.c -- the per-thread error message of the compute core.
 */
#include <stdarg.h>
#include <stdio.h>

#include "tl_status.h"

static __thread char tl_error_message[512];

/* Record a message for this thread and hand the code back. */
tl_status
tl_fail(tl_status code, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(tl_error_message, sizeof(tl_error_message), fmt, ap);
	va_end(ap);
	return code;
}

/* The last recorded message on this thread. */
const char *
tl_last_error(void)
{
	return tl_error_message;
}

/* A fixed name for each code, for logs and tests. */
const char *
tl_status_name(tl_status code)
{
	switch (code)
	{
		case TL_OK:
			return "ok";
		case TL_ERR_ARG:
			return "invalid argument";
		case TL_ERR_SHAPE:
			return "shape mismatch";
		case TL_ERR_NOMEM:
			return "out of memory";
		case TL_ERR_DEVICE:
			return "device error";
		case TL_ERR_UNAVAILABLE:
			return "unavailable";
		case TL_ERR_NUMERIC:
			return "non-finite value";
	}
	return "unknown status";
}
