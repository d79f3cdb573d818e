-- learning plans: shape, determinism, prerequisites, the success band,
-- cold start, everything mastered, errors, stored defaults
SET client_min_messages = warning;
CREATE SCHEMA plan;
DO $$ BEGIN PERFORM setseed(0.23); END $$;
-- six skills: 1 -> 2 -> 3 -> 6 and 4 -> 5 -> 6 (6 needs 3 and 5)
CREATE TABLE plan.prereqs (skill_id bigint, prerequisite_id bigint);
INSERT INTO plan.prereqs VALUES (2, 1), (3, 2), (5, 4), (6, 3), (6, 5);
CREATE TABLE plan.items AS
SELECT i AS item_id, 1 + (i - 1) % 6 AS skill_id, ((i - 1) / 6) * 0.4 - 1.4 AS difficulty,
       2 + i % 3 AS minutes, true AS active
FROM generate_series(1, 48) i;
-- students 1..60 work through the skills in order; the stronger get further
CREATE TABLE plan.students AS
SELECT s AS student_id, (s - 30) / 12.0 AS ability FROM generate_series(1, 60) s;
CREATE TABLE plan.responses AS
SELECT st.student_id, it.item_id, it.skill_id,
       random() < 1 / (1 + exp(-(st.ability + 0.3 * q.n / 6 - it.difficulty - (it.skill_id - 1) % 3 * 0.5))) AS correct,
       timestamptz '2026-09-01 09:00+00' + q.n * interval '1 day' AS answered_at
FROM plan.students st
CROSS JOIN generate_series(0, 35) AS q(n)
JOIN plan.items it ON it.item_id = 1 + (((q.n / 6) % 6) + 6 * ((st.student_id + q.n) % 8));
-- student 900 has answered every item of every skill right, twice
INSERT INTO plan.responses
SELECT 900, it.item_id, it.skill_id, true,
       timestamptz '2026-09-01 09:00+00' + (r * 48 + it.item_id) * interval '20 minutes'
FROM plan.items it CROSS JOIN generate_series(0, 1) r;
SELECT (tutor.train_kt('plan_pfa', 'plan.responses', '{"kind": "pfa", "epochs": 30}'))->>'deployed' AS deployed;
RESET client_min_messages;

-- the options most calls share
CREATE TABLE plan.opts AS
SELECT jsonb_build_object('model', 'plan_pfa', 'items', 'plan.items', 'prerequisites', 'plan.prereqs',
                          'as_of', '2026-10-15 08:00+00') AS o;

-- shape: steps 1..n, known activities, ids in the student id's type
SELECT pg_typeof(skill_id) AS skill_type, pg_typeof(item_ids) AS items_type
FROM tutor.generate_plan(7::bigint, (SELECT o FROM plan.opts)) LIMIT 1;
SELECT pg_typeof(skill_id) AS skill_type, pg_typeof(item_ids) AS items_type
FROM tutor.generate_plan('7'::text, (SELECT o FROM plan.opts)) LIMIT 1;
SELECT count(*) > 0 AS has_steps,
       bool_and(step = n) AS numbered,
       bool_and(activity IN ('learn', 'practice', 'review', 'assess')) AS activities,
       bool_and(cardinality(item_ids) BETWEEN 1 AND 4) AS items_per_step,
       bool_and(expected_p_correct > 0 AND expected_p_correct < 1) AS probabilities,
       bool_and(due >= '2026-10-15 08:00+00' AND due < '2026-10-22 08:00+00') AS due_in_horizon,
       bool_and(minutes > 0) AS minutes,
       bool_and(length(reason) > 10) AS reasons
FROM (SELECT *, row_number() OVER () AS n FROM tutor.generate_plan(7::bigint, (SELECT o FROM plan.opts))) p;
-- a client takes the day-0 items in order, up to the daily budget (default 10)
SELECT sum(cardinality(item_ids)) <= 10 AS within_budget
FROM tutor.generate_plan(7::bigint, (SELECT o FROM plan.opts))
WHERE due::date = '2026-10-15';
SELECT sum(minutes) <= 12 AS within_minutes
FROM tutor.generate_plan(7::bigint, (SELECT o || '{"budget_minutes": 12}' FROM plan.opts))
WHERE due::date = '2026-10-15';

-- deterministic: the same data and options give the same plan
SELECT count(*) AS differences FROM (
    (SELECT * FROM tutor.generate_plan(25::bigint, (SELECT o FROM plan.opts))
     EXCEPT ALL
     SELECT * FROM tutor.generate_plan(25::bigint, (SELECT o FROM plan.opts)))
    UNION ALL
    (SELECT * FROM tutor.generate_plan(42::bigint, (SELECT o FROM plan.opts))
     EXCEPT ALL
     SELECT * FROM tutor.generate_plan(42::bigint, (SELECT o FROM plan.opts)))) d;

-- as_of: answers after it are not used (before the first answer, student 7
-- gets the plan of a student nobody has seen)
SELECT count(*) AS differences FROM (
    SELECT * FROM tutor.generate_plan(7::bigint, (SELECT o || '{"as_of": "2026-08-01"}' FROM plan.opts))
    EXCEPT ALL
    SELECT * FROM tutor.generate_plan(123456::bigint, (SELECT o || '{"as_of": "2026-08-01"}' FROM plan.opts))) d;
