//! Runs check plans through SPI: registration (validation by planning), one fused statement per
//! table (one snapshot), isolation of a failing check, history, alerts, and the `check_suite` job.

use crate::checks::plan::{self, Check, Kind, Measured, TableFacts};
use crate::error::{OrRaise, PgMartError};
use crate::fragment::{Runs, Shape};
use crate::jobs::engine::Job;
use crate::locks;
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
    owner: u32,
    /// Its suite job (a scheduled check).
    job_id: Option<i64>,
    /// Whether its table exists (it may have been dropped, to be re-created under its name).
    target_exists: bool,
    /// Who ran it at or after the moment its suite job last fell due (`run_by` of that result):
    /// that run is done already.
    covered_by: Option<String>,
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
}

fn rel_info(oid: i64) -> Option<RelInfo> {
    sql::row::<RelInfo>(
        "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) AS relation, \
                c.relname::text AS relname, c.relkind::text AS relkind \
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
        indexed: sql::column::<String>(
            "SELECT DISTINCT a.attname::text FROM pg_catalog.pg_index i \
               JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid JOIN pg_catalog.pg_am am ON am.oid = ic.relam \
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
              WHERE i.indrelid = $1::oid AND i.indisvalid AND i.indpred IS NULL AND am.amname = 'btree'",
            &[oid.into()],
        ),
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
        if c.kind == Kind::Access {
            // Catalog only, as the check's owner (this runs as them): their view of the report.
            let m = crate::layers::exec::access_measure(oid);
            let st = plan::status(&c, &m).unwrap_or("error");
            out.push(r.result(st, Some(&m), t0.elapsed().as_secs_f64() * 1000.0, None));
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

/// Analyse a check's stored fragments again, as its owner, right before it runs (a helper function
/// may have become volatile since it was registered); the checks with their fresh deparse, or the
/// error that stops one.
fn recheck(oid: i64, c: &CheckRow) -> std::result::Result<CheckRow, String> {
    let relid = pg_sys::Oid::from(oid as u32);
    let analyse = |text: &str, what: &str| {
        crate::fragment::analyse(relid, text, Shape::Condition, Runs::AsRegistrant, what, &[])
            .map(|f| f.text)
            .map_err(|e| e.message)
    };
    let mut c = c.clone();
    if let Some(w) = &c.where_clause {
        c.where_clause = Some(analyse(w, "check where_clause")?);
    }
    if c.kind == "expression" {
        let e = c.params.get("expression").and_then(|v| v.as_str()).unwrap_or("").to_string();
        c.params["expression"] = json!(analyse(&e, "check expression")?);
    }
    Ok(c)
}

/// The checks as they run: definition, owner, last result, whether the table exists, and who ran
/// the check since its suite job last fell due. Completed with a condition on `c` (the check), `a`
/// (its owner anchor), `j` (its suite job).
const CHECK_ROWS: &str = "SELECT c.check_id, c.name, c.target::pg_catalog.oid::pg_catalog.int8 AS target_oid, \
        CASE WHEN t.oid IS NULL THEN coalesce(c.target_name, c.target::pg_catalog.text) \
             ELSE c.target::pg_catalog.text END AS target, \
        c.kind, c.columns, c.params, c.severity, c.where_clause, c.job_id, t.oid IS NOT NULL AS target_exists, \
        coalesce(a.relowner, 0::pg_catalog.oid)::pg_catalog.int8 AS owner, \
        (SELECT r.status FROM pgmart.check_result r WHERE r.check_id OPERATOR(pg_catalog.=) c.check_id \
          ORDER BY r.run_at DESC LIMIT 1) AS last_status, \
        (SELECT r.sample FROM pgmart.check_result r WHERE r.check_id OPERATOR(pg_catalog.=) c.check_id \
            AND r.status OPERATOR(pg_catalog.<>) 'error' ORDER BY r.run_at DESC LIMIT 1) AS last_sample, \
        (SELECT r.run_by FROM pgmart.check_result r WHERE r.check_id OPERATOR(pg_catalog.=) c.check_id \
            AND r.run_at OPERATOR(pg_catalog.>=) j.next_run_at ORDER BY r.run_at DESC LIMIT 1) AS covered_by \
   FROM pgmart.\"check\" c \
   LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) c.anchor \
   LEFT JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) c.target::pg_catalog.oid \
   LEFT JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) c.job_id \
  WHERE a.relowner IS NOT NULL AND ";

/// The checks that meet `condition` (SQL over `c`, `a`, `j`; values as parameters), in check order.
fn load(condition: &str, args: &[pgrx::datum::DatumWithOid]) -> Vec<CheckRow> {
    sql::as_catalog_owner(|| sql::rows::<CheckRow>(&format!("{CHECK_ROWS}({condition}) ORDER BY c.check_id"), args))
}

/// The checks of suite job `$1`.
const OF_JOB: &str = "c.job_id OPERATOR(pg_catalog.=) $1";

/// The checks of the *sibling* suites of job `$1`: other enabled `check_suite` jobs with checks on
/// one of its tables for the same owner, due now.
const OF_DUE_SIBLINGS: &str = "c.job_id OPERATOR(pg_catalog.<>) $1 AND j.kind OPERATOR(pg_catalog.=) 'check_suite' AND j.enabled \
    AND j.next_run_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() \
    AND EXISTS (SELECT 1 FROM pgmart.\"check\" o JOIN pg_catalog.pg_class oa ON oa.oid OPERATOR(pg_catalog.=) o.anchor \
                 WHERE o.job_id OPERATOR(pg_catalog.=) $1 \
                   AND o.target::pg_catalog.oid OPERATOR(pg_catalog.=) c.target::pg_catalog.oid \
                   AND oa.relowner OPERATOR(pg_catalog.=) a.relowner)";

/// Run checks (all the caller may act as, or one table's) and record the results. Each table's
/// checks run as their owner (one statement, one snapshot, per table and owner). The checks of a
/// table that does not exist (dropped; dbt re-creates it) are not run and leave no result.
pub fn run(target: Option<i64>, run_by: &str) -> Vec<CheckResult> {
    let caller = sql::caller();
    let rows = load(
        "$1::pg_catalog.int8 IS NULL OR c.target::pg_catalog.oid OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid",
        &[target.into()],
    );
    // A caller runs (and writes history for) only the checks of roles it may act as.
    let (present, missing): (Vec<CheckRow>, Vec<CheckRow>) = rows
        .into_iter()
        .filter(|r| sql::may_act_as(caller, pg_sys::Oid::from(r.owner)))
        .partition(|r| r.target_exists);
    let mut gone: Vec<&str> = missing.iter().map(|r| r.target.as_str()).collect();
    gone.sort();
    gone.dedup();
    for t in gone {
        notice!("pgmart: table {t} does not exist; its checks were not run (they run again when one of that name is created)");
    }
    run_rows(&present, run_by)
}

/// Run these checks (of existing tables) and record the results: one fused statement per table
/// and owner, as that owner.
fn run_rows(rows: &[CheckRow], run_by: &str) -> Vec<CheckResult> {
    let mut groups: Vec<(i64, u32)> = vec![];
    for r in rows {
        if !groups.contains(&(r.target_oid, r.owner)) {
            groups.push((r.target_oid, r.owner));
        }
    }
    let mut results = vec![];
    for (t, owner) in groups {
        let of_group: Vec<&CheckRow> = rows.iter().filter(|r| r.target_oid == t && r.owner == owner).collect();
        results.extend(sql::as_role(pg_sys::Oid::from(owner), || {
            // Enough memory for the distinct/sort and hash passes of a few million rows; no JIT
            // start-up (both undone when the owner's block ends).
            let cur = sql::one::<i64>(
                "SELECT setting::pg_catalog.int8 FROM pg_catalog.pg_settings WHERE name OPERATOR(pg_catalog.=) 'work_mem'",
                &[],
            )
            .unwrap_or(4096);
            if cur < 262144 {
                sql::set_local("work_mem", "256MB");
            }
            sql::set_local("jit", "off");
            let mut out = vec![];
            let mut fresh = vec![];
            for r in of_group {
                match recheck(t, r) {
                    Ok(c) => fresh.push(c),
                    Err(msg) => out.push(r.result("error", None, 0.0, Some(msg))),
                }
            }
            out.extend(run_table(t, &fresh.iter().collect::<Vec<_>>()));
            out
        }));
    }
    // Report in check order.
    results.sort_by_key(|r| rows.iter().position(|x| x.check_id == r.check_id));
    record(&results, rows, run_by);
    results
}

fn record(results: &[CheckResult], rows: &[CheckRow], run_by: &str) {
    if results.is_empty() {
        return;
    }
    let payload: Vec<Value> = results
        .iter()
        .map(|r| {
            let owner = rows.iter().find(|x| x.check_id == r.check_id).map(|x| x.owner).unwrap_or(0);
            json!({
                "check_id": r.check_id, "name": r.name, "target": r.target, "kind": r.kind, "status": r.status,
                "failing_rows": r.failing_rows, "checked_rows": r.checked_rows, "sample": r.sample,
                "duration_ms": r.duration_ms, "message": r.message, "owner": owner,
            })
        })
        .collect();
    sql::as_catalog_owner(|| {
        sql::exec(
            "INSERT INTO pgmart.check_result (check_id, name, target, kind, status, failing_rows, checked_rows, \
                                              sample, duration_ms, message, run_by, owner) \
             SELECT x.check_id, x.name, x.target, x.kind, x.status, x.failing_rows, x.checked_rows, x.sample, \
                    x.duration_ms, x.message, $2, x.owner \
               FROM pg_catalog.jsonb_to_recordset($1) AS x(check_id bigint, name text, target text, kind text, \
                    status text, failing_rows bigint, checked_rows bigint, sample jsonb, duration_ms double precision, \
                    message text, owner bigint)",
            &[pgrx::JsonB(Value::Array(payload)).into(), run_by.into()],
        )
    });
    for r in results {
        let row = rows.iter().find(|x| x.check_id == r.check_id);
        let severity = row.map(|x| x.severity.as_str()).unwrap_or("error");
        if r.status == "pass" {
            // Its failure has cleared: the open alert is resolved, a later failure is a new one.
            crate::alerts::resolve(&format!("check:{}", r.check_id));
        }
        if r.status == "fail" && severity == "error" {
            crate::alerts::raise_health(crate::alerts::Health {
                source_kind: "check",
                source_name: &r.name,
                severity: "high",
                target: Some(&r.target),
                payload: json!({
                    "check_id": r.check_id, "kind": r.kind, "failing_rows": r.failing_rows,
                    "checked_rows": r.checked_rows, "sample": r.sample, "run_by": run_by,
                }),
                dedup_key: &format!("check:{}", r.check_id),
                owner: pg_sys::Oid::from(row.map(|x| x.owner).unwrap_or(0)),
                job_id: None,
                check_id: Some(r.check_id),
            });
        }
    }
}

/// The `check_suite` job kind: the scheduled checks of one table, one owner and one schedule.
pub struct CheckSuite;

impl crate::jobs::kinds::JobKind for CheckSuite {
    fn name(&self) -> &'static str {
        "check_suite"
    }
    fn run(&self, job: &Job) -> Value {
        run_job(job)
    }
    fn drop_hint(&self) -> Option<&'static str> {
        Some("Drop its checks with pgmart.drop_check().")
    }
    fn history(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        &[("pgmart.check_result", "run_at", "true")]
    }
}

/// Run a suite job: its checks, and in the same scan the checks of its due sibling suites (same
/// table, same owner, another schedule), so that checks falling due together share one scan.
///
/// Suite runs of one table and owner take turns (`locks::Kind::CheckScan`, until the transaction
/// ends, when their results are committed), so a sibling that was due too and runs next finds its
/// checks already run after it fell due (`covered_by`) and does not scan again; its own run is
/// recorded, with a message naming the run that covered it, and it is scheduled on as usual. A
/// paused sibling is never run by another; checks run since they fell due are not run again.
pub fn run_job(job: &Job) -> Value {
    let own = load(OF_JOB, &[job.job_id.into()]);
    if !own.is_empty() && own.iter().all(|r| !r.target_exists) {
        return table_missing(job, &own[0].target);
    }
    crate::alerts::resolve(&missing_key(job.job_id));
    // Wait for a sibling's scan of the same table (it may cover these checks). The wait is this
    // job's work, so pgmart.lock_timeout does not cut it short (the job's time limit does).
    let mut pairs: Vec<(i64, u32)> = own.iter().filter(|r| r.target_exists).map(|r| (r.target_oid, r.owner)).collect();
    pairs.sort();
    pairs.dedup();
    sql::with_setting(c"lock_timeout", c"0", || {
        for (t, o) in &pairs {
            locks::lock_for_transaction(locks::Kind::CheckScan, locks::pair(*t as u32, *o));
        }
    });
    // Read again now that any earlier scan has committed.
    let own: Vec<CheckRow> = load(OF_JOB, &[job.job_id.into()]).into_iter().filter(|r| r.target_exists).collect();
    let (covered, todo): (Vec<CheckRow>, Vec<CheckRow>) = own.into_iter().partition(|r| r.covered_by.is_some());
    let mut by: Vec<String> = covered.iter().filter_map(|r| r.covered_by.clone()).collect();
    by.sort();
    by.dedup();
    if todo.is_empty() && !covered.is_empty() {
        return json!({
            "message": format!("all {} checks already ran after this run fell due ({}); not run again", covered.len(), by.join(", ")),
            "pass": 0, "warn": 0, "fail": 0, "error": 0, "covered": covered.len(), "covered_by": by,
        });
    }
    let own_ids: Vec<i64> = todo.iter().map(|r| r.check_id).collect();
    let mut rows = todo;
    if !rows.is_empty() {
        rows.extend(load(OF_DUE_SIBLINGS, &[job.job_id.into()]).into_iter().filter(|r| r.target_exists && r.covered_by.is_none()));
    }
    let mut with_jobs: Vec<i64> = rows.iter().filter_map(|r| r.job_id).filter(|&j| j != job.job_id).collect();
    with_jobs.sort();
    with_jobs.dedup();
    let results = run_rows(&rows, &format!("job {}", job.job_id));
    let mine: Vec<&CheckResult> = results.iter().filter(|r| own_ids.contains(&r.check_id)).collect();
    let count = |s: &str| mine.iter().filter(|r| r.status == s).count();
    let mut message = format!(
        "{} checks: {} pass, {} warn, {} fail, {} error",
        mine.len(),
        count("pass"),
        count("warn"),
        count("fail"),
        count("error")
    );
    if !with_jobs.is_empty() {
        let jobs: Vec<String> = with_jobs.iter().map(|j| format!("job {j}")).collect();
        message.push_str(&format!(
            "; in the same scan, {} checks of {} (due too)",
            results.len() - mine.len(),
            jobs.join(", ")
        ));
    }
    if !covered.is_empty() {
        message.push_str(&format!("; {} already ran after this run fell due ({})", covered.len(), by.join(", ")));
    }
    json!({
        "message": message,
        "pass": count("pass"), "warn": count("warn"), "fail": count("fail"), "error": count("error"),
        "with_jobs": with_jobs, "covered": covered.len(), "covered_by": by,
    })
}

fn missing_key(job_id: i64) -> String {
    format!("check_suite_missing:{job_id}")
}

/// The suite's table is gone (dropped; a table created under its name takes the checks back, see
/// `crate::follow`): the run is `skipped`, the job stays scheduled, no check result is written, and
/// once the table has been missing for two periods of the schedule an alert says so.
fn table_missing(job: &Job, table: &str) -> Value {
    let since = crate::jobs::history::skipped_since(job.job_id);
    let missing_s = since.as_ref().map_or(0.0, |s| s.seconds);
    let allowance = crate::jobs::engine::approx_period(&job.schedule, &job.timezone).map(|p| 2.0 * p).unwrap_or(f64::INFINITY);
    if missing_s > allowance {
        crate::alerts::raise_health(crate::alerts::Health {
            source_kind: "check",
            source_name: &job.name,
            severity: "medium",
            target: Some(table),
            payload: json!({ "problem": "table missing", "table": table,
                             "missing_since": since.and_then(|s| s.since), "job_id": job.job_id }),
            dedup_key: &missing_key(job.job_id),
            owner: job.owner_oid(),
            job_id: Some(job.job_id),
            check_id: None,
        });
    }
    json!({ "skipped": true,
            "message": format!("table {table} does not exist; its checks run again when one of that name is created") })
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
    pub timeout: Option<pgrx::datum::Interval>,
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

/// A check's fragment (an expression or a where_clause): one boolean expression over the table's
/// own columns, analysed as the registrant (it runs as them); the deparsed form is what is stored.
fn analyse_fragment(oid: i64, text: &str, what: &str) -> String {
    crate::fragment::analyse(pg_sys::Oid::from(oid as u32), text, Shape::Condition, Runs::AsRegistrant, what, &[])
        .or_raise()
        .text
}

pub fn register(n: NewCheck) -> i64 {
    let kind = Kind::parse(n.kind).or_raise();
    if n.severity != "warn" && n.severity != "error" {
        PgMartError::invalid(format!("invalid severity \"{}\"", n.severity)).hint("Use 'warn' or 'error'.").raise();
    }
    plan::validate_params(kind, &n.columns, &n.params).or_raise();
    let rel = rel_info(n.target_oid).unwrap_or_else(|| PgMartError::undefined_table("target table does not exist").raise());
    if !matches!(rel.relkind.as_str(), "r" | "p" | "m" | "v" | "f") {
        PgMartError::wrong_object_type(format!("\"{}\" is not a table, view or materialized view", rel.relation))
            .hint("Checks run on tables, partitioned tables, views, materialized views and foreign tables.")
            .raise();
    }
    let caller = sql::caller();
    if !may_read(caller, n.target_oid) {
        PgMartError::privilege(format!("you may not check table {}: a check runs as you and needs SELECT on it", rel.relation))
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
    // The default name is made from what the user wrote (before it is analysed and deparsed).
    let default_name = plan::default_name(kind, n.kind, &rel.relname, &n.columns, &n.params);
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
                        sql::one::<bool>(
                            "SELECT $1::pg_catalog.text::interval OPERATOR(pg_catalog.>) '0'::interval \
                                AND $1::pg_catalog.text::interval OPERATOR(pg_catalog.<=) '1000 years'::interval",
                            &[iv.into()],
                        )
                        .unwrap_or(false)
                    });
                    if !matches!(ok, Ok(true)) {
                        PgMartError::invalid(format!("invalid params.{k} \"{iv}\": give a positive interval of at most 1000 years"))
                            .raise();
                    }
                }
            }
        }
        Kind::Expression => {
            let e = params.get("expression").and_then(|v| v.as_str()).unwrap_or("").to_string();
            params["expression"] = json!(analyse_fragment(n.target_oid, &e, "check expression"));
        }
        Kind::Relationships => {
            let to = params.get("to").and_then(|v| v.as_str()).unwrap_or("").to_string();
            // The parent is a name the user gave: resolved through the caller's own search_path.
            let poid = sql::subtransaction(|| {
                sql::caller_path(|| {
                    sql::one::<i64>(
                        "SELECT pg_catalog.to_regclass($1::pg_catalog.text)::pg_catalog.oid::pg_catalog.int8",
                        &[to.as_str().into()],
                    )
                })
            })
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
            if !may_read(caller, poid) {
                PgMartError::privilege(format!("you need SELECT on the parent table {}", prel.relation)).raise();
            }
            params["to"] = json!(prel.relation);
        }
        Kind::Range => {
            // min above max can never pass: refused, compared as the column's own type.
            if let (Some(min), Some(max)) = (plan::scalar_text(&params["min"]), plan::scalar_text(&params["max"])) {
                let ty = &f.columns.iter().find(|(name, _)| name == &n.columns[0]).expect("column").1;
                let above = sql::subtransaction(|| {
                    sql::one::<bool>(
                        &format!("SELECT $1::pg_catalog.text::{ty} OPERATOR(pg_catalog.>) $2::pg_catalog.text::{ty}"),
                        &[min.as_str().into(), max.as_str().into()],
                    )
                });
                if let Ok(Some(true)) = above {
                    PgMartError::invalid(format!("params.min ({min}) is above params.max ({max})"))
                        .hint("A range check passes for values between min and max; swap them.")
                        .raise();
                }
            }
        }
        Kind::Schema => {
            let cols = params.get("columns").and_then(|v| v.as_object()).cloned().unwrap_or_default();
            for (name, ty) in cols {
                let ty = ty.as_str().unwrap_or("");
                let ok = sql::subtransaction(|| {
                    sql::caller_path(|| {
                        sql::one::<bool>("SELECT pg_catalog.to_regtype($1::pg_catalog.text) IS NOT NULL", &[ty.into()])
                    })
                });
                if !matches!(ok, Ok(Some(true))) {
                    PgMartError::invalid(format!("type \"{ty}\" of expected column \"{name}\" does not exist")).raise();
                }
            }
        }
        _ => {}
    }
    let where_clause = match n.where_clause {
        Some(_) if kind == Kind::Schema || kind == Kind::Access => {
            PgMartError::invalid(format!("a{} {} check takes no where_clause", if kind == Kind::Access { "n" } else { "" }, n.kind)).raise()
        }
        Some(w) => Some(analyse_fragment(n.target_oid, w, "check where_clause")),
        None => None,
    };
    // Plan the check's own SQL (without running it): literals of the wrong type, incomparable keys.
    let check = Check {
        id: 0,
        name: String::new(),
        kind,
        columns: n.columns.clone(),
        params: params.clone(),
        severity: n.severity.into(),
        where_clause: where_clause.clone(),
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
    if let Some(s) = n.schedule {
        crate::jobs::engine::validate(s, "UTC").or_raise();
    }
    let name = match n.name {
        Some(s) if s.trim().is_empty() => PgMartError::invalid("check name must not be empty").raise(),
        Some(s) => s.to_string(),
        None => default_name,
    };
    let exists = sql::as_catalog_owner(|| {
        sql::one::<bool>("SELECT EXISTS (SELECT 1 FROM pgmart.\"check\" WHERE name OPERATOR(pg_catalog.=) $1)", &[name.as_str().into()])
    });
    if exists == Some(true) {
        PgMartError::duplicate(format!("a pgmart check named \"{name}\" already exists"))
            .hint("Pass another name => '...', or drop the existing one with pgmart.drop_check().")
            .raise();
    }
    let job_id = n.schedule.map(|s| suite_job(n.target_oid, &rel, s, caller, n.timeout));
    let check_id = sql::as_catalog_owner(|| {
        sql::one::<i64>("SELECT pg_catalog.nextval('pgmart.check_check_id_seq'::pg_catalog.regclass)", &[])
    })
    .expect("check id");
    let anchor = crate::owners::create("check", &check_id.to_string(), caller, &format!("pgmart check {name}"));
    sql::as_catalog_owner(|| {
        sql::exec(
            "INSERT INTO pgmart.\"check\" (check_id, name, target, kind, columns, params, severity, where_clause, schedule, \
                                           job_id, anchor, target_name) \
             VALUES ($1, $2, $3::pg_catalog.oid::pg_catalog.regclass, $4, $5, $6, $7, $8, $9, $10, $11::pg_catalog.regclass, $12)",
            &[
                check_id.into(),
                name.as_str().into(),
                n.target_oid.into(),
                n.kind.into(),
                n.columns.clone().into(),
                pgrx::JsonB(params.clone()).into(),
                n.severity.into(),
                where_clause.clone().into(),
                n.schedule.map(str::trim).into(),
                job_id.into(),
                anchor.as_str().into(),
                rel.relation.as_str().into(),
            ],
        )
    });
    check_id
}

