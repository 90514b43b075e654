//! Schedules: an interval (`'15 minutes'`, at least one second) or a five-field cron expression
//! (ranges, steps, lists, names, `@hourly` and friends, `$` for the last day of the month), each
//! evaluated in the job's own IANA time zone. Pure Rust: no PostgreSQL needed to test it.
//!
//! Interval text is parsed by PostgreSQL (so every interval spelling users know works) and handed
//! here as [`Every`]; arithmetic follows PostgreSQL's `timestamptz + interval` in the job's zone:
//! months and days move the local calendar (so "1 day" stays at local midnight across DST), the
//! time part moves absolute time.

use crate::error::{PgMartError, Result};
use chrono::{DateTime, Duration, LocalResult, Months, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// A PostgreSQL interval: months, days and microseconds, kept apart as PostgreSQL does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Every {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

impl Every {
    pub fn seconds(s: i64) -> Every {
        Every { months: 0, days: 0, micros: s * 1_000_000 }
    }
    /// Rough length in seconds (30-day months), for ordering and sanity checks.
    pub fn approx_seconds(&self) -> f64 {
        self.months as f64 * 30.0 * 86400.0 + self.days as f64 * 86400.0 + self.micros as f64 / 1e6
    }
}

#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Every),
    Cron(Box<Cron>),
}

/// What a schedule text looks like, before it is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleText {
    Cron(String),
    Interval(String),
}

/// Tell a cron expression from an interval. Anything that looks like cron is read as cron (and so
/// refused unless it is a valid five-field expression), never as an interval: `@name`; a `*`, `/`,
/// `,` or `$` anywhere (no interval has one, yet PostgreSQL's lenient interval input reads
/// `*/15 * * *` as 15 seconds); or 2 to 7 fields of digits and `-` only (`0 4 * *` with a field
/// missing, `0 0 4 * * *` with seconds).
pub fn classify(text: &str) -> ScheduleText {
    let t = text.trim();
    if t.starts_with('@') {
        return ScheduleText::Cron(t.to_string());
    }
    let fields: Vec<&str> = t.split_whitespace().collect();
    let numeric = |f: &str| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit() || c == '-');
    // A '-' between digits is a cron range ('1-5'), never an interval (PostgreSQL would read '1-5'
    // as 1 year 5 months).
    let range = t.as_bytes().windows(3).any(|w| w[0].is_ascii_digit() && w[1] == b'-' && w[2].is_ascii_digit());
    let cron_marks = t.contains(['*', '/', ',', '$']) || range;
    if cron_marks || ((2..=7).contains(&fields.len()) && fields.iter().all(|f| numeric(f))) {
        ScheduleText::Cron(fields.join(" "))
    } else {
        ScheduleText::Interval(t.to_string())
    }
}

/// A bare number (`'5'`): PostgreSQL would read it as seconds, a cron user may mean minutes.
pub fn bare_number(text: &str) -> bool {
    let t = text.trim();
    !t.is_empty() && t.parse::<f64>().is_ok()
}

/// Expand nicknames and pg_cron's `$` (last day of month) into what the cron parser reads.
pub fn normalize_cron(text: &str) -> Result<String> {
    let t = text.trim();
    let expanded = match t.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
        "@monthly" => "0 0 1 * *".to_string(),
        "@weekly" => "0 0 * * 0".to_string(),
        "@daily" | "@midnight" => "0 0 * * *".to_string(),
        "@hourly" => "0 * * * *".to_string(),
        s if s.starts_with('@') => {
            return Err(PgMartError::invalid(format!("unknown cron nickname \"{t}\""))
                .hint("Use @hourly, @daily, @weekly, @monthly or @yearly."))
        }
        _ => t.to_string(),
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        let hint = if fields.len() == 6 {
            "pgmart's cron has no seconds field: drop the first field, or give an interval such as '30 seconds'."
        } else {
            "Write all five fields, for example '*/15 * * * *', or give an interval such as '15 minutes'."
        };
        return Err(PgMartError::invalid(format!(
            "invalid schedule \"{t}\": a cron expression has 5 fields (minute hour day-of-month month day-of-week), this has {}",
            fields.len()
        ))
        .hint(hint));
    }
    let mut out: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    if out[2].contains('$') {
        if out[2] != "$" {
            return Err(PgMartError::invalid(format!(
                "invalid schedule \"{t}\": '$' (last day of month) must stand alone in the day-of-month field"
            )));
        }
        out[2] = "L".to_string();
    }
    for (i, f) in out.iter().enumerate() {
        if i != 2 && f.contains('$') {
            return Err(PgMartError::invalid(format!(
                "invalid schedule \"{t}\": '$' is only allowed in the day-of-month field"
            )));
        }
    }
    Ok(out.join(" "))
}

