//! Alert rules through SPI: validating a condition by planning it against its table, creating and
//! dropping the rule's triggers, raising a rule alert from the row trigger, the per-statement
//! notification throttle, and acknowledging alerts.

use super::{notify, plan};
use crate::error::{OrRaise, PgMartError};
use crate::guc;
use crate::sql;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{PgList, PgOid, PgSqlErrorCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::ffi::{CStr, CString};

/// The condition, deparsed with every column qualified (`new.col`, `old.col`) for trigger WHENs.
pub struct Condition {
    pub new_expr: String,
    pub old_expr: String,
}

/// Parse and analyse `SELECT (<condition>) FROM <target>` and insist it is exactly one boolean,
/// side-effect-free expression over the target's columns. Unknown columns raise 42703 and syntax
/// errors 42601 from PostgreSQL's own analysis; everything else here is 22023.
pub fn analyze_condition(relid: pg_sys::Oid, qualified_target: &str, condition: &str) -> Condition {
    let bad = |why: &str| {
        PgMartError::invalid(format!("alert rule condition {why}"))
            .detail(format!("condition: {condition}"))
            .hint("Write one boolean expression over the table's columns, e.g. signal_name = 'risk_flag' AND signal_value = 'high'.")
            .raise()
    };
    if condition.trim().is_empty() {
        bad("must not be empty");
    }
    let text = format!("SELECT ({condition}) FROM {qualified_target}");
    let ctext = CString::new(text).unwrap_or_else(|_| bad("must not contain NUL bytes"));
    unsafe {
        let raw = PgList::<pg_sys::RawStmt>::from_pg(pg_sys::pg_parse_query(ctext.as_ptr()));
        if raw.len() != 1 {
            bad("must be a single expression, not several statements");
        }
        let q = pg_sys::parse_analyze_fixedparams(
            raw.get_ptr(0).unwrap(),
            ctext.as_ptr(),
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
        );
        let q = &*q;
        if q.commandType != pg_sys::CmdType::CMD_SELECT || !q.utilityStmt.is_null() {
            bad("must be an expression");
        }
        let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg(q.rtable);
        let only_target = rtable.len() == 1
            && rtable
                .get_ptr(0)
                .map(|r| (*r).rtekind == pg_sys::RTEKind::RTE_RELATION && (*r).relid == relid)
                .unwrap_or(false);
        let targets = PgList::<pg_sys::TargetEntry>::from_pg(q.targetList);
        let plain = q.cteList.is_null()
            && q.groupClause.is_null()
            && q.groupingSets.is_null()
            && q.havingQual.is_null()
            && q.windowClause.is_null()
            && q.distinctClause.is_null()
            && q.sortClause.is_null()
            && q.limitCount.is_null()
            && q.limitOffset.is_null()
            && q.setOperations.is_null()
            && q.rowMarks.is_null()
            && (q.jointree.is_null() || (*q.jointree).quals.is_null());
        if !only_target || targets.len() != 1 || !plain {
            bad("must be one expression over the target table's columns only");
        }
        if q.hasSubLinks {
            bad("must not contain subqueries");
        }
        if q.hasAggs || q.hasWindowFuncs || q.hasTargetSRFs {
            bad("must not use aggregate, window or set-returning functions");
        }
        let expr = (*targets.get_ptr(0).unwrap()).expr as *mut pg_sys::Node;
        if pg_sys::exprType(expr) != pg_sys::BOOLOID {
            bad("is not boolean");
        }
        if pg_sys::contain_volatile_functions(expr) {
            bad("must not call volatile functions (they may have side effects)");
        }
        let deparse = |alias: &CStr| {
            let ctx = pg_sys::deparse_context_for(alias.as_ptr(), relid);
            CStr::from_ptr(pg_sys::deparse_expression(expr, ctx, true, false)).to_string_lossy().into_owned()
        };
        Condition { new_expr: deparse(c"new"), old_expr: deparse(c"old") }
    }
}

#[derive(Deserialize)]
struct Target {
    relkind: String,
    owned: bool,
    qualified: String,
}

pub struct NewRule<'a> {
    pub name: &'a str,
    pub target: pg_sys::Oid,
    pub condition: &'a str,
    pub severity: &'a str,
    pub channel: &'a str,
    pub payload_columns: Option<Vec<String>>,
    pub on_update: bool,
}

