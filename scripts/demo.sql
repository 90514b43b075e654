-- The demo's data and jobs. A small shop: customers, orders over the last 60 days.
\echo '== loading a small shop: 2,000 customers, 60 days of orders =='
CREATE EXTENSION pgmart;

CREATE TABLE customers (
    id         bigint PRIMARY KEY,
    name       text NOT NULL,
    country    text NOT NULL,
    created_at timestamptz NOT NULL
);
INSERT INTO customers
SELECT i, 'customer ' || i, (ARRAY['DE','FR','US','GB','ES'])[1 + i % 5], now() - (i % 400) * interval '1 day'
  FROM generate_series(1, 2000) i;

CREATE TABLE orders (
    id          bigint PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    status      text NOT NULL,
    amount      numeric(10, 2) NOT NULL,
    created_at  timestamptz NOT NULL
);
INSERT INTO orders
SELECT i, 1 + (i::bigint * 7919) % 2000,
       (ARRAY['paid','paid','paid','shipped','refunded','pending'])[1 + i % 6],
       round((5 + (i * 37) % 300)::numeric + (i % 100) / 100.0, 2),
       now() - ((i::bigint * 104729) % (60 * 24 * 60)) * interval '1 minute'
  FROM generate_series(1, 30000) i;

-- A rollup table kept up to date by a scheduled job (the `sql` job kind).
CREATE TABLE daily_revenue (day date PRIMARY KEY, orders int NOT NULL, revenue numeric NOT NULL);

\echo '== registering: sql jobs, refresh schedules, checks, a metric, an alert rule, a partition set (listed below) =='
\o /dev/null
SELECT pgmart.schedule_sql(
    'daily_revenue_rollup',
    $$INSERT INTO daily_revenue
      SELECT created_at::date, count(*), sum(amount) FROM orders WHERE status IN ('paid','shipped')
       GROUP BY 1
      ON CONFLICT (day) DO UPDATE SET orders = excluded.orders, revenue = excluded.revenue$$,
    '2 seconds') AS job_id;
SELECT pgmart.schedule_sql('nightly_cleanup', $$DELETE FROM orders WHERE status = 'pending' AND created_at < now() - interval '30 days'$$,
                           '0 3 * * *', 'Europe/Berlin') AS job_id;
-- A job that fails: it is retried with backoff, then alerted, without disturbing the others.
SELECT pgmart.schedule_sql('broken_report', 'SELECT 1 / 0', '1 second', max_retries => 1, retry_backoff => '1 second') AS job_id;

-- Materialized views refreshed on schedules, in dependency order, freshness visible to BI tools.
CREATE MATERIALIZED VIEW mart_daily_sales AS
SELECT created_at::date AS day, count(*) AS orders, sum(amount) AS revenue
  FROM orders WHERE status IN ('paid', 'shipped') GROUP BY 1;
CREATE UNIQUE INDEX ON mart_daily_sales (day);
CREATE MATERIALIZED VIEW mart_weekly_sales AS
SELECT date_trunc('week', day)::date AS week, sum(orders) AS orders, sum(revenue) AS revenue
  FROM mart_daily_sales GROUP BY 1;
SELECT pgmart.schedule_refresh('mart_daily_sales', '3 seconds', freshness_slo => '1 minute') AS job_id;
SELECT pgmart.schedule_refresh('mart_weekly_sales', '3 seconds') AS job_id;

-- Data-quality checks, fused into one scan per table, run by the worker every few seconds.
SELECT pgmart.add_check('orders', 'unique', ARRAY['id'], schedule => '3 seconds');
SELECT pgmart.add_check('orders', 'not_null', ARRAY['customer_id', 'created_at'], schedule => '3 seconds');
SELECT pgmart.add_check('orders', 'accepted_values', ARRAY['status'],
                        '{"values": ["paid", "shipped", "refunded"]}', severity => 'warn', schedule => '3 seconds');
SELECT pgmart.add_check('orders', 'expression', params => '{"expression": "amount >= 0"}', schedule => '3 seconds');

-- A metric contract: one owner, one definition, versioned; PostgreSQL refuses to drop its columns.
SELECT pgmart.register_metric('revenue', 'orders', 'sum(amount) FILTER (WHERE status IN (''paid'', ''shipped''))',
                              'created_at', 'finance@shop.example', 'Revenue from paid and shipped orders',
                              dimensions => ARRAY['status']) AS version;
SELECT pgmart.register_metric('avg_order_value', 'orders', 'sum(amount) / nullif(count(*), 0)',
                              'created_at', 'finance@shop.example', 'Average order amount, all statuses') AS version;

-- A risk rule: refunds over 250 raise a durable alert and a NOTIFY on channel pgmart_alerts.
SELECT pgmart.add_alert_rule('big_refund', 'orders', $$status = 'refunded' AND amount > 250$$, severity => 'high') AS rule_id;
INSERT INTO orders VALUES (30001, 7, 'refunded', 299.00, now()), (30002, 8, 'paid', 12.00, now());

-- An event table partitioned by day: pgmart keeps 3 days ahead, drops what is older than 14 days,
-- and its maintenance runs as a job. Rows that arrived before the set existed sit in its default
-- partition and are counted.
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, kind text NOT NULL)
    PARTITION BY RANGE (at);
SELECT pgmart.create_partition_set('events', 'at', '1 day', premake => 3, retention => '14 days',
                                   start_at => now() - interval '2 days', schedule => '5 seconds') AS job_id;
INSERT INTO events (at, kind)
SELECT now() - (i % 48) * interval '1 hour', (ARRAY['view','click','buy'])[1 + i % 3] FROM generate_series(1, 5000) i;
INSERT INTO events (at, kind) VALUES (now() - interval '10 days', 'late');

