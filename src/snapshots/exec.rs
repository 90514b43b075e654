//! Snapshots against PostgreSQL: registration (the caller's table, its index, for a periodic
//! snapshot its partition set and guard triggers), the run (one statement, as the snapshot's
//! owner), the `snapshot` job kind, drop.
//!
//! Who does what: the snapshot table belongs to its registrant and is written as them (so the
//! source is read with their privileges, never pgmart's); the catalog is pgmart's; the guard
//! triggers are put on the table and its partitions as the catalog owner (as rollups' capture is).

use super::plan::{self, Meta, Period, Shape, Strategy};
use crate::error::{OrRaise, PgMartError};
use crate::jobs::engine::Job;
use crate::locks;
use crate::names::quote_identifier as qi;
use crate::sql;
use crate::timecol::TimeKind;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::cell::Cell;

/// What `create_snapshot` was given (checked here).
pub struct NewSnapshot<'a> {
    pub name: &'a str,
    pub source: pg_sys::Oid,
    pub strategy: &'a str,
    pub unique_key: Vec<String>,
    pub updated_at: Option<&'a str>,
    pub check_columns: Option<Vec<String>>,
    pub schedule: &'a str,
    pub timezone: &'a str,
    pub period: &'a str,
    pub invalidate_hard_deletes: bool,
    pub retention: Option<pgrx::datum::Interval>,
    pub preset: &'a str,
    pub meta_columns: Option<Value>,
}

/// A registered snapshot as its run needs it.
#[derive(Deserialize, Debug, Clone)]
pub struct Stored {
    pub job_id: i64,
    pub name: String,
    /// The snapshot table, quoted and qualified (None when it was dropped).
    pub table: Option<String>,
    pub rel_oid: i64,
    /// The source, quoted and qualified (None when it is gone).
    pub source: Option<String>,
    pub source_oid: i64,
    pub source_name: String,
    pub strategy: String,
    pub columns: Vec<String>,
    pub unique_key: Vec<String>,
    pub updated_at: Option<String>,
    pub updated_kind: Option<String>,
    pub check_columns: Vec<String>,
    pub preset: String,
    pub meta: Value,
    pub period: Option<String>,
    pub timezone: String,
    pub invalidate_hard_deletes: bool,
    pub retention: Option<String>,
    pub period_s: f64,
    pub owner: u32,
    pub last_run_age_s: Option<f64>,
    pub total_rows: i64,
    pub current_rows: Option<i64>,
}

const STORED: &str = "SELECT s.job_id, s.name, \
        (SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) \
                pg_catalog.quote_ident(c.relname::pg_catalog.text) \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE c.oid OPERATOR(pg_catalog.=) s.rel) AS \"table\", \
        s.rel::pg_catalog.oid::pg_catalog.int8 AS rel_oid, \
        (SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) \
                pg_catalog.quote_ident(c.relname::pg_catalog.text) \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE c.oid OPERATOR(pg_catalog.=) s.source) AS source, \
        s.source::pg_catalog.oid::pg_catalog.int8 AS source_oid, s.source_name, s.strategy, s.columns, s.unique_key, \
        s.updated_at::pg_catalog.text AS updated_at, s.updated_kind, s.check_columns, s.preset, s.meta, s.period, s.timezone, \
        s.invalidate_hard_deletes, s.retention::pg_catalog.text AS retention, s.period_s, \
        coalesce(a.relowner, 0::pg_catalog.oid)::pg_catalog.int8 AS owner, \
        EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) s.last_run_at)::pg_catalog.float8 AS last_run_age_s, \
        s.total_rows, s.current_rows \
   FROM pgmart.snapshot s JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) s.job_id \
   LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor";

pub fn load(job_id: i64) -> Option<Stored> {
    sql::as_catalog_owner(|| sql::row::<Stored>(&format!("{STORED} WHERE s.job_id OPERATOR(pg_catalog.=) $1"), &[job_id.into()]))
}

impl Stored {
    pub fn strategy(&self) -> Strategy {
        Strategy::parse(&self.strategy).or_raise()
    }
    pub fn meta(&self) -> Meta {
        serde_json::from_value(self.meta.clone()).unwrap_or_else(|e| PgMartError::catalog(format!("pgmart: snapshot meta columns: {e}")).raise())
    }
    pub fn shape(&self) -> Shape {
        Shape {
            table: self.table.clone().unwrap_or_else(|| self.name.clone()),
            source: self.source.clone().unwrap_or_else(|| self.source_name.clone()),
            columns: self.columns.clone(),
            key: self.unique_key.clone(),
            strategy: self.strategy(),
            updated_at: self.updated_at.clone().map(|c| (c, TimeKind::stored(self.updated_kind.as_deref().unwrap_or("")))),
            check: self.check_columns.clone(),
            meta: self.meta(),
            dbt: self.preset == "dbt",
            timezone: self.timezone.clone(),
            hard_deletes: self.invalidate_hard_deletes,
            key_unique: false,
            key_not_null: false,
            key_ordered: false,
        }
    }
    fn owner_oid(&self) -> pg_sys::Oid {
        pg_sys::Oid::from(self.owner)
    }
}

