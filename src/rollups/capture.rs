//! The capture trigger's work, on every writing statement of a rollup's source: read the time
//! column of the statement's transition tables, group the instants ([`plan::Changed`]), and
//! append the ranges to pgmart's log. No SQL runs here once a backend knows the rollup: the
//! instants are read straight from the tuplestores and the log rows are inserted as catalog rows
//! are (the log is pgmart's; writers need no privilege on it, as before, when the insert ran as
//! pgmart). What the trigger knows of each (rollup, relation) is kept per backend and forgotten
//! on any relation cache invalidation (a partition attached or detached, a trigger or column
//! changed, a rollup dropped with its triggers).

use super::exec;
use super::plan::{self, Shape};
use crate::error::PgMartError;
use crate::timecol::TimeKind;
use pgrx::pg_sys;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;

/// What a capture trigger saw: new rows (INSERT), old rows (DELETE), both (UPDATE), or a
/// TRUNCATE (everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Captured {
    New,
    Old,
    Both,
    All,
}

/// A rollup's capture on one relation.
#[derive(Clone)]
pub struct Target {
    /// The time column in that relation (partitions may order their columns differently).
    attnum: i16,
    kind: TimeKind,
    cells: (i64, i64),
    /// For a date column: the rollup's time zone (a day starts at its local midnight).
    zone: Option<CString>,
}

impl Target {
    pub fn new(relid: pg_sys::Oid, shape: &Shape, cells: (i64, i64)) -> Target {
        let col = CString::new(shape.time_column.as_str()).unwrap_or_default();
        // SAFETY: a syscache lookup by relation and name.
        let attnum = unsafe { pg_sys::get_attnum(relid, col.as_ptr()) };
        if attnum <= 0 {
            PgMartError::state(format!("the time column {} of a rollup is missing from a partition of its source", shape.time_column))
                .hint("Drop the rollup with pgmart.drop_rollup() and create it again.")
                .raise();
        }
        Target {
            attnum,
            kind: shape.kind,
            cells,
            zone: (shape.kind == TimeKind::Date).then(|| CString::new(shape.timezone.as_str()).unwrap_or_default()),
        }
    }
}

thread_local! {
    static TARGETS: RefCell<HashMap<(i64, u32), Option<Target>>> = RefCell::new(HashMap::new());
    /// Bumped by every relation cache invalidation; the map is emptied when it moved.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    static SEEN: Cell<u64> = const { Cell::new(0) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// pgmart.rollup_invalidation, known since the last invalidation.
    static LOG: Cell<u32> = const { Cell::new(0) };
}

unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
}

fn target(job_id: i64, relid: pg_sys::Oid) -> Option<Target> {
    if !REGISTERED.with(|r| r.replace(true)) {
        // SAFETY: registers a plain function for the life of the backend.
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget), pg_sys::Datum::from(0usize)) };
    }
    let now = GENERATION.with(|g| g.get());
    if SEEN.with(|s| s.replace(now)) != now {
        TARGETS.with(|t| t.borrow_mut().clear());
        LOG.with(|l| l.set(0));
    }
    let key = (job_id, u32::from(relid));
    if let Some(hit) = TARGETS.with(|t| t.borrow().get(&key).cloned()) {
        return hit;
    }
    let found = exec::capture_target(job_id, relid);
    // Kept only if nothing was invalidated while it was being looked up.
    if GENERATION.with(|g| g.get()) == now {
        TARGETS.with(|t| t.borrow_mut().insert(key, found.clone()));
    }
    found
}

fn log_relation() -> pg_sys::Oid {
    let known = LOG.with(|l| l.get());
    if known != 0 {
        return pg_sys::Oid::from(known);
    }
    let oid = exec::log_relation();
    LOG.with(|l| l.set(u32::from(oid)));
    oid
}

/// A capture trigger fired on relation `relid` for rollup `job_id`: log what its statement
/// changed. Nothing is logged from a table that is not the rollup's source or one of its
/// partitions (a table detached since), or for a rollup that is gone.
///
/// # Safety
/// `td` is the `TriggerData` of the trigger call in progress.
pub unsafe fn captured(job_id: i64, relid: pg_sys::Oid, what: Captured, td: *const pg_sys::TriggerData) {
    let Some(t) = target(job_id, relid) else {
        return;
    };
    let ranges = if what == Captured::All {
        vec![(plan::NEG_INF, plan::POS_INF)]
    } else {
        let mut changed = plan::Changed::new(t.cells);
        let desc = (*(*td).tg_relation).rd_att;
        if matches!(what, Captured::New | Captured::Both) {
            scan((*td).tg_newtable, desc, t.attnum, |d| changed.add(local(&t, d)));
        }
        if matches!(what, Captured::Old | Captured::Both) {
            scan((*td).tg_oldtable, desc, t.attnum, |d| changed.add(local(&t, d)));
        }
        changed.ranges().into_iter().map(|(lo, hi)| (instant(&t, lo), instant(&t, hi))).collect()
    };
    if !ranges.is_empty() {
        append(log_relation(), job_id, &ranges);
    }
}

