//! Pure planning for alert rules: input validation, trigger names and DDL text, payload shaping
//! and the per-statement notification throttle. No PostgreSQL needed; unit tested below.

use crate::error::{PgMartError, Result};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

pub const SEVERITIES: &[&str] = &["info", "low", "medium", "high", "critical"];

pub fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(PgMartError::invalid("alert rule name must not be empty"));
    }
    if name.len() > 200 {
        return Err(PgMartError::invalid("alert rule name is longer than 200 bytes"));
    }
    Ok(())
}

pub fn check_severity(severity: &str) -> Result<()> {
    if SEVERITIES.contains(&severity) {
        Ok(())
    } else {
        Err(PgMartError::invalid(format!("unknown severity \"{severity}\""))
            .hint("Use one of: info, low, medium, high, critical."))
    }
}

/// A channel is a plain lower-case SQL identifier, so `LISTEN channel` (unquoted) hears it.
pub fn check_channel(channel: &str) -> Result<()> {
    let mut chars = channel.chars();
    let ok_first = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_');
    let ok_rest = channel.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if ok_first && ok_rest && channel.len() <= 63 {
        Ok(())
    } else {
        Err(PgMartError::invalid(format!("channel \"{channel}\" is not a valid identifier"))
            .hint("Use a lower-case identifier of at most 63 bytes (letters, digits, underscores), e.g. pgmart_alerts."))
    }
}

/// The names of the triggers that carry rule `rule_id`.
pub fn trigger_names(rule_id: i64) -> [String; 3] {
    [
        format!("pgmart_alert_{rule_id}"),
        format!("pgmart_alert_{rule_id}_upd"),
        format!("pgmart_alert_{rule_id}_stmt"),
    ]
}

/// `CREATE TRIGGER` statements for a rule. `new_expr` / `old_expr` are the rule's condition with
/// every column qualified by `new.` / `old.` (deparsed by PostgreSQL from the analysed expression).
pub fn trigger_ddl(rule_id: i64, qualified_target: &str, new_expr: &str, old_expr: &str, on_update: bool) -> Vec<String> {
    let [ins, upd, stmt] = trigger_names(rule_id);
    let mut ddl = vec![format!(
        "CREATE TRIGGER {ins} AFTER INSERT ON {qualified_target} FOR EACH ROW WHEN ({new_expr}) \
         EXECUTE FUNCTION pgmart._alert_fire('{rule_id}')"
    )];
    if on_update {
        ddl.push(format!(
            "CREATE TRIGGER {upd} AFTER UPDATE ON {qualified_target} FOR EACH ROW \
             WHEN (({new_expr}) AND ({old_expr}) IS NOT TRUE) \
             EXECUTE FUNCTION pgmart._alert_fire('{rule_id}')"
        ));
    }
    let events = if on_update { "INSERT OR UPDATE" } else { "INSERT" };
    ddl.push(format!(
        "CREATE TRIGGER {stmt} AFTER {events} ON {qualified_target} FOR EACH STATEMENT \
         EXECUTE FUNCTION pgmart._alert_flush()"
    ));
    ddl
}

/// The payload of a rule alert: the whole row, or only `columns` when given.
pub fn shape_payload(row: Value, columns: Option<&[String]>) -> Value {
    match (row, columns) {
        (Value::Object(obj), Some(cols)) => {
            let mut out = Map::new();
            for c in cols {
                if let Some(v) = obj.get(c) {
                    out.insert(c.clone(), v.clone());
                }
            }
            Value::Object(out)
        }
        (row, _) => row,
    }
}

/// Per-statement notification throttle: the first `limit` alerts of a statement (per channel) are
/// notified one by one; the rest are counted and summarised in one notification at the end.
#[derive(Debug, Default)]
pub struct Throttle {
    channels: BTreeMap<String, ChannelState>,
}

