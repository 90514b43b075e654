//! SQL-facing job functions: thin wrappers over the engine. Also the registration path every
//! capability uses for its own job kind ([`register`]), and the one place the job catalog's
//! schedule columns are changed ([`reschedule`]).

use crate::error::{required, OrRaise, PgMartError};
use crate::guc;
use crate::jobs::engine::{self, Job, RunReport, Trigger};
use crate::jobs::sql_job;
use crate::sql;
use chrono::Utc;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
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
    /// The role the job runs as (the caller has been checked to be allowed to act as it).
    pub owner: pg_sys::Oid,
    pub config: Value,
    pub max_retries: i32,
    pub retry_backoff: Option<&'a str>,
    pub start_at: Option<TimestampWithTimeZone>,
    /// How long one run may take (None: pgmart.job_timeout; zero: no limit).
    pub timeout: Option<pgrx::datum::Interval>,
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

/// Refuse writes on a standby with 25006 and a hint.
pub fn require_primary(what: &str) {
    if sql::in_recovery() {
        PgMartError::read_only(format!("cannot {what} on a standby"))
            .hint("Run it on the primary; the standby receives the change through replication.")
            .raise();
    }
}

/// `start_at` must be a finite time (a job at ±infinity would never run, or run at once forever):
/// its epoch seconds, or 22023.
pub fn check_start_at(start_at: Option<TimestampWithTimeZone>) -> Option<f64> {
    let t = start_at?;
    let epoch = sql::one::<f64>(
        "SELECT CASE WHEN pg_catalog.isfinite($1::timestamp with time zone) \
                     THEN EXTRACT(epoch FROM $1::timestamp with time zone)::double precision END",
        &[t.into()],
    );
    match epoch {
        Some(e) if (-62135596800.0..=253402300799.0).contains(&e) => Some(e),
        _ => PgMartError::invalid("start_at must be a finite time between the years 1 and 9999").raise(),
    }
}

/// Longest job name (bytes).
pub const MAX_NAME: usize = 200;

/// A job name not taken yet: `base`, or `base (2)`, `base (3)`, ... The one way every generated
/// name is made (partition sets, refresh schedules, check suites): a table renamed and replaced by
/// another of its name, or a long schema-qualified name, never makes a registration fail.
pub fn free_name(base: &str) -> String {
    // Room for " (NNNN)" within MAX_NAME, cut on a character boundary.
    let mut cut = base.len().min(MAX_NAME - 8);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    let base = &base[..cut];
    let taken: Vec<String> = sql::as_catalog_owner(|| {
        sql::column::<String>(
            "SELECT name FROM pgmart.job WHERE name OPERATOR(pg_catalog.=) $1 \
                OR name OPERATOR(pg_catalog.^@) ($1 OPERATOR(pg_catalog.||) ' (')",
            &[base.into()],
        )
    });
    if !taken.iter().any(|t| t == base) {
        return base.to_string();
    }
    (2..).map(|n| format!("{base} ({n})")).find(|c| !taken.contains(c)).expect("a free name")
}

/// One role may own at most `pgmart.max_jobs_per_role` jobs (superusers are not limited).
fn check_job_limit(owner: pg_sys::Oid) {
    if unsafe { pg_sys::superuser_arg(owner) } {
        return;
    }
    let limit = guc::MAX_JOBS_PER_ROLE.get() as i64;
    let n = sql::as_catalog_owner(|| {
        sql::one::<i64>(
            "SELECT pg_catalog.count(*) FROM pgmart.job j JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor \
              WHERE a.relowner OPERATOR(pg_catalog.=) $1",
            &[owner.into()],
        )
    })
    .unwrap_or(0);
    if n >= limit {
        PgMartError::new(
            pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("role {} already owns {n} pgmart jobs, the most pgmart.max_jobs_per_role allows", sql::role_name(owner)),
        )
        .hint("Drop jobs you no longer need, or ask an administrator to raise pgmart.max_jobs_per_role.")
        .raise();
    }
}

