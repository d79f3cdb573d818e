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

\echo '-- the compute core trains a 2-layer Transformer in this backend'
\echo '-- (SELECT * FROM tutor.selftest(400)): loss falls from chance (ln 10 = 2.30)'
SELECT step, round(train_loss::numeric, 4) AS train_loss,
       round(held_out_loss::numeric, 4) AS held_out_loss,
       round(elapsed_ms::numeric) AS elapsed_ms
FROM tutor.selftest(400);
SQL
log "demo finished (tutor_llm $(PSQL -At -c 'SELECT tutor.version()'))"
