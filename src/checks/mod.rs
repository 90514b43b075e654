//! Data-quality checks: dbt's tests and source freshness, in the database, fused into as few
//! scans as possible, on one snapshot per table, with history and alerts. See docs/checks.md.

pub mod agg;
pub mod api;
pub mod exec;
pub mod plan;
mod tests;

pub use exec::run_job;
