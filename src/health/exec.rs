//! The health job and the registrations behind it. The job reads `pgmart.table_health` as its
//! owner (so it sees what its owner may see), raises and resolves alerts, ANALYZEs partitioned
//! tables whose partitions changed, maintains the tables their owners registered with
//! `pgmart.maintain_table` (each command run as the table's owner, and only when the job's owner
//! may act as that owner), and samples pg_stat_statements for `pgmart.query_health`.
//!
//! `VACUUM` and `REINDEX INDEX CONCURRENTLY` cannot run inside a transaction block: with pgmart
//! preloaded the job runs in a background runner, outside any transaction, and runs them the way
//! `psql -c` would ([`crate::sql::exec_as_client`]); without the workers (`refresh_due()` in a
//! session) it does everything else and reports those as skipped.

use super::plan::{self, Rules, Sample, Verdict};
use crate::error::PgMartError;
use crate::jobs::api::{self as jobs_api, NewJob};
use crate::jobs::engine::{self, Job};
use crate::sql::{self, Caught};
use crate::{alerts, guc};
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

pub const KIND: &str = "health";

pub struct NewHealthJob<'a> {
    pub schedule: &'a str,
    pub timezone: &'a str,
    pub alert_level: &'a str,
    pub name: &'a str,
    pub max_retries: i32,
    pub timeout: Option<pgrx::datum::Interval>,
}

/// Schedule a health job, or change the caller's health job of that name.
pub fn schedule(n: NewHealthJob) -> i64 {
    jobs_api::require_primary("schedule the health job");
    let level = n.alert_level.trim().to_ascii_lowercase();
    if level != "fail" && level != "warn" {
        PgMartError::invalid(format!("invalid alert_level \"{}\"", n.alert_level))
            .hint("alert_level is 'fail' (alert on tables and indexes whose status is fail) or 'warn' (on warn too).")
            .raise();
    }
    let config = json!({ "alert_level": level });
    let existing = sql::as_catalog_owner(|| {
        sql::one::<i64>("SELECT job_id FROM pgmart.job WHERE name OPERATOR(pg_catalog.=) $1", &[n.name.into()])
    });
    if let Some(id) = existing {
        let job = engine::load(id);
        let caller = sql::caller();
        let mine = job.as_ref().is_some_and(|j| j.kind == KIND && j.owner != 0 && sql::may_act_as(caller, j.owner_oid()));
        if !mine {
            PgMartError::duplicate(format!("a pgmart job named \"{}\" already exists", n.name))
                .hint("Give the health job another name with name => '...'.")
                .raise();
        }
        jobs_api::check_timeout(n.timeout);
        if n.max_retries < 0 || n.max_retries > 100 {
            PgMartError::invalid("max_retries must be between 0 and 100").raise();
        }
        jobs_api::reschedule(id, n.schedule, Some(n.timezone));
        jobs_api::renew(id, n.max_retries, "1 minute", "tables", n.timeout);
        sql::as_catalog_owner(|| {
            sql::exec("UPDATE pgmart.job SET config = $2 WHERE job_id OPERATOR(pg_catalog.=) $1", &[id.into(), pgrx::JsonB(config).into()])
        });
        return id;
    }
    jobs_api::register(NewJob {
        name: n.name,
        kind: KIND,
        target: Some("tables"),
        schedule: n.schedule,
        timezone: n.timezone,
        owner: sql::caller(),
        config,
        max_retries: n.max_retries,
        retry_backoff: None,
        start_at: None,
        timeout: n.timeout,
    })
}

/// The storage parameters of a relation, as a JSON object of texts.
fn reloptions(oid: pg_sys::Oid) -> Map<String, Value> {
    sql::one::<pgrx::JsonB>(
        "SELECT coalesce(pg_catalog.jsonb_object_agg(o.option_name, o.option_value), '{}'::pg_catalog.jsonb) \
           FROM pg_catalog.pg_options_to_table((SELECT c.reloptions FROM pg_catalog.pg_class c \
                                                 WHERE c.oid OPERATOR(pg_catalog.=) $1)) o",
        &[oid.into()],
    )
    .and_then(|j| j.0.as_object().cloned())
    .unwrap_or_default()
}

