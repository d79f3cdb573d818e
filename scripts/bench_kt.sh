#!/usr/bin/env bash
# scripts/bench_kt.sh DATA_DIR [--quick] [kt_benchmark.py options]
#
# The knowledge-tracing benchmark on public datasets: installs what is
# missing, builds and installs tutor_llm, starts a throwaway cluster,
# makes a Python environment under build/bench-venv (numpy and a CPU-usable
# PyTorch for the reference implementation), then runs
# test/bench/kt_benchmark.py.  DATA_DIR holds kt/ (see its README.md).
# Run as root or with sudo rights; the cluster is removed at the end.
#
#   bash scripts/bench_kt.sh /path/to/data --quick        # smoke run, minutes
#   bash scripts/bench_kt.sh /path/to/data                # everything, hours on 2 cores
#   bash scripts/bench_kt.sh /path/to/data --datasets assist2009_skill
#
# BENCH_TORCH=0 skips installing PyTorch (the reference then reports itself
# skipped); TORCH_VERSION picks the wheel (default below); BENCH_BUILD=0
# measures the tutor_llm already installed instead of building this checkout.
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 DATA_DIR [--quick] [--datasets a,b] [--folds 1,2] [--epochs N] [--no-torch]" >&2
	exit 2
fi
DATA_DIR=$(cd "$1" && pwd)
shift

source "$(dirname "$0")/common.sh"

TORCH_VERSION=${TORCH_VERSION:-2.9.1}
VENV="$REPO_ROOT/build/bench-venv"

REQUIRED_PACKAGES+=(python3 python3-venv)
ensure_packages
if [ "${BENCH_BUILD:-1}" != 0 ]; then
	build_and_install
fi

# ---- the Python environment ----
# PyPI's Linux torch wheel is built for CUDA and loads the CUDA runtime
# libraries when imported, even on a machine without a GPU; PyPI has no
# CPU-only wheel.  So: torch without its dependency list, then that list
# less triton (a compiler for GPU kernels that the CPU never uses).
make_venv() {
	if [ ! -x "$VENV/bin/python" ]; then
		log "making the Python environment $VENV"
		python3 -m venv "$VENV"
	fi
	"$VENV/bin/python" -c 'import numpy' 2>/dev/null || "$VENV/bin/pip" install -q numpy
	if [ "${BENCH_TORCH:-1}" = 0 ]; then
		return 0
	fi
	if "$VENV/bin/python" -c 'import torch; torch.randn(2, 2) @ torch.randn(2, 2)' 2>/dev/null; then
		return 0
	fi
	log "installing torch==$TORCH_VERSION for the CPU (without triton)"
	"$VENV/bin/pip" install -q --no-deps "torch==$TORCH_VERSION" || return 1
	local deps
	deps=$("$VENV/bin/python" - <<-'PY'
		from importlib.metadata import requires
		out = []
		for r in requires("torch") or []:
		    req, _, marker = r.partition(";")
		    if "extra ==" in marker or req.strip().startswith("triton"):
		        continue
		    out.append(req.replace(" ", ""))
		print(" ".join(out))
	PY
	) || return 1
	# pip then warns that triton is missing: expected
	# shellcheck disable=SC2086
	"$VENV/bin/pip" install -q $deps || return 1
	"$VENV/bin/python" -c 'import torch; torch.randn(2, 2) @ torch.randn(2, 2)'
}
if ! make_venv; then
	echo "warning: PyTorch could not be installed; the reference will report itself skipped" >&2
fi
if [ ! -x "$VENV/bin/python" ]; then
	die "no Python environment at $VENV"
fi

# A cluster of its own under build/bench/, so that a test or demo run in the
# same checkout (which recreates build/cluster) cannot remove it mid-run,
# on ports above theirs so that two starts do not race for one port.
CLUSTER_HOME="$REPO_ROOT/build/bench/cluster" PORT_BASE=54400
start_cluster
PSQL -c "CREATE DATABASE kt_bench"
export PGDATABASE=kt_bench PSQL_BIN="$(PG_BIN)/psql" TUTOR_LIB="$("$PG_CONFIG" --pkglibdir)/tutor_llm.so"

log "running test/bench/kt_benchmark.py"
"$VENV/bin/python" "$REPO_ROOT/test/bench/kt_benchmark.py" "$DATA_DIR" \
	--json-out "$REPO_ROOT/build/bench_kt_results.json" "$@"
