-- tutor_llm 0.1.0 -> 0.2.0: knowledge tracing trained in the database

\echo Use "ALTER EXTENSION tutor_llm UPDATE TO '0.2.0'" to load this file. \quit

-- Everyone may call the functions; what they read is governed by the
-- privileges on the sources and on tutor.models.
GRANT USAGE ON SCHEMA tutor TO PUBLIC;

-- Trained models, one row per version.  Rows are written only by
-- tutor.train_kt and changed only by tutor.deploy; everyone may read.
CREATE TABLE tutor.models (
    model_id    bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_.-]{0,62}$'),
    version     int NOT NULL CHECK (version > 0),
    kind        text NOT NULL CHECK (kind IN ('transformer', 'pfa')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  regrole NOT NULL,
    config      jsonb NOT NULL,      -- options, columns, vocabulary sizes, source types
    metrics     jsonb NOT NULL,      -- the training report
    source      text NOT NULL,       -- the table, view or query trained on
    weights     bytea NOT NULL,      -- versioned binary format with a checksum
    deployed_at timestamptz,         -- set on the one deployed version of a name
    UNIQUE (name, version)
);
CREATE UNIQUE INDEX models_one_deployed_per_name ON tutor.models (name) WHERE deployed_at IS NOT NULL;
REVOKE ALL ON tutor.models FROM PUBLIC;
GRANT SELECT ON tutor.models TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('tutor.models', '');
SELECT pg_catalog.pg_extension_config_dump('tutor.models_model_id_seq', '');

-- Train a knowledge-tracing model from a table, view or SELECT text.
CREATE FUNCTION tutor.train_kt(model_name text, source text, options jsonb DEFAULT '{}')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'tutor_train_kt'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Next-answer evaluation of a model on a source: auc, accuracy, rmse, log_loss, ece, n.
CREATE FUNCTION tutor.evaluate_kt(model_name text, source text, options jsonb DEFAULT '{}')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'tutor_evaluate_kt'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

-- A student's current mastery of every skill of the model.
CREATE FUNCTION tutor.mastery(
    student_id "any",
    model_name text DEFAULT NULL,
    OUT skill_id text,
    OUT p_correct float8,
    OUT attempts int,
    OUT last_seen timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'tutor_mastery'
LANGUAGE C STABLE PARALLEL RESTRICTED;

-- P(the student answers this item correctly next).
CREATE FUNCTION tutor.predict_correct(student_id "any", item_id "any", model_name text DEFAULT NULL)
RETURNS float8
AS 'MODULE_PATHNAME', 'tutor_predict_correct'
LANGUAGE C STABLE PARALLEL RESTRICTED;

-- Mastery of every student of the model's source (or of `students`, a
-- table or query of student ids) in one pass, for INSERT ... SELECT.
CREATE FUNCTION tutor.mastery_all(
    model_name text DEFAULT NULL,
    students text DEFAULT NULL,
    OUT student_id text,
    OUT skill_id text,
    OUT p_correct float8,
    OUT attempts int,
    OUT last_seen timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'tutor_mastery_all'
LANGUAGE C STABLE PARALLEL RESTRICTED;

-- Make one version of a model the deployed one (rollback = deploy an older version).
CREATE FUNCTION tutor.deploy(model_name text, version int)
RETURNS void
AS 'MODULE_PATHNAME', 'tutor_deploy'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Training runs in progress in any session, in the manner of pg_stat_progress_*.
-- Needs tutor_llm in shared_preload_libraries; empty otherwise.
CREATE FUNCTION tutor.training_progress_rows(
    OUT pid int,
    OUT model_name text,
    OUT kind text,
    OUT phase text,
    OUT started_at timestamptz,
    OUT rows_read bigint,
    OUT students bigint,
    OUT interactions bigint,
    OUT epoch int,
    OUT epochs int,
    OUT batches_done bigint,
    OUT batches_per_epoch bigint,
    OUT train_loss float8,
    OUT valid_auc float8,
    OUT best_valid_auc float8)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'tutor_training_progress'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE VIEW tutor.training_progress AS SELECT * FROM tutor.training_progress_rows();
GRANT SELECT ON tutor.training_progress TO PUBLIC;
