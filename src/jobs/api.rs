//! SQL-facing job functions: thin wrappers over the engine. Also the registration path every
//! capability uses for its own job kind ([`register`]).

use crate::error::{OrRaise, PgMartError};
use crate::jobs::engine::{self, RunReport, Trigger};
use crate::jobs::sql_job;
use crate::sql;
use chrono::Utc;
use pgrx::prelude::*;
use pgrx::datum::TimestampWithTimeZone;
use serde_json::{json, Value};

type RunRows = TableIterator<
    'static,
    (
        name!(job_id, i64),
        name!(name, String),
        name!(kind, String),
        name!(target, Option<String>),
        name!(status, String),
        name!(duration_ms, f64),
        name!(message, Option<String>),
    ),
>;

fn to_rows(reports: Vec<RunReport>) -> RunRows {
    TableIterator::new(
        reports
            .into_iter()
            .map(|r| (r.job_id, r.name, r.kind, r.target, r.status, r.duration_ms, r.message)),
    )
}

/// A job to register; capabilities fill one in for their own kind.
pub struct NewJob<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub target: Option<&'a str>,
    pub schedule: &'a str,
    pub timezone: &'a str,
    pub owner: &'a str,
    pub config: Value,
    pub max_retries: i32,
    pub retry_backoff: Option<&'a str>,
    pub start_at: Option<pgrx::datum::TimestampWithTimeZone>,
}

