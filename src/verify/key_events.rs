//! The `key_events` log behind the change feed, and the read-through lookup. Every change that
//! can make a cached verification stale is logged in the transaction that makes it
//! (`store::KeyTx`), announced with NOTIFY on PostgreSQL, and dropped from this process's cache
//! right after commit.

use super::{Flight, Invalidation, KeyCache, Lookup, Verifier};
use crate::domain::time::Timestamp;
use crate::store::{AppliesKeyChanges, KeyTx};
use crate::verify::known_keys::KnownKeys;
use std::sync::Arc;

impl Verifier {
    /// A transaction for writes that can make a cached verification stale.
    pub async fn begin(&self) -> Result<KeyTx<'_>, sqlx::Error> {
        self.store.begin_key_tx(self).await
    }

    pub fn known_keys(&self) -> &Arc<KnownKeys> {
        &self.known_keys
    }

    /// Loads every key's digest into `known_keys` (when the change feed connects).
    pub async fn load_known_keys(&self) -> Result<(), sqlx::Error> {
        let digests: Vec<Vec<u8>> = sqlx::query_scalar("SELECT digest FROM api_keys")
            .fetch_all(self.store.pool())
            .await?;
        self.known_keys.load(digests.iter().map(Vec::as_slice));
        Ok(())
    }

    pub fn key_cache(&self) -> &Arc<KeyCache> {
        &self.key_cache
    }

    /// Resolves a key digest the cache could not answer (`KeyCache::get` first), querying the
    /// database and caching the answer. Concurrent misses on one digest share one query (see
    /// `KeyCache::join_flight`).
    pub async fn resolve_miss(&self, digest: &[u8; 32]) -> Result<Lookup, sqlx::Error> {
        let flight = self.key_cache.join_flight(digest);
        // Landed however this ends, a request cancelled mid-lookup included: a flight nobody
        // lands would stay in the map for good.
        let _landing = Landing {
            cache: &self.key_cache,
            digest,
            flight: &flight,
        };
        let outcome = flight
            .outcome(|| async {
                self.key_cache.count_lookup();
                let lookup = match self.key_principal(digest).await {
                    Ok(Some(row)) => Lookup::Found(Arc::new(row)),
                    Ok(None) => Lookup::Unknown,
                    Err(err) => return Err(Arc::new(err)),
                };
                self.key_cache.insert(*digest, &lookup, flight.epoch);
                Ok(lookup)
            })
            .await;
        match outcome {
            Ok(lookup) => Ok(lookup),
            Err(shared) => {
                Err(Arc::try_unwrap(shared).unwrap_or_else(|shared| super::shared_error(&shared)))
            }
        }
    }

    pub async fn latest_key_event(&self) -> Result<i64, sqlx::Error> {
        let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM key_events")
            .fetch_one(self.store.pool())
            .await?;
        Ok(latest.unwrap_or(0))
    }

    pub async fn key_events_after(&self, seq: i64) -> Result<Vec<(i64, String)>, sqlx::Error> {
        sqlx::query_as("SELECT seq, subject FROM key_events WHERE seq > $1 ORDER BY seq LIMIT 1000")
            .bind(seq)
            .fetch_all(self.store.pool())
            .await
    }

    /// The log only needs to outlive the slowest poller; an hour is plenty.
    pub async fn prune_key_events(&self, older_than: Timestamp) -> Result<u64, sqlx::Error> {
        let result = sqlx::query("DELETE FROM key_events WHERE at < $1")
            .bind(older_than)
            .execute(self.store.pool())
            .await?;
        Ok(result.rows_affected())
    }
}

struct Landing<'a> {
    cache: &'a KeyCache,
    digest: &'a [u8; 32],
    flight: &'a Flight,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        self.cache.land(self.digest, self.flight);
    }
}

/// A committed change, from this process's `KeyTx` or another's through the change feed: drops
/// the cached verifications it made stale, or notes a new key's digest.
impl AppliesKeyChanges for Verifier {
    fn apply_change(&self, change: &Invalidation) {
        match change {
            Invalidation::KeyIssued(digest) => self.known_keys.insert(digest),
            _ => self.key_cache().invalidate(change),
        }
    }
}
