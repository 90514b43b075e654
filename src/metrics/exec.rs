//! Metric contracts against PostgreSQL: validation by planning, the protection view, versions,
//! and the SQL of `metric_values`. Catalog reads and writes run as the catalog owner; the user's
//! expression and filter are planned as the caller.

use super::plan::{self, Definition, Request, TimeKind};
use crate::error::{OrRaise, PgMartError};
use crate::sql::{self, Caught};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use serde::Deserialize;

/// What `register_metric` was given.
pub struct NewMetric<'a> {
    pub name: &'a str,
    pub source: pg_sys::Oid,
    pub expression: &'a str,
    pub time_column: &'a str,
    pub owner: &'a str,
    pub description: &'a str,
    pub dimensions: Vec<String>,
    pub filter: Option<&'a str>,
    pub grain: &'a str,
    pub allow_duplicate: bool,
}

#[derive(Deserialize)]
struct SourceInfo {
    relkind: String,
    owned: bool,
    nspname: String,
    relname: String,
    qualified: String,
}

/// A catalog row.
#[derive(Deserialize, Debug, Clone)]
pub struct Stored {
    pub name: String,
    pub version: i32,
    pub source_oid: u32,
    pub source: String,
    pub expression: String,
    pub filter: Option<String>,
    pub time_column: String,
    pub time_kind: String,
    pub dimensions: Vec<String>,
    pub grain: String,
    pub owner: String,
    pub description: String,
    pub normalized: String,
    pub registered_by: String,
    pub deprecated: bool,
    pub replaced_by: Option<String>,
}

impl Stored {
    pub fn definition(&self) -> Definition {
        Definition {
            name: self.name.clone(),
            source: self.source.clone(),
            expression: self.expression.clone(),
            filter: self.filter.clone(),
            time_column: self.time_column.clone(),
            dimensions: self.dimensions.clone(),
            grain: self.grain.clone(),
            owner: self.owner.clone(),
            description: self.description.clone(),
        }
    }
    fn kind(&self) -> TimeKind {
        match self.time_kind.as_str() {
            "Timestamp" => TimeKind::Timestamp,
            "Date" => TimeKind::Date,
            _ => TimeKind::Timestamptz,
        }
    }
}

const STORED_SELECT: &str = "SELECT name, version, source::oid::bigint AS source_oid, \
     coalesce((SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                WHERE c.oid = source), source::oid::text) AS source, expression, \
     filter, time_column::text AS time_column, time_kind, dimensions, grain, owner, description, normalized, \
     registered_by::text AS registered_by, deprecated_at IS NOT NULL AS deprecated, replaced_by FROM pgmart.metric";

pub fn load(name: &str) -> Option<Stored> {
    sql::as_catalog_owner(|| sql::row::<Stored>(&format!("{STORED_SELECT} WHERE name = $1"), &[name.into()]))
}

fn load_or_raise(name: &str) -> Stored {
    load(name).unwrap_or_else(|| {
        PgMartError::undefined_object(format!("metric \"{name}\" does not exist"))
            .hint("See SELECT name FROM pgmart.metrics.")
            .raise()
    })
}

/// The caller may change a metric if it owns its source table, or is a member of the role that
/// registered it (a superuser may always).
fn check_may_change(m: &Stored) {
    let owns_source = sql::one::<bool>(
        "SELECT pg_catalog.pg_has_role(relowner, 'USAGE') FROM pg_catalog.pg_class WHERE oid = $1::oid",
        &[(m.source_oid as i64).into()],
    )
    .unwrap_or(false);
    let caller = sql::current_role();
    if !owns_source && !sql::can_act_as(&caller, &m.registered_by) {
        PgMartError::privilege(format!("role \"{caller}\" may not change metric \"{}\"", m.name))
            .detail(format!("Only the owner of {} or a member of \"{}\" may.", m.source, m.registered_by))
            .raise();
    }
}