pub fn add_rule(r: NewRule) -> i64 {
    plan::check_name(r.name).or_raise();
    plan::check_severity(r.severity).or_raise();
    plan::check_channel(r.channel).or_raise();
    let t: Target = sql::row(
        "SELECT c.relkind::text AS relkind, pg_catalog.pg_has_role(c.relowner, 'USAGE') AS owned, \
                pg_catalog.format('%I.%I', n.nspname, c.relname) AS qualified \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
        &[r.target.into()],
    )
    .unwrap_or_else(|| PgMartError::undefined_table("target table does not exist").raise());
    if t.relkind != "r" && t.relkind != "p" {
        PgMartError::new(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, format!("\"{}\" is not a table", t.qualified))
            .hint("Alert rules watch ordinary or partitioned tables.")
            .raise();
    }
    if !t.owned {
        PgMartError::privilege(format!("must be owner of table {} to add an alert rule on it", t.qualified)).raise();
    }
    if let Some(cols) = &r.payload_columns {
        for c in cols {
            let found = sql::one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attname = $2 \
                                AND attnum > 0 AND NOT attisdropped)",
                &[r.target.into(), c.as_str().into()],
            )
            .unwrap_or(false);
            if !found {
                PgMartError::undefined_column(format!("column \"{c}\" of payload_columns does not exist in {}", t.qualified))
                    .raise();
            }
        }
    }
    let exists = sql::as_catalog_owner(|| {
        sql::one::<bool>("SELECT EXISTS (SELECT 1 FROM pgmart.alert_rules WHERE name = $1)", &[r.name.into()])
    });
    if exists == Some(true) {
        PgMartError::duplicate(format!("alert rule \"{}\" already exists", r.name)).raise();
    }
    let cond = analyze_condition(r.target, &t.qualified, r.condition);
    let owner = sql::current_role();
    let rule_id = sql::as_catalog_owner(|| {
        sql::one::<i64>(
            "INSERT INTO pgmart.alert_rules (name, target, condition, severity, channel, payload_columns, on_update, owner) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING rule_id",
            &[
                r.name.into(),
                t.qualified.as_str().into(),
                r.condition.into(),
                r.severity.into(),
                r.channel.into(),
                r.payload_columns.clone().into(),
                r.on_update.into(),
                owner.as_str().into(),
            ],
        )
    })
    .expect("rule id");
    // The triggers are created as the caller (the table's owner), so PostgreSQL checks it too.
    for ddl in plan::trigger_ddl(rule_id, &t.qualified, &cond.new_expr, &cond.old_expr, r.on_update) {
        sql::exec(&ddl, &[]);
    }
    rule_id
}

#[derive(Deserialize)]
struct RuleRow {
    rule_id: i64,
    owner: String,
}

const RULE_COLUMNS: &str = "rule_id, owner::text AS owner";

pub fn drop_rule(name: &str) {
    let rule: RuleRow = sql::as_catalog_owner(|| {
        sql::row(&format!("SELECT {RULE_COLUMNS} FROM pgmart.alert_rules WHERE name = $1"), &[name.into()])
    })
    .unwrap_or_else(|| PgMartError::undefined_object(format!("alert rule \"{name}\" does not exist")).raise());
    let caller = sql::current_role();
    if !sql::can_act_as(&caller, &rule.owner) {
        PgMartError::privilege(format!("alert rule \"{name}\" belongs to {}", rule.owner)).raise();
    }
    // Find the rule's triggers wherever the table is now (it may have been renamed); clones on
    // partitions go with their parent's trigger.
    #[derive(Deserialize)]
    struct Trig {
        rel: String,
        tgname: String,
    }
    let names: Vec<String> = plan::trigger_names(rule.rule_id).to_vec();
    let trigs: Vec<Trig> = sql::rows(
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS rel, t.tgname::text AS tgname \
           FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
          WHERE t.tgname::text = ANY ($1) AND t.tgparentid = 0 AND NOT t.tgisinternal \
            AND t.tgfoid IN ('pgmart._alert_fire()'::pg_catalog.regprocedure, 'pgmart._alert_flush()'::pg_catalog.regprocedure)",
        &[names.into()],
    );
    for t in trigs {
        sql::exec(&format!("DROP TRIGGER {} ON {}", sql::quote_identifier(&t.tgname), t.rel), &[]);
    }
    sql::as_catalog_owner(|| sql::exec("DELETE FROM pgmart.alert_rules WHERE rule_id = $1", &[rule.rule_id.into()]));
}

thread_local! {
    static THROTTLE: RefCell<plan::Throttle> = RefCell::new(plan::Throttle::default());
    static HOOKED: RefCell<bool> = const { RefCell::new(false) };
}

