"""End-to-end: ALTER EXTENSION pgmart UPDATE from the last release. pgmart 0.1.0 is built from its
commit and loaded for real (its library, its install script as shipped); it registers one object
of every kind and runs them until there is history; then the server restarts on this library,
which waits (saying so once) until the update, after which everything works, nothing is lost,
and the catalog is exactly a fresh install's. A dump taken on 0.1.0 restores into this version."""

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from conftest import PG_VERSION, PGBIN, Cluster, run_as_postgres, wait_for

ROOT = Path(__file__).resolve().parent.parent
# Released versions: the commit each was built from (their install scripts are sql/pgmart--X.sql).
RELEASES = {"0.1.0": "1219c312561d62818fcd753620055bd3025f6200"}
OLD = "0.1.0"

pytestmark = pytest.mark.skipif(PG_VERSION != 15, reason="pgmart 0.1.0 was built for PostgreSQL 15 only")


def build_release(version):
    """The library of a released pgmart, built once from its commit and kept outside the work tree
    (like the PostgreSQL downloads): $PGMART_CACHE/releases/<version>/."""
    out = Path(os.environ.get("PGMART_CACHE", "/var/cache/pgmart")) / "releases" / version
    out.mkdir(parents=True, exist_ok=True)
    lib = out / "pgmart.so"
    stamp = out / "commit"
    if lib.exists() and stamp.exists() and stamp.read_text() == RELEASES[version]:
        return lib
    src = Path(tempfile.mkdtemp(prefix=f"pgmart-{version}-src-"))
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", RELEASES[version]], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
        env = dict(os.environ, CARGO_TARGET_DIR=str(out / "build"))
        r = subprocess.run(["cargo", "build", "--lib", "--no-default-features", "--features", "pg15"],
                           cwd=src, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]
        shutil.copy(out / "build" / "debug" / "libpgmart.so", lib)
        stamp.write_text(RELEASES[version])
    finally:
        shutil.rmtree(src, ignore_errors=True)
    return lib


