//! Snapshot SQL, built without PostgreSQL (unit tested): the snapshot table, the one statement of
//! a periodic run (a copy of the source stamped with its period) and the one statement of a
//! type-2 run (dbt's timestamp and check strategies: close the changed and deleted versions,
//! insert the new ones, on one snapshot of the source, refusing a key that is not unique).
//!
//! Every source column is read under a generated alias (`pgmart_s1`, ...) so that no source
//! column name can collide with the statement's own; every identifier is quoted; every operator
//! and function is pg_catalog's.

use crate::error::{PgMartError, Result};
use crate::names::{quote_identifier as qi, quote_literal as ql};
use crate::timecol::TimeKind;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Periodic,
    Timestamp,
    Check,
}

impl Strategy {
    pub fn parse(s: &str) -> Result<Strategy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "periodic" => Ok(Strategy::Periodic),
            "timestamp" => Ok(Strategy::Timestamp),
            "check" => Ok(Strategy::Check),
            _ => Err(PgMartError::invalid(format!("strategy must be 'periodic', 'timestamp' or 'check', not '{s}'"))
                .hint("periodic freezes a copy of the source once per period; timestamp and check keep a type-2 history (dbt snapshots).")),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Periodic => "periodic",
            Strategy::Timestamp => "timestamp",
            Strategy::Check => "check",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub fn parse(s: &str) -> Result<Period> {
        match s.trim().to_ascii_lowercase().as_str() {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            "month" => Ok(Period::Month),
            _ => Err(PgMartError::invalid(format!("period must be 'day', 'week' or 'month', not '{s}'"))),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }
    /// The partition interval of the snapshot table: one partition per period (weeks start on
    /// Monday, as `date_trunc('week', ...)` does).
    pub fn partition_interval(&self) -> &'static str {
        match self {
            Period::Day => "1 day",
            Period::Week => "7 days",
            Period::Month => "1 month",
        }
    }
}

/// The names of the columns a snapshot adds to the source's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Meta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scd_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_current: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_at: Option<String>,
}

pub const PRESETS: &[&str] = &["pgmart", "dbt"];

