"""End-to-end: snapshots with the real worker. A periodic month snapshot freezes its period (a
re-run, by hand, by run_job or by the worker, changes nothing; the table refuses every write, the
superuser's included). Timestamp and check snapshots run side by side with real `dbt snapshot`
(dbt-postgres, in the test venv) on the same data through several rounds of changes, hard deletes,
returning keys and NULLs: the histories are identical (the dbt preset: the same columns, types and
values; the pgmart preset: the same versions modulo naming). Bad keys fail the run and write
nothing. And the attacks: a role that cannot read a source cannot snapshot it, a source's code
cannot write a frozen period, hostile identifiers, other roles' snapshots."""

import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile

import psycopg
import pytest

from conftest import wait_for

DBT = os.path.join(os.path.dirname(sys.executable), "dbt")
LEAKS = ["stack backtrace", "rust_begin_unwind", "pgrx::", ".rs:", "/rustc/"]


def error_of(cluster, query, params=None, user="postgres", dbname="postgres"):
    with pytest.raises(psycopg.Error) as e:
        cluster.sql(query, params, user=user, dbname=dbname)
    msg = str(e.value)
    assert not any(leak in msg for leak in LEAKS), msg
    return e.value.sqlstate, msg


# ---------------------------------------------------------------------------------------------
# periodic


