//! SQL-facing check functions: thin wrappers over [`crate::checks::exec`].

use crate::checks::exec::{self, NewCheck};
use pgrx::prelude::*;
use pgrx::PgRelation;

// Symbol add_check_0_2_wrapper: 0.1.0 declared add_check with fewer arguments (see src/legacy.rs).
#[pg_extern(schema = "pgmart", name = "add_check", volatile)]
#[allow(clippy::too_many_arguments)]
fn add_check_0_2(
    target: PgRelation,
    kind: &str,
    columns: default!(Option<Vec<String>>, "NULL"),
    params: default!(pgrx::JsonB, "'{}'"),
    severity: default!(&str, "'error'"),
    name: default!(Option<&str>, "NULL"),
    schedule: default!(Option<&str>, "NULL"),
    where_clause: default!(Option<&str>, "NULL"),
    timeout: default!(Option<pgrx::datum::Interval>, "NULL"),
) -> i64 {
    crate::jobs::api::check_timeout(timeout);
    let oid = u32::from(target.oid()) as i64;
    drop(target);
    exec::register(NewCheck {
        target_oid: oid,
        kind,
        columns: columns.unwrap_or_default(),
        params: params.0,
        severity,
        name,
        schedule,
        where_clause,
        timeout,
    })
}

#[pg_extern(schema = "pgmart", volatile)]
fn drop_check(name: &str) {
    exec::drop(name)
}

#[pg_extern(schema = "pgmart", volatile)]
fn run_checks(
    target: default!(Option<PgRelation>, "NULL"),
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
    let oid = target.map(|t| u32::from(t.oid()) as i64);
    let caller = crate::sql::role_name(crate::sql::caller());
    let results = exec::run(oid, None, &format!("run_checks by {caller}"));
    TableIterator::new(results.into_iter().map(|r| {
        let sample = if r.sample.is_null() { None } else { Some(pgrx::JsonB(r.sample)) };
        (r.check_id, r.name, r.target, r.kind, r.status, r.failing_rows, r.checked_rows, sample, r.duration_ms)
    }))
}
