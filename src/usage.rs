//! Key usage (`lastUsedAt`, request counts) gathered in memory and written in one batched
//! statement per flush interval, instead of a database write on every request.

use crate::store::Store;
use crate::time::Timestamp;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub requests: i64,
    pub last_used_at: Timestamp,
}

#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<String, Usage>>,
}

impl UsageRecorder {
    pub fn record(&self, key_id: &str, at: Timestamp) {
        let mut pending = match self.pending.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        match pending.get_mut(key_id) {
            Some(usage) => {
                usage.requests += 1;
                usage.last_used_at = usage.last_used_at.max(at);
            }
            None => {
                pending.insert(
                    key_id.to_owned(),
                    Usage {
                        requests: 1,
                        last_used_at: at,
                    },
                );
            }
        }
    }

    fn take(&self) -> HashMap<String, Usage> {
        let mut pending = match self.pending.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::take(&mut *pending)
    }

    /// Writes what was gathered. On failure the counts are put back for the next flush, so a
    /// database outage delays usage figures without losing them.
    pub async fn flush(&self, store: &Store) -> Result<usize, sqlx::Error> {
        let batch = self.take();
        if batch.is_empty() {
            return Ok(0);
        }
        let rows: Vec<(String, Usage)> = batch.into_iter().collect();
        match store.add_key_usage(&rows).await {
            Ok(()) => Ok(rows.len()),
            Err(err) => {
                let mut pending = match self.pending.lock() {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
                for (key_id, usage) in rows {
                    let entry = pending.entry(key_id).or_insert(Usage {
                        requests: 0,
                        last_used_at: usage.last_used_at,
                    });
                    entry.requests += usage.requests;
                    entry.last_used_at = entry.last_used_at.max(usage.last_used_at);
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
    fn aggregates_per_key() {
        let recorder = UsageRecorder::default();
        recorder.record("key_a", Timestamp(10));
        recorder.record("key_a", Timestamp(30));
        recorder.record("key_a", Timestamp(20));
        recorder.record("key_b", Timestamp(5));
        let batch = recorder.take();
        assert_eq!(
            batch.get("key_a"),
            Some(&Usage {
                requests: 3,
                last_used_at: Timestamp(30)
            })
        );
        assert_eq!(batch.get("key_b").map(|u| u.requests), Some(1));
        assert!(recorder.take().is_empty());
    }
}