/// Map an ERROR from planning a user fragment to a clear pgmart error.
fn fragment_error(what: &str, text: &str, c: Caught) -> PgMartError {
    let e = match c.sqlstate.as_str() {
        "42703" => PgMartError::undefined_column(format!("metric {what} uses an unknown column: {}", c.message)),
        "42P01" => PgMartError::undefined_table(format!("metric {what}: {}", c.message)),
        "42501" => PgMartError::privilege(format!("metric {what}: {}", c.message)),
        "42803" if what == "expression" => PgMartError::invalid("metric expression is not an aggregate")
            .hint("Every column must be inside an aggregate, e.g. sum(amount), count(*), count(DISTINCT customer_id)."),
        "42804" if what == "filter" => PgMartError::invalid("metric filter is not a boolean expression"),
        _ => PgMartError::invalid(format!("invalid metric {what}: {}", c.message)),
    };
    let detail = match c.detail {
        Some(d) => format!("{what}: {text}\n{d}"),
        None => format!("{what}: {text}"),
    };
    e.detail(detail)
}

fn plan_checks(m: &NewMetric) -> (String, Option<String>) {
    plan::check_name(m.name).or_raise();
    plan::check_text("owner", m.owner).or_raise();
    plan::check_text("description", m.description).or_raise();
    plan::check_grain(m.grain).or_raise();
    plan::check_dimensions(&m.dimensions).or_raise();
    let expr = plan::check_fragment("expression", m.expression).or_raise();
    let filter = match m.filter {
        Some(f) if !f.trim().is_empty() => Some(plan::check_fragment("filter", f).or_raise()),
        _ => None,
    };
    (expr, filter)
}

