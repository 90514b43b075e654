"""End-to-end: rollups with the real worker. Random writes of every kind from several sessions at
once (inserts, updates that move rows across buckets and partitions, deletes, COPY, MERGE, a
partition truncated, late rows, direct partition writes, partitions made by pgmart and by hand),
interleaved with the worker's and manual refreshes: the rollup then equals a full recomputation,
count(DISTINCT) and percentiles included, and the real-time view equals a live aggregate. And the
attacks: nobody can log invalidations for another role's rollup or run code through a measure."""

import random
import threading
import time

import psycopg
import pytest

from conftest import wait_for

MEASURES = ('{"revenue": "sum(amount)", "orders": "count(*)", "buyers": "count(DISTINCT customer)", '
            '"p90": "percentile_cont(0.9) WITHIN GROUP (ORDER BY amount)", '
            '"avg_amount": "sum(amount) / nullif(count(*), 0)"}')
FULL = ("SELECT date_bin('1 hour', at, '2000-01-01 00:00+00') AS bucket, region, channel, "
        "count(DISTINCT customer) AS buyers, count(*) AS orders, sum(amount) AS revenue, "
        "percentile_cont(0.9) WITHIN GROUP (ORDER BY amount) AS p90, sum(amount) / nullif(count(*), 0) AS avg_amount "
        "FROM prop_orders GROUP BY 1, 2, 3")
COLS = "bucket, region, channel, buyers, orders, revenue, p90, avg_amount"


def differences(cluster, left, right):
    return cluster.one(f"SELECT count(*) FROM (({left}) EXCEPT ALL ({right})) a") + \
        cluster.one(f"SELECT count(*) FROM (({right}) EXCEPT ALL ({left})) b")


def writer(cluster, seed, stop, errors):
    rnd = random.Random(seed)
    try:
        with cluster.connect() as conn:
            while not stop.is_set():
                op = rnd.choice(["insert", "insert", "late", "update_move", "update", "delete", "copy", "merge", "direct"])
                try:
                    write(conn, rnd, op)
                except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
                    pass  # concurrent moves of one row across partitions: PostgreSQL's own answer
                time.sleep(rnd.random() * 0.02)
    except Exception as e:  # noqa: BLE001 - reported by the test
        errors.append(repr(e))


def write(conn, rnd, op):
    """One random write of kind `op`."""
    day = rnd.randint(0, 5)
    if op == "insert":
        conn.execute("INSERT INTO prop_orders SELECT now() - %s * interval '1 day' + random() * interval '20 hours', "
                     "(ARRAY['eu','us',NULL])[1 + (random() * 2)::int], (ARRAY['web','app'])[1 + (random())::int], "
                     "round((random() * 100)::numeric, 2), (random() * 30)::int FROM generate_series(1, %s)",
                     (day, rnd.randint(1, 50)))
    elif op == "late":
        conn.execute("INSERT INTO prop_orders VALUES (now() - interval '6 days' + random() * interval '1 day', "
                     "'eu', 1.5, 7)")
    elif op == "update_move":
        conn.execute("UPDATE prop_orders SET at = at - interval '1 day 3 hours' "
                     "WHERE ctid IN (SELECT ctid FROM prop_orders WHERE customer = %s LIMIT 3) "
                     "AND at > now() - interval '5 days'", (rnd.randint(0, 30),))
    elif op == "update":
        conn.execute("UPDATE prop_orders SET amount = amount + 1, region = 'us' WHERE customer = %s",
                     (rnd.randint(0, 30),))
    elif op == "delete":
        conn.execute("DELETE FROM prop_orders WHERE customer = %s AND random() < 0.3", (rnd.randint(0, 30),))
    elif op == "copy":
        with conn.cursor().copy("COPY prop_orders (at, region, channel, amount, customer) FROM STDIN") as cp:
            for _ in range(rnd.randint(1, 20)):
                cp.write_row((f"now", "us", "web", rnd.randint(1, 99), rnd.randint(0, 30)))
    elif op == "merge":
        conn.execute("MERGE INTO prop_orders o USING (SELECT now() - interval '2 days' AS at, %s AS c) v "
                     "ON o.customer = v.c AND o.at > now() - interval '3 days' "
                     "WHEN MATCHED AND o.amount > 50 THEN DELETE "
                     "WHEN MATCHED THEN UPDATE SET amount = o.amount * 2 "
                     "WHEN NOT MATCHED THEN INSERT VALUES (v.at, 'eu', 'app', 10, v.c)", (rnd.randint(0, 30),))
    elif op == "direct":
        part = conn.execute("SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                            "WHERE i.inhparent = 'prop_orders'::regclass AND c.relname <> 'prop_orders_default' "
                            "ORDER BY random() LIMIT 1").fetchone()
        if part:
            try:
                conn.execute(f"INSERT INTO {part[0]} SELECT lower_bound + interval '1 hour', 'eu', 'web', 2, 2 "
                             f"FROM (SELECT (regexp_match(pg_get_expr(relpartbound, oid), $$FROM \\('([^']+)'$$))[1]::timestamptz "
                             f"AS lower_bound FROM pg_class WHERE oid = '{part[0]}'::regclass) b")
            except psycopg.errors.UndefinedTable:
                pass  # a partition dropped under us