# Everything a team had on 0.1.0: a superuser's objects and a non-superuser team role's (etl), a BI
# role (bi) given SELECT on pgmart's tables the way 0.1.0 needed, and one object of every kind.
POPULATE = [
    "CREATE ROLE etl LOGIN", "CREATE ROLE bi LOGIN",
    "GRANT USAGE ON SCHEMA pgmart TO etl, bi", "GRANT CREATE ON SCHEMA public TO etl",
    "GRANT SELECT ON pgmart.alerts, pgmart.check_results TO etl, bi",
    # a DBA's own restriction, which the update must keep
    "REVOKE EXECUTE ON FUNCTION pgmart.drop_metric(text) FROM PUBLIC",
    # a partition set with partitions and rows in its default
    "CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, v int) PARTITION BY RANGE (at)",
    "SELECT pgmart.create_partition_set('public.events', 'at', '1 day', premake => 3, retention => '30 days', schedule => '2 seconds')",
    "INSERT INTO public.events (at, v) SELECT now() - g * interval '1 hour', g FROM generate_series(0, 47) g",
    "INSERT INTO public.events (at, v) VALUES (now() + interval '90 days', -1)",
    # orders, a materialized view refreshed on a schedule (with freshness), checks, metrics, a rule
    "CREATE TABLE public.orders (id int PRIMARY KEY, customer_id int, amount numeric NOT NULL, status text, "
    "created_at timestamptz NOT NULL DEFAULT now())",
    "INSERT INTO public.orders SELECT g, g % 10, g * 10, 'paid', now() - g * interval '1 hour' FROM generate_series(1, 200) g",
    "CREATE MATERIALIZED VIEW public.daily AS SELECT date_trunc('day', created_at) AS day, sum(amount) AS total "
    "FROM public.orders GROUP BY 1",
    "CREATE UNIQUE INDEX daily_day ON public.daily (day)",
    "SELECT pgmart.schedule_refresh('public.daily', '2 seconds', freshness_slo => '1 hour')",
    "SELECT * FROM pgmart.refresh_now('public.daily')",
    "SELECT pgmart.add_check('public.orders', 'not_null', ARRAY['customer_id'], schedule => '2 seconds')",
    "SELECT pgmart.add_check('public.orders', 'expression', params => '{\"expression\": \"amount >= 0\"}', name => 'orders_amount_positive')",
    "SELECT pgmart.add_check('public.orders', 'range', ARRAY['amount'], '{\"max\": 1000}', severity => 'error', name => 'orders_amount_max')",
    "SELECT * FROM pgmart.run_checks('public.orders')",
    "SELECT pgmart.register_metric('revenue', 'public.orders', 'sum(amount)', 'created_at', 'finance', 'Paid revenue')",
    "SELECT pgmart.register_metric('revenue', 'public.orders', 'sum(amount)', 'created_at', 'finance', 'Paid revenue', "
    "filter => $$status = 'paid'$$)",
    "SELECT pgmart.add_alert_rule('big_order', 'public.orders', 'amount > 5000', severity => 'high', channel => 'risk')",
    "INSERT INTO public.orders VALUES (1001, 1, 9000, 'paid', now())",
    "CREATE TABLE public.ticks (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz DEFAULT now(), "
    "who name DEFAULT current_user)",
    "GRANT INSERT ON public.ticks TO etl",
    "SELECT pgmart.schedule_sql('tick', 'INSERT INTO public.ticks DEFAULT VALUES', '2 seconds')",
    "SELECT pgmart.schedule_sql('always_fails', 'SELECT 1/0', '1 hour', max_retries => 0)",
    "SELECT * FROM pgmart.run_job((SELECT job_id FROM pgmart.job WHERE name = 'always_fails'))",
    # schedules 0.1.0 read as intervals and 0.2.0 reads as cron (and would refuse)
    "SELECT pgmart.schedule_sql('cron_typo', 'SELECT 1', '*/15 * * *')",
    "SELECT pgmart.schedule_sql('bare_number', 'SELECT 1', '3600')",
    "SELECT pgmart.schedule_sql('year_month', 'SELECT 1', '1-2')",
]
# The team role's own objects, made by that role.
POPULATE_ETL = [
    "CREATE TABLE public.stage (id int, amount numeric, who name DEFAULT current_user, at timestamptz DEFAULT now())",
    "INSERT INTO public.stage SELECT g, g FROM generate_series(1, 10) g",
    "SELECT pgmart.schedule_sql('etl_load', 'INSERT INTO public.stage VALUES (0, 1)', '2 seconds')",
    "SELECT pgmart.add_check('public.stage', 'unique', ARRAY['id'], name => 'stage_id_unique')",
    "SELECT * FROM pgmart.run_checks('public.stage')",
    "SELECT pgmart.add_alert_rule('stage_negative', 'public.stage', 'amount < 0', severity => 'low')",
    "INSERT INTO public.stage VALUES (99, -5)",
]


def counts(c, db="postgres"):
    return {
        "job_run": c.one("SELECT count(*) FROM pgmart.job_run", dbname=db),
        "check_result": c.one("SELECT count(*) FROM pgmart.check_result" if ext_version(c, db) != OLD
                              else "SELECT count(*) FROM pgmart.check_results", dbname=db),
        "alert": c.one("SELECT count(*) FROM pgmart.alert" if ext_version(c, db) != OLD
                       else "SELECT count(*) FROM pgmart.alerts", dbname=db),
        "refresh_history": c.one("SELECT count(*) FROM pgmart.refresh_history", dbname=db),
        "metric_version": c.one("SELECT count(*) FROM pgmart.metric_version" if ext_version(c, db) != OLD
                                else "SELECT count(*) FROM pgmart.metric_versions", dbname=db),
        "jobs": c.one("SELECT count(*) FROM pgmart.job", dbname=db),
    }


def ext_version(c, db="postgres"):
    return c.one("SELECT extversion FROM pg_extension WHERE extname = 'pgmart'", dbname=db)


