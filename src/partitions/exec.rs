//! Runs partition plans: one catalog query reads every set and its partitions' real bounds, the
//! planner decides in Rust, and only sets with something to do are touched, each in its own
//! subtransaction with `lock_timeout`, as the set's owner.

use crate::error::PgMartError;
use crate::guc;
use crate::jobs::engine::Job;
use crate::jobs::schedule::{parse_tz, Every};
use crate::partitions::plan::{self, Bound, ColType, Existing, Plan, SetSpec};
use crate::sql::{self, quote_identifier, quote_literal};
use chrono::Utc;
use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashSet;

/// Interval parts of `col` as months, days, micros.
fn iv_parts(col: &str, prefix: &str) -> String {
    format!(
        "(date_part('year', {col}) * 12 + date_part('month', {col}))::int4 AS {prefix}months, \
         date_part('day', {col})::int4 AS {prefix}days, \
         round((date_part('hour', {col}) * 3600 + date_part('minute', {col}) * 60 + date_part('second', {col})) * 1e6)::int8 AS {prefix}micros"
    )
}

#[derive(Debug, Clone, Deserialize)]
pub struct SetRow {
    pub set_id: i64,
    pub parent: String,
    pub relname: String,
    pub nspname: String,
    pub table_owner: i64,
    /// The maintenance job's owner (0 when its anchor is gone: then the table's owner).
    pub run_as_oid: i64,
    pub control_column: String,
    pub column_type: String,
    pub months: i32,
    pub days: i32,
    pub micros: i64,
    pub premake: i32,
    pub r_months: Option<i32>,
    pub r_days: Option<i32>,
    pub r_micros: Option<i64>,
    pub retention_mode: String,
    pub timezone: String,
    pub anchor_key: Option<i64>,
    pub default_partition: bool,
    pub last_status: Option<String>,
    pub fp: i64,
    pub fingerprint: Option<i64>,
    pub analyzed_fingerprint: Option<i64>,
    pub job_id: Option<i64>,
    /// (oid, name, pg_class.relpartbound as text); None when the set is known to be quiet.
    pub parts: Option<Vec<(i64, String, Option<String>)>>,
}

fn set_query(filter: &str, always_parts: bool) -> String {
    format!(
        "SELECT s.set_id, s.parent::pg_catalog.text AS parent, c.relname::pg_catalog.text AS relname, \
                n.nspname::pg_catalog.text AS nspname, c.relowner::pg_catalog.int8 AS table_owner, \
                coalesce(ja.relowner, c.relowner)::pg_catalog.int8 AS run_as_oid, \
                s.control_column::text AS control_column, s.column_type, {}, s.premake, {}, \
                s.retention_mode, s.timezone, s.anchor_key, s.default_partition, s.last_status, \
                f.fp, s.fingerprint, s.analyzed_fingerprint, s.job_id, \
                CASE WHEN {always_parts} OR s.fingerprint IS DISTINCT FROM f.fp OR s.quiet_until IS NULL \
                          OR pg_catalog.pg_stat_get_live_tuples(coalesce(pt.partdefid, 0::oid)) > 0 \
                          OR s.quiet_until <= clock_timestamp() THEN \
                (SELECT coalesce(jsonb_agg(jsonb_build_array(ch.oid::int8, ch.relname, ch.relpartbound::text)), '[]') \
                   FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class ch ON ch.oid = i.inhrelid \
                  WHERE i.inhparent = s.parent) END AS parts \
           FROM pgmart.partition_set s \
           JOIN pg_catalog.pg_class c ON c.oid = s.parent \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
           LEFT JOIN pgmart.job j ON j.job_id = s.job_id \
           LEFT JOIN pg_catalog.pg_class ja ON ja.oid = j.anchor \
           LEFT JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = s.parent \
           CROSS JOIN LATERAL (SELECT (count(*) * 1000003 + coalesce(sum(pg_catalog.hashtext(ch.relpartbound::text)), 0))::int8 AS fp \
                                 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class ch ON ch.oid = i.inhrelid \
                                WHERE i.inhparent = s.parent) f \
          WHERE {filter} ORDER BY s.set_id",
        iv_parts("s.partition_interval", ""),
        iv_parts("s.retention", "r_")
    )
}

/// Load sets matching a SQL condition on `s` (and `j`), as the catalog owner.
pub fn load_sets(filter: &str, args: &[pgrx::datum::DatumWithOid]) -> Vec<SetRow> {
    sql::as_catalog_owner(|| sql::rows::<SetRow>(&set_query(filter, true), args))
}

