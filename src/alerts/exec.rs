//! Alert rules through SPI: validating a condition by planning it against its table, creating and
//! dropping the rule's triggers, raising a rule alert from the row trigger, the per-statement
//! notification throttle, and acknowledging alerts.

use super::{notify, plan};
use crate::error::{OrRaise, PgMartError};
use crate::fragment::{Runs, Shape};
use crate::guc;
use crate::sql;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{PgOid, PgSqlErrorCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::ffi::CString;

pub struct NewRule<'a> {
    pub name: &'a str,
    pub target: pg_sys::Oid,
    pub condition: &'a str,
    pub severity: &'a str,
    pub channel: &'a str,
    pub payload_columns: Option<Vec<String>>,
    pub on_update: bool,
}

/// A rule's condition runs in its trigger's WHEN clause, as whoever writes to the table: it may
/// call only built-ins of pg_catalog (see `fragment`).
fn analyse_condition(relid: pg_sys::Oid, condition: &str) -> crate::fragment::Fragment {
    crate::fragment::analyse(relid, condition, Shape::Condition, Runs::AsCaller, "alert rule condition", &["new", "old"])
        .or_raise()
}

pub fn add_rule(r: NewRule) -> i64 {
    plan::check_name(r.name).or_raise();
    plan::check_severity(r.severity).or_raise();
    plan::check_channel(r.channel).or_raise();
    let caller = sql::caller();
    let t = sql::relation(r.target)
    .unwrap_or_else(|| PgMartError::undefined_table("target table does not exist").raise());
    if t.relkind != "r" && t.relkind != "p" {
        PgMartError::new(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, format!("\"{}\" is not a table", t.qualified))
            .hint("Alert rules watch ordinary or partitioned tables.")
            .raise();
    }
    let owner = pg_sys::Oid::from(t.owner);
    if !sql::may_act_as(caller, owner) {
        PgMartError::privilege(format!("must be owner of table {} to add an alert rule on it", t.qualified)).raise();
    }
    if let Some(cols) = &r.payload_columns {
        for c in cols {
            let found = sql::one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid OPERATOR(pg_catalog.=) $1 \
                                AND attname OPERATOR(pg_catalog.=) $2::pg_catalog.name AND attnum OPERATOR(pg_catalog.>) 0 \
                                AND NOT attisdropped)",
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
        sql::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pgmart.alert_rules WHERE name OPERATOR(pg_catalog.=) $1)",
            &[r.name.into()],
        )
    });
    if exists == Some(true) {
        PgMartError::duplicate(format!("alert rule \"{}\" already exists", r.name)).raise();
    }
    let cond = analyse_condition(r.target, r.condition);
    // The rule belongs to the table's owner (the role that may change the table and its triggers).
    let rule_id = sql::as_catalog_owner(|| {
        sql::one::<i64>("SELECT pg_catalog.nextval('pgmart.alert_rules_rule_id_seq'::pg_catalog.regclass)", &[])
    })
    .expect("rule id");
    let anchor = crate::owners::create("rule", &rule_id.to_string(), owner, &format!("pgmart alert rule {}", r.name));
    sql::as_catalog_owner(|| {
        sql::exec(
            "INSERT INTO pgmart.alert_rules (rule_id, name, target, condition, severity, channel, payload_columns, \
                                             on_update, anchor, relation) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::pg_catalog.regclass, $10)",
            &[
                rule_id.into(),
                r.name.into(),
                t.qualified.as_str().into(),
                cond.text.as_str().into(),
                r.severity.into(),
                r.channel.into(),
                r.payload_columns.clone().into(),
                r.on_update.into(),
                anchor.as_str().into(),
                r.target.into(),
            ],
        );
        // The triggers call internal functions nobody else may attach; the condition is the
        // analysed, deparsed one.
        for ddl in plan::trigger_ddl(rule_id, &t.qualified, &cond.prefixed[0], &cond.prefixed[1], r.on_update) {
            sql::exec(&ddl, &[]);
        }
    });
    rule_id
}

#[derive(Deserialize)]
struct RuleRow {
    rule_id: i64,
    owner: u32,
    anchor: String,
}

/// A rule the caller may act as, by name; the same error whether it is missing or not theirs.
fn rule_for_caller(name: &str) -> RuleRow {
    let rule: Option<RuleRow> = sql::as_catalog_owner(|| {
        sql::row(
            "SELECT r.rule_id, coalesce(a.relowner, 0::pg_catalog.oid)::pg_catalog.int8 AS owner, r.anchor::pg_catalog.text AS anchor \
               FROM pgmart.alert_rules r LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) r.anchor \
              WHERE r.name OPERATOR(pg_catalog.=) $1",
            &[name.into()],
        )
    });
    let caller = sql::caller();
    rule.filter(|r| r.owner != 0 && sql::may_act_as(caller, pg_sys::Oid::from(r.owner)))
        .or_else(|| rule_if_superuser(name, caller))
        .unwrap_or_else(|| {
            PgMartError::undefined_object(format!("alert rule \"{name}\" does not exist or you may not act on it"))
                .hint("pgmart.rules lists the rules you may act on.")
                .raise()
        })
}

