//! Rollups against PostgreSQL: registration (the table, its unique index, the real-time view, the
//! capture triggers on the source and each of its partitions), the refresh that consumes the
//! invalidation log and recomputes only those buckets, backfills, and the `rollup` job kind.
//!
//! Who does what: the rollup's table and view belong to its registrant and are written as them;
//! measures and the filter are analysed as fragments read by anyone (built-ins only: the real-time
//! view runs them as its reader); the triggers and the log are pgmart's (as the catalog owner).

use super::plan::{self, Bucket, Shape, Window};
use crate::error::{OrRaise, PgMartError};
use crate::fragment::{self, Runs};
use crate::jobs::engine::Job;
use crate::locks;
use crate::names::{quote_identifier as qi, quote_literal as ql};
use crate::sql;
use crate::timecol::TimeKind;
use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};

/// What `create_rollup` was given (checked here).
pub struct NewRollup<'a> {
    pub name: &'a str,
    pub source: pg_sys::Oid,
    pub time_column: &'a str,
    pub bucket: pgrx::datum::Interval,
    pub dimensions: Vec<String>,
    pub measures: Value,
    pub filter: Option<&'a str>,
    pub schedule: &'a str,
    pub timezone: &'a str,
    pub start_offset: Option<pgrx::datum::Interval>,
    pub end_offset: Option<pgrx::datum::Interval>,
    pub realtime: bool,
    pub retention: Option<pgrx::datum::Interval>,
}

/// A registered rollup as its refresh needs it.
#[derive(Deserialize, Debug, Clone)]
pub struct Stored {
    pub job_id: i64,
    pub name: String,
    /// The rollup table, quoted and qualified (NULL when it was dropped).
    pub table: Option<String>,
    pub source_oid: i64,
    /// The source, quoted and qualified (NULL when it is gone).
    pub source: Option<String>,
    pub source_name: String,
    pub time_column: String,
    pub time_kind: String,
    pub months: i32,
    pub days: i32,
    pub micros: i64,
    pub timezone: String,
    pub dimensions: Vec<String>,
    pub measure_names: Vec<String>,
    pub measures: Vec<String>,
    pub filter: Option<String>,
    pub start_offset: Option<String>,
    pub end_offset: Option<String>,
    pub retention: Option<String>,
    pub realtime: bool,
    pub watermark_us: Option<i64>,
    pub owner: u32,
    pub period_s: f64,
    /// Seconds since its last refresh (None: never refreshed).
    pub last_refresh_age_s: Option<f64>,
    /// Its real-time view, quoted and qualified (None without one).
    pub rt: Option<String>,
    /// Whether the source has row-level security (then readers may see less than the rollup).
    pub source_rls: bool,
}

const STORED: &str = "SELECT r.job_id, r.name, \
        (SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) \
                pg_catalog.quote_ident(c.relname::pg_catalog.text) \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE c.oid OPERATOR(pg_catalog.=) r.rel) AS \"table\", \
        r.source::pg_catalog.oid::pg_catalog.int8 AS source_oid, \
        (SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) \
                pg_catalog.quote_ident(c.relname::pg_catalog.text) \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE c.oid OPERATOR(pg_catalog.=) r.source) AS source, \
        r.source_name, r.time_column::pg_catalog.text AS time_column, r.time_kind, \
        (EXTRACT(month FROM r.bucket)::pg_catalog.int4 OPERATOR(pg_catalog.+) (12 OPERATOR(pg_catalog.*) EXTRACT(year FROM r.bucket)::pg_catalog.int4)) AS months, \
        EXTRACT(day FROM r.bucket)::pg_catalog.int4 AS days, \
        (EXTRACT(epoch FROM pg_catalog.make_interval(hours => EXTRACT(hour FROM r.bucket)::pg_catalog.int4, \
                                                      mins => EXTRACT(minute FROM r.bucket)::pg_catalog.int4)) \
            OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 AS micros, \
        r.timezone, r.dimensions, r.measure_names, r.measures, r.filter, \
        r.start_offset::pg_catalog.text AS start_offset, r.end_offset::pg_catalog.text AS end_offset, \
        r.retention::pg_catalog.text AS retention, r.realtime, \
        (EXTRACT(epoch FROM r.watermark) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 AS watermark_us, \
        coalesce(a.relowner, 0::pg_catalog.oid)::pg_catalog.int8 AS owner, r.period_s, \
        EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) r.last_refresh_at)::pg_catalog.float8 AS last_refresh_age_s, \
        (SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) \
                pg_catalog.quote_ident(c.relname::pg_catalog.text) \
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE c.oid OPERATOR(pg_catalog.=) r.rt_view) AS rt, \
        coalesce((SELECT c.relrowsecurity FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) r.source), false) AS source_rls \
   FROM pgmart.rollup r JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) r.job_id \
   LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor";

/// The rollups of a source (to answer a metric from one).
pub fn of_source(source: u32) -> Vec<Stored> {
    sql::as_catalog_owner(|| {
        sql::rows::<Stored>(
            &format!("{STORED} WHERE r.source::pg_catalog.oid OPERATOR(pg_catalog.=) $1 ORDER BY r.bucket DESC, r.job_id"),
            &[pg_sys::Oid::from(source).into()],
        )
    })
}

pub fn load(job_id: i64) -> Option<Stored> {
    sql::as_catalog_owner(|| sql::row::<Stored>(&format!("{STORED} WHERE r.job_id OPERATOR(pg_catalog.=) $1"), &[job_id.into()]))
}

impl Stored {
    pub fn bucket(&self) -> Bucket {
        Bucket::from_interval(self.months, self.days, self.micros).or_raise()
    }
    pub fn shape(&self) -> Shape {
        Shape {
            table: self.table.clone().unwrap_or_else(|| self.name.clone()),
            source: self.source.clone().unwrap_or_else(|| self.source_name.clone()),
            time_column: self.time_column.clone(),
            kind: TimeKind::stored(&self.time_kind),
            bucket: self.bucket(),
            timezone: self.timezone.clone(),
            dimensions: self.dimensions.clone(),
            measures: self.measure_names.iter().cloned().zip(self.measures.iter().cloned()).collect(),
            filter: self.filter.clone(),
        }
    }
    fn owner_oid(&self) -> pg_sys::Oid {
        pg_sys::Oid::from(self.owner)
    }
}

