//! One scheduler per database: claims due jobs one at a time and runs each in its own transaction
//! through the job engine, as the job's owner. Sleeps until the next job is due or `pgmart.naptime`,
//! whichever is first; a catalog change wakes it early. SIGTERM cancels a running job at once (the
//! job's transaction rolls back and it runs again later).

use super::{attach_signals, report, reload_config_if_asked};
use crate::guc;
use crate::jobs::{engine, history};
use crate::sql::{self, Caught};
use pgrx::bgworkers::*;
use pgrx::prelude::*;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

/// Run `f` in its own transaction; an ERROR is caught, the transaction aborted, and None returned.
fn guarded<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    let mut f = Some(f);
    PgTryBuilder::new(AssertUnwindSafe(|| {
        BackgroundWorker::transaction(AssertUnwindSafe(|| Some((f.take().expect("once"))())))
    }))
    .catch_others(|e| {
        unsafe { pg_sys::AbortCurrentTransaction() };
        let c = Caught::from_caught(&e);
        log!("pgmart scheduler: {what} failed: {} ({})", c.message, c.sqlstate);
        None
    })
    .execute()
}

fn extension_installed() -> bool {
    sql::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pgmart')",
        &[],
    )
        .unwrap_or(false)
}

/// Seconds until the next enabled job is due (None when there is none).
fn seconds_to_next_due() -> Option<f64> {
    sql::as_catalog_owner(|| {
        sql::one::<f64>(
            "SELECT EXTRACT(epoch FROM pg_catalog.min(next_run_at) OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp())::double precision \
               FROM pgmart.job WHERE enabled AND running_pid IS NULL",
            &[],
        )
    })
}

/// Run due jobs, one transaction each, until none is due. Returns false when claiming failed (the
/// caller then waits a full naptime instead of retrying at once).
fn run_due_jobs() -> bool {
    loop {
        let claimed = guarded("claiming a job", engine::claim_one_for_worker);
        let Some(Some((job, run_id))) = claimed else {
            return claimed.is_some();
        };
        let ran = guarded("running a job", || engine::execute(&job, run_id, engine::Trigger::Schedule));
        if ran.is_none() {
            // Recording failed after the job itself: release the claim so the job is not stuck.
            guarded("releasing a job", || sql::as_catalog_owner(|| {
                sql::exec(
                    "UPDATE pgmart.job_run SET status = 'failed', finished_at = clock_timestamp(), \
                            message = 'pgmart could not record this run; see the server log' WHERE run_id = $1",
                    &[run_id.into()],
                );
                sql::exec(
                    "UPDATE pgmart.job SET running_pid = NULL, running_since = NULL WHERE job_id = $1",
                    &[job.job_id.into()],
                );
            }));
        }
        report(pg_sys::BackendState::STATE_IDLE, "");
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgmart_scheduler_main(_arg: pg_sys::Datum) {
    attach_signals();
    let db = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    engine::IN_WORKER.store(true, std::sync::atomic::Ordering::Relaxed);

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
    let leader = guarded("starting", || {
        extension_installed() && crate::locks::try_lock(crate::locks::Kind::Scheduler, 0, true)
    });
    if leader != Some(true) {
        return;
    }
    log!("pgmart scheduler started for database \"{db}\"");
    guarded("recovering interrupted runs", engine::recover_interrupted);
    let mut last_housekeeping: Option<Instant> = None;

    loop {
        reload_config_if_asked();
        if !super::allowed(&db) {
            log!("pgmart scheduler: database \"{db}\" is no longer in pgmart.databases; stopping");
            return;
        }
        if guarded("checking the extension", extension_installed) == Some(false) {
            log!("pgmart scheduler: extension dropped in database \"{db}\"; stopping");
            return;
        }
        let mut healthy = true;
        if guc::ENABLED.get() {
            healthy = run_due_jobs();
            if last_housekeeping.is_none_or(|t| t.elapsed() >= HOUSEKEEPING_EVERY) {
                guarded("pruning history", history::prune);
                last_housekeeping = Some(Instant::now());
            }
        }
        report(pg_sys::BackendState::STATE_IDLE, "");
        let naptime = Duration::from_millis(guc::NAPTIME_MS.get().max(1) as u64);
        let sleep = if guc::ENABLED.get() && healthy {
            match guarded("looking ahead", seconds_to_next_due).flatten() {
                Some(s) if s <= 0.0 => Duration::from_millis(10),
                Some(s) => naptime.min(Duration::from_secs_f64(s + 0.005)),
                None => naptime,
            }
        } else {
            naptime
        };
        if !BackgroundWorker::wait_latch(Some(sleep)) {
            return;
        }
    }
}
