//! The usage series of docs/api.md §11, as pure functions: which periods a query covers, and the
//! stored hourly buckets folded into one bucket per period, empty periods included.

use super::usage_counts::{Counts, HOUR_MS};
use crate::domain::time::Timestamp;
use serde::Serialize;

pub const DAY_MS: i64 = 24 * HOUR_MS;
pub const MAX_DAYS: i64 = 90;
pub const MAX_HOURLY_DAYS: i64 = 7;
pub const DEFAULT_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Day,
    Hour,
}

impl Granularity {
    fn period_ms(self) -> i64 {
        match self {
            Granularity::Day => DAY_MS,
            Granularity::Hour => HOUR_MS,
        }
    }
}

/// A rule of the query that the request broke: (field, message).
pub type QueryIssue = (&'static str, String);

/// Reads `days` and `granularity` (defaults 30 and `day`).
pub fn parse_query(
    days: Option<&str>,
    granularity: Option<&str>,
) -> Result<(i64, Granularity), Vec<QueryIssue>> {
    let mut issues = Vec::new();
    let granularity = match granularity {
        None | Some("day") => Some(Granularity::Day),
        Some("hour") => Some(Granularity::Hour),
        Some(_) => {
            issues.push(("granularity", "must be day or hour".to_owned()));
            None
        }
    };
    let days = match days.map(|d| d.trim().parse::<i64>()) {
        None => Some(DEFAULT_DAYS),
        Some(Ok(days)) if (1..=MAX_DAYS).contains(&days) => Some(days),
        Some(_) => {
            issues.push((
                "days",
                format!("must be a whole number of days from 1 to {MAX_DAYS}"),
            ));
            None
        }
    };
    if let (Some(days), Some(Granularity::Hour)) = (days, granularity) {
        if days > MAX_HOURLY_DAYS {
            issues.push((
                "days",
                format!("must be at most {MAX_HOURLY_DAYS} with granularity=hour"),
            ));
        }
    }
    match (days, granularity) {
        (Some(days), Some(granularity)) if issues.is_empty() => Ok((days, granularity)),
        _ => Err(issues),
    }
}

/// The periods a query covers: `count` periods of `granularity`, the last one holding `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub granularity: Granularity,
    /// The start of the first period.
    pub from: Timestamp,
    /// The end (exclusive) of the last period.
    pub to: Timestamp,
}

impl Window {
    pub fn ending_at(now: Timestamp, days: i64, granularity: Granularity) -> Window {
        let period = granularity.period_ms();
        let count = match granularity {
            Granularity::Day => days,
            Granularity::Hour => days * 24,
        };
        let current = now.0.div_euclid(period) * period;
        Window {
            granularity,
            from: Timestamp(current - (count - 1) * period),
            to: Timestamp(current + period),
        }
    }

    fn count(&self) -> usize {
        usize::try_from((self.to.0 - self.from.0) / self.granularity.period_ms()).unwrap_or(0)
    }

    /// One bucket per period, oldest first, from hourly `(hour start, counts)` rows; rows
    /// outside the window are ignored.
    pub fn buckets(&self, hourly: &[(i64, Counts)]) -> Vec<Bucket> {
        let period = self.granularity.period_ms();
        let mut buckets: Vec<Bucket> = (0..self.count())
            .map(|i| Bucket::empty(Timestamp(self.from.0 + i as i64 * period)))
            .collect();
        for (hour, counts) in hourly {
            if *hour < self.from.0 || *hour >= self.to.0 {
                continue;
            }
            let index = usize::try_from((hour - self.from.0) / period).unwrap_or(usize::MAX);
            if let Some(bucket) = buckets.get_mut(index) {
                bucket.add(*counts);
            }
        }
        buckets
    }
}

/// One period's counters (docs/api.md §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = UsageBucket)]
pub struct Bucket {
    /// The start of the UTC day or hour.
    pub start: Timestamp,
    /// Responses below 400.
    pub success: i64,
    /// 4xx other than 429, after the key was verified.
    pub client_error: i64,
    /// 429 for this key.
    pub rate_limited: i64,
    /// 401 because the key was revoked or expired.
    pub rejected: i64,
}

impl Bucket {
    fn empty(start: Timestamp) -> Bucket {
        Bucket {
            start,
            success: 0,
            client_error: 0,
            rate_limited: 0,
            rejected: 0,
        }
    }

