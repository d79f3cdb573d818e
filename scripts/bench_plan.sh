#!/usr/bin/env bash
# scripts/bench_plan.sh [--quick] [plan_efficacy.py options]
#
# The learning-efficacy benchmark on simulated students: builds and installs
# tutor_llm, starts a throwaway cluster and runs test/bench/plan_efficacy.py,
# which trains a knowledge-tracing model on a simulated past and then lets
# copies of every student practise for 30 days under tutor_llm's plans and
# under three simple policies, and prints learning gains and calibration.
# Run as root or with sudo rights; the cluster is removed at the end.  It is
# not part of `make check`: it prints figures, it does not pass or fail.
#
#   bash scripts/bench_plan.sh --quick                 # 60 students, 10 days
#   bash scripts/bench_plan.sh                         # 300 students, 30 days
#   bash scripts/bench_plan.sh --policies b,c,d        # the baselines alone
#
# BENCH_BUILD=0 measures the tutor_llm already installed instead of building
# this checkout.  Figures also go to build/bench_plan_results.json.
source "$(dirname "$0")/common.sh"

REQUIRED_PACKAGES+=(python3)
ensure_packages
if [ "${BENCH_BUILD:-1}" != 0 ]; then
	build_and_install
fi

# A cluster of its own under build/bench/, on ports of its own, so that a
# test run or another benchmark in the same checkout cannot disturb it.
CLUSTER_HOME="$REPO_ROOT/build/bench/plan-cluster" PORT_BASE=54500
start_cluster
PSQL -c "CREATE DATABASE plan_bench"
export PGDATABASE=plan_bench PSQL_BIN="$(PG_BIN)/psql" TUTOR_LIB="$("$PG_CONFIG" --pkglibdir)/tutor_llm.so"

log "running test/bench/plan_efficacy.py"
python3 "$REPO_ROOT/test/bench/plan_efficacy.py" \
	--json-out "$REPO_ROOT/build/bench_plan_results.json" "$@"
