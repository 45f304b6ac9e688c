//! The in-process half of a limit: one window per key and the rule that decides, without I/O,
//! whether a request is admitted here, refused here, or needs the exact check in Redis.
//!
//! Every instance keeps two views of a key's window. The *per-instance* window (opened by the
//! key's first request here) is what is enforced when limits are not shared or Redis is down.
//! The *shared* view is the count Redis last reported (`known`), what this instance admitted
//! since (`pending`, not yet sent; `in_flight`, sent and not yet answered) and when Redis says
//! the window ends. A request is admitted locally only while this instance's local admits since
//! its last batched sync, multiplied by the number of instances, fit in what is left of the
//! limit (if every instance did the same, together they would still stay within it) and stay
//! under `share_cap`, which bounds what one instance can hold unseen by the others however old
//! the count it decided on. Each other instance is assumed to hold as many unsent admits as
//! this one made in its last share. Otherwise the request goes to Redis
//! for an exact atomic check; a refusal there leaves a deny entry until the window ends, so a
//! key over its limit costs no further round trips.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Whole seconds until the window resets (at least 1).
    pub reset_secs: u64,
}

/// How a decision may be made right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each instance enforces the limit on its own (no Redis, or Redis unreachable).
    PerInstance,
    /// Limits are shared by `instances` instances; a shared count older than `fresh_for` is
    /// not trusted for more than one local admit.
    Shared { instances: u32, fresh_for: Duration },
}

/// What the caller must do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Decided(Decision),
    /// Ask Redis: add `flush` unsent admits, then admit one more if the count is under the limit.
    /// `renew`: asked only because the count is old or the share is spent, not because the key
    /// is near its limit; the answer starts a new share from `renew` (the local admits made
    /// before this question, all in `flush` or in a sync already sent).
    Exact {
        flush: u64,
        renew: Option<u64>,
    },
}

