//! Bounded history: job runs, alerts and the history tables each job kind declares are pruned by
//! age (`pgmart.history_retention`) as part of the engine's own housekeeping.

use crate::guc;
use crate::sql;

/// The engine's own history: `(table, timestamp column, extra condition)`.
const ENGINE_HISTORY: &[(&str, &str, &str)] = &[
    ("pgmart.job_run", "started_at", "status OPERATOR(pg_catalog.<>) ALL (ARRAY['running', 'queued'])"),
    ("pgmart.alert", "coalesce(acked_at, resolved_at)", "(acked_at IS NOT NULL OR resolved_at IS NOT NULL)"),
];

/// Delete history older than `pgmart.history_retention`. Only one session prunes at a time; the
/// others skip it rather than wait.
pub fn prune() -> u64 {
    sql::as_catalog_owner(|| {
        if !crate::locks::try_lock(crate::locks::Kind::Prune, 0, false) {
            return 0;
        }
        let secs = guc::HISTORY_RETENTION_S.get() as f64;
        let kinds = crate::JOB_KINDS.iter().flat_map(|k| k.history().iter());
        ENGINE_HISTORY
            .iter()
            .chain(kinds)
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

/// How long a job's runs have been `skipped` (its object missing): since the first skipped run
/// after the last run that was not skipped.
#[derive(serde::Deserialize)]
pub struct Skipped {
    pub seconds: f64,
    /// When the first of those runs started (text).
    pub since: Option<String>,
}

pub fn skipped_since(job_id: i64) -> Option<Skipped> {
    sql::as_catalog_owner(|| {
        sql::row::<Skipped>(
            "SELECT EXTRACT(epoch FROM pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) min(r.started_at))::double precision AS seconds, \
                    min(r.started_at)::pg_catalog.text AS since \
               FROM pgmart.job_run r \
              WHERE r.job_id OPERATOR(pg_catalog.=) $1 AND r.status OPERATOR(pg_catalog.=) ANY (ARRAY['skipped', 'running']) \
                AND r.started_at OPERATOR(pg_catalog.>) coalesce((SELECT max(o.started_at) FROM pgmart.job_run o \
                      WHERE o.job_id OPERATOR(pg_catalog.=) $1 \
                        AND o.status OPERATOR(pg_catalog.<>) ALL (ARRAY['skipped', 'running'])), '-infinity') \
             HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0",
            &[job_id.into()],
        )
    })
}
