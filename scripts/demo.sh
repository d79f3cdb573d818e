#!/usr/bin/env bash
# scripts/demo.sh -- the main job on an embedded default.
#
# Installs what is missing, builds and installs tutor_llm, starts a
# throwaway cluster under build/cluster, loads a generated school, and
# runs the compute core inside PostgreSQL.  Run as root or with sudo
# rights; the cluster is removed when the script ends.
source "$(dirname "$0")/common.sh"

ensure_packages
build_and_install
start_cluster

log "loading the sample school (scripts/sample_school.sql)"
PSQL -c "CREATE DATABASE school"
export PGDATABASE=school
PSQL -f "$REPO_ROOT/scripts/sample_school.sql"
PSQL -c "CREATE EXTENSION tutor_llm"

PSQL <<'SQL'
\echo
\echo '-- the school'
SELECT (SELECT count(*) FROM school.students)  AS students,
       (SELECT count(*) FROM school.skills)    AS skills,
       (SELECT count(*) FROM school.items)     AS items,
       (SELECT count(*) FROM school.responses) AS responses,
       round(avg(correct::int), 3)             AS share_correct
FROM school.responses;

\echo '-- where tutor_llm computes (SELECT * FROM tutor.device_info())'
SELECT backend, name, total_memory_mb, threads, selected, blas FROM tutor.device_info();

\echo '-- train a knowledge-tracing Transformer on the responses (NOTICEs per epoch hidden here)'
SET client_min_messages = warning;
\echo '-- SELECT tutor.train_kt('school_kt', 'school.responses')'
SELECT jsonb_pretty(tutor.train_kt('school_kt', 'school.responses')
       - '{rows_read,rows_skipped,students_skipped,stopped_by_time_budget}'::text[]) AS report;
RESET client_min_messages;

\echo '-- and the non-neural baseline in the same API'
SET client_min_messages = warning;
SELECT r->>'best_valid_auc' AS pfa_valid_auc
FROM tutor.train_kt('school_pfa', 'school.responses', '{"kind": "pfa"}') r;
RESET client_min_messages;

\echo '-- every answer predicted from the earlier ones (next-answer protocol)'
SELECT m.model, round((e->>'auc')::numeric, 3) AS auc, round((e->>'accuracy')::numeric, 3) AS accuracy,
       round((e->>'rmse')::numeric, 3) AS rmse, round((e->>'ece')::numeric, 3) AS ece
FROM (VALUES ('school_kt'), ('school_pfa')) AS m(model),
     LATERAL tutor.evaluate_kt(m.model, 'school.responses') e;

\echo '-- what student 7 has mastered (SELECT * FROM tutor.mastery(7))'
SELECT skill_id, round(p_correct::numeric, 3) AS p_correct, attempts, last_seen::date
FROM tutor.mastery(7, 'school_kt') ORDER BY p_correct;

\echo '-- a new student gets the prior'
SELECT skill_id, round(p_correct::numeric, 3) AS p_correct FROM tutor.mastery(100000, 'school_kt') LIMIT 3;

\echo '-- the nightly job: every student x skill into a table'
CREATE TABLE school.mastery_nightly AS SELECT now() AS computed_at, * FROM tutor.mastery_all('school_kt');
SELECT count(*) AS rows, count(DISTINCT student_id) AS students,
       round(avg(p_correct)::numeric, 3) AS mean_mastery FROM school.mastery_nightly;

\echo '-- the compute core also trains a small LM on a toy task: SELECT * FROM tutor.selftest(200)'
SELECT step, round(held_out_loss::numeric, 4) AS held_out_loss, round(elapsed_ms::numeric) AS elapsed_ms
FROM tutor.selftest(200) WHERE step IN (20, 100, 200);
SQL
log "demo finished (tutor_llm $(PSQL -At -c 'SELECT tutor.version()'))"