/// What Redis answered about a key's shared window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedCount {
    pub count: u64,
    /// Time left in the shared window.
    pub ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct Entry {
    local_started: Instant,
    local_count: u32,
    known: u64,
    synced_at: Option<Instant>,
    window_end: Option<Instant>,
    pending: u64,
    in_flight: u64,
    /// Admits here ever (local and exact); `share_start` is where the share since the last
    /// sync begins.
    fast_total: u64,
    share_start: u64,
    /// `fast_total` when the batch now in flight was taken.
    taken_at: u64,
    /// Local admits in the last share: what each other instance is assumed to hold unsent.
    last_share: u64,
    /// An exact check was needed in this share, or in the one before: while a key is that busy
    /// or that near its limit, the others may be admitting through Redis faster than a share
    /// assumes, so every request goes to Redis until two shares pass without one.
    exact_now: bool,
    exact_before: bool,
    denied_until: Option<Instant>,
    /// Queued in its shard's list of keys to sync.
    queued: bool,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            local_started: now,
            local_count: 0,
            known: 0,
            synced_at: None,
            window_end: None,
            pending: 0,
            in_flight: 0,
            fast_total: 0,
            share_start: 0,
            taken_at: 0,
            last_share: 0,
            exact_now: false,
            exact_before: false,
            denied_until: None,
            queued: false,
        }
    }

    fn roll(&mut self, window: Duration, now: Instant) {
        if now.duration_since(self.local_started) >= window {
            self.local_started = now;
            self.local_count = 0;
        }
        if self.window_end.is_some_and(|end| end <= now) {
            // Unsent admits belonged to the window that ended; counting them in the next
            // would start it early.
            self.known = 0;
            self.synced_at = None;
            self.window_end = None;
            self.pending = 0;
            self.share_start = self.fast_total;
            self.exact_now = false;
            self.exact_before = false;
        }
        if self.denied_until.is_some_and(|until| until <= now) {
            self.denied_until = None;
        }
    }

    fn local_reset(&self, window: Duration, now: Instant) -> Duration {
        window.saturating_sub(now.duration_since(self.local_started))
    }

    fn shared_reset(&self, window: Duration, now: Instant) -> Duration {
        match self.window_end {
            Some(end) => end.saturating_duration_since(now),
            None => self.local_reset(window, now),
        }
    }

    fn per_instance(&mut self, limit: u32, window: Duration, now: Instant) -> Decision {
        let allowed = self.local_count < limit;
        if allowed {
            self.local_count += 1;
        }
        decision(
            allowed,
            limit,
            u64::from(self.local_count),
            self.local_reset(window, now),
        )
    }

    /// The whole rule; see the module comment.
    pub fn decide(&mut self, limit: u32, mode: Mode, window: Duration, now: Instant) -> Step {
        self.roll(window, now);
        let Mode::Shared {
            instances,
            fresh_for,
        } = mode
        else {
            return Step::Decided(self.per_instance(limit, window, now));
        };
        if let Some(until) = self.denied_until {
            return Step::Decided(decision(
                false,
                limit,
                u64::from(limit),
                until.saturating_duration_since(now),
            ));
        }
        let unsent = self.pending + self.in_flight;
        let share_used = self.fast_total - self.share_start;
        let fresh = self
            .synced_at
            .is_some_and(|at| now.duration_since(at) <= fresh_for);
        let others = u64::from(instances.max(1) - 1);
        let fits = self
            .known
            .saturating_add(others.saturating_mul(self.last_share))
            .saturating_add(u64::from(instances.max(1)).saturating_mul(share_used + 1))
            <= u64::from(limit);
        let calm = !self.exact_now && !self.exact_before;
        let within_share = share_used < share_cap(limit, instances);
        if fits && calm && within_share && (fresh || share_used == 0) {
            self.pending += 1;
            self.fast_total += 1;
            self.local_count = self.local_count.saturating_add(1);
            return Step::Decided(decision(
                true,
                limit,
                self.known + unsent + 1,
                self.shared_reset(window, now),
            ));
        }
        self.exact_now |= !fits;
        let flush = std::mem::take(&mut self.pending);
        self.in_flight += flush;
        Step::Exact {
            flush,
            renew: fits.then_some(self.fast_total),
        }
    }

    /// Takes the unsent admits for a batched sync.
    pub fn take_pending(&mut self) -> u64 {
        self.queued = false;
        self.taken_at = self.fast_total;
        let flush = std::mem::take(&mut self.pending);
        self.in_flight += flush;
        flush
    }

    /// Redis answered the batched sync that carried `flushed` admits: a new share begins.
    pub fn apply_sync(
        &mut self,
        flushed: u64,
        answer: SharedCount,
        window: Duration,
        now: Instant,
    ) {
        self.apply_count(flushed, answer, window, now);
        self.synced_at = Some(now);
        self.exact_before = std::mem::take(&mut self.exact_now);
        if self.taken_at > self.share_start {
            self.last_share = self.taken_at - self.share_start;
            self.share_start = self.taken_at;
        } else {
            self.last_share = 0;
        }
    }

    /// Redis answered a sync or an exact check that carried `flushed` admits.
    pub fn apply_count(
        &mut self,
        flushed: u64,
        answer: SharedCount,
        window: Duration,
        now: Instant,
    ) {
        self.in_flight = self.in_flight.saturating_sub(flushed);
        let end = now + answer.ttl;
        // Counts only grow within a window; a later window ends at least `window` later.
        let same_window = self.window_end.is_some_and(|old| end < old + window / 2);
        self.known = if same_window {
            self.known.max(answer.count)
        } else {
            answer.count
        };
        self.window_end = Some(end);
    }

    /// The answer of an exact check (`admitted` or not), after `apply_count`. An answer to a
    /// `renew` check is as good as a sync: the count is fresh and a new share begins after the
    /// admits the question carried. Admits made while it was in flight stay in the share, so
    /// that concurrent checks cannot each hand out a whole share again (a burst would otherwise
    /// admit share after share locally before any of them reached Redis). Near the limit no
    /// share begins, or a burst could take one share after another.
    pub fn apply_exact(
        &mut self,
        admitted: bool,
        renew: Option<u64>,
        limit: u32,
        now: Instant,
    ) -> Decision {
        let reset = self
            .window_end
            .unwrap_or(now)
            .saturating_duration_since(now);
        match renew {
            Some(taken) => {
                self.synced_at = Some(now);
                if taken > self.share_start {
                    self.last_share = taken - self.share_start;
                    self.share_start = taken;
                }
            }
            None if admitted => {
                // Counted in the share too: while this instance admits through Redis, so may
                // the others, and the count this share started from does not show theirs.
                self.fast_total += 1;
            }
            None => {}
        }
        if admitted {
            self.local_count = self.local_count.saturating_add(1);
        } else {
            self.denied_until = self.window_end;
        }
        decision(
            admitted,
            limit,
            self.known + self.pending + self.in_flight,
            reset,
        )
    }

    /// Redis could not be asked: the admits go back to unsent and the instance decides alone.
    pub fn fail_exact(
        &mut self,
        flushed: u64,
        limit: u32,
        window: Duration,
        now: Instant,
    ) -> Decision {
        self.return_unsent(flushed);
        self.per_instance(limit, window, now)
    }

    /// A sync that carried `flushed` admits failed.
    pub fn return_unsent(&mut self, flushed: u64) {
        self.in_flight = self.in_flight.saturating_sub(flushed);
        self.pending += flushed;
    }

    /// When the key has used up `limit` in its current window, the time until it resets.
    pub fn exhausted(&self, limit: u32, window: Duration, now: Instant) -> Option<Duration> {
        if let Some(until) = self.denied_until.filter(|until| *until > now) {
            return Some(until - now);
        }
        let local_over =
            now.duration_since(self.local_started) < window && self.local_count >= limit;
        local_over.then(|| self.local_reset(window, now))
    }

    fn finished(&self, window: Duration, now: Instant) -> bool {
        now.duration_since(self.local_started) >= window
            && self.window_end.is_none_or(|end| end <= now)
            && self.pending == 0
            && self.in_flight == 0
    }
}

