"""End-to-end: dashboards, lineage, impact and trust, with the worker running. The lineage goes
raw (a partitioned table) -> staging view -> mart materialized view refreshed by pgmart -> rollup
-> metric -> dashboard; trust turns `fail` when a check two hops upstream fails (and the alert
names the dashboard and its owner) and back to `ok` when it passes; the Mermaid text is accepted by
Mermaid's own parser; and the attacks: nobody sees a dashboard over what they cannot read, drops
another role's dashboard, or reads trust without being granted it."""

import html
import json
import os
import re
import subprocess

import psycopg
import pytest

from conftest import wait_for

MERMAID_DIR = os.path.join(os.path.dirname(__file__), "mermaid")


def mermaid_parse(*texts):
    """Mermaid's own parser (mermaid from npm, under Node with a jsdom shim) on each text."""
    r = subprocess.run(["node", os.path.join(MERMAID_DIR, "parse.mjs")], input=json.dumps(list(texts)),
                       capture_output=True, text=True, timeout=120, check=True)
    out = json.loads(r.stdout)
    for o in out:
        for v in o.get("vertices", []):
            # Mermaid keeps entities as placeholders until it renders.
            t = re.sub(r"ﬂ°°(\d+)¶ß", lambda m: chr(int(m.group(1))), v["text"])
            v["text"] = re.sub(r"ﬂ°(\w+)¶ß", lambda m: html.unescape(f"&{m.group(1)};"), t)
    return out


@pytest.fixture(scope="module")
def stack(cluster):
    for q in [
        "CREATE SCHEMA raw", "CREATE SCHEMA staging", "CREATE SCHEMA mart",
        "CREATE TABLE raw.orders (id int, at timestamptz NOT NULL, status text, amount numeric) PARTITION BY RANGE (at)",
        "CREATE TABLE raw.orders_old PARTITION OF raw.orders FOR VALUES FROM ('2000-01-01') TO ('2026-01-01')",
        "CREATE TABLE raw.orders_new PARTITION OF raw.orders FOR VALUES FROM ('2026-01-01') TO ('2100-01-01')",
        "INSERT INTO raw.orders SELECT g, now() - g * interval '1 hour', 'paid', g FROM generate_series(1, 200) g",
        "CREATE VIEW staging.stg_orders AS SELECT id, at, status, amount FROM raw.orders WHERE status <> 'test'",
        "CREATE MATERIALIZED VIEW mart.daily_revenue AS SELECT date_trunc('day', at) AS day, sum(amount) AS revenue "
        "FROM staging.stg_orders GROUP BY 1",
        "CREATE UNIQUE INDEX ON mart.daily_revenue (day)",
        "SELECT pgmart.schedule_refresh('mart.daily_revenue', '1 hour')",
        "SELECT pgmart.create_rollup('mart.orders_hourly', 'raw.orders', 'at', '1 hour', '{status}', "
        "'{\"orders\": \"count(*)\"}', schedule => '1 hour')",
        "SELECT pgmart.register_metric('revenue', 'mart.daily_revenue', 'sum(revenue)', 'day', 'finance team', 'Revenue')",
        "SELECT pgmart.create_snapshot('mart.revenue_history', 'mart.daily_revenue', 'check', '{day}', schedule => '1 hour')",
        "SELECT pgmart.register_dashboard('Sales overview', 'ana@example.com', 'Revenue and orders per day', "
        "metrics => '{revenue}', sources => '{mart.daily_revenue,mart.orders_hourly}', "
        "url => 'https://bi.example.com/d/7', caveats => 'Excludes test orders')",
    ]:
        cluster.sql(q)
    return cluster


def test_lineage_from_raw_to_the_dashboard(stack):
    down = stack.sql("SELECT downstream, downstream_kind, depth FROM pgmart.lineage('raw.orders') "
                     "WHERE direction = 'downstream' ORDER BY depth, downstream COLLATE \"C\"")
    assert ("staging.stg_orders", "view", 1) in down
    assert ("mart.orders_hourly", "rollup", 1) in down
    assert ("mart.daily_revenue", "materialized_view", 2) in down
    assert ("revenue", "metric", 3) in down
    assert ("mart.revenue_history", "snapshot", 3) in down
    assert ("Sales overview", "dashboard", 2) in down  # through the rollup
    # A partition is its parent in the graph.
    assert stack.sql("SELECT DISTINCT upstream FROM pgmart.lineage('raw.orders_new') WHERE direction = 'downstream' AND depth = 1") \
        == [("raw.orders",)]
    up = {r[0] for r in stack.sql("SELECT upstream FROM pgmart.lineage('mart.daily_revenue') WHERE direction = 'upstream'")}
    assert up == {"raw.orders", "staging.stg_orders"}
    impact = stack.sql("SELECT object, kind, owner, url FROM pgmart.impact('raw.orders') WHERE kind = 'dashboard'")
    assert impact == [("Sales overview", "dashboard", "ana@example.com", "https://bi.example.com/d/7")]
    # The Mermaid text is a flowchart Mermaid itself parses, every node once, labelled with its status.
    text = stack.one("SELECT pgmart.lineage_mermaid('mart.daily_revenue')")
    [parsed] = mermaid_parse(text)
    assert parsed["ok"], (parsed, text)
    labels = sorted(v["text"] for v in parsed["vertices"])
    assert labels == sorted(["raw.orders<br>table: ok", "staging.stg_orders<br>view: ok",
                             "mart.daily_revenue<br>materialized view: ok", "revenue<br>metric: ok",
                             "Sales overview<br>dashboard: ok", "mart.revenue_history<br>snapshot: ok"]), labels
    assert parsed["edges"] == 6
    # The whole graph parses too.
    [whole] = mermaid_parse(stack.one("SELECT pgmart.lineage_mermaid()"))
    assert whole["ok"] and len(whole["vertices"]) == 8, whole  # and the rollup's real-time view, the snapshot


