"""An attacker's test suite (docs/security.md): on a real cluster with the worker running, a role
with only the grants the docs suggest tries every class of attack on pgmart, and each test asserts
that it gained nothing: not superuser, nothing received on its LISTEN channels, nothing of another
role's changed, nobody's privileges used to run its code, the scheduler still running others' jobs.

The cluster runs with RUST_BACKTRACE=1 in its environment: no error may carry a Rust backtrace.
"""

import os
import re
import select
import time

import psycopg
import pytest

from conftest import cluster_with_backtraces, wait_for

CLUSTER_SETTINGS = {"pgmart.naptime": "'500ms'"}

# Type names pgmart's SQL could be captured through (the grammar keywords double precision,
# timestamp, numeric and interval always resolve to pg_catalog and are controls).
TYPES = ["int2", "int4", "int8", "float4", "float8", "text", "name", "oid", "bool", "date", "timestamptz",
         "jsonb", "json", "regclass", "regrole", "regproc", "regprocedure", "uuid", "bytea", "tid", "regtype",
         "regnamespace", "varchar"]
# Operators pgmart's SQL could be captured through, per type.
OPERATORS = ["=", "<>", "<", ">", "<=", ">=", "||", "~~", "~", "@>", "->>", "->", "+", "-", "*", "?", "^@"]
OP_TYPES = ["text", "int4", "int8", "numeric", "timestamptz", "jsonb", "name", "oid", "float8", "bool", "interval"]
# Same-signature functions ahead of pg_catalog on a hostile path.
FUNCTIONS = [("now", ""), ("clock_timestamp", ""), ("lower", "text"), ("hashtext", "text"),
             ("current_setting", "text"), ("set_config", "text, text, boolean"), ("pg_notify", "text, text"),
             ("quote_ident", "text"), ("quote_literal", "text"), ("to_timestamp", "float8"),
             ("format_type", "oid, int4"), ("pg_get_userbyid", "oid"), ("to_regclass", "text"),
             ("jsonb_agg", None), ("pg_has_role", "oid, text"), ("pg_has_role", "oid, oid, text"),
             ("has_table_privilege", "oid, oid, text"), ("isfinite", "timestamptz"), ("btrim", "text, text"),
             ("make_interval", None), ("nextval", "regclass"), ("pg_backend_pid", ""), ("round", "numeric, int4"),
             ("jsonb_build_object", "text, text"), ("jsonb_strip_nulls", "jsonb"), ("unnest", "int8[]"),
             ("pg_try_advisory_xact_lock", "int8"), ("array_agg", None), ("count", None)]
# Overloads in public (PUBLIC may create there, as on clusters from before PostgreSQL 15) that a
# built-in matched through VARIADIC "any" or a polymorphic signature would lose to.
PUBLIC_OVERLOADS = ["jsonb_build_object(text, text)", "jsonb_build_object(text, bigint)",
                    "jsonb_build_object(text, integer)", "jsonb_build_array(text)", "json_build_object(text, text)",
                    "format(text, text)", "concat(text, text)", "concat_ws(text, text, text)", "to_jsonb(text)",
                    "num_nonnulls(integer)", "array_append(integer[], integer)",
                    "unnest(bigint[])", "jsonb_agg(text)"]
LEAKS = ["stack backtrace", "rust_begin_unwind", "pgrx::", "core::", ".rs:", "/rustc/"]


@pytest.fixture(scope="module")
def cluster(request):
    c = cluster_with_backtraces("security", settings=CLUSTER_SETTINGS)
    c.sql("CREATE EXTENSION pgmart")
    for role in ("mallory", "alice", "bob", "bi"):
        c.sql(f"CREATE ROLE {role} LOGIN")
    c.sql("CREATE ROLE team NOLOGIN")
    c.sql("GRANT team TO alice")
    for role in ("mallory", "alice", "bob", "team"):
        c.sql("SELECT * FROM pgmart.grant_access(%s, 'user')", (role,))
    c.sql("SELECT * FROM pgmart.grant_access('bi', 'reader')")
    # As on clusters made before PostgreSQL 15: everyone may create in public.
    c.sql("GRANT CREATE ON SCHEMA public TO PUBLIC")
    c.sql("CREATE TABLE public.captured (who name, what text, at timestamptz DEFAULT clock_timestamp())")
    c.sql("GRANT INSERT, SELECT ON public.captured TO PUBLIC")
    plant_traps(c)
    yield c
    c.destroy()


