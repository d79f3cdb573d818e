/*
 * tutor_llm.c -- module entry: settings, the core's allocator, device
 * resolution and error translation.
 */
#include "tutor_llm.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "tl_alloc.h"
#include "kt.h"

PG_MODULE_MAGIC;

int			tutor_device = TL_DEVICE_AUTO;
int			tutor_threads = 0;
char	   *tutor_default_model = NULL;
char		tutor_cuda_plugin_path[MAXPGPATH];

static const struct config_enum_entry tutor_device_options[] = {
	{"auto", TL_DEVICE_AUTO, false},
	{"cpu", TL_DEVICE_CPU, false},
	{"cuda", TL_DEVICE_CUDA, false},
	{NULL, 0, false}
};

/*
 * The core allocates through these, from CurrentMemoryContext.  NO_OOM
 * makes exhaustion a NULL the core reports as TL_ERR_NOMEM, instead of
 * an ERROR thrown from inside core code; HUGE allows model-sized blocks.
 */
static void *
tutor_core_alloc(size_t bytes, void *arg)
{
	return MemoryContextAllocExtended(CurrentMemoryContext, bytes,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
}

static void
tutor_core_release(void *ptr, void *arg)
{
	pfree(ptr);
}

void		_PG_init(void);

void
_PG_init(void)
{
	static const tl_allocator allocator = {tutor_core_alloc, tutor_core_release, NULL};

	DefineCustomEnumVariable("tutor.device",
							 "Where tutor_llm computes: auto, cpu or cuda.",
							 "auto uses a CUDA device when one is usable and the CPU otherwise; "
							 "cuda fails when no device is usable.",
							 &tutor_device, TL_DEVICE_AUTO, tutor_device_options,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tutor.threads",
							"Threads for tutor_llm's CPU computations (0 = one per CPU).",
							NULL,
							&tutor_threads, 0, 0, 1024,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("tutor.default_model",
							   "The model used when a function is given no model name.",
							   "Empty means the most recently deployed model.",
							   &tutor_default_model, "",
							   PGC_USERSET, 0, NULL, NULL, NULL);
	tutor_llm_define_gucs();
	MarkGUCPrefixReserved("tutor");

	/* progress shared with other sessions needs a slot of shared memory */
	if (process_shared_preload_libraries_in_progress)
		tutor_progress_shmem_init();

	snprintf(tutor_cuda_plugin_path, sizeof(tutor_cuda_plugin_path),
			 "%s/tutor_llm_cuda.so", pkglib_path);
	tl_set_allocator(&allocator);
}

void
tutor_raise(tl_status status, const char *context)
{
	int			code;

	switch (status)
	{
		case TL_ERR_ARG:
			code = ERRCODE_INVALID_PARAMETER_VALUE;
			break;
		case TL_ERR_NOMEM:
			code = ERRCODE_OUT_OF_MEMORY;
			break;
		case TL_ERR_UNAVAILABLE:
			code = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
			break;
		case TL_ERR_NUMERIC:
			code = ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE;
			break;
		case TL_ERR_DEVICE:
			code = ERRCODE_SYSTEM_ERROR;
			break;
		case TL_ERR_SHAPE:
		default:
			code = ERRCODE_DATA_EXCEPTION;
			break;
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg("%s failed: %s", context, tl_last_error())));
	pg_unreachable();
}

tl_device_kind
tutor_begin_compute(void)
{
	tl_device_kind resolved;
	tl_status	rc;

	tl_set_num_threads(tutor_threads);
	rc = tl_device_resolve((tl_device_kind) tutor_device, tutor_cuda_plugin_path, &resolved);
	if (rc != TL_OK)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tutor.device is \"cuda\" but no CUDA device is usable"),
				 errdetail("%s.", tl_last_error()),
				 errhint("Set tutor.device to 'auto' to fall back to the CPU.")));
	return resolved;
}