#[derive(Deserialize)]
struct Maintained {
    relid: i64,
    vacuum: bool,
    reindex_bloated: bool,
    autovacuum_tuning: bool,
    tuned: Value,
    registered_by: i64,
}

fn load_maintained(oid: Option<pg_sys::Oid>) -> Vec<Maintained> {
    sql::as_catalog_owner(|| {
        sql::rows::<Maintained>(
            "SELECT relid::pg_catalog.oid::pg_catalog.int8 AS relid, vacuum, reindex_bloated, autovacuum_tuning, tuned, \
                    registered_by::pg_catalog.int8 AS registered_by \
               FROM pgmart.maintained_table WHERE $1 IS NULL OR relid OPERATOR(pg_catalog.=) $1 ORDER BY relid",
            &[oid.into()],
        )
    })
}

/// Put back the storage parameters tuning set, as the table's owner (those changed since by
/// someone else are left, with a NOTICE). Returns what was done.
fn undo_tuning(oid: pg_sys::Oid, qualified: &str, owner: pg_sys::Oid, recorded: &Value) -> Value {
    let empty = Map::new();
    let recorded = recorded.as_object().unwrap_or(&empty);
    if recorded.is_empty() {
        return json!({});
    }
    let u = plan::undo(recorded, &reloptions(oid));
    let mut statements = vec![];
    if let Some(s) = plan::alter_set(qualified, &u.set) {
        statements.push(s);
    }
    if let Some(s) = plan::alter_reset(qualified, &u.reset) {
        statements.push(s);
    }
    for s in &statements {
        sql::as_role(owner, || sql::exec(s, &[]));
    }
    if !u.kept.is_empty() {
        notice!(
            "{} of {qualified} changed since pgmart set it; left as it is",
            u.kept.join(", ")
        );
    }
    json!({ "undone": statements, "kept": u.kept })
}

/// Register a table for maintenance by the health job (or change what it may do).
pub fn maintain(oid: pg_sys::Oid, vacuum: bool, reindex_bloated: bool, autovacuum_tuning: bool) {
    jobs_api::require_primary("maintain a table");
    let rel = sql::relation(oid).unwrap_or_else(|| PgMartError::undefined_table("relation does not exist").raise());
    if rel.relkind != "r" && rel.relkind != "m" {
        let e = PgMartError::wrong_object_type(format!("\"{}\" is not a table or materialized view", rel.qualified));
        let e = if rel.relkind == "p" {
            e.hint("A partitioned table holds no rows itself: register its partitions. The health job ANALYZEs partitioned tables on its own.")
        } else {
            e.hint("pgmart maintains tables and materialized views.")
        };
        e.raise();
    }
    let caller = sql::caller();
    let owner = pg_sys::Oid::from(rel.owner);
    if !sql::may_act_as(caller, owner) {
        PgMartError::privilege(format!("must be able to act as the owner of \"{}\" to have pgmart maintain it", rel.qualified))
            .hint("Only the table's owner, or a role that may SET ROLE to it, may ask pgmart to vacuum, reindex or tune it.")
            .raise();
    }
    let before = load_maintained(Some(oid)).pop();
    sql::as_catalog_owner(|| {
        sql::exec(
            "INSERT INTO pgmart.maintained_table (relid, vacuum, reindex_bloated, autovacuum_tuning, registered_by) \
             VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4, $5) \
             ON CONFLICT (relid) DO UPDATE SET vacuum = excluded.vacuum, reindex_bloated = excluded.reindex_bloated, \
                    autovacuum_tuning = excluded.autovacuum_tuning, registered_by = excluded.registered_by",
            &[oid.into(), vacuum.into(), reindex_bloated.into(), autovacuum_tuning.into(), caller.into()],
        )
    });
    if let Some(b) = before.filter(|b| b.autovacuum_tuning && !autovacuum_tuning) {
        undo_tuning(oid, &rel.qualified, owner, &b.tuned);
        forget_tuning(oid);
    }
    let has_job = sql::as_catalog_owner(|| {
        sql::one::<bool>("SELECT EXISTS (SELECT 1 FROM pgmart.job WHERE kind OPERATOR(pg_catalog.=) 'health' AND enabled)", &[])
    });
    if has_job != Some(true) {
        notice!("no health job is scheduled yet: SELECT pgmart.schedule_health() makes one");
    }
}