def sqlstate(c, query, db="postgres", user="postgres"):
    try:
        c.sql(query, dbname=db, user=user)
    except psycopg.Error as e:
        return e.sqlstate, str(e)
    return None, None


def extension_ddl(c, db):
    """The schema of pgmart's own objects as pg_dump writes it. pg_dump leaves out an extension's
    members, so they are first released from it (this database is not used afterwards); the
    anchors and metric views, which are the data of registrations, stay out."""
    c.sql("""DO $$ DECLARE r record; BEGIN
               FOR r IN SELECT i.type, i.identity FROM pg_depend d, pg_identify_object(d.classid, d.objid, 0) i
                         WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
                           AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pgmart')
               LOOP EXECUTE format('ALTER EXTENSION pgmart DROP %s %s', r.type, r.identity); END LOOP; END $$""",
          dbname=db)
    r = run_as_postgres(f"{PGBIN}/pg_dump", "-h", c.dir, "-p", str(c.port), "-U", "postgres", "--schema-only",
                        "-n", "pgmart", "-n", "pgmart_metrics", "-n", "pgmart_metric_columns", "-n", "pgmart_owners",
                        "-T", "pgmart_owners.*", "-T", "pgmart_metrics.*", "-T", "pgmart_metric_columns.*", db)
    text = re.sub(r"(?m)^--.*\n|^SET .*\n|^SELECT pg_catalog.set_config.*\n|^\\(un)?restrict .*\n", "", r.stdout)
    event_triggers = c.sql("SELECT evtname, evtevent, evtfoid::regprocedure::text, evtenabled, evttags "
                           "FROM pg_event_trigger ORDER BY 1", dbname=db)
    return re.sub(r"\n{2,}", "\n\n", text), event_triggers


@pytest.fixture(scope="module")
def upgraded():
    """A cluster that ran pgmart 0.1.0 (own library), then restarted on this one, not yet updated."""
    lib = build_release(OLD)
    libdir = tempfile.mkdtemp(prefix="pgmart-lib-")
    os.chmod(libdir, 0o755)
    shutil.copy(lib, os.path.join(libdir, "pgmart.so"))
    os.chmod(os.path.join(libdir, "pgmart.so"), 0o755)
    c = Cluster("upgrade", settings={"dynamic_library_path": f"'{libdir}:$libdir'", "pgmart.naptime": "'1s'",
                                     "max_worker_processes": 20})
    try:
        c.sql(f"CREATE EXTENSION pgmart VERSION '{OLD}'")
        for q in POPULATE:
            c.sql(q)
        for q in POPULATE_ETL:
            c.sql(q, user="etl")
        # Let the 0.1.0 worker do real work: every scheduled job runs at least once.
        wait_for(lambda: c.one("SELECT count(DISTINCT job_id) FROM pgmart.job_run WHERE status = 'succeeded'") >= 5,
                 60, what="0.1.0's scheduler running every job")
        dump = os.path.join(c.dir, "old.dump")
        run_as_postgres(f"{PGBIN}/pg_dump", "-h", c.dir, "-p", str(c.port), "-U", "postgres", "-Fc", "-f", dump, "postgres")
        c.before = counts(c)
        c.before_ids = {
            "job_run": set(r[0] for r in c.sql("SELECT run_id FROM pgmart.job_run")),
            "alert": set(r[0] for r in c.sql("SELECT alert_id FROM pgmart.alerts")),
            "check_result": set(r[0] for r in c.sql("SELECT result_id FROM pgmart.check_results")),
        }
        c.dump = dump
        c.before_default = c.one("SELECT rows_in_default FROM pgmart.partition_sets")
        assert c.before_default > 0
        # This library: what a DBA does after installing the new package.
        c.stop()
        c.set("dynamic_library_path", "'$libdir'")
        c.start()
        yield c
    finally:
        c.destroy()
        shutil.rmtree(libdir, ignore_errors=True)


