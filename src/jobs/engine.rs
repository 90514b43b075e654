//! Claim due jobs, run each as its owner in a subtransaction with `lock_timeout`, record the run,
//! retry with backoff, alert after the last retry. Shared by `pgmart.refresh_due()`, `run_job()`
//! and the background scheduler, so they can never run one job twice at once.
//!
//! Claiming: a job is free when `running_pid` is NULL. A session claims with
//! `FOR UPDATE SKIP LOCKED` and holds the row lock until it commits; the scheduler claims in a short
//! transaction that sets `running_pid` (so the claim survives into the run's own transaction), and
//! a claim whose process is gone is released and its run marked `interrupted`.

use crate::error::{PgMartError, Result};
use crate::guc;
use crate::jobs::schedule::{self, Every, Schedule, ScheduleText};
use crate::sql::{self, Caught};
use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set in the background scheduler, so the engine reports the current job in pg_stat_activity.
pub static IN_WORKER: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Deserialize)]
pub struct Job {
    pub job_id: i64,
    pub name: String,
    pub kind: String,
    pub target: Option<String>,
    pub schedule: String,
    pub timezone: String,
    pub owner: String,
    pub max_retries: i32,
    pub retry_backoff_s: f64,
    pub consecutive_failures: i32,
    pub config: Value,
    pub next_run_epoch: Option<f64>,
    pub enabled: bool,
}

impl Job {
    /// This run's attempt within its scheduled occurrence: 1 for a fresh run, 2.. for retries.
    /// Each scheduled occurrence gets its own `max_retries` retries.
    pub fn attempt(&self) -> i32 {
        self.consecutive_failures % (self.max_retries + 1) + 1
    }
}

pub const JOB_SELECT: &str = "SELECT job_id, name, kind, target, schedule, timezone, owner::text AS owner, \
     max_retries, extract(epoch FROM retry_backoff)::float8 AS retry_backoff_s, consecutive_failures, \
     config, extract(epoch FROM next_run_at)::float8 AS next_run_epoch, enabled FROM pgmart.job";

/// One line of `refresh_due()` / `run_job()` output.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub job_id: i64,
    pub name: String,
    pub kind: String,
    pub target: Option<String>,
    pub status: String,
    pub duration_ms: f64,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Due by its schedule: failures are retried with backoff.
    Schedule,
    /// Run by `run_job()`: recorded, never retried, the schedule is left alone unless it was due.
    Manual,
}

pub fn epoch_to_utc(e: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros((e * 1e6) as i64).unwrap_or_default()
}

