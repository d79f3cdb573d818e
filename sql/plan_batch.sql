-- tutor.personalize: plans as rows, one per student and day (a re-run
-- replaces them), nothing written by a cancelled run, committed batches
-- that resume; the analyst functions over the results
SET client_min_messages = warning;
CREATE TABLE plan.batch_opts AS
SELECT jsonb_build_object('model', 'plan_pfa', 'items', 'plan.items', 'prerequisites', 'plan.prereqs',
                          'as_of', '2026-10-15 08:00+00') AS o;
RESET client_min_messages;
SELECT o AS opts FROM plan.batch_opts \gset

-- 60 students with answers and two new ones
SELECT r->>'students' AS students, r->>'cold_start' AS cold_start, (r->>'steps')::int > 100 AS steps,
       r->>'replaced' AS replaced, r->>'plan_date' AS plan_date, r->>'model' AS model,
       (r->>'students_per_second')::float8 > 0 AS rate
FROM tutor.personalize('SELECT student_id FROM plan.students UNION ALL VALUES (5000), (5001)',
                       (SELECT o FROM plan.batch_opts)) r;
SELECT count(*) AS plans, count(DISTINCT student_id) AS students, min(model_name) AS model,
       bool_and(options ? 'items') AS options_kept
FROM tutor.plans WHERE plan_date = '2026-10-15';
-- the stored plan is generate_plan's plan
SELECT count(*) AS differences FROM (
    SELECT s.step, s.activity, s.skill_id, s.item_ids, s.expected_p_correct, s.due, s.minutes, s.reason
    FROM tutor.plan_steps s JOIN tutor.plans p USING (plan_id)
    WHERE p.student_id = '25' AND p.plan_date = '2026-10-15'
    EXCEPT ALL
    SELECT step, activity, skill_id::text, item_ids::text[], expected_p_correct, due, minutes, reason
    FROM tutor.generate_plan(25::bigint, (SELECT o FROM plan.batch_opts))) d;

-- the same day again: every plan replaced, none duplicated
SELECT r->>'students' AS students, r->>'replaced' AS replaced
FROM tutor.personalize('SELECT student_id FROM plan.students UNION ALL VALUES (5000), (5001)',
                       (SELECT o FROM plan.batch_opts)) r;
SELECT count(*) AS plans, count(DISTINCT student_id) AS students
FROM tutor.plans WHERE plan_date = '2026-10-15';
SELECT count(*) AS orphan_steps
FROM tutor.plan_steps s WHERE NOT EXISTS (SELECT 1 FROM tutor.plans p WHERE p.plan_id = s.plan_id);
-- the next day is a plan of its own
SELECT r->>'students' AS students, r->>'replaced' AS replaced
FROM tutor.personalize('plan.students', (SELECT o || '{"as_of": "2026-10-16 08:00+00"}' FROM plan.batch_opts)) r;
SELECT plan_date, count(*) AS plans FROM tutor.plans GROUP BY 1 ORDER BY 1;

-- bad input
SELECT tutor.personalize(NULL, '{}');
SELECT tutor.personalize('plan.no_such_table', (SELECT o FROM plan.batch_opts));
SELECT tutor.personalize('plan.students', (SELECT o || '{"max_students": -1}' FROM plan.batch_opts));
CALL tutor.personalize_batches('plan.students', :'opts', 0);

-- cancelled: a run over many students writes nothing at all
\set VERBOSITY terse
SET statement_timeout = '300ms';
SELECT tutor.personalize('SELECT g FROM generate_series(100000, 400000) g',
                         (SELECT o || '{"as_of": "2026-10-17 08:00+00"}' FROM plan.batch_opts));
RESET statement_timeout;
SELECT count(*) AS plans_after_cancel FROM tutor.plans WHERE plan_date = '2026-10-17';

-- in committed batches: a cancelled run keeps whole batches, a second CALL finishes the rest
SET client_min_messages = warning;
SET statement_timeout = '1s';
CALL tutor.personalize_batches('SELECT g FROM generate_series(100000, 160000) g',
                               :'opts'::jsonb || '{"as_of": "2026-10-17 08:00+00"}', 5000);
RESET statement_timeout;
SELECT count(*) % 5000 = 0 AS whole_batches, count(*) < 60001 AS stopped_early
FROM tutor.plans WHERE plan_date = '2026-10-17';
CALL tutor.personalize_batches('SELECT g FROM generate_series(100000, 160000) g',
                               :'opts'::jsonb || '{"as_of": "2026-10-17 08:00+00"}', 5000);
RESET client_min_messages;
\set VERBOSITY default
SELECT count(*) AS plans, count(DISTINCT student_id) AS students
FROM tutor.plans WHERE plan_date = '2026-10-17';

-- analyst functions: mastery per skill, students at risk, plan coverage
-- mastery_all predicts students in batches, in groups side by side on the
-- pool's threads; each row equals tutor.mastery's
SELECT count(*) AS rows, max(abs(a.p_correct - m.p_correct)) < 1e-5 AS batched_equals_single
FROM tutor.mastery_all('kt_small', 'kt.students') a,
     LATERAL tutor.mastery(a.student_id::bigint, 'kt_small') m
WHERE m.skill_id = a.skill_id;
SELECT count(*) AS skills,
       bool_and(p10 <= median AND median <= p90) AS ordered,
       bool_and(mean_p BETWEEN 0 AND 1 AND mastered_share BETWEEN 0 AND 1) AS shares,
       sum(n_students) AS rows
FROM tutor.skill_report('plan.students', 'plan_pfa');
SELECT count(*) > 0 AS some_at_risk, bool_and(p_correct < 0.5) AS below_threshold,
       bool_and(skill_id IN ('5', '6')) AS goal_skills_only
FROM tutor.students_at_risk(ARRAY['5', '6'], 'plan.students', 'plan_pfa', 0.5);
SELECT n_students, planned, coverage, steps > 0 AS steps, learn + practice + review + assess = steps AS activities,
       items_per_student <= 10 AS within_budget
FROM tutor.plan_coverage('2026-10-15', 'plan.students');
SELECT n_students, planned, coverage
FROM tutor.plan_coverage('2026-10-15', 'SELECT student_id FROM plan.students WHERE student_id <= 10');
SELECT * FROM tutor.plan_coverage(NULL, 'plan.students');

-- housekeeping: old plans go with their steps
SELECT tutor.delete_plans('2026-10-17') AS deleted;
SELECT count(*) AS orphan_steps
FROM tutor.plan_steps s WHERE NOT EXISTS (SELECT 1 FROM tutor.plans p WHERE p.plan_id = s.plan_id);
