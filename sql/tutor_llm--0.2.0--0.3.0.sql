-- tutor_llm 0.2.0 -> 0.3.0: learning plans.
--   tutor.generate_plan     one student's plan, as rows
--   tutor.personalize       plans of many students written to tutor.plans / tutor.plan_steps
--   tutor.personalize_batches   the same in committed batches (nightly jobs; resumable)
--   tutor.plan_settings     stored default options (tutor.configure_plans)
--   analyst functions       skill_report, students_at_risk, plan_coverage

\echo Use "ALTER EXTENSION tutor_llm UPDATE TO '0.3.0'" to load this file. \quit

-- Default plan options, per model name ('*' = every model); call options win.
CREATE TABLE tutor.plan_settings (
    model_name  text PRIMARY KEY,
    options     jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  name NOT NULL DEFAULT current_user
);
REVOKE ALL ON tutor.plan_settings FROM PUBLIC;
GRANT SELECT ON tutor.plan_settings TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tutor.plan_settings', '');

-- Store default options for plans of one model (or of all: model_name NULL).
-- Unknown keys and bad values are rejected now, not at the next nightly
-- run.  '{}' removes the entry.  Returns what is stored.
CREATE FUNCTION tutor.configure_plans(options jsonb, model_name text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'tutor_configure_plans'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION tutor.configure_plans(jsonb, text) FROM PUBLIC;

-- One student's plan.  skill_id and item_ids come back in the type of
-- student_id (pass student_id::text to get text ids from any source).
CREATE FUNCTION tutor.generate_plan(
    student_id anyelement,
    options jsonb DEFAULT '{}',
    OUT step int,
    OUT activity text,
    OUT skill_id anyelement,
    OUT item_ids anyarray,
    OUT expected_p_correct float8,
    OUT due timestamptz,
    OUT minutes int,
    OUT reason text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'tutor_generate_plan'
LANGUAGE C STABLE PARALLEL RESTRICTED;

-- Stored plans: one per student and day (the day of as_of in the
-- session's time zone); a re-run for the same day replaces it.
CREATE TABLE tutor.plans (
    plan_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    student_id    text NOT NULL,
    plan_date     date NOT NULL,
    as_of         timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    model_name    text NOT NULL,
    model_version int NOT NULL,
    options       jsonb NOT NULL,
    UNIQUE (student_id, plan_date)
);
CREATE INDEX plans_plan_date ON tutor.plans (plan_date);

-- A plan's steps.  plan_id is not declared a foreign key: tutor.personalize
-- writes and replaces plans and their steps together, and per-row
-- foreign-key checks doubled the cost of writing a nightly batch.
-- Delete plans through tutor.delete_plans() to take their steps along.
CREATE TABLE tutor.plan_steps (
    plan_id            bigint NOT NULL,
    step               int NOT NULL,
    activity           text NOT NULL CHECK (activity IN ('learn', 'practice', 'review', 'assess')),
    skill_id           text NOT NULL,
    item_ids           text[] NOT NULL,
    expected_p_correct float8 NOT NULL,
    due                timestamptz NOT NULL,
    minutes            int NOT NULL,
    reason             text NOT NULL,
    PRIMARY KEY (plan_id, step)
);
REVOKE ALL ON tutor.plans, tutor.plan_steps FROM PUBLIC;
GRANT SELECT ON tutor.plans, tutor.plan_steps TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tutor.plans', '');
SELECT pg_catalog.pg_extension_config_dump('tutor.plan_steps', '');

-- Delete the plans made before a day (and their steps); returns how many.
CREATE FUNCTION tutor.delete_plans(before date)
RETURNS bigint
LANGUAGE sql VOLATILE
AS $$
    WITH gone AS (DELETE FROM tutor.plans WHERE plan_date < before RETURNING plan_id),
         steps AS (DELETE FROM tutor.plan_steps WHERE plan_id = ANY (ARRAY(SELECT plan_id FROM gone)))
    SELECT count(*) FROM gone
$$;

-- Plans of many students (a table, view or query of student ids, first
-- column), written in this transaction.  Returns a report.
CREATE FUNCTION tutor.personalize(students text, options jsonb DEFAULT '{}')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'tutor_personalize'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- personalize() in batches of batch_size students, each committed on its
-- own: a cancelled run keeps the batches it finished, and CALLing it again
-- for the same day resumes with the students still without a plan from
-- this run (resume => true: without any plan for that day).
CREATE PROCEDURE tutor.personalize_batches(
    students text,
    options jsonb DEFAULT '{}',
    batch_size int DEFAULT 10000,
    resume boolean DEFAULT true)
LANGUAGE plpgsql
AS $$
DECLARE
    -- plans of this run carry created_at >= the first transaction's now()
    since   timestamptz := CASE WHEN resume THEN '-infinity' ELSE now() END;
    report  jsonb;
    total   bigint := 0;
    batches int := 0;
BEGIN
    IF students IS NULL OR options IS NULL OR batch_size IS NULL OR resume IS NULL THEN
        RAISE EXCEPTION 'students, options, batch_size and resume must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1, not %', batch_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOOP
        report := tutor.personalize(students, options || jsonb_build_object(
            'max_students', batch_size, 'skip_planned_since', since));
        EXIT WHEN (report->>'students')::bigint = 0;
        total := total + (report->>'students')::bigint;
        batches := batches + 1;
        COMMIT;
        RAISE NOTICE 'personalize_batches: batch % done, % students so far', batches, total;
    END LOOP;
END
$$;

-- ---- analyst functions -------------------------------------------------------

-- Mastery distribution per skill over a group of students (a table, view
-- or query of student ids, first column; NULL = everyone in the source).
CREATE FUNCTION tutor.skill_report(
    students text DEFAULT NULL,
    model_name text DEFAULT NULL,
    mastery_threshold float8 DEFAULT 0.85,
    OUT skill_id text,
    OUT n_students bigint,
    OUT mean_p float8,
    OUT p10 float8,
    OUT median float8,
    OUT p90 float8,
    OUT mastered_share float8,
    OUT never_practised_share float8)
RETURNS SETOF record
LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$
    SELECT m.skill_id,
           count(*),
           avg(m.p_correct),
           percentile_cont(0.1) WITHIN GROUP (ORDER BY m.p_correct),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY m.p_correct),
           percentile_cont(0.9) WITHIN GROUP (ORDER BY m.p_correct),
           avg((m.p_correct >= mastery_threshold)::int),
           avg((m.attempts = 0)::int)
    FROM tutor.mastery_all(model_name, students) AS m
    GROUP BY m.skill_id
    ORDER BY m.skill_id
$$;

-- Students whose predicted success on their goal skills is low: one row
-- per (student, goal skill) under the threshold, lowest first.
CREATE FUNCTION tutor.students_at_risk(
    goal_skills text[],
    students text DEFAULT NULL,
    model_name text DEFAULT NULL,
    threshold float8 DEFAULT 0.5,
    OUT student_id text,
    OUT skill_id text,
    OUT p_correct float8,
    OUT attempts int,
    OUT last_seen timestamptz)
RETURNS SETOF record
LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$
    SELECT m.student_id, m.skill_id, m.p_correct, m.attempts, m.last_seen
    FROM tutor.mastery_all(model_name, students) AS m
    WHERE m.skill_id = ANY (goal_skills) AND m.p_correct < threshold
    ORDER BY m.p_correct, m.student_id, m.skill_id
$$;

-- Plan coverage of one day for a group of students (a table, view or
-- query of student ids, first column): how many have a plan, and what the
-- plans hold; items and minutes count the steps due that day.
CREATE FUNCTION tutor.plan_coverage(
    plan_date date,
    students text,
    OUT n_students bigint,
    OUT planned bigint,
    OUT coverage float8,
    OUT steps bigint,
    OUT learn bigint,
    OUT practice bigint,
    OUT review bigint,
    OUT assess bigint,
    OUT items_per_student float8,
    OUT minutes_per_student float8)
RETURNS record
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
AS $$
DECLARE
    from_item text;
BEGIN
    IF plan_date IS NULL OR plan_coverage.students IS NULL THEN
        RAISE EXCEPTION 'plan_date and students must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF plan_coverage.students ~* '^\s*(select|with|values|table)\M' THEN
        from_item := '(' || rtrim(plan_coverage.students, E'; \t\r\n') || ')';
    ELSE
        from_item := plan_coverage.students::regclass::text;
    END IF;
    EXECUTE format($q$
        WITH grp AS (SELECT DISTINCT g.x::text AS student_id FROM %s AS g(x) WHERE g.x IS NOT NULL),
             p AS (SELECT p.plan_id FROM tutor.plans p JOIN grp USING (student_id) WHERE p.plan_date = $1),
             s AS (SELECT s.* FROM tutor.plan_steps s JOIN p USING (plan_id))
        SELECT (SELECT count(*) FROM grp),
               (SELECT count(*) FROM p),
               (SELECT count(*) FROM p)::float8 / nullif((SELECT count(*) FROM grp), 0),
               (SELECT count(*) FROM s),
               (SELECT count(*) FROM s WHERE activity = 'learn'),
               (SELECT count(*) FROM s WHERE activity = 'practice'),
               (SELECT count(*) FROM s WHERE activity = 'review'),
               (SELECT count(*) FROM s WHERE activity = 'assess'),
               (SELECT sum(cardinality(item_ids)) FROM s WHERE due::date = $1)::float8
                   / nullif((SELECT count(*) FROM p), 0),
               (SELECT sum(minutes) FROM s WHERE due::date = $1)::float8
                   / nullif((SELECT count(*) FROM p), 0)
        $q$, from_item)
    INTO n_students, planned, coverage, steps, learn, practice, review, assess,
         items_per_student, minutes_per_student
    USING plan_date;
END
$$;
