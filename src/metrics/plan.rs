//! Pure planning for metric contracts: name/grain/text validation, the protection view's DDL, and
//! the exact SQL `metric_values` runs. No PostgreSQL here, so all of it is unit tested.

use crate::error::{PgMartError, Result};
use serde::{Deserialize, Serialize};

/// Schema holding one protection view per metric.
pub const VIEW_SCHEMA: &str = "pgmart_metrics";
/// Longest metric name: the view is `metric_<name>` and must fit in 63 bytes.
pub const MAX_NAME: usize = 56;
/// Most buckets one `metric_values` call may produce.
pub const MAX_BUCKETS: f64 = 1_000_000.0;

pub const GRAINS: [&str; 6] = ["hour", "day", "week", "month", "quarter", "year"];

/// An identifier, always double-quoted (pure Rust, so the planner is testable without PostgreSQL).
pub fn quote_identifier(s: impl AsRef<str>) -> String {
    format!("\"{}\"", s.as_ref().replace('"', "\"\""))
}

/// A string literal the way PostgreSQL's quote_literal writes it (E'' when it holds a backslash).
pub fn quote_literal(s: impl AsRef<str>) -> String {
    let s = s.as_ref();
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// The kind of the time column, which decides how its values become instants and buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeKind {
    /// timestamptz: an instant.
    Timestamptz,
    /// timestamp without time zone: read as UTC.
    Timestamp,
    /// date: a calendar day in the requested zone.
    Date,
}

impl TimeKind {
    pub fn from_type_name(t: &str) -> Option<TimeKind> {
        match t {
            "timestamp with time zone" => Some(TimeKind::Timestamptz),
            "timestamp without time zone" => Some(TimeKind::Timestamp),
            "date" => Some(TimeKind::Date),
            _ => None,
        }
    }
}

/// Validate a metric name: a simple lower-case identifier that fits in the view's name.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(PgMartError::invalid(format!("invalid metric name \"{name}\""))
            .detail(format!(
                "A metric name is a simple lower-case identifier: a letter, then letters, digits or underscores, at most {MAX_NAME} characters."
            ))
            .hint("For example: revenue, orders_paid, avg_order_value."))
    }
}

pub fn check_grain(grain: &str) -> Result<()> {
    if GRAINS.contains(&grain) {
        Ok(())
    } else {
        Err(PgMartError::invalid(format!("unknown grain \"{grain}\""))
            .hint("Use one of: hour, day, week, month, quarter, year."))
    }
}

pub fn check_text(what: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        Err(PgMartError::invalid(format!("a metric needs a non-empty {what}")))
    } else {
        Ok(())
    }
}

/// Check a user SQL fragment (expression or filter) so that, wrapped in parentheses, it stays one
/// expression: no `;`, no comments, no dollar quotes or backslashes, balanced parentheses and quotes.
/// Planning it in PostgreSQL afterwards does the rest of the validation.
pub fn check_fragment(what: &str, text: &str) -> Result<String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(PgMartError::invalid(format!("the metric {what} is empty")));
    }
    let bad = |why: &str| {
        Err(PgMartError::invalid(format!("invalid metric {what}: {why}")).detail(format!("{what}: {t}")))
    };
    let chars: Vec<char> = t.chars().collect();
    let mut depth: i32 = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                // Skip to the closing quote; a doubled quote is an escaped one.
                let q = c;
                i += 1;
                loop {
                    if i >= chars.len() {
                        return bad("unterminated quoted string or identifier");
                    }
                    if chars[i] == '\\' {
                        return bad("backslashes are not allowed");
                    }
                    if chars[i] == q {
                        if i + 1 < chars.len() && chars[i + 1] == q {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            ';' => return bad("it must be one expression, without ';'"),
            '$' => return bad("dollar quotes and parameters are not allowed"),
            '\\' => return bad("backslashes are not allowed"),
            '-' if chars.get(i + 1) == Some(&'-') => return bad("comments are not allowed"),
            '/' if chars.get(i + 1) == Some(&'*') => return bad("comments are not allowed"),
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return bad("unbalanced parentheses");
                }
            }
            _ => {}
        }
        i += 1;
    }
    if depth != 0 {
        return bad("unbalanced parentheses");
    }
    Ok(t.to_string())
}

