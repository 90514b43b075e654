//! Helpers shared by every module's `#[pg_test]`s.

use crate::sql;
use pgrx::prelude::*;

/// Run `query` expecting an ERROR; return its SQLSTATE (the error is rolled back to a savepoint).
pub fn sqlstate_of(query: &str) -> String {
    match sql::subtransaction(|| Spi::run(query)) {
        Ok(_) => panic!("expected an error from: {query}"),
        Err(c) => c.sqlstate,
    }
}

/// First column of the first row of `q`.
pub fn one<T: FromDatum + IntoDatum>(q: &str) -> Option<T> {
    Spi::get_one::<T>(q).unwrap()
}

/// Run `q`, failing the test on any error.
pub fn run(q: &str) {
    Spi::run(q).unwrap()
}
