/*
 * tl_pool.c -- worker threads for tl_pool_run.
 *
 * One job at a time: the caller publishes it under the mutex, bumps a
 * generation number and wakes the workers; everyone claims chunks with
 * an atomic counter; the caller waits until every worker has left the
 * job.  Workers sleep on a condition variable between jobs (no spinning
 * that would steal the CPU from the backend or from OpenBLAS).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "tl_pool.h"

#define TL_POOL_MAX 64

static struct
{
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* a new job, or the pool shrinks */
	pthread_cond_t done;		/* a worker left the job */
	pthread_t	threads[TL_POOL_MAX];
	uint64_t	born[TL_POOL_MAX];	/* generation when each worker was created */
	int			started;		/* worker threads running */
	int			wanted;			/* threads per job, caller included */
	uint64_t	generation;		/* bumped per job */
	int			busy;			/* workers still inside the current job */
	/* the current job */
	tl_task_fn	fn;
	void	   *ctx;
	int64_t		n;
	int64_t		grain;
	int			job_workers;	/* workers invited to the current job */
	atomic_int_fast64_t next;	/* next unclaimed index */
}			pool = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.wake = PTHREAD_COND_INITIALIZER,
	.done = PTHREAD_COND_INITIALIZER,
	.wanted = 1,
};

/*
 * The worker index of the task this thread is running, or -1.  A
 * tl_pool_run from inside a task runs inline on that thread with the
 * task's worker index (so per-worker scratch stays private): that is how
 * independent pieces of work (groups of students) each run on one thread
 * with every op inside them single-threaded.
 */
static _Thread_local int pool_task_worker = -1;

/* Claim and run chunks until the range is exhausted. */
static void
pool_work(int worker)
{
	pool_task_worker = worker;
	for (;;)
	{
		int64_t		begin = atomic_fetch_add(&pool.next, pool.grain);

		if (begin >= pool.n)
			break;
		pool.fn(pool.ctx, begin, begin + pool.grain < pool.n ? begin + pool.grain : pool.n, worker);
	}
	pool_task_worker = -1;
}

static void *
pool_main(void *arg)
{
	int			worker = (int) (intptr_t) arg;
	uint64_t	seen = 0;

	pthread_mutex_lock(&pool.lock);
	/* a worker created for a job must still see that job as new */
	seen = pool.born[worker - 1];
	for (;;)
	{
		while (pool.generation == seen)
			pthread_cond_wait(&pool.wake, &pool.lock);
		seen = pool.generation;
		if (worker > pool.job_workers)
			continue;			/* not invited to this job */
		pthread_mutex_unlock(&pool.lock);
		pool_work(worker);
		pthread_mutex_lock(&pool.lock);
		if (--pool.busy == 0)
			pthread_cond_signal(&pool.done);
	}
	return NULL;
}

/* Start workers 1..count-1 (worker 0 is the caller), as many as the system allows. */
static void
pool_start(int count)
{
	sigset_t	all,
				old;

	/* threads inherit the creator's mask: block everything while creating them */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	while (pool.started < count - 1 && pool.started < TL_POOL_MAX)
	{
		pool.born[pool.started] = pool.generation;
		if (pthread_create(&pool.threads[pool.started], NULL, pool_main,
						   (void *) (intptr_t) (pool.started + 1)) != 0)
			break;				/* run with the threads we have */
		pthread_detach(pool.threads[pool.started]);
		pool.started++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void
tl_pool_set_threads(int n)
{
	pool.wanted = n < 1 ? 1 : n > TL_POOL_MAX ? TL_POOL_MAX : n;
}

int
tl_pool_threads(void)
{
	return pool.wanted;
}

void
tl_pool_run(int64_t n, int64_t grain, tl_task_fn fn, void *ctx)
{
	int			workers;

	if (n <= 0)
		return;
	if (grain < 1)
		grain = 1;
	if (pool_task_worker >= 0)
	{
		fn(ctx, 0, n, pool_task_worker);	/* nested: inline, one thread */
		return;
	}
	if (pool.wanted <= 1 || n <= grain)
	{
		fn(ctx, 0, n, 0);
		return;
	}
	pthread_mutex_lock(&pool.lock);
	if (pool.started < pool.wanted - 1)
		pool_start(pool.wanted);
	workers = pool.wanted - 1 < pool.started ? pool.wanted - 1 : pool.started;
	pool.fn = fn;
	pool.ctx = ctx;
	pool.n = n;
	pool.grain = grain;
	pool.job_workers = workers;
	atomic_store(&pool.next, 0);
	pool.busy = workers;
	pool.generation++;
	pthread_cond_broadcast(&pool.wake);
	pthread_mutex_unlock(&pool.lock);

	pool_work(0);

	pthread_mutex_lock(&pool.lock);
	while (pool.busy > 0)
		pthread_cond_wait(&pool.done, &pool.lock);
	pthread_mutex_unlock(&pool.lock);
}
