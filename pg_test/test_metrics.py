"""End-to-end: metric contracts from real sessions. PostgreSQL refuses to drop a column a metric
uses (naming the metric), renames keep it working, and a BI-only role can read metrics and their
values (under its own row-level security) but cannot register metrics."""


import psycopg
import pytest



CLUSTER_SETTINGS = {"pgmart.enabled": "off"}


def test_drop_column_is_refused_while_a_metric_uses_it(cluster):
    cluster.sql("CREATE TABLE sales (id int, sold_at timestamptz, amount numeric, note text, region text)")
    cluster.sql("INSERT INTO sales VALUES (1, '2024-05-01 10:00+00', 10, 'a', 'eu'), (2, '2024-05-02 10:00+00', 5, 'b', 'us')")
    assert cluster.one(
        "SELECT pgmart.register_metric('sales_total', 'sales', 'sum(amount)', 'sold_at', 'ops', 'Total sales', '{region}')"
    ) == 1
    with pytest.raises(psycopg.errors.DependentObjectsStillExist) as e:
        cluster.sql("ALTER TABLE sales DROP COLUMN amount")
    assert "sales_total" in str(e.value) + (e.value.diag.message_detail or "")
    with pytest.raises(psycopg.errors.DependentObjectsStillExist) as e:
        cluster.sql("ALTER TABLE sales DROP COLUMN region")
    assert "sales_total" in (e.value.diag.message_detail or "")
    with pytest.raises(psycopg.errors.DependentObjectsStillExist):
        cluster.sql("DROP TABLE sales")
    # A column the metric does not use may go; a rename keeps the metric working.
    cluster.sql("ALTER TABLE sales DROP COLUMN note")
    cluster.sql("ALTER TABLE sales RENAME COLUMN amount TO amount_usd")
    rows = cluster.sql(
        "SELECT to_char(bucket_start AT TIME ZONE 'UTC', 'MM-DD'), value FROM pgmart.metric_values("
        "'sales_total', '2024-05-01 00:00+00', '2024-05-04 00:00+00') ORDER BY bucket_start"
    )
    assert [(d, float(v) if v is not None else None) for d, v in rows] == [
        ("05-01", 10.0), ("05-02", 5.0), ("05-03", None)]
    # After dropping the metric the column is free.
    cluster.sql("SELECT pgmart.drop_metric('sales_total')")
    cluster.sql("ALTER TABLE sales DROP COLUMN amount_usd")