impl Meta {
    /// The preset's names for a strategy, renamed by `renames` (a JSON object of preset key to
    /// column name: keys `valid_from`, `valid_to`, `is_current`, `scd_id`, `updated_at`,
    /// `snapshot_period`, `snapshot_at`, those the preset has).
    pub fn build(strategy: Strategy, preset: &str, renames: Option<&Value>) -> Result<Meta> {
        let s = |x: &str| Some(x.to_string());
        let mut m = match (strategy, preset) {
            (Strategy::Periodic, "pgmart") => Meta { snapshot_period: s("snapshot_period"), snapshot_at: s("snapshot_at"), ..Default::default() },
            (Strategy::Periodic, _) => {
                return Err(PgMartError::invalid(format!("preset '{preset}' is for timestamp and check snapshots"))
                    .hint("A periodic snapshot adds snapshot_period and snapshot_at (rename them with meta_columns)."))
            }
            (_, "pgmart") => Meta { valid_from: s("valid_from"), valid_to: s("valid_to"), is_current: s("is_current"), ..Default::default() },
            (_, "dbt") => Meta {
                scd_id: s("dbt_scd_id"),
                updated_at: s("dbt_updated_at"),
                valid_from: s("dbt_valid_from"),
                valid_to: s("dbt_valid_to"),
                ..Default::default()
            },
            _ => {
                return Err(PgMartError::invalid(format!("preset must be 'pgmart' or 'dbt', not '{preset}'"))
                    .hint("'pgmart' adds valid_from, valid_to (timestamptz) and is_current; 'dbt' adds dbt_scd_id, dbt_updated_at, dbt_valid_from and dbt_valid_to as dbt snapshots do."))
            }
        };
        if let Some(r) = renames.filter(|v| !v.is_null()) {
            let Some(obj) = r.as_object() else {
                return Err(PgMartError::invalid("meta_columns must be a JSON object of column roles to names")
                    .hint(r#"For example '{"valid_from": "effective_from", "valid_to": "effective_to"}'."#));
            };
            for (k, v) in obj {
                let Some(name) = v.as_str() else {
                    return Err(PgMartError::invalid(format!("meta_columns: the name of \"{k}\" must be a JSON string")));
                };
                if name.is_empty() || name.len() > 63 {
                    return Err(PgMartError::invalid(format!("meta_columns: the name of \"{k}\" must have 1 to 63 bytes")));
                }
                let slot = match k.as_str() {
                    "scd_id" => &mut m.scd_id,
                    "updated_at" => &mut m.updated_at,
                    "valid_from" => &mut m.valid_from,
                    "valid_to" => &mut m.valid_to,
                    "is_current" => &mut m.is_current,
                    "snapshot_period" => &mut m.snapshot_period,
                    "snapshot_at" => &mut m.snapshot_at,
                    _ => &mut None,
                };
                match slot {
                    Some(old) => *old = name.to_string(),
                    None => {
                        return Err(PgMartError::invalid(format!(
                            "meta_columns: a {} snapshot with preset '{preset}' has no column \"{k}\"",
                            strategy.name()
                        ))
                        .hint(format!("Its columns are: {}.", m.roles().join(", "))))
                    }
                }
            }
        }
        let names = m.names();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(PgMartError::invalid(format!("meta_columns: two columns are named \"{n}\"")));
            }
        }
        Ok(m)
    }
    /// The roles this snapshot has, in table order.
    pub fn roles(&self) -> Vec<&'static str> {
        self.pairs().into_iter().map(|(r, _)| r).collect()
    }
    /// The added columns' names, in table order.
    pub fn names(&self) -> Vec<String> {
        self.pairs().into_iter().map(|(_, n)| n.to_string()).collect()
    }
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut v = vec![];
        for (role, name) in [
            ("scd_id", &self.scd_id),
            ("updated_at", &self.updated_at),
            ("valid_from", &self.valid_from),
            ("valid_to", &self.valid_to),
            ("is_current", &self.is_current),
            ("snapshot_period", &self.snapshot_period),
            ("snapshot_at", &self.snapshot_at),
        ] {
            if let Some(n) = name {
                v.push((role, n.as_str()));
            }
        }
        v
    }
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        for (r, n) in self.pairs() {
            o.insert(r.to_string(), Value::String(n.to_string()));
        }
        Value::Object(o)
    }
}

/// Everything the statements need to know about a snapshot.
#[derive(Debug, Clone)]
pub struct Shape {
    /// The snapshot table, quoted and qualified.
    pub table: String,
    /// The source, quoted and qualified.
    pub source: String,
    /// The copied source columns, in order (unquoted).
    pub columns: Vec<String>,
    /// The unique key (unquoted; empty for a periodic snapshot without one).
    pub key: Vec<String>,
    pub strategy: Strategy,
    /// The change column (timestamp; optional for check) and its kind.
    pub updated_at: Option<(String, TimeKind)>,
    /// The compared columns (check).
    pub check: Vec<String>,
    pub meta: Meta,
    /// dbt's preset: meta times in the updated_at column's type (or `timestamp` for the run time),
    /// dbt's scd id.
    pub dbt: bool,
    pub timezone: String,
    pub hard_deletes: bool,
    /// The source itself guarantees the key is unique (a unique index on some of its columns) and
    /// has no NULLs (NOT NULL columns): the run need not check either.
    pub key_unique: bool,
    pub key_not_null: bool,
    /// The source has a btree unique index on exactly the key, in order (it can be read in key order).
    pub key_ordered: bool,
}

/// How many duplicate keys a failed run names.
pub const DUP_SAMPLE: usize = 10;