def plant_traps(c):
    """Mallory's traps: every one records who ran it and tries to make mallory a superuser."""
    c.sql("CREATE SCHEMA evil AUTHORIZATION mallory")
    c.sql("GRANT USAGE ON SCHEMA evil TO PUBLIC")
    c.sql("""CREATE FUNCTION evil.trap(what text) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN
               INSERT INTO public.captured (who, what) VALUES (current_user, what);
               BEGIN EXECUTE 'ALTER ROLE mallory SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
               PERFORM pg_catalog.pg_notify('loot', current_user::pg_catalog.text);
               RETURN true;
             END $$""", user="mallory")
    stmts = []
    for fname, args in FUNCTIONS:
        if args is None:
            continue
        ret = "boolean"
        stmts.append(f"""CREATE FUNCTION evil.{fname}({args}) RETURNS {ret} LANGUAGE plpgsql AS
                         $$ BEGIN PERFORM evil.trap('evil.{fname}({args})'); RETURN true; END $$""")
    for t in OP_TYPES:
        for i, op in enumerate(OPERATORS):
            fn = f"op_{i}_{t}"
            stmts.append(f"""CREATE FUNCTION evil.{fn}(a {t}, b {t}) RETURNS boolean LANGUAGE plpgsql AS
                             $$ BEGIN PERFORM evil.trap('evil.{op}({t})'); RETURN true; END $$""")
            stmts.append(f"CREATE OPERATOR evil.{op} (LEFTARG = {t}, RIGHTARG = {t}, FUNCTION = evil.{fn})")
    for sig in PUBLIC_OVERLOADS:
        fname = sig.split("(")[0]
        stmts.append(f"""CREATE FUNCTION public.{sig} RETURNS jsonb LANGUAGE plpgsql AS
                         $$ BEGIN PERFORM evil.trap('public.{sig}'); RETURN '{{}}'::jsonb; END $$""")
    stmts.append("""CREATE FUNCTION evil.cnt_sfunc(bigint, text) RETURNS bigint LANGUAGE plpgsql AS
                    $$ BEGIN PERFORM evil.trap('public.count(text)'); RETURN 0; END $$""")
    stmts.append("CREATE AGGREGATE public.count(text) (SFUNC = evil.cnt_sfunc, STYPE = bigint)")
    with c.connect(user="mallory") as conn:
        for s in stmts:
            try:
                conn.execute(s)
            except psycopg.errors.DatabaseError:
                pass


HOSTILE_SESSION = [
    *[f"CREATE DOMAIN pg_temp.{t} AS pg_catalog.{t} CHECK (evil.trap('pg_temp.{t}'))" for t in TYPES],
    *[f"CREATE TEMP TABLE {t} (x int)" for t in ("pg_class", "pg_proc", "pg_namespace", "pg_roles", "pg_attribute",
                                                 "pg_extension", "job", "jobs", "alert", "pg_depend", "pg_index")],
    "SET search_path = evil, public, pg_temp, pg_catalog",
]


def hostile(cluster, user="mallory", dbname="postgres"):
    """A connection with mallory's temp-schema traps and a path that puts evil first."""
    conn = cluster.connect(dbname=dbname, user=user)
    for s in HOSTILE_SESSION:
        try:
            conn.execute(s)
        except psycopg.errors.DatabaseError:
            pass
    return conn


def captured(cluster):
    return cluster.sql("SELECT who, what FROM public.captured ORDER BY at")


