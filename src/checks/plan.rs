//! Pure planning for data-quality checks: kinds, parameters, thresholds, default names, status,
//! and the SQL text of one fused statement per table. No PostgreSQL here: unit tested with `#[test]`.
//!
//! Fusion: every check of one table that needs data is computed by ONE statement (so they all see
//! one snapshot). Inside it, row-level checks (not_null, accepted_values, expression, range,
//! row_count, freshness) of the same `where_clause` share one scan (`count(*) FILTER (WHERE ...)`).
//! `unique` on one integer column and `relationships` between integer keys ride along in that same
//! scan through the aggregates of agg.rs (`duplicate_keys`, `orphan_keys`) when the keys fit in
//! memory by the planner's own size estimate; otherwise each takes one more pass (a sorted distinct
//! count, an anti-join).

use crate::error::{PgMartError, Result};
use serde_json::Value;
use std::collections::BTreeMap;

pub const KINDS: &[&str] = &[
    "unique",
    "not_null",
    "accepted_values",
    "relationships",
    "expression",
    "range",
    "row_count",
    "freshness",
    "schema",
    "access",
];

/// Max failing keys or values kept per check.
pub const SAMPLE_SIZE: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unique,
    NotNull,
    AcceptedValues,
    Relationships,
    Expression,
    Range,
    RowCount,
    Freshness,
    Schema,
    Access,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind> {
        Ok(match s {
            "unique" => Kind::Unique,
            "not_null" => Kind::NotNull,
            "accepted_values" => Kind::AcceptedValues,
            "relationships" => Kind::Relationships,
            "expression" => Kind::Expression,
            "range" => Kind::Range,
            "row_count" => Kind::RowCount,
            "freshness" => Kind::Freshness,
            "schema" => Kind::Schema,
            "access" => Kind::Access,
            other => {
                return Err(PgMartError::invalid(format!("unknown check kind \"{other}\""))
                    .hint(format!("Kinds: {}.", KINDS.join(", "))))
            }
        })
    }
    /// Checks computed in the shared row scan of their (table, where_clause) group.
    pub fn is_row_level(self) -> bool {
        matches!(self, Kind::NotNull | Kind::AcceptedValues | Kind::Expression | Kind::Range | Kind::RowCount | Kind::Freshness)
    }
    /// Whether `failing_rows` is a row count that thresholds (warn_if/error_if) apply to.
    pub fn counts_rows(self) -> bool {
        matches!(self, Kind::Unique | Kind::NotNull | Kind::AcceptedValues | Kind::Relationships | Kind::Expression | Kind::Range)
    }
}

/// `warn_if` / `error_if`: `>0`, `>=10`, `>1%`, `<5`, `=0`, `!=0`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub op: String,
    pub value: f64,
    pub percent: bool,
}

impl Threshold {
    pub fn parse(text: &str) -> Result<Threshold> {
        let t: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let ops = [">=", "<=", "!=", "<>", ">", "<", "="];
        let op = ops.iter().find(|o| t.starts_with(**o)).ok_or_else(|| bad_threshold(text))?;
        let rest = &t[op.len()..];
        let (num, percent) = match rest.strip_suffix('%') {
            Some(n) => (n, true),
            None => (rest, false),
        };
        let value: f64 = num.parse().map_err(|_| bad_threshold(text))?;
        if !value.is_finite() || value < 0.0 || (percent && value > 100.0) {
            return Err(bad_threshold(text));
        }
        Ok(Threshold { op: if *op == "<>" { "!=".into() } else { op.to_string() }, value, percent })
    }

    pub fn met(&self, failing: i64, checked: Option<i64>) -> bool {
        let x = if self.percent {
            match checked {
                Some(n) if n > 0 => failing as f64 * 100.0 / n as f64,
                _ => 0.0,
            }
        } else {
            failing as f64
        };
        match self.op.as_str() {
            ">" => x > self.value,
            ">=" => x >= self.value,
            "<" => x < self.value,
            "<=" => x <= self.value,
            "=" => x == self.value,
            _ => x != self.value,
        }
    }
}

fn bad_threshold(text: &str) -> PgMartError {
    PgMartError::invalid(format!("invalid threshold \"{text}\""))
        .hint("Give a comparison with a count or a percentage of checked rows: '>0', '>=10', '>1%'.")
}

/// Everything the planner needs about one registered check (already validated).
#[derive(Debug, Clone)]
pub struct Check {
    pub id: i64,
    pub name: String,
    pub kind: Kind,
    pub columns: Vec<String>,
    pub params: Value,
    pub severity: String,
    pub where_clause: Option<String>,
    /// The previous run failed: find a duplicate (unique) in the same pass instead of lazily.
    pub expect_failures: bool,
    /// The sample of the previous run (for `unique`: the duplicated key it found).
    pub prev_sample: Option<Value>,
}

/// Catalog facts about the target table, gathered by the executor.
#[derive(Debug, Clone, Default)]
pub struct TableFacts {
    /// Quoted, schema-qualified relation name.
    pub relation: String,
    /// Primary key columns (empty if none): failing rows are sampled by key.
    pub pk: Vec<String>,
    /// Whether rows have a ctid to sample by when there is no primary key.
    pub has_ctid: bool,
    /// Column sets of valid primary key / unique constraints.
    pub unique_sets: Vec<Vec<String>>,
    /// Columns declared NOT NULL.
    pub not_null: Vec<String>,
    /// Validated single-column foreign keys: (column, quoted parent relation, parent column).
    pub foreign_keys: Vec<(String, String, String)>,
    /// Column name -> type (format_type without typmod), in column order.
    pub columns: Vec<(String, String)>,
    /// Rows now, an estimate that errs high (statistics scaled to the current size, else the most
    /// tuples its pages can hold); negative when unknown (a view).
    pub est_rows: f64,
    /// Columns that lead a valid, non-partial btree index (a freshness check reads their maximum
    /// from the index instead of the shared scan).
    pub indexed: Vec<String>,
}

/// A relationships check's parent, resolved at run time.
#[derive(Debug, Clone, Default)]
pub struct Parent {
    /// Quoted, schema-qualified relation name.
    pub relation: String,
    /// Type of the parent's key column (format_type), empty if it does not exist.
    pub field_type: String,
    /// Estimated rows (as `TableFacts::est_rows`).
    pub est_rows: f64,
}

/// Integer key types the in-scan aggregates take (as bigint).
const INT_KEYS: &[&str] = &["smallint", "integer", "bigint"];
/// Most rows whose keys `duplicate_keys` takes (at most 8 bytes a key, in a bitmap or in a list
/// sorted once: 160 MB).
pub const MAX_COLLECTED_KEYS: f64 = 20_000_000.0;
/// Most parent rows `orphan_keys` loads into its bitmap or hash set (per process).
pub const MAX_PARENT_KEYS: f64 = 10_000_000.0;

