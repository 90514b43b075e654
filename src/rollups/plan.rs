//! Pure planning for rollups: bucket validation, the SQL of a bucket and its end, the rollup's
//! DDL (table, unique index, real-time view), the capture statements the triggers run, the
//! statements that recompute a range of buckets, and the arithmetic of invalidated ranges
//! (clipping to the refresh window, merging). No PostgreSQL here, so all of it is unit tested.

use crate::error::{PgMartError, Result};
use crate::names::{quote_identifier as qi, quote_literal as ql};
use crate::timecol::TimeKind;

/// Most ranges one refresh keeps apart; beyond, the closest are merged.
pub const MAX_RANGES: usize = 100_000;
/// Ranges this many buckets wide or wider are recomputed each by its own statement (their bounds
/// literals, so the planner prunes partitions and picks its scan); narrower ones go together, up
/// to `NARROW_BATCH` per statement, joined to the source by their bounds.
pub const WIDE_BUCKETS: f64 = 48.0;
pub const NARROW_BATCH: usize = 1000;
/// Buckets per statement when `refresh_rollup` backfills a range.
pub const BACKFILL_BATCH: i64 = 1000;
/// The epoch microseconds that stand for -infinity and +infinity.
pub const NEG_INF: i64 = i64::MIN;
pub const POS_INF: i64 = i64::MAX;

/// A bucket width, aligned in the rollup's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Whole minutes below a day (in microseconds), counted from local midnight of 2000-01-01.
    Micros(i64),
    /// Whole days (1 to 31), starting at local midnight, counted from Monday 2000-01-03.
    Days(i32),
    /// One calendar month, from local midnight of its first day.
    Month,
}

const MINUTE: i64 = 60_000_000;
const DAY: i64 = 86_400 * 1_000_000;

impl Bucket {
    pub fn from_interval(months: i32, days: i32, micros: i64) -> Result<Bucket> {
        let bad = || {
            Err(PgMartError::invalid("a rollup bucket must be between 1 minute and 1 month")
                .detail("Whole minutes below a day ('15 minutes', '1 hour'), whole days ('1 day', '7 days'), or '1 month'.")
                .hint("For example bucket => '1 hour' or '1 day'."))
        };
        match (months, days, micros) {
            (1, 0, 0) => Ok(Bucket::Month),
            (0, d, 0) if (1..=31).contains(&d) => Ok(Bucket::Days(d)),
            (0, 0, u) if u >= MINUTE && u < DAY && u % MINUTE == 0 => Ok(Bucket::Micros(u)),
            (0, 0, u) if u >= DAY && u % DAY == 0 => Err(PgMartError::invalid(format!(
                "a bucket of {} hours is written in days",
                u / 3_600_000_000
            ))
            .hint(format!("Write bucket => '{} day{}' (days start at local midnight).", u / DAY, if u / DAY == 1 { "" } else { "s" }))),
            _ => bad(),
        }
    }

    /// Approximate length in seconds (for batch sizes and staleness).
    pub fn approx_seconds(&self) -> f64 {
        match self {
            Bucket::Micros(u) => *u as f64 / 1e6,
            Bucket::Days(d) => *d as f64 * 86_400.0,
            Bucket::Month => 30.0 * 86_400.0,
        }
    }
}

/// What the planner needs to know of a rollup.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// The rollup table, quoted and qualified.
    pub table: String,
    /// The source, quoted and qualified.
    pub source: String,
    pub time_column: String,
    pub kind: TimeKind,
    pub bucket: Bucket,
    pub timezone: String,
    pub dimensions: Vec<String>,
    /// (output column, analysed aggregate expression over the source's columns).
    pub measures: Vec<(String, String)>,
    pub filter: Option<String>,
}

/// The instant a row of alias `a` is at (a timestamptz expression).
fn instant(s: &Shape, a: &str) -> String {
    let t = format!("{a}.{}", qi(&s.time_column));
    match s.kind {
        TimeKind::Timestamptz => t,
        TimeKind::Timestamp => format!("({t} AT TIME ZONE 'UTC')"),
        TimeKind::Date => format!("({t}::pg_catalog.timestamp AT TIME ZONE {})", ql(&s.timezone)),
    }
}

