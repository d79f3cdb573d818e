-- statement_timeout stops training between batches, within a second,
-- and the cancelled run leaves no model row behind
SET client_min_messages = warning;
SELECT count(*) AS versions_before FROM tutor.models WHERE name = 'kt_cancelled';
SET statement_timeout = '1500ms';
DO $$
DECLARE
    started timestamptz := clock_timestamp();
    overshoot interval;
BEGIN
    PERFORM tutor.train_kt('kt_cancelled', 'kt.responses', '{"epochs": 1000, "patience": 1000}');
    RAISE EXCEPTION 'training was not cancelled';
EXCEPTION WHEN query_canceled THEN
    overshoot := clock_timestamp() - started - interval '1500ms';
    RAISE WARNING 'cancelled within a second of the timeout: %', overshoot < interval '1 second';
END
$$;
RESET statement_timeout;
SELECT count(*) AS versions_after FROM tutor.models WHERE name = 'kt_cancelled';
-- the session is healthy and training still works afterwards
SELECT (tutor.train_kt('kt_after_cancel', 'kt.train', '{"kind": "pfa", "epochs": 1}'))->>'version' AS version;
RESET client_min_messages;