fn is_int(ty: Option<&str>) -> bool {
    ty.map(|t| INT_KEYS.contains(&t)).unwrap_or(false)
}

fn type_of<'a>(f: &'a TableFacts, col: &str) -> Option<&'a str> {
    f.columns.iter().find(|(n, _)| n == col).map(|(_, t)| t.as_str())
}

/// Whether a `unique` check is computed in the row scan (one integer column, keys fit in memory).
pub fn unique_in_scan(c: &Check, f: &TableFacts) -> bool {
    c.kind == Kind::Unique
        && c.columns.len() == 1
        && is_int(type_of(f, &c.columns[0]))
        && (0.0..=MAX_COLLECTED_KEYS).contains(&f.est_rows)
}

/// Whether a `relationships` check is computed in the row scan (integer keys on both sides, the
/// parent's keys fit in memory).
pub fn relationships_in_scan(c: &Check, f: &TableFacts, p: &Parent) -> bool {
    c.kind == Kind::Relationships
        && is_int(type_of(f, &c.columns[0]))
        && is_int(Some(p.field_type.as_str()))
        && (0.0..=MAX_PARENT_KEYS).contains(&p.est_rows)
}

/// Why a check passes without a scan, if a constraint proves it.
pub fn proven_by_constraint(c: &Check, f: &TableFacts, parent: Option<&str>) -> Option<String> {
    match c.kind {
        Kind::Unique => {
            let mut want = c.columns.clone();
            want.sort();
            f.unique_sets.iter().find(|s| {
                let mut s = (*s).clone();
                s.sort();
                s == want
            })?;
            Some(format!("proven by a primary key or unique constraint on ({})", c.columns.join(", ")))
        }
        Kind::NotNull => {
            if c.columns.iter().all(|col| f.not_null.contains(col)) {
                Some(format!("proven by NOT NULL on ({})", c.columns.join(", ")))
            } else {
                None
            }
        }
        Kind::Relationships => {
            let field = c.params.get("field")?.as_str()?;
            let parent = parent?;
            f.foreign_keys
                .iter()
                .find(|(col, p, pc)| col == &c.columns[0] && p == parent && pc == field)
                .map(|_| {
                    let to = c.params.get("to").and_then(|v| v.as_str()).unwrap_or("");
                    format!("proven by a validated foreign key {} -> {}({})", c.columns[0], to, field)
                })
        }
        _ => None,
    }
}

