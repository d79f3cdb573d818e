/*
 * tl_pool.c -- worker threads for tl_pool_run.
 *
 * One job at a time: the caller publishes it and bumps a generation
 * number; everyone claims chunks with an atomic counter; the caller
 * waits until every invited worker has left the job.
 *
 * Between jobs a worker first spins for up to TL_POOL_SPIN_NS, watching
 * the generation, then sleeps on a condition variable.  A language
 * model's decode step is some two hundred short products, each a few
 * tens of microseconds: waking sleeping threads through the kernel for
 * each would cost as much as the arithmetic, while the short spin costs
 * nothing once work stops (the workers are asleep again 0.2 ms later,
 * leaving the CPU to the backend and to OpenBLAS).  The caller waits for
 * the end of a job the same way.
 *
 * Wake-ups without lost signals: the caller bumps the generation, then
 * looks at the number of sleepers and broadcasts under the mutex if
 * there are any; a worker counts itself a sleeper under the mutex, then
 * looks at the generation before it waits.  With sequentially
 * consistent atomics one of the two always sees the other.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "tl_pool.h"

#define TL_POOL_MAX 64
#define TL_POOL_SPIN_NS 200000	/* 0.2 ms */

static struct
{
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* a new job, or the pool shrinks */
	pthread_cond_t done;		/* the last worker left the job */
	pthread_t	threads[TL_POOL_MAX];
	uint64_t	born[TL_POOL_MAX];	/* generation when each worker was created */
	int			started;		/* worker threads running (caller's thread only) */
	int			wanted;			/* threads per job, caller included */
	atomic_uint_fast64_t generation;	/* bumped per job */
	atomic_int	sleepers;		/* workers waiting on wake */
	atomic_int	busy;			/* invited workers still inside the current job */
	/* the current job, written before the generation is bumped */
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

static inline void
pool_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static uint64_t
pool_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* Spin until *v differs from old (true) or the spin time is up (false). */
static bool
pool_spin_u64(atomic_uint_fast64_t *v, uint64_t old)
{
	uint64_t	start = pool_now_ns();

	for (unsigned i = 1;; i++)
	{
		if (atomic_load(v) != old)
			return true;
		pool_relax();
		if (i % 256 == 0 && pool_now_ns() - start > TL_POOL_SPIN_NS)
			return false;
	}
}

static bool
pool_spin_zero(atomic_int *v)
{
	uint64_t	start = pool_now_ns();

	for (unsigned i = 1;; i++)
	{
		if (atomic_load(v) == 0)
			return true;
		pool_relax();
		if (i % 256 == 0 && pool_now_ns() - start > TL_POOL_SPIN_NS)
			return false;
	}
}

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
	uint64_t	seen = pool.born[worker - 1];	/* a worker created for a job must still see it as new */

	for (;;)
	{
		if (!pool_spin_u64(&pool.generation, seen))
		{
			pthread_mutex_lock(&pool.lock);
			atomic_fetch_add(&pool.sleepers, 1);
			while (atomic_load(&pool.generation) == seen)
				pthread_cond_wait(&pool.wake, &pool.lock);
			atomic_fetch_sub(&pool.sleepers, 1);
			pthread_mutex_unlock(&pool.lock);
		}
		seen = atomic_load(&pool.generation);
		if (worker > pool.job_workers)
			continue;			/* not invited to this job */
		pool_work(worker);
		if (atomic_fetch_sub(&pool.busy, 1) == 1)
		{
			pthread_mutex_lock(&pool.lock);
			pthread_cond_signal(&pool.done);
			pthread_mutex_unlock(&pool.lock);
		}
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
		pool.born[pool.started] = atomic_load(&pool.generation);
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
	if (pool.started < pool.wanted - 1)
	{
		pthread_mutex_lock(&pool.lock);
		pool_start(pool.wanted);
		pthread_mutex_unlock(&pool.lock);
	}
	workers = pool.wanted - 1 < pool.started ? pool.wanted - 1 : pool.started;
	if (workers == 0)
	{
		fn(ctx, 0, n, 0);
		return;
	}
	pool.fn = fn;
	pool.ctx = ctx;
	pool.n = n;
	pool.grain = grain;
	pool.job_workers = workers;
	atomic_store(&pool.next, 0);
	atomic_store(&pool.busy, workers);
	atomic_fetch_add(&pool.generation, 1);	/* publishes the job */
	if (atomic_load(&pool.sleepers) > 0)
	{
		pthread_mutex_lock(&pool.lock);
		pthread_cond_broadcast(&pool.wake);
		pthread_mutex_unlock(&pool.lock);
	}

	pool_work(0);

	if (!pool_spin_zero(&pool.busy))
	{
		pthread_mutex_lock(&pool.lock);
		while (atomic_load(&pool.busy) > 0)
			pthread_cond_wait(&pool.done, &pool.lock);
		pthread_mutex_unlock(&pool.lock);
	}
}