def test_bi_role_reads_metrics_but_cannot_register(cluster):
    cluster.sql("CREATE ROLE analyst LOGIN")
    cluster.sql("CREATE ROLE bi LOGIN")
    cluster.sql("GRANT USAGE ON SCHEMA pgmart TO analyst, bi")
    cluster.sql("CREATE SCHEMA mart AUTHORIZATION analyst")
    cluster.sql("GRANT USAGE ON SCHEMA mart TO bi")
    a = dict(user="analyst")
    cluster.sql("CREATE TABLE mart.orders (created_at timestamptz, amount numeric, region text)", **a)
    cluster.sql(
        "INSERT INTO mart.orders SELECT '2024-06-01 00:00+00'::timestamptz + i * interval '1 hour', i, "
        "CASE WHEN i % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(0, 47) i", **a)
    cluster.sql("GRANT SELECT ON mart.orders TO bi", **a)
    # bi sees only EU rows.
    cluster.sql("ALTER TABLE mart.orders ENABLE ROW LEVEL SECURITY", **a)
    cluster.sql("CREATE POLICY bi_eu ON mart.orders FOR SELECT TO bi USING (region = 'eu')", **a)
    assert cluster.one(
        "SELECT pgmart.register_metric('order_amount', 'mart.orders', 'sum(amount)', 'created_at', "
        "'analytics', 'Sum of order amounts', '{region}')", **a) == 1

    b = dict(user="bi")
    # bi cannot register metrics (it does not own the table), nor change the analyst's.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cluster.sql("SELECT pgmart.register_metric('bi_metric', 'mart.orders', 'count(*)', 'created_at', 'bi', 'x')", **b)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cluster.sql("SELECT pgmart.register_metric('order_amount', 'mart.orders', 'count(*)', 'created_at', 'bi', 'x')", **b)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cluster.sql("SELECT pgmart.deprecate_metric('order_amount')", **b)
    assert cluster.one("SELECT count(*) FROM pgmart.metric WHERE name = 'bi_metric'") == 0

    # bi reads the catalog and the values, under its own row-level security.
    assert cluster.sql("SELECT name, owner, version FROM pgmart.metrics WHERE name = 'order_amount'", **b) == [
        ("order_amount", "analytics", 1)]
    full = cluster.sql(
        "SELECT sum(value) FROM pgmart.metric_values('order_amount', '2024-06-01 00:00+00', '2024-06-03 00:00+00')", **a)
    eu = cluster.sql(
        "SELECT sum(value) FROM pgmart.metric_values('order_amount', '2024-06-01 00:00+00', '2024-06-03 00:00+00')", **b)
    assert float(full[0][0]) == sum(range(48))
    assert float(eu[0][0]) == sum(i for i in range(48) if i % 2 == 0)
    # metric_sql is the same statement: run as is, it gives the same rows.
    text = cluster.one(
        "SELECT pgmart.metric_sql('order_amount', '2024-06-01 00:00+00', '2024-06-03 00:00+00', 'hour', '{region}')", **b)
    direct = cluster.sql(text, **b)
    via = cluster.sql(
        "SELECT * FROM pgmart.metric_values('order_amount', '2024-06-01 00:00+00', '2024-06-03 00:00+00', 'hour', '{region}')", **b)
    assert direct == via and len(via) == 48

    # Deprecation: still works, with a NOTICE naming the replacement.
    cluster.sql("SELECT pgmart.register_metric('order_count', 'mart.orders', 'count(*)', 'created_at', 'analytics', 'Orders')", **a)
    cluster.sql("SELECT pgmart.deprecate_metric('order_amount', 'order_count')", **a)
    notices = []
    with cluster.connect(user="bi") as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        rows = conn.execute(
            "SELECT * FROM pgmart.metric_values('order_amount', '2024-06-01 00:00+00', '2024-06-02 00:00+00')").fetchall()
    assert len(rows) == 1
    assert any("order_count" in n for n in notices), notices


def test_metrics_survive_pg_dump_and_restore(cluster):
    cluster.createdb("dumpsrc")
    d = dict(dbname="dumpsrc")
    cluster.sql("CREATE TABLE visits (at timestamptz, ms int, page text)", **d)
    cluster.sql("INSERT INTO visits VALUES ('2024-07-01 10:00+00', 100, 'a'), ('2024-07-01 11:00+00', 300, 'b')", **d)
    cluster.sql("SELECT pgmart.register_metric('avg_ms', 'visits', 'avg(ms)', 'at', 'web', 'Mean load time', '{page}')", **d)
    cluster.sql("SELECT pgmart.register_metric('avg_ms', 'visits', 'avg(ms)', 'at', 'web', 'Mean load time (ms)', '{page}')", **d)
    cluster.dump_restore("dumpsrc", "dumpdst")
    t = dict(dbname="dumpdst")
    assert cluster.sql("SELECT name, version, description FROM pgmart.metrics", **t) == [
        ("avg_ms", 2, "Mean load time (ms)")]
    assert cluster.one("SELECT count(*) FROM pgmart.metric_versions WHERE name = 'avg_ms'", **t) == 2
    assert float(cluster.one(
        "SELECT value FROM pgmart.metric_values('avg_ms', '2024-07-01 00:00+00', '2024-07-02 00:00+00')", **t)) == 200.0
    with pytest.raises(psycopg.errors.DependentObjectsStillExist):
        cluster.sql("ALTER TABLE visits DROP COLUMN ms", **t)


