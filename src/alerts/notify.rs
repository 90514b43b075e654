//! NOTIFY payloads: JSON that always carries the alert id and never exceeds PostgreSQL's 8000-byte
//! limit (trimmed to valid JSON with `"truncated": true`; the full row stays in `pgmart.alerts`).

use crate::sql;
use serde_json::{Map, Value};

pub const MAX_PAYLOAD: usize = 7999;

/// Fit a JSON object under `limit` bytes: drop the largest values of `payload` (then of the top
/// level) until it fits, marking it `"truncated": true`. `alert_id` is always kept.
pub fn fit(message: &Value, limit: usize) -> String {
    let text = message.to_string();
    if text.len() <= limit {
        return text;
    }
    let mut obj: Map<String, Value> = message.as_object().cloned().unwrap_or_default();
    obj.insert("truncated".into(), Value::Bool(true));
    // First shrink the nested payload, biggest fields first.
    if let Some(Value::Object(p)) = obj.get("payload").cloned() {
        let mut p = p;
        let mut keys: Vec<(String, usize)> = p.iter().map(|(k, v)| (k.clone(), v.to_string().len())).collect();
        keys.sort_by(|a, b| b.1.cmp(&a.1));
        for (k, _) in keys {
            if Value::Object(obj.clone()).to_string().len() <= limit {
                break;
            }
            p.remove(&k);
            obj.insert("payload".into(), Value::Object(p.clone()));
        }
    }
    // Then drop other top-level fields, biggest first, never the id or the marker.
    let mut keys: Vec<(String, usize)> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "alert_id" && k.as_str() != "truncated")
        .map(|(k, v)| (k.clone(), v.to_string().len()))
        .collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1));
    for (k, _) in keys {
        if Value::Object(obj.clone()).to_string().len() <= limit {
            break;
        }
        obj.remove(&k);
    }
    Value::Object(obj).to_string()
}

/// `pg_notify(channel, payload)`, delivered at commit.
pub fn send(channel: &str, message: &Value) {
    let payload = fit(message, MAX_PAYLOAD);
    sql::exec("SELECT pg_catalog.pg_notify($1, $2)", &[channel.into(), payload.as_str().into()]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_payloads_are_untouched() {
        let m = json!({"alert_id": 1, "payload": {"a": 1}});
        assert_eq!(fit(&m, 7999), m.to_string());
    }

    #[test]
    fn large_payloads_are_trimmed_to_valid_json_with_the_id() {
        let big = "x".repeat(20_000);
        let m = json!({"alert_id": 42, "source_name": "r", "payload": {"note": big, "risk": "high"}});
        let out = fit(&m, 7999);
        assert!(out.len() <= 7999);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["alert_id"], 42);
        assert_eq!(v["truncated"], true);
        assert_eq!(v["payload"]["risk"], "high");
        assert!(v["payload"].get("note").is_none());
    }

    #[test]
    fn huge_top_level_fields_are_dropped_too() {
        let m = json!({"alert_id": 7, "target": "t".repeat(9000), "payload": {}});
        let v: Value = serde_json::from_str(&fit(&m, 7999)).unwrap();
        assert_eq!(v["alert_id"], 7);
        assert!(v.get("target").is_none());
    }
}
