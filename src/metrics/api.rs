//! SQL-facing metric functions: thin wrappers over [`super::exec`]. `pgmart.metric_values` runs
//! exactly `metric_sql`'s text, as the caller.

use super::exec;
use crate::args::{self, RegClass};
use crate::error::required;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

#[pg_extern(schema = "pgmart", volatile)]
#[allow(clippy::too_many_arguments)]
fn register_metric(
    name: Option<&str>,
    source: Option<RegClass>,
    expression: Option<&str>,
    time_column: Option<&str>,
    owner: Option<&str>,
    description: Option<&str>,
    dimensions: default!(Option<Vec<Option<String>>>, "NULL"),
    filter: default!(Option<&str>, "NULL"),
    grain: default!(Option<&str>, "NULL"),
    allow_duplicate: default!(Option<bool>, false),
) -> i32 {
    crate::jobs::api::require_primary("register a metric");
    let name = required(name, "name");
    let source = args::relation(source, "source");
    exec::register(exec::NewMetric {
        name,
        source,
        expression: required(expression, "expression"),
        time_column: required(time_column, "time_column"),
        owner: required(owner, "owner"),
        description: required(description, "description"),
        dimensions: args::names(dimensions, "dimensions"),
        filter,
        grain: grain.map(str::trim),
        allow_duplicate: allow_duplicate.unwrap_or(false),
    })
}

#[pg_extern(schema = "pgmart", volatile)]
fn deprecate_metric(name: Option<&str>, replaced_by: default!(Option<&str>, "NULL")) {
    crate::jobs::api::require_primary("deprecate a metric");
    exec::deprecate(required(name, "name"), replaced_by)
}

#[pg_extern(schema = "pgmart", volatile)]
fn drop_metric(name: Option<&str>) {
    crate::jobs::api::require_primary("drop a metric");
    exec::drop_metric(required(name, "name"))
}

/// Internal (the upgrade from 0.1.0): make each metric's browsable view.
#[pg_extern(schema = "pgmart", volatile)]
fn _install_metric_views() {
    exec::install_missing_views()
}

fn ask<'a>(
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    grain: Option<&'a str>,
    dimensions: Option<Vec<Option<String>>>,
    timezone: Option<&'a str>,
) -> exec::Ask<'a> {
    exec::Ask {
        from_ts: required(from_ts, "from_ts"),
        to_ts: required(to_ts, "to_ts"),
        grain,
        dimensions: args::names(dimensions, "dimensions"),
        timezone,
    }
}

fn metric_names(metrics: Option<Vec<Option<String>>>) -> Vec<String> {
    args::names(Some(required(metrics, "metrics")), "metrics").unwrap_or_default()
}

#[pg_extern(schema = "pgmart", stable, parallel_unsafe)]
fn metric_sql(
    name: Option<&str>,
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    grain: default!(Option<&str>, "NULL"),
    dimensions: default!(Option<Vec<Option<String>>>, "'{}'"),
    timezone: default!(Option<&str>, "'UTC'"),
) -> String {
    let name = required(name, "name").to_string();
    exec::values_sql(&[name], false, ask(from_ts, to_ts, grain, dimensions, timezone))
}

/// The SQL of several metrics over the same buckets (the `metrics text[]` form of `metric_values`).
#[pg_extern(schema = "pgmart", name = "metric_sql", stable, parallel_unsafe)]
fn metric_sql_several(
    metrics: Option<Vec<Option<String>>>,
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    grain: default!(Option<&str>, "NULL"),
    dimensions: default!(Option<Vec<Option<String>>>, "'{}'"),
    timezone: default!(Option<&str>, "'UTC'"),
) -> String {
    exec::values_sql(&metric_names(metrics), true, ask(from_ts, to_ts, grain, dimensions, timezone))
}

type Instant = Option<TimestampWithTimeZone>;
type Local = Option<pgrx::datum::Timestamp>;
type Number = Option<AnyNumeric>;

fn instant(us: Option<i64>) -> Instant {
    us.and_then(|us| TimestampWithTimeZone::try_from(us - exec::PG_EPOCH_MICROS).ok())
}

fn local(us: Option<i64>) -> Local {
    us.and_then(|us| pgrx::datum::Timestamp::try_from(us - exec::PG_EPOCH_MICROS).ok())
}

fn number(text: Option<String>) -> Number {
    text.and_then(|v| AnyNumeric::try_from(v.as_str()).ok())
}

type Row = (Instant, Local, Option<bool>, Option<pgrx::JsonB>, Number, Number, Number);

fn row(r: exec::ValueRow) -> (Option<String>, Row) {
    let shaped = (
        instant(r.start_us),
        local(r.local_us),
        r.is_partial,
        r.dimension_values.map(pgrx::JsonB),
        number(r.value),
        number(r.numerator),
        number(r.denominator),
    );
    (r.metric, shaped)
}

/// Runs exactly the SQL `metric_sql` returns for the same arguments, as the caller (so the source's
/// row-level security applies to the caller), with the path pinned: the SQL is pgmart's own plus
/// the metric's analysed fragments, which may call only built-in functions of pg_catalog. An error
/// is the query's own (SQLSTATE, message, hint), without the generated SQL or a PL/pgSQL CONTEXT.
#[pg_extern(schema = "pgmart", volatile)]
fn metric_values(
    name: Option<&str>,
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    grain: default!(Option<&str>, "NULL"),
    dimensions: default!(Option<Vec<Option<String>>>, "'{}'"),
    timezone: default!(Option<&str>, "'UTC'"),
) -> TableIterator<
    'static,
    (
        name!(bucket_start, Instant),
        name!(bucket_local, Local),
        name!(is_partial, Option<bool>),
        name!(dimension_values, Option<pgrx::JsonB>),
        name!(value, Number),
        name!(numerator, Number),
        name!(denominator, Number),
    ),
> {
    let query = metric_sql(name, from_ts, to_ts, grain, dimensions, timezone);
    TableIterator::new(exec::run_values(&query, false).into_iter().map(|r| row(r).1))
}

/// Several metrics over the same buckets: one row per metric, bucket and dimension values.
#[pg_extern(schema = "pgmart", name = "metric_values", volatile)]
fn metric_values_several(
    metrics: Option<Vec<Option<String>>>,
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    grain: default!(Option<&str>, "NULL"),
    dimensions: default!(Option<Vec<Option<String>>>, "'{}'"),
    timezone: default!(Option<&str>, "'UTC'"),
) -> TableIterator<
    'static,
    (
        name!(metric, Option<String>),
        name!(bucket_start, Instant),
        name!(bucket_local, Local),
        name!(is_partial, Option<bool>),
        name!(dimension_values, Option<pgrx::JsonB>),
        name!(value, Number),
        name!(numerator, Number),
        name!(denominator, Number),
    ),
> {
    let query = metric_sql_several(metrics, from_ts, to_ts, grain, dimensions, timezone);
    TableIterator::new(exec::run_values(&query, true).into_iter().map(|r| {
        let (metric, (start, local, partial, dims, value, numerator, denominator)) = row(r);
        (metric, start, local, partial, dims, value, numerator, denominator)
    }))
}
