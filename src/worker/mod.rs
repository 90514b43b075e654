//! Background workers. A static launcher (started with the server when pgmart is preloaded; it
//! connects to no database) starts one scheduler per database; a scheduler (a dynamic worker,
//! restarted within a second if it dies) queues that database's due jobs and starts one runner per
//! run, up to `pgmart.max_parallel_jobs`; a runner (a dynamic worker connected to the database *as
//! the job's owner*) runs one job the way a client would, records it and exits.

pub mod launcher;
pub mod runner;
pub mod scheduler;
pub mod status;
pub mod wake;

use pgrx::bgworkers::BackgroundWorkerBuilder;
use pgrx::prelude::*;

pub const LAUNCHER_TYPE: &str = "pgmart launcher";
pub const SCHEDULER_TYPE: &str = "pgmart scheduler";
pub const RUNNER_TYPE: &str = "pgmart job";

/// Whether this server loaded pgmart through shared_preload_libraries (so workers run jobs).
pub fn available() -> bool {
    crate::PRELOADED.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) mod raw_pg {
    // PostgreSQL's own SIGTERM handler: sets ProcDiePending so a running statement is cancelled
    // at its next CHECK_FOR_INTERRUPTS (pgrx's handler only sets a flag).
    unsafe extern "C-unwind" {
        pub fn die(postgres_signal_arg: i32);
    }
}

/// Attach pgrx's SIGHUP handling and PostgreSQL's `die` for SIGTERM.
pub(crate) fn attach_signals() {
    use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    crate::compat::set_signal_handler(pg_sys::SIGTERM as i32, raw_pg::die);
}

/// Show `text` as this worker's query in pg_stat_activity.
pub(crate) fn report(state: pg_sys::BackendState::Type, text: &str) {
    if let Ok(c) = std::ffi::CString::new(text.replace('\0', "")) {
        unsafe { pg_sys::pgstat_report_activity(state, c.as_ptr()) };
    }
}

/// Whether `db` is allowed by `pgmart.databases` (empty list: every database).
pub(crate) fn allowed(db: &str) -> bool {
    let list = crate::guc::databases();
    list.is_empty() || list.iter().any(|d| d == db)
}

pub(crate) fn reload_config_if_asked() {
    if pgrx::bgworkers::BackgroundWorker::sighup_received() {
        unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    }
}

/// A dynamic worker this process started; it is told (SIGUSR1, its latch set) when the worker
/// starts and exits. The handle lives in TopMemoryContext and is freed on drop.
pub struct Started {
    handle: *mut pg_sys::BackgroundWorkerHandle,
}

impl Started {
    /// Register a dynamic worker (None when no worker slot is free).
    pub fn start(builder: BackgroundWorkerBuilder) -> Option<Started> {
        let builder = builder.set_notify_pid(unsafe { pg_sys::MyProcPid });
        let mut bgw: pg_sys::BackgroundWorker = (&builder).into();
        let mut handle: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
        let ok = unsafe {
            let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
            let ok = pg_sys::RegisterDynamicBackgroundWorker(&mut bgw, &mut handle);
            pg_sys::MemoryContextSwitchTo(old);
            ok
        };
        // (Built only on success: a Started owns, and frees, a real handle.)
        if ok && !handle.is_null() {
            Some(Started { handle })
        } else {
            None
        }
    }
    /// Whether it has stopped (or could not start).
    pub fn stopped(&self) -> bool {
        let mut pid: pg_sys::pid_t = 0;
        let st = unsafe { pg_sys::GetBackgroundWorkerPid(self.handle, &mut pid) };
        st == pg_sys::BgwHandleStatus::BGWH_STOPPED || st == pg_sys::BgwHandleStatus::BGWH_POSTMASTER_DIED
    }
    /// Its process id once it runs.
    pub fn pid(&self) -> Option<i32> {
        let mut pid: pg_sys::pid_t = 0;
        let st = unsafe { pg_sys::GetBackgroundWorkerPid(self.handle, &mut pid) };
        (st == pg_sys::BgwHandleStatus::BGWH_STARTED).then_some(pid)
    }
    /// Ask the postmaster to stop it (SIGTERM).
    pub fn terminate(&self) {
        unsafe { pg_sys::TerminateBackgroundWorker(self.handle) };
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        unsafe { pg_sys::pfree(self.handle.cast()) };
    }
}