-- An hourly rollup of events by kind, kept fresh by recomputing only the hours that changed
-- (capture triggers on events and each of its partitions, the ones made later included).
SELECT pgmart.create_rollup('events_hourly', 'events', 'at', '1 hour', '{kind}',
                            '{"events": "count(*)", "first_id": "min(id)"}', schedule => '2 seconds') AS job_id;

-- Snapshots: this month's orders frozen for invoicing (a partition per month, rows the table
-- itself refuses to change), and a type-2 history of customer plans with dbt's column names.
CREATE TABLE customer_plans (customer_id bigint PRIMARY KEY, plan text NOT NULL, updated_at timestamptz NOT NULL);
INSERT INTO customer_plans SELECT id, (ARRAY['free','pro'])[1 + id % 2], now() - interval '30 days' FROM customers;
SELECT pgmart.create_snapshot('orders_monthly', 'orders', 'periodic', period => 'month', unique_key => '{id}') AS job_id;
SELECT pgmart.create_snapshot('customer_plans_history', 'customer_plans', 'timestamp', unique_key => '{customer_id}',
                              updated_at => 'updated_at', preset => 'dbt', schedule => '2 seconds') AS job_id;
UPDATE customer_plans SET plan = 'pro', updated_at = now() WHERE customer_id % 10 = 1;
DELETE FROM customer_plans WHERE customer_id = 2000;

-- Coming from pg_cron: the same call, the same argument order; scheduling a name again updates it.
SELECT pgmart.schedule('refresh-customers-stats', '*/5 * * * *', 'ANALYZE customers') AS job_id;
SELECT pgmart.schedule('refresh-customers-stats', '*/10 * * * *', 'ANALYZE customers') AS job_id;

-- Jobs run in background runners, each connected as its owner, several at once, like psql -c:
-- maintenance that cannot run in a transaction block, and a time limit that stops a runaway job.
SELECT pgmart.schedule_sql('weekly_vacuum', 'VACUUM (ANALYZE) orders', '0 4 * * 0', start_at => now()) AS job_id;
SELECT pgmart.schedule_sql('runaway_report', 'SELECT pg_sleep(60)', '1 hour', start_at => now(),
                           timeout => '2 seconds', max_retries => 0) AS job_id;

-- Table health: a mass update without vacuum leaves half the rows dead; the health job (in a
-- runner, as the table's owner) vacuums it and rebuilds its bloated index, since its owner asked.
CREATE TABLE stock (sku int PRIMARY KEY, qty int);
INSERT INTO stock SELECT g, 0 FROM generate_series(1, 50000) g;
CREATE INDEX stock_qty ON stock (qty);
ANALYZE stock;
UPDATE stock SET qty = qty + 1;
ANALYZE stock;
SELECT pgmart.maintain_table('stock');
SELECT pgmart.schedule_health('5 seconds') AS job_id;
-- A dashboard: who owns it, what it shows, what it reads; pgmart.trust then answers for it, and
-- alerts about anything upstream name it.
SELECT pgmart.register_dashboard('Sales overview', 'ana@shop.example', 'Revenue per day and week, by order status',
                                 metrics => ARRAY['revenue'], sources => ARRAY['mart_daily_sales', 'mart_weekly_sales']::regclass[],
                                 url => 'https://bi.shop.example/d/sales');

-- A team role that is not a superuser: the administrator gives it access once, it owns its own
-- table and job, sees only its own, and PostgreSQL keeps the role while it owns registrations.
\o
\echo '== a team role (etl) and a BI role (bi), neither a superuser =='
CREATE ROLE etl NOLOGIN;
CREATE ROLE bi NOLOGIN;
SELECT pgmart.grant_access('etl', 'user');
SELECT pgmart.grant_access('bi', 'reader');
GRANT CREATE ON SCHEMA public TO etl;
GRANT SELECT ON orders TO etl;
\o /dev/null
SET ROLE etl;
CREATE TABLE staging_orders AS SELECT id, amount, now() AS loaded_at FROM orders WHERE false;
SELECT pgmart.schedule_sql('etl_load', 'INSERT INTO public.staging_orders SELECT id, amount, now() FROM public.orders ORDER BY id DESC LIMIT 10',
                           '2 seconds') AS job_id;
RESET ROLE;
\o

-- Layers (docs/layers.md): raw, staging and mart schemas with least-privilege ingest, transform
-- and BI roles in one idempotent call (the demo's bi role is adopted); a client-facing mart table
-- with a PII column, isolated per tenant; an access check on a schedule.
\o
\echo '== layers: create_layers() once (changes listed), then again (nothing to change) =='
SELECT change, count(*) AS changes FROM pgmart.create_layers() GROUP BY change ORDER BY change;
SELECT count(*) AS changes_on_second_call FROM pgmart.create_layers();
\o /dev/null
CREATE TABLE mart.client_orders AS
SELECT o.id, o.customer_id % 3 + 1 AS tenant_id, c.name AS customer_name, o.amount, o.created_at
  FROM orders o JOIN customers c ON c.id = o.customer_id;
ALTER TABLE mart.client_orders OWNER TO transform;
CREATE INDEX ON mart.client_orders (tenant_id);
SELECT pgmart.label_pii('mart.client_orders', ARRAY['customer_name']);
SELECT * FROM pgmart.isolate_tenants('mart.client_orders', 'tenant_id');
SELECT pgmart.add_check('pgmart.layers', 'access', name => 'layers_access', schedule => '5 seconds');
