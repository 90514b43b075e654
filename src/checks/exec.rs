//! Runs check plans through SPI: registration (validation by planning), one fused statement per
//! table (one snapshot), isolation of a failing check, history, alerts, and the `check_suite` job.

use crate::checks::plan::{self, Check, Kind, Measured, TableFacts};
use crate::error::{OrRaise, PgMartError};
use crate::jobs::engine::Job;
use crate::sql::{self, Caught};
use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One row of `run_checks()` output (and of `pgmart.check_results`).
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub check_id: i64,
    pub name: String,
    pub target: String,
    pub kind: String,
    pub status: String,
    pub failing_rows: Option<i64>,
    pub checked_rows: Option<i64>,
    pub sample: Value,
    pub duration_ms: f64,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct CheckRow {
    check_id: i64,
    name: String,
    target_oid: i64,
    target: String,
    kind: String,
    columns: Vec<String>,
    params: Value,
    severity: String,
    where_clause: Option<String>,
    last_status: Option<String>,
    last_sample: Option<Value>,
}

impl CheckRow {
    fn plan(&self) -> Option<Check> {
        Some(Check {
            id: self.check_id,
            name: self.name.clone(),
            kind: Kind::parse(&self.kind).ok()?,
            columns: self.columns.clone(),
            params: self.params.clone(),
            severity: self.severity.clone(),
            where_clause: self.where_clause.clone(),
            expect_failures: self.last_status.as_deref() == Some("fail") || self.last_status.as_deref() == Some("warn"),
            prev_sample: self.last_sample.clone(),
        })
    }
    fn result(&self, status: &str, m: Option<&Measured>, ms: f64, message: Option<String>) -> CheckResult {
        CheckResult {
            check_id: self.check_id,
            name: self.name.clone(),
            target: self.target.clone(),
            kind: self.kind.clone(),
            status: status.into(),
            failing_rows: m.and_then(|m| m.failing),
            checked_rows: m.and_then(|m| m.checked),
            sample: m.map(|m| m.sample.clone()).unwrap_or(Value::Null),
            duration_ms: ms,
            message,
        }
    }
}

#[derive(Deserialize)]
struct RelInfo {
    relation: String,
    relname: String,
    relkind: String,
    owner: String,
}

fn rel_info(oid: i64) -> Option<RelInfo> {
    sql::row::<RelInfo>(
        "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) AS relation, \
                c.relname::text AS relname, c.relkind::text AS relkind, pg_catalog.pg_get_userbyid(c.relowner)::text AS owner \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::oid",
        &[oid.into()],
    )
}