/// Parse a cron expression (after [`normalize_cron`]).
pub fn parse_cron(text: &str) -> Result<Cron> {
    let norm = normalize_cron(text)?;
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    parser
        .parse(&norm)
        .map_err(|e| PgMartError::invalid(format!("invalid cron expression \"{}\": {e}", text.trim())))
}

/// Resolve an IANA time zone name.
pub fn parse_tz(name: &str) -> Result<Tz> {
    name.trim().parse::<Tz>().map_err(|_| {
        PgMartError::invalid(format!("unknown time zone \"{name}\""))
            .hint("Use an IANA name such as 'UTC', 'Europe/Berlin' or 'America/New_York'.")
    })
}

/// Validate an interval schedule: at least one second, never negative.
pub fn check_every(e: &Every, text: &str) -> Result<()> {
    if e.months < 0 || e.days < 0 || e.micros < 0 || e.approx_seconds() < 1.0 {
        return Err(PgMartError::invalid(format!(
            "invalid schedule \"{text}\": an interval schedule must be at least 1 second"
        )));
    }
    Ok(())
}

/// Map a local wall-clock time to an instant the way PostgreSQL does: an ambiguous time (fall
/// back) takes its later occurrence (standard time), a time in a gap (spring forward) moves forward
/// by the gap.
pub fn resolve_local(tz: &Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(_, b) => b.with_timezone(&Utc),
        LocalResult::None => {
            // PostgreSQL reads a wall time inside a gap with the offset in force before the gap.
            let before = tz.from_local_datetime(&(local - Duration::hours(3))).earliest();
            let offset = before.map(|t| t.offset().fix().local_minus_utc()).unwrap_or(0);
            Utc.from_utc_datetime(&(local - Duration::seconds(offset as i64)))
        }
    }
}

/// The latest instant pgmart schedules anything at (PostgreSQL's timestamps go further, but a job
/// due after the year 9999 would never run).
pub fn max_instant() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single().expect("valid date")
}

/// `origin + n * every`, evaluated in `tz` the way PostgreSQL evaluates `timestamptz + interval`:
/// months and days move the local calendar (so "1 day" keeps its wall-clock time across DST and
/// "1 month" from the 31st lands on the last day of shorter months), the time part moves absolute
/// time. None when it overflows or passes the year 9999.
pub fn slot(tz: &Tz, origin: DateTime<Utc>, e: &Every, n: i64) -> Option<DateTime<Utc>> {
    let mut base = origin;
    if e.months != 0 || e.days != 0 {
        let mut local = origin.with_timezone(tz).naive_local();
        let months = (e.months as i64).checked_mul(n)?;
        if months > 0 {
            local = local.checked_add_months(Months::new(u32::try_from(months).ok()?))?;
        }
        let days = (e.days as i64).checked_mul(n)?;
        local = local.checked_add_signed(Duration::try_days(days)?)?;
        base = resolve_local(tz, local);
    }
    let micros = e.micros.checked_mul(n)?;
    let t = base.checked_add_signed(Duration::microseconds(micros))?;
    (t <= max_instant()).then_some(t)
}

/// `t + every` in `tz` (see [`slot`]).
pub fn add_every(tz: &Tz, t: DateTime<Utc>, e: &Every) -> Option<DateTime<Utc>> {
    slot(tz, t, e, 1)
}

/// The first slot `origin + k*every` (k >= 1) strictly after `now`: a late job skips missed slots
/// instead of running them all, and every slot is computed from the origin, never from the
/// previous run, so a schedule never drifts.
pub fn next_every(tz: &Tz, origin: DateTime<Utc>, now: DateTime<Utc>, e: &Every) -> Option<DateTime<Utc>> {
    let step = e.approx_seconds().max(1.0);
    let behind = (now - origin).num_milliseconds() as f64 / 1000.0;
    let mut k: i64 = if behind < 0.0 { 1 } else { ((behind / step) as i64).saturating_sub(2).max(1) };
    // The estimate may be a little high (calendar months are shorter than 30 days): step back.
    while k > 1 && slot(tz, origin, e, k - 1).is_some_and(|t| t > now) {
        k -= 1;
    }
    for _ in 0..10_000 {
        let t = slot(tz, origin, e, k)?;
        if t > now {
            return Some(t);
        }
        k += 1;
    }
    None
}

