//! Times are stored as Unix epoch milliseconds (BIGINT) in both databases: one portable
//! representation, index-friendly, with no time-zone ambiguity. They leave the API as RFC 3339
//! UTC with milliseconds, the SPEC's format.

use serde::{Serialize, Serializer};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A point in time as epoch milliseconds that serializes as `2025-01-15T10:30:00.000Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(now_ms())
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
