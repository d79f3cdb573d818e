-- the core trains a small Transformer inside the backend
SET tutor.device = 'cpu';

-- after one step the loss is near chance (ln 10 = 2.30) ...
SELECT step, held_out_loss > 2.0 AS near_chance FROM tutor.selftest(1, 7);
-- ... and after 800 it has learned to reverse the digits
WITH run AS (SELECT * FROM tutor.selftest(800, 7))
SELECT count(*) AS reports,
       max(step) AS last_step,
       (SELECT held_out_loss FROM run ORDER BY step DESC LIMIT 1) < 0.05 AS learned,
       bool_and(elapsed_ms >= 0) AS timed
FROM run;

-- the same seed gives the same losses, bit for bit
SELECT bool_and(a.train_loss = b.train_loss AND a.held_out_loss = b.held_out_loss) AS deterministic,
       count(*) AS compared
FROM tutor.selftest(30, 3) a JOIN tutor.selftest(30, 3) b USING (step);
-- another seed gives other losses
SELECT bool_or(a.train_loss <> b.train_loss) AS seed_matters
FROM tutor.selftest(30, 3) a JOIN tutor.selftest(30, 4) b USING (step);

-- bad arguments
SELECT * FROM tutor.selftest(0);
SELECT * FROM tutor.selftest(100001);
SELECT * FROM tutor.selftest(10, -1);
SELECT count(*) FROM tutor.selftest(NULL);	-- strict: no rows

-- statement_timeout cancels training between steps; the session goes on
SET statement_timeout = '300ms';
SELECT count(*) FROM tutor.selftest(100000);
RESET statement_timeout;
SELECT count(*) AS reports_after_cancel FROM tutor.selftest(20);