fn missing(name: &str) -> PgMartError {
    PgMartError::undefined_object(format!("rollup \"{name}\" does not exist or you may not act on it"))
        .hint("pgmart.rollups lists the rollups you may act on.")
}

/// The rollup called `name` (its table's name, qualified or found on the caller's search_path)
/// that the caller may act on.
pub fn for_caller(name: &str) -> Stored {
    let caller = sql::caller();
    crate::tables::registration_job("pgmart.rollup", name)
        .and_then(load)
        .filter(|r| (r.owner != 0 && sql::may_act_as(caller, r.owner_oid())) || unsafe { pg_sys::superuser_arg(caller) })
        .unwrap_or_else(|| missing(name).raise())
}

#[derive(Deserialize)]
struct Target {
    schema: String,
    relname: String,
}

/// The rollup table's schema and name: `name` qualified, or in the caller's current schema.
fn target(name: &str) -> Target {
    let (schema, relname) = crate::tables::new_table_name(name, "rollup", "mart.sales_hourly");
    if relname.len() > 60 {
        PgMartError::invalid(format!("rollup name \"{relname}\" is too long"))
            .detail("Its real-time view is named <name>_rt and must fit in 63 bytes.")
            .raise();
    }
    Target { schema, relname }
}

/// The measures: a JSON object of output column names to aggregate expressions.
fn measures(v: &Value, dimensions: &[String]) -> Vec<(String, String)> {
    let Some(obj) = v.as_object().filter(|o| !o.is_empty()) else {
        PgMartError::invalid("measures must be a JSON object of column names to aggregate expressions")
            .hint(r#"For example '{"revenue": "sum(amount)", "orders": "count(*)"}'."#)
            .raise()
    };
    obj.iter()
        .map(|(k, e)| {
            let Some(expr) = e.as_str() else {
                PgMartError::invalid(format!("measure \"{k}\" must be an aggregate expression in a JSON string")).raise()
            };
            if k.trim().is_empty() || k.len() > 63 {
                PgMartError::invalid(format!("measure name \"{k}\" must have 1 to 63 bytes")).raise();
            }
            if k == "bucket" || dimensions.contains(k) {
                PgMartError::invalid(format!("measure \"{k}\" has the name of the bucket or a dimension column")).raise();
            }
            (k.clone(), expr.to_string())
        })
        .collect()
}

/// Register a rollup: make its table, index and real-time view as the caller, install capture,
/// fill it, and schedule its refresh. Returns its id (its job's id).
pub fn create(n: NewRollup) -> i64 {
    crate::jobs::api::require_primary("create a rollup");
    let caller = sql::caller();
    let src = sql::relation(n.source)
    .unwrap_or_else(|| PgMartError::undefined_table("rollup source does not exist").raise());
    if !["r", "p"].contains(&src.relkind.as_str()) {
        PgMartError::wrong_object_type(format!("rollup source {} is not a table", src.qualified))
            .hint("A rollup reads a table or a partitioned table (for a view, schedule a materialized view with pgmart.schedule_refresh).")
            .raise();
    }
    if !sql::may_act_as(caller, pg_sys::Oid::from(src.owner)) {
        PgMartError::privilege(format!("you may not create a rollup of {}", src.qualified))
            .detail("Only the owner of the source (or a role that may act as it) may.")
            .raise();
    }
    let bucket = Bucket::from_interval(n.bucket.months(), n.bucket.days(), n.bucket.micros()).or_raise();
    let zone = crate::jobs::tz::resolve(n.timezone).or_raise();
    for (what, iv) in [("start_offset", &n.start_offset), ("end_offset", &n.end_offset), ("retention", &n.retention)] {
        if let Some(iv) = iv {
            if iv.months() < 0 || iv.days() < 0 || iv.micros() < 0 {
                PgMartError::invalid(format!("{what} must not be negative")).raise();
            }
            crate::args::check_positive_interval(iv, what);
        }
    }
    // The time column: a date or a timestamp; a date holds whole days only.
    let ttype = sql::one::<String>(
        "SELECT pg_catalog.format_type(t.oid, NULL) FROM pg_catalog.pg_attribute a \
           JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid \
          WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name \
            AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
        &[n.source.into(), n.time_column.into()],
    )
    .unwrap_or_else(|| PgMartError::undefined_column(format!("column \"{}\" of {} does not exist", n.time_column, src.qualified)).raise());
    let kind = TimeKind::from_type_name(&ttype).unwrap_or_else(|| {
        PgMartError::invalid(format!("time column \"{}\" is {ttype}, not a date or timestamp", n.time_column))
            .hint("Use a date, timestamp or timestamptz column.")
            .raise()
    });
    if kind == TimeKind::Date && matches!(bucket, Bucket::Micros(_)) {
        PgMartError::invalid("a date time column needs a bucket of whole days or a month").raise();
    }
    crate::names::check_dimensions(&n.dimensions).or_raise();
    for d in &n.dimensions {
        let builtin = sql::one::<bool>(
            "SELECT a.atttypid OPERATOR(pg_catalog.<) 16384::pg_catalog.oid FROM pg_catalog.pg_attribute a \
              WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name \
                AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
            &[n.source.into(), d.as_str().into()],
        );
        match builtin {
            None => PgMartError::undefined_column(format!("dimension column \"{d}\" of {} does not exist", src.qualified)).raise(),
            Some(false) => PgMartError::invalid(format!("dimension column \"{d}\" is of a user-defined type"))
                .detail("The real-time view groups by it as whoever reads it; a user-defined type would run its owner's code as them.")
                .raise(),
            Some(true) => {}
        }
    }
    // Measures and filter: analysed as fragments anyone may read (the real-time view evaluates
    // them as its reader): built-in, non-volatile functions of pg_catalog over the source only.
    let measures: Vec<(String, String)> = measures(&n.measures, &n.dimensions)
        .into_iter()
        .map(|(name, text)| {
            let f = fragment::analyse(n.source, &text, fragment::Shape::Aggregate, Runs::AsCaller, &format!("measure \"{name}\""), &[])
                .or_raise();
            (name, f.text)
        })
        .collect();
    let filter = n.filter.map(str::trim).filter(|f| !f.is_empty()).map(|f| {
        fragment::analyse(n.source, f, fragment::Shape::Condition, Runs::AsCaller, "rollup filter", &[]).or_raise().text
    });
    fragment::check_source_for_caller(n.source, "the rollup").or_raise();
    let period = crate::jobs::engine::approx_period(n.schedule, &zone.name).or_raise();

    let t = target(n.name);
    let table = format!("{}.{}", qi(&t.schema), qi(&t.relname));
    let shape = Shape {
        table: table.clone(),
        source: src.qualified.clone(),
        time_column: n.time_column.to_string(),
        kind,
        bucket,
        timezone: zone.name.clone(),
        dimensions: n.dimensions.clone(),
        measures: measures.clone(),
        filter: filter.clone(),
    };
    // The table, as the caller (who needs CREATE on the schema), in their name.
    if let Err(c) = sql::subtransaction(|| sql::exec(&plan::create_table(&shape), &[])) {
        let e = PgMartError::new(crate::error::sqlstate_code(&c.sqlstate), format!("cannot create rollup table {table}: {}", c.message));
        match c.sqlstate.as_str() {
            "42P07" => e.hint("A rollup makes its own table: choose a name that is free (pgmart.rollups lists the rollups)."),
            _ => e,
        }
        .raise();
    }
    sql::exec(&plan::create_index(&shape, &format!("{}_key", t.relname.chars().take(59).collect::<String>())), &[]);
    sql::exec(&format!("ALTER TABLE {table} ALTER COLUMN bucket SET NOT NULL"), &[]);
    let display = sql::one::<String>(
        "SELECT pg_catalog.quote_ident($1) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident($2)",
        &[t.schema.as_str().into(), t.relname.as_str().into()],
    )
    .unwrap_or_else(|| table.clone());
    let job_id = crate::jobs::api::register(crate::jobs::api::NewJob {
        name: &crate::jobs::api::free_name(&format!("rollup {display}")),
        kind: "rollup",
        target: Some(&display),
        schedule: n.schedule,
        timezone: &zone.name,
        owner: caller,
        config: json!({}),
        max_retries: 3,
        retry_backoff: None,
        start_at: None,
        timeout: None,
    });
    let rt_view = n.realtime.then(|| {
        let v = format!("{}.{}", qi(&t.schema), qi(format!("{}_rt", t.relname)));
        if let Err(c) = sql::subtransaction(|| sql::exec(&plan::create_realtime_view(&shape, &v, job_id), &[])) {
            PgMartError::new(crate::error::sqlstate_code(&c.sqlstate), format!("cannot create the real-time view {v}: {}", c.message))
                .hint("Pass realtime => false to make the rollup without it.")
                .raise();
        }
        v
    });
    let measure_names: Vec<String> = measures.iter().map(|(n, _)| n.clone()).collect();
    let measure_exprs: Vec<String> = measures.iter().map(|(_, e)| e.clone()).collect();
    sql::as_catalog_owner(|| {
        sql::exec(
            "INSERT INTO pgmart.rollup (job_id, rel, name, source, source_name, time_column, time_kind, bucket, timezone, dimensions, \
                                        measure_names, measures, filter, start_offset, end_offset, realtime, rt_view, \
                                        period_s, retention) \
             VALUES ($1, $2::pg_catalog.regclass, $3, $4::pg_catalog.oid::pg_catalog.regclass, $5, $6::pg_catalog.name, $7, $8, $9, $10, \
                     $11, $12, $13, $14, $15, $16, $17::pg_catalog.regclass, $18, $19)",
            &[
                job_id.into(),
                table.as_str().into(),
                display.as_str().into(),
                n.source.into(),
                src.qualified.as_str().into(),
                n.time_column.into(),
                format!("{kind:?}").as_str().into(),
                n.bucket.into(),
                zone.name.as_str().into(),
                n.dimensions.clone().into(),
                measure_names.into(),
                measure_exprs.into(),
                filter.clone().into(),
                n.start_offset.into(),
                n.end_offset.into(),
                n.realtime.into(),
                rt_view.clone().into(),
                period.into(),
                n.retention.into(),
            ],
        )
    });
    let r = load(job_id).expect("the rollup just made");
    ensure_capture(&r, false);
    refresh(&r, None);
    job_id
}

/// Make sure the capture triggers are on the source and on each of its partitions (and on nothing
/// else): a partition created or attached since gets them, and, with `invalidate`, its rows are
/// logged as changed (they were written without capture). A table detached loses them.
pub fn ensure_capture(r: &Stored, invalidate: bool) -> usize {
    #[derive(Deserialize)]
    struct Rel {
        oid: i64,
        rel: String,
        complete: bool,
    }
    let names: Vec<String> = plan::TRIGGERS.iter().map(|w| plan::trigger_name(r.job_id, w)).collect();
    let shape = r.shape();
    sql::as_catalog_owner(|| {
        // Triggers on tables that are no longer the source or one of its partitions go.
        let strays = sql::rows::<Trig>(
            "SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) \
                    pg_catalog.quote_ident(c.relname::pg_catalog.text) AS rel, t.tgname::pg_catalog.text AS tgname \
               FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.tgrelid \
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
              WHERE t.tgname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) \
                AND t.tgrelid OPERATOR(pg_catalog.<>) ALL (SELECT $2::pg_catalog.oid UNION ALL SELECT p.relid::pg_catalog.oid \
                      FROM pg_catalog.pg_partition_tree($2::pg_catalog.oid::pg_catalog.regclass) p)",
            &[names.clone().into(), pg_sys::Oid::from(r.source_oid as u32).into()],
        );
        for t in strays {
            sql::exec(&format!("DROP TRIGGER IF EXISTS {} ON {}", qi(&t.tgname), t.rel), &[]);
        }
        let rels = sql::rows::<Rel>(
            "SELECT c.oid::pg_catalog.int8 AS oid, \
                    pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) \
                    pg_catalog.quote_ident(c.relname::pg_catalog.text) AS rel, \
                    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_trigger t \
                      WHERE t.tgrelid OPERATOR(pg_catalog.=) c.oid AND NOT t.tgisinternal \
                        AND t.tgname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) \
                        AND t.tgfoid OPERATOR(pg_catalog.=) 'pgmart._rollup_capture()'::pg_catalog.regprocedure) \
                      OPERATOR(pg_catalog.=) 4 AS complete \
               FROM (SELECT $2::pg_catalog.oid AS relid UNION SELECT p.relid::pg_catalog.oid \
                       FROM pg_catalog.pg_partition_tree($2::pg_catalog.oid::pg_catalog.regclass) p) p \
               JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.relid \
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
              WHERE c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::pg_catalog.\"char\"[])",
            &[names.clone().into(), pg_sys::Oid::from(r.source_oid as u32).into()],
        );
        let mut added = 0;
        for rel in rels.into_iter().filter(|x| !x.complete) {
            let present = sql::column::<String>(
                "SELECT tgname::pg_catalog.text FROM pg_catalog.pg_trigger \
                  WHERE tgrelid OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid \
                    AND tgname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])",
                &[rel.oid.into(), names.clone().into()],
            );
            for tg in present {
                sql::exec(&format!("DROP TRIGGER {} ON {}", qi(&tg), rel.rel), &[]);
            }
            for ddl in plan::capture_triggers(r.job_id, &rel.rel) {
                sql::exec(&ddl, &[]);
            }
            added += 1;
            if invalidate && rel.oid != r.source_oid {
                // Rows written before capture was there: their buckets are changed.
                sql::exec(&plan::capture(&shape, &rel.rel), &[r.job_id.into()]);
            }
        }
        added
    })
}

