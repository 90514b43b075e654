//! The only place that talks to SPI, and the only place that changes whose privileges apply.
//!
//! * Every statement pgmart runs through these helpers runs with `search_path` pinned to
//!   `pg_catalog, pg_temp` (pg_temp last, explicitly), whatever the caller's path is: no name in
//!   pgmart's SQL can resolve to a caller's (or an attacker's) object. [`caller_path`] is the one,
//!   explicit, way to resolve a *user's* names (a relation a user named in text, a user's command).
//! * [`as_catalog_owner`] runs pgmart's catalog work as the extension's owner
//!   (`pg_extension.extowner`), security-restricted, with the pinned path; [`as_role`] runs work on
//!   a user's objects as that object's owner, the way core runs REFRESH and VACUUM. Both restore
//!   the identity and every setting made inside on the way out, on the error path too.
//! * Identifiers are always quoted with `quote_identifier`; values always travel as parameters
//!   (`$1`), never through `format!`.

use crate::error::{sqlstate_text, PgMartError};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use serde::de::DeserializeOwned;
use std::cell::Cell;
use std::ffi::CStr;
use std::panic::AssertUnwindSafe;

pub use pgrx::spi::{quote_identifier, quote_literal, quote_qualified_identifier};

/// The search path of everything pgmart runs itself.
pub const SAFE_PATH: &CStr = c"pg_catalog, pg_temp";

thread_local! {
    /// > 0 inside [`caller_path`]: statements resolve names through the caller's own path.
    static CALLER_PATH: Cell<u32> = const { Cell::new(0) };
    /// The user who called pgmart, saved when the first identity switch was made (0: none).
    static OUTER_USER: Cell<u32> = const { Cell::new(0) };
    static SWITCH_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// (local transaction id, extension owner) of the last lookup.
    static EXTOWNER: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

/// A GUC nest level: every setting made after it is undone when it is dropped (also while an
/// ERROR unwinds through it; transaction abort would undo it too).
struct GucScope(i32);

impl GucScope {
    fn new() -> Self {
        GucScope(unsafe { pg_sys::NewGUCNestLevel() })
    }
    /// Set `name` to `value` for this scope (`SET LOCAL` semantics for the scope).
    fn set(&self, name: &CStr, value: &CStr) {
        unsafe {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
    }
}

impl Drop for GucScope {
    fn drop(&mut self) {
        unsafe { pg_sys::AtEOXact_GUC(false, self.0) };
    }
}

fn path_is_pinned() -> bool {
    unsafe {
        let p = pg_sys::namespace_search_path;
        !p.is_null() && CStr::from_ptr(p) == SAFE_PATH
    }
}

/// Run `f` with `search_path` pinned to `pg_catalog, pg_temp` (unless it already is).
pub fn pinned<R>(f: impl FnOnce() -> R) -> R {
    if CALLER_PATH.with(|c| c.get()) > 0 || path_is_pinned() {
        return f();
    }
    let scope = GucScope::new();
    scope.set(c"search_path", SAFE_PATH);
    let r = f();
    drop(scope);
    r
}

/// Run `f` with the caller's own `search_path`: only to resolve names a user gave in text (a table
/// in a check's parameters, the objects of a user's command), never inside an identity switch.
pub fn caller_path<R>(f: impl FnOnce() -> R) -> R {
    if SWITCH_DEPTH.with(|d| d.get()) > 0 {
        PgMartError::internal("pgmart: a user's names cannot be resolved inside a privileged block").raise();
    }
    CALLER_PATH.with(|c| c.set(c.get() + 1));
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            CALLER_PATH.with(|c| c.set(c.get().saturating_sub(1)));
        }
    }
    let _pop = Pop;
    f()
}

