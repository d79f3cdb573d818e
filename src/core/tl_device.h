/*
 * tl_device.h -- choosing where the core computes, and thread counts.
 *
 * The CPU backend (OpenBLAS) is always present.  The CUDA backend is a
 * plugin loaded lazily from a path the caller supplies (the PostgreSQL
 * glue passes $libdir/tutor_llm_cuda.so), so a library built with CUDA
 * loads and works on a machine with no driver and no GPU.
 */
#ifndef TL_DEVICE_H
#define TL_DEVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "tl_cuda_api.h"
#include "tl_status.h"

typedef enum tl_device_kind
{
	TL_DEVICE_AUTO,				/* CUDA when usable, otherwise the CPU */
	TL_DEVICE_CPU,
	TL_DEVICE_CUDA
} tl_device_kind;

const char *tl_device_kind_name(tl_device_kind kind);

/*
 * Load the CUDA plugin once per process and count devices.  Returns
 * TL_OK with the table when at least one device is usable; otherwise
 * TL_ERR_UNAVAILABLE with the reason (no plugin, no driver, no device)
 * in tl_last_error().  The outcome is cached: later calls are free.
 */
tl_status	tl_cuda_open(const char *plugin_path, const tl_cuda_api **api, int *device_count);

/* Resolve AUTO/CPU/CUDA to CPU or CUDA; CUDA with no usable device fails. */
tl_status	tl_device_resolve(tl_device_kind wanted, const char *plugin_path,
							  tl_device_kind *resolved);

/*
 * Threads for the core's computations (n <= 0: one per CPU).  They run
 * on the core's pool; BLAS is called single-threaded from them.
 */
void		tl_set_num_threads(int n);
int			tl_get_num_threads(void);
int			tl_cpu_count(void);

/* A description of the BLAS library ("OpenBLAS 0.3.21 ... core Haswell"). */
void		tl_blas_info(char *buf, size_t len);
/* The CPU model name from /proc/cpuinfo, or "unknown CPU". */
void		tl_cpu_name(char *buf, size_t len);

#endif							/* TL_DEVICE_H */
