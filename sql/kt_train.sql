-- train a knowledge-tracing Transformer on students 1..200, evaluate on 201..240
SET client_min_messages = warning;	-- per-epoch NOTICEs carry timings
SELECT r->>'model' AS model, r->>'kind' AS kind, (r->>'version')::int AS version,
       (r->>'deployed')::bool AS deployed, (r->>'students')::int AS students,
       (r->>'interactions')::int AS interactions, (r->>'items')::int AS items,
       (r->>'skills')::int AS skills, (r->>'epochs')::int BETWEEN 1 AND 15 AS ran_epochs,
       (r->>'best_valid_auc')::float8 > 0.6 AS learned
FROM tutor.train_kt('kt_small', 'kt.train', '{"d_model": 32, "heads": 4, "epochs": 15, "seed": 7}') r;

-- held-out students: a clear margin over the base rate (AUC 0.5)
SELECT (e->>'n')::int AS n, (e->>'students')::int AS students,
       (e->>'auc')::float8 > 0.70 AS auc_margin_over_base_rate,
       (e->>'accuracy')::float8 > 0.6 AS accurate,
       (e->>'ece')::float8 < 0.15 AS calibrated,
       (e->>'log_loss')::float8 < 0.69 AS beats_coin_log_loss
FROM tutor.evaluate_kt('kt_small', 'kt.test') e;

-- the baseline in the same API
SELECT (r->>'kind') AS kind, (r->>'deployed')::bool AS deployed
FROM tutor.train_kt('kt_pfa', 'kt.train', '{"kind": "pfa"}') r;
SELECT (e->>'auc')::float8 > 0.65 AS pfa_learned FROM tutor.evaluate_kt('kt_pfa', 'kt.test') e;

-- mastery: one row per skill, probabilities in (0, 1), attempts and last answer
SELECT count(*) AS skills, bool_and(p_correct > 0 AND p_correct < 1) AS probabilities,
       sum(attempts) AS answers, max(last_seen) AS last_seen
FROM tutor.mastery(5::bigint, 'kt_small');
-- abler students get higher mastery (a student's history comes from the
-- model's source, kt.train: students 1..200)
SELECT corr(m.p_correct, s.ability) > 0.5 AS tracks_ability
FROM kt.students s, tutor.mastery(s.student_id, 'kt_small') m
WHERE s.student_id <= 200;
-- an unknown student gets the prior, not an error; so does any id type
SELECT count(*) AS skills, sum(attempts) AS answers, bool_and(last_seen IS NULL) AS never_seen
FROM tutor.mastery(999999, 'kt_small');
SELECT count(*) FROM tutor.mastery('4711', 'kt_small');
SELECT * FROM tutor.mastery('not a number'::text, 'kt_small');

-- predict_correct agrees with the data: easy items above hard ones for a student
SELECT avg(tutor.predict_correct(210, i.item_id, 'kt_small')) FILTER (WHERE difficulty < -0.5)
     > avg(tutor.predict_correct(210, i.item_id, 'kt_small')) FILTER (WHERE difficulty > 0.5) AS easy_above_hard
FROM kt.items i;
SELECT tutor.predict_correct(210, 'no such item', 'kt_small') BETWEEN 0 AND 1 AS unknown_item_ok;

-- batch scoring for INSERT ... SELECT: every student x every skill
CREATE TABLE kt.mastery_nightly AS SELECT * FROM tutor.mastery_all('kt_small');
SELECT count(*) AS rows, count(DISTINCT student_id) AS students FROM kt.mastery_nightly;
SELECT count(*) AS rows FROM tutor.mastery_all('kt_small', 'SELECT student_id FROM kt.students WHERE student_id <= 3');
-- the same numbers as the per-student function
SELECT bool_and(abs(a.p_correct - b.p_correct) < 1e-6) AS same_as_mastery
FROM kt.mastery_nightly a JOIN tutor.mastery(5::bigint, 'kt_small') b USING (skill_id)
WHERE a.student_id = '5';

-- determinism: the same data, options and seed give the same weights
SELECT tutor.train_kt('kt_det', 'kt.train', '{"d_model": 16, "heads": 2, "layers": 1, "epochs": 2, "seed": 3}') IS NOT NULL AS trained;
SELECT tutor.train_kt('kt_det', 'kt.train', '{"d_model": 16, "heads": 2, "layers": 1, "epochs": 2, "seed": 3}') IS NOT NULL AS trained;
SELECT tutor.train_kt('kt_det', 'kt.train', '{"d_model": 16, "heads": 2, "layers": 1, "epochs": 2, "seed": 4}') IS NOT NULL AS trained;
SELECT count(DISTINCT md5(weights)) FILTER (WHERE version IN (1, 2)) AS same_seed_distinct,
       count(DISTINCT md5(weights)) AS all_distinct
FROM tutor.models WHERE name = 'kt_det';

-- time_budget: training stops early, keeps the best epoch so far, and saves
SELECT (r->>'stopped_by_time_budget')::bool AS stopped, (r->>'epochs')::int < 1000 AS fewer_epochs,
       (r->>'best_epoch')::int >= 1 AS kept_best, (r->>'version')::int AS version
FROM tutor.train_kt('kt_budget', 'kt.train', '{"d_model": 16, "heads": 2, "layers": 1, "epochs": 1000, "patience": 1000, "time_budget": 1}') r;

-- other column names and types: text ids, numeric correctness, dates as time
SELECT (r->>'students')::int AS students, (r->>'items')::int AS items
FROM tutor.train_kt('kt_renamed', 'kt.renamed',
     '{"d_model": 16, "heads": 2, "layers": 1, "epochs": 1,
       "columns": {"student_id": "learner", "item_id": "question", "skill_id": "topic",
                   "correct": "score", "answered_at": "answered_at"}}') r;
SELECT count(*) AS skills FROM tutor.mastery('s5'::text, 'kt_renamed');
-- item-only and skill-only data
SELECT (r->>'items')::int AS items, (r->>'skills')::int AS skills
FROM tutor.train_kt('kt_items_only', 'SELECT student_id, item_id, correct, answered_at FROM kt.train',
     '{"d_model": 16, "heads": 2, "layers": 1, "epochs": 1, "columns": {"skill_id": null}}') r;
SELECT count(*) AS skills FROM tutor.mastery(1, 'kt_items_only');
SELECT (r->>'items')::int AS items, (r->>'skills')::int AS skills
FROM tutor.train_kt('kt_skills_only', 'SELECT student_id, skill_id, correct, answered_at FROM kt.train;',
     '{"d_model": 16, "heads": 2, "layers": 1, "epochs": 1, "columns": {"item_id": null}}') r;
SELECT count(*) AS skills FROM tutor.mastery(1, 'kt_skills_only');
-- without items, predict_correct's item_id names a skill
SELECT tutor.predict_correct(1, 3, 'kt_skills_only') = p_correct AS skill_as_item
FROM tutor.mastery(1, 'kt_skills_only') WHERE skill_id = '3';
-- students with fewer than 2 answers are skipped and counted
SELECT (r->>'students')::int AS students, (r->>'students_skipped')::int AS skipped
FROM tutor.train_kt('kt_skip', 'SELECT * FROM kt.train WHERE student_id <= 20 OR (student_id <= 25 AND answered_at = (SELECT min(answered_at) FROM kt.train))',
     '{"kind": "pfa", "epochs": 1}') r;
RESET client_min_messages;
