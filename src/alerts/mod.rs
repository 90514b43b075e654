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

/// Raise a health alert unless an identical one (same `dedup_key`) is still open. Returns the new
/// alert's id, or None when it was de-duplicated.
pub fn raise_health(
    source_kind: &str,
    source_name: &str,
    severity: &str,
    target: Option<&str>,
    payload: Value,
    dedup_key: &str,
) -> Option<i64> {
    let id = sql::as_catalog_owner(|| {
        sql::one::<i64>(
            "INSERT INTO pgmart.alerts (source_kind, source_name, severity, target, payload, dedup_key) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (dedup_key) WHERE acked_at IS NULL AND dedup_key IS NOT NULL DO NOTHING \
             RETURNING alert_id",
            &[
                source_kind.into(),
                source_name.into(),
                severity.into(),
                target.into(),
                pgrx::JsonB(payload.clone()).into(),
                dedup_key.into(),
            ],
        )
    })?;
    let message = json!({
        "alert_id": id, "source_kind": source_kind, "source_name": source_name,
        "severity": severity, "target": target, "payload": payload,
    });
    notify::send(DEFAULT_CHANNEL, &message);
    Some(id)
}
