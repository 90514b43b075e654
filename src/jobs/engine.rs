//! Claim due jobs, run each as its owner with `lock_timeout` and a time limit, record the run,
//! retry with backoff, alert after the last retry. Shared by `pgmart.refresh_due()`, `run_job()`,
//! the background scheduler and its runners, so that no job ever runs twice at once.
//!
//! Who runs a job holds its run lock (`locks::Kind::JobRun`, a lock no SQL function can take) for
//! as long as the run lasts: a session until its transaction ends, a runner until it exits. So
//! whether a claimed run is alive is a fact about now (a try-lock), never about a snapshot. The
//! scheduler queues a run (`running_pid` = the scheduler, a `queued` history row) and starts a
//! runner, which takes the lock, marks the run `running`, runs it and records it; a queued run is
//! alive while its scheduler is. A claim whose holder is gone is released and its run marked
//! `interrupted`, and the job runs again.

use crate::error::{PgMartError, Result};
use crate::guc;
use crate::jobs::schedule::{self, Every, Schedule, ScheduleText};
use crate::sql::{self, Caught};
use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use crate::locks::{self, Kind as Lock};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set in background workers, so the engine reports the current job in pg_stat_activity.
pub static IN_WORKER: AtomicBool = AtomicBool::new(false);

pub use crate::jobs::job::{Job, JOB_SELECT};

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
            if schedule::bare_number(&i) {
                return Err(PgMartError::invalid(format!("invalid schedule \"{text}\": a number needs its unit"))
                    .hint(format!("Write its unit, for example '{i} seconds' or '{i} minutes'.")));
            }
            if i.contains('@') {
                return Err(PgMartError::invalid(format!(
                    "invalid schedule \"{text}\": neither an interval nor a 5-field cron expression"
                ))
                .hint("Examples: '30 seconds', '1 hour', '0 3 * * *', '@daily', '0 0 $ * *'."));
            }
            let parsed = sql::subtransaction(|| {
                sql::one::<pgrx::datum::Interval>("SELECT $1::pg_catalog.text::interval", &[i.as_str().into()])
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
            if schedule::add_every(&chrono_tz::UTC, Utc::now(), &every).is_none() {
                return Err(too_far(text));
            }
            Ok(Schedule::Every(every))
        }
    }
}

/// Validate schedule and time zone together (what every registering function calls). The zone
/// comes back under the name to store (see [`crate::jobs::tz`]: `'utc'` is stored as `UTC`).
pub fn validate(schedule_text: &str, timezone: &str) -> Result<(Schedule, crate::jobs::tz::Zone)> {
    let zone = crate::jobs::tz::resolve(timezone)?;
    Ok((parse_schedule(schedule_text)?, zone))
}

fn too_far(text: &str) -> PgMartError {
    PgMartError::invalid(format!("invalid schedule \"{text}\": its next run would be after the year 9999"))
        .hint("Give a shorter interval.")
}

/// The approximate period of a schedule in seconds: the interval's length, or the gap between the
/// next two cron matches.
pub fn approx_period(schedule_text: &str, timezone: &str) -> Result<f64> {
    let (s, zone) = validate(schedule_text, timezone)?;
    let tz = zone.tz;
    Ok(match s {
        Schedule::Every(e) => e.approx_seconds(),
        Schedule::Cron(c) => {
            let n1 = schedule::next_cron(&c, &tz, chrono::Utc::now())?;
            let n2 = schedule::next_cron(&c, &tz, n1)?;
            ((n2 - n1).num_milliseconds() as f64 / 1000.0).max(1.0)
        }
    })
}

/// When a new job first falls due: one interval from now, or the next cron match.
pub fn first_run(s: &Schedule, tz: &chrono_tz::Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    match s {
        Schedule::Every(e) => schedule::add_every(tz, now, e).ok_or_else(|| too_far("interval")),
        Schedule::Cron(c) => schedule::next_cron(c, tz, now),
    }
}

