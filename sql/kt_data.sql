-- a small school with a known structure, for the knowledge-tracing tests:
-- a student's chance of a correct answer is a logistic function of
-- (ability on the skill - item difficulty), and ability grows with practice
SET client_min_messages = warning;
CREATE SCHEMA kt;
DO $$ BEGIN PERFORM setseed(0.17); END $$;
CREATE TABLE kt.students AS
SELECT s AS student_id, (random() * 3 - 1.5) AS ability FROM generate_series(1, 240) s;
CREATE TABLE kt.items AS
SELECT i AS item_id, 1 + (i - 1) % 6 AS skill_id, (random() * 3 - 1.5) AS difficulty
FROM generate_series(1, 60) i;
CREATE TABLE kt.responses AS
SELECT student_id, item_id, skill_id,
       random() < 1 / (1 + exp(-(ability + 0.2 * attempt - difficulty))) AS correct,
       timestamptz '2026-09-01 00:00+00' + n * interval '1 day' AS answered_at
FROM (SELECT st.student_id, st.ability, it.item_id, it.skill_id, it.difficulty, q.n,
             row_number() OVER (PARTITION BY st.student_id, it.skill_id ORDER BY q.n) - 1 AS attempt
      FROM kt.students st
      CROSS JOIN generate_series(1, 30) AS q(n)
      JOIN kt.items it ON it.item_id = 1 + ((st.student_id * 7 + q.n * 11) % 60)) x;
-- held-out students for evaluation
CREATE VIEW kt.train AS SELECT * FROM kt.responses WHERE student_id <= 200;
CREATE VIEW kt.test AS SELECT * FROM kt.responses WHERE student_id > 200;
SELECT count(*) AS answers, count(DISTINCT student_id) AS students,
       round(avg(correct::int), 2) AS share_correct
FROM kt.responses;
-- the same answers with other column names and types
CREATE TABLE kt.renamed AS
SELECT 's' || student_id AS learner, 'item-' || item_id AS question, skill_id::text AS topic,
       correct::int::numeric AS score, answered_at::date AS day, answered_at
FROM kt.responses;
RESET client_min_messages;
