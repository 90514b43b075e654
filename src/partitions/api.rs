//! SQL-facing partition functions: validation, then the catalog and the executor.

use crate::error::{OrRaise, PgMartError};
use crate::jobs::api::{delete_job, register, NewJob};
use crate::jobs::schedule::{parse_tz, Every};
use crate::partitions::exec::{self, load_sets};
use crate::partitions::plan::{self, ColType, SetSpec};
use crate::sql;
use chrono::Utc;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::PgRelation;
use serde::Deserialize;
use serde_json::json;

fn every(iv: &Interval) -> Every {
    Every { months: iv.months(), days: iv.days(), micros: iv.micros() }
}

#[derive(Deserialize)]
struct RelInfo {
    relkind: String,
    owner: String,
    is_owner: bool,
    strategy: Option<String>,
    nkeys: Option<i32>,
    key_attnum: Option<i32>,
    col_attnum: Option<i32>,
    col_type: Option<String>,
}

fn oid_arg(rel: &PgRelation) -> i64 {
    rel.oid().to_u32() as i64
}

#[pg_extern(schema = "pgmart", volatile)]
#[allow(clippy::too_many_arguments)]
fn create_partition_set(
    parent: PgRelation,
    control_column: &str,
    partition_interval: Interval,
    premake: default!(i32, 4),
    retention: default!(Option<Interval>, "NULL"),
    retention_mode: default!(&str, "'drop'"),
    start_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    default_partition: default!(bool, true),
    schedule: default!(&str, "'1 hour'"),
    timezone: default!(&str, "'UTC'"),
) -> i64 {
    let oid = oid_arg(&parent);
    let info = sql::row::<RelInfo>(
        "SELECT c.relkind::text AS relkind, r.rolname::text AS owner, \
                pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER') AS is_owner, \
                p.partstrat::text AS strategy, p.partnatts::int4 AS nkeys, p.partattrs[0]::int4 AS key_attnum, \
                a.attnum::int4 AS col_attnum, pg_catalog.format_type(a.atttypid, NULL) AS col_type \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner \
           LEFT JOIN pg_catalog.pg_partitioned_table p ON p.partrelid = c.oid \
           LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
          WHERE c.oid = $1::int8::oid",
        &[oid.into(), control_column.into()],
    )
    .unwrap_or_else(|| PgMartError::undefined_table(format!("table {} does not exist", parent.name())).raise());
    let shown = sql::one::<String>("SELECT $1::int8::oid::regclass::text", &[oid.into()]).unwrap_or_default();
    if !info.is_owner {
        PgMartError::privilege(format!("must be owner of table {shown} to manage its partitions")).raise();
    }
    if info.relkind != "p" {
        PgMartError::state(format!("table {shown} is not partitioned"))
            .hint("Create it with PARTITION BY RANGE (a date, timestamp or timestamptz column).")
            .raise();
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
    let retention_every = retention.as_ref().map(every);
    if let Some(r) = &retention_every {
        if r.months < 0 || r.days < 0 || r.micros < 0 || (r.months == 0 && r.days == 0 && r.micros == 0) {
            PgMartError::invalid("retention must be a positive interval").raise();
        }
    }
    if retention_mode != "drop" && retention_mode != "detach" {
        PgMartError::invalid(format!("retention_mode must be 'drop' or 'detach', not '{retention_mode}'")).raise();
    }
    let tz = parse_tz(timezone).or_raise();
    let exists = sql::as_catalog_owner(|| {
        sql::one::<bool>("SELECT EXISTS (SELECT 1 FROM pgmart.partition_set WHERE parent = $1::int8::oid)", &[oid.into()])
    });
    if exists == Some(true) {
        PgMartError::duplicate(format!("table {shown} already has a pgmart partition set"))
            .hint("Drop it with pgmart.drop_partition_set() first to change it.")
            .raise();
    }
    let spec = SetSpec {
        parent_name: parent.name().to_string(),
        grid,
        col,
        tz,
        premake,
        retention: retention_every,
        detach: retention_mode == "detach",
        default_partition,
        anchor: None,
    };
    let anchor_at = start_at
        .map(|t| {
            let micros = sql::one::<f64>("SELECT extract(epoch FROM $1::timestamptz)::float8", &[t.into()]).unwrap_or(0.0);
            chrono::DateTime::<Utc>::from_timestamp_micros((micros * 1e6) as i64).unwrap_or_default()
        })
        .unwrap_or_else(Utc::now);
    let anchor = plan::slot_key_at(&spec, anchor_at);
    drop(parent);
    let job_id = register(NewJob {
        name: &format!("partitions: {shown}"),
        kind: "partition_maintenance",
        target: Some(&shown),
        schedule,
        timezone,
        owner: &info.owner,
        config: json!({}),
        max_retries: 3,
        retry_backoff: Some("1 minute"),
        start_at: None,
    });
    sql::as_catalog_owner(|| {
        sql::exec(
            "INSERT INTO pgmart.partition_set (parent, control_column, column_type, partition_interval, premake, \
                    retention, retention_mode, start_at, anchor_key, default_partition, timezone, job_id) \
             VALUES ($1::int8::oid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
                timezone.trim().into(),
                job_id.into(),
            ],
        )
    });
    // Make the first partitions now, as the table's owner; any failure undoes the whole call.
    let sets = load_sets("s.parent = $1::int8::oid", &[oid.into()]);
    let set = sets.first().expect("set just inserted");
    let out = exec::maintain(set, true);
    if out.status != "succeeded" {
        let msg = format!("could not create the partitions of {shown}: {}", out.message.clone().unwrap_or_default());
        match out.sqlstate.as_deref() {
            Some("22023") => PgMartError::invalid(msg).raise(),
            Some("42501") => PgMartError::privilege(msg).raise(),
            _ => PgMartError::state(msg).raise(),
        }
    }
    for n in &out.notes {
        notice!("pgmart: {shown}: {n}");
    }
    exec::record(set, &out);
    job_id
}