/// Run `f` with `path` as the search path (a job owner's own path, for the owner's own command
/// run as the owner): pgmart's helpers inside use it as given instead of pinning.
pub fn with_user_path<R>(path: &str, f: impl FnOnce() -> R) -> R {
    let scope = GucScope::new();
    let value = std::ffi::CString::new(path).unwrap_or_else(|_| c"\"$user\", public".to_owned());
    scope.set(c"search_path", &value);
    CALLER_PATH.with(|c| c.set(c.get() + 1));
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            CALLER_PATH.with(|c| c.set(c.get().saturating_sub(1)));
        }
    }
    let pop = Pop;
    let r = f();
    drop(pop);
    drop(scope);
    r
}

/// The search path a role's own sessions start with in this database: its `ALTER ROLE ... IN
/// DATABASE ... SET`, its `ALTER ROLE ... SET`, the database's, or PostgreSQL's default.
pub fn role_search_path(role: pg_sys::Oid) -> String {
    one::<String>(
        "SELECT pg_catalog.substr(c, 13) FROM ( \
            SELECT s.setdatabase, s.setrole, pg_catalog.unnest(s.setconfig) AS c \
              FROM pg_catalog.pg_db_role_setting s \
             WHERE (s.setrole OPERATOR(pg_catalog.=) $1 OR s.setrole OPERATOR(pg_catalog.=) 0::pg_catalog.oid) \
               AND (s.setdatabase OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d \
                                                             WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
                    OR s.setdatabase OPERATOR(pg_catalog.=) 0::pg_catalog.oid)) x \
          WHERE c OPERATOR(pg_catalog.^@) 'search_path=' \
          ORDER BY (setrole OPERATOR(pg_catalog.<>) 0::pg_catalog.oid) DESC, (setdatabase OPERATOR(pg_catalog.<>) 0::pg_catalog.oid) DESC \
          LIMIT 1",
        &[role.into()],
    )
    .unwrap_or_else(|| "\"$user\", public".to_string())
}

/// The role that called pgmart: the current user, or the user saved when pgmart first switched
/// identity (so code inside a privileged block still filters by the real caller).
pub fn caller() -> pg_sys::Oid {
    let outer = OUTER_USER.with(|u| u.get());
    if SWITCH_DEPTH.with(|d| d.get()) > 0 && outer != 0 {
        return pg_sys::Oid::from(outer);
    }
    unsafe { pg_sys::GetUserId() }
}

/// The name of a role (for messages and history), or its OID in brackets when it is gone.
pub fn role_name(role: pg_sys::Oid) -> String {
    pinned(|| one::<String>("SELECT pg_catalog.pg_get_userbyid($1)::pg_catalog.text", &[role.into()]))
        .unwrap_or_else(|| format!("[role {}]", u32::from(role)))
}

/// "Has the owner's rights": `member` has `role`'s privileges without SET ROLE (USAGE).
pub fn has_rights_of(member: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    unsafe { pg_sys::has_privs_of_role(member, role) }
}

/// "May act as": `member` may SET ROLE to `role` (MEMBER on PostgreSQL 15).
pub fn may_act_as(member: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    crate::compat::may_set_role(member, role)
}

/// The version of pgmart installed in this database, if any.
pub fn installed_version() -> Option<String> {
    pinned(|| {
        one::<String>(
            "SELECT extversion::pg_catalog.text FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pgmart'",
            &[],
        )
    })
}

/// The extension's owner (`pg_extension.extowner`), looked up once per transaction. Every catalog
/// access goes through here, so this is also where a library that does not match the installed
/// extension's version (between loading a new library and `ALTER EXTENSION pgmart UPDATE`) stops,
/// with one clear error instead of whatever the other version's catalog would make of it.
pub fn extension_owner() -> pg_sys::Oid {
    let xid = crate::compat::local_xid();
    let (cached_xid, owner) = EXTOWNER.with(|c| c.get());
    if cached_xid == xid && owner != 0 {
        return pg_sys::Oid::from(owner);
    }
    #[derive(serde::Deserialize)]
    struct Ext {
        extowner: u32,
        extversion: String,
    }
    // A saved plan: this runs once in every transaction that touches pgmart (every statement a
    // capture or alert trigger fires in, in autocommit).
    let ext = pinned(|| {
        rows_cached::<Ext>(
            "SELECT extowner::pg_catalog.int8 AS extowner, extversion FROM pg_catalog.pg_extension \
             WHERE extname OPERATOR(pg_catalog.=) 'pgmart'",
            &[],
        )
    })
    .pop()
    .unwrap_or_else(|| PgMartError::state("extension \"pgmart\" is not installed in this database").raise());
    if let Some(e) = crate::version::mismatch(&ext.extversion) {
        e.raise();
    }
    EXTOWNER.with(|c| c.set((xid, ext.extowner)));
    pg_sys::Oid::from(ext.extowner)
}

