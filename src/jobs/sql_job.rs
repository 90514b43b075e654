//! The `sql` job kind: a user's own command, run on a schedule as its owner the way `psql -c`
//! would run it. In a background runner (connected as the owner, with the owner's settings) a
//! command may hold statements that cannot run in a transaction block (`VACUUM`, `REINDEX
//! CONCURRENTLY`, `CREATE INDEX CONCURRENTLY`, a procedure that commits); `refresh_due()` in a
//! session runs the others.

use crate::error::{PgMartError, Result};
use crate::jobs::engine::Job;
use crate::jobs::kinds::JobKind;
use crate::sql;
use pgrx::prelude::*;
use serde_json::{json, Value};

pub struct SqlJob;

impl JobKind for SqlJob {
    fn name(&self) -> &'static str {
        "sql"
    }
    fn run(&self, job: &Job) -> Value {
        let command = job.config.get("command").and_then(|c| c.as_str()).unwrap_or_default();
        if !unsafe { pg_sys::IsTransactionState() } {
            // A runner, outside any transaction: exactly as a client's query.
            let rows = sql::exec_as_client(command);
            return json!({ "rows": rows });
        }
        // In a transaction (a session's refresh_due() or run_job()): the owner's command resolves
        // names the way the owner's own sessions do.
        let path = sql::role_search_path(job.owner_oid());
        let rows = sql::with_user_path(&path, || sql::exec_count(command, &[]));
        json!({ "rows": rows })
    }
    fn needs_own_transaction(&self, job: &Job) -> bool {
        job.config.get("own_transaction").and_then(|v| v.as_bool()).unwrap_or(false)
    }
}

/// What registration learnt about a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// It holds a statement that cannot run inside a transaction block (it runs in a runner).
    pub own_transaction: bool,
    pub statements: usize,
}

/// Statements that cannot run inside a transaction block (PreventInTransactionBlock), so a job
/// holding one runs only in a background runner.
unsafe fn needs_own_transaction(stmt: *mut pg_sys::Node) -> bool {
    use pg_sys::NodeTag::*;
    match (*stmt).type_ {
        T_VacuumStmt => {
            // Plain ANALYZE runs anywhere; VACUUM does not.
            (*(stmt as *mut pg_sys::VacuumStmt)).is_vacuumcmd
        }
        T_IndexStmt => (*(stmt as *mut pg_sys::IndexStmt)).concurrent,
        T_ReindexStmt => {
            let r = &*(stmt as *mut pg_sys::ReindexStmt);
            let opts = pgrx::PgList::<pg_sys::DefElem>::from_pg(r.params);
            let concurrently = opts.iter_ptr().any(|d| {
                std::ffi::CStr::from_ptr((*d).defname).to_bytes().eq_ignore_ascii_case(b"concurrently")
            });
            concurrently || r.kind != pg_sys::ReindexObjectType::REINDEX_OBJECT_INDEX && r.kind != pg_sys::ReindexObjectType::REINDEX_OBJECT_TABLE
        }
        T_CallStmt | T_TransactionStmt | T_CreatedbStmt | T_DropdbStmt | T_AlterSystemStmt | T_CreateTableSpaceStmt
        | T_DropTableSpaceStmt | T_CreateSubscriptionStmt | T_DropSubscriptionStmt | T_AlterDatabaseStmt | T_ClusterStmt => {
            true
        }
        _ => false,
    }
}

/// Check a command before it is stored: it parses, is not empty, and (when the objects it names
/// exist) analyses; a command naming objects that do not exist yet is kept, with a WARNING.
pub fn validate_command(command: &str) -> Result<Checked> {
    if command.contains('\0') {
        return Err(PgMartError::invalid("command must not contain NUL bytes"));
    }
    let parsed = sql::subtransaction(|| unsafe {
        let c = std::ffi::CString::new(command).expect("no NUL");
        let list = pgrx::PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT));
        let own = list.iter_ptr().any(|raw| needs_own_transaction((*raw).stmt));
        (own, list.len())
    });
    let (own_transaction, statements) = match parsed {
        Err(e) => {
            return Err(PgMartError::new(pgrx::PgSqlErrorCode::ERRCODE_SYNTAX_ERROR, format!("invalid command: {}", e.message))
                .hint("The command is run as psql -c would run it; check it there."))
        }
        Ok(p) => p,
    };
    if statements == 0 {
        return Err(PgMartError::invalid("command is empty (only white space, comments or semicolons)")
            .hint("Give the SQL the job should run, e.g. 'VACUUM ANALYZE orders' or 'CALL refresh_rollups()'."));
    }
    // Analysis of what can be analysed, as the caller with the caller's names: objects that do not
    // exist yet get a warning (they may be created later), other problems an error.
    let analysed = sql::subtransaction(|| {
        sql::caller_path(|| unsafe {
            let c = std::ffi::CString::new(command).expect("no NUL");
            let list = pgrx::PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT));
            for raw in list.iter_ptr() {
                if pg_sys::analyze_requires_snapshot(raw) {
                    pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
                    pg_sys::pg_analyze_and_rewrite_fixedparams(raw, c.as_ptr(), std::ptr::null(), 0, std::ptr::null_mut());
                    pg_sys::PopActiveSnapshot();
                }
            }
        })
    });
    if let Err(e) = analysed {
        match e.sqlstate.as_str() {
            "42P01" | "42703" | "42883" | "3F000" | "42704" => {
                warning!("the command names something that does not exist yet: {}; it is kept, and fails when it runs unless it is created", e.message);
            }
            "42601" => {
                return Err(PgMartError::new(pgrx::PgSqlErrorCode::ERRCODE_SYNTAX_ERROR, format!("invalid command: {}", e.message)))
            }
            _ => {
                return Err(PgMartError::invalid(format!("invalid command: {}", e.message))
                    .hint("The command is run as psql -c would run it; check it there."))
            }
        }
    }
    Ok(Checked { own_transaction, statements })
}
