-- device_info(): a CPU row always; CUDA rows where a device is usable
SELECT tutor.version() IS NOT NULL AS loaded;
SET tutor.device = 'cpu';
SELECT backend, ordinal, name <> '' AS has_name, total_memory_mb > 0 AS has_memory,
       free_memory_mb <= total_memory_mb AS free_within_total,
       blas LIKE 'OpenBLAS%' AS openblas, threads > 0 AS has_threads, selected
FROM tutor.device_info() WHERE backend = 'cpu';

-- tutor.threads sets the BLAS thread count
SET tutor.threads = 1;
SELECT threads FROM tutor.device_info() WHERE backend = 'cpu';
SET tutor.threads = 2;
SELECT threads FROM tutor.device_info() WHERE backend = 'cpu';
RESET tutor.threads;

-- auto selects exactly one device: CUDA when usable, else the CPU
SET tutor.device = 'auto';
SELECT count(*) FILTER (WHERE selected) AS selected_devices,
       bool_or(selected AND backend = 'cpu') = NOT bool_or(backend = 'cuda') AS cpu_iff_no_cuda
FROM tutor.device_info();

-- cuda with no usable device is an error that says how to fall back
-- (expected/device_1.out holds the outcome on a machine with a GPU)
SET tutor.device = 'cuda';
\set VERBOSITY terse
SELECT backend FROM tutor.device_info() WHERE selected;
SELECT count(*) FROM tutor.selftest(1);
\set VERBOSITY default
RESET tutor.device;