/// Make sure this transaction's throttle state is summarised before commit (for statements that
/// had no statement trigger, e.g. direct inserts into a partition) and cleared at its end.
fn hook_transaction() {
    if HOOKED.with(|h| std::mem::replace(&mut *h.borrow_mut(), true)) {
        return;
    }
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::PreCommit, || {
        // Safety net: rows whose statement trigger did not run (it was disabled) are written now.
        let pending = PENDING.with(|q| std::mem::take(&mut *q.borrow_mut()));
        if !pending.is_empty() {
            unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
            raise_rules(pending);
            unsafe { pg_sys::PopActiveSnapshot() };
        }
        for (channel, msg) in THROTTLE.with(|t| t.borrow_mut().drain()) {
            notify_direct(&channel, &notify::fit(&msg, notify::MAX_PAYLOAD));
        }
        HOOKED.with(|h| *h.borrow_mut() = false);
    });
    // A statement that failed inside a savepoint never reached its statement trigger: forget its
    // counts (its alerts and notifications were rolled back with it).
    pgrx::register_subxact_callback(pgrx::PgSubXactCallbackEvent::AbortSub, |aborted, _| {
        THROTTLE.with(|t| *t.borrow_mut() = plan::Throttle::default());
        PENDING.with(|q| q.borrow_mut().retain(|p| p.subxact < aborted));
    });
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Abort, || {
        PENDING.with(|q| q.borrow_mut().clear());
        THROTTLE.with(|t| *t.borrow_mut() = plan::Throttle::default());
        HOOKED.with(|h| *h.borrow_mut() = false);
    });
}

