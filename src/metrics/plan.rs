//! Pure planning for metric contracts: name/grain/text validation, the protection view's DDL, and
//! the exact SQL `metric_values` runs. No PostgreSQL here, so all of it is unit tested.

use crate::error::{PgMartError, Result};
use serde::{Deserialize, Serialize};

/// Schema of the browsable views, one per metric, named as the metric (`pgmart_metrics.revenue`).
pub const VIEW_SCHEMA: &str = "pgmart_metrics";
/// Schema of the protection views, one per metric, named as the metric: exactly the source columns
/// it uses, so PostgreSQL refuses to drop them.
pub const COLUMNS_SCHEMA: &str = "pgmart_metric_columns";
/// Longest metric name (a view name must fit in 63 bytes; kept from 0.1.0).
pub const MAX_NAME: usize = 56;
/// Most buckets one `metric_values` call may produce.
pub const MAX_BUCKETS: f64 = 1_000_000.0;

pub const GRAINS: [&str; 6] = ["hour", "day", "week", "month", "quarter", "year"];

pub use crate::names::{check_dimensions, quote_identifier, quote_literal};
pub use crate::timecol::TimeKind;

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

/// The protection view: `pgmart_metric_columns.<metric>`.
pub fn columns_view(metric: &str) -> String {
    format!("{}.{}", quote_identifier(COLUMNS_SCHEMA), quote_identifier(metric))
}

/// The browsable view: `pgmart_metrics.<metric>`.
pub fn browse_view(metric: &str) -> String {
    format!("{}.{}", quote_identifier(VIEW_SCHEMA), quote_identifier(metric))
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
        columns_view(metric),
        cols.join(", "),
        source_sql
    )
}

/// The browsable view's name for a dimension column (a dimension may not take the name of one of
/// the view's own columns).
pub fn browse_dimension(d: &str) -> String {
    if ["bucket", "bucket_date", "value"].contains(&d) {
        format!("dimension_{d}")
    } else {
        d.to_string()
    }
}

/// DDL of the browsable view: the metric at its grain, one row per bucket and dimension values,
/// buckets aligned in the reading session's `TimeZone` (a BI tool sets it to the report's zone).
/// A filter on `bucket` or `bucket_date` is pushed by PostgreSQL below the aggregate into the
/// source scan (both are grouping columns). `value` keeps the expression's type; a numeric loses
/// its trailing zeros. It runs as whoever reads it (`security_invoker`).
pub fn browse_ddl(def: &Definition, kind: TimeKind, numeric: bool) -> String {
    let t = format!("m.{}", quote_identifier(&def.time_column));
    let g = quote_literal(&def.grain);
    let zone = "pg_catalog.current_setting('TimeZone')";
    let bucket = match kind {
        TimeKind::Timestamptz => format!("pg_catalog.date_trunc({g}, {t}, {zone})"),
        TimeKind::Timestamp => format!("pg_catalog.date_trunc({g}, {t} AT TIME ZONE 'UTC', {zone})"),
        TimeKind::Date => format!("pg_catalog.date_trunc({g}, {t}::pg_catalog.timestamp)::pg_catalog.timestamptz"),
    };
    let mut cols = vec![format!("{bucket} AS bucket"), format!("({bucket})::pg_catalog.date AS bucket_date")];
    let mut group = vec!["1".to_string(), "2".to_string()];
    for d in &def.dimensions {
        cols.push(format!("m.{} AS {}", quote_identifier(d), quote_identifier(browse_dimension(d))));
        group.push(format!("m.{}", quote_identifier(d)));
    }
    let value = if numeric {
        format!("pg_catalog.trim_scale(({}))", def.expression)
    } else {
        format!("({})", def.expression)
    };
    cols.push(format!("{value} AS value"));
    let filter = def.filter.as_ref().map(|f| format!(" WHERE ({f})")).unwrap_or_default();
    format!(
        "CREATE VIEW {} WITH (security_invoker = true) AS SELECT {} FROM {} AS m{filter} GROUP BY {}",
        browse_view(&def.name),
        cols.join(", "),
        columns_view(&def.name),
        group.join(", ")
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

/// The metric's expression as `metric_values` computes it: the value, and for a ratio its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Measures {
    pub value: String,
    /// Numerator and denominator of a ratio metric (`a / b`, `a / nullif(b, 0)`).
    pub ratio: Option<(String, String)>,
    /// A rollup that answers it (its buckets fit the request), read instead of the source.
    pub rollup: Option<RollupRead>,
}

/// How to read a metric from a rollup: its relation (the real-time view, or the table), and the
/// metric's value (and ratio parts) over its columns.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRead {
    pub name: String,
    pub relation: String,
    pub value: String,
    pub ratio: Option<(String, String)>,
}