/// Register or re-register a metric; returns its current version.
pub fn register(m: NewMetric) -> i32 {
    let (expr, filter) = plan_checks(&m);
    let src = sql::row::<SourceInfo>(
        "SELECT c.relkind::text AS relkind, pg_catalog.pg_has_role(c.relowner, 'USAGE') AS owned, \
                n.nspname::text AS nspname, c.relname::text AS relname, \
                pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) AS qualified \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
        &[m.source.into()],
    )
    .unwrap_or_else(|| PgMartError::undefined_table("metric source does not exist").raise());
    if !["r", "p", "v", "m", "f"].contains(&src.relkind.as_str()) {
        PgMartError::invalid(format!("metric source {}.{} is not a table or view", src.nspname, src.relname)).raise();
    }
    let source_sql = format!("{}.{}", plan::quote_identifier(&src.nspname), plan::quote_identifier(&src.relname));
    let caller = sql::current_role();
    if !src.owned {
        PgMartError::privilege(format!("role \"{caller}\" may not register a metric on {source_sql}"))
            .detail("Only the owner of the source table may register metrics on it.")
            .raise();
    }
    // Time column and dimensions: real columns; the time column a date or timestamp.
    let col_type = |col: &str| {
        sql::one::<String>(
            "SELECT pg_catalog.format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END, NULL) \
               FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
              WHERE a.attrelid = $1 AND a.attname = $2::name AND a.attnum > 0 AND NOT a.attisdropped",
            &[m.source.into(), col.into()],
        )
    };
    let ttype = col_type(m.time_column).unwrap_or_else(|| {
        PgMartError::undefined_column(format!("column \"{}\" of {source_sql} does not exist", m.time_column)).raise()
    });
    let kind = TimeKind::from_type_name(&ttype).unwrap_or_else(|| {
        PgMartError::invalid(format!("time column \"{}\" is {ttype}, not a date or timestamp", m.time_column))
            .hint("Use a date, timestamp or timestamptz column.")
            .raise()
    });
    if kind == TimeKind::Date && m.grain == "hour" {
        PgMartError::invalid("grain hour needs a timestamp time column, not a date").raise();
    }
    for d in &m.dimensions {
        if col_type(d).is_none() {
            PgMartError::undefined_column(format!("dimension column \"{d}\" of {source_sql} does not exist")).raise();
        }
    }

    // One registration of a name at a time.
    sql::exec("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgmart.metric:' || $1))", &[m.name.into()]);

    // Plan the expression and filter as the caller: they must be an aggregate and a boolean.
    #[derive(Deserialize)]
    struct Probe {
        rows: i32,
        typ: Option<String>,
    }
    let probe_q = sql::subtransaction(|| {
        sql::row::<Probe>(
            &format!(
                "SELECT coalesce(pg_catalog.jsonb_array_length(pg_catalog.jsonb_agg(q.value)), 0) AS rows, min(q.typ) AS typ \
                   FROM (SELECT (({expr}))::numeric AS value, pg_catalog.pg_typeof(({expr}))::text AS typ \
                           FROM {source_sql} AS m WHERE false) q"
            ),
            &[],
        )
    })
    .unwrap_or_else(|c| fragment_error("expression", &expr, c).raise())
    .expect("probe row");
    if probe_q.rows != 1 {
        PgMartError::invalid("metric expression is not an aggregate")
            .detail(format!("expression: {expr}"))
            .hint("Use an aggregate over the source's columns, e.g. sum(amount), count(*), count(DISTINCT customer_id).")
            .raise();
    }
    let typ = probe_q.typ.unwrap_or_default();
    if !["smallint", "integer", "bigint", "numeric", "real", "double precision"].contains(&typ.as_str()) {
        PgMartError::invalid(format!("metric expression yields {typ}, not a number"))
            .detail(format!("expression: {expr}"))
            .raise();
    }
    if let Some(f) = &filter {
        sql::subtransaction(|| {
            sql::one::<i64>(&format!("SELECT count(*) FROM {source_sql} AS m WHERE false AND ({f})"), &[])
        })
        .unwrap_or_else(|c| fragment_error("filter", f, c).raise());
    }

    // Which columns they use, that they read nothing else, and the normalized definition: from a
    // probe view, deparsed by PostgreSQL.
    let where_sql = filter.as_ref().map(|f| format!(" WHERE ({f})")).unwrap_or_default();
    let probe = format!("{}.{}", plan::quote_identifier(plan::VIEW_SCHEMA), plan::quote_identifier(format!("_probe_{}", m.name)));
    #[derive(Deserialize)]
    struct Dep {
        relid: u32,
        relname: String,
        attname: Option<String>,
    }
    let (deps, normalized) = sql::as_catalog_owner(|| {
        sql::exec(
            &format!("CREATE VIEW {probe} AS SELECT (({expr}))::numeric AS value FROM {source_sql} AS m{where_sql}"),
            &[],
        );
        let deps = sql::rows::<Dep>(
            &format!(
                "SELECT DISTINCT d.refobjid::bigint AS relid, d.refobjid::regclass::text AS relname, a.attname::text AS attname, a.attnum \
                   FROM pg_catalog.pg_rewrite r \
                   JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
                        AND d.refclassid = 'pg_catalog.pg_class'::regclass \
                   LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid AND d.refobjsubid > 0 \
                  WHERE r.ev_class = '{probe}'::regclass AND d.refobjid <> '{probe}'::regclass ORDER BY 1, 4"
            ),
            &[],
        );
        sql::set_local("search_path", "pg_catalog");
        let def = sql::one::<String>(&format!("SELECT pg_catalog.pg_get_viewdef('{probe}'::regclass, false)"), &[])
            .unwrap_or_default();
        sql::exec(&format!("DROP VIEW {probe}"), &[]);
        (deps, format!("{} | time column {}", def.trim(), m.time_column))
    });
    if let Some(other) = deps.iter().find(|d| d.relid != u32::from(m.source)) {
        PgMartError::invalid(format!("metric expression and filter may only read {source_sql}, not {}", other.relname))
            .hint("Register the metric on a view that joins what it needs.")
            .raise();
    }
    let mut columns = vec![m.time_column.to_string()];
    for c in m.dimensions.iter().cloned().chain(deps.into_iter().filter_map(|d| d.attname)) {
        if !columns.contains(&c) {
            columns.push(c);
        }
    }

    let new_def = Definition {
        name: m.name.into(),
        source: src.qualified.clone(),
        expression: expr.clone(),
        filter: filter.clone(),
        time_column: m.time_column.into(),
        dimensions: m.dimensions.clone(),
        grain: m.grain.into(),
        owner: m.owner.trim().into(),
        description: m.description.trim().into(),
    };
    let existing = load(m.name);
    if let Some(old) = &existing {
        check_may_change(old);
        if old.normalized == normalized
            && old.source_oid == u32::from(m.source)
            && old.dimensions == new_def.dimensions
            && old.grain == new_def.grain
            && old.owner == new_def.owner
            && old.description == new_def.description
        {
            return old.version;
        }
    }
    if !m.allow_duplicate {
        let dup = sql::as_catalog_owner(|| {
            sql::one::<String>(
                "SELECT name FROM pgmart.metric WHERE normalized = $1 AND name <> $2 ORDER BY name LIMIT 1",
                &[normalized.as_str().into(), m.name.into()],
            )
        });
        if let Some(d) = dup {
            PgMartError::duplicate(format!("metric \"{}\" has the same definition as existing metric \"{d}\"", m.name))
                .detail("Two metrics with one definition drift apart; use the existing one.")
                .hint("Pass allow_duplicate => true to register it anyway.")
                .raise();
        }
    }

    let summary = match &existing {
        Some(old) => plan::change_summary(&old.definition(), &new_def),
        None => "registered".to_string(),
    };
    let def_json = serde_json::to_value(&new_def).expect("definition json");
    let kind_text = format!("{kind:?}");
    let view_ddl = plan::view_ddl(m.name, &source_sql, &columns);
    let view = plan::view_qualified(m.name);
    let comment = view_comment(m.name, &new_def.owner, None);
    sql::as_catalog_owner(|| {
        sql::exec(&format!("DROP VIEW IF EXISTS {view}"), &[]);
        sql::exec(&view_ddl, &[]);
        sql::exec(&format!("COMMENT ON VIEW {view} IS {}", plan::quote_literal(&comment)), &[]);
        sql::exec(&format!("GRANT SELECT ON {view} TO PUBLIC"), &[]);
        let version = sql::one::<i32>(
            "SELECT coalesce(max(version), 0) + 1 FROM pgmart.metric_versions WHERE name = $1",
            &[m.name.into()],
        )
        .unwrap_or(1);
        sql::exec(
            "INSERT INTO pgmart.metric AS t (name, version, source, expression, filter, time_column, time_kind, dimensions, \
                                        grain, owner, description, normalized, registered_by) \
             VALUES ($1, $2, $3::oid::regclass, $4, $5, $6::name, $7, $8, $9, $10, $11, $12, $13::name) \
             ON CONFLICT (name) DO UPDATE SET version = excluded.version, source = excluded.source, \
                 expression = excluded.expression, filter = excluded.filter, time_column = excluded.time_column, \
                 time_kind = excluded.time_kind, dimensions = excluded.dimensions, grain = excluded.grain, \
                 owner = excluded.owner, description = excluded.description, normalized = excluded.normalized, \
                 changed_at = now(), deprecated_at = NULL, replaced_by = NULL",
            &[
                m.name.into(),
                version.into(),
                (u32::from(m.source) as i64).into(),
                expr.as_str().into(),
                filter.clone().into(),
                m.time_column.into(),
                kind_text.as_str().into(),
                m.dimensions.clone().into(),
                m.grain.into(),
                new_def.owner.as_str().into(),
                new_def.description.as_str().into(),
                normalized.as_str().into(),
                caller.as_str().into(),
            ],
        );
        sql::exec(
            "INSERT INTO pgmart.metric_versions (name, version, definition, changed_by, change_summary) \
             VALUES ($1, $2, $3, $4::name, $5)",
            &[m.name.into(), version.into(), pgrx::JsonB(def_json).into(), caller.as_str().into(), summary.as_str().into()],
        );
        version
    })
}

