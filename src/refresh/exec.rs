//! Runs refresh plans through SPI: reads the dependency graph from pg_depend/pg_rewrite, refreshes
//! views (each in its own subtransaction), records history, keeps `pgmart.refresh_view` current,
//! raises alerts, and runs the `refresh` job kind.

use super::plan::{self, Id, Method};
use crate::error::PgMartError;
use crate::jobs::engine::Job;
use crate::sql;
use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The approximate period of a schedule (it lives with the job engine).
pub use crate::jobs::engine::approx_period;

/// A materialized view as the catalog describes it now.
#[derive(Debug, Clone, Deserialize)]
pub struct ViewInfo {
    pub oid: Id,
    pub qname: String,
    pub populated: bool,
    pub owner: u32,
    pub has_unique: bool,
    pub relkind: String,
}

pub fn view_info(oid: Id) -> Option<ViewInfo> {
    sql::row::<ViewInfo>(
        "SELECT c.oid::pg_catalog.int8 AS oid, \
                pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' \
                OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::pg_catalog.text) AS qname, \
                c.relispopulated AS populated, c.relowner::pg_catalog.int8 AS owner, \
                c.relkind::pg_catalog.text AS relkind, \
                EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
                         WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND i.indisunique AND i.indisvalid AND i.indimmediate \
                           AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnatts OPERATOR(pg_catalog.>) 0) AS has_unique \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid",
        &[oid.into()],
    )
}

/// A registered view with its job's state.
#[derive(Debug, Clone, Deserialize)]
pub struct Registered {
    pub job_id: i64,
    pub view_oid: Id,
    pub view_name: String,
    pub concurrently: Option<bool>,
    pub slo_s: Option<f64>,
    pub period_s: f64,
    /// The job's owner (its anchor's owner; 0 when gone).
    pub owner: u32,
    pub last_epoch: Option<f64>,
    pub enabled: bool,
    pub running: bool,
    pub next_in_s: Option<f64>,
    pub exists: bool,
    /// Refreshed right after a scheduled upstream view (false: only on its own schedule).
    pub cascade: bool,
}

const REGISTERED: &str = "SELECT r.job_id, r.view::pg_catalog.oid::pg_catalog.int8 AS view_oid, r.view_name, \
        r.use_concurrently AS concurrently, EXTRACT(epoch FROM r.freshness_slo)::double precision AS slo_s, r.period_s, \
        coalesce(a.relowner, 0::pg_catalog.oid)::pg_catalog.int8 AS owner, \
        EXTRACT(epoch FROM r.last_refreshed_at)::double precision AS last_epoch, j.enabled, \
        j.running_pid IS NOT NULL AS running, \
        EXTRACT(epoch FROM j.next_run_at OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp())::double precision AS next_in_s, \
        EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) r.view \
                   AND c.relkind OPERATOR(pg_catalog.=) 'm') AS exists, r.after_upstream AS cascade \
   FROM pgmart.refresh_view r JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) r.job_id \
   LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor";

pub fn all_registered() -> Vec<Registered> {
    sql::as_catalog_owner(|| sql::rows::<Registered>(REGISTERED, &[]))
}

pub fn registered_by_job(job_id: i64) -> Option<Registered> {
    sql::as_catalog_owner(|| {
        sql::row::<Registered>(&format!("{REGISTERED} WHERE r.job_id OPERATOR(pg_catalog.=) $1"), &[job_id.into()])
    })
}

pub fn registered_by_view(oid: Id) -> Option<Registered> {
    sql::as_catalog_owner(|| {
        sql::row::<Registered>(
            &format!("{REGISTERED} WHERE r.view OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid"),
            &[oid.into()],
        )
    })
}

#[derive(Deserialize)]
struct Edge {
    upstream: Id,
    downstream: Id,
}

