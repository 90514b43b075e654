//! Arguments of the SQL API, taken the same way by every public function (see "Errors" in
//! docs/jobs.md):
//!
//! * every argument is an `Option` and no function is STRICT: a NULL for a required argument is
//!   ERROR 22004 naming it ([`required`]), never a silent empty result; NULL for an argument with a
//!   default means that default (`unwrap_or`);
//! * a `regclass` argument is a [`RegClass`], which opens nothing when the call starts: a dropped
//!   table's (or a made-up) OID is 42P01 naming the argument ([`relation`]), not PostgreSQL's
//!   internal "could not open relation with OID";
//! * text arrays of names may not hold NULLs ([`names`]).

use crate::error::{required, PgMartError};
use crate::sql;
use pgrx::callconv::{Arg, ArgAbi};
use pgrx::nullable::Nullable;
use pgrx::prelude::*;

/// A `regclass` argument: just the OID, checked and locked by [`relation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegClass(pub pg_sys::Oid);

impl FromDatum for RegClass {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, typoid: pg_sys::Oid) -> Option<Self> {
        unsafe { pg_sys::Oid::from_polymorphic_datum(datum, is_null, typoid) }.map(RegClass)
    }
}

unsafe impl<'fcx> ArgAbi<'fcx> for RegClass {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        unsafe { arg.unbox_arg_using_from_datum::<RegClass>() }
            .unwrap_or_else(|| PgMartError::null_argument(&format!("${}", index + 1)).raise())
    }
    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        unsafe { arg.unbox_arg_using_from_datum::<RegClass>() }.into()
    }
}

pgrx::impl_sql_translatable!(RegClass, arg_only = "regclass");

/// A `regclass[]` argument: just the OIDs (NULL elements kept as None), each checked by
/// [`relations`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegClassArray(pub Vec<Option<pg_sys::Oid>>);

impl FromDatum for RegClassArray {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _typoid: pg_sys::Oid) -> Option<Self> {
        unsafe { Vec::<Option<pg_sys::Oid>>::from_polymorphic_datum(datum, is_null, pg_sys::OIDOID) }.map(RegClassArray)
    }
}

unsafe impl<'fcx> ArgAbi<'fcx> for RegClassArray {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        unsafe { arg.unbox_arg_using_from_datum::<RegClassArray>() }
            .unwrap_or_else(|| PgMartError::null_argument(&format!("${}", index + 1)).raise())
    }
    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        unsafe { arg.unbox_arg_using_from_datum::<RegClassArray>() }.into()
    }
}

pgrx::impl_sql_translatable!(RegClassArray, arg_only = "regclass[]");

/// The OIDs of a `regclass[]` argument (NULL: none), each as [`relation`] checks it; 22004 for a
/// NULL element.
pub fn relations(arg: Option<RegClassArray>, name: &str) -> Vec<pg_sys::Oid> {
    arg.map(|a| a.0)
        .unwrap_or_default()
        .into_iter()
        .map(|o| {
            let o = o.unwrap_or_else(|| {
                PgMartError::new(
                    pgrx::PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                    format!("argument \"{name}\" must not contain NULL elements"),
                )
                .hint(format!("List the relations in {name} without NULLs."))
                .raise()
            });
            relation(Some(RegClass(o)), name)
        })
        .collect()
}

/// The OID of a required `regclass` argument: 22004 when NULL, 42P01 when no relation has that
/// OID (any more). The relation is locked (ACCESS SHARE, until the transaction ends) before it is
/// looked at, as PostgreSQL locks the relations a statement names, so it cannot be dropped
/// between the checks that follow and the work.
pub fn relation(arg: Option<RegClass>, name: &str) -> pg_sys::Oid {
    let oid = required(arg, name).0;
    lock_existing(oid, name);
    oid
}

/// [`relation`] for an optional `regclass` argument (NULL: none given).
pub fn optional_relation(arg: Option<RegClass>, name: &str) -> Option<pg_sys::Oid> {
    arg.map(|r| relation(Some(r), name))
}

fn lock_existing(oid: pg_sys::Oid, name: &str) {
    let exists = |oid: pg_sys::Oid| unsafe {
        pg_sys::SearchSysCacheExists(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(oid),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        )
    };
    let missing = || {
        PgMartError::undefined_table(format!("relation with OID {} does not exist", u32::from(oid)))
            .hint(format!("Argument \"{name}\" names a table or view that was dropped, or an OID that is not a relation's."))
    };
    if oid == pg_sys::InvalidOid || !exists(oid) {
        missing().raise();
    }
    unsafe { pg_sys::LockRelationOid(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
    // Dropped while we waited for the lock.
    if !exists(oid) {
        unsafe { pg_sys::UnlockRelationOid(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
        missing().raise();
    }
}

/// The relation's name as `regclass` prints it (schema-qualified when it is not on the path).
pub fn relation_text(oid: pg_sys::Oid) -> String {
    sql::one::<String>("SELECT $1::pg_catalog.oid::pg_catalog.regclass::pg_catalog.text", &[oid.into()])
        .unwrap_or_else(|| u32::from(oid).to_string())
}

/// A text array of names (columns, dimensions): 22004 when an element is NULL.
pub fn names(arg: Option<Vec<Option<String>>>, name: &str) -> Option<Vec<String>> {
    arg.map(|v| {
        v.into_iter()
            .map(|e| {
                e.unwrap_or_else(|| {
                    PgMartError::new(
                        pgrx::PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                        format!("argument \"{name}\" must not contain NULL elements"),
                    )
                    .hint(format!("List the names in {name} without NULLs, e.g. ARRAY['a', 'b']."))
                    .raise()
                })
            })
            .collect()
    })
}

/// Longest interval pgmart takes for a retention, an SLO or a freshness limit: time computed from
/// it (`now() - retention`) stays far inside what a timestamp can hold.
pub const MAX_INTERVAL_YEARS: i128 = 1000;

/// An interval argument that must be positive (every part at least zero, not all zero) and at
/// most [`MAX_INTERVAL_YEARS`]: 22023 naming the argument otherwise.
pub fn check_positive_interval(iv: &pgrx::datum::Interval, name: &str) {
    let (m, d, us) = (iv.months() as i128, iv.days() as i128, iv.micros() as i128);
    if m < 0 || d < 0 || us < 0 || (m == 0 && d == 0 && us == 0) {
        PgMartError::invalid(format!("{name} must be a positive interval"))
            .hint(format!("For example {name} => '30 days'."))
            .raise();
    }
    let approx_days = m * 61 / 2 + d + us / 86_400_000_000; // 30.5 days a month: 12 months are 366 days
    if approx_days > MAX_INTERVAL_YEARS * 366 {
        PgMartError::invalid(format!("{name} may be at most {MAX_INTERVAL_YEARS} years")).raise();
    }
}
