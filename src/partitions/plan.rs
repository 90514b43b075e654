//! Pure planning for time partitions: the boundary grid (aligned in the set's time zone), partition
//! names, and what one maintenance pass must create, drop or detach given the partitions that
//! really exist (their catalog bounds). No PostgreSQL here, so all of it is unit tested.
//!
//! Every bound is handled as a *key*: microseconds since 1970-01-01 00:00. For `timestamptz`
//! columns a key is an instant (UTC); for `timestamp` it is local wall time; for `date` it is the
//! day's midnight. The grid is built in local wall time of the set's zone and converted to keys.

use crate::error::{PgMartError, Result};
use crate::jobs::schedule::{resolve_local, Every};
use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use std::collections::HashSet;

pub const MICROS_PER_MINUTE: i64 = 60_000_000;
pub const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Most partitions one call may create (a typo such as start_at => '1900-01-01' with 1 minute).
pub const MAX_CREATE: usize = 10_000;
const NAMEDATALEN: usize = 63;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Date,
    Timestamp,
    Timestamptz,
}

impl ColType {
    pub fn parse(sql_type: &str) -> Option<ColType> {
        match sql_type {
            "date" => Some(ColType::Date),
            "timestamp without time zone" | "timestamp" => Some(ColType::Timestamp),
            "timestamp with time zone" | "timestamptz" => Some(ColType::Timestamptz),
            _ => None,
        }
    }
    pub fn sql_name(&self) -> &'static str {
        match self {
            ColType::Date => "date",
            ColType::Timestamp => "timestamp",
            ColType::Timestamptz => "timestamptz",
        }
    }
}

/// The partition grid, in local wall time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grid {
    /// Whole months (1 = first of each month, 3 = quarters from January, 12 = years).
    Months(i32),
    /// Whole days from local midnight (7 = weeks starting Monday).
    Days(i32),
    /// A whole number of minutes below (or not dividing) a day: aligned to local midnight when it
    /// divides a day, else counted from 2000-01-01 00:00.
    Micros(i64),
}

/// Validate a partition interval and turn it into a grid. 1 minute to 1 year; months may not be
/// mixed with days or time; sub-daily intervals are whole minutes; `date` columns need whole days.
pub fn grid_for(iv: Every, col: ColType) -> Result<Grid> {
    let shown = format!("{} months {} days {} µs", iv.months, iv.days, iv.micros);
    if iv.months < 0 || iv.days < 0 || iv.micros < 0 || (iv.months == 0 && iv.days == 0 && iv.micros == 0) {
        return Err(PgMartError::invalid("partition_interval must be positive").detail(shown));
    }
    if iv.months > 0 {
        if iv.days != 0 || iv.micros != 0 {
            return Err(PgMartError::invalid("partition_interval may not mix months with days or hours")
                .hint("Use whole months ('1 month', '3 months', '1 year') or days/hours ('7 days', '6 hours')."));
        }
        if iv.months > 12 {
            return Err(PgMartError::invalid("partition_interval may be at most 1 year"));
        }
        return Ok(Grid::Months(iv.months));
    }
    let total = iv.days as i64 * MICROS_PER_DAY + iv.micros;
    if total < MICROS_PER_MINUTE {
        return Err(PgMartError::invalid("partition_interval must be at least 1 minute"));
    }
    if total > 366 * MICROS_PER_DAY {
        return Err(PgMartError::invalid("partition_interval may be at most 1 year"));
    }
    if total % MICROS_PER_MINUTE != 0 {
        return Err(PgMartError::invalid("partition_interval must be a whole number of minutes"));
    }
    if total % MICROS_PER_DAY == 0 {
        return Ok(Grid::Days((total / MICROS_PER_DAY) as i32));
    }
    if col == ColType::Date {
        return Err(PgMartError::invalid("a date column needs a partition_interval of whole days or months")
            .detail(shown));
    }
    Ok(Grid::Micros(total))
}

fn epoch_local() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap()
}

impl Grid {
    /// Start of the slot holding local time `t`.
    pub fn slot_start(&self, t: NaiveDateTime) -> NaiveDateTime {
        match *self {
            Grid::Months(m) => {
                let idx = (t.year() as i64 - 2000) * 12 + t.month0() as i64;
                let start = idx.div_euclid(m as i64) * m as i64;
                let y = 2000 + start.div_euclid(12);
                let mo = start.rem_euclid(12) + 1;
                NaiveDate::from_ymd_opt(y as i32, mo as u32, 1).unwrap().and_hms_opt(0, 0, 0).unwrap()
            }
            Grid::Days(d) => {
                // 2000-01-03 is a Monday, so 7-day slots are ISO weeks.
                let base = NaiveDate::from_ymd_opt(2000, 1, 3).unwrap();
                let n = (t.date() - base).num_days();
                let k = n.div_euclid(d as i64) * d as i64;
                (base + Duration::days(k)).and_hms_opt(0, 0, 0).unwrap()
            }
            Grid::Micros(step) => {
                if MICROS_PER_DAY % step == 0 {
                    let midnight = t.date().and_hms_opt(0, 0, 0).unwrap();
                    let since = (t - midnight).num_microseconds().unwrap_or(0);
                    midnight + Duration::microseconds(since.div_euclid(step) * step)
                } else {
                    let since = (t - epoch_local()).num_microseconds().unwrap_or(0);
                    epoch_local() + Duration::microseconds(since.div_euclid(step) * step)
                }
            }
        }
    }
    /// The slot after the one starting at `start`.
    pub fn next(&self, start: NaiveDateTime) -> NaiveDateTime {
        match *self {
            Grid::Months(m) => start.checked_add_months(Months::new(m as u32)).unwrap_or(start),
            Grid::Days(d) => start + Duration::days(d as i64),
            Grid::Micros(step) => start + Duration::microseconds(step),
        }
    }
    /// The partition-name suffix for a slot (or piece) starting at local `t`.
    pub fn suffix(&self, t: NaiveDateTime) -> String {
        match self {
            Grid::Months(_) => t.format("_p%Y%m").to_string(),
            Grid::Days(_) => t.format("_p%Y%m%d").to_string(),
            Grid::Micros(_) => t.format("_p%Y%m%d_%H%M").to_string(),
        }
    }
}