/// Which of sum, count, min and max `text` is, when it is exactly one call of it (a FILTER clause
/// allowed, DISTINCT not): those re-aggregate exactly from a rollup's per-bucket values.
pub fn single_aggregate(text: &str) -> Option<&'static str> {
    let t = text.trim();
    let name = ["sum", "count", "min", "max"].into_iter().find(|n| t.starts_with(&format!("{n}(")))?;
    if t.contains("DISTINCT") {
        return None;
    }
    // The call's closing parenthesis ends the text, or a FILTER (...) clause follows it.
    let close = |from: usize| -> Option<usize> {
        let mut depth = 0i32;
        let mut quoted = false;
        for (i, c) in t[from..].char_indices() {
            match c {
                '\'' => quoted = !quoted,
                '(' if !quoted => depth += 1,
                ')' if !quoted => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(from + i);
                    }
                }
                _ => {}
            }
        }
        None
    };
    let end = close(name.len())?;
    let rest = t[end + 1..].trim_start();
    if rest.is_empty() {
        return Some(name);
    }
    let filter = rest.strip_prefix("FILTER")?.trim_start();
    let at = t.len() - filter.len();
    (filter.starts_with('(') && close(at)? == t.len() - 1).then_some(name)
}

/// `agg` (one of [`single_aggregate`]) of a rollup column again: counts and sums add up.
fn reaggregate(agg: &str, column: &str) -> String {
    let f = if agg == "count" { "sum" } else { agg };
    format!("pg_catalog.{f}(m.{})", quote_identifier(column))
}

/// The metric read from a rollup's measures (output column, analysed expression): its value and
/// ratio parts over those columns, when every aggregate in it is one of them and re-aggregates.
pub fn over_measures(value: &str, ratio: Option<&(String, String)>, measures: &[(String, String)]) -> Option<(String, Option<(String, String)>)> {
    let column_of = |agg: &str| -> Option<String> {
        let kind = single_aggregate(agg)?;
        let (col, _) = measures.iter().find(|(_, e)| e.trim() == agg.trim())?;
        Some(reaggregate(kind, col))
    };
    if let Some(v) = column_of(value) {
        return Some((v, None));
    }
    let (a, b) = ratio?;
    let (ra, rb) = (column_of(a)?, column_of(b)?);
    let at = value.find(a.as_str())?;
    let mut v = format!("{}{}{}", &value[..at], ra, &value[at + a.len()..]);
    let bt = v[at + ra.len()..].find(b.as_str())? + at + ra.len();
    v = format!("{}{}{}", &v[..bt], rb, &v[bt + b.len()..]);
    Some((v, Some((ra, rb))))
}

/// Whether buckets of a rollup (`bucket`) nest in the metric buckets of `grain`, in one zone.
pub fn grain_fits(grain: &str, bucket: crate::rollups::plan::Bucket) -> bool {
    use crate::rollups::plan::Bucket;
    const HOUR: i64 = 3_600_000_000;
    match (grain, bucket) {
        ("hour", Bucket::Micros(u)) => HOUR % u == 0,
        ("hour", _) => false,
        (_, Bucket::Micros(u)) => (24 * HOUR) % u == 0,
        (_, Bucket::Days(1)) => true,
        ("week", Bucket::Days(7)) => true,
        ("month" | "quarter" | "year", Bucket::Month) => true,
        _ => false,
    }
}

