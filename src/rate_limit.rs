//! Per-key rate limiting: a fixed window of one minute per key, opened by the key's first
//! request. Fixed windows give exact, honest `RateLimit-*` headers (how many are left, when the
//! window resets), which is what integrators read; the price is that a burst can straddle two
//! windows. Per process only: `crate::limits` is the shared version the per-key limit uses.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
const SHARDS: usize = 16;

pub use crate::limits::Decision;

struct Window {
    started: Instant,
    count: u32,
}

/// Sharded so that concurrent requests for different keys rarely share a lock.
pub struct RateLimiter {
    shards: Vec<Mutex<HashMap<String, Window>>>,
    hasher: RandomState,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl RateLimiter {
    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Window>> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.shards[index]
    }

    /// Counts one request for `key` against `limit` per minute.
    pub fn check(&self, key: &str, limit: u32, now: Instant) -> Decision {
        let mut shard = match self.shard(key).lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let window = match shard.get_mut(key) {
            Some(window) => window,
            None => shard.entry(key.to_owned()).or_insert(Window {
                started: now,
                count: 0,
            }),
        };
        if now.duration_since(window.started) >= WINDOW {
            window.started = now;
            window.count = 0;
        }
        let allowed = window.count < limit;
        if allowed {
            window.count += 1;
        }
        let elapsed = now.duration_since(window.started);
        let reset = WINDOW.saturating_sub(elapsed);
        Decision {
            allowed,
            limit,
            remaining: limit.saturating_sub(window.count),
            reset_secs: reset.as_secs_f64().ceil().max(1.0) as u64,
        }
    }

    /// When `key` has used up `limit` in its current window: the seconds until it resets.
    /// Counts nothing.
    pub fn exhausted(&self, key: &str, limit: u32, now: Instant) -> Option<u64> {
        let shard = match self.shard(key).lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let window = shard.get(key)?;
        let elapsed = now.duration_since(window.started);
        (elapsed < WINDOW && window.count >= limit)
            .then(|| WINDOW.saturating_sub(elapsed).as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Drops windows that have ended, so memory follows the keys in use, not all keys ever seen.
    pub fn prune(&self, now: Instant) {
        for shard in &self.shards {
            let mut shard = match shard.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            shard.retain(|_, window| now.duration_since(window.started) < WINDOW);
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map(|s| s.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_then_refuses_then_resets() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        for expected_remaining in (0..3).rev() {
            let decision = limiter.check("key_a", 3, start);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, expected_remaining);
            assert_eq!(decision.reset_secs, 60);
        }
        let refused = limiter.check("key_a", 3, start + Duration::from_secs(20));
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.reset_secs, 40);
        // Another key has its own window.
        assert!(limiter.check("key_b", 3, start).allowed);
        let next_window = limiter.check("key_a", 3, start + Duration::from_secs(60));
        assert!(next_window.allowed);
        assert_eq!(next_window.remaining, 2);
    }

    #[test]
    fn prune_forgets_finished_windows() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        limiter.check("key_a", 10, start);
        limiter.check("key_b", 10, start + Duration::from_secs(30));
        limiter.prune(start + Duration::from_secs(61));
        assert_eq!(limiter.len(), 1);
    }
}