/// Validate and insert a job; returns its id. Raises on a bad schedule, time zone, duplicate name.
pub fn register(job: NewJob) -> i64 {
    require_primary("register a pgmart job");
    if job.name.trim().is_empty() {
        PgMartError::invalid("job name must not be empty").raise();
    }
    if job.name.len() > MAX_NAME {
        PgMartError::invalid(format!("job name is longer than {MAX_NAME} bytes")).raise();
    }
    if job.max_retries < 0 || job.max_retries > 100 {
        PgMartError::invalid("max_retries must be between 0 and 100").raise();
    }
    let (schedule, zone) = engine::validate(job.schedule, job.timezone).or_raise();
    let backoff = job.retry_backoff.unwrap_or("1 minute");
    check_backoff(backoff);
    let start_epoch = check_start_at(job.start_at);
    let now = Utc::now();
    let first = engine::first_run(&schedule, &zone.tz, now).or_raise();
    let first_epoch = start_epoch.unwrap_or(first.timestamp_micros() as f64 / 1e6);
    // Interval slots are counted from start_at when given (its first run), else from now.
    let origin_epoch = start_epoch.unwrap_or(now.timestamp_micros() as f64 / 1e6);
    check_job_limit(job.owner);
    let exists = sql::as_catalog_owner(|| {
        sql::one::<bool>("SELECT EXISTS (SELECT 1 FROM pgmart.job WHERE name OPERATOR(pg_catalog.=) $1)", &[job.name.into()])
    });
    if exists == Some(true) {
        PgMartError::duplicate(format!("a pgmart job named \"{}\" already exists", job.name))
            .hint("Choose another name, or change the existing job with pgmart.alter_job().")
            .raise();
    }
    check_timeout(job.timeout);
    let id = sql::as_catalog_owner(|| {
        sql::one::<i64>("SELECT pg_catalog.nextval('pgmart.job_job_id_seq'::pg_catalog.regclass)", &[])
    })
    .expect("job id");
    let anchor = crate::owners::create("job", &id.to_string(), job.owner, &format!("pgmart job {id}: {}", job.name));
    sql::as_catalog_owner(|| {
        sql::exec(
            "INSERT INTO pgmart.job (job_id, name, kind, target, schedule, timezone, config, max_retries, \
                                     retry_backoff, next_run_at, anchor, slot_origin, timeout) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::pg_catalog.text::interval, pg_catalog.to_timestamp($10), \
                     $11::pg_catalog.regclass, pg_catalog.to_timestamp($12), $13)",
            &[
                id.into(),
                job.name.into(),
                job.kind.into(),
                job.target.into(),
                job.schedule.trim().into(),
                zone.name.as_str().into(),
                pgrx::JsonB(job.config).into(),
                job.max_retries.into(),
                backoff.into(),
                first_epoch.into(),
                anchor.as_str().into(),
                origin_epoch.into(),
                job.timeout.into(),
            ],
        )
    });
    notice_if_no_workers();
    id
}

/// A job's timeout: zero (no limit) or positive, at most a week.
pub fn check_timeout(timeout: Option<pgrx::datum::Interval>) {
    if let Some(t) = timeout {
        let total = (t.days() as i128) * 86_400_000_000 + t.micros() as i128;
        let ok = t.months() == 0 && t.days() >= 0 && t.micros() >= 0 && total <= 7 * 86_400_000_000;
        if !ok {
            PgMartError::invalid("timeout must be between 0 (no limit) and 7 days")
                .hint("For example timeout => '30 minutes'.")
                .raise();
        }
    }
}

pub fn check_backoff(text: &str) {
    let ok = sql::subtransaction(|| {
        sql::one::<bool>(
            "SELECT $1::pg_catalog.text::interval OPERATOR(pg_catalog.>=) '0'::interval \
                AND $1::pg_catalog.text::interval OPERATOR(pg_catalog.<=) '1 day'::interval",
            &[text.into()],
        )
        .unwrap_or(false)
    });
    if !matches!(ok, Ok(true)) {
        PgMartError::invalid(format!("invalid retry_backoff \"{text}\": give an interval between 0 and 1 day")).raise();
    }
}

