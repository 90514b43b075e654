"""Benchmark: incremental rollups against materialized views, in one run.

A 5,000,000-row orders table partitioned by day over 60 days, an hourly rollup by two dimensions
with sum, count, count(DISTINCT) and a ratio; the same aggregate as a materialized view with a
unique index. Then 1% more rows spread over the last day plus 1,000 late rows over the last month,
and:
  (1) pgmart's incremental refresh against REFRESH MATERIALIZED VIEW and REFRESH ... CONCURRENTLY
      (target >= 20x faster than the plain refresh, identical rows);
  (2) the capture triggers' overhead on a 1,000,000-row INSERT ... SELECT and on 10,000 single-row
      inserts, beside a hand-written row trigger that upserts a summary table (the usual
      do-it-yourself approach) (target <= 10%);
  (3) a 7-day dashboard query on the real-time view against the same query on the materialized
      table (target <= 2x).
Times are medians of several interleaved rounds, on the server backend's CPU where one statement
does the work (the machine is shared: wall-clock times are printed too)."""

import os
import statistics
import time

import pytest

ROWS = 5_000_000
DAYS = 60
MEASURES = ('{"revenue": "sum(amount)", "orders": "count(*)", "buyers": "count(DISTINCT customer)", '
            '"avg_amount": "sum(amount) / nullif(count(*), 0)"}')
AGG = ("SELECT date_bin('1 hour', at, '2000-01-01 00:00+00') AS bucket, region, channel, "
       "count(DISTINCT customer) AS buyers, sum(amount) / nullif(count(*), 0) AS avg_amount, count(*) AS orders, "
       "sum(amount) AS revenue FROM {t} GROUP BY 1, 2, 3")
COLS = "bucket, region, channel, buyers, avg_amount, orders, revenue"
FILL = ("INSERT INTO {t} (at, region, channel, amount, customer) "
        "SELECT {start} + (g::float8 / {n}) * {span}, (ARRAY['eu','us','apac','latam','mea'])[1 + g % 5], "
        "(ARRAY['web','app','store'])[1 + (g / 5) % 3], (g % 997) / 10.0, (g::int8 * 7919) % 100000 "
        "FROM generate_series(1, {n}) g")

CLUSTER_SETTINGS = {
    "pgmart.enabled": "off", "shared_buffers": "'1GB'", "max_wal_size": "'8GB'", "checkpoint_timeout": "'1h'",
    "synchronous_commit": "off", "autovacuum": "off", "work_mem": "'64MB'", "maintenance_work_mem": "'512MB'",
    "max_parallel_workers_per_gather": "0",
}


def backend_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(conn, pid, sql):
    start, cpu = time.perf_counter(), backend_cpu(pid)
    conn.execute(sql)
    return time.perf_counter() - start, backend_cpu(pid) - cpu


def orders_table(conn, t):
    conn.execute(f"CREATE TABLE {t} (at timestamptz NOT NULL, region text, channel text, amount numeric, customer int) "
                 "PARTITION BY RANGE (at)")
    conn.execute(f"""DO $$ DECLARE d date; BEGIN
        FOR d IN SELECT generate_series(current_date - {DAYS}, current_date + 1, '1 day')::date LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF {t} FOR VALUES FROM (%L) TO (%L)',
                           '{t}_' || to_char(d, 'YYYYMMDD'), d::timestamptz, (d + 1)::timestamptz);
        END LOOP; END $$""")
    conn.execute(f"CREATE INDEX ON {t} (at)")


