//! Dashboards: registration (owned through an anchor, like every registration), and the lineage,
//! impact and Mermaid answers, all read as the caller through pgmart's security-barrier views.

use super::plan;
use crate::error::{OrRaise, PgMartError};
use crate::sql;
use pgrx::prelude::*;
use serde::Deserialize;

pub struct NewDashboard<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub description: &'a str,
    pub metrics: Vec<String>,
    pub sources: Vec<pg_sys::Oid>,
    pub caveats: Option<&'a str>,
    pub url: Option<&'a str>,
    pub query_pattern: Option<&'a str>,
}

#[derive(Deserialize)]
struct Existing {
    dashboard_id: i64,
    anchor: String,
    owner: Option<u32>,
}

fn load(name: &str) -> Option<Existing> {
    sql::as_catalog_owner(|| {
        sql::row::<Existing>(
            "SELECT d.dashboard_id, d.anchor::pg_catalog.text AS anchor, a.relowner::pg_catalog.int8 AS owner \
               FROM pgmart.dashboard d LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) d.anchor \
              WHERE d.name OPERATOR(pg_catalog.=) $1",
            &[name.into()],
        )
    })
}

/// `pgmart.register_dashboard`: a new dashboard, or a new definition of one of yours.
pub fn register(d: NewDashboard) {
    crate::jobs::api::require_primary("register a dashboard");
    plan::check_name(d.name).or_raise();
    plan::check_required("owner", d.owner).or_raise();
    plan::check_required("description", d.description).or_raise();
    if let Some(url) = d.url {
        plan::check_url(url).or_raise();
    }
    let pattern = d.query_pattern.map(str::trim).filter(|p| !p.is_empty());
    if let Some(p) = pattern {
        if let Err(c) = sql::subtransaction(|| sql::one::<bool>("SELECT '' OPERATOR(pg_catalog.~*) $1", &[p.into()])) {
            PgMartError::new(pgrx::PgSqlErrorCode::ERRCODE_INVALID_REGULAR_EXPRESSION, format!("invalid query_pattern: {}", c.message))
                .hint("query_pattern is a case-insensitive POSIX regular expression matched against pg_stat_statements.query, e.g. 'from mart\\.daily_revenue'.")
                .raise();
        }
    }
    let caller = sql::caller();
    // Sources: tables or views the registrant may read (a dashboard shows only what you could read).
    for &oid in &d.sources {
        let rel = sql::relation(oid).unwrap_or_else(|| PgMartError::undefined_table("dashboard source does not exist").raise());
        if !["r", "p", "v", "m", "f"].contains(&rel.relkind.as_str()) {
            PgMartError::wrong_object_type(format!("dashboard source {} is not a table or view", rel.qualified))
                .hint("List the tables, views and materialized views the dashboard reads.")
                .raise();
        }
        let readable = sql::one::<bool>(
            "SELECT pg_catalog.has_table_privilege($1, $2, 'SELECT')",
            &[caller.into(), oid.into()],
        )
        .unwrap_or(false);
        if !readable {
            PgMartError::privilege(format!("you may not read {}", rel.qualified))
                .detail("A dashboard's sources must be readable by the role that registers it.")
                .raise();
        }
    }
    // Metrics: ones the registrant may use.
    for m in &d.metrics {
        let visible = sql::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pgmart.metrics WHERE name OPERATOR(pg_catalog.=) $1)",
            &[m.as_str().into()],
        )
        .unwrap_or(false);
        if !visible {
            PgMartError::undefined_object(format!("metric \"{m}\" does not exist"))
                .hint("List the metrics the dashboard shows by name; see pgmart.metrics.")
                .raise();
        }
    }
    sql::exec(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgmart.dashboard:' OPERATOR(pg_catalog.||) $1))",
        &[d.name.into()],
    );
    let sources: Vec<pg_sys::Oid> = d.sources.clone();
    let args = |id: i64| -> Vec<pgrx::datum::DatumWithOid<'static>> {
        vec![
            d.name.to_string().into(),
            d.owner.trim().to_string().into(),
            d.description.trim().to_string().into(),
            d.metrics.clone().into(),
            sources.clone().into(),
            d.caveats.map(str::to_string).into(),
            d.url.map(|u| u.trim().to_string()).into(),
            pattern.map(str::to_string).into(),
            id.into(),
        ]
    };
    const COLUMNS: &str = "$1, $2, $3, $4::pg_catalog.text[], $5::pg_catalog.oid[]::pg_catalog.regclass[], $6, $7, $8";
    match load(d.name) {
        Some(old) => {
            let owner = old.owner.map(pg_sys::Oid::from);
            if !owner.is_some_and(|o| sql::may_act_as(caller, o)) {
                PgMartError::duplicate(format!("dashboard \"{}\" is already registered by another role", d.name))
                    .hint("Choose another name, or ask its owner (see pgmart.dashboards) to change or drop it.")
                    .raise();
            }
            sql::as_catalog_owner(|| {
                sql::exec(
                    &format!(
                        "UPDATE pgmart.dashboard SET (name, owner, description, metrics, sources, caveats, url, query_pattern, changed_at) \
                           = ({COLUMNS}, pg_catalog.now()) WHERE dashboard_id OPERATOR(pg_catalog.=) $9"
                    ),
                    &args(old.dashboard_id),
                )
            });
            let _ = old.anchor;
            notice!("pgmart: dashboard \"{}\" updated", d.name);
        }
        None => {
            sql::as_catalog_owner(|| {
                let id = sql::one::<i64>("SELECT pg_catalog.nextval('pgmart.dashboard_dashboard_id_seq')", &[])
                    .unwrap_or_else(|| PgMartError::internal("no dashboard id").raise());
                let anchor = crate::owners::create("dashboard", &id.to_string(), caller, &format!("pgmart dashboard {}", d.name));
                let mut a = args(id);
                a.push(anchor.into());
                sql::exec(
                    &format!(
                        "INSERT INTO pgmart.dashboard (name, owner, description, metrics, sources, caveats, url, query_pattern, dashboard_id, anchor) \
                         VALUES ({COLUMNS}, $9, $10::pg_catalog.regclass)"
                    ),
                    &a,
                );
            });
        }
    }
}

