//! The launcher: one static worker per server, connected to no database (it reads only the shared
//! catalog pg_database, so there is no database it depends on). It starts a scheduler for every
//! allowed database, and starts it again at once when it stops: a scheduler that dies is also
//! restarted by the postmaster within a second, and the launcher hears of every exit
//! (`bgw_notify_pid`). A database without pgmart is looked at again only when `CREATE EXTENSION
//! pgmart` wakes the launcher, or once a minute.

use super::status::{self, NO_SLOT_SCHEDULER};
use super::{attach_signals, report, reload_config_if_asked, Started, SCHEDULER_TYPE};
use crate::guc;
use pgrx::bgworkers::*;
use pgrx::prelude::*;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

const PROBE_EVERY: Duration = Duration::from_secs(60);
const LOOP_EVERY: Duration = Duration::from_secs(10);

pub fn register() {
    BackgroundWorkerBuilder::new(super::LAUNCHER_TYPE)
        .set_type(super::LAUNCHER_TYPE)
        .set_library("pgmart")
        .set_function("pgmart_launcher_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

fn start_scheduler(db: &str) -> Option<Started> {
    Started::start(
        BackgroundWorkerBuilder::new(&format!("pgmart scheduler {db}"))
            .set_type(SCHEDULER_TYPE)
            .set_library("pgmart")
            .set_function("pgmart_scheduler_main")
            .enable_spi_access()
            .set_restart_time(Some(Duration::from_secs(1)))
            .set_extra(db),
    )
}

/// Every database that could have a scheduler: (oid, name), from pg_database.
fn databases() -> Vec<(pg_sys::Oid, String)> {
    PgTryBuilder::new(AssertUnwindSafe(|| unsafe {
        pg_sys::StartTransactionCommand();
        pg_sys::GetTransactionSnapshot();
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as i32);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        let mut out = vec![];
        loop {
            let tup = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tup.is_null() {
                break;
            }
            let db = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tup);
            if db.datallowconn && !db.datistemplate {
                let name = std::ffi::CStr::from_ptr(db.datname.data.as_ptr()).to_string_lossy().into_owned();
                out.push((db.oid, name));
            }
        }
        pg_sys::heap_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        pg_sys::CommitTransactionCommand();
        out
    }))
    .catch_others(|e| {
        unsafe { pg_sys::AbortCurrentTransaction() };
        log!("pgmart launcher: cannot list databases: {}", crate::sql::Caught::from_caught(&e).message);
        vec![]
    })
    .execute()
}

struct Scheduler {
    started: Option<Started>,
    last_start: Instant,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgmart_launcher_main(_arg: pg_sys::Datum) {
    attach_signals();
    BackgroundWorker::connect_worker_to_spi(None, None);
    report(pg_sys::BackendState::STATE_IDLE, "pgmart launcher");
    let mut schedulers: HashMap<u32, Scheduler> = HashMap::new();
    loop {
        reload_config_if_asked();
        let probe = status::take_probe();
        if guc::ENABLED.get() {
            for (oid, db) in databases() {
                if !super::allowed(&db) {
                    continue;
                }
                let key = u32::from(oid);
                let known = status::get(oid);
                let running = schedulers.get(&key).is_some_and(|s| s.started.as_ref().is_some_and(|w| !w.stopped()));
                // Its scheduler is alive (one this launcher did not start: it was restarted).
                let alive = known.is_some_and(|d| d.scheduler_pid != 0 && unsafe { !pg_sys::BackendPidGetProc(d.scheduler_pid).is_null() });
                if running || alive {
                    continue;
                }
                // A database without pgmart: only after a wake-up (CREATE EXTENSION) or a minute.
                let idle = known.is_some_and(|d| d.no_extension);
                let recently = schedulers.get(&key).is_some_and(|s| s.last_start.elapsed() < PROBE_EVERY);
                if idle && recently && !probe {
                    continue;
                }
                let started = start_scheduler(&db);
                let logged = known.is_some_and(|d| d.no_slot_since != 0 && d.no_slot_for == NO_SLOT_SCHEDULER);
                match &started {
                    Some(_) => {
                        if logged {
                            log!("pgmart launcher: a scheduler for database \"{db}\" could start again");
                        }
                        status::update(oid, |d| {
                            d.no_slot_since = 0;
                            d.no_extension = false;
                        });
                    }
                    None => {
                        if !logged {
                            log!("pgmart launcher: no free background worker slot for the scheduler of database \"{db}\" (raise max_worker_processes; see pgmart.worker_status())");
                        }
                        status::update(oid, |d| {
                            if d.no_slot_since == 0 {
                                d.no_slot_since = status::now_us();
                            }
                            d.no_slot_for = NO_SLOT_SCHEDULER;
                        });
                    }
                }
                schedulers.insert(key, Scheduler { started, last_start: Instant::now() });
            }
        }
        // Woken early by CREATE EXTENSION, or by a scheduler that started or stopped.
        if !BackgroundWorker::wait_latch(Some(LOOP_EVERY)) {
            break;
        }
    }
}
