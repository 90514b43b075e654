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

\echo '== registering jobs =='
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
