//! The one transaction that writes which can make a cached key verification stale accept.
//! Revoking, rolling, editing and creating keys, changing or removing members, disabling or
//! deleting users, renaming or deleting workspaces: their row functions take a `KeyTx`, never a
//! plain transaction, so they cannot be called outside one. A `KeyTx` is opened only together
//! with the cache it reports to (`Store::begin_key_tx`), and `commit` is the only way to commit
//! it, so logging a change, committing it and dropping this process's stale cache entries go
//! together or not at all. Other processes learn of the change from the `key_events` log.

use super::{Backend, Store, Tx};
use crate::domain::key_change::Invalidation;
use crate::domain::time::Timestamp;
use std::ops::{Deref, DerefMut};

/// The PostgreSQL channel a committed change is announced on.
pub const NOTIFY_CHANNEL: &str = "heffl_key_events";

/// Where a committed change goes in this process: the key cache (`Verifier`).
pub trait AppliesKeyChanges: Sync {
    fn apply_change(&self, change: &Invalidation);
}

/// A store transaction that carries key changes. `invalidate` logs a change in the transaction;
/// `commit` commits and then applies the changes to the cache it was opened with. Dropped
/// without `commit`, it rolls back, and there is nothing to apply. Row functions read and write
/// through it as the `Tx` it wraps.
#[must_use = "a transaction rolls back unless committed"]
pub struct KeyTx<'c> {
    tx: Tx<'static>,
    backend: Backend,
    cache: &'c dyn AppliesKeyChanges,
    changes: Vec<Invalidation>,
}

impl Store {
    pub async fn begin_key_tx<'c>(
        &self,
        cache: &'c dyn AppliesKeyChanges,
    ) -> Result<KeyTx<'c>, sqlx::Error> {
        Ok(KeyTx {
            tx: self.begin().await?,
            backend: self.backend,
            cache,
            changes: Vec::new(),
        })
    }
}

impl KeyTx<'_> {
    /// Logs `change` in this transaction, to be applied to this process's cache at `commit`.
    pub async fn invalidate(&mut self, change: Invalidation) -> Result<(), sqlx::Error> {
        let subject = change.encode();
        sqlx::query("INSERT INTO key_events (subject, at) VALUES ($1, $2)")
            .bind(&subject)
            .bind(Timestamp::now())
            .execute(&mut *self.tx)
            .await?;
        if self.backend == Backend::Postgres {
            // Delivered to listeners only if and when the transaction commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(&subject)
                .execute(&mut *self.tx)
                .await?;
        }
        self.changes.push(change);
        Ok(())
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        for change in &self.changes {
            self.cache.apply_change(change);
        }
        Ok(())
    }
}

impl Deref for KeyTx<'_> {
    type Target = Tx<'static>;

    fn deref(&self) -> &Tx<'static> {
        &self.tx
    }
}

impl DerefMut for KeyTx<'_> {
    fn deref_mut(&mut self) -> &mut Tx<'static> {
        &mut self.tx
    }
}