/// The next scheduled slot after `now`: for an interval, the first `origin + n * interval` after
/// it (the origin is the job's creation or start_at); for cron, the next match.
pub fn next_slot(job: &Job, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let (s, zone) = validate(&job.schedule, &job.timezone)?;
    let tz = zone.tz;
    match s {
        Schedule::Every(e) => {
            let origin = job.slot_origin_epoch.or(job.next_run_epoch).map(epoch_to_utc).unwrap_or(now);
            schedule::next_every(&tz, origin, now, &e).ok_or_else(|| too_far(&job.schedule))
        }
        Schedule::Cron(c) => schedule::next_cron(&c, &tz, now),
    }
}

/// A claim left behind by a process that is gone: the job is free again and its run is marked
/// `interrupted` (it stays due, so it runs again at once). Liveness is decided by the run lock
/// (and, for a run the scheduler queued, by the scheduler's lock), never by a snapshot.
pub fn recover_interrupted() -> u64 {
    #[derive(Deserialize)]
    struct Claim {
        job_id: i64,
        queued: bool,
        young: bool,
        running_pid: Option<i32>,
    }
    let claims: Vec<Claim> = sql::as_catalog_owner(|| {
        sql::rows(
            "SELECT j.job_id, j.running_pid, \
                    EXISTS (SELECT 1 FROM pgmart.job_run r WHERE r.job_id OPERATOR(pg_catalog.=) j.job_id \
                               AND r.status OPERATOR(pg_catalog.=) 'queued') AS queued, \
                    j.running_since OPERATOR(pg_catalog.>) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) '30 seconds'::interval) AS young \
               FROM pgmart.job j \
              WHERE j.running_pid IS NOT NULL \
                 OR EXISTS (SELECT 1 FROM pgmart.job_run r WHERE r.job_id OPERATOR(pg_catalog.=) j.job_id \
                               AND r.status OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'running']))",
            &[],
        )
    });
    let mut n = 0;
    for c in claims {
        // Holding the job's run lock ourselves, nobody can start (or finish) running it meanwhile,
        // so the claim we act on is the claim that is there now, not the one we read above.
        if locks::held_by_me(Lock::JobRun, c.job_id) || !locks::try_lock(Lock::JobRun, c.job_id, true) {
            continue; // this session runs it, or its runner or session is alive
        }
        // A queued run waits for the runner its scheduler started, while that scheduler lives (it
        // tells when the runner is gone, see `runner_gone`); a run queued by an earlier scheduler
        // is dead.
        let waiting = c.queued && c.young && c.running_pid.is_some_and(queued_by_live_scheduler);
        if !waiting {
            n += interrupt(c.job_id, c.running_pid);
        }
        locks::unlock(Lock::JobRun, c.job_id, true);
    }
    n
}

/// Whether `pid` is the live scheduler of this database (this process, if it is the scheduler).
fn queued_by_live_scheduler(pid: i32) -> bool {
    let me = unsafe { pg_sys::MyProcPid };
    if pid == me {
        return locks::held_by_me(Lock::Scheduler, 0);
    }
    locks::held_elsewhere(Lock::Scheduler, 0) && unsafe { !pg_sys::BackendPidGetProc(pid).is_null() }
}

/// Mark a job's unfinished runs `interrupted` and free it (it is then due again at once), if its
/// claim is still the one seen (`running_pid`): a run that finished meanwhile is left alone.
fn interrupt(job_id: i64, running_pid: Option<i32>) -> u64 {
    sql::as_catalog_owner(|| {
        let freed = sql::exec_count(
            "UPDATE pgmart.job SET running_pid = NULL, running_since = NULL, \
                    next_run_at = LEAST(next_run_at, pg_catalog.clock_timestamp()) \
              WHERE job_id OPERATOR(pg_catalog.=) $1 AND running_pid IS NOT DISTINCT FROM $2",
            &[job_id.into(), running_pid.into()],
        );
        if freed == 0 {
            return 0;
        }
        sql::exec_count(
            "UPDATE pgmart.job_run SET status = 'interrupted', finished_at = pg_catalog.clock_timestamp(), \
                    message = 'the process running this job ended before the run finished; it runs again' \
              WHERE job_id OPERATOR(pg_catalog.=) $1 AND status OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'running'])",
            &[job_id.into()],
        )
    })
}

