"""End-to-end: the habits of small teams, with the worker running. pg_cron's calls in psql (a
name scheduled again is updated in place and the worker runs it on its new schedule), jobs by name,
cron typos refused, and health alerts that resolve when their condition clears and notify again,
heard by a real LISTEN client, when a failure changes."""

import json
import subprocess

from conftest import pg_bin, wait_for

CLUSTER_SETTINGS = {"pgmart.naptime": "'1s'"}


def psql(cluster, script, user="postgres"):
    """Run a script as a newcomer does: psql, autocommit, stop at the first error."""
    r = subprocess.run([pg_bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", cluster.dir,
                        "-p", str(cluster.port), "-U", user, "-d", "postgres"],
                       input=script, capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def test_pg_cron_calls_work_as_written(cluster):
    cluster.sql("CREATE TABLE cron_log (at timestamptz DEFAULT clock_timestamp(), tag text)")
    rc, out, err = psql(cluster, """
        SELECT pgmart.schedule('cron-log', '0 4 * * *', $$INSERT INTO cron_log (tag) VALUES ('first')$$);
        SELECT pgmart.schedule('cron-log', '1 second', $$INSERT INTO cron_log (tag) VALUES ('second')$$);
    """)
    assert rc == 0, err
    first, second = out.split()
    assert first == second  # one job, changed in place
    assert "changed: schedule '0 4 * * *' -> '1 second', command" in err
    # The worker runs it on its new schedule, with its new command.
    wait_for(lambda: cluster.one("SELECT count(*) FROM cron_log WHERE tag = 'second'") >= 2, 30,
             what="the rescheduled job running")
    assert cluster.one("SELECT count(*) FROM cron_log WHERE tag = 'first'") == 0
    # By name: pause, run now, unschedule; then the name is gone.
    rc, out, err = psql(cluster, """
        SELECT pgmart.pause_job('cron-log');
        SELECT status FROM pgmart.run_job('cron-log');
        SELECT pgmart.unschedule('cron-log');
    """)
    assert rc == 0, err
    assert out.split() == ["succeeded", "t"]
    assert cluster.one("SELECT count(*) FROM pgmart.jobs WHERE name = 'cron-log'") == 0
    rc, _, err = psql(cluster, "SELECT pgmart.run_job('cron-log');")
    assert rc != 0 and 'job "cron-log" does not exist' in err


def test_cron_typos_and_pg_cron_order_are_refused_with_a_hint(cluster):
    for script, words in [
        ("SELECT pgmart.schedule('typo', '*/15 * * *', 'SELECT 1');", "a cron expression has 5 fields"),
        ("SELECT pgmart.schedule_sql('typo', 'SELECT 1', '0 0 4 * * *');", "no seconds field"),
        ("SELECT pgmart.schedule_sql('typo', 'SELECT 1', '5');", "'5 seconds'"),
        ("SELECT pgmart.schedule_sql('typo', '0 4 * * *', 'SELECT 1');", "pg_cron's order is pgmart.schedule"),
    ]:
        rc, _, err = psql(cluster, script)
        assert rc != 0 and words in err, (script, err)
        assert "CONTEXT" not in err and "panicked" not in err
    assert cluster.one("SELECT count(*) FROM pgmart.jobs WHERE name = 'typo'") == 0


def test_health_alerts_update_and_resolve(cluster):
    cluster.sql("CREATE TABLE hq (id int)")
    cluster.sql("INSERT INTO hq VALUES (1), (1)")
    cluster.sql("SELECT pgmart.add_check('hq', 'unique', ARRAY['id'], schedule => '1 second')")
    listener = cluster.connect()
    listener.execute("LISTEN pgmart_alerts")

    def heard(pred, timeout=20):
        for n in listener.notifies(timeout=timeout):
            msg = json.loads(n.payload)
            if msg.get("source_kind") == "check" and pred(msg):
                return msg
        raise AssertionError("no such notification")

    first = heard(lambda m: m["payload"]["failing_rows"] == 1)
    assert "updated" not in first
    # Another duplicate: the same open alert, updated, and notified again.
    cluster.sql("INSERT INTO hq VALUES (2), (2)")
    again = heard(lambda m: m["payload"]["failing_rows"] == 2)
    assert again["alert_id"] == first["alert_id"] and again["updated"] is True
    assert cluster.one("SELECT count(*) FROM pgmart.open_alerts WHERE source_kind = 'check'") == 1
    # Fixed: resolved by the worker's next run.
    cluster.sql("DELETE FROM hq; INSERT INTO hq VALUES (1), (2)")
    wait_for(lambda: cluster.one("SELECT count(*) FROM pgmart.open_alerts WHERE source_kind = 'check'") == 0, 20,
             what="the alert resolved")
    assert cluster.one("SELECT resolved_at IS NOT NULL FROM pgmart.alerts WHERE alert_id = %s",
                       (first["alert_id"],))
    # Failing again: a new alert.
    cluster.sql("INSERT INTO hq VALUES (2)")
    new = heard(lambda m: True)
    assert new["alert_id"] != first["alert_id"]
    listener.close()


def test_scheduling_a_view_again_changes_only_what_is_given(cluster):
    cluster.sql("CREATE MATERIALIZED VIEW habit_mv AS SELECT 1 AS n")
    rc, _, err = psql(cluster, """
        SELECT pgmart.schedule_refresh('habit_mv', '1 hour', freshness_slo => '3 hours', max_retries => 5);
        SELECT pgmart.schedule_refresh('habit_mv', '2 hours');
        SELECT pgmart.schedule_refresh('habit_mv', '2 hours');
    """)
    assert rc == 0, err
    notices = [line for line in err.splitlines() if "habit_mv" in line]
    assert len(notices) == 2, err
    assert "changed schedule '1 hour UTC' -> '2 hours UTC'" in notices[0] and "freshness_slo" not in notices[0]
    assert "nothing changed" in notices[1]
    assert cluster.one("SELECT f.slo::text || ' ' || j.max_retries FROM pgmart.freshness f "
                       "JOIN pgmart.jobs j ON j.target = f.object WHERE f.object = 'public.habit_mv'") == "03:00:00 5"


def test_metric_values_errors_carry_no_generated_sql_or_context(cluster):
    cluster.sql("CREATE TABLE habit_sales (at timestamptz NOT NULL, amount numeric)")
    cluster.sql("INSERT INTO habit_sales VALUES (now(), 10), (now(), 2.5)")
    cluster.sql("SELECT pgmart.register_metric('habit_revenue', 'habit_sales', 'sum(amount)', 'at', 'team', 'Revenue')")
    # A failure inside the query (here a division by zero in the metric's expression): the
    # query's own SQLSTATE and message, no generated SQL, no PL/pgSQL CONTEXT.
    cluster.sql("SELECT pgmart.register_metric('habit_ratio', 'habit_sales', 'sum(10 / amount)', 'at', 'team', 'Ratio')")
    cluster.sql("INSERT INTO habit_sales VALUES (now(), 0)")
    rc, _, err = psql(cluster, "\\set VERBOSITY verbose\nSELECT * FROM pgmart.metric_values('habit_ratio', "
                               "now() - interval '1 day', now() + interval '1 day');")
    assert rc != 0
    assert "22012" in err and "division by zero" in err, err
    assert "CONTEXT" not in err and "SELECT" not in err.split("division by zero", 1)[1], err
    cluster.sql("DELETE FROM habit_sales WHERE amount = 0")
    # Prepared, as BI drivers run it: the same rows on every execution.
    with cluster.connect() as conn:
        q = ("SELECT bucket_start, value FROM pgmart.metric_values('habit_revenue', now() - interval '2 days', "
             "now() + interval '1 day', grain => 'day') ORDER BY bucket_start")
        runs = [conn.execute(q, prepare=True).fetchall() for _ in range(6)]
    assert all(r == runs[0] for r in runs) and len(runs[0]) >= 3


def test_registrations_follow_rebuilds_and_renames(cluster):
    """dbt and migrations, as they run: each statement its own transaction (dbt's drop and
    re-create) or one transaction (dbt's rename swap); the worker keeps running the checks."""
    rc, _, err = psql(cluster, """
        CREATE TABLE reb (id int, amount numeric, at timestamptz DEFAULT now());
        INSERT INTO reb (id, amount) VALUES (1, 10), (NULL, 20);
        SELECT pgmart.add_check('reb', 'not_null', ARRAY['id'], name => 'reb_id', schedule => '1 second');
        SELECT pgmart.register_metric('reb_rev', 'reb', 'sum(amount)', 'at', 'team', 'Revenue');
        SELECT pgmart.add_alert_rule('reb_big', 'reb', 'amount > 100');
    """)
    assert rc == 0, err
    wait_for(lambda: cluster.one("SELECT count(*) FROM pgmart.check_results WHERE name = 'reb_id'") >= 1, 20,
             what="the check run by the worker")
    # dbt's table materialization in autocommit: drop, re-create, load.
    rc, _, err = psql(cluster, """
        DROP TABLE reb CASCADE;
        CREATE TABLE reb (id int, amount numeric, at timestamptz DEFAULT now());
        INSERT INTO reb (id, amount) VALUES (2, 500), (NULL, 1);
    """)
    assert rc == 0, err
    assert 'check "reb_id" now follows public.reb' in err, err
    check_id = cluster.one("SELECT check_id FROM pgmart.checks WHERE name = 'reb_id'")
    wait_for(lambda: cluster.one("SELECT count(*) FROM pgmart.check_results WHERE name = 'reb_id' "
                                 "AND status = 'fail' AND run_at > now() - interval '2 seconds'") >= 1, 20,
             what="the check running on the re-created table")
    assert cluster.one("SELECT count(DISTINCT check_id) FROM pgmart.check_results WHERE name = 'reb_id'") == 1
    assert cluster.one("SELECT check_id FROM pgmart.checks WHERE name = 'reb_id'") == check_id
    assert cluster.one("SELECT version FROM pgmart.metrics WHERE name = 'reb_rev'") == 1
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'reb_big'") == 1
    # dbt's swap, in one transaction.
    rc, _, err = psql(cluster, """
        BEGIN;
        CREATE TABLE reb__dbt_tmp (id int, amount numeric, at timestamptz DEFAULT now());
        ALTER TABLE reb RENAME TO reb__dbt_backup;
        ALTER TABLE reb__dbt_tmp RENAME TO reb;
        DROP TABLE reb__dbt_backup CASCADE;
        COMMIT;
        INSERT INTO reb (id, amount) VALUES (3, 700);
    """)
    assert rc == 0, err
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'reb_big'") == 2
    assert cluster.one("SELECT sum(value) FROM pgmart.metric_values('reb_rev', now() - interval '1 day', "
                       "now() + interval '1 day')") == 700
    # A plain rename is followed; a table created later under the old name takes nothing.
    rc, _, err = psql(cluster, """
        ALTER TABLE reb RENAME TO reb_renamed;
        CREATE TABLE reb (id int, amount numeric, at timestamptz);
    """)
    assert rc == 0, err
    assert cluster.one("SELECT target FROM pgmart.checks WHERE name = 'reb_id'") == "public.reb_renamed"
    assert cluster.one("SELECT target FROM pgmart.rules WHERE name = 'reb_big'") == "public.reb_renamed"
    assert cluster.one("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.reb'::regclass") == 0
    cluster.sql("SELECT pgmart.drop_check('reb_id')")


def test_permission_errors_carry_no_generated_sql(cluster):
    """A role refused by pgmart, or by PostgreSQL inside what pgmart runs, sees why, as a short
    message: never pgmart's generated SQL, a PL/pgSQL CONTEXT or an internal LINE pointer."""
    cluster.sql("CREATE ROLE perm_owner LOGIN; CREATE ROLE perm_other LOGIN")
    for r in ("perm_owner", "perm_other"):
        cluster.sql(f"SELECT pgmart.grant_access('{r}', 'user')")
    cluster.sql("GRANT CREATE ON SCHEMA public TO perm_owner")
    for q in ["CREATE TABLE perm_t (at timestamptz, amount numeric, region text)",
              "INSERT INTO perm_t VALUES (now(), 1, 'eu')",
              "SELECT pgmart.register_metric('perm_m', 'perm_t', 'sum(amount)', 'at', 'o', 'd')",
              "SELECT pgmart.add_check('perm_t', 'not_null', '{amount}', name => 'perm_c')",
              "CREATE MATERIALIZED VIEW perm_mv AS SELECT * FROM perm_t",
              "SELECT pgmart.schedule_refresh('perm_mv', '1 hour')",
              "GRANT SELECT (at) ON perm_t TO perm_other"]:
        cluster.sql(q, user="perm_owner")
    statements = [
        "SELECT * FROM pgmart.metric_values('perm_m', now() - interval '1 day', now())",
        "SELECT * FROM pgmart.metric_values(ARRAY['perm_m'], now() - interval '1 day', now())",
        "SELECT pgmart.metric_sql('perm_m', now() - interval '1 day', now())",
        "SELECT * FROM pgmart_metrics.perm_m",
        "SELECT * FROM pgmart.refresh_now('perm_mv')",
        "SELECT pgmart.register_metric('perm_m2', 'perm_t', 'sum(amount)', 'at', 'o', 'd')",
        "SELECT pgmart.add_check('perm_t', 'not_null', '{amount}')",
        "SELECT pgmart.add_alert_rule('perm_r', 'perm_t', 'amount > 100')",
        "SELECT pgmart.schedule_refresh('perm_mv', '2 hours')",
        "SELECT pgmart.drop_metric('perm_m')",
        "SELECT pgmart.drop_check('perm_c')",
    ]
    for s in statements:
        rc, _, err = psql(cluster, "\\set VERBOSITY default\n" + s + ";", user="perm_other")
        assert rc != 0 and "ERROR:" in err, (s, err)
        assert err.count("ERROR:") == 1, (s, err)
        for leak in ("CONTEXT", "LINE ", "pgmart_rows", "pg_catalog.", "OPERATOR(", "PL/pgSQL"):
            assert leak not in err, (s, leak, err)
