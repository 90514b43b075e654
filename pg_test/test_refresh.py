"""End-to-end: the background worker refreshes chained materialized views in dependency order; a
failing refresh is retried, alerted, and does not stop the others; a view that was dropped
disables its job; a BI role reads pgmart.freshness and nothing else."""

import time

import psycopg
import pytest

from conftest import Cluster, wait_for


@pytest.fixture(scope="module")
def cluster():
    c = Cluster("refresh", settings={"pgmart.naptime": "'1s'"})
    c.sql("CREATE EXTENSION pgmart")
    c.sql("""
        CREATE TABLE sales (id int PRIMARY KEY, amount int);
        INSERT INTO sales VALUES (1, 10), (2, 20);
        CREATE MATERIALIZED VIEW mv_a AS SELECT id, amount FROM sales;
        CREATE UNIQUE INDEX ON mv_a (id);
        CREATE VIEW v_a2 AS SELECT id, amount * 2 AS doubled FROM mv_a;
        CREATE MATERIALIZED VIEW mv_b AS SELECT sum(doubled)::int AS total FROM v_a2;
        CREATE MATERIALIZED VIEW mv_c AS SELECT total + 1 AS total1 FROM mv_b;
    """)
    yield c
    c.destroy()


def history(cluster, since_id=0):
    return cluster.sql(
        "SELECT refresh_id, view_name, started_at, finished_at, status, triggered_by FROM pgmart.refresh_history "
        "WHERE refresh_id > %s ORDER BY refresh_id", (since_id,))


def test_worker_refreshes_the_chain_upstream_first(cluster):
    # Registered downstream first, and made due downstream first: the order must still be a, b, c.
    for v in ["mv_c", "mv_b", "mv_a"]:
        cluster.sql("SELECT pgmart.schedule_refresh(%s, '1 hour')", (v,))
    cluster.sql("INSERT INTO sales VALUES (3, 30)")
    cluster.sql("""
        UPDATE pgmart.job j SET next_run_at = clock_timestamp() - CASE r.view
               WHEN 'mv_c'::regclass THEN interval '3 s' WHEN 'mv_b'::regclass THEN interval '2 s' ELSE interval '1 s' END
          FROM pgmart.refresh_view r WHERE r.job_id = j.job_id
    """)
    wait_for(lambda: cluster.one("SELECT total1 FROM mv_c") == 121, timeout=30, what="mv_c refreshed by the worker")
    wait_for(lambda: cluster.one("SELECT count(*) FROM pgmart.jobs WHERE kind = 'refresh' AND next_run_at > now() + interval '50 minutes'") == 3,
             timeout=15, what="all three jobs done")
    rows = history(cluster)
    assert [r[1] for r in rows] == ["public.mv_a", "public.mv_b", "public.mv_c"], rows  # once each, in order
    assert all(r[4] == "succeeded" for r in rows)
    for earlier, later in zip(rows, rows[1:]):
        assert earlier[3] <= later[2], (earlier, later)  # each finished before the next started
    assert [r[5] for r in rows] == ["schedule", "after public.mv_a", "after public.mv_a"]
    # mv_a is populated and has a unique index: the worker refreshed it CONCURRENTLY (which needs
    # temporary tables, so it must run outside the job's security-restricted mode).
    assert cluster.sql("SELECT view_name, method FROM pgmart.refresh_history ORDER BY refresh_id") == [
        ("public.mv_a", "concurrent"), ("public.mv_b", "plain"), ("public.mv_c", "plain")]
    runs = cluster.sql("SELECT j.target, r.status, r.details->>'message' FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) "
                       "WHERE j.kind = 'refresh' ORDER BY r.run_id")
    assert [r[0] for r in runs] == ["public.mv_c", "public.mv_b", "public.mv_a"], runs
    assert all(r[1] == "succeeded" for r in runs), runs
    assert "deferred" in runs[0][2] and "deferred" in runs[1][2], runs
    fresh = cluster.sql("SELECT object, last_status, stale FROM pgmart.freshness ORDER BY object")
    assert fresh == [("public.mv_a", "succeeded", False), ("public.mv_b", "succeeded", False),
                     ("public.mv_c", "succeeded", False)]


def test_short_schedules_keep_the_chain_fresh_without_double_refreshes(cluster):
    start = cluster.one("SELECT coalesce(max(refresh_id), 0) FROM pgmart.refresh_history")
    for v in ["mv_c", "mv_b", "mv_a"]:
        cluster.sql("SELECT pgmart.schedule_refresh(%s, '2 seconds')", (v,))  # re-registration updates
    cluster.sql("INSERT INTO sales VALUES (4, 40)")
    wait_for(lambda: cluster.one("SELECT total1 FROM mv_c") == 201, timeout=30, what="mv_c caught up")
    time.sleep(3)
    rows = history(cluster, start)
    assert all(r[4] == "succeeded" for r in rows), rows
    # Every refresh of mv_b and mv_c came right after an mv_a refresh (upstream first), and within one
    # chain nothing was refreshed twice.
    names = [r[1] for r in rows]
    chains = []
    for n in names:
        if n == "public.mv_a":
            chains.append([n])
        else:
            assert chains, names
            chains[-1].append(n)
    for ch in chains:
        assert ch == ["public.mv_a", "public.mv_b", "public.mv_c"], names


