/*
 * info.c -- tutor.version() and tutor.device_info().
 */
#include "tutor_llm.h"

#include <unistd.h>

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(tutor_version);
PG_FUNCTION_INFO_V1(tutor_device_info);

/* The extension's version string. */
Datum
tutor_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(TUTOR_LLM_VERSION));
}

#define DEVICE_INFO_COLS 8
#define BYTES_PER_MB (1024 * 1024)

/* Append one device_info row; threads < 0 means NULL. */
static void
device_info_row(ReturnSetInfo *rsinfo, const char *backend, int ordinal, const char *name,
				uint64 total_bytes, uint64 free_bytes, const char *blas, int threads,
				bool selected)
{
	Datum		values[DEVICE_INFO_COLS];
	bool		nulls[DEVICE_INFO_COLS] = {0};

	values[0] = CStringGetTextDatum(backend);
	values[1] = Int32GetDatum(ordinal);
	values[2] = CStringGetTextDatum(name);
	values[3] = Int64GetDatum((int64) (total_bytes / BYTES_PER_MB));
	values[4] = Int64GetDatum((int64) (free_bytes / BYTES_PER_MB));
	values[5] = CStringGetTextDatum(blas);
	values[6] = Int32GetDatum(threads);
	nulls[6] = threads < 0;
	values[7] = BoolGetDatum(selected);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * One row for the CPU and one per usable CUDA device; `selected` marks
 * where computations run under the current tutor.device.
 */
Datum
tutor_device_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	tl_device_kind resolved = tutor_begin_compute();
	const tl_cuda_api *api = NULL;
	int			ndevices = 0;
	char		cpu[256],
				blas[512];
	long		page = sysconf(_SC_PAGESIZE);

	InitMaterializedSRF(fcinfo, 0);

	tl_cpu_name(cpu, sizeof(cpu));
	tl_blas_info(blas, sizeof(blas));
	device_info_row(rsinfo, "cpu", 0, cpu,
					(uint64) sysconf(_SC_PHYS_PAGES) * page,
					(uint64) sysconf(_SC_AVPHYS_PAGES) * page,
					blas, tl_get_num_threads(), resolved == TL_DEVICE_CPU);

	if (tl_cuda_open(tutor_cuda_plugin_path, &api, &ndevices) != TL_OK)
		return (Datum) 0;		/* no CUDA here: the CPU row is the whole answer */
	for (int i = 0; i < ndevices; i++)
	{
		tl_cuda_device_props props;

		if (api->device_props(i, &props) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("cannot read the properties of CUDA device %d: %s", i, api->last_error())));
		device_info_row(rsinfo, "cuda", i, props.name, props.total_memory, props.free_memory,
						"cuBLAS", -1, resolved == TL_DEVICE_CUDA && i == 0);
	}
	return (Datum) 0;
}
