"""End-to-end: the worker keeps a partition set rolling with no client action; rows in the default
partition are rescued under concurrent inserts with nothing lost; a lock held on one parent does not
stop maintenance of another; sets survive pg_dump; the procedure commits set by set."""

import threading
import time

import psycopg
import pytest

from conftest import wait_for


CLUSTER_SETTINGS = {"pgmart.naptime": "'1s'", "pgmart.lock_timeout": "'1s'"}


def partitions(cluster, parent):
    return [r[0] for r in cluster.sql("SELECT partition_name FROM pgmart.partitions(%s) WHERE NOT is_default", (parent,))]


def test_worker_keeps_a_set_rolling_unaided(cluster):
    cluster.sql("CREATE TABLE roll (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts)")
    cluster.sql("SELECT pgmart.create_partition_set('roll', 'ts', '1 minute', premake => 2, "
                "retention => '1 minute', schedule => '1 second')")
    first = partitions(cluster, "roll")
    assert len(first) == 3, first
    # No client action from here on: the worker must make the next minute's partition and retire
    # the ones past retention.
    wait_for(lambda: [p for p in partitions(cluster, "roll") if p not in first],
             timeout=90, interval=1, what="a new partition made by the worker")
    wait_for(lambda: first[0] not in partitions(cluster, "roll"),
             timeout=200, interval=1, what="the oldest partition retired by the worker")
    # Always premake partitions ahead of now.
    ahead = cluster.one("SELECT partitions_ahead FROM pgmart.partition_sets WHERE parent = 'public.roll'")
    assert ahead >= 1
    assert cluster.one("SELECT count(*) FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) "
                       "WHERE j.target = 'public.roll' AND r.status = 'succeeded' AND r.run_by LIKE 'runner %% (postgres)'") > 0
    cluster.sql("SELECT pgmart.drop_partition_set('roll')")


def test_default_partition_rescue_with_concurrent_inserts_loses_nothing(cluster):
    cluster.sql("CREATE TABLE resc (id bigserial, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)")
    cluster.sql("SELECT pgmart.create_partition_set('resc', 'ts', '1 day', premake => 3, schedule => '1 day')")
    tomorrow = cluster.one("SELECT partition_name FROM pgmart.partitions('resc') WHERE NOT is_default "
                           "ORDER BY lower_bound::timestamptz OFFSET 1 LIMIT 1")
    cluster.sql(f"DROP TABLE {tomorrow}")
    # Rows for tomorrow now pile up in the default partition.
    cluster.sql("INSERT INTO resc (ts) SELECT date_trunc('day', now(), 'UTC') + interval '1 day' + g * interval '1 second' "
                "FROM generate_series(1, 5000) g")
    assert cluster.one("SELECT count(*) FROM resc_default") == 5000
    stop = threading.Event()
    inserted = [0]

    def writer():
        with cluster.connect() as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO resc (ts) SELECT date_trunc('day', now(), 'UTC') + interval '1 day' "
                             "+ random() * interval '2 days' FROM generate_series(1, 20)")
                inserted[0] += 20

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    rows = cluster.sql("SELECT status, rescued_rows FROM pgmart.run_partition_maintenance('resc')")
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert rows[0][0] == "succeeded", rows
    assert rows[0][1] >= 5000
    assert cluster.one("SELECT count(*) FROM resc") == 5000 + inserted[0]
    assert cluster.one("SELECT count(DISTINCT id) FROM resc") == 5000 + inserted[0]
    assert tomorrow in partitions(cluster, "resc")
    # Nothing for tomorrow is left in (or hidden by) the default partition.
    assert cluster.one(f"SELECT count(*) FROM resc_default WHERE ts >= (SELECT lower_bound::timestamptz FROM "
                       f"pgmart.partitions('resc') WHERE partition_name = '{tomorrow}') AND ts < (SELECT upper_bound::timestamptz "
                       f"FROM pgmart.partitions('resc') WHERE partition_name = '{tomorrow}')") == 0
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE dedup_key = 'partition_default_rows:public.resc'") == 1


