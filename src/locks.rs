//! pgmart's own heavyweight locks: advisory lock tags in a class (`locktag_field4`) that no SQL
//! function can take (`pg_advisory_lock` uses classes 1 and 2), so no role can squat on the
//! scheduler's singleton, a run's liveness or history pruning by holding a guessable key.

use pgrx::pg_sys;

/// What a lock protects; its value is the lock class (shown in `pg_locks.objsubid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    /// One scheduler per database.
    Scheduler = 0x6d01,
    /// A job's run: held by whoever runs it, for as long as it runs.
    JobRun = 0x6d02,
    /// History pruning (one session at a time).
    Prune = 0x6d03,
    /// The scheduled check scan of one (table, owner): suite jobs of that pair run one at a time,
    /// so a job whose checks a sibling's scan covered sees that scan's results (see
    /// `checks::exec::run_job`). Key: [`pair`] of the table's and the owner's oids.
    CheckScan = 0x6d04,
    /// One refresh of a rollup at a time (key: its job id).
    RollupRefresh = 0x6d05,
    /// One run of a snapshot at a time (key: its job id).
    SnapshotRun = 0x6d06,
}

/// A lock key made of two oids (a table and a role, say).
pub fn pair(a: u32, b: u32) -> i64 {
    ((a as i64) << 32) | b as i64
}

fn tag(kind: Kind, key: i64) -> pg_sys::LOCKTAG {
    pg_sys::LOCKTAG {
        locktag_field1: unsafe { u32::from(pg_sys::MyDatabaseId) },
        locktag_field2: (key >> 32) as u32,
        locktag_field3: key as u32,
        locktag_field4: kind as u16,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

/// Try to take the lock without waiting. `session`: held until released (or the backend exits),
/// otherwise until the transaction ends.
pub fn try_lock(kind: Kind, key: i64, session: bool) -> bool {
    let t = tag(kind, key);
    let r = unsafe { pg_sys::LockAcquire(&t, pg_sys::ExclusiveLock as i32, session, true) };
    r != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
}

/// Take the lock for the rest of the transaction, waiting for it as long as it takes (the
/// caller's `lock_timeout` and statement or job time limit apply, and the deadlock detector).
pub fn lock_for_transaction(kind: Kind, key: i64) {
    let t = tag(kind, key);
    unsafe { pg_sys::LockAcquire(&t, pg_sys::ExclusiveLock as i32, false, false) };
}

/// Release a lock taken with [`try_lock`].
pub fn unlock(kind: Kind, key: i64, session: bool) {
    let t = tag(kind, key);
    unsafe { pg_sys::LockRelease(&t, pg_sys::ExclusiveLock as i32, session) };
}

/// Whether this process holds the lock.
pub fn held_by_me(kind: Kind, key: i64) -> bool {
    crate::compat::lock_held_by_me(&tag(kind, key), pg_sys::ExclusiveLock as i32)
}

/// Whether anyone (this process included) holds the lock right now.
pub fn held(kind: Kind, key: i64) -> bool {
    let t = tag(kind, key);
    crate::compat::lock_held_by_me(&t, pg_sys::ExclusiveLock as i32) || held_elsewhere(kind, key)
}

/// Whether someone (another process) holds the lock right now: tested by taking it without
/// waiting, and releasing it again at once. A fact about now, not about any snapshot.
pub fn held_elsewhere(kind: Kind, key: i64) -> bool {
    let t = tag(kind, key);
    if crate::compat::lock_held_by_me(&t, pg_sys::ExclusiveLock as i32) {
        return false;
    }
    if try_lock(kind, key, true) {
        unlock(kind, key, true);
        false
    } else {
        true
    }
}
