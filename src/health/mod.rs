//! Table and query health: `pgmart.table_health` (a view over the catalog and the cumulative
//! statistics, in `sql/health.sql`), the `health` job kind (alerts, ANALYZE of partitioned
//! parents, maintenance of the tables their owners registered with `pgmart.maintain_table`, and
//! pg_stat_statements samples), and `pgmart.query_health`.

pub mod api;
pub mod exec;
pub mod plan;

#[cfg(any(test, feature = "pg_test"))]
mod tests;