/// Quote an identifier, always (pure Rust, so plans are testable without PostgreSQL).
pub fn qi(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal (standard_conforming_strings: double the quotes; E'' when backslashes).
pub fn ql(value: &str) -> String {
    let body = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// The text of a scalar jsonb parameter (string as is, number/bool as written).
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn allow_null(c: &Check) -> bool {
    c.params.get("allow_null").and_then(|v| v.as_bool()).unwrap_or(false)
}

/// The condition that makes one row fail a row-level check (true = failing).
pub fn fail_condition(c: &Check) -> Option<String> {
    match c.kind {
        Kind::NotNull => Some(format!(
            "({})",
            c.columns.iter().map(|col| format!("{} IS NULL", qi(col))).collect::<Vec<_>>().join(" OR ")
        )),
        Kind::AcceptedValues => {
            let col = qi(&c.columns[0]);
            let values: Vec<String> = c
                .params
                .get("values")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(scalar_text).map(|s| ql(&s)).collect())
                .unwrap_or_default();
            let not_in = format!("{col} NOT IN ({})", values.join(", "));
            Some(if allow_null(c) { format!("({not_in})") } else { format!("({not_in} OR {col} IS NULL)") })
        }
        Kind::Expression => {
            let e = c.params.get("expression").and_then(|v| v.as_str()).unwrap_or("false");
            Some(format!("(({e}) IS NOT TRUE)"))
        }
        Kind::Range => {
            let col = qi(&c.columns[0]);
            let inclusive = c.params.get("inclusive").and_then(|v| v.as_bool()).unwrap_or(true);
            let (lo, hi) = if inclusive { ("<", ">") } else { ("<=", ">=") };
            let mut parts = vec![];
            if let Some(min) = c.params.get("min").and_then(scalar_text) {
                parts.push(format!("{col} {lo} {}", ql(&min)));
            }
            if let Some(max) = c.params.get("max").and_then(scalar_text) {
                parts.push(format!("{col} {hi} {}", ql(&max)));
            }
            if !allow_null(c) {
                parts.push(format!("{col} IS NULL"));
            }
            Some(format!("({})", parts.join(" OR ")))
        }
        _ => None,
    }
}

/// Types with a built-in `min` aggregate (C speed, parallel): samples use them directly.
const ORDERABLE: &[&str] = &[
    "smallint", "integer", "bigint", "real", "double precision", "numeric", "text", "character varying",
    "character", "date", "timestamp without time zone", "timestamp with time zone", "interval",
    "time without time zone", "money", "inet", "oid",
];

fn min_arg(col: &str, f: &TableFacts) -> String {
    let ty = f.columns.iter().find(|(n, _)| n == col).map(|(_, t)| t.as_str()).unwrap_or("");
    if ORDERABLE.contains(&ty) {
        qi(col)
    } else {
        format!("{}::text", qi(col))
    }
}

/// How a row-level check collects its sample: (aggregate, key name; None for a value sample,
/// whether the aggregate gives up to five). Keys: the 5 smallest integer primary keys or ctids
/// (`pgmart.smallest_keys`), else the smallest key; values: the 5 smallest non-null failing values
/// of integer or text columns (`smallest_keys`, `smallest_values`), else the smallest (`min`).
/// Either way a check with millions of failing rows costs no more than one with none.
fn sample_agg(c: &Check, f: &TableFacts) -> (String, Option<String>, bool) {
    match c.kind {
        Kind::AcceptedValues | Kind::Range => {
            let col = &c.columns[0];
            match type_of(f, col) {
                t if is_int(t) => (format!("pgmart.smallest_keys({}::int8)", qi(col)), None, true),
                Some("text" | "character varying" | "character") => {
                    (format!("pgmart.smallest_values({}::text)", qi(col)), None, true)
                }
                _ => (format!("min({})", min_arg(col, f)), None, false),
            }
        }
        _ if f.pk.len() == 1 && is_int(type_of(f, &f.pk[0])) => {
            (format!("pgmart.smallest_keys({}::int8)", qi(&f.pk[0])), Some(f.pk[0].clone()), true)
        }
        _ if f.pk.len() == 1 => (format!("min({})", min_arg(&f.pk[0], f)), Some(f.pk[0].clone()), false),
        _ if f.has_ctid => ("pgmart.smallest_keys(ctid)".to_string(), Some("ctid".to_string()), true),
        _ => ("min(NULL::text)".to_string(), None, false),
    }
}

fn where_sql(w: &Option<String>) -> String {
    match w {
        Some(w) => format!(" WHERE ({w})"),
        None => String::new(),
    }
}

/// How to read one check's outcome from the fused statement's JSON result.
#[derive(Debug, Clone, PartialEq)]
pub enum Extract {
    /// Row-level: `group` object has `n`, `f<id>`, `s<id>` (the smallest failing key or value, or
    /// with `many` an array of up to five keys).
    Row { group: String, key: Option<String>, many: bool },
    RowCount { group: String },
    Freshness { group: String },
    /// `u<id>` object: `checked`, `failing`, `dup`.
    Unique,
    /// `group` object has `d<id>`: `duplicate_keys()` = `rows`, `duplicates`, `sample`.
    UniqueInScan { group: String },
    /// `r<id>` object: `failing`, `lo`, `hi`; checked from `group` if present.
    Relationships { group: Option<String> },
    /// `group` object has `n` and `o<id>`: `orphan_keys()` = `orphans`, `sample`.
    RelationshipsInScan { group: String },
}

#[derive(Debug, Clone)]
pub struct Fused {
    pub sql: String,
    pub items: Vec<(i64, Extract)>,
}

/// A freshness check whose column leads an index: its maximum comes from the index.
fn freshness_from_index(c: &Check, f: &TableFacts) -> bool {
    c.kind == Kind::Freshness && c.columns.first().is_some_and(|col| f.indexed.contains(col))
}

/// What a freshness check reads: the newest value, its age, and whether it is past warn_after
/// and error_after (aggregates of the maximum only).
fn freshness_cols(c: &Check) -> Vec<String> {
    let col = qi(&c.columns[0]);
    let mut cols = vec![
        format!("max({col}) AS m{}", c.id),
        format!("extract(epoch FROM pg_catalog.now() - max({col})::timestamptz)::float8 AS a{}", c.id),
    ];
    for (k, p) in [("w", "warn_after"), ("e", "error_after")] {
        if let Some(iv) = c.params.get(p).and_then(|v| v.as_str()) {
            cols.push(format!("coalesce(max({col})::timestamptz < pg_catalog.now() - {}::interval, true) AS {k}{}", ql(iv), c.id));
        }
    }
    cols
}

/// Build one statement computing every data check in `checks` on table `f`, on one snapshot.
/// `parents` maps a relationships check id to its parent.
pub fn fuse(f: &TableFacts, checks: &[&Check], parents: &BTreeMap<i64, Parent>) -> Option<Fused> {
    let mut ctes: Vec<String> = vec![];
    let mut outputs: Vec<String> = vec![];
    let mut items = vec![];
    let rel_in_scan = |c: &Check| parents.get(&c.id).map(|p| relationships_in_scan(c, f, p)).unwrap_or(false);
    let in_scan = |c: &Check| match c.kind {
        Kind::Unique => unique_in_scan(c, f),
        Kind::Freshness => !freshness_from_index(c, f),
        Kind::Relationships => true, // in the group: for its checked count, or computed there
        k => k.is_row_level(),
    };
    // Group the checks computed in (or counted by) a row scan by where_clause.
    let mut groups: Vec<(Option<String>, Vec<&Check>)> = vec![];
    for c in checks.iter().filter(|c| in_scan(c)) {
        match groups.iter_mut().find(|(w, _)| *w == c.where_clause) {
            Some((_, v)) => v.push(c),
            None => groups.push((c.where_clause.clone(), vec![c])),
        }
    }
    let mut group_of: BTreeMap<Option<String>, String> = BTreeMap::new();
    for (gi, (w, cs)) in groups.iter().enumerate() {
        let g = format!("g{gi}");
        let mut cols = vec!["count(*) AS n".to_string()];
        // Samples of checks that passed last time are not collected in the scan (one aggregate
        // less per row each); if one of them fails now, one more pass of the same statement does.
        let mut lazy: Vec<(i64, String)> = vec![];
        for c in cs {
            match c.kind {
                Kind::NotNull | Kind::AcceptedValues | Kind::Expression | Kind::Range => {
                    let cond = fail_condition(c).unwrap_or_else(|| "false".into());
                    let (agg, key, many) = sample_agg(c, f);
                    cols.push(format!("count(*) FILTER (WHERE {cond}) AS f{}", c.id));
                    let sample = format!("{agg} FILTER (WHERE {cond}) AS s{}", c.id);
                    if c.expect_failures {
                        cols.push(sample);
                    } else {
                        lazy.push((c.id, sample));
                    }
                    items.push((c.id, Extract::Row { group: g.clone(), key, many }));
                }
                Kind::RowCount => items.push((c.id, Extract::RowCount { group: g.clone() })),
                Kind::Freshness => {
                    cols.extend(freshness_cols(c));
                    items.push((c.id, Extract::Freshness { group: g.clone() }));
                }
                Kind::Unique => {
                    cols.push(format!("pgmart.duplicate_keys({}::int8) AS d{}", qi(&c.columns[0]), c.id));
                    items.push((c.id, Extract::UniqueInScan { group: g.clone() }));
                }
                Kind::Relationships if rel_in_scan(c) => {
                    let p = &parents[&c.id];
                    let field = qi(c.params.get("field").and_then(|v| v.as_str()).unwrap_or(""));
                    // The parent's keys: an uncorrelated sub-select, so PostgreSQL evaluates it once
                    // (an InitPlan, passed to parallel workers) and the aggregate hashes it once.
                    cols.push(format!(
                        "pgmart.orphan_keys({}::int8, (SELECT pg_catalog.array_agg(p.{field}::int8) FROM {} p \
                         WHERE p.{field} IS NOT NULL)) AS o{}",
                        qi(&c.columns[0]),
                        p.relation,
                        c.id
                    ));
                    items.push((c.id, Extract::RelationshipsInScan { group: g.clone() }));
                }
                _ => {}
            }
        }
        ctes.push(format!("{g} AS (SELECT {} FROM {}{})", cols.join(", "), f.relation, where_sql(w)));
        if lazy.is_empty() {
            outputs.push(format!("'{g}', (SELECT pg_catalog.to_jsonb({g}) FROM {g})"));
        } else {
            let any: Vec<String> = lazy.iter().map(|(id, _)| format!("{g}.f{id} > 0")).collect();
            let aggs: Vec<String> = lazy.iter().map(|(_, a)| a.clone()).collect();
            outputs.push(format!(
                "'{g}', (SELECT pg_catalog.to_jsonb({g}) || CASE WHEN {} THEN \
                 (SELECT pg_catalog.to_jsonb(l) FROM (SELECT {} FROM {}{}) l) ELSE '{{}}'::jsonb END FROM {g})",
                any.join(" OR "),
                aggs.join(", "),
                f.relation,
                where_sql(w)
            ));
        }
        group_of.insert(w.clone(), g);
    }
    // A freshness check on an indexed column: its own max(), which PostgreSQL reads from the end of
    // the index (no scan of the table); its values keep the names the shared scan gives them.
    for c in checks.iter().filter(|c| c.kind == Kind::Freshness && freshness_from_index(c, f)) {
        let z = format!("z{}", c.id);
        ctes.push(format!("{z} AS (SELECT {} FROM {}{})", freshness_cols(c).join(", "), f.relation, where_sql(&c.where_clause)));
        outputs.push(format!("'{z}', (SELECT pg_catalog.to_jsonb({z}) FROM {z})"));
        items.push((c.id, Extract::Freshness { group: z }));
    }
    for c in checks.iter().filter(|c| c.kind == Kind::Unique && !unique_in_scan(c, f)) {
        let cols: Vec<String> = c.columns.iter().map(|x| qi(x)).collect();
        let key = if cols.len() == 1 { cols[0].clone() } else { format!("ROW({})", cols.join(", ")) };
        let nn: Vec<String> = cols.iter().map(|x| format!("{x} IS NOT NULL")).collect();
        let w = match &c.where_clause {
            Some(w) => format!("({w}) AND {}", nn.join(" AND ")),
            None => nn.join(" AND "),
        };
        // Surplus rows (rows beyond the first of each duplicated key) by one sorted distinct count
        // (linear on already-ordered keys such as serial ids). A duplicated key for the sample comes
        // from mode(): in the same pass when the last run found duplicates, else only when there
        // are some, by a second pass of the same statement (same snapshot).
        let u = format!("u{}", c.id);
        if let Some(prev) = reusable_duplicate(c, f) {
            // The key the previous run reported as duplicated: if it still is (counted in this same
            // pass, a cheap comparison per row), it is the sample and no sort for mode() is needed.
            ctes.push(format!(
                "{u} AS (SELECT count(*) AS checked, count(*) - count(DISTINCT {key}) AS failing, \
                 count(*) FILTER (WHERE {key} = {}) AS prev_n FROM {rel} WHERE {w})",
                ql(&prev.1),
                rel = f.relation
            ));
            outputs.push(format!(
                "'{u}', (SELECT pg_catalog.to_jsonb({u}) || pg_catalog.jsonb_build_object('dup', CASE \
                 WHEN {u}.failing > 0 AND {u}.prev_n > 1 THEN {}::jsonb WHEN {u}.failing > 0 THEN \
                 (SELECT pg_catalog.to_jsonb(mode() WITHIN GROUP (ORDER BY {key})) FROM {rel} WHERE {w}) END) FROM {u})",
                ql(&prev.0.to_string()),
                rel = f.relation
            ));
        } else if c.expect_failures {
            ctes.push(format!(
                "{u} AS (SELECT count(*) AS checked, count(*) - count(DISTINCT {key}) AS failing, \
                 pg_catalog.to_jsonb(mode() WITHIN GROUP (ORDER BY {key})) AS dup FROM {rel} WHERE {w})",
                rel = f.relation
            ));
            outputs.push(format!("'{u}', (SELECT pg_catalog.to_jsonb({u}) FROM {u})"));
        } else {
            ctes.push(format!(
                "{u} AS (SELECT count(*) AS checked, count(*) - count(DISTINCT {key}) AS failing FROM {rel} WHERE {w})",
                rel = f.relation
            ));
            outputs.push(format!(
                "'{u}', (SELECT pg_catalog.to_jsonb({u}) || pg_catalog.jsonb_build_object('dup', CASE WHEN {u}.failing > 0 THEN \
                 (SELECT pg_catalog.to_jsonb(mode() WITHIN GROUP (ORDER BY {key})) FROM {rel} WHERE {w}) END) FROM {u})",
                rel = f.relation
            ));
        }
        items.push((c.id, Extract::Unique));
    }
    for c in checks.iter().filter(|c| c.kind == Kind::Relationships && !rel_in_scan(c)) {
        let Some(parent) = parents.get(&c.id).map(|p| &p.relation) else { continue };
        let col = qi(&c.columns[0]);
        let arg = min_arg(&c.columns[0], f);
        let field = qi(c.params.get("field").and_then(|v| v.as_str()).unwrap_or(""));
        let r = format!("r{}", c.id);
        ctes.push(format!(
            "{r} AS (SELECT count(*) AS failing, min(c.{arg}) AS lo, max(c.{arg}) AS hi \
             FROM (SELECT * FROM {}{}) c WHERE c.{col} IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.{field} = c.{col}))",
            f.relation,
            where_sql(&c.where_clause)
        ));
        outputs.push(format!("'{r}', (SELECT pg_catalog.to_jsonb({r}) FROM {r})"));
        items.push((c.id, Extract::Relationships { group: group_of.get(&c.where_clause).cloned() }));
    }
    if items.is_empty() {
        return None;
    }
    Some(Fused {
        sql: format!("WITH {} SELECT pg_catalog.jsonb_build_object({})", ctes.join(", "), outputs.join(", ")),
        items,
    })
}

/// A previous duplicate sample usable as a literal of the key column's current type:
/// (the jsonb value, its text).
fn reusable_duplicate(c: &Check, f: &TableFacts) -> Option<(Value, String)> {
    if c.columns.len() != 1 {
        return None;
    }
    let v = c.prev_sample.as_ref()?.as_array()?.first()?.clone();
    let ty = f.columns.iter().find(|(n, _)| n == &c.columns[0]).map(|(_, t)| t.as_str())?;
    let ok = match ty {
        "smallint" => v.as_i64().map(|i| i16::try_from(i).is_ok()).unwrap_or(false),
        "integer" => v.as_i64().map(|i| i32::try_from(i).is_ok()).unwrap_or(false),
        "bigint" => v.is_i64(),
        "numeric" => v.is_number(),
        "text" | "character varying" => v.is_string(),
        _ => false,
    };
    if !ok {
        return None;
    }
    let text = scalar_text(&v)?;
    Some((v, text))
}

/// The measured outcome of one check before thresholds are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub failing: Option<i64>,
    pub checked: Option<i64>,
    pub sample: Value,
    /// For kinds judged by bounds rather than thresholds: Some("fail"|"warn"|"pass").
    pub verdict: Option<&'static str>,
}

