/*
 * cuda_runtime.cu -- life cycle, memory and error handling of the CUDA
 * plugin, and the exported function table (see src/core/tl_cuda_api.h).
 *
 * Nothing here aborts, exits or prints: every CUDA or cuBLAS failure
 * becomes a tl_status code with a one-line message for last_error().
 */
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "tl_cuda_internal.cuh"

/* ---- error messages ------------------------------------------------------ */

/* One buffer per host thread, like the core's tl_last_error(). */
static thread_local char g_last_error[512];

static void
tlcu_vset_message(const char *fmt, va_list ap)
{
	vsnprintf(g_last_error, sizeof(g_last_error), fmt, ap);
}

static void
tlcu_set_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
tlcu_set_message(const char *fmt, ...)
{
	va_list		ap;

	va_start(ap, fmt);
	tlcu_vset_message(fmt, ap);
	va_end(ap);
}

int
tlcu_fail(int code, const char *fmt, ...)
{
	va_list		ap;

	va_start(ap, fmt);
	tlcu_vset_message(fmt, ap);
	va_end(ap);
	return code;
}

int
tlcu_cuda_fail(cudaError_t err, const char *what)
{
	int			code = (err == cudaErrorMemoryAllocation) ? TL_ERR_NOMEM : TL_ERR_DEVICE;

	/*
	 * Clear the runtime's last-error slot so a non-sticky error is not
	 * reported again by the next, unrelated call.  A sticky error (an
	 * illegal address in a kernel) stays: the context is unusable then.
	 */
	(void) cudaGetLastError();
	return tlcu_fail(code, "CUDA error in %s: %s (%s)", what,
					 cudaGetErrorString(err), cudaGetErrorName(err));
}

int
tlcu_cublas_fail(cublasStatus_t st, const char *what)
{
	int			code = (st == CUBLAS_STATUS_ALLOC_FAILED) ? TL_ERR_NOMEM : TL_ERR_DEVICE;

	return tlcu_fail(code, "cuBLAS error in %s: %s (status %d)", what,
					 cublasGetStatusString(st), (int) st);
}

static const char *
api_last_error(void)
{
	return g_last_error;
}

/* ---- global state -------------------------------------------------------- */

static bool g_ready = false;
static int	g_device = -1;
static cublasHandle_t g_cublas = NULL;
static void *g_scratch = NULL;
static size_t g_scratch_bytes = 0;

int
tlcu_require_init(const char *op)
{
	if (!g_ready)
		return tlcu_fail(TL_ERR_DEVICE, "%s: the CUDA plugin is not initialised (call init first)", op);
	return TL_OK;
}

cublasHandle_t
tlcu_cublas(void)
{
	return g_cublas;
}

int
tlcu_scratch(void **d_ptr, size_t bytes)
{
	size_t		want;
	void	   *p = NULL;
	cudaError_t err;

	*d_ptr = NULL;
	if (bytes <= g_scratch_bytes && g_scratch != NULL)
	{
		*d_ptr = g_scratch;
		return TL_OK;
	}
	/* Grow geometrically so a sequence of growing calls stays cheap. */
	want = g_scratch_bytes * 2;
	if (want < bytes)
		want = bytes;
	if (want < 4096)
		want = 4096;
	want = (want + 255) & ~(size_t) 255;

	if (g_scratch != NULL)
	{
		/* Earlier kernels may still use the old buffer: wait for them. */
		TLCU_CUDA_TRY(cudaDeviceSynchronize(), "scratch resize (synchronize)");
		err = cudaFree(g_scratch);
		g_scratch = NULL;
		g_scratch_bytes = 0;
		if (err != cudaSuccess)
			return tlcu_cuda_fail(err, "scratch resize (cudaFree)");
	}
	err = cudaMalloc(&p, want);
	if (err != cudaSuccess)
		return tlcu_cuda_fail(err, "scratch allocation (cudaMalloc)");
	g_scratch = p;
	g_scratch_bytes = want;
	*d_ptr = p;
	return TL_OK;
}

void
tlcu_scratch_release(void)
{
	if (g_scratch != NULL)
		(void) cudaFree(g_scratch);
	g_scratch = NULL;
	g_scratch_bytes = 0;
}

/* ---- life cycle ---------------------------------------------------------- */

/*
 * Errors of cudaGetDeviceCount that mean "no usable CUDA here" rather
 * than a fault: the caller should quietly stay on the CPU.
 */
static bool
tlcu_is_no_cuda(cudaError_t err)
{
	switch (err)
	{
		case cudaErrorNoDevice:
		case cudaErrorInsufficientDriver:	/* no driver, or too old */
		case cudaErrorStubLibrary:	/* only the toolkit's stub libcuda */
		case cudaErrorSystemDriverMismatch:
		case cudaErrorCompatNotSupportedOnDevice:
		case cudaErrorDevicesUnavailable:
		case cudaErrorInitializationError:	/* e.g. no /dev/nvidia* in a container */
		case cudaErrorNotPermitted:
		case cudaErrorSystemNotReady:
			return true;
		default:
			return false;
	}
}