fn forget_tuning(oid: pg_sys::Oid) {
    sql::as_catalog_owner(|| {
        sql::exec(
            "UPDATE pgmart.maintained_table SET tuned = '{}'::pg_catalog.jsonb WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid",
            &[oid.into()],
        )
    });
}

/// Stop maintaining a table; the storage parameters pgmart set on it are put back.
pub fn unmaintain(oid: pg_sys::Oid) {
    jobs_api::require_primary("stop maintaining a table");
    let not_registered = || PgMartError::undefined_object(format!("table with OID {} is not maintained by pgmart", u32::from(oid)));
    let Some(m) = load_maintained(Some(oid)).pop() else { not_registered().raise() };
    let caller = sql::caller();
    match sql::relation(oid) {
        Some(rel) => {
            let owner = pg_sys::Oid::from(rel.owner);
            if !sql::may_act_as(caller, owner) {
                // The same answer as for a table that is not registered: nothing about others' tables.
                PgMartError::undefined_object(format!("\"{}\" is not maintained by pgmart for you", rel.qualified))
                    .hint("Only a role that may act as the table's owner may stop its maintenance.")
                    .raise();
            }
            undo_tuning(oid, &rel.qualified, owner, &m.tuned);
        }
        None => {
            // The table is gone: its registrant (or a superuser) may remove the leftover row.
            let registrant = pg_sys::Oid::from(m.registered_by as u32);
            if !sql::may_act_as(caller, registrant) {
                not_registered().raise();
            }
        }
    }
    sql::as_catalog_owner(|| {
        sql::exec(
            "DELETE FROM pgmart.maintained_table WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid",
            &[i64::from(m.relid).into()],
        )
    });
}

/// One row of `pgmart.table_health` with a problem, as the job reads it.
#[derive(Deserialize, Debug)]
struct HealthRow {
    relid: i64,
    index: Option<i64>,
    kind: String,
    owner: i64,
    /// The table or index, qualified and quoted (regclass output under the pinned path).
    name: String,
    table_name: String,
    status: String,
    reason: Option<String>,
    suggestion: Option<String>,
    problems: Vec<String>,
    suggested_settings: Vec<String>,
}

impl HealthRow {
    fn has(&self, p: &str) -> bool {
        self.problems.iter().any(|x| x == p)
    }
    fn key(&self) -> i64 {
        self.index.unwrap_or(self.relid)
    }
}

fn health_rows() -> Vec<HealthRow> {
    sql::rows::<HealthRow>(
        "SELECT h.relid::pg_catalog.oid::pg_catalog.int8 AS relid, h.index::pg_catalog.oid::pg_catalog.int8 AS index, h.kind, \
                c.relowner::pg_catalog.int8 AS owner, coalesce(h.index, h.relid)::pg_catalog.text AS name, \
                h.relid::pg_catalog.text AS table_name, h.status, h.reason, h.suggestion, h.problems, h.suggested_settings \
           FROM pgmart.table_health h JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) h.relid \
          WHERE h.status OPERATOR(pg_catalog.<>) 'ok' OR h.problems OPERATOR(pg_catalog.<>) '{}'::pg_catalog.text[]",
        &[],
    )
}

/// A statement the job runs outside a transaction, as a table's owner.
#[derive(Debug, Clone, Serialize)]
struct Command {
    relid: i64,
    #[serde(skip)]
    owner: u32,
    table: String,
    command: String,
}

/// The `health` job kind.
pub struct Health;

