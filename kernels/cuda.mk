# kernels/cuda.mk -- the optional CUDA plugin, build/tutor_llm_cuda.so.
#
# Included by the top-level Makefile after $(PGXS), so PGXS's pkglibdir,
# INSTALL_SHLIB and MKDIR_P are defined.  The top-level Makefile (or
# test/core.mk) also defines CORE_LIB (the standalone core library) and
# CORE_CFLAGS (-Isrc/core -Isrc/models and the OpenBLAS include path),
# which the parity test needs.
#
# The plugin links the CUDA runtime statically and cuBLAS dynamically;
# the core never links either, it dlopen()s the plugin.  Where nvcc is
# not found, CUDA_PLUGIN is empty and the targets only say so.
#
# Targets: cuda-plugin, install-cuda, check-cuda, clean-cuda.
# Knobs:   NVCC=path/to/nvcc (NVCC= to skip CUDA), CUDA_HOME, CUDA_GENCODE.

# Resolved once (":="), not at every use.
ifndef NVCC
NVCC := $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
endif

ifneq ($(strip $(NVCC)),)

# /usr/local/cuda/bin/nvcc -> /usr/local/cuda
CUDA_HOME ?= $(patsubst %/bin/,%,$(dir $(NVCC)))
# The folder holding libcublas.so: lib64 on most installs (a link to
# targets/x86_64-linux/lib on the toolkit's own layout), plain lib on
# distribution packages.
CUDA_LIBDIR ?= $(firstword $(foreach d,$(CUDA_HOME)/lib64 $(CUDA_HOME)/targets/x86_64-linux/lib $(CUDA_HOME)/lib $(CUDA_HOME)/lib/x86_64-linux-gnu,$(if $(wildcard $(d)/libcublas.so),$(d))) $(CUDA_HOME)/lib64)

CUDA_PLUGIN = build/tutor_llm_cuda.so

# Ampere (A100) and Hopper (H100/H200) machine code, plus Hopper PTX that
# newer GPUs can compile at load time.
CUDA_GENCODE ?= -gencode arch=compute_80,code=sm_80 \
				-gencode arch=compute_90,code=sm_90 \
				-gencode arch=compute_90,code=compute_90

CUDA_SRCS = $(wildcard kernels/*.cu)
CUDA_OBJS = $(patsubst kernels/%.cu,build/cuda/%.o,$(CUDA_SRCS))
CUDA_DEPS = $(wildcard kernels/*.cuh) src/core/tl_cuda_api.h src/core/tl_status.h src/core/tl_quant.h

# -fvisibility=hidden and --exclude-libs keep every symbol but the entry
# point (tl_cuda_get_api) out of the plugin's dynamic symbol table, the
# statically linked cudart's included.  Static cudart is nvcc's default.
CUDA_NVCCFLAGS = -O2 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden -Isrc/core $(CUDA_GENCODE)
CUDA_LDFLAGS = -shared -L$(CUDA_LIBDIR) -Xlinker -rpath,$(CUDA_LIBDIR) \
			   -Xlinker --exclude-libs,ALL -Xlinker --no-undefined
CUDA_LDLIBS = -lcublas

build/cuda/%.o: kernels/%.cu $(CUDA_DEPS)
	@mkdir -p $(dir $@)
	$(NVCC) $(CUDA_NVCCFLAGS) -c $< -o $@

$(CUDA_PLUGIN): $(CUDA_OBJS)
	@mkdir -p $(dir $@)
	$(NVCC) $(CUDA_LDFLAGS) -o $@ $(CUDA_OBJS) $(CUDA_LDLIBS)

cuda-plugin: $(CUDA_PLUGIN)

install-cuda: $(CUDA_PLUGIN)
	$(MKDIR_P) '$(DESTDIR)$(pkglibdir)'
	$(if $(INSTALL_SHLIB),$(INSTALL_SHLIB),install -m 755) $(CUDA_PLUGIN) '$(DESTDIR)$(pkglibdir)/tutor_llm_cuda.so'

# Skips itself (exit 0) where the plugin loads but finds no GPU or driver.
check-cuda: $(CUDA_PLUGIN) build/test_cuda_parity
	build/test_cuda_parity $(CUDA_PLUGIN)

else

# No nvcc: nothing to build, and the targets say why.

CUDA_PLUGIN =

cuda-plugin install-cuda check-cuda:
	@echo "CUDA skipped: nvcc not found (set NVCC=/path/to/nvcc to build the CUDA plugin)"

endif

# The parity test links the core only: the core dlopen()s the plugin, so
# no CUDA library appears here.  CORE_LDLIBS comes from test/core.mk.
CUDA_TEST_LDLIBS ?= -lcmocka $(or $(CORE_LDLIBS),-lopenblas -lm -ldl)

build/test_cuda_parity: test/cuda/test_parity.c test/bench/bench_util.h $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CORE_CFLAGS) -Itest/bench -o $@ $< $(CORE_LIB) $(CUDA_TEST_LDLIBS)

# (The top-level EXTRA_CLEAN = build covers these too.)
clean-cuda:
	rm -rf build/cuda build/tutor_llm_cuda.so build/test_cuda_parity

.PHONY: cuda-plugin install-cuda check-cuda clean-cuda