static int
api_device_count(int *count)
{
	int			n = 0;
	cudaError_t err;

	if (count == NULL)
		return tlcu_fail(TL_ERR_ARG, "device_count: count is NULL");
	*count = 0;
	err = cudaGetDeviceCount(&n);
	if (err != cudaSuccess)
	{
		(void) cudaGetLastError();
		if (tlcu_is_no_cuda(err))
		{
			/* Not an error: zero devices, with the reason kept for the caller. */
			tlcu_set_message("no usable CUDA device: %s (%s)",
							 cudaGetErrorString(err), cudaGetErrorName(err));
			return TL_OK;
		}
		return tlcu_cuda_fail(err, "cudaGetDeviceCount");
	}
	if (n <= 0)
	{
		tlcu_set_message("no CUDA device found");
		n = 0;
	}
	*count = n;
	return TL_OK;
}

/*
 * TL_OK when 0 <= ordinal < the number of devices; TL_ERR_UNAVAILABLE
 * when there is none at all, TL_ERR_ARG for a bad ordinal.
 */
static int
tlcu_check_ordinal(const char *op, int ordinal)
{
	int			n = 0;
	int			rc;

	if (ordinal < 0)
		return tlcu_fail(TL_ERR_ARG, "%s: negative device ordinal %d", op, ordinal);
	rc = api_device_count(&n);
	if (rc != TL_OK)
		return rc;
	if (n == 0)
	{
		/* keep device_count's reason (no driver, no device) in the message */
		char		reason[sizeof(g_last_error)];

		snprintf(reason, sizeof(reason), "%s", g_last_error);
		return tlcu_fail(TL_ERR_UNAVAILABLE, "%s: %s", op, reason);
	}
	if (ordinal >= n)
		return tlcu_fail(TL_ERR_ARG, "%s: no CUDA device %d (%d present)", op, ordinal, n);
	return TL_OK;
}

static int
api_device_props(int ordinal, tl_cuda_device_props *props)
{
	cudaDeviceProp p;
	size_t		free_b = 0,
				total_b = 0;
	int			prev = -1;
	int			rc;
	cudaError_t err;

	if (props == NULL)
		return tlcu_fail(TL_ERR_ARG, "device_props: props is NULL");
	rc = tlcu_check_ordinal("device_props", ordinal);
	if (rc != TL_OK)
		return rc;

	memset(&p, 0, sizeof(p));
	TLCU_CUDA_TRY(cudaGetDeviceProperties(&p, ordinal), "cudaGetDeviceProperties");

	/* Free memory needs a context on that device; switch and switch back. */
	TLCU_CUDA_TRY(cudaGetDevice(&prev), "cudaGetDevice");
	TLCU_CUDA_TRY(cudaSetDevice(ordinal), "cudaSetDevice");
	err = cudaMemGetInfo(&free_b, &total_b);
	(void) cudaSetDevice(prev);
	if (err != cudaSuccess)
		return tlcu_cuda_fail(err, "cudaMemGetInfo");

	memset(props, 0, sizeof(*props));
	snprintf(props->name, sizeof(props->name), "%s", p.name);
	props->total_memory = (uint64_t) p.totalGlobalMem;
	props->free_memory = (uint64_t) free_b;
	props->compute_major = p.major;
	props->compute_minor = p.minor;
	return TL_OK;
}

static int
api_shutdown(void)
{
	int			rc = TL_OK;

	tlcu_scratch_release();
	if (g_cublas != NULL)
	{
		cublasStatus_t st = cublasDestroy(g_cublas);

		g_cublas = NULL;
		if (st != CUBLAS_STATUS_SUCCESS)
			rc = tlcu_cublas_fail(st, "cublasDestroy");
	}
	/*
	 * No cudaDeviceReset: it would free every allocation of the process,
	 * including buffers the caller still holds.
	 */
	g_ready = false;
	g_device = -1;
	return rc;
}

static int
api_init(int ordinal)
{
	cublasHandle_t h = NULL;
	cublasStatus_t st;
	int			rc;

	rc = tlcu_check_ordinal("init", ordinal);
	if (rc != TL_OK)
		return rc;
	if (g_ready && g_device == ordinal)
		return TL_OK;
	if (g_ready)
	{
		rc = api_shutdown();
		if (rc != TL_OK)
			return rc;
	}

	TLCU_CUDA_TRY(cudaSetDevice(ordinal), "cudaSetDevice");
	/* Create the context now so that a broken device fails here, not later. */
	TLCU_CUDA_TRY(cudaFree(0), "context creation (cudaFree(0))");

	st = cublasCreate(&h);
	if (st != CUBLAS_STATUS_SUCCESS)
		return tlcu_cublas_fail(st, "cublasCreate");
	/*
	 * Plain FP32 products: no TF32 tensor-core shortcuts, so linear_fwd
	 * agrees with the CPU's cblas_sgemm to float rounding.
	 */
	st = cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
	if (st != CUBLAS_STATUS_SUCCESS)
	{
		(void) cublasDestroy(h);
		return tlcu_cublas_fail(st, "cublasSetMathMode");
	}
	/* The legacy default stream orders every kernel and copy of the plugin. */
	st = cublasSetStream(h, 0);
	if (st != CUBLAS_STATUS_SUCCESS)
	{
		(void) cublasDestroy(h);
		return tlcu_cublas_fail(st, "cublasSetStream");
	}

	g_cublas = h;
	g_device = ordinal;
	g_ready = true;
	return TL_OK;
}