impl Shape {
    fn alias(&self, col: &str) -> String {
        let i = self.columns.iter().position(|c| c == col).expect("a copied column");
        format!("pgmart_s{}", i + 1)
    }
    /// The SQL type of the time columns a type-2 snapshot adds.
    pub fn meta_type(&self) -> &'static str {
        if !self.dbt {
            return "timestamp with time zone";
        }
        match self.updated_at.as_ref().map(|(_, k)| *k) {
            Some(TimeKind::Timestamptz) => "timestamp with time zone",
            Some(TimeKind::Date) => "date",
            // dbt's snapshot_get_time() is now()::timestamp without time zone.
            Some(TimeKind::Timestamp) | None => "timestamp without time zone",
        }
    }
    /// The run's time in the meta type (dbt: `now()::timestamp`, read in the snapshot's zone).
    pub fn now(&self) -> String {
        let tz = ql(&self.timezone);
        match self.meta_type() {
            "timestamp with time zone" => "pg_catalog.transaction_timestamp()".into(),
            "date" => format!("(pg_catalog.transaction_timestamp() AT TIME ZONE {tz})::date"),
            _ => format!("(pg_catalog.transaction_timestamp() AT TIME ZONE {tz})"),
        }
    }
    /// A version's start from the source row (alias `s`): its updated_at (as an instant in the
    /// snapshot's zone for the pgmart preset) or the run's time.
    fn version_from(&self, s: &str) -> String {
        match &self.updated_at {
            None => self.now(),
            Some((col, kind)) => {
                let c = format!("{s}.{}", qi(col));
                if self.dbt {
                    return c;
                }
                let tz = ql(&self.timezone);
                match kind {
                    TimeKind::Timestamptz => c,
                    TimeKind::Timestamp => format!("({c} AT TIME ZONE {tz})"),
                    TimeKind::Date => format!("({c}::timestamp without time zone AT TIME ZONE {tz})"),
                }
            }
        }
    }
}

/// `CREATE TABLE` of the snapshot: the source's columns (`defs`: quoted name and type, in order)
/// and the added ones; a periodic one is partitioned by its period.
pub fn create_table(s: &Shape, defs: &[String]) -> String {
    let mut cols: Vec<String> = defs.to_vec();
    let m = &s.meta;
    let ty = s.meta_type();
    let mut add = |name: &Option<String>, def: &str| {
        if let Some(n) = name {
            cols.push(format!("{} {def}", qi(n)));
        }
    };
    add(&m.scd_id, "text");
    add(&m.updated_at, ty);
    add(&m.valid_from, ty);
    add(&m.valid_to, ty);
    add(&m.is_current, "boolean NOT NULL DEFAULT true");
    add(&m.snapshot_period, "date NOT NULL");
    add(&m.snapshot_at, "timestamp with time zone NOT NULL");
    let partition = match &m.snapshot_period {
        Some(p) if s.strategy == Strategy::Periodic => format!(" PARTITION BY RANGE ({})", qi(p)),
        _ => String::new(),
    };
    format!("CREATE TABLE {} ({}){partition}", s.table, cols.join(", "))
}

/// The index of a snapshot: one current version per key (type-2: `valid_to IS NULL`), one row per
/// key and period (periodic with a key). None for a periodic snapshot without a key.
pub fn create_index(s: &Shape, index_name: &str) -> Option<String> {
    if s.key.is_empty() {
        return None;
    }
    let keys: Vec<String> = s.key.iter().map(qi).collect();
    Some(match s.strategy {
        Strategy::Periodic => format!(
            "CREATE UNIQUE INDEX {} ON {} ({}, {})",
            qi(index_name),
            s.table,
            qi(s.meta.snapshot_period.as_deref().unwrap_or("snapshot_period")),
            keys.join(", ")
        ),
        _ => format!(
            "CREATE UNIQUE INDEX {} ON {} ({}) NULLS NOT DISTINCT WHERE {} IS NULL",
            qi(index_name),
            s.table,
            keys.join(", "),
            qi(s.meta.valid_to.as_deref().unwrap_or("valid_to"))
        ),
    })
}

