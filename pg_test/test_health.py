"""End-to-end: table health and the health job. A deliberately bloated table (a mass update
without vacuum), an unused and a duplicate index, a never-analyzed partitioned table analyzed by
the job, REINDEX INDEX CONCURRENTLY and VACUUM run by the job (in a runner, as the table's owner)
on a table its owner registered, autovacuum tuning applied and undone; a role without rights can
make the job maintain nobody's table; hostile names are quoted; pgmart.query_health with
pg_stat_statements, a regression of a statement's mean time."""

import psycopg
import pytest

from conftest import wait_for

CLUSTER_SETTINGS = {
    "shared_preload_libraries": "'pgmart,pg_stat_statements'",
    # Nothing cleans up behind the test's back: the job does it, or nobody.
    "autovacuum": "off",
    "track_counts": "on",
    "pgmart.naptime": "'1s'",
}


def runs(c, job_id, status="succeeded"):
    return c.one("SELECT count(*) FROM pgmart.job_runs WHERE job_id = %s AND status = %s", (job_id, status))


def run_and_wait(c, job_id, user="postgres"):
    """run_job hands a health job to a runner (it needs its own transaction): wait for its run."""
    before = c.one("SELECT count(*) FROM pgmart.job_runs WHERE job_id = %s AND status <> 'queued' AND status <> 'running'", (job_id,))
    row = c.sql("SELECT status FROM pgmart.run_job(%s)", (job_id,), user=user)[0]
    assert row[0] in ("queued", "succeeded"), row
    wait_for(lambda: c.one("SELECT count(*) FROM pgmart.job_runs WHERE job_id = %s AND status <> 'queued' AND status <> 'running'",
                           (job_id,)) > before, 60, what=f"a run of job {job_id}")
    status, details = c.sql("SELECT status, details FROM pgmart.job_runs WHERE job_id = %s ORDER BY run_id DESC LIMIT 1", (job_id,))[0]
    assert status == "succeeded", details
    return details


def health(c, rel, index=None, user="postgres"):
    q = ("SELECT status, problems, reason, suggestion, dead_ratio, bloat_ratio FROM pgmart.table_health "
         "WHERE relid = %s::regclass AND " + ("index = %s::regclass" if index else "index IS NULL"))
    rows = c.sql(q, (rel, index) if index else (rel,), user=user)
    return rows[0] if rows else None


@pytest.fixture(scope="module")
def setup(cluster):
    c = cluster
    c.sql("ALTER DATABASE postgres SET pgmart.health_min_pages = 10")
    c.sql("ALTER DATABASE postgres SET pgmart.health_unused_index_min_size = 0")
    c.sql("ALTER DATABASE postgres SET pgmart.health_tuning_min_rows = 1000")
    for r in ("alice", "mallory"):
        c.sql(f"CREATE ROLE {r} LOGIN")
        c.sql(f"SELECT pgmart.grant_access('{r}', 'user')")
    c.sql("GRANT CREATE ON SCHEMA public TO alice, mallory")
    a = dict(user="alice")
    c.sql("CREATE TABLE orders (id int PRIMARY KEY, v int, note text)", **a)
    c.sql("INSERT INTO orders SELECT g, g, 'note ' || g FROM generate_series(1, 100000) g", **a)
    c.sql("CREATE INDEX orders_v ON orders (v)", **a)
    with c.connect(user="alice") as conn:   # orders_v and the primary key are used
        conn.execute("SET enable_seqscan = off")
        conn.execute("SELECT count(*) FROM orders WHERE v = 42")
        conn.execute("SELECT count(*) FROM orders WHERE id = 42")
    c.sql("CREATE INDEX orders_v_again ON orders (v)", **a)
    c.sql("CREATE INDEX orders_note ON orders (note)", **a)
    c.sql("ANALYZE orders", **a)
    # The mass update: every row gets a new version in the table and in every index on v.
    c.sql("UPDATE orders SET v = v + 1", **a)
    c.sql("ANALYZE orders", **a)
    c.sql("CREATE TABLE events (at date NOT NULL, kind text) PARTITION BY RANGE (at)", **a)
    c.sql("CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')", **a)
    c.sql("INSERT INTO events SELECT '2024-01-01'::date + g % 300, 'k' || g % 7 FROM generate_series(1, 5000) g", **a)
    c.sql("ANALYZE events_2024", **a)
    return c