/// What a capture trigger needs to know of its rollup on one relation (the source or one of its
/// partitions): where the time column is and how to group its instants. None: the relation is not
/// (or no longer) the rollup's source or one of its partitions, or the rollup is gone.
pub fn capture_target(job_id: i64, relid: pg_sys::Oid) -> Option<super::capture::Target> {
    #[derive(Deserialize)]
    struct Found {
        origin: i64,
    }
    let r = load(job_id)?;
    let found = sql::as_catalog_owner(|| {
        sql::rows_cached::<Found>(
            "SELECT ((EXTRACT(epoch FROM '2000-01-01 00:00:00'::pg_catalog.timestamp AT TIME ZONE r.timezone) \
                      OPERATOR(pg_catalog.-) 946684800) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 AS origin \
               FROM pgmart.rollup r \
              WHERE r.job_id OPERATOR(pg_catalog.=) $1 \
                AND (r.source::pg_catalog.oid OPERATOR(pg_catalog.=) $2 \
                     OR r.source::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ( \
                          SELECT a.relid::pg_catalog.oid FROM pg_catalog.pg_partition_ancestors($2::pg_catalog.regclass) a))",
            &[job_id.into(), relid.into()],
        )
    })
    .into_iter()
    .next()?;
    let shape = r.shape();
    Some(super::capture::Target::new(relid, &shape, plan::cells(shape.bucket, found.origin)))
}

