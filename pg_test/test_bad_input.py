"""Bad input, everywhere (issue 19): every public function of pgmart answers every bad argument with
a clear ERROR and the right SQLSTATE (never XX000, never a Rust backtrace, never a silent no-op) and
changes nothing when it errors; unusual but valid input keeps working.

One table of cases over every public function (each required argument NULL, empty, the wrong kind
of object, objects and OIDs that do not exist, overflowing and non-finite values, hostile and odd
identifiers, and valid but unusual input that must succeed). Every case asserts its SQLSTATE (or
success); after every error a digest of pgmart's tables and of the catalog rows of every user
relation (pg_class, pg_attribute, pg_trigger) must be what it was before. The cluster runs with
RUST_BACKTRACE=1 in the postmaster's environment and `log_error_verbosity = verbose` (every ERROR
logged with its SQLSTATE): at the end its log must hold no panic, no backtrace and no XX000.

The NULL rule checked here (docs/jobs.md, "Errors"): NULL for an argument without a default is
22004 naming the argument; NULL for an argument with a default means that default.
"""

import os
import re
import threading
import time

import psycopg
import pytest

from conftest import cluster_with_backtraces

# The scheduler stays idle (nothing changes the catalog behind a case's back); a small lock table
# so that a partition set needing more locks than it holds can be tried cheaply.
CLUSTER_SETTINGS = {
    "pgmart.enabled": "off",
    "log_error_verbosity": "verbose",
    "log_min_messages": "warning",  # ERRORs too (LOG ranks above ERROR there)
    "max_locks_per_transaction": 10,
}

LEAKS = ["stack backtrace", "panicked", "rust_begin_unwind", "pgrx::", "core::", ".rs:", "/rustc/", "RUST_BACKTRACE"]

LONG63 = "l" * 63
ODD_SCHEMA = '"odd ""sch""; x"'
ODD = f'{ODD_SCHEMA}."Ev Ents"'  # a mixed-case table in a schema whose name holds a quote, a semicolon, a space
ODD_T = ODD_SCHEMA + '."Plain ""T"""'
ODD_MV = ODD_SCHEMA + '."M v"'
HOSTILE_ROLE = 'x"; DROP ROLE bi_user; --'
UNICODE_T = 'bi."données ✓"'


def lit(s):
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def ident(s):
    """A case id made from a value."""
    return re.sub(r"\W+", "_", s.strip()) or "empty"


# ---------------------------------------------------------------------------------------------
# The world every case runs against (made once, as postgres).

SETUP = f"""
CREATE ROLE bi_user LOGIN;
CREATE ROLE bi_other NOLOGIN;
SELECT * FROM pgmart.grant_access('bi_user', 'user');
CREATE SCHEMA bi;
GRANT USAGE, CREATE ON SCHEMA bi TO bi_user;
CREATE TABLE bi.plain (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), d date, v numeric,
                       status text, k int);
INSERT INTO bi.plain SELECT g, now() - g * interval '1 hour', current_date - g, g,
                            CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, g % 7 FROM generate_series(1, 50) g;
CREATE VIEW bi.v AS SELECT * FROM bi.plain;
CREATE MATERIALIZED VIEW bi.mv AS SELECT status, count(*) AS n FROM bi.plain GROUP BY status;
CREATE UNIQUE INDEX mv_status ON bi.mv (status);
CREATE MATERIALIZED VIEW bi.mv_nouniq AS SELECT 1 AS x;
CREATE MATERIALIZED VIEW bi.mv_free AS SELECT 1 AS x;
CREATE UNIQUE INDEX ON bi.mv_free (x);
CREATE SEQUENCE bi.seq;
CREATE INDEX plain_at ON bi.plain (at);
CREATE TYPE bi.comp AS (a int);
CREATE TABLE bi.watched (id int, v numeric);
CREATE TABLE bi.ev (at timestamptz NOT NULL, v int) PARTITION BY RANGE (at);
CREATE TABLE bi.free_ev (at timestamptz NOT NULL, k text, v int) PARTITION BY RANGE (at);
CREATE INDEX ON bi.free_ev (v);
CREATE TABLE bi.listp (k int) PARTITION BY LIST (k);
CREATE TABLE bi.multi (a timestamptz, b int) PARTITION BY RANGE (a, b);
CREATE TABLE bi.txtp (t text) PARTITION BY RANGE (t);
CREATE TABLE bi.user_ev (at timestamptz NOT NULL) PARTITION BY RANGE (at);
ALTER TABLE bi.user_ev OWNER TO bi_user;
CREATE TABLE bi.user_t (id int, v numeric, at timestamptz);
ALTER TABLE bi.user_t OWNER TO bi_user;
CREATE SCHEMA {ODD_SCHEMA};
CREATE TABLE {ODD} (at timestamptz NOT NULL, "Amount" numeric, "we;ird" text) PARTITION BY RANGE (at);
CREATE TABLE {ODD_T} (id int, "Amount" numeric, at timestamptz, "we;ird" text, "Sta tus" text);
CREATE MATERIALIZED VIEW {ODD_MV} AS SELECT 1 AS "X";
CREATE UNIQUE INDEX ON {ODD_MV} ("X");
CREATE TABLE bi.{LONG63} (at timestamptz NOT NULL, v numeric) PARTITION BY RANGE (at);
CREATE TABLE {UNICODE_T} (at timestamptz NOT NULL, "été" numeric, id int) PARTITION BY RANGE (at);
CREATE TABLE bi.frac (at timestamp NOT NULL, v int) PARTITION BY RANGE (at);
CREATE TABLE bi.frac_p1 PARTITION OF bi.frac
    FOR VALUES FROM (date_trunc('day', localtimestamp) + interval '1 day 0.5 seconds')
                 TO (date_trunc('day', localtimestamp) + interval '2 days 0.25 seconds');
CREATE TABLE bi.dated (d date NOT NULL) PARTITION BY RANGE (d);
CREATE TABLE bi.oddparts (at timestamptz NOT NULL, v int) PARTITION BY RANGE (at);
CREATE TABLE bi.oddparts_old PARTITION OF bi.oddparts FOR VALUES FROM (MINVALUE) TO ('2000-01-01 00:00:00+00');
CREATE TABLE bi.oddparts_frac PARTITION OF bi.oddparts
    FOR VALUES FROM ('2000-01-01 00:00:00.123456+00') TO ('2000-01-02 00:00:00+00');
CREATE TABLE bi.oddparts_far PARTITION OF bi.oddparts FOR VALUES FROM ('200000-01-01 00:00:00+00') TO (MAXVALUE);
CREATE TABLE bi.oddparts_sub PARTITION OF bi.oddparts FOR VALUES FROM ('2001-06-01 00:00:00+00') TO ('2001-07-01 00:00:00+00')
    PARTITION BY LIST (v);
CREATE TABLE bi.oddparts_default PARTITION OF bi.oddparts DEFAULT;
CREATE TABLE bi.lockme (at timestamptz NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE bi.slowme (at timestamptz NOT NULL) PARTITION BY RANGE (at);
SELECT pgmart.schedule_sql('existing_job', 'SELECT 1', '1 hour');
SELECT pgmart.schedule_sql('other_job', 'SELECT 1', '1 hour');
SELECT pgmart.add_check('bi.plain', 'not_null', ARRAY['id'], name => 'existing_check');
SELECT pgmart.register_metric('existing_metric', 'bi.plain', 'sum(v)', 'at', 'team', 'Sum of v',
                              dimensions => ARRAY['status']);
SELECT pgmart.register_metric('replacement_metric', 'bi.plain', 'count(*)', 'at', 'team', 'Rows');
SELECT pgmart.add_alert_rule('existing_rule', 'bi.watched', 'v < 0');
INSERT INTO bi.watched VALUES (1, -1);
SELECT pgmart.create_partition_set('bi.ev', 'at', '1 day');
SELECT pgmart.schedule_refresh('bi.mv', '1 hour');
SELECT pgmart.register_dashboard('existing dashboard', 'team', 'Reads bi.plain', metrics => ARRAY['existing_metric'], sources => ARRAY['bi.plain'::regclass]);
"""

IDS = {
    "job": "SELECT job_id FROM pgmart.jobs WHERE name = 'existing_job'",
    "set_job": "SELECT job_id FROM pgmart.partition_sets WHERE parent = 'bi.ev'",
    "refresh_job": "SELECT job_id FROM pgmart.jobs WHERE kind = 'refresh' AND target = 'bi.mv'",
    "alert": "SELECT alert_id FROM pgmart.alerts WHERE source_name = 'existing_rule' OR rule_id IS NOT NULL LIMIT 1",
    "user_job": "SELECT job_id FROM pgmart.jobs WHERE name = 'user_job'",
}


class World:
    def __init__(self, cluster):
        self.cluster = cluster
        self.admin = cluster.connect()
        cluster.sql(SETUP)
        cluster.sql("SELECT pgmart.schedule_sql('user_job', 'SELECT 1', '1 hour')", user="bi_user")
        self.user = cluster.connect(user="bi_user")
        # No case may hang the suite.
        for conn in (self.admin, self.user):
            conn.execute("SET statement_timeout = '60s'")
            conn.execute("SET lock_timeout = '20s'")
        self.ids = {k: self.admin.execute(q).fetchone()[0] for k, q in IDS.items()}
        assert all(v is not None for v in self.ids.values()), self.ids
        tables = [r[0] for r in self.admin.execute(
            "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'pgmart'::regnamespace "
            "AND c.relkind IN ('r', 'p') ORDER BY 1").fetchall()]
        assert len(tables) >= 8, tables
        user_rel = ("JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN "
                    "('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname !~ '^pg_(toast_)?temp'")
        parts = [f"SELECT {lit(t)} || (SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') "
                 f"FROM {t} x)" for t in tables]
        parts.append("SELECT 'class' || md5(string_agg(concat_ws(',', c.oid, c.relname, c.relnamespace, c.relkind, "
                     "c.relowner, c.relacl, c.reloptions, c.relispartition, pg_get_expr(c.relpartbound, c.oid)), "
                     f"'|' ORDER BY c.oid)) FROM pg_class c {user_rel}")
        parts.append("SELECT 'attr' || md5(string_agg(concat_ws(',', a.attrelid, a.attnum, a.attname, a.atttypid, "
                     "a.attnotnull, a.attisdropped), '|' ORDER BY a.attrelid, a.attnum)) "
                     f"FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid {user_rel}")
        parts.append("SELECT 'trig' || coalesce(md5(string_agg(concat_ws(',', t.tgrelid, t.tgname, t.tgfoid, t.tgenabled), "
                     f"'|' ORDER BY t.oid)), '') FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid {user_rel}")
        parts.append("SELECT 'nsp' || md5(string_agg(nspname || ':' || nspowner, '|' ORDER BY nspname)) FROM pg_namespace")
        parts.append("SELECT 'roles' || md5(string_agg(rolname, '|' ORDER BY rolname)) FROM pg_roles")
        self.digest_sql = "SELECT string_agg(d, E'\\n') FROM (" + " UNION ALL ".join(f"({p})" for p in parts) + ") s(d)"

    def digest(self):
        return self.admin.execute(self.digest_sql).fetchone()[0]

    def conn(self, user):
        return self.user if user == "bi_user" else self.admin

    def close(self):
        self.admin.close()
        self.user.close()