fn missing(name: &str) -> PgMartError {
    PgMartError::undefined_object(format!("snapshot \"{name}\" does not exist or you may not act on it"))
        .hint("pgmart.snapshots lists the snapshots you may act on.")
}

/// The snapshot called `name` (its table's name, qualified or found on the caller's search_path)
/// that the caller may act on.
pub fn for_caller(name: &str) -> Stored {
    let caller = sql::caller();
    crate::tables::registration_job("pgmart.snapshot", name)
        .and_then(load)
        .filter(|s| (s.owner != 0 && sql::may_act_as(caller, s.owner_oid())) || unsafe { pg_sys::superuser_arg(caller) })
        .unwrap_or_else(|| missing(name).raise())
}

/// The snapshot table's schema and name: `name` qualified, or in the caller's current schema.
fn target(name: &str) -> (String, String) {
    let (schema, relname) = crate::tables::new_table_name(name, "snapshot", "mart.customers_history");
    if relname.len() > 55 {
        PgMartError::invalid(format!("snapshot name \"{relname}\" is too long"))
            .detail("Its index and partitions are named after it and must fit in 63 bytes: use at most 55.")
            .raise();
    }
    (schema, relname)
}

#[derive(Deserialize)]
struct SrcCol {
    name: String,
    def: String,
    typ: String,
    may_read: bool,
}

/// The source's columns in order, each with its definition for the snapshot table, its type, and
/// whether the caller may read it.
fn source_columns(source: pg_sys::Oid, caller: pg_sys::Oid) -> Vec<SrcCol> {
    sql::rows::<SrcCol>(
        "SELECT a.attname::pg_catalog.text AS name, \
                pg_catalog.quote_ident(a.attname::pg_catalog.text) OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) \
                pg_catalog.format_type(a.atttypid, a.atttypmod) OPERATOR(pg_catalog.||) \
                CASE WHEN a.attcollation OPERATOR(pg_catalog.<>) 0::pg_catalog.oid AND a.attcollation OPERATOR(pg_catalog.<>) t.typcollation \
                     THEN (SELECT ' COLLATE ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(cn.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' \
                                  OPERATOR(pg_catalog.||) pg_catalog.quote_ident(co.collname::pg_catalog.text) \
                             FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid OPERATOR(pg_catalog.=) co.collnamespace \
                            WHERE co.oid OPERATOR(pg_catalog.=) a.attcollation) \
                     ELSE '' END AS def, \
                pg_catalog.format_type(a.atttypid, NULL) AS typ, \
                pg_catalog.has_column_privilege($2, a.attrelid, a.attnum, 'SELECT') AS may_read \
           FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid \
          WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped \
          ORDER BY a.attnum",
        &[source.into(), caller.into()],
    )
}