/// An identity switch, undone on drop (on the error path too).
struct Identity {
    user: pg_sys::Oid,
    sec: i32,
}

impl Identity {
    fn enter(role: pg_sys::Oid, restricted: bool) -> Identity {
        let (mut user, mut sec) = (pg_sys::InvalidOid, 0i32);
        unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut sec) };
        if SWITCH_DEPTH.with(|d| d.get()) == 0 {
            OUTER_USER.with(|u| u.set(u32::from(user)));
        }
        SWITCH_DEPTH.with(|d| d.set(d.get() + 1));
        let sro = pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
        let mut flags = sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32;
        if restricted {
            flags |= sro;
        } else {
            flags &= !sro;
        }
        unsafe { pg_sys::SetUserIdAndSecContext(role, flags) };
        Identity { user, sec }
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.sec) };
        SWITCH_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

fn switched<R>(role: pg_sys::Oid, restricted: bool, catalog: bool, f: impl FnOnce() -> R) -> R {
    // Order matters: the GUC scope is made after the switch and undone before it.
    let id = Identity::enter(role, restricted);
    let scope = GucScope::new();
    scope.set(c"search_path", SAFE_PATH);
    if catalog {
        // pgmart's catalog is small: compiling a query for it (JIT, from a cost inflated by a
        // large pg_inherits) costs tens of milliseconds and saves nothing.
        scope.set(c"jit", c"off");
    }
    let saved = CALLER_PATH.with(|c| c.replace(0));
    let r = f();
    CALLER_PATH.with(|c| c.set(saved));
    drop(scope);
    drop(id);
    r
}

/// Run `f` as `role`, the way core runs maintenance of a user's object as its owner: the user id
/// is switched, `SET ROLE` and `SET SESSION AUTHORIZATION` are refused inside, the operation is
/// security-restricted (no temporary objects, no deferred or at-commit user code), the path is
/// pinned, and every setting made inside is undone after.
pub fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    switched(role, true, false, f)
}

/// Like [`as_role`] but not security-restricted, for the one statement that needs temporary
/// tables (`REFRESH MATERIALIZED VIEW CONCURRENTLY`, which itself runs the view's query as the
/// view's owner, restricted).
pub fn as_role_unrestricted<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    switched(role, false, false, f)
}

/// Run `f` with the privileges of the extension's owner, for pgmart's own catalog: its tables are
/// not writable by anyone else. Callers check the caller's rights first, and never run a user's
/// code (fragments, commands, DDL on user objects) inside.
pub fn as_catalog_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = extension_owner();
    switched(owner, true, true, f)
}

/// `query` wrapped to return all its rows as one jsonb array (decoded by [`decode_rows`]).
fn rows_as_json(query: &str) -> String {
    format!(
        "WITH q AS ({query}) SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(q)), '[]'::pg_catalog.jsonb) FROM q"
    )
}

fn spi_failure(e: pgrx::spi::Error) -> ! {
    PgMartError::catalog(format!("pgmart: a catalog query failed: {e}")).raise()
}

fn decode_rows<T: DeserializeOwned>(value: Option<pgrx::JsonB>) -> Vec<T> {
    let value = value.unwrap_or_else(|| pgrx::JsonB(serde_json::json!([])));
    serde_json::from_value(value.0)
        .unwrap_or_else(|e| PgMartError::catalog(format!("pgmart: cannot read a catalog row: {e}")).raise())
}