/// Like [`load_sets`], but a set whose partitions are unchanged since a pass found nothing to do,
/// and whose quiet period has not ended, comes without its partitions (`parts` is None): it is
/// known to have nothing to do, and is not looked at further.
pub fn load_sets_for_pass(filter: &str, args: &[pgrx::datum::DatumWithOid]) -> Vec<SetRow> {
    sql::as_catalog_owner(|| sql::rows::<SetRow>(&set_query(filter, false), args))
}

impl SetRow {
    /// The role maintenance runs as.
    pub fn run_as(&self) -> pg_sys::Oid {
        pg_sys::Oid::from(self.run_as_oid as u32)
    }
    pub fn col(&self) -> ColType {
        ColType::parse(&self.column_type).unwrap_or(ColType::Timestamptz)
    }
    pub fn spec(&self) -> crate::error::Result<SetSpec> {
        let col = self.col();
        let grid = plan::grid_for(Every { months: self.months, days: self.days, micros: self.micros }, col)?;
        let retention = match (self.r_months, self.r_days, self.r_micros) {
            (Some(m), Some(d), Some(u)) => Some(Every { months: m, days: d, micros: u }),
            _ => None,
        };
        Ok(SetSpec {
            parent_name: self.relname.clone(),
            grid,
            col,
            tz: parse_tz(&self.timezone)?,
            premake: self.premake,
            retention,
            detach: self.retention_mode == "detach",
            default_partition: self.default_partition,
            anchor: self.anchor_key,
            stray: vec![],
        })
    }
    pub fn existing(&self) -> Vec<Existing> {
        let col = self.col();
        self.parts
            .iter()
            .flatten()
            .filter_map(|(oid, name, bound)| {
                let (lo, hi, is_default) = match plan::parse_partbound(bound.as_deref().unwrap_or(""), col) {
                    Bound::Default => (0, 0, true),
                    Bound::Range(a, b) => (a, b, false),
                    Bound::Other => return None,
                };
                Some(Existing { oid: *oid as u32, name: name.clone(), lo, hi, is_default })
            })
            .collect()
    }
}

/// Which of `names` already exist in the parent's schema (an index lookup).
fn existing_names(set: &SetRow, names: &[String]) -> HashSet<String> {
    sql::one::<Vec<String>>(
        "SELECT coalesce(array_agg(c.relname::text), '{}') FROM pg_catalog.pg_class c \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname = $1 AND c.relname = ANY($2::text[]::name[])",
        &[set.nspname.as_str().into(), names.to_vec().into()],
    )
    .unwrap_or_default()
    .into_iter()
    .collect()
}

/// Plan a set. `names_checked`: when it has something to create, plan again until none of the
/// new names is taken in the schema.
pub fn plan_set(set: &SetRow, initial: bool, names_checked: bool, stray: &[i64]) -> crate::error::Result<Plan> {
    let mut spec = set.spec()?;
    spec.stray = stray.to_vec();
    let existing = set.existing();
    let now = Utc::now();
    let mut taken = HashSet::new();
    let mut p = plan::plan(&spec, &existing, now, initial, &taken)?;
    if !names_checked {
        return Ok(p);
    }
    for _ in 0..10 {
        let mut names: Vec<String> = p.create.iter().map(|c| c.name.clone()).collect();
        names.extend(p.create_default.clone());
        if names.is_empty() {
            break;
        }
        let clash = existing_names(set, &names);
        if clash.is_subset(&taken) {
            break;
        }
        taken.extend(clash);
        p = plan::plan(&spec, &existing, now, initial, &taken)?;
    }
    Ok(p)
}

/// The outcome of maintaining one set.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub parent: String,
    pub status: String,
    pub created: Vec<String>,
    pub dropped: Vec<String>,
    pub detached: Vec<String>,
    pub rescued_rows: i64,
    /// What the default partition still holds after the pass (reported, alerted).
    pub left_in_default: Option<String>,
    /// The parent was ANALYZEd (its partitions changed since it last was).
    pub analyzed: bool,
    pub notes: Vec<String>,
    pub message: Option<String>,
    pub sqlstate: Option<String>,
    pub hint: Option<String>,
    /// Known to have nothing to do without looking at its partitions.
    pub quiet: bool,
    /// Set when a full look found nothing to do: until when that stays true.
    pub quiet_until: Option<chrono::DateTime<Utc>>,
}

