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

/// Payload keys that differ between two runs seeing the same failure: a change in them alone does
/// not update an open alert.
const INCIDENTAL: &str = "ARRAY['run_by', 'triggered_by', 'age_s', 'duration_ms']::pg_catalog.text[]";

/// Raise a health alert. While one with the same `dedup_key` is open, the same failure is not
/// raised twice, and a changed one (another payload: a different bad value, a higher count)
/// updates that alert in place (`updated_at`) and notifies again, with `"updated": true`. Returns
/// the alert's id, or None when nothing changed.
pub fn raise_health(h: Health) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Raised {
        alert_id: i64,
        updated: bool,
    }
    // Whom it affects: the dashboards downstream of the check's table, the refreshed view or the
    // rollup (with their owners), so the alert names the people to tell.
    let mut h = h;
    if h.check_id.is_some() || h.job_id.is_some() {
        let dashboards = sql::as_catalog_owner(|| {
            sql::one::<pgrx::JsonB>(
                "SELECT pgmart._dashboards_downstream(x.rel) FROM (SELECT coalesce( \
                        (SELECT c.target::pg_catalog.oid FROM pgmart.\"check\" c WHERE c.check_id OPERATOR(pg_catalog.=) $1), \
                        (SELECT v.view::pg_catalog.oid FROM pgmart.refresh_view v WHERE v.job_id OPERATOR(pg_catalog.=) $2), \
                        (SELECT r.rel::pg_catalog.oid FROM pgmart.rollup r WHERE r.job_id OPERATOR(pg_catalog.=) $2), \
                        (SELECT s.rel::pg_catalog.oid FROM pgmart.snapshot s WHERE s.job_id OPERATOR(pg_catalog.=) $2)) AS rel) x \
                  WHERE x.rel IS NOT NULL",
                &[h.check_id.into(), h.job_id.into()],
            )
        });
        if let (Some(d), Value::Object(map)) = (dashboards, &mut h.payload) {
            map.insert("dashboards".into(), d.0);
        }
    }
    let Raised { alert_id: id, updated } = sql::as_catalog_owner(|| {
        sql::row::<Raised>(
            &format!(
                "INSERT INTO pgmart.alert AS al (source_kind, source_name, severity, target, payload, dedup_key, owner, job_id, check_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (dedup_key) WHERE acked_at IS NULL AND resolved_at IS NULL AND dedup_key IS NOT NULL \
                 DO UPDATE SET payload = excluded.payload, severity = excluded.severity, target = excluded.target, \
                               updated_at = pg_catalog.clock_timestamp() \
                  WHERE (al.payload OPERATOR(pg_catalog.-) {INCIDENTAL}) \
                        IS DISTINCT FROM (excluded.payload OPERATOR(pg_catalog.-) {INCIDENTAL}) \
                 RETURNING al.alert_id, al.updated_at IS NOT NULL AS updated"
            ),
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
    let mut message = json!({
        "alert_id": id, "source_kind": h.source_kind, "source_name": h.source_name,
        "severity": h.severity, "target": h.target, "payload": h.payload,
    });
    if let Some(job_id) = h.job_id {
        message["job_id"] = json!(job_id);
    }
    if let Some(check_id) = h.check_id {
        message["check_id"] = json!(check_id);
    }
    if updated {
        message["updated"] = json!(true);
    }
    notify::send(DEFAULT_CHANNEL, &message);
    Some(id)
}