/// Which materialized views read which: `(upstream, downstream)`, through plain views, from the
/// rewrite rules' dependencies.
pub fn edges() -> Vec<(Id, Id)> {
    sql::rows::<Edge>(
        "WITH RECURSIVE reads(mv, rel) AS ( \
             SELECT r.ev_class, d.refobjid \
               FROM pg_catalog.pg_rewrite r \
               JOIN pg_catalog.pg_class m ON m.oid = r.ev_class AND m.relkind = 'm' \
               JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
                                          AND d.refclassid = 'pg_catalog.pg_class'::regclass \
              WHERE d.refobjid <> r.ev_class \
             UNION \
             SELECT reads.mv, d.refobjid \
               FROM reads \
               JOIN pg_catalog.pg_class v ON v.oid = reads.rel AND v.relkind = 'v' \
               JOIN pg_catalog.pg_rewrite r ON r.ev_class = v.oid \
               JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
                                          AND d.refclassid = 'pg_catalog.pg_class'::regclass \
              WHERE d.refobjid <> r.ev_class) \
         SELECT DISTINCT reads.rel::int8 AS upstream, reads.mv::int8 AS downstream \
           FROM reads JOIN pg_catalog.pg_class c ON c.oid = reads.rel AND c.relkind = 'm' \
          WHERE reads.rel <> reads.mv",
        &[],
    )
    .into_iter()
    .map(|e| (e.upstream, e.downstream))
    .collect()
}

/// One refresh's outcome (a row of `refresh_history` and of `refresh_now()`).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub view_oid: Id,
    pub view_name: String,
    pub job_id: Option<i64>,
    pub triggered_by: String,
    pub started_epoch: f64,
    pub finished_epoch: f64,
    pub duration_ms: f64,
    pub rows_after: Option<i64>,
    pub method: Option<Method>,
    pub status: &'static str,
    pub sqlstate: Option<String>,
    pub error: Option<String>,
}

/// A refresh's alert.
struct Alert {
    view: String,
    severity: &'static str,
    payload: Value,
    key: String,
    owner: pg_sys::Oid,
    job_id: Option<i64>,
}

fn raise(a: Alert) {
    crate::alerts::raise_health(crate::alerts::Health {
        source_kind: "refresh",
        source_name: &a.view,
        severity: a.severity,
        target: Some(&a.view),
        payload: a.payload,
        dedup_key: &a.key,
        owner: a.owner,
        job_id: a.job_id,
        check_id: None,
    });
}

fn now_epoch() -> f64 {
    sql::one::<f64>("SELECT EXTRACT(epoch FROM pg_catalog.clock_timestamp())::double precision", &[]).unwrap_or(0.0)
}

/// Insert the history row and, for a registered view, update its last refresh state.
pub fn record(o: &Outcome) {
    let owner = o.job_id.and_then(|j| registered_by_job(j)).map(|r| r.owner).filter(|&o| o != 0);
    sql::as_catalog_owner(|| {
        sql::exec(
            "INSERT INTO pgmart.refresh_history (view_oid, view_name, job_id, triggered_by, started_at, finished_at, \
                    duration_ms, rows_after, method, status, sqlstate, error, run_by, owner) \
             VALUES ($1::pg_catalog.int8::pg_catalog.oid, $2, $3, $4, pg_catalog.to_timestamp($5), pg_catalog.to_timestamp($12), \
                     pg_catalog.round($6::pg_catalog.numeric, 3), $7, $8, $9, $10, $11, SESSION_USER, \
                     coalesce($13::pg_catalog.int8::pg_catalog.oid, \
                              (SELECT c.relowner FROM pg_catalog.pg_class c \
                                WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid)))",
            &[
                o.view_oid.into(),
                o.view_name.as_str().into(),
                o.job_id.into(),
                o.triggered_by.as_str().into(),
                o.started_epoch.into(),
                o.duration_ms.into(),
                o.rows_after.into(),
                o.method.map(|m| m.as_str()).into(),
                o.status.into(),
                o.sqlstate.clone().into(),
                o.error.clone().into(),
                o.finished_epoch.into(),
                owner.map(|o| o as i64).into(),
            ],
        );
        if o.status != "skipped" {
            sql::exec(
                "UPDATE pgmart.refresh_view SET last_status = $2, last_method = coalesce($3, last_method), \
                        last_refreshed_at = CASE WHEN $2 OPERATOR(pg_catalog.=) 'succeeded' \
                            THEN pg_catalog.to_timestamp($4) ELSE last_refreshed_at END \
                  WHERE view OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid",
                &[
                    o.view_oid.into(),
                    o.status.into(),
                    o.method.map(|m| m.as_str()).into(),
                    o.started_epoch.into(),
                ],
            );
        }
    });
    if o.status == "succeeded" {
        // Fresh again: a failed or stale alert of this view is resolved.
        crate::alerts::resolve(&format!("refresh_failed:{}", o.view_oid));
        crate::alerts::resolve(&format!("refresh_stale:{}", o.view_oid));
    }
}

