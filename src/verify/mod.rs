//! Key verification: the in-process cache (`cache`), the lookup behind it (`lookup`, read
//! through the cache in `key_events`), the change feed that keeps the cache in step with other
//! processes (`change_feed`), and the writes that make cached answers stale (`writes`), each
//! through a `store::KeyTx`: the event in the transaction and the cache drop after its commit go
//! together, or not at all. And what a verified key spends: this instance's leases of keys'
//! credits (`credits`).
//!
//! `verify` depends on `store`, never the reverse: the store writes rows and knows nothing of
//! the cache.

mod cache;
pub mod change_feed;
pub mod credits;
mod key_events;
pub mod known_keys;
mod lookup;
mod lookup_batch;
pub mod memo;
mod writes;

pub use crate::store::NOTIFY_CHANNEL;
pub use cache::*;
pub use lookup::{KeyCredits, KeyPrincipalRow};

use crate::store::Store;
use crate::verify::known_keys::KnownKeys;
use lookup_batch::KeyLookupBatcher;
use std::sync::Arc;

/// The store's key verification: the cache, built with the store so that every handle (every
/// clone) shares one, the lookups that fill it, and the writes that can make a cached
/// verification stale, which exist only here (`writes`). Everything else the store does is
/// asked of the `Store` itself.
#[derive(Clone)]
pub struct Verifier {
    store: Store,
    key_cache: Arc<KeyCache>,
    known_keys: Arc<KnownKeys>,
    /// PostgreSQL only: concurrent misses share one query.
    lookup_batcher: Option<Arc<KeyLookupBatcher>>,
}

impl Verifier {
    pub fn new(store: Store, cache: KeyCache) -> Verifier {
        let lookup_batcher = store.key_lookups().map(|pool| {
            let batches = pool.options().get_max_connections();
            Arc::new(KeyLookupBatcher::new(pool.clone(), batches))
        });
        Verifier {
            store,
            key_cache: Arc::new(cache),
            known_keys: Arc::default(),
            lookup_batcher,
        }
    }

    /// For the operator CLI: no cache to serve from, but its changes are still logged for the
    /// servers' caches.
    pub fn without_cache(store: Store) -> Verifier {
        Verifier::new(store, KeyCache::disabled())
    }

    fn lookup_batcher(&self) -> Option<&KeyLookupBatcher> {
        self.lookup_batcher.as_deref()
    }

    /// PostgreSQL: the database queries made for cache misses so far, each of which may have
    /// answered several (`None` on SQLite, where each miss is a query of its own).
    pub fn key_lookup_queries(&self) -> Option<u64> {
        self.lookup_batcher().map(KeyLookupBatcher::queries)
    }
}

impl Verifier {
    /// The store this verifies against, for reads and for writes that leave keys alone.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// The error of a lookup shared by several requests (a flight, a batch), for one of them:
/// `sqlx::Error` cannot be cloned, so each gets one that keeps its meaning for `ApiError`
/// (the database unavailable, a 503, or not).
fn shared_error(err: &sqlx::Error) -> sqlx::Error {
    if crate::error::is_unavailable(err) {
        sqlx::Error::PoolTimedOut
    } else {
        sqlx::Error::Protocol(format!("shared key lookup failed: {err}"))
    }
}
