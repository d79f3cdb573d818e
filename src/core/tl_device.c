/*
 * tl_device.c -- backend choice, the lazy CUDA plugin, threads, and
 * descriptions of the CPU and BLAS for device_info().
 */
#include <cblas.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tl_device.h"
#include "tl_pool.h"

/* Outcome of the one attempt per process to load the CUDA plugin. */
static struct
{
	bool		tried;
	tl_status	status;
	char		reason[512];
	const tl_cuda_api *api;
	int			device_count;
} tl_cuda_state;

const char *
tl_device_kind_name(tl_device_kind kind)
{
	switch (kind)
	{
		case TL_DEVICE_AUTO:
			return "auto";
		case TL_DEVICE_CPU:
			return "cpu";
		case TL_DEVICE_CUDA:
			return "cuda";
	}
	return "unknown";
}

/* Try dlopen + entry lookup + device count; fill tl_cuda_state. */
static void
tl_cuda_try_load(const char *plugin_path)
{
	void	   *handle;
	tl_cuda_get_api_fn get_api;
	const tl_cuda_api *api;
	int			count = 0;

	tl_cuda_state.tried = true;
	tl_cuda_state.status = TL_ERR_UNAVAILABLE;
	if (!plugin_path || !*plugin_path)
	{
		snprintf(tl_cuda_state.reason, sizeof(tl_cuda_state.reason),
				 "this build has no CUDA plugin");
		return;
	}
	if (access(plugin_path, R_OK) != 0)
	{
		snprintf(tl_cuda_state.reason, sizeof(tl_cuda_state.reason),
				 "the CUDA plugin %s is not installed (built without nvcc)", plugin_path);
		return;
	}
	/* RTLD_LOCAL: the CUDA libraries stay out of the backend's namespace */
	handle = dlopen(plugin_path, RTLD_NOW | RTLD_LOCAL);
	if (!handle)
	{
		snprintf(tl_cuda_state.reason, sizeof(tl_cuda_state.reason),
				 "the CUDA plugin cannot be loaded: %s", dlerror());
		return;
	}
	get_api = (tl_cuda_get_api_fn) dlsym(handle, TL_CUDA_ENTRY);
	api = get_api ? get_api() : NULL;
	if (!api || api->abi_version != TL_CUDA_ABI_VERSION)
	{
		snprintf(tl_cuda_state.reason, sizeof(tl_cuda_state.reason),
				 "the CUDA plugin %s does not match this build (ABI %d expected)",
				 plugin_path, TL_CUDA_ABI_VERSION);
		dlclose(handle);
		return;
	}
	if (api->device_count(&count) != 0)
	{
		snprintf(tl_cuda_state.reason, sizeof(tl_cuda_state.reason),
				 "CUDA is not usable: %s", api->last_error());
		return;					/* keep the handle: unloading CUDA runtimes is unsafe */
	}
	if (count <= 0)
	{
		/* the plugin's message names the driver's reason, when it has one */
		snprintf(tl_cuda_state.reason, sizeof(tl_cuda_state.reason), "%s",
				 *api->last_error() ? api->last_error() : "no CUDA device is present");
		return;
	}
	tl_cuda_state.api = api;
	tl_cuda_state.device_count = count;
	tl_cuda_state.status = TL_OK;
	tl_cuda_state.reason[0] = '\0';
}

tl_status
tl_cuda_open(const char *plugin_path, const tl_cuda_api **api, int *device_count)
{
	if (!tl_cuda_state.tried)
		tl_cuda_try_load(plugin_path);
	if (api)
		*api = tl_cuda_state.api;
	if (device_count)
		*device_count = tl_cuda_state.device_count;
	if (tl_cuda_state.status != TL_OK)
		return tl_fail(tl_cuda_state.status, "%s", tl_cuda_state.reason);
	return TL_OK;
}

tl_status
tl_device_resolve(tl_device_kind wanted, const char *plugin_path, tl_device_kind *resolved)
{
	tl_status	rc;

	if (wanted == TL_DEVICE_CPU)
	{
		*resolved = TL_DEVICE_CPU;
		return TL_OK;
	}
	rc = tl_cuda_open(plugin_path, NULL, NULL);
	if (rc == TL_OK)
	{
		*resolved = TL_DEVICE_CUDA;
		return TL_OK;
	}
	if (wanted == TL_DEVICE_AUTO)
	{
		*resolved = TL_DEVICE_CPU;
		return TL_OK;
	}
	return rc;					/* CUDA was asked for and is not there */
}

int
tl_cpu_count(void)
{
	long		n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (int) n : 1;
}

/*
 * The core parallelises its own loops on tl_pool and calls BLAS from
 * those threads one small product at a time, so OpenBLAS itself stays on
 * one thread: two thread pools on the same cores only fight (OpenBLAS's
 * idle workers spin and yield while ours compute).
 */
void
tl_set_num_threads(int n)
{
	if (openblas_get_num_threads() != 1)
		openblas_set_num_threads(1);
	tl_pool_set_threads(n > 0 ? n : tl_cpu_count());
}

int
tl_get_num_threads(void)
{
	return tl_pool_threads();
}

void
tl_blas_info(char *buf, size_t len)
{
	/* openblas_get_config() returns e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY ..." */
	snprintf(buf, len, "%s (core %s)", openblas_get_config(), openblas_get_corename());
}

void
tl_cpu_name(char *buf, size_t len)
{
	FILE	   *f = fopen("/proc/cpuinfo", "r");
	char		line[512];

	snprintf(buf, len, "unknown CPU");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
	{
		char	   *colon;

		if (strncmp(line, "model name", 10) != 0 || !(colon = strchr(line, ':')))
			continue;
		colon++;
		while (*colon == ' ' || *colon == '\t')
			colon++;
		colon[strcspn(colon, "\n")] = '\0';
		snprintf(buf, len, "%s", colon);
		break;
	}
	fclose(f);
}