/// pgmart's change log of rollups.
pub fn log_relation() -> pg_sys::Oid {
    sql::one::<pg_sys::Oid>("SELECT 'pgmart.rollup_invalidation'::pg_catalog.regclass::pg_catalog.oid", &[])
        .unwrap_or_else(|| PgMartError::state("pgmart's change log of rollups is missing").hint("Run ALTER EXTENSION pgmart UPDATE.").raise())
}

/// Whether the current user (who reads a real-time view) may read rollup `job_id`: its table or
/// its real-time view.
fn reader_may_read(job_id: i64) -> bool {
    #[derive(Deserialize)]
    struct May {
        may: bool,
    }
    let reader = sql::caller();
    sql::as_catalog_owner(|| {
        sql::rows_cached::<May>(
            "SELECT coalesce(pg_catalog.has_table_privilege($2, r.rel::pg_catalog.oid, 'SELECT'), false) \
                 OR coalesce(pg_catalog.has_table_privilege($2, r.rt_view::pg_catalog.oid, 'SELECT'), false) AS may \
               FROM pgmart.rollup r WHERE r.job_id OPERATOR(pg_catalog.=) $1",
            &[job_id.into(), reader.into()],
        )
    })
    .first()
    .is_some_and(|m| m.may)
}

/// The watermark of rollup `job_id` in epoch microseconds, for a reader who may read it.
pub fn watermark_for_reader(job_id: i64) -> Option<i64> {
    if !reader_may_read(job_id) {
        return None;
    }
    #[derive(Deserialize)]
    struct Watermark {
        us: Option<i64>,
    }
    sql::as_catalog_owner(|| {
        sql::rows_cached::<Watermark>(
            &format!("SELECT {} AS us FROM pgmart.rollup r WHERE r.job_id OPERATOR(pg_catalog.=) $1", us("r.watermark")),
            &[job_id.into()],
        )
    })
    .into_iter()
    .next()
    .and_then(|w| w.us)
}