/// `WHERE` condition: the role `$1` may act as the job's owner.
fn act_as_condition(param: &str) -> String {
    format!(
        "a.relowner IS NOT NULL AND pg_catalog.pg_has_role({param}::pg_catalog.oid, a.relowner, '{}'::pg_catalog.text)",
        crate::compat::ACT_AS_PRIVILEGE
    )
}

thread_local! {
    static WAKE_REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A session that claimed jobs wakes the scheduler when its transaction ends (commit or abort),
/// so the scheduler never polls while a session holds a due job.
fn wake_scheduler_at_end_of_transaction() {
    if WAKE_REGISTERED.with(|w| w.replace(true)) {
        return;
    }
    let pid = crate::worker::wake::scheduler_pid();
    for event in [pgrx::PgXactCallbackEvent::Commit, pgrx::PgXactCallbackEvent::Abort] {
        pgrx::register_xact_callback(event, move || {
            WAKE_REGISTERED.with(|w| w.set(false));
            if let Some(pid) = pid {
                crate::worker::wake::set_latch(pid);
            }
        });
    }
}

/// Claim the next due job `caller` may act as (skipping those in `skip`), for this session: its
/// row is locked and its run lock held until the session's transaction ends. Claiming one at a
/// time lets concurrent callers share the work. `skip` collects jobs running elsewhere and those
/// this call ran. Only jobs due when the calling statement began count, so a call ends even when
/// jobs fall due faster than it runs them.
pub fn claim_next_for_session(caller: pg_sys::Oid, skip: &mut Vec<i64>) -> Option<Job> {
    loop {
        let job = sql::as_catalog_owner(|| {
            sql::row::<Job>(
                &format!(
                    "{JOB_SELECT} WHERE j.enabled AND j.next_run_at OPERATOR(pg_catalog.<=) pg_catalog.statement_timestamp() \
                       AND j.running_pid IS NULL AND {} AND j.job_id OPERATOR(pg_catalog.<>) ALL($2::pg_catalog.int8[]) \
                     ORDER BY j.next_run_at, j.job_id LIMIT 1 FOR UPDATE OF j SKIP LOCKED",
                    act_as_condition("$1")
                ),
                &[caller.into(), skip.clone().into()],
            )
        })?;
        skip.push(job.job_id);
        if locks::try_lock(Lock::JobRun, job.job_id, false) {
            wake_scheduler_at_end_of_transaction();
            return Some(job);
        }
    }
}

/// How many due jobs beyond its share a scheduler pass looks at (see [`queue_for_runners`]).
const CANDIDATES_BEYOND_MAX: usize = 1000;

/// Queue up to `max` due jobs for runners (the scheduler): each gets `running_pid` = the
/// scheduler and a `queued` history row. Owners take turns (one job of each owner, oldest due
/// first, then the next of each), so one role's thousand due jobs do not starve another's.
pub fn queue_for_runners(max: usize) -> Vec<(Job, i64)> {
    if max == 0 {
        return vec![];
    }
    #[derive(Deserialize)]
    struct Candidate {
        job_id: i64,
    }
    sql::as_catalog_owner(|| {
        let candidates: Vec<Candidate> = sql::rows(
            "SELECT j.job_id FROM ( \
                 SELECT j.job_id, j.next_run_at, \
                        pg_catalog.row_number() OVER (PARTITION BY a.relowner ORDER BY j.next_run_at, j.job_id) AS turn \
                   FROM pgmart.job j LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor \
                  WHERE j.enabled AND j.next_run_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() \
                    AND j.running_pid IS NULL) j \
              ORDER BY j.turn, j.next_run_at, j.job_id LIMIT $1",
            // Generously more than `max`: sessions in refresh_due() may hold many due jobs (until
            // their transactions end), and skipping one costs a try-lock.
            &[((max * 4 + CANDIDATES_BEYOND_MAX) as i64).into()],
        );
        let mut out = vec![];
        for c in candidates {
            if out.len() >= max {
                break;
            }
            if locks::held_elsewhere(Lock::JobRun, c.job_id) {
                continue; // a session runs it right now
            }
            let locked = sql::row::<Job>(
                &format!(
                    "{JOB_SELECT} WHERE j.job_id OPERATOR(pg_catalog.=) $1 AND j.enabled AND j.running_pid IS NULL \
                       AND j.next_run_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() FOR UPDATE OF j SKIP LOCKED"
                ),
                &[c.job_id.into()],
            );
            let Some(job) = locked else { continue };
            sql::exec(
                "UPDATE pgmart.job SET running_pid = pg_catalog.pg_backend_pid(), running_since = pg_catalog.clock_timestamp() \
                  WHERE job_id OPERATOR(pg_catalog.=) $1",
                &[job.job_id.into()],
            );
            let run_id = insert_run(&job, "pgmart scheduler", "queued");
            out.push((job, run_id));
        }
        out
    })
}

/// A runner takes over the run the scheduler queued for it: it takes the run lock (for the whole
/// run) and marks the run `running`. None when the run is no longer queued (it was recovered).
pub fn begin_queued_run(job_id: i64, run_id: i64) -> Option<Job> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !locks::try_lock(Lock::JobRun, job_id, true) {
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        pg_sys::check_for_interrupts!();
    }
    let started = sql::as_catalog_owner(|| {
        // The job's row first, as everywhere (see `record`).
        sql::exec(
            "SELECT 1 FROM pgmart.job WHERE job_id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE",
            &[job_id.into()],
        );
        let n = sql::exec_count(
            "UPDATE pgmart.job_run SET status = 'running', pid = pg_catalog.pg_backend_pid(), \
                    started_at = pg_catalog.clock_timestamp(), \
                    run_by = pg_catalog.format('runner %s (%s)', pg_catalog.pg_backend_pid(), SESSION_USER) \
              WHERE run_id OPERATOR(pg_catalog.=) $1 AND job_id OPERATOR(pg_catalog.=) $2 \
                AND status OPERATOR(pg_catalog.=) 'queued'",
            &[run_id.into(), job_id.into()],
        );
        if n == 1 {
            sql::exec(
                "UPDATE pgmart.job SET running_pid = pg_catalog.pg_backend_pid() WHERE job_id OPERATOR(pg_catalog.=) $1",
                &[job_id.into()],
            );
        }
        n == 1
    });
    if !started {
        locks::unlock(Lock::JobRun, job_id, true);
        return None;
    }
    load(job_id)
}