pub fn naive_to_key(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

pub fn key_to_naive(k: i64) -> NaiveDateTime {
    DateTime::<Utc>::from_timestamp_micros(k).unwrap_or_default().naive_utc()
}

/// Local wall time (in `tz`) → key, for a column type.
pub fn local_to_key(col: ColType, tz: &Tz, t: NaiveDateTime) -> i64 {
    match col {
        ColType::Timestamptz => resolve_local(tz, t).timestamp_micros(),
        _ => naive_to_key(t),
    }
}

/// Key → local wall time (in `tz`), for a column type.
pub fn key_to_local(col: ColType, tz: &Tz, k: i64) -> NaiveDateTime {
    match col {
        ColType::Timestamptz => DateTime::<Utc>::from_timestamp_micros(k)
            .unwrap_or_default()
            .with_timezone(tz)
            .naive_local(),
        _ => key_to_naive(k),
    }
}

/// The SQL literal text of a key for a column type (quoted by the executor), exact to the
/// microsecond: a piece next to an adopted partition whose bound has fractional seconds meets it
/// exactly.
pub fn key_literal(col: ColType, k: i64) -> String {
    let t = key_to_naive(k);
    match col {
        ColType::Date => t.format("%Y-%m-%d").to_string(),
        ColType::Timestamp => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
        ColType::Timestamptz => t.format("%Y-%m-%d %H:%M:%S%.f+00").to_string(),
    }
}

/// `<parent><suffix>` within 63 bytes (the parent part truncated on a character boundary), with
/// `_2`, `_3`, ... added when the name is taken.
pub fn partition_name(parent: &str, suffix: &str, taken: &HashSet<String>) -> String {
    for n in 1.. {
        let tail = if n == 1 { suffix.to_string() } else { format!("{suffix}_{n}") };
        let room = NAMEDATALEN.saturating_sub(tail.len());
        let mut cut = parent.len().min(room);
        while !parent.is_char_boundary(cut) {
            cut -= 1;
        }
        let name = format!("{}{}", &parent[..cut], tail);
        if !taken.contains(&name) {
            return name;
        }
    }
    unreachable!()
}

/// A partition that exists, with its real bounds as keys (i64::MIN / i64::MAX for MINVALUE /
/// MAXVALUE).
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    pub oid: u32,
    pub name: String,
    pub lo: i64,
    pub hi: i64,
    pub is_default: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SetSpec {
    pub parent_name: String,
    pub grid: Grid,
    pub col: ColType,
    pub tz: Tz,
    pub premake: i32,
    pub retention: Option<Every>,
    pub detach: bool,
    pub default_partition: bool,
    /// Key of the first slot the set manages (start_at's slot, or the slot current at creation).
    pub anchor: Option<i64>,
    /// Keys of rows found in the default partition (one per slot): each gets its partition (the
    /// rows then move into it), unless its slot is past retention (reported, never dropped).
    pub stray: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewPartition {
    pub name: String,
    pub lo: i64,
    pub hi: i64,
    pub lo_literal: String,
    pub hi_literal: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub create: Vec<NewPartition>,
    /// Partitions past retention: (oid, name).
    pub retire: Vec<(u32, String)>,
    pub create_default: Option<String>,
    /// Adopted partitions that are odd (not on the grid, MINVALUE/MAXVALUE) and pieces made
    /// around them: reported, never an error.
    pub notes: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.retire.is_empty() && self.create_default.is_none()
    }
}

/// `t - e` in local time; None when it leaves chrono's range (an absurd retention).
fn sub_every(t: NaiveDateTime, e: &Every) -> Option<NaiveDateTime> {
    let mut t = t;
    if e.months > 0 {
        t = t.checked_sub_months(Months::new(e.months as u32))?;
    }
    t.checked_sub_signed(Duration::try_days(e.days as i64)?)?.checked_sub_signed(Duration::microseconds(e.micros))
}

/// The key of the slot holding `now` (used as a new set's anchor when start_at is NULL).
pub fn slot_key_at(spec: &SetSpec, at: DateTime<Utc>) -> i64 {
    let local = at.with_timezone(&spec.tz).naive_local();
    local_to_key(spec.col, &spec.tz, spec.grid.slot_start(local))
}

/// Retention cutoff key: partitions whose upper bound is at or before it are retired.
pub fn retention_cutoff(spec: &SetSpec, now: DateTime<Utc>) -> Option<i64> {
    let r = spec.retention.as_ref()?;
    let local = now.with_timezone(&spec.tz).naive_local();
    let cut = sub_every(local, r)?;
    Some(match spec.col {
        ColType::Date => naive_to_key(cut.date().and_hms_opt(0, 0, 0).unwrap()),
        c => local_to_key(c, &spec.tz, cut),
    })
}

fn describe(k: i64, col: ColType) -> String {
    match k {
        i64::MIN => "MINVALUE".into(),
        i64::MAX => "MAXVALUE".into(),
        k => key_literal(col, k),
    }
}

/// Plan one maintenance pass. `initial` is true when the set is being created (then every slot
/// from the anchor on is filled; later passes fill from the newest partition on, so partitions
/// dropped by hand in the past are not re-created).
pub fn plan(spec: &SetSpec, existing: &[Existing], now: DateTime<Utc>, initial: bool, taken: &HashSet<String>) -> Result<Plan> {
    let mut out = Plan::default();
    let grid = spec.grid;
    let col = spec.col;
    let tz = &spec.tz;
    let mut ranges: Vec<&Existing> = existing.iter().filter(|e| !e.is_default).collect();
    ranges.sort_by_key(|e| e.lo);

    // Report odd partitions (adopted as they are).
    for e in &ranges {
        let aligned = e.lo != i64::MIN && e.hi != i64::MAX && {
            let lo_local = key_to_local(col, tz, e.lo);
            let start = grid.slot_start(lo_local);
            start == lo_local && local_to_key(col, tz, grid.next(start)) == e.hi
        };
        if !aligned {
            out.notes.push(format!(
                "partition {} [{}, {}) is not one {} slot; adopted as it is",
                e.name,
                describe(e.lo, col),
                describe(e.hi, col),
                match grid {
                    Grid::Months(_) => "monthly-aligned",
                    Grid::Days(_) => "day-aligned",
                    Grid::Micros(_) => "interval-aligned",
                }
            ));
        }
    }

    let cutoff = retention_cutoff(spec, now);
    if let Some(cut) = cutoff {
        for e in &ranges {
            if e.hi != i64::MAX && e.hi <= cut {
                out.retire.push((e.oid, e.name.clone()));
            }
        }
    }

    // Slots to cover: from `from` to the slot premake periods after the current one.
    let now_local = now.with_timezone(tz).naive_local();
    let current = grid.slot_start(now_local);
    let mut end = current;
    for _ in 0..=spec.premake {
        end = grid.next(end);
    }
    let current_key = local_to_key(col, tz, current);
    let end_key = local_to_key(col, tz, end);
    let newest_hi = ranges.iter().map(|e| e.hi).filter(|h| *h != i64::MAX).max();
    let mut taken: HashSet<String> = taken.clone();
    let mut from = if initial {
        spec.anchor.unwrap_or(current_key)
    } else {
        let anchor = spec.anchor.unwrap_or(i64::MIN);
        match newest_hi {
            Some(h) => anchor.max(h.min(current_key)),
            None => anchor.max(current_key),
        }
    };
    if let Some(cut) = cutoff {
        from = from.max(cut.min(current_key));
    }
    if from >= end_key {
        // nothing ahead to make
    } else {
        let mut slot = grid.slot_start(key_to_local(col, tz, from));
        loop {
            let lo = local_to_key(col, tz, slot);
            let next = grid.next(slot);
            if lo >= end_key {
                break;
            }
            if !cutoff.map(|c| local_to_key(col, tz, next) <= c).unwrap_or(false) {
                add_slot(&mut out, spec, &ranges, &mut taken, slot)?;
            }
            slot = next;
        }
    }
    // Rows parked in the default partition (late, or far ahead): a partition for each one's slot.
    let mut past_retention = 0;
    for &k in &spec.stray {
        let slot = grid.slot_start(key_to_local(col, tz, k));
        let (lo, hi) = (local_to_key(col, tz, slot), local_to_key(col, tz, grid.next(slot)));
        if cutoff.is_some_and(|c| hi <= c) {
            past_retention += 1;
        } else if !out.create.iter().any(|c| c.lo < hi && c.hi > lo) {
            add_slot(&mut out, spec, &ranges, &mut taken, slot)?;
        }
    }
    if past_retention > 0 {
        out.notes.push(format!(
            "rows of {past_retention} slot(s) older than retention are in the default partition: left there, not dropped"
        ));
    }

    if spec.default_partition && !existing.iter().any(|e| e.is_default) {
        let mut t = taken.clone();
        for p in &out.create {
            t.insert(p.name.clone());
        }
        out.create_default = Some(partition_name(&spec.parent_name, "_default", &t));
    }
    Ok(out)
}

/// Plan the partitions of one slot: the slot, less what existing partitions already cover.
fn add_slot(out: &mut Plan, spec: &SetSpec, ranges: &[&Existing], taken: &mut HashSet<String>, slot: NaiveDateTime) -> Result<()> {
    let (grid, col, tz) = (spec.grid, spec.col, &spec.tz);
    let lo = local_to_key(col, tz, slot);
    let hi = local_to_key(col, tz, grid.next(slot));
    if hi <= lo {
        return Ok(());
    }
    let mut pieces = vec![(lo, hi)];
    for e in ranges {
        let mut rest = vec![];
        for (a, b) in pieces {
            if e.hi <= a || e.lo >= b {
                rest.push((a, b));
            } else {
                if e.lo > a {
                    rest.push((a, e.lo));
                }
                if e.hi < b {
                    rest.push((e.hi, b));
                }
            }
        }
        pieces = rest;
    }
    for (a, b) in pieces {
        let start_local = key_to_local(col, tz, a);
        // A piece that starts inside a slot says where, to the minute.
        let suffix = if a == lo { grid.suffix(slot) } else { start_local.format("_p%Y%m%d_%H%M").to_string() };
        let name = partition_name(&spec.parent_name, &suffix, taken);
        taken.insert(name.clone());
        if (a, b) != (lo, hi) {
            out.notes.push(format!(
                "created {} for [{}, {}) only: the rest of that slot is covered by existing partitions",
                name,
                key_literal(col, a),
                key_literal(col, b)
            ));
        }
        out.create.push(NewPartition { name, lo: a, hi: b, lo_literal: key_literal(col, a), hi_literal: key_literal(col, b) });
        if out.create.len() > MAX_CREATE {
            return Err(PgMartError::invalid(format!("this would create more than {MAX_CREATE} partitions"))
                .hint("Use a later start_at or a longer partition_interval."));
        }
    }
    Ok(())
}

/// The slot a key falls in, as keys `[lo, hi)`.
pub fn slot_of(spec: &SetSpec, k: i64) -> (i64, i64) {
    let slot = spec.grid.slot_start(key_to_local(spec.col, &spec.tz, k));
    (local_to_key(spec.col, &spec.tz, slot), local_to_key(spec.col, &spec.tz, spec.grid.next(slot)))
}

/// `t + e` in local time; None when it leaves chrono's range.
fn add_every_local(t: NaiveDateTime, e: &Every) -> Option<NaiveDateTime> {
    let mut t = t;
    if e.months > 0 {
        t = t.checked_add_months(Months::new(e.months as u32))?;
    }
    t.checked_add_signed(Duration::try_days(e.days as i64)?)?.checked_add_signed(Duration::microseconds(e.micros))
}

/// Until when a pass that found nothing to do stays a no-op if the partitions do not change: the
/// next slot boundary, or the moment the next partition falls out of retention, whichever is first.
pub fn quiet_until(spec: &SetSpec, existing: &[Existing], now: DateTime<Utc>) -> DateTime<Utc> {
    let tz = &spec.tz;
    let now_local = now.with_timezone(tz).naive_local();
    let next = spec.grid.next(spec.grid.slot_start(now_local));
    let mut t = resolve_local(tz, next);
    if let Some(r) = &spec.retention {
        for e in existing.iter().filter(|e| !e.is_default && e.hi != i64::MAX && e.hi != i64::MIN) {
            let hi_local = key_to_local(spec.col, tz, e.hi);
            let Some(due) = add_every_local(hi_local, r).map(|l| resolve_local(tz, l)) else { continue };
            if due > now && due < t {
                t = due;
            }
        }
    }
    t
}

/// A partition's bound as read from `pg_class.relpartbound` (the node tree text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Default,
    Range(i64, i64),
    /// Not a one-column range bound (list, hash, multi-column): left alone.
    Other,
}

