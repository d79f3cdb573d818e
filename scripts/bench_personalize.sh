#!/usr/bin/env bash
# scripts/bench_personalize.sh -- throughput of tutor.personalize (a
# benchmark that prints figures, not a test).
#
#   bash scripts/bench_personalize.sh [STUDENTS]     (default 100000)
#
# Generates STUDENTS students with 30 answers each (20 skills in
# prerequisite chains, 200 items; test/bench/personalize_data.sql) in a
# throwaway cluster, trains the default Transformer on 3,000 of them
# (3 epochs: throughput does not depend on how well it is trained) and a
# PFA model, then plans every student with each and prints students/s.
# The issue's target: 100,000 students in at most 60 s on 2 CPU cores.
# BENCH_BUILD=0 skips building and installing.
export CLUSTER_HOME=${CLUSTER_HOME:-$(cd "$(dirname "$0")/.." && pwd)/build/bench/personalize-cluster}
export PORT_BASE=${PORT_BASE:-54700}
source "$(dirname "$0")/common.sh"

STUDENTS=${1:-100000}
ensure_packages
[ "${BENCH_BUILD:-1}" = 0 ] || build_and_install
start_cluster
PSQL -c "CREATE EXTENSION tutor_llm"
log "generating $STUDENTS students x 30 answers"
PSQL -v students="$STUDENTS" -f "$REPO_ROOT/test/bench/personalize_data.sql"
log "training (3,000 students)"
PSQL -At -c "SET client_min_messages = warning" \
	-c "SELECT 'transformer valid AUC ' || round((tutor.train_kt('bench_kt', 'bench.train', '{\"epochs\": 3}')->>'best_valid_auc')::numeric, 3)" \
	-c "SELECT 'pfa valid AUC ' || round((tutor.train_kt('bench_pfa', 'bench.train', '{\"kind\": \"pfa\"}')->>'best_valid_auc')::numeric, 3)"
log "machine"
echo "CPUs: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
for model in bench_kt bench_pfa; do
	log "tutor.personalize, model $model"
	PSQL -At <<SQL
SELECT tutor.personalize('bench.students', jsonb_build_object(
    'model', '$model', 'source', 'bench.responses', 'items', 'bench.items',
    'prerequisites', 'bench.skills', 'as_of', '2026-11-01 06:00+00')) AS r \\gset
SELECT jsonb_pretty(:'r'::jsonb);
SELECT format('%s: %s students in %s s = %s students/s; target 100,000 in <= 60 s (%s students/s): %s',
              '$model', r->>'students', r->>'seconds', r->>'students_per_second',
              round(100000 / 60.0, 1),
              CASE WHEN (r->>'students_per_second')::float8 >= 100000 / 60.0 THEN 'met' ELSE 'not met' END)
FROM (SELECT :'r'::jsonb AS r) x;
SELECT tutor.delete_plans('2100-01-01') AS plans_deleted \\gset
VACUUM tutor.plans, tutor.plan_steps;
SQL
done
