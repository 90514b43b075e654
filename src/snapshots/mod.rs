//! Snapshots: a periodic (frozen, invoice-grade) copy of a table or view once per period, or a
//! type-2 history with dbt's timestamp and check strategies, each run one statement inside the
//! database, as the snapshot's owner.

pub mod api;
pub mod exec;
pub mod plan;

#[cfg(any(test, feature = "pg_test"))]
mod tests;
