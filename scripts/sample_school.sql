-- scripts/sample_school.sql -- a small generated school with a known
-- structure, in schema "school":
--   students, skills (with a prerequisite chain), items (each on one
--   skill, with a difficulty), and responses over 60 days.
-- A student's chance of answering correctly follows a logistic model of
-- (ability on the skill - item difficulty), and ability grows with
-- practice, so there is real signal for knowledge tracing to find.
-- setseed() makes the data identical on every run.

SET client_min_messages = warning;
DROP SCHEMA IF EXISTS school CASCADE;
CREATE SCHEMA school;
DO $$ BEGIN PERFORM setseed(0.42); END $$;

CREATE TABLE school.skills (
    skill_id   bigint PRIMARY KEY,
    name       text NOT NULL,
    requires   bigint REFERENCES school.skills   -- prerequisite, NULL for roots
);
INSERT INTO school.skills
SELECT s, (ARRAY['adding whole numbers', 'multiplication facts', 'long division', 'fractions',
                 'place value', 'decimals', 'percentages', 'ratios',
                 'number patterns', 'algebraic expressions', 'linear equations', 'graphs of lines'])[s],
       CASE WHEN s % 4 = 1 THEN NULL ELSE s - 1 END
FROM generate_series(1, 12) s;

CREATE TABLE school.items (
    item_id    bigint PRIMARY KEY,
    skill_id   bigint NOT NULL REFERENCES school.skills,
    difficulty float8 NOT NULL,
    minutes    int NOT NULL
);
INSERT INTO school.items
SELECT i, 1 + (i - 1) % 12, round((random() * 3 - 1.5)::numeric, 2), 2 + (i % 4)
FROM generate_series(1, 120) i;

CREATE TABLE school.students (
    student_id bigint PRIMARY KEY,
    name       text NOT NULL,
    grade      int NOT NULL,
    ability    float8 NOT NULL          -- hidden ground truth, for evaluation only
);
INSERT INTO school.students
SELECT s, format('student %s', s), 6 + s % 3, random() * 2 - 1
FROM generate_series(1, 200) s;

CREATE TABLE school.responses (
    student_id  bigint NOT NULL REFERENCES school.students,
    item_id     bigint NOT NULL REFERENCES school.items,
    skill_id    bigint NOT NULL REFERENCES school.skills,
    correct     boolean NOT NULL,
    answered_at timestamptz NOT NULL
);

-- Each student answers 40 items; ability on a skill rises with each
-- earlier attempt on it (learning), so later answers are more often right.
INSERT INTO school.responses
SELECT student_id, item_id, skill_id,
       random() < 1 / (1 + exp(-(ability + 0.25 * attempt - difficulty))),
       timestamptz '2026-09-01 08:00+00' + (n * interval '36 hours') + (random() * interval '2 hours')
FROM (
    SELECT st.student_id, st.ability, it.item_id, it.skill_id, it.difficulty, q.n,
           row_number() OVER (PARTITION BY st.student_id, it.skill_id ORDER BY q.n) - 1 AS attempt
    FROM school.students st
    CROSS JOIN LATERAL generate_series(1, 40) AS q(n)
    JOIN school.items it
      ON it.item_id = 1 + ((st.student_id * 7 + q.n * 13 + (q.n / 5) * 3) % 120)
) AS plan;

CREATE INDEX ON school.responses (student_id, answered_at);
ANALYZE school.skills, school.items, school.students, school.responses;