def test_table_health_sees_bloat_dead_rows_and_bad_indexes(setup):
    c = setup
    wait_for(lambda: (health(c, "orders") or [None])[0] == "fail", 20, what="orders failing on dead rows")
    status, problems, reason, suggestion, dead, bloat = health(c, "orders")
    assert "dead_tuples" in problems and dead >= 0.45, (problems, dead)
    assert "% of its rows are dead" in reason
    assert "VACUUM (ANALYZE) public.orders;" in suggestion
    assert "bloat" in problems and bloat > 0.3, (problems, bloat)
    # The index on v is twice its size after the update; its twin is a duplicate; note is unused.
    assert "index_bloat" in health(c, "orders", "orders_v")[1]
    assert health(c, "orders", "orders_v")[3] == "REINDEX INDEX CONCURRENTLY public.orders_v;"
    assert health(c, "orders", "orders_v_again")[1] == ["index_bloat", "duplicate_index"] or \
        "duplicate_index" in health(c, "orders", "orders_v_again")[1]
    assert health(c, "orders", "orders_v_again")[3] == "DROP INDEX CONCURRENTLY public.orders_v_again;"
    assert "unused_index" in health(c, "orders", "orders_note")[1]
    # The primary key is never "unused", however rarely it is scanned.
    assert "unused_index" not in health(c, "orders", "orders_pkey")[1]
    st, problems, reason, suggestion, _, _ = health(c, "events")
    assert (st, problems) == ("warn", ["never_analyzed"])
    assert suggestion == ("ANALYZE ONLY public.events;" if c.one("SHOW server_version_num") >= "180000" else "ANALYZE public.events;")
    # A large table gets per-table autovacuum settings suggested (pgmart.health_tuning_min_rows = 1000 here).
    assert c.one("SELECT suggested_settings FROM pgmart.table_health WHERE relid = 'orders'::regclass AND index IS NULL") == \
        ["autovacuum_vacuum_scale_factor=0.01", "autovacuum_analyze_scale_factor=0.005"]


def test_table_health_shows_only_what_the_caller_may_see_and_runs_read_only(setup):
    c = setup
    assert c.one("SELECT count(*) FROM pgmart.table_health WHERE relid = 'orders'::regclass", user="mallory") == 0
    assert c.one("SELECT count(*) FROM pgmart.table_health WHERE relid = 'orders'::regclass", user="alice") == 5
    with c.connect() as conn:
        conn.execute("BEGIN READ ONLY")
        assert conn.execute("SELECT count(*) FROM pgmart.table_health").fetchone()[0] >= 6
        conn.execute("ROLLBACK")


def test_a_role_without_rights_cannot_make_the_job_maintain_someone_elses_table(setup):
    c = setup
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.sql("SELECT pgmart.maintain_table('public.orders')", user="mallory")
    c.sql("SELECT pgmart.maintain_table('orders', autovacuum_tuning => true)", user="alice")
    with pytest.raises(psycopg.errors.UndefinedObject):
        c.sql("SELECT pgmart.unmaintain_table('public.orders')", user="mallory")
    # Mallory's own health job: it sees none of alice's tables, maintains and analyzes none.
    job = c.one("SELECT pgmart.schedule_health(name => 'mallory health')", user="mallory")
    details = run_and_wait(c, job, user="mallory")
    assert details["analyzed"] == [] and "maintenance" not in details, details
    assert c.one("SELECT last_maintained_at FROM pgmart.maintained_tables WHERE relid = 'orders'::regclass", user="alice") is None
    assert c.one("SELECT reloptions FROM pg_class WHERE oid = 'orders'::regclass") is None
    assert c.one("SELECT last_analyze FROM pg_stat_user_tables WHERE relid = 'events'::regclass") is None
    c.sql("SELECT pgmart.drop_job(%s)", (job,), user="mallory")


