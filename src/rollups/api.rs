//! SQL-facing rollup functions: thin wrappers over [`super::exec`].

use super::capture::{self, Captured};
use super::exec::{self, Backfill, NewRollup};
use crate::args::{self, RegClass};
use crate::error::required;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::PgTriggerOperation;

#[pg_extern(schema = "pgmart", volatile)]
#[allow(clippy::too_many_arguments)]
fn create_rollup(
    name: Option<&str>,
    source: Option<RegClass>,
    time_column: Option<&str>,
    bucket: Option<Interval>,
    dimensions: default!(Option<Vec<Option<String>>>, "'{}'"),
    measures: default!(Option<pgrx::JsonB>, "NULL"),
    filter: default!(Option<&str>, "NULL"),
    schedule: default!(Option<&str>, "'1 minute'"),
    timezone: default!(Option<&str>, "'UTC'"),
    start_offset: default!(Option<Interval>, "NULL"),
    end_offset: default!(Option<Interval>, "NULL"),
    realtime: default!(Option<bool>, true),
    retention: default!(Option<Interval>, "NULL"),
) -> i64 {
    let name = required(name, "name");
    let source = args::relation(source, "source");
    exec::create(NewRollup {
        name,
        source,
        time_column: required(time_column, "time_column"),
        bucket: required(bucket, "bucket"),
        dimensions: args::names(dimensions, "dimensions").unwrap_or_default(),
        measures: required(measures, "measures").0,
        filter,
        schedule: schedule.unwrap_or("1 minute"),
        timezone: timezone.unwrap_or("UTC"),
        start_offset,
        end_offset,
        realtime: realtime.unwrap_or(true),
        retention,
    })
}

/// Recompute a rollup now: with no range, what its schedule would (the log and new buckets); with
/// a range, every bucket in it, in batches, whatever its offsets say (a backfill).
#[pg_extern(schema = "pgmart", volatile)]
fn refresh_rollup(
    name: Option<&str>,
    from_ts: default!(Option<TimestampWithTimeZone>, "NULL"),
    to_ts: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> pgrx::JsonB {
    crate::jobs::api::require_primary("refresh a rollup");
    let r = exec::for_caller(required(name, "name"));
    let micros = |t: TimestampWithTimeZone| {
        crate::sql::one::<i64>(
            "SELECT (EXTRACT(epoch FROM $1::pg_catalog.timestamptz) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8",
            &[t.into()],
        )
    };
    for t in [from_ts, to_ts].into_iter().flatten() {
        if !crate::sql::one::<bool>("SELECT pg_catalog.isfinite($1::pg_catalog.timestamptz)", &[t.into()]).unwrap_or(false) {
            crate::error::PgMartError::invalid("from_ts and to_ts must be finite").raise();
        }
    }
    let (from_us, to_us) = (from_ts.and_then(micros), to_ts.and_then(micros));
    if let (Some(a), Some(b)) = (from_us, to_us) {
        if a >= b {
            crate::error::PgMartError::invalid("from_ts must be before to_ts").raise();
        }
    }
    let backfill = (from_us.is_some() || to_us.is_some()).then_some(Backfill { from_us, to_us });
    let out = crate::sql::as_role(pg_sys::Oid::from(r.owner), || exec::refresh(&r, backfill));
    pgrx::JsonB(out)
}

#[pg_extern(schema = "pgmart", volatile)]
fn drop_rollup(name: Option<&str>, keep_data: default!(Option<bool>, false)) {
    exec::drop_rollup(required(name, "name"), keep_data.unwrap_or(false))
}

/// The capture trigger of every rollup (statement-level, on its source and each partition): logs
/// the buckets the statement's rows fall in, as pgmart (writers need no privilege on the log).
#[pg_trigger(sql = false)] // created in sql/rollups.sql, in schema pgmart
fn _rollup_capture<'a>(trigger: &'a PgTrigger<'a>) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgHeapTupleError> {
    let job_id: i64 = trigger
        .extra_args()
        .ok()
        .and_then(|a| a.first().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| crate::error::PgMartError::privilege("pgmart._rollup_capture needs its rollup id as its argument").raise());
    let relid = trigger.relid().unwrap_or_else(|e| crate::error::PgMartError::internal(format!("pgmart: {e}")).raise());
    let op = match trigger.op() {
        Ok(PgTriggerOperation::Insert) => Captured::New,
        Ok(PgTriggerOperation::Delete) => Captured::Old,
        Ok(PgTriggerOperation::Update) => Captured::Both,
        _ => Captured::All,
    };
    // SAFETY: the TriggerData of this call.
    unsafe { capture::captured(job_id, relid, op, trigger.trigger_data() as *const pg_sys::TriggerData) };
    Ok(None)
}

/// The watermark of a rollup, for its real-time view: materialized buckets below it, the source at
/// or after it. `-infinity` for a reader who may not read the rollup (its table or its view):
/// nobody learns when another role's table changed.
#[pg_extern(schema = "pgmart", stable)]
fn _rollup_watermark(job_id: i64) -> TimestampWithTimeZone {
    let us = exec::watermark_for_reader(job_id);
    us.and_then(|us| TimestampWithTimeZone::try_from(us - crate::metrics::exec::PG_EPOCH_MICROS).ok())
        .unwrap_or_else(TimestampWithTimeZone::negative_infinity)
}

/// The buckets below the watermark with changes not refreshed yet, as disjoint ranges (the
/// real-time view computes them live); none for a reader who may not read the rollup.
#[pg_extern(schema = "pgmart", stable)]
fn _rollup_pending(
    job_id: i64,
) -> TableIterator<'static, (name!(pgmart_lo, TimestampWithTimeZone), name!(pgmart_hi, TimestampWithTimeZone))> {
    let ts = |us: i64| match us {
        super::plan::NEG_INF => TimestampWithTimeZone::negative_infinity(),
        super::plan::POS_INF => TimestampWithTimeZone::positive_infinity(),
        _ => TimestampWithTimeZone::try_from(us - crate::metrics::exec::PG_EPOCH_MICROS).unwrap_or_else(|_| TimestampWithTimeZone::positive_infinity()),
    };
    TableIterator::new(exec::pending_for_reader(job_id).into_iter().map(move |(lo, hi)| (ts(lo), ts(hi))))
}
