-- tutor_llm 0.1.0: schema tutor (created by CREATE EXTENSION from the control file)

\echo Use "CREATE EXTENSION tutor_llm" to load this file. \quit

-- The extension's version string.
CREATE FUNCTION tutor.version() RETURNS text
AS 'MODULE_PATHNAME', 'tutor_version'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- Where computations can run: one row for the CPU, one per usable CUDA
-- device; "selected" marks the one tutor.device resolves to.
CREATE FUNCTION tutor.device_info(
    OUT backend text,
    OUT ordinal int,
    OUT name text,
    OUT total_memory_mb bigint,
    OUT free_memory_mb bigint,
    OUT blas text,
    OUT threads int,
    OUT selected boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'tutor_device_info'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

-- Train the core's small Transformer on a toy task (reverse a digit
-- string) in this backend and report losses: a check that the compute
-- core works on this installation.
CREATE FUNCTION tutor.selftest(
    steps int DEFAULT 300,
    seed bigint DEFAULT 42,
    OUT step int,
    OUT train_loss float8,
    OUT held_out_loss float8,
    OUT elapsed_ms float8)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'tutor_selftest'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
