"""End-to-end: every run in its own background worker connected as the job's owner, in parallel,
with timeouts; commands run as psql -c would run them; never twice at once; fast recovery; cancel
means cancel; statistics reach pgstat; interval schedules keep their wall-clock time."""

import os
import signal
import threading
import time

import psycopg
import pytest

from conftest import wait_for

CLUSTER_SETTINGS = {"pgmart.naptime": "'1s'", "pgmart.max_parallel_jobs": 3, "max_worker_processes": 20,
                    "track_counts": "on"}


def job_id(c, name):
    return c.one("SELECT job_id FROM pgmart.jobs WHERE name = %s", (name,))


def runs(c, name, status=None):
    q = ("SELECT count(*) FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) WHERE j.name = %s"
         + (" AND r.status = %s" if status else ""))
    return c.one(q, (name, status) if status else (name,))


def drop(c, *names):
    for n in names:
        c.sql("SELECT pgmart.drop_job(job_id) FROM pgmart.jobs WHERE name = %s", (n,))


def runner_pids(c, name=None):
    """Runners (of the job `name`): backend_type "pgmart job", query "pgmart job <id>: <name>"."""
    q = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgmart job'" + (" AND query LIKE %s" if name else "")
    return [r[0] for r in c.sql(q, (f"pgmart job %: {name}",) if name else None)]


def wait_until_up(c):
    """After a kill -9 the postmaster restarts every backend: wait until it accepts connections."""
    def up():
        try:
            return c.one("SELECT 1") == 1
        except psycopg.OperationalError:
            return False
    wait_for(up, 60, what="the server back after crash recovery")


def test_statements_that_need_their_own_transaction_run_like_psql_c(cluster):
    c = cluster
    c.sql("CREATE TABLE own_t (id int, v text)")
    c.sql("INSERT INTO own_t SELECT g, 'x' FROM generate_series(1, 1000) g")
    c.sql("DELETE FROM own_t WHERE id % 2 = 0")
    c.sql("CREATE TABLE own_log (msg text)")
    c.sql("""CREATE PROCEDURE own_proc() LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO own_log VALUES ('first'); COMMIT; INSERT INTO own_log VALUES ('second'); COMMIT; END $$""")
    for name, cmd in [("own_vacuum", "VACUUM (ANALYZE) own_t"),
                      ("own_cic", "CREATE INDEX CONCURRENTLY IF NOT EXISTS own_t_id ON own_t (id)"),
                      ("own_reindex", "REINDEX INDEX CONCURRENTLY own_t_id"),
                      ("own_call", "CALL own_proc()")]:
        if name == "own_reindex":
            wait_for(lambda: c.one("SELECT count(*) FROM pg_indexes WHERE indexname = 'own_t_id'") == 1, 30,
                     what="the concurrent index")
        c.sql("SELECT pgmart.schedule_sql(%s, %s, '1 hour', start_at => now())", (name, cmd))
        wait_for(lambda: runs(c, name, "succeeded") == 1, 30, what=f"{name} to succeed")
    assert c.one("SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'own_t'")
    assert c.one("SELECT indisvalid FROM pg_index WHERE indexrelid = 'own_t_id'::regclass")
    assert [r[0] for r in c.sql("SELECT msg FROM own_log")] == ["first", "second"]
    # In a session such a job cannot run inside the caller's transaction: run_job hands it to a runner.
    c.sql("UPDATE pgmart.job SET next_run_at = now() + interval '1 hour' WHERE name = 'own_call'")
    row = c.sql("SELECT status, message FROM pgmart.run_job(%s)", (job_id(c, "own_call"),))[0]
    assert row[0] == "queued", row
    wait_for(lambda: runs(c, "own_call", "succeeded") == 2, 30, what="the handed-over run")
    drop(c, "own_vacuum", "own_cic", "own_reindex", "own_call")