/// A superuser may also drop a rule whose owner anchor is gone.
fn rule_if_superuser(name: &str, caller: pg_sys::Oid) -> Option<RuleRow> {
    if !unsafe { pg_sys::superuser_arg(caller) } {
        return None;
    }
    sql::as_catalog_owner(|| {
        sql::row(
            "SELECT rule_id, 0::pg_catalog.int8 AS owner, anchor::pg_catalog.text AS anchor FROM pgmart.alert_rules \
              WHERE name OPERATOR(pg_catalog.=) $1",
            &[name.into()],
        )
    })
}

pub fn drop_rule(name: &str) {
    let rule = rule_for_caller(name);
    forget(rule.rule_id);
    crate::owners::drop(&rule.anchor);
}

/// A rule whose owner anchor was dropped (DROP OWNED BY): it goes, with its triggers.
pub fn forget_anchor(id: &str) {
    if let Ok(rule_id) = id.parse::<i64>() {
        forget(rule_id);
    }
}

/// Remove rule `rule_id` and its triggers (wherever its table is now: it may have been renamed;
/// clones on partitions go with their parent's trigger). Its alerts stay.
pub fn forget(rule_id: i64) {
    drop_triggers(rule_id);
    sql::as_catalog_owner(|| {
        sql::exec("DELETE FROM pgmart.alert_rules WHERE rule_id OPERATOR(pg_catalog.=) $1", &[rule_id.into()]);
    });
}

/// Its table was re-created under its name (see `crate::follow`): the condition is analysed again
/// over the new table and the triggers move there (from the old table, if it still exists).
pub fn moved(id: &str, _old: u32, new: u32, qualified: &str) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Rule {
        condition: String,
        on_update: bool,
    }
    let rule_id: i64 = id.parse().map_err(|_| format!("no rule {id}"))?;
    let rule = sql::row::<Rule>(
        "SELECT condition, on_update FROM pgmart.alert_rules WHERE rule_id OPERATOR(pg_catalog.=) $1",
        &[rule_id.into()],
    )
    .ok_or_else(|| format!("no rule {id}"))?;
    let cond = analyse_condition(pg_sys::Oid::from(new), &rule.condition);
    drop_triggers(rule_id);
    for ddl in plan::trigger_ddl(rule_id, qualified, &cond.prefixed[0], &cond.prefixed[1], rule.on_update) {
        sql::exec(&ddl, &[]);
    }
    Ok(())
}

/// Drop rule `rule_id`'s triggers, wherever its table is now.
fn drop_triggers(rule_id: i64) {
    #[derive(Deserialize)]
    struct Trig {
        rel: String,
        tgname: String,
    }
    let names: Vec<String> = plan::trigger_names(rule_id).to_vec();
    sql::as_catalog_owner(|| {
        let trigs: Vec<Trig> = sql::rows(
            "SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' \
                    OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::pg_catalog.text) AS rel, \
                    t.tgname::pg_catalog.text AS tgname \
               FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.tgrelid \
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
              WHERE t.tgname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) \
                AND t.tgparentid OPERATOR(pg_catalog.=) 0::pg_catalog.oid AND NOT t.tgisinternal \
                AND t.tgfoid OPERATOR(pg_catalog.=) ANY (ARRAY['pgmart._alert_fire()'::pg_catalog.regprocedure, \
                                                              'pgmart._alert_flush()'::pg_catalog.regprocedure]::pg_catalog.oid[])",
            &[names.into()],
        );
        for t in trigs {
            sql::exec(&format!("DROP TRIGGER {} ON {}", sql::quote_identifier(&t.tgname), t.rel), &[]);
        }
    });
    VERIFIED.with(|v| v.borrow_mut().clear());
}

thread_local! {
    /// Triggers (by OID) already verified to be pgmart's own trigger for their rule.
    static VERIFIED: RefCell<std::collections::HashMap<u32, i64>> = RefCell::new(std::collections::HashMap::new());
}