def test_failing_refresh_is_retried_alerted_and_does_not_stop_the_others(cluster):
    cluster.sql("""
        CREATE TABLE divisors (d int);
        INSERT INTO divisors VALUES (1);
        CREATE MATERIALIZED VIEW mv_ratio AS SELECT 100 / d AS q FROM divisors;
    """)
    job = cluster.one("SELECT pgmart.schedule_refresh('mv_ratio', '2 seconds', max_retries => 1, retry_backoff => '1 second')")
    cluster.sql("INSERT INTO divisors VALUES (0)")
    wait_for(lambda: cluster.one("SELECT count(*) FROM pgmart.job_runs WHERE job_id = %s AND status = 'failed'", (job,)) >= 1,
             timeout=30, what="the failing refresh to exhaust its retries")
    statuses = [r[0] for r in cluster.sql("SELECT status FROM pgmart.job_runs WHERE job_id = %s ORDER BY run_id", (job,))]
    assert statuses[:2] == ["retrying", "failed"], statuses
    assert cluster.one("SELECT sqlstate FROM pgmart.job_runs WHERE job_id = %s AND status = 'failed' LIMIT 1", (job,)) == "22012"
    hist = cluster.sql("SELECT status, sqlstate, error FROM pgmart.refresh_history WHERE view_name = 'public.mv_ratio' ORDER BY refresh_id")
    assert hist[0] == ("failed", "22012", "division by zero"), hist
    kinds = {r[0] for r in cluster.sql("SELECT source_kind FROM pgmart.alerts WHERE target = 'public.mv_ratio'")}
    assert kinds == {"job", "refresh"}, kinds
    assert cluster.one("SELECT last_status FROM pgmart.freshness WHERE object = 'public.mv_ratio'") == "failed"
    # The chain goes on refreshing meanwhile.
    cluster.sql("INSERT INTO sales VALUES (5, 50)")
    wait_for(lambda: cluster.one("SELECT total1 FROM mv_c") == 301, timeout=30, what="the chain to keep refreshing")
    # Fix the data: the next scheduled run succeeds.
    cluster.sql("DELETE FROM divisors WHERE d = 0")
    wait_for(lambda: cluster.one("SELECT last_status FROM pgmart.freshness WHERE object = 'public.mv_ratio'") == "succeeded",
             timeout=30, what="the failing view to recover")


def test_job_of_a_missing_view_skips_alerts_after_its_allowance_and_resumes(cluster):
    cluster.sql("CREATE MATERIALIZED VIEW mv_gone AS SELECT 1 AS x")
    job = cluster.one("SELECT pgmart.schedule_refresh('mv_gone', '1 second')")
    cluster.sql("DROP MATERIALIZED VIEW mv_gone")
    alert = ("SELECT count(*) FROM pgmart.open_alerts a JOIN pgmart.alerts USING (alert_id) "
             "WHERE alerts.source_kind = 'refresh' AND alerts.dedup_key = %s")
    # The worker's runs are skipped; after two periods (no SLO) missing, an alert.
    wait_for(lambda: cluster.one(alert, (f"refresh_dropped:{job}",)) == 1, timeout=20, what="the missing-view alert")
    assert cluster.one("SELECT count(*) FROM pgmart.job_runs WHERE job_id = %s AND status = 'skipped'", (job,)) >= 2
    assert cluster.one("SELECT count(*) FROM pgmart.job_runs WHERE job_id = %s AND status NOT IN ('skipped', 'succeeded')",
                       (job,)) == 0
    assert cluster.one("SELECT enabled FROM pgmart.jobs WHERE job_id = %s", (job,)) is True
    assert cluster.one("SELECT last_status FROM pgmart.freshness WHERE object = 'public.mv_gone'") == "dropped"
    # Back under its name: taken back, refreshed by the worker, the alert resolved.
    cluster.sql("CREATE MATERIALIZED VIEW mv_gone AS SELECT 2 AS x")
    wait_for(lambda: cluster.one("SELECT last_status FROM pgmart.freshness WHERE object = 'public.mv_gone'") == "succeeded",
             timeout=20, what="the re-created view refreshed by its job")
    assert cluster.one(alert, (f"refresh_dropped:{job}",)) == 0
    cluster.sql("SELECT pgmart.unschedule_refresh('mv_gone')")