impl crate::jobs::kinds::JobKind for Health {
    fn name(&self) -> &'static str {
        KIND
    }
    fn run(&self, job: &Job) -> Value {
        if unsafe { pg_sys::IsTransactionState() } {
            // A session's refresh_due() or run_job(): everything but what needs its own transaction.
            let (mut summary, commands) = pass(job);
            if !commands.is_empty() {
                summary["skipped_commands"] = json!(commands);
                summary["message"] = json!(format!(
                    "{} maintenance command(s) skipped: VACUUM and REINDEX CONCURRENTLY run only in a background runner (pgmart in shared_preload_libraries)",
                    commands.len()
                ));
            }
            return summary;
        }
        run_in_runner(job)
    }
    fn needs_own_transaction(&self, _job: &Job) -> bool {
        crate::worker::available()
    }
    fn history(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        &[("pgmart.query_sample", "sampled_at", "true")]
    }
}

/// In a runner (outside any transaction): the transactional pass, then each maintenance command
/// in its own transaction(s) as the table's owner, then their outcome recorded.
fn run_in_runner(job: &Job) -> Value {
    unsafe {
        pg_sys::SetConfigOption(c"search_path".as_ptr(), sql::SAFE_PATH.as_ptr(), pg_sys::GucContext::PGC_USERSET, pg_sys::GucSource::PGC_S_SESSION);
    }
    let (mut summary, commands) = match sql::top_level(false, || pass(job)) {
        Ok(r) => r,
        Err(c) => c.raise(),
    };
    let mut outcomes = vec![];
    for c in &commands {
        let started = std::time::Instant::now();
        let r = run_as_owner_outside_transaction(pg_sys::Oid::from(c.owner), &c.command);
        if let Err(e) = &r {
            if e.is_cancel() {
                e.raise();
            }
        }
        outcomes.push((c.clone(), r.err(), started.elapsed().as_secs_f64() * 1000.0));
    }
    if !outcomes.is_empty() {
        let recorded = sql::top_level(false, || record_maintenance(job, &outcomes));
        summary["maintenance"] = match recorded {
            Ok(v) => v,
            Err(c) => json!({ "error": c.message }),
        };
        let failed = outcomes.iter().filter(|(_, e, _)| e.is_some()).count();
        summary["message"] = json!(format!("{} maintenance command(s) run, {failed} failed", outcomes.len()));
    }
    summary
}

/// Run `command` (a statement that may not run in a transaction block) as `owner`, the way a
/// client runs it, security-restricted; the identity is restored whatever happens (an ERROR's
/// abort restores the identity the transaction started with, which is `owner`'s: restored after).
fn run_as_owner_outside_transaction(owner: pg_sys::Oid, command: &str) -> std::result::Result<(), Caught> {
    let (mut user, mut sec) = (pg_sys::InvalidOid, 0i32);
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut sec) };
    let r = sql::top_level(true, || unsafe {
        pg_sys::SetUserIdAndSecContext(
            owner,
            sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
        sql::exec_as_client(command);
    });
    unsafe { pg_sys::SetUserIdAndSecContext(user, sec) };
    r
}

fn record_maintenance(job: &Job, outcomes: &[(Command, Option<Caught>, f64)]) -> Value {
    let mut per_table: HashMap<i64, Vec<Value>> = HashMap::new();
    for (c, e, ms) in outcomes {
        per_table.entry(c.relid).or_default().push(json!({
            "command": c.command, "status": if e.is_some() { "failed" } else { "succeeded" },
            "sqlstate": e.as_ref().map(|e| e.sqlstate.clone()), "message": e.as_ref().map(|e| e.message.clone()),
            "duration_ms": ms.round(),
        }));
    }
    let mut all = vec![];
    for (relid, actions) in per_table {
        let table = outcomes.iter().find(|(c, _, _)| c.relid == relid).map(|(c, _, _)| c.table.clone()).unwrap_or_default();
        let failed: Vec<&Value> = actions.iter().filter(|a| a["status"] == "failed").collect();
        let key = format!("maintenance_failed:{}:{relid}", job.job_id);
        if failed.is_empty() {
            alerts::resolve(&key);
        } else {
            alerts::raise_health(alerts::Health {
                source_kind: "table_health",
                source_name: &table,
                severity: "medium",
                target: Some(&table),
                payload: json!({ "problem": "maintenance failed", "failed": failed, "job_id": job.job_id }),
                dedup_key: &key,
                owner: job.owner_oid(),
                job_id: Some(job.job_id),
                check_id: None,
            });
        }
        sql::as_catalog_owner(|| {
            sql::exec(
                "UPDATE pgmart.maintained_table SET last_maintained_at = pg_catalog.clock_timestamp(), \
                        last_actions = coalesce(last_actions, '{}'::pg_catalog.jsonb) OPERATOR(pg_catalog.||) \
                                       pg_catalog.jsonb_build_object('commands'::pg_catalog.text, $2::pg_catalog.jsonb) \
                  WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid",
                &[relid.into(), pgrx::JsonB(json!(actions)).into()],
            )
        });
        all.push(json!({ "table": table, "commands": actions }));
    }
    json!(all)
}

