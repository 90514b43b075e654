//! The library's version and the installed extension's: they must match for anything to run (the
//! workers wait, saying so once, until `ALTER EXTENSION pgmart UPDATE`).

use crate::error::PgMartError;

/// This library's version (also the newest extension version it installs).
pub const LIBRARY: &str = env!("CARGO_PKG_VERSION");

/// The error for an installed extension of another version than this library's, if it is one.
pub fn mismatch(installed: &str) -> Option<PgMartError> {
    (installed != LIBRARY).then(|| {
        PgMartError::state(format!(
            "pgmart {installed} is installed in this database, but the loaded pgmart library is {LIBRARY}"
        ))
        .hint(format!(
            "Run ALTER EXTENSION pgmart UPDATE in this database (or load the library of pgmart {installed} again)."
        ))
    })
}