@pytest.fixture(scope="module")
def cluster(request):
    c = cluster_with_backtraces("bad_input", settings=CLUSTER_SETTINGS)
    c.sql("CREATE EXTENSION pgmart")
    yield c
    c.destroy()


@pytest.fixture(scope="module")
def world(cluster):
    w = World(cluster)
    yield w
    w.close()


# ---------------------------------------------------------------------------------------------
# The cases.

CASES = []


def case(cid, sql, expect, user=None, check=None, msg=None):
    """One call. `expect`: a SQLSTATE, or "ok" (then `check`, a query, must return true).
    `msg`: text the error message (or hint) must contain."""
    CASES.append(pytest.param({"sql": sql, "expect": expect, "user": user, "check": check, "msg": msg}, id=cid))


# Valid values for every required argument of every public function (as SQL). A NULL in each
# required argument, the others valid, must be 22004 naming it. Every public function must be
# listed (test_every_public_function_is_covered).
REQUIRED = {
    "schedule_sql": {"name": "'n_sql'", "command": "'SELECT 1'", "schedule": "'1 hour'"},
    "alter_job": {"job_id": "{job}"},
    "run_job": {"job_id": "{job}"},
    "pause_job": {"job_id": "{job}"},
    "resume_job": {"job_id": "{job}"},
    "drop_job": {"job_id": "{job}"},
    "create_partition_set": {"parent": "'bi.free_ev'", "control_column": "'at'", "partition_interval": "'1 day'"},
    "drop_partition_set": {"parent": "'bi.ev'"},
    "partitions": {"parent": "'bi.ev'"},
    "schedule_refresh": {"view": "'bi.mv_free'", "schedule": "'1 hour'"},
    "unschedule_refresh": {"view": "'bi.mv'"},
    "refresh_now": {"view": "'bi.mv'"},
    "add_check": {"target": "'bi.plain'", "kind": "'not_null'"},
    "drop_check": {"name": "'existing_check'"},
    "register_metric": {"name": "'n_metric'", "source": "'bi.plain'", "expression": "'sum(v)'",
                        "time_column": "'at'", "owner": "'team'", "description": "'d'"},
    "deprecate_metric": {"name": "'existing_metric'"},
    "drop_metric": {"name": "'existing_metric'"},
    "metric_sql": {"name": "'existing_metric'", "from_ts": "'2024-01-01'", "to_ts": "'2024-02-01'"},
    "metric_values": {"name": "'existing_metric'", "from_ts": "'2024-01-01'", "to_ts": "'2024-02-01'"},
    "add_alert_rule": {"name": "'n_rule'", "target": "'bi.watched'", "condition": "'v > 100'"},
    "drop_alert_rule": {"name": "'existing_rule'"},
    "ack_alert": {"alert_id": "{alert}"},
    "grant_access": {"role": "'bi_other'"},
    "create_rollup": {"name": "'bi.n_rollup'", "source": "'bi.plain'", "time_column": "'at'", "bucket": "'1 hour'"},
    "refresh_rollup": {"name": "'bi.n_rollup'"},
    "drop_rollup": {"name": "'bi.n_rollup'"},
    "maintain_table": {"table": "'bi.plain'"},
    "unmaintain_table": {"table": "'bi.plain'"},
    "register_dashboard": {"name": "'n dashboard'", "owner": "'team'", "description": "'d'"},
    "drop_dashboard": {"name": "'existing dashboard'"},
    "impact": {"object": "'bi.plain'"},
    "label_pii": {"table": "'bi.plain'", "columns": "ARRAY['v']"},
    "unlabel_pii": {"table": "'bi.plain'", "columns": "ARRAY['v']"},
    "label_client_facing": {"table": "'bi.plain'"},
    "isolate_tenants": {"table": "'bi.plain'", "tenant_column": "'v'"},
    "create_snapshot": {"name": "'bi.n_snap'", "source": "'bi.plain'", "strategy": "'periodic'"},
    "run_snapshot": {"name": "'bi.n_snap'"},
    "drop_snapshot": {"name": "'bi.n_snap'"},
}
# Overloads: the same function under another signature (by job name as well as id; pg_cron's).
OVERLOADS = {
    "run_job": [{"job_name": "'existing_job'"}],
    "pause_job": [{"job_name": "'existing_job'"}],
    "resume_job": [{"job_name": "'existing_job'"}],
    "drop_job": [{"job_name": "'existing_job'"}],
    "alter_job": [{"job_name": "'existing_job'"}],
    "schedule": [{"job_name": "'n_cron'", "schedule": "'1 hour'", "command": "'SELECT 1'"},
                 {"schedule": "'1 hour'", "command": "'SELECT 1'"}],
    "unschedule": [{"job_name": "'existing_job'"}, {"job_id": "{job}"}],
    "metric_sql": [{"metrics": "ARRAY['existing_metric']", "from_ts": "'2024-01-01'", "to_ts": "'2024-02-01'"}],
    "metric_values": [{"metrics": "ARRAY['existing_metric']", "from_ts": "'2024-01-01'", "to_ts": "'2024-02-01'"}],
}
# Public functions without required arguments (and the aggregates, for which NULL is data).
NO_REQUIRED = {"refresh_due", "worker_status", "run_checks", "run_partition_maintenance",
               "run_partition_maintenance_proc", "schedule_health", "lineage", "lineage_mermaid",
               "create_layers", "drop_layers", "access_report"}
AGGREGATES = {"duplicate_keys", "orphan_keys", "smallest_keys", "smallest_values"}
PROCEDURES = {"run_partition_maintenance_proc"}

def typed_null(fn, arg, req):
    """NULL, typed when an overload takes this argument name with another type."""
    types = {"job_id": "bigint", "metrics": "text[]", "from_ts": "timestamptz", "to_ts": "timestamptz"}
    return f"NULL::{types[arg]}" if arg in types else "NULL::text" if fn in OVERLOADS else "NULL"


for fn, req in [(f, r) for f, r in REQUIRED.items()] + [(f, r) for f, rs in OVERLOADS.items() for r in rs]:
    sig = "-".join(req)
    for arg in req:
        args = ", ".join(f"\"{a}\" => {typed_null(fn, a, req) if a == arg else v}" for a, v in req.items())
        case(f"null-{fn}-{sig}-{arg}", f"SELECT * FROM pgmart.{fn}({args})", "22004", msg=f'argument "{arg}"')
    # Every required argument NULL at once: the first one is named.
    if len(req) > 1:
        args = ", ".join(f"\"{a}\" => {typed_null(fn, a, req)}" for a in req)
        case(f"null-{fn}-{sig}-all", f"SELECT * FROM pgmart.{fn}({args})", "22004", msg="must not be NULL")
# ... and as a non-superuser (the rule holds before any privilege check).
for fn in ["schedule_sql", "drop_job", "create_partition_set", "add_check", "register_metric", "add_alert_rule",
           "ack_alert", "grant_access", "unschedule_refresh", "drop_partition_set"]:
    req = REQUIRED[fn]
    arg = next(iter(req))
    args = ", ".join(f"\"{a}\" => {'NULL' if a == arg else v}" for a, v in req.items())
    case(f"null-as-user-{fn}", f"SELECT * FROM pgmart.{fn}({args})", "22004", user="bi_user", msg=arg)

# NULL for an argument that has a default means that default.
case("default-null-schedule_sql",
     "SELECT pgmart.schedule_sql('d_sql', 'SELECT 1', '1 hour', timezone => NULL, max_retries => NULL, "
     "retry_backoff => NULL, start_at => NULL, run_as => NULL, timeout => NULL)", "ok",
     check="SELECT timezone = 'UTC' AND max_retries = 3 FROM pgmart.jobs WHERE name = 'd_sql'")
case("default-null-alter_job", "SELECT pgmart.alter_job({job}, schedule => NULL, timezone => NULL, max_retries => NULL, "
     "retry_backoff => NULL, enabled => NULL, command => NULL, name => NULL, timeout => NULL)", "ok",
     check="SELECT name = 'existing_job' AND schedule = '1 hour' AND enabled FROM pgmart.jobs WHERE job_id = {job}")
case("default-null-add_check",
     "SELECT pgmart.add_check('bi.plain', 'not_null', ARRAY['status'], params => NULL, severity => NULL, name => NULL, "
     "schedule => NULL, where_clause => NULL, timeout => NULL)", "ok",
     check="SELECT severity = 'error' FROM pgmart.checks WHERE name = 'not_null_plain_status'")
case("default-null-register_metric",
     "SELECT pgmart.register_metric('d_metric', 'bi.plain', 'max(v)', 'at', 'team', 'd', dimensions => NULL, "
     "filter => NULL, grain => NULL, allow_duplicate => NULL)", "ok",
     check="SELECT grain = 'day' FROM pgmart.metrics WHERE name = 'd_metric'")
case("default-null-add_alert_rule",
     "SELECT pgmart.add_alert_rule('d_rule', 'bi.watched', 'v > 1000', severity => NULL, channel => NULL, "
     "payload_columns => NULL, on_update => NULL)", "ok",
     check="SELECT severity = 'high' AND channel = 'pgmart_alerts' FROM pgmart.rules WHERE name = 'd_rule'")
case("default-null-create_partition_set",
     "SELECT pgmart.create_partition_set('bi.dated', 'd', '1 month', premake => NULL, retention => NULL, "
     "retention_mode => NULL, start_at => NULL, default_partition => NULL, schedule => NULL, timezone => NULL, "
     "timeout => NULL)", "ok",
     check="SELECT premake = 4 AND retention_mode = 'drop' AND timezone = 'UTC' FROM pgmart.partition_sets "
           "WHERE parent = 'bi.dated'")
case("default-null-schedule_refresh",
     f"SELECT pgmart.schedule_refresh({lit(ODD_MV)}, '1 day', concurrently => NULL, freshness_slo => NULL, "
     "timezone => NULL, max_retries => NULL, retry_backoff => NULL, timeout => NULL)", "ok",
     check="SELECT count(*) = 1 FROM pgmart.jobs WHERE kind = 'refresh' AND timezone = 'UTC' AND max_retries = 3 "
           "AND target LIKE '%M v%'")
case("default-null-metric_sql",
     "SELECT pgmart.metric_sql('existing_metric', '2024-01-01', '2024-01-03', grain => NULL, dimensions => NULL, "
     "timezone => NULL) <> ''", "ok")
case("default-null-metric_values",
     "SELECT count(*) FROM pgmart.metric_values('existing_metric', '2024-01-01', '2024-01-03', grain => NULL, "
     "dimensions => NULL, timezone => NULL)", "ok")
case("default-null-run_checks", "SELECT count(*) FROM pgmart.run_checks(NULL)", "ok")
case("default-null-run_partition_maintenance", "SELECT count(*) FROM pgmart.run_partition_maintenance(NULL)", "ok")
case("default-null-ack_alert-note", "SELECT pgmart.ack_alert({alert}, note => NULL)", "ok",
     check="SELECT acked_at IS NOT NULL FROM pgmart.alerts WHERE alert_id = {alert}")
case("default-null-deprecate_metric", "SELECT pgmart.deprecate_metric('d_metric', replaced_by => NULL)", "ok")
case("default-null-grant_access", "SELECT count(*) FROM pgmart.grant_access('bi_other', access => NULL)", "ok",
     check="SELECT has_schema_privilege('bi_other', 'pgmart', 'USAGE')")