def test_the_health_job_analyzes_vacuums_reindexes_and_tunes_as_the_owner(setup):
    c = setup
    old_filenode = c.one("SELECT relfilenode FROM pg_class WHERE relname = 'orders_v'")
    dup_filenode = c.one("SELECT relfilenode FROM pg_class WHERE relname = 'orders_v_again'")
    job = c.one("SELECT pgmart.schedule_health()")
    details = run_and_wait(c, job)
    # The partitioned table autovacuum never analyzes.
    assert details["analyzed"] == ["public.events"], details
    assert c.one("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relid = 'events'::regclass")
    # Autovacuum settings applied, with what they were before recorded.
    assert sorted(c.one("SELECT reloptions FROM pg_class WHERE oid = 'orders'::regclass")) == \
        ["autovacuum_analyze_scale_factor=0.005", "autovacuum_vacuum_scale_factor=0.01"]
    tuned = c.one("SELECT tuned FROM pgmart.maintained_tables WHERE relid = 'orders'::regclass", user="alice")
    assert tuned["autovacuum_vacuum_scale_factor"] == {"before": None, "after": "0.01"}, tuned
    # VACUUM and REINDEX INDEX CONCURRENTLY in the runner, outside a transaction block.
    commands = [a["command"] for t in details["maintenance"] for a in t["commands"] if a["status"] == "succeeded"]
    assert "VACUUM (ANALYZE) public.orders" in commands, details
    assert "REINDEX INDEX CONCURRENTLY public.orders_v" in commands, details
    # A duplicate is for its owner to drop, never rebuilt.
    assert not any("orders_v_again" in cmd for cmd in commands)
    assert c.one("SELECT relfilenode FROM pg_class WHERE relname = 'orders_v'") != old_filenode
    assert c.one("SELECT relfilenode FROM pg_class WHERE relname = 'orders_v_again'") == dup_filenode
    wait_for(lambda: (c.one("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'orders'::regclass") or 0) < 1000, 20,
             what="the dead rows vacuumed")
    assert c.one("SELECT last_maintained_at IS NOT NULL FROM pgmart.maintained_tables WHERE relid = 'orders'::regclass", user="alice")
    # The alert on orders (fail) was raised and, once it is no longer failing, resolved.
    assert c.one("SELECT count(*) FROM pgmart.alerts WHERE source_kind = 'table_health' AND source_name = 'public.orders'") == 1
    wait_for(lambda: health(c, "orders")[0] != "fail", 20, what="orders no longer failing")
    run_and_wait(c, job)
    assert c.one("SELECT count(*) FROM pgmart.open_alerts WHERE source_kind = 'table_health' AND source_name = 'public.orders'") == 0
    assert health(c, "orders", "orders_v")[1] == [] or "index_bloat" not in health(c, "orders", "orders_v")[1]


def test_autovacuum_tuning_is_undone(setup):
    c = setup
    c.sql("SELECT pgmart.maintain_table('orders', autovacuum_tuning => false)", user="alice")
    assert c.one("SELECT reloptions FROM pg_class WHERE oid = 'orders'::regclass") is None
    # A value of the user's own, set before tuning, comes back.
    c.sql("ALTER TABLE orders SET (autovacuum_vacuum_scale_factor = 0.1)", user="alice")
    c.sql("SELECT pgmart.maintain_table('orders', autovacuum_tuning => true)", user="alice")
    job = c.one("SELECT job_id FROM pgmart.jobs WHERE name = 'table health'")
    run_and_wait(c, job)
    assert "autovacuum_vacuum_scale_factor=0.01" in c.one("SELECT reloptions FROM pg_class WHERE oid = 'orders'::regclass")
    c.sql("SELECT pgmart.unmaintain_table('orders')", user="alice")
    assert c.one("SELECT reloptions FROM pg_class WHERE oid = 'orders'::regclass") == ["autovacuum_vacuum_scale_factor=0.1"]
    assert c.one("SELECT count(*) FROM pgmart.maintained_tables", user="alice") == 0


def test_hostile_names_are_quoted_in_suggestions_and_commands(setup):
    c = setup
    a = dict(user="alice")
    c.sql('CREATE TABLE "we""ird; DROP TABLE orders --" (id int, v int)', **a)
    c.sql('INSERT INTO "we""ird; DROP TABLE orders --" SELECT g, g FROM generate_series(1, 20000) g', **a)
    c.sql('CREATE INDEX "ix ""1" ON "we""ird; DROP TABLE orders --" (v)', **a)
    c.sql('ANALYZE "we""ird; DROP TABLE orders --"', **a)
    c.sql('UPDATE "we""ird; DROP TABLE orders --" SET v = v + 1', **a)
    c.sql('ANALYZE "we""ird; DROP TABLE orders --"', **a)
    c.sql("""SELECT pgmart.maintain_table('"we""ird; DROP TABLE orders --"')""", **a)
    wait_for(lambda: "dead_tuples" in (health(c, '"we""ird; DROP TABLE orders --"') or [None, []])[1], 20, what="dead rows")
    assert 'VACUUM (ANALYZE) public."we""ird; DROP TABLE orders --";' in health(c, '"we""ird; DROP TABLE orders --"')[3]
    job = c.one("SELECT job_id FROM pgmart.jobs WHERE name = 'table health'")
    details = run_and_wait(c, job)
    commands = [a["command"] for t in details["maintenance"] for a in t["commands"] if a["status"] == "succeeded"]
    assert 'VACUUM (ANALYZE) public."we""ird; DROP TABLE orders --"' in commands, details
    assert c.one("SELECT to_regclass('public.orders') IS NOT NULL")
    c.sql("""SELECT pgmart.unmaintain_table('"we""ird; DROP TABLE orders --"')""", **a)


