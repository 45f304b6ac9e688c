//! The change feed behind the verification cache (see `key_cache`): every change that can make
//! a cached verification stale is logged in the transaction that makes it, announced with
//! NOTIFY on PostgreSQL, and dropped from this process's cache right after commit.

use super::{Backend, Store, Tx};
use crate::key_cache::{Invalidation, KeyCache, Lookup};
use crate::known_keys::KnownKeys;
use crate::time::Timestamp;
use std::sync::Arc;

pub const NOTIFY_CHANNEL: &str = "heffl_key_events";

impl Store {
    /// Logs the change inside the caller's transaction. Call `forget` after the commit.
    pub(super) async fn log_key_event(
        &self,
        tx: &mut Tx<'_>,
        change: &Invalidation,
    ) -> Result<(), sqlx::Error> {
        let subject = change.encode();
        sqlx::query("INSERT INTO key_events (subject, at) VALUES ($1, $2)")
            .bind(&subject)
            .bind(Timestamp::now())
            .execute(&mut **tx)
            .await?;
        if self.backend() == Backend::Postgres {
            // Delivered to listeners only if and when the transaction commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(&subject)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Applies a committed change to this process: drops the cached verifications it made
    /// stale, or notes a new key's digest.
    pub fn apply_change(&self, change: &Invalidation) {
        match change {
            Invalidation::KeyIssued(digest) => self.known_keys.insert(digest),
            _ => self.key_cache().invalidate(change),
        }
    }

    pub(super) fn forget(&self, change: &Invalidation) {
        self.apply_change(change);
    }

    pub fn known_keys(&self) -> &Arc<KnownKeys> {
        &self.known_keys
    }

    /// Loads every key's digest into `known_keys` (when the change feed connects).
    pub async fn load_known_keys(&self) -> Result<(), sqlx::Error> {
        let digests: Vec<Vec<u8>> = sqlx::query_scalar("SELECT digest FROM api_keys")
            .fetch_all(self.pool())
            .await?;
        self.known_keys.load(digests.iter().map(Vec::as_slice));
        Ok(())
    }

    pub fn key_cache(&self) -> &Arc<KeyCache> {
        &self.key_cache
    }

    /// Resolves a key digest through the cache, querying the database on a miss.
    pub async fn resolve_key(&self, digest: &[u8; 32]) -> Result<(Lookup, bool), sqlx::Error> {
        if let Some(hit) = self.key_cache.get(digest) {
            return Ok((hit, true));
        }
        let epoch = self.key_cache.epoch();
        self.key_cache.count_lookup();
        let lookup = match self.key_principal(digest).await? {
            Some(row) => Lookup::Found(Arc::new(row)),
            None => Lookup::Unknown,
        };
        self.key_cache.insert(*digest, &lookup, epoch);
        Ok((lookup, false))
    }

    pub async fn latest_key_event(&self) -> Result<i64, sqlx::Error> {
        let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM key_events")
            .fetch_one(self.pool())
            .await?;
        Ok(latest.unwrap_or(0))
    }

    pub async fn key_events_after(&self, seq: i64) -> Result<Vec<(i64, String)>, sqlx::Error> {
        sqlx::query_as("SELECT seq, subject FROM key_events WHERE seq > $1 ORDER BY seq LIMIT 1000")
            .bind(seq)
            .fetch_all(self.pool())
            .await
    }

    /// The log only needs to outlive the slowest poller; an hour is plenty.
    pub async fn prune_key_events(&self, older_than: Timestamp) -> Result<u64, sqlx::Error> {
        let result = sqlx::query("DELETE FROM key_events WHERE at < $1")
            .bind(older_than)
            .execute(self.pool())
            .await?;
        Ok(result.rows_affected())
    }
}
