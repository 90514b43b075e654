//! Time zone names: every name PostgreSQL's `TimeZone` setting accepts is accepted (in any case,
//! with spaces around it, POSIX offsets such as `UTC+3`), PostgreSQL itself deciding what it means,
//! and stored under the IANA name pgmart computes with (chrono-tz): `'utc'` is `UTC`, `' europe/berlin '`
//! is `Europe/Berlin`, a fixed offset of whole hours is `Etc/GMT±N`. What cannot be computed with
//! (an abbreviation such as `PST`, a POSIX rule with daylight saving, an offset of 5:30) is refused
//! with a hint naming the IANA zone to use instead.

use crate::error::{PgMartError, Result};
use crate::sql;
use chrono_tz::Tz;
use serde::Deserialize;

/// A time zone as pgmart stores and computes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// The IANA name stored in the catalog.
    pub name: String,
    pub tz: Tz,
}

const EXAMPLES: &str = "Use an IANA zone name such as 'UTC', 'Europe/Berlin' or 'America/New_York' (see pg_timezone_names).";

fn unknown(name: &str) -> PgMartError {
    PgMartError::invalid(format!("unknown time zone \"{}\"", shown(name))).hint(EXAMPLES)
}

/// The name as given, shortened for a message.
fn shown(name: &str) -> String {
    let t = name.trim();
    if t.chars().count() <= 80 {
        t.to_string()
    } else {
        format!("{}...", t.chars().take(80).collect::<String>())
    }
}

/// `Etc/GMT±N` for a fixed offset of whole hours east of Greenwich (Etc names count west).
fn etc_name(offset_s: i64) -> Option<String> {
    if offset_s % 3600 != 0 || !(-12 * 3600..=14 * 3600).contains(&offset_s) {
        return None;
    }
    let h = offset_s / 3600;
    Some(match h {
        0 => "UTC".to_string(),
        h if h > 0 => format!("Etc/GMT-{h}"),
        h => format!("Etc/GMT+{}", -h),
    })
}

fn offset_text(offset_s: i64) -> String {
    let sign = if offset_s < 0 { '-' } else { '+' };
    let a = offset_s.abs();
    format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
}

/// The zone most people mean by a common abbreviation (daylight saving included).
fn zone_for_abbreviation(abbrev: &str) -> Option<&'static str> {
    Some(match abbrev.to_ascii_uppercase().as_str() {
        "PST" | "PDT" => "America/Los_Angeles",
        "MST" | "MDT" => "America/Denver",
        "CST" | "CDT" => "America/Chicago",
        "EST" | "EDT" => "America/New_York",
        "AKST" | "AKDT" => "America/Anchorage",
        "HST" => "Pacific/Honolulu",
        "AST" | "ADT" => "America/Halifax",
        "NST" | "NDT" => "America/St_Johns",
        "BST" => "Europe/London",
        "WET" | "WEST" => "Europe/Lisbon",
        "CET" | "CEST" | "MET" | "MEST" => "Europe/Berlin",
        "EET" | "EEST" => "Europe/Athens",
        "MSK" => "Europe/Moscow",
        "IST" => "Asia/Kolkata",
        "JST" => "Asia/Tokyo",
        "KST" => "Asia/Seoul",
        "HKT" => "Asia/Hong_Kong",
        "SGT" => "Asia/Singapore",
        "AWST" => "Australia/Perth",
        "ACST" | "ACDT" => "Australia/Adelaide",
        "AEST" | "AEDT" => "Australia/Sydney",
        "NZST" | "NZDT" => "Pacific/Auckland",
        _ => return None,
    })
}

