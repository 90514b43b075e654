\echo '== pgmart.jobs =='
SELECT job_id, name, kind, schedule, timezone, last_status, consecutive_failures AS fails,
       to_char(next_run_at, 'HH24:MI:SS') AS next_run
  FROM pgmart.jobs ORDER BY job_id;
\echo '== what the worker did (pgmart.job_runs, by job) =='
SELECT j.name, r.status, count(*) AS runs, max(r.run_by) AS run_by, max(r.message) AS message
  FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id)
 GROUP BY 1, 2 ORDER BY 1, 2;
\echo '== the rollup it maintains (last 5 days) =='
SELECT * FROM daily_revenue ORDER BY day DESC LIMIT 5;
\echo '== open alerts =='
SELECT alert_id, source_kind, source_name, severity, payload->>'message' AS message FROM pgmart.alerts WHERE acked_at IS NULL;
\echo '== the scheduler in pg_stat_activity =='
SELECT backend_type, datname FROM pg_stat_activity WHERE backend_type LIKE 'pgmart%' ORDER BY 1;
