//! The in-process verification cache: key digest → what the database said about that key.
//!
//! Correctness rules:
//! - A change that can make an entry stale (revoke, role change, removal, disable) drops the
//!   matching entries synchronously in the process that made it, after its commit.
//! - Other processes learn of it through the `key_events` log (LISTEN/NOTIFY on PostgreSQL,
//!   polling on SQLite) within a second; while that feed is down the cache is bypassed, and it
//!   is emptied when the feed comes back, since events may have been missed.
//! - A lookup that raced with an invalidation is not cached (the epoch check), so a stale
//!   answer read just before a revoke cannot be inserted just after it.
//! - A TTL bounds staleness if all else fails.
//! - Concurrent misses on one digest share one database query (`Flight`), so a hot key's expiry
//!   costs one lookup, not one per request in flight. A request joins only a flight that began
//!   after the last invalidation, so it never gets an answer older than a revocation it follows.

pub use crate::domain::key_change::Invalidation;
use crate::verify::KeyPrincipalRow;
use moka::sync::Cache;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// The keys are SHA-256 digests, which no client can steer, so std's SipHash (built to resist
/// chosen keys) buys nothing on every lookup; foldhash is still seeded per process, so which
/// bucket a digest lands in cannot be predicted from outside either.
type DigestHasher = foldhash::fast::RandomState;

/// Whether `change` can make the cached answer `row` stale.
fn makes_stale(change: &Invalidation, row: &KeyPrincipalRow) -> bool {
    match change {
        Invalidation::Key(id) => &row.key_id == id,
        Invalidation::User(id) => &row.user_id == id,
        Invalidation::Workspace(id) => &row.workspace_id == id,
        Invalidation::Member {
            workspace_id,
            user_id,
        } => &row.workspace_id == workspace_id && &row.user_id == user_id,
        Invalidation::KeyIssued(_) => false,
    }
}

/// The database's answer for a digest.
#[derive(Debug, Clone)]
pub enum Lookup {
    Found(Arc<KeyPrincipalRow>),
    Unknown,
}

pub struct KeyCache {
    found: Cache<[u8; 32], Arc<KeyPrincipalRow>, DigestHasher>,
    /// Separate and small, with a short life: remembers fakes so that a repeated fake costs no
    /// query, without letting a flood of distinct fakes evict real keys.
    unknown: Cache<[u8; 32], (), DigestHasher>,
    epoch: AtomicU64,
    live: AtomicBool,
    /// Database lookups made on behalf of this cache's verifications (hits and misses aside):
    /// what the failed-key throttle bounds, readable by tests and operators.
    lookups: AtomicU64,
    flights: Mutex<HashMap<[u8; 32], Flight>>,
}

/// The outcome of one database lookup, shared by every request that waited for it.
pub type FlightResult = Result<Lookup, Arc<sqlx::Error>>;

/// One database lookup of a digest in progress, and the epoch it began in.
#[derive(Clone)]
pub struct Flight {
    pub epoch: u64,
    outcome: Arc<OnceCell<FlightResult>>,
}

impl Flight {
    /// The lookup's result: the first caller runs `lookup`, the others wait for its answer. If
    /// the caller running it is cancelled, a waiting one takes over.
    pub async fn outcome<F, Fut>(&self, lookup: F) -> FlightResult
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = FlightResult>,
    {
        self.outcome.get_or_init(lookup).await.clone()
    }
}

pub const UNKNOWN_TTL: Duration = Duration::from_secs(5);
const UNKNOWN_CAPACITY: u64 = 10_000;

impl KeyCache {
    pub fn new(capacity: u64, ttl: Duration) -> KeyCache {
        KeyCache {
            found: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build_with_hasher(DigestHasher::default()),
            unknown: Cache::builder()
                .max_capacity(UNKNOWN_CAPACITY.min(capacity.max(1)))
                .time_to_live(UNKNOWN_TTL.min(ttl))
                .build_with_hasher(DigestHasher::default()),
            epoch: AtomicU64::new(0),
            live: AtomicBool::new(false),
            lookups: AtomicU64::new(0),
            flights: Mutex::default(),
        }
    }

    /// A cache that never answers: for the CLI, and for capacity 0.
    pub fn disabled() -> KeyCache {
        KeyCache::new(0, Duration::from_secs(1))
    }

