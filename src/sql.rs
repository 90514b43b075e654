//! Quoting, SPI helpers, subtransactions and role switching: the only place that talks to SPI
//! directly. Identifiers are always quoted with `quote_identifier`; values always travel as
//! parameters (`$1`), never through `format!`.

use crate::error::{sqlstate_text, PgMartError};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use serde::de::DeserializeOwned;
use std::panic::AssertUnwindSafe;

pub use pgrx::spi::{quote_identifier, quote_literal, quote_qualified_identifier};

/// `query` wrapped to return all its rows as one jsonb array (decoded by [`decode_rows`]).
fn rows_as_json(query: &str) -> String {
    format!("WITH q AS ({query}) SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(q)), '[]'::jsonb) FROM q")
}

fn decode_rows<T: DeserializeOwned>(value: Option<pgrx::JsonB>) -> Vec<T> {
    let value = value.unwrap_or_else(|| pgrx::JsonB(serde_json::json!([])));
    serde_json::from_value(value.0).unwrap_or_else(|e| error!("pgmart: cannot decode row: {e}"))
}

/// Run a query (a SELECT, or DML with RETURNING) and decode every row (as `to_jsonb(row)`) into `T`.
pub fn rows<T: DeserializeOwned>(query: &str, args: &[DatumWithOid]) -> Vec<T> {
    decode_rows(Spi::get_one_with_args(&rows_as_json(query), args).unwrap_or_else(|e| error!("pgmart: SPI failure: {e}")))
}

thread_local! {
    /// Saved plans of [`rows_cached`] queries, by query text (fixed texts only: a handful).
    static PLANS: std::cell::RefCell<std::collections::HashMap<String, pgrx::spi::OwnedPreparedStatement>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Like [`rows`], for a fixed query text run many times in a pass (once per partition set, say):
/// prepared once per backend as a saved SPI plan (PostgreSQL revalidates it when the catalog it
/// depends on changes), so it is not parsed and planned on every call.
pub fn rows_cached<T: DeserializeOwned>(query: &str, args: &[DatumWithOid]) -> Vec<T> {
    let wrapped = rows_as_json(query);
    let value: Option<pgrx::JsonB> = Spi::connect(|c| {
        PLANS.with(|plans| {
            let mut plans = plans.borrow_mut();
            if !plans.contains_key(&wrapped) {
                let types: Vec<pgrx::PgOid> = args.iter().map(|a| pgrx::PgOid::from(a.oid())).collect();
                let stmt = c.prepare(wrapped.as_str(), &types)?.keep();
                plans.insert(wrapped.clone(), stmt);
            }
            c.select(&plans[&wrapped], None, args)?.first().get_one::<pgrx::JsonB>()
        })
    })
    .unwrap_or_else(|e| error!("pgmart: SPI failure: {e}"));
    decode_rows(value)
}

/// Run a one-column query and decode that column of every row into `T`.
pub fn column<T: DeserializeOwned>(query: &str, args: &[DatumWithOid]) -> Vec<T> {
    let wrapped = format!("WITH q(x) AS ({query}) SELECT coalesce(pg_catalog.jsonb_agg(x), '[]'::jsonb) FROM q");
    let value: pgrx::JsonB = Spi::get_one_with_args(&wrapped, args)
        .unwrap_or_else(|e| error!("pgmart: SPI failure: {e}"))
        .unwrap_or_else(|| pgrx::JsonB(serde_json::json!([])));
    serde_json::from_value(value.0).unwrap_or_else(|e| error!("pgmart: cannot decode column: {e}"))
}

/// Run a query and decode its first row, if any.
pub fn row<T: DeserializeOwned>(query: &str, args: &[DatumWithOid]) -> Option<T> {
    rows::<T>(query, args).into_iter().next()
}

/// First column of the first row.
pub fn one<T: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid]) -> Option<T> {
    match Spi::get_one_with_args::<T>(query, args) {
        Ok(v) => v,
        Err(pgrx::spi::Error::InvalidPosition) => None,
        Err(e) => error!("pgmart: SPI failure: {e}"),
    }
}

/// Run a statement for its effect.
pub fn exec(query: &str, args: &[DatumWithOid]) {
    Spi::run_with_args(query, args).unwrap_or_else(|e| error!("pgmart: SPI failure: {e}"))
}

/// Run a statement and return the number of rows it processed.
pub fn exec_count(query: &str, args: &[DatumWithOid]) -> u64 {
    Spi::connect_mut(|c| c.update(query, None, args).map(|t| t.len() as u64))
        .unwrap_or_else(|e| error!("pgmart: SPI failure: {e}"))
}

