"""End-to-end: the background workers run jobs unaided, follow CREATE/DROP EXTENSION, reload
settings on SIGHUP, survive kill -9, stay idle on a standby until promotion, and stop at once on
SIGTERM."""

import os
import signal
import time

import psycopg
import pytest

from conftest import Cluster, wait_for

SCHED = "pgmart scheduler"


def schedulers(c, db=None):
    q = "SELECT datname, pid FROM pg_stat_activity WHERE backend_type = %s"
    rows = c.sql(q, (SCHED,))
    return [r for r in rows if db is None or r[0] == db]


def scheduler_pid(c, db="postgres"):
    return wait_for(lambda: next((pid for d, pid in schedulers(c) if d == db), None), 20, what=f"scheduler in {db}")


def runs(c, name, status=None, db="postgres"):
    q = ("SELECT count(*) FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) WHERE j.name = %s"
         + (" AND r.status = %s" if status else ""))
    return c.one(q, (name, status) if status else (name,), dbname=db)




def test_jobs_run_on_schedule_with_no_client(cluster):
    cluster.sql("CREATE TABLE ticks (at timestamptz DEFAULT clock_timestamp())")
    cluster.sql("SELECT pgmart.schedule_sql('tick', 'INSERT INTO ticks DEFAULT VALUES', '1 second')")
    wait_for(lambda: cluster.one("SELECT count(*) FROM ticks") >= 3, 20, what="three ticks")
    assert cluster.one("SELECT bool_and(run_by LIKE 'runner %% (postgres)') FROM pgmart.job_runs r "
                       "JOIN pgmart.jobs j USING (job_id) WHERE j.name = 'tick'")
    # Runs about once a second, never overlapping.
    gaps = cluster.sql("SELECT extract(epoch FROM at - lag(at) OVER (ORDER BY at)) FROM ticks")
    assert all(g[0] is None or g[0] > 0.5 for g in gaps), gaps
    cluster.sql("SELECT pgmart.pause_job((SELECT job_id FROM pgmart.jobs WHERE name = 'tick'))")


def test_scheduler_is_visible_with_its_current_job(cluster):
    assert cluster.one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgmart launcher'") == 1
    cluster.sql("SELECT pgmart.schedule_sql('visible', 'SELECT pg_sleep(3)', '1 hour', start_at => now())")
    # Each run is a worker of its own, "pgmart job", with the job's name as its query.
    q = wait_for(lambda: cluster.one("SELECT query FROM pg_stat_activity WHERE backend_type = 'pgmart job' "
                                     "AND query LIKE '%%visible%%'"), 15, what="job in pg_stat_activity")
    assert "visible" in q
    wait_for(lambda: runs(cluster, "visible", "succeeded") == 1, 15)


def test_create_and_drop_extension_in_a_second_database(cluster):
    cluster.createdb("second", extension=False)
    time.sleep(1.5)
    assert schedulers(cluster, "second") == []
    t0 = time.time()
    cluster.sql("CREATE EXTENSION pgmart", dbname="second")
    wait_for(lambda: schedulers(cluster, "second"), 10, what="a scheduler for the new database")
    assert time.time() - t0 < 5, "picked up within a few seconds"
    cluster.sql("CREATE TABLE t (v int)", dbname="second")
    cluster.sql("SELECT pgmart.schedule_sql('second_job', 'INSERT INTO t VALUES (1)', '1 hour', start_at => now())",
                dbname="second")
    wait_for(lambda: cluster.one("SELECT count(*) FROM t", dbname="second") == 1, 10, what="job in second db")
    # Wake the launcher repeatedly: still exactly one scheduler per database.
    for _ in range(5):
        cluster.sql("SELECT pgmart._wake_launcher()", dbname="second")
        time.sleep(0.3)
    assert len(schedulers(cluster, "second")) == 1
    assert len(schedulers(cluster, "postgres")) == 1
    cluster.sql("DROP EXTENSION pgmart", dbname="second")
    wait_for(lambda: schedulers(cluster, "second") == [], 15, what="scheduler to stop after DROP EXTENSION")
    time.sleep(2)
    assert schedulers(cluster, "second") == []


