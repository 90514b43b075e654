"""Layers end to end (docs/layers.md), on a real cluster with the worker running: create_layers on
an empty database and again (idempotent; a loosened grant is reported and repaired), a login role
in each group doing what it may and refused what it may not, default privileges on objects made
afterwards (by transform and by the administrator), access_report and the `access` check catching
a deliberate violation (and its alert), PII columns kept from BI, tenant isolation with two tenants
(metric_values included), and attacks: a caller without CREATEROLE, a CREATEROLE non-superuser
adopting someone else's schema or role, hostile identifiers, a hostile search_path, and what the
report shows to whom.
"""

import psycopg
import pytest

from conftest import PG_VERSION, wait_for

CLUSTER_SETTINGS = {"pgmart.naptime": "'500ms'"}


def rows(conn, q, params=None):
    cur = conn.execute(q, params)
    return cur.fetchall() if cur.description else None


def one(conn, q, params=None):
    r = rows(conn, q, params)
    return r[0][0] if r else None


def sqlstate(conn, q, params=None):
    with pytest.raises(psycopg.Error) as e:
        conn.execute(q, params)
    assert "stack backtrace" not in str(e.value) and ".rs:" not in str(e.value), str(e.value)
    return e.value.sqlstate


def notices(conn):
    got = []
    conn.add_notice_handler(lambda d: got.append(d.message_primary))
    return got


@pytest.fixture(scope="module")
def stack(cluster):
    """The guide's stack in database postgres: one call, and a login role in each group."""
    c = cluster
    with c.connect() as admin:
        first = rows(admin, "SELECT change, object, statement FROM pgmart.create_layers()")
        for role, group in (("loader", "ingest"), ("dbt", "transform"), ("analyst", "bi"), ("analyst2", "bi")):
            admin.execute(f"CREATE ROLE {role} LOGIN")
            admin.execute(f"GRANT {group} TO {role}")
        # Objects are made as the group (dbt's profiles `role:`; a loader's SET ROLE).
        admin.execute("ALTER ROLE dbt SET role = 'transform'")
        admin.execute("ALTER ROLE loader SET role = 'ingest'")
        admin.execute("SELECT * FROM pgmart.grant_access('transform', 'user')")
    return first