/// Refresh one view now (in its own subtransaction) and describe what happened. Records nothing.
pub fn refresh_one(oid: Id, requested: Option<bool>, triggered_by: &str, job_id: Option<i64>) -> Outcome {
    let started_epoch = now_epoch();
    let t0 = std::time::Instant::now();
    let mut o = Outcome {
        view_oid: oid,
        view_name: String::new(),
        job_id,
        triggered_by: triggered_by.to_string(),
        started_epoch,
        finished_epoch: started_epoch,
        duration_ms: 0.0,
        rows_after: None,
        method: None,
        status: "failed",
        sqlstate: None,
        error: None,
    };
    let info = match view_info(oid) {
        Some(i) if i.relkind == "m" => i,
        _ => {
            o.view_name = registered_by_view(oid).map(|r| r.view_name).unwrap_or_else(|| oid.to_string());
            o.sqlstate = Some("42P01".into());
            o.error = Some("the materialized view no longer exists".into());
            return o;
        }
    };
    o.view_name = info.qname.clone();
    let me = sql::caller();
    if !sql::may_act_as(me, pg_sys::Oid::from(info.owner)) {
        o.status = "skipped";
        o.sqlstate = Some("42501".into());
        o.error = Some(format!("{} may not refresh {}: it may not act as the view's owner", sql::role_name(me), info.qname));
        return o;
    }
    let method = match plan::choose_method(requested, info.populated, info.has_unique, &info.qname) {
        Ok(m) => m,
        Err(e) => {
            o.sqlstate = Some(crate::error::sqlstate_text(e.code));
            o.error = Some(e.message);
            o.duration_ms = t0.elapsed().as_secs_f64() * 1000.0;
            return o;
        }
    };
    o.method = Some(method);
    let stmt = plan::refresh_sql(&info.qname, method);
    // As the view's owner (REFRESH then runs the view's query as that owner, restricted, itself);
    // not security-restricted around it, since CONCURRENTLY needs a temporary table.
    let r = sql::subtransaction(|| {
        sql::as_role_unrestricted(pg_sys::Oid::from(info.owner), || {
            sql::exec(&stmt, &[]);
            sql::one::<i64>(&format!("SELECT pg_catalog.count(*) FROM {}", info.qname), &[])
        })
    });
    o.duration_ms = t0.elapsed().as_secs_f64() * 1000.0;
    o.finished_epoch = now_epoch();
    match r {
        Ok(rows) => {
            o.status = "succeeded";
            o.rows_after = rows;
        }
        Err(c) => {
            o.sqlstate = Some(c.sqlstate);
            o.error = Some(c.message);
        }
    }
    o
}

fn failed_alert(o: &Outcome, owner: u32) -> Alert {
    Alert {
        view: o.view_name.clone(),
        severity: "high",
        payload: json!({
            "problem": "refresh failed", "view": o.view_name, "triggered_by": o.triggered_by,
            "sqlstate": o.sqlstate, "error": o.error,
        }),
        key: format!("refresh_failed:{}", o.view_oid),
        owner: pg_sys::Oid::from(owner),
        job_id: o.job_id,
    }
}

/// The dependency edges chains follow: none into a view scheduled with `cascade => false` (it, and
/// what is below it only through it, refresh on their own schedules).
fn chain_edges(edges: &[(Id, Id)], regs: &[Registered]) -> Vec<(Id, Id)> {
    let opted_out: BTreeSet<Id> = regs.iter().filter(|r| !r.cascade).map(|r| r.view_oid).collect();
    edges.iter().copied().filter(|(_, d)| !opted_out.contains(d)).collect()
}

/// Refresh the scheduled views downstream of `root`, in order, each once; record each.
fn refresh_downstream(root: Id, root_name: &str, edges: &[(Id, Id)]) -> Vec<Outcome> {
    let regs = all_registered();
    let scheduled: BTreeSet<Id> = regs.iter().filter(|r| r.exists && r.enabled).map(|r| r.view_oid).collect();
    let order = plan::refresh_order(&chain_edges(edges, &regs), &[root], &scheduled);
    let mut out = vec![];
    for v in order.into_iter().filter(|&v| v != root) {
        let reg = regs.iter().find(|r| r.view_oid == v).expect("scheduled");
        let o = refresh_one(v, reg.concurrently, &format!("after {root_name}"), Some(reg.job_id));
        record(&o);
        if o.status == "failed" {
            raise(failed_alert(&o, reg.owner));
        }
        out.push(o);
    }
    out
}

