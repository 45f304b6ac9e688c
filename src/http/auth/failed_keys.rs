//! The failed-key budget of a client address (docs/api.md §9, "one careless client never locks out
//! its neighbours"). Only *distinct unknown* keys count: a revoked or expired key is a real key,
//! answered from the cache, and a malformed one never reaches the database, so neither costs
//! anything; a mistyped key repeated is remembered and answered without a lookup. Once an
//! address has spent its budget, an uncached key is looked up only if `KnownKeys` says it
//! exists, so a scanner costs at most the budget in database lookups a minute, and a valid key
//! from the same address still works.
//!
//! Each unknown key is also counted in a shared `Limiter` (docs/api.md §12): with instances sharing
//! Redis, a scanner that spreads its guesses over them gets the budget once, not once per
//! instance. The local set still answers repeats and counts lookups in flight; an address is
//! over budget when either says so. Without Redis, or while it is down, the limiter counts per
//! instance, which is what the local set alone did.

use crate::limits::bounded::make_room;
use crate::limits::Limiter;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
const SHARDS: usize = 16;

struct Budget {
    started: Instant,
    /// Prefixes of the distinct unknown digests seen in this window (at most the limit).
    unknown: HashSet<u64>,
    /// Lookups in flight, counted against the budget until they are answered.
    pending: u32,
}

impl Budget {
    fn spent(&self) -> u32 {
        u32::try_from(self.unknown.len())
            .unwrap_or(u32::MAX)
            .saturating_add(self.pending)
    }
}

/// What to do with a key digest that the cache could not answer.
pub enum Gate<'a> {
    /// Look it up; report an unknown result through the reservation.
    Lookup(Reservation<'a>),
    /// This address sent this unknown key already this window: it is still unknown.
    Repeat,
    /// The budget is spent; look it up only if it is known to exist.
    OverBudget { retry_after_secs: u64 },
}

/// A lookup counted against an address; released when dropped.
pub struct Reservation<'a> {
    throttle: &'a AuthThrottle,
    address: String,
    limit: u32,
    /// When the lookup was asked for: the window it counts in.
    asked: Instant,
}

impl Reservation<'_> {
    /// The lookup found no such key: it stays counted for the rest of the window, here and in
    /// the shared count.
    pub async fn unknown(self, digest: &[u8; 32]) {
        {
            let mut shard = self.throttle.shard(&self.address);
            if let Some(budget) = shard.budgets.get_mut(&self.address) {
                budget.unknown.insert(prefix(digest));
            }
        }
        // The answer is 401 either way; a refusal leaves the deny entry `gate` reads.
        self.throttle
            .shared
            .check(&self.address, self.limit, self.asked)
            .await;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut shard = self.throttle.shard(&self.address);
        if let Some(budget) = shard.budgets.get_mut(&self.address) {
            budget.pending = budget.pending.saturating_sub(1);
        }
    }
}