/// The source read once, every column under its alias (and, for type-2, the version start);
/// materialized when the key checks read it too.
fn src_cte(s: &Shape) -> String {
    let mut cols: Vec<String> = s.columns.iter().map(|c| format!("s.{} AS {}", qi(c), s.alias(c))).collect();
    if s.strategy != Strategy::Periodic {
        cols.push(format!("{} AS pgmart_from", s.version_from("s")));
    }
    let how = if s.key_unique && s.key_not_null { "NOT MATERIALIZED" } else { "MATERIALIZED" };
    format!("pgmart_src AS {how} (SELECT {} FROM {} s)", cols.join(", "), s.source)
}

/// The key problems of the source: up to DUP_SAMPLE duplicated keys (a JSON array of arrays) and
/// how many there are, and the rows with a NULL in the key. `pgmart_ok` is true when none. What
/// the source guarantees itself is not checked again.
fn bad_cte(s: &Shape) -> String {
    let keys: Vec<String> = s.key.iter().map(|k| format!("x.{}", s.alias(k))).collect();
    let keylist = keys.join(", ");
    let nulls = keys.iter().map(|k| format!("{k} IS NULL")).collect::<Vec<_>>().join(" OR ");
    let dup = if s.key_unique {
        "pgmart_dup AS (SELECT NULL::pg_catalog.jsonb AS k WHERE false)".to_string()
    } else {
        format!(
            "pgmart_dup AS (SELECT pg_catalog.jsonb_build_array({keylist}) AS k FROM pgmart_src x \
                             WHERE NOT ({nulls}) GROUP BY {keylist} HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1)"
        )
    };
    let null_count = if s.key_not_null {
        "0::pg_catalog.int8".to_string()
    } else {
        format!("(SELECT pg_catalog.count(*) FROM pgmart_src x WHERE {nulls})")
    };
    format!(
        "{dup}, \
         pgmart_bad AS (SELECT (SELECT pg_catalog.jsonb_agg(d.k) FROM (SELECT y.k FROM pgmart_dup y ORDER BY y.k LIMIT {DUP_SAMPLE}) d) AS dups, \
                               (SELECT pg_catalog.count(*) FROM pgmart_dup) AS ndups, \
                               {null_count} AS nulls), \
         pgmart_ok AS (SELECT b.ndups OPERATOR(pg_catalog.=) 0 AND b.nulls OPERATOR(pg_catalog.=) 0 AS ok FROM pgmart_bad b)"
    )
}

/// The periodic run: every source row, stamped with period `$1` (a date) and the run's time.
/// Returns one jsonb: inserted, and (with a key) dups, ndups, nulls; nothing is written when the
/// key is not unique.
pub fn periodic_run(s: &Shape) -> String {
    let period = qi(s.meta.snapshot_period.as_deref().unwrap_or("snapshot_period"));
    let at = qi(s.meta.snapshot_at.as_deref().unwrap_or("snapshot_at"));
    let target = s.columns.iter().map(qi).collect::<Vec<_>>().join(", ");
    if s.key.is_empty() {
        let cols = s.columns.iter().map(|c| format!("s.{}", qi(c))).collect::<Vec<_>>().join(", ");
        return format!(
            "WITH pgmart_ins AS (INSERT INTO {} ({target}, {period}, {at}) \
                 SELECT {cols}, $1::date, pg_catalog.transaction_timestamp() FROM {} s RETURNING 1) \
             SELECT pg_catalog.jsonb_build_object('inserted', (SELECT pg_catalog.count(*) FROM pgmart_ins))",
            s.table, s.source
        );
    }
    let aliases = s.columns.iter().map(|c| format!("x.{}", s.alias(c))).collect::<Vec<_>>().join(", ");
    format!(
        "WITH {}, {}, \
         pgmart_ins AS (INSERT INTO {} ({target}, {period}, {at}) \
             SELECT {aliases}, $1::date, pg_catalog.transaction_timestamp() FROM pgmart_src x \
              WHERE (SELECT o.ok FROM pgmart_ok o) RETURNING 1) \
         SELECT pg_catalog.jsonb_build_object('inserted', (SELECT pg_catalog.count(*) FROM pgmart_ins), \
                'dups', b.dups, 'ndups', b.ndups, 'nulls', b.nulls) FROM pgmart_bad b",
        src_cte(s),
        bad_cte(s),
        s.table
    )
}