def test_trust_fails_two_hops_upstream_and_recovers(stack):
    assert stack.one("SELECT status FROM pgmart.trust WHERE object = 'Sales overview'") == "ok"
    stack.sql("SELECT pgmart.add_check('raw.orders', 'accepted_values', '{status}', '{\"values\": [\"paid\", \"test\"]}', "
              "name => 'orders_status')")
    with psycopg.connect(host=stack.dir, port=stack.port, dbname="postgres", user="postgres", autocommit=True) as l:
        l.execute("LISTEN pgmart_alerts")
        stack.sql("UPDATE raw.orders SET status = 'lost' WHERE id <= 3")
        stack.sql("SELECT count(*) FROM pgmart.run_checks('raw.orders')")
        row = stack.sql("SELECT status, reasons, summary FROM pgmart.trust WHERE object = 'Sales overview'")[0]
        assert row[0] == "fail" and "raw.orders: check orders_status failed: 3 rows" in row[1], row
        assert "1 failure: raw.orders: check orders_status failed: 3 rows" in row[2], row
        assert stack.one("SELECT status FROM pgmart.trust WHERE object = 'revenue'") == "fail"
        assert stack.one("SELECT status FROM pgmart.trust WHERE object = 'raw.orders'") == "fail"
        # The alert names the dashboards the failure affects, and their owners.
        note = next(n for n in l.notifies(timeout=10) if json.loads(n.payload)["source_name"] == "orders_status")
        payload = json.loads(note.payload)["payload"]
        assert payload["dashboards"] == [{"name": "Sales overview", "owner": "ana@example.com",
                                          "url": "https://bi.example.com/d/7"}], payload
    # Mermaid colours the failing path.
    [parsed] = mermaid_parse(stack.one("SELECT pgmart.lineage_mermaid('raw.orders')"))
    classes = {v["text"].split("<br>")[0]: v["classes"] for v in parsed["vertices"]}
    assert classes["Sales overview"] == ["fail"] and classes["raw.orders"] == ["fail"], classes
    stack.sql("UPDATE raw.orders SET status = 'paid' WHERE id <= 3")
    stack.sql("SELECT count(*) FROM pgmart.run_checks('raw.orders')")
    assert stack.one("SELECT status FROM pgmart.trust WHERE object = 'Sales overview'") == "ok"
    stack.sql("SELECT pgmart.drop_check('orders_status')")


def test_trust_says_when_a_view_is_stale(stack):
    # The worker refreshes the view; its age then shows in the dashboard's summary.
    stack.sql("SELECT pgmart.refresh_now('mart.daily_revenue')")
    summary = stack.one("SELECT summary FROM pgmart.trust WHERE object = 'Sales overview'")
    assert summary.startswith("last refreshed "), summary
    stack.sql("UPDATE pgmart.refresh_view SET last_refreshed_at = now() - interval '3 hours'")
    row = stack.sql("SELECT status, reasons FROM pgmart.trust WHERE object = 'Sales overview'")[0]
    assert row[0] == "fail" and row[1] == ["mart.daily_revenue: not refreshed for 3 h (SLO 2 h)"], row
    stack.sql("SELECT pgmart.refresh_now('mart.daily_revenue')")
    assert stack.one("SELECT status FROM pgmart.trust WHERE object = 'Sales overview'") == "ok"


def test_alert_rules_warn_once_per_rule(stack):
    stack.sql("SELECT pgmart.add_alert_rule('huge_order', 'raw.orders', 'amount > 10000')")
    stack.sql("INSERT INTO raw.orders VALUES (9001, now(), 'paid', 20000), (9002, now(), 'paid', 30000)")
    row = stack.sql("SELECT status, reasons FROM pgmart.trust WHERE object = 'Sales overview'")[0]
    assert row == ("warn", ["raw.orders: 2 open alerts huge_order (high)"]), row
    stack.sql("SELECT pgmart.ack_alert(alert_id) FROM pgmart.open_alerts WHERE source_name = 'huge_order'")
    assert stack.one("SELECT status FROM pgmart.trust WHERE object = 'Sales overview'") == "ok"
    stack.sql("SELECT pgmart.drop_alert_rule('huge_order')")
    stack.sql("DELETE FROM raw.orders WHERE id > 9000")