/// Resolve a time zone name the way `SET TimeZone` would, to the zone pgmart stores.
pub fn resolve(name: &str) -> Result<Zone> {
    let t = name.trim();
    if t.is_empty() {
        return Err(PgMartError::invalid("time zone must not be empty").hint(EXAMPLES));
    }
    if t.len() > 255 || t.contains('\0') {
        return Err(unknown(t));
    }
    // The usual case: already an IANA name as chrono-tz spells it.
    if let Ok(tz) = t.parse::<Tz>() {
        return Ok(Zone { name: t.to_string(), tz });
    }
    // Ask PostgreSQL what the name means (its canonical spelling, its UTC offsets in winter and in
    // summer), with the session's own setting left as it was.
    #[derive(Deserialize)]
    struct Probe {
        winter: f64,
        summer: f64,
    }
    let probe = sql::under_setting(c"TimeZone", t, || {
        let canonical = sql::setting(c"TimeZone").unwrap_or_default();
        let p = sql::row::<Probe>(
            "SELECT EXTRACT(timezone FROM '2025-01-15 12:00:00+00'::timestamp with time zone)::double precision AS winter, \
                    EXTRACT(timezone FROM '2025-07-15 12:00:00+00'::timestamp with time zone)::double precision AS summer",
            &[],
        );
        (canonical, p)
    });
    let (canonical, offsets) = match probe {
        Ok((c, Some(p))) => (c, p),
        Ok((_, None)) => return Err(unknown(t)),
        Err(_) => return Err(not_a_zone(t)),
    };
    if let Ok(tz) = canonical.parse::<Tz>() {
        return Ok(Zone { name: canonical, tz });
    }
    // The same zones under posix/ (right/ zones count leap seconds, which PostgreSQL ignores).
    for prefix in ["posix/", "right/"] {
        if let Some(rest) = canonical.strip_prefix(prefix) {
            if let Ok(tz) = rest.parse::<Tz>() {
                if prefix == "posix/" {
                    return Ok(Zone { name: rest.to_string(), tz });
                }
                return Err(PgMartError::invalid(format!("time zone \"{}\" counts leap seconds", shown(t)))
                    .hint(format!("Use '{rest}'.")));
            }
        }
    }
    // A POSIX specification or an offset: a fixed offset of whole hours is an Etc/GMT zone.
    let (winter, summer) = (offsets.winter.round() as i64, offsets.summer.round() as i64);
    if winter == summer {
        if let Some(etc) = etc_name(winter) {
            let tz = etc.parse::<Tz>().map_err(|_| unknown(t))?;
            // 'UTC+3' is three hours *west* (POSIX), which surprises: say so.
            let sign = t.chars().find(|c| *c == '+' || *c == '-');
            let west = (sign == Some('+') && winter < 0) || (sign == Some('-') && winter > 0);
            pgrx::notice!(
                "time zone \"{}\" is UTC{} all year; it is kept as \"{etc}\"{}",
                shown(t),
                offset_text(winter),
                if west { " (in a POSIX time zone, +N means N hours west of Greenwich)" } else { "" }
            );
            return Ok(Zone { name: etc, tz });
        }
        let suggestion = zone_with_offset(winter);
        return Err(PgMartError::invalid(format!(
            "time zone \"{}\" (UTC{} all year) has no IANA name pgmart can compute with",
            shown(t),
            offset_text(winter)
        ))
        .hint(match suggestion {
            Some(z) => format!("Use the IANA zone of a place on that offset, such as '{z}'."),
            None => EXAMPLES.to_string(),
        }));
    }
    Err(PgMartError::invalid(format!(
        "time zone \"{}\" is a POSIX rule (UTC{} in January, UTC{} in July), not a zone pgmart can compute with",
        shown(t),
        offset_text(winter),
        offset_text(summer)
    ))
    .hint(EXAMPLES))
}

/// Refusal of a name `SET TimeZone` does not accept: an abbreviation (which AT TIME ZONE takes as
/// a fixed offset) gets a hint naming the zone, else the generic one.
fn not_a_zone(t: &str) -> PgMartError {
    let offset = sql::one::<f64>(
        "SELECT EXTRACT(epoch FROM utc_offset)::double precision FROM pg_catalog.pg_timezone_abbrevs \
          WHERE pg_catalog.upper(abbrev) OPERATOR(pg_catalog.=) pg_catalog.upper($1) LIMIT 1",
        &[t.into()],
    );
    let Some(offset) = offset.map(|o| o.round() as i64) else {
        return unknown(t);
    };
    let mut options = vec![];
    if let Some(z) = zone_for_abbreviation(t) {
        options.push(format!("'{z}' (with its daylight saving changes)"));
    }
    if let Some(etc) = etc_name(offset) {
        options.push(format!("'{etc}' (UTC{} all year)", offset_text(offset)));
    } else if let Some(z) = zone_with_offset(offset) {
        options.push(format!("'{z}'"));
    }
    PgMartError::invalid(format!(
        "\"{}\" is a time zone abbreviation (UTC{}), not a time zone",
        shown(t),
        offset_text(offset)
    ))
    .hint(if options.is_empty() { EXAMPLES.to_string() } else { format!("Use {}.", options.join(" or ")) })
}

/// A place's IANA zone whose standard offset is `offset_s` (for hints).
fn zone_with_offset(offset_s: i64) -> Option<String> {
    sql::one::<String>(
        "SELECT name FROM pg_catalog.pg_timezone_names \
          WHERE EXTRACT(epoch FROM utc_offset) OPERATOR(pg_catalog.=) $1::double precision AND NOT is_dst \
            AND name OPERATOR(pg_catalog.~) '^(Africa|America|Antarctica|Asia|Atlantic|Australia|Europe|Indian|Pacific)/' \
          ORDER BY name LIMIT 1",
        &[(offset_s as f64).into()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_hour_offsets_are_etc_zones() {
        assert_eq!(etc_name(3 * 3600).as_deref(), Some("Etc/GMT-3"));
        assert_eq!(etc_name(-3 * 3600).as_deref(), Some("Etc/GMT+3"));
        assert_eq!(etc_name(0).as_deref(), Some("UTC"));
        assert_eq!(etc_name(14 * 3600).as_deref(), Some("Etc/GMT-14"));
        assert_eq!(etc_name(-13 * 3600), None);
        assert_eq!(etc_name(5 * 3600 + 1800), None);
        for h in -12..=14 {
            let n = etc_name(h * 3600).unwrap();
            assert!(n.parse::<Tz>().is_ok(), "{n}");
        }
    }

    #[test]
    fn offsets_print_like_iso() {
        assert_eq!(offset_text(-8 * 3600), "-08:00");
        assert_eq!(offset_text(5 * 3600 + 1800), "+05:30");
        assert_eq!(offset_text(0), "+00:00");
    }

    #[test]
    fn common_abbreviations_name_a_zone() {
        for a in ["PST", "pdt", "EST", "CEST", "IST"] {
            let z = zone_for_abbreviation(a).unwrap();
            assert!(z.parse::<Tz>().is_ok(), "{z}");
        }
        assert_eq!(zone_for_abbreviation("XYZ"), None);
    }
}