def is_superuser(cluster, role="mallory"):
    return cluster.one("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))


def assert_nothing_gained(cluster):
    assert not is_superuser(cluster), "mallory became superuser"
    assert captured(cluster) == [], captured(cluster)


def no_leak(e):
    diag = e.diag
    text = " ".join(filter(None, [str(e), diag.message_detail, diag.message_hint, diag.context]))
    for marker in LEAKS:
        assert marker not in text, f"error text leaks {marker!r}: {text}"
    return text


@pytest.fixture(autouse=True)
def clean(cluster):
    cluster.sql("TRUNCATE public.captured")
    yield
    cluster.sql("ALTER ROLE mallory NOSUPERUSER")


# ---------------------------------------------------------------------------------------------
# Class 1: privileged SQL resolved through the caller's names.

def mallory_objects(cluster):
    cluster.sql("""CREATE TABLE IF NOT EXISTS public.m_t (id int, amount numeric, status text,
                                                        at timestamptz DEFAULT now())""", user="mallory")
    cluster.sql("INSERT INTO public.m_t (id, amount, status) SELECT g, g, 'ok' FROM generate_series(1, 20) g",
                user="mallory")
    cluster.sql("CREATE MATERIALIZED VIEW IF NOT EXISTS public.m_mv AS SELECT id FROM public.m_t", user="mallory")
    cluster.sql("CREATE UNIQUE INDEX IF NOT EXISTS m_mv_id ON public.m_mv (id)", user="mallory")
    cluster.sql("CREATE TABLE IF NOT EXISTS public.m_p (ts timestamptz NOT NULL) PARTITION BY RANGE (ts)",
                user="mallory")


# Every public function, called in the hostile session (arguments on mallory's own objects).
CALLS = [
    "SELECT pgmart.schedule_sql('m_job', 'SELECT 1', '1 hour')",
    "SELECT pgmart.alter_job((SELECT job_id FROM pgmart.jobs WHERE name OPERATOR(pg_catalog.=) 'm_job'), schedule => '2 hours')",
    "SELECT pgmart.pause_job((SELECT job_id FROM pgmart.jobs WHERE name OPERATOR(pg_catalog.=) 'm_job'))",
    "SELECT pgmart.resume_job((SELECT job_id FROM pgmart.jobs WHERE name OPERATOR(pg_catalog.=) 'm_job'))",
    "SELECT * FROM pgmart.run_job((SELECT job_id FROM pgmart.jobs WHERE name OPERATOR(pg_catalog.=) 'm_job'))",
    "SELECT * FROM pgmart.refresh_due()",
    "SELECT pgmart.add_check('public.m_t', 'not_null', ARRAY['id'], name => 'm_nn')",
    "SELECT pgmart.add_check('public.m_t', 'unique', ARRAY['id'], name => 'm_u', schedule => '1 hour')",
    "SELECT pgmart.add_check('public.m_t', 'expression', params => '{\"expression\": \"amount OPERATOR(pg_catalog.>=) 0\"}', name => 'm_ex')",
    "SELECT pgmart.add_check('public.m_t', 'accepted_values', ARRAY['status'], '{\"values\": [\"ok\"]}', name => 'm_av')",
    "SELECT * FROM pgmart.run_checks()",
    "SELECT * FROM pgmart.run_checks('public.m_t')",
    "SELECT pgmart.register_metric('m_metric', 'public.m_t', 'sum(amount)', 'at', 'mallory', 'd', filter => 'status OPERATOR(pg_catalog.=) ''ok''')",
    "SELECT pgmart.metric_sql('m_metric', pg_catalog.now() OPERATOR(pg_catalog.-) interval '2 days', pg_catalog.now())",
    "SELECT * FROM pgmart.metric_values('m_metric', pg_catalog.now() OPERATOR(pg_catalog.-) interval '2 days', pg_catalog.now())",
    "SELECT pgmart.deprecate_metric('m_metric')",
    "SELECT pgmart.add_alert_rule('m_rule', 'public.m_t', 'amount OPERATOR(pg_catalog.>) 100')",
    "INSERT INTO public.m_t (id, amount, status) VALUES (1000, 1000, 'ok')",
    "SELECT pgmart.ack_alert((SELECT pg_catalog.max(alert_id) FROM pgmart.open_alerts))",
    "SELECT pgmart.create_partition_set('public.m_p', 'ts', '1 day', premake => 2)",
    "SELECT * FROM pgmart.partitions('public.m_p')",
    "SELECT * FROM pgmart.run_partition_maintenance('public.m_p')",
    "SELECT * FROM pgmart.run_partition_maintenance()",
    "CALL pgmart.run_partition_maintenance_proc()",
    "SELECT pgmart.schedule_refresh('public.m_mv', '1 hour', freshness_slo => '1 day')",
    "SELECT * FROM pgmart.refresh_now('public.m_mv')",
    "SELECT * FROM pgmart.jobs", "SELECT * FROM pgmart.job_runs", "SELECT * FROM pgmart.alerts",
    "SELECT * FROM pgmart.open_alerts", "SELECT * FROM pgmart.checks", "SELECT * FROM pgmart.check_results",
    "SELECT * FROM pgmart.metrics", "SELECT * FROM pgmart.metric_versions", "SELECT * FROM pgmart.partition_sets",
    "SELECT * FROM pgmart.rules", "SELECT * FROM pgmart.refresh_runs",
    "SELECT pgmart.unschedule_refresh('public.m_mv')",
    "SELECT pgmart.drop_partition_set('public.m_p')",
    "SELECT pgmart.drop_alert_rule('m_rule')",
    "SELECT pgmart.drop_metric('m_metric')",
    "SELECT pgmart.drop_check('m_nn')",
    "SELECT pgmart.drop_check('m_u')",
    "SELECT pgmart.drop_job((SELECT job_id FROM pgmart.jobs WHERE name OPERATOR(pg_catalog.=) 'm_job'))",
]


def test_no_pgmart_function_resolves_a_name_through_the_callers_path_or_temp_schema(cluster):
    mallory_objects(cluster)
    failures = []
    with hostile(cluster) as conn:
        for call in CALLS:
            try:
                conn.execute(call)
            except psycopg.errors.DatabaseError as e:
                no_leak(e)
                failures.append((call, str(e).splitlines()[0]))
    # Every call worked despite the traps (none was needed, none was captured).
    assert failures == [], failures
    assert_nothing_gained(cluster)


def test_a_superuser_session_with_the_default_path_runs_none_of_mallorys_overloads(cluster):
    mallory_objects(cluster)
    cluster.sql("SELECT pgmart.add_check('public.m_t', 'not_null', ARRAY['id'], name => 'su_nn')", user="mallory")
    cluster.sql("SELECT pgmart.register_metric('su_metric', 'public.m_t', 'count(*)', 'at', 'm', 'd')", user="mallory")
    cluster.sql("SELECT pgmart.schedule_sql('su_job', 'SELECT 1', '1 hour', start_at => now())", user="mallory")
    # The superuser's session has the default path ("$user", public): mallory's public overloads
    # are on it.
    with cluster.connect() as su:
        su.execute("SELECT * FROM pgmart.refresh_due()")
        su.execute("SELECT * FROM pgmart.run_checks()")
        su.execute("SELECT * FROM pgmart.metric_values('su_metric', now() - interval '1 day', now())")
        su.execute("SELECT * FROM pgmart.run_partition_maintenance()")
        su.execute("SELECT * FROM pgmart.open_alerts")
        su.execute("SELECT * FROM pgmart.freshness")
    assert_nothing_gained(cluster)
    cluster.sql("SELECT pgmart.drop_check('su_nn')", user="mallory")
    cluster.sql("SELECT pgmart.drop_metric('su_metric')", user="mallory")
    cluster.sql("SELECT pgmart.drop_job(job_id) FROM pgmart.jobs WHERE name = 'su_job'", user="mallory")


def test_the_worker_runs_mallorys_jobs_without_running_her_overloads(cluster):
    mallory_objects(cluster)
    cluster.sql("SELECT pgmart.schedule_sql('w_job', 'SELECT count(*) FROM public.m_t', '1 second')", user="mallory")
    cluster.sql("SELECT pgmart.add_check('public.m_t', 'unique', ARRAY['id'], name => 'w_u', schedule => '1 second')",
                user="mallory")
    cluster.sql("SELECT pgmart.schedule_refresh('public.m_mv', '1 second')", user="mallory")
    wait_for(lambda: cluster.one("SELECT count(*) FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) "
                                 "WHERE j.owner = 'mallory' AND r.status = 'succeeded'") >= 6, 30,
             what="the worker running mallory's jobs")
    assert_nothing_gained(cluster)
    cluster.sql("SELECT pgmart.unschedule_refresh('public.m_mv')", user="mallory")
    cluster.sql("SELECT pgmart.drop_check('w_u')", user="mallory")
    cluster.sql("SELECT pgmart.drop_job(job_id) FROM pgmart.jobs WHERE name = 'w_job'", user="mallory")


def test_writers_of_a_watched_table_cannot_capture_the_alert_path(cluster):
    cluster.sql("CREATE TABLE public.a_watch (id int, level text)", user="alice")
    cluster.sql("GRANT INSERT ON public.a_watch TO mallory", user="alice")
    cluster.sql("SELECT pgmart.add_alert_rule('a_watch_rule', 'public.a_watch', $$level = 'high'$$)", user="alice")
    with hostile(cluster) as conn:
        conn.execute("INSERT INTO public.a_watch SELECT g, 'high' FROM generate_series(1, 150) g")
        conn.execute("INSERT INTO public.a_watch VALUES (1, 'high')")
    assert_nothing_gained(cluster)
    # The alerts were written, as alice's, and mallory sees none of them.
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'a_watch_rule'", user="alice") == 151
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'a_watch_rule'", user="mallory") == 0
    cluster.sql("SELECT pgmart.drop_alert_rule('a_watch_rule')", user="alice")


def test_internal_functions_are_not_executable_by_public(cluster):
    allowed = {"_bound_epoch", "_partition_bounds", "_now_epoch", "_relation_name", "_rollup_watermark", "_rollup_pending",
               "_health_settings", "_query_health",
               # read-only helpers of the lineage and trust views (public catalog facts, the standby's lag)
               "_node_kind", "_node_key", "_age_text", "_root", "_replica_lag", "_table_health"}
    rows = cluster.sql(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'pgmart'::regnamespace "
        "AND p.proname LIKE '\\_%%' AND has_function_privilege('mallory', p.oid, 'EXECUTE') "
        "AND NOT p.proname = ANY(%s)", (list(allowed),))
    assert rows == []
    # Attaching pgmart's trigger function to one's own table, or calling internals, is refused.
    cluster.sql("CREATE TABLE public.m_forge (id int)", user="mallory")
    for stmt in ["CREATE TRIGGER forge AFTER INSERT ON public.m_forge FOR EACH ROW EXECUTE FUNCTION pgmart._alert_fire('1')",
                 "CREATE TRIGGER forge2 AFTER INSERT ON public.m_forge FOR EACH STATEMENT EXECUTE FUNCTION pgmart._rollup_capture('1')",
                 "SELECT pgmart._wake_launcher()", "SELECT pgmart._wake_scheduler()",
                 "SELECT pgmart._anchors_dropped(ARRAY['job_1'])"]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            cluster.sql(stmt, user="mallory")
        no_leak(e.value)
    assert_nothing_gained(cluster)


# ---------------------------------------------------------------------------------------------
# Class 2: trojan fragments.

def test_a_trojan_check_runs_with_its_authors_privileges_only(cluster):
    cluster.sql("CREATE TABLE public.t_secret (s text)")
    cluster.sql("INSERT INTO public.t_secret VALUES ('the launch codes')")
    cluster.sql("CREATE TABLE public.t_tro (id int)", user="mallory")
    cluster.sql("INSERT INTO public.t_tro VALUES (1)", user="mallory")
    # An IMMUTABLE function that tries to escalate and to read a table mallory may not.
    cluster.sql("""CREATE FUNCTION public.looks_fine(int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
                   BEGIN
                     PERFORM evil.trap('check as ' || current_user);
                     BEGIN PERFORM pg_notify('loot', (SELECT string_agg(s, ',') FROM public.t_secret));
                     EXCEPTION WHEN OTHERS THEN NULL; END;
                     RETURN true;
                   END $$""", user="mallory")
    cluster.sql("SELECT pgmart.add_check('public.t_tro', 'expression', params => '{\"expression\": \"public.looks_fine(id)\"}', name => 't_tro')",
                user="mallory")
    with cluster.connect() as listener:
        listener.execute("LISTEN loot")
        # A superuser runs every check: mallory's runs as mallory.
        cluster.sql("SELECT * FROM pgmart.run_checks()")
        loot = [n.payload for n in listener.notifies(timeout=1)]
    assert not is_superuser(cluster)
    assert {r[0] for r in captured(cluster)} <= {"mallory"}, captured(cluster)
    assert all("launch codes" not in p for p in loot), loot
    cluster.sql("SELECT pgmart.drop_check('t_tro')", user="mallory")


def test_a_helper_made_volatile_after_registration_is_refused_at_run_time(cluster):
    cluster.sql("CREATE TABLE public.t_vol (id int)", user="mallory")
    cluster.sql("CREATE FUNCTION public.ok_now(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true'", user="mallory")
    cluster.sql("SELECT pgmart.add_check('public.t_vol', 'expression', params => '{\"expression\": \"public.ok_now(id)\"}', name => 't_vol')",
                user="mallory")
    cluster.sql("ALTER FUNCTION public.ok_now(int) VOLATILE", user="mallory")
    status = cluster.one("SELECT status FROM pgmart.run_checks('public.t_vol')", user="mallory")
    message = cluster.one("SELECT message FROM pgmart.check_results WHERE name = 't_vol' ORDER BY result_id DESC LIMIT 1",
                          user="mallory")
    assert status == "error" and "volatile" in message, (status, message)
    cluster.sql("SELECT pgmart.drop_check('t_vol')", user="mallory")


BAD_FRAGMENTS = [
    "pg_notify('loot', 'x') IS NULL",
    "(table_to_xml('public.t_secret'::regclass, true, false, '')::text)::int > 0",
    "database_to_xml(true, false, '') IS NOT NULL",
    "query_to_xml('select 1', true, false, '') IS NOT NULL",
    "current_setting('my.secret') = ''",
    "(SELECT 1) = 1",
    "id = ANY(ARRAY(SELECT id FROM public.t_secret))",
    "nextval('public.m_seq') > 0",
    "pg_sleep(1) IS NULL",
    "txid_current() > 0",
    "public.looks_fine(id)",
    "id === 1",
    "xmlparse(content '<a/>') IS NOT NULL",
    "random() > 0.5",
]


def test_fragments_run_as_someone_else_are_limited_to_pg_catalog_built_ins(cluster):
    cluster.sql("CREATE TABLE IF NOT EXISTS public.t_frag (id int, at timestamptz)", user="mallory")
    cluster.sql("CREATE SEQUENCE IF NOT EXISTS public.m_seq", user="mallory")
    cluster.sql("""CREATE FUNCTION public.eq3(int, int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 = $2'""",
                user="mallory")
    cluster.sql("CREATE OPERATOR public.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = public.eq3)", user="mallory")
    cluster.sql("CREATE FUNCTION public.looks_fine(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true'",
                user="mallory") if cluster.one("SELECT to_regprocedure('public.looks_fine(int)') IS NULL") else None
    for frag in BAD_FRAGMENTS:
        # An alert condition runs as whoever writes; a metric filter as whoever reads.
        with pytest.raises(psycopg.errors.DatabaseError) as e:
            cluster.sql("SELECT pgmart.add_alert_rule('t_frag_rule', 'public.t_frag', %s)", (frag,), user="mallory")
        assert e.value.sqlstate in ("22023", "42883", "42501"), (frag, e.value.sqlstate, str(e.value))
        no_leak(e.value)
        with pytest.raises(psycopg.errors.DatabaseError) as e:
            cluster.sql("SELECT pgmart.register_metric('t_frag_m', 'public.t_frag', 'count(*)', 'at', 'o', 'd', filter => %s)",
                        (frag,), user="mallory")
        assert e.value.sqlstate in ("22023", "42883", "42501"), (frag, e.value.sqlstate, str(e.value))
    # A metric whose source view runs mallory's code is refused: reading it would run that code.
    cluster.sql("CREATE VIEW public.t_frag_v AS SELECT id, at, public.looks_fine(id) AS f FROM public.t_frag", user="mallory")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cluster.sql("SELECT pgmart.register_metric('t_frag_v', 'public.t_frag_v', 'count(*)', 'at', 'o', 'd')", user="mallory")
    assert cluster.one("SELECT count(*) FROM pgmart.rules WHERE name = 't_frag_rule'") == 0
    assert cluster.one("SELECT count(*) FROM pgmart.metrics WHERE name LIKE 't\\_frag%'") == 0
    assert_nothing_gained(cluster)


def test_a_metric_read_by_another_role_runs_nothing_of_its_author(cluster):
    cluster.sql("CREATE TABLE IF NOT EXISTS public.t_met (id int, at timestamptz DEFAULT now(), v numeric)", user="mallory")
    cluster.sql("INSERT INTO public.t_met (id, v) VALUES (1, 1)", user="mallory")
    cluster.sql("GRANT SELECT ON public.t_met TO alice", user="mallory")
    cluster.sql("SELECT pgmart.register_metric('t_met_sum', 'public.t_met', 'sum(v)', 'at', 'o', 'd')", user="mallory")
    cluster.sql("SELECT * FROM pgmart.metric_values('t_met_sum', now() - interval '1 day', now() + interval '1 day')",
                user="alice")
    # Afterwards she adds a row-level security policy that calls her code: reading the metric as
    # alice would run it as alice; pgmart refuses instead.
    cluster.sql("""CREATE FUNCTION public.spy(int) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
                   BEGIN PERFORM evil.trap('policy as ' || current_user); RETURN true; END $$""", user="mallory")
    cluster.sql("ALTER TABLE public.t_met ENABLE ROW LEVEL SECURITY", user="mallory")
    cluster.sql("CREATE POLICY spy ON public.t_met USING (public.spy(id))", user="mallory")
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
        cluster.sql("SELECT * FROM pgmart.metric_values('t_met_sum', now() - interval '1 day', now())", user="alice")
    no_leak(e.value)
    # A superuser (who bypasses row-level security) reads it; nothing of mallory's runs either way.
    cluster.sql("SELECT * FROM pgmart.metric_values('t_met_sum', now() - interval '1 day', now())")
    assert_nothing_gained(cluster)
    cluster.sql("SELECT pgmart.drop_metric('t_met_sum')", user="mallory")


# ---------------------------------------------------------------------------------------------
# Class 3: catalog trust and owners.

def test_drop_role_refuses_while_it_owns_registrations_and_owned_commands_handle_them(cluster):
    cluster.sql("CREATE ROLE dora LOGIN")
    cluster.sql("SELECT * FROM pgmart.grant_access('dora', 'user')")
    cluster.sql("CREATE TABLE public.d_t (id int)")
    cluster.sql("ALTER TABLE public.d_t OWNER TO dora")
    cluster.sql("SELECT pgmart.schedule_sql('d_job', 'SELECT 1', '1 hour')", user="dora")
    cluster.sql("SELECT pgmart.add_check('public.d_t', 'not_null', ARRAY['id'], name => 'd_check')", user="dora")
    cluster.sql("SELECT pgmart.add_alert_rule('d_rule', 'public.d_t', 'id > 1')", user="dora")
    cluster.sql("CREATE DATABASE other_db")
    for db in ("postgres", "other_db"):
        with pytest.raises(psycopg.errors.DependentObjectsStillExist) as e:
            cluster.sql("DROP ROLE dora", dbname=db)
        assert "pgmart_owners.job_" in (e.value.diag.message_detail or "") or db == "other_db", e.value.diag.message_detail
    # A rename changes nothing; a new role with the old name gets nothing.
    cluster.sql("ALTER ROLE dora RENAME TO dora2")
    cluster.sql("CREATE ROLE dora LOGIN")
    assert cluster.one("SELECT owner FROM pgmart.jobs WHERE name = 'd_job'") == "dora2"
    assert cluster.one("SELECT count(*) FROM pgmart.jobs WHERE owner = 'dora'") == 0
    # REASSIGN OWNED moves them; DROP OWNED removes them; no view breaks for anyone.
    cluster.sql("REASSIGN OWNED BY dora2 TO alice")
    cluster.sql("DROP OWNED BY dora2")  # what REASSIGN does not move: dora2's own grants
    assert cluster.one("SELECT owner FROM pgmart.jobs WHERE name = 'd_job'") == "alice"
    assert cluster.one("SELECT count(*) FROM pgmart.checks WHERE name = 'd_check'", user="alice") == 1
    cluster.sql("DROP ROLE dora2")
    cluster.sql("CREATE ROLE erin LOGIN")
    cluster.sql("SELECT pgmart.schedule_sql('e_job', 'SELECT 1', '1 hour', run_as => 'erin')")
    cluster.sql("DROP OWNED BY erin")
    cluster.sql("DROP ROLE erin")
    assert cluster.one("SELECT count(*) FROM pgmart.jobs WHERE name = 'e_job'") == 0
    for view in ("jobs", "job_runs", "alerts", "open_alerts", "checks", "check_results", "rules", "partition_sets"):
        cluster.sql(f"SELECT * FROM pgmart.{view}", user="bob")
    cluster.sql("SELECT * FROM pgmart.refresh_due()", user="bob")
    cluster.sql("SELECT pgmart.drop_job(job_id) FROM pgmart.jobs WHERE name = 'd_job'")
    cluster.sql("SELECT pgmart.drop_check('d_check')")
    cluster.sql("SELECT pgmart.drop_alert_rule('d_rule')")
    cluster.sql("DROP ROLE dora")


def test_a_rule_of_a_dropped_rules_name_sees_none_of_its_alerts(cluster):
    cluster.sql("CREATE TABLE public.r_t (id int)", user="alice")
    cluster.sql("SELECT pgmart.add_alert_rule('reused', 'public.r_t', 'id > 0')", user="alice")
    cluster.sql("INSERT INTO public.r_t VALUES (1)", user="alice")
    alert = cluster.one("SELECT alert_id FROM pgmart.open_alerts WHERE source_name = 'reused'", user="alice")
    cluster.sql("SELECT pgmart.drop_alert_rule('reused')", user="alice")
    cluster.sql("CREATE TABLE public.r_m (id int)", user="mallory")
    cluster.sql("SELECT pgmart.add_alert_rule('reused', 'public.r_m', 'id > 0')", user="mallory")
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'reused'", user="mallory") == 0
    with pytest.raises(psycopg.errors.UndefinedObject) as e:
        cluster.sql("SELECT pgmart.ack_alert(%s)", (alert,), user="mallory")
    assert "alice" not in str(e.value)
    # alice still sees hers.
    assert cluster.one("SELECT count(*) FROM pgmart.open_alerts WHERE alert_id = %s", (alert,), user="alice") == 1
    cluster.sql("SELECT pgmart.drop_alert_rule('reused')", user="mallory")


def test_one_role_cannot_act_on_another_roles_objects(cluster):
    cluster.sql("CREATE TABLE public.o_p (ts timestamptz NOT NULL) PARTITION BY RANGE (ts)", user="alice")
    cluster.sql("SELECT pgmart.create_partition_set('public.o_p', 'ts', '1 day', premake => 2)", user="alice")
    job = cluster.one("SELECT pgmart.schedule_sql('o_job', 'SELECT 1', '1 hour')", user="alice")
    before = cluster.sql("SELECT partition_name FROM pgmart.partitions('public.o_p')", user="alice")
    # run_partition_maintenance() without an argument maintains only the caller's sets.
    assert cluster.sql("SELECT parent FROM pgmart.run_partition_maintenance()", user="mallory") == []
    for stmt in [f"SELECT pgmart.pause_job({job})", f"SELECT * FROM pgmart.run_job({job})",
                 f"SELECT pgmart.alter_job({job}, schedule => '1 second')", f"SELECT pgmart.drop_job({job})",
                 f"SELECT pgmart.resume_job({job})"]:
        with pytest.raises(psycopg.errors.UndefinedObject) as e:
            cluster.sql(stmt, user="mallory")
        assert "alice" not in no_leak(e.value)
    for stmt in ["SELECT pgmart.drop_partition_set('public.o_p')",
                 "SELECT * FROM pgmart.run_partition_maintenance('public.o_p')",
                 "SELECT pgmart.schedule_sql('steal', 'SELECT 1', '1 hour', run_as => 'alice')"]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            cluster.sql(stmt, user="mallory")
        assert "alice" not in no_leak(e.value).replace("run_as => 'alice'", "").replace('"alice"', "")
    assert cluster.sql("SELECT partition_name FROM pgmart.partitions('public.o_p')", user="alice") == before
    assert cluster.one("SELECT count(*) FROM pgmart.jobs WHERE name = 'o_job'", user="mallory") == 0
    # A member of a group sees the group's jobs; others do not.
    cluster.sql("SELECT pgmart.schedule_sql('team_job', 'SELECT 1', '1 hour', run_as => 'team')", user="alice")
    assert cluster.one("SELECT count(*) FROM pgmart.jobs WHERE name = 'team_job'", user="alice") == 1
    assert cluster.one("SELECT count(*) FROM pgmart.jobs WHERE name = 'team_job'", user="bob") == 0
    cluster.sql("SELECT pgmart.drop_job(job_id) FROM pgmart.jobs WHERE name IN ('team_job', 'o_job')", user="alice")
    cluster.sql("SELECT pgmart.drop_partition_set('public.o_p')", user="alice")


# ---------------------------------------------------------------------------------------------
# Class 4: one role stopping or flooding the scheduler.

def test_schedules_and_start_times_must_be_finite(cluster):
    for stmt in ["SELECT pgmart.schedule_sql('s1', 'SELECT 1', '1 hour', start_at => '-infinity')",
                 "SELECT pgmart.schedule_sql('s2', 'SELECT 1', '1 hour', start_at => 'infinity')",
                 "SELECT pgmart.schedule_sql('s3', 'SELECT 1', '178000000 years')",
                 "SELECT pgmart.schedule_sql('s4', 'SELECT 1', '2562047788 hours')",
                 "SELECT pgmart.schedule_sql('s5', 'SELECT 1', '1 hour', timezone => repeat('x', 10000))",
                 "SELECT pgmart.schedule_sql('s6', 'SELECT 1', '0 0 30 2 *')"]:
        with pytest.raises(psycopg.errors.DatabaseError) as e:
            cluster.sql(stmt, user="mallory")
        assert e.value.sqlstate == "22023", (stmt, e.value.sqlstate, str(e.value))
        no_leak(e.value)
    assert cluster.one("SELECT count(*) FROM pgmart.jobs WHERE name ~ '^s[0-9]$'", user="mallory") == 0


def test_squatting_on_locks_does_not_stop_scheduling_or_pruning(cluster):
    with cluster.connect(user="mallory") as squat:
        squat.execute("SELECT pg_advisory_lock(hashtext('pgmart scheduler'))")
        squat.execute("SELECT pg_advisory_lock(hashtext('pgmart.prune'))")
        cluster.sql("CREATE TABLE IF NOT EXISTS public.sq_log (at timestamptz)", user="alice")
        cluster.sql("SELECT pgmart.schedule_sql('sq_job', 'INSERT INTO public.sq_log VALUES (now())', '1 second')",
                    user="alice")
        wait_for(lambda: cluster.one("SELECT count(*) FROM public.sq_log", user="alice") >= 2, 20,
                 what="alice's job running while mallory squats")
    cluster.sql("SELECT pgmart.drop_job(job_id) FROM pgmart.jobs WHERE name = 'sq_job'", user="alice")


def test_one_role_may_own_only_so_many_jobs(cluster):
    owned = cluster.one("SELECT count(*) FROM pgmart.jobs", user="mallory")
    cluster.sql(f"ALTER SYSTEM SET pgmart.max_jobs_per_role = {owned + 3}")
    cluster.sql("SELECT pg_reload_conf()")
    time.sleep(0.5)
    try:
        for i in range(3):
            cluster.sql(f"SELECT pgmart.schedule_sql('lim{i}', 'SELECT 1', '1 hour')", user="mallory")
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            cluster.sql("SELECT pgmart.schedule_sql('lim3', 'SELECT 1', '1 hour')", user="mallory")
    finally:
        cluster.sql("ALTER SYSTEM RESET pgmart.max_jobs_per_role")
        cluster.sql("SELECT pg_reload_conf()")
        cluster.sql("SELECT pgmart.drop_job(job_id) FROM pgmart.jobs WHERE name LIKE 'lim%'", user="mallory")


# ---------------------------------------------------------------------------------------------
# Class 5: what errors disclose.

def test_no_error_carries_a_rust_backtrace(cluster):
    cluster.sql("CREATE TABLE IF NOT EXISTS public.bt_t (id int, at timestamptz)", user="mallory")
    stmts = [
        "SELECT pgmart.add_check('public.bt_t', 'expression', params => '{\"expression\": \"1/0 = 1\"}', name => 'bt_div')",
        "SELECT * FROM pgmart.run_checks('public.bt_t')",
        "SELECT pgmart.add_check('public.bt_t', 'nonsense')",
        "SELECT pgmart.schedule_sql('bt', 'SELEC 1', '1 hour')",
        "SELECT pgmart.schedule_sql('bt', 'SELECT 1', 'every tuesday')",
        "SELECT pgmart.register_metric('bt', 'public.bt_t', 'sum(nope)', 'at', 'o', 'd')",
        "SELECT * FROM pgmart.metric_values('nope', now(), now())",
        "SELECT pgmart.add_alert_rule('bt', 'public.bt_t', 'nope > 1')",
        "SET statement_timeout = '1ms'; SELECT pg_sleep(0.1), * FROM pgmart.run_checks()",
    ]
    with cluster.connect(user="mallory") as conn:
        for s in stmts:
            try:
                conn.execute(s)
            except psycopg.errors.DatabaseError as e:
                no_leak(e)
            conn.execute("RESET statement_timeout")
    assert "stack backtrace" not in cluster.server_log()