/// Change a job's schedule (and time zone): it next runs at its new schedule's first slot. The one
/// path every capability uses to reschedule its job.
pub fn reschedule(job_id: i64, schedule: &str, timezone: Option<&str>) {
    let current = engine::load(job_id).unwrap_or_else(|| engine::not_yours(job_id).raise());
    let (s, zone) = engine::validate(schedule, timezone.unwrap_or(&current.timezone)).or_raise();
    let now = Utc::now();
    let next = engine::first_run(&s, &zone.tz, now).or_raise();
    sql::as_catalog_owner(|| {
        sql::exec(
            "UPDATE pgmart.job SET schedule = $2, timezone = $3, next_run_at = pg_catalog.to_timestamp($4), \
                    slot_origin = pg_catalog.to_timestamp($5) \
              WHERE job_id OPERATOR(pg_catalog.=) $1",
            &[
                job_id.into(),
                schedule.trim().into(),
                zone.name.as_str().into(),
                (next.timestamp_micros() as f64 / 1e6).into(),
                (now.timestamp_micros() as f64 / 1e6).into(),
            ],
        )
    });
}

/// Load a job the caller may act as, or raise the same "does not exist or you may not act on it"
/// for a missing job and another role's (a superuser may also act on jobs whose owner is gone).
pub fn job_for_caller(job_id: i64) -> Job {
    engine::load(job_id).filter(caller_may_act_on).unwrap_or_else(|| engine::not_yours(job_id).raise())
}

fn caller_may_act_on(job: &Job) -> bool {
    let caller = sql::caller();
    (job.owner != 0 && sql::may_act_as(caller, job.owner_oid())) || unsafe { pg_sys::superuser_arg(caller) }
}

/// The id of the job of this name the caller may act on; a missing job and another role's get the
/// same 42704 (naming the name, never the other role's id).
pub fn job_id_named(name: &str) -> i64 {
    let id = sql::as_catalog_owner(|| {
        sql::one::<i64>("SELECT job_id FROM pgmart.job WHERE name OPERATOR(pg_catalog.=) $1", &[name.into()])
    });
    id.and_then(engine::load)
        .filter(caller_may_act_on)
        .map(|j| j.job_id)
        .unwrap_or_else(|| engine::not_yours(format!("\"{name}\"")).raise())
}

/// A capability's job registered again (its object scheduled anew): the new retry policy, target
/// and time limit (None: unchanged), enabled, with its failures forgotten.
pub fn renew(job_id: i64, max_retries: i32, retry_backoff: &str, target: &str, timeout: Option<pgrx::datum::Interval>) {
    sql::as_catalog_owner(|| {
        sql::exec(
            "UPDATE pgmart.job SET max_retries = $2, retry_backoff = $3::pg_catalog.text::interval, \
                    enabled = true, consecutive_failures = 0, target = $4, timeout = coalesce($5, timeout) \
              WHERE job_id OPERATOR(pg_catalog.=) $1",
            &[job_id.into(), max_retries.into(), retry_backoff.into(), target.into(), timeout.into()],
        )
    });
}

/// Stop the scheduler running a job (it stays, with its history, until resumed or dropped).
pub fn disable_job(job_id: i64) {
    sql::as_catalog_owner(|| {
        sql::exec("UPDATE pgmart.job SET enabled = false WHERE job_id OPERATOR(pg_catalog.=) $1", &[job_id.into()])
    });
}

/// A job whose table or view was dropped: disable it once, with a health alert (one while open),
/// instead of letting it run forever for nothing. `pgmart.drop_job` then removes it.
pub fn disable_orphaned(job: &Job, source_kind: &str, object: &str, target: Option<&str>, problem: &str) {
    disable_job(job.job_id);
    crate::alerts::raise_health(crate::alerts::Health {
        source_kind,
        source_name: object,
        severity: "medium",
        target,
        payload: json!({ "problem": problem, "job_id": job.job_id }),
        dedup_key: &format!("{source_kind}_dropped:{}", job.job_id),
        owner: job.owner_oid(),
        job_id: Some(job.job_id),
        check_id: None,
    });
}

