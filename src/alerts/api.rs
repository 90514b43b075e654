//! Thin SQL-facing wrappers for alert rules (see docs/alerts.md).

use super::exec;
use crate::args::{self, RegClass};
use crate::error::required;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::PgOid;
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static JSON_PLANS: RefCell<HashMap<pg_sys::Oid, OwnedPreparedStatement>> = RefCell::new(HashMap::new());
}

#[pg_extern(schema = "pgmart", volatile)]
#[allow(clippy::too_many_arguments)]
fn add_alert_rule(
    name: Option<&str>,
    target: Option<RegClass>,
    condition: Option<&str>,
    severity: default!(Option<&str>, "'high'"),
    channel: default!(Option<&str>, "'pgmart_alerts'"),
    payload_columns: default!(Option<Vec<Option<String>>>, "NULL"),
    on_update: default!(Option<bool>, false),
) -> i64 {
    crate::jobs::api::require_primary("add an alert rule");
    let name = required(name, "name");
    let target = args::relation(target, "target");
    exec::add_rule(exec::NewRule {
        name,
        target,
        condition: required(condition, "condition"),
        severity: severity.unwrap_or("high"),
        channel: channel.unwrap_or("pgmart_alerts"),
        payload_columns: args::names(payload_columns, "payload_columns"),
        on_update: on_update.unwrap_or(false),
    })
}

#[pg_extern(schema = "pgmart", volatile)]
fn drop_alert_rule(name: Option<&str>) {
    crate::jobs::api::require_primary("drop an alert rule");
    exec::drop_rule(required(name, "name"))
}

#[pg_extern(schema = "pgmart", volatile)]
fn ack_alert(alert_id: Option<i64>, note: default!(Option<&str>, "NULL")) -> bool {
    crate::jobs::api::require_primary("acknowledge an alert");
    exec::ack(required(alert_id, "alert_id"), note)
}

/// Row trigger of every alert rule (AFTER INSERT / UPDATE ... WHEN (<condition>)): runs only for
/// matching rows. The row is turned into JSON as the writing user; the alert is written as
/// pgmart's catalog owner, so writers need no privilege on pgmart.alerts.
#[pg_trigger(sql = false)] // created in sql/finalize.sql, in schema pgmart
fn _alert_fire<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgHeapTupleError> {
    let rule_id: i64 = trigger
        .extra_args()
        .ok()
        .and_then(|a| a.first().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| crate::error::PgMartError::privilege("pgmart._alert_fire needs its rule id as its argument").raise());
    let relid = trigger.relid().unwrap_or_else(|e| crate::error::PgMartError::internal(format!("pgmart: {e}")).raise());
    exec::verify_trigger(rule_id, unsafe { (*trigger.trigger_data().tg_trigger).tgoid }, relid);
    let table = format!(
        "{}.{}",
        pgrx::spi::quote_identifier(trigger.table_schema().unwrap_or_default()),
        pgrx::spi::quote_identifier(trigger.table_name().unwrap_or_default())
    );
    let Some(new) = trigger.new() else { return Ok(None) };
    // The row becomes JSON with the writer's privileges (a user-defined cast to json runs as its
    // writer, never as the catalog owner), through a plan kept per row type.
    let reltype = unsafe { pg_sys::get_rel_type_id(relid) };
    let arg = unsafe { pgrx::datum::DatumWithOid::new(new, reltype) };
    let row: Option<String> = Spi::connect(|c| {
        JSON_PLANS.with(|plans| {
            let mut plans = plans.borrow_mut();
            if !plans.contains_key(&reltype) {
                let stmt = c.prepare("SELECT pg_catalog.to_jsonb($1)::pg_catalog.text", &[PgOid::from(reltype)])?.keep();
                plans.insert(reltype, stmt);
            }
            c.select(plans.get(&reltype).unwrap(), Some(1), &[arg])?.first().get::<String>(1)
        })
    })
    .unwrap_or_else(|e| crate::error::PgMartError::internal(format!("pgmart: cannot read the row for an alert: {e}")).raise());
    // Batch to the end of the statement only where this table's own statement trigger will run.
    let batch = unsafe {
        !trigger.trigger().tgisclone && !(*(*trigger.trigger_data().tg_relation).rd_rel).relispartition
    };
    exec::on_row(rule_id, &table, row.unwrap_or_else(|| "null".into()), batch);
    Ok(None)
}

/// Statement trigger of every alert rule: summarises what went over the per-statement limit.
#[pg_trigger(sql = false)] // created in sql/finalize.sql, in schema pgmart
fn _alert_flush<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgHeapTupleError> {
    // Anyone's statement trigger calling this only flushes what pgmart's own row triggers queued.
    let _ = trigger;
    exec::flush_statement();
    Ok(None)
}