# ---- relations: OIDs that are no relation's, relations of the wrong kind --------------------
REL_ARGS = [  # (function, call with {rel} in the relation argument)
    ("create_partition_set", "SELECT pgmart.create_partition_set({rel}, 'at', '1 day')"),
    ("drop_partition_set", "SELECT pgmart.drop_partition_set({rel})"),
    ("partitions", "SELECT * FROM pgmart.partitions({rel})"),
    ("run_partition_maintenance", "SELECT * FROM pgmart.run_partition_maintenance({rel})"),
    ("schedule_refresh", "SELECT pgmart.schedule_refresh({rel}, '1 hour')"),
    ("unschedule_refresh", "SELECT pgmart.unschedule_refresh({rel})"),
    ("refresh_now", "SELECT * FROM pgmart.refresh_now({rel})"),
    ("add_check", "SELECT pgmart.add_check({rel}, 'row_count', params => '{{\"min\": 1}}')"),
    ("run_checks", "SELECT * FROM pgmart.run_checks({rel})"),
    ("register_metric", "SELECT pgmart.register_metric('m_rel', {rel}, 'count(*)', 'at', 'team', 'd')"),
    ("add_alert_rule", "SELECT pgmart.add_alert_rule('r_rel', {rel}, 'true')"),
]
for fn, call in REL_ARGS:
    for label, rel in [("oid-999999", "999999::regclass"), ("oid-0", "0::regclass"), ("oid-max", "4294967295::oid::regclass"),
                       ("oid-of-type", "'bi.comp'::regtype::oid::regclass")]:
        case(f"rel-{fn}-{label}", call.format(rel=rel), "42P01", msg="does not exist")
WRONG_KIND = {  # function -> {relation: SQLSTATE}
    "create_partition_set": {"bi.v": "42809", "bi.seq": "42809", "bi.plain_at": "42809", "bi.mv": "42809",
                             "bi.comp": "42809", "bi.plain": "55000", "bi.listp": "22023", "bi.multi": "42703",
                             "bi.ev": "42710", "pg_catalog.pg_class": "55000"},
    "schedule_refresh": {"bi.plain": "42809", "bi.v": "42809", "bi.seq": "42809", "bi.plain_at": "42809",
                         "bi.ev": "42809", "bi.comp": "42809"},
    "refresh_now": {"bi.plain": "42809", "bi.v": "42809", "bi.seq": "42809", "bi.plain_at": "42809"},
    "unschedule_refresh": {"bi.plain": "42704", "bi.mv_nouniq": "42704", "bi.seq": "42704"},
    "add_check": {"bi.seq": "42809", "bi.plain_at": "42809", "bi.comp": "42809"},
    "register_metric": {"bi.seq": "42809", "bi.plain_at": "42809", "bi.comp": "42809", "bi.watched": "42703"},
    "add_alert_rule": {"bi.v": "42809", "bi.seq": "42809", "bi.plain_at": "42809", "bi.mv": "42809",
                       "bi.comp": "42809"},
    "drop_partition_set": {"bi.plain": "42704", "bi.v": "42704", "bi.seq": "42704", "bi.free_ev": "42704"},
    "run_partition_maintenance": {"bi.plain": "42704", "bi.seq": "42704", "bi.free_ev": "42704"},
}
for fn, rels in WRONG_KIND.items():
    call = dict(REL_ARGS)[fn]
    for rel, code in rels.items():
        case(f"kind-{fn}-{rel}", call.format(rel=lit(rel)), code)
# Reading: partitions() and run_checks() of a relation without partitions or checks is empty.
for rel in ["bi.plain", "bi.v", "bi.seq", "bi.mv"]:
    case(f"empty-partitions-{rel}", f"SELECT count(*) = 0 FROM pgmart.partitions({lit(rel)})", "ok")
    case(f"empty-run_checks-{rel}", f"SELECT count(*) = 0 FROM pgmart.run_checks({lit(rel)})", "ok")

# ---- job ids that are nobody's ----------------------------------------------------------------
for fn in ["run_job", "pause_job", "resume_job", "drop_job", "alter_job"]:
    for label, v in [("neg", "-1"), ("zero", "0"), ("max", "9223372036854775807"), ("min", "(-9223372036854775807 - 1)")]:
        case(f"jobid-{fn}-{label}", f"SELECT * FROM pgmart.{fn}({v})", "42704", msg="does not exist")
case("jobid-drop-partition-job", "SELECT pgmart.drop_job({set_job})", "55000")
case("jobid-drop-refresh-job", "SELECT pgmart.drop_job({refresh_job})", "55000")
for label, v in [("neg", "-1"), ("zero", "0"), ("max", "9223372036854775807")]:
    case(f"alertid-{label}", f"SELECT pgmart.ack_alert({v})", "42704")

# ---- names of registrations that do not exist -------------------------------------------------
for fn in ["drop_check", "drop_metric", "deprecate_metric", "drop_alert_rule"]:
    for label, v in [("empty", "''"), ("blank", "'   '"), ("missing", "'no_such_thing'"),
                     ("hostile", lit("x'); DROP TABLE bi.plain; --")), ("unicode", "'ünï ✓'"),
                     ("long", "repeat('n', 300)")]:
        case(f"name-{fn}-{label}", f"SELECT pgmart.{fn}({v})", "42704")
case("metric_sql-missing", "SELECT pgmart.metric_sql('no_such_metric', '2024-01-01', '2024-02-01')", "42704")
case("metric_values-missing", "SELECT * FROM pgmart.metric_values('nope', '2024-01-01', '2024-02-01')", "42704")
case("metric_values-several-missing", "SELECT * FROM pgmart.metric_values(ARRAY['existing_metric', 'nope'], '2024-01-01', '2024-02-01')",
     "42704", msg='metric "nope" does not exist')
case("metric_values-array-as-text", "SELECT * FROM pgmart.metric_values('{existing_metric,other}', '2024-01-01', '2024-02-01')",
     "42704", msg="ARRAY[")
case("rollup-measures-null", "SELECT pgmart.create_rollup('bi.n_rollup', 'bi.plain', 'at', '1 hour')", "22004", msg="measures")
case("rollup-bucket-zero", "SELECT pgmart.create_rollup('bi.n_rollup', 'bi.plain', 'at', '0 seconds', measures => '{\"n\": \"count(*)\"}')",
     "22023", msg="1 minute and 1 month")
case("rollup-bucket-negative", "SELECT pgmart.create_rollup('bi.n_rollup', 'bi.plain', 'at', '-1 hour', measures => '{\"n\": \"count(*)\"}')",
     "22023")
case("rollup-measures-scalar", "SELECT pgmart.create_rollup('bi.n_rollup', 'bi.plain', 'at', '1 hour', measures => '\"count(*)\"')",
     "22023", msg="JSON object")
case("rollup-missing", "SELECT pgmart.refresh_rollup('bi.no_such_rollup')", "42704")
case("rollup-drop-missing", "SELECT pgmart.drop_rollup('no such rollup')", "42704")
case("health-level-bad", "SELECT pgmart.schedule_health(alert_level => 'loud')", "22023", msg="alert_level")
case("health-schedule-bad", "SELECT pgmart.schedule_health('every now and then')", "22023")
case("maintain-view", "SELECT pgmart.maintain_table('bi.v')", "42809")
case("maintain-missing-oid", "SELECT pgmart.maintain_table(999999::regclass)", "42P01")
case("unmaintain-not-registered", "SELECT pgmart.unmaintain_table('bi.plain')", "42704")
case("dashboard-name-empty", "SELECT pgmart.register_dashboard('', 'o', 'd')", "22023", msg="dashboard name")
case("dashboard-name-control", "SELECT pgmart.register_dashboard(E'a\\nb', 'o', 'd')", "22023", msg="dashboard name")
case("dashboard-owner-blank", "SELECT pgmart.register_dashboard('x', '  ', 'd')", "22023", msg="owner")
case("dashboard-metric-missing", "SELECT pgmart.register_dashboard('x', 'o', 'd', metrics => '{no_such_metric}')", "42704")
case("dashboard-metric-null", "SELECT pgmart.register_dashboard('x', 'o', 'd', metrics => ARRAY[NULL]::text[])", "22004")
case("dashboard-source-null", "SELECT pgmart.register_dashboard('x', 'o', 'd', sources => ARRAY[NULL]::regclass[])", "22004")
case("dashboard-source-missing-oid", "SELECT pgmart.register_dashboard('x', 'o', 'd', sources => ARRAY[999999::oid::regclass])", "42P01")
case("dashboard-source-index", "SELECT pgmart.register_dashboard('x', 'o', 'd', sources => ARRAY['pg_class_oid_index'::regclass])", "42809")
case("dashboard-url-javascript", "SELECT pgmart.register_dashboard('x', 'o', 'd', url => 'javascript:alert(1)')", "22023", msg="url")
case("dashboard-pattern-bad", "SELECT pgmart.register_dashboard('x', 'o', 'd', query_pattern => '(')", "2201B")
case("dashboard-drop-missing", "SELECT pgmart.drop_dashboard('no such dashboard')", "42704")
case("dashboard-name-leading-space", "SELECT pgmart.register_dashboard(' odd; DROP TABLE bi.plain --x'::text || '\"', 'o', 'd')", "22023")
case("dashboard-odd-quotes-ok", "SELECT pgmart.register_dashboard('Ünïcode \"dash\"; DROP TABLE bi.plain; --', 'o', 'd', sources => ARRAY['bi.plain'::regclass])",
     "ok", check="SELECT count(*) = 1 FROM pgmart.dashboards WHERE name LIKE 'Ünïcode%'")