/// The changed buckets of rollup `job_id` below its watermark, not refreshed yet, as disjoint
/// ranges (epoch microseconds), for a reader who may read it.
pub fn pending_for_reader(job_id: i64) -> Vec<(i64, i64)> {
    if !reader_may_read(job_id) {
        return vec![];
    }
    let Some(shape) = load(job_id).map(|r| r.shape()) else {
        return vec![];
    };
    #[derive(Deserialize)]
    struct Range {
        lo: i64,
        hi: i64,
    }
    sql::as_catalog_owner(|| {
        sql::rows_cached::<Range>(
            &format!(
                "SELECT {} AS lo, {} AS hi FROM pg_catalog.unnest( \
                   (SELECT pg_catalog.range_agg(pg_catalog.tstzrange({}, {})) FROM pgmart.rollup_invalidation i \
                     WHERE i.job_id OPERATOR(pg_catalog.=) $1) \
                   OPERATOR(pg_catalog.*) pg_catalog.tstzmultirange(pg_catalog.tstzrange(NULL, \
                     (SELECT r.watermark FROM pgmart.rollup r WHERE r.job_id OPERATOR(pg_catalog.=) $1)))) AS x",
                us("pg_catalog.lower(x)"),
                us("pg_catalog.upper(x)"),
                plan::align_lo(&shape, "i.lo"),
                plan::align_hi(&shape, "i.hi")
            ),
            &[job_id.into()],
        )
    })
    .into_iter()
    .map(|r| (r.lo, r.hi))
    .collect()
}

/// A trigger and the relation it is on (quoted, qualified).
#[derive(Deserialize)]
struct Trig {
    rel: String,
    tgname: String,
}

/// How a refresh was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Backfill {
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
}

#[derive(Deserialize)]
struct Logged {
    lo: i64,
    hi: i64,
    logged: String,
}

/// An epoch-microseconds expression of timestamptz expression `x` (the sentinels for the
/// infinities, NULL for NULL).
fn us(x: &str) -> String {
    format!(
        "CASE WHEN {x} IS NULL THEN NULL::pg_catalog.int8 \
              WHEN pg_catalog.isfinite({x}) THEN (EXTRACT(epoch FROM {x}) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 \
              WHEN {x} OPERATOR(pg_catalog.<) 'epoch'::pg_catalog.timestamptz THEN {} ELSE {} END",
        plan::NEG_INF,
        plan::POS_INF
    )
}

