/*
 * tl_pool.h -- a small pool of worker threads for the core's own
 * parallel loops (attention over heads; later, quantized matmuls).
 *
 * The calling thread takes part; workers claim chunks of the index range
 * from a shared counter, so uneven chunks balance themselves.  Workers
 * run only the task function they are given: they never allocate through
 * tl_alloc, never report errors, and never call into PostgreSQL.  They
 * block every signal, so a backend's signal handlers always run on the
 * backend's own thread.  The pool starts on first use, in the process
 * that uses it (never in a postmaster that merely loaded the library).
 */
#ifndef TL_POOL_H
#define TL_POOL_H

#include <stdint.h>

/* Process items [begin, end) of a loop; worker is 0..threads-1. */
typedef void (*tl_task_fn) (void *ctx, int64_t begin, int64_t end, int worker);

/*
 * Run fn over [0, n) in chunks of `grain` items on up to tl_pool_threads()
 * threads, the caller included; returns when every chunk is done.  With
 * one thread (or n <= grain) it is a plain call on the caller's thread.
 * Called from inside a task, it runs inline on that thread, passing the
 * task's own worker index.
 */
void		tl_pool_run(int64_t n, int64_t grain, tl_task_fn fn, void *ctx);

/* Threads a tl_pool_run may use (the caller counts as one); n >= 1. */
void		tl_pool_set_threads(int n);
int			tl_pool_threads(void);

#endif							/* TL_POOL_H */