/// Run a query (a SELECT, or DML with RETURNING) and decode every row (as `to_jsonb(row)`) into `T`.
pub fn rows<T: DeserializeOwned>(query: &str, args: &[DatumWithOid]) -> Vec<T> {
    decode_rows(pinned(|| first_value::<pgrx::JsonB>(&rows_as_json(query), args, 0, true).1))
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
    let value: Option<pgrx::JsonB> = pinned(|| {
        Spi::connect(|c| {
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
        .unwrap_or_else(|e| spi_failure(e))
    });
    decode_rows(value)
}

thread_local! {
    /// Saved plans of [`exec_in_trigger`] statements, by text (one or two per rollup).
    static TRIGGER_PLANS: std::cell::RefCell<std::collections::HashMap<String, pgrx::spi::OwnedPreparedStatement>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Run `query`, a statement that reads the transition tables of the trigger being fired (by the
/// names its `REFERENCING` clause gave them), prepared once per backend as a saved plan.
///
/// # Safety
/// `trigdata` must be the `TriggerData` of the trigger call in progress.
pub unsafe fn exec_in_trigger(trigdata: *mut pg_sys::TriggerData, query: &str, args: &[DatumWithOid]) {
    pinned(|| {
        Spi::connect_mut(|c| {
            // The transition tables become relations of this SPI connection, as PL/pgSQL does it.
            pg_sys::SPI_register_trigger_data(trigdata);
            TRIGGER_PLANS.with(|plans| {
                let mut plans = plans.borrow_mut();
                if !plans.contains_key(query) {
                    let types: Vec<pgrx::PgOid> = args.iter().map(|a| pgrx::PgOid::from(a.oid())).collect();
                    let stmt = c.prepare(query, &types)?.keep();
                    plans.insert(query.to_string(), stmt);
                }
                c.update(&plans[query], None, args).map(|_| ())
            })
        })
    })
    .unwrap_or_else(|e| spi_failure(e))
}

/// Run a one-column query and decode that column of every row into `T`.
pub fn column<T: DeserializeOwned>(query: &str, args: &[DatumWithOid]) -> Vec<T> {
    let wrapped = format!(
        "WITH q(x) AS ({query}) SELECT coalesce(pg_catalog.jsonb_agg(x), '[]'::pg_catalog.jsonb) FROM q"
    );
    let value: pgrx::JsonB =
        pinned(|| first_value::<pgrx::JsonB>(&wrapped, args, 0, true).1).unwrap_or_else(|| pgrx::JsonB(serde_json::json!([])));
    serde_json::from_value(value.0)
        .unwrap_or_else(|e| PgMartError::catalog(format!("pgmart: cannot read a catalog column: {e}")).raise())
}

/// Run a query and decode its first row, if any.
pub fn row<T: DeserializeOwned>(query: &str, args: &[DatumWithOid]) -> Option<T> {
    rows::<T>(query, args).into_iter().next()
}

/// First column of the first row.
pub fn one<T: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid]) -> Option<T> {
    pinned(|| first_value::<T>(query, args, 1, true).1)
}

/// Run a statement for its effect.
pub fn exec(query: &str, args: &[DatumWithOid]) {
    pinned(|| first_value::<bool>(query, args, 0, false));
}

/// Run `query` through SPI in read-write mode (it sees this transaction's earlier changes and may
/// write) without asking for a transaction id first: PostgreSQL assigns one only if something is
/// written. (pgrx's `Spi::get_one_with_args` and `Spi::run` assign one up front: on a standby that
/// is XX000 "cannot assign TransactionIds during recovery", and on a primary every read would burn
/// an xid.) Returns the rows processed and the first column of the first row, when the statement
/// returns rows and `read` asks for it (copied out of SPI's memory before it is freed). `limit` 0
/// means no limit.
fn first_value<T: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid], limit: i64, read: bool) -> (u64, Option<T>) {
    let cquery = std::ffi::CString::new(query)
        .unwrap_or_else(|_| PgMartError::catalog("pgmart: a query text holds a NUL byte").raise());
    let mut types: Vec<pg_sys::Oid> = args.iter().map(|a| a.oid()).collect();
    let mut values: Vec<pg_sys::Datum> =
        args.iter().map(|a| a.datum().map(|d| d.sans_lifetime()).unwrap_or(pg_sys::Datum::from(0))).collect();
    let nulls: Vec<std::os::raw::c_char> =
        args.iter().map(|a| if a.datum().is_some() { b' ' as std::os::raw::c_char } else { b'n' as std::os::raw::c_char }).collect();
    unsafe {
        let outer = pg_sys::CurrentMemoryContext;
        if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
            PgMartError::catalog("pgmart: SPI_connect failed").raise();
        }
        pg_sys::SPI_tuptable = std::ptr::null_mut();
        let rc = pg_sys::SPI_execute_with_args(
            cquery.as_ptr(),
            args.len() as i32,
            if args.is_empty() { std::ptr::null_mut() } else { types.as_mut_ptr() },
            if args.is_empty() { std::ptr::null_mut() } else { values.as_mut_ptr() },
            if args.is_empty() { std::ptr::null() } else { nulls.as_ptr() },
            false,
            limit,
        );
        if rc < 0 {
            pg_sys::SPI_finish();
            PgMartError::catalog(format!("pgmart: a catalog query failed (SPI status {rc})")).raise();
        }
        let processed = pg_sys::SPI_processed;
        let table = pg_sys::SPI_tuptable;
        let mut value = None;
        if read && !table.is_null() && processed > 0 && (*(*table).tupdesc).natts >= 1 {
            let typoid = pg_sys::SPI_gettypeid((*table).tupdesc, 1);
            if !T::is_compatible_with(typoid) {
                pg_sys::SPI_finish();
                PgMartError::catalog(format!(
                    "pgmart: a catalog query returned type {} where {} was expected",
                    u32::from(typoid),
                    u32::from(T::type_oid())
                ))
                .raise();
            }
            let mut isnull = false;
            let datum = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut isnull);
            value = T::from_datum_in_memory_context(pgrx::PgMemoryContexts::For(outer), datum, isnull, typoid);
        }
        pg_sys::SPI_finish();
        (processed, value)
    }
}

