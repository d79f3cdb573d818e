-- the extension installs into schema tutor and reports its version
CREATE EXTENSION tutor_llm;
SELECT tutor.version();
SELECT extversion, extrelocatable, extnamespace::regnamespace AS schema
FROM pg_extension WHERE extname = 'tutor_llm';
SELECT proname FROM pg_proc WHERE pronamespace = 'tutor'::regnamespace ORDER BY proname;
-- a second CREATE fails cleanly
CREATE EXTENSION tutor_llm;