impl Outcome {
    pub fn to_json(&self) -> Value {
        json!({
            "parent": self.parent, "status": self.status, "created": self.created,
            "dropped": self.dropped, "detached": self.detached, "rescued_rows": self.rescued_rows,
            "notes": self.notes, "message": self.message, "sqlstate": self.sqlstate,
        })
    }
    pub fn summary(&self) -> String {
        let mut parts = vec![];
        if !self.created.is_empty() {
            parts.push(format!("created {}", self.created.len()));
        }
        if !self.dropped.is_empty() {
            parts.push(format!("dropped {}", self.dropped.len()));
        }
        if !self.detached.is_empty() {
            parts.push(format!("detached {}", self.detached.len()));
        }
        if self.rescued_rows > 0 {
            parts.push(format!("moved {} rows out of the default partition", self.rescued_rows));
        }
        if self.analyzed {
            parts.push("analyzed the parent".into());
        }
        if parts.is_empty() {
            parts.push("nothing to do".into());
        }
        match &self.left_in_default {
            Some(left) => format!("{}: {}; {left}", self.parent, parts.join(", ")),
            None => format!("{}: {}", self.parent, parts.join(", ")),
        }
    }
}

fn qualified(nsp: &str, name: &str) -> String {
    format!("{}.{}", quote_identifier(nsp), quote_identifier(name))
}

/// Owner, grants and reloptions for a new partition, as the parent (and newest sibling) have them.
struct Template {
    owner_sql: Option<String>,
    grants: Vec<(String, String)>,
    reloptions: Option<String>,
    default_child: Option<String>,
    fp: i64,
    taken: Vec<String>,
    retire_names: Vec<String>,
}

/// Owner, grants (from the parent), reloptions (from the newest sibling) and the default
/// partition's name, in one catalog query.
fn template(set: &SetRow, p: &Plan) -> Template {
    let existing = set.existing();
    let newest_sibling = existing.iter().filter(|e| !e.is_default && e.hi != i64::MAX).max_by_key(|e| e.lo).map(|e| e.oid);
    let default_oid = existing.iter().find(|e| e.is_default).map(|e| e.oid);
    let mut names: Vec<String> = p.create.iter().map(|c| c.name.clone()).collect();
    names.extend(p.create_default.clone());
    let retire: Vec<i64> = p.retire.iter().map(|(o, _)| *o as i64).collect();
    #[derive(Deserialize)]
    struct T {
        me: String,
        grants: Vec<(String, String)>,
        reloptions: Vec<(String, String)>,
        default_child: Option<String>,
        fp: i64,
        taken: Vec<String>,
        retire_names: Vec<String>,
    }
    let t = sql::rows_cached::<T>(
        "SELECT current_user::text AS me, \
                (SELECT (count(*) * 1000003 + coalesce(sum(pg_catalog.hashtext(ch.relpartbound::text)), 0))::int8 \
                   FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class ch ON ch.oid = i.inhrelid \
                  WHERE i.inhparent = $1::regclass) AS fp, \
                (SELECT coalesce(array_agg(c.relname::text), '{}') FROM pg_catalog.pg_class c \
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                  WHERE n.nspname = $4 AND c.relname = ANY($5::text[]::name[])) AS taken, \
                (SELECT coalesce(array_agg(u.x::oid::regclass::text ORDER BY u.ord), '{}') \
                   FROM unnest($6::int8[]) WITH ORDINALITY u(x, ord)) AS retire_names, \
                (SELECT coalesce(jsonb_agg(jsonb_build_array(g.privs, g.grantee)), '[]') FROM ( \
                   SELECT string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type) AS privs, \
                          CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END \
                          || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END AS grantee \
                     FROM pg_catalog.pg_class c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a \
                     LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee \
                    WHERE c.oid = $1::regclass AND a.grantee <> c.relowner \
                    GROUP BY a.grantee, r.rolname, a.is_grantable) g) AS grants, \
                (SELECT coalesce(jsonb_agg(jsonb_build_array(split_part(o, '=', 1), substr(o, strpos(o, '=') + 1))), '[]') \
                   FROM pg_catalog.pg_class c, unnest(c.reloptions) o WHERE c.oid = $2::int8::oid) AS reloptions, \
                $3::int8::oid::regclass::text AS default_child",
        &[
            set.parent.as_str().into(),
            newest_sibling.map(|o| o as i64).into(),
            default_oid.map(|o| o as i64).into(),
            set.nspname.as_str().into(),
            names.into(),
            retire.into(),
        ],
    )
    .into_iter()
    .next()
    .expect("one row");
    let owner_name = sql::role_name(pg_sys::Oid::from(set.table_owner as u32));
    let owner_sql = (t.me != owner_name).then(|| quote_identifier(&owner_name));
    let reloptions = (!t.reloptions.is_empty()).then(|| {
        t.reloptions
            .iter()
            .map(|(k, v)| format!("{} = {}", quote_identifier(k), quote_literal(v)))
            .collect::<Vec<_>>()
            .join(", ")
    });
    Template {
        owner_sql,
        grants: t.grants,
        reloptions,
        default_child: t.default_child,
        fp: t.fp,
        taken: t.taken,
        retire_names: t.retire_names,
    }
}

