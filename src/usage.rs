//! Key usage (`lastUsedAt`, request counts, hourly buckets by outcome) gathered in memory and
//! written in one batched transaction per flush interval, instead of a database write on every
//! request. The counts themselves are `domain::usage_counts`; the series the dashboard reads
//! (docs/api.md §11) are built from the stored buckets in `domain::usage_series`.

use crate::domain::ids::KeyId;
use crate::domain::time::Timestamp;
use crate::domain::usage_counts::{KeyUsage, Outcome};
use crate::error::Reason;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::Mutex;

/// Key ids are ours (only a verified key is recorded), so the map needs no defence against
/// chosen collisions and takes a cheaper hash than SipHash, which it pays on every request.
type Pending = HashMap<KeyId, KeyUsage, foldhash::fast::RandomState>;

#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<Pending>,
}

impl UsageRecorder {
    /// Notes one request with the key; `None` for an outcome no bucket counts (a 5xx), and the
    /// reason of a refusal that has one.
    pub fn record(
        &self,
        key_id: &KeyId,
        outcome: Option<Outcome>,
        refusal: Option<Reason>,
        at: Timestamp,
    ) {
        let mut pending = self.lock();
        match pending.get_mut(key_id) {
            Some(usage) => usage.add(outcome, refusal, at),
            None => {
                let mut usage = KeyUsage::default();
                usage.add(outcome, refusal, at);
                pending.insert(key_id.clone(), usage);
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
        let _timer = crate::store::QueryTimer::start("usage_flush");
        let batch = self.take();
        if batch.is_empty() {
            return Ok(0);
        }
        let rows: Vec<(KeyId, KeyUsage)> = batch.into_iter().collect();
        match store.usage().add(&rows).await {
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
    use crate::domain::usage_counts::{Counts, HOUR_MS};

    fn id(text: &str) -> KeyId {
        KeyId::from(text.to_owned())
    }

    #[test]
    fn aggregates_per_key_and_hour() {
        let recorder = UsageRecorder::default();
        let h0 = 10 * HOUR_MS;
        recorder.record(
            &id("key_a"),
            Some(Outcome::Success),
            None,
            Timestamp(h0 + 10),
        );
        recorder.record(
            &id("key_a"),
            Some(Outcome::ClientError),
            None,
            Timestamp(h0 + 30),
        );
        recorder.record(
            &id("key_a"),
            Some(Outcome::RateLimited),
            Some(crate::error::Reason::RateLimited),
            Timestamp(h0 + 20),
        );
        recorder.record(
            &id("key_a"),
            Some(Outcome::Success),
            None,
            Timestamp(h0 + HOUR_MS),
        );
        recorder.record(
            &id("key_b"),
            Some(Outcome::Rejected),
            None,
            Timestamp(h0 + 5),
        );
        recorder.record(&id("key_c"), None, None, Timestamp(h0 + 7));
        let batch = recorder.take();
        let a = &batch[&id("key_a")];
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
        let b = &batch[&id("key_b")];
        assert_eq!(b.last_used_at, None);
        assert_eq!(b.requests(), 0);
        assert_eq!(b.hours[0].1.rejected, 1);
        // A server error marks the key used and counts nowhere.
        let c = &batch[&id("key_c")];
        assert_eq!(c.last_used_at, Some(Timestamp(h0 + 7)));
        assert!(c.hours.is_empty());
        assert!(recorder.take().is_empty());
    }
}
