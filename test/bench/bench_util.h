/*
 * bench_util.h -- what the command-line benchmarks share: a monotonic
 * clock and exit-on-failure for core calls.
 */
#ifndef TL_BENCH_UTIL_H
#define TL_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tl_status.h"

static inline double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Print the core's message and exit when a call failed. */
static inline void
check(tl_status rc, const char *what)
{
	if (rc != TL_OK)
	{
		fprintf(stderr, "%s: %s\n", what, tl_last_error());
		exit(1);
	}
}

#endif							/* TL_BENCH_UTIL_H */