/// The start of the bucket holding timestamptz expression `ts`.
pub fn bucket_of(s: &Shape, ts: &str) -> String {
    let tz = ql(&s.timezone);
    match s.bucket {
        Bucket::Micros(u) => format!(
            "pg_catalog.date_bin('{} seconds'::pg_catalog.interval, {ts}, '2000-01-01 00:00:00'::pg_catalog.timestamp AT TIME ZONE {tz})",
            u / 1_000_000
        ),
        Bucket::Days(d) => format!(
            "(pg_catalog.date_bin('{d} days'::pg_catalog.interval, {ts} AT TIME ZONE {tz}, '2000-01-03 00:00:00'::pg_catalog.timestamp) AT TIME ZONE {tz})"
        ),
        Bucket::Month => format!("(pg_catalog.date_trunc('month', {ts} AT TIME ZONE {tz}) AT TIME ZONE {tz})"),
    }
}

/// The end of the bucket that starts at timestamptz expression `b`.
pub fn bucket_end(s: &Shape, b: &str) -> String {
    let tz = ql(&s.timezone);
    match s.bucket {
        Bucket::Micros(u) => format!("({b} OPERATOR(pg_catalog.+) '{} seconds'::pg_catalog.interval)", u / 1_000_000),
        Bucket::Days(d) => format!("(({b} AT TIME ZONE {tz} OPERATOR(pg_catalog.+) '{d} days'::pg_catalog.interval) AT TIME ZONE {tz})"),
        Bucket::Month => format!("(({b} AT TIME ZONE {tz} OPERATOR(pg_catalog.+) '1 month'::pg_catalog.interval) AT TIME ZONE {tz})"),
    }
}

/// Rows of alias `a` with `lo <= time < hi` (timestamptz expressions), on the column itself so that
/// indexes and partition pruning apply. Bounds are whole buckets, so a date column is exact.
fn in_range(s: &Shape, a: &str, lo: &str, hi: &str) -> String {
    let t = format!("{a}.{}", qi(&s.time_column));
    match s.kind {
        TimeKind::Timestamptz => format!("{t} OPERATOR(pg_catalog.>=) {lo} AND {t} OPERATOR(pg_catalog.<) {hi}"),
        TimeKind::Timestamp => format!(
            "{t} OPERATOR(pg_catalog.>=) ({lo} AT TIME ZONE 'UTC') AND {t} OPERATOR(pg_catalog.<) ({hi} AT TIME ZONE 'UTC')"
        ),
        TimeKind::Date => {
            let tz = ql(&s.timezone);
            format!(
                "{t} OPERATOR(pg_catalog.>=) ({lo} AT TIME ZONE {tz})::pg_catalog.date AND {t} OPERATOR(pg_catalog.<) ({hi} AT TIME ZONE {tz})::pg_catalog.date"
            )
        }
    }
}

/// Rows of alias `a` at or after timestamptz expression `from`.
fn from_on(s: &Shape, a: &str, from: &str) -> String {
    let t = format!("{a}.{}", qi(&s.time_column));
    match s.kind {
        TimeKind::Timestamptz => format!("{t} OPERATOR(pg_catalog.>=) {from}"),
        TimeKind::Timestamp => format!("{t} OPERATOR(pg_catalog.>=) ({from} AT TIME ZONE 'UTC')"),
        TimeKind::Date => format!("{t} OPERATOR(pg_catalog.>=) ({from} AT TIME ZONE {})::pg_catalog.date", ql(&s.timezone)),
    }
}

/// The aggregate over the source's rows that meet `condition`: bucket, dimensions, measures.
fn aggregate(s: &Shape, condition: &str) -> String {
    aggregate_joined(s, "", condition)
}

/// [`aggregate`] with the source joined to something (`join`: a JOIN clause).
fn aggregate_joined(s: &Shape, join: &str, condition: &str) -> String {
    let mut cols = vec![format!("{} AS bucket", bucket_of(s, &instant(s, "s")))];
    let mut group = vec!["1".to_string()];
    for d in &s.dimensions {
        cols.push(format!("s.{} AS {}", qi(d), qi(d)));
        group.push(format!("s.{}", qi(d)));
    }
    for (name, expr) in &s.measures {
        cols.push(format!("({expr}) AS {}", qi(name)));
    }
    let filter = s.filter.as_ref().map(|f| format!(" AND ({f})")).unwrap_or_default();
    format!(
        "SELECT {} FROM {} AS s{join} WHERE ({condition}){filter} GROUP BY {}",
        cols.join(", "),
        s.source,
        group.join(", ")
    )
}

