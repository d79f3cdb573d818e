# tutor_llm -- PGXS build of the extension, plus the standalone core.
#
#   make && make install          the extension (and the CUDA plugin when nvcc exists)
#   make installcheck             pg_regress against a running server
#   make check-core               core unit tests (cmocka), no PostgreSQL needed
#   make check-sanitize           the same under ASan + UBSan
#   make check-cuda               CUDA/CPU parity (skips without a device)
#   make bench                    core benchmark (prints figures; not a test)
#   make tapcheck                 TAP tests (test/tap/*.pl) on clusters of their own

EXTENSION = tutor_llm
MODULE_big = tutor_llm
DATA = sql/tutor_llm--0.1.0.sql sql/tutor_llm--0.1.0--0.2.0.sql sql/tutor_llm--0.2.0--0.3.0.sql \
	sql/tutor_llm--0.3.0--0.4.0.sql
PGFILEDESC = "tutor_llm - personalised learning inside PostgreSQL"

# The compute core, the models and the planner never include postgres.h;
# src/pg is the glue.
CORE_SRCS = $(wildcard src/core/*.c) $(wildcard src/models/*.c) $(wildcard src/plan/*.c) $(wildcard src/llm/*.c)
PG_SRCS = $(wildcard src/pg/*.c)
OBJS = $(CORE_SRCS:.c=.o) $(PG_SRCS:.c=.o)

REGRESS = version guc device selftest kt_data kt_train kt_catalog kt_errors kt_cancel plan plan_batch llm
REGRESS_OPTS = --outputdir=build/regress
# Concurrency: a training session watched from another one (needs
# tutor_llm in shared_preload_libraries, as the scripts' clusters have).
ISOLATION = kt_progress
ISOLATION_OPTS = --outputdir=build/isolation

BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)

# Core sources are C11 with declarations where they are used.  Threads
# come from OpenBLAS alone; -fopenmp-simd only honours "omp simd" loop
# pragmas (no OpenMP runtime), and -fno-trapping-math lets the compiler
# vectorise loops with float compares (tl_math.h).
PG_CFLAGS = -std=gnu11 -O3 -fopenmp-simd -fno-trapping-math -ffp-contract=off -Wno-declaration-after-statement
PG_CPPFLAGS = -Isrc/core -Isrc/models -Isrc/plan -Isrc/llm $(BLAS_CFLAGS)
SHLIB_LINK = $(BLAS_LIBS) -lm -ldl -lpthread
EXTRA_CLEAN = build

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

include test/core.mk
-include kernels/cuda.mk

# PGXS does not track header dependencies: every object depends on every
# header of the project, so a changed struct never leaves a stale object.
$(OBJS): $(wildcard src/*/*.h)

all: cuda-plugin
install: install-cuda

.PHONY: check-core check-sanitize check-cuda bench cuda-plugin install-cuda

# pg_regress writes its results under build/ rather than the source tree.
installcheck: regress-outputdir
regress-outputdir:
	@mkdir -p build/regress build/isolation
.PHONY: regress-outputdir

# TAP tests: each script starts a cluster of its own with
# PostgreSQL::Test::Cluster against the installed server.  prove runs in
# TAP_TESTDIR and the tests write under TAP_TESTDIR/tmp_check, so both must
# be writable by whoever runs prove (scripts/test.sh runs it as the
# cluster's OS user when it runs as root: PROVE="runuser -u USER -- prove").
TAP_TESTDIR ?= $(CURDIR)/build/tap
TAP_SCRIPTS ?= $(CURDIR)/test/tap/*.pl
tapcheck:
	rm -rf '$(TAP_TESTDIR)/tmp_check'
	$(MKDIR_P) '$(TAP_TESTDIR)'
	cd '$(TAP_TESTDIR)' && \
	TESTDIR='$(TAP_TESTDIR)' PATH="$(bindir):$$PATH" \
	PG_REGRESS='$(pgxsdir)/src/test/regress/pg_regress' \
	$(PROVE) -I '$(pgxsdir)/src/test/perl' $(PROVE_FLAGS) $(TAP_SCRIPTS)
.PHONY: tapcheck