/// Register a snapshot: make its table (and index, partitions, guards) as the caller, schedule its
/// job, and take its first snapshot now. Returns its id (its job's id).
pub fn create(n: NewSnapshot) -> i64 {
    crate::jobs::api::require_primary("create a snapshot");
    let caller = sql::caller();
    let src = sql::relation(n.source).unwrap_or_else(|| PgMartError::undefined_table("snapshot source does not exist").raise());
    if !["r", "p", "v", "m", "f"].contains(&src.relkind.as_str()) {
        PgMartError::wrong_object_type(format!("snapshot source {} is not a table or view", src.qualified))
            .hint("A snapshot copies a table, a partitioned table, a view, a materialized view or a foreign table.")
            .raise();
    }
    let strategy = Strategy::parse(n.strategy).or_raise();
    let meta = Meta::build(strategy, n.preset.trim(), n.meta_columns.as_ref()).or_raise();
    let cols = source_columns(n.source, caller);
    if cols.is_empty() {
        PgMartError::invalid(format!("snapshot source {} has no columns", src.qualified)).raise();
    }
    // Read with the caller's privileges only: a role that may not read the source may not snapshot it.
    let unreadable: Vec<&str> = cols.iter().filter(|c| !c.may_read).map(|c| c.name.as_str()).collect();
    if !unreadable.is_empty() {
        PgMartError::privilege(format!("permission denied for {}: you may not read it, so you may not snapshot it", src.qualified))
            .detail(format!("You lack SELECT on column{} {}.", if unreadable.len() == 1 { "" } else { "s" }, unreadable.join(", ")))
            .hint("A snapshot reads its source as its owner (you): ask for SELECT on it.")
            .raise();
    }
    let names: Vec<String> = cols.iter().map(|c| c.name.clone()).collect();
    let col = |c: &str, what: &str| -> &SrcCol {
        cols.iter().find(|x| x.name == c).unwrap_or_else(|| {
            PgMartError::undefined_column(format!("{what} column \"{c}\" of {} does not exist", src.qualified)).raise()
        })
    };
    for m in meta.names() {
        if names.contains(&m) {
            PgMartError::new(PgSqlErrorCode::ERRCODE_DUPLICATE_COLUMN, format!("source {} has a column \"{m}\", the name of a column the snapshot adds", src.qualified))
                .hint(format!(r#"Give the snapshot's column another name with meta_columns, e.g. meta_columns => '{{"{}": "pgmart_{m}"}}'."#,
                              meta.roles()[meta.names().iter().position(|x| *x == m).unwrap_or(0)]))
                .raise();
        }
    }
    let key = n.unique_key.clone();
    for (i, k) in key.iter().enumerate() {
        col(k, "unique key");
        if key[..i].contains(k) {
            PgMartError::invalid(format!("unique_key names column \"{k}\" twice")).raise();
        }
    }
    let check_columns = n.check_columns.clone().unwrap_or_default();
    let mut updated: Option<(String, TimeKind)> = None;
    if let Some(u) = n.updated_at {
        let c = col(u, "updated_at");
        let kind = TimeKind::from_type_name(&c.typ).unwrap_or_else(|| {
            PgMartError::invalid(format!("updated_at column \"{u}\" is {}, not a date or timestamp", c.typ))
                .hint("Use a date, timestamp or timestamptz column.")
                .raise()
        });
        updated = Some((u.to_string(), kind));
    }
    let period = match strategy {
        Strategy::Periodic => {
            if updated.is_some() || n.check_columns.is_some() {
                PgMartError::invalid("a periodic snapshot takes neither updated_at nor check_columns")
                    .hint("It copies every row once per period; for a type-2 history use strategy 'timestamp' or 'check'.")
                    .raise();
            }
            Some(Period::parse(n.period).or_raise())
        }
        Strategy::Timestamp | Strategy::Check => {
            if key.is_empty() {
                PgMartError::invalid(format!("a {} snapshot needs a unique_key", strategy.name()))
                    .hint("Name the column(s) that identify a row of the source: unique_key => '{id}'.")
                    .raise();
            }
            if strategy == Strategy::Timestamp && updated.is_none() {
                PgMartError::invalid("a timestamp snapshot needs updated_at")
                    .hint("Name the source column that changes whenever a row does: updated_at => 'updated_at' (or use strategy 'check').")
                    .raise();
            }
            if strategy == Strategy::Timestamp && n.check_columns.is_some() {
                PgMartError::invalid("check_columns is for strategy 'check'").raise();
            }
            if n.check_columns.as_ref().is_some_and(|c| c.is_empty()) {
                PgMartError::invalid("check_columns must name at least one column (NULL: every column)").raise();
            }
            for c in &check_columns {
                col(c, "check");
            }
            None
        }
    };
    if let Some(r) = &n.retention {
        crate::args::check_positive_interval(r, "retention");
    }
    let zone = crate::jobs::tz::resolve(n.timezone).or_raise();
    let period_s = crate::jobs::engine::approx_period(n.schedule, &zone.name).or_raise();
    crate::jobs::engine::validate(n.schedule, &zone.name).or_raise();

    let (schema, relname) = target(n.name);
    let table = format!("{}.{}", qi(&schema), qi(&relname));
    let shape = Shape {
        table: table.clone(),
        source: src.qualified.clone(),
        columns: names.clone(),
        key: key.clone(),
        strategy,
        updated_at: updated.clone(),
        check: check_columns.clone(),
        meta: meta.clone(),
        dbt: n.preset.trim() == "dbt",
        timezone: zone.name.clone(),
        hard_deletes: n.invalidate_hard_deletes,
        key_unique: false,
        key_not_null: false,
        key_ordered: false,
    };
    // The table, as the caller (who needs CREATE on the schema), in their name.
    let defs: Vec<String> = cols.iter().map(|c| c.def.clone()).collect();
    if let Err(c) = sql::subtransaction(|| sql::exec(&plan::create_table(&shape, &defs), &[])) {
        let e = PgMartError::new(crate::error::sqlstate_code(&c.sqlstate), format!("cannot create snapshot table {table}: {}", c.message));
        match c.sqlstate.as_str() {
            "42P07" => e.hint("A snapshot makes its own table: choose a name that is free (pgmart.snapshots lists the snapshots)."),
            _ => e,
        }
        .raise();
    }
    let display = sql::one::<String>(
        "SELECT pg_catalog.quote_ident($1) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident($2)",
        &[schema.as_str().into(), relname.as_str().into()],
    )
    .unwrap_or_else(|| table.clone());
    let job_id = crate::jobs::api::register(crate::jobs::api::NewJob {
        name: &crate::jobs::api::free_name(&format!("snapshot {display}")),
        kind: "snapshot",
        target: Some(&display),
        schedule: n.schedule,
        timezone: &zone.name,
        owner: caller,
        config: json!({}),
        max_retries: 3,
        retry_backoff: None,
        start_at: None,
        timeout: None,
    });
    sql::as_catalog_owner(|| {
        sql::exec(
            "INSERT INTO pgmart.snapshot (job_id, rel, name, source, source_name, strategy, columns, unique_key, updated_at, \
                                          updated_kind, check_columns, preset, meta, period, timezone, invalidate_hard_deletes, \
                                          retention, period_s) \
             VALUES ($1, $2::pg_catalog.regclass, $3, $4::pg_catalog.oid::pg_catalog.regclass, $5, $6, $7, $8, $9::pg_catalog.name, \
                     $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            &[
                job_id.into(),
                table.as_str().into(),
                display.as_str().into(),
                n.source.into(),
                src.qualified.as_str().into(),
                strategy.name().into(),
                names.clone().into(),
                key.clone().into(),
                updated.as_ref().map(|(c, _)| c.clone()).into(),
                updated.as_ref().map(|(_, k)| format!("{k:?}")).into(),
                check_columns.clone().into(),
                n.preset.trim().into(),
                pgrx::JsonB(meta.to_json()).into(),
                period.map(|p| p.name().to_string()).into(),
                zone.name.as_str().into(),
                n.invalidate_hard_deletes.into(),
                n.retention.into(),
                period_s.into(),
            ],
        )
    });
    if let Some(p) = period {
        // Partitions, one per period, from the current one, kept by pgmart's partition sets (which
        // also drop them after retention); no default partition (a period has its partition).
        let start = sql::one::<String>(&plan::current_period(p, &zone.name), &[]).unwrap_or_default();
        sql::exec(
            "SELECT pgmart.create_partition_set($1::pg_catalog.regclass, $2, $3::pg_catalog.interval, premake => 3, \
                    retention => $4, default_partition => false, schedule => '1 day', timezone => $5, \
                    start_at => ($6::pg_catalog.date::timestamp without time zone AT TIME ZONE $5))",
            &[
                table.as_str().into(),
                meta.snapshot_period.clone().unwrap_or_default().into(),
                p.partition_interval().into(),
                n.retention.into(),
                zone.name.as_str().into(),
                start.as_str().into(),
            ],
        );
    }
    let s = load(job_id).expect("the snapshot just made");
    ensure_guards(&s);
    sql::as_role(caller, || take(&s));
    // The index after the first fill (one sort instead of a million insertions into it).
    let index_name = format!("{}_{}", relname, if strategy == Strategy::Periodic { "key" } else { "current" });
    if let Some(ddl) = plan::create_index(&shape, &index_name) {
        if let Err(c) = sql::subtransaction(|| sql::exec(&ddl, &[])) {
            let e = PgMartError::new(crate::error::sqlstate_code(&c.sqlstate), format!("cannot index the unique key of {table}: {}", c.message));
            match c.sqlstate.as_str() {
                "42P07" => e.hint(format!("The snapshot names its index {index_name}: that name is taken in schema {schema}; choose another snapshot name.")),
                _ => e.hint("The unique key's columns must have a btree equality (not json, for example)."),
            }
            .raise();
        }
    }
    job_id
}