/// Delete a job row (with its history and the registrations that reference it).
pub fn delete_job(job_id: i64) {
    sql::as_catalog_owner(|| {
        sql::exec("DELETE FROM pgmart.job WHERE job_id OPERATOR(pg_catalog.=) $1", &[job_id.into()])
    });
    crate::owners::drop(&crate::owners::anchor_name("job", &job_id.to_string()));
}

/// Delete a job and its owner anchor.
pub fn drop_job_and_anchor(job_id: i64) {
    delete_job(job_id);
}

/// A job whose owner anchor was dropped (DROP OWNED BY): it goes, with what hangs on it.
pub fn forget(id: &str) {
    if let Ok(job_id) = id.parse::<i64>() {
        sql::as_catalog_owner(|| {
            sql::exec("DELETE FROM pgmart.job WHERE job_id OPERATOR(pg_catalog.=) $1", &[job_id.into()]);
        });
    }
}

/// The role a registering call makes its object for: the caller, or `run_as` when the caller may
/// act as that role.
pub fn owner_for(run_as: Option<&str>) -> pg_sys::Oid {
    let caller = sql::caller();
    match run_as {
        None => caller,
        Some(name) => {
            let role = sql::role_oid(name).or_raise();
            if !sql::may_act_as(caller, role) {
                PgMartError::privilege(format!("you may not schedule jobs to run as \"{name}\""))
                    .hint(format!("Only a role that may SET ROLE to \"{name}\" may make it a job's owner."))
                    .raise();
            }
            role
        }
    }
}

// Symbol schedule_sql_0_2_wrapper: 0.1.0 declared schedule_sql with fewer arguments (see src/legacy.rs).
#[pg_extern(schema = "pgmart", name = "schedule_sql", volatile)]
#[allow(clippy::too_many_arguments)]
fn schedule_sql_0_2(
    name: Option<&str>,
    command: Option<&str>,
    schedule: Option<&str>,
    timezone: default!(Option<&str>, "'UTC'"),
    max_retries: default!(Option<i32>, 3),
    retry_backoff: default!(Option<&str>, "'1 minute'"),
    start_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    run_as: default!(Option<&str>, "NULL"),
    timeout: default!(Option<pgrx::datum::Interval>, "NULL"),
) -> i64 {
    let (name, command, schedule) = (required(name, "name"), required(command, "command"), required(schedule, "schedule"));
    let (timezone, max_retries, retry_backoff) =
        (timezone.unwrap_or("UTC"), max_retries.unwrap_or(3), retry_backoff.unwrap_or("1 minute"));
    let checked = sql_job::validate_command(command).unwrap_or_else(|e| {
        if engine::parse_schedule(command).is_ok() {
            PgMartError::invalid(format!(
                "pgmart.schedule_sql takes (name, command, schedule): \"{}\" is a schedule, not a command",
                command.trim()
            ))
            .hint("pg_cron's order is pgmart.schedule(job_name, schedule, command); or name the arguments: schedule_sql(name => ..., schedule => ..., command => ...).")
            .raise()
        }
        e.raise()
    });
    let owner = owner_for(run_as);
    register(NewJob {
        name,
        kind: "sql",
        target: None,
        schedule,
        timezone,
        owner,
        config: json!({ "command": command, "own_transaction": checked.own_transaction }),
        max_retries,
        retry_backoff: Some(retry_backoff),
        start_at,
        timeout,
    })
}

