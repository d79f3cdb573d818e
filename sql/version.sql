-- install the first release, then upgrade: the path an existing installation takes
CREATE EXTENSION tutor_llm VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'tutor_llm';
SELECT to_regclass('tutor.models') IS NULL AS no_models_table_yet;
ALTER EXTENSION tutor_llm UPDATE;
SELECT tutor.version();
SELECT extversion, extrelocatable, extnamespace::regnamespace AS schema
FROM pg_extension WHERE extname = 'tutor_llm';
SELECT proname FROM pg_proc WHERE pronamespace = 'tutor'::regnamespace ORDER BY proname;
SELECT relname, relkind FROM pg_class WHERE relnamespace = 'tutor'::regnamespace ORDER BY relname;
-- a second CREATE fails cleanly
CREATE EXTENSION tutor_llm;
