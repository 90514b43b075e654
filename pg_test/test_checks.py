"""End-to-end: data-quality checks on a real cluster with the pgmart worker running (naptime 1s).
A scheduled suite is run by the worker as its owner with results in history; a failing check raises
a durable alert and a NOTIFY; a check whose column was dropped reports `error` while the others pass;
checks of one table on different schedules run on their own cadence, and share one scan when they
fall due together; the suite of a dropped table skips its runs until a table of its name returns."""

import json


from conftest import wait_for




def test_scheduled_suite_runs_in_the_worker_as_its_owner(cluster):
    cluster.sql("CREATE ROLE carol LOGIN")
    cluster.sql("GRANT USAGE ON SCHEMA pgmart TO carol")
    cluster.sql("GRANT CREATE ON SCHEMA public TO carol")
    cluster.sql("CREATE TABLE sched_orders (id int, status text)", user="carol")
    cluster.sql("INSERT INTO sched_orders VALUES (1, 'placed'), (2, 'placed'), (2, 'lost')", user="carol")
    cluster.sql("SELECT pgmart.add_check('sched_orders', 'unique', ARRAY['id'], schedule => '2 seconds')", user="carol")
    cluster.sql("SELECT pgmart.add_check('sched_orders', 'accepted_values', ARRAY['status'], "
                "'{\"values\": [\"placed\"]}', schedule => '2 seconds')", user="carol")
    assert cluster.one("SELECT count(*) FROM pgmart.jobs WHERE kind = 'check_suite'") == 1
    assert cluster.one("SELECT owner FROM pgmart.jobs WHERE kind = 'check_suite'") == "carol"
    # The worker runs the suite on its own, twice or more.
    wait_for(lambda: cluster.one("SELECT count(*) FROM pgmart.check_results WHERE target = 'public.sched_orders'") >= 4,
             timeout=30, what="two suite runs in history")
    rows = cluster.sql("SELECT name, status, failing_rows, checked_rows, run_by FROM pgmart.check_results "
                       "WHERE target = 'public.sched_orders' ORDER BY result_id LIMIT 2")
    assert rows[0][:4] == ("unique_sched_orders_id", "fail", 1, 3)
    assert rows[1][:4] == ("accepted_values_sched_orders_status", "fail", 1, 3)
    assert rows[0][4].startswith("job ")
    run = cluster.sql("SELECT r.status, r.details->>'message' FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) "
                      "WHERE j.kind = 'check_suite' ORDER BY run_id LIMIT 1")
    assert run[0][0] == "succeeded", run
    assert "2 fail" in run[0][1]


def test_suite_runs_with_the_owners_privileges(cluster):
    # carol's scheduled check on a table she later loses access to reports an error, not data.
    cluster.sql("CREATE TABLE secret_orders (id int)")
    cluster.sql("GRANT SELECT ON secret_orders TO carol")
    cluster.sql("SELECT pgmart.add_check('secret_orders', 'unique', ARRAY['id'], schedule => '2 seconds')", user="carol")
    cluster.sql("REVOKE SELECT ON secret_orders FROM carol")
    wait_for(lambda: cluster.one("SELECT count(*) FROM pgmart.check_results WHERE target = 'public.secret_orders'") >= 1,
             timeout=30, what="a run of carol's secret_orders suite")
    status, message = cluster.sql("SELECT status, message FROM pgmart.check_results WHERE target = 'public.secret_orders' "
                                  "ORDER BY result_id LIMIT 1")[0]
    assert status == "error"
    assert "permission denied" in message


def test_failing_check_raises_an_alert_with_counts_and_sample(cluster):
    cluster.sql("CREATE TABLE alert_orders (id int PRIMARY KEY, customer_id int)")
    cluster.sql("INSERT INTO alert_orders SELECT g, CASE WHEN g IN (4, 9) THEN NULL ELSE g END FROM generate_series(1, 20) g")
    cluster.sql("SELECT pgmart.add_check('alert_orders', 'not_null', ARRAY['customer_id'])")
    with cluster.connect() as listener:
        listener.execute("LISTEN pgmart_alerts")
        rows = cluster.sql("SELECT name, status, failing_rows, sample FROM pgmart.run_checks('alert_orders')")
        assert rows == [("not_null_alert_orders_customer_id", "fail", 2, [{"id": 4}, {"id": 9}])]
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert notes, "no NOTIFY on pgmart_alerts"
    msg = json.loads(notes[0].payload)
    assert msg["source_kind"] == "check" and msg["source_name"] == "not_null_alert_orders_customer_id"
    payload = cluster.one("SELECT payload FROM pgmart.alerts WHERE source_name = 'not_null_alert_orders_customer_id'")
    assert payload["failing_rows"] == 2 and payload["checked_rows"] == 20
    assert payload["sample"] == [{"id": 4}, {"id": 9}]
    # While it is open, the same failure does not alert again.
    cluster.sql("SELECT * FROM pgmart.run_checks('alert_orders')")
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'not_null_alert_orders_customer_id'") == 1