/// Catalog facts about a table: keys, constraints, columns.
fn facts(oid: i64, rel: &RelInfo) -> TableFacts {
    #[derive(Deserialize)]
    struct Cols {
        cols: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Col {
        name: String,
        ty: String,
        notnull: bool,
    }
    #[derive(Deserialize)]
    struct Fk {
        col: String,
        parent: String,
        pcol: String,
    }
    let pk = sql::row::<Cols>(
        "SELECT array_agg(a.attname::text ORDER BY k.ord) AS cols \
           FROM pg_catalog.pg_constraint con, unnest(con.conkey) WITH ORDINALITY k(attnum, ord), pg_catalog.pg_attribute a \
          WHERE con.conrelid = $1::oid AND con.contype = 'p' AND a.attrelid = con.conrelid AND a.attnum = k.attnum \
          GROUP BY con.oid",
        &[oid.into()],
    )
    .map(|c| c.cols)
    .unwrap_or_default();
    let unique_sets = sql::rows::<Cols>(
        "SELECT array_agg(a.attname::text) AS cols \
           FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_index i ON i.indexrelid = con.conindid, \
                unnest(con.conkey) k(attnum), pg_catalog.pg_attribute a \
          WHERE con.conrelid = $1::oid AND con.contype IN ('p', 'u') AND i.indisvalid AND con.convalidated \
            AND a.attrelid = con.conrelid AND a.attnum = k.attnum \
          GROUP BY con.oid",
        &[oid.into()],
    )
    .into_iter()
    .map(|c| c.cols)
    .collect();
    let cols = sql::rows::<Col>(
        "SELECT attname::text AS name, pg_catalog.format_type(atttypid, NULL) AS ty, attnotnull AS notnull \
           FROM pg_catalog.pg_attribute WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        &[oid.into()],
    );
    let fks = sql::rows::<Fk>(
        "SELECT a.attname::text AS col, con.confrelid::bigint::text AS parent, pa.attname::text AS pcol \
           FROM pg_catalog.pg_constraint con \
           JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1] \
           JOIN pg_catalog.pg_attribute pa ON pa.attrelid = con.confrelid AND pa.attnum = con.confkey[1] \
          WHERE con.conrelid = $1::oid AND con.contype = 'f' AND con.convalidated AND cardinality(con.conkey) = 1",
        &[oid.into()],
    );
    TableFacts {
        relation: rel.relation.clone(),
        pk,
        has_ctid: matches!(rel.relkind.as_str(), "r" | "m" | "p"),
        unique_sets,
        not_null: cols.iter().filter(|c| c.notnull).map(|c| c.name.clone()).collect(),
        foreign_keys: fks.into_iter().map(|f| (f.col, f.parent, f.pcol)).collect(),
        columns: cols.into_iter().map(|c| (c.name, c.ty)).collect(),
        est_rows: est_rows(oid),
    }
}

/// Rows in a table (all leaf partitions of a partitioned one), an estimate that errs high: the
/// statistics' density scaled to the current size, as the planner does; without statistics, the
/// most heap tuples a page can hold (MaxHeapTuplesPerPage) times the pages. -1 for a relation
/// without storage of its own (a view).
fn est_rows(oid: i64) -> f64 {
    sql::one::<f64>(
        "SELECT coalesce(sum(CASE WHEN c.reltuples < 0 OR c.relpages = 0 THEN 291 ELSE c.reltuples / c.relpages END \
                             * (pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::int)), -1)::float8 \
           FROM pg_catalog.pg_class c \
          WHERE c.relkind IN ('r', 'm') \
            AND (c.oid = $1::oid OR c.oid IN (SELECT relid FROM pg_catalog.pg_partition_tree($1::oid::regclass)))",
        &[oid.into()],
    )
    .unwrap_or(-1.0)
}

/// A relationships check's parent: (oid as text, the parent), resolved now.
fn parent_of(c: &Check) -> std::result::Result<(String, plan::Parent), String> {
    let to = c.params.get("to").and_then(|v| v.as_str()).unwrap_or("");
    let field = c.params.get("field").and_then(|v| v.as_str()).unwrap_or("");
    #[derive(Deserialize)]
    struct P {
        oid: i64,
        relation: String,
        field_type: String,
    }
    let p = sql::subtransaction(|| {
        sql::row::<P>(
            "SELECT c.oid::bigint AS oid, pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) AS relation, \
                    coalesce((SELECT pg_catalog.format_type(a.atttypid, NULL) FROM pg_catalog.pg_attribute a \
                               WHERE a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped), '') AS field_type \
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.oid = pg_catalog.to_regclass($1)",
            &[to.into(), field.into()],
        )
    });
    match p {
        Ok(Some(p)) => Ok((
            p.oid.to_string(),
            plan::Parent { relation: p.relation, field_type: p.field_type, est_rows: est_rows(p.oid) },
        )),
        Ok(None) => Err(format!("parent table \"{to}\" does not exist")),
        Err(e) => Err(e.message),
    }
}

/// Schema check: no scan, the catalog only.
fn schema_measure(c: &Check, f: &TableFacts) -> std::result::Result<Measured, String> {
    let expected = c.params.get("columns").and_then(|v| v.as_object()).cloned().unwrap_or_default();
    let mut exp = vec![];
    for (name, ty) in expected {
        let ty = ty.as_str().unwrap_or("");
        let norm = sql::subtransaction(|| {
            sql::one::<String>("SELECT pg_catalog.format_type(pg_catalog.to_regtype($1), NULL)", &[ty.into()])
        })
        .ok()
        .flatten()
        .ok_or_else(|| format!("type \"{ty}\" of column \"{name}\" does not exist"))?;
        exp.push((name, norm));
    }
    let allow_extra = c.params.get("allow_extra").and_then(|v| v.as_bool()).unwrap_or(false);
    let (n, details) = plan::schema_diff(&exp, &f.columns, allow_extra);
    Ok(Measured {
        failing: Some(n),
        checked: Some(exp.len() as i64),
        sample: details,
        verdict: Some(if n > 0 { "fail" } else { "pass" }),
    })
}

/// Run the fused statement without a row limit: PostgreSQL disables parallel query for any
/// executor run given a tuple count, which is what a "first row" SPI call passes.
fn run_fused(sql_text: &str) -> std::result::Result<Value, Caught> {
    sql::subtransaction(|| {
        Spi::connect(|c| {
            let t = c.select(sql_text, None, &[])?;
            t.first().get_one::<pgrx::JsonB>()
        })
        .unwrap_or_else(|e| error!("pgmart: SPI failure: {e}"))
        .map(|j| j.0)
        .unwrap_or(Value::Null)
    })
}

/// Run every check of one table on one snapshot (one statement); isolate failures.
fn run_table(oid: i64, rows: &[&CheckRow]) -> Vec<CheckResult> {
    let mut out: Vec<CheckResult> = vec![];
    let Some(rel) = rel_info(oid) else {
        return rows
            .iter()
            .map(|r| r.result("error", None, 0.0, Some(format!("table {} no longer exists", r.target))))
            .collect();
    };
    let f = facts(oid, &rel);
    let mut data: Vec<Check> = vec![];
    let mut parents: BTreeMap<i64, plan::Parent> = BTreeMap::new();
    for r in rows {
        let t0 = std::time::Instant::now();
        let Some(c) = r.plan() else {
            out.push(r.result("error", None, 0.0, Some(format!("unknown check kind \"{}\"", r.kind))));
            continue;
        };
        let mut parent_oid = None;
        if c.kind == Kind::Relationships {
            match parent_of(&c) {
                Ok((poid, prel)) => {
                    parent_oid = Some(poid);
                    parents.insert(c.id, prel);
                }
                Err(msg) => {
                    out.push(r.result("error", None, 0.0, Some(msg)));
                    continue;
                }
            }
        }
        if let Some(note) = plan::proven_by_constraint(&c, &f, parent_oid.as_deref()) {
            let m = Measured { failing: Some(0), checked: None, sample: json!({ "note": note }), verdict: None };
            out.push(r.result("pass", Some(&m), t0.elapsed().as_secs_f64() * 1000.0, Some(note)));
            continue;
        }
        if c.kind == Kind::Schema {
            match schema_measure(&c, &f) {
                Ok(m) => {
                    let st = plan::status(&c, &m).unwrap_or("error");
                    out.push(r.result(st, Some(&m), t0.elapsed().as_secs_f64() * 1000.0, None));
                }
                Err(msg) => out.push(r.result("error", None, 0.0, Some(msg))),
            }
            continue;
        }
        data.push(c);
    }
    if data.is_empty() {
        return out;
    }
    let by_id: BTreeMap<i64, &CheckRow> = rows.iter().map(|r| (r.check_id, *r)).collect();
    let refs: Vec<&Check> = data.iter().collect();
    let mut pending: Vec<Vec<&Check>> = vec![refs.clone()];
    let mut first = true;
    while let Some(batch) = pending.pop() {
        let Some(fused) = plan::fuse(&f, &batch, &parents) else { continue };
        let t0 = std::time::Instant::now();
        let res = run_fused(&fused.sql);
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        if let Err(e) = &res {
            // A cancel (statement_timeout, Ctrl-C) or a shutdown stops the whole run, as it should.
            if e.sqlstate.starts_with("57") {
                PgMartError::new(pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED, e.message.clone()).raise();
            }
        }
        match res {
            Ok(v) => {
                for (id, how) in &fused.items {
                    let c = batch.iter().find(|c| c.id == *id).expect("check");
                    let r = by_id[id];
                    let m = plan::extract(c, how, &v);
                    match plan::status(c, &m) {
                        Ok(st) => out.push(r.result(st, Some(&m), ms, None)),
                        Err(e) => out.push(r.result("error", Some(&m), ms, Some(e.message))),
                    }
                }
            }
            Err(e) if batch.len() > 1 && first => {
                // Isolate: rerun each check on its own so one broken check cannot hide the others.
                let _ = e;
                for c in batch.iter().rev() {
                    pending.push(vec![*c]);
                }
            }
            Err(e) => {
                for c in &batch {
                    out.push(by_id[&c.id].result("error", None, ms, Some(format!("{} (SQLSTATE {})", e.message, e.sqlstate))));
                }
            }
        }
        first = false;
    }
    out
}

#[derive(Deserialize)]
struct Setting {
    kb: i64,
}

/// Run checks (all the caller may run, one table's, or one job's) and record the results.
pub fn run(target: Option<i64>, job_id: Option<i64>, run_by: &str) -> Vec<CheckResult> {
    let caller = sql::current_role();
    let rows = sql::as_catalog_owner(|| {
        sql::rows::<CheckRow>(
            "SELECT check_id, name, target::oid::bigint AS target_oid, \
                    target::text AS target, \
                    kind, columns, params, severity, where_clause, \
                    (SELECT r.status FROM pgmart.check_results r WHERE r.check_id = c.check_id \
                      ORDER BY r.run_at DESC LIMIT 1) AS last_status, \
                    (SELECT r.sample FROM pgmart.check_results r WHERE r.check_id = c.check_id AND r.status <> 'error' \
                      ORDER BY r.run_at DESC LIMIT 1) AS last_sample \
               FROM pgmart.\"check\" c \
              WHERE ($1::bigint IS NULL OR target::oid = $1::bigint::oid) \
                AND ($2::bigint IS NULL OR job_id = $2) \
                AND ($2::bigint IS NOT NULL OR pg_catalog.pg_has_role($3::name, owner, 'MEMBER') \
                     OR coalesce(pg_catalog.has_table_privilege($3::name, target::oid, 'SELECT'), false)) \
              ORDER BY check_id",
            &[target.into(), job_id.into(), caller.as_str().into()],
        )
    });
    // Enough memory for the distinct/sort and hash passes of a few million rows; no JIT start-up.
    let nest = unsafe { pg_sys::NewGUCNestLevel() };
    let cur = sql::row::<Setting>("SELECT setting::bigint AS kb FROM pg_catalog.pg_settings WHERE name = 'work_mem'", &[])
        .map(|s| s.kb)
        .unwrap_or(4096);
    if cur < 262144 {
        sql::set_local("work_mem", "256MB");
    }
    sql::set_local("jit", "off");
    let mut tables: Vec<i64> = vec![];
    for r in &rows {
        if !tables.contains(&r.target_oid) {
            tables.push(r.target_oid);
        }
    }
    let mut results = vec![];
    for t in tables {
        let of_table: Vec<&CheckRow> = rows.iter().filter(|r| r.target_oid == t).collect();
        results.extend(run_table(t, &of_table));
    }
    unsafe { pg_sys::AtEOXact_GUC(false, nest) };
    // Report in check order.
    results.sort_by_key(|r| rows.iter().position(|x| x.check_id == r.check_id));
    record(&results, &rows, run_by);
    results
}

fn record(results: &[CheckResult], rows: &[CheckRow], run_by: &str) {
    if results.is_empty() {
        return;
    }
    let payload: Vec<Value> = results
        .iter()
        .map(|r| {
            json!({
                "check_id": r.check_id, "name": r.name, "target": r.target, "kind": r.kind, "status": r.status,
                "failing_rows": r.failing_rows, "checked_rows": r.checked_rows, "sample": r.sample,
                "duration_ms": r.duration_ms, "message": r.message,
            })
        })
        .collect();
    sql::as_catalog_owner(|| {
        sql::exec(
            "INSERT INTO pgmart.check_results (check_id, name, target, kind, status, failing_rows, checked_rows, \
                                               sample, duration_ms, message, run_by) \
             SELECT check_id, name, target, kind, status, failing_rows, checked_rows, sample, duration_ms, message, $2 \
               FROM pg_catalog.jsonb_to_recordset($1) AS x(check_id bigint, name text, target text, kind text, \
                    status text, failing_rows bigint, checked_rows bigint, sample jsonb, duration_ms float8, message text)",
            &[pgrx::JsonB(Value::Array(payload)).into(), run_by.into()],
        )
    });
    for r in results {
        let severity = rows.iter().find(|x| x.check_id == r.check_id).map(|x| x.severity.as_str()).unwrap_or("error");
        if r.status == "fail" && severity == "error" {
            crate::alerts::raise_health(
                "check",
                &r.name,
                "high",
                Some(&r.target),
                json!({
                    "check_id": r.check_id, "kind": r.kind, "failing_rows": r.failing_rows,
                    "checked_rows": r.checked_rows, "sample": r.sample, "run_by": run_by,
                }),
                &format!("check:{}", r.check_id),
            );
        }
    }
}

/// The `check_suite` job kind: run this job's checks (as the job's owner, set by the engine).
pub fn run_job(job: &Job) -> Value {
    let target = job.config.get("target_oid").and_then(|v| v.as_i64());
    let results = run(target, Some(job.job_id), &format!("job {}", job.job_id));
    let count = |s: &str| results.iter().filter(|r| r.status == s).count();
    json!({
        "message": format!("{} checks: {} pass, {} warn, {} fail, {} error",
                           results.len(), count("pass"), count("warn"), count("fail"), count("error")),
        "pass": count("pass"), "warn": count("warn"), "fail": count("fail"), "error": count("error"),
    })
}

/// Registration input (validated here).
pub struct NewCheck<'a> {
    pub target_oid: i64,
    pub kind: &'a str,
    pub columns: Vec<String>,
    pub params: Value,
    pub severity: &'a str,
    pub name: Option<&'a str>,
    pub schedule: Option<&'a str>,
    pub where_clause: Option<&'a str>,
}

