"""End-to-end: data-quality checks on a real cluster with the pgmart worker running (naptime 1s).
A scheduled suite is run by the worker as its owner with results in history; a failing check raises
a durable alert and a NOTIFY; a check whose column was dropped reports `error` while the others pass."""

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