fn finish_table(t: &Template, table: &str) {
    if let Some(o) = &t.owner_sql {
        sql::exec(&format!("ALTER TABLE {table} OWNER TO {o}"), &[]);
    }
    for (privs, to) in &t.grants {
        sql::exec(&format!("GRANT {privs} ON TABLE {table} TO {to}"), &[]);
    }
    if let Some(r) = &t.reloptions {
        sql::exec(&format!("ALTER TABLE {table} SET ({r})"), &[]);
    }
}

/// Carry out a plan for one set. Runs as the set's owner, inside the caller's subtransaction.
fn apply(set: &SetRow, p: &Plan, t: &Template, out: &mut Outcome) {
    let col = set.col();
    let ty = col.sql_name();
    let default = t.default_child.clone();
    let column = quote_identifier(&set.control_column);
    for np in &p.create {
        let table = qualified(&set.nspname, &np.name);
        let bounds = format!(
            "FOR VALUES FROM ({}) TO ({})",
            quote_literal(&np.lo_literal),
            quote_literal(&np.hi_literal)
        );
        // Try the plain way first; the default partition holding rows of this range (23514) is
        // the one failure that switches to the rescue.
        let plain = sql::subtransaction(|| {
            sql::exec(&format!("CREATE TABLE {table} PARTITION OF {} {bounds}", set.parent), &[]);
        });
        let stray = match plain {
            Ok(()) => false,
            Err(c) if c.sqlstate == "23514" && default.is_some() => true,
            // Its own SQLSTATE (out of lock slots stays 53200), saying which partition.
            Err(c) => {
                let mut e = PgMartError::new(
                    crate::error::sqlstate_code(&c.sqlstate),
                    format!("cannot create partition {}: {}", np.name, c.message),
                );
                e.detail = c.detail.clone();
                e.hint = if c.sqlstate == "53200" { Some(LOCKS_HINT.to_string()) } else { c.hint.clone() };
                e.raise()
            }
        };
        if !stray {
            finish_table(t, &table);
        } else {
            // Default-partition rescue: a standalone table, the rows moved into it, then attached.
            let d = default.as_ref().unwrap();
            sql::exec(
                &format!(
                    "CREATE TABLE {table} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE \
                     INCLUDING GENERATED INCLUDING COMMENTS)",
                    set.parent
                ),
                &[],
            );
            finish_table(t, &table);
            let cols = sql::one::<Vec<String>>(
                "SELECT array_agg(pg_catalog.quote_ident(attname) ORDER BY attnum) FROM pg_catalog.pg_attribute \
                  WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''",
                &[set.parent.as_str().into()],
            )
            .unwrap_or_default()
            .join(", ");
            let moved = sql::one::<i64>(
                &format!(
                    "WITH moved AS (DELETE FROM {d} WHERE {column} >= $1::text::{ty} AND {column} < $2::text::{ty} RETURNING {cols}), \
                          ins AS (INSERT INTO {table} ({cols}) SELECT {cols} FROM moved RETURNING 1) \
                     SELECT count(*)::int8 FROM ins"
                ),
                &[np.lo_literal.as_str().into(), np.hi_literal.as_str().into()],
            )
            .unwrap_or(0);
            sql::exec(&format!("ALTER TABLE {} ATTACH PARTITION {table} {bounds}", set.parent), &[]);
            out.rescued_rows += moved;
            let note = format!(
                "moved {moved} rows from default partition {d} into new partition {} [{}, {})",
                np.name, np.lo_literal, np.hi_literal
            );
            crate::alerts::raise_health(crate::alerts::Health {
                source_kind: "partition_set",
                source_name: &set.parent,
                severity: "medium",
                target: Some(&set.parent),
                payload: json!({ "partition": np.name, "rows_moved": moved, "from": np.lo_literal, "to": np.hi_literal,
                                 "message": note }),
                dedup_key: &format!("partition_default_rows:{}", set.parent),
                owner: set.run_as(),
                job_id: set.job_id,
                check_id: None,
            });
            out.notes.push(note);
        }
        out.created.push(np.name.clone());
    }
    if let Some(name) = &p.create_default {
        let table = qualified(&set.nspname, name);
        sql::exec(&format!("CREATE TABLE {table} PARTITION OF {} DEFAULT", set.parent), &[]);
        finish_table(t, &table);
        out.created.push(name.clone());
    }
    for (i, (_, name)) in p.retire.iter().enumerate() {
        let child = t.retire_names.get(i).cloned().unwrap_or_default();
        if set.retention_mode == "detach" {
            sql::exec(&format!("ALTER TABLE {} DETACH PARTITION {child}", set.parent), &[]);
            out.detached.push(name.clone());
        } else {
            sql::exec(&format!("DROP TABLE {child}"), &[]);
            out.dropped.push(name.clone());
        }
    }
}

