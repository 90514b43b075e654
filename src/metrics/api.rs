//! SQL-facing metric functions: thin wrappers over [`super::exec`]. `pgmart.metric_values` itself
//! is a SECURITY INVOKER plpgsql function in sql/metrics.sql that runs `metric_sql`'s text.

use super::exec;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::PgRelation;

#[pg_extern(volatile)]
#[allow(clippy::too_many_arguments)]
fn register_metric(
    name: &str,
    source: PgRelation,
    expression: &str,
    time_column: &str,
    owner: &str,
    description: &str,
    dimensions: default!(Vec<String>, "'{}'"),
    filter: default!(Option<&str>, "NULL"),
    grain: default!(&str, "'day'"),
    allow_duplicate: default!(bool, false),
) -> i32 {
    exec::register(exec::NewMetric {
        name,
        source: source.oid(),
        expression,
        time_column,
        owner,
        description,
        dimensions,
        filter,
        grain,
        allow_duplicate,
    })
}

#[pg_extern(volatile)]
fn deprecate_metric(name: &str, replaced_by: default!(Option<&str>, "NULL")) {
    exec::deprecate(name, replaced_by)
}

#[pg_extern(volatile)]
fn drop_metric(name: &str) {
    exec::drop_metric(name)
}

#[pg_extern(stable, parallel_unsafe)]
fn metric_sql(
    name: &str,
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    grain: default!(Option<&str>, "NULL"),
    dimensions: default!(Option<Vec<String>>, "'{}'"),
    timezone: default!(Option<&str>, "'UTC'"),
) -> String {
    exec::values_sql(name, from_ts, to_ts, grain, dimensions, timezone)
}
