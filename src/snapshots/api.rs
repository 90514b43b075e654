//! SQL-facing snapshot functions: thin wrappers over [`super::exec`].

use super::exec::{self, NewSnapshot};
use crate::args::{self, RegClass};
use crate::error::required;
use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::PgTriggerOperation;

#[pg_extern(schema = "pgmart", volatile)]
#[allow(clippy::too_many_arguments)]
fn create_snapshot(
    name: Option<&str>,
    source: Option<RegClass>,
    strategy: Option<&str>,
    unique_key: default!(Option<Vec<Option<String>>>, "NULL"),
    updated_at: default!(Option<&str>, "NULL"),
    check_columns: default!(Option<Vec<Option<String>>>, "NULL"),
    schedule: default!(Option<&str>, "'@daily'"),
    timezone: default!(Option<&str>, "'UTC'"),
    period: default!(Option<&str>, "'day'"),
    invalidate_hard_deletes: default!(Option<bool>, true),
    retention: default!(Option<Interval>, "NULL"),
    preset: default!(Option<&str>, "'pgmart'"),
    meta_columns: default!(Option<pgrx::JsonB>, "NULL"),
) -> i64 {
    let name = required(name, "name");
    let source = args::relation(source, "source");
    exec::create(NewSnapshot {
        name,
        source,
        strategy: required(strategy, "strategy"),
        unique_key: args::names(unique_key, "unique_key").unwrap_or_default(),
        updated_at,
        check_columns: args::names(check_columns, "check_columns"),
        schedule: schedule.unwrap_or("@daily"),
        timezone: timezone.unwrap_or("UTC"),
        period: period.unwrap_or("day"),
        invalidate_hard_deletes: invalidate_hard_deletes.unwrap_or(true),
        retention,
        preset: preset.unwrap_or("pgmart"),
        meta_columns: meta_columns.map(|j| j.0),
    })
}

/// Take a snapshot now, in the caller's transaction, as its owner (a periodic one: only when its
/// current period is not frozen yet). Returns what it did.
#[pg_extern(schema = "pgmart", volatile)]
fn run_snapshot(name: Option<&str>) -> pgrx::JsonB {
    crate::jobs::api::require_primary("run a snapshot");
    let s = exec::for_caller(required(name, "name"));
    let out = crate::sql::as_role(pg_sys::Oid::from(s.owner), || exec::take(&s));
    pgrx::JsonB(out)
}

#[pg_extern(schema = "pgmart", volatile)]
fn drop_snapshot(name: Option<&str>, keep_data: default!(Option<bool>, false)) {
    exec::drop_snapshot(required(name, "name"), keep_data.unwrap_or(false))
}

/// The guard of a periodic snapshot's table and partitions: refuses every write but pgmart's own
/// run (statement-level: INSERT, UPDATE, DELETE, TRUNCATE).
#[pg_trigger(sql = false)] // created in sql/snapshots.sql, in schema pgmart
fn _snapshot_guard<'a>(trigger: &'a PgTrigger<'a>) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgHeapTupleError> {
    let job_id: i64 = trigger.extra_args().ok().and_then(|a| a.first().and_then(|s| s.parse().ok())).unwrap_or(-1);
    let op = match trigger.op() {
        Ok(PgTriggerOperation::Insert) => "INSERT",
        Ok(PgTriggerOperation::Update) => "UPDATE",
        Ok(PgTriggerOperation::Delete) => "DELETE",
        Ok(PgTriggerOperation::Truncate) => "TRUNCATE",
        _ => "write",
    };
    let relation = trigger
        .relid()
        .ok()
        .and_then(|oid| crate::sql::relation(oid).map(|r| r.qualified))
        .unwrap_or_else(|| trigger.table_name().unwrap_or_default());
    exec::guard(job_id, op, &relation);
    Ok(None)
}