/// The runner of a queued run exited: a run it never took over failed to start (it could not
/// connect as the owner: no CONNECT privilege, the role's connection limit, ...) and is recorded
/// as failed (and retried by the job's policy); one it took over and left unrecorded was
/// interrupted.
pub fn runner_gone(job_id: i64, run_id: i64) {
    let still_queued = sql::as_catalog_owner(|| {
        sql::one::<bool>(
            "SELECT status OPERATOR(pg_catalog.=) 'queued' FROM pgmart.job_run WHERE run_id OPERATOR(pg_catalog.=) $1",
            &[run_id.into()],
        )
    })
    .unwrap_or(false);
    if !still_queued {
        recover_interrupted();
        return;
    }
    if let Some(job) = load(job_id) {
        let caught = Caught {
            sqlstate: "08004".into(),
            message: format!("the runner of job {job_id} could not connect as its owner {}", sql::role_name(job.owner_oid())),
            detail: None,
            hint: Some("Does the owner still exist, with CONNECT on this database and a free connection? The server log says why.".into()),
        };
        record(&job, run_id, Trigger::Schedule, Err(caught), 0.0);
    }
}

/// Give back a run the scheduler queued but could not start (no free worker slot): the job is
/// due again, its queued row gone.
pub fn unqueue(job_id: i64, run_id: i64) {
    sql::as_catalog_owner(|| {
        sql::exec("DELETE FROM pgmart.job_run WHERE run_id OPERATOR(pg_catalog.=) $1", &[run_id.into()]);
        sql::exec(
            "UPDATE pgmart.job SET running_pid = NULL, running_since = NULL WHERE job_id OPERATOR(pg_catalog.=) $1",
            &[job_id.into()],
        );
    });
}