fn view_comment(name: &str, owner: &str, replaced_by: Option<Option<&str>>) -> String {
    let mut c = format!(
        "pgmart metric \"{name}\" (owner: {owner}) uses exactly these columns; PostgreSQL refuses to drop them while the metric exists. Re-register or drop the metric (pgmart.drop_metric) first."
    );
    match replaced_by {
        Some(Some(r)) => c.push_str(&format!(" DEPRECATED: use metric \"{r}\".")),
        Some(None) => c.push_str(" DEPRECATED."),
        None => {}
    }
    c
}

pub fn deprecate(name: &str, replaced_by: Option<&str>) {
    let m = load_or_raise(name);
    check_may_change(&m);
    let replaced_by = replaced_by.map(str::trim).filter(|r| !r.is_empty());
    if let Some(r) = replaced_by {
        if r == name {
            PgMartError::invalid(format!("metric \"{name}\" cannot replace itself")).raise();
        }
        if load(r).is_none() {
            PgMartError::undefined_object(format!("replacement metric \"{r}\" does not exist")).raise();
        }
    }
    let comment = view_comment(name, &m.owner, Some(replaced_by));
    sql::as_catalog_owner(|| {
        sql::exec(
            "UPDATE pgmart.metric SET deprecated_at = now(), replaced_by = $2 WHERE name = $1",
            &[name.into(), replaced_by.into()],
        );
        if sql::one::<bool>("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[plan::view_qualified(name).into()]) == Some(true) {
            sql::exec(
                &format!("COMMENT ON VIEW {} IS {}", plan::view_qualified(name), plan::quote_literal(&comment)),
                &[],
            );
        }
    });
}