fn rank(status: &str) -> u8 {
    match status {
        "fail" => 2,
        "warn" => 1,
        _ => 0,
    }
}

/// The transactional part of a run, as the job's owner: alerts, ANALYZE of partitioned tables,
/// tuning of maintained tables, query samples; returns a summary and the commands that need their
/// own transaction.
fn pass(job: &Job) -> (Value, Vec<Command>) {
    let job_owner = job.owner_oid();
    let rows = health_rows();
    let level = if job.config.get("alert_level").and_then(|v| v.as_str()) == Some("warn") { 1 } else { 2 };

    // Alerts: one per table or index at or past the level, resolved when it is healthy again.
    let prefix = format!("table_health:{}:", job.job_id);
    let mut keys = vec![];
    for r in rows.iter().filter(|r| rank(&r.status) >= level) {
        let key = format!("{prefix}{}", r.key());
        alerts::raise_health(alerts::Health {
            source_kind: "table_health",
            source_name: &r.name,
            severity: if r.status == "fail" { "high" } else { "medium" },
            target: Some(&r.table_name),
            payload: json!({ "status": r.status, "kind": r.kind, "problems": r.problems, "reason": r.reason,
                             "suggestion": r.suggestion, "job_id": job.job_id }),
            dedup_key: &key,
            owner: job_owner,
            job_id: Some(job.job_id),
            check_id: None,
        });
        keys.push(key);
    }
    let resolved = sql::as_catalog_owner(|| {
        sql::exec_count(
            "UPDATE pgmart.alert SET resolved_at = pg_catalog.clock_timestamp() \
              WHERE job_id OPERATOR(pg_catalog.=) $1 AND dedup_key OPERATOR(pg_catalog.^@) $2 \
                AND dedup_key OPERATOR(pg_catalog.<>) ALL ($3::pg_catalog.text[]) AND acked_at IS NULL AND resolved_at IS NULL",
            &[job.job_id.into(), prefix.as_str().into(), keys.clone().into()],
        )
    });

    // Partitioned tables whose partitions changed (autovacuum never analyzes them), as their owner.
    let mut analyzed = vec![];
    let mut not_analyzed = vec![];
    for r in rows.iter().filter(|r| r.kind == "partitioned table" && (r.has("never_analyzed") || r.has("stale_statistics"))) {
        let owner = pg_sys::Oid::from(r.owner as u32);
        if !sql::may_act_as(job_owner, owner) {
            not_analyzed.push(json!({ "table": r.name, "why": "the job's owner may not act as its owner" }));
            continue;
        }
        let statement = format!("{} {}", crate::compat::ANALYZE_PARENT, r.name);
        match sql::subtransaction(|| sql::as_role(owner, || sql::exec(&statement, &[]))) {
            Ok(()) => analyzed.push(json!(r.name)),
            Err(c) => not_analyzed.push(json!({ "table": r.name, "why": c.message })),
        }
    }

    // Maintained tables: tuning now, VACUUM and REINDEX CONCURRENTLY for the runner.
    let mut commands = vec![];
    let mut tuned = vec![];
    let mut not_maintained = vec![];
    let by_table: HashMap<i64, &HealthRow> = rows.iter().filter(|r| r.index.is_none()).map(|r| (r.relid, r)).collect();
    for m in load_maintained(None) {
        let owner = sql::one::<i64>(
            "SELECT relowner::pg_catalog.int8 FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid",
            &[m.relid.into()],
        );
        let Some(owner) = owner.map(|o| pg_sys::Oid::from(o as u32)) else { continue };
        if !sql::may_act_as(job_owner, owner) {
            // Another team's table: its owner's own health job (or an administrator's) maintains it.
            continue;
        }
        if let Some(t) = by_table.get(&m.relid) {
            if m.autovacuum_tuning {
                let suggested = plan::parse_settings(&t.suggested_settings);
                if !suggested.is_empty() {
                    let oid = pg_sys::Oid::from(m.relid as u32);
                    let recorded = m.tuned.as_object().cloned().unwrap_or_default();
                    let (set, record) = plan::tune(&suggested, &reloptions(oid), &recorded);
                    if let Some(statement) = plan::alter_set(&t.name, &set) {
                        match sql::subtransaction(|| sql::as_role(owner, || sql::exec(&statement, &[]))) {
                            Ok(()) => {
                                sql::as_catalog_owner(|| {
                                    sql::exec(
                                        "UPDATE pgmart.maintained_table SET tuned = $2 WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.oid",
                                        &[m.relid.into(), pgrx::JsonB(Value::Object(record)).into()],
                                    )
                                });
                                tuned.push(json!({ "table": t.name, "statement": statement }));
                            }
                            Err(c) => not_maintained.push(json!({ "table": t.name, "statement": statement, "error": c.message })),
                        }
                    }
                }
            }
            if m.vacuum && t.has("dead_tuples") {
                commands.push(Command { relid: m.relid, owner: u32::from(owner), table: t.name.clone(), command: format!("VACUUM (ANALYZE) {}", t.name) });
            }
        }
        if m.reindex_bloated {
            for i in rows.iter().filter(|r| r.relid == m.relid && r.index.is_some()) {
                if i.has("index_bloat") && !i.has("duplicate_index") && !i.has("unused_index") {
                    commands.push(Command {
                        relid: m.relid,
                        owner: u32::from(owner),
                        table: i.table_name.clone(),
                        command: format!("REINDEX INDEX CONCURRENTLY {}", i.name),
                    });
                }
            }
        }
    }

    let queries = sample_statements(job);
    let summary = json!({
        "problems": rows.iter().filter(|r| r.status != "ok").count(),
        "fail": rows.iter().filter(|r| r.status == "fail").count(),
        "alerts_resolved": resolved,
        "analyzed": analyzed,
        "not_analyzed": not_analyzed,
        "tuned": tuned,
        "tuning_failed": not_maintained,
        "queries": queries,
        "message": format!("{} problem(s), {} partitioned table(s) analyzed", rows.iter().filter(|r| r.status != "ok").count(), analyzed.len()),
    });
    (summary, commands)
}

