\echo '== pgmart.jobs =='
SELECT job_id, name, kind, owner, schedule, timezone, state, last_status, consecutive_failures AS fails,
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
\echo '== the workers in pg_stat_activity: launcher, scheduler, and a runner per running job, as its owner =='
SELECT backend_type, datname, usename, query FROM pg_stat_activity WHERE backend_type LIKE 'pgmart%' ORDER BY 1;
SELECT database, running_jobs, waiting_jobs, max_parallel_jobs, problem FROM pgmart.worker_status();
\echo '== runners: VACUUM ran as a job; the runaway job was stopped by its 2-second timeout =='
SELECT j.name, r.status, r.sqlstate, r.message, r.run_by
  FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id)
 WHERE j.name IN ('weekly_vacuum', 'runaway_report') ORDER BY r.run_id;
\echo '== what the team role etl sees of pgmart (its own job only), and what its job did as etl =='
SET ROLE etl;
SELECT name, owner, state, last_status FROM pgmart.jobs;
SELECT count(*) AS rows_loaded FROM staging_orders;
RESET ROLE;
\echo '== DROP ROLE etl is refused while etl owns registrations =='
\set ON_ERROR_STOP 0
DROP ROLE etl;
\echo '== a bad argument gets a clear error (SQLSTATE 22004), never an internal one =='
SELECT pgmart.schedule_sql('no_schedule', 'SELECT 1', NULL);
\set ON_ERROR_STOP 1
\echo '== the partition set of events: days kept, days made ahead, rows parked in its default =='
SELECT parent, partition_interval, premake, retention, partitions_ahead, oldest_bound, last_status FROM pgmart.partition_sets;
SELECT partition_name, lower_bound, upper_bound, is_default FROM pgmart.partitions('events');
SELECT tableoid::regclass AS partition, count(*) AS rows FROM events GROUP BY 1 ORDER BY 1;
\echo '== the rollup of events: refreshed by the worker, late rows recomputed, newest hour live in events_hourly_rt =='
INSERT INTO events (at, kind) VALUES (now() - interval '30 hours', 'late-click');
SELECT name, bucket, dimensions, measures, watermark IS NOT NULL AS filled, pending_invalidations, round(last_refresh_ms::numeric, 1) AS last_refresh_ms FROM pgmart.rollups;
SELECT kind, sum(events) AS events_48h FROM events_hourly_rt WHERE bucket >= now() - interval '48 hours' GROUP BY kind ORDER BY kind;
SELECT pgmart.refresh_rollup('events_hourly')->>'message' AS refresh;
\echo '== snapshots: orders frozen for this month (a re-run changes nothing, the table refuses changes); customer plans as a type-2 history (dbt columns), kept by the worker =='
SELECT name, strategy, last_period, rows, current_rows, last_status FROM pgmart.snapshots ORDER BY name;
SELECT pgmart.run_snapshot('orders_monthly')->>'message' AS rerun;
\set ON_ERROR_STOP 0
UPDATE orders_monthly SET amount = 0 WHERE id = 1;
\set ON_ERROR_STOP 1
SELECT customer_id, plan, dbt_valid_from::date AS valid_from, dbt_valid_to IS NOT NULL AS closed
  FROM customer_plans_history WHERE customer_id IN (1, 2, 2000) ORDER BY customer_id, dbt_valid_from;
\echo '== a job by name, as pg_cron users write it: run it now, then unschedule it =='
SELECT status, duration_ms > 0 AS ran FROM pgmart.run_job('refresh-customers-stats');
SELECT pgmart.unschedule('refresh-customers-stats');
\echo '== table health: what needs attention, and what the health job did to the table its owner registered =='
SELECT relid, index, status, problems, suggestion FROM pgmart.table_health WHERE status <> 'ok' ORDER BY relid::text, index::text;
SELECT relid, last_maintained_at IS NOT NULL AS maintained, last_actions->'commands' AS commands FROM pgmart.maintained_tables;
\echo '== pgmart.freshness: what BI tools read =='
SELECT object, last_refreshed_at IS NOT NULL AS refreshed, round(extract(epoch FROM age)::numeric, 1) AS age_s, slo, stale, last_status
  FROM pgmart.freshness ORDER BY object;
\echo '== data-quality results, latest run per check (pgmart.check_results) =='
SELECT DISTINCT ON (name) name, status, failing_rows, checked_rows FROM pgmart.check_results ORDER BY name, run_at DESC;
\echo '== the revenue metric, last 5 days, evaluated the one registered way =='
SELECT bucket_local::date AS day, value, is_partial FROM pgmart.metric_values('revenue', now() - interval '5 days', now()) ORDER BY bucket_start DESC;
\echo '== two metrics over the same buckets; a ratio brings its numerator and denominator (today is partial) =='
SELECT metric, bucket_local::date AS day, round(value, 2) AS value, numerator, denominator, is_partial
  FROM pgmart.metric_values(ARRAY['revenue', 'avg_order_value'], now() - interval '2 days', now())
 ORDER BY bucket_start DESC, metric;
\echo '== the same metric as a table a BI tool can browse: pgmart_metrics.revenue (bucket filter pushed into the scan) =='
SELECT bucket_date, status, value FROM pgmart_metrics.revenue WHERE bucket >= now() - interval '2 days' ORDER BY bucket_date DESC, status;
\echo '== PostgreSQL protects the metric: ALTER TABLE orders DROP COLUMN amount =='
\set ON_ERROR_STOP 0
ALTER TABLE orders DROP COLUMN amount;
\set ON_ERROR_STOP 1
\echo '== the lineage from orders to the Sales overview dashboard (pgmart.lineage) =='
SELECT upstream, downstream, downstream_kind, depth FROM pgmart.lineage('orders') WHERE direction = 'downstream' ORDER BY depth, downstream;
\echo '== can I trust it right now? one verdict per dashboard and metric, reasons upstream included (pgmart.trust) =='
SELECT object, kind, status, summary FROM pgmart.trust WHERE kind IN ('dashboard', 'metric') ORDER BY kind, object;
\echo '== who a change to orders would affect (pgmart.impact), and the lineage as a Mermaid diagram =='
SELECT object, kind, depth, owner FROM pgmart.impact('orders');
SELECT pgmart.lineage_mermaid('mart_daily_sales');
\echo '== layers: pgmart.access_report() (violations first), then what bi sees of client_orders per tenant =='
SELECT layer, object, column_name, role, privilege, violation, reason FROM pgmart.access_report()
 WHERE violation OR object = 'mart.client_orders' ORDER BY violation DESC, layer, object, role, privilege;
SET ROLE bi;
SELECT count(*) AS rows_without_tenant FROM mart.client_orders;
SET app.tenant_id = '2';
SELECT count(DISTINCT tenant_id) AS tenants_seen, count(*) AS rows_of_tenant_2 FROM mart.client_orders;
\echo 'bi reads the PII column customer_name (refused):'
\set ON_ERROR_STOP 0
SELECT customer_name FROM mart.client_orders LIMIT 1;
\set ON_ERROR_STOP 1
RESET app.tenant_id;
RESET ROLE;
SELECT DISTINCT ON (name) name, status, failing_rows FROM pgmart.check_results WHERE name = 'layers_access' ORDER BY name, run_at DESC;
