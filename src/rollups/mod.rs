//! Rollups: time-bucket aggregates of a plain (or partitioned) table, kept fresh by recomputing
//! only the buckets that statements changed (captured by statement triggers with transition
//! tables, in the writers' transactions), with a real-time view for what is newer.

pub mod api;
mod capture;
pub mod exec;
pub mod plan;

#[cfg(any(test, feature = "pg_test"))]
mod tests;
