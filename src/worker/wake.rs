//! Waking workers early: a change to the job catalog wakes this database's scheduler, and
//! `CREATE EXTENSION pgmart` wakes the launcher, both when the transaction commits.

use crate::sql;
use pgrx::prelude::*;
use pgrx::{register_xact_callback, PgXactCallbackEvent};

fn set_latch_at_commit(pid: i32) {
    register_xact_callback(PgXactCallbackEvent::Commit, move || unsafe {
        let proc_ = pg_sys::BackendPidGetProc(pid);
        if !proc_.is_null() {
            pg_sys::SetLatch(&mut (*proc_).procLatch);
        }
    });
}

fn wake(backend_type: &str, this_database_only: bool) {
    let pid = sql::one::<i32>(
        "SELECT pid FROM pg_catalog.pg_stat_activity \
          WHERE backend_type = $1 AND pid <> pg_backend_pid() \
            AND (NOT $2 OR datname = current_database()) LIMIT 1",
        &[backend_type.into(), this_database_only.into()],
    );
    if let Some(pid) = pid {
        debug1!("pgmart: will wake {backend_type} (pid {pid}) at commit");
        set_latch_at_commit(pid);
    }
}

/// Wake this database's scheduler when the current transaction commits.
#[pg_extern(volatile)]
fn _wake_scheduler() {
    wake(super::SCHEDULER_TYPE, true);
}

/// Wake the launcher when the current transaction commits (so a new database is picked up now).
#[pg_extern(volatile)]
fn _wake_launcher() {
    wake(super::LAUNCHER_TYPE, false);
}