fn map_plan_error(e: &Caught, what: &str) -> PgMartError {
    let msg = format!("invalid {what}: {}", e.message);
    let err = match e.sqlstate.as_str() {
        "42703" => PgMartError::undefined_column(msg),
        "42P01" => PgMartError::undefined_table(msg),
        "42501" => PgMartError::privilege(msg),
        _ => PgMartError::invalid(msg),
    };
    match &e.detail {
        Some(d) => err.detail(d.clone()),
        None => err,
    }
}

/// Check a user SQL fragment (an expression or a where_clause): one boolean expression over the
/// table's own columns, no subquery, no other table, no statement separator.
fn validate_fragment(relation: &str, text: &str, what: &str) {
    if text.trim().is_empty() {
        PgMartError::invalid(format!("{what} must not be empty")).raise();
    }
    if text.contains(';') {
        PgMartError::invalid(format!("{what} must be a single expression (no \";\")")).raise();
    }
    let shape = sql::subtransaction(|| unsafe {
        let c = std::ffi::CString::new(format!("SELECT ({text})")).unwrap_or_default();
        let list = pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let list = pgrx::PgList::<pg_sys::RawStmt>::from_pg(list);
        if list.len() != 1 {
            return Err("more than one statement");
        }
        let stmt = (*list.get_ptr(0).unwrap()).stmt;
        if (*stmt).type_ != pg_sys::NodeTag::T_SelectStmt {
            return Err("not an expression");
        }
        let s = stmt as *mut pg_sys::SelectStmt;
        let s = &*s;
        let targets = pgrx::PgList::<pg_sys::Node>::from_pg(s.targetList);
        if targets.len() != 1
            || !s.fromClause.is_null()
            || !s.whereClause.is_null()
            || !s.groupClause.is_null()
            || !s.havingClause.is_null()
            || !s.windowClause.is_null()
            || !s.sortClause.is_null()
            || !s.limitCount.is_null()
            || !s.limitOffset.is_null()
            || !s.withClause.is_null()
            || !s.distinctClause.is_null()
            || !s.intoClause.is_null()
            || !s.lockingClause.is_null()
            || s.op != pg_sys::SetOperation::SETOP_NONE
        {
            return Err("not a single expression");
        }
        let tree = pg_sys::nodeToString(stmt as *const std::ffi::c_void);
        let tree = std::ffi::CStr::from_ptr(tree).to_string_lossy().to_uppercase();
        if tree.contains("SUBLINK") {
            return Err("a subquery");
        }
        Ok(())
    });
    match shape {
        Err(e) => PgMartError::new(pgrx::PgSqlErrorCode::ERRCODE_SYNTAX_ERROR, format!("invalid {what}: {}", e.message)).raise(),
        Ok(Err(why)) => PgMartError::invalid(format!("invalid {what}: it contains {why}"))
            .hint("Give one boolean expression over the table's own columns, without subqueries or other tables.")
            .raise(),
        Ok(Ok(())) => {}
    }
    let planned = sql::subtransaction(|| sql::exec(&format!("SELECT 1 FROM {relation} WHERE ({text}) LIMIT 0"), &[]));
    if let Err(e) = planned {
        let err = map_plan_error(&e, what);
        if e.sqlstate == "42804" {
            PgMartError::invalid(format!("invalid {what}: it must be a boolean expression ({})", e.message)).raise();
        }
        err.raise();
    }
}