/// The type-2 run, one statement on one snapshot of the source: the current versions (valid_to
/// IS NULL) full-joined to the source on the key; changed and (with hard deletes) vanished keys
/// get their version closed, new and changed keys a new version. The close runs to completion
/// before the first insert (the insert waits on its count), so the one-current-version index
/// never sees two. Nothing is written when the key is not unique or has NULLs. Returns one jsonb:
/// inserted, closed (changed), deleted (closed for a vanished key), dups, ndups, nulls.
pub fn type2_run(s: &Shape) -> String {
    let m = &s.meta;
    let vf = qi(m.valid_from.as_deref().unwrap_or("valid_from"));
    let vt = qi(m.valid_to.as_deref().unwrap_or("valid_to"));
    let n = s.key.len();
    // The current versions: key and what change detection needs.
    let mut cur_cols: Vec<String> = s.key.iter().enumerate().map(|(i, k)| format!("t.{} AS pgmart_k{}", qi(k), i + 1)).collect();
    let changed = match s.strategy {
        Strategy::Timestamp => {
            cur_cols.push(format!("t.{vf} AS pgmart_vf"));
            "c.pgmart_vf OPERATOR(pg_catalog.<) x.pgmart_from".to_string()
        }
        _ => {
            let checked: Vec<&String> = if s.check.is_empty() {
                s.columns.iter().filter(|c| !s.key.contains(c)).collect()
            } else {
                s.check.iter().collect()
            };
            if checked.is_empty() {
                "false".to_string()
            } else {
                let mut l = vec![];
                let mut r = vec![];
                for (i, c) in checked.iter().enumerate() {
                    cur_cols.push(format!("t.{} AS pgmart_c{}", qi(c), i + 1));
                    l.push(format!("x.{}", s.alias(c)));
                    r.push(format!("c.pgmart_c{}", i + 1));
                }
                format!("ROW({}) IS DISTINCT FROM ROW({})", l.join(", "), r.join(", "))
            }
        }
    };
    let join: Vec<String> = s
        .key
        .iter()
        .enumerate()
        .map(|(i, k)| format!("x.{} OPERATOR(pg_catalog.=) c.pgmart_k{}", s.alias(k), i + 1))
        .collect();
    let ck: Vec<String> = (1..=n).map(|i| format!("c.pgmart_k{i} AS pgmart_ck{i}")).collect();
    let first_src = format!("x.{}", s.alias(&s.key[0]));
    let deleted_cond = if s.hard_deletes { format!("{first_src} IS NULL") } else { "false".into() };
    let diff = format!(
        "pgmart_diff AS (SELECT x.*, {}, (c.pgmart_k1 IS NULL) AS pgmart_new, ({first_src} IS NULL) AS pgmart_gone \
                           FROM pgmart_src x FULL JOIN pgmart_cur c ON {} \
                          WHERE c.pgmart_k1 IS NULL OR {deleted_cond} OR ({first_src} IS NOT NULL AND ({changed})))",
        ck.join(", "),
        join.join(" AND ")
    );
    let upd_keys: Vec<String> =
        s.key.iter().enumerate().map(|(i, k)| format!("t.{} OPERATOR(pg_catalog.=) d.pgmart_ck{}", qi(k), i + 1)).collect();
    let mut sets = vec![format!("{vt} = CASE WHEN d.pgmart_gone THEN {} ELSE d.pgmart_from END", s.now())];
    if let Some(cur) = &m.is_current {
        sets.push(format!("{} = false", qi(cur)));
    }
    let closed = format!(
        "pgmart_closed AS (UPDATE {} t SET {} FROM pgmart_diff d \
                            WHERE NOT d.pgmart_new AND t.{vt} IS NULL AND {} AND (SELECT o.ok FROM pgmart_ok o) \
                            RETURNING d.pgmart_gone)",
        s.table,
        sets.join(", "),
        upd_keys.join(" AND ")
    );
    // The new versions' columns.
    let mut names: Vec<String> = s.columns.iter().map(qi).collect();
    let mut values: Vec<String> = s.columns.iter().map(|c| format!("d.{}", s.alias(c))).collect();
    if let Some(scd) = &m.scd_id {
        // dbt: md5 of the key parts and the version's updated_at, each cast to varchar, '|' between.
        let parts: Vec<String> = s
            .key
            .iter()
            .map(|k| format!("d.{}", s.alias(k)))
            .chain(std::iter::once("d.pgmart_from".to_string()))
            .map(|p| format!("coalesce(CAST({p} AS character varying), '')"))
            .collect();
        names.push(qi(scd));
        values.push(format!("pg_catalog.md5({})", parts.join(" OPERATOR(pg_catalog.||) '|' OPERATOR(pg_catalog.||) ")));
    }
    if let Some(u) = &m.updated_at {
        names.push(qi(u));
        values.push("d.pgmart_from".into());
    }
    names.push(vf.clone());
    values.push("d.pgmart_from".into());
    if let Some(cur) = &m.is_current {
        names.push(qi(cur));
        values.push("true".into());
    }
    let ins = format!(
        "pgmart_ins AS (INSERT INTO {} ({}) SELECT {} FROM pgmart_diff d \
                         WHERE NOT d.pgmart_gone AND (SELECT pg_catalog.count(*) FROM pgmart_closed) OPERATOR(pg_catalog.>=) 0 \
                           AND (SELECT o.ok FROM pgmart_ok o) RETURNING 1)",
        s.table,
        names.join(", "),
        values.join(", ")
    );
    format!(
        "WITH {}, {}, pgmart_cur AS (SELECT {} FROM {} t WHERE t.{vt} IS NULL), {diff}, {closed}, {ins} \
         SELECT pg_catalog.jsonb_build_object('inserted', (SELECT pg_catalog.count(*) FROM pgmart_ins), \
                'closed', (SELECT pg_catalog.count(*) FROM pgmart_closed WHERE NOT pgmart_gone), \
                'deleted', (SELECT pg_catalog.count(*) FROM pgmart_closed WHERE pgmart_gone), \
                'dups', b.dups, 'ndups', b.ndups, 'nulls', b.nulls) FROM pgmart_bad b",
        src_cte(s),
        bad_cte(s),
        cur_cols.join(", "),
        s.table
    )
}

