//! Tables keyed by what clients choose (their addresses, above all) must not grow without
//! bound: a flood of distinct keys would otherwise grow memory for as long as it lasts. Every
//! such table makes room the same way, here.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

/// How often a full table may visit all its entries to drop those that ended; between such
/// sweeps, a full table forgets an arbitrary entry instead, so a flood costs no whole-table
/// pass per request.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Frees one place in `map`, which holds `capacity` entries or more: every `ended` entry (at
/// most once per `SWEEP_EVERY`, tracked in `last_sweep`), or else an arbitrary one. A key
/// forgotten under a flood of that many keys restarts its window, which the flood could as
/// well have done with a fresh key.
pub fn make_room<K, V, S>(
    map: &mut HashMap<K, V, S>,
    capacity: usize,
    last_sweep: &mut Option<Instant>,
    now: Instant,
    ended: impl Fn(&V) -> bool,
) where
    K: Eq + Hash + Clone,
    S: BuildHasher,
{
    let swept_lately = last_sweep.is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY);
    if !swept_lately {
        *last_sweep = Some(now);
        map.retain(|_, value| !ended(value));
    }
    if map.len() >= capacity {
        let victim = map.keys().next().cloned();
        if let Some(victim) = victim {
            map.remove(&victim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_entries_go_first_then_any_one() {
        let now = Instant::now();
        let mut last_sweep = None;
        let mut map: HashMap<u32, bool> = (0..10).map(|n| (n, n < 3)).collect();
        make_room(&mut map, 10, &mut last_sweep, now, |ended| *ended);
        assert_eq!(map.len(), 7);
        assert!(map.values().all(|ended| !ended));
        // Swept a moment ago: no second pass, one arbitrary entry goes.
        map.insert(100, true);
        map.insert(101, false);
        map.insert(102, false);
        make_room(&mut map, 10, &mut last_sweep, now, |ended| *ended);
        assert_eq!(map.len(), 9);
        // A second later the sweep runs again.
        make_room(&mut map, 9, &mut last_sweep, now + SWEEP_EVERY, |ended| {
            *ended
        });
        assert!(map.values().all(|ended| !ended));
    }
}