/// Next match of a cron expression strictly after `after`, in `tz`.
pub fn next_cron(cron: &Cron, tz: &Tz, after: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let local = after.with_timezone(tz);
    cron.find_next_occurrence(&local, false)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| PgMartError::invalid(format!("cron expression never matches: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn tz(s: &str) -> Tz {
        parse_tz(s).unwrap()
    }

    #[test]
    fn classifies_cron_and_intervals() {
        assert_eq!(classify("*/5 * * * *"), ScheduleText::Cron("*/5 * * * *".into()));
        assert_eq!(classify(" 30  2 * * 1-5 "), ScheduleText::Cron("30 2 * * 1-5".into()));
        assert_eq!(classify("@daily"), ScheduleText::Cron("@daily".into()));
        assert_eq!(classify("15 minutes"), ScheduleText::Interval("15 minutes".into()));
        assert_eq!(classify("1 day 2 hours"), ScheduleText::Interval("1 day 2 hours".into()));
        assert_eq!(classify("00:05:00"), ScheduleText::Interval("00:05:00".into()));
        assert_eq!(classify("1$ * * * *"), ScheduleText::Cron("1$ * * * *".into()));
        // Typos of cron are cron (and refused), never intervals.
        for typo in ["*/15 * * *", "0 4 * *", "0 0 4 * * *", "0,30 * * *", "5/10", "0 4", "0 4 1 1 1 1"] {
            assert!(matches!(classify(typo), ScheduleText::Cron(_)), "{typo}");
        }
        assert_eq!(classify("1 day"), ScheduleText::Interval("1 day".into()));
        assert!(matches!(classify("1-2"), ScheduleText::Cron(_)));
        assert!(matches!(classify("0 9-17"), ScheduleText::Cron(_)));
        assert_eq!(classify("-5 minutes"), ScheduleText::Interval("-5 minutes".into()));
        assert!(bare_number("5") && bare_number(" 1.5 ") && !bare_number("5 seconds") && !bare_number("00:05"));
    }

    #[test]
    fn cron_typos_say_a_cron_expression_has_five_fields() {
        for (typo, n) in [("*/15 * * *", 4), ("0 4 * *", 4), ("0 0 4 * * *", 6), ("0 4", 2)] {
            let ScheduleText::Cron(c) = classify(typo) else { panic!("{typo}") };
            let e = parse_cron(&c).unwrap_err();
            assert!(e.message.contains(&format!("a cron expression has 5 fields (minute hour day-of-month month day-of-week), this has {n}")), "{}", e.message);
        }
    }

    #[test]
    fn rejects_bad_cron() {
        for bad in ["61 * * * *", "* 25 * * *", "* * 32 * *", "* * * 13 *", "* * * * 8x", "* * *", "@often", "1$ * * * *", "0 0 1$ * *"] {
            let r = match classify(bad) {
                ScheduleText::Cron(c) => parse_cron(&c),
                ScheduleText::Interval(_) => parse_cron(bad),
            };
            assert!(r.is_err(), "{bad} should be rejected");
            assert_eq!(r.unwrap_err().code, pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE);
        }
    }

    #[test]
    fn accepts_ranges_steps_lists_names_and_nicknames() {
        for ok in ["*/15 * * * *", "0 9-17 * * 1-5", "0,30 * * * *", "0 0 1 JAN *", "0 0 * * MON", "@hourly", "@daily", "@weekly", "@monthly", "0 3 $ * *"] {
            assert!(parse_cron(ok).is_ok(), "{ok} should parse");
        }
    }

    #[test]
    fn steps_and_nicknames_compute_next() {
        let z = tz("UTC");
        let c = parse_cron("*/15 * * * *").unwrap();
        assert_eq!(next_cron(&c, &z, utc("2025-01-01T10:07:00Z")).unwrap(), utc("2025-01-01T10:15:00Z"));
        let c = parse_cron("@hourly").unwrap();
        assert_eq!(next_cron(&c, &z, utc("2025-01-01T10:00:00Z")).unwrap(), utc("2025-01-01T11:00:00Z"));
        let c = parse_cron("@weekly").unwrap(); // Sunday midnight; 2025-01-01 is a Wednesday
        assert_eq!(next_cron(&c, &z, utc("2025-01-01T10:00:00Z")).unwrap(), utc("2025-01-05T00:00:00Z"));
        let c = parse_cron("@monthly").unwrap();
        assert_eq!(next_cron(&c, &z, utc("2025-01-31T10:00:00Z")).unwrap(), utc("2025-02-01T00:00:00Z"));
    }

    #[test]
    fn dollar_is_last_day_of_month_including_leap_years() {
        let z = tz("UTC");
        let c = parse_cron("0 0 $ * *").unwrap();
        assert_eq!(next_cron(&c, &z, utc("2024-02-10T00:00:00Z")).unwrap(), utc("2024-02-29T00:00:00Z"));
        assert_eq!(next_cron(&c, &z, utc("2023-02-10T00:00:00Z")).unwrap(), utc("2023-02-28T00:00:00Z"));
        assert_eq!(next_cron(&c, &z, utc("2024-04-30T00:00:00Z")).unwrap(), utc("2024-05-31T00:00:00Z"));
    }

    #[test]
    fn cron_is_evaluated_in_the_jobs_zone() {
        let c = parse_cron("0 9 * * *").unwrap();
        // 09:00 in Tokyo is 00:00 UTC.
        assert_eq!(next_cron(&c, &tz("Asia/Tokyo"), utc("2025-06-01T01:00:00Z")).unwrap(), utc("2025-06-02T00:00:00Z"));
        // 09:00 in New York in summer is 13:00 UTC.
        assert_eq!(next_cron(&c, &tz("America/New_York"), utc("2025-06-01T01:00:00Z")).unwrap(), utc("2025-06-01T13:00:00Z"));
    }

    /// Count how often a daily cron job fires on one local day, walking run to run like the engine.
    fn runs_on(cron: &str, zone: &str, from: &str, to: &str) -> Vec<DateTime<Utc>> {
        let c = parse_cron(cron).unwrap();
        let z = tz(zone);
        let (mut t, end) = (utc(from), utc(to));
        let mut out = vec![];
        loop {
            t = next_cron(&c, &z, t).unwrap();
            if t >= end {
                return out;
            }
            out.push(t);
        }
    }

    #[test]
    fn spring_forward_daily_0230_runs_once() {
        // America/New_York, 2025-03-09: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
        let runs = runs_on("30 2 * * *", "America/New_York", "2025-03-09T05:00:00Z", "2025-03-10T04:00:00Z");
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0], utc("2025-03-09T07:00:00Z")); // 03:00 EDT, right after the gap
        let next = runs_on("30 2 * * *", "America/New_York", "2025-03-09T07:00:00Z", "2025-03-11T00:00:00Z");
        assert_eq!(next, vec![utc("2025-03-10T06:30:00Z")]); // back to 02:30 EDT
    }

    #[test]
    fn fall_back_daily_job_in_repeated_hour_runs_once() {
        // America/New_York, 2025-11-02: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
        let runs = runs_on("30 1 * * *", "America/New_York", "2025-11-02T04:00:00Z", "2025-11-03T05:00:00Z");
        assert_eq!(runs, vec![utc("2025-11-02T05:30:00Z")]);
        let runs = runs_on("30 2 * * *", "America/New_York", "2025-11-02T04:00:00Z", "2025-11-03T05:00:00Z");
        assert_eq!(runs, vec![utc("2025-11-02T07:30:00Z")]);
    }

    #[test]
    fn europe_spring_forward_and_fall_back() {
        let runs = runs_on("30 2 * * *", "Europe/Berlin", "2025-03-29T23:00:00Z", "2025-03-30T22:00:00Z");
        assert_eq!(runs.len(), 1);
        let runs = runs_on("30 2 * * *", "Europe/Berlin", "2025-10-25T22:00:00Z", "2025-10-26T22:00:00Z");
        assert_eq!(runs, vec![utc("2025-10-26T00:30:00Z")]);
    }

    #[test]
    fn unknown_time_zone_is_rejected() {
        assert!(parse_tz("Mars/Olympus").is_err());
        assert!(parse_tz("Europe/Berlin").is_ok());
        assert!(parse_tz("UTC").is_ok());
    }

    #[test]
    fn interval_must_be_at_least_a_second() {
        assert!(check_every(&Every { months: 0, days: 0, micros: 999_999 }, "999 ms").is_err());
        assert!(check_every(&Every { months: 0, days: 0, micros: -5 }, "-5").is_err());
        assert!(check_every(&Every::seconds(1), "1 s").is_ok());
        assert!(check_every(&Every { months: 1, days: 0, micros: 0 }, "1 mon").is_ok());
    }

    #[test]
    fn interval_skips_missed_slots() {
        let z = tz("UTC");
        let e = Every::seconds(600);
        let a = utc("2025-01-01T00:00:00Z");
        assert_eq!(next_every(&z, a, utc("2025-01-01T00:05:00Z"), &e), Some(utc("2025-01-01T00:10:00Z")));
        assert_eq!(next_every(&z, a, utc("2025-01-01T01:00:00Z"), &e), Some(utc("2025-01-01T01:10:00Z")));
        assert_eq!(next_every(&z, a, utc("2024-12-31T00:00:00Z"), &e), Some(utc("2025-01-01T00:10:00Z")));
    }

    #[test]
    fn daily_interval_keeps_local_midnight_across_dst() {
        let z = tz("Europe/Berlin");
        let e = Every { months: 0, days: 1, micros: 0 };
        // 2025-03-30 00:00 CET = 2025-03-29T23:00Z; next local midnight is 22:00Z (CEST).
        assert_eq!(add_every(&z, utc("2025-03-29T23:00:00Z"), &e), Some(utc("2025-03-30T22:00:00Z")));
        assert_eq!(add_every(&z, utc("2025-10-25T22:00:00Z"), &e), Some(utc("2025-10-26T23:00:00Z")));
    }

    #[test]
    fn monthly_interval_follows_the_calendar() {
        let z = tz("UTC");
        let e = Every { months: 1, days: 0, micros: 0 };
        assert_eq!(add_every(&z, utc("2024-01-31T00:00:00Z"), &e), Some(utc("2024-02-29T00:00:00Z")));
        assert_eq!(add_every(&z, utc("2024-03-01T00:00:00Z"), &e), Some(utc("2024-04-01T00:00:00Z")));
    }

    #[test]
    fn daily_interval_keeps_its_wall_clock_time_after_spring_forward() {
        // Created at 02:30 New York the day before the gap; 02:30 does not exist on 2025-03-09.
        let z = tz("America/New_York");
        let e = Every { months: 0, days: 1, micros: 0 };
        let origin = utc("2025-03-08T07:30:00Z"); // 02:30 EST
        let on_gap_day = next_every(&z, origin, utc("2025-03-08T08:00:00Z"), &e).unwrap();
        assert_eq!(on_gap_day, utc("2025-03-09T07:30:00Z")); // 03:30 EDT, moved forward by the gap
        let after = next_every(&z, origin, on_gap_day, &e).unwrap();
        assert_eq!(after, utc("2025-03-10T06:30:00Z")); // 02:30 EDT again, not 03:30 for good
    }

    #[test]
    fn monthly_interval_from_the_31st_lands_on_each_last_day() {
        let z = tz("UTC");
        let e = Every { months: 1, days: 0, micros: 0 };
        let origin = utc("2025-01-31T00:00:00Z");
        let mut t = origin;
        let mut got = vec![];
        for _ in 0..4 {
            t = next_every(&z, origin, t, &e).unwrap();
            got.push(t);
        }
        assert_eq!(got, vec![utc("2025-02-28T00:00:00Z"), utc("2025-03-31T00:00:00Z"), utc("2025-04-30T00:00:00Z"), utc("2025-05-31T00:00:00Z")]);
    }

    #[test]
    fn overflowing_intervals_have_no_slot() {
        let z = tz("UTC");
        assert_eq!(add_every(&z, utc("2025-01-01T00:00:00Z"), &Every { months: 12 * 178_000_000, days: 0, micros: 0 }), None);
        assert_eq!(add_every(&z, utc("2025-01-01T00:00:00Z"), &Every { months: 0, days: 100_000_000, micros: 0 }), None);
        assert_eq!(add_every(&z, utc("2025-01-01T00:00:00Z"), &Every { months: 0, days: 0, micros: i64::MAX }), None);
    }

    #[test]
    fn local_time_in_a_gap_moves_forward_like_postgres() {
        let z = tz("America/New_York");
        let local = NaiveDateTime::parse_from_str("2025-03-09 02:30:00", "%Y-%m-%d %H:%M:%S").unwrap();
        // PostgreSQL: '2025-03-09 02:30 America/New_York' = 03:30 EDT = 07:30Z.
        assert_eq!(resolve_local(&z, local), utc("2025-03-09T07:30:00Z"));
        // An ambiguous time takes its later occurrence, as PostgreSQL does (01:30 EST = 06:30Z).
        let amb = NaiveDateTime::parse_from_str("2025-11-02 01:30:00", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(resolve_local(&z, amb), utc("2025-11-02T06:30:00Z"));
        let berlin = NaiveDateTime::parse_from_str("2026-10-25 02:30:00", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(resolve_local(&tz("Europe/Berlin"), berlin), utc("2026-10-25T01:30:00Z"));
    }
}