def test_a_run_has_its_owners_identity_and_settings(cluster):
    c = cluster
    c.sql("CREATE ROLE team_owner NOLOGIN")          # the usual owner: a group role
    c.sql("CREATE ROLE login_owner LOGIN")
    for r in ("team_owner", "login_owner"):
        c.sql("SELECT * FROM pgmart.grant_access(%s, 'user')", (r,))
        c.sql(f"ALTER ROLE {r} SET statement_timeout = '4321ms'")
        c.sql(f"ALTER ROLE {r} IN DATABASE postgres SET application_name = 'set_for_{r}'")
    c.sql("CREATE TABLE who (owner text, cur text, sess text, st text, app text, pid int)")
    c.sql("GRANT INSERT ON who TO team_owner, login_owner")
    cmd = ("INSERT INTO who SELECT '{r}', current_user, session_user, current_setting('statement_timeout'), "
           "current_setting('application_name'), pg_backend_pid()")
    for r in ("team_owner", "login_owner"):
        c.sql("SELECT pgmart.schedule_sql(%s, %s, '1 hour', start_at => now(), run_as => %s)",
              (f"who_{r}", cmd.format(r=r), r))
    wait_for(lambda: c.one("SELECT count(*) FROM who") == 2, 30, what="both runs")
    for owner, cur, sess, st, app, pid in c.sql("SELECT * FROM who"):
        assert (cur, sess, st, app) == (owner, owner, "4321ms", f"set_for_{owner}")
    # The run was a runner of its own, shown as such.
    assert c.one("SELECT bool_and(r.run_by ~ ('^runner [0-9]+ \\(' || j.owner || '\\)$')) "
                 "FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) WHERE j.name LIKE 'who_%%'")
    # A run cannot climb back to the scheduler's identity.
    c.sql("CREATE TABLE climb (err text)")
    c.sql("GRANT INSERT ON climb TO team_owner")
    c.sql("""SELECT pgmart.schedule_sql('climb', $cmd$DO $d$ BEGIN
               BEGIN SET SESSION AUTHORIZATION postgres; INSERT INTO climb VALUES ('became ' || current_user);
               EXCEPTION WHEN OTHERS THEN INSERT INTO climb VALUES (SQLSTATE); END;
               BEGIN RESET SESSION AUTHORIZATION; INSERT INTO climb VALUES ('reset to ' || current_user);
               EXCEPTION WHEN OTHERS THEN INSERT INTO climb VALUES (SQLSTATE); END; END $d$$cmd$,
             '1 hour', start_at => now(), run_as => 'team_owner')""")
    wait_for(lambda: c.one("SELECT count(*) FROM climb") == 2, 30, what="the climbing attempts")
    assert all(not r[0].startswith(("became", "reset to postgres")) for r in c.sql("SELECT err FROM climb")), \
        c.sql("SELECT err FROM climb")
    drop(c, "who_team_owner", "who_login_owner", "climb")


def test_a_run_past_its_timeout_is_cancelled_with_57014_and_retried(cluster):
    c = cluster
    c.sql("SELECT pgmart.schedule_sql('too_slow', 'SELECT pg_sleep(60)', '1 hour', start_at => now(), "
          "timeout => '1 second', retry_backoff => '1 second', max_retries => 1)")
    wait_for(lambda: runs(c, "too_slow") >= 2 and c.one(
        "SELECT count(*) FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) WHERE j.name = 'too_slow' "
        "AND r.finished_at IS NOT NULL") >= 2, 40, what="two timed-out attempts")
    rows = c.sql("SELECT r.status, r.sqlstate, extract(epoch FROM r.finished_at - r.started_at) FROM pgmart.job_runs r "
                 "JOIN pgmart.jobs j USING (job_id) WHERE j.name = 'too_slow' ORDER BY run_id LIMIT 2")
    assert [r[:2] for r in rows] == [("retrying", "57014"), ("failed", "57014")], rows
    assert all(r[2] < 10 for r in rows), rows
    # The default comes from pgmart.job_timeout.
    c.sql("ALTER SYSTEM SET pgmart.job_timeout = '1500ms'")
    c.sql("SELECT pg_reload_conf()")
    time.sleep(1)
    c.sql("SELECT pgmart.schedule_sql('too_slow_default', 'SELECT pg_sleep(60)', '1 hour', start_at => now(), max_retries => 0)")
    wait_for(lambda: runs(c, "too_slow_default", "failed") == 1, 40, what="the default timeout")
    c.sql("ALTER SYSTEM RESET pgmart.job_timeout")
    c.sql("SELECT pg_reload_conf()")
    drop(c, "too_slow", "too_slow_default")


def test_a_long_job_does_not_delay_a_short_one(cluster):
    c = cluster
    c.sql("CREATE TABLE short_ticks (due timestamptz, at timestamptz DEFAULT clock_timestamp())")
    c.sql("SELECT pgmart.schedule_sql('long_one', 'SELECT pg_sleep(30)', '1 hour', start_at => now(), timeout => '0')")
    wait_for(lambda: runner_pids(c, "long_one"), 20, what="the long job running")
    c.sql("SELECT pgmart.schedule_sql('short_one', 'INSERT INTO short_ticks (due) SELECT next_run_at FROM pgmart.job "
          "WHERE name = ''short_one''', '1 second')")
    wait_for(lambda: c.one("SELECT count(*) FROM short_ticks") >= 5, 30, what="five short runs beside the long one")
    late = c.one("SELECT max(extract(epoch FROM at - due)) FROM short_ticks")
    assert late < 1.0, f"a 1-second job was {late:.2f} s late beside a 30-second one"
    assert runner_pids(c, "long_one"), "the long job is still running"
    drop(c, "short_one")
    for pid in runner_pids(c, "long_one"):
        c.sql("SELECT pg_terminate_backend(%s)", (pid,))
    drop(c, "long_one")


