//! `#[pg_test]`s for dashboards, lineage and trust: registration and its bad input, the lineage
//! graph through views, rollups, metrics and dashboards, impact, trust turning with a check two
//! hops upstream, and the Mermaid text (escaping, shapes, limits).

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::dashboards::plan;
    use crate::testing::{one, sqlstate_of};
    use pgrx::prelude::*;

    fn run(q: &str) {
        Spi::run(q).unwrap();
    }

    fn text(q: &str) -> String {
        one::<String>(q).unwrap_or_default()
    }

    fn stack() {
        run("CREATE TABLE dl_orders (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), status text, amount numeric)");
        run("INSERT INTO dl_orders SELECT g, now() - g * interval '1 hour', 'paid', g FROM generate_series(1, 50) g");
        run("CREATE VIEW dl_stg AS SELECT id, at, status, amount FROM dl_orders WHERE amount > 0");
        run("CREATE MATERIALIZED VIEW dl_daily AS SELECT date_trunc('day', at) AS day, sum(amount) AS revenue FROM dl_stg GROUP BY 1");
        run("SELECT pgmart.register_metric('dl_revenue', 'dl_daily', 'sum(revenue)', 'day', 'finance', 'Revenue per day')");
        run("SELECT pgmart.register_dashboard('Sales overview', 'ana@example.com', 'Daily revenue', \
                    metrics => '{dl_revenue}', sources => '{dl_daily}', url => 'https://bi.example.com/d/1')");
    }

    #[pg_test]
    fn lineage_walks_views_metrics_and_dashboards() {
        stack();
        let down = text(
            "SELECT string_agg(downstream || ':' || downstream_kind || '@' || depth, ',' ORDER BY depth, downstream COLLATE \"C\") \
               FROM pgmart.lineage('dl_orders') WHERE direction = 'downstream'",
        );
        assert_eq!(
            down,
            "public.dl_stg:view@1,public.dl_daily:materialized_view@2,Sales overview:dashboard@3,dl_revenue:metric@3,Sales overview:dashboard@4"
        );
        let up = text(
            "SELECT string_agg(DISTINCT upstream, ',' ORDER BY upstream) FROM pgmart.lineage('dl_daily') WHERE direction = 'upstream'",
        );
        assert_eq!(up, "public.dl_orders,public.dl_stg");
        let impacted = text("SELECT string_agg(object || '/' || coalesce(owner, '-'), ',' ORDER BY depth, object) FROM pgmart.impact('dl_orders')");
        assert_eq!(impacted, "public.dl_stg/postgres,public.dl_daily/postgres,Sales overview/ana@example.com,dl_revenue/finance");
    }

    #[pg_test]
    fn trust_follows_a_check_two_hops_upstream() {
        stack();
        assert_eq!(text("SELECT status FROM pgmart.trust WHERE object = 'Sales overview'"), "ok");
        run("SELECT pgmart.add_check('dl_orders', 'accepted_values', '{status}', '{\"values\": [\"paid\"]}', name => 'dl_status')");
        run("UPDATE dl_orders SET status = 'lost' WHERE id <= 3");
        run("SELECT count(*) FROM pgmart.run_checks('dl_orders')");
        assert_eq!(text("SELECT status FROM pgmart.trust WHERE object = 'Sales overview'"), "fail");
        assert_eq!(
            text("SELECT reasons[1] FROM pgmart.trust WHERE object = 'Sales overview'"),
            "public.dl_orders: check dl_status failed: 3 rows"
        );
        assert_eq!(text("SELECT status FROM pgmart.trust WHERE object = 'dl_revenue'"), "fail");
        run("UPDATE dl_orders SET status = 'paid'");
        run("SELECT count(*) FROM pgmart.run_checks('dl_orders')");
        assert_eq!(text("SELECT status FROM pgmart.trust WHERE object = 'Sales overview'"), "ok");
        run("SELECT pgmart.deprecate_metric('dl_revenue')");
        assert_eq!(text("SELECT status || ' ' || summary FROM pgmart.trust WHERE object = 'Sales overview'"), "warn 1 warning: dl_revenue: deprecated");
    }

    #[pg_test]
    fn dashboard_bad_input_changes_nothing() {
        stack();
        let cases = [
            ("SELECT pgmart.register_dashboard('', 'o', 'd')", "22023"),
            ("SELECT pgmart.register_dashboard('x', '', 'd')", "22023"),
            ("SELECT pgmart.register_dashboard('x', 'o', NULL)", "22004"),
            ("SELECT pgmart.register_dashboard('x', 'o', 'd', metrics => '{nope}')", "42704"),
            ("SELECT pgmart.register_dashboard('x', 'o', 'd', sources => ARRAY[12345::oid::regclass])", "42P01"),
            ("SELECT pgmart.register_dashboard('x', 'o', 'd', url => 'javascript:alert(1)')", "22023"),
            ("SELECT pgmart.register_dashboard('x', 'o', 'd', query_pattern => '(')", "2201B"),
            ("SELECT pgmart.register_dashboard('x', 'o', 'd', sources => '{pg_catalog.pg_type_oid_index}')", "42809"),
            ("SELECT pgmart.drop_dashboard('nope')", "42704"),
            ("SELECT * FROM pgmart.lineage(12345::oid::regclass)", "42P01"),
            ("SELECT * FROM pgmart.impact(NULL)", "22004"),
        ];
        for (q, code) in cases {
            assert_eq!(sqlstate_of(q), code, "{q}");
        }
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.dashboards"), Some(1));
        // Registering again updates; dropping removes it and its anchor.
        run("SELECT pgmart.register_dashboard('Sales overview', 'bob', 'Daily revenue, again')");
        assert_eq!(text("SELECT owner || ' ' || cardinality(sources) FROM pgmart.dashboards"), "bob 0");
        run("SELECT pgmart.drop_dashboard('Sales overview')");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.dashboard"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_class WHERE relname LIKE 'dashboard\\_%' AND relnamespace = 'pgmart_owners'::regnamespace"), Some(0));
    }

    #[pg_test]
    fn mermaid_has_every_node_once_with_its_status() {
        stack();
        let m = text("SELECT pgmart.lineage_mermaid('dl_daily')");
        assert!(m.starts_with("flowchart LR\n"), "{m}");
        assert!(m.contains("public.dl_daily<br>materialized view: ok"), "{m}");
        assert!(m.contains("{{\"Sales overview<br>dashboard: ok\"}}"), "{m}");
        assert_eq!(m.matches("public.dl_orders<br>").count(), 1, "{m}");
        assert!(m.contains("-.->"), "{m}");
        assert!(m.contains("style n0 stroke-width:4px"), "{m}");
    }

    #[pg_test]
    fn mermaid_escapes_and_caps() {
        assert_eq!(plan::escape("a\"b#c<d>&`\ne"), "a#quot;b#35;c#lt;d#gt;#amp;#96;<br>e");
        let mut g = plan::Graph::default();
        let root = g.node("t", "table");
        for i in 0..(plan::MAX_EDGES + 10) {
            let v = g.node(&format!("v{i}"), "view");
            g.edge(root, v, "reads", 1);
        }
        let m = g.to_mermaid(None);
        assert_eq!(m.matches(" --> ").count(), plan::MAX_EDGES);
        assert!(m.contains("%% 10 more edges left out"), "{m}");
        assert!(plan::check_url("https://bi.example.com/d/1").is_ok());
        for bad in ["javascript:alert(1)", "http://", "https:///x", "ftp://x", "https://a b"] {
            assert!(plan::check_url(bad).is_err(), "{bad}");
        }
        assert!(plan::check_name(" x").is_err() && plan::check_name("a\tb").is_err() && plan::check_name("Sales overview").is_ok());
    }
}