pub fn drop_metric(name: &str) {
    let m = load_or_raise(name);
    check_may_change(&m);
    sql::as_catalog_owner(|| {
        sql::exec(&format!("DROP VIEW IF EXISTS {}", plan::view_qualified(name)), &[]);
        sql::exec("DELETE FROM pgmart.metric WHERE name = $1", &[name.into()]);
        sql::exec("UPDATE pgmart.metric SET replaced_by = NULL WHERE replaced_by = $1", &[name.into()]);
    });
}

#[derive(Deserialize)]
struct Bounds {
    finite: bool,
    ordered: bool,
    seconds: f64,
    from_text: String,
    to_text: String,
}

/// The exact SQL `metric_values` runs, with literals for every value.
pub fn values_sql(
    name: &str,
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    grain: Option<&str>,
    dimensions: Option<Vec<String>>,
    timezone: Option<&str>,
) -> String {
    let m = load_or_raise(name);
    if sql::one::<bool>("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[plan::view_qualified(name).into()]) != Some(true) {
        PgMartError::state(format!("metric \"{name}\" lost its protection view (was its source dropped with CASCADE?)"))
            .hint("Re-register the metric with pgmart.register_metric, or drop it with pgmart.drop_metric.")
            .raise();
    }
    if m.deprecated {
        match &m.replaced_by {
            Some(r) => notice!("metric \"{name}\" is deprecated: use metric \"{r}\" instead"),
            None => notice!("metric \"{name}\" is deprecated"),
        }
    }
    let grain = grain.map(str::trim).filter(|g| !g.is_empty()).unwrap_or(&m.grain).to_string();
    plan::check_grain(&grain).or_raise();
    if grain == "hour" && m.kind() == TimeKind::Date {
        PgMartError::invalid(format!("metric \"{name}\" has a date time column: grain hour is not available")).raise();
    }
    let dimensions = dimensions.unwrap_or_default();
    plan::check_dimensions(&dimensions).or_raise();
    for d in &dimensions {
        if !m.dimensions.contains(d) {
            PgMartError::invalid(format!("\"{d}\" is not a dimension of metric \"{name}\""))
                .detail(format!("Its dimensions: {}", if m.dimensions.is_empty() { "(none)".into() } else { m.dimensions.join(", ") }))
                .raise();
        }
    }
    let timezone = timezone.map(str::trim).filter(|t| !t.is_empty()).unwrap_or("UTC").to_string();
    if sql::subtransaction(|| sql::one::<TimestampWithTimeZone>("SELECT pg_catalog.now() AT TIME ZONE $1 AT TIME ZONE 'UTC'", &[timezone.as_str().into()])).is_err() {
        PgMartError::invalid(format!("unknown time zone \"{timezone}\"")).hint("Use an IANA name such as Europe/Paris, or UTC.").raise();
    }
    let (Some(from_ts), Some(to_ts)) = (from_ts, to_ts) else {
        PgMartError::invalid("from_ts and to_ts must not be NULL").raise();
    };
    let b = sql::row::<Bounds>(
        "SELECT pg_catalog.isfinite($1::timestamptz) AND pg_catalog.isfinite($2::timestamptz) AS finite, \
                $1::timestamptz < $2::timestamptz AS ordered, \
                CASE WHEN pg_catalog.isfinite($1::timestamptz) AND pg_catalog.isfinite($2::timestamptz) \
                     THEN extract(epoch FROM $2::timestamptz - $1::timestamptz)::float8 ELSE 0 END AS seconds, \
                coalesce(pg_catalog.to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00', '') AS from_text, \
                coalesce(pg_catalog.to_char($2::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00', '') AS to_text",
        &[from_ts.into(), to_ts.into()],
    )
    .expect("bounds");
    if !b.finite {
        PgMartError::invalid("from_ts and to_ts must be finite").raise();
    }
    if !b.ordered {
        PgMartError::invalid("from_ts must be before to_ts").raise();
    }
    if b.seconds / plan::grain_seconds(&grain) > plan::MAX_BUCKETS {
        PgMartError::invalid(format!("too many {grain} buckets between from_ts and to_ts"))
            .hint("Use a coarser grain or a shorter range.")
            .raise();
    }
    let req = Request { from_ts: b.from_text, to_ts: b.to_text, grain, dimensions, timezone };
    plan::values_sql(&m.definition(), m.kind(), &req)
}