/// A job by id as the catalog has it (no privilege check).
pub fn load(job_id: i64) -> Option<Job> {
    sql::as_catalog_owner(|| sql::row::<Job>(&format!("{JOB_SELECT} WHERE j.job_id OPERATOR(pg_catalog.=) $1"), &[job_id.into()]))
}

/// The error for a job that does not exist or that the caller may not act on: the same for both,
/// so that nobody learns about other roles' jobs.
pub fn not_yours(job: impl std::fmt::Display) -> PgMartError {
    PgMartError::undefined_object(format!("job {job} does not exist or you may not act on it"))
        .hint("pgmart.jobs lists the jobs you may act on.")
}

/// Lock one job for a manual run in this session; errors if it is running elsewhere or unknown.
pub fn claim_for_manual_run(job_id: i64, caller: pg_sys::Oid) -> Job {
    let job = load(job_id)
        .filter(|j| j.owner != 0 && sql::may_act_as(caller, j.owner_oid()))
        .unwrap_or_else(|| not_yours(job_id).raise());
    recover_interrupted();
    let busy = || {
        PgMartError::new(
            pgrx::PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
            format!("job {job_id} (\"{}\") is running right now", job.name),
        )
        .hint("Wait for that run to finish; pgmart.job_runs shows it.")
        .raise()
    };
    let locked = sql::as_catalog_owner(|| {
        sql::row::<Job>(
            &format!("{JOB_SELECT} WHERE j.job_id OPERATOR(pg_catalog.=) $1 AND j.running_pid IS NULL FOR UPDATE OF j SKIP LOCKED"),
            &[job_id.into()],
        )
    })
    .unwrap_or_else(busy);
    if !locks::try_lock(Lock::JobRun, job_id, false) {
        busy();
    }
    wake_scheduler_at_end_of_transaction();
    locked
}

fn insert_run(job: &Job, run_by: &str, status: &str) -> i64 {
    sql::as_catalog_owner(|| {
        sql::one::<i64>(
            "INSERT INTO pgmart.job_run (job_id, status, attempt, run_by, pid) \
             VALUES ($1, $2, $3, $4, pg_catalog.pg_backend_pid()) RETURNING run_id",
            &[job.job_id.into(), status.into(), job.attempt().into(), run_by.into()],
        )
        .expect("run id")
    })
}

/// Insert the `running` history row for a job this session claimed.
pub fn start_run(job: &Job, run_by: &str) -> i64 {
    insert_run(job, run_by, "running")
}

fn report_activity(text: &str) {
    if IN_WORKER.load(Ordering::Relaxed) {
        if let Ok(c) = std::ffi::CString::new(text.replace('\0', "")) {
            unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, c.as_ptr()) };
        }
    }
}

/// Writes that must survive the rollback of a failed run (a failed refresh's history row, its
/// alert): a kind queues them with [`after_rollback`] and the engine makes them after the run,
/// whatever its outcome.
pub type Deferred = Box<dyn FnOnce()>;

thread_local! {
    static DEFERRED: std::cell::RefCell<Vec<Deferred>> = std::cell::RefCell::new(Vec::new());
}

/// Queue a write to be made after the current job run, even when the run fails and is rolled back.
pub fn after_rollback(f: impl FnOnce() + 'static) {
    DEFERRED.with(|d| d.borrow_mut().push(Box::new(f)));
}

/// Make the queued writes (see [`after_rollback`]).
pub fn flush_deferred() {
    let items: Vec<Deferred> = DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut()));
    for f in items {
        f();
    }
}

/// A finished run's outcome: its details, or the error that ended it.
pub type Outcome = std::result::Result<Value, Caught>;

