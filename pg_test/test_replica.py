"""End-to-end: BI on a hot standby made with pg_basebackup. Every read surface answers on the
standby exactly as on the primary once it has replayed; none takes a transaction id (so each also
works in a READ ONLY transaction on the primary); every write function refuses with 25006 and says
to run it on the primary; with replay paused while the primary moves on, the standby's freshness
turns stale by itself and its replication lag row and pgmart.trust name the replica as the reason,
then recover once replay resumes; on promotion the workers start and nothing runs twice."""

import time

import psycopg
import pytest

from conftest import Cluster, wait_for

SETUP = [
    "CREATE TABLE orders (id int PRIMARY KEY, at timestamptz NOT NULL, status text, amount numeric)",
    "INSERT INTO orders SELECT g, '2026-01-01'::timestamptz + g * interval '1 hour', "
    "(ARRAY['paid','shipped','lost'])[1 + g % 3], g FROM generate_series(1, 500) g",
    "CREATE MATERIALIZED VIEW daily AS SELECT date_trunc('day', at) AS day, sum(amount) AS revenue FROM orders GROUP BY 1",
    "CREATE UNIQUE INDEX ON daily (day)",
    "SELECT pgmart.schedule_refresh('daily', '1 second', freshness_slo => '5 seconds')",
    "SELECT pgmart.add_check('orders', 'accepted_values', '{status}', '{\"values\": [\"paid\", \"shipped\"]}', name => 'status_ok')",
    "SELECT count(*) FROM pgmart.run_checks()",
    "SELECT pgmart.add_alert_rule('big', 'orders', 'amount > 1000')",
    "INSERT INTO orders VALUES (9999, '2026-01-02', 'paid', 5000)",
    "SELECT pgmart.register_metric('revenue', 'orders', 'sum(amount)', 'at', 'finance', 'Revenue', dimensions => '{status}')",
    "SELECT pgmart.create_rollup('orders_daily', 'orders', 'at', '1 day', '{status}', '{\"n\": \"count(*)\", \"revenue\": \"sum(amount)\"}', schedule => '1 hour')",
    "CREATE TABLE events (at timestamptz NOT NULL, kind text) PARTITION BY RANGE (at)",
    "SELECT pgmart.create_partition_set('events', 'at', '1 day')",
    "SELECT pgmart.register_dashboard('Sales', 'ana', 'Revenue per day', metrics => '{revenue}', sources => '{daily,orders_daily}')",
    "SELECT pgmart.create_snapshot('orders_history', 'orders', 'check', '{id}', schedule => '1 hour')",
]