/// The SQL `metric_values` runs for one metric, with every value a quoted literal, so it can be
/// embedded as is. Columns: bucket_start, bucket_local, is_partial, dimension_values, value,
/// numerator, denominator. Rows are aggregated once per (bucket, dimensions); a bucket series
/// crossed with the dimension combinations seen fills empty buckets with the aggregate's own value
/// on no rows. A bucket is partial when `from_ts`, `to_ts` or now cuts it; a `date` column counts
/// whole days (the day of `from_ts` and every day that starts before `to_ts`).
pub fn values_sql(def: &Definition, kind: TimeKind, req: &Request, measures: &Measures) -> String {
    let tz = quote_literal(&req.timezone);
    let from = format!("{}::pg_catalog.timestamptz", quote_literal(&req.from_ts));
    let to = format!("{}::pg_catalog.timestamptz", quote_literal(&req.to_ts));
    let g = quote_literal(&req.grain);
    let own = columns_view(&def.name);
    // Rows come from the metric's view, or from a rollup that covers the request (its buckets,
    // already filtered, in a timestamptz column).
    let (view, kind, time_column, def_filter) = match &measures.rollup {
        Some(r) => (r.relation.clone(), TimeKind::Timestamptz, "bucket", None),
        None => (own.clone(), kind, def.time_column.as_str(), def.filter.as_ref()),
    };
    let t = format!("m.{}", quote_identifier(time_column));

    // Dates: the first day is the one holding from_ts, the last the one before to_ts.
    let from_day = format!("pg_catalog.date_trunc('day', {from} AT TIME ZONE {tz})");
    let to_day = format!(
        "(pg_catalog.date_trunc('day', {to} AT TIME ZONE {tz}) OPERATOR(pg_catalog.+) CASE WHEN pg_catalog.date_trunc('day', {to} AT TIME ZONE {tz}) \
         OPERATOR(pg_catalog.=) ({to} AT TIME ZONE {tz}) THEN interval '0' ELSE interval '1 day' END)"
    );
    // The row's bucket, its range predicate (sargable on the column), and the data's bounds.
    let (bucket, range, lo, hi) = match kind {
        TimeKind::Timestamptz => (
            if req.grain == "hour" {
                format!("pg_catalog.date_bin('1 hour', {t}, pg_catalog.date_trunc('hour', {from} AT TIME ZONE {tz}) AT TIME ZONE {tz})")
            } else {
                format!("pg_catalog.date_trunc({g}, {t} AT TIME ZONE {tz}) AT TIME ZONE {tz}")
            },
            format!("{t} >= {from} AND {t} < {to}"),
            from.clone(),
            to.clone(),
        ),
        TimeKind::Timestamp => (
            if req.grain == "hour" {
                format!("pg_catalog.date_bin('1 hour', {t} AT TIME ZONE 'UTC', pg_catalog.date_trunc('hour', {from} AT TIME ZONE {tz}) AT TIME ZONE {tz})")
            } else {
                format!("pg_catalog.date_trunc({g}, ({t} AT TIME ZONE 'UTC') AT TIME ZONE {tz}) AT TIME ZONE {tz}")
            },
            format!("{t} >= ({from} AT TIME ZONE 'UTC') AND {t} < ({to} AT TIME ZONE 'UTC')"),
            from.clone(),
            to.clone(),
        ),
        TimeKind::Date => (
            format!("pg_catalog.date_trunc({g}, {t}::pg_catalog.timestamp) AT TIME ZONE {tz}"),
            format!("{t} >= {from_day}::pg_catalog.date AND {t} < {to_day}::pg_catalog.date"),
            format!("({from_day} AT TIME ZONE {tz})"),
            format!("({to_day} AT TIME ZONE {tz})"),
        ),
    };
    let series = if req.grain == "hour" {
        format!(
            "SELECT s AS bucket, s OPERATOR(pg_catalog.+) interval '1 hour' AS bucket_end \
             FROM pg_catalog.generate_series(pg_catalog.date_trunc('hour', {from} AT TIME ZONE {tz}) AT TIME ZONE {tz}, {to}, interval '1 hour') AS s \
             WHERE s < {to}"
        )
    } else {
        let st = step(&req.grain);
        format!(
            "SELECT s AT TIME ZONE {tz} AS bucket, (s OPERATOR(pg_catalog.+) interval '{st}') AT TIME ZONE {tz} AS bucket_end \
             FROM pg_catalog.generate_series(pg_catalog.date_trunc({g}, {from} AT TIME ZONE {tz}), {to} AT TIME ZONE {tz}, interval '{st}') AS s \
             WHERE s AT TIME ZONE {tz} < {to}"
        )
    };
    let filter = match def_filter {
        Some(f) => format!(" AND ({f})"),
        None => String::new(),
    };
    let dims_json = if req.dimensions.is_empty() {
        "'{}'::pg_catalog.jsonb".to_string()
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
        "SELECT '{}'::pg_catalog.jsonb AS dimension_values".to_string()
    } else {
        "SELECT DISTINCT dimension_values FROM pgmart_rows".to_string()
    };
    // value, numerator, denominator: computed in the scan and on no rows (for empty buckets).
    let parts_of = |value: &str, ratio: &Option<(String, String)>| match ratio {
        Some((a, b)) => format!(
            "(({value}))::pg_catalog.numeric AS value, (({a}))::pg_catalog.numeric AS numerator, (({b}))::pg_catalog.numeric AS denominator"
        ),
        None => format!("(({value}))::pg_catalog.numeric AS value, NULL::pg_catalog.numeric AS numerator, NULL::pg_catalog.numeric AS denominator"),
    };
    // The empty bucket's value is always the aggregate's own on no rows (count(*) is 0, not NULL).
    let empty = parts_of(&measures.value, &measures.ratio);
    let (parts, origin) = match &measures.rollup {
        Some(r) => (parts_of(&r.value, &r.ratio), format!("-- pgmart: answered from rollup {}\n", r.name.replace('\n', " "))),
        None => (empty.clone(), String::new()),
    };
    let pick = |c: &str| format!("pg_catalog.trim_scale(CASE WHEN r.bucket IS NULL THEN e.{c} ELSE r.{c} END) AS {c}");
    format!(
        "{origin}WITH pgmart_rows AS (\n\
         \x20 SELECT {bucket} AS bucket, {dims_json} AS dimension_values, {parts}\n\
         \x20   FROM {view} AS m\n\
         \x20  WHERE {range}{filter}\n\
         \x20  GROUP BY {}\n\
         ), pgmart_empty AS (\n\
         \x20 SELECT {empty} FROM {own} AS m WHERE false\n\
         ), pgmart_buckets AS (\n\
         \x20 {series}\n\
         ), pgmart_groups AS (\n\
         \x20 {groups}\n\
         )\n\
         SELECT b.bucket AS bucket_start, b.bucket AT TIME ZONE {tz} AS bucket_local,\n\
         \x20      (b.bucket < {lo} OR b.bucket_end > {hi} OR b.bucket_end > pg_catalog.now()) AS is_partial,\n\
         \x20      g.dimension_values, {}, {}, {}\n\
         \x20 FROM pgmart_buckets AS b CROSS JOIN pgmart_groups AS g CROSS JOIN pgmart_empty AS e\n\
         \x20 LEFT JOIN pgmart_rows AS r ON r.bucket = b.bucket AND r.dimension_values = g.dimension_values\n\
         \x20ORDER BY b.bucket, g.dimension_values",
        group.join(", "),
        pick("value"),
        pick("numerator"),
        pick("denominator"),
    )
}