/// Whether this server loaded pgmart through shared_preload_libraries (so workers run jobs).
pub fn workers_available() -> bool {
    crate::PRELOADED.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn notice_if_no_workers() {
    if !workers_available() {
        notice!(
            "pgmart is not in shared_preload_libraries, so nothing runs on its own: call SELECT pgmart.refresh_due() from cron or your BI tool, or add pgmart to shared_preload_libraries and restart"
        );
    }
}

/// Validate and insert a job; returns its id. Raises on a bad schedule, time zone, duplicate name.
pub fn register(job: NewJob) -> i64 {
    if job.name.trim().is_empty() {
        PgMartError::invalid("job name must not be empty").raise();
    }
    if job.max_retries < 0 || job.max_retries > 100 {
        PgMartError::invalid("max_retries must be between 0 and 100").raise();
    }
    let (schedule, tz) = engine::validate(job.schedule, job.timezone).or_raise();
    let backoff = job.retry_backoff.unwrap_or("1 minute");
    check_backoff(backoff);
    let first = engine::first_run(&schedule, &tz, Utc::now()).or_raise();
    let first_epoch = first.timestamp_micros() as f64 / 1e6;
    let id = sql::as_catalog_owner(|| {
        if sql::one::<bool>("SELECT EXISTS (SELECT 1 FROM pgmart.job WHERE name = $1)", &[job.name.into()])
            .unwrap_or(false)
        {
            PgMartError::duplicate(format!("a pgmart job named \"{}\" already exists", job.name))
                .hint("Choose another name, or change the existing job with pgmart.alter_job().")
                .raise();
        }
        sql::one::<i64>(
            "INSERT INTO pgmart.job (name, kind, target, schedule, timezone, owner, config, max_retries, \
                                     retry_backoff, next_run_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::interval, coalesce($10, to_timestamp($11))) RETURNING job_id",
            &[
                job.name.into(),
                job.kind.into(),
                job.target.into(),
                job.schedule.trim().into(),
                job.timezone.trim().into(),
                job.owner.into(),
                pgrx::JsonB(job.config).into(),
                job.max_retries.into(),
                backoff.into(),
                job.start_at.into(),
                first_epoch.into(),
            ],
        )
        .expect("job id")
    });
    notice_if_no_workers();
    id
}

fn check_backoff(text: &str) {
    let ok = sql::subtransaction(|| {
        sql::one::<bool>("SELECT $1::text::interval >= '0'::interval", &[text.into()]).unwrap_or(false)
    });
    if !matches!(ok, Ok(true)) {
        PgMartError::invalid(format!("invalid retry_backoff \"{text}\": give a non-negative interval")).raise();
    }
}

/// Load a job the caller may act as, or raise (42704 unknown, 42501 not allowed).
pub fn job_for_caller(job_id: i64) -> engine::Job {
    let job = sql::as_catalog_owner(|| {
        sql::row::<engine::Job>(&format!("{} WHERE job_id = $1", engine::JOB_SELECT), &[job_id.into()])
    })
    .unwrap_or_else(|| PgMartError::undefined_object(format!("job {job_id} does not exist")).raise());
    let caller = sql::current_role();
    if !sql::can_act_as(&caller, &job.owner) {
        PgMartError::privilege(format!("role \"{caller}\" may not change job {job_id} owned by \"{}\"", job.owner))
            .raise();
    }
    job
}

/// Delete a job of any kind (capabilities call this when their object is dropped).
/// Stop the scheduler running a job (it stays, with its history, until resumed or dropped).
pub fn disable_job(job_id: i64) {
    sql::as_catalog_owner(|| sql::exec("UPDATE pgmart.job SET enabled = false WHERE job_id = $1", &[job_id.into()]));
}

/// A job whose table or view was dropped: disable it once, with a health alert (one while open),
/// instead of letting it run forever for nothing. `pgmart.drop_job` then removes it.
pub fn disable_orphaned(job_id: i64, source_kind: &str, object: &str, target: Option<&str>, problem: &str) {
    disable_job(job_id);
    crate::alerts::raise_health(
        source_kind,
        object,
        "medium",
        target,
        json!({ "problem": problem, "job_id": job_id }),
        &format!("{source_kind}_dropped:{job_id}"),
    );
}

pub fn delete_job(job_id: i64) {
    sql::as_catalog_owner(|| sql::exec("DELETE FROM pgmart.job WHERE job_id = $1", &[job_id.into()]));
}

#[pg_extern(schema = "pgmart", volatile)]
fn schedule_sql(
    name: &str,
    command: &str,
    schedule: &str,
    timezone: default!(&str, "'UTC'"),
    max_retries: default!(i32, 3),
    retry_backoff: default!(&str, "'1 minute'"),
    start_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    run_as: default!(Option<&str>, "NULL"),
) -> i64 {
    sql_job::validate_command(command).or_raise();
    let caller = sql::current_role();
    let owner = run_as.unwrap_or(caller.as_str()).to_string();
    sql::role_oid(&owner).or_raise();
    if !sql::can_act_as(&caller, &owner) {
        PgMartError::privilege(format!("role \"{caller}\" may not schedule jobs to run as \"{owner}\"")).raise();
    }
    register(NewJob {
        name,
        kind: "sql",
        target: None,
        schedule,
        timezone,
        owner: &owner,
        config: json!({ "command": command }),
        max_retries,
        retry_backoff: Some(retry_backoff),
        start_at,
    })
}

#[pg_extern(schema = "pgmart", volatile)]
fn refresh_due() -> TableIterator<
    'static,
    (
        name!(job_id, i64),
        name!(name, String),
        name!(kind, String),
        name!(target, Option<String>),
        name!(status, String),
        name!(duration_ms, f64),
        name!(message, Option<String>),
    ),
> {
    if sql::in_recovery() {
        notice!("pgmart.refresh_due() runs no jobs on a standby; it will run them after promotion");
        return to_rows(vec![]);
    }
    to_rows(engine::refresh_due())
}

#[pg_extern(schema = "pgmart", volatile)]
fn run_job(job_id: i64) -> TableIterator<
    'static,
    (
        name!(job_id, i64),
        name!(name, String),
        name!(kind, String),
        name!(target, Option<String>),
        name!(status, String),
        name!(duration_ms, f64),
        name!(message, Option<String>),
    ),
> {
    if sql::in_recovery() {
        PgMartError::new(pgrx::PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION, "cannot run a pgmart job on a standby")
            .raise();
    }
    let caller = sql::current_role();
    let job = engine::claim_for_manual_run(job_id, &caller);
    let run_id = engine::start_run(&job, &format!("run_job by {caller}"));
    to_rows(vec![engine::execute(&job, run_id, Trigger::Manual)])
}

#[pg_extern(schema = "pgmart", volatile)]
fn pause_job(job_id: i64) {
    job_for_caller(job_id);
    disable_job(job_id);
}

#[pg_extern(schema = "pgmart", volatile)]
fn resume_job(job_id: i64) {
    let job = job_for_caller(job_id);
    let now = Utc::now();
    let next = engine::next_slot(&job, now).or_raise();
    let behind = job.next_run_epoch.map(|e| engine::epoch_to_utc(e) < now).unwrap_or(true);
    sql::as_catalog_owner(|| {
        sql::exec(
            "UPDATE pgmart.job SET enabled = true, consecutive_failures = 0, \
                    next_run_at = CASE WHEN $2 THEN to_timestamp($3) ELSE next_run_at END WHERE job_id = $1",
            &[job_id.into(), behind.into(), (next.timestamp_micros() as f64 / 1e6).into()],
        )
    });
}

#[pg_extern(schema = "pgmart", volatile)]
#[allow(clippy::too_many_arguments)]
fn alter_job(
    job_id: i64,
    schedule: default!(Option<&str>, "NULL"),
    timezone: default!(Option<&str>, "NULL"),
    max_retries: default!(Option<i32>, "NULL"),
    retry_backoff: default!(Option<&str>, "NULL"),
    enabled: default!(Option<bool>, "NULL"),
    command: default!(Option<&str>, "NULL"),
    name: default!(Option<&str>, "NULL"),
) {
    let job = job_for_caller(job_id);
    if let Some(n) = max_retries {
        if !(0..=100).contains(&n) {
            PgMartError::invalid("max_retries must be between 0 and 100").raise();
        }
    }
    if let Some(b) = retry_backoff {
        check_backoff(b);
    }
    if let Some(n) = name {
        if n.trim().is_empty() {
            PgMartError::invalid("job name must not be empty").raise();
        }
    }
    let mut config = job.config.clone();
    if let Some(c) = command {
        if job.kind != "sql" {
            PgMartError::invalid(format!("job {job_id} is a {} job; only sql jobs have a command", job.kind)).raise();
        }
        sql_job::validate_command(c).or_raise();
        config["command"] = json!(c);
    }
    let new_schedule = schedule.unwrap_or(&job.schedule).trim().to_string();
    let new_tz = timezone.unwrap_or(&job.timezone).trim().to_string();
    let (s, tz) = engine::validate(&new_schedule, &new_tz).or_raise();
    let rescheduled = schedule.is_some() || timezone.is_some();
    let next = engine::first_run(&s, &tz, Utc::now()).or_raise();
    sql::as_catalog_owner(|| {
        if let Some(n) = name {
            if sql::one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pgmart.job WHERE name = $1 AND job_id <> $2)",
                &[n.into(), job_id.into()],
            )
            .unwrap_or(false)
            {
                PgMartError::duplicate(format!("a pgmart job named \"{n}\" already exists")).raise();
            }
        }
        sql::exec(
            "UPDATE pgmart.job SET schedule = $2, timezone = $3, max_retries = coalesce($4, max_retries), \
                    retry_backoff = coalesce($5::interval, retry_backoff), enabled = coalesce($6, enabled), \
                    config = $7, name = coalesce($8, name), \
                    next_run_at = CASE WHEN $9 THEN to_timestamp($10) ELSE next_run_at END \
              WHERE job_id = $1",
            &[
                job_id.into(),
                new_schedule.as_str().into(),
                new_tz.as_str().into(),
                max_retries.into(),
                retry_backoff.into(),
                enabled.into(),
                pgrx::JsonB(config).into(),
                name.into(),
                rescheduled.into(),
                (next.timestamp_micros() as f64 / 1e6).into(),
            ],
        )
    });
}