/// Its table has a new name (see `crate::follow`): so has its suite job.
pub fn renamed(id: &str, name: &str) {
    let Ok(check_id) = id.parse::<i64>() else { return };
    sql::as_catalog_owner(|| {
        sql::exec(
            "UPDATE pgmart.job j SET target = $2 FROM pgmart.\"check\" c \
              WHERE c.check_id OPERATOR(pg_catalog.=) $1 AND j.job_id OPERATOR(pg_catalog.=) c.job_id",
            &[check_id.into(), name.into()],
        )
    });
}

/// Whether `role` may read table `oid` (a check runs as its registrant).
fn may_read(role: pg_sys::Oid, oid: i64) -> bool {
    sql::one::<bool>(
        "SELECT pg_catalog.has_table_privilege($1::pg_catalog.oid, $2::pg_catalog.oid, 'SELECT')",
        &[role.into(), oid.into()],
    )
    .unwrap_or(false)
}

/// A schedule as suites compare it: trimmed, spaces collapsed, case folded (`'1 Hour'` and
/// `' 1  hour'` are one schedule).
fn schedule_key(schedule: &str) -> String {
    schedule.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// The `check_suite` job of (table, owner, schedule): each schedule has its own job, which checks
/// given the same schedule join (their table's scans are shared when jobs fall due together, see
/// [`run_job`]). The first suite of a table and owner is `checks <table> (<role>)`, the others
/// `checks <table> (<role>, <schedule>)`.
fn suite_job(oid: i64, rel: &RelInfo, schedule: &str, owner: pg_sys::Oid, timeout: Option<pgrx::datum::Interval>) -> i64 {
    #[derive(Deserialize)]
    struct J {
        job_id: i64,
        name: String,
        schedule: String,
        timezone: String,
        enabled: bool,
    }
    let schedule = schedule.trim();
    let suites = sql::as_catalog_owner(|| {
        sql::rows::<J>(
            "SELECT j.job_id, j.name, j.schedule, j.timezone, j.enabled FROM pgmart.job j \
               JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor \
              WHERE j.kind OPERATOR(pg_catalog.=) 'check_suite' AND a.relowner OPERATOR(pg_catalog.=) $1 \
                AND EXISTS (SELECT 1 FROM pgmart.\"check\" c WHERE c.job_id OPERATOR(pg_catalog.=) j.job_id \
                               AND c.target::pg_catalog.oid OPERATOR(pg_catalog.=) $2::pg_catalog.int8::pg_catalog.oid) \
              ORDER BY j.job_id",
            &[owner.into(), oid.into()],
        )
    });
    let key = schedule_key(schedule);
    if let Some(j) = suites.iter().find(|j| schedule_key(&j.schedule) == key && j.timezone == "UTC") {
        if !j.enabled {
            notice!("pgmart: the check joins job {} (\"{}\"), which is paused: it runs when the job is resumed", j.job_id, j.name);
        }
        return j.job_id;
    }
    let role = sql::role_name(owner);
    let base = if suites.is_empty() {
        format!("checks {} ({role})", rel.relation)
    } else {
        format!("checks {} ({role}, {schedule})", rel.relation)
    };
    crate::jobs::api::register(crate::jobs::api::NewJob {
        name: &crate::jobs::api::free_name(&base),
        kind: "check_suite",
        target: Some(&rel.relation),
        schedule,
        timezone: "UTC",
        owner,
        config: json!({}),
        max_retries: 3,
        retry_backoff: None,
        start_at: None,
        timeout,
    })
}

#[derive(Deserialize)]
struct Registered {
    check_id: i64,
    owner: u32,
    job_id: Option<i64>,
    table_owner: Option<u32>,
}

/// Delete a check (by name) that the caller may act on (as the check's owner, or the table's);
/// the same error when it does not exist.
pub fn drop(name: &str) {
    let d = sql::as_catalog_owner(|| {
        sql::row::<Registered>(
            "SELECT c.check_id, coalesce(a.relowner, 0::pg_catalog.oid)::pg_catalog.int8 AS owner, c.job_id, \
                    (SELECT t.relowner::pg_catalog.int8 FROM pg_catalog.pg_class t \
                      WHERE t.oid OPERATOR(pg_catalog.=) c.target::pg_catalog.oid) AS table_owner \
               FROM pgmart.\"check\" c LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) c.anchor \
              WHERE c.name OPERATOR(pg_catalog.=) $1",
            &[name.into()],
        )
    });
    let caller = sql::caller();
    let may = |o: u32| o != 0 && sql::may_act_as(caller, pg_sys::Oid::from(o));
    let d = d
        .filter(|d| may(d.owner) || d.table_owner.is_some_and(may) || unsafe { pg_sys::superuser_arg(caller) })
        .unwrap_or_else(|| {
            PgMartError::undefined_object(format!("check \"{name}\" does not exist or you may not act on it"))
                .hint("pgmart.checks lists the checks you may act on.")
                .raise()
        });
    forget_check(d.check_id, d.job_id);
    crate::owners::drop(&crate::owners::anchor_name("check", &d.check_id.to_string()));
}

/// Remove check `check_id`; its suite job goes when its last check does.
fn forget_check(check_id: i64, job_id: Option<i64>) {
    sql::as_catalog_owner(|| {
        sql::exec("DELETE FROM pgmart.\"check\" WHERE check_id OPERATOR(pg_catalog.=) $1", &[check_id.into()]);
        if let Some(j) = job_id {
            let left = sql::one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pgmart.\"check\" WHERE job_id OPERATOR(pg_catalog.=) $1)",
                &[j.into()],
            )
            .unwrap_or(true);
            if !left {
                crate::jobs::api::delete_job(j);
            }
        }
    });
}

/// A check whose owner anchor was dropped (DROP OWNED BY): it goes too.
pub fn forget(id: &str) {
    let Ok(check_id) = id.parse::<i64>() else { return };
    let job_id = sql::as_catalog_owner(|| {
        sql::one::<i64>("SELECT job_id FROM pgmart.\"check\" WHERE check_id OPERATOR(pg_catalog.=) $1", &[check_id.into()])
    });
    forget_check(check_id, job_id);
}