pub fn register(n: NewCheck) -> i64 {
    let kind = Kind::parse(n.kind).or_raise();
    if n.severity != "warn" && n.severity != "error" {
        PgMartError::invalid(format!("invalid severity \"{}\"", n.severity)).hint("Use 'warn' or 'error'.").raise();
    }
    plan::validate_params(kind, &n.columns, &n.params).or_raise();
    let rel = rel_info(n.target_oid).unwrap_or_else(|| PgMartError::undefined_table("target table does not exist").raise());
    if !matches!(rel.relkind.as_str(), "r" | "p" | "m" | "v" | "f") {
        PgMartError::invalid(format!("\"{}\" is not a table, view or materialized view", rel.relname)).raise();
    }
    let caller = sql::current_role();
    let allowed = sql::can_act_as(&caller, &rel.owner)
        || sql::one::<bool>("SELECT pg_catalog.has_table_privilege($1::name, $2::oid, 'SELECT')", &[
            caller.as_str().into(),
            n.target_oid.into(),
        ])
        .unwrap_or(false);
    if !allowed {
        PgMartError::privilege(format!("role \"{caller}\" may not check table {}: it needs SELECT on it", rel.relation))
            .raise();
    }
    let f = facts(n.target_oid, &rel);
    let mut seen = vec![];
    for c in &n.columns {
        if seen.contains(c) {
            PgMartError::invalid(format!("column \"{c}\" is listed twice")).raise();
        }
        seen.push(c.clone());
        if !f.columns.iter().any(|(name, _)| name == c) {
            PgMartError::undefined_column(format!("column \"{c}\" of relation {} does not exist", rel.relation)).raise();
        }
    }
    let mut params = n.params.clone();
    match kind {
        Kind::Freshness => {
            let ty = &f.columns.iter().find(|(name, _)| name == &n.columns[0]).expect("column").1;
            if !matches!(ty.as_str(), "timestamp with time zone" | "timestamp without time zone" | "date") {
                PgMartError::invalid(format!("freshness needs a timestamp or date column; \"{}\" is {ty}", n.columns[0]))
                    .raise();
            }
            for k in ["warn_after", "error_after"] {
                if let Some(iv) = params.get(k).and_then(|v| v.as_str()) {
                    let ok = sql::subtransaction(|| {
                        sql::one::<bool>("SELECT $1::text::interval > '0'::interval", &[iv.into()]).unwrap_or(false)
                    });
                    if !matches!(ok, Ok(true)) {
                        PgMartError::invalid(format!("invalid params.{k} \"{iv}\": give a positive interval")).raise();
                    }
                }
            }
        }
        Kind::Expression => {
            let e = params.get("expression").and_then(|v| v.as_str()).unwrap_or("").to_string();
            validate_fragment(&rel.relation, &e, "expression");
        }
        Kind::Relationships => {
            let to = params.get("to").and_then(|v| v.as_str()).unwrap_or("").to_string();
            let poid = sql::subtransaction(|| sql::one::<i64>("SELECT pg_catalog.to_regclass($1)::oid::bigint", &[to.as_str().into()]))
                .ok()
                .flatten()
                .unwrap_or_else(|| PgMartError::undefined_table(format!("parent table \"{to}\" does not exist")).raise());
            let prel = rel_info(poid).expect("parent");
            let field = params.get("field").and_then(|v| v.as_str()).unwrap_or("").to_string();
            let pf = facts(poid, &prel);
            if !pf.columns.iter().any(|(name, _)| name == &field) {
                PgMartError::undefined_column(format!("column \"{field}\" of relation {} does not exist", prel.relation))
                    .raise();
            }
            let may = sql::one::<bool>("SELECT pg_catalog.has_table_privilege($1::name, $2::oid, 'SELECT')", &[
                caller.as_str().into(),
                poid.into(),
            ])
            .unwrap_or(false);
            if !may {
                PgMartError::privilege(format!("role \"{caller}\" needs SELECT on the parent table {}", prel.relation)).raise();
            }
            params["to"] = json!(prel.relation);
        }
        Kind::Schema => {
            let cols = params.get("columns").and_then(|v| v.as_object()).cloned().unwrap_or_default();
            for (name, ty) in cols {
                let ty = ty.as_str().unwrap_or("");
                let ok = sql::subtransaction(|| sql::one::<bool>("SELECT pg_catalog.to_regtype($1) IS NOT NULL", &[ty.into()]));
                if !matches!(ok, Ok(Some(true))) {
                    PgMartError::invalid(format!("type \"{ty}\" of expected column \"{name}\" does not exist")).raise();
                }
            }
        }
        _ => {}
    }
    if let Some(w) = n.where_clause {
        if kind == Kind::Schema {
            PgMartError::invalid("a schema check takes no where_clause").raise();
        }
        validate_fragment(&rel.relation, w, "where_clause");
    }
    // Plan the check's own SQL (without running it): literals of the wrong type, incomparable keys.
    let check = Check {
        id: 0,
        name: String::new(),
        kind,
        columns: n.columns.clone(),
        params: params.clone(),
        severity: n.severity.into(),
        where_clause: n.where_clause.map(String::from),
        expect_failures: false,
        prev_sample: None,
    };
    let mut parents = BTreeMap::new();
    if kind == Kind::Relationships {
        // Plan the generic anti-join (unknown parent size): it proves the keys are comparable.
        parents.insert(0, plan::Parent { relation: params["to"].as_str().unwrap_or("").to_string(), field_type: String::new(), est_rows: -1.0 });
    }
    if let Some(fused) = plan::fuse(&f, &[&check], &parents) {
        if let Err(e) = sql::subtransaction(|| sql::exec(&format!("EXPLAIN (COSTS OFF) {}", fused.sql), &[])) {
            map_plan_error(&e, &format!("{} check", n.kind)).raise();
        }
    }
    let name = match n.name {
        Some(s) if s.trim().is_empty() => PgMartError::invalid("check name must not be empty").raise(),
        Some(s) => s.to_string(),
        None => plan::default_name(kind, n.kind, &rel.relname, &n.columns, &params),
    };
    let job_id = n.schedule.map(|s| suite_job(n.target_oid, &rel, s, &caller));
    sql::as_catalog_owner(|| {
        if sql::one::<bool>("SELECT EXISTS (SELECT 1 FROM pgmart.\"check\" WHERE name = $1)", &[name.as_str().into()])
            .unwrap_or(false)
        {
            PgMartError::duplicate(format!("a pgmart check named \"{name}\" already exists"))
                .hint("Pass another name => '...', or drop the existing one with pgmart.drop_check().")
                .raise();
        }
        sql::one::<i64>(
            "INSERT INTO pgmart.\"check\" (name, target, kind, columns, params, severity, where_clause, schedule, job_id, owner) \
             VALUES ($1, $2::oid::regclass, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING check_id",
            &[
                name.as_str().into(),
                n.target_oid.into(),
                n.kind.into(),
                n.columns.clone().into(),
                pgrx::JsonB(params.clone()).into(),
                n.severity.into(),
                n.where_clause.into(),
                n.schedule.into(),
                job_id.into(),
                caller.as_str().into(),
            ],
        )
        .expect("check id")
    })
}