# Each read surface, with the columns that do not depend on the moment they are read.
READS = {
    "metric_values": "SELECT bucket_start, dimension_values, value FROM pgmart.metric_values('revenue', '2026-01-01', '2026-01-10', 'day', '{status}') ORDER BY 1, 2::text",
    "metric_values (several)": "SELECT metric, bucket_start, value FROM pgmart.metric_values(ARRAY['revenue'], '2026-01-01', '2026-01-10') ORDER BY 1, 2",
    "metric view": "SELECT bucket, status, value FROM pgmart_metrics.revenue WHERE bucket < '2026-01-10' ORDER BY 1, 2",
    "metric_sql": "SELECT pgmart.metric_sql('revenue', '2026-01-01', '2026-01-10')",
    "metrics": "SELECT name, version, source, expression FROM pgmart.metrics ORDER BY 1",
    "freshness": "SELECT object, kind, slo, owner FROM pgmart.freshness WHERE kind <> 'replication' ORDER BY 1",
    "jobs": "SELECT job_id, name, kind, schedule FROM pgmart.jobs ORDER BY 1",
    "job_runs": "SELECT run_id, job_id, status FROM pgmart.job_runs WHERE run_id <= %(max_run)s ORDER BY 1",
    "check_results": "SELECT name, status, failing_rows FROM pgmart.check_results ORDER BY result_id",
    "open_alerts": "SELECT alert_id, source_name, severity FROM pgmart.open_alerts WHERE alert_id <= %(max_alert)s ORDER BY 1",
    "partition_sets": "SELECT parent, partition_interval, premake FROM pgmart.partition_sets",
    "partitions()": "SELECT partition_name, lower_bound FROM pgmart.partitions('events') ORDER BY 2",
    "rollups": "SELECT name, source, bucket, watermark, pending_invalidations FROM pgmart.rollups",
    "rollup _rt view": "SELECT bucket, status, n, revenue FROM orders_daily_rt ORDER BY 1, 2",
    "dashboards": "SELECT name, owner, sources FROM pgmart.dashboards",
    "snapshots": "SELECT name, source, strategy, last_period FROM pgmart.snapshots",
    "snapshot table": "SELECT id, status, valid_from, valid_to, is_current FROM orders_history ORDER BY id, valid_from",
    "trust": "SELECT object, kind, status, reasons FROM pgmart.trust WHERE kind <> 'materialized_view' ORDER BY 1, 2",
    "lineage": "SELECT * FROM pgmart.lineage() ORDER BY 1, 3",
    "lineage of a table": "SELECT * FROM pgmart.lineage('orders') ORDER BY 1, 3, 6",
    "impact": "SELECT * FROM pgmart.impact('orders')",
    "lineage_mermaid": "SELECT pgmart.lineage_mermaid('orders')",
}

# Read surfaces built on this server's own statistics: a standby has its own counters, so they
# answer there with what a standby can know, not the primary's numbers.
LOCAL_READS = {
    "table_health": "SELECT relid::text, index::text, status FROM pgmart.table_health WHERE relid = 'orders'::regclass",
    "query_health": "SELECT * FROM pgmart.query_health",
    "maintained_tables": "SELECT * FROM pgmart.maintained_tables",
    "access_report": "SELECT * FROM pgmart.access_report()",
}

WRITES = [
    "SELECT pgmart.create_snapshot('s2', 'orders', 'periodic')", "SELECT pgmart.run_snapshot('orders_history')",
    "SELECT pgmart.drop_snapshot('orders_history')",
    "SELECT * FROM pgmart.create_layers()", "SELECT pgmart.label_pii('orders', '{status}')",
    "SELECT pgmart.label_client_facing('orders')", "SELECT * FROM pgmart.isolate_tenants('orders', 'id', bi_role => 'postgres')",
    "SELECT pgmart.drop_layers()", "SELECT pgmart.unlabel_pii('orders', '{status}')",
    "SELECT pgmart.schedule_health()", "SELECT pgmart.maintain_table('orders')", "SELECT pgmart.unmaintain_table('orders')",
    "SELECT pgmart.register_metric('m2', 'orders', 'count(*)', 'at', 'o', 'd')",
    "SELECT pgmart.deprecate_metric('revenue')", "SELECT pgmart.drop_metric('revenue')",
    "SELECT pgmart.add_check('orders', 'not_null', '{id}')", "SELECT pgmart.drop_check('status_ok')",
    "SELECT * FROM pgmart.run_checks()", "SELECT pgmart.add_alert_rule('r', 'orders', 'amount > 1')",
    "SELECT pgmart.drop_alert_rule('big')", "SELECT pgmart.ack_alert(1)",
    "SELECT pgmart.schedule_refresh('daily', '2 hours')", "SELECT pgmart.unschedule_refresh('daily')",
    "SELECT * FROM pgmart.refresh_now('daily')",
    "SELECT pgmart.create_rollup('x', 'orders', 'at', '1 hour', '{}', '{\"n\": \"count(*)\"}')",
    "SELECT pgmart.refresh_rollup('orders_daily')", "SELECT pgmart.drop_rollup('orders_daily')",
    "SELECT pgmart.create_partition_set('orders', 'at', '1 day')", "SELECT * FROM pgmart.run_partition_maintenance()",
    "SELECT pgmart.drop_partition_set('events')",
    "SELECT pgmart.register_dashboard('x', 'o', 'd')", "SELECT pgmart.drop_dashboard('Sales')",
    "SELECT pgmart.grant_access('postgres', 'user')", "SELECT pgmart.schedule_sql('j', 'SELECT 1', '1 hour')",
    "SELECT pgmart.schedule('j', '1 hour', 'SELECT 1')", "SELECT pgmart.unschedule('j')",
    "SELECT * FROM pgmart.run_job('j')", "SELECT pgmart.pause_job('j')", "SELECT pgmart.resume_job('j')",
    "SELECT pgmart.alter_job('j', schedule => '2 hours')", "SELECT pgmart.drop_job('j')",
]


