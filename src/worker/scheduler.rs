//! One scheduler per database (a dynamic worker connected as the bootstrap superuser, which runs
//! no user code at all): it queues due jobs and starts one runner per run, up to
//! `pgmart.max_parallel_jobs` at once, owners taking turns. It sleeps until the next job is due or
//! `pgmart.naptime`, whichever is first; a catalog change, a runner's exit and the end of a
//! session's transaction that held due jobs wake it. It stops a runner that outlives its job's
//! timeout, and marks the run of a runner that died `interrupted` (the job runs again at once).

use super::status::{self, NO_SLOT_RUNNER};
use super::{report, reload_config_if_asked, Started, RUNNER_TYPE};
use crate::guc;
use crate::jobs::{engine, history};
use crate::sql::{self, Caught};
use pgrx::bgworkers::*;
use pgrx::prelude::*;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);
/// How long past its timeout a runner may take to stop by itself before it is terminated.
const TIMEOUT_GRACE: Duration = Duration::from_secs(10);

/// Run `f` in its own transaction; an ERROR is caught, the transaction aborted, and None returned.
fn guarded<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    let mut f = Some(f);
    let r = PgTryBuilder::new(AssertUnwindSafe(|| {
        BackgroundWorker::transaction(AssertUnwindSafe(|| Some((f.take().expect("once"))())))
    }))
    .catch_others(|e| {
        unsafe { pg_sys::AbortCurrentTransaction() };
        let c = Caught::from_caught(&e);
        log!("pgmart scheduler: {what} failed: {} ({})", c.message, c.sqlstate);
        None
    })
    .execute();
    unsafe { pg_sys::pgstat_report_stat(false) };
    r
}

/// The extension's state in this database.
enum Installed {
    No,
    OtherVersion(String),
    Yes,
}

fn installed() -> Installed {
    match crate::sql::installed_version() {
        None => Installed::No,
        Some(v) if v != crate::version::LIBRARY => Installed::OtherVersion(v),
        Some(_) => Installed::Yes,
    }
}

/// Seconds until the next job this scheduler could start is due (None when there is none). A job
/// a session runs right now does not count: that session wakes the scheduler when it is done.
fn seconds_to_next_due() -> Option<f64> {
    #[derive(serde::Deserialize)]
    struct Due {
        job_id: i64,
        in_s: f64,
    }
    let due: Vec<Due> = sql::as_catalog_owner(|| {
        sql::rows(
            "SELECT job_id, EXTRACT(epoch FROM next_run_at OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp())::double precision AS in_s \
               FROM pgmart.job WHERE enabled AND running_pid IS NULL ORDER BY next_run_at LIMIT 20",
            &[],
        )
    });
    due.into_iter()
        .find(|d| d.in_s > 0.0 || !crate::locks::held_elsewhere(crate::locks::Kind::JobRun, d.job_id))
        .map(|d| d.in_s)
}

/// A runner this scheduler started, for one run.
struct Runner {
    worker: Started,
    job_id: i64,
    run_id: i64,
    deadline: Option<Instant>,
    terminated: bool,
}

fn start_runner(dboid: pg_sys::Oid, job: &engine::Job, run_id: i64, can_login: bool) -> Option<Started> {
    // bgw_extra carries what the runner needs to connect as the owner: "dboid owner job run login".
    let extra = format!("{} {} {} {} {}", u32::from(dboid), job.owner, job.job_id, run_id, can_login as u8);
    Started::start(
        BackgroundWorkerBuilder::new(&format!("pgmart job {}", job.job_id))
            .set_type(RUNNER_TYPE)
            .set_library("pgmart")
            .set_function("pgmart_runner_main")
            .enable_spi_access()
            .set_restart_time(None)
            .set_extra(&extra),
    )
}

/// Whether a role may log in (a runner connects as a role without LOGIN differently on 15 and 16).
fn can_login(role: u32) -> bool {
    sql::one::<bool>(
        "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE oid OPERATOR(pg_catalog.=) $1",
        &[pg_sys::Oid::from(role).into()],
    )
    .unwrap_or(false)
}

/// Runners that stopped: a run they did not record is marked `interrupted` (the job runs again).
fn reap(runners: &mut Vec<Runner>) {
    let (done, alive): (Vec<Runner>, Vec<Runner>) = std::mem::take(runners).into_iter().partition(|r| r.worker.stopped());
    *runners = alive;
    if !done.is_empty() {
        NO_SLOT_UNTIL.with(|t| t.set(None)); // a slot came free
    }
    for r in &done {
        debug1!("pgmart scheduler: the runner of job {} (run {}) has exited", r.job_id, r.run_id);
        guarded("recovering a run", || engine::runner_gone(r.job_id, r.run_id));
    }
}