def test_bi_role_reads_freshness_and_nothing_else(cluster):
    cluster.sql("CREATE ROLE bi LOGIN")
    cluster.sql("GRANT USAGE ON SCHEMA pgmart TO bi")
    cluster.sql("GRANT SELECT ON pgmart.freshness TO bi")
    rows = cluster.sql("SELECT object, kind, last_refreshed_at IS NOT NULL, age IS NOT NULL, stale, owner "
                       "FROM pgmart.freshness ORDER BY object", user="bi")
    objects = [r[0] for r in rows]
    assert {"public.mv_a", "public.mv_b", "public.mv_c", "public.mv_ratio"} <= set(objects), rows
    assert all(r[1] == "materialized_view" and r[5] == "postgres" for r in rows)
    # Cheap: the view reads only pgmart's catalog.
    with cluster.connect(user="bi") as conn:
        t0 = time.monotonic()
        for _ in range(20):
            conn.execute("SELECT * FROM pgmart.freshness").fetchall()
        assert (time.monotonic() - t0) / 20 < 0.05
    # pgmart.jobs is granted to PUBLIC but shows only the jobs of roles one belongs to: none.
    assert cluster.one("SELECT count(*) FROM pgmart.jobs", user="bi") == 0
    assert cluster.one("SELECT count(*) FROM pgmart.job_runs", user="bi") == 0
    assert cluster.one("SELECT count(*) FROM pgmart.refresh_runs", user="bi") == 0
    assert cluster.one("SELECT count(*) FROM pgmart.refresh_runs") > 0
    for table in ["pgmart.job", "pgmart.job_run", "pgmart.refresh_view", "pgmart.refresh_history", "pgmart.alert",
                  "mv_a", "sales"]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cluster.sql(f"SELECT * FROM {table}", user="bi")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cluster.sql("SELECT * FROM pgmart.refresh_now('mv_a')", user="bi")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cluster.sql("SELECT pgmart.schedule_refresh('mv_a', '1 hour')", user="bi")


def test_registrations_survive_pg_dump_and_restore(cluster):
    cluster.dump_restore("postgres", "restored")
    got = cluster.sql("SELECT object, slo FROM pgmart.freshness WHERE object LIKE 'public.mv\\_%%' AND last_status <> 'dropped' "
                      "ORDER BY object", dbname="restored")
    assert [g[0] for g in got] == ["public.mv_a", "public.mv_b", "public.mv_c", "public.mv_ratio"], got
    rows = cluster.sql("SELECT view_name, status FROM pgmart.refresh_now('mv_a')", dbname="restored")
    assert rows == [("public.mv_a", "succeeded"), ("public.mv_b", "succeeded"), ("public.mv_c", "succeeded")]


def test_a_refresh_waiting_for_a_lock_gives_up_after_lock_timeout(cluster):
    cluster.sql("CREATE MATERIALIZED VIEW mv_locked AS SELECT 1 AS x")
    job = cluster.one("SELECT pgmart.schedule_refresh('mv_locked', '1 hour', max_retries => 1)")
    cluster.sql("ALTER SYSTEM SET pgmart.lock_timeout = '300ms'")
    cluster.reload()
    time.sleep(0.5)
    with cluster.connect(autocommit=False) as holder:
        holder.execute("SELECT * FROM mv_locked")  # holds ACCESS SHARE until rollback
        cluster.sql("UPDATE pgmart.job SET next_run_at = now() - interval '1 s' WHERE job_id = %s", (job,))
        wait_for(lambda: cluster.one("SELECT count(*) FROM pgmart.job_runs WHERE job_id = %s "
                                     "AND status NOT IN ('queued', 'running')", (job,)) >= 1,
                 timeout=20, what="the refresh to give up")
        holder.rollback()
    assert cluster.sql("SELECT status, sqlstate FROM pgmart.job_runs WHERE job_id = %s ORDER BY run_id LIMIT 1", (job,)) == [
        ("retrying", "55P03")]
    assert cluster.sql("SELECT status, sqlstate FROM pgmart.refresh_history WHERE view_name = 'public.mv_locked'") == [
        ("failed", "55P03")]
    cluster.sql("ALTER SYSTEM RESET pgmart.lock_timeout")
    cluster.reload()


def test_refresh_history_is_pruned_by_age(cluster):
    cluster.sql("UPDATE pgmart.refresh_history SET started_at = now() - interval '400 days' WHERE view_name = 'public.mv_locked'")
    cluster.sql("SELECT * FROM pgmart.refresh_due()")
    assert cluster.one("SELECT count(*) FROM pgmart.refresh_history WHERE view_name = 'public.mv_locked'") == 0
    assert cluster.one("SELECT count(*) FROM pgmart.refresh_history") > 0
