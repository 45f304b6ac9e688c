//! Times are stored as Unix epoch milliseconds (BIGINT) in both databases: one portable
//! representation, index-friendly, with no time-zone ambiguity. They leave the API as RFC 3339
//! UTC with milliseconds, the format of docs/api.md.

use serde::{Serialize, Serializer};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A monotonic reading and the wall-clock time, in epoch microseconds, it was taken at.
struct Anchor {
    instant: Instant,
    wall_us: AtomicI64,
}

fn anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| Anchor {
        instant: Instant::now(),
        wall_us: AtomicI64::new(now_us()),
    })
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, micros)
}

fn micros(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// A point in time as epoch milliseconds that serializes as `2025-01-15T10:30:00.000Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(now_ms())
    }

    /// The wall-clock time of a monotonic reading already taken, so that a request's parts
    /// need not read the clock again (`http::request_scope`). Exact to the microsecond against
    /// the last `reanchor`; a step of the system clock, or a suspend (during which the
    /// monotonic clock stands still), is followed at the next one: the server's usage flush
    /// renews the anchor every `HEFFL_USAGE_FLUSH_INTERVAL`.
    pub fn at(instant: Instant) -> Self {
        let anchor = anchor();
        let wall_us = anchor.wall_us.load(Ordering::Relaxed);
        let offset_us = match instant.checked_duration_since(anchor.instant) {
            Some(after) => micros(after),
            None => -micros(anchor.instant.duration_since(instant)),
        };
        Timestamp((wall_us + offset_us).div_euclid(1000))
    }

    /// Matches `at` to the system clock again (the usage flush calls it on each interval).
    pub fn reanchor() {
        let anchor = anchor();
        let now = Instant::now();
        let wall_us = now_us() - micros(now.duration_since(anchor.instant));
        anchor.wall_us.store(wall_us, Ordering::Relaxed);
    }

    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::from_timestamp_millis(self.0) {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => String::from("1970-01-01T00:00:00.000Z"),
        }
    }

    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Timestamp(t.timestamp_millis()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

/// Parses `90s`, `15m`, `12h` or `7d` into seconds. The unit is required: a bare `12` could mean
/// seconds or hours, and guessing wrong makes a 12-hour session last 12 seconds.
pub fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 30s, 15m, 12h or 7d"))?;
    let multiplier = match unit {
        "" => {
            return Err(format!(
                "'{text}' needs a unit: {value}s, {value}m, {value}h or {value}d"
            ))
        }
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("'{text}' has an unknown unit; use s, m, h or d")),
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_reading_becomes_the_wall_clock_time_it_was_taken_at() {
        Timestamp::reanchor();
        let before = now_ms();
        let reading = Instant::now();
        let after = now_ms();
        let at = Timestamp::at(reading).0;
        // The anchor's two readings are a few nanoseconds apart, which can cross a millisecond.
        assert!(
            before - 1 <= at && at <= after + 1,
            "{before} <= {at} <= {after}"
        );
        let earlier = Timestamp::at(reading - Duration::from_millis(1500)).0;
        assert_eq!(
            at - earlier,
            1500,
            "whole milliseconds either side of the anchor"
        );
        let later = Timestamp::at(reading + Duration::from_secs(3600)).0;
        assert_eq!(later - at, 3_600_000);
    }

    #[test]
    fn formats_with_milliseconds_and_z() {
        assert_eq!(
            Timestamp(1_736_937_000_000).to_rfc3339(),
            "2025-01-15T10:30:00.000Z"
        );
        assert_eq!(Timestamp(5).to_rfc3339(), "1970-01-01T00:00:00.005Z");
    }

    #[test]
    fn parses_rfc3339_with_offset() {
        let t = Timestamp::parse_rfc3339("2025-01-15T12:30:00.000+02:00");
        assert_eq!(t, Some(Timestamp(1_736_937_000_000)));
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("12h"), Ok(43_200));
        assert_eq!(parse_duration_secs("90s"), Ok(90));
        assert_eq!(
            parse_duration_secs("12"),
            Err("'12' needs a unit: 12s, 12m, 12h or 12d".to_owned())
        );
        assert_eq!(parse_duration_secs("15m"), Ok(900));
        assert_eq!(parse_duration_secs("2d"), Ok(172_800));
        assert!(parse_duration_secs("h").is_err());
        assert!(parse_duration_secs("5 weeks").is_err());
        assert!(parse_duration_secs("99999999999999999999d").is_err());
    }
}
