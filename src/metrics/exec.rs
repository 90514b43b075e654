//! Metric contracts against PostgreSQL: validation by planning, the protection view, versions,
//! and the SQL of `metric_values`. Catalog reads and writes run as the catalog owner; the user's
//! expression and filter are planned as the caller.

use super::plan::{self, Definition, Request, TimeKind};
use crate::error::{OrRaise, PgMartError};
use crate::fragment::{self, Fragment, Runs, Shape};
use crate::sql;
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
    /// None: unchanged on a registered metric, none on a new one.
    pub dimensions: Option<Vec<String>>,
    /// None: unchanged (or none); an empty text: none.
    pub filter: Option<&'a str>,
    /// None: unchanged (or day).
    pub grain: Option<&'a str>,
    pub allow_duplicate: bool,
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
    /// The role the metric belongs to (its anchor's owner; 0 when the anchor is gone).
    pub registered_by: u32,
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
        TimeKind::stored(&self.time_kind)
    }
}

const STORED_SELECT: &str = "SELECT m.name, m.version, m.source::pg_catalog.oid::pg_catalog.int8 AS source_oid, \
     coalesce((SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' \
                      OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::pg_catalog.text) \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
                WHERE c.oid OPERATOR(pg_catalog.=) m.source), m.source_name, m.source::pg_catalog.oid::pg_catalog.text) AS source, m.expression, \
     m.filter, m.time_column::pg_catalog.text AS time_column, m.time_kind, m.dimensions, m.grain, m.owner, m.description, \
     m.normalized, coalesce(a.relowner, 0::pg_catalog.oid)::pg_catalog.int8 AS registered_by, \
     m.deprecated_at IS NOT NULL AS deprecated, m.replaced_by \
     FROM pgmart.metric m LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) m.anchor";

pub fn load(name: &str) -> Option<Stored> {
    sql::as_catalog_owner(|| sql::row::<Stored>(&format!("{STORED_SELECT} WHERE m.name OPERATOR(pg_catalog.=) $1"), &[name.into()]))
}

/// Whether the caller may use a metric (see `pgmart.metrics`): it has the rights of the role that
/// registered it, or may read its source.
fn may_use(m: &Stored, caller: pg_sys::Oid) -> bool {
    (m.registered_by != 0 && sql::has_rights_of(caller, pg_sys::Oid::from(m.registered_by)))
        || sql::one::<bool>(
            "SELECT coalesce(pg_catalog.has_table_privilege($1::pg_catalog.oid, $2::pg_catalog.int8::pg_catalog.oid, 'SELECT'), false)",
            &[caller.into(), (m.source_oid as i64).into()],
        )
        .unwrap_or(false)
        || unsafe { pg_sys::superuser_arg(caller) }
}

fn missing(name: &str) -> PgMartError {
    PgMartError::undefined_object(format!("metric \"{name}\" does not exist"))
        .hint(if name.trim_start().starts_with('{') {
            "To read several metrics, pass an array: ARRAY['revenue', 'orders'] (a quoted '{...}' is read as one name)."
        } else {
            "See SELECT name FROM pgmart.metrics."
        })
}

fn load_or_raise(name: &str) -> Stored {
    load(name).filter(|m| may_use(m, sql::caller())).unwrap_or_else(|| missing(name).raise())
}

/// The caller may change a metric if it may act as the owner of its source table or as the role
/// that registered it (a superuser may always).
fn check_may_change(m: &Stored) {
    let caller = sql::caller();
    let source_owner = sql::one::<pg_sys::Oid>(
        "SELECT relowner FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid",
        &[(m.source_oid as i64).into()],
    );
    let may = source_owner.is_some_and(|o| sql::may_act_as(caller, o))
        || (m.registered_by != 0 && sql::may_act_as(caller, pg_sys::Oid::from(m.registered_by)))
        || unsafe { pg_sys::superuser_arg(caller) };
    if !may {
        PgMartError::privilege(format!("you may not change metric \"{}\"", m.name))
            .detail(format!("Only a role that may act as the owner of {} or as the metric's registering role may.", m.source))
            .raise();
    }
}

