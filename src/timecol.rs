//! The kind of a time column (metrics and rollups read date, timestamp and timestamptz columns).

use serde::{Deserialize, Serialize};

/// The kind of the time column, which decides how its values become instants and buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeKind {
    /// timestamptz: an instant.
    Timestamptz,
    /// timestamp without time zone: read as UTC.
    Timestamp,
    /// date: a calendar day in the requested zone.
    Date,
}

impl TimeKind {
    pub fn from_type_name(t: &str) -> Option<TimeKind> {
        match t {
            "timestamp with time zone" => Some(TimeKind::Timestamptz),
            "timestamp without time zone" => Some(TimeKind::Timestamp),
            "date" => Some(TimeKind::Date),
            _ => None,
        }
    }
    /// Read back as a catalog stores it (`format!("{kind:?}")`).
    pub fn stored(s: &str) -> TimeKind {
        match s {
            "Timestamp" => TimeKind::Timestamp,
            "Date" => TimeKind::Date,
            _ => TimeKind::Timestamptz,
        }
    }
}
