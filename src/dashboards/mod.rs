//! Dashboards, lineage and trust: the dashboards people look at (declared with their owners,
//! metrics and sources), the graph from raw tables to them (PostgreSQL's own dependencies plus
//! pgmart's rollups, metrics and dashboards), and one verdict per object: can I trust this now?

pub mod api;
pub mod exec;
pub mod plan;

#[cfg(any(test, feature = "pg_test"))]
mod tests;