fn timed_out(job: &Job) -> Caught {
    Caught {
        sqlstate: "57014".into(),
        message: format!("job {} ran past its timeout of {} ms and was cancelled", job.job_id, job.timeout()),
        detail: None,
        hint: Some("Give the job more time with pgmart.alter_job(job, timeout => ...), or make it faster.".into()),
    }
}

/// Run one job this session claimed, as its owner, in a subtransaction with `lock_timeout` and the
/// job's time limit; record the outcome and schedule the next run. A failure of the job is
/// recorded, never raised; a cancel of the caller's statement (or its own statement_timeout)
/// stops the whole call, as it should.
pub fn execute(job: &Job, run_id: i64, trigger: Trigger) -> RunReport {
    let started = std::time::Instant::now();
    let outcome: Outcome = if job.owner == 0 {
        Err(Caught::from_error(&PgMartError::state(format!(
            "job {} has no owner any more (its owner anchor was dropped)",
            job.job_id
        ))))
    } else if crate::jobs::kinds::find(&job.kind).is_some_and(|k| k.needs_own_transaction(job)) {
        Err(Caught::from_error(
            &PgMartError::state(format!("job {} runs outside a transaction block (like psql -c), so only a background runner can run it", job.job_id))
                .hint("Add pgmart to shared_preload_libraries: the scheduler runs it in its own background worker."),
        ))
    } else {
        let timer = crate::jobs::timeout::Timer::start(job.timeout());
        let r = sql::subtransaction_catching_cancel(|| {
            sql::as_role(job.owner_oid(), || {
                sql::set_local("lock_timeout", &format!("{}ms", guc::LOCK_TIMEOUT_MS.get()));
                crate::jobs::kinds::run(job)
            })
        });
        let fired = timer.fired();
        drop(timer);
        flush_deferred();
        match r {
            Err(c) if c.is_cancel() && fired => Err(timed_out(job)),
            Err(c) if c.is_cancel() => c.raise(),
            other => other,
        }
    };
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    record(job, run_id, trigger, outcome, duration_ms)
}

/// What a runner does with the job it took over: run it (the runner is connected as the job's
/// owner, so nothing is switched) with the job's time limit. A kind that needs its own
/// transaction runs outside any; the others in one. Returns the outcome; never raises.
pub fn execute_in_runner(job: &Job) -> (Outcome, f64) {
    let started = std::time::Instant::now();
    report_activity(&format!("pgmart job {}: {}", job.job_id, job.name));
    // pgmart.lock_timeout bounds every job's lock waits (a job never blocks others for long).
    unsafe {
        let v = std::ffi::CString::new(format!("{}ms", guc::LOCK_TIMEOUT_MS.get())).expect("no NUL");
        pg_sys::SetConfigOption(c"lock_timeout".as_ptr(), v.as_ptr(), pg_sys::GucContext::PGC_USERSET, pg_sys::GucSource::PGC_S_SESSION);
    }
    let timer = crate::jobs::timeout::Timer::start(job.timeout());
    let own = crate::jobs::kinds::find(&job.kind).is_some_and(|k| k.needs_own_transaction(job));
    let r = sql::top_level(own, || crate::jobs::kinds::run(job));
    let fired = timer.fired();
    drop(timer);
    let r = match r {
        Err(c) if c.is_cancel() && fired => Err(timed_out(job)),
        other => other,
    };
    (r, started.elapsed().as_secs_f64() * 1000.0)
}

