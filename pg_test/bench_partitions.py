"""Benchmark: pgmart partition maintenance vs pg_partman 4.7.2 (Debian postgresql-15-partman), in one
cluster, on 100 parents each, daily partitions, premake 7, retention 30 days.

(1) a maintenance pass with nothing to do; (2) a pass that must create one partition and drop one
per parent (the newest partition of every parent is dropped and one partition older than retention
is added, for both tools alike). Prints both figures and the ratios, and checks that both tools cover
the window both must cover, with the same partitions, and keep nothing beyond retention. (pg_partman
counts premake from the current time, so after 12:00 UTC it makes one partition more ahead than the
7 days both promise: that one is outside the window compared.)"""

import statistics
import time

import pytest

from conftest import Cluster

N = 100


@pytest.fixture(scope="module")
def cluster():
    c = Cluster("bench_partitions", settings={"pgmart.enabled": "off", "max_locks_per_transaction": 1024,
                                               "timezone": "'UTC'"})
    c.sql("CREATE EXTENSION pgmart")
    c.sql("CREATE SCHEMA partman")
    c.sql("CREATE EXTENSION pg_partman SCHEMA partman")
    yield c
    c.destroy()


def timed(conn, query, repeat=1):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        conn.execute(query).fetchall()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def coverage(conn, prefix):
    """Each parent's partitions that meet the window both tools must cover (7 days back and 7 ahead
    of today, today included); asserts they cover it without a gap, and that no partition is older
    than retention (30 days)."""
    lo, hi, retained = conn.execute(
        "SELECT extract(epoch FROM date_trunc('day', now()) - interval '7 days')::float8, "
        "extract(epoch FROM date_trunc('day', now()) + interval '8 days')::float8, "
        "extract(epoch FROM now() - interval '31 days')::float8").fetchone()
    rows = conn.execute(
        "SELECT regexp_replace(s.parent::text, '^[a-z]+_', ''), b.lower_key, b.upper_key "
        "FROM (SELECT c.oid::regclass AS parent FROM pg_class c WHERE c.relname ~ %s AND c.relkind = 'p') s, "
        "pgmart._partition_bounds(s.parent, 'timestamptz') b WHERE NOT b.is_default ORDER BY 1, 2",
        (f"^{prefix}_[0-9]+$",),
    ).fetchall()
    assert all(upper > retained for _, _, upper in rows), f"{prefix}: a partition older than retention is left"
    window = [r for r in rows if r[2] > lo and r[1] < hi]
    parents = sorted({r[0] for r in rows})
    assert len(parents) == N, prefix
    for parent in parents:
        mine = [(a, b) for p, a, b in window if p == parent]
        assert mine and mine[0][0] <= lo and mine[-1][1] >= hi, f"{prefix}_{parent} does not cover the window"
        assert all(mine[k][1] == mine[k + 1][0] for k in range(len(mine) - 1)), f"{prefix}_{parent} has a gap"
    return window


@pytest.mark.bench
def test_maintenance_vs_pg_partman(cluster):
    conn = cluster.connect()
    t0 = time.time()
    for i in range(N):
        conn.execute(f"CREATE TABLE pgm_{i} (id bigint, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)")
        conn.execute(f"CREATE INDEX ON pgm_{i} (ts)")
        conn.execute(f"SELECT pgmart.create_partition_set('pgm_{i}', 'ts', '1 day', premake => 7, "
                     f"retention => '30 days', start_at => now() - interval '7 days')")
        conn.execute(f"CREATE TABLE pman_{i} (id bigint, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)")
        conn.execute(f"CREATE INDEX ON pman_{i} (ts)")
        conn.execute(f"SELECT partman.create_parent(p_parent_table => 'public.pman_{i}', p_control => 'ts', "
                     f"p_type => 'native', p_interval => 'daily', p_premake => 7)")
    conn.execute("UPDATE partman.part_config SET retention = '30 days', retention_keep_table = false, "
                 "infinite_time_partitions = true")
    print(f"\nsetup: {N} parents per tool in {time.time() - t0:.1f}s")
    # Warm both, then check both start with the same coverage.
    conn.execute("SELECT * FROM pgmart.run_partition_maintenance()").fetchall()
    conn.execute("SELECT partman.run_maintenance()")
    assert coverage(conn, "pgm") == coverage(conn, "pman")

    # (1) nothing to do
    pgmart_noop = timed(conn, "SELECT * FROM pgmart.run_partition_maintenance()", repeat=7)
    partman_noop = timed(conn, "SELECT partman.run_maintenance()", repeat=7)
    assert all(r[1] == "succeeded" and r[2] == [] for r in conn.execute(
        "SELECT parent, status, created FROM pgmart.run_partition_maintenance()").fetchall())

    # (2) one partition to create and one to drop per parent, for both tools alike
    for prefix, fmt in (("pgm", "YYYYMMDD"), ("pman", "YYYY_MM_DD")):
        for i in range(N):
            newest = conn.execute(
                "SELECT child_name FROM pgmart._partition_bounds(%s::regclass) WHERE NOT is_default "
                "ORDER BY lower_key DESC LIMIT 1", (f"{prefix}_{i}",)).fetchone()[0]
            conn.execute(f"DROP TABLE {newest}")
            old = conn.execute(f"SELECT to_char(date_trunc('day', now()) - interval '40 days', '{fmt}')").fetchone()[0]
            conn.execute(f"CREATE TABLE {prefix}_{i}_p{old} PARTITION OF {prefix}_{i} FOR VALUES FROM "
                         f"(date_trunc('day', now()) - interval '40 days') TO (date_trunc('day', now()) - interval '39 days')")
    pgmart_work = timed(conn, "SELECT * FROM pgmart.run_partition_maintenance()")
    partman_work = timed(conn, "SELECT partman.run_maintenance()")
    after_pgm, after_pman = coverage(conn, "pgm"), coverage(conn, "pman")
    assert len(after_pgm) == N * 15, len(after_pgm)  # 7 days back, today, 7 days ahead
    assert after_pgm == after_pman

    r1, r2 = partman_noop / pgmart_noop, partman_work / pgmart_work
    print(f"no-op pass, {N} sets:      pgmart {pgmart_noop:8.2f} ms   pg_partman {partman_noop:8.2f} ms   ratio {r1:6.1f}x")
    print(f"create+drop pass, {N} sets: pgmart {pgmart_work:8.2f} ms   pg_partman {partman_work:8.2f} ms   ratio {r2:6.1f}x")
    conn.close()
    assert r1 >= 20, f"no-op pass only {r1:.1f}x faster"
    assert r2 >= 3, f"create+drop pass only {r2:.1f}x faster"

