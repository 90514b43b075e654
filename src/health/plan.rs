//! Pure decisions of the health job: which storage parameters it may set and how the statements
//! that set and undo them read, and whether a statement's mean time regressed.

use serde_json::{json, Map, Value};

/// The storage parameters the health job may set (`autovacuum_tuning`), each with the value
/// `pgmart.table_health` suggests for a large table.
pub const TUNABLE: &[(&str, f64)] = &[("autovacuum_vacuum_scale_factor", 0.01), ("autovacuum_analyze_scale_factor", 0.005)];

/// `name=value` settings (as `pgmart.table_health.suggested_settings` lists them) reduced to the
/// tunable ones with a number for a value; anything else is ignored.
pub fn parse_settings(list: &[String]) -> Vec<(String, f64)> {
    list.iter()
        .filter_map(|s| {
            let (name, value) = s.split_once('=')?;
            let name = name.trim();
            let value: f64 = value.trim().parse().ok()?;
            (TUNABLE.iter().any(|(n, _)| *n == name) && value.is_finite() && (0.0..=100.0).contains(&value))
                .then(|| (name.to_string(), value))
        })
        .collect()
}

/// A number as a storage parameter value (no exponent, no trailing zeros).
pub fn format_value(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

fn is_tunable(name: &str) -> bool {
    TUNABLE.iter().any(|(n, _)| *n == name)
}

/// `ALTER TABLE <qualified> SET (a = 1, b = 2)`; `qualified` is already quoted. Names outside
/// [`TUNABLE`] and values that are not plain numbers are left out (None when nothing is left).
pub fn alter_set(qualified: &str, settings: &[(String, String)]) -> Option<String> {
    let parts: Vec<String> = settings
        .iter()
        .filter(|(n, v)| is_tunable(n) && v.parse::<f64>().is_ok_and(|f| f.is_finite()))
        .map(|(n, v)| format!("{n} = {}", format_value(v.parse::<f64>().unwrap_or(0.0))))
        .collect();
    (!parts.is_empty()).then(|| format!("ALTER TABLE {qualified} SET ({})", parts.join(", ")))
}

/// `ALTER TABLE <qualified> RESET (a, b)`.
pub fn alter_reset(qualified: &str, names: &[String]) -> Option<String> {
    let parts: Vec<&str> = names.iter().map(String::as_str).filter(|n| is_tunable(n)).collect();
    (!parts.is_empty()).then(|| format!("ALTER TABLE {qualified} RESET ({})", parts.join(", ")))
}

/// What tuning a table changes: the settings to set (those not already at the suggested value),
/// and the record of what they were before, merged into what was recorded earlier (the first
/// recorded value before pgmart is kept, so undo goes back to the user's own).
pub fn tune(suggested: &[(String, f64)], current: &Map<String, Value>, recorded: &Map<String, Value>) -> (Vec<(String, String)>, Map<String, Value>) {
    let mut set = vec![];
    let mut record = recorded.clone();
    for (name, value) in suggested {
        let after = format_value(*value);
        let now = current.get(name).and_then(|v| v.as_str()).map(String::from);
        if now.as_deref().and_then(|s| s.parse::<f64>().ok()) == Some(*value) {
            continue;
        }
        set.push((name.clone(), after.clone()));
        let before = match recorded.get(name) {
            Some(r) => r.get("before").cloned().unwrap_or(Value::Null),
            None => now.map(Value::String).unwrap_or(Value::Null),
        };
        record.insert(name.clone(), json!({"before": before, "after": after}));
    }
    (set, record)
}

/// How to undo tuning: settings to put back, settings to reset (there was none before), and
/// settings left alone because someone changed them since pgmart set them.
#[derive(Debug, Default, PartialEq)]
pub struct Undo {
    pub set: Vec<(String, String)>,
    pub reset: Vec<String>,
    pub kept: Vec<String>,
}

pub fn undo(recorded: &Map<String, Value>, current: &Map<String, Value>) -> Undo {
    let mut u = Undo::default();
    let mut names: Vec<&String> = recorded.keys().collect();
    names.sort();
    for name in names {
        if !is_tunable(name) {
            continue;
        }
        let r = &recorded[name];
        let after = r.get("after").and_then(|v| v.as_str()).unwrap_or_default();
        let now = current.get(name).and_then(|v| v.as_str());
        let same = now.and_then(|s| s.parse::<f64>().ok()).zip(after.parse::<f64>().ok()).is_some_and(|(a, b)| a == b);
        if !same {
            u.kept.push(name.clone());
            continue;
        }
        match r.get("before").and_then(|v| v.as_str()) {
            Some(b) => u.set.push((name.clone(), b.to_string())),
            None => u.reset.push(name.clone()),
        }
    }
    u
}

/// One pg_stat_statements sample of a statement: when (epoch seconds), its cumulative calls and
/// total execution time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: f64,
    pub calls: i64,
    pub total_ms: f64,
}