/* ---- memory -------------------------------------------------------------- */

static int
api_alloc(void **d_ptr, size_t bytes)
{
	void	   *p = NULL;
	int			rc;

	if (d_ptr == NULL)
		return tlcu_fail(TL_ERR_ARG, "alloc: d_ptr is NULL");
	*d_ptr = NULL;
	if (bytes == 0)
		return tlcu_fail(TL_ERR_ARG, "alloc: zero bytes");
	rc = tlcu_require_init("alloc");
	if (rc != TL_OK)
		return rc;
	TLCU_CUDA_TRY(cudaMalloc(&p, bytes), "cudaMalloc");
	*d_ptr = p;
	return TL_OK;
}

/* Like free(): NULL is fine. */
static int
api_release(void *d_ptr)
{
	if (d_ptr == NULL)
		return TL_OK;
	TLCU_CUDA_TRY(cudaFree(d_ptr), "cudaFree");
	return TL_OK;
}

/* Copies of zero bytes do nothing and succeed. */
static int
api_upload(void *d_dst, const void *h_src, size_t bytes)
{
	int			rc;

	if (d_dst == NULL || h_src == NULL)
		return tlcu_fail(TL_ERR_ARG, "upload: NULL %s pointer", d_dst == NULL ? "device" : "host");
	if (bytes == 0)
		return TL_OK;
	rc = tlcu_require_init("upload");
	if (rc != TL_OK)
		return rc;
	TLCU_CUDA_TRY(cudaMemcpy(d_dst, h_src, bytes, cudaMemcpyHostToDevice), "upload (cudaMemcpy)");
	return TL_OK;
}

static int
api_download(void *h_dst, const void *d_src, size_t bytes)
{
	int			rc;

	if (h_dst == NULL || d_src == NULL)
		return tlcu_fail(TL_ERR_ARG, "download: NULL %s pointer", h_dst == NULL ? "host" : "device");
	if (bytes == 0)
		return TL_OK;
	rc = tlcu_require_init("download");
	if (rc != TL_OK)
		return rc;
	/* Waits for the kernels before it on the default stream. */
	TLCU_CUDA_TRY(cudaMemcpy(h_dst, d_src, bytes, cudaMemcpyDeviceToHost), "download (cudaMemcpy)");
	return TL_OK;
}

static int
api_synchronize(void)
{
	int			rc = tlcu_require_init("synchronize");

	if (rc != TL_OK)
		return rc;
	TLCU_CUDA_TRY(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
	return TL_OK;
}

/* ---- the exported table -------------------------------------------------- */

/* Filled by name, so the order of the struct's fields cannot be got wrong. */
static tl_cuda_api
tlcu_make_table(void)
{
	tl_cuda_api t;

	memset(&t, 0, sizeof(t));
	t.abi_version = TL_CUDA_ABI_VERSION;

	t.device_count = api_device_count;
	t.device_props = api_device_props;
	t.init = api_init;
	t.shutdown = api_shutdown;
	t.last_error = api_last_error;

	t.alloc = api_alloc;
	t.release = api_release;
	t.upload = api_upload;
	t.download = api_download;
	t.synchronize = api_synchronize;

	t.embedding_fwd = tlcu_embedding_fwd;
	t.linear_fwd = tlcu_linear_fwd;
	t.layernorm_fwd = tlcu_layernorm_fwd;
	t.rmsnorm_fwd = tlcu_rmsnorm_fwd;
	t.gelu_fwd = tlcu_gelu_fwd;
	t.silu_fwd = tlcu_silu_fwd;
	t.softmax_fwd = tlcu_softmax_fwd;
	t.attention_fwd = tlcu_attention_fwd;
	t.dropout_fwd = tlcu_dropout_fwd;
	t.cross_entropy_fwd = tlcu_cross_entropy_fwd;
	t.bce_logits_fwd = tlcu_bce_logits_fwd;

	t.qmatmul = tlcu_qmatmul;
	t.get_rows = tlcu_get_rows;
	t.rope = tlcu_rope;
	t.kv_store = tlcu_kv_store;
	t.attention_cached = tlcu_attention_cached;
	t.swiglu = tlcu_swiglu;
	t.add = tlcu_add;
	return t;
}

extern "C" __attribute__((visibility("default"))) const tl_cuda_api *tl_cuda_get_api(void);

extern "C" __attribute__((visibility("default"))) const tl_cuda_api *
tl_cuda_get_api(void)
{
	/* A function-local static: initialised once, thread-safely, on first use. */
	static const tl_cuda_api table = tlcu_make_table();

	return &table;
}
