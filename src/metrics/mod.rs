//! Metric contracts: one owner, one validated and versioned definition per metric, protected by a
//! view PostgreSQL itself keeps consistent, and evaluated the same way by every caller.

pub mod api;
pub mod exec;
pub mod plan;

#[cfg(any(test, feature = "pg_test"))]
mod tests;