def test_hostile_names_stay_labels(cluster):
    name = 'end "x" #1 <b>&`o'
    cluster.sql("CREATE TABLE \"we\"\"ird end\" (at timestamptz, v int)")
    cluster.sql("SELECT pgmart.register_dashboard(%s, 'o', 'd', sources => ARRAY['\"we\"\"ird end\"'::regclass])", (name,))
    [parsed] = mermaid_parse(cluster.one("SELECT pgmart.lineage_mermaid('\"we\"\"ird end\"')"))
    assert parsed["ok"], parsed
    labels = {v["text"] for v in parsed["vertices"]}
    assert f"{name}<br>dashboard: ok" in labels and 'public."we""ird end"<br>table: ok' in labels, labels
    cluster.sql("SELECT pgmart.drop_dashboard(%s)", (name,))


def test_what_other_roles_see_and_may_do(stack):
    for q in ["CREATE ROLE mallory LOGIN", "CREATE ROLE bi_reader LOGIN",
              "SELECT pgmart.grant_access('mallory', 'user')", "SELECT pgmart.grant_access('bi_reader', 'reader')",
              "GRANT USAGE ON SCHEMA mart TO bi_reader", "GRANT SELECT ON ALL TABLES IN SCHEMA mart TO bi_reader"]:
        stack.sql(q)
    # mallory may read nothing: she sees no dashboard, no metric or dashboard edge, and cannot
    # register a dashboard over what she cannot read, nor drop or take over another's.
    assert stack.sql("SELECT name FROM pgmart.dashboards", user="mallory") == []
    kinds = {r[0] for r in stack.sql("SELECT downstream_kind FROM pgmart.lineage()", user="mallory")}
    assert "dashboard" not in kinds and "metric" not in kinds, kinds
    for q, code in [
        ("SELECT pgmart.register_dashboard('m', 'o', 'd', sources => '{raw.orders}')", "42501"),
        ("SELECT pgmart.drop_dashboard('Sales overview')", "42501"),
        ("SELECT pgmart.register_dashboard('Sales overview', 'mallory', 'mine now')", "42710"),
        ("SELECT pgmart._dashboards_downstream('raw.orders'::regclass)", "42501"),
        ("DELETE FROM pgmart.dashboard", "42501"),
    ]:
        with pytest.raises(psycopg.Error) as e:
            stack.sql(q, user="mallory")
        assert e.value.sqlstate == code, (q, e.value)
    assert stack.one("SELECT owner FROM pgmart.dashboards WHERE name = 'Sales overview'") == "ana@example.com"
    # Trust shows mallory only what she may see; a role never granted it cannot read it.
    kinds = {r[0] for r in stack.sql("SELECT kind FROM pgmart.trust", user="mallory")}
    assert "dashboard" not in kinds and "metric" not in kinds, kinds
    stack.sql("CREATE ROLE stranger LOGIN")
    stack.sql("GRANT USAGE ON SCHEMA pgmart TO stranger")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        stack.sql("SELECT * FROM pgmart.trust", user="stranger")
    # A BI reader who may read the mart sees the dashboard and its trust, upstream reasons included.
    assert stack.one("SELECT status FROM pgmart.trust WHERE object = 'Sales overview'", user="bi_reader") == "ok"
    assert stack.sql("SELECT name FROM pgmart.dashboards", user="bi_reader") == [("Sales overview",)]
    # mallory's own dashboard goes with DROP OWNED.
    stack.sql("CREATE TABLE public.mallory_t (x int)")
    stack.sql("ALTER TABLE public.mallory_t OWNER TO mallory")
    stack.sql("SELECT pgmart.register_dashboard('Mallory board', 'mallory', 'hers', sources => '{public.mallory_t}')", user="mallory")
    stack.sql("DROP OWNED BY mallory")
    assert stack.one("SELECT count(*) FROM pgmart.dashboard WHERE name = 'Mallory board'") == 0


def test_dashboards_survive_dump_and_restore(stack):
    stack.dump_restore("postgres", "restored")
    assert stack.sql("SELECT name, owner, sources, metrics FROM pgmart.dashboards WHERE name = 'Sales overview'", dbname="restored") == \
        [("Sales overview", "ana@example.com", ["mart.daily_revenue", "mart.orders_hourly"], ["revenue"])]
    assert stack.one("SELECT count(*) FROM pgmart.lineage('raw.orders') WHERE downstream_kind = 'dashboard'", dbname="restored") >= 1