fn int(v: &Value, k: &str) -> Option<i64> {
    v.get(k).and_then(|x| x.as_i64())
}

/// Read one check's measurement from the fused result.
pub fn extract(c: &Check, how: &Extract, result: &Value) -> Measured {
    match how {
        Extract::Row { group, key, many } => {
            let g = &result[group.as_str()];
            let failing = int(g, &format!("f{}", c.id));
            let s = g.get(format!("s{}", c.id)).cloned().unwrap_or(Value::Null);
            let values = match s {
                _ if failing.unwrap_or(0) == 0 => vec![],
                Value::Array(v) if *many => v,
                Value::Null if key.is_some() => vec![],
                v => vec![v],
            };
            let sample = match key {
                Some(k) => values.into_iter().map(|v| serde_json::json!({ k.as_str(): v })).collect(),
                None => Value::Array(values),
            };
            Measured { failing, checked: int(g, "n"), sample, verdict: None }
        }
        Extract::RowCount { group } => {
            let n = int(&result[group.as_str()], "n").unwrap_or(0);
            let min = c.params.get("min").and_then(|v| v.as_i64());
            let max = c.params.get("max").and_then(|v| v.as_i64());
            let bad = min.map(|m| n < m).unwrap_or(false) || max.map(|m| n > m).unwrap_or(false);
            Measured {
                failing: None,
                checked: Some(n),
                sample: serde_json::json!({ "row_count": n, "min": min, "max": max }),
                verdict: Some(if bad { "fail" } else { "pass" }),
            }
        }
        Extract::Freshness { group } => {
            let g = &result[group.as_str()];
            let newest = g.get(format!("m{}", c.id)).cloned().unwrap_or(Value::Null);
            let age = g.get(format!("a{}", c.id)).and_then(|v| v.as_f64());
            let err = g.get(format!("e{}", c.id)).and_then(|v| v.as_bool()).unwrap_or(false);
            let warn = g.get(format!("w{}", c.id)).and_then(|v| v.as_bool()).unwrap_or(false);
            let verdict = if err {
                "fail"
            } else if warn {
                "warn"
            } else {
                "pass"
            };
            Measured {
                failing: None,
                checked: int(g, "n"),
                sample: serde_json::json!({ "newest": newest, "age_seconds": age,
                    "warn_after": c.params.get("warn_after"), "error_after": c.params.get("error_after") }),
                verdict: Some(verdict),
            }
        }
        Extract::Unique => {
            let u = &result[format!("u{}", c.id).as_str()];
            let failing = int(u, "failing");
            let sample = if failing.unwrap_or(0) > 0 {
                serde_json::json!([u.get("dup").cloned().unwrap_or(Value::Null)])
            } else {
                serde_json::json!([])
            };
            Measured { failing, checked: int(u, "checked"), sample, verdict: None }
        }
        Extract::UniqueInScan { group } => {
            let d = &result[group.as_str()][format!("d{}", c.id).as_str()];
            let failing = int(d, "duplicates");
            let sample = d.get("sample").cloned().filter(|_| failing.unwrap_or(0) > 0).unwrap_or(serde_json::json!([]));
            Measured { failing, checked: int(d, "rows"), sample, verdict: None }
        }
        Extract::RelationshipsInScan { group } => {
            let g = &result[group.as_str()];
            let o = &g[format!("o{}", c.id).as_str()];
            let failing = int(o, "orphans");
            let sample = o.get("sample").cloned().filter(|_| failing.unwrap_or(0) > 0).unwrap_or(serde_json::json!([]));
            Measured { failing, checked: int(g, "n"), sample, verdict: None }
        }
        Extract::Relationships { group } => {
            let r = &result[format!("r{}", c.id).as_str()];
            let mut sample = vec![];
            for k in ["lo", "hi"] {
                if let Some(v) = r.get(k).filter(|v| !v.is_null()) {
                    if !sample.contains(v) {
                        sample.push(v.clone());
                    }
                }
            }
            Measured {
                failing: int(r, "failing"),
                checked: group.as_ref().and_then(|g| int(&result[g.as_str()], "n")),
                sample: Value::Array(sample),
                verdict: None,
            }
        }
    }
}