def test_sighup_changes_naptime(cluster):
    cluster.sql("CREATE TABLE naps (at timestamptz DEFAULT clock_timestamp())")
    cluster.sql("SELECT pgmart.schedule_sql('nap', 'INSERT INTO naps DEFAULT VALUES', '1 hour')")
    # Bypass the wake-up trigger so only the naptime decides when the scheduler looks again.
    cluster.sql("ALTER TABLE pgmart.job DISABLE TRIGGER job_changed")
    try:
        cluster.set("pgmart.naptime", "'30s'")
        cluster.reload()
        time.sleep(2)  # the scheduler is now in a 30 s sleep
        cluster.sql("UPDATE pgmart.job SET next_run_at = now() WHERE name = 'nap'")
        time.sleep(4)
        assert cluster.one("SELECT count(*) FROM naps") == 0, "with a 30 s naptime the job waits"
        cluster.set("pgmart.naptime", "'1s'")
        cluster.reload()
        wait_for(lambda: cluster.one("SELECT count(*) FROM naps") == 1, 5, what="job after naptime reload")
    finally:
        cluster.sql("ALTER TABLE pgmart.job ENABLE TRIGGER job_changed")


def test_sighup_disables_and_enables(cluster):
    cluster.set("pgmart.enabled", "off")
    cluster.reload()
    time.sleep(1)
    cluster.sql("CREATE TABLE en (v int)")
    cluster.sql("SELECT pgmart.schedule_sql('en', 'INSERT INTO en VALUES (1)', '1 hour', start_at => now())")
    time.sleep(3)
    assert cluster.one("SELECT count(*) FROM en") == 0
    cluster.set("pgmart.enabled", "on")
    cluster.reload()
    wait_for(lambda: cluster.one("SELECT count(*) FROM en") == 1, 10, what="job after enabling")


