#!/usr/bin/env bash
# scripts/test.sh -- every test of tutor_llm.
#
# Installs what is missing, then runs: the core's cmocka unit tests, the
# same under ASan+UBSan, the CUDA/CPU parity test (it skips with one line
# when no device is present), and the pg_regress suite against a
# throwaway cluster.  Exits non-zero on the first failing suite.
source "$(dirname "$0")/common.sh"

ensure_packages
cd "$REPO_ROOT"

passed=0
run_suite() {
	local name=$1
	shift
	log "$name"
	if "$@"; then
		passed=$((passed + 1))
	else
		echo "suites: $passed passed, 1 failed"
		exit 1
	fi
}

run_suite "core unit tests (cmocka)" make -s PG_CONFIG="$PG_CONFIG" check-core
run_suite "core unit tests under ASan+UBSan" make -s PG_CONFIG="$PG_CONFIG" check-sanitize
run_suite "CUDA parity" make -s PG_CONFIG="$PG_CONFIG" check-cuda
build_and_install
start_cluster
regress() {
	make -s PG_CONFIG="$PG_CONFIG" installcheck || { cat build/regress/regression.diffs 2>/dev/null; return 1; }
}
run_suite "SQL regression tests (pg_regress)" regress
echo "suites: $passed passed, 0 failed"
