//! Bounded history: job runs (and the history tables of capabilities) are pruned by age
//! (`pgmart.history_retention`) as part of the engine's own housekeeping.

use crate::guc;
use crate::sql;

/// `(table, timestamp column, extra condition)` for each history table pruned by age.
/// Capabilities add their history tables here.
const HISTORY: &[(&str, &str, &str)] = &[
    ("pgmart.job_run", "started_at", "status OPERATOR(pg_catalog.<>) 'running'"),
    ("pgmart.refresh_history", "started_at", "true"),
    ("pgmart.alert", "acked_at", "acked_at IS NOT NULL"),
    ("pgmart.check_result", "run_at", "true"),
];

/// Delete history older than `pgmart.history_retention`. Only one session prunes at a time; the
/// others skip it rather than wait.
pub fn prune() -> u64 {
    sql::as_catalog_owner(|| {
        if !crate::locks::try_lock(crate::locks::Kind::Prune, 0, false) {
            return 0;
        }
        let secs = guc::HISTORY_RETENTION_S.get() as f64;
        HISTORY
            .iter()
            .map(|(table, column, cond)| {
                sql::exec_count(
                    &format!(
                        "DELETE FROM {table} WHERE {column} OPERATOR(pg_catalog.<) \
                         (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1)) AND {cond}"
                    ),
                    &[secs.into()],
                )
            })
            .sum()
    })
}