/// The statement that creates the (empty) rollup table, its column types those of the aggregate.
pub fn create_table(s: &Shape) -> String {
    format!("CREATE TABLE {} AS {} WITH NO DATA", s.table, aggregate(s, "false"))
}

/// The unique index on (bucket, dimensions...); NULL dimension values are one group.
pub fn create_index(s: &Shape, index_name: &str) -> String {
    let cols: Vec<String> = std::iter::once("bucket".to_string()).chain(s.dimensions.iter().map(qi)).collect();
    format!("CREATE UNIQUE INDEX {} ON {} ({}) NULLS NOT DISTINCT", qi(index_name), s.table, cols.join(", "))
}

/// The rollup table's columns, in order (bucket, dimensions, measures), quoted, each after `prefix`.
fn columns(s: &Shape, prefix: &str) -> Vec<String> {
    std::iter::once("bucket".to_string())
        .chain(s.dimensions.iter().map(qi))
        .chain(s.measures.iter().map(|(n, _)| qi(n)))
        .map(|c| format!("{prefix}{c}"))
        .collect()
}

/// Recompute the buckets in `[lo, hi)` (timestamptz literals): delete them, insert them again.
pub fn recompute(s: &Shape, lo: &str, hi: &str) -> [String; 2] {
    let cols = columns(s, "");
    [
        format!("DELETE FROM {} WHERE bucket OPERATOR(pg_catalog.>=) {lo} AND bucket OPERATOR(pg_catalog.<) {hi}", s.table),
        format!("INSERT INTO {} ({}) {}", s.table, cols.join(", "), aggregate(s, &in_range(s, "s", lo, hi))),
    ]
}

/// Recompute the buckets of many narrow ranges (timestamptz literal pairs) in two statements: the
/// source is joined to the ranges, so each is read through the time column's index (and only its
/// partitions).
pub fn recompute_many(s: &Shape, ranges: &[(String, String)]) -> [String; 2] {
    let values: Vec<String> = ranges.iter().map(|(lo, hi)| format!("({lo}, {hi})")).collect();
    let r = format!("(VALUES {}) AS p(pgmart_lo, pgmart_hi)", values.join(", "));
    let cols = columns(s, "");
    [
        format!(
            "DELETE FROM {} AS d USING {r} WHERE d.bucket OPERATOR(pg_catalog.>=) p.pgmart_lo AND d.bucket OPERATOR(pg_catalog.<) p.pgmart_hi",
            s.table
        ),
        format!(
            "INSERT INTO {} ({}) {}",
            s.table,
            cols.join(", "),
            aggregate_joined(s, &format!(" JOIN {r} ON {}", in_range(s, "s", "p.pgmart_lo", "p.pgmart_hi")), "true")
        ),
    ]
}

/// The real-time view: the materialized buckets below the watermark that no change is pending
/// for, the live aggregate of the buckets with pending changes (late rows not refreshed yet), and
/// the live aggregate of the source's rows at or after the watermark. So it is exact whenever it
/// is read, and costs a live aggregate only of what changed since the last refresh.
pub fn create_realtime_view(s: &Shape, view: &str, job_id: i64) -> String {
    // Each read once per query (an init plan, a materialized CTE), not once per row.
    let wm = format!("(SELECT pgmart._rollup_watermark({job_id}::pg_catalog.int8))");
    let pending = "pgmart_pending";
    let cols = columns(s, "r.");
    format!(
        "CREATE VIEW {view} AS WITH pgmart_pending AS MATERIALIZED (SELECT * FROM pgmart._rollup_pending({job_id}::pg_catalog.int8)) \
         SELECT {} FROM {} AS r WHERE r.bucket OPERATOR(pg_catalog.<) {wm} \
           AND NOT EXISTS (SELECT 1 FROM {pending} AS p WHERE r.bucket OPERATOR(pg_catalog.>=) p.pgmart_lo \
                            AND r.bucket OPERATOR(pg_catalog.<) p.pgmart_hi) \
         UNION ALL {} UNION ALL {}",
        cols.join(", "),
        s.table,
        aggregate_joined(s, &format!(" JOIN {pending} AS p ON {}", in_range(s, "s", "p.pgmart_lo", "p.pgmart_hi")), "true"),
        aggregate(s, &from_on(s, "s", &wm))
    )
}