def test_a_periodic_month_snapshot_freezes_its_period(cluster):
    cluster.sql("CREATE SCHEMA raw; CREATE SCHEMA mart")
    cluster.sql("CREATE TABLE raw.invoices (invoice_id int PRIMARY KEY, customer text, amount numeric(12,2), status text)")
    cluster.sql("INSERT INTO raw.invoices SELECT g, 'c' || g % 7, g * 10.5, 'open' FROM generate_series(1, 500) g")
    cluster.sql("SELECT pgmart.create_snapshot('mart.invoices_monthly', 'raw.invoices', 'periodic', period => 'month', "
                "timezone => 'Europe/Paris', schedule => '2 seconds', unique_key => '{invoice_id}', retention => '2 years')")
    month = cluster.one("SELECT date_trunc('month', now() AT TIME ZONE 'Europe/Paris')::date")
    assert cluster.one("SELECT count(*) FROM mart.invoices_monthly WHERE snapshot_period = %s", (month,)) == 500
    # One partition per month, made ahead by a pgmart partition set, retention there.
    assert cluster.sql("SELECT partition_interval::text, retention::text FROM pgmart.partition_sets "
                       "WHERE parent::regclass = 'mart.invoices_monthly'::regclass") == [("1 mon", "2 years")]
    assert cluster.one("SELECT count(*) FROM pg_inherits WHERE inhparent = 'mart.invoices_monthly'::regclass") >= 4
    # The source changes; the period stays as it was frozen: by hand, through run_job, by the worker.
    cluster.sql("UPDATE raw.invoices SET amount = 0, status = 'void' WHERE invoice_id <= 100")
    cluster.sql("INSERT INTO raw.invoices VALUES (9999, 'late', 1, 'open')")
    out = cluster.one("SELECT pgmart.run_snapshot('mart.invoices_monthly')")
    assert out["inserted"] == 0 and "already frozen" in out["message"]
    rows = cluster.sql("SELECT status, message FROM pgmart.run_job('snapshot mart.invoices_monthly')")
    assert rows[0][0] == "succeeded" and "already frozen" in rows[0][1]
    job = cluster.one("SELECT job_id FROM pgmart.snapshots WHERE name = 'mart.invoices_monthly'")
    wait_for(lambda: cluster.one("SELECT count(*) FROM pgmart.job_runs WHERE job_id = %s AND run_by NOT LIKE 'run_job%%' "
                                 "AND status = 'succeeded'", (job,)) >= 1, what="the worker to run the snapshot")
    assert cluster.one("SELECT count(*) FROM mart.invoices_monthly") == 500
    assert cluster.one("SELECT sum(amount) FROM mart.invoices_monthly") == cluster.one(
        "SELECT sum(g * 10.5) FROM generate_series(1, 500) g")
    # Frozen: every write is refused, the superuser's and through a partition too.
    part = cluster.one("SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "WHERE i.inhparent = 'mart.invoices_monthly'::regclass ORDER BY c.relname LIMIT 1")
    for q in ["UPDATE mart.invoices_monthly SET amount = 1", "DELETE FROM mart.invoices_monthly",
              "TRUNCATE mart.invoices_monthly", "INSERT INTO mart.invoices_monthly SELECT * FROM mart.invoices_monthly LIMIT 1",
              f"UPDATE {part} SET amount = 1", f"DELETE FROM {part}", f"TRUNCATE {part}",
              "MERGE INTO mart.invoices_monthly m USING raw.invoices r ON m.invoice_id = r.invoice_id "
              "WHEN MATCHED THEN UPDATE SET amount = r.amount"]:
        state, msg = error_of(cluster, q)
        assert state == "55000" and "frozen" in msg, (q, msg)
    assert cluster.one("SELECT count(*) FROM mart.invoices_monthly") == 500
    # Visible: pgmart.snapshots, freshness.
    row = cluster.sql("SELECT strategy, last_period, rows, frozen_periods, last_status FROM pgmart.snapshots "
                      "WHERE name = 'mart.invoices_monthly'")[0]
    assert row[:4] == ("periodic", month, 500, 1) and row[4] == "succeeded"
    assert cluster.sql("SELECT stale, last_status FROM pgmart.freshness WHERE kind = 'snapshot' "
                       "AND object = 'mart.invoices_monthly'") == [(False, "succeeded")]
    # A partition made later (by pgmart or by hand) gets the guard at once.
    cluster.sql("CREATE TABLE mart.invoices_far PARTITION OF mart.invoices_monthly FOR VALUES FROM ('2100-01-01') TO ('2100-02-01')")
    state, _ = error_of(cluster, "INSERT INTO mart.invoices_far SELECT invoice_id, customer, amount, status, '2100-01-01', now() "
                                 "FROM raw.invoices LIMIT 1")
    assert state == "55000"


# ---------------------------------------------------------------------------------------------
# timestamp and check, against real dbt


def seed(cluster, db):
    cluster.sql("CREATE SCHEMA raw; CREATE SCHEMA snaps", dbname=db)
    cluster.sql("CREATE TABLE raw.customers (id int NOT NULL, region_code text NOT NULL, name text, status text, tier text, "
                "score numeric(6,2), updated_at timestamp)", dbname=db)
    cluster.sql("INSERT INTO raw.customers SELECT g, (ARRAY['eu','us','ap'])[1 + g % 3], 'n' || g, "
                "(ARRAY['new','active',NULL])[1 + g % 3], (ARRAY['free','pro'])[1 + g % 2], g % 100, "
                "'2024-01-01'::timestamp + g * interval '1 minute' FROM generate_series(1, 300) g", dbname=db)


def mutate(cluster, db, rnd, r):
    """One round of changes: what dbt and pgmart then both snapshot."""
    ids = [x[0] for x in cluster.sql("SELECT id FROM raw.customers ORDER BY id", dbname=db)]
    pick = lambda n: rnd.sample(ids, min(n, len(ids)))  # noqa: E731
    base = dt.datetime(2024, 2, 1) + dt.timedelta(days=r)
    q = lambda sql, p=None: cluster.sql(sql, p, dbname=db)  # noqa: E731
    for i, k in enumerate(pick(15)):  # a change with updated_at moved forward
        q("UPDATE raw.customers SET status = %s, score = score + 1, updated_at = %s WHERE id = %s",
          (rnd.choice(["active", "churned", None]), base + dt.timedelta(seconds=i), k))
    for k in pick(10):  # checked columns change, updated_at does not (timestamp: no version)
        q("UPDATE raw.customers SET tier = CASE tier WHEN 'pro' THEN 'free' ELSE 'pro' END WHERE id = %s", (k,))
    for k in pick(4):  # updated_at moves backwards (timestamp: ignored, as dbt does)
        q("UPDATE raw.customers SET name = name || '*', updated_at = '2023-06-01' WHERE id = %s", (k,))
    for k in pick(5):  # status to/from NULL
        q("UPDATE raw.customers SET status = CASE WHEN status IS NULL THEN 'back' END, updated_at = %s WHERE id = %s",
          (base + dt.timedelta(hours=1), k))
    gone = pick(6)
    q("DELETE FROM raw.customers WHERE id = ANY(%s)", (gone,))
    top = max(ids)
    q("INSERT INTO raw.customers SELECT g, 'eu', 'new' || g, 'new', 'free', 1, %s FROM generate_series(%s::int, %s::int) g",
      (base + dt.timedelta(hours=2), top + 1, top + 5))
    if r > 1:  # a key deleted in an earlier round comes back
        q("INSERT INTO raw.customers SELECT d, 'eu', 'again', 'new', 'pro', 2, %s FROM generate_series(1, 400) d "
          "WHERE d NOT IN (SELECT id FROM raw.customers) LIMIT 2", (base + dt.timedelta(hours=3),))


DBT_SNAPSHOTS = """
{% snapshot cust_ts %}
{{ config(target_schema='snaps', unique_key='id', strategy='timestamp', updated_at='updated_at', hard_deletes='invalidate') }}
select * from raw.customers
{% endsnapshot %}

{% snapshot cust_check %}
{{ config(target_schema='snaps', unique_key=['id', 'region_code'], strategy='check', check_cols=['status', 'tier']) }}
select * from raw.customers
{% endsnapshot %}
"""


def dbt_project(cluster, db):
    d = tempfile.mkdtemp(prefix="pgmart-dbt-")
    os.makedirs(os.path.join(d, "snapshots"))
    with open(os.path.join(d, "dbt_project.yml"), "w") as f:
        f.write("name: pgmart_compare\nversion: '1.0'\nconfig-version: 2\nprofile: pgmart_compare\n"
                "snapshot-paths: ['snapshots']\n")
    with open(os.path.join(d, "profiles.yml"), "w") as f:
        f.write(f"pgmart_compare:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: '{cluster.dir}'\n"
                f"      port: {cluster.port}\n      user: postgres\n      password: ''\n      dbname: {db}\n"
                "      schema: snaps\n      threads: 1\n")
    with open(os.path.join(d, "snapshots", "customers.sql"), "w") as f:
        f.write(DBT_SNAPSHOTS)
    return d


def dbt_snapshot(project):
    env = dict(os.environ, DBT_SEND_ANONYMOUS_USAGE_STATS="false", DO_NOT_TRACK="1")
    r = subprocess.run([DBT, "snapshot", "--project-dir", project, "--profiles-dir", project],
                       capture_output=True, text=True, env=env, cwd=project, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


def now_naive(cluster, db, tz):
    return cluster.one("SELECT clock_timestamp() AT TIME ZONE %s", (tz,), dbname=db)


def normalize(rows, windows, cols):
    """Replace every run-time value (inside one of a tool's run windows) by the run's number."""
    out = []
    for row in rows:
        row = list(row)
        for c in cols:
            v = row[c]
            if isinstance(v, dt.datetime):
                for i, (lo, hi) in enumerate(windows):
                    if lo <= v <= hi:
                        row[c] = f"run {i}"
                        break
        out.append(tuple(row))
    return sorted(out, key=repr)


@pytest.mark.skipif(not os.path.exists(DBT), reason="dbt is not installed in the test venv (scripts/setup.sh installs it)")
def test_timestamp_and_check_histories_equal_dbt_snapshot(cluster):
    db = "dbt_compare"
    cluster.createdb(db)
    tz = cluster.one("SHOW TimeZone", dbname=db)
    seed(cluster, db)
    project = dbt_project(cluster, db)
    rnd = random.Random(17)
    dbt_windows, pg_windows = [], []

    def run_pgmart(first):
        lo = now_naive(cluster, db, tz)
        if first:
            cluster.sql("SELECT pgmart.create_snapshot('snaps.pg_ts', 'raw.customers', 'timestamp', unique_key => '{id}', "
                        "updated_at => 'updated_at', preset => 'dbt', timezone => %s, schedule => '1 day')", (tz,), dbname=db)
            cluster.sql("SELECT pgmart.create_snapshot('snaps.pg_check', 'raw.customers', 'check', "
                        "unique_key => '{id,region_code}', check_columns => '{status,tier}', preset => 'dbt', "
                        "invalidate_hard_deletes => false, timezone => %s, schedule => '1 day')", (tz,), dbname=db)
            cluster.sql("SELECT pgmart.create_snapshot('snaps.pm_ts', 'raw.customers', 'timestamp', unique_key => '{id}', "
                        "updated_at => 'updated_at', timezone => %s, schedule => '1 day')", (tz,), dbname=db)
        else:
            for s in ("snaps.pg_ts", "snaps.pg_check", "snaps.pm_ts"):
                cluster.sql("SELECT pgmart.run_snapshot(%s)", (s,), dbname=db)
        pg_windows.append((lo, now_naive(cluster, db, tz)))

    def run_dbt():
        lo = now_naive(cluster, db, tz)
        dbt_snapshot(project)
        dbt_windows.append((lo, now_naive(cluster, db, tz)))

    for r in range(5):
        if r:
            mutate(cluster, db, rnd, r)
        run_dbt()
        run_pgmart(first=(r == 0))

    # The dbt preset makes dbt's table: the same columns, in the same order, of the same types.
    def shape(t):
        return cluster.sql("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'snaps' "
                           "AND table_name = %s ORDER BY ordinal_position", (t,), dbname=db)
    assert shape("pg_ts") == shape("cust_ts")
    assert shape("pg_check") == shape("cust_check")

    cols = "id, region_code, name, status, tier, score, updated_at"
    # timestamp: every value equal, dbt_scd_id included; only the times of hard deletes are each
    # tool's own run time (compared as "run N").
    q = f"SELECT {cols}, dbt_scd_id, dbt_updated_at, dbt_valid_from, dbt_valid_to FROM snaps.%s"
    dbt_ts = normalize(cluster.sql(q % "cust_ts", dbname=db), dbt_windows, [10])
    pg_ts = normalize(cluster.sql(q % "pg_ts", dbname=db), pg_windows, [10])
    assert len(dbt_ts) > 300 and any(r[10] not in (None,) and str(r[10]).startswith("run") for r in dbt_ts)
    assert pg_ts == dbt_ts
    # check: versions start at the run's time (each tool's own); dbt_scd_id is dbt's hash of the
    # key and that time on both sides.
    for t in ("cust_check", "pg_check"):
        assert cluster.one(f"SELECT bool_and(dbt_scd_id = md5(coalesce(id::varchar, '') || '|' || coalesce(region_code::varchar, '') "
                           f"|| '|' || coalesce(dbt_updated_at::varchar, ''))) FROM snaps.{t}", dbname=db)
    q = f"SELECT {cols}, dbt_updated_at, dbt_valid_from, dbt_valid_to FROM snaps.%s"
    dbt_ck = normalize(cluster.sql(q % "cust_check", dbname=db), dbt_windows, [7, 8, 9])
    pg_ck = normalize(cluster.sql(q % "pg_check", dbname=db), pg_windows, [7, 8, 9])
    assert len(dbt_ck) > 300
    assert pg_ck == dbt_ck
    # The pgmart preset: the same versions, as timestamptz (naive times read in the zone) with is_current.
    q_pm = (f"SELECT {cols}, valid_from AT TIME ZONE %s, valid_to AT TIME ZONE %s, is_current FROM snaps.pm_ts")
    pm = normalize(cluster.sql(q_pm, (tz, tz), dbname=db), pg_windows, [8])
    dbt_as_pm = normalize(cluster.sql(f"SELECT {cols}, dbt_valid_from, dbt_valid_to, dbt_valid_to IS NULL FROM snaps.cust_ts",
                                      dbname=db), dbt_windows, [8])
    assert pm == dbt_as_pm
    # One current version per key, and pgmart.snapshots' counts agree with the tables.
    assert cluster.one("SELECT count(*) FROM (SELECT id FROM snaps.pm_ts WHERE is_current GROUP BY id HAVING count(*) > 1) d",
                       dbname=db) == 0
    for t in ("pg_ts", "pg_check", "pm_ts"):
        rows, current = cluster.sql("SELECT rows, current_rows FROM pgmart.snapshots WHERE name = %s", (f"snaps.{t}",),
                                    dbname=db)[0]
        vt = "valid_to" if t == "pm_ts" else "dbt_valid_to"
        assert (rows, current) == tuple(cluster.sql(f"SELECT count(*), count(*) FILTER (WHERE {vt} IS NULL) FROM snaps.{t}",
                                                    dbname=db)[0]), t


def test_a_key_that_is_not_unique_fails_the_run_naming_the_keys_and_writes_nothing(cluster):
    cluster.sql("CREATE TABLE raw.accounts (id int, name text, updated_at timestamptz)")
    cluster.sql("INSERT INTO raw.accounts SELECT g, 'a' || g, '2024-01-01' FROM generate_series(1, 50) g")
    cluster.sql("SELECT pgmart.create_snapshot('mart.accounts_hist', 'raw.accounts', 'timestamp', unique_key => '{id}', "
                "updated_at => 'updated_at')")
    cluster.sql("UPDATE raw.accounts SET name = 'x', updated_at = '2024-02-01' WHERE id <= 10")
    cluster.sql("INSERT INTO raw.accounts VALUES (3, 'dup', '2024-03-01'), (40, 'dup', '2024-03-01'), (40, 'dup2', '2024-03-02')")
    state, msg = error_of(cluster, "SELECT pgmart.run_snapshot('mart.accounts_hist')")
    assert state == "23505" and "(3), (40)" in msg and "Nothing was written" in msg, msg
    assert cluster.one("SELECT count(*) FROM mart.accounts_hist") == 50
    # Through the job engine: a failed run, recorded with the keys.
    rows = cluster.sql("SELECT status, message FROM pgmart.run_job('snapshot mart.accounts_hist')")
    assert rows[0][0] in ("failed", "retrying") and "(3), (40)" in rows[0][1]
    cluster.sql("DELETE FROM raw.accounts WHERE name LIKE 'dup%'")
    out = cluster.one("SELECT pgmart.run_snapshot('mart.accounts_hist')")
    assert (out["inserted"], out["closed"]) == (10, 10)
    # Bad input at creation, each a clear error that leaves nothing behind.
    for args, want in [("'mart.b1', 'raw.accounts', 'timestamp', updated_at => 'updated_at'", "22023"),
                       ("'mart.b1', 'raw.accounts', 'check'", "22023"),
                       ("'mart.b1', 'raw.accounts', 'timestamp', unique_key => '{id}'", "22023"),
                       ("'mart.b1', 'raw.accounts', 'timestamp', unique_key => '{nope}', updated_at => 'updated_at'", "42703"),
                       ("'mart.b1', 'raw.nope', 'periodic'", "42P01"),
                       ("'mart.b1', 'raw.accounts', 'periodic', period => 'fortnight'", "22023"),
                       ("'mart.b1', 'raw.accounts', 'check', unique_key => '{id}', preset => 'dbt', meta_columns => '{\"is_current\": \"x\"}'", "22023")]:
        state, msg = error_of(cluster, f"SELECT pgmart.create_snapshot({args})")
        assert state == want, (args, msg)
    assert cluster.one("SELECT to_regclass('mart.b1') IS NULL")


# ---------------------------------------------------------------------------------------------
# attacks


def test_attacks_gain_nothing(cluster):
    cluster.sql("CREATE ROLE sn_alice LOGIN; CREATE ROLE sn_mallory LOGIN")
    for r in ("sn_alice", "sn_mallory"):
        cluster.sql(f"SELECT * FROM pgmart.grant_access('{r}', 'user')")
        cluster.sql(f"CREATE SCHEMA {r} AUTHORIZATION {r}")
    cluster.sql("CREATE TABLE raw.secret (id int, ssn text)")
    cluster.sql("INSERT INTO raw.secret VALUES (1, '123-45-6789')")
    cluster.sql("GRANT USAGE ON SCHEMA raw TO sn_mallory, sn_alice")
    # A role that cannot read a source cannot snapshot it, directly or through a view of its own.
    state, _ = error_of(cluster, "SELECT pgmart.create_snapshot('sn_mallory.s1', 'raw.secret', 'periodic')", user="sn_mallory")
    assert state == "42501"
    cluster.sql("CREATE VIEW sn_mallory.v AS SELECT * FROM raw.secret", user="sn_mallory")
    state, _ = error_of(cluster, "SELECT pgmart.create_snapshot('sn_mallory.s2', 'sn_mallory.v', 'periodic')", user="sn_mallory")
    assert state == "42501"
    assert cluster.one("SELECT count(*) FROM pg_class WHERE relname IN ('s1', 's2')") == 0
    # A snapshot whose owner loses SELECT on the source stops reading it.
    cluster.sql("GRANT SELECT ON raw.secret TO sn_alice")
    cluster.sql("SELECT pgmart.create_snapshot('sn_alice.h', 'raw.secret', 'check', unique_key => '{id}')", user="sn_alice")
    cluster.sql("REVOKE SELECT ON raw.secret FROM sn_alice")
    cluster.sql("UPDATE raw.secret SET ssn = 'changed'")
    state, _ = error_of(cluster, "SELECT pgmart.run_snapshot('sn_alice.h')")  # even called by a superuser
    assert state == "42501"
    assert cluster.sql("SELECT status FROM pgmart.run_job('snapshot sn_alice.h')")[0][0] in ("failed", "retrying")
    assert cluster.one("SELECT count(*) FROM sn_alice.h", user="sn_alice") == 1
    # Another role's snapshot: not there for mallory.
    for q in ("SELECT pgmart.run_snapshot('sn_alice.h')", "SELECT pgmart.drop_snapshot('sn_alice.h')"):
        state, msg = error_of(cluster, q, user="sn_mallory")
        assert state == "42704", msg
    assert cluster.one("SELECT count(*) FROM pgmart.snapshots", user="sn_mallory") == 0
    # Nobody may attach pgmart's guard to a table of their own.
    cluster.sql("CREATE TABLE sn_mallory.t (x int)", user="sn_mallory")
    state, _ = error_of(cluster, "CREATE TRIGGER g BEFORE INSERT ON sn_mallory.t FOR EACH STATEMENT "
                                 "EXECUTE FUNCTION pgmart._snapshot_guard('1')", user="sn_mallory")
    assert state == "42501"
    # A source's own code cannot slip rows into a frozen snapshot while pgmart's run reads it.
    cluster.sql("CREATE TABLE sn_alice.src (id int)", user="sn_alice")
    cluster.sql("INSERT INTO sn_alice.src VALUES (1), (2)", user="sn_alice")
    cluster.sql("""CREATE FUNCTION sn_alice.sneak() RETURNS int LANGUAGE plpgsql AS $$
                   BEGIN
                     INSERT INTO sn_alice.frozen VALUES (666, '2000-01-01', now());
                     RETURN 1;
                   END $$""", user="sn_alice")
    cluster.sql("CREATE VIEW sn_alice.src_v AS SELECT id FROM sn_alice.src WHERE sn_alice.sneak() = 1", user="sn_alice")
    state, msg = error_of(cluster, "SELECT pgmart.create_snapshot('sn_alice.frozen', 'sn_alice.src_v', 'periodic')",
                          user="sn_alice")
    assert state == "55000" and "frozen" in msg, msg
    assert cluster.one("SELECT to_regclass('sn_alice.frozen') IS NULL")
    # Hostile identifiers: a schema, table and columns made of quotes, semicolons and spaces; a
    # source column named like a column the snapshot adds.
    cluster.sql('CREATE SCHEMA "we""ird; DROP TABLE raw.secret; --" AUTHORIZATION sn_alice')
    cluster.sql('CREATE TABLE sn_alice."src ""x""" ("id; --" int, "valid_from" text, "Upd At" timestamptz, "pgmart_from" int)',
                user="sn_alice")
    cluster.sql('INSERT INTO sn_alice."src ""x""" VALUES (1, \'a\', \'2024-01-01\', 7), (2, \'b\', \'2024-01-02\', 8)',
                user="sn_alice")
    state, _ = error_of(cluster, "SELECT pgmart.create_snapshot(%s, 'sn_alice.\"src \"\"x\"\"\"', 'timestamp', "
                                 "unique_key => ARRAY['id; --'], updated_at => 'Upd At')",
                        ('"we""ird; DROP TABLE raw.secret; --"."t; --"',), user="sn_alice")
    assert state == "42701"
    cluster.sql("SELECT pgmart.create_snapshot(%s, 'sn_alice.\"src \"\"x\"\"\"', 'timestamp', unique_key => ARRAY['id; --'], "
                "updated_at => 'Upd At', meta_columns => %s::jsonb)",
                ('"we""ird; DROP TABLE raw.secret; --"."t; --"', json.dumps({"valid_from": "from; --", "is_current": 'now"'})),
                user="sn_alice")
    cluster.sql('UPDATE sn_alice."src ""x""" SET "valid_from" = \'c\', "Upd At" = \'2024-02-01\' WHERE "id; --" = 1', user="sn_alice")
    out = cluster.one("SELECT pgmart.run_snapshot(%s)", ('"we""ird; DROP TABLE raw.secret; --"."t; --"',), user="sn_alice")
    assert (out["inserted"], out["closed"]) == (1, 1)
    assert cluster.one('SELECT count(*) FROM "we""ird; DROP TABLE raw.secret; --"."t; --" WHERE "now""" ', user="sn_alice") == 2
    assert cluster.one("SELECT to_regclass('raw.secret') IS NOT NULL")
    # A hostile search_path changes nothing pgmart runs.
    cluster.sql("CREATE FUNCTION sn_alice.md5(text) RETURNS text LANGUAGE sql AS $$ SELECT 'owned' $$", user="sn_alice")
    with cluster.connect(user="sn_alice") as conn:
        conn.execute("SET search_path = sn_alice, public")
        conn.execute('UPDATE sn_alice."src ""x""" SET "valid_from" = \'d\', "Upd At" = \'2024-03-01\' WHERE "id; --" = 2')
        conn.execute("SELECT pgmart.run_snapshot(%s)", ('"we""ird; DROP TABLE raw.secret; --"."t; --"',))


def test_a_failing_snapshot_is_stale_in_freshness_and_alerts(cluster):
    cluster.sql("CREATE TABLE raw.plans (id int, tier text)")
    cluster.sql("INSERT INTO raw.plans VALUES (1, 'a'), (2, 'b')")
    cluster.sql("SELECT pgmart.create_snapshot('mart.plans_hist', 'raw.plans', 'check', unique_key => '{id}', schedule => '1 second')")
    cluster.sql("INSERT INTO raw.plans VALUES (2, 'dup')")
    job = cluster.one("SELECT job_id FROM pgmart.snapshots WHERE name = 'mart.plans_hist'")
    wait_for(lambda: cluster.one("SELECT stale FROM pgmart.freshness WHERE object = 'mart.plans_hist'"), what="stale")
    rows = cluster.sql("SELECT status, message FROM pgmart.run_job(%s)", (job,))
    assert rows[0][0] in ("failed", "retrying") and "(2)" in rows[0][1]
    alert = cluster.sql("SELECT payload->>'problem', resolved_at FROM pgmart.alerts WHERE source_kind = 'snapshot' "
                        "AND job_id = %s AND payload->>'problem' = 'stale'", (job,))
    assert alert and alert[0][1] is None, alert
    assert cluster.one("SELECT last_status FROM pgmart.snapshots WHERE job_id = %s", (job,)) in ("failed", "retrying")
    # Fixed: the next run succeeds and resolves the alert.
    cluster.sql("DELETE FROM raw.plans WHERE tier = 'dup'")
    assert cluster.sql("SELECT status FROM pgmart.run_job(%s)", (job,))[0][0] == "succeeded"
    assert cluster.one("SELECT resolved_at IS NOT NULL FROM pgmart.alerts WHERE job_id = %s AND payload->>'problem' = 'stale'",
                       (job,))
    assert not cluster.one("SELECT stale FROM pgmart.freshness WHERE object = 'mart.plans_hist'")
    cluster.sql("SELECT pgmart.drop_snapshot('mart.plans_hist')")
    assert cluster.one("SELECT count(*) FROM pgmart.freshness WHERE object = 'mart.plans_hist'") == 0