SELECT count(*) AS differences FROM (
    SELECT * FROM tutor.generate_plan(7::bigint, (SELECT o FROM plan.opts))
    EXCEPT ALL
    SELECT * FROM tutor.generate_plan(123456::bigint, (SELECT o FROM plan.opts))) d \gset
SELECT :differences > 0 AS answers_before_as_of_count;

-- prerequisites: every learn/practice step of every student is on a skill
-- whose prerequisites the student has mastered (mastery >= 0.85)
CREATE TABLE plan.all_steps AS
SELECT st.student_id, p.*
FROM plan.students st, tutor.generate_plan(st.student_id, (SELECT o - 'as_of' FROM plan.opts)) p;
SELECT count(*) FILTER (WHERE activity IN ('learn', 'practice')) > 0 AS some_learning,
       count(DISTINCT skill_id) FILTER (WHERE activity IN ('learn', 'practice')) > 1 AS several_skills
FROM plan.all_steps;
SELECT count(*) AS steps_with_unmastered_prerequisites
FROM plan.all_steps s
JOIN plan.prereqs pr ON pr.skill_id = s.skill_id
JOIN tutor.mastery_all('plan_pfa', 'plan.students') m
  ON m.student_id = s.student_id::text AND m.skill_id = pr.prerequisite_id::text
WHERE s.activity IN ('learn', 'practice') AND m.p_correct < 0.85;

-- the success band: practice items are predicted between band_low and band_high
SELECT count(*) > 0 AS has_practice,
       bool_and(tutor.predict_correct(25::bigint, i, 'plan_pfa') BETWEEN 0.45 - 1e-4 AND 0.75 + 1e-4) AS in_band
FROM tutor.generate_plan(25::bigint, (SELECT o || '{"band_low": 0.45, "band_high": 0.75, "items_per_step": 2,
                                                    "horizon_days": 1}' FROM plan.opts)) p,
     unnest(p.item_ids) i
WHERE p.activity = 'practice';

-- goals: the way to a goal comes first, and says so
SELECT activity, skill_id, regexp_replace(reason, '[0-9]\.[0-9]+', 'P') AS reason
FROM tutor.generate_plan(40::bigint, (SELECT o || '{"goals": {"skills": [6], "deadline": "2026-10-18"},
                                                   "horizon_days": 1}' FROM plan.opts))
WHERE activity IN ('learn', 'practice') LIMIT 1;

-- a new student: a cold-start plan on the roots (skills 1 and 4), in Chinese too
SELECT DISTINCT activity, skill_id
FROM tutor.generate_plan(123456::bigint, (SELECT o FROM plan.opts))
WHERE due::date = '2026-10-15' ORDER BY 1, 2;
SELECT regexp_replace(reason, '[0-9]\.[0-9]+', 'P') AS reason
FROM tutor.generate_plan(123456::bigint, (SELECT o || '{"language": "zh"}' FROM plan.opts))
ORDER BY step LIMIT 1;

-- everything mastered: only reviews and assessments
SELECT count(*) > 0 AS has_steps, bool_and(activity IN ('review', 'assess')) AS review_and_assess_only
FROM tutor.generate_plan(900::bigint, (SELECT o || '{"mastery_threshold": 0.8}' FROM plan.opts));

-- bad input: clear errors
SELECT * FROM tutor.generate_plan(NULL::bigint);
SELECT * FROM tutor.generate_plan(1::bigint, NULL);
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "no_such_model"}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "items": "plan.no_such_table"}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "prerequisites": "SELECT 1 AS skill_id"}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "budget_items": -1}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "budget_items": 1000000}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "budget_items": 0}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "horizon_days": 0}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "band_low": 0.9, "band_high": 0.6}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "language": "fr"}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "budget": 3}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "as_of": "not a time"}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "as_of": "infinity"}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "goals": [99]}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "goals": {"skills": [6], "deadline": "2020-01-01"}}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "prerequisites": "SELECT 1 AS skill_id, 2 AS prerequisite_id UNION ALL SELECT 2, 1"}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "items": "SELECT item_id, skill_id, 0 AS minutes FROM plan.items"}');
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "items": "SELECT 1 AS item_id, 1 AS skill_id UNION ALL SELECT 1, 2"}');
-- text skill ids cannot come back as bigint
SELECT * FROM tutor.generate_plan(1::bigint, '{"model": "plan_pfa", "items": "SELECT item_id, ''s'' || skill_id AS skill_id FROM plan.items"}');

-- stored defaults: checked when stored, used by every call, call options win
SELECT tutor.configure_plans('{"budget_items": 4, "items": "plan.items", "prerequisites": "plan.prereqs"}', 'plan_pfa');
SELECT sum(cardinality(item_ids)) <= 4 AS default_budget_used
FROM tutor.generate_plan(7::bigint, '{"model": "plan_pfa", "as_of": "2026-10-15 08:00+00"}')
WHERE due::date = '2026-10-15';
SELECT sum(cardinality(item_ids)) > 4 AS call_option_wins
FROM tutor.generate_plan(7::bigint, '{"model": "plan_pfa", "as_of": "2026-10-15 08:00+00", "budget_items": 12}')
WHERE due::date = '2026-10-15';
SELECT tutor.configure_plans('{"budget_items": "many"}');
SELECT tutor.configure_plans('{"as_of": "2026-01-01"}');
SELECT tutor.configure_plans('{"items": "plan.missing"}');
SELECT tutor.configure_plans('{}', 'plan_pfa');
SELECT count(*) AS stored_defaults FROM tutor.plan_settings;