/// `pgmart.refresh_now(view)`: refresh the view, then its scheduled downstream views.
pub fn refresh_now(oid: Id) -> Vec<Outcome> {
    let reg = registered_by_view(oid);
    let o = refresh_one(oid, reg.as_ref().and_then(|r| r.concurrently), "refresh_now", reg.as_ref().map(|r| r.job_id));
    record(&o);
    let ok = o.status == "succeeded";
    let name = o.view_name.clone();
    if let (true, Some(r)) = (o.status == "failed", &reg) {
        raise(failed_alert(&o, r.owner));
    }
    let mut out = vec![o];
    if ok {
        out.extend(refresh_downstream(oid, &name, &edges()));
    }
    out
}

fn raise_again(o: &Outcome) -> ! {
    let code = o
        .sqlstate
        .as_deref()
        .map(crate::error::sqlstate_code)
        .unwrap_or(pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
    PgMartError::new(code, format!("refresh of {} failed: {}", o.view_name, o.error.clone().unwrap_or_default())).raise()
}

/// The `refresh` job kind.
pub struct Refresh;

impl crate::jobs::kinds::JobKind for Refresh {
    fn name(&self) -> &'static str {
        "refresh"
    }
    fn run(&self, job: &Job) -> Value {
        run_job(job)
    }
    fn target_gone(&self, job: &Job) -> bool {
        registered_by_job(job.job_id).map(|r| !r.exists).unwrap_or(true)
    }
    fn drop_hint(&self) -> Option<&'static str> {
        Some("Use pgmart.unschedule_refresh().")
    }
    fn history(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        &[("pgmart.refresh_history", "started_at", "true")]
    }
}

/// Its view was re-created under its name (see `crate::follow`): the job names it again, and a job
/// disabled because the view was gone runs again (its alert resolved).
pub fn moved(id: &str, _old: u32, _new: u32, name: &str) -> std::result::Result<(), String> {
    let job_id: i64 = id.parse().map_err(|_| format!("no refresh job {id}"))?;
    renamed(id, name);
    sql::exec(
        "UPDATE pgmart.job SET enabled = true, consecutive_failures = 0 \
          WHERE job_id OPERATOR(pg_catalog.=) $1 AND NOT enabled \
            AND EXISTS (SELECT 1 FROM pgmart.refresh_view v WHERE v.job_id OPERATOR(pg_catalog.=) $1 \
                           AND v.last_status OPERATOR(pg_catalog.=) 'dropped')",
        &[job_id.into()],
    );
    sql::exec(
        "UPDATE pgmart.refresh_view SET last_status = NULL \
          WHERE job_id OPERATOR(pg_catalog.=) $1 AND last_status OPERATOR(pg_catalog.=) 'dropped'",
        &[job_id.into()],
    );
    crate::alerts::resolve(&format!("refresh_dropped:{job_id}"));
    Ok(())
}

/// Its view has a new name: so has its job.
pub fn renamed(id: &str, name: &str) {
    let Ok(job_id) = id.parse::<i64>() else { return };
    sql::as_catalog_owner(|| {
        sql::exec(
            "UPDATE pgmart.job SET target = $2, config = config OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('view', $2) \
              WHERE job_id OPERATOR(pg_catalog.=) $1",
            &[job_id.into(), name.into()],
        )
    });
}

/// The view is gone (dropped; rebuilt views are taken back by `crate::follow` as soon as they are
/// created): the run is `skipped`, the job stays scheduled, and once the view has been missing for
/// longer than it may be stale (its SLO, else two periods) an alert says so.
fn view_missing(job: &Job, reg: &Registered) -> Value {
    let since = crate::jobs::history::skipped_since(job.job_id);
    let missing_s = since.as_ref().map_or(0.0, |s| s.seconds);
    let allowance = reg.slo_s.unwrap_or(2.0 * reg.period_s);
    sql::as_catalog_owner(|| {
        sql::exec(
            "UPDATE pgmart.refresh_view SET last_status = 'dropped' WHERE job_id OPERATOR(pg_catalog.=) $1",
            &[job.job_id.into()],
        );
    });
    if missing_s > allowance {
        crate::alerts::raise_health(crate::alerts::Health {
            source_kind: "refresh",
            source_name: &reg.view_name,
            severity: "medium",
            target: Some(&reg.view_name),
            payload: json!({ "problem": "materialized view missing", "view": reg.view_name,
                             "missing_since": since.and_then(|s| s.since), "job_id": job.job_id }),
            dedup_key: &format!("refresh_dropped:{}", job.job_id),
            owner: job.owner_oid(),
            job_id: Some(job.job_id),
            check_id: None,
        });
    }
    json!({ "skipped": true,
            "message": format!("materialized view {} does not exist; the job runs again when one of that name is created", reg.view_name) })
}

