//! Key usage (`lastUsedAt`, request counts, hourly buckets by outcome) gathered in memory and
//! written in one batched transaction per flush interval, instead of a database write on every
//! request. The series the dashboard reads (SPEC §11) are built from those buckets in
//! `usage_series`.

use crate::domain::time::Timestamp;
use crate::store::Store;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::sync::Mutex;

pub const HOUR_MS: i64 = 3_600_000;

/// What became of one request that presented a key (SPEC §11).
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
}

impl KeyUsage {
    fn add(&mut self, outcome: Option<Outcome>, at: Timestamp) {
        if outcome != Some(Outcome::Rejected) {
            self.last_used_at = self.last_used_at.max(Some(at));
        }
        if let Some(outcome) = outcome {
            self.counts_at(hour_start(at)).add(outcome);
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

    fn merge(&mut self, other: KeyUsage) {
        self.last_used_at = self.last_used_at.max(other.last_used_at);
        for (hour, counts) in other.hours {
            self.counts_at(hour).merge(counts);
        }
    }

    /// The `requestCount` to add to the key.
    pub fn requests(&self) -> i64 {
        self.hours.iter().map(|(_, c)| c.requests()).sum()
    }
}

/// Key ids are ours (only a verified key is recorded), so the map needs no defence against
/// chosen collisions and takes a cheaper hash than SipHash, which it pays on every request.
type Pending = HashMap<String, KeyUsage, foldhash::fast::RandomState>;

#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<Pending>,
}

impl UsageRecorder {
    /// Notes one request with the key; `None` for an outcome no bucket counts (a 5xx).
    pub fn record(&self, key_id: &str, outcome: Option<Outcome>, at: Timestamp) {
        let mut pending = self.lock();
        match pending.get_mut(key_id) {
            Some(usage) => usage.add(outcome, at),
            None => {
                let mut usage = KeyUsage::default();
                usage.add(outcome, at);
                pending.insert(key_id.to_owned(), usage);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        match self.pending.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.lock())
    }

    /// Writes what was gathered, in one transaction. On failure the counts are put back for
    /// the next flush, so a database outage delays usage figures without losing or doubling
    /// them.
    pub async fn flush(&self, store: &Store) -> Result<usize, sqlx::Error> {
        let batch = self.take();
        if batch.is_empty() {
            return Ok(0);
        }
        let rows: Vec<(String, KeyUsage)> = batch.into_iter().collect();
        match store.add_key_usage(&rows).await {
            Ok(()) => Ok(rows.len()),
            Err(err) => {
                let mut pending = self.lock();
                for (key_id, usage) in rows {
                    pending.entry(key_id).or_default().merge(usage);
                }
                Err(err)
            }
        }
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
    fn aggregates_per_key_and_hour() {
        let recorder = UsageRecorder::default();
        let h0 = 10 * HOUR_MS;
        recorder.record("key_a", Some(Outcome::Success), Timestamp(h0 + 10));
        recorder.record("key_a", Some(Outcome::ClientError), Timestamp(h0 + 30));
        recorder.record("key_a", Some(Outcome::RateLimited), Timestamp(h0 + 20));
        recorder.record("key_a", Some(Outcome::Success), Timestamp(h0 + HOUR_MS));
        recorder.record("key_b", Some(Outcome::Rejected), Timestamp(h0 + 5));
        recorder.record("key_c", None, Timestamp(h0 + 7));
        let batch = recorder.take();
        let a = &batch["key_a"];
        assert_eq!(a.last_used_at, Some(Timestamp(h0 + HOUR_MS)));
        assert_eq!(a.requests(), 4);
        assert_eq!(
            a.hours,
            vec![
                (
                    h0,
                    Counts {
                        success: 1,
                        client_error: 1,
                        rate_limited: 1,
                        rejected: 0
                    }
                ),
                (
                    h0 + HOUR_MS,
                    Counts {
                        success: 1,
                        ..Counts::default()
                    }
                ),
            ]
        );
        // A dead key's attempts are counted but do not make it "used".
        let b = &batch["key_b"];
        assert_eq!(b.last_used_at, None);
        assert_eq!(b.requests(), 0);
        assert_eq!(b.hours[0].1.rejected, 1);
        // A server error marks the key used and counts nowhere.
        let c = &batch["key_c"];
        assert_eq!(c.last_used_at, Some(Timestamp(h0 + 7)));
        assert!(c.hours.is_empty());
        assert!(recorder.take().is_empty());
    }

    #[test]
    fn merging_back_after_a_failed_flush_loses_nothing() {
        let mut first = KeyUsage::default();
        first.add(Some(Outcome::Success), Timestamp(5));
        let mut second = KeyUsage::default();
        second.add(Some(Outcome::Success), Timestamp(9));
        second.add(Some(Outcome::Rejected), Timestamp(HOUR_MS + 1));
        first.merge(second);
        assert_eq!(first.last_used_at, Some(Timestamp(9)));
        assert_eq!(first.hours[0].1.success, 2);
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
