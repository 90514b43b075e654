//! Background workers: a static launcher (started with the server when pgmart is preloaded) starts
//! one scheduler per database that has the extension; each scheduler runs that database's due jobs
//! through the same engine as `pgmart.refresh_due()`.

pub mod launcher;
pub mod scheduler;
pub mod wake;

use pgrx::prelude::*;

pub const LAUNCHER_TYPE: &str = "pgmart launcher";
pub const SCHEDULER_TYPE: &str = "pgmart scheduler";

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
    if let Ok(c) = std::ffi::CString::new(text) {
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