/// ANALYZE a parent whose partitions changed since it was last analyzed (autovacuum never analyzes
/// a partitioned table, so the planner's row estimates for it go stale). Run in the pass after the
/// change, which holds no lock on the parent: ANALYZE takes SHARE UPDATE EXCLUSIVE, so readers
/// and writers go on; as the table's owner, within pgmart.lock_timeout. False when it could not.
fn analyze_parent(set: &SetRow) -> bool {
    let nest = unsafe { pg_sys::NewGUCNestLevel() };
    let r = sql::subtransaction(|| {
        set_lock_timeout();
        sql::as_role(set.run_as(), || sql::exec(&format!("ANALYZE {}", set.parent), &[]))
    });
    unsafe { pg_sys::AtEOXact_GUC(false, nest) };
    r.is_ok()
}

/// Most slots of default-partition rows given their partitions in one pass (the rest wait for the
/// next pass, and the report says so).
const MAX_RESCUE_SLOTS: usize = 10;

/// What a set's default partition holds, read as the set's owner.
#[derive(Debug, Clone, Default)]
struct Parked {
    /// One key per slot of its rows, oldest first (at most MAX_RESCUE_SLOTS).
    keys: Vec<i64>,
    /// More slots than that.
    more: bool,
    /// Rows no range partition can take (a NULL or infinite key).
    unplaceable: i64,
    /// Rows older than retention: reported, left where they are (never dropped).
    past_retention: i64,
}

/// What a look at the default partition found.
enum Look {
    /// No default partition, or an empty one.
    Empty,
    Parked(Parked),
    /// It could not be read (its lock not had within pgmart.lock_timeout, say): nothing is said.
    Unknown(Option<sql::Caught>),
}

/// The default partition's rows, looked at exactly but cheaply (EXISTS, then one `min()` per slot,
/// an index scan when the parent has an index on the column), as the set's owner, within
/// pgmart.lock_timeout.
fn default_rows(set: &SetRow) -> Look {
    let Some(default) = set.existing().into_iter().find(|e| e.is_default) else { return Look::Empty };
    let Ok(spec) = set.spec() else { return Look::Unknown(None) };
    let table = qualified(&set.nspname, &default.name);
    let column = quote_identifier(&set.control_column);
    let ty = set.col().sql_name();
    let nest = unsafe { pg_sys::NewGUCNestLevel() };
    let found = sql::subtransaction(|| {
        set_lock_timeout();
        sql::as_role(set.run_as(), || {
            if sql::one::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[]) != Some(true) {
                return None;
            }
            let mut parked = Parked::default();
            // Rows older than retention are counted, not given partitions that retention would drop.
            let keep_from = plan::retention_cutoff(&spec, Utc::now()).map(|c| plan::key_literal(spec.col, plan::slot_of(&spec, c).0));
            if let Some(lo) = &keep_from {
                parked.past_retention = sql::one::<i64>(
                    &format!("SELECT pg_catalog.count(*) FROM {table} WHERE {column} OPERATOR(pg_catalog.<) $1::pg_catalog.text::{ty}"),
                    &[lo.as_str().into()],
                )
                .unwrap_or(0);
            }
            let mut from = keep_from.unwrap_or_else(|| "-infinity".to_string());
            let next_key = format!(
                "SELECT (EXTRACT(epoch FROM pg_catalog.min({column})) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 FROM {table} \
                  WHERE {column} OPERATOR(pg_catalog.>=) $1::pg_catalog.text::{ty} \
                    AND {column} OPERATOR(pg_catalog.>) '-infinity'::{ty} AND {column} OPERATOR(pg_catalog.<) 'infinity'::{ty}"
            );
            while let Some(k) = sql::one::<i64>(&next_key, &[from.as_str().into()]) {
                if parked.keys.len() == MAX_RESCUE_SLOTS {
                    parked.more = true;
                    break;
                }
                parked.keys.push(k);
                from = plan::key_literal(spec.col, plan::slot_of(&spec, k).1);
            }
            parked.unplaceable = sql::one::<i64>(
                &format!("SELECT pg_catalog.count(*) FROM {table} WHERE {column} IS NULL OR NOT pg_catalog.isfinite({column})"),
                &[],
            )
            .unwrap_or(0);
            Some(parked)
        })
    });
    unsafe { pg_sys::AtEOXact_GUC(false, nest) };
    match found {
        Ok(Some(p)) => Look::Parked(p),
        Ok(None) => Look::Empty,
        Err(c) => Look::Unknown(Some(c)),
    }
}

