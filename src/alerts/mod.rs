//! Alerts: every alert is first a row in `pgmart.alerts`, written in the caller's transaction, then
//! a `NOTIFY` whose JSON payload always carries the alert id. Health alerts from the engine and the
//! capabilities come through [`raise_health`]; an identical open alert is not raised twice.

pub mod api;
pub mod exec;
pub mod notify;
pub mod plan;
#[cfg(any(test, feature = "pg_test"))]
mod tests;

use crate::sql;
use serde_json::{json, Value};

pub const DEFAULT_CHANNEL: &str = "pgmart_alerts";

/// A health alert from the engine or a capability, and whom it belongs to.
pub struct Health<'a> {
    pub source_kind: &'a str,
    pub source_name: &'a str,
    pub severity: &'a str,
    pub target: Option<&'a str>,
    pub payload: Value,
    /// An identical open alert (same key) is not raised twice.
    pub dedup_key: &'a str,
    /// The role the alert belongs to (the owner of the job or check that raised it).
    pub owner: pgrx::pg_sys::Oid,
    pub job_id: Option<i64>,
    pub check_id: Option<i64>,
}

/// The condition behind the open health alert with this key has cleared: it is resolved (a later
/// failure raises a new alert).
pub fn resolve(dedup_key: &str) {
    sql::as_catalog_owner(|| {
        sql::exec(
            "UPDATE pgmart.alert SET resolved_at = pg_catalog.clock_timestamp() \
              WHERE dedup_key OPERATOR(pg_catalog.=) $1 AND acked_at IS NULL AND resolved_at IS NULL",
            &[dedup_key.into()],
        )
    });
}

/// Raise a health alert unless an identical one (same `dedup_key`) is still open. Returns the new
/// alert's id, or None when it was de-duplicated.
pub fn raise_health(h: Health) -> Option<i64> {
    let id = sql::as_catalog_owner(|| {
        sql::one::<i64>(
            "INSERT INTO pgmart.alert (source_kind, source_name, severity, target, payload, dedup_key, owner, job_id, check_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (dedup_key) WHERE acked_at IS NULL AND resolved_at IS NULL AND dedup_key IS NOT NULL DO NOTHING \
             RETURNING alert_id",
            &[
                h.source_kind.into(),
                h.source_name.into(),
                h.severity.into(),
                h.target.into(),
                pgrx::JsonB(h.payload.clone()).into(),
                h.dedup_key.into(),
                h.owner.into(),
                h.job_id.into(),
                h.check_id.into(),
            ],
        )
    })?;
    let message = json!({
        "alert_id": id, "source_kind": h.source_kind, "source_name": h.source_name,
        "severity": h.severity, "target": h.target, "payload": h.payload,
    });
    notify::send(DEFAULT_CHANNEL, &message);
    Some(id)
}