/// The SQL of several metrics over the same buckets: each metric's rows (as [`values_sql`])
/// under its name, ordered by bucket, metric and dimension values.
pub fn several_sql(parts: &[(String, String)]) -> String {
    let arms: Vec<String> = parts
        .iter()
        .map(|(name, q)| format!("SELECT {} AS metric, q.* FROM (\n{q}\n) AS q", quote_literal(name)))
        .collect();
    format!(
        "SELECT s.* FROM (\n{}\n) AS s ORDER BY s.bucket_start, s.metric, s.dimension_values",
        arms.join("\nUNION ALL\n")
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
            "CREATE VIEW \"pgmart_metric_columns\".\"revenue\" WITH (security_invoker = true) AS SELECT src.\"created_at\" AS \"created_at\", src.\"Amount\" AS \"Amount\" FROM public.orders AS src"
        );
    }

    #[test]
    fn browse_ddl_groups_by_bucket_and_dimensions() {
        let mut d = def();
        d.dimensions = vec!["region".into(), "value".into()];
        let ddl = browse_ddl(&d, TimeKind::Timestamptz, true);
        assert!(ddl.starts_with("CREATE VIEW \"pgmart_metrics\".\"revenue\" WITH (security_invoker = true) AS SELECT "), "{ddl}");
        assert!(ddl.contains("pg_catalog.date_trunc('day', m.\"created_at\", pg_catalog.current_setting('TimeZone')) AS bucket"), "{ddl}");
        assert!(ddl.contains("m.\"value\" AS \"dimension_value\""), "{ddl}");
        assert!(ddl.contains("pg_catalog.trim_scale((sum(amount))) AS value"), "{ddl}");
        assert!(ddl.contains("FROM \"pgmart_metric_columns\".\"revenue\" AS m WHERE (status = 'paid') GROUP BY 1, 2, m.\"region\", m.\"value\""), "{ddl}");
        let date = browse_ddl(&def(), TimeKind::Date, false);
        assert!(date.contains("date_trunc('day', m.\"created_at\"::pg_catalog.timestamp)::pg_catalog.timestamptz AS bucket"), "{date}");
        assert!(date.contains("(sum(amount)) AS value"), "{date}");
    }

    fn plain() -> Measures {
        Measures { value: "sum(amount)".into(), ratio: None, rollup: None }
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
        let s = values_sql(&def(), TimeKind::Timestamptz, &req, &plain());
        assert!(s.contains("FROM \"pgmart_metric_columns\".\"revenue\" AS m"), "{s}");
        assert!(s.contains("date_trunc('day', m.\"created_at\" AT TIME ZONE 'Europe/Paris') AT TIME ZONE 'Europe/Paris'"), "{s}");
        assert!(s.contains("m.\"created_at\" >= '2024-01-01 00:00:00+00'::pg_catalog.timestamptz AND m.\"created_at\" < '2024-02-01 00:00:00+00'::pg_catalog.timestamptz AND (status = 'paid')"), "{s}");
        assert!(s.contains("jsonb_build_object('region', m.\"region\")"), "{s}");
        assert!(s.contains("GROUP BY 1, m.\"region\""), "{s}");
        assert!(s.contains("SELECT DISTINCT dimension_values FROM pgmart_rows"), "{s}");
        assert!(s.contains("interval '1 day'"), "{s}");
        assert!(s.contains("NULL::pg_catalog.numeric AS numerator"), "{s}");
        assert!(s.contains("b.bucket_end > pg_catalog.now()) AS is_partial"), "{s}");
        let hour = values_sql(&def(), TimeKind::Timestamptz, &Request { grain: "hour".into(), dimensions: vec![], ..req.clone() }, &plain());
        assert!(hour.contains("date_bin('1 hour'"), "{hour}");
        assert!(hour.contains("SELECT '{}'::pg_catalog.jsonb AS dimension_values"), "{hour}");
        let tz = values_sql(&def(), TimeKind::Date, &Request { timezone: "O'Brien".into(), ..req.clone() }, &plain());
        assert!(tz.contains("'O''Brien'"), "{tz}");
        assert!(tz.contains("m.\"created_at\"::pg_catalog.timestamp"), "{tz}");
        // Dates are whole days: the range starts at from_ts's day and ends after to_ts's.
        assert!(tz.contains("m.\"created_at\" >= pg_catalog.date_trunc('day', '2024-01-01 00:00:00+00'::pg_catalog.timestamptz AT TIME ZONE 'O''Brien')::pg_catalog.date"), "{tz}");
        let ratio = Measures { value: "sum(a) / nullif(count(*), 0)".into(), ratio: Some(("sum(a)".into(), "count(*)".into())), rollup: None };
        let r = values_sql(&def(), TimeKind::Timestamptz, &req, &ratio);
        assert!(r.contains("((sum(a)))::pg_catalog.numeric AS numerator, ((count(*)))::pg_catalog.numeric AS denominator"), "{r}");
        // From a rollup: its buckets and columns, the empty value still the metric's own.
        let from_rollup = Measures {
            rollup: Some(RollupRead { name: "mart.h".into(), relation: "\"mart\".\"h_rt\"".into(),
                                      value: "pg_catalog.sum(m.\"rev\")".into(), ratio: None }),
            ..plain()
        };
        let r = values_sql(&def(), TimeKind::Timestamptz, &req, &from_rollup);
        assert!(r.starts_with("-- pgmart: answered from rollup mart.h\nWITH"), "{r}");
        assert!(r.contains("((pg_catalog.sum(m.\"rev\")))::pg_catalog.numeric AS value"), "{r}");
        assert!(r.contains("FROM \"mart\".\"h_rt\" AS m\n   WHERE m.\"bucket\" >= "), "{r}");
        assert!(!r.contains("status = 'paid'"), "{r}");
        assert!(r.contains("SELECT ((sum(amount)))::pg_catalog.numeric AS value, NULL::pg_catalog.numeric AS numerator, NULL::pg_catalog.numeric AS denominator FROM \"pgmart_metric_columns\".\"revenue\" AS m WHERE false"), "{r}");
        let both = several_sql(&[("a".into(), "SELECT 1".into()), ("b'c".into(), "SELECT 2".into())]);
        assert!(both.contains("SELECT 'a' AS metric, q.* FROM (\nSELECT 1\n) AS q\nUNION ALL\nSELECT 'b''c' AS metric"), "{both}");
        assert!(both.ends_with("ORDER BY s.bucket_start, s.metric, s.dimension_values"), "{both}");
    }

    #[test]
    fn aggregates_that_re_aggregate() {
        assert_eq!(single_aggregate("sum(amount)"), Some("sum"));
        assert_eq!(single_aggregate("count(*)"), Some("count"));
        assert_eq!(single_aggregate("max(x) FILTER (WHERE (s = 'a)'::text))"), Some("max"));
        for no in ["count(DISTINCT c)", "sum(a) / count(*)", "avg(a)", "sum(a) + 1", "percentile_cont(0.5) WITHIN GROUP (ORDER BY a)", "summary(a)"] {
            assert_eq!(single_aggregate(no), None, "{no}");
        }
        let m = vec![("rev".to_string(), "sum(amount)".to_string()), ("n".to_string(), "count(*)".to_string())];
        assert_eq!(over_measures("sum(amount)", None, &m), Some(("pg_catalog.sum(m.\"rev\")".into(), None)));
        assert_eq!(over_measures("count(*)", None, &m), Some(("pg_catalog.sum(m.\"n\")".into(), None)));
        assert_eq!(over_measures("max(amount)", None, &m), None);
        let ratio = ("sum(amount)".to_string(), "count(*)".to_string());
        assert_eq!(
            over_measures("(sum(amount) / NULLIF(count(*), 0))", Some(&ratio), &m),
            Some((
                "(pg_catalog.sum(m.\"rev\") / NULLIF(pg_catalog.sum(m.\"n\"), 0))".into(),
                Some(("pg_catalog.sum(m.\"rev\")".into(), "pg_catalog.sum(m.\"n\")".into()))
            ))
        );
        use crate::rollups::plan::Bucket;
        assert!(grain_fits("hour", Bucket::Micros(900_000_000)));
        assert!(!grain_fits("hour", Bucket::Micros(5_400_000_000)));
        assert!(grain_fits("day", Bucket::Micros(3_600_000_000)) && grain_fits("month", Bucket::Days(1)));
        assert!(grain_fits("week", Bucket::Days(7)) && !grain_fits("month", Bucket::Days(7)));
        assert!(grain_fits("quarter", Bucket::Month) && !grain_fits("week", Bucket::Month));
    }
}
