//! The counts behind key usage (docs/api.md §11): what became of a request that presented a key, the
//! four counters of an hourly bucket, and one key's counts between two flushes. The recorder
//! (`UsageRecorder`) gathers them, the store writes them, `usage_series` reads them back.

use super::time::Timestamp;
use crate::error::Reason;
use axum::http::StatusCode;

pub const HOUR_MS: i64 = 3_600_000;

/// What became of one request that presented a key (docs/api.md §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response below 400.
    Success,
    /// A 4xx other than 429, after the key was verified.
    ClientError,
    /// A 429 for this key.
    RateLimited,
    /// A 401 because the key was revoked or expired: someone still uses a dead key.
    Rejected,
}

impl Outcome {
    /// The outcome of a response to a request whose key was verified. Server errors (5xx) are
    /// ours, not the integrator's use of the key, so they count toward no bucket (and so not
    /// toward `requestCount`), though they still mark the key as used.
    pub fn of_verified(status: StatusCode) -> Option<Outcome> {
        match status.as_u16() {
            0..=399 => Some(Outcome::Success),
            429 => Some(Outcome::RateLimited),
            400..=499 => Some(Outcome::ClientError),
            _ => None,
        }
    }
}

/// The four counters of one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub success: i64,
    pub client_error: i64,
    pub rate_limited: i64,
    pub rejected: i64,
}

impl Counts {
    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Success => self.success += 1,
            Outcome::ClientError => self.client_error += 1,
            Outcome::RateLimited => self.rate_limited += 1,
            Outcome::Rejected => self.rejected += 1,
        }
    }

    pub fn merge(&mut self, other: Counts) {
        self.success += other.success;
        self.client_error += other.client_error;
        self.rate_limited += other.rate_limited;
        self.rejected += other.rejected;
    }

    /// What `requestCount` counts: everything but the rejected attempts.
    pub fn requests(&self) -> i64 {
        self.success + self.client_error + self.rate_limited
    }

    pub fn total(&self) -> i64 {
        self.requests() + self.rejected
    }
}

/// The start of the UTC hour `at` falls in.
pub fn hour_start(at: Timestamp) -> i64 {
    at.0.div_euclid(HOUR_MS) * HOUR_MS
}

/// One key's gathered usage since the last flush.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUsage {
    /// `None` when the key was only presented after it stopped working.
    pub last_used_at: Option<Timestamp>,
    /// (hour start, counts); a flush interval rarely spans more than two hours.
    pub hours: Vec<(i64, Counts)>,
    /// (hour start, why, how many): refused requests by the rule that refused them.
    pub refusals: Vec<(i64, Reason, i64)>,
}

impl KeyUsage {
    /// One request; `refusal` is the reason of an error answer that has one.
    pub fn add(&mut self, outcome: Option<Outcome>, refusal: Option<Reason>, at: Timestamp) {
        if outcome != Some(Outcome::Rejected) {
            self.last_used_at = self.last_used_at.max(Some(at));
        }
        if let Some(outcome) = outcome {
            self.counts_at(hour_start(at)).add(outcome);
        }
        if let Some(reason) = refusal {
            self.add_refusals(hour_start(at), reason, 1);
        }
    }

    fn add_refusals(&mut self, hour: i64, reason: Reason, requests: i64) {
        match self
            .refusals
            .iter_mut()
            .find(|(h, r, _)| *h == hour && *r == reason)
        {
            Some((_, _, count)) => *count += requests,
            None => self.refusals.push((hour, reason, requests)),
        }
    }

    fn counts_at(&mut self, hour: i64) -> &mut Counts {
        let index = match self.hours.iter().position(|(h, _)| *h == hour) {
            Some(index) => index,
            None => {
                self.hours.push((hour, Counts::default()));
                self.hours.len() - 1
            }
        };
        &mut self.hours[index].1
    }

    pub fn merge(&mut self, other: KeyUsage) {
        self.last_used_at = self.last_used_at.max(other.last_used_at);
        for (hour, counts) in other.hours {
            self.counts_at(hour).merge(counts);
        }
        for (hour, reason, requests) in other.refusals {
            self.add_refusals(hour, reason, requests);
        }
    }

    /// The `requestCount` to add to the key.
    pub fn requests(&self) -> i64 {
        self.hours.iter().map(|(_, c)| c.requests()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses_per_spec() {
        let cases = [
            (200, Some(Outcome::Success)),
            (201, Some(Outcome::Success)),
            (204, Some(Outcome::Success)),
            (304, Some(Outcome::Success)),
            (400, Some(Outcome::ClientError)),
            (403, Some(Outcome::ClientError)),
            (404, Some(Outcome::ClientError)),
            (413, Some(Outcome::ClientError)),
            (415, Some(Outcome::ClientError)),
            (429, Some(Outcome::RateLimited)),
            (500, None),
            (503, None),
        ];
        for (status, expected) in cases {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(Outcome::of_verified(status), expected, "{status}");
        }
    }

    #[test]
    fn merging_back_after_a_failed_flush_loses_nothing() {
        let mut first = KeyUsage::default();
        first.add(Some(Outcome::Success), None, Timestamp(5));
        first.add(
            Some(Outcome::RateLimited),
            Some(Reason::RateLimited),
            Timestamp(6),
        );
        let mut second = KeyUsage::default();
        second.add(Some(Outcome::Success), None, Timestamp(9));
        second.add(
            Some(Outcome::RateLimited),
            Some(Reason::RateLimited),
            Timestamp(10),
        );
        second.add(
            Some(Outcome::Rejected),
            Some(Reason::RevokedApiKey),
            Timestamp(HOUR_MS + 1),
        );
        first.merge(second);
        assert_eq!(
            first.refusals,
            [
                (0, Reason::RateLimited, 2),
                (HOUR_MS, Reason::RevokedApiKey, 1)
            ]
        );
        assert_eq!(first.last_used_at, Some(Timestamp(10)));
        assert_eq!(first.hours[0].1.success, 2);
        assert_eq!(first.hours[0].1.rate_limited, 2);
        assert_eq!(
            first.hours[1],
            (
                HOUR_MS,
                Counts {
                    rejected: 1,
                    ..Counts::default()
                }
            )
        );
    }

    #[test]
    fn hours_start_on_the_hour() {
        assert_eq!(hour_start(Timestamp(HOUR_MS * 3 + 59_999)), HOUR_MS * 3);
        assert_eq!(hour_start(Timestamp(HOUR_MS * 3)), HOUR_MS * 3);
    }
}