    pub fn get(&self, digest: &[u8; 32]) -> Option<Lookup> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        if let Some(row) = self.found.get(digest) {
            return Some(Lookup::Found(row));
        }
        self.unknown.get(digest).map(|()| Lookup::Unknown)
    }

    /// Call before querying the database; pass the value to `insert`.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches a database answer unless an invalidation happened since `epoch_before`.
    pub fn insert(&self, digest: [u8; 32], lookup: &Lookup, epoch_before: u64) {
        if !self.live.load(Ordering::Acquire) || self.epoch() != epoch_before {
            return;
        }
        match lookup {
            Lookup::Found(row) => self.found.insert(digest, Arc::clone(row)),
            Lookup::Unknown => self.unknown.insert(digest, ()),
        }
        // An invalidation may have slipped in between the check and the insert.
        if self.epoch() != epoch_before {
            self.found.invalidate(&digest);
        }
    }

    /// The lookup of `digest` to wait for: one in progress that began in the current epoch, or
    /// a new one. Call `land` with it once it has an outcome.
    pub fn join_flight(&self, digest: &[u8; 32]) -> Flight {
        let epoch = self.epoch();
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        match flights.get(digest) {
            Some(flight) if flight.epoch == epoch => flight.clone(),
            _ => {
                let flight = Flight {
                    epoch,
                    outcome: Arc::default(),
                };
                flights.insert(*digest, flight.clone());
                flight
            }
        }
    }

    /// Forgets a finished flight, so that the next miss asks the database again.
    pub fn land(&self, digest: &[u8; 32], flight: &Flight) {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if flights
            .get(digest)
            .is_some_and(|current| Arc::ptr_eq(&current.outcome, &flight.outcome))
        {
            flights.remove(digest);
        }
    }

    pub fn invalidate(&self, change: &Invalidation) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let change = change.clone();
        if self
            .found
            .invalidate_entries_if(move |_, row| makes_stale(&change, row))
            .is_err()
        {
            self.found.invalidate_all();
        }
    }

    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.found.invalidate_all();
        self.unknown.invalidate_all();
    }

    /// Whether the change feed is connected; the cache answers only while it is.
    pub fn set_live(&self, live: bool) {
        if !live {
            self.clear();
        }
        self.live.store(live, Ordering::Release);
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub fn count_lookup(&self) {
        self.lookups.fetch_add(1, Ordering::Relaxed);
    }

    /// Database lookups of key digests since start-up.
    pub fn lookup_count(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    pub fn entry_count(&self) -> u64 {
        self.found.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, user: &str, workspace: &str) -> Arc<KeyPrincipalRow> {
        Arc::new(KeyPrincipalRow {
            key_id: key.to_owned().into(),
            key_name: "k".into(),
            workspace_id: workspace.to_owned().into(),
            workspace_name: "w".into(),
            user_id: user.to_owned().into(),
            user_email: "u@example.com".into(),
            user_name: "u".into(),
            user_disabled_at: None,
            role: Some(crate::domain::permissions::Role::Owner),
            revoked_at: None,
            expires_at: None,
            scopes: None,
            rate_limit_per_minute: None,
            disabled_at: None,
            allowed_ips: None,
            meta: None,
            external_id: None,
            credits: None,
            memo: Default::default(),
        })
    }

    fn live_cache() -> KeyCache {
        let cache = KeyCache::new(100, Duration::from_secs(60));
        cache.set_live(true);
        cache
    }

    #[test]
    fn invalidation_drops_matching_entries_only() {
        let cache = live_cache();
        let epoch = cache.epoch();
        cache.insert(
            [1; 32],
            &Lookup::Found(row("key_1", "usr_1", "ws_1")),
            epoch,
        );
        cache.insert(
            [2; 32],
            &Lookup::Found(row("key_2", "usr_2", "ws_1")),
            epoch,
        );
        cache.invalidate(&Invalidation::Member {
            workspace_id: "ws_1".to_owned().into(),
            user_id: "usr_1".to_owned().into(),
        });
        assert!(cache.get(&[1; 32]).is_none());
        assert!(matches!(cache.get(&[2; 32]), Some(Lookup::Found(_))));
    }

    #[test]
    fn a_lookup_that_raced_an_invalidation_is_not_cached() {
        let cache = live_cache();
        let epoch = cache.epoch();
        cache.invalidate(&Invalidation::Key("key_1".to_owned().into()));
        cache.insert(
            [1; 32],
            &Lookup::Found(row("key_1", "usr_1", "ws_1")),
            epoch,
        );
        assert!(cache.get(&[1; 32]).is_none());
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_lookup_but_not_across_an_invalidation() {
        let cache = live_cache();
        let first = cache.join_flight(&[1; 32]);
        let second = cache.join_flight(&[1; 32]);
        assert!(Arc::ptr_eq(&first.outcome, &second.outcome));
        let lookups = AtomicU64::new(0);
        let lookup = || async {
            lookups.fetch_add(1, Ordering::SeqCst);
            Ok(Lookup::Unknown)
        };
        assert!(matches!(first.outcome(lookup).await, Ok(Lookup::Unknown)));
        assert!(matches!(second.outcome(lookup).await, Ok(Lookup::Unknown)));
        assert_eq!(lookups.load(Ordering::SeqCst), 1);

        // A request arriving after a revocation must not take an answer read before it.
        let before = cache.join_flight(&[2; 32]);
        cache.invalidate(&Invalidation::Key("key_2".to_owned().into()));
        let after = cache.join_flight(&[2; 32]);
        assert!(!Arc::ptr_eq(&before.outcome, &after.outcome));

        cache.land(&[1; 32], &first);
        let next = cache.join_flight(&[1; 32]);
        assert!(
            !Arc::ptr_eq(&first.outcome, &next.outcome),
            "landed flights are not reused"
        );
    }

    #[test]
    fn not_live_means_no_answers() {
        let cache = live_cache();
        cache.insert([1; 32], &Lookup::Unknown, cache.epoch());
        assert!(matches!(cache.get(&[1; 32]), Some(Lookup::Unknown)));
        cache.set_live(false);
        assert!(cache.get(&[1; 32]).is_none());
        cache.insert([1; 32], &Lookup::Unknown, cache.epoch());
        cache.set_live(true);
        assert!(cache.get(&[1; 32]).is_none());
    }
}
