"""End-to-end: the job engine from real sessions. Concurrent refresh_due() callers never run a job
twice; jobs run with their owner's privileges; the catalog survives pg_dump."""

import threading

import pytest



# The scheduler is switched off here so that only the sessions under test run jobs.
CLUSTER_SETTINGS = {"pgmart.enabled": "off"}


def test_two_concurrent_sessions_never_run_a_job_twice(cluster):
    cluster.sql("CREATE TABLE run_log (n int, pid int, at timestamptz DEFAULT clock_timestamp())")
    for n in range(40):
        cluster.sql(
            "SELECT pgmart.schedule_sql(%s, %s, '1 hour', start_at => now() - interval '1 minute')",
            (f"conc_{n}", f"INSERT INTO run_log (n, pid) SELECT {n}, pg_backend_pid() FROM pg_sleep(0.02)"),
        )
    results = {}
    barrier = threading.Barrier(2)

    def caller(i):
        with cluster.connect() as conn:
            barrier.wait()
            results[i] = conn.execute("SELECT job_id, status FROM pgmart.refresh_due()").fetchall()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    ran = [r for rows in results.values() for r in rows]
    assert len(ran) == 40, ran
    assert all(status == "succeeded" for _, status in ran)
    assert len({job for job, _ in ran}) == 40
    per_job = cluster.sql("SELECT n, count(*) FROM run_log GROUP BY n HAVING count(*) <> 1")
    assert per_job == []
    assert cluster.one("SELECT count(*) FROM run_log") == 40
    # Both sessions took part (the work was shared, not serialised behind one lock).
    assert cluster.one("SELECT count(DISTINCT pid) FROM run_log") == 2
    # Nothing is due any more: a third call runs nothing, and every job moved one hour ahead.
    assert cluster.sql("SELECT * FROM pgmart.refresh_due()") == []
    assert cluster.one(
        "SELECT count(*) FROM pgmart.jobs WHERE name LIKE 'conc_%%' AND next_run_at > now() + interval '50 minutes'"
    ) == 40
    assert cluster.one("SELECT count(*) FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) "
                       "WHERE j.name LIKE 'conc_%%' AND r.status = 'succeeded'") == 40


def test_jobs_run_with_their_owners_privileges(cluster):
    cluster.sql("CREATE TABLE secret (v int); INSERT INTO secret VALUES (42)")
    cluster.sql("CREATE ROLE alice LOGIN")
    cluster.sql("GRANT USAGE ON SCHEMA pgmart TO alice")
    cluster.sql("CREATE TABLE alice_out (v int)")
    cluster.sql("ALTER TABLE alice_out OWNER TO alice")
    # alice registers a job that tries to copy a table she has no grant on.
    cluster.sql("SELECT pgmart.schedule_sql('alice_steal', 'INSERT INTO alice_out SELECT v FROM secret', "
                "'1 hour', start_at => now() - interval '1 second')", user="alice")
    # Even when a superuser session runs it, the job runs as alice and is refused.
    rows = cluster.sql("SELECT name, status, message FROM pgmart.refresh_due() WHERE name = 'alice_steal'")
    assert rows[0][1] == "retrying"
    assert "permission denied for table secret" in rows[0][2]
    assert cluster.one("SELECT count(*) FROM alice_out") == 0
    assert cluster.one("SELECT sqlstate FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) "
                       "WHERE j.name = 'alice_steal'") == "42501"
    # A job cannot escape with SET ROLE either.
    cluster.sql("SELECT pgmart.schedule_sql('alice_setrole', 'SET ROLE postgres', '1 hour', "
                "start_at => now() - interval '1 second')", user="alice")
    rows = cluster.sql("SELECT status, message FROM pgmart.refresh_due() WHERE name = 'alice_setrole'")
    assert rows[0][0] == "retrying", rows
    # With a grant, the same job succeeds.
    cluster.sql("GRANT SELECT ON secret TO alice")
    job = cluster.one("SELECT job_id FROM pgmart.jobs WHERE name = 'alice_steal'")
    assert cluster.sql("SELECT status FROM pgmart.run_job(%s)", (job,)) == [("succeeded",)]
    assert cluster.one("SELECT sum(v) FROM alice_out") == 42


def test_other_roles_cannot_see_or_touch_alices_jobs(cluster):
    cluster.sql("CREATE ROLE bob LOGIN")
    cluster.sql("GRANT USAGE ON SCHEMA pgmart TO bob")
    assert cluster.one("SELECT count(*) FROM pgmart.jobs WHERE owner = 'alice'", user="bob") == 0
    job = cluster.one("SELECT job_id FROM pgmart.jobs WHERE name = 'alice_steal'")
    import psycopg
    # Another role's job: the same answer as a job that does not exist, naming nobody.
    with pytest.raises(psycopg.errors.UndefinedObject) as e:
        cluster.sql("SELECT pgmart.pause_job(%s)", (job,), user="bob")
    assert "alice" not in str(e.value)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cluster.sql("SELECT pgmart.schedule_sql('bob_as_alice', 'SELECT 1', '1 hour', run_as => 'alice')", user="bob")
    # bob's refresh_due() does not run alice's due jobs.
    cluster.sql("UPDATE pgmart.job SET next_run_at = now() - interval '1 second' "
                "WHERE job_id IN (SELECT job_id FROM pgmart.jobs WHERE owner = 'alice')")
    assert cluster.sql("SELECT name FROM pgmart.refresh_due()", user="bob") == []


def test_job_catalog_is_in_pg_dump(cluster):
    cluster.sql("SELECT pgmart.schedule_sql('dumped_job', 'SELECT 1', '0 3 * * *', 'Europe/Berlin')")
    # Restore into a fresh database: the job is there again, with its schedule.
    cluster.dump_restore("postgres", "restored")
    assert cluster.sql("SELECT schedule, timezone FROM pgmart.jobs WHERE name = 'dumped_job'", dbname="restored") == [
        ("0 3 * * *", "Europe/Berlin")
    ]


def test_history_is_pruned_by_age(cluster):
    cluster.sql("SELECT pgmart.schedule_sql('old_history', 'SELECT 1', '1 hour', start_at => now() - interval '1 s')")
    cluster.sql("SELECT * FROM pgmart.refresh_due()")
    job = cluster.one("SELECT job_id FROM pgmart.jobs WHERE name = 'old_history'")
    cluster.sql("UPDATE pgmart.job_run SET started_at = now() - interval '40 days' WHERE job_id = %s", (job,))
    cluster.sql("SELECT * FROM pgmart.refresh_due()")
    assert cluster.one("SELECT count(*) FROM pgmart.job_run WHERE job_id = %s", (job,)) == 0


def test_drop_extension_removes_everything_and_create_works_again(cluster):
    cluster.createdb("dropper")
    cluster.sql("SELECT pgmart.schedule_sql('j', 'SELECT 1', '1 hour')", dbname="dropper")
    cluster.sql("DROP EXTENSION pgmart", dbname="dropper")
    assert cluster.one("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgmart%%'", dbname="dropper") == 0
    assert cluster.one("SELECT count(*) FROM pg_proc WHERE proname LIKE '%%wake%%'", dbname="dropper") == 0
    cluster.sql("CREATE EXTENSION pgmart", dbname="dropper")
    assert cluster.one("SELECT count(*) FROM pgmart.jobs", dbname="dropper") == 0
