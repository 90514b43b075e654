//! SQL-facing check functions: thin wrappers over [`crate::checks::exec`].

use crate::args::{self, RegClass};
use crate::checks::exec::{self, NewCheck};
use crate::error::required;
use pgrx::prelude::*;

// Symbol add_check_0_2_wrapper: 0.1.0 declared add_check with fewer arguments (see src/legacy.rs).
#[pg_extern(schema = "pgmart", name = "add_check", volatile)]
#[allow(clippy::too_many_arguments)]
fn add_check_0_2(
    target: Option<RegClass>,
    kind: Option<&str>,
    columns: default!(Option<Vec<Option<String>>>, "NULL"),
    params: default!(Option<pgrx::JsonB>, "'{}'"),
    severity: default!(Option<&str>, "'error'"),
    name: default!(Option<&str>, "NULL"),
    schedule: default!(Option<&str>, "NULL"),
    where_clause: default!(Option<&str>, "NULL"),
    timeout: default!(Option<pgrx::datum::Interval>, "NULL"),
) -> i64 {
    crate::jobs::api::require_primary("add a check");
    let target = args::relation(target, "target");
    let kind = required(kind, "kind");
    let columns = args::names(columns, "columns").unwrap_or_default();
    crate::jobs::api::check_timeout(timeout);
    exec::register(NewCheck {
        target_oid: u32::from(target) as i64,
        kind,
        columns,
        params: params.map(|p| p.0).unwrap_or_else(|| serde_json::json!({})),
        severity: severity.unwrap_or("error"),
        name,
        schedule,
        where_clause,
        timeout,
    })
}

#[pg_extern(schema = "pgmart", volatile)]
fn drop_check(name: Option<&str>) {
    crate::jobs::api::require_primary("drop a check");
    exec::drop(required(name, "name"))
}

#[pg_extern(schema = "pgmart", volatile)]
fn run_checks(
    target: default!(Option<RegClass>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(check_id, i64),
        name!(name, String),
        name!(target, String),
        name!(kind, String),
        name!(status, String),
        name!(failing_rows, Option<i64>),
        name!(checked_rows, Option<i64>),
        name!(sample, Option<pgrx::JsonB>),
        name!(duration_ms, f64),
    ),
> {
    crate::jobs::api::require_primary("run checks");
    let oid = args::optional_relation(target, "target").map(|t| u32::from(t) as i64);
    let caller = crate::sql::role_name(crate::sql::caller());
    let results = exec::run(oid, &format!("run_checks by {caller}"));
    TableIterator::new(results.into_iter().map(|r| {
        let sample = if r.sample.is_null() { None } else { Some(pgrx::JsonB(r.sample)) };
        (r.check_id, r.name, r.target, r.kind, r.status, r.failing_rows, r.checked_rows, sample, r.duration_ms)
    }))
}