case("layers-empty-schema", "SELECT * FROM pgmart.create_layers(raw => '')", "22023", msg="schema name")
case("layers-same-schema", "SELECT * FROM pgmart.create_layers(raw => 'x', staging => 'x')", "22023", msg="three different schemas")
case("layers-public-role", "SELECT * FROM pgmart.create_layers(bi_role => 'public')", "22023")
case("layers-superuser-role", "SELECT * FROM pgmart.create_layers(bi_role => 'postgres')", "55000", msg="superuser")
case("layers-reserved-schema", "SELECT * FROM pgmart.create_layers(raw => 'pg_catalog')", "22023", msg="reserved")
case("layers-pgmart-schema", "SELECT * FROM pgmart.create_layers(mart => 'pgmart')", "22023")
case("layers-same-role", "SELECT * FROM pgmart.create_layers(ingest_role => 'a', transform_role => 'a')", "22023", msg="three different roles")
case("layers-drop-missing", "SELECT pgmart.drop_layers('no_such_layers')", "42704")
case("pii-missing-column", "SELECT pgmart.label_pii('bi.plain', '{no_col}')", "42703")
case("pii-no-columns", "SELECT pgmart.label_pii('bi.plain', '{}')", "22023")
case("pii-null-element", "SELECT pgmart.label_pii('bi.plain', ARRAY[NULL]::text[])", "22004")
case("pii-missing-oid", "SELECT pgmart.label_pii(999999::oid::regclass, '{v}')", "42P01")
case("unpii-missing-column", "SELECT pgmart.unlabel_pii('bi.plain', '{no_col}')", "42703")
case("client-facing-index", "SELECT pgmart.label_client_facing('pg_class_oid_index')", "42809")
case("tenants-view", "SELECT * FROM pgmart.isolate_tenants('bi.v', 'v')", "42809")
case("tenants-no-layers-no-role", "SELECT * FROM pgmart.isolate_tenants('bi.plain', 'v')", "22023", msg="BI role")
case("tenants-bad-setting", "SELECT * FROM pgmart.isolate_tenants('bi.plain', 'v', 'no dots here')", "22023", msg="setting")
case("tenants-missing-role", "SELECT * FROM pgmart.isolate_tenants('bi.plain', 'v', bi_role => 'no_such_role')", "42704")
case("lineage-missing-oid", "SELECT * FROM pgmart.lineage(999999::oid::regclass)", "42P01")
case("impact-missing-oid", "SELECT * FROM pgmart.impact(999999::oid::regclass)", "42P01")
case("mermaid-missing-oid", "SELECT pgmart.lineage_mermaid(999999::oid::regclass)", "42P01")
case("lineage-odd-table-ok", f"SELECT count(*) >= 0 FROM pgmart.lineage('{ODD}')", "ok", check="SELECT true")
case("snapshot-no-key", "SELECT pgmart.create_snapshot('bi.n_snap', 'bi.plain', 'check')", "22023", msg="unique_key")
case("snapshot-no-updated-at", "SELECT pgmart.create_snapshot('bi.n_snap', 'bi.plain', 'timestamp', '{id}')", "22023", msg="updated_at")
case("snapshot-bad-strategy", "SELECT pgmart.create_snapshot('bi.n_snap', 'bi.plain', 'scd2')", "22023", msg="strategy")
case("snapshot-bad-period", "SELECT pgmart.create_snapshot('bi.n_snap', 'bi.plain', 'periodic', period => 'year')", "22023")
case("snapshot-key-missing", "SELECT pgmart.create_snapshot('bi.n_snap', 'bi.plain', 'check', '{nope}')", "42703")
case("snapshot-updated-at-not-time", "SELECT pgmart.create_snapshot('bi.n_snap', 'bi.plain', 'timestamp', '{id}', 'v')", "22023")
case("snapshot-key-null-element", "SELECT pgmart.create_snapshot('bi.n_snap', 'bi.plain', 'check', ARRAY[NULL])", "22004")
case("snapshot-meta-not-object", "SELECT pgmart.create_snapshot('bi.n_snap', 'bi.plain', 'check', '{id}', meta_columns => '[1]')", "22023")
case("snapshot-preset", "SELECT pgmart.create_snapshot('bi.n_snap', 'bi.plain', 'check', '{id}', preset => 'dbt-ish')", "22023")
case("snapshot-retention-negative", "SELECT pgmart.create_snapshot('bi.n_snap', 'bi.plain', 'periodic', retention => '-1 day')", "22023")
case("snapshot-sequence", "SELECT pgmart.create_snapshot('bi.n_snap', 'bi.seq', 'periodic')", "42809")
case("snapshot-odd-names", f"SELECT pgmart.create_snapshot('{ODD_SCHEMA}.\"Snap Shot\"', '{ODD}', 'periodic')", "ok",
     check="SELECT count(*) = 1 FROM pgmart.snapshots WHERE name LIKE '%Snap Shot%'")
case("snapshot-missing", "SELECT pgmart.run_snapshot('bi.no_such_snapshot')", "42704")
case("snapshot-drop-missing", "SELECT pgmart.drop_snapshot('no such snapshot')", "42704")
case("metric_values-several-empty", "SELECT * FROM pgmart.metric_values('{}'::text[], '2024-01-01', '2024-02-01')", "22023")
case("deprecate-replaced-by-missing", "SELECT pgmart.deprecate_metric('existing_metric', 'no_such_metric')", "42704")

# ---- schedules ----------------------------------------------------------------------------------
BAD_SCHEDULES = ["", "   ", "soon", "0 seconds", "-1 hour", "500 milliseconds", "1 day -25 hours", "100000000 days",
                 "2562047788 hours", "178000000 years", "61 * * * *", "* 25 * * *", "* * *", "* * * * * *", "@often",
                 "0 0 30 2 *", "0 0 31 4 *", "1$ * * * *", "'; DROP TABLE bi.plain; --", "1 hour; SELECT 1", "P",
                 "infinity"]
for s in BAD_SCHEDULES:
    sid = re.sub(r"\W+", "_", s) or "empty"
    case(f"schedule-sql-{sid}", f"SELECT pgmart.schedule_sql('bad_sched', 'SELECT 1', {lit(s)})", "22023")
for s in ["", "0 seconds", "100000000 days", "2562047788 hours", "0 0 30 2 *", "@often"]:
    sid = re.sub(r"\W+", "_", s) or "empty"
    case(f"schedule-alter-{sid}", f"SELECT pgmart.alter_job({{job}}, schedule => {lit(s)})", "22023")
    case(f"schedule-refresh-{sid}", f"SELECT pgmart.schedule_refresh('bi.mv_free', {lit(s)})", "22023")
    case(f"schedule-partitions-{sid}", f"SELECT pgmart.create_partition_set('bi.free_ev', 'at', '1 day', schedule => {lit(s)})",
         "22023")
    case(f"schedule-check-{sid}", f"SELECT pgmart.add_check('bi.plain', 'not_null', ARRAY['k'], schedule => {lit(s)})",
         "22023")
# Cron typos are cron, never intervals (PostgreSQL would read '*/15 * * *' as 15 seconds); a bare
# number needs its unit. Every function that takes a schedule says so the same way.
CRON_TYPOS = {"*/15 * * *": "this has 4", "0 4 * *": "this has 4", "0 0 4 * * *": "no seconds field",
              "0,30 * * *": "this has 4", "*/5": "this has 1", "0 4": "this has 2", "5": "needs its unit",
              "1.5": "needs its unit", "1-5": "this has 1", "0 9-17": "this has 2"}
for s, msg in CRON_TYPOS.items():
    sid = re.sub(r"\W+", "_", s)
    for fn, call in [("sql", "pgmart.schedule_sql('typo', 'SELECT 1', {s})"),
                     ("cron", "pgmart.schedule('typo', {s}, 'SELECT 1')"),
                     ("alter", "pgmart.alter_job('existing_job', schedule => {s})"),
                     ("refresh", "pgmart.schedule_refresh('bi.mv_free', {s})"),
                     ("partitions", "pgmart.create_partition_set('bi.free_ev', 'at', '1 day', schedule => {s})"),
                     ("check", "pgmart.add_check('bi.plain', 'not_null', ARRAY['k'], schedule => {s})")]:
        case(f"cron-typo-{fn}-{sid}", "SELECT " + call.format(s=lit(s)), "22023", msg=msg)
for s, name in [("0 0 29 2 *", "leap_day"), ("0 3 $ * *", "last_day"), ("@yearly", "yearly"), ("P1D", "iso"),
                ("1 mon", "month"), ("*/7 * * * 1-5", "weekdays"), ("  @daily  ", "padded"), ("0 0 1 JAN *", "names"),
                ("1 second", "second")]:
    case(f"schedule-valid-{name}", f"SELECT pgmart.schedule_sql('sched_{name}', 'SELECT 1', {lit(s)}) > 0", "ok")

# ---- time zones -------------------------------------------------------------------------------
BAD_ZONES = ["", "   ", "Mars/Olympus", "Europe/Berlin; DROP TABLE x", "repeat", "PST", "pst", "IST", "CEST", "XYZ",
             "+05:30", "<+0330>-0330", "Europe/", "/", "../../../etc/passwd", "right/UTC"]
for z in BAD_ZONES:
    zsql = "repeat('x', 10000)" if z == "repeat" else lit(z)
    zid = re.sub(r"\W+", "_", z) or "empty"
    case(f"tz-sql-{zid}", f"SELECT pgmart.schedule_sql('bad_tz', 'SELECT 1', '1 hour', timezone => {zsql})", "22023",
         msg="America/Los_Angeles" if z in ("PST", "pst") else None)
for z in ["", "Mars/Olympus", "PST"]:
    zid = re.sub(r"\W+", "_", z) or "empty"
    case(f"tz-alter-{zid}", f"SELECT pgmart.alter_job({{job}}, timezone => {lit(z)})", "22023")
    case(f"tz-refresh-{zid}", f"SELECT pgmart.schedule_refresh('bi.mv_free', '1 hour', timezone => {lit(z)})", "22023")
    case(f"tz-partitions-{zid}", f"SELECT pgmart.create_partition_set('bi.free_ev', 'at', '1 day', timezone => {lit(z)})",
         "22023")
    # metric_values computes in SQL: every zone AT TIME ZONE takes (abbreviations too; '' is UTC).
    case(f"tz-metric-{zid}", f"SELECT pgmart.metric_sql('existing_metric', '2024-01-01', '2024-02-01', timezone => "
                             f"{lit(z)})", "22023" if z == "Mars/Olympus" else "ok")
# Accepted, and stored under the IANA name pgmart computes with.
GOOD_ZONES = [("utc", "UTC"), (" Europe/Berlin ", "Europe/Berlin"), ("europe/berlin", "Europe/Berlin"),
              ("AMERICA/NEW_YORK", "America/New_York"), ("Etc/GMT-3", "Etc/GMT-3"), ("UTC+3", "Etc/GMT+3"),
              ("+3", "Etc/GMT-3"), ("EST5EDT", "EST5EDT"), ("Asia/Calcutta", "Asia/Calcutta"), ("zulu", "Zulu"),
              ("GMT", "GMT"), ("UTC0", "UTC"), ("posix/Europe/Paris", "Europe/Paris"), ("Etc/GMT+12", "Etc/GMT+12"),
              ("Pacific/Kiritimati", "Pacific/Kiritimati"), ("FOO-2", "Etc/GMT-2"), ("interval '1 hour'", "Etc/GMT-1"),
              ("-8", "Etc/GMT+8"), ("Universal", "Universal")]
for z, stored in GOOD_ZONES:
    zid = re.sub(r"\W+", "_", z.strip())
    case(f"tz-valid-{zid}", f"SELECT pgmart.schedule_sql('tz_{zid}', 'SELECT 1', '0 9 * * *', timezone => {lit(z)})", "ok",
         check=f"SELECT timezone = {lit(stored)} FROM pgmart.jobs WHERE name = 'tz_{zid}'")
case("tz-valid-alter", "SELECT pgmart.alter_job({job}, timezone => ' utc ')", "ok",
     check="SELECT timezone = 'UTC' FROM pgmart.jobs WHERE job_id = {job}")
case("tz-valid-metric-abbrev", "SELECT pgmart.metric_sql('existing_metric', '2024-01-01', '2024-02-01', timezone => 'PST') <> ''",
     "ok")

# ---- intervals --------------------------------------------------------------------------------
for iv, code in [("0", "22023"), ("-1 day", "22023"), ("30 seconds", "22023"), ("90 seconds", "22023"),
                 ("1 month 1 day", "22023"), ("13 months", "22023"), ("367 days", "22023"), ("100000000 days", "22023"),
                 ("2562047788 hours", "22023"), ("178000000 years", "22023"), ("-178000000 years", "22023"),
                 ("1 day -1 hour", "22023"), ("00:00:00.5", "22023")]:
    case(f"partition_interval-{ident(iv)}",
         f"SELECT pgmart.create_partition_set('bi.free_ev', 'at', {lit(iv)})", code)