def test_until_the_update_the_new_library_runs_nothing_and_says_why(upgraded):
    c = upgraded
    assert ext_version(c) == OLD
    wait_for(lambda: "has pgmart 0.1.0 installed but the library is 0.2.0" in c.server_log(), 30,
             what="the scheduler's one line about the version")
    before = c.one("SELECT count(*) FROM pgmart.job_run")
    # Every entry point answers with the one clear error, never an internal one.
    for q in ["SELECT pgmart.schedule_sql('x', 'SELECT 1', '1 hour')",
              "SELECT * FROM pgmart.run_checks()",
              "SELECT * FROM pgmart.refresh_due()",
              "SELECT pgmart.pause_job(1)",
              "SELECT * FROM pgmart.metric_values('revenue', now() - interval '1 day', now())",
              "SELECT * FROM pgmart.run_partition_maintenance()",
              "INSERT INTO public.orders VALUES (2001, 1, 9999, 'paid', now())"]:
        state, msg = sqlstate(c, q)
        assert state == "55000", (q, state, msg)
        assert "pgmart 0.1.0 is installed in this database, but the loaded pgmart library is 0.2.0" in msg, msg
    time.sleep(3)
    assert c.one("SELECT count(*) FROM pgmart.job_run") == before, "a job ran on a catalog of another version"
    assert c.server_log().count("has pgmart 0.1.0 installed but the library is 0.2.0") == 1