def test_dropped_column_reports_error_while_the_others_pass(cluster):
    cluster.sql("CREATE TABLE drift (id int, a int, b text)")
    cluster.sql("INSERT INTO drift SELECT g, g, 'x' FROM generate_series(1, 100) g")
    cluster.sql("SELECT pgmart.add_check('drift', 'not_null', ARRAY['a'])")
    cluster.sql("SELECT pgmart.add_check('drift', 'unique', ARRAY['id'])")
    cluster.sql("SELECT pgmart.add_check('drift', 'accepted_values', ARRAY['b'], '{\"values\": [\"x\"]}')")
    cluster.sql("SELECT pgmart.add_check('drift', 'row_count', params => '{\"min\": 1}')")
    cluster.sql("ALTER TABLE drift DROP COLUMN a")
    rows = {r[0]: r[1:] for r in cluster.sql("SELECT name, status, failing_rows FROM pgmart.run_checks('drift')")}
    assert rows["not_null_drift_a"][0] == "error"
    assert rows["unique_drift_id"] == ("pass", 0)
    assert rows["accepted_values_drift_b"] == ("pass", 0)
    assert rows["row_count_drift"][0] == "pass"
    msg = cluster.one("SELECT message FROM pgmart.check_results WHERE name = 'not_null_drift_a' ORDER BY result_id DESC LIMIT 1")
    assert 'column "a" does not exist' in msg


def test_checks_survive_pg_dump_and_restore(cluster):
    cluster.createdb("checks_src")
    d = dict(dbname="checks_src")
    cluster.sql("CREATE TABLE cust (id int PRIMARY KEY); INSERT INTO cust VALUES (1)", **d)
    cluster.sql("CREATE TABLE ord (id int, cust_id int, status text); "
                "INSERT INTO ord VALUES (1, 1, 'ok'), (1, 9, 'ok')", **d)
    cluster.sql("SELECT pgmart.add_check('ord', 'unique', ARRAY['id'], schedule => '1 hour')", **d)
    cluster.sql("SELECT pgmart.add_check('ord', 'relationships', ARRAY['cust_id'], "
                "'{\"to\": \"cust\", \"field\": \"id\"}', severity => 'warn')", **d)
    cluster.sql("SELECT pgmart.add_check('ord', 'accepted_values', ARRAY['status'], '{\"values\": [\"ok\"]}', "
                "where_clause => 'id > 0')", **d)
    cluster.dump_restore("checks_src", "checks_dst")
    t = dict(dbname="checks_dst")
    assert cluster.one("SELECT count(*) FROM pgmart.jobs WHERE kind = 'check_suite'", **t) == 1
    got = cluster.sql("SELECT name, status, failing_rows FROM pgmart.run_checks('ord') ORDER BY check_id", **t)
    assert got == [("unique_ord_id", "fail", 1), ("relationships_ord_cust_id", "warn", 1),
                   ("accepted_values_ord_status", "pass", 0)], got


def _job_of(cluster, check):
    return cluster.one("SELECT job_id FROM pgmart.checks WHERE name = %s", (check,))


def test_checks_of_one_table_run_on_their_own_schedules(cluster):
    cluster.sql("CREATE TABLE own_sched (id int, v int)")
    cluster.sql("INSERT INTO own_sched SELECT g, g FROM generate_series(1, 100) g")
    cluster.sql("SELECT pgmart.add_check('own_sched', 'not_null', ARRAY['id'], schedule => '2 seconds', name => 'own_fast')")
    cluster.sql("SELECT pgmart.add_check('own_sched', 'not_null', ARRAY['v'], schedule => '1 hour', name => 'own_hourly')")
    fast, hourly = _job_of(cluster, "own_fast"), _job_of(cluster, "own_hourly")
    assert fast != hourly
    assert cluster.sql("SELECT schedule FROM pgmart.jobs WHERE job_id IN (%s, %s) ORDER BY job_id", (fast, hourly)) == \
        [("2 seconds",), ("1 hour",)]
    # The worker runs the 2-second check again and again; the hourly one not at all.
    wait_for(lambda: cluster.one("SELECT count(*) FROM pgmart.check_results WHERE name = 'own_fast'") >= 3,
             timeout=30, what="three runs of the 2-second check")
    assert cluster.one("SELECT count(*) FROM pgmart.check_results WHERE name = 'own_hourly'") == 0
    assert cluster.one("SELECT count(*) FROM pgmart.job_runs WHERE job_id = %s", (hourly,)) == 0
    assert cluster.one("SELECT next_run_at > now() + interval '50 minutes' FROM pgmart.jobs WHERE job_id = %s", (hourly,))
    assert {r[0] for r in cluster.sql("SELECT run_by FROM pgmart.check_results WHERE name = 'own_fast'")} == {f"job {fast}"}
    cluster.sql("SELECT pgmart.drop_check('own_fast')")
    assert cluster.one("SELECT count(*) FROM pgmart.jobs WHERE job_id = %s", (fast,)) == 0
    assert cluster.one("SELECT count(*) FROM pgmart.jobs WHERE job_id = %s", (hourly,)) == 1


