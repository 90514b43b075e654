"""Benchmark: pgmart.trust (and lineage, lineage_mermaid) on a database with 2,000 tables and 200
registered objects: 100 views and 20 materialized views (refreshed by pgmart) over them, 40 checks
with results (some failing), 20 metrics and 20 dashboards. Target: pgmart.trust under 50 ms
(median of several reads, each a full read of the view as a BI tool would do it)."""

import statistics
import time

import pytest

TABLES = 2000
CLUSTER_SETTINGS = {"pgmart.enabled": "off"}


def median_ms(conn, query, runs=15):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        conn.execute(query).fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


@pytest.mark.bench
def test_bench_trust_on_2000_tables(cluster):
    with cluster.connect() as conn:
        conn.execute(f"""DO $$ BEGIN
            FOR i IN 1..{TABLES} LOOP
                EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), v numeric)', i);
            END LOOP;
            FOR i IN 1..100 LOOP
                EXECUTE format('CREATE VIEW v%s AS SELECT a.id, a.at, a.v + b.v AS v FROM t%s a JOIN t%s b USING (id)', i, i, i + 100);
            END LOOP;
            FOR i IN 1..20 LOOP
                EXECUTE format('CREATE MATERIALIZED VIEW m%s AS SELECT date_trunc(''day'', at) AS day, sum(v) AS v FROM v%s GROUP BY 1', i, i);
                EXECUTE format('CREATE UNIQUE INDEX ON m%s (day)', i);
            END LOOP; END $$""")
        for i in range(1, 21):
            conn.execute(f"INSERT INTO t{i} SELECT g, now(), g FROM generate_series(1, 10) g")
            conn.execute(f"SELECT pgmart.schedule_refresh('m{i}', '1 hour')")
            conn.execute(f"SELECT pgmart.register_metric('metric_{i}', 'm{i}', 'sum(v)', 'day', 'team', 'bench')")
        for i in range(1, 41):
            conn.execute(f"SELECT pgmart.add_check('t{i}', 'not_null', '{{v}}', name => 'c{i}')")
            if i % 10 == 0:
                conn.execute(f"INSERT INTO t{i} VALUES (1000, now(), NULL)")
        conn.execute("SELECT count(*) FROM pgmart.run_checks()")
        for i in range(1, 21):
            conn.execute(f"SELECT pgmart.register_dashboard('Dashboard {i}', 'owner {i}', 'bench', "
                         f"metrics => '{{metric_{i}}}', sources => '{{m{i},v{i + 20}}}')")
        conn.execute("ANALYZE")
        rows = conn.execute("SELECT count(*), count(*) FILTER (WHERE status = 'fail') FROM pgmart.trust").fetchone()
        trust = median_ms(conn, "SELECT * FROM pgmart.trust")
        one = median_ms(conn, "SELECT * FROM pgmart.trust WHERE object = 'Dashboard 7'")
        lineage = median_ms(conn, "SELECT * FROM pgmart.lineage()")
        impact = median_ms(conn, "SELECT * FROM pgmart.impact('t1')")
        mermaid = median_ms(conn, "SELECT pgmart.lineage_mermaid('m1')")
    print(f"\n{TABLES} tables, 200 registered objects; pgmart.trust: {rows[0]} rows, {rows[1]} failing")
    print(f"  pgmart.trust (all rows)        {trust:8.1f} ms   target < 50 ms")
    print(f"  pgmart.trust (one dashboard)   {one:8.1f} ms")
    print(f"  pgmart.lineage() (all edges)   {lineage:8.1f} ms")
    print(f"  pgmart.impact('t1')            {impact:8.1f} ms")
    print(f"  pgmart.lineage_mermaid('m1')   {mermaid:8.1f} ms")
    assert rows[1] >= 2
    assert trust < 50, f"pgmart.trust took {trust:.1f} ms"