/// Status from a measurement: thresholds for row-counting kinds (dbt semantics: with severity
/// `warn`, error_if is never consulted), bounds for the others.
pub fn status(c: &Check, m: &Measured) -> Result<&'static str> {
    let error_level = |s: &'static str| if s == "fail" && c.severity == "warn" { "warn" } else { s };
    if let Some(v) = m.verdict {
        return Ok(error_level(v));
    }
    let failing = m.failing.unwrap_or(0);
    let warn_if = Threshold::parse(c.params.get("warn_if").and_then(|v| v.as_str()).unwrap_or(">0"))?;
    let error_if = Threshold::parse(c.params.get("error_if").and_then(|v| v.as_str()).unwrap_or(">0"))?;
    if c.severity == "error" && error_if.met(failing, m.checked) {
        return Ok("fail");
    }
    if warn_if.met(failing, m.checked) {
        return Ok("warn");
    }
    Ok("pass")
}

/// Compare a table's columns with a schema check's expectation (types already normalised).
/// Returns (number of differences, details).
pub fn schema_diff(expected: &[(String, String)], actual: &[(String, String)], allow_extra: bool) -> (i64, Value) {
    let mut missing = vec![];
    let mut changed = vec![];
    for (name, ty) in expected {
        match actual.iter().find(|(n, _)| n == name) {
            None => missing.push(name.clone()),
            Some((_, t)) if t != ty => {
                changed.push(serde_json::json!({ "column": name, "expected": ty, "actual": t }))
            }
            _ => {}
        }
    }
    let extra: Vec<String> =
        actual.iter().filter(|(n, _)| !expected.iter().any(|(e, _)| e == n)).map(|(n, _)| n.clone()).collect();
    let count = (missing.len() + changed.len() + if allow_extra { 0 } else { extra.len() }) as i64;
    (count, serde_json::json!({ "missing": missing, "extra": extra, "changed": changed }))
}

/// The readable default name: `<kind>_<table>_<col1>[_<col2>]`; expressions use their text.
pub fn default_name(kind: Kind, kind_text: &str, table: &str, columns: &[String], params: &Value) -> String {
    let mut parts = vec![kind_text.to_string(), table.to_string()];
    if kind == Kind::Expression && columns.is_empty() {
        let e = params.get("expression").and_then(|v| v.as_str()).unwrap_or("");
        parts.push(e.to_string());
    } else {
        parts.extend(columns.iter().cloned());
    }
    let raw = parts.join("_");
    let mut out = String::new();
    for ch in raw.chars() {
        let ch = if ch.is_alphanumeric() || ch == '_' { ch.to_ascii_lowercase() } else { '_' };
        if ch == '_' && out.ends_with('_') {
            continue;
        }
        out.push(ch);
    }
    let out = out.trim_end_matches('_').to_string();
    out.chars().take(120).collect()
}