thread_local! {
    /// The periodic snapshot whose own INSERT is about to run (0: none): its guard lets exactly
    /// that statement in, once (the guard fires before the statement reads its first source row,
    /// so nothing the source's code does while it is read gets in with it).
    static WRITING: Cell<i64> = const { Cell::new(0) };
}

struct Writing;
impl Writing {
    fn start(job_id: i64) -> Writing {
        WRITING.with(|w| w.set(job_id));
        Writing
    }
}
impl Drop for Writing {
    fn drop(&mut self) {
        WRITING.with(|w| w.set(0));
    }
}

/// The guard trigger fired (see `api::_snapshot_guard`): pgmart's own INSERT passes, once;
/// everything else is refused.
pub fn guard(job_id: i64, op: &str, relation: &str) {
    if op == "INSERT" && WRITING.with(|w| w.get()) == job_id {
        WRITING.with(|w| w.set(0));
        return;
    }
    PgMartError::state(format!("{relation} is a periodic snapshot: its rows are frozen ({op} refused)"))
        .detail("pgmart writes each period once, in its run; frozen rows are never changed.")
        .hint("Old periods go with the snapshot's retention (whole partitions); pgmart.drop_snapshot(name, keep_data => true) makes it a plain table again.")
        .raise()
}

/// Put the guard trigger on a periodic snapshot's table and on each of its partitions that lacks
/// it (statement triggers are not cloned to partitions).
pub fn ensure_guards(s: &Stored) {
    if s.strategy() != Strategy::Periodic || s.table.is_none() {
        return;
    }
    let name = plan::guard_name(s.job_id);
    sql::as_catalog_owner(|| {
        #[derive(Deserialize)]
        struct Rel {
            rel: String,
            taken: bool,
        }
        let rels = sql::rows::<Rel>(
            "SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) \
                    pg_catalog.quote_ident(c.relname::pg_catalog.text) AS rel, \
                    EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid OPERATOR(pg_catalog.=) c.oid \
                              AND t.tgname::pg_catalog.text OPERATOR(pg_catalog.=) $1) AS taken \
               FROM pg_catalog.pg_partition_tree($2::pg_catalog.regclass) p \
               JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.relid \
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid OPERATOR(pg_catalog.=) c.oid \
                                   AND t.tgname::pg_catalog.text OPERATOR(pg_catalog.=) $1 \
                                   AND t.tgfoid OPERATOR(pg_catalog.=) 'pgmart._snapshot_guard()'::pg_catalog.regprocedure)",
            &[name.as_str().into(), pg_sys::Oid::from(s.rel_oid as u32).into()],
        );
        for r in rels {
            if r.taken {
                // A trigger of that name that is not the guard: it goes.
                sql::exec(&format!("DROP TRIGGER {} ON {}", qi(&name), r.rel), &[]);
            }
            sql::exec(&plan::guard_trigger(s.job_id, &r.rel), &[]);
        }
    });
}