def caught_up(primary, standby):
    lsn = primary.one("SELECT pg_current_wal_lsn()::text")
    wait_for(lambda: standby.one("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)), 30, what="replay")


@pytest.fixture(scope="module")
def pair():
    primary = Cluster("primary", settings={"wal_level": "replica", "max_wal_senders": 4})
    standby = None
    try:
        primary.sql("CREATE EXTENSION pgmart")
        for q in SETUP:
            primary.sql(q)
        standby = Cluster("standby", basebackup_of=primary,
                          settings={"hot_standby_feedback": "on", "pgmart.replica_lag_slo": "'3s'"})
        wait_for(lambda: standby.one("SELECT pg_is_in_recovery()"), 20)
        yield primary, standby
    finally:
        if standby:
            standby.destroy()
        primary.destroy()


def test_every_read_surface_on_the_standby_equals_the_primary(pair):
    primary, standby = pair
    # Hold the worker still while comparing (history keeps growing otherwise): compare rows up to
    # the ids the primary had when it was read.
    caught_up(primary, standby)
    marks = {"max_run": primary.one("SELECT coalesce(max(run_id), 0) FROM pgmart.job_runs"),
             "max_alert": primary.one("SELECT coalesce(max(alert_id), 0) FROM pgmart.open_alerts")}
    caught_up(primary, standby)
    for name, q in READS.items():
        on_primary = primary.sql(q, marks)
        on_standby = standby.sql(q, marks)
        assert on_standby == on_primary, name
        assert on_standby, f"{name} returned nothing"


def test_local_reads_answer_on_the_standby(pair):
    _, standby = pair
    for name, q in LOCAL_READS.items():
        standby.sql(q)
    assert standby.sql(LOCAL_READS["table_health"]), "table_health has no row for orders on the standby"


def test_reads_take_no_transaction_id_on_the_primary(pair):
    primary, _ = pair
    with primary.connect(autocommit=False) as conn:
        conn.execute("BEGIN READ ONLY")
        for name, q in {**READS, **LOCAL_READS}.items():
            conn.execute(q, {"max_run": 0, "max_alert": 0}).fetchall()
            assert conn.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0] is None, name
        conn.execute("COMMIT")


def test_writes_refuse_on_the_standby_with_25006(pair):
    _, standby = pair
    for q in WRITES:
        with pytest.raises(psycopg.Error) as e:
            standby.sql(q)
        assert e.value.sqlstate == "25006", (q, e.value.sqlstate, str(e.value))
        assert "on a standby" in str(e.value) and "primary" in (e.value.diag.message_hint or ""), (q, str(e.value))


def test_freshness_on_a_paused_replica_says_the_replica_is_the_reason(pair):
    primary, standby = pair
    caught_up(primary, standby)
    # The primary keeps refreshing the view every second; the standby replays it.
    wait_for(lambda: standby.one("SELECT NOT stale FROM pgmart.freshness WHERE object = 'public.daily'"), 30,
             what="a fresh view on the standby")
    lag = standby.sql("SELECT stale, last_status FROM pgmart.freshness WHERE kind = 'replication'")
    assert lag == [(False, "replaying")], lag
    assert primary.sql("SELECT * FROM pgmart.freshness WHERE kind = 'replication'") == []
    standby.sql("SELECT pg_wal_replay_pause()")
    try:
        # The primary moves on; the standby's ages grow by themselves (its own clock).
        wait_for(lambda: standby.one("SELECT stale FROM pgmart.freshness WHERE object = 'public.daily'"), 30,
                 what="the view turning stale on the paused standby")
        wait_for(lambda: standby.one("SELECT stale FROM pgmart.freshness WHERE kind = 'replication'"), 30,
                 what="the lag row turning stale")
        row = standby.sql("SELECT last_status, age > interval '3 seconds' FROM pgmart.freshness WHERE kind = 'replication'")
        assert row == [("replay paused", True)], row
        assert primary.one("SELECT stale FROM pgmart.freshness WHERE object = 'public.daily'") is False
        # The lag is inside the age once, not twice: the view's age on the standby is about the
        # time since its last replayed refresh, not that plus the lag.
        ages = standby.sql("SELECT (SELECT extract(epoch FROM age) FROM pgmart.freshness WHERE object = 'public.daily'), "
                           "(SELECT extract(epoch FROM now() - last_refreshed_at) FROM pgmart.refresh_view)")[0]
        assert abs(float(ages[0]) - float(ages[1])) < 1, ages
        reasons = standby.one("SELECT reasons FROM pgmart.trust WHERE object = 'Sales'")
        assert reasons[0].startswith("this replica is ") and reasons[0].endswith("behind the primary (SLO 3 s), replay paused"), reasons
        assert any(r.startswith("public.daily: not refreshed for") for r in reasons), reasons
        assert not any(r.startswith("this replica") for r in primary.one("SELECT reasons FROM pgmart.trust WHERE object = 'Sales'"))
    finally:
        standby.sql("SELECT pg_wal_replay_resume()")
    wait_for(lambda: standby.one("SELECT NOT stale FROM pgmart.freshness WHERE kind = 'replication'"), 30,
             what="the lag row recovering")
    wait_for(lambda: standby.one("SELECT NOT stale FROM pgmart.freshness WHERE object = 'public.daily'"), 30,
             what="the view fresh again on the standby")
    wait_for(lambda: standby.one("SELECT reasons FROM pgmart.trust WHERE object = 'Sales'")
             == primary.one("SELECT reasons FROM pgmart.trust WHERE object = 'Sales'"), 30, what="the same trust as the primary")


def test_promotion_starts_the_workers_and_runs_nothing_twice(pair):
    primary, standby = pair
    primary.sql("CREATE TABLE once (at timestamptz DEFAULT clock_timestamp())")
    primary.sql("SELECT pgmart.schedule_sql('once', 'INSERT INTO public.once DEFAULT VALUES', '1 day', start_at => now())")
    wait_for(lambda: primary.one("SELECT count(*) FROM once") == 1, 30, what="the job on the primary")
    caught_up(primary, standby)
    assert standby.one("SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pgmart%%'") == 0
    primary.stop()
    standby.sql("SELECT pg_promote()")
    wait_for(lambda: not standby.one("SELECT pg_is_in_recovery()"), 30)
    wait_for(lambda: standby.one("SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pgmart%%'") > 0, 30,
             what="pgmart workers on the promoted node")
    # The view keeps being refreshed there; the job that already ran does not run again.
    before = standby.one("SELECT last_refreshed_at FROM pgmart.refresh_view")
    wait_for(lambda: standby.one("SELECT last_refreshed_at FROM pgmart.refresh_view") > before, 30,
             what="a refresh on the promoted node")
    time.sleep(3)
    assert standby.one("SELECT count(*) FROM once") == 1
    assert standby.one("SELECT count(*) FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) WHERE j.name = 'once'") == 1
    assert standby.sql("SELECT * FROM pgmart.freshness WHERE kind = 'replication'") == []
    primary.start()  # for the fixture's teardown