/// `SET LOCAL lock_timeout` to pgmart.lock_timeout, without a statement (undone by the caller's
/// GUC nest level).
fn set_lock_timeout() {
    let value = std::ffi::CString::new(format!("{}ms", guc::LOCK_TIMEOUT_MS.get())).unwrap_or_default();
    unsafe {
        pg_sys::set_config_option(
            c"lock_timeout".as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            0,
            false,
        );
    }
}

const LOCKS_HINT: &str = "Give a later start_at or a longer partition_interval, so fewer partitions are made at once \
     (maintenance then makes them ahead of time, premake at a time), or raise max_locks_per_transaction.";

/// All partitions of a pass are made in one transaction, and each takes locks (the table, its
/// indexes, its TOAST table) until that transaction ends: a pass that needs more locks than the
/// whole lock table holds (max_locks_per_transaction × connections) would fail half-way, after
/// taking every other session's share too. Such a pass is refused before it starts (53200).
fn lock_shortage(set: &SetRow, creates: usize) -> Option<(String, String)> {
    if creates < 16 {
        return None;
    }
    #[derive(Deserialize)]
    struct Shape {
        indexes: i64,
        toast: bool,
    }
    let shape = sql::row::<Shape>(
        "SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_index i \
                  WHERE i.indrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass) AS indexes, \
                EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid \
                         WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass AND a.attnum OPERATOR(pg_catalog.>) 0 \
                           AND NOT a.attisdropped AND t.typstorage OPERATOR(pg_catalog.<>) 'p') AS toast",
        &[set.parent.as_str().into()],
    )?;
    // Measured (pg_locks after CREATE TABLE ... PARTITION OF): the table and an object lock, three
    // per index (the index, share locks while it is built), two for a TOAST table and its index.
    let per = 2 + 3 * shape.indexes + if shape.toast { 2 } else { 0 };
    let need = per * creates as i64;
    let (per_xact, backends) = unsafe { (pg_sys::max_locks_per_xact as i64, pg_sys::MaxBackends as i64) };
    let capacity = per_xact * backends;
    (need > capacity).then(|| {
        (
            format!(
                "making {creates} partitions of {} at once needs about {need} locks, more than the lock table holds \
                 ({capacity}: max_locks_per_transaction = {per_xact} for {backends} processes)",
                set.parent
            ),
            LOCKS_HINT.to_string(),
        )
    })
}

/// Maintain one set: plan, and when there is work, run it in a subtransaction with lock_timeout
/// as the set's owner. Never raises; the outcome says what happened.
pub fn maintain(set: &SetRow, initial: bool) -> Outcome {
    if set.parts.is_none() {
        return Outcome { parent: set.parent.clone(), status: "succeeded".into(), quiet: true, ..Default::default() };
    }
    let look = default_rows(set);
    if let Look::Unknown(Some(c)) = &look {
        if c.sqlstate == "55P03" {
            // Its default partition is locked: so would the set be. Skipped, as a locked set is.
            return Outcome {
                parent: set.parent.clone(),
                status: "skipped".into(),
                message: Some(format!("{}; will retry at the next maintenance", c.message)),
                sqlstate: Some(c.sqlstate.clone()),
                ..Default::default()
            };
        }
    }
    let stray = match &look {
        Look::Parked(p) => p.keys.as_slice(),
        _ => &[],
    };
    let mut out = maintain_with(set, initial, stray);
    report_parked(set, look, &mut out);
    out
}