def test_create_layers_on_an_empty_database_then_again(cluster, stack):
    changes = [r[0] for r in stack]
    assert changes.count("create role") == 3 and changes.count("create schema") == 3, stack
    assert ("register", "layer set mart", "pgmart.layers") in stack
    assert ("grant", "pgmart BI surface", "GRANT SELECT ON pgmart.freshness TO bi") in stack, stack
    with cluster.connect() as admin:
        said = notices(admin)
        assert rows(admin, "SELECT * FROM pgmart.create_layers()") == []
        assert any("nothing changed" in n for n in said), said
        assert one(admin, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'bi'") is False
        assert one(admin, "SELECT has_schema_privilege('public', 'raw', 'USAGE') OR has_schema_privilege('public', 'mart', 'CREATE')") is False
        assert rows(admin, "SELECT count(*) FROM pgmart.access_report() WHERE violation") == [(0,)]


def test_each_group_does_what_it_may_and_nothing_more(cluster, stack):
    with cluster.connect(user="loader") as loader:
        assert one(loader, "SELECT current_user") == "ingest"
        loader.execute("CREATE TABLE raw.events (id bigint GENERATED ALWAYS AS IDENTITY, tenant_id int, email text, amount numeric, at timestamptz DEFAULT now())")
        loader.execute("INSERT INTO raw.events (tenant_id, email, amount) VALUES (1, 'a@x', 10), (2, 'b@y', 20), (1, 'c@x', 5)")
        assert sqlstate(loader, "CREATE TABLE staging.x (id int)") == "42501"
        assert sqlstate(loader, "CREATE TABLE mart.x (id int)") == "42501"
    with cluster.connect(user="dbt") as dbt:
        assert one(dbt, "SELECT current_user") == "transform"
        assert one(dbt, "SELECT count(*) FROM raw.events") == 3
        dbt.execute("CREATE TABLE staging.stg_events AS SELECT tenant_id, email, amount, at FROM raw.events")
        dbt.execute("CREATE TABLE mart.orders AS SELECT tenant_id, email, amount, at FROM staging.stg_events")
        dbt.execute("CREATE VIEW mart.orders_by_tenant AS SELECT tenant_id, sum(amount) AS amount FROM mart.orders GROUP BY 1")
        assert sqlstate(dbt, "INSERT INTO raw.events (tenant_id) VALUES (3)") == "42501"
        assert sqlstate(dbt, "CREATE TABLE raw.x (id int)") == "42501"
    with cluster.connect(user="analyst") as bi:
        assert one(bi, "SELECT count(*) FROM mart.orders") == 3
        assert one(bi, "SELECT count(*) FROM mart.orders_by_tenant") == 2
        for q in ("SELECT * FROM raw.events", "SELECT * FROM staging.stg_events", "INSERT INTO mart.orders (amount) VALUES (1)",
                  "DELETE FROM mart.orders", "CREATE TABLE mart.y (id int)", "TRUNCATE mart.orders"):
            assert sqlstate(bi, q) == "42501", q
        # pgmart's BI surface.
        bi.execute("SELECT * FROM pgmart.freshness")
        bi.execute("SELECT * FROM pgmart.checks")
    # Default privileges on what the administrator makes by hand, too.
    with cluster.connect() as admin:
        admin.execute("CREATE TABLE raw.manual (id int)")
        admin.execute("CREATE TABLE mart.manual (id int)")
        assert one(admin, "SELECT has_table_privilege('ingest', 'raw.manual', 'INSERT') AND has_table_privilege('transform', 'raw.manual', 'SELECT') "
                          "AND NOT has_table_privilege('bi', 'raw.manual', 'SELECT') AND has_table_privilege('bi', 'mart.manual', 'SELECT') "
                          "AND has_table_privilege('transform', 'mart.manual', 'UPDATE') AND NOT has_table_privilege('bi', 'mart.manual', 'UPDATE') "
                          "AND NOT has_table_privilege('ingest', 'mart.manual', 'SELECT')") is True
        # A table in mart owned by someone other than transform is a role that can write mart.
        flagged = rows(admin, "SELECT role, privilege FROM pgmart.access_report() WHERE violation")
        assert flagged == [], flagged  # postgres (a superuser) owns it: not a layer breach
        admin.execute("DROP TABLE raw.manual, mart.manual")
        assert rows(admin, "SELECT * FROM pgmart.create_layers()") == []


def test_a_loosened_grant_is_reported_by_the_report_and_the_check_then_repaired(cluster, stack):
    with cluster.connect() as admin:
        admin.execute("SELECT pgmart.add_check('pgmart.layers', 'access', name => 'layers_access', schedule => '2 seconds')")
        wait_for(lambda: one(admin, "SELECT status FROM pgmart.check_results WHERE name = 'layers_access' ORDER BY run_at DESC LIMIT 1") == "pass",
                 what="a passing access check")
        # Someone loosens things by hand.
        admin.execute("GRANT USAGE ON SCHEMA raw TO bi")
        admin.execute("GRANT SELECT ON raw.events TO bi")
        admin.execute("GRANT INSERT ON mart.orders TO analyst2")
        bad = rows(admin, "SELECT role, object, privilege, reason FROM pgmart.access_report() WHERE violation ORDER BY 1, 2, 3")
        assert [(r[0], r[1], r[2]) for r in bad] == [
            ("analyst2", "mart.orders", "INSERT"), ("bi", "raw", "USAGE"), ("bi", "raw.events", "SELECT")], bad
        assert "can read raw" in bad[1][3] and "other than transform can write mart" in bad[0][3]
        wait_for(lambda: one(admin, "SELECT status FROM pgmart.check_results WHERE name = 'layers_access' ORDER BY run_at DESC LIMIT 1") == "fail",
                 what="a failing access check")
        alert = one(admin, "SELECT payload FROM pgmart.open_alerts WHERE source_kind = 'check' AND source_name = 'layers_access'")
        assert alert and alert["failing_rows"] == 3, alert
        # create_layers repairs what it manages (bi); another role's grant is reported, not revoked.
        fixed = rows(admin, "SELECT change, statement FROM pgmart.create_layers()")
        assert fixed == [("revoke", 'REVOKE USAGE ON SCHEMA "raw" FROM "bi" CASCADE'),
                         ("revoke", 'REVOKE SELECT ON TABLE raw.events FROM "bi" CASCADE')], fixed
        assert [r[0] for r in rows(admin, "SELECT role FROM pgmart.access_report() WHERE violation")] == ["analyst2"]
        admin.execute("REVOKE INSERT ON mart.orders FROM analyst2")
        wait_for(lambda: one(admin, "SELECT count(*) FROM pgmart.open_alerts WHERE source_name = 'layers_access'") == 0,
                 what="the alert resolved")
        admin.execute("SELECT pgmart.drop_check('layers_access')")


def test_pii_columns_are_kept_from_bi(cluster, stack):
    with cluster.connect(user="dbt") as dbt:
        assert one(dbt, "SELECT pgmart.label_pii('mart.orders', ARRAY['email'])") == 1
    with cluster.connect(user="analyst") as bi:
        assert sqlstate(bi, "SELECT email FROM mart.orders") == "42501"
        assert one(bi, "SELECT count(tenant_id) FROM mart.orders") == 3
    with cluster.connect() as admin:
        assert rows(admin, "SELECT * FROM pgmart.create_layers()") == []
        # A view exposing it, and a grant put back by hand: both flagged.
        admin.execute("CREATE VIEW mart.emails AS SELECT email FROM mart.orders")
        admin.execute("ALTER VIEW mart.emails OWNER TO transform")
        admin.execute("GRANT SELECT ON mart.orders TO bi")
        bad = rows(admin, "SELECT object, column_name, reason FROM pgmart.access_report() WHERE violation ORDER BY 1")
        assert [(r[0], r[1]) for r in bad] == [("mart.emails", None), ("mart.orders", "email")], bad
        assert "PII column" in bad[0][2] and "PII column readable" in bad[1][2]
        admin.execute("DROP VIEW mart.emails")
        fixed = rows(admin, "SELECT statement FROM pgmart.create_layers()")
        assert fixed == [('REVOKE SELECT ON TABLE mart.orders FROM "bi" CASCADE',),
                         ('GRANT SELECT ("tenant_id", "amount", "at") ON TABLE mart.orders TO "bi"',)], fixed
    # Only the owner labels.
    with cluster.connect(user="analyst") as bi:
        assert sqlstate(bi, "SELECT pgmart.unlabel_pii('mart.orders', ARRAY['email'])") == "42501"
        assert sqlstate(bi, "SELECT pgmart.label_client_facing('mart.orders', false)") == "42501"


def test_tenant_isolation_with_two_tenants(cluster, stack):
    with cluster.connect(user="dbt") as dbt:
        dbt.execute("CREATE TABLE mart.tenant_orders (tenant_id int, amount numeric, at timestamptz DEFAULT now())")
        dbt.execute("CREATE INDEX ON mart.tenant_orders (tenant_id)")
        dbt.execute("INSERT INTO mart.tenant_orders (tenant_id, amount) VALUES (1, 10), (1, 5), (2, 100)")
        done = rows(dbt, "SELECT change FROM pgmart.isolate_tenants('mart.tenant_orders', 'tenant_id')")
        assert [r[0] for r in done] == ["enable row level security", "force row level security", "create policy",
                                        "create policy", "label client_facing"], done
        assert rows(dbt, "SELECT * FROM pgmart.isolate_tenants('mart.tenant_orders', 'tenant_id')") == []
        # The owner (transform) still reads and writes every row under FORCE.
        dbt.execute("INSERT INTO mart.tenant_orders (tenant_id, amount) VALUES (2, 1)")
        assert one(dbt, "SELECT count(*) FROM mart.tenant_orders") == 4
        dbt.execute("SELECT pgmart.register_metric('tenant_revenue', 'mart.tenant_orders', 'sum(amount)', 'at', 'finance', 'Revenue per tenant')")
        dbt.execute("CREATE VIEW mart.tenant_orders_v WITH (security_invoker = true) AS SELECT * FROM mart.tenant_orders")
    sessions = {}
    for tenant, user in ((1, "analyst"), (2, "analyst2")):
        conn = cluster.connect(user=user)
        sessions[tenant] = conn
        assert one(conn, "SELECT count(*) FROM mart.tenant_orders") == 0  # no setting: no rows
        conn.execute("SELECT set_config('app.tenant_id', %s, false)", (str(tenant),))
    try:
        assert one(sessions[1], "SELECT sum(amount) FROM mart.tenant_orders") == 15
        assert one(sessions[2], "SELECT sum(amount) FROM mart.tenant_orders") == 101
        assert one(sessions[1], "SELECT array_agg(DISTINCT tenant_id) FROM mart.tenant_orders_v") == [1]
        # metric_values runs as the reader: the policy applies to it.
        mv = "SELECT sum(value) FROM pgmart.metric_values('tenant_revenue', now() - interval '2 days', now() + interval '1 day')"
        assert one(sessions[1], mv) == 15
        assert one(sessions[2], mv) == 101
        assert one(sessions[2], "SELECT sum(value) FROM pgmart_metrics.tenant_revenue") == 101
        sessions[1].execute("RESET app.tenant_id")  # the empty string: still no rows, no error
        assert one(sessions[1], "SELECT count(*) FROM mart.tenant_orders") == 0
        assert one(sessions[1], mv) in (None, 0)
    finally:
        for s in sessions.values():
            s.close()
    with cluster.connect() as admin:
        assert rows(admin, "SELECT count(*) FROM pgmart.access_report() WHERE violation") == [(0,)]
        # A view that reads as its owner would show every tenant: flagged; and so is a table
        # labelled client-facing without forced row-level security.
        admin.execute("CREATE VIEW mart.tenant_orders_owner AS SELECT * FROM mart.tenant_orders")
        admin.execute("ALTER VIEW mart.tenant_orders_owner OWNER TO transform")
        admin.execute("ALTER TABLE mart.tenant_orders NO FORCE ROW LEVEL SECURITY")
        bad = rows(admin, "SELECT object, privilege FROM pgmart.access_report() WHERE violation ORDER BY 1")
        assert bad == [("mart.tenant_orders", "ROW LEVEL SECURITY"), ("mart.tenant_orders_owner", "SELECT")], bad
        admin.execute("DROP VIEW mart.tenant_orders_owner")
    with cluster.connect(user="dbt") as dbt:
        assert rows(dbt, "SELECT change FROM pgmart.isolate_tenants('mart.tenant_orders', 'tenant_id')") == [("force row level security",)]


def test_the_report_shows_each_caller_only_its_part(cluster, stack):
    with cluster.connect() as admin:
        admin.execute("CREATE ROLE stranger LOGIN")
        admin.execute("SELECT * FROM pgmart.grant_access('stranger', 'user')")
        admin.execute("GRANT USAGE ON SCHEMA raw TO bi")  # a violation about bi
        total = one(admin, "SELECT count(*) FROM pgmart.access_report()")
    try:
        with cluster.connect(user="stranger") as s:
            assert one(s, "SELECT count(*) FROM pgmart.access_report()") == 0
            assert one(s, "SELECT count(*) FROM pgmart.layers") == 0
            assert one(s, "SELECT count(*) FROM pgmart.access_labels") == 0
        with cluster.connect(user="analyst") as bi:
            seen = rows(bi, "SELECT DISTINCT role FROM pgmart.access_report()")
            assert seen == [("bi",)], seen
            assert one(bi, "SELECT count(*) FROM pgmart.access_report() WHERE violation") == 1
        with cluster.connect(user="dbt") as dbt:
            n = one(dbt, "SELECT count(*) FROM pgmart.access_report()")
            assert 0 < n < total
    finally:
        with cluster.connect() as admin:
            admin.execute("REVOKE USAGE ON SCHEMA raw FROM bi")


def test_a_caller_without_createrole_is_told_and_nothing_changes(cluster):
    cluster.createdb("layers_nocr")
    cluster.sql("CREATE ROLE plain LOGIN", dbname="layers_nocr")
    cluster.sql("GRANT CREATE ON DATABASE layers_nocr TO plain", dbname="layers_nocr")
    cluster.sql("GRANT USAGE ON SCHEMA pgmart TO plain", dbname="layers_nocr")
    with cluster.connect("layers_nocr", user="plain") as p:
        with pytest.raises(psycopg.Error) as e:
            p.execute("SELECT * FROM pgmart.create_layers('n_raw', 'n_staging', 'n_mart', 'n_ingest', 'n_transform', 'n_bi')")
        assert e.value.sqlstate == "42501" and "CREATEROLE" in e.value.diag.message_primary, str(e.value)
        assert e.value.diag.message_hint
        assert one(p, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'n\\_%'") == 0
    assert cluster.one("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'n\\_%'") == 0


@pytest.mark.skipif(PG_VERSION < 16, reason="CREATEROLE administers only the roles it created from PostgreSQL 16")
def test_a_createrole_non_superuser_cannot_adopt_what_is_not_theirs(cluster, stack):
    db = "layers_cr"
    cluster.createdb(db)
    cluster.sql("CREATE ROLE crdba LOGIN CREATEROLE", dbname=db)
    cluster.sql(f"GRANT CREATE ON DATABASE {db} TO crdba", dbname=db)
    cluster.sql("GRANT USAGE ON SCHEMA pgmart TO crdba", dbname=db)
    cluster.sql("CREATE SCHEMA theirs", dbname=db)  # owned by postgres
    with cluster.connect(db, user="crdba") as dba:
        # Someone else's schema.
        assert sqlstate(dba, "SELECT * FROM pgmart.create_layers('theirs', 'c_staging', 'c_mart', 'c_ingest', 'c_transform', 'c_bi')") == "42501"
        # Someone else's roles (bi, transform: made by postgres for database postgres).
        with pytest.raises(psycopg.Error) as e:
            dba.execute("SELECT * FROM pgmart.create_layers('c_raw', 'c_staging', 'c_mart', 'c_ingest', 'transform', 'c_bi')")
        assert e.value.sqlstate == "42501" and "administer" in e.value.diag.message_primary, str(e.value)
        assert one(dba, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'c\\_%'") == 0
        # Its own roles, but without their rights it cannot set their default privileges: told how.
        with pytest.raises(psycopg.Error) as e:
            dba.execute("SELECT * FROM pgmart.create_layers('c_raw', 'c_staging', 'c_mart', 'c_ingest', 'c_transform', 'c_bi')")
        assert e.value.sqlstate == "42501" and "createrole_self_grant" in (e.value.diag.message_hint or ""), str(e.value)
        assert one(dba, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'c\\_%'") == 0
        # The way that works: it administers and inherits the roles it creates.
        dba.execute("SET createrole_self_grant = 'set, inherit'")
        said = notices(dba)
        done = rows(dba, "SELECT change FROM pgmart.create_layers('c_raw', 'c_staging', 'c_mart', 'c_ingest', 'c_transform', 'c_bi')")
        assert len(done) > 10
        # Not the owner of pgmart: the BI surface is not its to give (a warning says who may).
        assert any("grant_access" in n for n in said), said
        assert one(dba, "SELECT has_schema_privilege('c_bi', 'pgmart', 'USAGE')") is False
        assert rows(dba, "SELECT * FROM pgmart.create_layers('c_raw', 'c_staging', 'c_mart', 'c_ingest', 'c_transform', 'c_bi')") == []
        # Nothing of postgres's stack changed.
        assert one(dba, "SELECT count(*) FROM pgmart.layers") == 1
    with cluster.connect() as admin:
        assert rows(admin, "SELECT * FROM pgmart.create_layers()") == []


def test_hostile_identifiers_and_search_path(cluster):
    db = "layers_hostile"
    cluster.createdb(db)
    with cluster.connect(db) as c:
        # Traps: any pgmart statement resolving a name through the caller's path would hit one.
        c.execute("CREATE SCHEMA trap")
        c.execute("CREATE TABLE trap.hits (what text)")
        c.execute("GRANT ALL ON SCHEMA trap TO PUBLIC")
        c.execute("GRANT ALL ON trap.hits TO PUBLIC")
        for fn, args in (("quote_ident", "text"), ("has_table_privilege", "text, oid, text"), ("has_schema_privilege", "text, oid, text"),
                         ("lower", "text"), ("split_part", "text, text, integer"), ("current_setting", "text, boolean"),
                         ("format_type", "oid, integer"), ("pg_get_expr", "pg_node_tree, oid")):
            c.execute(f"CREATE FUNCTION trap.{fn}({args}) RETURNS text LANGUAGE sql AS $$ INSERT INTO trap.hits VALUES ('{fn}') RETURNING 'x' $$")
        c.execute("CREATE TEMP TABLE pg_class (oid oid)")
        c.execute("SET search_path = trap, pg_temp, pg_catalog, public")
        s, r = 'we"ird; DROP SCHEMA public; --', 'R o"le'
        done = rows(c, "SELECT * FROM pgmart.create_layers(%s, %s, %s, %s, %s, %s)",
                    (s + "raw", s + "stg", s + "mart", r + "ing", r + "tr", r + "bi"))
        assert len(done) > 10
        assert rows(c, "SELECT * FROM pgmart.create_layers(%s, %s, %s, %s, %s, %s)",
                    (s + "raw", s + "stg", s + "mart", r + "ing", r + "tr", r + "bi")) == []
        c.execute(f'CREATE TABLE "{s.replace(chr(34), chr(34) * 2)}mart"."t""x" ("tenant ""id" int, "e-mail" text)')
        t = '"{}mart"."t""x"'.format(s.replace('"', '""'))
        assert one(c, "SELECT pgmart.label_pii(%s::regclass, ARRAY['e-mail'])", (t,)) == 1
        assert len(rows(c, "SELECT * FROM pgmart.isolate_tenants(%s::regclass, 'tenant \"id', 'app.tenant')", (t,))) == 5
        assert one(c, "SELECT count(*) FROM pgmart.access_report() WHERE violation") == 0
        c.execute("SET search_path = trap, pg_temp, pg_catalog, public")
        assert one(c, "SELECT count(*) FROM trap.hits") == 0
        assert one(c, "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = 'public'") == 1
        assert one(c, "SELECT pg_catalog.has_column_privilege(%s, %s::pg_catalog.regclass, 'e-mail', 'SELECT')", (r + "bi", t)) is False
        assert sqlstate(c, "SELECT * FROM pgmart.isolate_tenants(%s::regclass, 'tenant \"id', 'x''); DROP TABLE trap.hits; --')", (t,)) == "22023"
