//! Scheduled materialized-view refresh: `schedule_refresh` registers a `refresh` job per view;
//! a run refreshes its view and then the scheduled views downstream of it, in dependency order
//! (read from pg_depend/pg_rewrite), each once; every refresh is recorded in
//! `pgmart.refresh_history`, and `pgmart.freshness` shows how fresh each view is.

pub mod api;
pub mod exec;
pub mod plan;

#[cfg(any(test, feature = "pg_test"))]
mod tests;