/// The one `check_suite` job of (table, owner): reused, its schedule updated when a new one is given.
fn suite_job(oid: i64, rel: &RelInfo, schedule: &str, owner: &str) -> i64 {
    #[derive(Deserialize)]
    struct J {
        job_id: i64,
        schedule: String,
    }
    let existing = sql::as_catalog_owner(|| {
        sql::row::<J>(
            "SELECT job_id, schedule FROM pgmart.job WHERE kind = 'check_suite' AND owner = $1::name \
                AND (config->>'target_oid')::bigint = $2 ORDER BY job_id LIMIT 1",
            &[owner.into(), oid.into()],
        )
    });
    match existing {
        Some(j) => {
            if j.schedule != schedule.trim() {
                let (s, tz) = crate::jobs::engine::validate(schedule, "UTC").or_raise();
                let next = crate::jobs::engine::first_run(&s, &tz, chrono::Utc::now()).or_raise();
                sql::as_catalog_owner(|| {
                    sql::exec(
                        "UPDATE pgmart.job SET schedule = $2, next_run_at = to_timestamp($3) WHERE job_id = $1",
                        &[j.job_id.into(), schedule.trim().into(), (next.timestamp_micros() as f64 / 1e6).into()],
                    )
                });
                notice!("the check suite of {} now runs on schedule '{}' (for all its checks)", rel.relation, schedule.trim());
            }
            j.job_id
        }
        None => {
            let mut name = format!("checks {} ({owner})", rel.relation);
            let taken = sql::as_catalog_owner(|| {
                sql::one::<bool>("SELECT EXISTS (SELECT 1 FROM pgmart.job WHERE name = $1)", &[name.as_str().into()])
            })
            .unwrap_or(false);
            if taken {
                name = format!("{name} #{oid}");
            }
            crate::jobs::api::register(crate::jobs::api::NewJob {
                name: &name,
                kind: "check_suite",
                target: Some(&rel.relation),
                schedule,
                timezone: "UTC",
                owner,
                config: json!({ "target_oid": oid }),
                max_retries: 3,
                retry_backoff: None,
                start_at: None,
            })
        }
    }
}