fn prefix(digest: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// The budgets of the addresses whose keys hash to one lock.
#[derive(Default)]
struct Shard {
    budgets: HashMap<String, Budget>,
    last_sweep: Option<Instant>,
}

pub struct AuthThrottle {
    shards: Vec<Mutex<Shard>>,
    /// The most addresses one shard keeps (`HEFFL_MAX_TRACKED_ADDRESSES` over the shards).
    shard_capacity: usize,
    hasher: RandomState,
    shared: Limiter,
}

impl AuthThrottle {
    pub fn new(shared: Limiter, max_addresses: usize) -> AuthThrottle {
        AuthThrottle {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_capacity: max_addresses.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            shared,
        }
    }

    fn shard(&self, address: &str) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(address) as usize) % SHARDS;
        match self.shards[index].lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Decides for an uncached `digest` from `address`, with `limit` distinct unknown keys a
    /// minute.
    pub fn gate(&self, address: &str, digest: &[u8; 32], limit: u32, now: Instant) -> Gate<'_> {
        let mut shard = self.shard(address);
        let shard = &mut *shard;
        if !shard.budgets.contains_key(address) && shard.budgets.len() >= self.shard_capacity {
            make_room(
                &mut shard.budgets,
                self.shard_capacity,
                &mut shard.last_sweep,
                now,
                |budget| budget.pending == 0 && now.duration_since(budget.started) >= WINDOW,
            );
        }
        let budget = match shard.budgets.get_mut(address) {
            Some(budget) => budget,
            None => shard.budgets.entry(address.to_owned()).or_insert(Budget {
                started: now,
                unknown: HashSet::new(),
                pending: 0,
            }),
        };
        if now.duration_since(budget.started) >= WINDOW {
            budget.started = now;
            budget.unknown.clear();
            budget.pending = 0;
        }
        if budget.unknown.contains(&prefix(digest)) {
            return Gate::Repeat;
        }
        // Spent elsewhere (the shared count refused this address) or here.
        if let Some(retry_after_secs) = self.shared.exhausted(address, limit, now) {
            return Gate::OverBudget { retry_after_secs };
        }
        if budget.spent() < limit {
            budget.pending += 1;
            return Gate::Lookup(Reservation {
                throttle: self,
                address: address.to_owned(),
                limit,
                asked: now,
            });
        }
        let left = WINDOW.saturating_sub(now.duration_since(budget.started));
        Gate::OverBudget {
            retry_after_secs: left.as_secs_f64().ceil().max(1.0) as u64,
        }
    }

    /// Forgets windows that have ended (those with lookups in flight stay).
    pub fn prune(&self, now: Instant) {
        self.shared.prune(now);
        for index in 0..SHARDS {
            let mut shard = match self.shards[index].lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            shard.budgets.retain(|_, budget| {
                budget.pending > 0 || now.duration_since(budget.started) < WINDOW
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::SharedLimits;

    fn digest(n: u8) -> [u8; 32] {
        [n; 32]
    }

    fn throttle() -> AuthThrottle {
        AuthThrottle::new(SharedLimits::per_instance().limiter("auth"), 1_000)
    }

    #[tokio::test]
    async fn distinct_unknown_keys_spend_the_budget_and_repeats_do_not() {
        let throttle = throttle();
        let now = Instant::now();
        for n in 0..3 {
            match throttle.gate("a", &digest(n), 3, now) {
                Gate::Lookup(reservation) => reservation.unknown(&digest(n)).await,
                _ => panic!("within budget"),
            }
        }
        assert!(matches!(
            throttle.gate("a", &digest(0), 3, now),
            Gate::Repeat
        ));
        assert!(matches!(
            throttle.gate("a", &digest(9), 3, now),
            Gate::OverBudget {
                retry_after_secs: 60
            }
        ));
        // Another address, and the next window, start afresh.
        assert!(matches!(
            throttle.gate("b", &digest(9), 3, now),
            Gate::Lookup(_)
        ));
        assert!(matches!(
            throttle.gate("a", &digest(9), 3, now + WINDOW),
            Gate::Lookup(_)
        ));
    }

    #[test]
    fn found_keys_and_abandoned_lookups_cost_nothing() {
        let throttle = throttle();
        let now = Instant::now();
        for n in 0..10 {
            // Found (or the request went away): the reservation is simply dropped.
            assert!(matches!(
                throttle.gate("a", &digest(n), 2, now),
                Gate::Lookup(_)
            ));
        }
        let first = throttle.gate("a", &digest(20), 2, now);
        let second = throttle.gate("a", &digest(21), 2, now);
        // Two lookups in flight use the budget up until they end.
        assert!(matches!(
            throttle.gate("a", &digest(22), 2, now),
            Gate::OverBudget { .. }
        ));
        drop((first, second));
        assert!(matches!(
            throttle.gate("a", &digest(22), 2, now),
            Gate::Lookup(_)
        ));
    }
}