/// `_alert_fire` refuses to run from any trigger but the one pgmart made for that rule's table (or
/// its clone on a partition): nobody can raise alerts under another role's rule and channel.
pub fn verify_trigger(rule_id: i64, tgoid: pg_sys::Oid, relid: pg_sys::Oid) {
    if VERIFIED.with(|v| v.borrow().get(&u32::from(tgoid)) == Some(&rule_id)) {
        return;
    }
    let names: Vec<String> = plan::trigger_names(rule_id).to_vec();
    let ok = sql::as_catalog_owner(|| {
        sql::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t, pgmart.alert_rules r \
                     WHERE t.oid OPERATOR(pg_catalog.=) $1 AND r.rule_id OPERATOR(pg_catalog.=) $2 \
                       AND t.tgname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($4::pg_catalog.text[]) \
                       AND (r.relation OPERATOR(pg_catalog.=) $3::pg_catalog.oid \
                            OR r.relation::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ( \
                                 SELECT a.relid::pg_catalog.oid FROM pg_catalog.pg_partition_ancestors($3::pg_catalog.oid::pg_catalog.regclass) a)))",
            &[tgoid.into(), rule_id.into(), relid.into(), names.into()],
        )
    })
    .unwrap_or(false);
    if !ok {
        PgMartError::privilege("pgmart._alert_fire may only run from the trigger pgmart created for its alert rule").raise();
    }
    VERIFIED.with(|v| v.borrow_mut().insert(u32::from(tgoid), rule_id));
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
    SELECT pg_catalog.nextval('pgmart.alert_alert_id_seq'::pg_catalog.regclass) AS alert_id, u.n, u.tbl, \
           r.name, r.severity, r.target, r.channel, \
           CASE WHEN r.payload_columns IS NULL THEN u.row::pg_catalog.jsonb \
                ELSE coalesce((SELECT pg_catalog.jsonb_object_agg(k, u.row::pg_catalog.jsonb OPERATOR(pg_catalog.->) k) \
                                 FROM pg_catalog.unnest(r.payload_columns) k \
                                WHERE u.row::pg_catalog.jsonb OPERATOR(pg_catalog.?) k), '{}'::pg_catalog.jsonb) END AS payload \
           , r.rule_id AS rid, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) r.anchor) AS owner \
      FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[])) \
           WITH ORDINALITY AS u(rule_id, row, tbl, n) \
      JOIN pgmart.alert_rules r ON r.rule_id OPERATOR(pg_catalog.=) u.rule_id \
     ORDER BY u.n), \
     a AS (INSERT INTO pgmart.alert (alert_id, source_kind, source_name, severity, target, payload, rule_id, owner) \
           SELECT alert_id, 'rule', name, severity, target, payload, rid, owner FROM i ORDER BY n) \
SELECT i.alert_id, i.name, i.channel, \
       pg_catalog.jsonb_build_object('alert_id', i.alert_id, 'source_kind', 'rule', 'source_name', i.name, 'rule', i.name, 'rule_id', i.rid, \
              'severity', i.severity, 'target', i.target, 'table', i.tbl, 'payload', i.payload)::pg_catalog.text \
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
    owner: u32,
}

/// The current owner of an alert: of the rule, job or check that raised it, or its owner then.
const ALERT_OWNER: &str = "SELECT al.acked_at IS NOT NULL AS acked, \
       coalesce((SELECT c.relowner FROM pg_catalog.pg_class c \
                  WHERE c.oid OPERATOR(pg_catalog.=) coalesce( \
                        (SELECT r.anchor FROM pgmart.alert_rules r WHERE r.rule_id OPERATOR(pg_catalog.=) al.rule_id), \
                        (SELECT k.anchor FROM pgmart.\"check\" k WHERE k.check_id OPERATOR(pg_catalog.=) al.check_id), \
                        (SELECT j.anchor FROM pgmart.job j WHERE j.job_id OPERATOR(pg_catalog.=) al.job_id))), \
                al.owner, 0::pg_catalog.oid)::pg_catalog.int8 AS owner \
  FROM pgmart.alert al WHERE al.alert_id OPERATOR(pg_catalog.=) $1";

pub fn ack(alert_id: i64, note: Option<&str>) -> bool {
    let caller = sql::caller();
    let row: Option<AckRow> = sql::as_catalog_owner(|| sql::row(ALERT_OWNER, &[alert_id.into()]));
    let row = row
        .filter(|r| sql::may_act_as(caller, pg_sys::Oid::from(r.owner)) || unsafe { pg_sys::superuser_arg(caller) })
        .unwrap_or_else(|| {
            PgMartError::undefined_object(format!("alert {alert_id} does not exist or you may not act on it"))
                .hint("pgmart.open_alerts lists the alerts you may acknowledge.")
                .raise()
        });
    if row.acked {
        pgrx::notice!("alert {alert_id} was already acknowledged");
        return false;
    }
    let by = sql::role_name(caller);
    sql::as_catalog_owner(|| {
        sql::exec_count(
            "UPDATE pgmart.alert SET acked_at = pg_catalog.clock_timestamp(), ack_note = $2, acked_by = $3::pg_catalog.name \
              WHERE alert_id OPERATOR(pg_catalog.=) $1 AND acked_at IS NULL",
            &[alert_id.into(), note.into(), by.as_str().into()],
        )
    }) == 1
}