#[pg_extern(schema = "pgmart", volatile)]
fn run_partition_maintenance(
    parent: default!(Option<PgRelation>, "NULL"),
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
    let sets = match &parent {
        Some(rel) => {
            let oid = oid_arg(rel);
            let sets = exec::load_sets_for_pass("s.parent = $1::int8::oid", &[oid.into()]);
            if sets.is_empty() {
                PgMartError::undefined_object(format!("table {} has no pgmart partition set", rel.name()))
                    .hint("Create one with pgmart.create_partition_set().")
                    .raise();
            }
            let caller = sql::current_role();
            if !sql::can_act_as(&caller, &sets[0].run_as) {
                PgMartError::privilege(format!(
                    "role \"{caller}\" may not maintain the partitions of {}, owned by \"{}\"",
                    sets[0].parent, sets[0].run_as
                ))
                .raise();
            }
            sets
        }
        None => exec::load_sets_for_pass(
            "pg_catalog.pg_has_role(current_user, coalesce(j.owner, pg_catalog.pg_get_userbyid(c.relowner)), 'MEMBER')",
            &[],
        ),
    };
    drop(parent);
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
fn drop_partition_set(parent: PgRelation) -> bool {
    let oid = oid_arg(&parent);
    let sets = load_sets("s.parent = $1::int8::oid", &[oid.into()]);
    let Some(set) = sets.first() else {
        PgMartError::undefined_object(format!("table {} has no pgmart partition set", parent.name())).raise()
    };
    let caller = sql::current_role();
    if !sql::can_act_as(&caller, &set.run_as) && !sql::can_act_as(&caller, &set.table_owner) {
        PgMartError::privilege(format!("must be owner of table {} to drop its partition set", set.parent)).raise();
    }
    let job_id = sql::as_catalog_owner(|| {
        sql::one::<i64>("DELETE FROM pgmart.partition_set WHERE set_id = $1 RETURNING job_id", &[set.set_id.into()])
    });
    if let Some(j) = job_id {
        delete_job(j);
    }
    true
}