/// Record a finished run (history row, the job's state, next slot or retry, alert after the last
/// retry) and free the job. Makes the deferred writes first.
pub fn record(job: &Job, run_id: i64, trigger: Trigger, outcome: Outcome, duration_ms: f64) -> RunReport {
    // The job's row before its history, the order drop_job's cascade takes them in: recording a
    // run never deadlocks with a drop of its job (the drop waits, or the job is gone).
    sql::as_catalog_owner(|| {
        sql::exec(
            "SELECT 1 FROM pgmart.job WHERE job_id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE",
            &[job.job_id.into()],
        )
    });
    flush_deferred();
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
            // A kind that had nothing to work on (its object is missing) says `"skipped": true`.
            let status = if details.get("skipped").and_then(|s| s.as_bool()) == Some(true) { "skipped" } else { "succeeded" };
            report.status = status.into();
            report.message = details.get("message").and_then(|m| m.as_str()).map(String::from);
            let next = if trigger == Trigger::Schedule || was_due { slot() } else { job.next_run_epoch };
            sql::exec(
                "UPDATE pgmart.job_run SET status = $3, finished_at = pg_catalog.clock_timestamp(), details = $2 \
                  WHERE run_id OPERATOR(pg_catalog.=) $1",
                &[run_id.into(), pgrx::JsonB(details).into(), status.into()],
            );
            sql::exec(
                "UPDATE pgmart.job SET last_run_at = pg_catalog.clock_timestamp(), last_status = $3, \
                        consecutive_failures = 0, running_pid = NULL, running_since = NULL, \
                        next_run_at = coalesce(pg_catalog.to_timestamp($2), next_run_at) \
                  WHERE job_id OPERATOR(pg_catalog.=) $1",
                &[job.job_id.into(), next.into(), status.into()],
            );
            crate::alerts::resolve(&format!("job_failed:{}", job.job_id));
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
                "UPDATE pgmart.job_run SET status = $2, finished_at = pg_catalog.clock_timestamp(), sqlstate = $3, \
                        message = $4, \
                        details = details OPERATOR(pg_catalog.||) pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('detail', $5::pg_catalog.text)) \
                  WHERE run_id OPERATOR(pg_catalog.=) $1",
                &[
                    run_id.into(),
                    status.into(),
                    caught.sqlstate.as_str().into(),
                    caught.message.as_str().into(),
                    caught.detail.clone().into(),
                ],
            );
            sql::exec(
                "UPDATE pgmart.job SET last_run_at = pg_catalog.clock_timestamp(), last_status = $2, \
                        consecutive_failures = CASE WHEN $3 THEN consecutive_failures OPERATOR(pg_catalog.+) 1 ELSE consecutive_failures END, \
                        running_pid = NULL, running_since = NULL, \
                        next_run_at = coalesce(pg_catalog.to_timestamp($4), next_run_at) \
                  WHERE job_id OPERATOR(pg_catalog.=) $1",
                &[job.job_id.into(), status.into(), (trigger == Trigger::Schedule).into(), next.into()],
            );
            if status == "failed" {
                crate::alerts::raise_health(crate::alerts::Health {
                    source_kind: "job",
                    source_name: &job.name,
                    severity: "high",
                    target: job.target.as_deref(),
                    payload: json!({
                        "job_id": job.job_id, "kind": job.kind, "attempts": attempt,
                        "sqlstate": caught.sqlstate, "message": caught.message,
                    }),
                    dedup_key: &format!("job_failed:{}", job.job_id),
                    owner: job.owner_oid(),
                    job_id: Some(job.job_id),
                    check_id: None,
                });
            }
        }
    });
    report
}

/// Run every due job the caller may act as, in this transaction (`pgmart.refresh_due()`). Jobs
/// that need their own transaction are left to the background runners.
pub fn refresh_due() -> Vec<RunReport> {
    let caller = sql::caller();
    crate::jobs::history::prune();
    recover_interrupted();
    let run_by = format!("session {} ({})", unsafe { pg_sys::MyProcPid }, sql::role_name(caller));
    let mut skip: Vec<i64> = vec![];
    let mut reports = vec![];
    while let Some(job) = claim_next_for_session(caller, &mut skip) {
        if crate::worker::available() && crate::jobs::kinds::find(&job.kind).is_some_and(|k| k.needs_own_transaction(&job)) {
            reports.push(RunReport {
                job_id: job.job_id,
                name: job.name.clone(),
                kind: job.kind.clone(),
                target: job.target.clone(),
                status: "skipped".into(),
                duration_ms: 0.0,
                message: Some("runs outside a transaction block: left to a background runner".into()),
            });
            continue;
        }
        let run_id = start_run(&job, &run_by);
        reports.push(execute(&job, run_id, Trigger::Schedule));
    }
    reports
}
