//! SQL-facing refresh functions: thin wrappers over `exec` and `plan`.

use super::exec::{self, Outcome, ViewInfo};
use super::plan;
use crate::args::{self, RegClass};
use crate::error::{required, OrRaise, PgMartError};
use crate::jobs::api::{job_for_caller, register, NewJob};
use crate::sql;
use pgrx::datum::Interval;
use pgrx::prelude::*;
use serde_json::json;

/// The materialized view behind a regclass argument, checked: it exists (42P01), is one (42809)
/// and the caller may act as its owner (42501). It is locked, never opened, so that REFRESH does
/// not find it in use by this session.
fn checked_view(view: Option<RegClass>, what: &str) -> ViewInfo {
    let oid = i64::from(u32::from(args::relation(view, "view")));
    let info = exec::view_info(oid).unwrap_or_else(|| PgMartError::undefined_table("relation does not exist").raise());
    if info.relkind != "m" {
        PgMartError::new(
            pgrx::PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("\"{}\" is not a materialized view", info.qname),
        )
        .hint(format!("pgmart.{what} works on materialized views (CREATE MATERIALIZED VIEW)."))
        .raise();
    }
    let caller = sql::caller();
    if !sql::may_act_as(caller, pg_sys::Oid::from(info.owner)) {
        PgMartError::privilege(format!(
            "you may not {} materialized view {}",
            if what == "refresh_now" { "refresh" } else { "schedule" },
            info.qname,
        ))
        .detail("Only the owner of a materialized view (or a role that may act as it) may refresh it.")
        .raise();
    }
    info
}

// Symbol schedule_refresh_0_2_wrapper: 0.1.0 declared schedule_refresh with fewer arguments (see src/legacy.rs).
#[pg_extern(schema = "pgmart", name = "schedule_refresh", volatile)]
#[allow(clippy::too_many_arguments)]
fn schedule_refresh_0_2(
    view: Option<RegClass>,
    schedule: Option<&str>,
    concurrently: default!(Option<bool>, "NULL"),
    freshness_slo: default!(Option<Interval>, "NULL"),
    timezone: default!(Option<&str>, "NULL"),
    max_retries: default!(Option<i32>, "NULL"),
    retry_backoff: default!(Option<&str>, "NULL"),
    timeout: default!(Option<Interval>, "NULL"),
    cascade: default!(Option<bool>, "NULL"),
) -> i64 {
    crate::jobs::api::require_primary("schedule a refresh");
    let schedule = required(schedule, "schedule");
    let info = checked_view(view, "schedule_refresh");
    crate::jobs::api::check_timeout(timeout);
    if let Some(slo) = &freshness_slo {
        crate::args::check_positive_interval(slo, "freshness_slo");
    }
    if max_retries.is_some_and(|n| !(0..=100).contains(&n)) {
        PgMartError::invalid("max_retries must be between 0 and 100").raise();
    }
    if let Some(b) = retry_backoff {
        crate::jobs::api::check_backoff(b);
    }
    // Asking for CONCURRENTLY when it cannot work fails now, not at 3 a.m.
    plan::choose_method(concurrently, info.populated, info.has_unique, &info.qname).or_raise();

    if let Some(existing) = exec::registered_by_view(info.oid) {
        // Scheduled again: what is given changes, what is not (NULL) stays, and a NOTICE says which.
        let job = job_for_caller(existing.job_id);
        let zone = timezone.unwrap_or(&job.timezone);
        let period = exec::approx_period(schedule, zone).or_raise();
        let stored_zone = crate::jobs::tz::resolve(zone).or_raise().name;
        let mut changed = vec![];
        if schedule.trim() != job.schedule || stored_zone != job.timezone {
            changed.push(format!("schedule '{} {}' -> '{} {}'", job.schedule, job.timezone, schedule.trim(), stored_zone));
        }
        let seconds = |iv: &Interval| sql::one::<f64>("SELECT EXTRACT(epoch FROM $1)::double precision", &[(*iv).into()]);
        let mut differs = |what: &str, given: Option<String>, old: String| {
            if let Some(new) = given.filter(|n| *n != old) {
                changed.push(format!("{what} {old} -> {new}"));
            }
        };
        let text_of = |s: Option<f64>| s.map(|s| format!("{s}s")).unwrap_or_else(|| "none".into());
        differs("concurrently", concurrently.map(|c| c.to_string()), existing.concurrently.map(|c| c.to_string()).unwrap_or("auto".into()));
        differs("freshness_slo", freshness_slo.map(|s| text_of(seconds(&s))), text_of(existing.slo_s));
        differs("max_retries", max_retries.map(|n| n.to_string()), job.max_retries.to_string());
        let backoff_s = retry_backoff.map(|b| {
            sql::one::<f64>("SELECT EXTRACT(epoch FROM $1::pg_catalog.text::interval)::double precision", &[b.into()])
        });
        differs("retry_backoff", backoff_s.map(text_of), text_of(Some(job.retry_backoff_s)));
        differs("timeout", timeout.map(|t| text_of(seconds(&t))), text_of(job.timeout_ms.map(|ms| ms / 1000.0)));
        differs("cascade", cascade.map(|c| c.to_string()), existing.cascade.to_string());
        if changed.is_empty() {
            notice!("materialized view {} is already scheduled this way (job {}): nothing changed", info.qname, job.job_id);
            return job.job_id;
        }
        if schedule.trim() != job.schedule || stored_zone != job.timezone {
            crate::jobs::api::reschedule(job.job_id, schedule, Some(zone));
        }
        let backoff = retry_backoff.map(String::from).unwrap_or_else(|| format!("{} seconds", job.retry_backoff_s));
        crate::jobs::api::renew(job.job_id, max_retries.unwrap_or(job.max_retries), &backoff, &info.qname, timeout);
        sql::as_catalog_owner(|| {
            sql::exec(
                "UPDATE pgmart.refresh_view SET use_concurrently = coalesce($2, use_concurrently), \
                        freshness_slo = coalesce($3, freshness_slo), period_s = $4, view_name = $5, \
                        after_upstream = coalesce($6, after_upstream) \
                  WHERE job_id OPERATOR(pg_catalog.=) $1",
                &[
                    job.job_id.into(),
                    concurrently.into(),
                    freshness_slo.into(),
                    period.into(),
                    info.qname.as_str().into(),
                    cascade.into(),
                ],
            );
        });
        notice!(
            "materialized view {} was already scheduled (job {}): changed {}",
            info.qname,
            job.job_id,
            changed.join(", ")
        );
        return job.job_id;
    }
    let (timezone, max_retries, retry_backoff) =
        (timezone.unwrap_or("UTC"), max_retries.unwrap_or(3), retry_backoff.unwrap_or("1 minute"));
    let period = exec::approx_period(schedule, timezone).or_raise();

    // The schedule belongs to the view's owner (the role its refresh must run as).
    let owner = pg_sys::Oid::from(info.owner);
    // A registration left behind by a dropped view of the same name gives way to this one.
    let stale: Vec<i64> = sql::as_catalog_owner(|| {
        sql::column::<i64>(
            "SELECT r.job_id FROM pgmart.refresh_view r WHERE r.view_name OPERATOR(pg_catalog.=) $1 \
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) r.view)",
            &[info.qname.as_str().into()],
        )
    });
    for j in stale {
        crate::jobs::api::delete_job(j);
    }
    let name = crate::jobs::api::free_name(&plan::job_name(&info.qname));
    let job_id = register(NewJob {
        name: &name,
        kind: "refresh",
        target: Some(&info.qname),
        schedule,
        timezone,
        owner,
        config: json!({ "view": info.qname }),
        max_retries,
        retry_backoff: Some(retry_backoff),
        start_at: None,
        timeout,
    });
    sql::as_catalog_owner(|| {
        sql::exec(
            "INSERT INTO pgmart.refresh_view (job_id, view, view_name, use_concurrently, freshness_slo, period_s, after_upstream) \
             VALUES ($1, $2::pg_catalog.int8::pg_catalog.oid, $3, $4, $5, $6, $7)",
            &[
                job_id.into(),
                info.oid.into(),
                info.qname.as_str().into(),
                concurrently.into(),
                freshness_slo.into(),
                period.into(),
                cascade.unwrap_or(true).into(),
            ],
        )
    });
    job_id
}