/// Rows left in the default partition after a pass (older than retention, without a range, or
/// beyond this pass's cap) are reported and alerted; an empty default resolves that alert.
fn report_parked(set: &SetRow, look: Look, out: &mut Outcome) {
    let key = format!("partition_default_rows:{}", set.parent);
    let p = match look {
        Look::Parked(p) => p,
        Look::Empty => return crate::alerts::resolve(&key),
        Look::Unknown(_) => return,
    };
    let stuck = out.status != "succeeded" && !p.keys.is_empty();
    if p.past_retention == 0 && p.unplaceable == 0 && !p.more && !stuck {
        return; // every row moved (the rescue raised its own alert)
    }
    let mut left = vec![];
    if p.past_retention > 0 {
        left.push(format!("{} rows older than retention (left there, not dropped)", p.past_retention));
    }
    if p.unplaceable > 0 {
        left.push(format!("{} rows with a NULL or infinite {}", p.unplaceable, set.control_column));
    }
    if p.more {
        left.push(format!("rows of more than {MAX_RESCUE_SLOTS} slots (the next passes move them)"));
    }
    if stuck {
        left.push("rows this pass could not move".to_string());
    }
    let note = format!("the default partition still holds {}", left.join(", "));
    out.left_in_default = Some(note.clone());
    crate::alerts::raise_health(crate::alerts::Health {
        source_kind: "partition_set",
        source_name: &set.parent,
        severity: "medium",
        target: Some(&set.parent),
        payload: json!({ "rows_older_than_retention": p.past_retention, "rows_without_a_range": p.unplaceable,
                         "more_next_pass": p.more, "message": note }),
        dedup_key: &key,
        owner: set.run_as(),
        job_id: set.job_id,
        check_id: None,
    });
}

fn maintain_with(set: &SetRow, initial: bool, stray: &[i64]) -> Outcome {
    let mut out = Outcome { parent: set.parent.clone(), status: "succeeded".into(), ..Default::default() };
    let p = match plan_set(set, initial, false, stray) {
        Ok(p) => p,
        Err(e) => {
            out.status = "failed".into();
            out.message = Some(e.message.clone());
            out.sqlstate = Some(crate::error::sqlstate_text(e.code));
            return out;
        }
    };
    out.notes = p.notes.clone();
    if let Some((message, hint)) = lock_shortage(set, p.create.len()) {
        out.status = "failed".into();
        out.message = Some(message);
        out.sqlstate = Some("53200".into());
        out.hint = Some(hint);
        return out;
    }
    if p.is_empty() {
        if let Ok(spec) = set.spec() {
            out.quiet_until = Some(plan::quiet_until(&spec, &set.existing(), Utc::now()));
        }
        if set.analyzed_fingerprint != Some(set.fp) {
            out.analyzed = analyze_parent(set);
        }
        return out;
    }
    let owner = pg_sys::Oid::from(set.run_as_oid as u32);
    let nest = unsafe { pg_sys::NewGUCNestLevel() };
    let mut work = out.clone();
    let r = sql::subtransaction(|| {
        set_lock_timeout();
        sql::as_role(owner, || {
            // One lock, taken first and subject to lock_timeout, so the set never waits half-way;
            // then plan again, since another session may have maintained the set meanwhile.
            sql::exec(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", set.parent), &[]);
            let t = template(set, &p);
            if t.fp == set.fp && t.taken.is_empty() {
                apply(set, &p, &t, &mut work);
                return;
            }
            let fresh = if t.fp == set.fp { vec![] } else { load_sets("s.set_id = $1", &[set.set_id.into()]) };
            let set = if t.fp == set.fp { set } else {
                let Some(s) = fresh.first() else { return };
                s
            };
            match plan_set(set, initial, true, stray) {
                Ok(p2) => {
                    work.notes = p2.notes.clone();
                    let t2 = template(set, &p2);
                    apply(set, &p2, &t2, &mut work)
                }
                Err(e) => e.raise(),
            }
        });
        work
    });
    unsafe { pg_sys::AtEOXact_GUC(false, nest) };
    match r {
        Ok(w) => w,
        Err(c) => {
            out.status = if c.sqlstate == "55P03" { "skipped".into() } else { "failed".into() };
            out.message = Some(if c.sqlstate == "55P03" {
                format!("{}; will retry at the next maintenance", c.message)
            } else {
                c.message
            });
            out.sqlstate = Some(c.sqlstate);
            out.hint = c.hint;
            out
        }
    }
}

/// Record a set's outcome in its catalog row, only when something happened, the status changed,
/// or a full look found nothing to do (then the fingerprint and quiet period are kept).
pub fn record(set: &SetRow, out: &Outcome) {
    record_all(&[(set, out)]);
}

/// Record many sets' outcomes in one statement (see [`record`]).
pub fn record_all(items: &[(&SetRow, &Outcome)]) {
    let mut ids: Vec<i64> = vec![];
    let mut statuses: Vec<String> = vec![];
    let mut msgs: Vec<String> = vec![];
    let mut fps: Vec<Option<i64>> = vec![];
    let mut keeps: Vec<bool> = vec![];
    let mut quiets: Vec<Option<f64>> = vec![];
    for (set, out) in items {
        if out.quiet {
            continue;
        }
        let changed = !(out.created.is_empty() && out.dropped.is_empty() && out.detached.is_empty());
        let quiet_epoch = out.quiet_until.map(|t| t.timestamp_micros() as f64 / 1e6);
        let same_status = set.last_status.as_deref() == Some(out.status.as_str());
        if !changed && same_status && quiet_epoch.is_none() {
            continue;
        }
        ids.push(set.set_id);
        statuses.push(out.status.clone());
        msgs.push(out.message.clone().unwrap_or_else(|| out.summary()));
        fps.push(if changed || quiet_epoch.is_none() { None } else { Some(set.fp) });
        keeps.push(!changed && same_status);
        quiets.push(quiet_epoch);
    }
    let analyzed: Vec<(i64, i64)> = items.iter().filter(|(_, o)| o.analyzed).map(|(s, _)| (s.set_id, s.fp)).collect();
    if !analyzed.is_empty() {
        let (sets, fps): (Vec<i64>, Vec<i64>) = analyzed.into_iter().unzip();
        sql::as_catalog_owner(|| {
            sql::exec(
                "UPDATE pgmart.partition_set s SET analyzed_fingerprint = u.fp \
                   FROM unnest($1::int8[], $2::int8[]) AS u(id, fp) WHERE s.set_id = u.id",
                &[sets.into(), fps.into()],
            )
        });
    }
    if ids.is_empty() {
        return;
    }
    sql::as_catalog_owner(|| {
        sql::exec(
            "UPDATE pgmart.partition_set s SET \
                    last_run_at = CASE WHEN u.keep THEN s.last_run_at ELSE clock_timestamp() END, \
                    last_status = u.status, last_message = CASE WHEN u.keep THEN s.last_message ELSE u.msg END, \
                    fingerprint = u.fp, quiet_until = to_timestamp(u.quiet) \
               FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[], $5::bool[], $6::float8[]) \
                    AS u(id, status, msg, fp, keep, quiet) \
              WHERE s.set_id = u.id",
            &[ids.into(), statuses.into(), msgs.into(), fps.into(), keeps.into(), quiets.into()],
        )
    });
}

/// The `partition_maintenance` job kind.
pub struct PartitionMaintenance;

impl crate::jobs::kinds::JobKind for PartitionMaintenance {
    fn name(&self) -> &'static str {
        "partition_maintenance"
    }
    fn run(&self, job: &Job) -> Value {
        run_job(job)
    }
    fn target_gone(&self, job: &Job) -> bool {
        load_sets("s.job_id OPERATOR(pg_catalog.=) $1", &[job.job_id.into()]).is_empty()
    }
    fn drop_hint(&self) -> Option<&'static str> {
        Some("Use pgmart.drop_partition_set().")
    }
}

