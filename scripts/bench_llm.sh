#!/usr/bin/env bash
# scripts/bench_llm.sh -- the language model inside PostgreSQL: memory of a
# second backend and speed through SQL (a benchmark that prints figures,
# not a test).  The comparison with llama.cpp is test/bench/llm_oracle.py.
#
#   bash scripts/bench_llm.sh
#
# BENCH_BUILD=0 skips building and installing.
export CLUSTER_HOME=${CLUSTER_HOME:-$(cd "$(dirname "$0")/.." && pwd)/build/bench/llm-cluster}
export PORT_BASE=${PORT_BASE:-54750}
source "$(dirname "$0")/common.sh"

ensure_packages
bash "$REPO_ROOT/scripts/fetch_model.sh"
[ "${BENCH_BUILD:-1}" = 0 ] || build_and_install
start_cluster
PSQL -c "CREATE EXTENSION tutor_llm"
log "machine"
echo "CPUs: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
log "two backends, one model"
PATH="$(PG_BIN):$PATH" python3 "$REPO_ROOT/test/bench/llm_memory.py"