/// Run a refresh job, as its owner.
pub fn run_job(job: &Job) -> Value {
    let Some(reg) = registered_by_job(job.job_id) else {
        PgMartError::undefined_object(format!("job {} has no registered materialized view", job.job_id)).raise()
    };
    if !reg.exists {
        return view_missing(job, &reg);
    }
    let all_edges = edges();
    // Upstream first: if a scheduled upstream view is due too (or within a moment, or refreshing
    // now), its run refreshes this view after it; do not refresh it before (or twice).
    let regs = all_registered();
    let ancestors = plan::ancestors(&chain_edges(&all_edges, &regs), reg.view_oid);
    if !ancestors.is_empty() {
        let me = job.owner_oid();
        let grace = plan::defer_window_s(reg.period_s);
        if let Some(up) = regs.into_iter().find(|r| {
            r.job_id != reg.job_id
                && ancestors.contains(&r.view_oid)
                && r.exists
                && r.enabled
                && (r.running || r.next_in_s.is_some_and(|s| s <= grace))
                && r.owner != 0
                && sql::may_act_as(me, pg_sys::Oid::from(r.owner))
        }) {
            return json!({"message": format!("deferred: upstream {} is due and refreshes {} after it", up.view_name, reg.view_name),
                          "deferred_to": up.job_id});
        }
    }
    // Already refreshed since this run fell due (by an upstream chain or refresh_now): done.
    if let (Some(last), Some(due)) = (reg.last_epoch, job.next_run_epoch) {
        if last >= due {
            return json!({"message": format!("{} was already refreshed after this run fell due", reg.view_name)});
        }
    }
    let stale = {
        let age = now_epoch() - reg.last_epoch.unwrap_or(f64::NAN);
        (!age.is_nan() && plan::is_stale(age, reg.slo_s, reg.period_s)).then(|| Alert {
            view: reg.view_name.clone(),
            severity: "medium",
            payload: json!({"problem": "stale", "view": reg.view_name, "age_s": age,
                            "slo_s": reg.slo_s, "period_s": reg.period_s}),
            key: format!("refresh_stale:{}", reg.view_oid),
            owner: job.owner_oid(),
            job_id: Some(job.job_id),
        })
    };
    let o = refresh_one(reg.view_oid, reg.concurrently, "schedule", Some(job.job_id));
    if o.status != "succeeded" {
        // The engine rolls this run back; these writes are made after it.
        let alert = failed_alert(&o, reg.owner);
        let history = o.clone();
        crate::jobs::engine::after_rollback(move || {
            record(&history);
            raise(alert);
            if let Some(s) = stale {
                raise(s);
            }
        });
        raise_again(&o);
    }
    if let Some(s) = stale {
        raise(s);
    }
    record(&o);
    let down = refresh_downstream(reg.view_oid, &o.view_name, &all_edges);
    let mut msg = format!(
        "refreshed {} ({}, {} rows, {:.0} ms)",
        o.view_name,
        o.method.map(|m| m.as_str()).unwrap_or(""),
        o.rows_after.unwrap_or(0),
        o.duration_ms
    );
    if !down.is_empty() {
        let parts: Vec<String> = down.iter().map(|d| format!("{} {}", d.view_name, d.status)).collect();
        msg.push_str(&format!(" then {}", parts.join(", ")));
    }
    json!({
        "message": msg,
        "refreshed": std::iter::once(&o).chain(down.iter())
            .map(|x| json!({"view": x.view_name, "status": x.status, "rows": x.rows_after,
                            "method": x.method.map(|m| m.as_str()), "duration_ms": x.duration_ms}))
            .collect::<Vec<_>>(),
    })
}
