"""Benchmark: pgmart snapshots against dbt snapshots, in one run, in one cluster.

A 1,000,000-row source; a timestamp snapshot (hard deletes invalidated) and a check snapshot of it,
each made by pgmart (preset 'dbt': dbt's own table) and by real `dbt snapshot` (dbt-postgres).
Then, twice: 1% of the rows changed (their checked column and updated_at), 0.1% deleted, 0.5% new;
and each tool takes the next snapshot of each strategy:
  - pgmart: `pgmart.run_snapshot` (one statement), wall-clock time;
  - dbt: the SQL dbt sends for that snapshot, as the server timed it (log_min_duration_statement =
    0, every statement of dbt's session summed: introspection, the staging temporary table, the
    UPDATE and INSERT), and the whole `dbt snapshot --select` command's wall-clock time beside it
    (Python start-up included).
Target: pgmart >= 3x faster than dbt's SQL, with identical rows (every column equal; the times of
hard deletes and of check-strategy versions are each tool's own run time, compared as "run N").
The machine is shared: times are single runs, printed side by side with their ratio."""

import os
import re
import subprocess
import sys
import tempfile
import time

import pytest

DBT = os.path.join(os.path.dirname(sys.executable), "dbt")
ROWS = 1_000_000

CLUSTER_SETTINGS = {
    "pgmart.enabled": "off", "shared_buffers": "'1GB'", "max_wal_size": "'8GB'", "checkpoint_timeout": "'1h'",
    "synchronous_commit": "off", "autovacuum": "off", "work_mem": "'64MB'", "maintenance_work_mem": "'512MB'",
    "max_parallel_workers_per_gather": "0", "log_min_duration_statement": "0", "log_line_prefix": "'%a|'",
    "timezone": "'UTC'",
}

SNAPSHOTS = """
{% snapshot b_ts %}
{{ config(target_schema='snaps', unique_key='id', strategy='timestamp', updated_at='updated_at', hard_deletes='invalidate') }}
select * from raw.b_src
{% endsnapshot %}

{% snapshot b_check %}
{{ config(target_schema='snaps', unique_key='id', strategy='check', check_cols=['status', 'tier'], hard_deletes='invalidate') }}
select * from raw.b_src
{% endsnapshot %}
"""


def project(cluster):
    d = tempfile.mkdtemp(prefix="pgmart-dbt-bench-")
    os.makedirs(os.path.join(d, "snapshots"))
    with open(os.path.join(d, "dbt_project.yml"), "w") as f:
        f.write("name: pgmart_bench\nversion: '1.0'\nconfig-version: 2\nprofile: pgmart_bench\nsnapshot-paths: ['snapshots']\n")
    with open(os.path.join(d, "profiles.yml"), "w") as f:
        f.write(f"pgmart_bench:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: '{cluster.dir}'\n"
                f"      port: {cluster.port}\n      user: postgres\n      password: ''\n      dbname: postgres\n"
                "      schema: snaps\n      threads: 1\n")
    with open(os.path.join(d, "snapshots", "b.sql"), "w") as f:
        f.write(SNAPSHOTS)
    return d


DURATION = re.compile(r"^dbt\|.*duration: ([0-9.]+) ms")


def dbt_snapshot(cluster, proj, select):
    """Run `dbt snapshot --select`; return (wall seconds, seconds the server spent on dbt's SQL)."""
    log_before = os.path.getsize(cluster.log)
    env = dict(os.environ, DBT_SEND_ANONYMOUS_USAGE_STATS="false", DO_NOT_TRACK="1")
    start = time.perf_counter()
    r = subprocess.run([DBT, "snapshot", "--select", select, "--project-dir", proj, "--profiles-dir", proj],
                       capture_output=True, text=True, env=env, cwd=proj, timeout=3600)
    wall = time.perf_counter() - start
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    time.sleep(0.5)  # the last log lines
    with open(cluster.log) as f:
        f.seek(log_before)
        server = sum(float(m.group(1)) for line in f if (m := DURATION.match(line))) / 1000.0
    return wall, server


def pgmart_run(conn, name):
    start = time.perf_counter()
    out = conn.execute("SELECT pgmart.run_snapshot(%s)", (name,)).fetchone()[0]
    return time.perf_counter() - start, out