def test_update_keeps_everything_and_everything_works(upgraded):
    c = upgraded
    c.sql("ALTER EXTENSION pgmart UPDATE")
    assert ext_version(c) == "0.2.0"
    # Nothing lost: every count is at least what 0.1.0 had, and every old row is still there.
    after = counts(c)
    for k, v in c.before.items():
        assert after[k] >= v, (k, c.before[k], after[k])
    assert c.before_ids["job_run"] <= set(r[0] for r in c.sql("SELECT run_id FROM pgmart.job_run"))
    assert c.before_ids["alert"] <= set(r[0] for r in c.sql("SELECT alert_id FROM pgmart.alert"))
    assert c.before_ids["check_result"] <= set(r[0] for r in c.sql("SELECT result_id FROM pgmart.check_result"))

    # The workers pick up again without a restart, and every scheduled job runs.
    wait_for(lambda: "is now 0.2.0; jobs run again" in c.server_log(), 30, what="the scheduler resuming")
    since = c.one("SELECT max(run_id) FROM pgmart.job_run")
    wait_for(lambda: c.one("SELECT count(DISTINCT job_id) FROM pgmart.job_run WHERE run_id > %s AND status = 'succeeded'",
                           (since,)) >= 5, 60, what="every scheduled job running on 0.2.0")
    # Owners are the roles that registered (anchors): etl's job runs as etl, and etl cannot be dropped.
    assert c.one("SELECT owner FROM pgmart.jobs WHERE name = 'etl_load'") == "etl"
    assert c.one("SELECT who FROM public.stage WHERE id = 0 ORDER BY at DESC LIMIT 1") == "etl"
    state, msg = sqlstate(c, "DROP ROLE etl")
    assert state == "2BP01" and "pgmart_owners" in msg, msg
    # Each role sees its own through the views; the grants 0.1.0 needed on tables are gone.
    assert c.one("SELECT count(*) FROM pgmart.jobs", user="etl") == 1
    assert c.one("SELECT count(*) FROM pgmart.check_results", user="etl") >= 1
    assert c.one("SELECT count(*) FROM pgmart.check_results WHERE name = 'orders_amount_max'", user="etl") == 0
    assert c.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'stage_negative'", user="etl") == 1
    assert c.one("SELECT count(*) FROM pgmart.alerts", user="bi") == 0
    for table in ["pgmart.alert", "pgmart.check_result", "pgmart.job"]:
        assert sqlstate(c, f"SELECT 1 FROM {table}", user="bi")[0] == "42501", table
    # Schedules 0.2.0 would read as cron keep the interval 0.1.0 ran them on.
    assert c.sql("SELECT name, schedule FROM pgmart.jobs WHERE name IN ('cron_typo', 'bare_number', 'year_month') ORDER BY name") == [
        ("bare_number", "01:00:00"), ("cron_typo", "00:00:15"), ("year_month", "1 year 2 mons")]
    assert c.one("SELECT schedule FROM pgmart.jobs WHERE name = 'tick'") == "2 seconds"
    # What the DBA took from PUBLIC stays taken; the rest of the API is PUBLIC's as on a fresh install.
    assert c.one("SELECT has_function_privilege('bi', 'pgmart.drop_metric(text)', 'EXECUTE')") is False
    assert c.one("SELECT has_function_privilege('bi', 'pgmart.drop_job(bigint)', 'EXECUTE')") is True
    assert c.one("SELECT has_function_privilege('bi', 'pgmart._alert_fire()', 'EXECUTE')") is False
    # Old alerts know their rule and owner; triggers still fire, as the rule's.
    assert c.one("SELECT rule_id IS NOT NULL FROM pgmart.alerts WHERE source_name = 'big_order' ORDER BY alert_id LIMIT 1")
    c.sql("INSERT INTO public.orders VALUES (3001, 1, 7000, 'paid', now())")
    assert c.one("SELECT count(*) FROM pgmart.open_alerts WHERE source_name = 'big_order'") == 2
    c.sql("INSERT INTO public.stage VALUES (100, -1)", user="etl")
    assert c.one("SELECT count(*) FROM pgmart.open_alerts WHERE source_name = 'stage_negative'", user="etl") == 2
    # Metrics: both versions kept, the protection view still refuses DROP COLUMN, values come.
    assert c.one("SELECT count(*) FROM pgmart.metric_versions WHERE name = 'revenue'") == 2
    state, msg = sqlstate(c, "ALTER TABLE public.orders DROP COLUMN amount")
    assert state == "2BP01", msg
    assert "pgmart_metric_columns.revenue" in msg, msg
    # The protection view moved to its own schema; the metric's browsable view was made.
    assert c.one("SELECT to_regclass('pgmart_metrics.metric_revenue') IS NULL")
    assert c.one("SELECT view FROM pgmart.metrics WHERE name = 'revenue'") == "pgmart_metrics.revenue"
    assert c.one("SELECT sum(value) FROM pgmart_metrics.revenue") > 0
    assert c.one("SELECT sum(value) FROM pgmart.metric_values('revenue', now() - interval '30 days', now() + interval '1 day')") > 0
    # Partitions, refresh, checks and jobs work on the call too.
    c.sql("SELECT * FROM pgmart.run_partition_maintenance('public.events')")
    # 0.2.0 gives the rows 0.1.0 left in the default partition (the day before the set, a row 90
    # days ahead) partitions of their own: nothing lost, nothing parked.
    assert c.one("SELECT count(*) FROM public.events") == 49
    assert c.one("SELECT count(*) FROM public.events_default") == 0
    assert c.one("SELECT count(*) FROM pgmart.partitions('public.events') "
                 "WHERE upper_bound::timestamptz > now() + interval '89 days'") == 1
    assert c.one("SELECT count(*) FROM pgmart.partitions('public.events')") >= 4
    assert c.one("SELECT status FROM pgmart.refresh_now('public.daily')") == "succeeded"
    assert c.one("SELECT stale FROM pgmart.freshness WHERE object = 'public.daily'") is False
    statuses = dict(c.sql("SELECT name, status FROM pgmart.run_checks('public.orders')"))
    assert statuses["orders_amount_max"] == "fail" and statuses["orders_amount_positive"] == "pass", statuses
    assert c.one("SELECT status FROM pgmart.run_job((SELECT job_id FROM pgmart.jobs WHERE name = 'tick'))") == "succeeded"
    c.sql("SELECT pgmart.schedule_sql('after_update', 'SELECT 1', '1 hour', timeout => '1 minute')")
    assert c.one("SELECT timeout FROM pgmart.jobs WHERE name = 'after_update'") is not None