/// Validate the parameters a kind needs (shape only; the executor plans them against the table).
pub fn validate_params(kind: Kind, columns: &[String], params: &Value) -> Result<()> {
    if !params.is_object() {
        return Err(PgMartError::invalid("params must be a jsonb object"));
    }
    let need_cols = |lo: usize, hi: usize| -> Result<()> {
        if columns.len() < lo || columns.len() > hi {
            let what = if lo == hi { format!("exactly {lo}") } else if hi == usize::MAX { format!("at least {lo}") } else { format!("{lo} to {hi}") };
            return Err(PgMartError::invalid(format!("a {kind:?} check needs {what} column(s), got {}", columns.len()))
                .hint("Pass columns => ARRAY['col', ...]."));
        }
        Ok(())
    };
    let num_or_str = |k: &str| -> Result<Option<String>> {
        match params.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v {
                Value::Number(_) | Value::String(_) => Ok(scalar_text(v)),
                _ => Err(PgMartError::invalid(format!("params.{k} must be a number or a string"))),
            },
        }
    };
    for k in ["warn_if", "error_if"] {
        if let Some(v) = params.get(k) {
            let s = v.as_str().ok_or_else(|| PgMartError::invalid(format!("params.{k} must be a string such as '>0' or '>1%'")))?;
            Threshold::parse(s)?;
        }
    }
    if let Some(v) = params.get("allow_null") {
        if !v.is_boolean() {
            return Err(PgMartError::invalid("params.allow_null must be true or false"));
        }
    }
    match kind {
        Kind::Unique | Kind::NotNull => need_cols(1, usize::MAX)?,
        Kind::AcceptedValues => {
            need_cols(1, 1)?;
            let vals = params.get("values").and_then(|v| v.as_array()).ok_or_else(|| {
                PgMartError::invalid("an accepted_values check needs params.values, a non-empty array")
            })?;
            if vals.is_empty() || vals.iter().any(|v| scalar_text(v).is_none()) {
                return Err(PgMartError::invalid("params.values must be a non-empty array of strings or numbers")
                    .hint("To accept NULL, set params.allow_null = true."));
            }
        }
        Kind::Relationships => {
            need_cols(1, 1)?;
            for k in ["to", "field"] {
                if params.get(k).and_then(|v| v.as_str()).map(|s| s.trim().is_empty()).unwrap_or(true) {
                    return Err(PgMartError::invalid(format!("a relationships check needs params.{k}"))
                        .hint("params => '{\"to\": \"customers\", \"field\": \"id\"}'"));
                }
            }
        }
        Kind::Expression => {
            need_cols(0, usize::MAX)?;
            if params.get("expression").and_then(|v| v.as_str()).map(|s| s.trim().is_empty()).unwrap_or(true) {
                return Err(PgMartError::invalid("an expression check needs params.expression, a boolean expression"));
            }
        }
        Kind::Range => {
            need_cols(1, 1)?;
            if num_or_str("min")?.is_none() && num_or_str("max")?.is_none() {
                return Err(PgMartError::invalid("a range check needs params.min and/or params.max"));
            }
        }
        Kind::RowCount => {
            need_cols(0, 0)?;
            let min = params.get("min");
            let max = params.get("max");
            for (k, v) in [("min", min), ("max", max)] {
                if let Some(v) = v {
                    if !v.is_i64() || v.as_i64().unwrap_or(-1) < 0 {
                        return Err(PgMartError::invalid(format!("params.{k} must be a non-negative integer")));
                    }
                }
            }
            if min.is_none() && max.is_none() {
                return Err(PgMartError::invalid("a row_count check needs params.min and/or params.max"));
            }
            if let (Some(a), Some(b)) = (min.and_then(|v| v.as_i64()), max.and_then(|v| v.as_i64())) {
                if a > b {
                    return Err(PgMartError::invalid(format!("params.min ({a}) is above params.max ({b})")));
                }
            }
        }
        Kind::Freshness => {
            need_cols(1, 1)?;
            let w = params.get("warn_after");
            let e = params.get("error_after");
            for (k, v) in [("warn_after", w), ("error_after", e)] {
                if let Some(v) = v {
                    if !v.is_string() {
                        return Err(PgMartError::invalid(format!("params.{k} must be an interval text such as '12 hours'")));
                    }
                }
            }
            if w.is_none() && e.is_none() {
                return Err(PgMartError::invalid("a freshness check needs params.warn_after and/or params.error_after"));
            }
        }
        Kind::Access => {
            need_cols(0, 0)?;
            if params.as_object().is_some_and(|o| o.keys().any(|k| k != "warn_if" && k != "error_if")) {
                return Err(PgMartError::invalid("an access check takes no params")
                    .hint("It fails when pgmart.access_report() shows a violation (on its target table, or anywhere for target pgmart.layers)."));
            }
        }
        Kind::Schema => {
            need_cols(0, 0)?;
            let cols = params.get("columns").and_then(|v| v.as_object()).ok_or_else(|| {
                PgMartError::invalid("a schema check needs params.columns, an object {\"column\": \"type\", ...}")
            })?;
            if cols.is_empty() || cols.values().any(|v| !v.is_string()) {
                return Err(PgMartError::invalid("params.columns must map column names to type names"));
            }
            if let Some(v) = params.get("allow_extra") {
                if !v.is_boolean() {
                    return Err(PgMartError::invalid("params.allow_extra must be true or false"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(id: i64, kind: Kind, cols: &[&str], params: Value, w: Option<&str>) -> Check {
        Check {
            id,
            name: format!("c{id}"),
            kind,
            columns: cols.iter().map(|s| s.to_string()).collect(),
            params,
            severity: "error".into(),
            where_clause: w.map(String::from),
            expect_failures: false,
            prev_sample: None,
        }
    }

    #[test]
    fn thresholds_parse_and_apply() {
        let t = Threshold::parse(">0").unwrap();
        assert!(t.met(1, Some(10)) && !t.met(0, Some(10)));
        let p = Threshold::parse(" > 1 % ").unwrap();
        assert!(p.percent && p.value == 1.0);
        assert!(p.met(2, Some(100)) && !p.met(1, Some(100)));
        assert!(!p.met(5, Some(0)));
        assert!(Threshold::parse(">=10").unwrap().met(10, None));
        assert_eq!(Threshold::parse("<>0").unwrap().op, "!=");
        for bad in ["", "0", ">", ">x", ">-1", ">101%", "between 1 and 2"] {
            assert!(Threshold::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_names_are_readable() {
        assert_eq!(default_name(Kind::Unique, "unique", "orders", &["id".into()], &json!({})), "unique_orders_id");
        assert_eq!(
            default_name(Kind::Unique, "unique", "orders", &["a".into(), "B".into()], &json!({})),
            "unique_orders_a_b"
        );
        assert_eq!(
            default_name(Kind::Expression, "expression", "orders", &[], &json!({"expression": "amount >= 0"})),
            "expression_orders_amount_0"
        );
        assert_eq!(default_name(Kind::RowCount, "row_count", "orders", &[], &json!({})), "row_count_orders");
    }

    #[test]
    fn params_are_validated_per_kind() {
        assert!(validate_params(Kind::Unique, &[], &json!({})).is_err());
        assert!(validate_params(Kind::AcceptedValues, &["s".into()], &json!({})).is_err());
        assert!(validate_params(Kind::AcceptedValues, &["s".into()], &json!({"values": []})).is_err());
        assert!(validate_params(Kind::AcceptedValues, &["s".into()], &json!({"values": ["a", 1]})).is_ok());
        assert!(validate_params(Kind::AcceptedValues, &["s".into()], &json!({"values": ["a"], "allow_null": "yes"})).is_err());
        assert!(validate_params(Kind::Relationships, &["c".into()], &json!({"to": "p"})).is_err());
        assert!(validate_params(Kind::Range, &["c".into()], &json!({})).is_err());
        assert!(validate_params(Kind::RowCount, &[], &json!({"min": -1})).is_err());
        assert!(validate_params(Kind::RowCount, &[], &json!({"min": 1})).is_ok());
        assert!(validate_params(Kind::Freshness, &["t".into()], &json!({"warn_after": 3})).is_err());
        assert!(validate_params(Kind::Schema, &[], &json!({"columns": {"id": "int"}})).is_ok());
        assert!(validate_params(Kind::Schema, &[], &json!({"columns": {}})).is_err());
        assert!(validate_params(Kind::NotNull, &["a".into()], &json!({"error_if": ">lots"})).is_err());
        assert!(validate_params(Kind::NotNull, &["a".into()], &json!([1])).is_err());
        assert!(Kind::parse("uniq").is_err());
    }

    #[test]
    fn accepted_values_counts_null_unless_allowed() {
        let c = check(1, Kind::AcceptedValues, &["status"], json!({"values": ["a", "it's"]}), None);
        assert_eq!(fail_condition(&c).unwrap(), "(\"status\" NOT IN ('a', 'it''s') OR \"status\" IS NULL)");
        let c = check(1, Kind::AcceptedValues, &["status"], json!({"values": ["a"], "allow_null": true}), None);
        assert_eq!(fail_condition(&c).unwrap(), "(\"status\" NOT IN ('a'))");
    }

    #[test]
    fn row_checks_of_one_where_share_one_scan() {
        let f = TableFacts { relation: "public.orders".into(), pk: vec!["id".into()], has_ctid: true, ..Default::default() };
        let a = check(1, Kind::NotNull, &["customer_id"], json!({}), None);
        let b = check(2, Kind::Expression, &[], json!({"expression": "amount >= 0"}), None);
        let c = check(3, Kind::Range, &["amount"], json!({"min": 0}), Some("day = current_date"));
        let d = check(4, Kind::Unique, &["id"], json!({}), None);
        let e = check(5, Kind::Relationships, &["customer_id"], json!({"to": "customers", "field": "id"}), None);
        let mut parents = BTreeMap::new();
        parents.insert(5, Parent { relation: "public.customers".into(), field_type: "bigint".into(), est_rows: -1.0 });
        let fused = fuse(&f, &[&a, &b, &c, &d, &e], &parents).unwrap();
        // Two row scans (two where clauses), one unique pass, one anti-join: one statement (plus
        // passes for samples that run only when a check that passed last time fails now).
        assert_eq!(fused.sql.matches("FROM public.orders").count(), 7, "{}", fused.sql);
        assert!(fused.sql.contains("CASE WHEN g0.f1 > 0 OR g0.f2 > 0 THEN"), "{}", fused.sql);
        assert!(fused.sql.contains("CASE WHEN u4.failing > 0 THEN"));
        let mut d2 = d.clone();
        d2.expect_failures = true;
        let again = fuse(&f, &[&d2], &parents).unwrap();
        assert!(again.sql.contains("count(DISTINCT \"id\") AS failing, pg_catalog.to_jsonb(mode()"), "{}", again.sql);
        assert_eq!(again.sql.matches("FROM public.orders").count(), 1);
        // The previous duplicate is re-counted in the same pass; mode() only if it was fixed.
        let f2 = TableFacts { columns: vec![("id".into(), "bigint".into())], est_rows: -1.0, ..f.clone() };
        d2.prev_sample = Some(json!([6]));
        let reuse = fuse(&f2, &[&d2], &parents).unwrap();
        assert!(reuse.sql.contains("count(*) FILTER (WHERE \"id\" = '6') AS prev_n"), "{}", reuse.sql);
        assert!(reuse.sql.contains("WHEN u4.prev_n > 1") || reuse.sql.contains("AND u4.prev_n > 1 THEN '6'::jsonb"), "{}", reuse.sql);
        d2.prev_sample = Some(json!(["x"]));
        assert!(!fuse(&f2, &[&d2], &parents).unwrap().sql.contains("prev_n"));
        assert!(fused.sql.contains("g0 AS (SELECT count(*) AS n, count(*) FILTER (WHERE (\"customer_id\" IS NULL)) AS f1"));
        assert!(fused.sql.contains("WHERE (day = current_date)"));
        assert!(fused.sql.contains("count(DISTINCT \"id\")"));
        assert!(fused.sql.contains("NOT EXISTS (SELECT 1 FROM public.customers p WHERE p.\"id\" = c.\"customer_id\")"));
        assert_eq!(fused.items.len(), 5);
        assert_eq!(fused.items[4].1, Extract::Relationships { group: Some("g0".into()) });
    }

    #[test]
    fn integer_unique_and_relationships_ride_in_the_row_scan_when_keys_fit() {
        let cols = vec![("id".to_string(), "bigint".to_string()), ("customer_id".into(), "integer".into()),
                        ("code".into(), "text".into())];
        let f = TableFacts { relation: "public.orders".into(), pk: vec![], has_ctid: true, columns: cols,
                             est_rows: 5e6, ..Default::default() };
        let a = check(1, Kind::NotNull, &["customer_id"], json!({}), None);
        let d = check(4, Kind::Unique, &["id"], json!({}), None);
        let e = check(5, Kind::Relationships, &["customer_id"], json!({"to": "customers", "field": "id"}), None);
        let parent = Parent { relation: "public.customers".into(), field_type: "bigint".into(), est_rows: 2e5 };
        let parents: BTreeMap<i64, Parent> = [(5, parent.clone())].into();
        let fused = fuse(&f, &[&a, &d, &e], &parents).unwrap();
        // One scan of orders (and the lazy sample pass), nothing else.
        assert_eq!(fused.sql.matches("FROM public.orders").count(), 2, "{}", fused.sql);
        assert!(fused.sql.contains("pgmart.duplicate_keys(\"id\"::int8) AS d4"), "{}", fused.sql);
        assert!(fused.sql.contains("pgmart.orphan_keys(\"customer_id\"::int8, (SELECT pg_catalog.array_agg(p.\"id\"::int8) \
             FROM public.customers p WHERE p.\"id\" IS NOT NULL)) AS o5"), "{}", fused.sql);
        assert_eq!(fused.items[1].1, Extract::UniqueInScan { group: "g0".into() });
        assert_eq!(fused.items[2].1, Extract::RelationshipsInScan { group: "g0".into() });
        let result = json!({"g0": {"n": 10, "f1": 0, "d4": {"rows": 9, "duplicates": 2, "sample": [3, 7]},
                                   "o5": {"rows": 10, "orphans": 0, "sample": []}}});
        let m = extract(&d, &fused.items[1].1, &result);
        assert_eq!((m.failing, m.checked, m.sample.clone()), (Some(2), Some(9), json!([3, 7])));
        let m = extract(&e, &fused.items[2].1, &result);
        assert_eq!((m.failing, m.checked, m.sample.clone()), (Some(0), Some(10), json!([])));
        // Too big, unknown size, or not integers: the separate passes.
        for (facts, par) in [
            (TableFacts { est_rows: MAX_COLLECTED_KEYS * 2.0, ..f.clone() }, parent.clone()),
            (TableFacts { est_rows: -1.0, ..f.clone() }, Parent { est_rows: MAX_PARENT_KEYS * 2.0, ..parent.clone() }),
            (f.clone(), Parent { field_type: "numeric".into(), ..parent.clone() }),
        ] {
            let parents: BTreeMap<i64, Parent> = [(5, par.clone())].into();
            let sql = fuse(&facts, &[&d, &e], &parents).unwrap().sql;
            assert_eq!(sql.contains("duplicate_keys"), unique_in_scan(&d, &facts), "{sql}");
            assert!(!sql.contains("orphan_keys") || relationships_in_scan(&e, &facts, &par), "{sql}");
        }
        assert!(!unique_in_scan(&d, &TableFacts { est_rows: -1.0, ..f.clone() }));
        assert!(!relationships_in_scan(&e, &f, &Parent { field_type: "numeric".into(), ..parent.clone() }));
        let multi = check(6, Kind::Unique, &["id", "customer_id"], json!({}), None);
        let code = check(7, Kind::Unique, &["code"], json!({}), None);
        assert!(!unique_in_scan(&multi, &f) && !unique_in_scan(&code, &f));
    }

    #[test]
    fn row_check_samples_are_five_keys_when_the_key_is_an_integer_or_a_ctid() {
        let nn = check(1, Kind::NotNull, &["a"], json!({}), None);
        let int_pk = TableFacts { pk: vec!["id".into()], columns: vec![("id".into(), "integer".into())], has_ctid: true,
                                  ..Default::default() };
        assert_eq!(sample_agg(&nn, &int_pk), ("pgmart.smallest_keys(\"id\"::int8)".into(), Some("id".into()), true));
        let text_pk = TableFacts { pk: vec!["code".into()], columns: vec![("code".into(), "text".into())], has_ctid: true,
                                   ..Default::default() };
        assert_eq!(sample_agg(&nn, &text_pk), ("min(\"code\")".into(), Some("code".into()), false));
        let no_pk = TableFacts { has_ctid: true, ..Default::default() };
        assert_eq!(sample_agg(&nn, &no_pk), ("pgmart.smallest_keys(ctid)".into(), Some("ctid".into()), true));
        let av = check(2, Kind::AcceptedValues, &["s"], json!({"values": ["a"]}), None);
        let typed = |ty: &str| TableFacts { columns: vec![("s".into(), ty.into())], ..Default::default() };
        assert_eq!(sample_agg(&av, &typed("text")), ("pgmart.smallest_values(\"s\"::text)".into(), None, true));
        assert_eq!(sample_agg(&av, &typed("smallint")), ("pgmart.smallest_keys(\"s\"::int8)".into(), None, true));
        assert_eq!(sample_agg(&av, &typed("date")), ("min(\"s\")".into(), None, false));
        let how = Extract::Row { group: "g0".into(), key: Some("id".into()), many: true };
        let m = extract(&nn, &how, &json!({"g0": {"n": 9, "f1": 3, "s1": [2, 5, 7]}}));
        assert_eq!(m.sample, json!([{"id": 2}, {"id": 5}, {"id": 7}]));
        assert_eq!(extract(&nn, &how, &json!({"g0": {"n": 9, "f1": 0, "s1": null}})).sample, json!([]));
        let values = Extract::Row { group: "g0".into(), key: None, many: false };
        assert_eq!(extract(&av, &values, &json!({"g0": {"n": 9, "f2": 1, "s2": "x"}})).sample, json!(["x"]));
    }

    #[test]
    fn status_follows_severity_and_thresholds() {
        let mut c = check(1, Kind::NotNull, &["a"], json!({"warn_if": ">0", "error_if": ">10%"}), None);
        let m = |f| Measured { failing: Some(f), checked: Some(100), sample: json!([]), verdict: None };
        assert_eq!(status(&c, &m(0)).unwrap(), "pass");
        assert_eq!(status(&c, &m(5)).unwrap(), "warn");
        assert_eq!(status(&c, &m(11)).unwrap(), "fail");
        c.severity = "warn".into();
        assert_eq!(status(&c, &m(11)).unwrap(), "warn");
        let rc = check(2, Kind::RowCount, &[], json!({"min": 1}), None);
        let v = Measured { failing: None, checked: Some(0), sample: json!({}), verdict: Some("fail") };
        assert_eq!(status(&rc, &v).unwrap(), "fail");
    }

    #[test]
    fn schema_diff_reports_missing_extra_changed() {
        let exp = vec![("id".to_string(), "bigint".to_string()), ("name".into(), "text".into())];
        let act = vec![("id".to_string(), "integer".to_string()), ("extra".into(), "text".into())];
        let (n, d) = schema_diff(&exp, &act, false);
        assert_eq!(n, 3);
        assert_eq!(d["missing"], json!(["name"]));
        assert_eq!(d["extra"], json!(["extra"]));
        assert_eq!(d["changed"][0]["actual"], json!("integer"));
        assert_eq!(schema_diff(&exp, &act, true).0, 2);
    }

    #[test]
    fn quoting() {
        assert_eq!(qi("id"), "\"id\"");
        assert_eq!(qi("a\"b"), "\"a\"\"b\"");
        assert_eq!(ql("a\\b"), "E'a\\\\b'");
    }

    #[test]
    fn row_count_min_above_max_is_refused() {
        assert!(validate_params(Kind::RowCount, &[], &json!({"min": 10, "max": 1})).is_err());
        assert!(validate_params(Kind::RowCount, &[], &json!({"min": 1, "max": 1})).is_ok());
    }
}