/// `pgmart.drop_dashboard`.
pub fn drop_dashboard(name: &str) {
    crate::jobs::api::require_primary("drop a dashboard");
    let old = load(name).unwrap_or_else(|| {
        PgMartError::undefined_object(format!("dashboard \"{name}\" does not exist"))
            .hint("See pgmart.dashboards for the dashboards you may see.")
            .raise()
    });
    if !old.owner.map(pg_sys::Oid::from).is_some_and(|o| sql::may_act_as(sql::caller(), o)) {
        PgMartError::privilege(format!("you may not drop dashboard \"{name}\""))
            .detail("Only the role that registered a dashboard (or one that may act as it) may drop it.")
            .raise();
    }
    forget(&old.dashboard_id.to_string());
    crate::owners::drop(&old.anchor);
}

/// Remove a dashboard whose anchor is gone (DROP OWNED) or that is being dropped.
pub fn forget(id: &str) {
    let Ok(id) = id.parse::<i64>() else { return };
    sql::as_catalog_owner(|| {
        sql::exec("DELETE FROM pgmart.dashboard WHERE dashboard_id OPERATOR(pg_catalog.=) $1", &[id.into()])
    });
}

#[derive(Deserialize)]
pub struct Edge {
    pub upstream: String,
    pub upstream_kind: String,
    pub downstream: String,
    pub downstream_kind: String,
    pub via: String,
    pub direction: Option<String>,
    pub depth: Option<i32>,
}

/// The walk from a node over the edges you may see, each node at its shortest distance.
const WALK: &str = "WITH RECURSIVE e AS MATERIALIZED (SELECT * FROM pgmart._lineage_edge), \
     down(key, depth) AS (SELECT pgmart._node_key($1), 0 \
                          UNION SELECT e.down_key, d.depth OPERATOR(pg_catalog.+) 1 FROM down d \
                                  JOIN e ON e.up_key OPERATOR(pg_catalog.=) d.key WHERE d.depth OPERATOR(pg_catalog.<) 100), \
     up(key, depth) AS (SELECT pgmart._node_key($1), 0 \
                        UNION SELECT e.up_key, u.depth OPERATOR(pg_catalog.+) 1 FROM up u \
                                JOIN e ON e.down_key OPERATOR(pg_catalog.=) u.key WHERE u.depth OPERATOR(pg_catalog.<) 100), \
     dmin AS (SELECT key, pg_catalog.min(depth) AS depth FROM down GROUP BY key), \
     umin AS (SELECT key, pg_catalog.min(depth) AS depth FROM up GROUP BY key)";

/// `pgmart.lineage`: every edge you may see, or those upstream and downstream of one object.
pub fn lineage(object: Option<pg_sys::Oid>) -> Vec<Edge> {
    match object {
        None => sql::rows::<Edge>(
            "SELECT DISTINCT up_name AS upstream, up_kind AS upstream_kind, down_name AS downstream, down_kind AS downstream_kind, \
                    via, NULL::pg_catalog.text AS direction, NULL::pg_catalog.int4 AS depth \
               FROM pgmart._lineage_edge ORDER BY 1, 3",
            &[],
        ),
        Some(oid) => sql::rows::<Edge>(
            &format!(
                "{WALK} \
                 SELECT DISTINCT e.up_name AS upstream, e.up_kind AS upstream_kind, e.down_name AS downstream, e.down_kind AS downstream_kind, \
                        e.via, 'upstream'::pg_catalog.text AS direction, (u.depth OPERATOR(pg_catalog.+) 1)::pg_catalog.int4 AS depth \
                   FROM e JOIN umin u ON u.key OPERATOR(pg_catalog.=) e.down_key \
                 UNION \
                 SELECT e.up_name, e.up_kind, e.down_name, e.down_kind, e.via, 'downstream', (d.depth OPERATOR(pg_catalog.+) 1)::pg_catalog.int4 \
                   FROM e JOIN dmin d ON d.key OPERATOR(pg_catalog.=) e.up_key \
                 ORDER BY direction DESC, depth, upstream, downstream"
            ),
            &[oid.into()],
        ),
    }
}