/// Maintain the job's set; a set that failed (or could not get its lock) fails the run, so the
/// engine retries it with backoff and alerts after the last try.
pub fn run_job(job: &Job) -> Value {
    let sets = load_sets_for_pass("s.job_id = $1", &[job.job_id.into()]);
    let Some(set) = sets.first() else {
        // The parent was dropped: disable the job once, with an alert, instead of running it
        // forever for nothing (pgmart.drop_job removes what is left).
        let what = job.target.clone().unwrap_or_default();
        sql::as_catalog_owner(|| {
            sql::exec(
                "UPDATE pgmart.partition_set SET last_status = 'dropped', last_run_at = clock_timestamp(), \
                        last_message = 'the partitioned table was dropped; maintenance job disabled' WHERE job_id = $1",
                &[job.job_id.into()],
            );
        });
        crate::jobs::api::disable_orphaned(
            job,
            "partition_set",
            &what,
            None,
            "partitioned table dropped; its maintenance job was disabled",
        );
        return json!({ "message": format!("the table of {what} no longer exists; maintenance job disabled") });
    };
    let out = maintain(set, false);
    if out.status != "succeeded" {
        // The run is recorded with the failure's own SQLSTATE (55P03 when the lock was busy).
        let mut e = PgMartError::new(
            match out.sqlstate.as_deref() {
                Some(code) => crate::error::sqlstate_code(code),
                None if out.status == "skipped" => pgrx::PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                None => pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            },
            format!("partition maintenance of {}: {}", set.parent, out.message.clone().unwrap_or_default()),
        );
        e.hint = out.hint.clone();
        e.raise();
    }
    record(set, &out);
    let mut v = out.to_json();
    v["message"] = json!(out.summary());
    v
}
