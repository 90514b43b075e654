//! Quoting and checking of SQL names, in pure Rust (the planners are tested without PostgreSQL).

use crate::error::{PgMartError, Result};

/// An identifier, always double-quoted (pure Rust, so the planner is testable without PostgreSQL).
pub fn quote_identifier(s: impl AsRef<str>) -> String {
    format!("\"{}\"", s.as_ref().replace('"', "\"\""))
}

/// A string literal the way PostgreSQL's quote_literal writes it (E'' when it holds a backslash).
pub fn quote_literal(s: impl AsRef<str>) -> String {
    let s = s.as_ref();
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// Dimensions: each named once.
pub fn check_dimensions(dims: &[String]) -> Result<()> {
    for (i, d) in dims.iter().enumerate() {
        if d.trim().is_empty() {
            return Err(PgMartError::invalid("a dimension name is empty"));
        }
        if dims[..i].contains(d) {
            return Err(PgMartError::invalid(format!("dimension \"{d}\" is listed twice")));
        }
    }
    Ok(())
}