def test_bi_clients_read_partial_ranges_ratios_and_dates_with_prepared_statements(cluster):
    """What Metabase, Superset or a Python dashboard sees: psycopg and asyncpg, prepared statements
    with bound parameters, a range cut mid-day, a ratio with its parts, a date column, and the
    browsable view under the reader's own privileges and row-level security."""
    import asyncio
    import datetime as dt
    from decimal import Decimal

    import asyncpg

    cluster.sql("CREATE TABLE bi_orders (at timestamptz NOT NULL, day date NOT NULL, amount numeric(12,2), region text)")
    cluster.sql("INSERT INTO bi_orders VALUES ('2024-06-01 09:00+00', '2024-06-01', 10.00, 'eu'), "
                "('2024-06-01 20:00+00', '2024-06-01', 30.00, 'us'), ('2024-06-03 08:00+00', '2024-06-03', 0.00, 'eu')")
    cluster.sql("SELECT pgmart.register_metric('bi_avg', 'bi_orders', 'sum(amount) / nullif(count(*), 0)', 'at', 'bi', "
                "'Average order', dimensions => '{region}')")
    cluster.sql("SELECT pgmart.register_metric('bi_count_days', 'bi_orders', 'count(*)', 'day', 'bi', 'Orders by day')")
    # From mid-morning on the 1st to mid-morning on the 3rd: first and last buckets are partial.
    args = ("bi_avg", dt.datetime(2024, 6, 1, 10, tzinfo=dt.timezone.utc), dt.datetime(2024, 6, 3, 10, tzinfo=dt.timezone.utc))
    expect = [(dt.datetime(2024, 6, 1), True, Decimal("30"), Decimal("30"), Decimal("1")),
              (dt.datetime(2024, 6, 2), False, None, None, Decimal("0")),
              (dt.datetime(2024, 6, 3), True, Decimal("0"), Decimal("0"), Decimal("1"))]
    q = ("SELECT bucket_local, is_partial, value, numerator, denominator "
         "FROM pgmart.metric_values(%s, %s, %s) ORDER BY bucket_start")
    with cluster.connect() as conn:
        runs = [conn.execute(q, args, prepare=True).fetchall() for _ in range(6)]
    assert all(r == expect for r in runs), runs
    # The zero is a plain 0 to a driver (PostgreSQL's numeric division alone would give 0E-20).
    assert str(runs[0][2][2]) == "0"

    async def read():
        conn = await asyncpg.connect(host=cluster.dir, port=cluster.port, user="postgres", database="postgres")
        try:
            stmt = await conn.prepare("SELECT bucket_local, is_partial, value, numerator, denominator "
                                      "FROM pgmart.metric_values($1, $2, $3) ORDER BY bucket_start")
            got = [[tuple(r) for r in await stmt.fetch(*args)] for _ in range(6)]
            days = await conn.fetch("SELECT bucket_local::date AS d, value, is_partial FROM pgmart.metric_values("
                                    "$1, $2, $3) ORDER BY bucket_start", "bi_count_days", *args[1:])
            several = await conn.fetch("SELECT metric, value FROM pgmart.metric_values($1::text[], $2, $3) "
                                       "ORDER BY bucket_start, metric", ["bi_avg", "bi_count_days"], *args[1:])
            return got, [tuple(r) for r in days], [tuple(r) for r in several]
        finally:
            await conn.close()

    got, days, several = asyncio.run(read())
    assert all(r == expect for r in got), got
    # A date column counts whole days: the 1st has both its orders although from_ts is 10:00.
    assert days == [(dt.date(2024, 6, 1), Decimal("2"), False), (dt.date(2024, 6, 2), Decimal("0"), False),
                    (dt.date(2024, 6, 3), Decimal("1"), False)]
    assert several[:2] == [("bi_avg", Decimal("30")), ("bi_count_days", Decimal("2"))]

    # The browsable view, read by a BI role: only with the right to read the source, and then
    # under the source's row-level security.
    cluster.sql("CREATE ROLE bi_viewer LOGIN")
    cluster.sql("SELECT pgmart.grant_access('bi_viewer', 'reader')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cluster.sql("SELECT * FROM pgmart_metrics.bi_avg", user="bi_viewer")
    cluster.sql("GRANT SELECT ON bi_orders TO bi_viewer")
    cluster.sql("ALTER TABLE bi_orders ENABLE ROW LEVEL SECURITY")
    cluster.sql("CREATE POLICY eu_only ON bi_orders FOR SELECT TO bi_viewer USING (region = 'eu')")
    rows = cluster.sql("SELECT bucket_date, region, value FROM pgmart_metrics.bi_avg ORDER BY bucket_date", user="bi_viewer")
    assert rows == [(dt.date(2024, 6, 1), "eu", Decimal("10")), (dt.date(2024, 6, 3), "eu", Decimal("0"))]
    assert cluster.one("SELECT count(*) FROM pgmart_metrics.bi_avg") == 3
