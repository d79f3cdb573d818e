#!/usr/bin/env bash
# scripts/bench_kt_memory.sh [ROWS] -- peak memory of a backend that trains
# on a large generated source (default 10,000,000 answers).
#
# The source is read through a cursor in chunks, so a backend's peak
# resident memory should grow with the compact answer arrays (12 bytes per
# answer) and the model's activations, never with the table's size on disk.
# Prints the table size, the backend's peak RSS (VmHWM) and the time for
# the PFA baseline and for one time-limited Transformer run.
source "$(dirname "$0")/common.sh"

ROWS=${1:-10000000}
ensure_packages
build_and_install
start_cluster
PSQL -c "CREATE EXTENSION tutor_llm"

log "generating $ROWS answers"
PSQL <<SQL
CREATE TABLE big AS
SELECT s AS student_id, 1 + (s * 7 + n * 13) % 5000 AS item_id, 1 + (s * 7 + n * 13) % 100 AS skill_id,
       ((s * 31 + n * 17) % 10) < 6 AS correct, n AS answered_at
FROM generate_series(1, ($ROWS / 100)::int) s, generate_series(1, 100) n;
ANALYZE big;
SQL
PSQL -At -c "SELECT 'table size: ' || pg_size_pretty(pg_total_relation_size('big'))"

# Run one statement in its own backend; report its time and peak RSS.
peak_rss() {
	local sql=$1 label=$2 out pid="" hwm=0 h start end
	out=$(mktemp)
	start=$(date +%s.%N)
	PGAPPNAME=tutor_memory PSQL -At -c "$sql" >"$out" 2>&1 &
	local client=$!
	while kill -0 "$client" 2>/dev/null; do
		[ -z "$pid" ] && pid=$(PSQL -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'tutor_memory'")
		if [ -n "$pid" ]; then
			h=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null)
			[ -n "$h" ] && [ "$h" -gt "$hwm" ] && hwm=$h
		fi
		sleep 0.5
	done
	wait "$client" || { cat "$out"; die "$label failed"; }
	end=$(date +%s.%N)
	printf '%s: %.1f s, backend peak RSS %d MB\n' "$label" "$(awk "BEGIN {print $end - $start}")" $((hwm / 1024))
	rm -f "$out"
}

log "training on $ROWS answers"
peak_rss "SET client_min_messages = warning; SELECT tutor.train_kt('big_pfa', 'big', '{\"kind\": \"pfa\", \"epochs\": 1}');" "PFA, 1 epoch"
peak_rss "SET client_min_messages = warning; SELECT tutor.train_kt('big_kt', 'big', '{\"epochs\": 1, \"time_budget\": 60}');" "Transformer, 60 s budget"