    fn add(&mut self, counts: Counts) {
        self.success += counts.success;
        self.client_error += counts.client_error;
        self.rate_limited += counts.rate_limited;
        self.rejected += counts.rejected;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn seven_days_end_today() {
        let window = Window::ending_at(at("2025-01-15T10:30:00Z"), 7, Granularity::Day);
        assert_eq!(window.from, at("2025-01-09T00:00:00Z"));
        assert_eq!(window.to, at("2025-01-16T00:00:00Z"));
        let buckets = window.buckets(&[]);
        assert_eq!(buckets.len(), 7);
        assert_eq!(buckets[6].start, at("2025-01-15T00:00:00Z"));
        assert!(buckets.iter().all(|b| *b == Bucket::empty(b.start)));
    }

    #[test]
    fn one_day_by_hour_ends_with_this_hour() {
        let window = Window::ending_at(at("2025-01-15T10:30:00Z"), 1, Granularity::Hour);
        let buckets = window.buckets(&[]);
        assert_eq!(buckets.len(), 24);
        assert_eq!(buckets[0].start, at("2025-01-14T11:00:00Z"));
        assert_eq!(buckets[23].start, at("2025-01-15T10:00:00Z"));
    }

    #[test]
    fn hours_fold_into_their_day() {
        let window = Window::ending_at(at("2025-01-15T10:30:00Z"), 2, Granularity::Day);
        let one = |n| Counts {
            success: n,
            rejected: 1,
            ..Counts::default()
        };
        let rows = [
            (at("2025-01-13T23:00:00Z").0, one(100)), // before the window
            (at("2025-01-14T00:00:00Z").0, one(1)),
            (at("2025-01-14T23:00:00Z").0, one(2)),
            (at("2025-01-15T10:00:00Z").0, one(4)),
        ];
        let buckets = window.buckets(&rows);
        assert_eq!(buckets[0].success, 3);
        assert_eq!(buckets[0].rejected, 2);
        assert_eq!(buckets[1].success, 4);
        let json = serde_json::to_value(buckets[1]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"start": "2025-01-15T00:00:00.000Z", "success": 4,
                "clientError": 0, "rateLimited": 0, "rejected": 1})
        );
    }

    #[test]
    fn query_bounds() {
        assert_eq!(parse_query(None, None), Ok((30, Granularity::Day)));
        assert_eq!(
            parse_query(Some("7"), Some("hour")),
            Ok((7, Granularity::Hour))
        );
        assert_eq!(
            parse_query(Some("90"), Some("day")),
            Ok((90, Granularity::Day))
        );
        for (days, granularity, field) in [
            (Some("0"), None, "days"),
            (Some("91"), None, "days"),
            (Some("x"), None, "days"),
            (Some("1.5"), None, "days"),
            (Some("8"), Some("hour"), "days"),
            (None, Some("hour"), "days"),
            (Some("3"), Some("week"), "granularity"),
        ] {
            let issues = parse_query(days, granularity).unwrap_err();
            assert_eq!(issues[0].0, field, "{days:?} {granularity:?}");
        }
    }

    proptest! {
        #[test]
        fn every_row_in_the_window_is_counted_once(
            now in 0i64..4_000_000_000_000,
            days in 1i64..=7,
            hourly in any::<bool>(),
            offsets in proptest::collection::vec((0i64..24 * 8, 0i64..1000), 0..50),
        ) {
            let granularity = if hourly { Granularity::Hour } else { Granularity::Day };
            let window = Window::ending_at(Timestamp(now), days, granularity);
            let current_hour = now.div_euclid(HOUR_MS) * HOUR_MS;
            let rows: Vec<(i64, Counts)> = offsets
                .iter()
                .map(|(back, n)| (current_hour - back * HOUR_MS, Counts { success: *n, ..Counts::default() }))
                .collect();
            let buckets = window.buckets(&rows);
            let expected_len = if hourly { days * 24 } else { days };
            prop_assert_eq!(buckets.len() as i64, expected_len);
            prop_assert!(buckets.windows(2).all(|w| w[0].start < w[1].start));
            let inside: i64 = rows
                .iter()
                .filter(|(h, _)| *h >= window.from.0 && *h < window.to.0)
                .map(|(_, c)| c.success)
                .sum();
            prop_assert_eq!(buckets.iter().map(|b| b.success).sum::<i64>(), inside);
            prop_assert!(buckets.last().unwrap().start.0 <= now && now < window.to.0);
        }
    }
}