/// Delete a check; its suite job goes when its last check does.
pub fn drop(name: &str) {
    #[derive(Deserialize)]
    struct D {
        check_id: i64,
        owner: String,
        job_id: Option<i64>,
        table_owner: Option<String>,
    }
    let d = sql::as_catalog_owner(|| {
        sql::row::<D>(
            "SELECT check_id, owner::text AS owner, job_id, \
                    (SELECT pg_catalog.pg_get_userbyid(relowner)::text FROM pg_catalog.pg_class WHERE oid = target::oid) AS table_owner \
               FROM pgmart.\"check\" WHERE name = $1",
            &[name.into()],
        )
    })
    .unwrap_or_else(|| PgMartError::undefined_object(format!("check \"{name}\" does not exist")).raise());
    let caller = sql::current_role();
    let may = sql::can_act_as(&caller, &d.owner) || d.table_owner.map(|o| sql::can_act_as(&caller, &o)).unwrap_or(false);
    if !may {
        PgMartError::privilege(format!("role \"{caller}\" may not drop check \"{name}\" owned by \"{}\"", d.owner)).raise();
    }
    sql::as_catalog_owner(|| {
        sql::exec("DELETE FROM pgmart.\"check\" WHERE check_id = $1", &[d.check_id.into()]);
        if let Some(j) = d.job_id {
            let left = sql::one::<bool>("SELECT EXISTS (SELECT 1 FROM pgmart.\"check\" WHERE job_id = $1)", &[j.into()])
                .unwrap_or(true);
            if !left {
                crate::jobs::api::delete_job(j);
            }
        }
    });
}