def mutate(conn, rnd_round):
    """1% changed, 0.1% deleted, 0.5% new."""
    n = conn.execute("SELECT max(id) FROM raw.b_src").fetchone()[0]
    conn.execute("UPDATE raw.b_src SET status = 's' || %s, updated_at = updated_at + interval '10 days' "
                 "WHERE id IN (SELECT id FROM raw.b_src ORDER BY hashint4(id + %s) LIMIT %s)",
                 (rnd_round, rnd_round, ROWS // 100))
    conn.execute("DELETE FROM raw.b_src WHERE id IN (SELECT id FROM raw.b_src ORDER BY hashint4(id * 7 + %s) LIMIT %s)",
                 (rnd_round, ROWS // 1000))
    conn.execute("INSERT INTO raw.b_src SELECT g, 'n' || g, 'new', 'free', g %% 1000, '2024-06-01'::timestamp + g * interval '1 second' "
                 "FROM generate_series(%s::int, %s::int) g", (n + 1, n + ROWS // 200))
    conn.execute("ANALYZE raw.b_src")


def differences(conn, a, b, cols, run_cols):
    """Rows of a not in b and of b not in a, run-time columns compared as "run" (both tools'
    run times are after 2025; the source's times are before)."""
    sel = ", ".join(f"CASE WHEN {c} > '2025-06-01' THEN 'run' ELSE {c}::text END" if c in run_cols else c for c in cols)

    def one_way(x, y):
        return conn.execute(f"SELECT count(*) FROM ((SELECT {sel} FROM {x}) EXCEPT ALL (SELECT {sel} FROM {y})) d").fetchone()[0]
    return one_way(a, b) + one_way(b, a)


@pytest.mark.bench
@pytest.mark.skipif(not os.path.exists(DBT), reason="dbt is not installed in the test venv (scripts/setup.sh installs it)")
def test_bench_snapshot_runs_against_dbt(cluster):
    proj = project(cluster)
    with cluster.connect() as conn:
        conn.execute("CREATE SCHEMA raw; CREATE SCHEMA snaps")
        conn.execute("CREATE TABLE raw.b_src (id int PRIMARY KEY, name text, status text, tier text, score numeric(8,2), "
                     "updated_at timestamp NOT NULL)")
        conn.execute(f"INSERT INTO raw.b_src SELECT g, 'n' || g, (ARRAY['new','active','churned'])[1 + g % 3], "
                     f"(ARRAY['free','pro','team'])[1 + g % 3], g % 1000, '2024-01-01'::timestamp + g * interval '1 second' "
                     f"FROM generate_series(1, {ROWS}) g")
        conn.execute("ANALYZE raw.b_src")
        t0 = time.perf_counter()
        conn.execute("SELECT pgmart.create_snapshot('snaps.pg_ts', 'raw.b_src', 'timestamp', unique_key => '{id}', "
                     "updated_at => 'updated_at', preset => 'dbt')")
        conn.execute("SELECT pgmart.create_snapshot('snaps.pg_check', 'raw.b_src', 'check', unique_key => '{id}', "
                     "check_columns => '{status,tier}', preset => 'dbt')")
        first_pg = time.perf_counter() - t0
    first_dbt = [dbt_snapshot(cluster, proj, s) for s in ("b_ts", "b_check")]
    with cluster.connect() as conn:
        for t in ("snaps.pg_ts", "snaps.pg_check", "snaps.b_ts", "snaps.b_check"):
            conn.execute(f"ANALYZE {t}")
    print(f"\nfirst snapshots (2 x {ROWS:,} rows): pgmart {first_pg:.2f} s; dbt SQL {sum(s for _, s in first_dbt):.2f} s "
          f"(dbt commands {sum(w for w, _ in first_dbt):.2f} s)")
    rows = []
    for rnd in (1, 2):
        with cluster.connect() as conn:
            mutate(conn, rnd)
        for strategy, pg_name, dbt_name in (("timestamp", "snaps.pg_ts", "b_ts"), ("check", "snaps.pg_check", "b_check")):
            dbt_wall, dbt_sql = dbt_snapshot(cluster, proj, dbt_name)
            with cluster.connect() as conn:
                pg_wall, out = pgmart_run(conn, pg_name)
            rows.append((rnd, strategy, pg_wall, dbt_sql, dbt_wall, out))
    print(f"\n{'round':>5} {'strategy':>9} | {'pgmart run':>11} | {'dbt SQL (server)':>16} | {'dbt command':>11} | "
          f"{'vs SQL':>7} | {'vs command':>10} | pgmart's counts")
    for rnd, strategy, pg, dsql, dwall, out in rows:
        print(f"{rnd:>5} {strategy:>9} | {pg:>9.3f} s | {dsql:>14.3f} s | {dwall:>9.3f} s | {dsql / pg:>6.1f}x | "
              f"{dwall / pg:>9.1f}x | new {out['inserted']}, closed {out['closed']}, deleted {out['deleted']}")
    cols = ["id", "name", "status", "tier", "score", "updated_at", "dbt_scd_id", "dbt_updated_at", "dbt_valid_from",
            "dbt_valid_to"]
    with cluster.connect() as conn:
        d_ts = differences(conn, "snaps.pg_ts", "snaps.b_ts", cols, {"dbt_valid_to"})
        # check: scd id and times are each tool's run time: compared as "run".
        d_ck = differences(conn, "snaps.pg_check", "snaps.b_check", cols[:6] + ["dbt_updated_at", "dbt_valid_from", "dbt_valid_to"],
                           {"dbt_updated_at", "dbt_valid_from", "dbt_valid_to"})
        sizes = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("snaps.pg_ts", "snaps.b_ts")]
    print(f"identical rows: timestamp {d_ts == 0} ({sizes[0]:,} rows, {sizes[1]:,} in dbt's), check {d_ck == 0}")
    assert d_ts == 0 and d_ck == 0
    for _, _, pg, dsql, _, _ in rows:
        assert dsql / pg >= 3.0, rows