// ---------------------------------------------------------------------------------------------
// pg_stat_statements

/// One statement as pg_stat_statements shows it to the reader.
#[derive(Deserialize, Serialize, Clone, Debug)]
pub struct Stmt {
    pub dashboard: Option<String>,
    pub userid: i64,
    pub role: Option<String>,
    pub queryid: i64,
    pub toplevel: bool,
    pub query: Option<String>,
    pub calls: i64,
    pub total_ms: f64,
    pub rows: i64,
    pub blks_read: i64,
}

pub struct QueryHealth {
    pub stmt: Stmt,
    pub verdict: Verdict,
}

/// The schema of pg_stat_statements in this database, quoted (None: not installed).
fn pss_schema() -> Option<String> {
    sql::one::<String>(
        "SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text) FROM pg_catalog.pg_extension e \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace \
          WHERE e.extname OPERATOR(pg_catalog.=) 'pg_stat_statements'",
        &[],
    )
}

/// The dashboards' statements and the slowest others, as the current user sees them.
fn statements(pss: &str) -> Vec<Stmt> {
    let has_dashboards = sql::one::<bool>("SELECT pg_catalog.to_regclass('pgmart.dashboards') IS NOT NULL", &[]) == Some(true);
    let dashboards = if has_dashboards {
        "SELECT d.name::pg_catalog.text AS name, d.query_pattern::pg_catalog.text AS query_pattern \
           FROM pgmart.dashboards d WHERE d.query_pattern IS NOT NULL"
    } else {
        "SELECT NULL::pg_catalog.text AS name, NULL::pg_catalog.text AS query_pattern WHERE false"
    };
    let top = guc::QUERY_HEALTH_TOP.get() as i64;
    sql::rows::<Stmt>(
        &format!(
            "WITH c AS ( \
                SELECT s.userid, s.queryid, s.toplevel, s.query, s.calls, s.total_exec_time AS total_ms, s.rows, \
                       s.shared_blks_read AS blks_read \
                  FROM {pss}.pg_stat_statements(true) s \
                 WHERE s.dbid OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d \
                                                       WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
                   AND s.queryid IS NOT NULL \
                   AND (pg_catalog.pg_has_role(s.userid, 'USAGE'::pg_catalog.text) \
                        OR pg_catalog.pg_has_role('pg_read_all_stats'::pg_catalog.name, 'USAGE'::pg_catalog.text))), \
             d AS ({dashboards}), \
             m AS (SELECT d.name AS dashboard, c.* FROM c JOIN d ON c.query OPERATOR(pg_catalog.~*) d.query_pattern), \
             t AS (SELECT NULL::pg_catalog.text AS dashboard, c.* FROM c \
                    WHERE NOT EXISTS (SELECT FROM m WHERE m.userid OPERATOR(pg_catalog.=) c.userid \
                                        AND m.queryid OPERATOR(pg_catalog.=) c.queryid AND m.toplevel OPERATOR(pg_catalog.=) c.toplevel) \
                    ORDER BY c.total_ms DESC LIMIT $1) \
             SELECT x.dashboard, x.userid::pg_catalog.int8 AS userid, pg_catalog.pg_get_userbyid(x.userid)::pg_catalog.text AS role, \
                    x.queryid, x.toplevel, x.query, x.calls, x.total_ms, x.rows, x.blks_read \
               FROM (SELECT * FROM m UNION ALL SELECT * FROM t) x \
              ORDER BY x.dashboard NULLS LAST, x.total_ms DESC"
        ),
        &[top.into()],
    )
}

