//! Bounded history: job runs (and the history tables of capabilities) are pruned by age
//! (`pgmart.history_retention`) as part of the engine's own housekeeping.

use crate::guc;
use crate::sql;

/// `(table, timestamp column, extra condition)` for each history table pruned by age.
/// Capabilities add their history tables here.
const HISTORY: &[(&str, &str, &str)] = &[
    ("pgmart.job_run", "started_at", "status <> 'running'"),
    ("pgmart.refresh_history", "started_at", "true"),
    ("pgmart.alerts", "acked_at", "acked_at IS NOT NULL"),
    ("pgmart.check_results", "run_at", "true"),
];

/// Delete history older than `pgmart.history_retention`. Only one session prunes at a time; the
/// others skip it rather than wait.
pub fn prune() -> u64 {
    sql::as_catalog_owner(|| {
        let got = sql::one::<bool>("SELECT pg_catalog.pg_try_advisory_xact_lock(hashtext('pgmart.prune'))", &[])
            .unwrap_or(false);
        if !got {
            return 0;
        }
        let secs = guc::HISTORY_RETENTION_S.get() as f64;
        HISTORY
            .iter()
            .map(|(table, column, cond)| {
                sql::exec_count(
                    &format!(
                        "DELETE FROM {table} WHERE {column} < clock_timestamp() - make_interval(secs => $1) AND {cond}"
                    ),
                    &[secs.into()],
                )
            })
            .sum()
    })
}