/// The metric's expression and filter analysed again (as the current user, who will read them):
/// built-ins of pg_catalog only, reading only the source; the source itself runs only built-ins.
fn analysed(source: pg_sys::Oid, expression: &str, filter: Option<&str>, what: &str) -> (Fragment, Option<Fragment>) {
    let e = fragment::analyse(source, expression, Shape::Aggregate, Runs::AsCaller, &format!("{what} expression"), &[])
        .or_raise();
    let f = filter.map(|f| {
        fragment::analyse(source, f, Shape::Condition, Runs::AsCaller, &format!("{what} filter"), &[]).or_raise()
    });
    fragment::check_source_for_caller(source, what).or_raise();
    (e, f)
}

fn normalize(expr: &str, filter: Option<&str>, time_column: &str) -> String {
    format!("{expr} | filter {} | time column {time_column}", filter.unwrap_or("-"))
}

/// Register or re-register a metric; returns its current version. Registering a metric again
/// changes only what is given: an optional argument left NULL keeps its registered value.
pub fn register(m: NewMetric) -> i32 {
    plan::check_name(m.name).or_raise();
    plan::check_text("owner", m.owner).or_raise();
    plan::check_text("description", m.description).or_raise();
    let existing = load(m.name);
    if let Some(old) = &existing {
        check_may_change(old);
    }
    let dimensions = m.dimensions.clone().or_else(|| existing.as_ref().map(|o| o.dimensions.clone())).unwrap_or_default();
    let grain = m.grain.map(str::to_string).or_else(|| existing.as_ref().map(|o| o.grain.clone())).unwrap_or_else(|| "day".into());
    let given_filter = match m.filter {
        Some(f) => Some(f.to_string()),
        None => existing.as_ref().and_then(|o| o.filter.clone()),
    };
    plan::check_grain(&grain).or_raise();
    plan::check_dimensions(&dimensions).or_raise();
    let caller = sql::caller();
    let src = sql::relation(m.source)
    .unwrap_or_else(|| PgMartError::undefined_table("metric source does not exist").raise());
    if !["r", "p", "v", "m", "f"].contains(&src.relkind.as_str()) {
        PgMartError::wrong_object_type(format!("metric source {} is not a table or view", src.qualified))
            .hint("A metric reads a table, partitioned table, view, materialized view or foreign table.")
            .raise();
    }
    let source_sql = format!("{}.{}", plan::quote_identifier(&src.nspname), plan::quote_identifier(&src.relname));
    if !sql::may_act_as(caller, pg_sys::Oid::from(src.owner)) {
        PgMartError::privilege(format!("you may not register a metric on {source_sql}"))
            .detail("Only the owner of the source (or a role that may act as it) may register metrics on it.")
            .raise();
    }
    // Time column and dimensions: real columns; the time column a date or timestamp; dimensions of
    // built-in types (grouping by them runs their equality as whoever reads the metric).
    #[derive(Deserialize)]
    struct Col {
        ty: String,
        builtin: bool,
    }
    let col_type = |col: &str| {
        sql::row::<Col>(
            "SELECT pg_catalog.format_type(CASE WHEN t.typtype OPERATOR(pg_catalog.=) 'd' THEN t.typbasetype ELSE t.oid END, NULL) AS ty, \
                    (CASE WHEN t.typtype OPERATOR(pg_catalog.=) 'd' THEN t.typbasetype ELSE t.oid END) \
                      OPERATOR(pg_catalog.<) 16384::pg_catalog.oid AS builtin \
               FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid \
              WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name \
                AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
            &[m.source.into(), col.into()],
        )
    };
    let ttype = col_type(m.time_column).map(|c| c.ty).unwrap_or_else(|| {
        PgMartError::undefined_column(format!("column \"{}\" of {source_sql} does not exist", m.time_column)).raise()
    });
    let kind = TimeKind::from_type_name(&ttype).unwrap_or_else(|| {
        PgMartError::invalid(format!("time column \"{}\" is {ttype}, not a date or timestamp", m.time_column))
            .hint("Use a date, timestamp or timestamptz column.")
            .raise()
    });
    if kind == TimeKind::Date && grain == "hour" {
        PgMartError::invalid("grain hour needs a timestamp time column, not a date").raise();
    }
    for d in &dimensions {
        match col_type(d) {
            None => PgMartError::undefined_column(format!("dimension column \"{d}\" of {source_sql} does not exist")).raise(),
            Some(c) if !c.builtin => PgMartError::invalid(format!("dimension column \"{d}\" is of a user-defined type ({})", c.ty))
                .detail("A metric is read with the privileges of whoever reads it; grouping by a user-defined type would run its owner's code as them.")
                .raise(),
            Some(_) => {}
        }
    }

    // One registration of a name at a time.
    sql::exec(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgmart.metric:' OPERATOR(pg_catalog.||) $1))",
        &[m.name.into()],
    );

    // The expression must be a numeric aggregate and the filter a condition, over the source only,
    // calling only built-ins (they run as whoever reads the metric).
    let filter_text = given_filter.as_deref().map(str::trim).filter(|f| !f.is_empty());
    let (e, f) = analysed(m.source, m.expression, filter_text, "metric");
    let numeric = [pg_sys::INT2OID, pg_sys::INT4OID, pg_sys::INT8OID, pg_sys::NUMERICOID, pg_sys::FLOAT4OID, pg_sys::FLOAT8OID];
    if !numeric.contains(&e.type_oid) {
        let typ = sql::one::<String>("SELECT pg_catalog.format_type($1, NULL)", &[e.type_oid.into()]).unwrap_or_default();
        PgMartError::invalid(format!("metric expression yields {typ}, not a number"))
            .detail(format!("expression: {}", m.expression))
            .raise();
    }
    let expr = e.text.clone();
    let filter = f.as_ref().map(|f| f.text.clone());
    // An empty bucket gets the aggregate's value on no rows: it must not fail (count(*) / count(*)).
    if let Err(c) = sql::subtransaction(|| {
        sql::one::<pgrx::AnyNumeric>(
            &format!("SELECT (({expr}))::pg_catalog.numeric FROM {source_sql} WHERE false"),
            &[],
        )
    }) {
        PgMartError::invalid(format!("metric expression fails on an empty bucket: {}", c.message))
            .detail(format!("expression: {}", m.expression))
            .hint("Guard divisions, e.g. sum(amount) / nullif(count(*), 0).")
            .raise();
    }
    let normalized = normalize(&expr, filter.as_deref(), m.time_column);
    let columns = used_columns(m.time_column, &dimensions, &e, f.as_ref());

    let new_def = Definition {
        name: m.name.into(),
        source: src.qualified.clone(),
        expression: expr.clone(),
        filter: filter.clone(),
        time_column: m.time_column.into(),
        dimensions: dimensions.clone(),
        grain: grain.clone(),
        owner: m.owner.trim().into(),
        description: m.description.trim().into(),
    };
    if let Some(old) = &existing {
        // Compare with the old definition analysed the same way now (its stored text may predate
        // this version's deparse): only a real change makes a new version.
        // (Over the new source when the old one of the same name is gone: a rebuilt table.)
        let on = if old.source == new_def.source { m.source } else { pg_sys::Oid::from(old.source_oid) };
        let old_norm = fragment::analyse(on, &old.expression, Shape::Aggregate, Runs::AsCaller, "metric expression", &[])
            .ok()
            .map(|oe| {
                let of = old.filter.as_deref().and_then(|f| {
                    fragment::analyse(on, f, Shape::Condition, Runs::AsCaller, "metric filter", &[]).ok()
                });
                normalize(&oe.text, of.as_ref().map(|f| f.text.as_str()), &old.time_column)
            });
        // The source is compared by name: the same table rebuilt (dbt) is the same metric.
        if old_norm.as_deref() == Some(normalized.as_str())
            && old.source == new_def.source
            && old.dimensions == new_def.dimensions
            && old.grain == new_def.grain
            && old.owner == new_def.owner
            && old.description == new_def.description
        {
            if old.source_oid != u32::from(m.source) {
                sql::as_catalog_owner(|| {
                    sql::exec(
                        "UPDATE pgmart.metric SET source = $2::pg_catalog.oid::pg_catalog.regclass, source_name = $3 \
                          WHERE name OPERATOR(pg_catalog.=) $1",
                        &[m.name.into(), m.source.into(), src.qualified.as_str().into()],
                    );
                    install_view(&new_def, kind, e.type_oid == pg_sys::NUMERICOID, &source_sql, &columns, old.deprecated.then_some(old.replaced_by.as_deref()));
                });
            }
            notice!("metric \"{}\": nothing changed (version {})", m.name, old.version);
            return old.version;
        }
    }
    if !m.allow_duplicate {
        let dup = sql::as_catalog_owner(|| {
            sql::one::<String>(
                "SELECT name FROM pgmart.metric WHERE normalized OPERATOR(pg_catalog.=) $1 AND name OPERATOR(pg_catalog.<>) $2 \
                  AND source OPERATOR(pg_catalog.=) $3 ORDER BY name LIMIT 1",
                &[normalized.as_str().into(), m.name.into(), m.source.into()],
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
    // The metric belongs to the caller (it may act as the source's owner, checked above).
    let anchor = match &existing {
        Some(_) => {
            let a = crate::owners::anchor_name("metric", m.name);
            if crate::owners::owner(&a).is_none() {
                crate::owners::create("metric", m.name, caller, &format!("pgmart metric {}", m.name))
            } else {
                a
            }
        }
        None => crate::owners::create("metric", m.name, caller, &format!("pgmart metric {}", m.name)),
    };
    let changed_by = sql::role_name(caller);
    let version = sql::as_catalog_owner(|| {
        install_view(&new_def, kind, e.type_oid == pg_sys::NUMERICOID, &source_sql, &columns, None);
        let version = sql::one::<i32>(
            "SELECT coalesce(max(version), 0) OPERATOR(pg_catalog.+) 1 FROM pgmart.metric_version WHERE name OPERATOR(pg_catalog.=) $1",
            &[m.name.into()],
        )
        .unwrap_or(1);
        sql::exec(
            "INSERT INTO pgmart.metric AS t (name, version, source, expression, filter, time_column, time_kind, dimensions, \
                                        grain, owner, description, normalized, anchor, source_name) \
             VALUES ($1, $2, $3::pg_catalog.oid::pg_catalog.regclass, $4, $5, $6::pg_catalog.name, $7, $8, $9, $10, $11, $12, \
                     $13::pg_catalog.regclass, $14) \
             ON CONFLICT (name) DO UPDATE SET version = excluded.version, source = excluded.source, source_name = excluded.source_name, \
                 expression = excluded.expression, filter = excluded.filter, time_column = excluded.time_column, \
                 time_kind = excluded.time_kind, dimensions = excluded.dimensions, grain = excluded.grain, \
                 owner = excluded.owner, description = excluded.description, normalized = excluded.normalized, \
                 changed_at = pg_catalog.now(), deprecated_at = NULL, replaced_by = NULL, anchor = excluded.anchor",
            &[
                m.name.into(),
                version.into(),
                m.source.into(),
                expr.as_str().into(),
                filter.clone().into(),
                m.time_column.into(),
                kind_text.as_str().into(),
                dimensions.clone().into(),
                grain.as_str().into(),
                new_def.owner.as_str().into(),
                new_def.description.as_str().into(),
                normalized.as_str().into(),
                anchor.as_str().into(),
                src.qualified.as_str().into(),
            ],
        );
        sql::exec(
            "INSERT INTO pgmart.metric_version (name, version, definition, changed_by, change_summary) \
             VALUES ($1, $2, $3, $4::pg_catalog.name, $5)",
            &[m.name.into(), version.into(), pgrx::JsonB(def_json).into(), changed_by.as_str().into(), summary.as_str().into()],
        );
        version
    });
    if existing.is_some() {
        notice!("metric \"{}\" is now version {version}: {summary}", m.name);
    }
    version
}

/// (Re-)create a metric's two views (as the extension's owner): the protection view over exactly
/// the columns it uses, and the browsable view over it.
fn install_view(def: &Definition, kind: TimeKind, numeric: bool, source_sql: &str, columns: &[String], replaced_by: Option<Option<&str>>) {
    let (protection, browse) = (plan::columns_view(&def.name), plan::browse_view(&def.name));
    sql::drop_view_if_exists(&browse);
    sql::drop_view_if_exists(&protection);
    sql::exec(&plan::view_ddl(&def.name, source_sql, columns), &[]);
    sql::exec(&plan::browse_ddl(def, kind, numeric), &[]);
    comment_views(def, replaced_by);
    sql::exec(&format!("GRANT SELECT ON {protection} TO PUBLIC"), &[]);
    sql::exec(&format!("GRANT SELECT ON {browse} TO PUBLIC"), &[]);
}

/// The comments on a metric's views (what `\d+` and a BI tool's table description show).
/// Make the browsable view of every metric that has none (the upgrade from 0.1.0 calls this): a
/// metric whose definition no longer plans is named in a NOTICE and keeps working as before.
pub fn install_missing_views() {
    let names = sql::as_catalog_owner(|| {
        sql::column::<String>(
            "SELECT m.name FROM pgmart.metric m \
              WHERE pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1, m.name)) IS NULL \
                AND pg_catalog.to_regclass(pg_catalog.format('%I.%I', $2, m.name)) IS NOT NULL ORDER BY m.name",
            &[plan::VIEW_SCHEMA.into(), plan::COLUMNS_SCHEMA.into()],
        )
    });
    for name in names {
        let made = sql::subtransaction(|| {
            sql::as_catalog_owner(|| {
                let Some(m) = load(&name) else { return };
                let columns = sql::one::<pg_sys::Oid>("SELECT pg_catalog.to_regclass($1)::pg_catalog.oid", &[plan::columns_view(&name).into()]);
                let Some(view) = columns else { return };
                let (e, f) = analysed(view, &m.expression, m.filter.as_deref(), &format!("metric \"{name}\""));
                let def = Definition { expression: e.text.clone(), filter: f.map(|f| f.text), ..m.definition() };
                sql::exec(&plan::browse_ddl(&def, m.kind(), e.type_oid == pg_sys::NUMERICOID), &[]);
                sql::exec(&format!("GRANT SELECT ON {} TO PUBLIC", plan::browse_view(&name)), &[]);
                comment_views(&def, m.deprecated.then_some(m.replaced_by.as_deref()));
            })
        });
        if let Err(c) = made {
            notice!("metric \"{name}\" has no browsable view: {} (register it again to make one)", c.message);
        }
    }
}

fn comment_views(def: &Definition, replaced_by: Option<Option<&str>>) {
    let deprecated = match replaced_by {
        Some(Some(r)) => format!(" DEPRECATED: use metric \"{r}\"."),
        Some(None) => " DEPRECATED.".to_string(),
        None => String::new(),
    };
    let protection = format!(
        "pgmart metric \"{}\" (owner: {}) uses exactly these columns; PostgreSQL refuses to drop them while the metric exists. Re-register or drop the metric (pgmart.drop_metric) first.{deprecated}",
        def.name, def.owner
    );
    let browse = format!(
        "pgmart metric \"{}\": {} (owner: {}). One row per {} bucket (in the session's TimeZone) and dimension values; filter on bucket or bucket_date.{deprecated}",
        def.name, def.description, def.owner, def.grain
    );
    for (view, text) in [(plan::columns_view(&def.name), protection), (plan::browse_view(&def.name), browse)] {
        if sql::one::<bool>("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[view.as_str().into()]) == Some(true) {
            sql::exec(&format!("COMMENT ON VIEW {view} IS {}", plan::quote_literal(&text)), &[]);
        }
    }
}

/// The columns a metric uses: its time column, dimensions, and those its expression and filter read.
fn used_columns(time_column: &str, dimensions: &[String], e: &Fragment, f: Option<&Fragment>) -> Vec<String> {
    let mut columns = vec![time_column.to_string()];
    for c in dimensions.iter().cloned().chain(e.columns.iter().cloned()).chain(f.iter().flat_map(|f| f.columns.clone())) {
        if !columns.contains(&c) {
            columns.push(c);
        }
    }
    columns
}

/// Its source was re-created under its name (see `crate::follow`): the expression and filter are
/// analysed again over the new relation and the protection view is re-created on it. The
/// version stays: nothing about the metric changed.
pub fn moved(name: &str, _old: u32, new: u32, qualified: &str) -> Result<(), String> {
    let m = load(name).ok_or_else(|| format!("metric \"{name}\" is gone"))?;
    let source = pg_sys::Oid::from(new);
    let (e, f) = analysed(source, &m.expression, m.filter.as_deref(), "metric");
    let columns = used_columns(&m.time_column, &m.dimensions, &e, f.as_ref());
    let replaced_by = m.deprecated.then_some(m.replaced_by.as_deref());
    let def = Definition { expression: e.text.clone(), filter: f.map(|f| f.text), ..m.definition() };
    install_view(&def, m.kind(), e.type_oid == pg_sys::NUMERICOID, qualified, &columns, replaced_by);
    Ok(())
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
    sql::as_catalog_owner(|| {
        sql::exec(
            "UPDATE pgmart.metric SET deprecated_at = pg_catalog.now(), replaced_by = $2 WHERE name OPERATOR(pg_catalog.=) $1",
            &[name.into(), replaced_by.into()],
        );
        comment_views(&m.definition(), Some(replaced_by));
    });
}

pub fn drop_metric(name: &str) {
    let m = load_or_raise(name);
    check_may_change(&m);
    forget(name);
    crate::owners::drop(&crate::owners::anchor_name("metric", name));
}

/// Remove metric `name` and its protection view (its version history stays); also when its owner
/// anchor was dropped (DROP OWNED BY).
pub fn forget(name: &str) {
    sql::as_catalog_owner(|| {
        sql::drop_view_if_exists(&plan::browse_view(name));
        sql::drop_view_if_exists(&plan::columns_view(name));
        sql::exec("DELETE FROM pgmart.metric WHERE name OPERATOR(pg_catalog.=) $1", &[name.into()]);
        sql::exec("UPDATE pgmart.metric SET replaced_by = NULL WHERE replaced_by OPERATOR(pg_catalog.=) $1", &[name.into()]);
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

/// PostgreSQL's epoch (2000-01-01) in Unix microseconds.
pub const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// One row of `metric_values`, as read back (instants as Unix microseconds, numbers as text so
/// that no digit of a numeric is lost).
#[derive(Deserialize)]
pub struct ValueRow {
    pub n: i64,
    #[serde(default)]
    pub metric: Option<String>,
    pub start_us: Option<i64>,
    pub local_us: Option<i64>,
    pub is_partial: Option<bool>,
    pub dimension_values: Option<serde_json::Value>,
    pub value: Option<String>,
    pub numerator: Option<String>,
    pub denominator: Option<String>,
}

/// Run `metric_sql`'s text as the caller, in its order. A failure is raised again as the query's
/// own error (SQLSTATE, message, detail, hint) without the SQL text or a context line.
pub fn run_values(query: &str, several: bool) -> Vec<ValueRow> {
    let us = |c: &str| format!("(EXTRACT(epoch FROM q.{c}) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8");
    let wrapped = format!(
        "SELECT pg_catalog.row_number() OVER () AS n, {}{} AS start_us, {} AS local_us, q.is_partial, q.dimension_values, \
                q.value::pg_catalog.text AS value, q.numerator::pg_catalog.text AS numerator, \
                q.denominator::pg_catalog.text AS denominator \
           FROM ({query}) q",
        if several { "q.metric, " } else { "" },
        us("bucket_start"),
        us("bucket_local"),
    );
    // Without a row limit, so that PostgreSQL may run it in parallel, as the query it is.
    let mut rows = sql::subtransaction(|| sql::rows_unlimited::<ValueRow>(&wrapped)).unwrap_or_else(|c| c.raise());
    rows.sort_by_key(|r| r.n);
    rows
}

/// The arguments of a `metric_values` or `metric_sql` call after the metric name(s).
pub struct Ask<'a> {
    pub from_ts: TimestampWithTimeZone,
    pub to_ts: TimestampWithTimeZone,
    pub grain: Option<&'a str>,
    pub dimensions: Option<Vec<String>>,
    pub timezone: Option<&'a str>,
}

/// A metric ready to be read by the caller: its fragments analysed again, as the caller, over what
/// it reads (the protection view, whose columns keep the names the metric uses), so that a view or
/// policy changed since, or a function altered, is caught here.
fn prepared(name: &str) -> (Stored, plan::Measures) {
    let mut m = load_or_raise(name);
    let view_oid = sql::one::<pg_sys::Oid>("SELECT pg_catalog.to_regclass($1)::pg_catalog.oid", &[plan::columns_view(name).into()])
        .unwrap_or_else(|| {
            PgMartError::state(format!("metric \"{name}\" lost its protection view (was its source dropped with CASCADE?)"))
                .hint("Re-register the metric with pgmart.register_metric, or drop it with pgmart.drop_metric.")
                .raise()
        });
    let (e, f) = analysed(view_oid, &m.expression, m.filter.as_deref(), &format!("metric \"{name}\""));
    m.expression = e.text.clone();
    m.filter = f.map(|f| f.text);
    if m.deprecated {
        match &m.replaced_by {
            Some(r) => notice!("metric \"{name}\" is deprecated: use metric \"{r}\" instead"),
            None => notice!("metric \"{name}\" is deprecated"),
        }
    }
    (m, plan::Measures { value: e.text, ratio: e.ratio, rollup: None })
}

/// The exact SQL `metric_values` runs for one metric or several over the same buckets, with
/// literals for every value.
pub fn values_sql(names: &[String], several: bool, ask: Ask) -> String {
    if names.is_empty() {
        PgMartError::invalid("name at least one metric").raise();
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            PgMartError::invalid(format!("metric \"{n}\" is named twice")).raise();
        }
    }
    let metrics: Vec<(Stored, plan::Measures)> = names.iter().map(|n| prepared(n)).collect();
    let grain = match ask.grain.map(str::trim).filter(|g| !g.is_empty()) {
        Some(g) => g.to_string(),
        None => {
            let first = &metrics[0].0;
            if let Some((other, _)) = metrics.iter().find(|(m, _)| m.grain != first.grain) {
                PgMartError::invalid(format!(
                    "metrics \"{}\" ({}) and \"{}\" ({}) have different grains",
                    first.name, first.grain, other.name, other.grain
                ))
                .hint("Pass grain => '...' to read them over the same buckets.")
                .raise();
            }
            first.grain.clone()
        }
    };
    plan::check_grain(&grain).or_raise();
    let dimensions = ask.dimensions.unwrap_or_default();
    plan::check_dimensions(&dimensions).or_raise();
    for (m, _) in &metrics {
        if grain == "hour" && m.kind() == TimeKind::Date {
            PgMartError::invalid(format!("metric \"{}\" has a date time column: grain hour is not available", m.name)).raise();
        }
        for d in &dimensions {
            if !m.dimensions.contains(d) {
                PgMartError::invalid(format!("\"{d}\" is not a dimension of metric \"{}\"", m.name))
                    .detail(format!("Its dimensions: {}", if m.dimensions.is_empty() { "(none)".into() } else { m.dimensions.join(", ") }))
                    .raise();
            }
        }
    }
    let timezone = ask.timezone.map(str::trim).filter(|t| !t.is_empty()).unwrap_or("UTC").to_string();
    if sql::subtransaction(|| sql::one::<TimestampWithTimeZone>("SELECT pg_catalog.now() AT TIME ZONE $1 AT TIME ZONE 'UTC'", &[timezone.as_str().into()])).is_err() {
        PgMartError::invalid(format!("unknown time zone \"{timezone}\"")).hint("Use an IANA name such as Europe/Paris, or UTC.").raise();
    }
    let b = sql::row::<Bounds>(
        "SELECT pg_catalog.isfinite($1::pg_catalog.timestamptz) AND pg_catalog.isfinite($2::pg_catalog.timestamptz) AS finite, \
                $1::pg_catalog.timestamptz OPERATOR(pg_catalog.<) $2::pg_catalog.timestamptz AS ordered, \
                CASE WHEN pg_catalog.isfinite($1::pg_catalog.timestamptz) AND pg_catalog.isfinite($2::pg_catalog.timestamptz) \
                     THEN EXTRACT(epoch FROM $2::pg_catalog.timestamptz OPERATOR(pg_catalog.-) $1::pg_catalog.timestamptz)::pg_catalog.float8 ELSE 0 END AS seconds, \
                coalesce(pg_catalog.to_char($1::pg_catalog.timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') OPERATOR(pg_catalog.||) '+00', '') AS from_text, \
                coalesce(pg_catalog.to_char($2::pg_catalog.timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') OPERATOR(pg_catalog.||) '+00', '') AS to_text",
        &[ask.from_ts.into(), ask.to_ts.into()],
    )
    .expect("bounds");
    if !b.finite {
        PgMartError::invalid("from_ts and to_ts must be finite").raise();
    }
    if !b.ordered {
        PgMartError::invalid("from_ts must be before to_ts").raise();
    }
    if b.seconds / plan::grain_seconds(&grain) * (names.len() as f64) > plan::MAX_BUCKETS {
        PgMartError::invalid(format!("too many {grain} buckets between from_ts and to_ts"))
            .hint("Use a coarser grain or a shorter range.")
            .raise();
    }
    let req = Request { from_ts: b.from_text, to_ts: b.to_text, grain, dimensions, timezone };
    let sqls: Vec<(String, String)> = metrics
        .into_iter()
        .map(|(m, mut measures)| {
            measures.rollup = covering_rollup(&m, &measures, &req);
            (m.name.clone(), plan::values_sql(&m.definition(), m.kind(), &req, &measures))
        })
        .collect();
    if several {
        plan::several_sql(&sqls)
    } else {
        sqls.into_iter().next().map(|(_, q)| q).unwrap_or_default()
    }
}

/// A rollup that answers this request exactly, read as the caller: same source, time column and
/// filter, the request's zone, its dimensions among the rollup's, buckets that nest in the grain,
/// `from_ts` and `to_ts` on bucket boundaries, every aggregate of the metric one of the rollup's
/// measures that re-aggregates (sum, count, min, max, ratios of those), no row-level security on
/// the source (the caller's own rows could differ), and a relation the caller may read: its
/// real-time view, or its table when the range is all below the watermark.
fn covering_rollup(m: &Stored, measures: &plan::Measures, req: &Request) -> Option<plan::RollupRead> {
    let zone = crate::jobs::tz::resolve(&req.timezone).ok()?.name;
    let caller = sql::caller();
    crate::rollups::exec::of_source(m.source_oid).into_iter().find_map(|r| {
        if r.time_column != m.time_column || r.filter != m.filter || r.timezone != zone || r.source_rls || r.table.is_none() {
            return None;
        }
        if !req.dimensions.iter().all(|d| r.dimensions.contains(d)) {
            return None;
        }
        let bucket = crate::rollups::plan::Bucket::from_interval(r.months, r.days, r.micros).ok()?;
        if !plan::grain_fits(&req.grain, bucket) {
            return None;
        }
        let own: Vec<(String, String)> = r.measure_names.iter().cloned().zip(r.measures.iter().cloned()).collect();
        let (value, ratio) = plan::over_measures(&measures.value, measures.ratio.as_ref(), &own)?;
        #[derive(Deserialize)]
        struct Fit {
            aligned: bool,
            below_watermark: bool,
        }
        let shape = r.shape();
        let (from, to) = (
            format!("{}::pg_catalog.timestamptz", plan::quote_literal(&req.from_ts)),
            format!("{}::pg_catalog.timestamptz", plan::quote_literal(&req.to_ts)),
        );
        let fit = sql::row::<Fit>(
            &format!(
                "SELECT {} OPERATOR(pg_catalog.=) {from} AND {} OPERATOR(pg_catalog.=) {to} AS aligned, \
                        {to} OPERATOR(pg_catalog.<=) pgmart._rollup_watermark($1) AS below_watermark",
                crate::rollups::plan::bucket_of(&shape, &from),
                crate::rollups::plan::bucket_of(&shape, &to)
            ),
            &[r.job_id.into()],
        )?;
        if !fit.aligned {
            return None;
        }
        let relation = match (&r.rt, fit.below_watermark) {
            (Some(rt), _) => rt.clone(),
            (None, true) => r.table.clone()?,
            (None, false) => return None,
        };
        let readable = sql::one::<bool>(
            "SELECT pg_catalog.has_table_privilege($1::pg_catalog.oid, pg_catalog.to_regclass($2), 'SELECT')",
            &[caller.into(), relation.as_str().into()],
        )
        .unwrap_or(false);
        readable.then(|| plan::RollupRead { name: r.name.clone(), relation, value, ratio })
    })
}