fn utc_to_epoch(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// Parse a schedule text: cron in Rust, intervals with PostgreSQL's own interval parser.
pub fn parse_schedule(text: &str) -> Result<Schedule> {
    if text.trim().is_empty() {
        return Err(PgMartError::invalid("schedule must not be empty")
            .hint("Give an interval such as '15 minutes' or a cron expression such as '*/15 * * * *'."));
    }
    match schedule::classify(text) {
        ScheduleText::Cron(c) => Ok(Schedule::Cron(Box::new(schedule::parse_cron(&c)?))),
        ScheduleText::Interval(i) => {
            let parsed = sql::subtransaction(|| {
                sql::one::<pgrx::datum::Interval>("SELECT $1::text::interval", &[i.as_str().into()])
            });
            let iv = match parsed {
                Ok(Some(iv)) => iv,
                _ => {
                    return Err(PgMartError::invalid(format!(
                        "invalid schedule \"{text}\": neither an interval nor a 5-field cron expression"
                    ))
                    .hint("Examples: '30 seconds', '1 hour', '0 3 * * *', '@daily', '0 0 $ * *'."))
                }
            };
            let every = Every { months: iv.months(), days: iv.days(), micros: iv.micros() };
            schedule::check_every(&every, text)?;
            Ok(Schedule::Every(every))
        }
    }
}

/// Validate schedule and time zone together (what every registering function calls).
pub fn validate(schedule_text: &str, timezone: &str) -> Result<(Schedule, chrono_tz::Tz)> {
    let tz = schedule::parse_tz(timezone)?;
    Ok((parse_schedule(schedule_text)?, tz))
}

/// When a new job first falls due: one interval from now, or the next cron match.
pub fn first_run(s: &Schedule, tz: &chrono_tz::Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    match s {
        Schedule::Every(e) => Ok(schedule::add_every(tz, now, e)),
        Schedule::Cron(c) => schedule::next_cron(c, tz, now),
    }
}

/// The next scheduled slot after a run that was due at `anchor`.
pub fn next_slot(job: &Job, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let (s, tz) = validate(&job.schedule, &job.timezone)?;
    match s {
        Schedule::Every(e) => {
            let anchor = job.next_run_epoch.map(epoch_to_utc).unwrap_or(now);
            Ok(schedule::next_every(&tz, anchor, now, &e))
        }
        Schedule::Cron(c) => schedule::next_cron(&c, &tz, now),
    }
}

/// Mark runs whose process is gone as `interrupted` and free their jobs (they stay due).
pub fn recover_interrupted() -> u64 {
    sql::as_catalog_owner(|| {
        sql::exec(
            "UPDATE pgmart.job j SET running_pid = NULL, running_since = NULL \
              WHERE running_pid IS NOT NULL AND NOT EXISTS ( \
                    SELECT 1 FROM pg_catalog.pg_stat_activity a \
                     WHERE a.pid = j.running_pid AND a.backend_start <= j.running_since)",
            &[],
        );
        sql::exec_count(
            "UPDATE pgmart.job_run r SET status = 'interrupted', finished_at = clock_timestamp(), \
                    message = 'the process running this job ended before the run finished; it will run again' \
              WHERE status = 'running' AND NOT EXISTS ( \
                    SELECT 1 FROM pg_catalog.pg_stat_activity a \
                     WHERE a.pid = r.pid AND a.backend_start <= r.started_at)",
            &[],
        )
    })
}

/// Claim the next due job `caller` may act as (skipping those in `done`), locking its row until
/// the caller's transaction ends. Claiming one at a time lets concurrent callers share the work.
pub fn claim_next_for_session(caller: &str, done: &[i64]) -> Option<Job> {
    sql::as_catalog_owner(|| {
        sql::row::<Job>(
            &format!(
                "{JOB_SELECT} WHERE enabled AND next_run_at <= clock_timestamp() AND running_pid IS NULL \
                   AND pg_catalog.pg_has_role($1::name, owner, 'MEMBER') AND job_id <> ALL($2) \
                 ORDER BY next_run_at, job_id LIMIT 1 FOR UPDATE SKIP LOCKED"
            ),
            &[caller.into(), done.to_vec().into()],
        )
    })
}

/// Claim one due job for the scheduler: sets `running_pid` so the claim outlives this
/// transaction. Returns the job and its `running` run id.
pub fn claim_one_for_worker() -> Option<(Job, i64)> {
    sql::as_catalog_owner(|| {
        let job_id = sql::one::<i64>(
            "UPDATE pgmart.job SET running_pid = pg_backend_pid(), running_since = clock_timestamp() \
              WHERE job_id = (SELECT job_id FROM pgmart.job \
                               WHERE enabled AND next_run_at <= clock_timestamp() AND running_pid IS NULL \
                               ORDER BY next_run_at, job_id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING job_id",
            &[],
        )?;
        let job = sql::row::<Job>(&format!("{JOB_SELECT} WHERE job_id = $1"), &[job_id.into()])?;
        let run_id = start_run(&job, "pgmart scheduler");
        Some((job, run_id))
    })
}

/// Lock one job for a manual run; errors if it is running elsewhere or unknown.
pub fn claim_for_manual_run(job_id: i64, caller: &str) -> Job {
    let job = sql::as_catalog_owner(|| {
        sql::row::<Job>(&format!("{JOB_SELECT} WHERE job_id = $1"), &[job_id.into()])
    })
    .unwrap_or_else(|| PgMartError::undefined_object(format!("job {job_id} does not exist")).raise());
    if !sql::can_act_as(caller, &job.owner) {
        PgMartError::privilege(format!(
            "role \"{caller}\" may not run job {job_id} owned by \"{}\"",
            job.owner
        ))
        .raise();
    }
    recover_interrupted();
    let locked = sql::as_catalog_owner(|| {
        sql::row::<Job>(
            &format!("{JOB_SELECT} WHERE job_id = $1 AND running_pid IS NULL FOR UPDATE SKIP LOCKED"),
            &[job_id.into()],
        )
    });
    locked.unwrap_or_else(|| {
        PgMartError::new(
            pgrx::PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
            format!("job {job_id} (\"{}\") is running in another session", job.name),
        )
        .hint("Wait for that run to finish; pgmart.job_runs shows it.")
        .raise()
    })
}

/// Insert the `running` history row for a claimed job.
pub fn start_run(job: &Job, run_by: &str) -> i64 {
    sql::as_catalog_owner(|| {
        sql::one::<i64>(
            "INSERT INTO pgmart.job_run (job_id, status, attempt, run_by, pid) \
             VALUES ($1, 'running', $2, $3, pg_backend_pid()) RETURNING run_id",
            &[job.job_id.into(), job.attempt().into(), run_by.into()],
        )
        .expect("run id")
    })
}

fn report_activity(text: &str) {
    if IN_WORKER.load(Ordering::Relaxed) {
        if let Ok(c) = std::ffi::CString::new(text.replace('\0', "")) {
            unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, c.as_ptr()) };
        }
    }
}

