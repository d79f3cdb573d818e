-- versions, deployment, rollback, default model, damaged weights, owners
SET client_min_messages = warning;
CREATE ROLE regress_kt_owner;
CREATE ROLE regress_kt_teacher;
GRANT USAGE ON SCHEMA kt TO regress_kt_owner, regress_kt_teacher;
GRANT SELECT ON kt.responses, kt.train TO regress_kt_owner, regress_kt_teacher;
SET ROLE regress_kt_owner;
SELECT (tutor.train_kt('kt_cat', 'kt.train', '{"kind": "pfa", "epochs": 2}'))->>'deployed' AS v1_deployed;
SELECT (tutor.train_kt('kt_cat', 'kt.train', '{"kind": "pfa", "epochs": 3}'))->>'deployed' AS v2_deployed;
SELECT name, version, kind, created_by, deployed_at IS NOT NULL AS deployed,
       config->'options'->>'epochs' AS epochs, metrics ? 'best_valid_auc' AS has_metrics, source
FROM tutor.models WHERE name = 'kt_cat' ORDER BY version;

-- deploy version 2, then roll back to 1
SELECT tutor.deploy('kt_cat', 2);
SELECT version FROM tutor.models WHERE name = 'kt_cat' AND deployed_at IS NOT NULL;
SELECT tutor.deploy('kt_cat', 1);
SELECT version FROM tutor.models WHERE name = 'kt_cat' AND deployed_at IS NOT NULL;
SELECT tutor.deploy('kt_cat', 9);
SELECT tutor.deploy('no_such_model', 1);
RESET ROLE;

-- NULL model name: tutor.default_model, else the most recently deployed model
SELECT count(*) > 0 AS served FROM tutor.mastery(1);
SET tutor.default_model = 'kt_small';
SELECT count(*) AS kt_small_skills FROM tutor.mastery(1);
SET tutor.default_model = 'no_such_model';
SELECT count(*) FROM tutor.mastery(1);
RESET tutor.default_model;

-- damaged weights give a clean error naming the model, never a crash
CREATE TEMP TABLE saved AS SELECT weights FROM tutor.models WHERE name = 'kt_cat' AND version = 1;
UPDATE tutor.models SET weights = set_byte(weights, 100, (get_byte(weights, 100) + 1) % 256)
WHERE name = 'kt_cat' AND version = 1;
SELECT count(*) FROM tutor.mastery(1, 'kt_cat');
UPDATE tutor.models SET weights = substr(weights, 1, 40) WHERE name = 'kt_cat' AND version = 1;
SELECT count(*) FROM tutor.mastery(1, 'kt_cat');
UPDATE tutor.models SET weights = '\x00'::bytea WHERE name = 'kt_cat' AND version = 1;
SELECT count(*) FROM tutor.mastery(1, 'kt_cat');
UPDATE tutor.models SET weights = (SELECT weights FROM saved) WHERE name = 'kt_cat' AND version = 1;
SELECT count(*) AS restored FROM tutor.mastery(1, 'kt_cat');

-- another role may use models but not add versions of, or deploy, someone else's
SET ROLE regress_kt_teacher;
SELECT count(*) AS skills FROM tutor.mastery(1, 'kt_cat');
SELECT tutor.train_kt('kt_cat', 'kt.train', '{"kind": "pfa", "epochs": 1}');
SELECT tutor.deploy('kt_cat', 2);
INSERT INTO tutor.models (name, version, kind, created_by, config, metrics, source, weights)
VALUES ('forged', 1, 'pfa', 'regress_kt_teacher', '{}', '{}', 'x', '\x00');
-- a model of its own is fine
SELECT (tutor.train_kt('regress_kt_teachers', 'kt.train', '{"kind": "pfa", "epochs": 1}'))->>'version' AS version;
RESET ROLE;

-- row-level security on the source applies to the role that trains
CREATE TABLE kt.rls_responses AS SELECT * FROM kt.train;
ALTER TABLE kt.rls_responses ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_first_fifty ON kt.rls_responses FOR SELECT TO regress_kt_teacher USING (student_id <= 50);
GRANT SELECT ON kt.rls_responses TO regress_kt_teacher;
SET ROLE regress_kt_teacher;
SELECT (r->>'students')::int AS students_visible
FROM tutor.train_kt('kt_rls', 'kt.rls_responses', '{"kind": "pfa", "epochs": 1}') r;
RESET ROLE;
-- and privileges: no SELECT on the source, no training
REVOKE SELECT ON kt.rls_responses FROM regress_kt_teacher;
SET ROLE regress_kt_teacher;
SELECT tutor.train_kt('kt_rls', 'kt.rls_responses', '{"kind": "pfa", "epochs": 1}');
RESET ROLE;
-- clean up the roles and their models
DELETE FROM tutor.models WHERE name IN ('regress_kt_teachers', 'kt_rls', 'kt_cat');
REVOKE ALL ON kt.rls_responses, kt.responses, kt.train FROM regress_kt_owner, regress_kt_teacher;
REVOKE USAGE ON SCHEMA kt FROM regress_kt_owner, regress_kt_teacher;
DROP POLICY only_first_fifty ON kt.rls_responses;
DROP ROLE regress_kt_teacher, regress_kt_owner;
RESET client_min_messages;
