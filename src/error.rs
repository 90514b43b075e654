//! One error type for the whole extension: a SQLSTATE, a message, and optional detail and hint.
//! SQL-facing functions raise it with [`PgMartError::raise`]; planning code returns it in `Result`s
//! so it can be unit tested without PostgreSQL.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

#[derive(Debug, Clone, PartialEq)]
pub struct PgMartError {
    pub code: PgSqlErrorCode,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

pub type Result<T> = std::result::Result<T, PgMartError>;

impl PgMartError {
    pub fn new(code: PgSqlErrorCode, message: impl Into<String>) -> Self {
        PgMartError { code, message: message.into(), detail: None, hint: None }
    }
    /// 22023: a parameter value is not acceptable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
    }
    /// 42P01: a relation does not exist.
    pub fn undefined_table(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE, message)
    }
    /// 42703: a column does not exist.
    pub fn undefined_column(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN, message)
    }
    /// 42704: some other object (a job, a role, a time zone) does not exist.
    pub fn undefined_object(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, message)
    }
    /// 42710: the object is already registered.
    pub fn duplicate(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT, message)
    }
    /// 42501: the caller may not do this.
    pub fn privilege(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, message)
    }
    /// 22004: a required argument is NULL (see [`required`]).
    pub fn null_argument(name: &str) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("argument \"{name}\" must not be NULL"))
            .hint(format!(
                "Give {name} a value. Only arguments that have a default may be NULL, and NULL there means the default."
            ))
    }
    /// 42809: a relation of the wrong kind (a view where a table is needed, a sequence, an index).
    pub fn wrong_object_type(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, message)
    }
    /// 55000: pgmart's catalog is not what this library expects (a row it cannot read, a catalog
    /// query that fails): the installed SQL and the library differ, or the catalog was edited.
    pub fn catalog(message: impl Into<String>) -> Self {
        Self::state(message).hint(
            "pgmart's catalog does not look the way this library expects: run ALTER EXTENSION pgmart UPDATE; \
             if it is up to date, the catalog was changed by hand (please report it otherwise).",
        )
    }
    /// 25006: a write on a standby.
    pub fn read_only(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION, message)
    }
    /// XX000: a pgmart bug (never expected; carries no backtrace).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, message)
            .hint("This is a pgmart bug, or pgmart's catalog was edited by hand; please report it.")
    }
    /// 55000: the object is not in a state that allows this.
    pub fn state(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, message)
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Raise as a PostgreSQL ERROR. Never returns.
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(self.code, self.message, "pgmart");
        if let Some(d) = self.detail {
            report = report.set_detail(d);
        }
        if let Some(h) = self.hint {
            report = report.set_hint(h);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR returned")
    }
}

impl std::fmt::Display for PgMartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The value of a required argument, or ERROR 22004 naming it: the one NULL rule of the SQL API.
/// Every public function is non-STRICT and takes its arguments as `Option`s; a required argument
/// (one without a default) is unwrapped here, first thing, before anything is read or changed. An
/// argument with a default takes NULL as that default (`Option::unwrap_or`), or as "unchanged"
/// where its default is NULL (`alter_job`).
pub fn required<T>(value: Option<T>, name: &str) -> T {
    match value {
        Some(v) => v,
        None => PgMartError::null_argument(name).raise(),
    }
}

/// Unwrap a planning result or raise it as an ERROR.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T> {
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.raise(),
        }
    }
}

/// The five-character SQLSTATE text of an error code (for recording in history tables).
pub fn sqlstate_text(code: PgSqlErrorCode) -> String {
    let mut c = code as i32;
    let mut s = String::with_capacity(5);
    for _ in 0..5 {
        let ch = ((c & 0x3F) as u8 + b'0') as char;
        s.push(ch);
        c >>= 6;
    }
    s
}

/// The error code of a five-character SQLSTATE (inverse of [`sqlstate_text`]).
pub fn sqlstate_code(s: &str) -> PgSqlErrorCode {
    let mut code: i32 = 0;
    for (i, ch) in s.bytes().take(5).enumerate() {
        code |= (((ch as i32) - ('0' as i32)) & 0x3F) << (6 * i);
    }
    PgSqlErrorCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sqlstate_text_round_trips_known_codes() {
        assert_eq!(sqlstate_text(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE), "22023");
        assert_eq!(sqlstate_text(PgSqlErrorCode::ERRCODE_DIVISION_BY_ZERO), "22012");
        assert_eq!(sqlstate_text(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE), "55P03");
        for s in ["57014", "22023", "55P03", "42501"] {
            assert_eq!(sqlstate_text(sqlstate_code(s)), s);
        }
    }
}