/// The samples of these statements, oldest first, by (userid, queryid, toplevel).
fn samples(stmts: &[Stmt]) -> HashMap<(i64, i64, bool), Vec<Sample>> {
    #[derive(Deserialize)]
    struct Row {
        userid: i64,
        queryid: i64,
        toplevel: bool,
        at: f64,
        calls: i64,
        total_ms: f64,
    }
    let keys: Vec<Value> = stmts.iter().map(|s| json!({"userid": s.userid, "queryid": s.queryid, "toplevel": s.toplevel})).collect();
    let rows = sql::as_catalog_owner(|| {
        sql::rows::<Row>(
            "SELECT q.userid::pg_catalog.int8 AS userid, q.queryid, q.toplevel, \
                    EXTRACT(epoch FROM q.sampled_at)::double precision AS at, q.calls, q.total_ms \
               FROM pgmart.query_sample q \
               JOIN (SELECT DISTINCT * FROM pg_catalog.jsonb_to_recordset($1) AS k(userid bigint, queryid bigint, toplevel boolean)) k \
                 ON q.userid OPERATOR(pg_catalog.=) k.userid::pg_catalog.oid AND q.queryid OPERATOR(pg_catalog.=) k.queryid \
                AND q.toplevel OPERATOR(pg_catalog.=) k.toplevel \
              ORDER BY q.userid, q.queryid, q.toplevel, q.sampled_at",
            &[pgrx::JsonB(json!(keys)).into()],
        )
    });
    let mut map: HashMap<(i64, i64, bool), Vec<Sample>> = HashMap::new();
    for r in rows {
        map.entry((r.userid, r.queryid, r.toplevel)).or_default().push(Sample { at: r.at, calls: r.calls, total_ms: r.total_ms });
    }
    map
}