/// A table was created or attached (the DDL event trigger): a new partition of a periodic
/// snapshot gets its guard.
pub fn relation_changed(oid: pg_sys::Oid) {
    let jobs = sql::as_catalog_owner(|| {
        sql::column::<i64>(
            "SELECT s.job_id FROM pgmart.snapshot s \
              WHERE s.strategy OPERATOR(pg_catalog.=) 'periodic' \
                AND s.rel::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ( \
                      SELECT a.relid::pg_catalog.oid FROM pg_catalog.pg_partition_ancestors($1::pg_catalog.oid::pg_catalog.regclass) a)",
            &[oid.into()],
        )
    });
    for j in jobs {
        if let Some(s) = load(j) {
            ensure_guards(&s);
        }
    }
}

fn dup_error(s: &Stored, out: &Value) -> Option<PgMartError> {
    let n = |k: &str| out.get(k).and_then(Value::as_i64).unwrap_or(0);
    let keys = s.unique_key.join(", ");
    if n("nulls") > 0 {
        return Some(
            PgMartError::new(
                PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
                format!("snapshot {}: {} rows of {} have a NULL in the unique key ({keys})", s.name, n("nulls"), s.source_name),
            )
            .detail("Nothing was written: a row without a key cannot be followed from run to run.")
            .hint("Fix those rows in the source, or choose a unique_key without NULLs; the next run takes the snapshot."),
        );
    }
    if n("ndups") > 0 {
        let sample: Vec<String> = out
            .get("dups")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|k| {
                        let parts: Vec<String> = k.as_array().map(|p| p.iter().map(|v| match v {
                            Value::String(t) => t.clone(),
                            other => other.to_string(),
                        }).collect()).unwrap_or_default();
                        format!("({})", parts.join(", "))
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Some(
            PgMartError::new(
                PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
                format!(
                    "snapshot {}: the unique key ({keys}) is not unique in {}: {} key{} appear{} more than once: {}{}",
                    s.name,
                    s.source_name,
                    n("ndups"),
                    if n("ndups") == 1 { "" } else { "s" },
                    if n("ndups") == 1 { "s" } else { "" },
                    sample.join(", "),
                    if n("ndups") as usize > sample.len() { ", ..." } else { "" }
                ),
            )
            .detail("Nothing was written.")
            .hint("Make the key unique in the source (or choose another unique_key); the next run takes the snapshot."),
        );
    }
    None
}

/// What the source itself guarantees of the key: unique (a valid, immediate, non-partial unique
/// index on some of the key's columns) and without NULLs (every key column NOT NULL). A view
/// guarantees nothing.
fn key_guarantees(s: &Stored) -> (bool, bool, bool) {
    if s.unique_key.is_empty() {
        return (false, false, false);
    }
    #[derive(Deserialize)]
    struct G {
        is_unique: bool,
        not_null: bool,
        ordered: bool,
    }
    sql::as_catalog_owner(|| {
        sql::row::<G>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
                             WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisunique AND i.indisvalid AND i.indimmediate \
                               AND i.indpred IS NULL AND i.indexprs IS NULL \
                               AND (SELECT pg_catalog.array_agg(a.attname::pg_catalog.text) FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) k \
                                      JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid \
                                       AND a.attnum OPERATOR(pg_catalog.=) k) OPERATOR(pg_catalog.<@) $2::pg_catalog.text[]) AS is_unique, \
                    EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid \
                             WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL \
                               AND i.indexprs IS NULL AND ic.relam OPERATOR(pg_catalog.=) 403::pg_catalog.oid \
                               AND (SELECT pg_catalog.array_agg(a.attname::pg_catalog.text ORDER BY k.o) \
                                      FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY k(n, o) \
                                      JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid \
                                       AND a.attnum OPERATOR(pg_catalog.=) k.n) OPERATOR(pg_catalog.=) $2::pg_catalog.text[]) AS ordered, \
                    coalesce((SELECT pg_catalog.bool_and(a.attnotnull) FROM pg_catalog.pg_attribute a \
                               JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid \
                              WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::pg_catalog.\"char\"[]) \
                                AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])), false) AS not_null",
            &[pg_sys::Oid::from(s.source_oid as u32).into(), s.unique_key.clone().into()],
        )
    })
    .map(|g| (g.is_unique, g.not_null, g.ordered))
    .unwrap_or((false, false, false))
}