/// The most one instance admits locally between two answers from Redis: what it may hold that
/// the others cannot see. Without it, a share taken on a count that is already old (another
/// instance filled the limit through exact checks meanwhile) could be a large part of the
/// limit; with it, each instance adds at most two shares to the bound (docs/scaling.md).
pub fn share_cap(limit: u32, instances: u32) -> u64 {
    (u64::from(limit) / (20 * u64::from(instances.max(1)))).max(1)
}

fn decision(allowed: bool, limit: u32, used: u64, reset: Duration) -> Decision {
    let remaining = u64::from(limit).saturating_sub(used);
    Decision {
        allowed,
        limit,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset_secs: reset.as_secs_f64().ceil().max(1.0) as u64,
    }
}

#[derive(Default)]
struct Shard {
    entries: HashMap<String, Entry>,
    /// Keys with unsent admits, so a sync visits only those.
    queued: Vec<String>,
    last_sweep: Option<Instant>,
}

/// The windows of one limit, sharded so that concurrent requests for different keys rarely
/// share a lock.
pub struct Table {
    shards: Vec<Mutex<Shard>>,
    /// The most windows one shard keeps (`bounded`): keys are often client addresses, and a
    /// flood of addresses must not grow memory without bound.
    shard_capacity: usize,
    /// Only picks the lock, so a chosen key can at worst crowd one shard; the maps inside
    /// keep std's SipHash, since their keys include addresses and emails a client chooses.
    shard_hasher: foldhash::fast::RandomState,
    pub window: Duration,
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    match shard.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Table {
    #[cfg(test)]
    pub fn new(window: Duration) -> Table {
        Table::bounded(window, usize::MAX)
    }

    /// At most about `max_entries` windows (rounded up to a whole number per shard). A table
    /// at its bound first drops windows that have ended, then an arbitrary one: under a flood
    /// of that many keys a forgotten key restarts its window, which the flood could as well
    /// have done with a fresh key.
    pub fn bounded(window: Duration, max_entries: usize) -> Table {
        Table {
            shard_capacity: max_entries.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_hasher: foldhash::fast::RandomState::default(),
            window,
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let index = (self.shard_hasher.hash_one(key) as usize) % SHARDS;
        lock(&self.shards[index])
    }

    pub fn decide(&self, key: &str, limit: u32, mode: Mode, now: Instant) -> Step {
        let mut shard = self.shard(key);
        let shard = &mut *shard;
        // The length first: below the bound (the common case) the key is hashed once, by
        // `get_mut`, not twice.
        if shard.entries.len() >= self.shard_capacity && !shard.entries.contains_key(key) {
            let window = self.window;
            super::bounded::make_room(
                &mut shard.entries,
                self.shard_capacity,
                &mut shard.last_sweep,
                now,
                |entry| entry.finished(window, now),
            );
        }
        let entry = match shard.entries.get_mut(key) {
            Some(entry) => entry,
            None => shard
                .entries
                .entry(key.to_owned())
                .or_insert(Entry::new(now)),
        };
        let step = entry.decide(limit, mode, self.window, now);
        if entry.pending > 0 && !entry.queued {
            entry.queued = true;
            shard.queued.push(key.to_owned());
        }
        step
    }

    /// Runs `f` on `key`'s entry, if it still exists.
    pub fn with_entry<T>(&self, key: &str, f: impl FnOnce(&mut Entry, Duration) -> T) -> Option<T> {
        let mut shard = self.shard(key);
        shard
            .entries
            .get_mut(key)
            .map(|entry| f(entry, self.window))
    }

    /// Takes every key's unsent admits: `(key, admits)`.
    pub fn take_pending(&self) -> Vec<(String, u64)> {
        let mut batch = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            let shard = &mut *shard;
            for key in std::mem::take(&mut shard.queued) {
                if let Some(entry) = shard.entries.get_mut(&key) {
                    let flush = entry.take_pending();
                    if flush > 0 {
                        batch.push((key, flush));
                    }
                }
            }
        }
        batch
    }

    /// Forgets unsent admits (Redis is down: this instance enforced them on its own).
    pub fn drop_pending(&self) {
        for shard in &self.shards {
            let mut shard = lock(shard);
            let shard = &mut *shard;
            for key in std::mem::take(&mut shard.queued) {
                if let Some(entry) = shard.entries.get_mut(&key) {
                    entry.queued = false;
                    entry.pending = 0;
                }
            }
        }
    }

    pub fn exhausted(&self, key: &str, limit: u32, now: Instant) -> Option<u64> {
        let shard = self.shard(key);
        let reset = shard.entries.get(key)?.exhausted(limit, self.window, now)?;
        Some(reset.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Drops windows that have ended, so memory follows the keys in use.
    pub fn prune(&self, now: Instant) {
        for shard in &self.shards {
            let mut shard = lock(shard);
            let window = self.window;
            shard
                .entries
                .retain(|_, entry| !entry.finished(window, now));
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(shard).entries.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WINDOW: Duration = Duration::from_secs(60);
    const SHARED3: Mode = Mode::Shared {
        instances: 3,
        fresh_for: Duration::from_millis(50),
    };

    fn admitted(step: Step) -> bool {
        matches!(step, Step::Decided(d) if d.allowed)
    }

    #[test]
    fn a_flood_of_keys_never_grows_a_bounded_table_past_its_bound() {
        let table = Table::bounded(WINDOW, 1_000);
        let now = Instant::now();
        for n in 0..50_000 {
            table.decide(&format!("2001:db8:{n:x}::/64"), 10, Mode::PerInstance, now);
        }
        // Rounded up to whole shards.
        assert!(table.len() <= 1_000 + SHARDS, "{}", table.len());
        assert!(table.len() >= 1_000 - SHARDS, "{}", table.len());
        // A key still in the table keeps its count.
        let key = "198.51.100.1";
        for _ in 0..10 {
            assert!(admitted(table.decide(key, 10, Mode::PerInstance, now)));
        }
        assert!(!admitted(table.decide(key, 10, Mode::PerInstance, now)));
    }

    #[test]
    fn per_instance_counts_down_then_refuses_then_resets() {
        let table = Table::new(WINDOW);
        let start = Instant::now();
        for expected_remaining in (0..3).rev() {
            let Step::Decided(d) = table.decide("a", 3, Mode::PerInstance, start) else {
                panic!("per-instance never asks Redis");
            };
            assert!(d.allowed);
            assert_eq!((d.remaining, d.reset_secs), (expected_remaining, 60));
        }
        let later = start + Duration::from_secs(20);
        assert_eq!(
            table.decide("a", 3, Mode::PerInstance, later),
            Step::Decided(Decision {
                allowed: false,
                limit: 3,
                remaining: 0,
                reset_secs: 40
            })
        );
        assert_eq!(table.exhausted("a", 3, later), Some(40));
        assert!(admitted(table.decide("b", 3, Mode::PerInstance, later)));
        assert!(admitted(table.decide(
            "a",
            3,
            Mode::PerInstance,
            start + WINDOW
        )));
    }

    #[test]
    fn far_from_the_limit_admits_locally_and_queues_one_sync() {
        let table = Table::new(WINDOW);
        let now = Instant::now();
        let answer = SharedCount {
            count: 10,
            ttl: Duration::from_secs(50),
        };
        table.decide("k", 1000, SHARED3, now);
        let batch = table.take_pending();
        assert_eq!(batch, vec![("k".to_owned(), 1)]);
        table.with_entry("k", |e, w| e.apply_sync(1, answer, w, now));
        for _ in 0..5 {
            assert!(admitted(table.decide("k", 1000, SHARED3, now)));
        }
        assert_eq!(table.take_pending(), vec![("k".to_owned(), 5)]);
        assert!(table.take_pending().is_empty());
    }

    #[test]
    fn near_the_limit_asks_redis_and_a_refusal_is_remembered() {
        let table = Table::new(WINDOW);
        let now = Instant::now();
        table.decide("k", 60, SHARED3, now);
        let flushed = table.take_pending()[0].1;
        let answer = SharedCount {
            count: 58,
            ttl: Duration::from_secs(30),
        };
        table.with_entry("k", |e, w| e.apply_sync(flushed, answer, w, now));
        // 58 + 3 × 1 > 60: this request needs the exact check.
        assert_eq!(
            table.decide("k", 60, SHARED3, now),
            Step::Exact {
                flush: 0,
                renew: None
            }
        );
        let refused = table
            .with_entry("k", |e, w| {
                e.apply_count(
                    0,
                    SharedCount {
                        count: 60,
                        ttl: Duration::from_secs(30),
                    },
                    w,
                    now,
                );
                e.apply_exact(false, None, 60, now)
            })
            .unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.reset_secs, 30);
        // The deny entry answers without Redis until the window ends.
        let later = now + Duration::from_secs(29);
        assert!(matches!(
            table.decide("k", 60, SHARED3, later),
            Step::Decided(d) if !d.allowed
        ));
        assert_eq!(table.exhausted("k", 60, later), Some(1));
        let next_window = now + Duration::from_secs(31);
        assert!(admitted(table.decide("k", 60, SHARED3, next_window)));
    }

    #[test]
    fn a_stale_count_allows_one_local_admit_then_asks() {
        let table = Table::new(WINDOW);
        let now = Instant::now();
        table.decide("k", 1000, SHARED3, now);
        let flushed = table.take_pending()[0].1;
        table.with_entry("k", |e, w| {
            e.apply_sync(
                flushed,
                SharedCount {
                    count: 1,
                    ttl: WINDOW,
                },
                w,
                now,
            )
        });
        let later = now + Duration::from_secs(1);
        assert!(admitted(table.decide("k", 1000, SHARED3, later)));
        assert_eq!(
            table.decide("k", 1000, SHARED3, later),
            Step::Exact {
                flush: 1,
                renew: Some(2)
            }
        );
    }

    #[test]
    fn after_a_stale_check_a_key_far_from_its_limit_is_local_again() {
        let table = Table::new(WINDOW);
        let now = Instant::now();
        assert!(admitted(table.decide("k", 1000, SHARED3, now)));
        let Step::Exact { flush, renew } = table.decide("k", 1000, SHARED3, now) else {
            panic!("a second admit on a count never read needs Redis");
        };
        assert_eq!(renew, Some(1));
        table.with_entry("k", |e, w| {
            e.apply_count(
                flush,
                SharedCount {
                    count: 2,
                    ttl: WINDOW,
                },
                w,
                now,
            );
            e.apply_exact(true, renew, 1000, now)
        });
        // No sync in between: the exact answer was as good as one.
        for _ in 0..10 {
            assert!(admitted(table.decide("k", 1000, SHARED3, now)));
        }
    }

    #[test]
    fn a_failed_exact_check_falls_back_to_the_per_instance_window() {
        let table = Table::new(WINDOW);
        let now = Instant::now();
        // A limit of 2 shared by 3 instances: every request needs Redis.
        let mut allowed = Vec::new();
        for _ in 0..3 {
            let Step::Exact { flush, .. } = table.decide("k", 2, SHARED3, now) else {
                panic!("a limit of 2 on 3 instances needs the exact check");
            };
            let d = table
                .with_entry("k", |e, w| e.fail_exact(flush, 2, w, now))
                .unwrap();
            allowed.push(d.allowed);
        }
        assert_eq!(allowed, [true, true, false]);
    }

    #[test]
    fn prune_keeps_keys_with_unsent_admits() {
        let table = Table::new(WINDOW);
        let start = Instant::now();
        table.decide("a", 10, Mode::PerInstance, start);
        table.decide("b", 10, Mode::PerInstance, start + Duration::from_secs(30));
        table.decide("c", 10, SHARED3, start);
        table.prune(start + Duration::from_secs(61));
        assert_eq!(table.len(), 2);
    }

    /// One Redis and `phase.len()` instances: requests arrive round-robin, one every `gap`
    /// (0: all at once, a burst); instance `n` syncs every `sync` from `phase[n]`, one sync in
    /// flight at a time; every message to Redis and every answer takes `half_trip`, so exact
    /// checks overlap and answers arrive after other requests were decided, as under real
    /// concurrency. Returns the requests admitted and Redis's final count.
    fn simulate_concurrent(
        limit: u32,
        phase: &[Duration],
        requests: usize,
        gap: Duration,
        sync: Duration,
        half_trip: Duration,
    ) -> (u64, u64) {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;

        #[derive(PartialEq, Eq, PartialOrd, Ord)]
        enum Event {
            Request(usize),
            Tick(usize),
            SyncAtRedis(usize, Vec<(String, u64)>),
            SyncAnswer(usize, Vec<(String, u64)>, Vec<u64>),
            ExactAtRedis(usize, u64, Option<u64>),
            ExactAnswer(usize, u64, Option<u64>, bool, u64),
        }

        let instances = phase.len();
        let start = Instant::now();
        let tables: Vec<Table> = (0..instances).map(|_| Table::new(WINDOW)).collect();
        let mode = Mode::Shared {
            instances: instances as u32,
            fresh_for: crate::limits::FRESH_FOR,
        };
        let mut events = BinaryHeap::new();
        let mut order = 0u64;
        let mut push = |events: &mut BinaryHeap<_>, at: Duration, event: Event| {
            order += 1;
            events.push(Reverse((at, order, event)));
        };
        for i in 0..requests {
            push(&mut events, gap * i as u32, Event::Request(i));
        }
        for (n, p) in phase.iter().enumerate() {
            push(&mut events, *p, Event::Tick(n));
        }
        let last_request = gap * requests as u32;
        let (mut redis, mut admitted) = (0u64, 0u64);
        while let Some(Reverse((at, _, event))) = events.pop() {
            let now = start + at;
            match event {
                Event::Request(i) => {
                    let n = i % instances;
                    match tables[n].decide("k", limit, mode, now) {
                        Step::Decided(d) => admitted += u64::from(d.allowed),
                        Step::Exact { flush, renew } => push(
                            &mut events,
                            at + half_trip,
                            Event::ExactAtRedis(n, flush, renew),
                        ),
                    }
                }
                Event::Tick(n) => {
                    let batch = tables[n].take_pending();
                    if batch.is_empty() {
                        if at <= last_request + sync * 20 {
                            push(&mut events, at + sync, Event::Tick(n));
                        }
                    } else {
                        push(&mut events, at + half_trip, Event::SyncAtRedis(n, batch));
                    }
                }
                Event::SyncAtRedis(n, batch) => {
                    let counts = batch
                        .iter()
                        .map(|(_, flushed)| {
                            redis += flushed;
                            redis
                        })
                        .collect();
                    push(
                        &mut events,
                        at + half_trip,
                        Event::SyncAnswer(n, batch, counts),
                    );
                }
                Event::SyncAnswer(n, batch, counts) => {
                    for ((key, flushed), count) in batch.iter().zip(counts) {
                        let answer = SharedCount { count, ttl: WINDOW };
                        tables[n].with_entry(key, |e, w| e.apply_sync(*flushed, answer, w, now));
                    }
                    // The sync loop waits for the answer; a missed tick runs at once.
                    let next = (at.as_nanos() / sync.as_nanos() + 1) as u32;
                    push(&mut events, (sync * next).max(at), Event::Tick(n));
                }
                Event::ExactAtRedis(n, flush, renew) => {
                    redis += flush;
                    let ok = redis < u64::from(limit);
                    redis += u64::from(ok);
                    push(
                        &mut events,
                        at + half_trip,
                        Event::ExactAnswer(n, flush, renew, ok, redis),
                    );
                }
                Event::ExactAnswer(n, flush, renew, ok, count) => {
                    let answer = SharedCount { count, ttl: WINDOW };
                    let d = tables[n]
                        .with_entry("k", |e, w| {
                            e.apply_count(flush, answer, w, now);
                            e.apply_exact(ok, renew, limit, now)
                        })
                        .unwrap();
                    admitted += u64::from(d.allowed);
                }
            }
        }
        (admitted, redis)
    }

    fn simulate(
        limit: u32,
        instances: usize,
        requests: usize,
        gap: Duration,
        sync: Duration,
    ) -> u64 {
        let phase = vec![Duration::ZERO; instances];
        let (admitted, redis) =
            simulate_concurrent(limit, &phase, requests, gap, sync, Duration::ZERO);
        assert_eq!(admitted, redis, "every admit reaches Redis");
        admitted
    }

    #[test]
    fn three_instances_at_the_spec_load_stay_within_the_bound() {
        // 300 requests in 10 s, round-robin, limit 60, sync every 20 ms.
        let admitted = simulate(
            60,
            3,
            300,
            Duration::from_millis(33),
            Duration::from_millis(20),
        );
        assert!((60..=66).contains(&admitted), "admitted {admitted}");
    }

    #[test]
    fn a_burst_stays_within_the_limit() {
        // Every request arrives at once, each exact check overlapping the others: each instance
        // holds at most two shares that the others cannot see.
        for instances in [2, 3] {
            let phase = vec![Duration::ZERO; instances];
            for half_trip_us in [0, 50, 200, 1000] {
                let (admitted, redis) = simulate_concurrent(
                    60,
                    &phase,
                    300,
                    Duration::ZERO,
                    Duration::from_millis(20),
                    Duration::from_micros(half_trip_us),
                );
                assert_eq!(admitted, redis);
                assert!(
                    (60..=66).contains(&admitted),
                    "{instances} instances, {half_trip_us} µs: admitted {admitted}"
                );
            }
        }
    }

    proptest! {
        /// The documented bound: at most `limit + N·2·C` (C = `share_cap`: each instance holds
        /// at most two shares the others cannot see), whatever the rate, the round trip and
        /// how the requests overlap; never under the limit when more requests arrive; and
        /// every admit reaches Redis.
        #[test]
        fn admits_stay_within_the_bound(
            limit in 1u32..1000,
            phase_ms in proptest::collection::vec(0u64..100, 1..6),
            gap_us in prop_oneof![Just(0u64), 1u64..200_000],
            sync_ms in 5u64..100,
            half_trip_us in prop_oneof![Just(0u64), 1u64..5_000],
        ) {
            let instances = phase_ms.len() as u32;
            let requests = (limit as usize) * 3;
            let gap = Duration::from_micros(gap_us);
            prop_assume!(gap * requests as u32 <= WINDOW / 2);
            let sync = Duration::from_millis(sync_ms);
            let phase: Vec<Duration> = phase_ms
                .iter()
                .map(|ms| Duration::from_millis(ms % sync_ms))
                .collect();
            let (admitted, redis) = simulate_concurrent(
                limit,
                &phase,
                requests,
                gap,
                sync,
                Duration::from_micros(half_trip_us),
            );
            let bound = u64::from(limit) + u64::from(instances) * 2 * share_cap(limit, instances);
            prop_assert_eq!(admitted, redis);
            prop_assert!(admitted >= u64::from(limit), "admitted {} < limit {}", admitted, limit);
            prop_assert!(admitted <= bound, "admitted {} > bound {}", admitted, bound);
        }
    }
}