pub fn rules() -> Rules {
    Rules {
        ratio: guc::QUERY_REGRESSION_RATIO.get(),
        min_ms: guc::QUERY_REGRESSION_MIN_MS.get(),
        min_calls: guc::QUERY_REGRESSION_MIN_CALLS.get() as i64,
        spread_k: 3.0,
    }
}

thread_local! {
    static TOLD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn tell_once(message: &str) {
    if !TOLD.with(|t| t.replace(true)) {
        notice!("{message}");
    }
}

/// `pgmart.query_health` for the caller: empty (with a NOTICE once per session) without
/// pg_stat_statements.
pub fn query_health() -> Vec<QueryHealth> {
    let Some(pss) = sql::pinned(pss_schema) else {
        tell_once("pgmart.query_health is empty: pg_stat_statements is not installed in this database (CREATE EXTENSION pg_stat_statements, with pg_stat_statements in shared_preload_libraries)");
        return vec![];
    };
    let stmts = match sql::subtransaction(|| statements(&pss)) {
        Ok(s) => s,
        Err(c) => {
            tell_once(&format!("pgmart.query_health is empty: {}", c.message));
            return vec![];
        }
    };
    let samples = samples(&stmts);
    let rules = rules();
    stmts
        .into_iter()
        .map(|s| {
            let verdict = plan::judge(samples.get(&(s.userid, s.queryid, s.toplevel)).map(Vec::as_slice).unwrap_or(&[]), &rules);
            QueryHealth { stmt: s, verdict }
        })
        .collect()
}

/// The job's sample of pg_stat_statements (as its owner sees it), and the regression alerts of
/// dashboards' statements.
fn sample_statements(job: &Job) -> Value {
    let Some(pss) = pss_schema() else { return json!("pg_stat_statements is not installed") };
    let stmts = match sql::subtransaction(|| statements(&pss)) {
        Ok(s) => s,
        Err(c) => return json!({ "error": c.message }),
    };
    sql::as_catalog_owner(|| {
        sql::exec(
            "INSERT INTO pgmart.query_sample (sampled_at, userid, queryid, toplevel, calls, total_ms, rows, blks_read, dashboard) \
             SELECT DISTINCT ON (x.userid, x.queryid, x.toplevel) pg_catalog.clock_timestamp(), x.userid::pg_catalog.oid, x.queryid, \
                    x.toplevel, x.calls, x.total_ms, x.rows, x.blks_read, x.dashboard \
               FROM pg_catalog.jsonb_to_recordset($1) AS x(userid bigint, queryid bigint, toplevel boolean, calls bigint, \
                                                          total_ms double precision, rows bigint, blks_read bigint, dashboard text) \
              ORDER BY x.userid, x.queryid, x.toplevel, x.dashboard NULLS LAST",
            &[pgrx::JsonB(json!(stmts)).into()],
        )
    });
    let samples = samples(&stmts);
    let rules = rules();
    let mut regressed = vec![];
    for s in stmts.iter().filter(|s| s.dashboard.is_some()) {
        let dashboard = s.dashboard.as_deref().unwrap_or_default();
        let v = plan::judge(samples.get(&(s.userid, s.queryid, s.toplevel)).map(Vec::as_slice).unwrap_or(&[]), &rules);
        let key = format!("query_regressed:{}:{dashboard}:{}:{}", job.job_id, s.userid, s.queryid);
        if v.regressed {
            alerts::raise_health(alerts::Health {
                source_kind: "dashboard",
                source_name: dashboard,
                severity: "medium",
                target: Some(dashboard),
                payload: json!({ "problem": "query regressed", "queryid": s.queryid, "role": s.role,
                                 "recent_mean_ms": v.recent_mean_ms, "baseline_mean_ms": v.baseline_mean_ms,
                                 "reason": v.reason, "job_id": job.job_id }),
                dedup_key: &key,
                owner: job.owner_oid(),
                job_id: Some(job.job_id),
                check_id: None,
            });
            regressed.push(json!({ "dashboard": dashboard, "queryid": s.queryid }));
        } else if v.recent_calls.is_some() {
            alerts::resolve(&key);
        }
    }
    json!({ "sampled": stmts.len(), "regressed": regressed })
}
