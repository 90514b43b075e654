//! Waking workers early: a change to the job catalog, or the end of a session's transaction that
//! ran jobs, wakes this database's scheduler; `CREATE EXTENSION pgmart` wakes the launcher; each at
//! commit (or, for a session's claims, at abort too).

use pgrx::prelude::*;
use pgrx::{register_xact_callback, PgXactCallbackEvent};

/// Set a process's latch (if it still exists).
pub fn set_latch(pid: i32) {
    unsafe {
        let proc_ = pg_sys::BackendPidGetProc(pid);
        if !proc_.is_null() {
            pg_sys::SetLatch(&mut (*proc_).procLatch);
        }
    }
}

/// This database's scheduler, as the worker status table knows it.
pub fn scheduler_pid() -> Option<i32> {
    crate::worker::status::get(unsafe { pg_sys::MyDatabaseId }).map(|d| d.scheduler_pid).filter(|&p| p != 0)
}

fn launcher_pid() -> Option<i32> {
    crate::sql::one::<i32>(
        "SELECT pid FROM pg_catalog.pg_stat_activity WHERE backend_type OPERATOR(pg_catalog.=) $1 LIMIT 1",
        &[super::LAUNCHER_TYPE.into()],
    )
}

fn set_latch_at_commit(pid: i32) {
    register_xact_callback(PgXactCallbackEvent::Commit, move || set_latch(pid));
}

/// Wake this database's scheduler when the current transaction commits.
#[pg_extern(schema = "pgmart", volatile)]
fn _wake_scheduler() {
    if let Some(pid) = scheduler_pid() {
        set_latch_at_commit(pid);
    }
}

/// Wake the launcher when the current transaction commits (so a new database is picked up now).
#[pg_extern(schema = "pgmart", volatile)]
fn _wake_launcher() {
    crate::worker::status::request_probe();
    if let Some(pid) = launcher_pid() {
        set_latch_at_commit(pid);
    }
}
