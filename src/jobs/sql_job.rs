//! The `sql` job kind: a user's own statement, stored at registration (after its syntax and
//! statement types are checked) and run on a schedule as the job's owner.

use crate::error::{PgMartError, Result};
use crate::jobs::engine::Job;
use crate::sql;
use pgrx::prelude::*;
use serde_json::{json, Value};

pub fn run(job: &Job) -> Value {
    let command = job.config.get("command").and_then(|c| c.as_str()).unwrap_or_default();
    // The owner's own command resolves names the way the owner's own sessions do.
    let path = sql::role_search_path(job.owner_oid());
    let rows = sql::with_user_path(&path, || sql::exec_count(command, &[]));
    json!({ "rows": rows })
}

/// Check a command before it is stored: it must parse, and contain no statement that cannot run
/// inside a transaction (a job always runs inside one).
pub fn validate_command(command: &str) -> Result<()> {
    if command.trim().is_empty() {
        return Err(PgMartError::invalid("command must not be empty"));
    }
    let parsed = sql::subtransaction(|| unsafe {
        let c = std::ffi::CString::new(command).unwrap_or_default();
        let list = pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let list = pgrx::PgList::<pg_sys::RawStmt>::from_pg(list);
        let mut bad: Vec<&'static str> = vec![];
        for raw in list.iter_ptr() {
            let stmt = (*raw).stmt;
            let tag = (*stmt).type_;
            let name = match tag {
                pg_sys::NodeTag::T_TransactionStmt => Some("transaction control (BEGIN/COMMIT/ROLLBACK)"),
                pg_sys::NodeTag::T_VacuumStmt => Some("VACUUM/ANALYZE with options that need their own transaction"),
                pg_sys::NodeTag::T_CreatedbStmt | pg_sys::NodeTag::T_DropdbStmt => Some("CREATE/DROP DATABASE"),
                pg_sys::NodeTag::T_AlterSystemStmt => Some("ALTER SYSTEM"),
                pg_sys::NodeTag::T_IndexStmt if (*(stmt as *mut pg_sys::IndexStmt)).concurrent => {
                    Some("CREATE INDEX CONCURRENTLY")
                }
                _ => None,
            };
            if let Some(n) = name {
                // ANALYZE without options is fine inside a transaction.
                if tag == pg_sys::NodeTag::T_VacuumStmt && !(*(stmt as *mut pg_sys::VacuumStmt)).is_vacuumcmd {
                    continue;
                }
                bad.push(n);
            }
        }
        bad
    });
    match parsed {
        Err(e) => Err(PgMartError::new(pgrx::PgSqlErrorCode::ERRCODE_SYNTAX_ERROR, format!("invalid command: {}", e.message))),
        Ok(bad) if !bad.is_empty() => Err(PgMartError::invalid(format!(
            "command contains {}, which cannot run inside a pgmart job",
            bad.join(", ")
        ))
        .detail("Every job runs inside a transaction, as a function would.")
        .hint("Schedule such statements with an external scheduler, or use a statement that runs in a transaction.")),
        Ok(_) => Ok(()),
    }
}