/// Dimensions: each named once.
pub fn check_dimensions(dims: &[String]) -> Result<()> {
    for (i, d) in dims.iter().enumerate() {
        if d.trim().is_empty() {
            return Err(PgMartError::invalid("a dimension name is empty"));
        }
        if dims[..i].contains(d) {
            return Err(PgMartError::invalid(format!("dimension \"{d}\" is listed twice")));
        }
    }
    Ok(())
}

/// The registered metric as the planner needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub name: String,
    pub source: String,
    pub expression: String,
    pub filter: Option<String>,
    pub time_column: String,
    pub dimensions: Vec<String>,
    pub grain: String,
    pub owner: String,
    pub description: String,
}

/// A human summary of what changed between two definitions.
pub fn change_summary(old: &Definition, new: &Definition) -> String {
    let mut parts = Vec::new();
    let mut diff = |field: &str, a: String, b: String| {
        if a != b {
            parts.push(format!("{field}: {a} -> {b}"));
        }
    };
    diff("source", old.source.clone(), new.source.clone());
    diff("expression", old.expression.clone(), new.expression.clone());
    diff(
        "filter",
        old.filter.clone().unwrap_or_else(|| "(none)".into()),
        new.filter.clone().unwrap_or_else(|| "(none)".into()),
    );
    diff("time_column", old.time_column.clone(), new.time_column.clone());
    diff("dimensions", format!("{:?}", old.dimensions), format!("{:?}", new.dimensions));
    diff("grain", old.grain.clone(), new.grain.clone());
    diff("owner", old.owner.clone(), new.owner.clone());
    diff("description", old.description.clone(), new.description.clone());
    if parts.is_empty() {
        "definition normalized differently".into()
    } else {
        parts.join("; ")
    }
}

/// The protection view's unqualified name.
pub fn view_name(metric: &str) -> String {
    format!("metric_{metric}")
}

pub fn view_qualified(metric: &str) -> String {
    format!("{}.{}", quote_identifier(VIEW_SCHEMA), quote_identifier(view_name(metric)))
}

/// DDL of the protection view: exactly the given columns of the source, under their names at
/// registration. The view keeps those output names after a column rename, so the metric's SQL,
/// which reads the view, keeps working; PostgreSQL refuses to drop a column the view uses.
pub fn view_ddl(metric: &str, source_sql: &str, columns: &[String]) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| format!("src.{} AS {}", quote_identifier(c), quote_identifier(c)))
        .collect();
    format!(
        "CREATE VIEW {} WITH (security_invoker = true) AS SELECT {} FROM {} AS src",
        view_qualified(metric),
        cols.join(", "),
        source_sql
    )
}

/// What a `metric_values` call asks for, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Timestamptz literals as text (ISO with offset), unquoted.
    pub from_ts: String,
    pub to_ts: String,
    pub grain: String,
    pub dimensions: Vec<String>,
    pub timezone: String,
}

fn step(grain: &str) -> &'static str {
    match grain {
        "hour" => "1 hour",
        "day" => "1 day",
        "week" => "7 days",
        "month" => "1 month",
        "quarter" => "3 months",
        _ => "1 year",
    }
}

/// Approximate seconds per bucket, for the bucket-count guard.
pub fn grain_seconds(grain: &str) -> f64 {
    match grain {
        "hour" => 3600.0,
        "day" => 86400.0,
        "week" => 7.0 * 86400.0,
        "month" => 28.0 * 86400.0,
        "quarter" => 89.0 * 86400.0,
        _ => 365.0 * 86400.0,
    }
}