/// pg_cron's `cron.schedule(job_name, schedule, command)`: makes a sql job of that name with the
/// defaults of `schedule_sql`, or, when the caller already has a sql job of that name, gives it this
/// schedule and command (a NOTICE says what changed). Returns the job id.
#[pg_extern(schema = "pgmart", name = "schedule", volatile)]
fn schedule_named(job_name: Option<&str>, schedule: Option<&str>, command: Option<&str>) -> i64 {
    require_primary("schedule a pgmart job");
    let (name, schedule, command) =
        (required(job_name, "job_name"), required(schedule, "schedule"), required(command, "command"));
    require_primary("schedule a pgmart job");
    let existing = sql::as_catalog_owner(|| {
        sql::one::<i64>("SELECT job_id FROM pgmart.job WHERE name OPERATOR(pg_catalog.=) $1", &[name.into()])
    });
    let Some(job) = existing.and_then(engine::load) else {
        return schedule_sql_0_2(Some(name), Some(command), Some(schedule), None, None, None, None, None, None);
    };
    if !caller_may_act_on(&job) {
        PgMartError::duplicate(format!("a pgmart job named \"{name}\" already exists"))
            .hint("Job names are unique in a database: choose another name.")
            .raise();
    }
    if job.kind != "sql" {
        PgMartError::wrong_object_type(format!("job \"{name}\" is a {} job, not a sql job", job.kind))
            .hint("pgmart.schedule() makes and changes sql jobs; change this one with pgmart.alter_job().")
            .raise();
    }
    let old_command = job.config.get("command").and_then(|c| c.as_str()).unwrap_or_default();
    let new_schedule = (job.schedule != schedule.trim()).then_some(schedule);
    let new_command = (old_command != command).then_some(command);
    let mut changed = vec![];
    if new_schedule.is_some() {
        changed.push(format!("schedule '{}' -> '{}'", job.schedule, schedule.trim()));
    }
    if new_command.is_some() {
        changed.push("command".to_string());
    }
    if changed.is_empty() {
        notice!("job \"{name}\" already runs this command on this schedule: nothing changed");
    } else {
        alter(job.job_id, Alter { schedule: new_schedule, command: new_command, ..Default::default() });
        notice!("job \"{name}\" changed: {}", changed.join(", "));
    }
    job.job_id
}

/// pg_cron's `cron.schedule(schedule, command)`: a sql job named after its command.
#[pg_extern(schema = "pgmart", name = "schedule", volatile)]
fn schedule_unnamed(schedule: Option<&str>, command: Option<&str>) -> i64 {
    require_primary("schedule a pgmart job");
    let (schedule, command) = (required(schedule, "schedule"), required(command, "command"));
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut base = words.join(" ");
    if let Some((cut, _)) = base.char_indices().nth(60) {
        base.truncate(cut);
    }
    let name = free_name(&base);
    schedule_sql_0_2(Some(&name), Some(command), Some(schedule), None, None, None, None, None, None)
}

/// pg_cron's `cron.unschedule(job_name)`: drops the caller's job of that name (as `drop_job`).
#[pg_extern(schema = "pgmart", name = "unschedule", volatile)]
fn unschedule_named(job_name: Option<&str>) -> bool {
    require_primary("unschedule a pgmart job");
    drop_one(job_id_named(required(job_name, "job_name")));
    true
}

/// pg_cron's `cron.unschedule(job_id)`.
#[pg_extern(schema = "pgmart", name = "unschedule", volatile)]
fn unschedule_id(job_id: Option<i64>) -> bool {
    require_primary("unschedule a pgmart job");
    drop_one(required(job_id, "job_id"));
    true
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
fn run_job(job_id: Option<i64>) -> TableIterator<
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
    run_one(required(job_id, "job_id"))
}

#[pg_extern(schema = "pgmart", name = "run_job", volatile)]
fn run_job_named(job_name: Option<&str>) -> TableIterator<
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
    require_primary("run a pgmart job");
    run_one(job_id_named(required(job_name, "job_name")))
}

