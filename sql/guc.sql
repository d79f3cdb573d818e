-- settings under the reserved prefix "tutor"
SELECT tutor.version() IS NOT NULL AS loaded;	-- loads the library and its settings
SHOW tutor.device;
SHOW tutor.threads;
-- (tutor.model_dir is a path of the test cluster: only whether it is set)
SELECT name, CASE WHEN name = 'tutor.model_dir' THEN (setting <> '')::text ELSE setting END AS setting,
       vartype, enumvals, min_val, max_val, context
FROM pg_settings WHERE name LIKE 'tutor.%' ORDER BY name;

SET tutor.device = 'cpu';
SHOW tutor.device;
SET tutor.device = 'CUDA';		-- enum values are case-insensitive
SHOW tutor.device;

-- bad values are refused with the valid choices or the range
SET tutor.device = 'gpu';
SET tutor.device = '';
SET tutor.threads = -1;
SET tutor.threads = 5000;
SET tutor.threads = 'many';
SHOW tutor.threads;

-- nothing else may live under the prefix
SET tutor.no_such_setting = 1;
RESET ALL;
SHOW tutor.device;