def test_updated_catalog_equals_a_fresh_install(upgraded):
    c = upgraded
    if ext_version(c) == OLD:
        c.sql("ALTER EXTENSION pgmart UPDATE")
    c.createdb("fresh")
    # what the team had granted, and the DBA revoked
    c.sql("GRANT USAGE ON SCHEMA pgmart TO etl, bi", dbname="fresh")
    c.sql("REVOKE EXECUTE ON FUNCTION pgmart.drop_metric(text) FROM PUBLIC", dbname="fresh")
    fresh, fresh_evt = extension_ddl(c, "fresh")
    updated, updated_evt = extension_ddl(c, "postgres")
    assert fresh_evt == updated_evt
    if fresh != updated:
        import difflib
        diff = "\n".join(difflib.unified_diff(fresh.splitlines(), updated.splitlines(), "fresh", "updated", lineterm=""))
        pytest.fail("the updated catalog differs from a fresh install's:\n" + diff[:8000])


def test_a_dump_taken_on_0_1_0_restores_into_0_2_0(upgraded):
    """The documented way: give the new database the dump's version, restore, update."""
    c = upgraded
    c.sql("CREATE DATABASE restored")
    c.sql(f"CREATE EXTENSION pgmart VERSION '{OLD}'", dbname="restored")
    r = run_as_postgres(f"{PGBIN}/pg_restore", "-h", c.dir, "-p", str(c.port), "-U", "postgres",
                        "--exit-on-error", "-d", "restored", c.dump, check=False)
    assert r.returncode == 0, r.stderr
    assert c.one("SELECT count(*) FROM pgmart.job", dbname="restored") == c.before["jobs"]
    # A registration whose role is gone stops the update, which then changes nothing.
    c.sql("UPDATE pgmart.job SET owner = 'ghost' WHERE name = 'tick'", dbname="restored")
    state, msg = sqlstate(c, "ALTER EXTENSION pgmart UPDATE", db="restored")
    assert state == "55000" and "tick" in msg and "ghost" in msg, msg
    assert ext_version(c, "restored") == OLD
    c.sql("UPDATE pgmart.job SET owner = 'etl' WHERE name = 'tick'", dbname="restored")
    c.sql("ALTER EXTENSION pgmart UPDATE", dbname="restored")
    assert ext_version(c, "restored") == "0.2.0"
    # Registrations are in dumps (run history is not: pgmart's history tables are not dumped).
    assert c.one("SELECT count(*) FROM pgmart.metric_version", dbname="restored") == c.before["metric_version"]
    assert c.one("SELECT owner FROM pgmart.jobs WHERE name = 'etl_load'", dbname="restored") == "etl"
    assert c.one("SELECT owner FROM pgmart.jobs WHERE name = 'tick'", dbname="restored") == "etl"
    c.sql("INSERT INTO public.orders VALUES (4001, 1, 8000, 'paid', now())", dbname="restored")
    assert c.one("SELECT count(*) FROM pgmart.open_alerts WHERE source_name = 'big_order'", dbname="restored") >= 1
    # (The restored database's worker refreshes a view over orders meanwhile: PostgreSQL may pick
    # this statement as a deadlock's victim; it is tried again then.)
    for _ in range(5):
        state, _ = sqlstate(c, "ALTER TABLE public.orders DROP COLUMN amount", db="restored")
        if state != "40P01":
            break
    assert state == "2BP01"
    wait_for(lambda: c.one("SELECT count(*) FROM public.ticks WHERE who = 'etl'", dbname="restored") >= 1,
             30, what="the restored database's jobs running, as their owners")
    # And the dump of an updated database restores as usual (anchors carry their owners).
    c.dump_restore("restored", "restored_again")
    assert c.one("SELECT owner FROM pgmart.jobs WHERE name = 'etl_load'", dbname="restored_again") == "etl"