def test_sigterm_ends_a_running_job_at_once_and_it_runs_again(cluster):
    cluster.sql("CREATE TABLE slept (v int)")
    cluster.sql("SELECT pgmart.schedule_sql('sleeper', 'SELECT pg_sleep(30); INSERT INTO slept VALUES (1)', "
                "'1 hour', start_at => now())")
    pid = wait_for(lambda: cluster.one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgmart job' "
                                       "AND query LIKE '%%sleeper%%'"), 15, what="sleeper running")
    t0 = time.time()
    cluster.sql("SELECT pg_terminate_backend(%s)", (pid,))
    wait_for(lambda: cluster.one("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)) == 0, 5)
    assert time.time() - t0 < 1.5, "SIGTERM ends the worker within a second"
    # The scheduler marks the run interrupted and runs the job again.
    wait_for(lambda: runs(cluster, "sleeper", "interrupted") == 1, 90, what="interrupted run")
    wait_for(lambda: runs(cluster, "sleeper", "running") == 1, 90, what="sleeper running again")
    assert cluster.one("SELECT count(*) FROM slept") == 0
    cluster.sql("SELECT pgmart.pause_job((SELECT job_id FROM pgmart.jobs WHERE name = 'sleeper'))")


def test_fast_shutdown_is_not_delayed():
    c = Cluster("shutdown")
    try:
        c.sql("CREATE EXTENSION pgmart")
        c.sql("SELECT pgmart.schedule_sql('long', 'SELECT pg_sleep(60)', '1 hour', start_at => now())")
        wait_for(lambda: c.one("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'pgmart job%%long%%'"), 15)
        t0 = time.time()
        c.stop("fast")
        assert time.time() - t0 < 5
    finally:
        c.destroy()


@pytest.mark.parametrize("victim", ["scheduler", "postmaster"])
def test_kill_9_mid_job_loses_nothing(victim):
    c = Cluster(f"crash-{victim}")
    try:
        c.sql("CREATE EXTENSION pgmart")
        c.sql("CREATE TABLE done (v int)")
        # First attempt sleeps long enough to be killed; any later attempt finishes quickly.
        c.sql("CREATE TABLE attempts (n serial)")
        c.sql("SELECT pgmart.schedule_sql('crashy', $$INSERT INTO done SELECT 1 FROM pg_sleep(CASE WHEN "
              "(SELECT count(*) FROM pgmart.job_run WHERE status = 'interrupted') = 0 THEN 30 ELSE 0 END)$$, "
              "'1 hour', start_at => now())")
        pid = wait_for(lambda: c.one("SELECT pid FROM pg_stat_activity WHERE query LIKE 'pgmart job%%crashy%%'"), 15)
        assert c.one("SELECT status FROM pgmart.job_runs") == "running"
        if victim == "scheduler":
            os.kill(pid, signal.SIGKILL)  # the postmaster then restarts every backend (crash recovery)
        else:
            with open(os.path.join(c.data, "postmaster.pid")) as f:
                os.kill(int(f.readline()), signal.SIGKILL)  # the whole server dies mid-job
        # The postmaster may not have noticed the kill yet when the first query gets through:
        # "in recovery mode" right after "up" is part of coming back, not a failure.
        wait_for(lambda: _up(c) and _query_or_none(c, "SELECT count(*) FROM done") == 1, 60,
                 what="job to run again after the crash")
        statuses = sorted(r[0] for r in c.sql("SELECT status FROM pgmart.job_runs"))
        assert statuses == ["interrupted", "succeeded"], statuses
    finally:
        c.destroy()


def _up(c):
    try:
        return c.one("SELECT 1") == 1
    except psycopg.OperationalError:
        if not os.path.exists(os.path.join(c.data, "postmaster.pid")) or not _postmaster_alive(c):
            try:
                c.start()
            except Exception:
                pass
        return False


def _query_or_none(c, q):
    try:
        return c.one(q)
    except psycopg.OperationalError:
        return None


def _postmaster_alive(c):
    try:
        with open(os.path.join(c.data, "postmaster.pid")) as f:
            os.kill(int(f.readline()), 0)
        return True
    except (OSError, ValueError):
        return False


def test_standby_runs_nothing_until_promoted():
    primary = Cluster("primary", settings={"pgmart.enabled": "off"})
    standby = None
    try:
        primary.sql("CREATE EXTENSION pgmart")
        primary.sql("CREATE TABLE promoted (v int)")
        primary.sql("SELECT pgmart.schedule_sql('after_promotion', 'INSERT INTO promoted VALUES (1)', '1 second')")
        standby = Cluster("standby", basebackup_of=primary, settings={"pgmart.enabled": "on"})
        wait_for(lambda: standby.one("SELECT pg_is_in_recovery()"), 10)
        wait_for(lambda: standby.one("SELECT count(*) FROM pgmart.jobs WHERE name = 'after_promotion'") == 1, 10)
        time.sleep(3)
        # No pgmart workers on the standby, nothing run; the read-only views still work.
        assert standby.one("SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pgmart%%'") == 0
        assert standby.one("SELECT count(*) FROM pgmart.job_runs") == 0
        with standby.connect() as conn:
            notices = []
            conn.add_notice_handler(lambda d: notices.append(d.message_primary))
            assert conn.execute("SELECT * FROM pgmart.refresh_due()").fetchall() == []
            assert any("standby" in n for n in notices)
        standby.sql("SELECT pg_promote()")
        wait_for(lambda: not standby.one("SELECT pg_is_in_recovery()"), 20)
        wait_for(lambda: standby.one("SELECT count(*) FROM promoted") >= 1, 30, what="job on the promoted node")
        assert primary.one("SELECT count(*) FROM promoted") == 0
    finally:
        if standby:
            standby.destroy()
        primary.destroy()


def test_without_preload_the_sql_api_works_and_says_so():
    c = Cluster("nopreload", preload=False)
    try:
        notices = []
        with c.connect() as conn:
            conn.add_notice_handler(lambda d: notices.append(d.message_primary))
            conn.execute("CREATE EXTENSION pgmart")
            conn.execute("CREATE TABLE t (v int)")
        with c.connect() as conn:
            conn.add_notice_handler(lambda d: notices.append(d.message_primary))
            conn.execute("SELECT pgmart.schedule_sql('manual', 'INSERT INTO t VALUES (1)', '1 hour', start_at => now())")
            assert sum("nothing runs on its own" in n for n in notices) == 2, notices
            assert conn.execute("SELECT status FROM pgmart.refresh_due()").fetchall() == [("succeeded",)]
        assert c.one("SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pgmart%%'") == 0
    finally:
        c.destroy()