fn run_one(job_id: i64) -> RunRows {
    require_primary("run a pgmart job");
    let caller = sql::caller();
    let job = engine::claim_for_manual_run(job_id, caller);
    if crate::jobs::kinds::find(&job.kind).is_some_and(|k| k.needs_own_transaction(&job)) && crate::worker::available() {
        // It cannot run inside this transaction: the scheduler runs it now, in a runner.
        sql::as_catalog_owner(|| {
            sql::exec(
                "UPDATE pgmart.job SET next_run_at = pg_catalog.clock_timestamp() WHERE job_id OPERATOR(pg_catalog.=) $1",
                &[job_id.into()],
            )
        });
        return to_rows(vec![RunReport {
            job_id,
            name: job.name,
            kind: job.kind,
            target: job.target,
            status: "queued".into(),
            duration_ms: 0.0,
            message: Some("runs outside a transaction block: a background runner runs it now (see pgmart.job_runs)".into()),
        }]);
    }
    let run_id = engine::start_run(&job, &format!("run_job by {}", sql::role_name(caller)));
    to_rows(vec![engine::execute(&job, run_id, Trigger::Manual)])
}

#[pg_extern(schema = "pgmart", volatile)]
fn pause_job(job_id: Option<i64>) {
    pause(required(job_id, "job_id"));
}

#[pg_extern(schema = "pgmart", name = "pause_job", volatile)]
fn pause_job_named(job_name: Option<&str>) {
    require_primary("pause a pgmart job");
    pause(job_id_named(required(job_name, "job_name")));
}

fn pause(job_id: i64) {
    require_primary("pause a pgmart job");
    job_for_caller(job_id);
    disable_job(job_id);
}

#[pg_extern(schema = "pgmart", volatile)]
fn resume_job(job_id: Option<i64>) {
    resume(required(job_id, "job_id"));
}

#[pg_extern(schema = "pgmart", name = "resume_job", volatile)]
fn resume_job_named(job_name: Option<&str>) {
    require_primary("resume a pgmart job");
    resume(job_id_named(required(job_name, "job_name")));
}

fn resume(job_id: i64) {
    require_primary("resume a pgmart job");
    let job = job_for_caller(job_id);
    let now = Utc::now();
    let next = engine::next_slot(&job, now).or_raise();
    let behind = job.next_run_epoch.map(|e| engine::epoch_to_utc(e) < now).unwrap_or(true);
    sql::as_catalog_owner(|| {
        sql::exec(
            "UPDATE pgmart.job SET enabled = true, consecutive_failures = 0, \
                    next_run_at = CASE WHEN $2 THEN pg_catalog.to_timestamp($3) ELSE next_run_at END \
              WHERE job_id OPERATOR(pg_catalog.=) $1",
            &[job_id.into(), behind.into(), (next.timestamp_micros() as f64 / 1e6).into()],
        )
    });
}

// Symbol alter_job_0_2_wrapper: 0.1.0 declared alter_job with fewer arguments (see src/legacy.rs).
#[pg_extern(schema = "pgmart", name = "alter_job", volatile)]
#[allow(clippy::too_many_arguments)]
fn alter_job_0_2(
    job_id: Option<i64>,
    schedule: default!(Option<&str>, "NULL"),
    timezone: default!(Option<&str>, "NULL"),
    max_retries: default!(Option<i32>, "NULL"),
    retry_backoff: default!(Option<&str>, "NULL"),
    enabled: default!(Option<bool>, "NULL"),
    command: default!(Option<&str>, "NULL"),
    name: default!(Option<&str>, "NULL"),
    timeout: default!(Option<pgrx::datum::Interval>, "NULL"),
) {
    let change = Alter { schedule, timezone, max_retries, retry_backoff, enabled, command, name, timeout };
    alter(required(job_id, "job_id"), change);
}

#[pg_extern(schema = "pgmart", name = "alter_job", volatile)]
#[allow(clippy::too_many_arguments)]
fn alter_job_named(
    job_name: Option<&str>,
    schedule: default!(Option<&str>, "NULL"),
    timezone: default!(Option<&str>, "NULL"),
    max_retries: default!(Option<i32>, "NULL"),
    retry_backoff: default!(Option<&str>, "NULL"),
    enabled: default!(Option<bool>, "NULL"),
    command: default!(Option<&str>, "NULL"),
    name: default!(Option<&str>, "NULL"),
    timeout: default!(Option<pgrx::datum::Interval>, "NULL"),
) {
    require_primary("alter a pgmart job");
    let change = Alter { schedule, timezone, max_retries, retry_backoff, enabled, command, name, timeout };
    alter(job_id_named(required(job_name, "job_name")), change);
}