unsafe extern "C-unwind" {
    #[link_name = "pg_notify"]
    fn pg_notify_fmgr(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
}

/// `pg_notify` called directly (no SPI): cheap per alert, and usable at pre-commit.
fn notify_direct(channel: &str, payload: &str) {
    let (Ok(ch), Ok(pl)) = (CString::new(channel), CString::new(payload)) else { return };
    unsafe {
        let ch = pg_sys::cstring_to_text(ch.as_ptr());
        let pl = pg_sys::cstring_to_text(pl.as_ptr());
        pg_sys::DirectFunctionCall2Coll(
            Some(pg_notify_fmgr),
            pg_sys::InvalidOid,
            pg_sys::Datum::from(ch),
            pg_sys::Datum::from(pl),
        );
    }
}

/// Write rule alerts (as the catalog owner) and build their notifications, in one statement with a
/// plan kept for the session. The rule's name, severity, target, channel and payload columns are
/// read from the catalog, so a rule change applies at once. Ids are drawn first so each message
/// can be paired with its alert; rows come back in the order they were given.
const RAISE_RULES: &str = "\
WITH i AS MATERIALIZED ( \
    SELECT pg_catalog.nextval('pgmart.alerts_alert_id_seq'::pg_catalog.regclass) AS alert_id, u.n, u.tbl, \
           r.name, r.severity, r.target, r.channel, \
           CASE WHEN r.payload_columns IS NULL THEN u.row::jsonb \
                ELSE coalesce((SELECT pg_catalog.jsonb_object_agg(k, u.row::jsonb -> k) \
                                 FROM pg_catalog.unnest(r.payload_columns) k WHERE u.row::jsonb ? k), '{}'::jsonb) END AS payload \
      FROM ROWS FROM (pg_catalog.unnest($1::int8[]), pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])) \
           WITH ORDINALITY AS u(rule_id, row, tbl, n) \
      JOIN pgmart.alert_rules r ON r.rule_id = u.rule_id \
     ORDER BY u.n), \
     a AS (INSERT INTO pgmart.alerts (alert_id, source_kind, source_name, severity, target, payload) \
           SELECT alert_id, 'rule', name, severity, target, payload FROM i ORDER BY n) \
SELECT i.alert_id, i.name, i.channel, \
       pg_catalog.jsonb_build_object('alert_id', i.alert_id, 'source_kind', 'rule', 'rule', i.name, \
              'severity', i.severity, 'target', i.target, 'table', i.tbl, 'payload', i.payload)::text \
  FROM i ORDER BY i.n";

/// A matching row waiting for the end of its statement.
struct Pending {
    rule_id: i64,
    table: String,
    row: String,
    subxact: pg_sys::SubTransactionId,
}

thread_local! {
    static RAISE_PLAN: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
}

/// The row trigger's work for one matching row (`row` is its `to_jsonb` text). When the rule's
/// statement trigger is sure to run at the end of this statement (`batch`), the row waits there
/// and all of the statement's alerts are written by one INSERT; otherwise (a partition, or a
/// trigger cloned onto one, where the statement may target another table) it is written now.
pub fn on_row(rule_id: i64, table: &str, row: String, batch: bool) {
    hook_transaction();
    let p = Pending {
        rule_id,
        table: table.to_string(),
        row,
        subxact: unsafe { pg_sys::GetCurrentSubTransactionId() },
    };
    if batch {
        PENDING.with(|q| q.borrow_mut().push(p));
    } else {
        raise_rules(vec![p]);
    }
}

/// Write `items` as alerts, then notify each (or count it for the statement's summary once the
/// statement passed `pgmart.alert_notify_limit`). Returns the alert ids.
fn raise_rules(items: Vec<Pending>) -> Vec<i64> {
    if items.is_empty() {
        return vec![];
    }
    let ids: Vec<i64> = items.iter().map(|p| p.rule_id).collect();
    let rows: Vec<String> = items.iter().map(|p| p.row.clone()).collect();
    let tables: Vec<String> = items.into_iter().map(|p| p.table).collect();
    let raised: Vec<(i64, String, String, String)> = sql::as_catalog_owner(|| {
        Spi::connect_mut(|c| {
            RAISE_PLAN.with(|p| {
                let mut p = p.borrow_mut();
                if p.is_none() {
                    let types = [pg_sys::INT8ARRAYOID, pg_sys::TEXTARRAYOID, pg_sys::TEXTARRAYOID].map(PgOid::from);
                    *p = Some(c.prepare_mut(RAISE_RULES, &types)?.keep());
                }
                let plan = p.as_ref().unwrap();
                let t = c.update(plan, None, &[ids.into(), rows.into(), tables.into()])?;
                let mut out = Vec::with_capacity(t.len());
                for r in t {
                    out.push((
                        r.get::<i64>(1)?.unwrap_or_default(),
                        r.get::<String>(2)?.unwrap_or_default(),
                        r.get::<String>(3)?.unwrap_or_default(),
                        r.get::<String>(4)?.unwrap_or_default(),
                    ));
                }
                Ok::<_, pgrx::spi::Error>(out)
            })
        })
        .unwrap_or_else(|e| error!("pgmart: cannot raise alerts: {e}"))
    });
    let limit = guc::ALERT_NOTIFY_LIMIT.get().max(1) as u64;
    let mut out = Vec::with_capacity(raised.len());
    for (id, rule, channel, message) in raised {
        if THROTTLE.with(|t| t.borrow_mut().offer(&channel, limit, id, &rule)) {
            if message.len() <= notify::MAX_PAYLOAD {
                notify_direct(&channel, &message);
            } else {
                let v: Value = serde_json::from_str(&message).unwrap_or_else(|_| json!({"alert_id": id}));
                notify_direct(&channel, &notify::fit(&v, notify::MAX_PAYLOAD));
            }
        }
        out.push(id);
    }
    out
}

/// End of a statement on a table with rules: write the statement's waiting alerts, send one
/// summary per channel that went over the limit, and start the next statement from zero.
pub fn flush_statement() {
    let pending = PENDING.with(|q| std::mem::take(&mut *q.borrow_mut()));
    raise_rules(pending);
    for (channel, msg) in THROTTLE.with(|t| t.borrow_mut().drain()) {
        notify_direct(&channel, &notify::fit(&msg, notify::MAX_PAYLOAD));
    }
}

#[derive(Deserialize)]
struct AckRow {
    acked: bool,
    visible: bool,
}

/// Whether `$2` (a role name) may see/acknowledge the alert row `a`.
pub const VISIBLE_TO_ROLE: &str = "(EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $2 AND rolsuper) \
      OR (a.source_kind = 'rule' AND EXISTS (SELECT 1 FROM pgmart.alert_rules r \
            WHERE r.name = a.source_name AND pg_catalog.pg_has_role($2::name, r.owner, 'MEMBER'))) \
      OR (a.source_kind = 'job' AND EXISTS (SELECT 1 FROM pgmart.job j \
            WHERE j.job_id::text = a.payload->>'job_id' AND pg_catalog.pg_has_role($2::name, j.owner, 'MEMBER'))))";

pub fn ack(alert_id: i64, note: Option<&str>) -> bool {
    let caller = sql::current_role();
    let row: AckRow = sql::as_catalog_owner(|| {
        sql::row(
            &format!("SELECT a.acked_at IS NOT NULL AS acked, {VISIBLE_TO_ROLE} AS visible FROM pgmart.alerts a WHERE a.alert_id = $1"),
            &[alert_id.into(), caller.as_str().into()],
        )
    })
    .unwrap_or_else(|| PgMartError::undefined_object(format!("alert {alert_id} does not exist")).raise());
    if !row.visible {
        PgMartError::privilege(format!("alert {alert_id} is not one of yours to acknowledge")).raise();
    }
    if row.acked {
        pgrx::notice!("alert {alert_id} was already acknowledged");
        return false;
    }
    sql::as_catalog_owner(|| {
        sql::exec_count(
            "UPDATE pgmart.alerts SET acked_at = clock_timestamp(), ack_note = $2, acked_by = $3 \
              WHERE alert_id = $1 AND acked_at IS NULL",
            &[alert_id.into(), note.into(), caller.as_str().into()],
        )
    }) == 1
}