def test_a_locked_parent_does_not_stop_another(cluster):
    for t in ("lock_a", "lock_b"):
        cluster.sql(f"CREATE TABLE {t} (ts timestamptz NOT NULL) PARTITION BY RANGE (ts)")
        cluster.sql(f"SELECT pgmart.create_partition_set('{t}', 'ts', '1 day', premake => 3, schedule => '1 second')")
    newest = {}
    for t in ("lock_a", "lock_b"):
        newest[t] = partitions(cluster, t)[-1]
        cluster.sql(f"DROP TABLE {newest[t]}")
    holder = cluster.connect(autocommit=False)
    holder.execute("LOCK TABLE lock_a IN ACCESS EXCLUSIVE MODE")
    try:
        # The worker re-creates b's partition while a is locked.
        wait_for(lambda: newest["lock_b"] in partitions(cluster, "lock_b"), timeout=30, interval=0.5,
                 what="lock_b maintained while lock_a is locked")
        # A manual pass over every set does the same: a is skipped (lock_timeout), not waited for.
        start = time.time()
        rows = dict(cluster.sql("SELECT parent, status FROM pgmart.run_partition_maintenance() "
                                "WHERE parent IN ('public.lock_a', 'public.lock_b')"))
        assert time.time() - start < 10
        assert rows["public.lock_a"] == "skipped", rows
        assert rows["public.lock_b"] == "succeeded", rows
        # (pgmart.partitions() would wait for the lock to read sizes; the catalog does not.)
        assert cluster.one("SELECT count(*) FROM pg_class WHERE relname = %s", (newest["lock_a"],)) == 0
    finally:
        holder.rollback()
        holder.close()
    # Once the lock is gone, a catches up on its own.
    wait_for(lambda: newest["lock_a"] in partitions(cluster, "lock_a"), timeout=120, interval=0.5,
             what="lock_a maintained after the lock is released")


def test_sets_survive_pg_dump_and_restore(cluster):
    cluster.createdb("part_src")
    d = dict(dbname="part_src")
    cluster.sql("CREATE TABLE ev (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts)", **d)
    cluster.sql("SELECT pgmart.create_partition_set('ev', 'ts', '1 day', premake => 3, retention => '30 days')", **d)
    cluster.sql("INSERT INTO ev VALUES (now(), 1), (now() - interval '1 year', 2)", **d)
    listing = "SELECT partition_name, lower_bound, upper_bound FROM pgmart.partitions('ev')"
    before = cluster.sql(listing, **d)
    cluster.dump_restore("part_src", "part_dst")
    t = dict(dbname="part_dst")
    assert cluster.sql(listing, **t) == before
    assert cluster.sql("SELECT parent, premake, retention::text, retention_mode FROM pgmart.partition_sets", **t) == [
        ("public.ev", 3, "30 days", "drop")]
    assert cluster.one("SELECT count(*) FROM ev", **t) == 2
    # The restored set is managed as before: its job exists and maintenance runs.
    assert cluster.one("SELECT count(*) FROM pgmart.jobs WHERE kind = 'partition_maintenance' AND target = 'public.ev'", **t) == 1
    assert cluster.sql("SELECT parent, status FROM pgmart.run_partition_maintenance('ev')", **t) == [("public.ev", "succeeded")]


def test_the_procedure_commits_set_by_set(cluster):
    cluster.sql("CREATE TABLE proc_a (ts timestamptz NOT NULL) PARTITION BY RANGE (ts)")
    cluster.sql("CREATE TABLE proc_b (ts timestamptz NOT NULL) PARTITION BY RANGE (ts)")
    newest = {}
    for t in ("proc_a", "proc_b"):
        job = cluster.one(f"SELECT pgmart.create_partition_set('{t}', 'ts', '1 day', premake => 2)")
        cluster.sql("SELECT pgmart.pause_job(%s)", (job,))  # only the procedure maintains them here
        newest[t] = partitions(cluster, t)[-1]
        cluster.sql(f"DROP TABLE {newest[t]}")
    # proc_b's lock is held elsewhere: proc_a is maintained and committed; proc_b is skipped.
    with cluster.connect(autocommit=False) as holder:
        holder.execute("LOCK TABLE proc_b IN ACCESS SHARE MODE")
        cluster.sql("CALL pgmart.run_partition_maintenance_proc()")
        holder.rollback()
    assert newest["proc_a"] in partitions(cluster, "proc_a")
    assert newest["proc_b"] not in partitions(cluster, "proc_b")
    status = dict(cluster.sql("SELECT parent, last_status FROM pgmart.partition_sets WHERE parent LIKE 'public.proc\\_%'"))
    assert status == {"public.proc_a": "succeeded", "public.proc_b": "skipped"}, status
    # Inside a transaction block it refuses to run instead of holding every lock.
    with cluster.connect(autocommit=False) as tx:
        with pytest.raises(psycopg.errors.InvalidTransactionTermination):
            tx.execute("CALL pgmart.run_partition_maintenance_proc()")