case("partition_interval-hours-on-date", "SELECT pgmart.create_partition_set('bi.dated', 'd', '6 hours')", "22023")
for iv in ["0", "-1 day", "100000000 days", "2562047788 hours", "178000000 years", "1001 years", "-1 mon 40 days"]:
    ivid = re.sub(r"\W+", "_", iv)
    case(f"retention-{ivid}", f"SELECT pgmart.create_partition_set('bi.free_ev', 'at', '1 day', retention => {lit(iv)})",
         "22023")
    case(f"freshness_slo-{ivid}", f"SELECT pgmart.schedule_refresh('bi.mv_free', '1 hour', freshness_slo => {lit(iv)})",
         "22023")
for iv in ["-1 second", "8 days", "1 mon", "100000000 days", "2147483647 days", "2562047788 hours", "-178000000 years"]:
    ivid = re.sub(r"\W+", "_", iv)
    case(f"timeout-sql-{ivid}", f"SELECT pgmart.schedule_sql('bad_to', 'SELECT 1', '1 hour', timeout => {lit(iv)})", "22023")
    case(f"timeout-alter-{ivid}", f"SELECT pgmart.alter_job({{job}}, timeout => {lit(iv)})", "22023")
for iv in ["-1 second", "2147483647 days"]:
    ivid = re.sub(r"\W+", "_", iv)
    case(f"timeout-partitions-{ivid}", f"SELECT pgmart.create_partition_set('bi.free_ev', 'at', '1 day', timeout => {lit(iv)})",
         "22023")
    case(f"timeout-refresh-{ivid}", f"SELECT pgmart.schedule_refresh('bi.mv_free', '1 hour', timeout => {lit(iv)})", "22023")
    case(f"timeout-check-{ivid}", f"SELECT pgmart.add_check('bi.plain', 'not_null', ARRAY['k'], timeout => {lit(iv)})",
         "22023")
for b in ["abc", "", "-1 second", "2 days", "100000000 days", "2562047788 hours", "1 hour; SELECT 1"]:
    bid = re.sub(r"\W+", "_", b) or "empty"
    case(f"backoff-sql-{bid}", f"SELECT pgmart.schedule_sql('bad_bo', 'SELECT 1', '1 hour', retry_backoff => {lit(b)})",
         "22023")
    case(f"backoff-alter-{bid}", f"SELECT pgmart.alter_job({{job}}, retry_backoff => {lit(b)})", "22023")
case("backoff-refresh-bad", "SELECT pgmart.schedule_refresh('bi.mv_free', '1 hour', retry_backoff => 'soon')", "22023")
case("timeout-zero-means-none", "SELECT pgmart.schedule_sql('to_zero', 'SELECT 1', '1 hour', timeout => '0')", "ok")

# ---- integers ---------------------------------------------------------------------------------
for v in ["-1", "101", "2147483647", "(-2147483647 - 1)"]:
    vid = re.sub(r"\W+", "_", v)
    case(f"max_retries-sql-{vid}", f"SELECT pgmart.schedule_sql('bad_mr', 'SELECT 1', '1 hour', max_retries => {v})", "22023")
    case(f"max_retries-alter-{vid}", f"SELECT pgmart.alter_job({{job}}, max_retries => {v})", "22023")
    case(f"max_retries-refresh-{vid}", f"SELECT pgmart.schedule_refresh('bi.mv_free', '1 hour', max_retries => {v})", "22023")
for v in ["0", "-1", "1001", "2147483647", "(-2147483647 - 1)"]:
    case(f"premake-{ident(v)}",
         f"SELECT pgmart.create_partition_set('bi.free_ev', 'at', '1 day', premake => {v})", "22023")

# ---- times --------------------------------------------------------------------------------------
for t in ["infinity", "-infinity", "0001-01-01 BC", "4713-01-01 00:00:00+00 BC", "10000-01-01", "294276-12-31"]:
    tid = re.sub(r"\W+", "_", t)
    case(f"start_at-sql-{tid}", f"SELECT pgmart.schedule_sql('bad_start', 'SELECT 1', '1 hour', start_at => {lit(t)})",
         "22023")
    case(f"start_at-partitions-{tid}",
         f"SELECT pgmart.create_partition_set('bi.free_ev', 'at', '1 day', start_at => {lit(t)})", "22023")
case("start_at-partitions-year-1", "SELECT pgmart.create_partition_set('bi.free_ev', 'at', '1 month', "
     "start_at => '0001-01-01 00:00:00+00')", "22023", msg="partitions")
case("start_at-sql-year-1-is-valid", "SELECT pgmart.schedule_sql('start_y1', 'SELECT 1', '1 day', "
     "start_at => '0001-01-01 00:00:00+00')", "ok")
case("start_at-sql-year-9999-is-valid", "SELECT pgmart.schedule_sql('start_y9999', 'SELECT 1', '1 day', "
     "start_at => '9999-01-01 00:00:00+00')", "ok")
for label, a, b in [("inf-from", "'-infinity'", "'2024-01-01'"), ("inf-to", "'2024-01-01'", "'infinity'"),
                    ("reversed", "'2024-02-01'", "'2024-01-01'"), ("equal", "'2024-01-01'", "'2024-01-01'"),
                    ("too-many-buckets", "'0001-01-01'", "'9999-01-01'")]:
    case(f"metric_sql-{label}", f"SELECT pgmart.metric_sql('existing_metric', {a}, {b})", "22023")
    case(f"metric_values-{label}", f"SELECT * FROM pgmart.metric_values('existing_metric', {a}, {b})", "22023")
case("metric_sql-grain", "SELECT pgmart.metric_sql('existing_metric', '2024-01-01', '2024-02-01', grain => 'fortnight')",
     "22023")
case("metric_sql-grain-empty", "SELECT pgmart.metric_sql('existing_metric', '2024-01-01', '2024-02-01', grain => ' ')",
     "ok")
case("metric_sql-dimension-null", "SELECT pgmart.metric_sql('existing_metric', '2024-01-01', '2024-02-01', "
     "dimensions => ARRAY[NULL]::text[])", "22004", msg="dimensions")
case("metric_sql-dimension-unknown", "SELECT pgmart.metric_sql('existing_metric', '2024-01-01', '2024-02-01', "
     "dimensions => ARRAY['nope'])", "22023")
case("metric_sql-dimension-twice", "SELECT pgmart.metric_sql('existing_metric', '2024-01-01', '2024-02-01', "
     "dimensions => ARRAY['status', 'status'])", "22023")
case("metric_values-dimension-valid", "SELECT count(*) >= 0 FROM pgmart.metric_values('existing_metric', '2024-01-01', "
     "'2024-01-05', dimensions => ARRAY['status'], timezone => 'Asia/Kolkata')", "ok")

# ---- schedule_sql and alter_job: names and commands ------------------------------------------------
for label, name, code in [("empty", "''", "22023"), ("blank", "'   '", "22023"), ("long", "repeat('j', 201)", "22023"),
                          ("duplicate", "'existing_job'", "42710")]:
    case(f"jobname-sql-{label}", f"SELECT pgmart.schedule_sql({name}, 'SELECT 1', '1 hour')", code)
    if label != "duplicate":
        case(f"jobname-alter-{label}", f"SELECT pgmart.alter_job({{job}}, name => {name})", code)
case("jobname-alter-duplicate", "SELECT pgmart.alter_job({job}, name => 'other_job')", "42710")
case("jobname-alter-own-name", "SELECT pgmart.alter_job({job}, name => 'existing_job')", "ok")
for label, name in [("hostile", "x'); DROP TABLE bi.plain; --"), ("quotes", 'a "quoted" \'name\''),
                    ("unicode", "jöb ✓ 数据"), ("long-200", "j" * 200), ("semicolon", ";")]:
    case(f"jobname-valid-{label}", f"SELECT pgmart.schedule_sql({lit(name)}, 'SELECT 1', '1 hour')", "ok",
         check=f"SELECT count(*) = 1 FROM pgmart.jobs WHERE name = {lit(name)}")
for label, cmd, code in [("empty", "", "22023"), ("blank", "  \n ", "22023"), ("semicolon", ";", "22023"),
                         ("semicolons", ";;;", "22023"), ("comment", "-- nothing", "22023"),
                         ("block-comment", "/* nothing */", "22023"), ("comment-semicolon", "/* x */ ; -- y", "22023"),
                         ("syntax", "SELEC 1", "42601"), ("unterminated", "SELECT 'x", "42601"),
                         ("half", "SELECT 1; SELEC", "42601"), ("empty-select", "SELECT 1; SELECT", "ok"), ("bad-type", "SELECT 1::no_such_type_x", "ok"),
                         ("missing-table", "SELECT * FROM no_such_table", "ok"), ("two", "SELECT 1; SELECT 2", "ok"),
                         ("vacuum", "VACUUM bi.plain", "ok"), ("call-missing", "CALL no_such_proc()", "ok")]:
    case(f"command-sql-{label}", f"SELECT pgmart.schedule_sql('cmd_{label}', {lit(cmd)}, '1 hour')", code)
for label, cmd, code in [("semicolon", ";", "22023"), ("comment", "-- x", "22023"), ("syntax", "SELEC 1", "42601")]:
    case(f"command-alter-{label}", f"SELECT pgmart.alter_job({{job}}, command => {lit(cmd)})", code)
case("command-alter-not-sql-job", "SELECT pgmart.alter_job({set_job}, command => 'SELECT 1')", "22023")
case("run_as-missing-role", "SELECT pgmart.schedule_sql('ra1', 'SELECT 1', '1 hour', run_as => 'no_such_role')", "42704")
case("run_as-empty", "SELECT pgmart.schedule_sql('ra2', 'SELECT 1', '1 hour', run_as => '')", "42704")
case("run_as-hostile", f"SELECT pgmart.schedule_sql('ra3', 'SELECT 1', '1 hour', run_as => {lit(HOSTILE_ROLE)})",
     "42704")

# ---- partition sets -------------------------------------------------------------------------------
for label, col, code in [("empty", "''", "42703"), ("missing", "'nope'", "42703"), ("case", "'AT'", "42703"),
                         ("not-key", "'v'", "22023"), ("system", "'ctid'", "42703"), ("hostile", lit('at"; DROP'), "42703"),
                         ("long", "repeat('c', 100)", "42703")]:
    case(f"control_column-{label}", f"SELECT pgmart.create_partition_set('bi.free_ev', {col}, '1 day')", code)
for m in ["delete", "", "DROP", "drop; DROP TABLE bi.plain"]:
    case(f"retention_mode-{ident(m)}",
         f"SELECT pgmart.create_partition_set('bi.free_ev', 'at', '1 day', retention_mode => {lit(m)})", "22023")
case("partitions-odd-names", f"SELECT pgmart.create_partition_set({lit(ODD)}, 'at', '1 day', premake => 2)", "ok",
     check=f"SELECT count(*) >= 3 FROM pgmart.partitions({lit(ODD)})")
case("partitions-63-char-name", f"SELECT pgmart.create_partition_set('bi.{LONG63}', 'at', '1 month', premake => 1, "
     "timezone => 'europe/paris')", "ok",
     check=f"SELECT count(*) = 1 FROM pgmart.partition_sets WHERE parent = 'bi.{LONG63}' AND timezone = 'Europe/Paris'")
case("partitions-unicode-name", f"SELECT pgmart.create_partition_set({lit(UNICODE_T)}, 'at', '7 days', "
     "premake => 1, retention => '30 days')", "ok")
