//! SQL-facing partition functions: validation, then the catalog and the executor.

use crate::args::{self, RegClass};
use crate::error::{required, OrRaise, PgMartError};
use crate::jobs::api::{delete_job, register, NewJob};
use crate::jobs::schedule::Every;
use crate::partitions::exec::{self, load_sets};
use crate::partitions::plan::{self, ColType, SetSpec};
use crate::sql;
use chrono::Utc;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::json;

fn every(iv: &Interval) -> Every {
    Every { months: iv.months(), days: iv.days(), micros: iv.micros() }
}

#[derive(Deserialize)]
struct RelInfo {
    relkind: String,
    relname: String,
    owner: u32,
    strategy: Option<String>,
    nkeys: Option<i32>,
    key_attnum: Option<i32>,
    col_attnum: Option<i32>,
    col_type: Option<String>,
}

fn oid_arg(oid: pg_sys::Oid) -> i64 {
    oid.to_u32() as i64
}

// Symbol create_partition_set_0_2_wrapper: 0.1.0 declared create_partition_set with fewer arguments (see src/legacy.rs).
#[pg_extern(schema = "pgmart", name = "create_partition_set", volatile)]
#[allow(clippy::too_many_arguments)]
fn create_partition_set_0_2(
    parent: Option<RegClass>,
    control_column: Option<&str>,
    partition_interval: Option<Interval>,
    premake: default!(Option<i32>, 4),
    retention: default!(Option<Interval>, "NULL"),
    retention_mode: default!(Option<&str>, "'drop'"),
    start_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    default_partition: default!(Option<bool>, true),
    schedule: default!(Option<&str>, "'1 hour'"),
    timezone: default!(Option<&str>, "'UTC'"),
    timeout: default!(Option<Interval>, "NULL"),
) -> i64 {
    let parent = args::relation(parent, "parent");
    let control_column = required(control_column, "control_column");
    let partition_interval = required(partition_interval, "partition_interval");
    let premake = premake.unwrap_or(4);
    let retention_mode = retention_mode.unwrap_or("drop");
    let default_partition = default_partition.unwrap_or(true);
    let schedule = schedule.unwrap_or("1 hour");
    let timezone = timezone.unwrap_or("UTC");
    crate::jobs::api::require_primary("create a partition set");
    crate::jobs::api::check_timeout(timeout);
    let oid = oid_arg(parent);
    let info = sql::row::<RelInfo>(
        "SELECT c.relkind::pg_catalog.text AS relkind, c.relname::pg_catalog.text AS relname, \
                c.relowner::pg_catalog.int8 AS owner, \
                p.partstrat::pg_catalog.text AS strategy, p.partnatts::pg_catalog.int4 AS nkeys, \
                p.partattrs[0]::pg_catalog.int4 AS key_attnum, \
                a.attnum::pg_catalog.int4 AS col_attnum, pg_catalog.format_type(a.atttypid, NULL) AS col_type \
           FROM pg_catalog.pg_class c \
           LEFT JOIN pg_catalog.pg_partitioned_table p ON p.partrelid OPERATOR(pg_catalog.=) c.oid \
           LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid \
                 AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name AND a.attnum OPERATOR(pg_catalog.>) 0 \
                 AND NOT a.attisdropped \
          WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid",
        &[oid.into(), control_column.into()],
    )
    .unwrap_or_else(|| PgMartError::undefined_table(format!("relation with OID {oid} does not exist")).raise());
    let shown = sql::one::<String>(
        "SELECT $1::pg_catalog.int8::pg_catalog.oid::pg_catalog.regclass::pg_catalog.text",
        &[oid.into()],
    )
    .unwrap_or_default();
    let table_owner = pg_sys::Oid::from(info.owner);
    if !sql::may_act_as(sql::caller(), table_owner) {
        PgMartError::privilege(format!("must be owner of table {shown} to manage its partitions")).raise();
    }
    match info.relkind.as_str() {
        "p" => {}
        "r" => PgMartError::state(format!("table {shown} is not partitioned"))
            .hint("Create it with PARTITION BY RANGE (a date, timestamp or timestamptz column).")
            .raise(),
        _ => PgMartError::wrong_object_type(format!("{shown} is not a table"))
            .hint("Time partitions are made for a table created with PARTITION BY RANGE (a date, timestamp or timestamptz column).")
            .raise(),
    }
    if info.strategy.as_deref() != Some("r") {
        PgMartError::invalid(format!("table {shown} is not partitioned by range"))
            .detail("pgmart time partitions need PARTITION BY RANGE on one date, timestamp or timestamptz column.")
            .raise();
    }
    let Some(col_attnum) = info.col_attnum else {
        PgMartError::undefined_column(format!("column \"{control_column}\" of table {shown} does not exist")).raise()
    };
    if info.nkeys != Some(1) || info.key_attnum != Some(col_attnum) {
        PgMartError::invalid(format!("table {shown} is not partitioned by column \"{control_column}\" alone"))
            .hint("The partition key must be exactly the control column.")
            .raise();
    }
    let col = ColType::parse(info.col_type.as_deref().unwrap_or("")).unwrap_or_else(|| {
        PgMartError::invalid(format!(
            "column \"{control_column}\" is of type {}; time partitions need date, timestamp or timestamptz",
            info.col_type.clone().unwrap_or_default()
        ))
        .raise()
    });
    let grid = plan::grid_for(every(&partition_interval), col).or_raise();
    if premake < 1 {
        PgMartError::invalid("premake must be at least 1").raise();
    }
    if premake > 1000 {
        PgMartError::invalid("premake may be at most 1000").raise();
    }
    if let Some(r) = &retention {
        args::check_positive_interval(r, "retention");
    }
    let retention_every = retention.as_ref().map(every);
    if retention_mode != "drop" && retention_mode != "detach" {
        PgMartError::invalid(format!("retention_mode must be 'drop' or 'detach', not '{retention_mode}'")).raise();
    }
    let zone = crate::jobs::tz::resolve(timezone).or_raise();
    let exists = sql::as_catalog_owner(|| {
        sql::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pgmart.partition_set WHERE parent OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid)",
            &[oid.into()],
        )
    });
    if exists == Some(true) {
        PgMartError::duplicate(format!("table {shown} already has a pgmart partition set"))
            .hint("Drop it with pgmart.drop_partition_set() first to change it.")
            .raise();
    }
    let spec = SetSpec {
        parent_name: info.relname.clone(),
        grid,
        col,
        tz: zone.tz,
        premake,
        retention: retention_every,
        detach: retention_mode == "detach",
        default_partition,
        anchor: None,
        stray: vec![],
    };
    let anchor_at = crate::jobs::api::check_start_at(start_at)
        .map(|secs| chrono::DateTime::<Utc>::from_timestamp_micros((secs * 1e6) as i64).unwrap_or_default())
        .unwrap_or_else(Utc::now);
    let anchor = plan::slot_key_at(&spec, anchor_at);
    // The maintenance job runs as the table's owner.
    let job_id = register(NewJob {
        name: &crate::jobs::api::free_name(&format!("partitions: {shown}")),
        kind: "partition_maintenance",
        target: Some(&shown),
        schedule,
        timezone: &zone.name,
        owner: table_owner,
        config: json!({}),
        max_retries: 3,
        retry_backoff: Some("1 minute"),
        start_at: None,
        timeout,
    });
    sql::as_catalog_owner(|| {
        sql::exec(
            "INSERT INTO pgmart.partition_set (parent, control_column, column_type, partition_interval, premake, \
                    retention, retention_mode, start_at, anchor_key, default_partition, timezone, job_id) \
             VALUES ($1::pg_catalog.int8::pg_catalog.oid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                oid.into(),
                control_column.into(),
                col.sql_name().into(),
                partition_interval.into(),
                premake.into(),
                retention.into(),
                retention_mode.into(),
                start_at.into(),
                anchor.into(),
                default_partition.into(),
                zone.name.as_str().into(),
                job_id.into(),
            ],
        )
    });
    // Make the first partitions now, as the table's owner; any failure undoes the whole call.
    let sets = load_sets("s.parent OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid", &[oid.into()]);
    let set = sets.first().expect("set just inserted");
    let out = exec::maintain(set, true);
    if out.status != "succeeded" {
        // The error keeps its own SQLSTATE (a lock timeout stays 55P03, a statement timeout 57014,
        // running out of lock slots 53200): only its message says what pgmart was doing.
        let msg = format!("could not create the partitions of {shown}: {}", out.message.clone().unwrap_or_default());
        let code = out.sqlstate.as_deref().map(crate::error::sqlstate_code);
        let mut e = PgMartError::new(code.unwrap_or(pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), msg);
        e.hint = out.hint.clone().or_else(|| (out.sqlstate.as_deref() == Some("55P03")).then(|| {
            "Another session holds a lock on the table (see pg_locks); try again, or raise pgmart.lock_timeout.".to_string()
        }));
        e.raise();
    }
    for n in &out.notes {
        notice!("pgmart: {shown}: {n}");
    }
    exec::record(set, &out);
    job_id
}