/// Refresh a rollup: consume its log, recompute the invalidated buckets inside its window and the
/// new ones up to the new watermark (or, for a backfill, every bucket of the range asked, in
/// batches), in this transaction, as the rollup's owner. Returns what it did.
pub fn refresh(r: &Stored, backfill: Option<Backfill>) -> Value {
    let started = std::time::Instant::now();
    let (Some(table), Some(_)) = (r.table.clone(), &r.source) else {
        PgMartError::state(format!("rollup {} has lost its table or its source", r.name))
            .hint("Drop it with pgmart.drop_rollup() and create it again.")
            .raise()
    };
    // One refresh of a rollup at a time (a manual one waits for the worker's, and the other way).
    locks::lock_for_transaction(locks::Kind::RollupRefresh, r.job_id);
    let healed = ensure_capture(r, true);
    let shape = r.shape();
    // The log first: under READ COMMITTED, every later statement sees at least the data whose
    // changes it consumed (their rows committed with their log rows).
    let consumed: Vec<Logged> = sql::as_catalog_owner(|| {
        sql::rows::<Logged>(
            &format!(
                "DELETE FROM pgmart.rollup_invalidation WHERE job_id OPERATOR(pg_catalog.=) $1 \
                 RETURNING {} AS lo, {} AS hi, logged_at::pg_catalog.text AS logged",
                us(&plan::align_lo(&shape, "lo")),
                us(&plan::align_hi(&shape, "hi"))
            ),
            &[r.job_id.into()],
        )
    });
    let owner = r.owner_oid();
    #[derive(Deserialize)]
    struct Edges {
        lo: Option<i64>,
        wm: i64,
        first_data: Option<i64>,
        first_own: Option<i64>,
        /// The first bucket the rollup keeps (None: no retention).
        cut: Option<i64>,
    }
    let start = r.start_offset.clone().unwrap_or_default();
    let retention = r.retention.clone().unwrap_or_default();
    let end = r.end_offset.clone().unwrap_or_else(|| "0".into());
    let t = format!("s.{}", qi(&r.time_column));
    let instant = match shape.kind {
        TimeKind::Timestamptz => format!("pg_catalog.min({t})"),
        TimeKind::Timestamp => format!("(pg_catalog.min({t}) AT TIME ZONE 'UTC')"),
        TimeKind::Date => format!("(pg_catalog.min({t})::pg_catalog.timestamp AT TIME ZONE {})", ql(&r.timezone)),
    };
    let edges = sql::as_role(owner, || {
        sql::row::<Edges>(
            &format!(
                "SELECT CASE WHEN $1 OPERATOR(pg_catalog.=) '' THEN NULL ELSE {} END AS lo, {} AS wm, \
                        (SELECT {} FROM {} AS s) AS first_data, (SELECT {} FROM {table}) AS first_own, \
                        CASE WHEN $3 OPERATOR(pg_catalog.=) '' THEN NULL ELSE {} END AS cut",
                us(&plan::bucket_of(&shape, "(pg_catalog.now() OPERATOR(pg_catalog.-) nullif($1, '')::pg_catalog.interval)")),
                us(&plan::bucket_of(&shape, "(pg_catalog.now() OPERATOR(pg_catalog.-) $2::pg_catalog.interval)")),
                us(&plan::bucket_of(&shape, &instant)),
                shape.source,
                us("pg_catalog.min(bucket)"),
                us(&plan::bucket_of(&shape, "(pg_catalog.now() OPERATOR(pg_catalog.-) nullif($3, '')::pg_catalog.interval)")),
            ),
            &[start.as_str().into(), end.as_str().into(), retention.as_str().into()],
        )
    })
    .expect("edges");
    let first_data = edges.first_data.filter(|&v| v != plan::NEG_INF && v != plan::POS_INF);
    let first_own = edges.first_own.filter(|&v| v != plan::NEG_INF && v != plan::POS_INF);
    let invalidated: Vec<(i64, i64)> = consumed.iter().map(|l| (l.lo, l.hi)).collect();
    let (ranges, kept, watermark) = match backfill {
        None => {
            let window = Window {
                lo: edges.lo.unwrap_or(plan::NEG_INF).max(edges.cut.unwrap_or(plan::NEG_INF)),
                watermark: r.watermark_us.map_or(edges.wm, |w| w.max(edges.wm)),
                previous: r.watermark_us,
                first_bucket: if r.watermark_us.is_some() { first_own } else { first_data },
            };
            let w = plan::work(&window, &invalidated);
            // Changes to buckets past the rollup's retention are not kept: those buckets go.
            let cut = edges.cut.unwrap_or(plan::NEG_INF);
            let kept = w.kept.into_iter().filter(|(_, hi)| *hi > cut).map(|(lo, hi)| (lo.max(cut), hi)).collect();
            (w.ranges, kept, Some(window.watermark))
        }
        Some(b) => {
            let (lo, hi) = aligned(&shape, b, first_data, r.watermark_us.unwrap_or(edges.wm));
            // Invalidations inside the range are done by it; the others stay.
            let mut keep = vec![];
            for &(a, z) in &invalidated {
                if a < lo || z > hi {
                    keep.push((a, z));
                }
            }
            (if lo < hi { batches(&shape, lo, hi) } else { vec![] }, keep, None)
        }
    };
    // What stays in the log goes back, with the time it was first logged (its age is shown).
    if !kept.is_empty() {
        let logged_first = consumed.iter().map(|l| l.logged.clone()).min().unwrap_or_default();
        sql::as_catalog_owner(|| {
            for (lo, hi) in &kept {
                sql::exec(
                    &format!(
                        "INSERT INTO pgmart.rollup_invalidation (job_id, lo, hi, logged_at) VALUES ($1, {}, {}, \
                         coalesce(nullif($2, '')::pg_catalog.timestamptz, pg_catalog.now()))",
                        plan::ts_literal(*lo),
                        // The log holds the last instant changed, inside the range's last bucket.
                        plan::ts_literal(if *hi == plan::POS_INF { *hi } else { hi - 1 })
                    ),
                    &[r.job_id.into(), logged_first.as_str().into()],
                );
            }
        });
    }
    let total = ranges.len();
    let mut rows = 0u64;
    let wide = (plan::WIDE_BUCKETS * shape.bucket.approx_seconds() * 1e6) as i64;
    let (wide_ranges, narrow): (Vec<(i64, i64)>, Vec<(i64, i64)>) =
        ranges.iter().partition(|(lo, hi)| *lo == plan::NEG_INF || hi.saturating_sub(*lo) >= wide);
    sql::as_role(owner, || {
        for (i, (lo, hi)) in wide_ranges.iter().enumerate() {
            let [del, ins] = plan::recompute(&shape, &plan::ts_literal(*lo), &plan::ts_literal(*hi));
            sql::exec(&del, &[]);
            rows += sql::exec_count(&ins, &[]);
            if backfill.is_some() && total > 1 {
                notice!("rollup {}: batch {} of {} done ({} to {})", r.name, i + 1, total, plan::ts_literal(*lo), plan::ts_literal(*hi));
            }
        }
        for chunk in narrow.chunks(plan::NARROW_BATCH) {
            let literals: Vec<(String, String)> = chunk.iter().map(|(lo, hi)| (plan::ts_literal(*lo), plan::ts_literal(*hi))).collect();
            let [del, ins] = plan::recompute_many(&shape, &literals);
            sql::exec(&del, &[]);
            rows += sql::exec_count(&ins, &[]);
        }
    });
    // The rollup's own retention: buckets older than it go (without one, history outlives the
    // source's partitions).
    if let Some(cut) = edges.cut.filter(|_| backfill.is_none()) {
        sql::as_role(owner, || {
            sql::exec(&format!("DELETE FROM {table} WHERE bucket OPERATOR(pg_catalog.<) {}", plan::ts_literal(cut)), &[]);
        });
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    sql::as_catalog_owner(|| {
        sql::exec(
            &format!(
                "UPDATE pgmart.rollup SET watermark = coalesce({}, watermark), last_refresh_at = pg_catalog.now(), \
                        last_refresh_ms = $2, last_buckets = $3 WHERE job_id OPERATOR(pg_catalog.=) $1",
                watermark.map(plan::ts_literal).unwrap_or_else(|| "NULL::pg_catalog.timestamptz".into())
            ),
            &[r.job_id.into(), ms.into(), (rows as i64).into()],
        )
    });
    pending_alert(r, !kept.is_empty());
    json!({
        "message": format!(
            "{} rows in {} range{} recomputed{}{}",
            rows,
            total,
            if total == 1 { "" } else { "s" },
            if kept.is_empty() { String::new() } else { format!("; {} invalidated ranges older than start_offset kept", kept.len()) },
            if healed > 0 { format!("; capture installed on {healed} new partitions") } else { String::new() },
        ),
        "rows": rows, "ranges": total, "kept": kept.len(), "consumed": consumed.len(),
        "watermark": watermark.map(plan::ts_literal),
    })
}

/// A backfill's range as whole buckets: from the bucket holding `from` (default: the first with
/// data) to the end of the bucket holding `to` (default: the watermark).
fn aligned(shape: &Shape, b: Backfill, first_data: Option<i64>, watermark: i64) -> (i64, i64) {
    let lo = match b.from_us {
        Some(f) => floor(shape, f),
        None => first_data.unwrap_or(watermark),
    };
    let hi = match b.to_us {
        Some(t) => {
            let f = floor(shape, t);
            if f == t {
                t
            } else {
                end_of(shape, f)
            }
        }
        None => watermark,
    };
    (lo, hi)
}

fn one_us(expr: &str) -> i64 {
    sql::one::<i64>(&format!("SELECT {}", us(expr)), &[]).unwrap_or(plan::NEG_INF)
}

fn floor(shape: &Shape, t: i64) -> i64 {
    one_us(&plan::bucket_of(shape, &plan::ts_literal(t)))
}

fn end_of(shape: &Shape, b: i64) -> i64 {
    one_us(&plan::bucket_end(shape, &plan::ts_literal(b)))
}

/// `[lo, hi)` cut into batches of `BACKFILL_BATCH` buckets.
fn batches(shape: &Shape, lo: i64, hi: i64) -> Vec<(i64, i64)> {
    let step = plan::batch_step(shape.bucket);
    let bounds = sql::one::<Vec<i64>>(
        &format!(
            "SELECT pg_catalog.array_agg(x ORDER BY x) FROM (SELECT {} AS x FROM pg_catalog.generate_series({}, {}, {}::pg_catalog.interval) AS g \
             WHERE g OPERATOR(pg_catalog.<) {}) AS b",
            us(&plan::from_local(shape, "g")),
            plan::to_local(shape, &plan::ts_literal(lo)),
            plan::to_local(shape, &plan::ts_literal(hi)),
            ql(&step),
            plan::to_local(shape, &plan::ts_literal(hi)),
        ),
        &[],
    )
    .unwrap_or_default();
    let mut out = vec![];
    for (i, &b) in bounds.iter().enumerate() {
        let next = bounds.get(i + 1).copied().unwrap_or(hi);
        if b < next {
            out.push((b, next.min(hi)));
        }
    }
    out
}

/// Invalidations kept because they are older than the window: shown in `pgmart.rollups`, and an
/// alert once they have waited two periods (at least an hour), resolved when none is left.
fn pending_alert(r: &Stored, kept: bool) {
    let key = format!("rollup_pending:{}", r.job_id);
    if !kept {
        crate::alerts::resolve(&key);
        return;
    }
    let age = sql::as_catalog_owner(|| {
        sql::one::<f64>(
            "SELECT EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.min(logged_at))::pg_catalog.float8 \
               FROM pgmart.rollup_invalidation WHERE job_id OPERATOR(pg_catalog.=) $1",
            &[r.job_id.into()],
        )
    })
    .unwrap_or(0.0);
    if age > (2.0 * r.period_s).max(3600.0) {
        crate::alerts::raise_health(crate::alerts::Health {
            source_kind: "rollup",
            source_name: &r.name,
            severity: "medium",
            target: Some(&r.name),
            payload: json!({ "problem": "changes older than start_offset are not refreshed", "rollup": r.name,
                             "pending_age_s": age.round(), "job_id": r.job_id,
                             "message": format!("rows changed in buckets older than start_offset ({}); backfill them with pgmart.refresh_rollup('{}', from_ts, to_ts)",
                                                r.start_offset.clone().unwrap_or_default(), r.name) }),
            dedup_key: &key,
            owner: r.owner_oid(),
            job_id: Some(r.job_id),
            check_id: None,
        });
    }
}

/// The `rollup` job kind: one refresh of one rollup.
pub struct Rollup;

impl crate::jobs::kinds::JobKind for Rollup {
    fn name(&self) -> &'static str {
        "rollup"
    }
    fn run(&self, job: &Job) -> Value {
        let Some(r) = load(job.job_id) else {
            PgMartError::undefined_object(format!("job {} has no rollup", job.job_id)).raise()
        };
        let missing_key = format!("rollup_source_missing:{}", r.job_id);
        if r.source.is_none() {
            // Missing longer than two periods (a rebuild that did not come back): an alert.
            let since = crate::jobs::history::skipped_since(job.job_id);
            if since.as_ref().is_some_and(|s| s.seconds > 2.0 * r.period_s) {
                crate::alerts::raise_health(crate::alerts::Health {
                    source_kind: "rollup",
                    source_name: &r.name,
                    severity: "medium",
                    target: Some(&r.source_name),
                    payload: json!({"problem": "source missing", "rollup": r.name, "source": r.source_name,
                                    "missing_since": since.and_then(|s| s.since), "job_id": r.job_id}),
                    dedup_key: &missing_key,
                    owner: r.owner_oid(),
                    job_id: Some(r.job_id),
                    check_id: None,
                });
            }
            return json!({"skipped": true,
                          "message": format!("table {} does not exist; the rollup refreshes again when one of that name is created", r.source_name)});
        }
        crate::alerts::resolve(&missing_key);
        // Stale (not refreshed for two periods) and failing again: an alert says so; the next
        // refresh that succeeds resolves it.
        let key = format!("rollup_stale:{}", r.job_id);
        match sql::subtransaction(|| refresh(&r, None)) {
            Ok(v) => {
                crate::alerts::resolve(&key);
                v
            }
            Err(c) => {
                if let Some(age) = r.last_refresh_age_s.filter(|a| *a > 2.0 * r.period_s) {
                    let (name, owner, job_id) = (r.name.clone(), r.owner_oid(), r.job_id);
                    crate::jobs::engine::after_rollback(move || {
                        crate::alerts::raise_health(crate::alerts::Health {
                            source_kind: "rollup",
                            source_name: &name,
                            severity: "medium",
                            target: Some(&name),
                            payload: json!({"problem": "stale", "rollup": name, "age_s": age.round(), "job_id": job_id}),
                            dedup_key: &key,
                            owner,
                            job_id: Some(job_id),
                            check_id: None,
                        });
                    });
                }
                c.raise()
            }
        }
    }
    fn target_gone(&self, job: &Job) -> bool {
        load(job.job_id).map(|r| r.table.is_none()).unwrap_or(true)
    }
    fn drop_hint(&self) -> Option<&'static str> {
        Some("Use pgmart.drop_rollup().")
    }
}

