//! SQL-facing health functions: thin wrappers over [`super::exec`].

use super::exec;
use crate::args::{self, RegClass};
use crate::error::required;
use crate::guc;
use pgrx::prelude::*;

/// Schedule the health job (one per name; scheduling a name of yours again changes it).
#[pg_extern(schema = "pgmart", volatile)]
fn schedule_health(
    schedule: default!(Option<&str>, "'@hourly'"),
    timezone: default!(Option<&str>, "'UTC'"),
    alert_level: default!(Option<&str>, "'fail'"),
    name: default!(Option<&str>, "'table health'"),
    max_retries: default!(Option<i32>, 3),
    timeout: default!(Option<pgrx::datum::Interval>, "NULL"),
) -> i64 {
    exec::schedule(exec::NewHealthJob {
        schedule: schedule.unwrap_or("@hourly"),
        timezone: timezone.unwrap_or("UTC"),
        alert_level: alert_level.unwrap_or("fail"),
        name: name.unwrap_or("table health"),
        max_retries: max_retries.unwrap_or(3),
        timeout,
    })
}

/// Ask the health job to maintain a table (its owner only).
#[pg_extern(schema = "pgmart", volatile)]
fn maintain_table(
    table: Option<RegClass>,
    vacuum: default!(Option<bool>, true),
    reindex_bloated: default!(Option<bool>, true),
    autovacuum_tuning: default!(Option<bool>, false),
) {
    let oid = args::relation(table, "table");
    exec::maintain(oid, vacuum.unwrap_or(true), reindex_bloated.unwrap_or(true), autovacuum_tuning.unwrap_or(false))
}

/// Stop maintaining a table; the storage parameters the health job set are put back.
#[pg_extern(schema = "pgmart", volatile)]
fn unmaintain_table(table: Option<RegClass>) {
    let oid = required(table, "table").0;
    exec::unmaintain(oid)
}

/// Internal: the thresholds `pgmart.table_health` judges by (its GUCs), one row.
#[pg_extern(schema = "pgmart", stable, parallel_safe)]
pub fn _health_settings() -> TableIterator<
    'static,
    (
        name!(min_pages, i32),
        name!(dead_ratio, f64),
        name!(dead_ratio_fail, f64),
        name!(bloat_ratio, f64),
        name!(bloat_ratio_fail, f64),
        name!(stale_factor, f64),
        name!(unused_index_min_bytes, i64),
        name!(tuning_min_rows, f64),
    ),
> {
    TableIterator::once((
        guc::HEALTH_MIN_PAGES.get(),
        guc::HEALTH_DEAD_RATIO.get(),
        guc::HEALTH_DEAD_RATIO_FAIL.get(),
        guc::HEALTH_BLOAT_RATIO.get(),
        guc::HEALTH_BLOAT_RATIO_FAIL.get(),
        guc::HEALTH_STALE_FACTOR.get(),
        guc::HEALTH_UNUSED_INDEX_MIN_KB.get() as i64 * 1024,
        guc::HEALTH_TUNING_MIN_ROWS.get() as f64,
    ))
}

/// Internal: the rows of `pgmart.query_health`, as the caller sees pg_stat_statements.
#[pg_extern(schema = "pgmart", stable)]
pub fn _query_health() -> TableIterator<
    'static,
    (
        name!(dashboard, Option<String>),
        name!(queryid, i64),
        name!(role, Option<String>),
        name!(query, Option<String>),
        name!(calls, i64),
        name!(total_ms, f64),
        name!(mean_ms, f64),
        name!(rows_per_call, Option<f64>),
        name!(recent_calls, Option<i64>),
        name!(recent_mean_ms, Option<f64>),
        name!(baseline_mean_ms, Option<f64>),
        name!(regressed, bool),
        name!(reason, Option<String>),
    ),
> {
    let rows = exec::query_health();
    TableIterator::new(rows.into_iter().map(|r| {
        let mean = if r.stmt.calls > 0 { r.stmt.total_ms / r.stmt.calls as f64 } else { 0.0 };
        let per_call = (r.stmt.calls > 0).then(|| r.stmt.rows as f64 / r.stmt.calls as f64);
        (
            r.stmt.dashboard,
            r.stmt.queryid,
            r.stmt.role,
            r.stmt.query,
            r.stmt.calls,
            r.stmt.total_ms,
            mean,
            per_call,
            r.verdict.recent_calls,
            r.verdict.recent_mean_ms,
            r.verdict.baseline_mean_ms,
            r.verdict.regressed,
            r.verdict.reason,
        )
    }))
}