/// The statement that logs the rows a table already has as changed (`$1` is the rollup's job id),
/// for a partition that gets capture only now: one range from its earliest to its latest instant.
pub fn capture(s: &Shape, rel: &str) -> String {
    let t = instant(s, "t");
    format!(
        "INSERT INTO pgmart.rollup_invalidation (job_id, lo, hi) \
         SELECT $1, pg_catalog.min({t}), pg_catalog.max({t}) FROM {rel} AS t HAVING pg_catalog.max({t}) IS NOT NULL"
    )
}

/// The first bucket of a logged change: the log holds the earliest and latest instant a statement
/// changed (see [`Changed`]), the refresh and the real-time view widen them to whole buckets.
pub fn align_lo(s: &Shape, x: &str) -> String {
    format!("CASE WHEN pg_catalog.isfinite({x}) THEN {} ELSE {x} END", bucket_of(s, x))
}

/// The end of the last bucket of a logged change (its latest instant is inside it).
pub fn align_hi(s: &Shape, x: &str) -> String {
    format!("CASE WHEN pg_catalog.isfinite({x}) THEN {} ELSE {x} END", bucket_end(s, &bucket_of(s, x)))
}

/// The cells a capture trigger sorts a statement's instants into (microseconds on the time
/// column's own clock): a fixed-width bucket's own grid from its origin, otherwise half a day
/// for days and two weeks for months (shorter than any such bucket, daylight saving included).
pub fn cells(bucket: Bucket, origin: i64) -> (i64, i64) {
    match bucket {
        Bucket::Micros(u) => (origin, u),
        Bucket::Days(d) => (0, i64::from(d) * DAY / 2),
        Bucket::Month => (0, 14 * DAY),
    }
}

/// What a statement changed, as few ranges as keep the refresh precise: its instants grouped by
/// cell, runs of neighbouring cells merged into one range from their earliest to their latest
/// instant. A bulk load over a week is one range; 1,000 late rows scattered over a month are
/// about as many ranges as buckets they fall in. Every instant added is inside a range, so no
/// change is ever missed; a range can at most cover one bucket more than it needs to (for days
/// and months, whose cells are not the buckets).
pub struct Changed {
    origin: i64,
    len: i64,
    cells: std::collections::HashMap<i64, (i64, i64)>,
    last: Option<(i64, (i64, i64))>,
}

impl Changed {
    pub fn new((origin, len): (i64, i64)) -> Changed {
        Changed { origin, len: len.max(1), cells: std::collections::HashMap::new(), last: None }
    }

    pub fn add(&mut self, v: i64) {
        let cell = v.saturating_sub(self.origin).div_euclid(self.len);
        match &mut self.last {
            Some((c, (lo, hi))) if *c == cell => {
                *lo = (*lo).min(v);
                *hi = (*hi).max(v);
            }
            _ => {
                if let Some((c, r)) = self.last.take() {
                    self.merge(c, r);
                }
                self.last = Some((cell, (v, v)));
            }
        }
    }

    fn merge(&mut self, cell: i64, (lo, hi): (i64, i64)) {
        let e = self.cells.entry(cell).or_insert((lo, hi));
        e.0 = e.0.min(lo);
        e.1 = e.1.max(hi);
    }

