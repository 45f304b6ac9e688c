//! Key verification: the in-process cache (`cache`), the lookup behind it (`lookup`, read
//! through the cache in `key_events`), the change feed that keeps the cache in step with other
//! processes (`change_feed`), and the writes that make cached answers stale (`writes`), each
//! through a `KeyTx` (`tx`): the event in the transaction and the cache drop after its commit go
//! together, or not at all.
//!
//! `verify` depends on `store`, never the reverse: the store writes rows and knows nothing of
//! the cache.

mod cache;
pub mod change_feed;
mod key_events;
mod lookup;
mod tx;
mod writes;

pub use cache::*;
pub use key_events::NOTIFY_CHANNEL;
pub use lookup::KeyPrincipalRow;
pub use tx::KeyTx;

use crate::known_keys::KnownKeys;
use crate::store::Store;
use std::ops::Deref;
use std::sync::Arc;

/// The store with its verification cache, built together, so that every handle (every clone)
/// shares one cache. Reads of the store go through `Deref`; the writes that can make a cached
/// verification stale exist only here (`writes`).
#[derive(Clone)]
pub struct Verifier {
    store: Store,
    key_cache: Arc<KeyCache>,
    known_keys: Arc<KnownKeys>,
}

impl Verifier {
    pub fn new(store: Store, cache: KeyCache) -> Verifier {
        Verifier {
            store,
            key_cache: Arc::new(cache),
            known_keys: Arc::default(),
        }
    }

    /// For the operator CLI: no cache to serve from, but its changes are still logged for the
    /// servers' caches.
    pub fn without_cache(store: Store) -> Verifier {
        Verifier::new(store, KeyCache::disabled())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Deref for Verifier {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}