case("partitions-existing-odd-partitions", "SELECT pgmart.create_partition_set('bi.oddparts', 'at', '1 day', premake => 2, "
     "retention => '1000 years', timezone => 'Asia/Kathmandu')", "ok",
     check="SELECT count(*) = 8 FROM pgmart.partitions('bi.oddparts')")
case("partitions-list-partitioned", "SELECT pgmart.create_partition_set('bi.listp', 'k', '1 day')", "22023")
case("partitions-two-key-columns", "SELECT pgmart.create_partition_set('bi.multi', 'a', '1 day')", "22023")
case("partitions-text-key", "SELECT pgmart.create_partition_set('bi.txtp', 't', '1 day')", "22023")
case("partitions-fractional-bound-adopted", "SELECT pgmart.create_partition_set('bi.frac', 'at', '1 day', premake => 3)",
     "ok", check="SELECT count(*) = 2 FROM pgmart.partitions('bi.frac') WHERE lower_bound LIKE '%:00.25' "
                 "OR upper_bound LIKE '%:00.5'")
case("partitions-too-many-locks",
     "SELECT pgmart.create_partition_set('bi.free_ev', 'at', '1 day', start_at => now() - interval '400 days')",
     "53200", msg="max_locks_per_transaction")
case("partitions-as-user-not-owner", "SELECT pgmart.create_partition_set('bi.free_ev', 'at', '1 day')", "42501",
     user="bi_user")
case("partitions-as-user-own-table", "SELECT pgmart.create_partition_set('bi.user_ev', 'at', '1 hour', premake => 2, "
     "timezone => 'UTC+3')", "ok", user="bi_user")
case("partitions-maintain-as-user-not-owner", "SELECT * FROM pgmart.run_partition_maintenance('bi.ev')", "42501",
     user="bi_user")
case("partitions-drop-as-user-not-owner", "SELECT pgmart.drop_partition_set('bi.ev')", "42501", user="bi_user")
case("partitions-read-as-user-no-select", "SELECT * FROM pgmart.partitions('bi.ev')", "42501", user="bi_user")

# ---- refresh ----------------------------------------------------------------------------------------
case("refresh-concurrently-without-unique-index", "SELECT pgmart.schedule_refresh('bi.mv_nouniq', '1 hour', "
     "concurrently => true)", "55000")
case("refresh-as-user-not-owner", "SELECT pgmart.schedule_refresh('bi.mv_free', '1 hour')", "42501", user="bi_user")
case("refresh-now-as-user-not-owner", "SELECT * FROM pgmart.refresh_now('bi.mv')", "42501", user="bi_user")
case("unschedule-as-user-not-owner", "SELECT pgmart.unschedule_refresh('bi.mv')", "42501", user="bi_user")
case("refresh-now-odd-name", f"SELECT count(*) = 1 FROM pgmart.refresh_now({lit(ODD_MV)})", "ok")

# ---- checks -----------------------------------------------------------------------------------------
for label, kind in [("empty", "''"), ("unknown", "'uniq'"), ("case", "'NOT_NULL'"), ("hostile", lit("x'; DROP TABLE bi.plain"))]:
    case(f"check-kind-{label}", f"SELECT pgmart.add_check('bi.plain', {kind}, ARRAY['id'])", "22023")
for label, cols, code in [("null-element", "ARRAY[NULL]::text[]", "22004"), ("null-second", "ARRAY['id', NULL]", "22004"),
                          ("empty", "'{}'", "22023"), ("missing", "ARRAY['nope']", "42703"),
                          ("blank", "ARRAY['']", "42703"), ("twice", "ARRAY['id', 'id']", "22023"),
                          ("case", "ARRAY['ID']", "42703"), ("hostile", f"ARRAY[{lit('id); DROP TABLE bi.plain; --')}]", "42703")]:
    case(f"check-columns-{label}", f"SELECT pgmart.add_check('bi.plain', 'not_null', {cols})", code,
         msg="columns" if code == "22004" else None)
for label, params, code in [
        ("json-null", "'null'", "22023"), ("array", "'[]'", "22023"), ("string", "'\"x\"'", "22023"),
        ("number", "'1'", "22023"),
        ("range-min-above-max", "'{\"min\": 5, \"max\": 1}'", "22023"),
        ("range-min-above-max-text", "'{\"min\": \"10\", \"max\": \"9\"}'", "22023"),
        ("range-nothing", "'{}'", "22023"), ("range-bad-type", "'{\"min\": [1]}'", "22023"),
        ("range-not-a-number", "'{\"min\": \"abc\"}'", "22023")]:
    case(f"check-params-{label}", f"SELECT pgmart.add_check('bi.plain', 'range', ARRAY['v'], params => {params})", code)
case("check-range-compared-as-numbers", "SELECT pgmart.add_check('bi.plain', 'range', ARRAY['v'], "
     "params => '{\"min\": \"9\", \"max\": \"10\"}', name => 'range_9_10')", "ok")
case("check-range-min-equals-max", "SELECT pgmart.add_check('bi.plain', 'range', ARRAY['v'], "
     "params => '{\"min\": 5, \"max\": 5}', name => 'range_eq')", "ok")
case("check-range-dates", "SELECT pgmart.add_check('bi.plain', 'range', ARRAY['d'], "
     "params => '{\"min\": \"2020-01-01\", \"max\": \"2019-01-01\"}')", "22023")
for label, params, code in [("empty-values", "'{\"values\": []}'", "22023"), ("null-value", "'{\"values\": [null]}'", "22023"),
                            ("no-values", "'{}'", "22023"), ("values-object", "'{\"values\": {\"a\": 1}}'", "22023")]:
    case(f"check-accepted-{label}", f"SELECT pgmart.add_check('bi.plain', 'accepted_values', ARRAY['status'], "
                                    f"params => {params})", code)
for label, params, code in [("min-above-max", "'{\"min\": 10, \"max\": 1}'", "22023"), ("negative", "'{\"min\": -1}'", "22023"),
                            ("fraction", "'{\"min\": 1.5}'", "22023"), ("huge", "'{\"max\": 1e30}'", "22023")]:
    case(f"check-row_count-{label}", f"SELECT pgmart.add_check('bi.plain', 'row_count', params => {params})", code)
for label, params, code in [("negative", "'{\"warn_after\": \"-1 hour\"}'", "22023"),
                            ("overflow", "'{\"warn_after\": \"100000000 days\"}'", "22023"),
                            ("huge", "'{\"error_after\": \"2562047788 hours\"}'", "22023"),
                            ("garbage", "'{\"error_after\": \"soon\"}'", "22023"),
                            ("number", "'{\"error_after\": 5}'", "22023")]:
    case(f"check-freshness-{label}", f"SELECT pgmart.add_check('bi.plain', 'freshness', ARRAY['at'], params => {params})",
         code)
case("check-freshness-text-column", "SELECT pgmart.add_check('bi.plain', 'freshness', ARRAY['status'], "
     "params => '{\"warn_after\": \"1 day\"}')", "22023")
for label, expr, code in [("empty", "", "22023"), ("semicolon", ";", "22023"), ("stacked", "true; DROP TABLE bi.plain", "22023"),
                          ("comment", "-- x", "22023"), ("sublink", "(SELECT true)", "22023"),
                          ("volatile", "random() < 0.5", "22023"), ("missing-column", "nope > 0", "42703"),
                          ("not-boolean", "v + 1", "22023"), ("aggregate", "count(*) > 0", "22023"),
                          ("syntax", "v >", "22023"), ("other-table", "bi.watched.v > 0", "42P01")]:
    case(f"check-expression-{label}", "SELECT pgmart.add_check('bi.plain', 'expression', "
                                      f"params => jsonb_build_object('expression', {lit(expr)}))", code)
    case(f"check-where-{label}", f"SELECT pgmart.add_check('bi.plain', 'not_null', ARRAY['k'], where_clause => {lit(expr)})",
         code)
for label, sev in [("empty", "''"), ("unknown", "'fatal'"), ("case", "'ERROR'")]:
    case(f"check-severity-{label}", f"SELECT pgmart.add_check('bi.plain', 'not_null', ARRAY['k'], severity => {sev})", "22023")
case("check-name-empty", "SELECT pgmart.add_check('bi.plain', 'not_null', ARRAY['k'], name => '  ')", "22023")
case("check-name-duplicate", "SELECT pgmart.add_check('bi.plain', 'not_null', ARRAY['k'], name => 'existing_check')", "42710")
case("check-relationships-missing-parent", "SELECT pgmart.add_check('bi.plain', 'relationships', ARRAY['k'], "
     "params => '{\"to\": \"no_such_table\", \"field\": \"id\"}')", "42P01")
case("check-relationships-missing-field", "SELECT pgmart.add_check('bi.plain', 'relationships', ARRAY['k'], "
     "params => '{\"to\": \"bi.plain\", \"field\": \"nope\"}')", "42703")
case("check-relationships-hostile-parent", "SELECT pgmart.add_check('bi.plain', 'relationships', ARRAY['k'], "
     "params => jsonb_build_object('to', 'bi.plain; DROP TABLE bi.plain', 'field', 'id'))", "42P01")
case("check-schema-bad-type", "SELECT pgmart.add_check('bi.plain', 'schema', params => '{\"columns\": {\"id\": \"no_such_type\"}}')",
     "22023")
case("check-as-user-no-select", "SELECT pgmart.add_check('bi.plain', 'not_null', ARRAY['id'])", "42501", user="bi_user")
case("check-drop-as-user-not-owner", "SELECT pgmart.drop_check('existing_check')", "42704", user="bi_user")
case("check-odd-names", f"SELECT pgmart.add_check({lit(ODD_T)}, 'not_null', "
     "ARRAY['we;ird', 'Amount'], name => 'odd \"check\"; x', where_clause => '\"Amount\" > 0')", "ok")
case("check-odd-accepted", f"SELECT pgmart.add_check({lit(ODD_T)}, 'accepted_values', "
     "ARRAY['Sta tus'], params => '{\"values\": [\"it''s\", \"a;b\", \"ü\"]}')", "ok")
case("check-run-odd", f"SELECT count(*) >= 2 FROM pgmart.run_checks({lit(ODD_T)})", "ok")
case("check-on-view", "SELECT pgmart.add_check('bi.v', 'not_null', ARRAY['id'], name => 'view_check')", "ok")
case("check-unicode-name", "SELECT pgmart.add_check('bi.plain', 'not_null', ARRAY['d'], name => 'prüfung ✓')", "ok")

# ---- metrics ------------------------------------------------------------------------------------------
for label, name in [("empty", "''"), ("spaces", "'bad name'"), ("upper", "'Revenue'"), ("digit", "'1m'"),
                    ("hostile", lit("m'); DROP TABLE bi.plain; --")), ("long", "repeat('m', 300)"), ("unicode", "'müll'")]:
    case(f"metric-name-{label}", f"SELECT pgmart.register_metric({name}, 'bi.plain', 'sum(v)', 'at', 'team', 'd')", "22023")
