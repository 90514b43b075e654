"""Benchmark: pgmart.table_health on a database with 2,000 tables (target: under 50 ms).

2,000 tables of 200 rows, each with a primary key and an index on a second column (6,000 rows of
pgmart.table_health), 50 of them large enough (20,000 rows, past pgmart.health_min_pages) for the
bloat estimates to be computed, all analyzed. Measured in one warm session (as a BI tool's pooled
connection reads it): the whole view (every row and column, converted to text as a client receives
it, through COPY ... TO '/dev/null' so no client time counts), the columns pgmart.trust reads, and
the rows needing attention. Medians of 15 runs, planning included; the machine is shared.

The anchors (check_postgres's bloat action, pgwatch's metrics) are external collectors that run the
same kind of catalog query from outside; there is nothing to install here to time side by side."""

import statistics
import time

import pytest

CLUSTER_SETTINGS = {"pgmart.enabled": "off", "autovacuum": "off", "max_locks_per_transaction": "1024"}

QUERIES = {
    "every row and column": "COPY (SELECT * FROM pgmart.table_health) TO '/dev/null'",
    "trust's columns": "COPY (SELECT relid, index, status, reason, suggestion FROM pgmart.table_health) TO '/dev/null'",
    "rows needing attention": "COPY (SELECT * FROM pgmart.table_health WHERE status <> 'ok') TO '/dev/null'",
}


@pytest.mark.bench
def test_table_health_on_2000_tables(cluster):
    c = cluster
    c.sql("""DO $$ BEGIN FOR i IN 1..2000 LOOP
        EXECUTE format('CREATE TABLE bh_%s (id int PRIMARY KEY, at timestamptz, note text)', i);
        EXECUTE format('CREATE INDEX ON bh_%s (at)', i);
        EXECUTE format('INSERT INTO bh_%s SELECT g, now(), ''note '' || g FROM generate_series(1, %s) g',
                       i, CASE WHEN i % 40 = 0 THEN 20000 ELSE 200 END);
    END LOOP; END $$""")
    c.sql("ANALYZE")
    rows = c.one("SELECT count(*) FROM pgmart.table_health")
    assert rows >= 6000
    print(f"\npgmart.table_health on 2,000 tables ({rows} rows), PostgreSQL {c.one('SHOW server_version')}:")
    with c.connect() as conn:
        conn.execute("SELECT count(*) FROM pgmart.table_health")  # warm the catalog caches
        for what, q in QUERIES.items():
            times = []
            for _ in range(15):
                t = time.perf_counter()
                conn.execute(q)
                times.append((time.perf_counter() - t) * 1000)
            m = statistics.median(times)
            print(f"  {what:<24} median {m:6.1f} ms  (min {min(times):.1f}, max {max(times):.1f})  target < 50 ms: "
                  f"{'met' if m < 50 else 'NOT met'}")