#[pg_extern(schema = "pgmart", volatile)]
fn unschedule_refresh(view: Option<RegClass>) {
    crate::jobs::api::require_primary("unschedule a refresh");
    let oid = args::relation(view, "view");
    let name = args::relation_text(oid);
    let oid = i64::from(u32::from(oid));
    let Some(reg) = exec::registered_by_view(oid) else {
        PgMartError::undefined_object(format!("materialized view {name} is not scheduled for refresh"))
            .hint("pgmart.freshness lists the scheduled views.")
            .raise()
    };
    let caller = sql::caller();
    if reg.owner == 0 || !sql::may_act_as(caller, pg_sys::Oid::from(reg.owner)) {
        if !unsafe { pg_sys::superuser_arg(caller) } {
            PgMartError::privilege(format!("you may not unschedule the refresh of materialized view {name}")).raise();
        }
    }
    crate::jobs::api::drop_job_and_anchor(reg.job_id);
}

#[pg_extern(schema = "pgmart", volatile)]
fn refresh_now(
    view: Option<RegClass>,
) -> TableIterator<
    'static,
    (
        name!(view_name, String),
        name!(triggered_by, String),
        name!(method, Option<String>),
        name!(status, String),
        name!(rows_after, Option<i64>),
        name!(duration_ms, f64),
        name!(error, Option<String>),
    ),
> {
    let view = Some(required(view, "view"));
    if sql::in_recovery() {
        PgMartError::new(
            pgrx::PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            "cannot refresh a materialized view on a standby",
        )
        .raise();
    }
    let info = checked_view(view, "refresh_now");
    let out: Vec<Outcome> = exec::refresh_now(info.oid);
    for o in out.iter().filter(|o| o.status != "succeeded") {
        warning!("refresh of {} {}: {}", o.view_name, o.status, o.error.clone().unwrap_or_default());
    }
    TableIterator::new(out.into_iter().map(|o| {
        (
            o.view_name,
            o.triggered_by,
            o.method.map(|m| m.as_str().to_string()),
            o.status.to_string(),
            o.rows_after,
            o.duration_ms,
            o.error,
        )
    }))
}