/// Drop a rollup: its triggers, its real-time view, its table (unless `keep_data`), its job and log.
pub fn drop_rollup(name: &str, keep_data: bool) {
    crate::jobs::api::require_primary("drop a rollup");
    let r = for_caller(name);
    forget(r.job_id, !keep_data);
}

/// Remove rollup `job_id` (its triggers wherever they are, its view, with `drop_table` its table).
pub fn forget(job_id: i64, drop_table: bool) {
    #[derive(Deserialize)]
    struct Objects {
        rt: Option<String>,
        tab: Option<String>,
    }
    let names: Vec<String> = plan::TRIGGERS.iter().map(|w| plan::trigger_name(job_id, w)).collect();
    let o = sql::as_catalog_owner(|| {
        sql::row::<Objects>(
            // Only the objects the rollup made, still under their names (an OID alone could have
            // been reused by another table since).
            "SELECT (SELECT c.oid::pg_catalog.regclass::pg_catalog.text FROM pg_catalog.pg_class c \
                      WHERE c.oid OPERATOR(pg_catalog.=) r.rt_view AND c.relkind OPERATOR(pg_catalog.=) 'v' \
                        AND c.relnamespace OPERATOR(pg_catalog.=) t.relnamespace \
                        AND c.relname OPERATOR(pg_catalog.=) (t.relname::pg_catalog.text OPERATOR(pg_catalog.||) '_rt')::pg_catalog.name) AS rt, \
                    (SELECT t.oid::pg_catalog.regclass::pg_catalog.text \
                      WHERE pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) \
                            pg_catalog.quote_ident(t.relname::pg_catalog.text) OPERATOR(pg_catalog.=) r.name) AS tab \
               FROM pgmart.rollup r \
               LEFT JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) r.rel \
               LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.relnamespace \
              WHERE r.job_id OPERATOR(pg_catalog.=) $1",
            &[job_id.into()],
        )
    });
    sql::as_catalog_owner(|| {
        let trigs = sql::rows::<Trig>(
            "SELECT t.tgrelid::pg_catalog.regclass::pg_catalog.text AS rel, t.tgname::pg_catalog.text AS tgname FROM pg_catalog.pg_trigger t \
              WHERE t.tgname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) \
                AND t.tgfoid OPERATOR(pg_catalog.=) 'pgmart._rollup_capture()'::pg_catalog.regprocedure",
            &[names.into()],
        );
        for t in trigs {
            sql::exec(&format!("DROP TRIGGER IF EXISTS {} ON {}", qi(&t.tgname), t.rel), &[]);
        }
        if let Some(o) = &o {
            if let Some(v) = &o.rt {
                sql::exec(&format!("DROP VIEW IF EXISTS {v}"), &[]);
            }
            if drop_table {
                if let Some(t) = &o.tab {
                    sql::exec(&format!("DROP TABLE IF EXISTS {t}"), &[]);
                }
            }
        }
        sql::exec("DELETE FROM pgmart.rollup_invalidation WHERE job_id OPERATOR(pg_catalog.=) $1", &[job_id.into()]);
    });
    crate::jobs::api::delete_job(job_id);
}