/// The thresholds of a regression (GUCs).
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub ratio: f64,
    pub min_ms: f64,
    pub min_calls: i64,
    /// Slower by more than this many standard deviations of the baseline's interval means.
    pub spread_k: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    pub recent_calls: Option<i64>,
    pub recent_mean_ms: Option<f64>,
    pub baseline_mean_ms: Option<f64>,
    pub regressed: bool,
    pub reason: Option<String>,
}

/// Judge a statement from its samples (oldest first): the mean time of its last sampling interval
/// (Δtotal / Δcalls) against the baseline of the intervals before it. A reset (counters going
/// down) starts a new series: nothing before it counts.
pub fn judge(samples: &[Sample], rules: &Rules) -> Verdict {
    let mut intervals: Vec<(i64, f64)> = vec![];
    for w in samples.windows(2) {
        let (dc, dt) = (w[1].calls - w[0].calls, w[1].total_ms - w[0].total_ms);
        if dc < 0 || dt < 0.0 {
            intervals.clear();
            continue;
        }
        intervals.push((dc, dt));
    }
    let Some(&(rc, rt)) = intervals.last() else {
        return Verdict { reason: Some("no sampling interval yet (the health job samples on every run)".into()), ..Default::default() };
    };
    let recent_mean = (rc > 0).then(|| rt / rc as f64);
    let base: Vec<(i64, f64)> = intervals[..intervals.len() - 1].iter().copied().filter(|(c, _)| *c > 0).collect();
    let base_calls: i64 = base.iter().map(|(c, _)| c).sum();
    let base_total: f64 = base.iter().map(|(_, t)| t).sum();
    let baseline = (base_calls > 0).then(|| base_total / base_calls as f64);
    let mut v = Verdict { recent_calls: Some(rc), recent_mean_ms: recent_mean, baseline_mean_ms: baseline, ..Default::default() };
    let (Some(recent), Some(baseline)) = (recent_mean, baseline) else {
        v.reason = Some(if baseline.is_none() { "no baseline yet" } else { "not called in the last interval" }.into());
        return v;
    };
    let means: Vec<f64> = base.iter().filter(|(c, _)| *c >= rules.min_calls).map(|(c, t)| t / *c as f64).collect();
    let spread = (means.len() >= 2).then(|| {
        let m = means.iter().sum::<f64>() / means.len() as f64;
        (means.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (means.len() - 1) as f64).sqrt()
    });
    let slower = recent - baseline;
    v.regressed = rc >= rules.min_calls
        && base_calls >= rules.min_calls
        && recent > baseline * rules.ratio
        && slower >= rules.min_ms
        && spread.is_none_or(|s| slower > rules.spread_k * s);
    if v.regressed {
        v.reason = Some(format!(
            "mean {:.2} ms over the last interval ({rc} calls) against a baseline of {:.2} ms ({base_calls} calls): {:.1}x slower",
            recent,
            baseline,
            recent / baseline.max(1e-9)
        ));
    }
    v
}