#[derive(Deserialize)]
pub struct Impacted {
    pub object: String,
    pub kind: String,
    pub depth: i32,
    pub owner: Option<String>,
    pub registered_by: Option<String>,
    pub url: Option<String>,
}

/// `pgmart.impact`: everything downstream of a relation, nearest first, with whom to tell.
pub fn impact(object: pg_sys::Oid) -> Vec<Impacted> {
    sql::rows::<Impacted>(
        &format!(
            "{WALK}, nodes AS (SELECT DISTINCT ON (e.down_key) e.down_key AS key, e.down_name AS name, e.down_kind AS kind FROM e) \
             SELECT n.name AS object, n.kind, d.depth::pg_catalog.int4 AS depth, \
                    CASE n.kind WHEN 'metric' THEN (SELECT m.owner FROM pgmart.metrics m WHERE m.name OPERATOR(pg_catalog.=) n.name) \
                                WHEN 'dashboard' THEN (SELECT x.owner FROM pgmart.dashboards x WHERE x.name OPERATOR(pg_catalog.=) n.name) \
                                ELSE (SELECT pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text FROM pg_catalog.pg_class c \
                                       WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.substr(n.key, 2)::pg_catalog.oid) END AS owner, \
                    CASE n.kind WHEN 'metric' THEN (SELECT m.registered_by::pg_catalog.text FROM pgmart.metrics m WHERE m.name OPERATOR(pg_catalog.=) n.name) \
                                WHEN 'dashboard' THEN (SELECT x.registered_by::pg_catalog.text FROM pgmart.dashboards x WHERE x.name OPERATOR(pg_catalog.=) n.name) END AS registered_by, \
                    CASE n.kind WHEN 'dashboard' THEN (SELECT x.url FROM pgmart.dashboards x WHERE x.name OPERATOR(pg_catalog.=) n.name) END AS url \
               FROM dmin d JOIN nodes n ON n.key OPERATOR(pg_catalog.=) d.key \
              WHERE d.depth OPERATOR(pg_catalog.>) 0 \
              ORDER BY d.depth, n.kind, n.name"
        ),
        &[object.into()],
    )
}

#[derive(Deserialize)]
struct Status {
    object: String,
    kind: String,
    status: String,
}

/// `pgmart.lineage_mermaid`: the lineage as a Mermaid flowchart, each node coloured by its
/// status in pgmart.trust (grey, "unknown", when you may not read pgmart.trust).
pub fn mermaid(object: Option<pg_sys::Oid>) -> String {
    let edges = lineage(object);
    let statuses = if sql::one::<bool>("SELECT pg_catalog.has_table_privilege('pgmart.trust', 'SELECT')", &[]).unwrap_or(false) {
        sql::rows::<Status>("SELECT object, kind, status FROM pgmart.trust", &[])
    } else {
        Vec::new()
    };
    // The focus node: named as in the edges (a rollup's table is a rollup there), else from the catalog.
    let focus = object.map(|oid| {
        let name = sql::one::<String>(
            "SELECT pgmart._relation_name(pgmart._root($1)::pg_catalog.regclass)",
            &[oid.into()],
        )
        .unwrap_or_default();
        let kind = edges
            .iter()
            .find_map(|e| {
                if e.upstream == name {
                    Some(e.upstream_kind.clone())
                } else if e.downstream == name {
                    Some(e.downstream_kind.clone())
                } else {
                    None
                }
            })
            .or_else(|| sql::one::<String>("SELECT pgmart._node_kind(pgmart._root($1))", &[oid.into()]))
            .unwrap_or_default();
        (name, kind)
    });
    let mut graph = plan::Graph::default();
    if let Some((name, kind)) = &focus {
        graph.node(name, kind);
    }
    for e in &edges {
        let a = graph.node(&e.upstream, &e.upstream_kind);
        let b = graph.node(&e.downstream, &e.downstream_kind);
        graph.edge(a, b, &e.via, e.depth.unwrap_or(0));
    }
    for s in statuses {
        graph.set_status(&s.object, &s.kind, &s.status);
    }
    graph.to_mermaid(focus.as_ref().map(|(n, k)| (n.as_str(), k.as_str())))
}
