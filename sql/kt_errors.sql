-- every bad input is a clean error with a fitting SQLSTATE
\set VERBOSITY default
SET client_min_messages = warning;
-- NULL arguments
SELECT tutor.train_kt(NULL, 'kt.train');
SELECT tutor.train_kt('x', NULL);
SELECT tutor.evaluate_kt(NULL, 'kt.test');
SELECT * FROM tutor.mastery(NULL::bigint, 'kt_small');
SELECT tutor.predict_correct(1, NULL::bigint, 'kt_small');
SELECT tutor.deploy('kt_small', NULL);
-- bad model names and unknown models
SELECT tutor.train_kt('bad name!', 'kt.train');
SELECT tutor.train_kt('', 'kt.train');
SELECT tutor.evaluate_kt('no_such_model', 'kt.test');
SELECT * FROM tutor.mastery(1, 'no_such_model');
-- sources
SELECT tutor.train_kt('x', '');
SELECT tutor.train_kt('x', 'kt.no_such_table');
SELECT tutor.train_kt('x', 'not a valid ) name');
SELECT tutor.train_kt('x', 'SELECT * FROM kt.train WHERE false');
SELECT tutor.train_kt('x', 'SELEC * FROM kt.train');
-- columns: missing, mapped to a missing one, wrong types
SELECT tutor.train_kt('x', 'SELECT student_id, item_id, skill_id, answered_at FROM kt.train');
SELECT tutor.train_kt('x', 'kt.train', '{"columns": {"student_id": "learner"}}');
SELECT tutor.train_kt('x', 'SELECT student_id, item_id, skill_id, answered_at, ''yes''::text AS correct FROM kt.train');
SELECT tutor.train_kt('x', 'SELECT student_id, item_id, skill_id, correct, point(1,1) AS answered_at FROM kt.train');
SELECT tutor.train_kt('x', 'SELECT student_id, item_id, skill_id, 2 AS correct, answered_at FROM kt.train');
SELECT tutor.train_kt('x', 'kt.train', '{"columns": {"item_id": null, "skill_id": null}}');
SELECT tutor.train_kt('x', 'kt.train', '{"columns": {"learner": "student_id"}}');
SELECT tutor.train_kt('x', 'kt.train', '{"columns": {"correct": null}}');
SELECT tutor.train_kt('x', 'kt.train', '{"columns": "student_id"}');
-- absurd options
SELECT tutor.train_kt('x', 'kt.train', '{"epochs": 0}');
SELECT tutor.train_kt('x', 'kt.train', '{"epochs": 2.5}');
SELECT tutor.train_kt('x', 'kt.train', '{"d_model": 100000}');
SELECT tutor.train_kt('x', 'kt.train', '{"d_model": 30, "heads": 4}');
SELECT tutor.train_kt('x', 'kt.train', '{"lr": "fast"}');
SELECT tutor.train_kt('x', 'kt.train', '{"lr": -1}');
SELECT tutor.train_kt('x', 'kt.train', '{"valid_fraction": 0.9}');
SELECT tutor.train_kt('x', 'kt.train', '{"kind": "lstm"}');
SELECT tutor.train_kt('x', 'kt.train', '{"device": "tpu"}');
SELECT tutor.train_kt('x', 'kt.train', '{"batch_size": 4096, "window": 1024}');
SELECT tutor.train_kt('x', 'kt.train', '{"epoch": 3}');
SELECT tutor.train_kt('x', 'kt.train', '[1, 2]');
SELECT tutor.evaluate_kt('kt_small', 'kt.test', '{"seed": 1}');
-- nothing was saved by any of these
SELECT count(*) AS stray_models FROM tutor.models WHERE name IN ('x', 'bad name!', '');
RESET client_min_messages;
