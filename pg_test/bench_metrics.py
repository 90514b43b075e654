"""Benchmark: pgmart.metric_values against the equivalent hand-written GROUP BY on a 5M-row table
(same buckets, same range), median of several runs each, interleaved. Prints both and the ratio."""

import statistics
import time

import pytest


ROWS = 5_000_000
RUNS = 5
FROM, TO = "2024-01-01 00:00+00", "2025-01-01 00:00+00"


CLUSTER_SETTINGS = {"pgmart.enabled": "off", "shared_buffers": "'512MB'", "work_mem": "'64MB'"}


def timed(conn, query, params=None):
    t0 = time.perf_counter()
    rows = conn.execute(query, params).fetchall()
    return time.perf_counter() - t0, rows


CASES = [
    (
        "sum(amount) by day",
        "SELECT bucket_start, value FROM pgmart.metric_values('bench_revenue', %s, %s)",
        "SELECT date_trunc('day', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket, sum(amount) "
        "FROM bench_orders WHERE created_at >= %s AND created_at < %s GROUP BY 1 ORDER BY 1",
    ),
    (
        "count(DISTINCT customer_id) by week and region, Europe/Berlin",
        "SELECT bucket_start, dimension_values->>'region', value FROM pgmart.metric_values('bench_buyers', %s, %s, "
        "'week', '{region}', 'Europe/Berlin')",
        "SELECT date_trunc('week', created_at AT TIME ZONE 'Europe/Berlin') AT TIME ZONE 'Europe/Berlin' AS bucket, "
        "region, count(DISTINCT customer_id) FROM bench_orders WHERE created_at >= %s AND created_at < %s "
        "GROUP BY 1, 2 ORDER BY 1, 2",
    ),
]


@pytest.mark.bench
def test_metric_values_overhead(cluster):
    cluster.sql("CREATE TABLE bench_orders (id bigint, created_at timestamptz, amount numeric(12,2), "
                "region text, customer_id int)")
    t0 = time.perf_counter()
    cluster.sql(
        f"INSERT INTO bench_orders SELECT i, '2024-01-01 00:00+00'::timestamptz + (i * (366 * 86400.0 / {ROWS})) * interval '1 second', "
        "(i % 1000) / 10.0, (ARRAY['eu','us','apac','latam'])[1 + i % 4], i % 50000 "
        f"FROM generate_series(0, {ROWS - 1}) i")
    # Statistics on the bucket expressions, so that both queries get the same (right) group-count
    # estimate and hence the same aggregation strategy: without them PostgreSQL guesses one group per
    # row and picks sort vs hash for either query on noise, which is what would be measured.
    cluster.sql("CREATE STATISTICS bench_day ON (date_trunc('day', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') "
                "FROM bench_orders")
    cluster.sql("CREATE STATISTICS bench_week ON region, (date_trunc('week', created_at AT TIME ZONE 'Europe/Berlin') "
                "AT TIME ZONE 'Europe/Berlin') FROM bench_orders")
    cluster.sql("VACUUM ANALYZE bench_orders")
    print(f"\nloaded {ROWS} rows in {time.perf_counter() - t0:.1f}s")
    cluster.sql("SELECT pgmart.register_metric('bench_revenue', 'bench_orders', 'sum(amount)', 'created_at', "
                "'bench', 'Revenue', '{region}')")
    cluster.sql("SELECT pgmart.register_metric('bench_buyers', 'bench_orders', 'count(DISTINCT customer_id)', "
                "'created_at', 'bench', 'Buyers', '{region}', grain => 'week')")
    ratios = []
    with cluster.connect() as conn:
        for label, ours, anchor in CASES:
            # Warm up both (and check they agree), then interleave the timed runs.
            _, a_rows = timed(conn, anchor, (FROM, TO))
            _, o_rows = timed(conn, ours, (FROM, TO))
            assert [tuple(r[-1:]) for r in o_rows] == [tuple(r[-1:]) for r in a_rows], label
            assert [r[0] for r in o_rows] == [r[0] for r in a_rows], label
            o_times, a_times = [], []
            for _ in range(RUNS):
                a_times.append(timed(conn, anchor, (FROM, TO))[0])
                o_times.append(timed(conn, ours, (FROM, TO))[0])
            o, a = statistics.median(o_times), statistics.median(a_times)
            ratios.append(o / a)
            print(f"{label}: metric_values {o * 1000:.0f} ms, hand-written GROUP BY {a * 1000:.0f} ms, "
                  f"ratio {o / a:.3f} ({(o / a - 1) * 100:+.1f}%), {len(o_rows)} rows")
    # Informational target: a few percent. Fail only on a gross regression.
    assert max(ratios) < 1.5