/// A time column's value on its own clock, in microseconds from 2000-01-01 (the infinities stay
/// infinite).
fn local(t: &Target, d: pg_sys::Datum) -> i64 {
    match t.kind {
        TimeKind::Timestamptz | TimeKind::Timestamp => d.value() as i64,
        TimeKind::Date => match d.value() as i32 {
            i32::MIN => i64::MIN,
            i32::MAX => i64::MAX,
            days => i64::from(days) * 86_400_000_000,
        },
    }
}

/// The instant (a timestamptz) of a value from [`local`]: a timestamp is read as UTC, a date is
/// its local midnight in the rollup's zone.
fn instant(t: &Target, v: i64) -> i64 {
    match (&t.zone, v) {
        (_, i64::MIN | i64::MAX) | (None, _) => v,
        (Some(zone), _) => unsafe {
            let zone = pg_sys::cstring_to_text(zone.as_ptr());
            let at = pg_sys::OidFunctionCall2Coll(
                pg_sys::Oid::from(pg_sys::F_TIMEZONE_TEXT_TIMESTAMP),
                pg_sys::InvalidOid,
                pg_sys::Datum::from(zone),
                pg_sys::Datum::from(v),
            );
            at.value() as i64
        },
    }
}

/// Every non-null value of attribute `attnum` in a transition table, read through a read pointer
/// of our own (as a scan of the table in SQL would), without copying the rows.
unsafe fn scan(ts: *mut pg_sys::Tuplestorestate, desc: pg_sys::TupleDesc, attnum: i16, mut f: impl FnMut(pg_sys::Datum)) {
    if ts.is_null() {
        return;
    }
    let slot = pg_sys::MakeSingleTupleTableSlot(desc, std::ptr::addr_of!(pg_sys::TTSOpsMinimalTuple));
    let ptr = pg_sys::tuplestore_alloc_read_pointer(ts, pg_sys::EXEC_FLAG_REWIND as i32);
    pg_sys::tuplestore_select_read_pointer(ts, ptr);
    pg_sys::tuplestore_rescan(ts);
    let i = (attnum - 1) as usize;
    while pg_sys::tuplestore_gettupleslot(ts, true, false, slot) {
        if ((*slot).tts_nvalid as i32) < attnum as i32 {
            pg_sys::slot_getsomeattrs_int(slot, attnum as i32);
        }
        if !*(*slot).tts_isnull.add(i) {
            f(*(*slot).tts_values.add(i));
        }
    }
    pg_sys::ExecDropSingleTupleTableSlot(slot);
}

/// Append `(job_id, lo, hi, now())` rows to the log, as catalog rows are inserted (heap and
/// indexes, no executor, no permission check: the log is pgmart's own).
unsafe fn append(log: pg_sys::Oid, job_id: i64, ranges: &[(i64, i64)]) {
    let rel = pg_sys::table_open(log, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
    let desc = (*rel).rd_att;
    if (*desc).natts != 4 {
        pg_sys::table_close(rel, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        PgMartError::state("pgmart's change log (pgmart.rollup_invalidation) is not the one this pgmart expects")
            .hint("Run ALTER EXTENSION pgmart UPDATE.")
            .raise();
    }
    let indexes = pg_sys::CatalogOpenIndexes(rel);
    let logged = pg_sys::GetCurrentTransactionStartTimestamp();
    for &(lo, hi) in ranges {
        let mut values = [pg_sys::Datum::from(job_id), pg_sys::Datum::from(lo), pg_sys::Datum::from(hi), pg_sys::Datum::from(logged)];
        let mut nulls = [false; 4];
        let tuple = pg_sys::heap_form_tuple(desc, values.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::CatalogTupleInsertWithInfo(rel, tuple, indexes);
        pg_sys::heap_freetuple(tuple);
    }
    pg_sys::CatalogCloseIndexes(indexes);
    pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
}