def test_a_killed_runner_is_recovered_and_run_again(cluster):
    c = cluster
    c.sql("CREATE TABLE killed_done (at timestamptz DEFAULT clock_timestamp())")
    c.sql("SELECT pgmart.schedule_sql('victim', 'SELECT pg_sleep(3); INSERT INTO killed_done DEFAULT VALUES', "
          "'1 hour', start_at => now())")
    pid = wait_for(lambda: (runner_pids(c, "victim") or [None])[0], 20, what="the victim's runner")
    os.kill(pid, signal.SIGKILL)  # the postmaster restarts every backend after a kill -9
    t0 = time.time()
    time.sleep(1)
    wait_until_up(c)
    wait_for(lambda: runs(c, "victim", "interrupted") == 1, 30, what="the run marked interrupted")
    wait_for(lambda: runs(c, "victim", "succeeded") == 1, 30, what="the job run again")
    assert time.time() - t0 < 20
    # SIGTERM (pg_terminate_backend) of a runner: the same.
    c.sql("UPDATE pgmart.job SET next_run_at = now() WHERE name = 'victim'")
    pid = wait_for(lambda: (runner_pids(c, "victim") or [None])[0], 20, what="the victim's runner again")
    c.sql("SELECT pg_terminate_backend(%s)", (pid,))
    t0 = time.time()
    wait_for(lambda: runs(c, "victim", "interrupted") == 2, 20, what="the run marked interrupted")
    wait_for(lambda: runs(c, "victim", "succeeded") == 2, 20, what="the job run again")
    assert time.time() - t0 < 10
    drop(c, "victim")


def test_a_terminated_scheduler_is_back_within_seconds_and_sigint_does_not_stop_it(cluster):
    c = cluster
    sched = wait_for(lambda: c.one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgmart scheduler' "
                                   "AND datname = 'postgres'"), 20, what="the scheduler")
    os.kill(sched, signal.SIGINT)
    time.sleep(1)
    assert c.one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgmart scheduler' AND datname = 'postgres'") == sched
    c.sql("SELECT pg_terminate_backend(%s)", (sched,))
    t0 = time.time()
    new = wait_for(lambda: c.one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgmart scheduler' "
                                 "AND datname = 'postgres' AND pid <> %s", (sched,)), 10, what="a new scheduler")
    assert new and time.time() - t0 < 5
    c.sql("CREATE TABLE after_restart (at timestamptz DEFAULT clock_timestamp())")
    c.sql("SELECT pgmart.schedule_sql('after_restart', 'INSERT INTO after_restart DEFAULT VALUES', '1 hour', start_at => now())")
    wait_for(lambda: c.one("SELECT count(*) FROM after_restart") == 1, 20, what="a job run by the new scheduler")
    drop(c, "after_restart")


def test_job_dml_reaches_pgstat_within_seconds(cluster):
    c = cluster
    c.sql("CREATE TABLE stat_t (id int)")
    c.sql("SELECT pgmart.schedule_sql('stat_job', 'INSERT INTO stat_t SELECT generate_series(1, 500)', '1 hour', "
          "start_at => now())")
    wait_for(lambda: runs(c, "stat_job", "succeeded") == 1, 20, what="the insert job")
    wait_for(lambda: c.one("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'stat_t'") == 500, 15,
             what="the inserts in pg_stat_user_tables")
    drop(c, "stat_job")


def test_cancel_means_cancel_for_refresh_due(cluster):
    c = cluster
    c.sql("CREATE TABLE cancel_log (job text)")
    for i in range(3):
        c.sql("SELECT pgmart.schedule_sql(%s, %s, '1 hour', start_at => now() + interval '1 hour')",
              (f"cancel_{i}", f"SELECT pg_sleep(1); INSERT INTO cancel_log VALUES ('{i}')"))
    c.sql("ALTER SYSTEM SET pgmart.enabled = off")  # only this session runs them
    c.sql("SELECT pg_reload_conf()")
    time.sleep(1)
    try:
        c.sql("UPDATE pgmart.job SET next_run_at = now() - interval '1 second' WHERE name LIKE 'cancel\\_%'")
        with c.connect() as conn:
            conn.execute("SET statement_timeout = '300ms'")
            t0 = time.time()
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT * FROM pgmart.refresh_due()")
            assert time.time() - t0 < 1.5, "the whole call stopped, not one job"
        # Nothing of the cancelled call was kept: no run, no log row.
        assert c.one("SELECT count(*) FROM cancel_log") == 0
        assert c.one("SELECT count(*) FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) "
                     "WHERE j.name LIKE 'cancel\\_%'") == 0
    finally:
        c.sql("ALTER SYSTEM RESET pgmart.enabled")
        c.sql("SELECT pg_reload_conf()")
    drop(c, "cancel_0", "cancel_1", "cancel_2")