/// Take one snapshot now, in this transaction, as the snapshot's owner (the caller has switched
/// identity, or is the owner's runner). Returns what it did.
pub fn take(s: &Stored) -> Value {
    let started = std::time::Instant::now();
    let (Some(table), Some(_)) = (s.table.clone(), &s.source) else {
        PgMartError::state(format!("snapshot {} has lost its table or its source", s.name))
            .hint("Drop it with pgmart.drop_snapshot() and create it again.")
            .raise()
    };
    // One run of a snapshot at a time (a manual one waits for the worker's, and the other way).
    locks::lock_for_transaction(locks::Kind::SnapshotRun, s.job_id);
    let owner = s.owner_oid();
    // The source's columns as registered must still be there.
    let gone = sql::as_catalog_owner(|| {
        sql::one::<Vec<String>>(
            "SELECT coalesce(pg_catalog.array_agg(c ORDER BY o), '{}') FROM pg_catalog.unnest($2::pg_catalog.text[]) WITH ORDINALITY u(c, o) \
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) $1 \
                                  AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) u.c AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)",
            &[pg_sys::Oid::from(s.source_oid as u32).into(), s.columns.clone().into()],
        )
    })
    .unwrap_or_default();
    if !gone.is_empty() {
        PgMartError::undefined_column(format!(
            "snapshot {}: {} no longer has column{} {}",
            s.name,
            s.source_name,
            if gone.len() == 1 { "" } else { "s" },
            gone.join(", ")
        ))
        .detail("A snapshot copies the columns its source had when it was created.")
        .hint("Put the column back in the source, or drop the snapshot and create it again (keep_data => true keeps the old table).")
        .raise();
    }
    let mut shape = s.shape();
    (shape.key_unique, shape.key_not_null, shape.key_ordered) = key_guarantees(s);
    let (out, period) = match s.strategy() {
        Strategy::Periodic => {
            let p = Period::parse(s.period.as_deref().unwrap_or("day")).or_raise();
            let period = sql::one::<String>(&plan::current_period(p, &s.timezone), &[]).unwrap_or_default();
            let frozen = sql::as_catalog_owner(|| {
                sql::one::<pgrx::JsonB>(
                    "SELECT pg_catalog.jsonb_build_object('rows', rows, 'taken_at', taken_at) FROM pgmart.snapshot_period \
                      WHERE job_id OPERATOR(pg_catalog.=) $1 AND period OPERATOR(pg_catalog.=) $2::pg_catalog.date",
                    &[s.job_id.into(), period.as_str().into()],
                )
                .map(|j| j.0)
            });
            if let Some(f) = frozen {
                record(s, started, &json!({"inserted": 0}), Some(&period), None);
                return json!({"strategy": "periodic", "period": period, "inserted": 0, "frozen": f,
                              "message": format!("period {period} of {} is already frozen ({} rows); nothing to do", s.name, f["rows"])});
            }
            // Its partition (pgmart's partition set makes it ahead; a late set makes it now).
            let sets = crate::partitions::exec::load_sets_for_pass(
                "s.parent OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid",
                &[s.rel_oid.into()],
            );
            if let Some(set) = sets.first() {
                let o = crate::partitions::exec::maintain(set, false);
                crate::partitions::exec::record(set, &o);
            }
            ensure_guards(s);
            let pcol = qi(shape.meta.snapshot_period.as_deref().unwrap_or("snapshot_period"));
            let stray = sql::as_role(owner, || {
                sql::one::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE {pcol} OPERATOR(pg_catalog.=) $1::pg_catalog.date)"), &[period.as_str().into()])
            });
            if stray == Some(true) {
                PgMartError::state(format!("snapshot {}: period {period} already holds rows that pgmart did not write", s.name))
                    .hint("Someone wrote into the table around its guard (triggers disabled?): remove those rows, then run it again.")
                    .raise();
            }
            let out = sql::as_role(owner, || {
                let _w = Writing::start(s.job_id);
                sql::one::<pgrx::JsonB>(&plan::periodic_run(&shape), &[period.as_str().into()])
            })
            .map(|j| j.0)
            .unwrap_or_else(|| json!({}));
            if let Some(e) = dup_error(s, &out) {
                e.raise();
            }
            let rows = out.get("inserted").and_then(Value::as_i64).unwrap_or(0);
            sql::as_catalog_owner(|| {
                sql::exec(
                    "INSERT INTO pgmart.snapshot_period (job_id, period, rows, taken_at) VALUES ($1, $2::pg_catalog.date, $3, pg_catalog.transaction_timestamp())",
                    &[s.job_id.into(), period.as_str().into(), rows.into()],
                )
            });
            (out, Some(period))
        }
        Strategy::Timestamp | Strategy::Check => {
            // When the source has a unique index on exactly the key, both sides can be read in key
            // order (the snapshot's own index on its current versions is on the key): a merge join
            // reads them once each, without building a hash of a million rows.
            // (And no sort: the few changed versions are then closed through that index, one
            // lookup each, not by a merge over all of it.)
            let on = if shape.key_ordered { c"off" } else { c"on" };
            let out = sql::as_role(owner, || {
                sql::with_setting(c"enable_hashjoin", on, || {
                    sql::with_setting(c"enable_sort", on, || sql::one::<pgrx::JsonB>(&plan::type2_run(&shape), &[]))
                })
            })
                .map(|j| j.0)
                .unwrap_or_else(|| json!({}));
            if let Some(e) = dup_error(s, &out) {
                e.raise();
            }
            (out, None)
        }
    };
    let purged = match (&s.retention, s.strategy()) {
        (Some(r), Strategy::Timestamp | Strategy::Check) => {
            sql::as_role(owner, || sql::exec_count(&plan::type2_retention(&shape), &[r.as_str().into()])) as i64
        }
        _ => 0,
    };
    record(s, started, &out, period.as_deref(), Some(purged));
    let n = |k: &str| out.get(k).and_then(Value::as_i64).unwrap_or(0);
    let message = match s.strategy() {
        Strategy::Periodic => format!("period {} of {} frozen: {} rows", period.clone().unwrap_or_default(), s.name, n("inserted")),
        _ => format!(
            "{}: {} new versions, {} closed by a change, {} closed by a delete{}",
            s.name,
            n("inserted"),
            n("closed"),
            n("deleted"),
            if purged > 0 { format!("; {purged} versions older than retention removed") } else { String::new() }
        ),
    };
    json!({"strategy": s.strategy, "period": period, "inserted": n("inserted"), "closed": n("closed"),
           "deleted": n("deleted"), "purged": purged, "message": message})
}