/// What `alter_job` changes (None: unchanged).
#[derive(Default)]
struct Alter<'a> {
    schedule: Option<&'a str>,
    timezone: Option<&'a str>,
    max_retries: Option<i32>,
    retry_backoff: Option<&'a str>,
    enabled: Option<bool>,
    command: Option<&'a str>,
    name: Option<&'a str>,
    timeout: Option<pgrx::datum::Interval>,
}

fn alter(job_id: i64, change: Alter) {
    let Alter { schedule, timezone, max_retries, retry_backoff, enabled, command, name, timeout } = change;
    require_primary("alter a pgmart job");
    let job = job_for_caller(job_id);
    check_timeout(timeout);
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
        if n.len() > MAX_NAME {
            PgMartError::invalid(format!("job name is longer than {MAX_NAME} bytes")).raise();
        }
    }
    let mut config = job.config.clone();
    if let Some(c) = command {
        if job.kind != "sql" {
            PgMartError::invalid(format!("job {job_id} is a {} job; only sql jobs have a command", job.kind)).raise();
        }
        let checked = sql_job::validate_command(c).or_raise();
        config["command"] = json!(c);
        config["own_transaction"] = json!(checked.own_transaction);
    }
    if schedule.is_some() || timezone.is_some() {
        // Validated before anything changes; applied through the one reschedule path.
        let s = schedule.unwrap_or(&job.schedule).to_string();
        engine::validate(&s, timezone.unwrap_or(&job.timezone)).or_raise();
    }
    if let Some(n) = name {
        let taken = sql::as_catalog_owner(|| {
            sql::one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pgmart.job WHERE name OPERATOR(pg_catalog.=) $1 AND job_id OPERATOR(pg_catalog.<>) $2)",
                &[n.into(), job_id.into()],
            )
        });
        if taken == Some(true) {
            PgMartError::duplicate(format!("a pgmart job named \"{n}\" already exists")).raise();
        }
    }
    if schedule.is_some() || timezone.is_some() {
        reschedule(job_id, schedule.unwrap_or(&job.schedule), timezone);
    }
    sql::as_catalog_owner(|| {
        sql::exec(
            "UPDATE pgmart.job SET max_retries = coalesce($2, max_retries), \
                    retry_backoff = coalesce($3::pg_catalog.text::interval, retry_backoff), enabled = coalesce($4, enabled), \
                    config = $5, name = coalesce($6, name), timeout = coalesce($7, timeout) \
              WHERE job_id OPERATOR(pg_catalog.=) $1",
            &[
                job_id.into(),
                max_retries.into(),
                retry_backoff.into(),
                enabled.into(),
                pgrx::JsonB(config).into(),
                name.into(),
                timeout.into(),
            ],
        )
    });
}

#[pg_extern(schema = "pgmart", volatile)]
fn drop_job(job_id: Option<i64>) {
    drop_one(required(job_id, "job_id"));
}

#[pg_extern(schema = "pgmart", name = "drop_job", volatile)]
fn drop_job_named(job_name: Option<&str>) {
    require_primary("drop a pgmart job");
    drop_one(job_id_named(required(job_name, "job_name")));
}

fn drop_one(job_id: i64) {
    require_primary("drop a pgmart job");
    let job = job_for_caller(job_id);
    // A job whose object was dropped is disabled when it next runs; it (with its registration)
    // can then go this way. Others belong to a set-up that has its own way to remove them.
    if let Some(kind) = crate::jobs::kinds::find(&job.kind) {
        if !kind.target_gone(&job) {
            if let Some(hint) = kind.drop_hint() {
                PgMartError::state(format!("job {job_id} belongs to a {} set-up and cannot be dropped on its own", job.kind))
                    .hint(hint)
                    .raise();
            }
        }
    }
    delete_job(job_id);
}