def test_never_twice_at_once_even_with_a_stale_snapshot(cluster):
    c = cluster
    c.sql("CREATE TABLE overlap (run text, at timestamptz DEFAULT clock_timestamp(), phase text)")
    c.sql("SELECT pgmart.schedule_sql('once', $$INSERT INTO overlap (run, phase) VALUES (pg_backend_pid()::text, 'start'); "
          "SELECT pg_sleep(6); INSERT INTO overlap (run, phase) VALUES (pg_backend_pid()::text, 'end')$$, "
          "'1 hour', start_at => now() + interval '1 hour')")
    # A session takes its snapshot while the job is free and due...
    with c.connect(autocommit=False) as stale:
        stale.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        c.sql("UPDATE pgmart.job SET next_run_at = now() WHERE name = 'once'")
        stale.execute("SELECT count(*) FROM pgmart.jobs")
        # ...the worker starts it...
        wait_for(lambda: runner_pids(c, "once"), 20, what="the worker's run")
        # ...and the session, with its stale view, asks to run due jobs and to run this one.
        try:
            stale.execute("SELECT * FROM pgmart.refresh_due()")
        except psycopg.errors.DatabaseError:
            pass
        stale.rollback()
    with pytest.raises(psycopg.errors.LockNotAvailable):
        c.sql("SELECT * FROM pgmart.run_job(%s)", (job_id(c, "once"),))
    # Three callers at once while it runs: none starts it again.
    threads = [threading.Thread(target=lambda: c.sql("SELECT * FROM pgmart.refresh_due()")) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: runs(c, "once", "succeeded") == 1, 20)
    assert c.one("SELECT count(DISTINCT run) FROM overlap") == 1, c.sql("SELECT * FROM overlap")
    drop(c, "once")


def test_a_session_holding_a_due_job_does_not_make_the_scheduler_poll(cluster):
    c = cluster
    sched = wait_for(lambda: c.one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgmart scheduler' "
                                   "AND datname = 'postgres'"), 20, what="the scheduler")
    # The session takes the job before it falls due (no race with the scheduler), and holds it
    # until commit; two seconds later it is due, and the scheduler can see that but not take it.
    c.sql("SELECT pgmart.schedule_sql('held', 'SELECT 1', '1 hour', start_at => now() + interval '2 seconds')")
    with c.connect(autocommit=False) as holder:
        holder.execute("SELECT * FROM pgmart.run_job(%s)", (job_id(c, "held"),))  # holds it until commit
        wait_for(lambda: c.one("SELECT next_run_at < now() FROM pgmart.jobs WHERE name = 'held'"), 10,
                 what="the held job falling due")
        time.sleep(0.5)

        def cpu():
            with open(f"/proc/{sched}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        before = cpu()
        time.sleep(3)
        used = cpu() - before
        holder.commit()
    assert used < 0.3, f"the scheduler used {used:.2f} s of CPU in 3 s while a session held a due job"
    drop(c, "held")


def test_worker_status_reports_a_database_short_of_worker_slots(cluster):
    c = cluster
    c.sql("ALTER SYSTEM SET pgmart.max_parallel_jobs = 30")
    c.sql("SELECT pg_reload_conf()")
    time.sleep(1)
    try:
        for i in range(25):
            c.sql("SELECT pgmart.schedule_sql(%s, 'SELECT pg_sleep(5)', '1 hour', start_at => now())", (f"slot_{i}",))
        problem = wait_for(lambda: c.one("SELECT problem FROM pgmart.worker_status() WHERE database = 'postgres' "
                                         "AND problem LIKE 'no free background worker slot%%'"), 30,
                           what="the shortage in worker_status")
        assert "max_worker_processes" in problem
        # Every job still runs, in turn.
        wait_for(lambda: c.one("SELECT count(*) FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) "
                               "WHERE j.name LIKE 'slot\\_%%' AND r.status = 'succeeded'") == 25, 90,
                 what="all 25 runs")
        assert cluster.server_log().count("no free background worker slot for a job runner") <= 3
    finally:
        c.sql("ALTER SYSTEM RESET pgmart.max_parallel_jobs")
        c.sql("SELECT pg_reload_conf()")
        c.sql("SELECT pgmart.drop_job(job_id) FROM pgmart.jobs WHERE name LIKE 'slot\\_%'")
