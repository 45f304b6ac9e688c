//! How a change that can make a cached verification stale is written: in a `KeyTx`, so that
//! logging the event and forgetting the cache entries cannot be separated (the row functions
//! it wraps are `pub(crate)` in the store, and `src/verify/writes.rs` is their one caller).

use super::{Invalidation, Verifier};
use crate::store::Tx;
use std::ops::{Deref, DerefMut};

/// A store transaction that carries key events. `invalidate` logs a change in the transaction
/// (other processes learn of it from the log once it commits); `commit`, the only way to commit,
/// drops the matching cache entries of this process right after. Dropped without `commit`, it
/// rolls back, and there is nothing to forget. The store's row-level functions take it as the
/// `Tx` it wraps.
#[must_use = "a transaction rolls back unless committed"]
pub struct KeyTx<'v> {
    tx: Tx<'static>,
    verifier: &'v Verifier,
    changes: Vec<Invalidation>,
}

impl Verifier {
    pub async fn begin(&self) -> Result<KeyTx<'_>, sqlx::Error> {
        Ok(self.key_tx(self.store.begin().await?))
    }

    fn key_tx(&self, tx: Tx<'static>) -> KeyTx<'_> {
        KeyTx {
            tx,
            verifier: self,
            changes: Vec::new(),
        }
    }
}

impl KeyTx<'_> {
    /// Logs `change` in this transaction, to be applied to this process's cache at `commit`.
    pub async fn invalidate(&mut self, change: Invalidation) -> Result<(), sqlx::Error> {
        self.verifier.log_key_event(&mut self.tx, &change).await?;
        self.changes.push(change);
        Ok(())
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        for change in &self.changes {
            self.verifier.apply_change(change);
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