/// The run's outcome in the catalog (and, for a periodic snapshot, its periods that are gone).
fn record(s: &Stored, started: std::time::Instant, out: &Value, period: Option<&str>, purged: Option<i64>) {
    let n = |k: &str| out.get(k).and_then(Value::as_i64).unwrap_or(0);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if s.strategy() == Strategy::Periodic {
        // Periods whose rows are gone (retention dropped their partition) are forgotten.
        let periods = sql::as_catalog_owner(|| {
            sql::one::<Vec<String>>(
                "SELECT coalesce(pg_catalog.array_agg(period::pg_catalog.text), '{}') FROM pgmart.snapshot_period WHERE job_id OPERATOR(pg_catalog.=) $1",
                &[s.job_id.into()],
            )
        })
        .unwrap_or_default();
        if let (Some(table), false) = (&s.table, periods.is_empty()) {
            let pcol = qi(s.meta().snapshot_period.as_deref().unwrap_or("snapshot_period"));
            let kept = sql::as_role(s.owner_oid(), || {
                sql::one::<Vec<String>>(
                    &format!(
                        "SELECT coalesce(pg_catalog.array_agg(p::pg_catalog.text), '{{}}') FROM pg_catalog.unnest($1::pg_catalog.date[]) p \
                          WHERE EXISTS (SELECT 1 FROM {table} t WHERE t.{pcol} OPERATOR(pg_catalog.=) p)"
                    ),
                    &[periods.clone().into()],
                )
            })
            .unwrap_or_default();
            let mut keep = kept;
            if let Some(p) = period {
                keep.push(p.to_string());
            }
            sql::as_catalog_owner(|| {
                sql::exec(
                    "DELETE FROM pgmart.snapshot_period WHERE job_id OPERATOR(pg_catalog.=) $1 \
                        AND period::pg_catalog.text OPERATOR(pg_catalog.<>) ALL ($2::pg_catalog.text[]) AND rows OPERATOR(pg_catalog.>) 0",
                    &[s.job_id.into(), keep.into()],
                )
            });
        }
        sql::as_catalog_owner(|| {
            sql::exec(
                "UPDATE pgmart.snapshot SET last_run_at = pg_catalog.now(), last_run_ms = $2, last_period = coalesce($3::pg_catalog.date, last_period), \
                        last_inserted = $4, last_closed = 0, last_deleted = 0, \
                        total_rows = (SELECT coalesce(pg_catalog.sum(p.rows), 0)::pg_catalog.int8 FROM pgmart.snapshot_period p \
                                       WHERE p.job_id OPERATOR(pg_catalog.=) $1) \
                  WHERE job_id OPERATOR(pg_catalog.=) $1",
                &[s.job_id.into(), ms.into(), period.into(), n("inserted").into()],
            )
        });
    } else {
        sql::as_catalog_owner(|| {
            sql::exec(
                "UPDATE pgmart.snapshot SET last_run_at = pg_catalog.now(), last_run_ms = $2, \
                        last_inserted = $3, last_closed = $4, last_deleted = $5, \
                        total_rows = total_rows OPERATOR(pg_catalog.+) $3 OPERATOR(pg_catalog.-) $6, \
                        current_rows = coalesce(current_rows, 0) OPERATOR(pg_catalog.+) $3 OPERATOR(pg_catalog.-) $4 OPERATOR(pg_catalog.-) $5 \
                  WHERE job_id OPERATOR(pg_catalog.=) $1",
                &[s.job_id.into(), ms.into(), n("inserted").into(), n("closed").into(), n("deleted").into(), purged.unwrap_or(0).into()],
            )
        });
    }
}

