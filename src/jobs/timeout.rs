//! A job's own time limit (`timeout`, default `pgmart.job_timeout`): a timer that cancels the run
//! like a statement timeout would (SQLSTATE 57014), but that pgmart can tell apart from a user's
//! cancel or the caller's own `statement_timeout`, which stop everything.

use pgrx::pg_sys;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

unsafe extern "C-unwind" {
    fn RegisterTimeout(id: i32, handler: Option<unsafe extern "C-unwind" fn()>) -> i32;
    fn enable_timeout_after(id: i32, delay_ms: i32);
    fn disable_timeout(id: i32, keep_indicator: bool);
}

static ID: AtomicI32 = AtomicI32::new(-1);
static FIRED: AtomicBool = AtomicBool::new(false);

/// Runs in the signal handler: note it, and ask for a query cancel at the next interrupt check.
unsafe extern "C-unwind" fn fired() {
    FIRED.store(true, Ordering::SeqCst);
    pg_sys::InterruptPending = 1;
    pg_sys::QueryCancelPending = 1;
    if !pg_sys::MyLatch.is_null() {
        pg_sys::SetLatch(pg_sys::MyLatch);
    }
}

fn id() -> i32 {
    let id = ID.load(Ordering::Relaxed);
    if id >= 0 {
        return id;
    }
    let id = unsafe { RegisterTimeout(crate::compat::USER_TIMEOUT, Some(fired)) };
    ID.store(id, Ordering::Relaxed);
    id
}

/// The job timer, running while this value lives.
pub struct Timer;

impl Timer {
    /// Start the timer (no timer for 0 or less).
    pub fn start(ms: i64) -> Timer {
        FIRED.store(false, Ordering::SeqCst);
        if ms > 0 {
            unsafe { enable_timeout_after(id(), ms.min(i32::MAX as i64) as i32) };
        }
        Timer
    }
    /// Whether the timer went off (and so a 57014 came from it, not from a user).
    pub fn fired(&self) -> bool {
        FIRED.load(Ordering::SeqCst)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if ID.load(Ordering::Relaxed) >= 0 {
            unsafe { disable_timeout(ID.load(Ordering::Relaxed), false) };
        }
    }
}