for label, expr, code in [("empty", "", "22023"), ("semicolon", ";", "22023"), ("stacked", "sum(v); DROP TABLE bi.plain", "22023"),
                          ("not-aggregate", "v", "22023"), ("missing-column", "sum(nope)", "42703"),
                          ("sublink", "(SELECT 1)", "22023"), ("volatile", "sum(random())", "22023"),
                          ("text", "max(status)", "22023"), ("division", "count(*) / 0", "22023"),
                          ("comment", "min(v) -- a comment is dropped", "ok")]:
    case(f"metric-expression-{label}", f"SELECT pgmart.register_metric('m_expr', 'bi.plain', {lit(expr)}, 'at', 'team', 'd')",
         code)
for label, col, code in [("missing", "'nope'", "42703"), ("text", "'status'", "22023"), ("empty", "''", "42703"),
                         ("number", "'v'", "22023")]:
    case(f"metric-time_column-{label}", f"SELECT pgmart.register_metric('m_tc', 'bi.plain', 'sum(v)', {col}, 'team', 'd')",
         code)
for label, args, code in [("owner-empty", "'', 'd'", "22023"), ("owner-blank", "'  ', 'd'", "22023"),
                          ("description-empty", "'team', ''", "22023")]:
    case(f"metric-{label}", f"SELECT pgmart.register_metric('m_od', 'bi.plain', 'sum(v)', 'at', {args})", code)
for label, dims, code in [("null", "ARRAY[NULL]::text[]", "22004"), ("missing", "ARRAY['nope']", "42703"),
                          ("empty-name", "ARRAY['']", "22023"), ("twice", "ARRAY['status', 'status']", "22023")]:
    case(f"metric-dimensions-{label}", "SELECT pgmart.register_metric('m_dim', 'bi.plain', 'sum(v)', 'at', 'team', 'd', "
                                       f"dimensions => {dims})", code)
for label, flt, code in [("semicolon", ";", "22023"), ("sublink", "(SELECT true)", "22023"), ("missing", "nope", "42703"),
                         ("not-boolean", "v", "22023")]:
    case(f"metric-filter-{label}", "SELECT pgmart.register_metric('m_flt', 'bi.plain', 'sum(v)', 'at', 'team', 'd', "
                                   f"filter => {lit(flt)})", code)
case("metric-grain-unknown", "SELECT pgmart.register_metric('m_gr', 'bi.plain', 'sum(v)', 'at', 'team', 'd', grain => 'x')",
     "22023")
case("metric-grain-hour-on-date", "SELECT pgmart.register_metric('m_gr2', 'bi.plain', 'sum(v)', 'd', 'team', 'd', "
     "grain => 'hour')", "22023")
case("metric-as-user-not-owner", "SELECT pgmart.register_metric('m_user', 'bi.plain', 'sum(v)', 'at', 'team', 'd')", "42501",
     user="bi_user")
case("metric-drop-as-user-not-owner", "SELECT pgmart.drop_metric('existing_metric')", "42704", user="bi_user")
case("metric-odd-names", f"SELECT pgmart.register_metric('odd_amount', {lit(ODD_T)}, "
     "'sum(\"Amount\")', 'at', 'team ✓', 'Amount of \"T\"; with quotes', dimensions => ARRAY['we;ird'], "
     "filter => '\"Amount\" > 0')", "ok")
case("metric-odd-values", "SELECT count(*) >= 0 FROM pgmart.metric_values('odd_amount', '2024-01-01', '2024-03-01', "
     "dimensions => ARRAY['we;ird'], timezone => ' Europe/Berlin ')", "ok")
case("metric-deprecate-by-itself", "SELECT pgmart.deprecate_metric('replacement_metric', 'replacement_metric')", "22023")

# ---- alert rules --------------------------------------------------------------------------------------
for label, name, code in [("empty", "''", "22023"), ("blank", "'  '", "22023"), ("long", "repeat('r', 201)", "22023"),
                          ("duplicate", "'existing_rule'", "42710")]:
    case(f"rule-name-{label}", f"SELECT pgmart.add_alert_rule({name}, 'bi.watched', 'v > 0')", code)
for label, cond, code in [("empty", "", "22023"), ("semicolon", ";", "22023"), ("stacked", "true; DROP TABLE bi.plain", "22023"),
                          ("missing", "nope > 0", "42703"), ("sublink", "(SELECT true)", "22023"),
                          ("not-boolean", "v", "22023"), ("volatile", "random() > 0.5", "22023"),
                          ("aggregate", "count(*) > 0", "22023")]:
    case(f"rule-condition-{label}", f"SELECT pgmart.add_alert_rule('r_cond', 'bi.watched', {lit(cond)})", code)
for label, sev in [("empty", "''"), ("unknown", "'urgent'"), ("case", "'HIGH'")]:
    case(f"rule-severity-{label}", f"SELECT pgmart.add_alert_rule('r_sev', 'bi.watched', 'v > 0', severity => {sev})", "22023")
for label, ch in [("empty", "''"), ("upper", "'Alerts'"), ("space", "'a b'"), ("long", "repeat('c', 64)"),
                  ("hostile", lit("x; NOTIFY y")), ("digit", "'1abc'")]:
    case(f"rule-channel-{label}", f"SELECT pgmart.add_alert_rule('r_ch', 'bi.watched', 'v > 0', channel => {ch})", "22023")
for label, cols, code in [("null", "ARRAY[NULL]::text[]", "22004"), ("missing", "ARRAY['nope']", "42703"),
                          ("blank", "ARRAY['']", "42703")]:
    case(f"rule-payload-{label}", f"SELECT pgmart.add_alert_rule('r_pl', 'bi.watched', 'v > 0', payload_columns => {cols})",
         code)
case("rule-as-user-not-owner", "SELECT pgmart.add_alert_rule('r_user', 'bi.watched', 'v > 0')", "42501", user="bi_user")
case("rule-drop-as-user-not-owner", "SELECT pgmart.drop_alert_rule('existing_rule')", "42704", user="bi_user")
case("ack-as-user-not-owner", "SELECT pgmart.ack_alert({alert})", "42704", user="bi_user")
case("rule-odd-names", f"SELECT pgmart.add_alert_rule('odd rule \"1\"; x', {lit(ODD_T)}, "
     "'\"Amount\" < 0 AND \"we;ird\" IS NOT NULL', channel => 'odd_alerts', payload_columns => ARRAY['we;ird'])", "ok")
case("rule-odd-fires", f"INSERT INTO {ODD_T} VALUES (1, -5, now(), 'x;y', 'a')", "ok",
     check="SELECT count(*) = 1 FROM pgmart.alerts WHERE source_name = 'odd rule \"1\"; x'")
case("ack-twice", "SELECT pgmart.ack_alert({alert}, 'again') = false", "ok")

# ---- jobs as another role -----------------------------------------------------------------------------
for fn in ["run_job", "pause_job", "resume_job", "drop_job", "alter_job"]:
    case(f"job-as-user-{fn}", f"SELECT * FROM pgmart.{fn}({{job}})", "42704", user="bi_user")
# By name: another role's job and a missing one are the same 42704, naming the name only.
for fn in ["run_job", "pause_job", "resume_job", "drop_job", "alter_job", "unschedule"]:
    case(f"jobname-as-user-{fn}", f"SELECT * FROM pgmart.{fn}('existing_job')", "42704", user="bi_user",
         msg='job "existing_job" does not exist')
    case(f"jobname-missing-{fn}", f"SELECT * FROM pgmart.{fn}('no_such_job')", "42704", msg="does not exist")
case("jobname-own-as-user", "SELECT count(*) = 1 FROM pgmart.run_job('user_job') WHERE status = 'succeeded'", "ok",
     user="bi_user")
# pg_cron's habits: schedule() on another role's name, on a job that is not a sql job, and
# schedule_sql() called in pg_cron's argument order.
case("cron-schedule-others-name", "SELECT pgmart.schedule('existing_job', '1 hour', 'SELECT 2')", "42710",
     user="bi_user", msg="already exists")
case("cron-schedule-not-sql", "SELECT pgmart.schedule((SELECT name FROM pgmart.jobs WHERE job_id = {set_job}), "
     "'1 hour', 'SELECT 2')", "42809", msg="not a sql job")
for label, sched in [("cron", "0 4 * * *"), ("nickname", "@daily"), ("interval", "15 minutes")]:
    case(f"schedule_sql-pg_cron-order-{label}", f"SELECT pgmart.schedule_sql('x', {lit(sched)}, 'SELECT 1')", "22023",
         msg="pg_cron's order is pgmart.schedule(job_name, schedule, command)")
case("job-as-user-run_as-superuser", "SELECT pgmart.schedule_sql('u_ra', 'SELECT 1', '1 hour', run_as => 'postgres')",
     "42501", user="bi_user")
case("job-as-user-own", "SELECT pgmart.alter_job({user_job}, schedule => '0 0 29 2 *', timezone => 'America/Sao_Paulo')",
     "ok", user="bi_user")
case("grant-as-user", "SELECT * FROM pgmart.grant_access('bi_other')", "42501", user="bi_user")
case("grant-missing-role", "SELECT * FROM pgmart.grant_access('no_such_role')", "42704")
case("grant-empty-role", "SELECT * FROM pgmart.grant_access('')", "42704")
case("grant-owner", "SELECT * FROM pgmart.grant_access('postgres')", "22023")
case("grant-unknown-access", "SELECT * FROM pgmart.grant_access('bi_other', 'admin')", "22023")
case("grant-hostile-role", f"SELECT * FROM pgmart.grant_access({lit(HOSTILE_ROLE)})", "42704")

# ---- aggregates: NULL is data -------------------------------------------------------------------------
case("agg-duplicate-null", "SELECT pgmart.duplicate_keys(k) = '{\"rows\": 0, \"sample\": [], \"duplicates\": 0}' "
     "FROM (VALUES (NULL::bigint)) v(k)", "ok")
case("agg-orphan-null-parents", "SELECT pgmart.orphan_keys(k, NULL) IS NOT NULL FROM (VALUES (1::bigint)) v(k)", "ok")
case("agg-smallest-empty", "SELECT pgmart.smallest_values(t) FROM (SELECT ''::text WHERE false) v(t)", "ok")
case("agg-smallest-extremes", "SELECT pgmart.smallest_keys(k) FROM (VALUES (9223372036854775807), "
     "(-9223372036854775807 - 1), (NULL)) v(k)", "ok")


# ---------------------------------------------------------------------------------------------
# Running them.

def fill(sql, ids):
    """Put the ids made by the setup ({job}, {alert}, ...) into a case's SQL."""
    for k, v in ids.items():
        sql = sql.replace("{" + k + "}", str(v))
    return sql


def no_leak(err):
    text = " ".join(filter(None, [err.diag.message_primary, err.diag.message_detail, err.diag.message_hint,
                                  err.diag.context]))
    for leak in LEAKS:
        assert leak not in text, f"error leaks {leak!r}: {text}"


def test_there_are_enough_cases():
    assert len(CASES) >= 400, len(CASES)


@pytest.mark.parametrize("c", CASES)
def test_case(world, c):
    conn = world.conn(c["user"])
    sql = fill(c["sql"], world.ids)
    before = world.digest()
    err = None
    try:
        conn.execute(sql).fetchall() if sql.lstrip().upper().startswith("SELECT") else conn.execute(sql)
        got = "ok"
    except psycopg.Error as e:
        err = e
        got = e.sqlstate
    shown = f"{sql}\n-> {got}: {err}" + (f"\nhint: {err.diag.message_hint}" if err else "")
    assert got == c["expect"], shown
    if err is None:
        if c["check"]:
            assert world.admin.execute(fill(c["check"], world.ids)).fetchone()[0], shown
        return
    no_leak(err)
    assert err.diag.message_primary, shown
    if c["msg"]:
        assert c["msg"] in f"{err.diag.message_primary} {err.diag.message_hint}", shown
    assert world.digest() == before, f"the catalog changed although the call failed: {shown}"