/// PostgreSQL's epoch (2000-01-01) in Unix microseconds.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

fn range_datum(section: &str, col: ColType) -> Option<i64> {
    let k = section.find(":kind ")? + 6;
    let kind: i32 = section[k..].split_whitespace().next()?.parse().ok()?;
    match kind {
        -1 => return Some(i64::MIN),
        1 => return Some(i64::MAX),
        _ => {}
    }
    if section.contains(":constisnull true") {
        return None;
    }
    let v = section.find(":constvalue ")? + 12;
    let rest = &section[v..];
    let len: usize = rest.split_whitespace().next()?.parse().ok()?;
    let open = rest.find('[')? + 1;
    let close = rest.find(']')?;
    let bytes: Vec<u8> = rest[open..close]
        .split_whitespace()
        .map(|b| b.parse::<i16>().map(|x| x as u8))
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    if bytes.len() < len {
        return None;
    }
    match (col, len) {
        (ColType::Date, 4) => {
            let days = i32::from_le_bytes(bytes[..4].try_into().ok()?);
            match days {
                i32::MAX => Some(i64::MAX),
                i32::MIN => Some(i64::MIN),
                d => Some((d as i64) * MICROS_PER_DAY + PG_EPOCH_MICROS),
            }
        }
        (ColType::Timestamp | ColType::Timestamptz, 8) => {
            let us = i64::from_le_bytes(bytes[..8].try_into().ok()?);
            match us {
                i64::MAX => Some(i64::MAX),
                i64::MIN => Some(i64::MIN),
                u => Some(u.saturating_add(PG_EPOCH_MICROS)),
            }
        }
        _ => None,
    }
}