/// `DROP VIEW` of a qualified, quoted name when it exists, without `IF EXISTS`'s NOTICE ("view
/// ... does not exist, skipping") reaching the caller.
pub fn drop_view_if_exists(view: &str) {
    if one::<bool>("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[view.into()]) == Some(true) {
        exec(&format!("DROP VIEW {view}"), &[]);
    }
}

/// A relation as a registration looks at it: kind, owner, schema and name (and both quoted).
#[derive(serde::Deserialize)]
pub struct Relation {
    pub relkind: String,
    pub owner: u32,
    pub nspname: String,
    pub relname: String,
    /// `schema.name`, each quoted only where needed (as `quote_ident` does).
    pub qualified: String,
}

/// Relation `oid` (None when there is none).
pub fn relation(oid: pg_sys::Oid) -> Option<Relation> {
    row::<Relation>(
        "SELECT c.relkind::pg_catalog.text AS relkind, c.relowner::pg_catalog.int8 AS owner, \
                n.nspname::pg_catalog.text AS nspname, c.relname::pg_catalog.text AS relname, \
                pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' \
                OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::pg_catalog.text) AS qualified \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[oid.into()],
    )
}

/// Run a statement and return the number of rows it processed.
pub fn exec_count(query: &str, args: &[DatumWithOid]) -> u64 {
    pinned(|| first_value::<bool>(query, args, 0, false).0)
}

/// Run a statement without a row limit (PostgreSQL disables parallel query for any executor run
/// given a tuple count, which is what a "first row" SPI call passes) and return its first column
/// of its first row as jsonb.
pub fn select_json_unlimited(query: &str) -> Option<pgrx::JsonB> {
    pinned(|| Spi::connect(|c| c.select(query, None, &[])?.first().get_one::<pgrx::JsonB>()))
        .unwrap_or_else(|e| spi_failure(e))
}