/// The `snapshot` job kind: one run of one snapshot.
pub struct Snapshot;

impl crate::jobs::kinds::JobKind for Snapshot {
    fn name(&self) -> &'static str {
        "snapshot"
    }
    fn run(&self, job: &Job) -> Value {
        let Some(s) = load(job.job_id) else {
            PgMartError::undefined_object(format!("job {} has no snapshot", job.job_id)).raise()
        };
        if s.table.is_none() {
            crate::jobs::api::disable_orphaned(job, "snapshot", &s.name, Some(&s.name), "snapshot table dropped; its job was disabled");
            return json!({"skipped": true, "message": format!("snapshot table {} no longer exists; its job was disabled (pgmart.drop_snapshot removes it)", s.name)});
        }
        let missing_key = format!("snapshot_source_missing:{}", s.job_id);
        if s.source.is_none() {
            let since = crate::jobs::history::skipped_since(job.job_id);
            if since.as_ref().is_some_and(|x| x.seconds > 2.0 * s.period_s) {
                crate::alerts::raise_health(crate::alerts::Health {
                    source_kind: "snapshot",
                    source_name: &s.name,
                    severity: "medium",
                    target: Some(&s.source_name),
                    payload: json!({"problem": "source missing", "snapshot": s.name, "source": s.source_name,
                                    "missing_since": since.and_then(|x| x.since), "job_id": s.job_id}),
                    dedup_key: &missing_key,
                    owner: s.owner_oid(),
                    job_id: Some(s.job_id),
                    check_id: None,
                });
            }
            return json!({"skipped": true,
                          "message": format!("{} does not exist; the snapshot runs again when one of that name is created", s.source_name)});
        }
        crate::alerts::resolve(&missing_key);
        // Stale (no successful run for two periods of its schedule) and failing again: an alert;
        // the next run that succeeds resolves it. (Each failed run is also an alert after its
        // last retry, through the engine.)
        let key = format!("snapshot_stale:{}", s.job_id);
        match sql::subtransaction(|| take(&s)) {
            Ok(v) => {
                crate::alerts::resolve(&key);
                v
            }
            Err(c) => {
                let age = s.last_run_age_s.unwrap_or(f64::INFINITY);
                if age > 2.0 * s.period_s {
                    let (name, owner, job_id) = (s.name.clone(), s.owner_oid(), s.job_id);
                    let shown_age = s.last_run_age_s.map(|a| a.round());
                    let why = c.message.clone();
                    crate::jobs::engine::after_rollback(move || {
                        crate::alerts::raise_health(crate::alerts::Health {
                            source_kind: "snapshot",
                            source_name: &name,
                            severity: "medium",
                            target: Some(&name),
                            payload: json!({"problem": "stale", "snapshot": name, "age_s": shown_age, "job_id": job_id, "error": why}),
                            dedup_key: &key,
                            owner,
                            job_id: Some(job_id),
                            check_id: None,
                        });
                    });
                }
                c.raise()
            }
        }
    }
    fn target_gone(&self, job: &Job) -> bool {
        load(job.job_id).map(|s| s.table.is_none()).unwrap_or(true)
    }
    fn drop_hint(&self) -> Option<&'static str> {
        Some("Use pgmart.drop_snapshot().")
    }
}

/// Drop a snapshot: its job and catalog, its partition set, its table unless `keep_data` (then
/// without its guards: a plain table of the owner's).
pub fn drop_snapshot(name: &str, keep_data: bool) {
    crate::jobs::api::require_primary("drop a snapshot");
    let s = for_caller(name);
    let set_job = sql::as_catalog_owner(|| {
        sql::one::<i64>(
            "DELETE FROM pgmart.partition_set WHERE parent OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid RETURNING job_id",
            &[s.rel_oid.into()],
        )
    });
    if let Some(j) = set_job {
        crate::jobs::api::delete_job(j);
    }
    if let Some(table) = &s.table {
        if keep_data {
            let names = vec![plan::guard_name(s.job_id)];
            sql::as_catalog_owner(|| {
                #[derive(Deserialize)]
                struct Trig {
                    rel: String,
                    tgname: String,
                }
                let trigs = sql::rows::<Trig>(
                    "SELECT t.tgrelid::pg_catalog.regclass::pg_catalog.text AS rel, t.tgname::pg_catalog.text AS tgname \
                       FROM pg_catalog.pg_trigger t \
                      WHERE t.tgname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) \
                        AND t.tgfoid OPERATOR(pg_catalog.=) 'pgmart._snapshot_guard()'::pg_catalog.regprocedure",
                    &[names.into()],
                );
                for t in trigs {
                    sql::exec(&format!("DROP TRIGGER IF EXISTS {} ON {}", qi(&t.tgname), t.rel), &[]);
                }
            });
        } else {
            sql::as_role(s.owner_oid(), || sql::exec(&format!("DROP TABLE {table}"), &[]));
        }
    }
    crate::jobs::api::delete_job(s.job_id);
}