#[pg_extern(schema = "pgmart", volatile)]
fn drop_job(job_id: i64) {
    let job = job_for_caller(job_id);
    // A refresh or partition job whose table or view was dropped is disabled when it next runs; it
    // (and its registration) can then go this way, since the object's name no longer resolves.
    let orphaned = job.kind != "sql"
        && sql::as_catalog_owner(|| {
            sql::one::<bool>(
                "SELECT CASE $2 \
                   WHEN 'partition_maintenance' THEN NOT EXISTS (SELECT 1 FROM pgmart.partition_set s \
                          JOIN pg_catalog.pg_class c ON c.oid = s.parent WHERE s.job_id = $1) \
                   WHEN 'refresh' THEN NOT EXISTS (SELECT 1 FROM pgmart.refresh_view r \
                          JOIN pg_catalog.pg_class c ON c.oid = r.view WHERE r.job_id = $1) \
                   ELSE false END",
                &[job_id.into(), job.kind.as_str().into()],
            )
            .unwrap_or(false)
        });
    if orphaned {
        sql::as_catalog_owner(|| sql::exec("DELETE FROM pgmart.partition_set WHERE job_id = $1", &[job_id.into()]));
    } else if job.kind != "sql" {
        let hint = match job.kind.as_str() {
            "partition_maintenance" => "Use pgmart.drop_partition_set().",
            "refresh" => "Use pgmart.unschedule_refresh().",
            "check_suite" => "Drop its checks with pgmart.drop_check().",
            _ => "Drop the object that owns it.",
        };
        PgMartError::state(format!("job {job_id} belongs to a {} set-up and cannot be dropped on its own", job.kind))
            .hint(hint)
            .raise();
    }
    delete_job(job_id);
}