/// Parse `pg_class.relpartbound` (as text) into keys. The constants are the column type's own
/// binary values, so this is exact and independent of the session's TimeZone and DateStyle.
pub fn parse_partbound(text: &str, col: ColType) -> Bound {
    if text.contains(":is_default true") {
        return Bound::Default;
    }
    let (Some(lo), Some(hi)) = (text.find(":lowerdatums ("), text.find(":upperdatums (")) else {
        return Bound::Other;
    };
    if lo > hi || text[lo..hi].matches("PARTITIONRANGEDATUM").count() != 1 {
        return Bound::Other;
    }
    match (range_datum(&text[lo..hi], col), range_datum(&text[hi..], col)) {
        (Some(a), Some(b)) => Bound::Range(a, b),
        _ => Bound::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nt(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }
    fn utc(s: &str) -> DateTime<Utc> {
        nt(s).and_utc()
    }
    fn ev(months: i32, days: i32, minutes: i64) -> Every {
        Every { months, days, micros: minutes * MICROS_PER_MINUTE }
    }
    fn spec(grid: Grid, col: ColType, tz: &str, premake: i32) -> SetSpec {
        SetSpec {
            parent_name: "events".into(),
            grid,
            col,
            tz: tz.parse().unwrap(),
            premake,
            retention: None,
            detach: false,
            default_partition: true,
            anchor: None,
            stray: vec![],
        }
    }
    fn names(p: &Plan) -> Vec<String> {
        p.create.iter().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn intervals_validate() {
        assert_eq!(grid_for(ev(1, 0, 0), ColType::Timestamptz), Ok(Grid::Months(1)));
        assert_eq!(grid_for(ev(12, 0, 0), ColType::Date), Ok(Grid::Months(12)));
        assert_eq!(grid_for(ev(0, 1, 0), ColType::Date), Ok(Grid::Days(1)));
        assert_eq!(grid_for(ev(0, 0, 24 * 60), ColType::Date), Ok(Grid::Days(1)));
        assert_eq!(grid_for(ev(0, 0, 1), ColType::Timestamp), Ok(Grid::Micros(MICROS_PER_MINUTE)));
        assert!(grid_for(ev(0, 0, 0), ColType::Timestamptz).is_err());
        assert!(grid_for(ev(0, -1, 0), ColType::Timestamptz).is_err());
        assert!(grid_for(ev(13, 0, 0), ColType::Timestamptz).is_err());
        assert!(grid_for(ev(0, 367, 0), ColType::Timestamptz).is_err());
        assert!(grid_for(Every { months: 0, days: 0, micros: 30_000_000 }, ColType::Timestamptz).is_err());
        assert!(grid_for(Every { months: 0, days: 0, micros: 90_000_000 }, ColType::Timestamptz).is_err());
        assert!(grid_for(ev(1, 1, 0), ColType::Timestamptz).is_err());
        assert!(grid_for(ev(0, 0, 60), ColType::Date).is_err());
    }

    #[test]
    fn alignment_daily_monthly_subdaily_weekly() {
        assert_eq!(Grid::Days(1).slot_start(nt("2024-03-05 17:45")), nt("2024-03-05 00:00"));
        assert_eq!(Grid::Months(1).slot_start(nt("2024-03-05 17:45")), nt("2024-03-01 00:00"));
        assert_eq!(Grid::Months(3).slot_start(nt("2024-05-05 17:45")), nt("2024-04-01 00:00"));
        assert_eq!(Grid::Months(12).slot_start(nt("1999-05-05 17:45")), nt("1999-01-01 00:00"));
        assert_eq!(Grid::Micros(15 * MICROS_PER_MINUTE).slot_start(nt("2024-03-05 17:44")), nt("2024-03-05 17:30"));
        assert_eq!(Grid::Micros(6 * 60 * MICROS_PER_MINUTE).slot_start(nt("2024-03-05 17:44")), nt("2024-03-05 12:00"));
        // 7 minutes does not divide a day: counted from 2000-01-01.
        let s = Grid::Micros(7 * MICROS_PER_MINUTE).slot_start(nt("2024-03-05 17:44"));
        assert_eq!((s - nt("2000-01-01 00:00")).num_minutes() % 7, 0);
        assert!(s <= nt("2024-03-05 17:44") && nt("2024-03-05 17:44") < s + Duration::minutes(7));
        // weeks start on Monday
        assert_eq!(Grid::Days(7).slot_start(nt("2024-03-07 10:00")), nt("2024-03-04 00:00"));
        assert_eq!(Grid::Months(1).next(nt("2024-01-01 00:00")), nt("2024-02-01 00:00"));
    }

    #[test]
    fn leap_years() {
        let g = Grid::Days(1);
        assert_eq!(g.next(nt("2024-02-28 00:00")), nt("2024-02-29 00:00"));
        assert_eq!(g.next(nt("2024-02-29 00:00")), nt("2024-03-01 00:00"));
        assert_eq!(g.next(nt("2023-02-28 00:00")), nt("2023-03-01 00:00"));
        let s = spec(Grid::Months(1), ColType::Date, "UTC", 1);
        let p = plan(&s, &[], utc("2024-02-15 12:00"), true, &HashSet::new()).unwrap();
        assert_eq!(names(&p), vec!["events_p202402", "events_p202403"]);
        assert_eq!(p.create[0].hi_literal, "2024-03-01");
        let s = spec(Grid::Days(1), ColType::Date, "UTC", 1);
        let p = plan(&s, &[], utc("2024-02-29 12:00"), true, &HashSet::new()).unwrap();
        assert_eq!(names(&p), vec!["events_p20240229", "events_p20240301"]);
    }

    #[test]
    fn daily_in_a_dst_zone_is_local_midnight_and_23_or_25_hours_long() {
        let s = spec(Grid::Days(1), ColType::Timestamptz, "Europe/Berlin", 2);
        // 2024-03-31 is the spring-forward day in Berlin.
        let p = plan(&s, &[], utc("2024-03-30 12:00"), true, &HashSet::new()).unwrap();
        assert_eq!(names(&p), vec!["events_p20240330", "events_p20240331", "events_p20240401"]);
        assert_eq!(p.create[0].lo_literal, "2024-03-29 23:00:00+00");
        assert_eq!(p.create[1].lo_literal, "2024-03-30 23:00:00+00");
        assert_eq!(p.create[2].lo_literal, "2024-03-31 22:00:00+00");
        assert_eq!(p.create[1].hi - p.create[1].lo, 23 * 3600 * 1_000_000);
        // Fall back: 2024-10-27 has 25 hours.
        let p = plan(&s, &[], utc("2024-10-27 05:00"), true, &HashSet::new()).unwrap();
        assert_eq!(p.create[0].hi - p.create[0].lo, 25 * 3600 * 1_000_000);
        for w in p.create.windows(2) {
            assert_eq!(w[0].hi, w[1].lo);
        }
    }

    #[test]
    fn hourly_across_dst_has_no_hole_and_no_empty_partition() {
        let mut s = spec(Grid::Micros(60 * MICROS_PER_MINUTE), ColType::Timestamptz, "America/New_York", 5);
        // Spring forward 2024-03-10 02:00 local does not exist.
        s.anchor = Some(local_to_key(ColType::Timestamptz, &s.tz, nt("2024-03-10 00:00")));
        let p = plan(&s, &[], utc("2024-03-10 05:30"), true, &HashSet::new()).unwrap();
        for w in p.create.windows(2) {
            assert_eq!(w[0].hi, w[1].lo, "contiguous");
        }
        assert!(p.create.iter().all(|c| c.hi > c.lo));
        assert!(!names(&p).contains(&"events_p20240310_0200".to_string()));
        // Fall back 2024-11-03: 01:00 happens twice and means the later one (as in PostgreSQL:
        // '2024-11-03 01:00 America/New_York' is 01:00 EST), so the 00:00 slot spans two hours;
        // the set stays contiguous.
        s.anchor = Some(local_to_key(ColType::Timestamptz, &s.tz, nt("2024-11-03 00:00")));
        let p = plan(&s, &[], utc("2024-11-03 04:30"), true, &HashSet::new()).unwrap();
        for w in p.create.windows(2) {
            assert_eq!(w[0].hi, w[1].lo);
        }
        let midnight = p.create.iter().find(|c| c.name == "events_p20241103_0000").unwrap();
        assert_eq!(midnight.hi - midnight.lo, 2 * 3600 * 1_000_000);
        let one = p.create.iter().find(|c| c.name == "events_p20241103_0100").unwrap();
        assert_eq!(one.hi - one.lo, 3600 * 1_000_000);
    }

    #[test]
    fn timestamp_without_zone_uses_wall_time() {
        let s = spec(Grid::Days(1), ColType::Timestamp, "Asia/Tokyo", 0);
        // 20:00 UTC is 05:00 the next day in Tokyo.
        let p = plan(&s, &[], utc("2024-06-01 20:00"), true, &HashSet::new()).unwrap();
        assert_eq!(names(&p), vec!["events_p20240602"]);
        assert_eq!(p.create[0].lo_literal, "2024-06-02 00:00:00");
    }

    #[test]
    fn naming_fits_63_bytes_and_never_collides() {
        let long = "a".repeat(70);
        let n = partition_name(&long, "_p20240101", &HashSet::new());
        assert_eq!(n.len(), 63);
        assert!(n.ends_with("_p20240101"));
        let mut taken = HashSet::new();
        taken.insert(n.clone());
        let n2 = partition_name(&long, "_p20240101", &taken);
        assert_eq!(n2.len(), 63);
        assert!(n2.ends_with("_p20240101_2"));
        // multibyte parent names are cut on a character boundary
        let uni = "é".repeat(40);
        let n3 = partition_name(&uni, "_p202401", &HashSet::new());
        assert!(n3.len() <= 63 && n3.ends_with("_p202401"));
        assert_eq!(Grid::Micros(MICROS_PER_MINUTE).suffix(nt("2024-01-02 03:04")), "_p20240102_0304");
    }

    #[test]
    fn premake_counts_from_now_and_existing_are_adopted() {
        let s = spec(Grid::Days(1), ColType::Timestamptz, "UTC", 3);
        let now = utc("2024-05-10 08:00");
        let p = plan(&s, &[], now, true, &HashSet::new()).unwrap();
        assert_eq!(names(&p), vec!["events_p20240510", "events_p20240511", "events_p20240512", "events_p20240513"]);
        assert_eq!(p.create_default.as_deref(), Some("events_default"));
        // Pretend they exist (made by hand under other names): nothing to do.
        let ex: Vec<Existing> = p
            .create
            .iter()
            .enumerate()
            .map(|(i, c)| Existing { oid: i as u32, name: format!("hand_{i}"), lo: c.lo, hi: c.hi, is_default: false })
            .chain(std::iter::once(Existing { oid: 99, name: "d".into(), lo: 0, hi: 0, is_default: true }))
            .collect();
        let p2 = plan(&s, &ex, now, false, &HashSet::new()).unwrap();
        assert!(p2.is_empty(), "{p2:?}");
        assert!(p2.notes.is_empty());
        // A day later, exactly one new partition is due.
        let p3 = plan(&s, &ex, utc("2024-05-11 01:00"), false, &HashSet::new()).unwrap();
        assert_eq!(names(&p3), vec!["events_p20240514"]);
    }

    #[test]
    fn odd_and_overlapping_partitions_are_reported_and_worked_around() {
        let s = spec(Grid::Days(1), ColType::Timestamptz, "UTC", 1);
        let now = utc("2024-05-10 08:00");
        let k = |t: &str| naive_to_key(nt(t));
        // A hand-made partition from 2024-05-10 12:00 to 2024-05-11 12:00.
        let ex = vec![Existing { oid: 1, name: "odd".into(), lo: k("2024-05-10 12:00"), hi: k("2024-05-11 12:00"), is_default: false }];
        let p = plan(&s, &ex, now, true, &HashSet::new()).unwrap();
        let ranges: Vec<(String, String)> = p.create.iter().map(|c| (c.lo_literal.clone(), c.hi_literal.clone())).collect();
        assert_eq!(
            ranges,
            vec![
                ("2024-05-10 00:00:00+00".to_string(), "2024-05-10 12:00:00+00".to_string()),
                ("2024-05-11 12:00:00+00".to_string(), "2024-05-12 00:00:00+00".to_string()),
            ]
        );
        assert_eq!(names(&p), vec!["events_p20240510", "events_p20240511_1200"]);
        assert!(p.notes.iter().any(|n| n.contains("odd") && n.contains("adopted")));
        // MINVALUE / MAXVALUE partitions are reported, never retired, never an error.
        let ex = vec![Existing { oid: 2, name: "all".into(), lo: i64::MIN, hi: i64::MAX, is_default: false }];
        let p = plan(&s, &ex, now, false, &HashSet::new()).unwrap();
        assert!(p.create.is_empty() && p.retire.is_empty());
        assert!(p.notes[0].contains("MINVALUE"));
    }

    #[test]
    fn retention_uses_real_bounds() {
        let mut s = spec(Grid::Days(1), ColType::Date, "UTC", 1);
        s.retention = Some(ev(0, 30, 0));
        let k = |t: &str| naive_to_key(nt(t));
        let now = utc("2024-05-31 08:00");
        let ex = vec![
            Existing { oid: 1, name: "old".into(), lo: k("2024-04-01 00:00"), hi: k("2024-05-01 00:00"), is_default: false },
            Existing { oid: 2, name: "edge".into(), lo: k("2024-04-30 00:00"), hi: k("2024-05-02 00:00"), is_default: false },
            Existing { oid: 3, name: "cur".into(), lo: k("2024-05-31 00:00"), hi: k("2024-06-02 00:00"), is_default: false },
        ];
        let p = plan(&s, &ex, now, false, &HashSet::new()).unwrap();
        assert_eq!(p.retire, vec![(1, "old".to_string())]);
        assert!(p.create.is_empty());
        // Monthly retention in months.
        let mut s = spec(Grid::Months(1), ColType::Timestamptz, "UTC", 1);
        s.retention = Some(ev(3, 0, 0));
        assert_eq!(retention_cutoff(&s, utc("2024-05-31 08:00")), Some(k("2024-02-29 08:00")));
        // Initial creation from an old start_at skips slots that retention would drop at once.
        let mut s = spec(Grid::Days(1), ColType::Date, "UTC", 0);
        s.retention = Some(ev(0, 2, 0));
        s.anchor = Some(k("2024-05-01 00:00"));
        let p = plan(&s, &[], utc("2024-05-10 08:00"), true, &HashSet::new()).unwrap();
        assert_eq!(names(&p), vec!["events_p20240508", "events_p20240509", "events_p20240510"]);
    }

    #[test]
    fn start_at_in_the_past_and_catch_up_after_a_pause() {
        let mut s = spec(Grid::Months(1), ColType::Timestamptz, "UTC", 1);
        s.anchor = Some(naive_to_key(nt("2024-01-01 00:00")));
        let p = plan(&s, &[], utc("2024-03-15 00:00"), true, &HashSet::new()).unwrap();
        assert_eq!(names(&p), vec!["events_p202401", "events_p202402", "events_p202403", "events_p202404"]);
        // The worker was off for days: partitions between the newest one and now are made too.
        let s = spec(Grid::Days(1), ColType::Date, "UTC", 1);
        let k = |t: &str| naive_to_key(nt(t));
        let ex = vec![Existing { oid: 1, name: "a".into(), lo: k("2024-05-01 00:00"), hi: k("2024-05-02 00:00"), is_default: false }];
        let p = plan(&s, &ex, utc("2024-05-04 10:00"), false, &HashSet::new()).unwrap();
        assert_eq!(names(&p), vec!["events_p20240502", "events_p20240503", "events_p20240504", "events_p20240505"]);
        // Too many partitions is a clear error.
        let mut s = spec(Grid::Micros(MICROS_PER_MINUTE), ColType::Timestamptz, "UTC", 1);
        s.anchor = Some(k("2000-01-01 00:00"));
        assert!(plan(&s, &[], utc("2024-05-04 10:00"), true, &HashSet::new()).is_err());
    }

    #[test]
    fn quiet_until_is_the_next_boundary_or_retention_moment() {
        let mut s = spec(Grid::Days(1), ColType::Timestamptz, "UTC", 1);
        let now = utc("2024-05-10 08:00");
        assert_eq!(quiet_until(&s, &[], now), utc("2024-05-11 00:00"));
        s.retention = Some(ev(0, 0, 60));
        let k = |t: &str| naive_to_key(nt(t));
        let ex = vec![Existing { oid: 1, name: "a".into(), lo: k("2024-05-10 00:00"), hi: k("2024-05-10 09:00"), is_default: false }];
        assert_eq!(quiet_until(&s, &ex, now), utc("2024-05-10 10:00"));
    }

    #[test]
    fn catalog_bounds_parse_exactly() {
        let tz = "{PARTITIONBOUNDSPEC :strategy r :is_default false :modulus 0 :remainder 0 :listdatums <> :lowerdatums ({PARTITIONRANGEDATUM :kind 0 :value {CONST :consttype 1184 :consttypmod -1 :constcollid 0 :constlen 8 :constbyval true :constisnull false :location 48 :constvalue 8 [ 0 64 -23 -44 -43 -80 2 0 ]} :location 48}) :upperdatums ({PARTITIONRANGEDATUM :kind 0 :value {CONST :consttype 1184 :consttypmod -1 :constcollid 0 :constlen 8 :constbyval true :constisnull false :location 66 :constvalue 8 [ 0 -96 -64 -14 -23 -80 2 0 ]} :location 66}) :location 42}";
        assert_eq!(
            parse_partbound(tz, ColType::Timestamptz),
            Bound::Range(naive_to_key(nt("2024-01-01 00:00")), naive_to_key(nt("2024-01-02 00:00")))
        );
        let min = "{PARTITIONBOUNDSPEC :strategy r :is_default false :modulus 0 :remainder 0 :listdatums <> :lowerdatums ({PARTITIONRANGEDATUM :kind -1 :value <> :location 48}) :upperdatums ({PARTITIONRANGEDATUM :kind 0 :value {CONST :consttype 1184 :consttypmod -1 :constcollid 0 :constlen 8 :constbyval true :constisnull false :location 62 :constvalue 8 [ 0 -64 -84 102 59 -108 2 0 ]} :location 62}) :location 42}";
        assert_eq!(parse_partbound(min, ColType::Timestamptz), Bound::Range(i64::MIN, naive_to_key(nt("2023-01-02 00:00"))));
        let def = "{PARTITIONBOUNDSPEC :strategy r :is_default true :modulus 0 :remainder 0 :listdatums <> :lowerdatums <> :upperdatums <> :location 31}";
        assert_eq!(parse_partbound(def, ColType::Date), Bound::Default);
        let date = "{PARTITIONBOUNDSPEC :strategy r :is_default false :modulus 0 :remainder 0 :listdatums <> :lowerdatums ({PARTITIONRANGEDATUM :kind 0 :value {CONST :consttype 1082 :consttypmod -1 :constcollid 0 :constlen 4 :constbyval true :constisnull false :location 99 :constvalue 4 [ 62 34 0 0 0 0 0 0 ]} :location 99}) :upperdatums ({PARTITIONRANGEDATUM :kind 1 :value <> :location 117}) :location 93}";
        assert_eq!(parse_partbound(date, ColType::Date), Bound::Range(naive_to_key(nt("2024-01-01 00:00")), i64::MAX));
        assert_eq!(parse_partbound("garbage", ColType::Date), Bound::Other);
    }

    #[test]
    fn a_partition_with_fractional_second_bounds_is_met_exactly() {
        // An adopted partition [day 2 00:00:00.5, day 3 00:00:00.25): the pieces around it start and
        // end on its own bounds, to the microsecond, and their literals say so.
        let s = spec(Grid::Days(1), ColType::Timestamp, "UTC", 3);
        let half = 500_000;
        let odd = Existing {
            oid: 1,
            name: "odd".into(),
            lo: naive_to_key(nt("2024-05-11 00:00")) + half,
            hi: naive_to_key(nt("2024-05-12 00:00")) + half / 2,
            is_default: false,
        };
        let p = plan(&s, &[odd.clone()], utc("2024-05-10 08:00"), true, &HashSet::new()).unwrap();
        let bounds: Vec<(String, String)> = p.create.iter().map(|c| (c.lo_literal.clone(), c.hi_literal.clone())).collect();
        assert!(bounds.contains(&("2024-05-11 00:00:00".into(), "2024-05-11 00:00:00.500".into())), "{bounds:?}");
        assert!(bounds.contains(&("2024-05-12 00:00:00.250".into(), "2024-05-13 00:00:00".into())), "{bounds:?}");
        for c in &p.create {
            assert!(c.hi <= odd.lo || c.lo >= odd.hi, "{} overlaps the adopted partition", c.name);
        }
        assert_eq!(key_literal(ColType::Timestamptz, naive_to_key(nt("2024-05-11 00:00")) + 123_456), "2024-05-11 00:00:00.123456+00");
        assert_eq!(key_literal(ColType::Timestamptz, naive_to_key(nt("2024-05-11 00:00"))), "2024-05-11 00:00:00+00");
    }

    #[test]
    fn an_absurd_retention_retires_nothing_instead_of_overflowing() {
        let mut s = spec(Grid::Days(1), ColType::Timestamptz, "UTC", 1);
        s.retention = Some(Every { months: 0, days: 100_000_000, micros: 0 });
        assert_eq!(retention_cutoff(&s, utc("2024-05-10 08:00")), None);
        let (lo, hi) = (naive_to_key(nt("2024-05-08 00:00")), naive_to_key(nt("2024-05-09 00:00")));
        let old = Existing { oid: 1, name: "old".into(), lo, hi, is_default: false };
        let p = plan(&s, &[old.clone()], utc("2024-05-10 08:00"), false, &HashSet::new()).unwrap();
        assert!(p.retire.is_empty());
        quiet_until(&s, &[old], utc("2024-05-10 08:00"));
    }

    #[test]
    fn names_taken_by_other_tables_get_a_suffix() {
        let s = spec(Grid::Days(1), ColType::Date, "UTC", 0);
        let taken: HashSet<String> = ["events_p20240510".to_string(), "events_default".to_string()].into_iter().collect();
        let p = plan(&s, &[], utc("2024-05-10 08:00"), true, &taken).unwrap();
        assert_eq!(names(&p), vec!["events_p20240510_2"]);
        assert_eq!(p.create_default.as_deref(), Some("events_default_2"));
    }
}