/// Stop runners past their job's timeout (a runner cancels its own run at the timeout; this is the
/// backstop for one that cannot).
fn enforce_deadlines(runners: &mut [Runner]) {
    for r in runners.iter_mut() {
        if !r.terminated && r.deadline.is_some_and(|d| Instant::now() > d) {
            log!("pgmart scheduler: terminating the runner of job {}: it is past its timeout", r.job_id);
            r.worker.terminate();
            r.terminated = true;
        }
    }
}

/// After a runner could not start for lack of a worker slot, the next try waits for a runner to
/// exit (its slot comes free) or this long.
const NO_SLOT_RETRY: Duration = Duration::from_secs(1);

thread_local! {
    static NO_SLOT_UNTIL: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    static SHORTAGE_LOGGED: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// Queue due jobs and start their runners, up to the free capacity. Returns how many due jobs are
/// waiting for a slot.
fn start_due(dboid: pg_sys::Oid, runners: &mut Vec<Runner>) -> i32 {
    if NO_SLOT_UNTIL.with(|t| t.get()).is_some_and(|t| Instant::now() < t) {
        return count_waiting();
    }
    let capacity = (guc::MAX_PARALLEL_JOBS.get().max(1) as usize).saturating_sub(runners.len());
    let queued = guarded("queueing jobs", || {
        engine::queue_for_runners(capacity)
            .into_iter()
            .map(|(job, run_id)| {
                let login = can_login(job.owner);
                (job, run_id, login)
            })
            .collect::<Vec<_>>()
    })
    .unwrap_or_default();
    let mut queued = queued.into_iter();
    while let Some((job, run_id, login)) = queued.next() {
        match start_runner(dboid, &job, run_id, login) {
            Some(worker) => {
                let t = job.timeout();
                let deadline = (t > 0).then(|| Instant::now() + Duration::from_millis(t as u64) + TIMEOUT_GRACE);
                runners.push(Runner { worker, job_id: job.job_id, run_id, deadline, terminated: false });
                if status::get(dboid).is_some_and(|d| d.no_slot_since != 0 && d.no_slot_for == NO_SLOT_RUNNER) {
                    status::update(dboid, |d| d.no_slot_since = 0);
                }
            }
            None => {
                // No worker slot: this run and the rest wait for the next turn.
                let rest: Vec<(i64, i64)> =
                    std::iter::once((job.job_id, run_id)).chain(queued.by_ref().map(|(j, r, _)| (j.job_id, r))).collect();
                guarded("giving jobs back", || {
                    for (j, r) in &rest {
                        engine::unqueue(*j, *r);
                    }
                });
                // Said in the log once (then at most every ten minutes), always in worker_status().
                if SHORTAGE_LOGGED.with(|t| t.get()).is_none_or(|t| t.elapsed() > Duration::from_secs(600)) {
                    log!("pgmart scheduler: no free background worker slot for a job runner (raise max_worker_processes; see pgmart.worker_status())");
                    SHORTAGE_LOGGED.with(|t| t.set(Some(Instant::now())));
                }
                if !status::get(dboid).is_some_and(|d| d.no_slot_since != 0) {
                    status::update(dboid, |d| {
                        d.no_slot_since = status::now_us();
                        d.no_slot_for = NO_SLOT_RUNNER;
                    });
                }
                NO_SLOT_UNTIL.with(|t| t.set(Some(Instant::now() + NO_SLOT_RETRY)));
                break;
            }
        }
    }
    count_waiting()
}

/// Due jobs waiting for a runner.
fn count_waiting() -> i32 {
    guarded("counting waiting jobs", || {
        sql::as_catalog_owner(|| {
            sql::one::<i64>(
                "SELECT pg_catalog.count(*) FROM pgmart.job WHERE enabled AND running_pid IS NULL \
                    AND next_run_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()",
                &[],
            )
        })
    })
    .flatten()
    .unwrap_or(0) as i32
}

unsafe extern "C-unwind" fn ignore_signal(_: i32) {}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgmart_scheduler_main(_arg: pg_sys::Datum) {
    super::attach_signals();
    // Cancelling an idle scheduler (SIGINT) must not stop it.
    crate::compat::set_signal_handler(pg_sys::SIGINT as i32, ignore_signal);
    let db = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    engine::IN_WORKER.store(true, std::sync::atomic::Ordering::Relaxed);
    let dboid = unsafe { pg_sys::MyDatabaseId };
    // Everything this process runs resolves names in pg_catalog only.
    unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            sql::SAFE_PATH.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
    // Exit quietly (code 0: not restarted) where pgmart is not installed or another scheduler runs
    // (a lock no SQL function can take, so no role can keep the scheduler out).
    match guarded("starting", installed) {
        Some(Installed::No) | None => {
            status::update(dboid, |d| {
                d.no_extension = true;
                d.scheduler_pid = 0;
            });
            return;
        }
        _ => {}
    }
    if !crate::locks::try_lock(crate::locks::Kind::Scheduler, 0, true) {
        return;
    }
    status::update(dboid, |d| {
        d.scheduler_pid = unsafe { pg_sys::MyProcPid };
        d.no_extension = false;
    });
    log!("pgmart scheduler started for database \"{db}\"");
    report(pg_sys::BackendState::STATE_IDLE, "");
    guarded("recovering interrupted runs", engine::recover_interrupted);
    let mut last_housekeeping: Option<Instant> = None;
    let mut runners: Vec<Runner> = vec![];
    let mut mismatch_logged = false;

    loop {
        reload_config_if_asked();
        if !super::allowed(&db) {
            log!("pgmart scheduler: database \"{db}\" is no longer in pgmart.databases; stopping");
            break;
        }
        let state = guarded("checking the extension", installed);
        match state {
            Some(Installed::No) => {
                log!("pgmart scheduler: extension dropped in database \"{db}\"; stopping");
                status::update(dboid, |d| d.no_extension = true);
                break;
            }
            Some(Installed::OtherVersion(ref v)) => {
                if !mismatch_logged {
                    log!(
                        "pgmart scheduler: database \"{db}\" has pgmart {v} installed but the library is {}: no job runs until ALTER EXTENSION pgmart UPDATE",
                        crate::version::LIBRARY
                    );
                    mismatch_logged = true;
                }
                status::update(dboid, |d| d.version_mismatch = true);
            }
            Some(Installed::Yes) => {
                if mismatch_logged {
                    log!("pgmart scheduler: pgmart in database \"{db}\" is now {}; jobs run again", crate::version::LIBRARY);
                    mismatch_logged = false;
                }
                status::update(dboid, |d| d.version_mismatch = false);
            }
            None => {}
        }
        let ready = matches!(state, Some(Installed::Yes));
        reap(&mut runners);
        enforce_deadlines(&mut runners);
        let mut waiting = 0;
        if guc::ENABLED.get() && ready {
            waiting = start_due(dboid, &mut runners);
            if last_housekeeping.is_none_or(|t| t.elapsed() >= HOUSEKEEPING_EVERY) {
                guarded("pruning history", history::prune);
                last_housekeeping = Some(Instant::now());
            }
        }
        let running = runners.len() as i32;
        status::update(dboid, |d| {
            d.running = running;
            d.waiting = waiting;
        });
        report(pg_sys::BackendState::STATE_IDLE, "");
        let naptime = Duration::from_millis(guc::NAPTIME_MS.get().max(1) as u64);
        let full = runners.len() >= guc::MAX_PARALLEL_JOBS.get().max(1) as usize
            || NO_SLOT_UNTIL.with(|t| t.get()).is_some_and(|t| Instant::now() < t);
        let mut sleep = if guc::ENABLED.get() && ready && !full {
            match guarded("looking ahead", seconds_to_next_due).flatten() {
                Some(s) if s <= 0.0 => Duration::from_millis(1),
                Some(s) => naptime.min(Duration::from_secs_f64(s + 0.005)),
                None => naptime,
            }
        } else {
            naptime
        };
        if let Some(t) = NO_SLOT_UNTIL.with(|t| t.get()) {
            sleep = sleep.min(t.saturating_duration_since(Instant::now()) + Duration::from_millis(1));
        }
        if let Some(d) = runners.iter().filter(|r| !r.terminated).filter_map(|r| r.deadline).min() {
            sleep = sleep.min(d.saturating_duration_since(Instant::now()) + Duration::from_millis(10));
        }
        if !BackgroundWorker::wait_latch(Some(sleep)) {
            break;
        }
    }
    status::update(dboid, |d| d.scheduler_pid = 0);
}