#[pg_extern(schema = "pgmart", volatile)]
fn run_partition_maintenance(
    parent: default!(Option<RegClass>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(parent, String),
        name!(status, String),
        name!(created, Vec<String>),
        name!(dropped, Vec<String>),
        name!(detached, Vec<String>),
        name!(rescued_rows, i64),
        name!(message, Option<String>),
    ),
> {
    crate::jobs::api::require_primary("maintain partitions");
    let caller = sql::caller();
    let parent = args::optional_relation(parent, "parent");
    let sets = match parent {
        Some(rel) => {
            let oid = oid_arg(rel);
            let sets = exec::load_sets_for_pass(
                "s.parent OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid",
                &[oid.into()],
            );
            if sets.is_empty() {
                PgMartError::undefined_object(format!("table {} has no pgmart partition set", args::relation_text(rel)))
                    .hint("Create one with pgmart.create_partition_set().")
                    .raise();
            }
            if !sql::may_act_as(caller, sets[0].run_as()) {
                PgMartError::privilege(format!("you may not maintain the partitions of {}", sets[0].parent))
                    .detail("Only a role that may act as the owner of its maintenance job may.")
                    .raise();
            }
            sets
        }
        // Every set the caller may act as: the caller is a parameter, never current_user inside
        // the privileged read.
        None => exec::load_sets_for_pass("true", &[])
            .into_iter()
            .filter(|s| sql::may_act_as(caller, s.run_as()))
            .collect(),
    };
    let outs: Vec<exec::Outcome> = sets.iter().map(|set| exec::maintain(set, false)).collect();
    exec::record_all(&sets.iter().zip(outs.iter()).collect::<Vec<_>>());
    let mut rows = vec![];
    for (set, out) in sets.iter().zip(outs) {
        for n in &out.notes {
            notice!("pgmart: {}: {n}", set.parent);
        }
        let message = out.message.clone().or_else(|| Some(out.summary()));
        rows.push((out.parent, out.status, out.created, out.dropped, out.detached, out.rescued_rows, message));
    }
    TableIterator::new(rows)
}

#[pg_extern(schema = "pgmart", volatile)]
fn drop_partition_set(parent: Option<RegClass>) -> bool {
    let parent = args::relation(parent, "parent");
    crate::jobs::api::require_primary("drop a partition set");
    let oid = oid_arg(parent);
    let caller = sql::caller();
    let sets = load_sets("s.parent OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid", &[oid.into()]);
    let Some(set) = sets.first() else {
        PgMartError::undefined_object(format!("table {} has no pgmart partition set", args::relation_text(parent)))
            .hint("pgmart.partition_sets lists the tables with partition sets.")
            .raise()
    };
    if !sql::may_act_as(caller, set.run_as()) && !sql::may_act_as(caller, pg_sys::Oid::from(set.table_owner as u32)) {
        PgMartError::privilege(format!("you may not drop the partition set of {}", set.parent))
            .detail("Only a role that may act as the table's owner or its maintenance job's owner may.")
            .raise();
    }
    let job_id = sql::as_catalog_owner(|| {
        sql::one::<i64>(
            "DELETE FROM pgmart.partition_set WHERE set_id OPERATOR(pg_catalog.=) $1 RETURNING job_id",
            &[set.set_id.into()],
        )
    });
    if let Some(j) = job_id {
        delete_job(j);
    }
    true
}
