//! The launcher: one static worker per server. It starts a scheduler for every allowed database
//! that has none, at start, when woken by `CREATE EXTENSION pgmart`, and every minute (for a
//! database made from a template that already had pgmart, or a scheduler that exited). Schedulers
//! in databases without the extension exit at once; an advisory lock keeps one per database.

use super::{attach_signals, report, reload_config_if_asked, SCHEDULER_TYPE};
use crate::guc;
use pgrx::bgworkers::*;
use pgrx::prelude::*;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

const PROBE_EVERY: Duration = Duration::from_secs(60);
const LOOP_EVERY: Duration = Duration::from_secs(10);
const EAGER_FOR: Duration = Duration::from_secs(3);
const EAGER_NAP: Duration = Duration::from_millis(500);

pub fn register() {
    BackgroundWorkerBuilder::new(super::LAUNCHER_TYPE)
        .set_type(super::LAUNCHER_TYPE)
        .set_library("pgmart")
        .set_function("pgmart_launcher_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

fn start_scheduler(db: &str) -> bool {
    BackgroundWorkerBuilder::new(&format!("pgmart scheduler {db}"))
        .set_type(SCHEDULER_TYPE)
        .set_library("pgmart")
        .set_function("pgmart_scheduler_main")
        .enable_spi_access()
        .set_extra(db)
        .load_dynamic()
        .is_ok()
}

/// Databases that could have a scheduler and have none running.
fn databases_without_scheduler() -> Vec<String> {
    let r = PgTryBuilder::new(AssertUnwindSafe(|| {
        BackgroundWorker::transaction(|| {
            crate::sql::column::<String>(
                "SELECT d.datname::text FROM pg_catalog.pg_database d \
                  WHERE d.datallowconn AND NOT d.datistemplate AND length(d.datname) < 128 \
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a \
                                     WHERE a.backend_type = $1 AND a.datid = d.oid) \
                  ORDER BY 1",
                &[SCHEDULER_TYPE.into()],
            )
        })
    }))
    .catch_others(|e| {
        unsafe { pg_sys::AbortCurrentTransaction() };
        log!("pgmart launcher: cannot list databases: {:?}", crate::sql::Caught::from_caught(&e).message);
        vec![]
    })
    .execute();
    r
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgmart_launcher_main(_arg: pg_sys::Datum) {
    attach_signals();
    BackgroundWorker::connect_worker_to_spi(Some("postgres"), None);
    report(pg_sys::BackendState::STATE_IDLE, "pgmart launcher");
    let mut last_start: HashMap<String, Instant> = HashMap::new();
    // After a wake-up, probe eagerly for a few seconds: a scheduler started just before the
    // extension's creation committed may still be running (so this pass skips its database) and
    // then exit because it saw no extension.
    let mut eager_until = Instant::now() + EAGER_FOR;
    loop {
        reload_config_if_asked();
        let eager = Instant::now() < eager_until;
        if guc::ENABLED.get() {
            for db in databases_without_scheduler() {
                if !super::allowed(&db) {
                    continue;
                }
                if eager || last_start.get(&db).is_none_or(|t| t.elapsed() >= PROBE_EVERY) {
                    debug1!("pgmart launcher: starting a scheduler for database \"{db}\"");
                    if !start_scheduler(&db) {
                        log!("pgmart launcher: no free background worker slot for database \"{db}\" (raise max_worker_processes)");
                    }
                    last_start.insert(db, Instant::now());
                }
            }
        }
        let nap = if eager { EAGER_NAP } else { LOOP_EVERY };
        let before = Instant::now();
        if !BackgroundWorker::wait_latch(Some(nap)) {
            break;
        }
        if before.elapsed() + Duration::from_millis(20) < nap {
            debug1!("pgmart launcher: woken");
            eager_until = Instant::now() + EAGER_FOR;
        }
    }
}
