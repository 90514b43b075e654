//! Time partitions: range-partitioned tables kept rolling by a `partition_maintenance` job.
//! `plan` decides (pure, unit tested), `exec` reads the catalog and runs the plan, `api` holds
//! the SQL functions.

pub mod api;
pub mod exec;
pub mod plan;

pub use exec::run_job;

#[cfg(any(test, feature = "pg_test"))]
mod tests;
