/*
 * progress.c -- training progress that other sessions can read, in the
 * manner of pg_stat_progress_*: each training backend owns one slot of a
 * small shared array and updates it between batches; the view reads all
 * slots.
 *
 * Shared memory exists only when tutor_llm is in shared_preload_libraries;
 * otherwise updates are no-ops and the view is empty.
 */
#include "kt.h"

#include <math.h>

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#define PROGRESS_SLOTS 64

typedef struct progress_slot
{
	int			pid;			/* 0 = free */
	char		model_name[NAMEDATALEN];
	char		kind[16];
	char		phase[32];
	TimestampTz started_at;
	int64		rows_read;
	int64		students;
	int64		interactions;
	int32		epoch;
	int32		epochs;
	int64		batches_done;
	int64		batches_per_epoch;
	double		train_loss;
	double		valid_auc;
	double		best_valid_auc;
} progress_slot;

typedef struct progress_shared
{
	LWLock	   *lock;
	progress_slot slots[PROGRESS_SLOTS];
} progress_shared;

static progress_shared *shared = NULL;
static progress_slot *my_slot = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
progress_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(progress_shared)));
	RequestNamedLWLockTranche("tutor_llm progress", 1);
}

static void
progress_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("tutor_llm progress", sizeof(progress_shared), &found);
	if (!found)
	{
		memset(shared->slots, 0, sizeof(shared->slots));
		shared->lock = &(GetNamedLWLockTranche("tutor_llm progress"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init while shared_preload_libraries are loading. */
void
tutor_progress_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = progress_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = progress_shmem_startup;
}

/* Free this backend's slot if it still holds one (error or exit). */
static void
progress_release(int code, Datum arg)
{
	tutor_progress_end();
}

void
tutor_progress_begin(const char *model_name, const char *kind)
{
	static bool exit_hook = false;

	if (!shared)
		return;
	if (!exit_hook)
	{
		before_shmem_exit(progress_release, (Datum) 0);
		exit_hook = true;
	}
	tutor_progress_end();		/* a slot left by an aborted run */
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < PROGRESS_SLOTS && !my_slot; i++)
		if (shared->slots[i].pid == 0)
		{
			my_slot = &shared->slots[i];
			memset(my_slot, 0, sizeof(*my_slot));
			my_slot->pid = MyProcPid;
			strlcpy(my_slot->model_name, model_name, sizeof(my_slot->model_name));
			strlcpy(my_slot->kind, kind, sizeof(my_slot->kind));
			strlcpy(my_slot->phase, "reading source", sizeof(my_slot->phase));
			my_slot->started_at = GetCurrentTimestamp();
			my_slot->valid_auc = my_slot->best_valid_auc = my_slot->train_loss = NAN;
		}
	LWLockRelease(shared->lock);
}

#define PROGRESS_UPDATE(body) \
	do { \
		if (my_slot) \
		{ \
			LWLockAcquire(shared->lock, LW_EXCLUSIVE); \
			body; \
			LWLockRelease(shared->lock); \
		} \
	} while (0)

void
tutor_progress_phase(const char *phase)
{
	PROGRESS_UPDATE(strlcpy(my_slot->phase, phase, sizeof(my_slot->phase)));
}

void
tutor_progress_scan(int64 rows_read, int64 students, int64 interactions)
{
	PROGRESS_UPDATE((my_slot->rows_read = rows_read, my_slot->students = students,
					 my_slot->interactions = interactions));
}

void
tutor_progress_epoch(int32 epoch, int32 epochs, int64 batches_per_epoch)
{
	PROGRESS_UPDATE((my_slot->epoch = epoch, my_slot->epochs = epochs,
					 my_slot->batches_per_epoch = batches_per_epoch, my_slot->batches_done = 0));
}

void
tutor_progress_batch(int64 batches_done, double train_loss)
{
	PROGRESS_UPDATE((my_slot->batches_done = batches_done, my_slot->train_loss = train_loss));
}

void
tutor_progress_valid(double valid_auc, double best_valid_auc)
{
	PROGRESS_UPDATE((my_slot->valid_auc = valid_auc, my_slot->best_valid_auc = best_valid_auc));
}

void
tutor_progress_end(void)
{
	PROGRESS_UPDATE((my_slot->pid = 0));
	my_slot = NULL;
}

PG_FUNCTION_INFO_V1(tutor_training_progress);

/* The rows of tutor.training_progress. */
Datum
tutor_training_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	progress_slot copy[PROGRESS_SLOTS];

	InitMaterializedSRF(fcinfo, 0);
	if (!shared)
		return (Datum) 0;
	LWLockAcquire(shared->lock, LW_SHARED);
	memcpy(copy, shared->slots, sizeof(copy));
	LWLockRelease(shared->lock);
	for (int i = 0; i < PROGRESS_SLOTS; i++)
	{
		progress_slot *s = &copy[i];
		Datum		values[15];
		bool		nulls[15] = {0};

		if (s->pid == 0)
			continue;
		values[0] = Int32GetDatum(s->pid);
		values[1] = CStringGetTextDatum(s->model_name);
		values[2] = CStringGetTextDatum(s->kind);
		values[3] = CStringGetTextDatum(s->phase);
		values[4] = TimestampTzGetDatum(s->started_at);
		values[5] = Int64GetDatum(s->rows_read);
		values[6] = Int64GetDatum(s->students);
		values[7] = Int64GetDatum(s->interactions);
		values[8] = Int32GetDatum(s->epoch);
		values[9] = Int32GetDatum(s->epochs);
		values[10] = Int64GetDatum(s->batches_done);
		values[11] = Int64GetDatum(s->batches_per_epoch);
		values[12] = Float8GetDatum(s->train_loss);
		nulls[12] = isnan(s->train_loss);
		values[13] = Float8GetDatum(s->valid_auc);
		nulls[13] = isnan(s->valid_auc);
		values[14] = Float8GetDatum(s->best_valid_auc);
		nulls[14] = isnan(s->best_valid_auc);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