/// Like [`rows`], for a query that may run in parallel (see [`select_json_unlimited`]).
pub fn rows_unlimited<T: DeserializeOwned>(query: &str) -> Vec<T> {
    decode_rows(select_json_unlimited(&rows_as_json(query)))
}

/// A caught ERROR, reduced to what history tables record.
#[derive(Debug, Clone)]
pub struct Caught {
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

/// Strip what pgrx appends to a caught error's detail (a Rust backtrace): nothing of it may reach
/// a user or a history row.
fn clean_detail(d: Option<&str>) -> Option<String> {
    let d = d?;
    let cut = ["\nstack backtrace:", "stack backtrace:", "\n   0: "]
        .iter()
        .filter_map(|m| d.find(m))
        .min()
        .unwrap_or(d.len());
    let s = d[..cut].trim_end().to_string();
    (!s.is_empty()).then_some(s)
}

impl Caught {
    pub fn from_caught(e: &CaughtError) -> Caught {
        let r = match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) | CaughtError::RustPanic { ereport: r, .. } => r,
        };
        let internal = matches!(e, CaughtError::RustPanic { .. });
        Caught {
            sqlstate: if internal { "XX000".into() } else { sqlstate_text(r.sql_error_code()) },
            message: r.message().to_string(),
            detail: clean_detail(r.detail()),
            hint: r.hint().map(|s| s.to_string()),
        }
    }
    pub fn from_error(e: &PgMartError) -> Caught {
        Caught { sqlstate: sqlstate_text(e.code), message: e.message.clone(), detail: e.detail.clone(), hint: e.hint.clone() }
    }
    /// A query cancel, statement timeout or shutdown: never swallowed by a subtransaction.
    pub fn is_cancel(&self) -> bool {
        self.sqlstate.starts_with("57")
    }
    /// Raise this error again, as it was (SQLSTATE, message, detail, hint).
    pub fn raise(&self) -> ! {
        let mut e = PgMartError::new(crate::error::sqlstate_code(&self.sqlstate), self.message.clone());
        e.detail = self.detail.clone();
        e.hint = self.hint.clone();
        e.raise()
    }
}

/// Run `f` in an internal subtransaction. An ERROR inside rolls back only what `f` did and is
/// returned as `Err`; the surrounding transaction goes on. A cancel (query cancel, statement
/// timeout, termination) is raised again: it stops the whole call, as PL/pgSQL lets it.
pub fn subtransaction<R>(f: impl FnOnce() -> R) -> std::result::Result<R, Caught> {
    let r = subtransaction_catching_cancel(f);
    if let Err(c) = &r {
        if c.is_cancel() {
            c.raise();
        }
    }
    r
}