def test_suites_due_together_share_one_scan(cluster):
    cluster.sql("CREATE TABLE due_tog (id int, v int)")
    cluster.sql("INSERT INTO due_tog SELECT g, g FROM generate_series(1, 1000) g")
    cluster.sql("SELECT pgmart.add_check('due_tog', 'not_null', ARRAY['id'], schedule => '1 hour', name => 'tog_a')")
    cluster.sql("SELECT pgmart.add_check('due_tog', 'not_null', ARRAY['v'], schedule => '2 hours', name => 'tog_b')")
    cluster.sql("SELECT pgmart.add_check('due_tog', 'row_count', params => '{\"min\": 1}', schedule => '3 hours', "
                "name => 'tog_paused')")
    a, b, c = (_job_of(cluster, n) for n in ("tog_a", "tog_b", "tog_paused"))
    cluster.sql("SELECT pgmart.pause_job(%s)", (c,))
    # All three fall due at the same moment (the paused one is not run by the others).
    cluster.sql("UPDATE pgmart.job SET next_run_at = now() WHERE job_id IN (%s, %s, %s)", (a, b, c))
    done = "SELECT count(*) FROM pgmart.job_runs WHERE job_id IN (%s, %s) AND status = 'succeeded'"
    wait_for(lambda: cluster.one(done, (a, b)) >= 2, timeout=30, what="a run of each of the two due suites")
    results = cluster.sql("SELECT name, run_by, duration_ms, run_at FROM pgmart.check_results "
                          "WHERE target = 'public.due_tog' ORDER BY name")
    # One scan: one result each, from the same run of the same statement.
    assert [r[0] for r in results] == ["tog_a", "tog_b"], results
    assert results[0][1] == results[1][1] and results[0][2] == results[1][2], results
    assert abs((results[0][3] - results[1][3]).total_seconds()) < 0.1, results
    scanner = int(results[0][1].split()[1])
    other = b if scanner == a else a
    msgs = dict(cluster.sql("SELECT job_id, details->>'message' FROM pgmart.job_runs WHERE job_id IN (%s, %s)", (a, b)))
    assert f"in the same scan, 1 checks of job {other} (due too)" in msgs[scanner], msgs
    assert msgs[other] == f"all 1 checks already ran after this run fell due (job {scanner}); not run again", msgs
    # Both are scheduled on; the paused job ran nothing.
    assert cluster.one("SELECT bool_and(next_run_at > now() + interval '50 minutes') FROM pgmart.jobs "
                       "WHERE job_id IN (%s, %s)", (a, b))
    assert cluster.one("SELECT count(*) FROM pgmart.job_runs WHERE job_id = %s", (c,)) == 0


def test_the_suite_of_a_dropped_table_skips_until_it_returns(cluster):
    cluster.sql("CREATE TABLE gone_t (id int)")
    cluster.sql("INSERT INTO gone_t VALUES (1)")
    cluster.sql("SELECT pgmart.add_check('gone_t', 'not_null', ARRAY['id'], schedule => '2 seconds', name => 'gone_id')")
    job = _job_of(cluster, "gone_id")
    wait_for(lambda: cluster.one("SELECT count(*) FROM pgmart.check_results WHERE name = 'gone_id'") >= 1,
             timeout=30, what="a first run")
    cluster.sql("DROP TABLE gone_t")
    dropped = cluster.one("SELECT max(run_id) FROM pgmart.job_runs WHERE job_id = %s", (job,))
    before = cluster.one("SELECT count(*) FROM pgmart.check_results WHERE name = 'gone_id'")
    skipped = "SELECT count(*) FROM pgmart.job_runs WHERE job_id = %s AND run_id > %s AND status = 'skipped'"
    wait_for(lambda: cluster.one(skipped, (job, dropped)) >= 2, timeout=30, what="two skipped runs")
    runs = cluster.sql("SELECT status, details->>'message' FROM pgmart.job_runs WHERE job_id = %s AND run_id > %s "
                       "AND status NOT IN ('running', 'queued') ORDER BY run_id", (job, dropped))
    # Perhaps one run began before the drop; every run after it is skipped, with the reason.
    after = runs[1:] if runs[0][0] == "succeeded" else runs
    assert after and all(r == ("skipped", "table public.gone_t does not exist; its checks run again when one of "
                                           "that name is created") for r in after), runs
    assert cluster.one("SELECT count(*) FROM pgmart.check_results WHERE name = 'gone_id' AND status <> 'pass'") == 0
    assert cluster.one("SELECT count(*) FROM pgmart.check_results WHERE name = 'gone_id'") <= before + 1
    assert cluster.one("SELECT enabled AND last_status = 'skipped' AND consecutive_failures = 0 "
                       "FROM pgmart.jobs WHERE job_id = %s", (job,))
    # A table of that name takes the check back, and its runs check it again.
    cluster.sql("CREATE TABLE gone_t (id int)")
    cluster.sql("INSERT INTO gone_t VALUES (NULL)")
    wait_for(lambda: cluster.one("SELECT count(*) FROM pgmart.check_results WHERE name = 'gone_id' AND status = 'fail'") >= 1,
             timeout=30, what="a run on the re-created table")
