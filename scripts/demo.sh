#!/usr/bin/env bash
# scripts/demo.sh -- the main job on an embedded default.
#
# Installs what is missing, builds and installs tutor_llm, starts a
# throwaway cluster under build/cluster, loads a generated school, and
# runs the compute core inside PostgreSQL.  Run as root or with sudo
# rights; the cluster is removed when the script ends.
source "$(dirname "$0")/common.sh"

ensure_packages
bash "$REPO_ROOT/scripts/fetch_model.sh"
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

\echo '-- plans read items and prerequisites from the school tables; store that once'
SELECT tutor.configure_plans('{"items": "school.items",
  "prerequisites": "SELECT skill_id, requires AS prerequisite_id FROM school.skills WHERE requires IS NOT NULL"}');

\echo '-- what student 7 should do next (SELECT * FROM tutor.generate_plan(7::bigint))'
SELECT step, activity, skill_id, item_ids, round(expected_p_correct::numeric, 2) AS p,
       to_char(due, 'Dy DD Mon') AS due, minutes, reason
FROM tutor.generate_plan(7::bigint, '{"model": "school_kt", "horizon_days": 3}');

\echo '-- a new student starts on the skills without prerequisites, here in Chinese'
SELECT step, activity, skill_id, item_ids, reason
FROM tutor.generate_plan(100000::bigint, '{"model": "school_kt", "horizon_days": 1, "language": "zh"}');

\echo '-- the nightly job: a plan for every student, written to tutor.plans and tutor.plan_steps'
SELECT jsonb_pretty(tutor.personalize('school.students', '{"model": "school_kt"}')
       - '{predict_seconds,plan_seconds,write_seconds,answers_read}'::text[]) AS report;
SELECT * FROM tutor.plan_coverage(current_date, 'school.students');

\echo '-- for the class teacher: mastery per skill, and who is at risk on skills 11 and 12'
SELECT skill_id, n_students, round(mean_p::numeric, 2) AS mean_p, round(p10::numeric, 2) AS p10,
       round(median::numeric, 2) AS median, round(mastered_share::numeric, 2) AS mastered
FROM tutor.skill_report('school.students', 'school_kt') ORDER BY skill_id::int;
SELECT student_id, skill_id, round(p_correct::numeric, 2) AS p_correct, attempts
FROM tutor.students_at_risk(ARRAY['11', '12'], 'school.students', 'school_kt', 0.45) LIMIT 5;

\echo '-- the language model runs inside the database: SmolLM2-135M from its GGUF file, on the CPU'
SELECT info->>'architecture' AS architecture, info->'parameters' AS parameters,
       info->'tensor_types' AS tensor_types, info->>'chat_template' AS chat_template
FROM tutor.llm_load('default', 'SmolLM2-135M-Instruct.Q4_1.gguf') AS info;

\echo '-- a study tip for student 7, written by the model from its two weakest skills'
WITH weakest AS (
    SELECT s.name, m.p_correct
    FROM tutor.mastery(7, 'school_kt') m JOIN school.skills s ON s.skill_id = m.skill_id::bigint
    ORDER BY m.p_correct LIMIT 2)
SELECT string_agg(name, ' and ' ORDER BY p_correct) AS weakest_skills,
       tutor.chat(jsonb_build_array(
           jsonb_build_object('role', 'system', 'content',
               'You are a friendly maths tutor for a twelve-year-old. Answer in at most two sentences.'),
           jsonb_build_object('role', 'user', 'content',
               format('I find %s hard. Give me one practical study tip.', string_agg(name, ' and ' ORDER BY p_correct)))),
           '{"max_tokens": 80}') AS study_tip
FROM weakest \gx

\echo '-- the compute core also trains a small LM on a toy task: SELECT * FROM tutor.selftest(200)'
SELECT step, round(held_out_loss::numeric, 4) AS held_out_loss, round(elapsed_ms::numeric) AS elapsed_ms
FROM tutor.selftest(200) WHERE step IN (20, 100, 200);
SQL
log "demo finished (tutor_llm $(PSQL -At -c 'SELECT tutor.version()'))"