#[derive(Debug, Default)]
struct ChannelState {
    sent: u64,
    suppressed: u64,
    first_id: i64,
    last_id: i64,
    rules: BTreeSet<String>,
}

impl Throttle {
    /// Record alert `id` of `rule` on `channel`; true when it should be notified on its own.
    pub fn offer(&mut self, channel: &str, limit: u64, id: i64, rule: &str) -> bool {
        let st = self.channels.entry(channel.to_string()).or_default();
        if st.sent < limit {
            st.sent += 1;
            return true;
        }
        if st.suppressed == 0 {
            st.first_id = id;
        }
        st.suppressed += 1;
        st.first_id = st.first_id.min(id);
        st.last_id = st.last_id.max(id);
        st.rules.insert(rule.to_string());
        false
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// End of statement: the summaries to send (one per channel that had suppressed alerts), and
    /// a fresh state.
    pub fn drain(&mut self) -> Vec<(String, Value)> {
        let channels = std::mem::take(&mut self.channels);
        channels
            .into_iter()
            .filter(|(_, st)| st.suppressed > 0)
            .map(|(ch, st)| {
                let msg = json!({
                    "summary": true,
                    "alert_id": st.last_id,
                    "first_alert_id": st.first_id,
                    "last_alert_id": st.last_id,
                    "count": st.suppressed,
                    "notified": st.sent,
                    "rules": st.rules.into_iter().collect::<Vec<_>>(),
                    "message": format!(
                        "{} more alerts raised by one statement were not notified one by one; they are in pgmart.alerts",
                        st.suppressed
                    ),
                });
                (ch, msg)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_severity_and_channel() {
        assert!(check_severity("high").is_ok());
        assert!(check_severity("urgent").is_err());
        assert!(check_channel("pgmart_alerts").is_ok());
        assert!(check_channel("risk2").is_ok());
        for bad in ["", "1abc", "Risk", "a-b", "a b", "x;y", &"a".repeat(64)] {
            assert!(check_channel(bad).is_err(), "{bad}");
        }
        assert!(check_name(" ").is_err());
    }

    #[test]
    fn ddl_for_insert_only_and_update_rules() {
        let d = trigger_ddl(7, "public.t", "(new.a = 1)", "(old.a = 1)", false);
        assert_eq!(d.len(), 2);
        assert!(d[0].contains("AFTER INSERT ON public.t FOR EACH ROW WHEN ((new.a = 1))"));
        assert!(d[1].contains("pgmart_alert_7_stmt AFTER INSERT ON"));
        let d = trigger_ddl(8, "public.t", "(new.a = 1)", "(old.a = 1)", true);
        assert_eq!(d.len(), 3);
        assert!(d[1].contains("WHEN (((new.a = 1)) AND ((old.a = 1)) IS NOT TRUE)"));
        assert!(d[2].contains("AFTER INSERT OR UPDATE ON"));
    }

    #[test]
    fn payload_columns_pick_fields() {
        let row = json!({"a": 1, "b": "x", "c": null});
        assert_eq!(shape_payload(row.clone(), None), row);
        let cols = vec!["b".to_string(), "c".to_string()];
        assert_eq!(shape_payload(row, Some(&cols)), json!({"b": "x", "c": null}));
    }

    #[test]
    fn throttle_sends_up_to_the_limit_then_summarises() {
        let mut t = Throttle::default();
        let sent: Vec<bool> = (1..=5).map(|i| t.offer("c", 2, i, "r")).collect();
        assert_eq!(sent, vec![true, true, false, false, false]);
        let out = t.drain();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1["count"], 3);
        assert_eq!(out[0].1["first_alert_id"], 3);
        assert_eq!(out[0].1["last_alert_id"], 5);
        assert!(t.is_empty());
        // A new statement starts again from zero; nothing suppressed, nothing to summarise.
        assert!(t.offer("c", 2, 6, "r"));
        assert!(t.drain().is_empty());
    }
}