def test_every_public_function_is_covered(world):
    """Every public function (schema pgmart, not starting with _) is in REQUIRED, NO_REQUIRED or
    AGGREGATES; its required arguments (those without a default) are exactly the ones listed."""
    rows = world.admin.execute(
        "SELECT p.proname, p.prokind, p.pronargs - p.pronargdefaults, p.proargnames, p.proisstrict "
        "FROM pg_proc p WHERE p.pronamespace = 'pgmart'::regnamespace AND p.proname !~ '^_'").fetchall()
    names = {r[0] for r in rows}
    missing = names - set(REQUIRED) - set(OVERLOADS) - NO_REQUIRED - AGGREGATES
    assert not missing, f"public functions without bad-input cases: {missing}"
    seen = set()
    for name, kind, nreq, argnames, strict in rows:
        if kind == "a":
            continue
        assert not strict or nreq == 0, f"{name} is STRICT: NULL would silently return nothing"
        listed = ([list(REQUIRED[name])] if name in REQUIRED else []) + [list(r) for r in OVERLOADS.get(name, [])]
        req = (argnames or [])[:nreq]
        assert req in (listed or [[]]), (name, argnames, nreq, listed)
        seen.add((name, tuple(req)))
    # ... and every listed signature exists.
    for name, rs in list(OVERLOADS.items()) + [(n, [r]) for n, r in REQUIRED.items()]:
        for r in rs:
            assert (name, tuple(r)) in seen, (name, r)


def test_all_null_for_every_public_function(world):
    """Whatever the function (also one added after this test was written): all its required
    arguments NULL is 22004."""
    rows = world.admin.execute(
        "SELECT p.oid::regprocedure::text, p.proname, p.prokind, p.pronargs - p.pronargdefaults, p.proargtypes::oid[] "
        "FROM pg_proc p WHERE p.pronamespace = 'pgmart'::regnamespace AND p.proname !~ '^_' AND p.prokind IN ('f', 'p')"
    ).fetchall()
    tried = 0
    for sig, name, kind, nreq, types in rows:
        if nreq == 0:
            continue
        args = ", ".join(f"NULL::{world.admin.execute('SELECT format_type(%s, NULL)', (t,)).fetchone()[0]}"
                         for t in types[:nreq])
        stmt = f"{'CALL' if kind == 'p' else 'SELECT * FROM'} pgmart.{name}({args})"
        before = world.digest()
        with pytest.raises(psycopg.Error) as e:
            world.admin.execute(stmt)
        assert e.value.sqlstate == "22004", (stmt, e.value.sqlstate, str(e.value))
        assert "must not be NULL" in e.value.diag.message_primary
        no_leak(e.value)
        assert world.digest() == before
        tried += 1
    assert tried >= len(REQUIRED)


def test_lock_timeout_and_statement_timeout_keep_their_sqlstate(world):
    """create_partition_set while another session reads the table (so maintenance cannot get its
    ACCESS EXCLUSIVE lock): pgmart.lock_timeout running out is 55P03, a statement_timeout that
    comes first is 57014; neither becomes 55000, and nothing is left behind."""
    holder = world.cluster.connect(autocommit=False)
    try:
        holder.execute("LOCK TABLE bi.lockme, bi.slowme IN ACCESS SHARE MODE")
        before = world.digest()
        with world.cluster.connect() as conn:
            conn.execute("SET lock_timeout = '20s'")
            conn.execute("SET pgmart.lock_timeout = '300ms'")
            with pytest.raises(psycopg.Error) as e:
                conn.execute("SELECT pgmart.create_partition_set('bi.lockme', 'at', '1 day')")
            assert e.value.sqlstate == "55P03", str(e.value)
            assert e.value.diag.message_hint, "a lock timeout says what to do"
            no_leak(e.value)
            conn.execute("SET pgmart.lock_timeout = '20s'")
            conn.execute("SET statement_timeout = '300ms'")
            t0 = time.time()
            with pytest.raises(psycopg.Error) as e:
                conn.execute("SELECT pgmart.create_partition_set('bi.slowme', 'at', '1 day')")
            assert e.value.sqlstate == "57014", str(e.value)
            assert time.time() - t0 < 10
            no_leak(e.value)
        holder.rollback()
        assert world.digest() == before
    finally:
        holder.close()


def test_a_failing_create_table_keeps_its_sqlstate(world):
    """Whatever stops CREATE TABLE inside create_partition_set (here an event trigger standing in for
    a lock table that runs out mid-way, 53200) comes out with its own SQLSTATE, with a hint, and
    nothing is left behind."""
    c = world.cluster
    c.sql("""CREATE FUNCTION bi.refuse_create() RETURNS event_trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF current_setting('bi.refuse', true) = 'on' THEN
                 RAISE EXCEPTION 'out of shared memory' USING ERRCODE = '53200',
                       HINT = 'You might need to increase max_locks_per_transaction.';
               END IF;
             END $$""")
    c.sql("CREATE EVENT TRIGGER bi_refuse ON ddl_command_start WHEN TAG IN ('CREATE TABLE') "
          "EXECUTE FUNCTION bi.refuse_create()")
    try:
        c.sql("CREATE TABLE bi.refused (at timestamptz NOT NULL) PARTITION BY RANGE (at)")
        before = world.digest()
        with c.connect() as conn:
            conn.execute("SET bi.refuse = 'on'")
            with pytest.raises(psycopg.Error) as e:
                conn.execute("SELECT pgmart.create_partition_set('bi.refused', 'at', '1 day')")
        assert e.value.sqlstate == "53200", str(e.value)
        assert "max_locks_per_transaction" in e.value.diag.message_hint
        assert "bi.refused" in e.value.diag.message_primary
        no_leak(e.value)
        assert world.digest() == before
    finally:
        c.sql("DROP EVENT TRIGGER bi_refuse")


def test_time_zone_names_leave_the_session_alone(world):
    """Resolving a time zone through PostgreSQL changes nothing in the caller's session."""
    with world.cluster.connect() as conn:
        conn.execute("SET TimeZone = 'Asia/Tokyo'")
        conn.execute("BEGIN")
        conn.execute("SELECT pgmart.schedule_sql('tz_session', 'SELECT 1', '1 hour', timezone => 'america/chicago')")
        assert conn.execute("SHOW TimeZone").fetchone()[0] == "Asia/Tokyo"
        with pytest.raises(psycopg.Error):
            conn.execute("SELECT pgmart.schedule_sql('tz_session2', 'SELECT 1', '1 hour', timezone => 'PST')")
        conn.execute("ROLLBACK")
        assert conn.execute("SHOW TimeZone").fetchone()[0] == "Asia/Tokyo"


def test_renamed_table_and_a_new_one_of_its_name(world):
    """ALTER TABLE ev RENAME TO ev_old; CREATE TABLE ev ...: the new ev gets its own set (the
    generated job name and partition names that are taken get a suffix)."""
    c = world.cluster
    c.sql("CREATE TABLE bi.ren (at timestamptz NOT NULL) PARTITION BY RANGE (at)")
    c.sql("SELECT pgmart.create_partition_set('bi.ren', 'at', '1 day', premake => 2)")
    c.sql("ALTER TABLE bi.ren RENAME TO ren_old")
    c.sql("CREATE TABLE bi.ren (at timestamptz NOT NULL, x int) PARTITION BY RANGE (at)")
    c.sql("SELECT pgmart.create_partition_set('bi.ren', 'at', '1 day', premake => 2)")
    names = [r[0] for r in c.sql("SELECT name FROM pgmart.jobs WHERE name LIKE 'partitions: bi.ren%' ORDER BY job_id")]
    assert names == ["partitions: bi.ren", "partitions: bi.ren (2)"], names
    assert c.one("SELECT count(*) FROM pgmart.partitions('bi.ren')") >= 3
    # The same for a refreshed view and a check suite.
    c.sql("CREATE MATERIALIZED VIEW bi.rmv AS SELECT 1 AS x")
    c.sql("SELECT pgmart.schedule_refresh('bi.rmv', '1 hour')")
    c.sql("SELECT pgmart.add_check('bi.watched', 'not_null', ARRAY['id'], schedule => '1 hour', name => 'ren_c1')")
    c.sql("ALTER MATERIALIZED VIEW bi.rmv RENAME TO rmv_old")
    c.sql("ALTER TABLE bi.watched RENAME TO watched_old")
    c.sql("CREATE MATERIALIZED VIEW bi.rmv AS SELECT 2 AS x")
    c.sql("CREATE TABLE bi.watched (id int, v numeric)")
    c.sql("SELECT pgmart.schedule_refresh('bi.rmv', '1 hour')")
    c.sql("SELECT pgmart.add_check('bi.watched', 'not_null', ARRAY['id'], schedule => '1 hour', name => 'ren_c2')")
    assert c.one("SELECT count(*) FROM pgmart.jobs WHERE kind = 'refresh' AND name LIKE '%rmv%'") == 2
    assert c.one("SELECT count(*) FROM pgmart.jobs WHERE kind = 'check_suite' AND target LIKE '%watched%'") == 2
    c.sql("ALTER TABLE bi.watched_old RENAME TO watched_old2")  # keep bi.watched for nothing else


def test_fractional_second_bounds_are_adopted(world):
    """A partition whose bounds have fractional seconds is adopted as it is: its neighbours meet
    it exactly (no 'would overlap')."""
    rows = world.admin.execute("SELECT lower_bound, upper_bound FROM pgmart.partitions('bi.frac') "
                               "WHERE NOT is_default ORDER BY lower_bound").fetchall()
    bounds = [(lo, hi) for lo, hi in rows]
    assert any(lo.endswith(".5") for lo, _ in bounds), bounds
    for (_, hi), (lo, _) in zip(bounds, bounds[1:]):
        assert hi == lo, f"a gap or an overlap between neighbours: {bounds}"


def test_the_server_log_shows_no_panic_no_backtrace_no_internal_error(world, cluster):
    pid = int(open(os.path.join(cluster.data, "postmaster.pid")).readline())
    env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    assert b"RUST_BACKTRACE=1" in env, "the postmaster was meant to run with RUST_BACKTRACE=1"
    log = cluster.server_log()
    errors = [line for line in log.splitlines() if "ERROR:" in line]
    assert any("ERROR:  22004:" in e for e in errors) and any("ERROR:  42P01:" in e for e in errors), errors[:20]
    for bad in ["panicked", "stack backtrace", "RUST_BACKTRACE", "XX000", "rust_begin_unwind", "/rustc/"]:
        assert bad not in log, f"server log holds {bad!r}: " + "\n".join(
            line for line in log.splitlines() if bad in line)[:3000]


def test_every_public_function_has_a_comment(world):
    """\\df+ pgmart.* tells a newcomer what each function does: every public one has a COMMENT."""
    missing = world.admin.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'pgmart'::regnamespace "
        "AND p.proname !~ '^_' AND obj_description(p.oid, 'pg_proc') IS NULL ORDER BY 1").fetchall()
    assert missing == []