/// Type-2 retention: versions closed before `now - $1` go.
pub fn type2_retention(s: &Shape) -> String {
    let vt = qi(s.meta.valid_to.as_deref().unwrap_or("valid_to"));
    format!(
        "DELETE FROM {} WHERE {vt} IS NOT NULL AND {vt} OPERATOR(pg_catalog.<) ({} OPERATOR(pg_catalog.-) $1::interval)",
        s.table,
        s.now()
    )
}

/// The period (a date: its first day in the snapshot's zone, as text) of the run's time.
pub fn current_period(period: Period, timezone: &str) -> String {
    format!(
        "SELECT pg_catalog.date_trunc({}, pg_catalog.transaction_timestamp() AT TIME ZONE {})::date::pg_catalog.text",
        ql(period.name()),
        ql(timezone)
    )
}

/// The name of the guard trigger of a periodic snapshot (on its table and on each partition).
pub fn guard_name(job_id: i64) -> String {
    format!("pgmart_snapshot_{job_id}_guard")
}

/// The guard trigger of a periodic snapshot on `rel` (its table, or one partition): a statement
/// trigger refusing INSERT (but pgmart's own), UPDATE, DELETE and TRUNCATE. Statement triggers
/// are not cloned to partitions: each partition gets its own (a row trigger would be cloned, but
/// cloning it as the table's owner would need EXECUTE on pgmart's internal function).
pub fn guard_trigger(job_id: i64, rel: &str) -> String {
    format!(
        "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {rel} \
         FOR EACH STATEMENT EXECUTE FUNCTION pgmart._snapshot_guard('{job_id}')",
        qi(guard_name(job_id))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(strategy: Strategy, dbt: bool) -> Shape {
        let meta = Meta::build(strategy, if dbt { "dbt" } else { "pgmart" }, None).unwrap();
        Shape {
            table: "mart.\"Cust snap\"".into(),
            source: "raw.customers".into(),
            columns: vec!["id".into(), "pgmart_from".into(), "updated_at".into()],
            key: if strategy == Strategy::Periodic { vec![] } else { vec!["id".into()] },
            strategy,
            updated_at: (strategy == Strategy::Timestamp).then(|| ("updated_at".to_string(), TimeKind::Timestamp)),
            check: vec![],
            meta,
            dbt,
            timezone: "UTC".into(),
            hard_deletes: true,
            key_unique: false,
            key_not_null: false,
            key_ordered: false,
        }
    }

    #[test]
    fn presets_and_renames() {
        let m = Meta::build(Strategy::Timestamp, "dbt", None).unwrap();
        assert_eq!(m.names(), vec!["dbt_scd_id", "dbt_updated_at", "dbt_valid_from", "dbt_valid_to"]);
        let m = Meta::build(Strategy::Check, "pgmart", Some(&serde_json::json!({"valid_to": "until"}))).unwrap();
        assert_eq!(m.names(), vec!["valid_from", "until", "is_current"]);
        assert!(Meta::build(Strategy::Check, "pgmart", Some(&serde_json::json!({"scd_id": "x"}))).is_err());
        assert!(Meta::build(Strategy::Check, "pgmart", Some(&serde_json::json!({"valid_to": "valid_from"}))).is_err());
        assert!(Meta::build(Strategy::Periodic, "dbt", None).is_err());
        assert!(Meta::build(Strategy::Check, "nope", None).is_err());
        assert!(Meta::build(Strategy::Check, "pgmart", Some(&serde_json::json!([1]))).is_err());
        let p = Meta::build(Strategy::Periodic, "pgmart", Some(&serde_json::json!({"snapshot_period": "month"}))).unwrap();
        assert_eq!(p.names(), vec!["month", "snapshot_at"]);
    }

    #[test]
    fn source_columns_never_collide_with_the_statement() {
        // A source column named pgmart_from is read under its alias.
        let q = type2_run(&shape(Strategy::Timestamp, true));
        assert!(q.contains("s.\"pgmart_from\" AS pgmart_s2") || q.contains("s.pgmart_from AS pgmart_s2"), "{q}");
        assert!(q.contains("INSERT INTO mart.\"Cust snap\""));
        assert!(q.contains("pg_catalog.md5("));
        // dbt: valid_from is the raw updated_at; deletes close at now() in the zone.
        assert!(q.contains("(pg_catalog.transaction_timestamp() AT TIME ZONE 'UTC')"));
        let q = type2_run(&shape(Strategy::Timestamp, false));
        assert!(q.contains("AT TIME ZONE 'UTC') AS pgmart_from"));
        assert!(q.contains("\"is_current\" = false") || q.contains("is_current = false"));
        assert!(q.contains("MATERIALIZED (SELECT") && q.contains("GROUP BY"));
        // A key the source guarantees is not checked again, and the source is read once, inlined.
        let mut s = shape(Strategy::Check, false);
        (s.key_unique, s.key_not_null) = (true, true);
        let q = type2_run(&s);
        assert!(q.contains("NOT MATERIALIZED") && !q.contains("GROUP BY"), "{q}");
    }

    #[test]
    fn periodic_sql() {
        let s = shape(Strategy::Periodic, false);
        let q = periodic_run(&s);
        assert!(q.contains("$1::date"));
        assert!(create_table(&s, &["id integer".into()]).ends_with("PARTITION BY RANGE (\"snapshot_period\")"));
        assert!(create_index(&s, "x").is_none());
        assert_eq!(Period::parse("Month").unwrap().partition_interval(), "1 month");
        assert!(Period::parse("year").is_err());
        assert!(Strategy::parse("snapshot").is_err());
    }
}