/// [`subtransaction`] that also returns cancels (the job engine tells its own timeout from a
/// user's cancel and decides).
pub fn subtransaction_catching_cancel<R>(f: impl FnOnce() -> R) -> std::result::Result<R, Caught> {
    unsafe {
        // Kept as addresses so the catch handler stays UnwindSafe.
        let old_cxt = pg_sys::CurrentMemoryContext as usize;
        let old_owner = pg_sys::CurrentResourceOwner as usize;
        let depth = SWITCH_DEPTH.with(|d| d.get());
        let caller_path = CALLER_PATH.with(|c| c.get());
        let restore = move || {
            pg_sys::MemoryContextSwitchTo(old_cxt as pg_sys::MemoryContext);
            pg_sys::CurrentResourceOwner = old_owner as pg_sys::ResourceOwner;
            SWITCH_DEPTH.with(|d| d.set(depth));
            CALLER_PATH.with(|c| c.set(caller_path));
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

/// Run `f` with setting `name` made `value` (as `SET LOCAL` would make it, checked by PostgreSQL's
/// own rules for that setting), in a subtransaction; the setting is as it was afterwards, whatever
/// happens. `Err` when PostgreSQL refuses the value (or `f` fails). Used to learn what PostgreSQL
/// makes of a value (the canonical spelling of a time zone) without changing the caller's session.
pub fn under_setting<R>(name: &CStr, value: &str, f: impl FnOnce() -> R) -> std::result::Result<R, Caught> {
    let value = std::ffi::CString::new(value)
        .map_err(|_| Caught { sqlstate: "22023".into(), message: "a setting must not contain NUL bytes".into(), detail: None, hint: None })?;
    subtransaction(|| {
        let scope = GucScope::new();
        scope.set(name, &value);
        let r = f();
        drop(scope);
        r
    })
}

/// Run `f` with setting `name` made `value` for its duration only (as `SET LOCAL` would, undone
/// when `f` returns or an ERROR unwinds through it); no subtransaction, so what `f` acquires (a
/// lock) stays.
pub fn with_setting<R>(name: &CStr, value: &CStr, f: impl FnOnce() -> R) -> R {
    let scope = GucScope::new();
    scope.set(name, value);
    let r = f();
    drop(scope);
    r
}

/// The current value of a setting, as `SHOW` prints it (its show hook applied: the canonical
/// spelling of a time zone).
pub fn setting(name: &CStr) -> Option<String> {
    unsafe {
        let p = pg_sys::GetConfigOptionByName(name.as_ptr(), std::ptr::null_mut(), true);
        (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}

/// The OID of a role by name, or an error naming it.
pub fn role_oid(role: &str) -> std::result::Result<pg_sys::Oid, PgMartError> {
    one::<pg_sys::Oid>(
        "SELECT oid FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1::pg_catalog.text",
        &[role.into()],
    )
    .ok_or_else(|| PgMartError::undefined_object(format!("role \"{role}\" does not exist")))
}

/// `SET LOCAL name = value` through `set_config`, so the value is a parameter.
pub fn set_local(name: &str, value: &str) {
    exec("SELECT pg_catalog.set_config($1, $2, true)", &[name.into(), value.into()]);
}

/// Whether the server is a standby (in recovery).
pub fn in_recovery() -> bool {
    unsafe { pg_sys::RecoveryInProgress() }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backtraces_are_cut_from_details() {
        assert_eq!(super::clean_detail(Some("stack backtrace:\n   0: x")), None);
        assert_eq!(super::clean_detail(Some("useful\nstack backtrace:\n   0: x")).as_deref(), Some("useful"));
        assert_eq!(super::clean_detail(Some("plain")).as_deref(), Some("plain"));
    }
}

unsafe extern "C-unwind" {
    fn enable_timeout_after(id: i32, delay_ms: i32);
    fn disable_timeout(id: i32, keep_indicator: bool);
}

/// TimeoutId STATEMENT_TIMEOUT (the same in every supported version).
const STATEMENT_TIMEOUT: i32 = 3;

/// Run a command the way a client's simple query runs it (`psql -c`), outside any transaction
/// block: each statement is analysed, planned and run at top level through a portal, so
/// `VACUUM`, `CREATE INDEX CONCURRENTLY` and procedures that `COMMIT` work; several statements
/// share one implicit transaction, as they do for a client; `statement_timeout` applies to each.
/// For a background runner only (connected as the job's owner). Returns the rows processed.
pub fn exec_as_client(command: &str) -> u64 {
    let ctext = std::ffi::CString::new(command).expect("no NUL in a stored command");
    let mut processed = 0u64;
    unsafe {
        let parsecxt = pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopMemoryContext,
            c"pgmart command".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        pg_sys::debug_query_string = ctext.as_ptr();
        if !pg_sys::IsTransactionState() {
            pg_sys::StartTransactionCommand();
        }
        let old = pg_sys::MemoryContextSwitchTo(parsecxt);
        let list = pgrx::PgList::<pg_sys::RawStmt>::from_pg(pg_sys::pg_parse_query(ctext.as_ptr()));
        pg_sys::MemoryContextSwitchTo(old);
        let n = list.len();
        let implicit_block = n > 1;
        for (i, raw) in list.iter_ptr().enumerate() {
            if !pg_sys::IsTransactionState() {
                pg_sys::StartTransactionCommand();
            }
            if implicit_block {
                pg_sys::BeginImplicitTransactionBlock();
            }
            pg_sys::SetCurrentStatementStartTimestamp();
            if pg_sys::StatementTimeout > 0 {
                enable_timeout_after(STATEMENT_TIMEOUT, pg_sys::StatementTimeout);
            }
            let tag = pg_sys::CreateCommandTag((*raw).stmt);
            let snapshot = pg_sys::analyze_requires_snapshot(raw);
            if snapshot {
                pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            }
            // Plans must outlive an internal commit (a procedure's COMMIT, VACUUM's own ones).
            let old = pg_sys::MemoryContextSwitchTo(parsecxt);
            let queries = pg_sys::pg_analyze_and_rewrite_fixedparams(raw, ctext.as_ptr(), std::ptr::null(), 0, std::ptr::null_mut());
            let plans = pg_sys::pg_plan_queries(queries, ctext.as_ptr(), pg_sys::CURSOR_OPT_PARALLEL_OK as i32, std::ptr::null_mut());
            if snapshot {
                pg_sys::PopActiveSnapshot();
            }
            pg_sys::check_for_interrupts!();
            let portal = pg_sys::CreatePortal(c"".as_ptr(), true, true);
            (*portal).visible = false;
            pg_sys::PortalDefineQuery(portal, std::ptr::null(), ctext.as_ptr(), tag, plans, std::ptr::null_mut());
            pg_sys::PortalStart(portal, std::ptr::null_mut(), 0, std::ptr::null_mut());
            let receiver = pg_sys::CreateDestReceiver(pg_sys::CommandDest::DestNone);
            pg_sys::MemoryContextSwitchTo(old);
            let mut qc: pg_sys::QueryCompletion = std::mem::zeroed();
            crate::compat::portal_run(portal, receiver, &mut qc);
            if let Some(destroy) = (*receiver).rDestroy {
                destroy(receiver);
            }
            pg_sys::PortalDrop(portal, false);
            disable_timeout(STATEMENT_TIMEOUT, false);
            processed += qc.nprocessed;
            let is_transaction_stmt = (*(*raw).stmt).type_ == pg_sys::NodeTag::T_TransactionStmt;
            if i + 1 == n {
                if implicit_block {
                    pg_sys::EndImplicitTransactionBlock();
                }
                pg_sys::CommitTransactionCommand();
            } else if is_transaction_stmt {
                pg_sys::CommitTransactionCommand();
            } else {
                pg_sys::CommandCounterIncrement();
            }
            pg_sys::pgstat_report_stat(false);
        }
        if n == 0 && pg_sys::IsTransactionState() {
            pg_sys::CommitTransactionCommand();
        }
        pg_sys::debug_query_string = std::ptr::null();
        pg_sys::MemoryContextDelete(parsecxt);
    }
    processed
}

/// Run `f` at the top level of a background worker: in a transaction of its own (with a
/// snapshot), or, with `own`, outside any (f manages its transactions, as [`exec_as_client`]
/// does). An ERROR is caught, the transaction aborted, and returned; statistics are reported.
pub fn top_level<R>(own: bool, f: impl FnOnce() -> R) -> std::result::Result<R, Caught> {
    let mut f = Some(f);
    let r = PgTryBuilder::new(AssertUnwindSafe(|| unsafe {
        if own {
            Ok((f.take().expect("once"))())
        } else {
            pg_sys::SetCurrentStatementStartTimestamp();
            pg_sys::StartTransactionCommand();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            let r = (f.take().expect("once"))();
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
            Ok(r)
        }
    }))
    .catch_others(|e| unsafe {
        pg_sys::AbortCurrentTransaction();
        pg_sys::debug_query_string = std::ptr::null();
        Err(Caught::from_caught(&e))
    })
    .execute();
    unsafe { pg_sys::pgstat_report_stat(false) };
    r
}