    /// The ranges (earliest and latest instant, both included), in order.
    pub fn ranges(mut self) -> Vec<(i64, i64)> {
        if let Some((c, r)) = self.last.take() {
            self.merge(c, r);
        }
        let mut cells: Vec<(i64, (i64, i64))> = self.cells.into_iter().collect();
        cells.sort_unstable_by_key(|(c, _)| *c);
        let mut out: Vec<(i64, i64)> = vec![];
        let mut prev: Option<i64> = None;
        for (c, (lo, hi)) in cells {
            match (prev, out.last_mut()) {
                (Some(p), Some(last)) if c == p + 1 => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
            prev = Some(c);
        }
        out
    }
}

/// The name of capture trigger `which` (ins, upd, del, trunc) of rollup `job_id`.
pub fn trigger_name(job_id: i64, which: &str) -> String {
    format!("pgmart_rollup_{job_id}_{which}")
}

pub const TRIGGERS: [&str; 4] = ["ins", "upd", "del", "trunc"];

/// The four capture triggers of rollup `job_id` on relation `rel` (quoted, qualified).
pub fn capture_triggers(job_id: i64, rel: &str) -> Vec<String> {
    let f = format!("pgmart._rollup_capture('{job_id}')");
    vec![
        format!(
            "CREATE TRIGGER {} AFTER INSERT ON {rel} REFERENCING NEW TABLE AS pgmart_new FOR EACH STATEMENT EXECUTE FUNCTION {f}",
            qi(trigger_name(job_id, "ins"))
        ),
        format!(
            "CREATE TRIGGER {} AFTER UPDATE ON {rel} REFERENCING OLD TABLE AS pgmart_old NEW TABLE AS pgmart_new FOR EACH STATEMENT EXECUTE FUNCTION {f}",
            qi(trigger_name(job_id, "upd"))
        ),
        format!(
            "CREATE TRIGGER {} AFTER DELETE ON {rel} REFERENCING OLD TABLE AS pgmart_old FOR EACH STATEMENT EXECUTE FUNCTION {f}",
            qi(trigger_name(job_id, "del"))
        ),
        format!("CREATE TRIGGER {} AFTER TRUNCATE ON {rel} FOR EACH STATEMENT EXECUTE FUNCTION {f}", qi(trigger_name(job_id, "trunc"))),
    ]
}

/// A timestamptz literal for epoch microseconds (exact; the infinities for the sentinels).
pub fn ts_literal(us: i64) -> String {
    match us {
        NEG_INF => "'-infinity'::pg_catalog.timestamptz".into(),
        POS_INF => "'infinity'::pg_catalog.timestamptz".into(),
        _ => {
            let t = chrono::DateTime::from_timestamp_micros(us).expect("a timestamp in range");
            format!("'{}'::pg_catalog.timestamptz", t.format("%Y-%m-%d %H:%M:%S%.6f+00"))
        }
    }
}

/// The step between backfill batches (`BACKFILL_BATCH` buckets), in local time for days and months.
pub fn batch_step(b: Bucket) -> String {
    match b {
        Bucket::Micros(u) => format!("{} seconds", BACKFILL_BATCH * u / 1_000_000),
        Bucket::Days(d) => format!("{} days", BACKFILL_BATCH * d as i64),
        Bucket::Month => format!("{BACKFILL_BATCH} months"),
    }
}

/// A timestamptz expression in the time the backfill steps in (local for days and months).
pub fn to_local(s: &Shape, ts: &str) -> String {
    match s.bucket {
        Bucket::Micros(_) => ts.to_string(),
        _ => format!("({ts} AT TIME ZONE {})", ql(&s.timezone)),
    }
}

/// [`to_local`] undone.
pub fn from_local(s: &Shape, x: &str) -> String {
    match s.bucket {
        Bucket::Micros(_) => x.to_string(),
        _ => format!("({x} AT TIME ZONE {})", ql(&s.timezone)),
    }
}

/// What a refresh recomputes and what it keeps for later, from the invalidated ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Work {
    /// Disjoint, sorted `[lo, hi)` ranges to recompute.
    pub ranges: Vec<(i64, i64)>,
    /// Invalidated ranges below the window's start, kept in the log (and shown, and alerted).
    pub kept: Vec<(i64, i64)>,
}

/// The refresh window and what it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Start of the window (bucket aligned; NEG_INF without a start offset).
    pub lo: i64,
    /// The new watermark: buckets below it are materialized after this refresh.
    pub watermark: i64,
    /// The watermark before this refresh (None: never filled).
    pub previous: Option<i64>,
    /// The first bucket that holds data (for a first fill), or of the rollup's own rows (for a
    /// truncate's unbounded invalidation).
    pub first_bucket: Option<i64>,
}

/// Plan a refresh: the forward range from the previous watermark to the new one, and every
/// invalidated range clipped to `[window.lo, watermark)` (parts at or above the watermark are
/// computed when the watermark reaches them; parts below the window are kept).
pub fn work(window: &Window, invalidated: &[(i64, i64)]) -> Work {
    let mut w = Work::default();
    let start = window.previous.or(window.first_bucket).map(|p| p.max(window.lo));
    if let Some(s) = start {
        if s < window.watermark {
            w.ranges.push((s, window.watermark));
        }
    }
    for &(lo, hi) in invalidated {
        let lo = if lo == NEG_INF { window.first_bucket.unwrap_or(window.watermark).min(window.watermark) } else { lo };
        let hi = hi.min(window.watermark);
        if lo >= hi {
            continue;
        }
        if lo < window.lo {
            w.kept.push((lo, hi.min(window.lo)));
        }
        let lo = lo.max(window.lo);
        if lo < hi {
            w.ranges.push((lo, hi));
        }
    }
    w.ranges = merge(w.ranges, MAX_RANGES);
    w.kept = merge(w.kept, usize::MAX);
    w
}

