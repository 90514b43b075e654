//! The job engine: schedules, claiming, running as the owner, retries, history. Capabilities add a
//! job kind in [`kinds`]; the engine knows nothing else about them.

pub mod api;
pub mod engine;
pub mod history;
pub mod job;
pub mod kinds;
pub mod schedule;
pub mod sql_job;
pub mod timeout;
pub mod tz;

#[cfg(any(test, feature = "pg_test"))]
mod tests;