/// The SQL `metric_values` runs, with every value a quoted literal, so it can be embedded as is.
/// Rows are aggregated once per (bucket, dimensions); a bucket series crossed with the dimension
/// combinations seen fills empty buckets with the aggregate's own value on no rows.
pub fn values_sql(def: &Definition, kind: TimeKind, req: &Request) -> String {
    let tz = quote_literal(&req.timezone);
    let from = format!("{}::timestamptz", quote_literal(&req.from_ts));
    let to = format!("{}::timestamptz", quote_literal(&req.to_ts));
    let g = quote_literal(&req.grain);
    let t = format!("m.{}", quote_identifier(&def.time_column));
    let view = view_qualified(&def.name);
    let expr = &def.expression;

    // The row's bucket, its range predicate (sargable on the column), and the bucket series.
    let (bucket, range) = match kind {
        TimeKind::Timestamptz => (
            if req.grain == "hour" {
                format!("pg_catalog.date_bin('1 hour', {t}, pg_catalog.date_trunc('hour', {from} AT TIME ZONE {tz}) AT TIME ZONE {tz})")
            } else {
                format!("pg_catalog.date_trunc({g}, {t} AT TIME ZONE {tz}) AT TIME ZONE {tz}")
            },
            format!("{t} >= {from} AND {t} < {to}"),
        ),
        TimeKind::Timestamp => (
            if req.grain == "hour" {
                format!("pg_catalog.date_bin('1 hour', {t} AT TIME ZONE 'UTC', pg_catalog.date_trunc('hour', {from} AT TIME ZONE {tz}) AT TIME ZONE {tz})")
            } else {
                format!("pg_catalog.date_trunc({g}, ({t} AT TIME ZONE 'UTC') AT TIME ZONE {tz}) AT TIME ZONE {tz}")
            },
            format!("{t} >= ({from} AT TIME ZONE 'UTC') AND {t} < ({to} AT TIME ZONE 'UTC')"),
        ),
        TimeKind::Date => (
            format!("pg_catalog.date_trunc({g}, {t}::timestamp) AT TIME ZONE {tz}"),
            format!("{t} >= ({from} AT TIME ZONE {tz}) AND {t} < ({to} AT TIME ZONE {tz})"),
        ),
    };
    let series = if req.grain == "hour" {
        format!(
            "SELECT s AS bucket FROM pg_catalog.generate_series(pg_catalog.date_trunc('hour', {from} AT TIME ZONE {tz}) AT TIME ZONE {tz}, {to}, interval '1 hour') AS s WHERE s < {to}"
        )
    } else {
        format!(
            "SELECT s AT TIME ZONE {tz} AS bucket FROM pg_catalog.generate_series(pg_catalog.date_trunc({g}, {from} AT TIME ZONE {tz}), {to} AT TIME ZONE {tz}, interval '{}') AS s WHERE s AT TIME ZONE {tz} < {to}",
            step(&req.grain)
        )
    };
    let filter = match &def.filter {
        Some(f) => format!(" AND ({f})"),
        None => String::new(),
    };
    let dims_json = if req.dimensions.is_empty() {
        "'{}'::jsonb".to_string()
    } else {
        let pairs: Vec<String> = req
            .dimensions
            .iter()
            .map(|d| format!("{}, m.{}", quote_literal(d), quote_identifier(d)))
            .collect();
        format!("pg_catalog.jsonb_build_object({})", pairs.join(", "))
    };
    let mut group = vec!["1".to_string()];
    for d in &req.dimensions {
        group.push(format!("m.{}", quote_identifier(d)));
    }
    let groups = if req.dimensions.is_empty() {
        "SELECT '{}'::jsonb AS dimension_values".to_string()
    } else {
        "SELECT DISTINCT dimension_values FROM pgmart_rows".to_string()
    };
    format!(
        "WITH pgmart_rows AS (\n\
         \x20 SELECT {bucket} AS bucket, {dims_json} AS dimension_values, (({expr}))::numeric AS value\n\
         \x20   FROM {view} AS m\n\
         \x20  WHERE {range}{filter}\n\
         \x20  GROUP BY {}\n\
         ), pgmart_buckets AS (\n\
         \x20 {series}\n\
         ), pgmart_groups AS (\n\
         \x20 {groups}\n\
         )\n\
         SELECT b.bucket, g.dimension_values,\n\
         \x20      CASE WHEN r.bucket IS NULL THEN (SELECT (({expr}))::numeric FROM {view} AS m WHERE false) ELSE r.value END AS value\n\
         \x20 FROM pgmart_buckets AS b CROSS JOIN pgmart_groups AS g\n\
         \x20 LEFT JOIN pgmart_rows AS r ON r.bucket = b.bucket AND r.dimension_values = g.dimension_values\n\
         \x20ORDER BY b.bucket, g.dimension_values",
        group.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> Definition {
        Definition {
            name: "revenue".into(),
            source: "public.orders".into(),
            expression: "sum(amount)".into(),
            filter: Some("status = 'paid'".into()),
            time_column: "created_at".into(),
            dimensions: vec!["region".into()],
            grain: "day".into(),
            owner: "finance".into(),
            description: "Paid revenue".into(),
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
    }

    #[test]
    fn names() {
        assert!(check_name("revenue").is_ok());
        assert!(check_name("orders_paid_2").is_ok());
        for bad in ["", "Revenue", "2x", "a-b", "a b", "_x", "a;drop", &"x".repeat(57)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grains() {
        for g in GRAINS {
            assert!(check_grain(g).is_ok());
        }
        assert!(check_grain("minute").is_err());
        assert!(check_grain("Day").is_err());
    }

    #[test]
    fn fragments() {
        assert_eq!(check_fragment("expression", "  sum(amount) ").unwrap(), "sum(amount)");
        assert!(check_fragment("expression", "sum(amount) FILTER (WHERE status = 'a;b')").is_ok());
        assert!(check_fragment("expression", "count(\"Odd)Name\")").is_ok());
        assert!(check_fragment("filter", "note = 'it''s'").is_ok());
        for bad in [
            "",
            "sum(x); DROP TABLE t",
            "sum(x) -- c",
            "sum(x) /* c */",
            "sum(x))",
            "(sum(x)",
            "sum(x)) FROM t WHERE ((true",
            "sum($1)",
            "'unterminated",
            "E'\\'' ; x",
        ] {
            assert!(check_fragment("expression", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dims() {
        assert!(check_dimensions(&["a".into(), "b".into()]).is_ok());
        assert!(check_dimensions(&["a".into(), "a".into()]).is_err());
    }

    #[test]
    fn summary_lists_changes() {
        let a = def();
        let mut b = def();
        b.expression = "sum(amount * 2)".into();
        b.grain = "week".into();
        let s = change_summary(&a, &b);
        assert!(s.contains("expression: sum(amount) -> sum(amount * 2)"), "{s}");
        assert!(s.contains("grain: day -> week"), "{s}");
        assert!(!s.contains("owner"), "{s}");
    }

    #[test]
    fn view_ddl_selects_exactly_the_columns() {
        let ddl = view_ddl("revenue", "public.orders", &["created_at".into(), "Amount".into()]);
        assert_eq!(
            ddl,
            "CREATE VIEW \"pgmart_metrics\".\"metric_revenue\" WITH (security_invoker = true) AS SELECT src.\"created_at\" AS \"created_at\", src.\"Amount\" AS \"Amount\" FROM public.orders AS src"
        );
    }

    #[test]
    fn values_sql_quotes_and_fills() {
        let req = Request {
            from_ts: "2024-01-01 00:00:00+00".into(),
            to_ts: "2024-02-01 00:00:00+00".into(),
            grain: "day".into(),
            dimensions: vec!["region".into()],
            timezone: "Europe/Paris".into(),
        };
        let s = values_sql(&def(), TimeKind::Timestamptz, &req);
        assert!(s.contains("FROM \"pgmart_metrics\".\"metric_revenue\" AS m"), "{s}");
        assert!(s.contains("date_trunc('day', m.\"created_at\" AT TIME ZONE 'Europe/Paris') AT TIME ZONE 'Europe/Paris'"), "{s}");
        assert!(s.contains("m.\"created_at\" >= '2024-01-01 00:00:00+00'::timestamptz AND m.\"created_at\" < '2024-02-01 00:00:00+00'::timestamptz AND (status = 'paid')"), "{s}");
        assert!(s.contains("jsonb_build_object('region', m.\"region\")"), "{s}");
        assert!(s.contains("GROUP BY 1, m.\"region\""), "{s}");
        assert!(s.contains("SELECT DISTINCT dimension_values FROM pgmart_rows"), "{s}");
        assert!(s.contains("interval '1 day'"), "{s}");
        let hour = values_sql(&def(), TimeKind::Timestamptz, &Request { grain: "hour".into(), dimensions: vec![], ..req.clone() });
        assert!(hour.contains("date_bin('1 hour'"), "{hour}");
        assert!(hour.contains("SELECT '{}'::jsonb AS dimension_values"), "{hour}");
        let tz = values_sql(&def(), TimeKind::Date, &Request { timezone: "O'Brien".into(), ..req });
        assert!(tz.contains("'O''Brien'"), "{tz}");
        assert!(tz.contains("m.\"created_at\"::timestamp"), "{tz}");
    }
}