/// Run one claimed job as its owner in a subtransaction, then record the outcome and schedule the
/// next run. Never raises for a failure of the job itself.
pub fn execute(job: &Job, run_id: i64, trigger: Trigger) -> RunReport {
    let started = std::time::Instant::now();
    report_activity(&format!("pgmart job {} ({}): {}", job.job_id, job.kind, job.name));
    let outcome: std::result::Result<Value, Caught> = match sql::role_oid(&job.owner) {
        Err(e) => Err(Caught::from_error(&e)),
        Ok(owner) => {
            // The job's lock_timeout (and anything it SETs) must not outlive it in the caller's transaction.
            let nest = unsafe { pg_sys::NewGUCNestLevel() };
            let r = sql::subtransaction(|| {
                sql::set_local("lock_timeout", &format!("{}ms", guc::LOCK_TIMEOUT_MS.get()));
                sql::as_role(owner, true, || crate::jobs::kinds::run(job))
            });
            unsafe { pg_sys::AtEOXact_GUC(false, nest) };
            r
        }
    };
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let report = record(job, run_id, trigger, outcome, duration_ms);
    report_activity("pgmart scheduler: idle");
    report
}

fn record(
    job: &Job,
    run_id: i64,
    trigger: Trigger,
    outcome: std::result::Result<Value, Caught>,
    duration_ms: f64,
) -> RunReport {
    let now = Utc::now();
    let mut report = RunReport {
        job_id: job.job_id,
        name: job.name.clone(),
        kind: job.kind.clone(),
        target: job.target.clone(),
        status: String::new(),
        duration_ms,
        message: None,
    };
    let was_due = job.next_run_epoch.map(|e| epoch_to_utc(e) <= now).unwrap_or(false);
    let slot = || next_slot(job, now).ok().map(utc_to_epoch);
    sql::as_catalog_owner(|| match outcome {
        Ok(details) => {
            report.status = "succeeded".into();
            report.message = details.get("message").and_then(|m| m.as_str()).map(String::from);
            let next = if trigger == Trigger::Schedule || was_due { slot() } else { job.next_run_epoch };
            sql::exec(
                "UPDATE pgmart.job_run SET status = 'succeeded', finished_at = clock_timestamp(), details = $2 \
                  WHERE run_id = $1",
                &[run_id.into(), pgrx::JsonB(details).into()],
            );
            sql::exec(
                "UPDATE pgmart.job SET last_run_at = clock_timestamp(), last_status = 'succeeded', \
                        consecutive_failures = 0, running_pid = NULL, running_since = NULL, \
                        next_run_at = coalesce(to_timestamp($2), next_run_at) \
                  WHERE job_id = $1",
                &[job.job_id.into(), next.into()],
            );
        }
        Err(caught) => {
            let attempt = job.attempt();
            let retry = trigger == Trigger::Schedule && attempt <= job.max_retries;
            let (status, next) = if retry {
                let backoff = (job.retry_backoff_s * 2f64.powi(attempt - 1)).min(86400.0);
                ("retrying", Some(utc_to_epoch(now) + backoff))
            } else if trigger == Trigger::Schedule || was_due {
                ("failed", slot())
            } else {
                ("failed", job.next_run_epoch)
            };
            report.status = status.into();
            report.message = Some(caught.message.clone());
            sql::exec(
                "UPDATE pgmart.job_run SET status = $2, finished_at = clock_timestamp(), sqlstate = $3, \
                        message = $4, details = details || jsonb_strip_nulls(jsonb_build_object('detail', $5::text)) \
                  WHERE run_id = $1",
                &[
                    run_id.into(),
                    status.into(),
                    caught.sqlstate.as_str().into(),
                    caught.message.as_str().into(),
                    caught.detail.clone().into(),
                ],
            );
            sql::exec(
                "UPDATE pgmart.job SET last_run_at = clock_timestamp(), last_status = $2, \
                        consecutive_failures = CASE WHEN $3 THEN consecutive_failures + 1 ELSE consecutive_failures END, \
                        running_pid = NULL, running_since = NULL, \
                        next_run_at = coalesce(to_timestamp($4), next_run_at) \
                  WHERE job_id = $1",
                &[job.job_id.into(), status.into(), (trigger == Trigger::Schedule).into(), next.into()],
            );
            if status == "failed" {
                crate::alerts::raise_health(
                    "job",
                    &job.name,
                    "high",
                    job.target.as_deref(),
                    json!({
                        "job_id": job.job_id, "kind": job.kind, "attempts": attempt,
                        "sqlstate": caught.sqlstate, "message": caught.message,
                    }),
                    &format!("job_failed:{}", job.job_id),
                );
            }
        }
    });
    report
}

/// Run every due job the caller may act as, in this transaction (`pgmart.refresh_due()`).
pub fn refresh_due() -> Vec<RunReport> {
    let caller = sql::current_role();
    crate::jobs::history::prune();
    recover_interrupted();
    let run_by = format!("session {} ({})", unsafe { pg_sys::MyProcPid }, caller);
    let mut done: Vec<i64> = vec![];
    let mut reports = vec![];
    while let Some(job) = claim_next_for_session(&caller, &done) {
        done.push(job.job_id);
        let run_id = start_run(&job, &run_by);
        reports.push(execute(&job, run_id, Trigger::Schedule));
    }
    reports
}