/// A table or partition was created, altered or attached (the DDL event trigger): rollups of it
/// or of one of its ancestors put their capture on every partition (and take it off detached ones).
pub fn relation_changed(oid: pg_sys::Oid) {
    let jobs = sql::as_catalog_owner(|| {
        sql::column::<i64>(
            "SELECT r.job_id FROM pgmart.rollup r \
              WHERE r.source::pg_catalog.oid OPERATOR(pg_catalog.=) $1 \
                 OR r.source::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ( \
                      SELECT a.relid::pg_catalog.oid FROM pg_catalog.pg_partition_ancestors($1::pg_catalog.oid::pg_catalog.regclass) a) \
                 OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid OPERATOR(pg_catalog.=) $1 \
                             AND t.tgname::pg_catalog.text OPERATOR(pg_catalog.~) ('^pgmart_rollup_' OPERATOR(pg_catalog.||) r.job_id OPERATOR(pg_catalog.||) '_'))",
            &[oid.into()],
        )
    });
    for j in jobs {
        if let Some(r) = load(j) {
            if r.source.is_some() {
                ensure_capture(&r, true);
            }
        }
    }
}

/// Its source was re-created under its name (see `crate::follow`): capture moves there, the
/// real-time view is made again if the drop took it, and every materialized bucket is recomputed
/// from the new table at the next refresh.
pub fn moved(id: &str, _old: u32, _new: u32, _qualified: &str) -> std::result::Result<(), String> {
    let job_id: i64 = id.parse().map_err(|_| format!("no rollup {id}"))?;
    let r = load(job_id).ok_or_else(|| format!("rollup {id} is gone"))?;
    ensure_capture(&r, false);
    sql::as_catalog_owner(|| {
        sql::exec(
            "INSERT INTO pgmart.rollup_invalidation (job_id, lo, hi) VALUES ($1, '-infinity', 'infinity')",
            &[job_id.into()],
        );
    });
    if r.realtime {
        let gone = sql::as_catalog_owner(|| {
            sql::one::<bool>(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c, pgmart.rollup x \
                                     WHERE x.job_id OPERATOR(pg_catalog.=) $1 AND c.oid OPERATOR(pg_catalog.=) x.rt_view)",
                &[job_id.into()],
            )
        });
        if gone == Some(true) {
            let view = sql::as_catalog_owner(|| {
                sql::one::<String>(
                    "SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) \
                            pg_catalog.quote_ident(c.relname::pg_catalog.text OPERATOR(pg_catalog.||) '_rt') \
                       FROM pgmart.rollup x JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) x.rel \
                       JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
                      WHERE x.job_id OPERATOR(pg_catalog.=) $1",
                    &[job_id.into()],
                )
            });
            if let Some(view) = view {
                sql::as_role(r.owner_oid(), || sql::exec(&plan::create_realtime_view(&r.shape(), &view, job_id), &[]));
                sql::as_catalog_owner(|| {
                    sql::exec(
                        "UPDATE pgmart.rollup SET rt_view = $2::pg_catalog.regclass WHERE job_id OPERATOR(pg_catalog.=) $1",
                        &[job_id.into(), view.as_str().into()],
                    )
                });
            }
        }
    }
    Ok(())
}
