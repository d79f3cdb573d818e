-- test/bench/personalize_data.sql -- data for the personalize throughput
-- benchmark (scripts/bench_personalize.sh): :students students with 30
-- answers each over 30 days, 20 skills in four prerequisite chains,
-- 10 items per skill.  psql variables: students.
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;
DO $$ BEGIN PERFORM setseed(0.5); END $$;
CREATE TABLE bench.skills AS
SELECT s AS skill_id, CASE WHEN s % 5 = 1 THEN NULL ELSE s - 1 END AS prerequisite_id
FROM generate_series(1, 20) s;
CREATE TABLE bench.items AS
SELECT i AS item_id, 1 + (i - 1) % 20 AS skill_id, (random() * 3 - 1.5) AS difficulty, 2 + i % 4 AS minutes
FROM generate_series(1, 200) i;
CREATE TABLE bench.students AS
SELECT s AS student_id, random() * 2 - 1 AS ability FROM generate_series(1, :students) s;
CREATE TABLE bench.responses AS
SELECT st.student_id, it.item_id, it.skill_id,
       random() < 1 / (1 + exp(-(st.ability + 0.05 * q.n - it.difficulty))) AS correct,
       timestamptz '2026-10-01 08:00+00' + q.n * interval '1 day' + random() * interval '1 hour' AS answered_at
FROM bench.students st
CROSS JOIN generate_series(1, 30) AS q(n)
JOIN bench.items it ON it.item_id = 1 + ((st.student_id * 7 + q.n * 3 + (q.n / 6) * 20) % 200);
CREATE INDEX ON bench.responses (student_id, answered_at);
-- vacuumed now, so autovacuum does not start on the new tables during the measurement
VACUUM ANALYZE bench.skills, bench.items, bench.students, bench.responses;
CREATE VIEW bench.train AS SELECT * FROM bench.responses WHERE student_id <= 3000;