def test_query_health_without_and_with_pg_stat_statements(setup):
    c = setup
    with c.connect() as conn:
        notices = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        assert conn.execute("SELECT count(*) FROM pgmart.query_health").fetchone()[0] == 0
        assert any("pg_stat_statements is not installed" in n for n in notices), notices
    c.sql("CREATE EXTENSION pg_stat_statements")
    # The job samples dashboards' statements and the slowest others: here, every statement.
    c.sql("ALTER DATABASE postgres SET pgmart.query_health_top = 1000")
    c.sql("CREATE TABLE qh_delay (d float8)")
    c.sql("INSERT INTO qh_delay VALUES (0)")
    c.sql("CREATE FUNCTION qh_work(i int) RETURNS int LANGUAGE sql AS "
          "'SELECT i FROM (SELECT pg_sleep((SELECT d FROM qh_delay))) s'")
    job = c.one("SELECT job_id FROM pgmart.jobs WHERE name = 'table health'")
    c.sql("SELECT pgmart.register_dashboard('Tiles', 'ana@example.com', 'The tile board', query_pattern => 'dashboard_tile')")

    def calls(n):
        with c.connect() as conn:
            for i in range(n):
                conn.execute("SELECT qh_work(%s) AS dashboard_tile", (i,))

    calls(20)
    run_and_wait(c, job)
    calls(20)
    run_and_wait(c, job)
    c.sql("UPDATE qh_delay SET d = 0.02")
    calls(20)
    run_and_wait(c, job)
    rows = c.sql("SELECT regressed, recent_calls, recent_mean_ms, baseline_mean_ms, reason FROM pgmart.query_health "
                 "WHERE query LIKE '%dashboard_tile%'")
    assert rows, c.sql("SELECT query FROM pgmart.query_health")
    regressed, recent_calls, recent, baseline, reason = rows[0]
    assert regressed and recent_calls == 20 and recent > 15 and baseline < 5, rows
    assert "slower" in reason
    # It is the dashboard's statement: the job raised an alert naming the dashboard.
    assert c.one("SELECT dashboard FROM pgmart.query_health WHERE query LIKE '%%dashboard_tile%%'") == "Tiles"
    assert c.one("SELECT count(*) FROM pgmart.open_alerts WHERE source_kind = 'dashboard' AND source_name = 'Tiles' "
                 "AND payload->>'problem' = 'query regressed'") == 1
    # The slowest statements by total time are listed, with their means.
    assert c.one("SELECT count(*) FROM pgmart.query_health WHERE dashboard IS NULL AND mean_ms >= 0") >= 1
    # Another role sees only its own statements.
    assert c.one("SELECT count(*) FROM pgmart.query_health WHERE query LIKE '%%dashboard_tile%%'", user="mallory") == 0


def test_trust_names_table_health_upstream_of_a_dashboard(setup):
    c = setup
    c.sql("CREATE TABLE th_src (id int, v int) WITH (autovacuum_enabled = off)")
    c.sql("INSERT INTO th_src SELECT g, g FROM generate_series(1, 50000) g")
    c.sql("ANALYZE th_src")
    c.sql("UPDATE th_src SET v = v + 1")
    c.sql("CREATE VIEW th_view AS SELECT id, v FROM th_src")
    c.sql("SELECT pgmart.register_dashboard('Health board', 'ops', 'Reads a bloated table', sources => '{th_view}')")
    assert c.one("SELECT status FROM pgmart.trust WHERE object = 'Health board'") == "ok"
    job = c.one("SELECT pgmart.schedule_health(name => 'trust health', alert_level => 'warn')")
    run_and_wait(c, job)
    row = c.sql("SELECT status, reasons FROM pgmart.trust WHERE object = 'Health board'")[0]
    assert row[0] == "warn" and any(r.startswith("public.th_src: table health: ") for r in row[1]), row
    c.sql("VACUUM (FULL, ANALYZE) th_src")
    run_and_wait(c, job)
    assert c.one("SELECT status FROM pgmart.trust WHERE object = 'Health board'") == "ok"