@pytest.mark.parametrize("seed", [1, 2])
def test_rollup_equals_a_full_recomputation_after_concurrent_writes_and_refreshes(cluster, seed):
    t = f"prop_orders"
    cluster.sql(f"DROP TABLE IF EXISTS {t} CASCADE")
    cluster.sql("SELECT pgmart.drop_rollup(name) FROM pgmart.rollups WHERE name = 'public.prop_hourly'")
    cluster.sql(f"CREATE TABLE {t} (at timestamptz NOT NULL, region text, channel text, amount numeric, customer int) "
                "PARTITION BY RANGE (at)")
    cluster.sql(f"CREATE TABLE {t}_default PARTITION OF {t} DEFAULT")
    cluster.sql(f"INSERT INTO {t} SELECT now() - random() * interval '7 days', 'eu', 'web', g % 40, g % 25 "
                "FROM generate_series(1, 3000) g")
    # pgmart's partition set makes the daily partitions (and rescues the default's rows into them).
    cluster.sql(f"SELECT pgmart.create_partition_set('{t}', 'at', '1 day', premake => 2, schedule => '2 seconds')")
    cluster.sql(f"SELECT pgmart.create_rollup('prop_hourly', '{t}', 'at', '1 hour', '{{region,channel}}', '{MEASURES}', "
                "schedule => '1 second')")
    stop, errors = threading.Event(), []
    writers = [threading.Thread(target=writer, args=(cluster, seed * 10 + i, stop, errors)) for i in range(3)]
    for w in writers:
        w.start()
    try:
        deadline = time.time() + 12
        rnd = random.Random(seed)
        while time.time() < deadline:
            time.sleep(1)
            action = rnd.choice(["refresh", "refresh", "truncate", "partition"])
            if action == "refresh":
                cluster.sql("SELECT pgmart.refresh_rollup('prop_hourly')")
            elif action == "truncate":
                part = cluster.one("SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                   f"WHERE i.inhparent = '{t}'::regclass AND c.relname <> '{t}_default' ORDER BY random() LIMIT 1")
                cluster.sql(f"TRUNCATE {part}")
            else:
                lo = cluster.one("SELECT (date_trunc('day', now() AT TIME ZONE 'UTC') - interval '10 days' "
                                 f"- {rnd.randint(0, 3)} * interval '1 day')::text")
                try:
                    cluster.sql(f"CREATE TABLE {t}_hand_{rnd.randint(0, 10**6)} PARTITION OF {t} "
                                f"FOR VALUES FROM ('{lo}+00') TO (('{lo}+00')::timestamptz + interval '1 day')")
                except psycopg.Error:
                    pass  # overlaps one made before
    finally:
        stop.set()
        for w in writers:
            w.join()
    assert not errors, errors
    # The worker keeps refreshing; once it has caught up, the rollup is exact.
    cluster.sql("SELECT pgmart.refresh_rollup('prop_hourly')")
    wm = "pgmart._rollup_watermark((SELECT job_id FROM pgmart.rollups WHERE name = 'public.prop_hourly'))"
    assert differences(cluster, f"SELECT {COLS} FROM prop_hourly", f"SELECT {COLS} FROM ({FULL}) f WHERE bucket < {wm}") == 0
    # The real-time view is a live aggregate, whatever is pending.
    cluster.sql(f"INSERT INTO {t} VALUES (now(), 'eu', 'web', 5, 5), (now() - interval '3 days', 'us', 'app', 6, 6)")
    assert differences(cluster, f"SELECT {COLS} FROM prop_hourly_rt", FULL) == 0
    # The worker ran it (not only the manual refreshes), and capture reached every partition.
    assert cluster.one("SELECT count(*) FROM pgmart.job_runs r JOIN pgmart.rollups u USING (job_id) "
                       "WHERE u.name = 'public.prop_hourly' AND r.status = 'succeeded'") >= 3
    assert cluster.one(f"SELECT count(*) FROM pg_inherits i WHERE i.inhparent = '{t}'::regclass AND NOT EXISTS "
                       "(SELECT 1 FROM pg_trigger g WHERE g.tgrelid = i.inhrelid AND g.tgname LIKE 'pgmart_rollup_%%_ins')") == 0


def test_the_worker_keeps_a_rollup_fresh_and_freshness_shows_it(cluster):
    cluster.sql("CREATE TABLE fresh_events (at timestamptz NOT NULL DEFAULT now(), kind text)")
    cluster.sql("SELECT pgmart.create_rollup('fresh_minutely', 'fresh_events', 'at', '1 minute', '{kind}', "
                "'{\"n\": \"count(*)\"}', schedule => '1 second', realtime => false)")
    cluster.sql("INSERT INTO fresh_events (at, kind) VALUES (now() - interval '2 minutes', 'click'), "
                "(now() - interval '3 minutes', 'view')")
    wait_for(lambda: cluster.one("SELECT coalesce(sum(n), 0) FROM fresh_minutely") == 2, 20, what="the worker's refresh")
    row = cluster.sql("SELECT kind, stale, last_status FROM pgmart.freshness WHERE object = 'public.fresh_minutely'")
    assert row == [("rollup", False, "succeeded")]
    assert cluster.one("SELECT pending_invalidations FROM pgmart.rollups WHERE name = 'public.fresh_minutely'") == 0


def test_nobody_can_forge_invalidations_or_run_code_through_a_rollup(cluster):
    cluster.sql("CREATE ROLE ro_owner LOGIN; CREATE ROLE ro_mallory LOGIN; CREATE ROLE ro_bi LOGIN")
    for r in ("ro_owner", "ro_mallory"):
        cluster.sql(f"SELECT pgmart.grant_access('{r}', 'user')")
        cluster.sql(f"GRANT CREATE ON SCHEMA public TO {r}")
    cluster.sql("CREATE TABLE ro_sales (at timestamptz NOT NULL, amount numeric)", user="ro_owner")
    cluster.sql("INSERT INTO ro_sales VALUES (now() - interval '1 day', 10)", user="ro_owner")
    cluster.sql("SELECT pgmart.create_rollup('ro_daily', 'ro_sales', 'at', '1 day', measures => '{\"s\": \"sum(amount)\"}')",
                user="ro_owner")
    job = cluster.one("SELECT job_id FROM pgmart.rollups WHERE name = 'public.ro_daily'")
    # Mallory's own table cannot call pgmart's capture (to log changes into the owner's rollup).
    cluster.sql("CREATE TABLE ro_mine (at timestamptz)", user="ro_mallory")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cluster.sql(f"CREATE TRIGGER t AFTER INSERT ON ro_mine REFERENCING NEW TABLE AS pgmart_new FOR EACH STATEMENT "
                    f"EXECUTE FUNCTION pgmart._rollup_capture('{job}')", user="ro_mallory")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cluster.sql("INSERT INTO pgmart.rollup_invalidation VALUES (%s, '-infinity', 'infinity')", (job,), user="ro_mallory")
    # ... nor see, refresh or drop another role's rollup, or learn when its table changed.
    cluster.sql("INSERT INTO ro_sales VALUES (now() - interval '3 days', 1)", user="ro_owner")
    assert cluster.one("SELECT count(*) FROM pgmart.rollups", user="ro_mallory") == 0
    assert cluster.one(f"SELECT pgmart._rollup_watermark({job}) = '-infinity'", user="ro_mallory")
    assert cluster.one(f"SELECT count(*) FROM pgmart._rollup_pending({job})", user="ro_mallory") == 0
    assert cluster.one(f"SELECT count(*) FROM pgmart._rollup_pending({job})", user="ro_owner") == 1
    for q in ["SELECT pgmart.refresh_rollup('ro_daily')", "SELECT pgmart.drop_rollup('ro_daily')"]:
        with pytest.raises(psycopg.errors.UndefinedObject):
            cluster.sql(q, user="ro_mallory")
    # A rollup over mallory's table cannot carry her own function into what a reader runs.
    cluster.sql("CREATE FUNCTION steal(numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT $1'", user="ro_mallory")
    cluster.sql("CREATE TABLE ro_trap (at timestamptz NOT NULL, amount numeric)", user="ro_mallory")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        cluster.sql("SELECT pgmart.create_rollup('ro_trap_daily', 'ro_trap', 'at', '1 day', "
                    "measures => '{\"s\": \"sum(public.steal(amount))\"}')", user="ro_mallory")
    # A BI role reads the real-time view it is granted, not the raw table.
    cluster.sql("GRANT SELECT ON ro_daily_rt TO ro_bi", user="ro_owner")
    assert cluster.one("SELECT sum(s) FROM ro_daily_rt", user="ro_bi") == 11
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cluster.sql("SELECT * FROM ro_sales", user="ro_bi")
    # A writer with only INSERT on the source is captured (through pgmart, not its own rights).
    cluster.sql("GRANT INSERT ON ro_sales TO ro_mallory", user="ro_owner")
    cluster.sql("INSERT INTO ro_sales VALUES (now() - interval '1 day', 5)", user="ro_mallory")
    assert cluster.one("SELECT sum(s) FROM ro_daily_rt", user="ro_bi") == 16
    cluster.sql("SELECT pgmart.refresh_rollup('ro_daily')", user="ro_owner")
    assert cluster.one("SELECT sum(s) FROM ro_daily", user="ro_owner") == 16