/// A caught ERROR, reduced to what history tables record.
#[derive(Debug, Clone)]
pub struct Caught {
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
}

impl Caught {
    pub fn from_caught(e: &CaughtError) -> Caught {
        let r = match e {
            CaughtError::PostgresError(r)
            | CaughtError::ErrorReport(r)
            | CaughtError::RustPanic { ereport: r, .. } => r,
        };
        Caught {
            sqlstate: sqlstate_text(r.sql_error_code()),
            message: r.message().to_string(),
            detail: r.detail().map(|s| s.to_string()),
        }
    }
    pub fn from_error(e: &PgMartError) -> Caught {
        Caught { sqlstate: sqlstate_text(e.code), message: e.message.clone(), detail: e.detail.clone() }
    }
}

/// Run `f` in an internal subtransaction. An ERROR inside rolls back only what `f` did and is
/// returned as `Err`; the surrounding transaction goes on.
pub fn subtransaction<R>(f: impl FnOnce() -> R) -> std::result::Result<R, Caught> {
    unsafe {
        // Kept as addresses so the catch handler stays UnwindSafe.
        let old_cxt = pg_sys::CurrentMemoryContext as usize;
        let old_owner = pg_sys::CurrentResourceOwner as usize;
        let restore = move || {
            pg_sys::MemoryContextSwitchTo(old_cxt as pg_sys::MemoryContext);
            pg_sys::CurrentResourceOwner = old_owner as pg_sys::ResourceOwner;
        };
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(old_cxt as pg_sys::MemoryContext);
        let mut f = Some(f);
        PgTryBuilder::new(AssertUnwindSafe(|| {
            let r = (f.take().expect("once"))();
            pg_sys::ReleaseCurrentSubTransaction();
            restore();
            Ok(r)
        }))
        .catch_others(move |e: CaughtError| {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            restore();
            Err(Caught::from_caught(&e))
        })
        .execute()
    }
}

/// The OID of a role by name, or an error naming it.
pub fn role_oid(role: &str) -> std::result::Result<pg_sys::Oid, PgMartError> {
    one::<pg_sys::Oid>("SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1", &[role.into()])
        .ok_or_else(|| PgMartError::undefined_object(format!("role \"{role}\" does not exist")))
}

/// The name of the current user (the role whose privileges apply right now).
pub fn current_role() -> String {
    one::<String>("SELECT current_user::text", &[]).unwrap_or_default()
}

/// Whether `member` may act as `role` (is a member of it, directly or not, or is superuser).
pub fn can_act_as(member: &str, role: &str) -> bool {
    one::<bool>(
        "SELECT pg_catalog.pg_has_role($1::name, $2::name, 'MEMBER')",
        &[member.into(), role.into()],
    )
    .unwrap_or(false)
}

/// Run `f` with `role`'s privileges, the way `REFRESH MATERIALIZED VIEW` runs as the view's owner:
/// the user id is switched, `SET ROLE` is refused inside, the operation is security-restricted
/// (no temporary objects or session state left behind), and any `SET` made inside is undone after.
/// Must be called inside a (sub)transaction: an ERROR inside restores the old user on abort.
pub fn as_role<R>(role_oid: pg_sys::Oid, restricted: bool, f: impl FnOnce() -> R) -> R {
    unsafe {
        let mut save_user: pg_sys::Oid = pg_sys::InvalidOid;
        let mut save_sec: i32 = 0;
        pg_sys::GetUserIdAndSecContext(&mut save_user, &mut save_sec);
        let mut flags = save_sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32;
        if restricted {
            flags |= pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
        }
        pg_sys::SetUserIdAndSecContext(role_oid, flags);
        let nest = pg_sys::NewGUCNestLevel();
        let r = f();
        pg_sys::AtEOXact_GUC(false, nest);
        pg_sys::SetUserIdAndSecContext(save_user, save_sec);
        r
    }
}

/// Run `f` with the privileges of the bootstrap superuser, for writes to pgmart's own catalog from
/// functions that ordinary roles may call. Callers check the caller's rights first.
pub fn as_catalog_owner<R>(f: impl FnOnce() -> R) -> R {
    as_role(pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID), false, f)
}

/// `SET LOCAL name = value` through `set_config`, so the value is a parameter.
pub fn set_local(name: &str, value: &str) {
    exec("SELECT pg_catalog.set_config($1, $2, true)", &[name.into(), value.into()]);
}

/// Whether the server is a standby (in recovery).
pub fn in_recovery() -> bool {
    unsafe { pg_sys::RecoveryInProgress() }
}