/// Sort and merge ranges that touch or overlap; then, while there are more than `max`, merge the
/// two neighbours with the smallest gap.
pub fn merge(mut ranges: Vec<(i64, i64)>, max: usize) -> Vec<(i64, i64)> {
    ranges.sort();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    while out.len() > max.max(1) {
        let i = (0..out.len() - 1).min_by_key(|&i| out[i + 1].0.saturating_sub(out[i].1)).expect("two ranges");
        out[i].1 = out[i + 1].1;
        out.remove(i + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            table: "\"mart\".\"sales_hourly\"".into(),
            source: "\"public\".\"orders\"".into(),
            time_column: "created_at".into(),
            kind: TimeKind::Timestamptz,
            bucket: Bucket::Micros(3_600_000_000),
            timezone: "Europe/Paris".into(),
            dimensions: vec!["region".into(), "channel".into()],
            measures: vec![("revenue".into(), "sum(amount)".into()), ("orders".into(), "count(*)".into())],
            filter: Some("(status <> 'void'::text)".into()),
        }
    }

    #[test]
    fn buckets_from_intervals() {
        assert_eq!(Bucket::from_interval(0, 0, 3_600_000_000).unwrap(), Bucket::Micros(3_600_000_000));
        assert_eq!(Bucket::from_interval(0, 0, 60_000_000).unwrap(), Bucket::Micros(60_000_000));
        assert_eq!(Bucket::from_interval(0, 7, 0).unwrap(), Bucket::Days(7));
        assert_eq!(Bucket::from_interval(1, 0, 0).unwrap(), Bucket::Month);
        for (m, d, u) in [(0, 0, 0), (0, 0, 59_000_000), (0, 0, 90_000_000), (2, 0, 0), (1, 1, 0), (0, 1, 60_000_000), (0, 32, 0), (0, -1, 0), (0, 0, -3_600_000_000)] {
            assert!(Bucket::from_interval(m, d, u).is_err(), "{m} {d} {u}");
        }
        let e = Bucket::from_interval(0, 0, 86_400_000_000).unwrap_err();
        assert!(e.message.contains("24 hours"), "{}", e.message);
    }

    #[test]
    fn bucket_sql_is_aligned_in_the_zone() {
        let s = shape();
        assert_eq!(
            bucket_of(&s, "x"),
            "pg_catalog.date_bin('3600 seconds'::pg_catalog.interval, x, '2000-01-01 00:00:00'::pg_catalog.timestamp AT TIME ZONE 'Europe/Paris')"
        );
        let days = Shape { bucket: Bucket::Days(1), ..shape() };
        assert!(bucket_of(&days, "x").contains("x AT TIME ZONE 'Europe/Paris', '2000-01-03"));
        assert!(bucket_end(&days, "b").contains("b AT TIME ZONE 'Europe/Paris' OPERATOR(pg_catalog.+) '1 days'"));
        let month = Shape { bucket: Bucket::Month, ..shape() };
        assert!(bucket_of(&month, "x").starts_with("(pg_catalog.date_trunc('month', x AT TIME ZONE"));
    }

    #[test]
    fn ddl_and_recompute() {
        let s = shape();
        let t = create_table(&s);
        assert!(t.starts_with("CREATE TABLE \"mart\".\"sales_hourly\" AS SELECT pg_catalog.date_bin("), "{t}");
        assert!(t.contains("s.\"created_at\""), "{t}");
        assert!(t.contains("s.\"region\" AS \"region\", s.\"channel\" AS \"channel\", (sum(amount)) AS \"revenue\", (count(*)) AS \"orders\""), "{t}");
        assert!(t.ends_with("FROM \"public\".\"orders\" AS s WHERE (false) AND ((status <> 'void'::text)) GROUP BY 1, s.\"region\", s.\"channel\" WITH NO DATA"), "{t}");
        assert_eq!(create_index(&s, "sales_hourly_key"), "CREATE UNIQUE INDEX \"sales_hourly_key\" ON \"mart\".\"sales_hourly\" (bucket, \"region\", \"channel\") NULLS NOT DISTINCT");
        let plain = Shape { dimensions: vec![], ..shape() };
        assert_eq!(create_index(&plain, "k"), "CREATE UNIQUE INDEX \"k\" ON \"mart\".\"sales_hourly\" (bucket) NULLS NOT DISTINCT");
        let [del, ins] = recompute(&s, "L", "H");
        assert_eq!(del, "DELETE FROM \"mart\".\"sales_hourly\" WHERE bucket OPERATOR(pg_catalog.>=) L AND bucket OPERATOR(pg_catalog.<) H");
        assert!(ins.starts_with("INSERT INTO \"mart\".\"sales_hourly\" (bucket, \"region\", \"channel\", \"revenue\", \"orders\") SELECT "), "{ins}");
        assert!(ins.contains("WHERE (s.\"created_at\" OPERATOR(pg_catalog.>=) L AND s.\"created_at\" OPERATOR(pg_catalog.<) H)"), "{ins}");
        let local = Shape { kind: TimeKind::Timestamp, ..shape() };
        assert!(recompute(&local, "L", "H")[1].contains("s.\"created_at\" OPERATOR(pg_catalog.>=) (L AT TIME ZONE 'UTC')"));
        let date = Shape { kind: TimeKind::Date, bucket: Bucket::Days(1), ..shape() };
        assert!(recompute(&date, "L", "H")[1].contains("(L AT TIME ZONE 'Europe/Paris')::pg_catalog.date"));
        let v = create_realtime_view(&s, "\"mart\".\"sales_hourly_rt\"", 42);
        assert!(v.contains("FROM \"mart\".\"sales_hourly\" AS r WHERE r.bucket OPERATOR(pg_catalog.<) (SELECT pgmart._rollup_watermark(42::pg_catalog.int8)) AND NOT EXISTS"), "{v}");
        assert!(v.contains("JOIN pgmart_pending AS p ON s.\"created_at\" OPERATOR(pg_catalog.>=) p.pgmart_lo"), "{v}");
        assert!(v.contains("WHERE (s.\"created_at\" OPERATOR(pg_catalog.>=) (SELECT pgmart._rollup_watermark(42::pg_catalog.int8)))"), "{v}");
        let [d, i] = recompute_many(&s, &[("A".into(), "B".into()), ("C".into(), "D".into())]);
        assert!(d.contains("USING (VALUES (A, B), (C, D)) AS p(pgmart_lo, pgmart_hi) WHERE d.bucket OPERATOR(pg_catalog.>=) p.pgmart_lo"), "{d}");
        assert!(i.contains("JOIN (VALUES (A, B), (C, D)) AS p(pgmart_lo, pgmart_hi) ON s.\"created_at\" OPERATOR(pg_catalog.>=) p.pgmart_lo"), "{i}");
        let c = capture(&s, "\"mart\".\"p1\"");
        assert!(c.contains("SELECT $1, pg_catalog.min(t.\"created_at\"), pg_catalog.max(t.\"created_at\") FROM \"mart\".\"p1\" AS t"), "{c}");
        assert!(align_lo(&s, "i.lo").starts_with("CASE WHEN pg_catalog.isfinite(i.lo) THEN pg_catalog.date_bin("));
        assert!(align_hi(&s, "i.hi").contains("i.hi, '2000-01-01 00:00:00'::pg_catalog.timestamp AT TIME ZONE 'Europe/Paris') OPERATOR(pg_catalog.+) '3600 seconds'"));
        let trig = capture_triggers(7, "\"public\".\"orders\"");
        assert_eq!(trig.len(), 4);
        assert!(trig[1].contains("REFERENCING OLD TABLE AS pgmart_old NEW TABLE AS pgmart_new"));
        assert!(trig[3].contains("\"pgmart_rollup_7_trunc\" AFTER TRUNCATE"));
    }

    #[test]
    fn changes_group_into_runs_of_cells() {
        const H: i64 = 3_600_000_000;
        // A bulk load over a week, in any order: one range, from its first to its last instant.
        let mut c = Changed::new(cells(Bucket::Micros(H), 0));
        for i in (0..7 * 24 * 60).rev() {
            c.add(i * 60_000_000 + 5);
        }
        assert_eq!(c.ranges(), vec![(5, (7 * 24 * 60 - 1) * 60_000_000 + 5)]);
        // Scattered rows: one range per bucket they fall in (neighbours merge), each exactly its
        // rows' first and last instant; nothing in between.
        let mut c = Changed::new(cells(Bucket::Micros(H), 0));
        for v in [10 * H + 7, 3 * H + 1, 10 * H + 2, 4 * H + 9, 30 * H, 3 * H + 100] {
            c.add(v);
        }
        assert_eq!(c.ranges(), vec![(3 * H + 1, 4 * H + 9), (10 * H + 2, 10 * H + 7), (30 * H, 30 * H)]);
        // The grid starts at the bucket's origin (a zone's local midnight), negative instants too.
        let mut c = Changed::new(cells(Bucket::Micros(H), -H / 2));
        for v in [-H / 2, H / 2 - 1, H / 2] {
            c.add(v);
        }
        assert_eq!(c.ranges(), vec![(-H / 2, H / 2)]);
        let mut c = Changed::new(cells(Bucket::Micros(H), 0));
        for v in [-H, -1, H + 1] {
            c.add(v);
        }
        assert_eq!(c.ranges(), vec![(-H, -1), (H + 1, H + 1)]);
        // The infinities stay apart and whole.
        let mut c = Changed::new(cells(Bucket::Month, 0));
        for v in [i64::MAX, 0, i64::MIN] {
            c.add(v);
        }
        assert_eq!(c.ranges(), vec![(i64::MIN, i64::MIN), (0, 0), (i64::MAX, i64::MAX)]);
        // Days and months: cells shorter than any such bucket (a gap between two runs always
        // holds a whole cell, so a whole bucket is never logged between two changed ones).
        assert_eq!(cells(Bucket::Days(1), 123), (0, 12 * H));
        assert_eq!(cells(Bucket::Month, 0), (0, 14 * 24 * H));
        assert!(Changed::new((0, 0)).ranges().is_empty());
    }

    #[test]
    fn literals_are_exact() {
        assert_eq!(ts_literal(0), "'1970-01-01 00:00:00.000000+00'::pg_catalog.timestamptz");
        assert_eq!(ts_literal(1_700_000_000_123_456), "'2023-11-14 22:13:20.123456+00'::pg_catalog.timestamptz");
        assert_eq!(ts_literal(NEG_INF), "'-infinity'::pg_catalog.timestamptz");
    }

    #[test]
    fn merging_and_capping() {
        assert_eq!(merge(vec![(5, 6), (1, 2), (2, 3), (10, 12), (11, 15)], 10), vec![(1, 3), (5, 6), (10, 15)]);
        assert_eq!(merge(vec![(0, 1), (2, 3), (10, 11), (100, 101)], 2), vec![(0, 11), (100, 101)]);
        assert_eq!(merge(vec![], 3), vec![]);
    }

    #[test]
    fn work_clips_to_the_window() {
        let w = Window { lo: 100, watermark: 200, previous: Some(180), first_bucket: Some(10) };
        // Forward range from the previous watermark; invalidations clipped; below the window kept;
        // at or above the watermark dropped (the forward range will reach them).
        let got = work(&w, &[(50, 60), (90, 110), (150, 160), (190, 230), (250, 260)]);
        assert_eq!(got.ranges, vec![(100, 110), (150, 160), (180, 200)]);
        assert_eq!(got.kept, vec![(50, 60), (90, 100)]);
        // First fill: from the first bucket with data (or the window's start).
        let first = Window { lo: NEG_INF, watermark: 200, previous: None, first_bucket: Some(10) };
        assert_eq!(work(&first, &[]).ranges, vec![(10, 200)]);
        let first_in_window = Window { lo: 150, ..first.clone() };
        assert_eq!(work(&first_in_window, &[]).ranges, vec![(150, 200)]);
        // Empty source, never filled: nothing.
        let empty = Window { lo: NEG_INF, watermark: 200, previous: None, first_bucket: None };
        assert_eq!(work(&empty, &[]), Work::default());
        // A truncate invalidates everything from the rollup's first bucket.
        let t = Window { lo: NEG_INF, watermark: 200, previous: Some(200), first_bucket: Some(40) };
        assert_eq!(work(&t, &[(NEG_INF, POS_INF)]).ranges, vec![(40, 200)]);
    }
}