@pytest.mark.bench
def test_bench_rollup_refresh_capture_and_realtime(cluster):
    with cluster.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        orders_table(conn, "b_orders")
        # 60 days of orders, up to two days ago, then the last two days up to now.
        conn.execute(FILL.format(t="b_orders", start=f"(current_date - {DAYS})::timestamptz", n=ROWS,
                                 span="(now() - (current_date - 60)::timestamptz)"))
        conn.execute("ANALYZE b_orders")
        conn.execute(f"CREATE MATERIALIZED VIEW b_mv AS {AGG.format(t='b_orders')}")
        conn.execute("CREATE UNIQUE INDEX ON b_mv (bucket, region, channel)")
        conn.execute(f"SELECT pgmart.create_rollup('b_hourly', 'b_orders', 'at', '1 hour', '{{region,channel}}', "
                     f"'{MEASURES}', schedule => '1 hour')")
        wm = "pgmart._rollup_watermark((SELECT job_id FROM pgmart.rollups WHERE name = 'public.b_hourly'))"

        # (1) 1% more rows over the last day, 1,000 late rows over the last month; then refresh.
        ROUNDS = 3
        t_inc, t_mv, t_mvc = [], [], []
        for r in range(ROUNDS):
            conn.execute(FILL.format(t="b_orders", start="now() - interval '1 day'", n=ROWS // 100, span="interval '1 day'")
                         .replace("g % 997", f"(g + {r}) % 997"))
            conn.execute("INSERT INTO b_orders SELECT now() - interval '30 days' + random() * interval '29 days', 'eu', 'web', "
                         f"{r} + 1, g FROM generate_series(1, 1000) g")
            t_inc.append(timed(conn, pid, "SELECT pgmart.refresh_rollup('b_hourly')"))
            t_mv.append(timed(conn, pid, "REFRESH MATERIALIZED VIEW b_mv"))
            t_mvc.append(timed(conn, pid, "REFRESH MATERIALIZED VIEW CONCURRENTLY b_mv"))
        diff = conn.execute(f"SELECT (SELECT count(*) FROM (SELECT {COLS} FROM b_hourly EXCEPT ALL "
                            f"SELECT {COLS} FROM b_mv WHERE bucket < {wm}) a) + "
                            f"(SELECT count(*) FROM (SELECT {COLS} FROM b_mv WHERE bucket < {wm} EXCEPT ALL "
                            f"SELECT {COLS} FROM b_hourly) b)").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM b_hourly").fetchone()[0]

        # (3) a 7-day dashboard: revenue and buyers by day and region.
        dash = ("SELECT date_trunc('day', bucket) AS day, region, sum(revenue), sum(orders), max(buyers) FROM {v} "
                "WHERE bucket >= now() - interval '7 days' GROUP BY 1, 2 ORDER BY 1, 2")
        conn.execute("INSERT INTO b_orders SELECT now() - random() * interval '30 minutes', 'us', 'app', 3, g "
                     "FROM generate_series(1, 500) g")
        t_rt, t_tab = [], []
        for _ in range(7):
            t_rt.append(timed(conn, pid, dash.format(v="b_hourly_rt")))
            t_tab.append(timed(conn, pid, dash.format(v="b_hourly")))

        # (2) capture overhead: a plain table, the same with pgmart's capture, the same with a
        # hand-written row trigger upserting a summary table.
        for t in ("c_plain", "c_pgmart", "c_diy", "c_floor"):
            orders_table(conn, t)
        conn.execute(f"SELECT pgmart.create_rollup('c_hourly', 'c_pgmart', 'at', '1 hour', '{{region,channel}}', "
                     f"'{MEASURES}', schedule => '1 hour', realtime => false)")
        conn.execute("CREATE TABLE c_summary (bucket timestamptz, region text, channel text, revenue numeric, orders bigint, "
                     "PRIMARY KEY (bucket, region, channel))")
        conn.execute("""CREATE FUNCTION c_diy_upsert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO c_summary VALUES (date_bin('1 hour', NEW.at, '2000-01-01 00:00+00'), NEW.region, NEW.channel,
                                              NEW.amount, 1)
                ON CONFLICT (bucket, region, channel) DO UPDATE
                   SET revenue = c_summary.revenue + excluded.revenue, orders = c_summary.orders + 1;
                RETURN NULL;
            END $$""")
        conn.execute("CREATE TRIGGER c_diy AFTER INSERT ON c_diy FOR EACH ROW EXECUTE FUNCTION c_diy_upsert()")
        # The floor of any statement-level capture: PostgreSQL filling the transition table for an
        # empty statement trigger (the same REFERENCING clause as pgmart's).
        conn.execute("CREATE FUNCTION c_floor_empty() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$")
        conn.execute("CREATE TRIGGER c_floor AFTER INSERT ON c_floor REFERENCING NEW TABLE AS n FOR EACH STATEMENT "
                     "EXECUTE FUNCTION c_floor_empty()")
        bulk = {t: [] for t in ("c_plain", "c_pgmart", "c_diy", "c_floor")}
        single = {t: [] for t in bulk}
        order = list(bulk)
        for r in range(5):
            for t in (order if r % 2 == 0 else list(reversed(order))):
                conn.execute(f"TRUNCATE {t}")
                conn.execute("CHECKPOINT")
                bulk[t].append(timed(conn, pid, FILL.format(t=t, start="now() - interval '7 days'", n=1_000_000,
                                                              span="interval '7 days'")))
        one_row = ("INSERT INTO {t} VALUES (now() - random() * interval '7 days', 'eu', 'web', 1.5, 42)")
        for r in range(3):
            for t in (order if r % 2 == 0 else list(reversed(order))):
                start, cpu = time.perf_counter(), backend_cpu(pid)
                for _ in range(10_000):
                    conn.execute(one_row.format(t=t))
                single[t].append((time.perf_counter() - start, backend_cpu(pid) - cpu))

    med = lambda runs, i: statistics.median(x[i] for x in runs)  # noqa: E731
    print()
    print(f"rollups benchmark: {ROWS:,} orders over {DAYS} days (daily partitions), hourly by region and channel")
    print(f"  (1) after +1% rows over the last day and 1,000 late rows over the last month (median of {ROUNDS}):")
    print(f"      pgmart incremental refresh      {med(t_inc, 0):7.3f} s wall  {med(t_inc, 1):7.3f} s cpu   (pgmart)")
    print(f"      REFRESH MATERIALIZED VIEW       {med(t_mv, 0):7.3f} s wall  {med(t_mv, 1):7.3f} s cpu   (anchor)")
    print(f"      REFRESH ... CONCURRENTLY        {med(t_mvc, 0):7.3f} s wall  {med(t_mvc, 1):7.3f} s cpu   (anchor)")
    speed = med(t_mv, 0) / med(t_inc, 0)
    print(f"      speed-up: {speed:.1f}x over REFRESH, {med(t_mvc, 0) / med(t_inc, 0):.1f}x over CONCURRENTLY; "
          f"{rows:,} rollup rows, {diff} differing from the view")
    over = lambda runs: med(runs["c_pgmart"], 1) / med(runs["c_plain"], 1) - 1  # noqa: E731
    diy = lambda runs: med(runs["c_diy"], 1) / med(runs["c_plain"], 1) - 1  # noqa: E731
    floor = lambda runs: med(runs["c_floor"], 1) / med(runs["c_plain"], 1) - 1  # noqa: E731
    print("  (2) capture overhead (backend cpu, median of 5):")
    print(f"      1,000,000-row INSERT ... SELECT: plain {med(bulk['c_plain'], 1):.3f} s, pgmart {over(bulk):+.1%}, "
          f"hand-written row trigger upsert {diy(bulk):+.1%} (anchor); empty statement trigger with the same "
          f"transition table {floor(bulk):+.1%} (the floor)")
    print(f"      10,000 single-row inserts:       plain {med(single['c_plain'], 1):.3f} s, pgmart {over(single):+.1%}, "
          f"hand-written row trigger upsert {diy(single):+.1%} (anchor); empty statement trigger with the same "
          f"transition table {floor(single):+.1%} (the floor)")
    ratio = med(t_rt, 0) / med(t_tab, 0)
    print(f"  (3) 7-day dashboard: real-time view {med(t_rt, 0) * 1000:.1f} ms, materialized table "
          f"{med(t_tab, 0) * 1000:.1f} ms ({ratio:.2f}x)")
    assert diff == 0
    assert speed >= 20, f"incremental refresh only {speed:.1f}x faster than REFRESH MATERIALIZED VIEW"
    assert over(bulk) <= 0.10 and over(single) <= 0.10, "capture overhead above 10%"
    assert ratio <= 2.0
