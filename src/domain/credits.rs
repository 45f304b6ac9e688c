//! Per-key credits with refill, shared by several server instances without a
//! database write per request.
//!
//! The store keeps one [`Pool`] row per key: the unleased credits, the refill
//! period they belong to and a generation that an operator `set` bumps. An
//! instance spends its [`Local`] lease in memory ([`Local::try_spend`]); only
//! when short does it take a block in one atomic update ([`Pool::lease`], under
//! a row lock or a serializable transaction) and fold it in
//! ([`Local::absorb_and_spend`]).
//!
//! **Budget windows.** Every credit belongs to a window `(generation, period)`:
//! a refill opens a new period, `set` a new generation. A window's pool only
//! receives its opening budget, `add`s and give-backs of its own leases, and
//! every credit spent was leased from one window's pool, so no window admits
//! more than it had, whatever the number of instances, their clocks or their
//! crashes. A lease of an older window is void: never spent nor given back.
//! Every rule that has to guess (clock skew, a stale generation, a late grant)
//! guesses by discarding, which can only under-admit. Refills apply lazily and
//! only when the current period is *greater* than the stored one, so a lagging
//! clock cannot refill twice. Daily and monthly period indices differ, so a
//! schedule change goes through `set`, which re-bases the period.
//!
//! **Exactness.** A block is 1/16 of the pool the instance last saw, at most
//! [`MAX_BLOCK`] and at least the cost, and the pool grants
//! `min(want, remaining)`: near the end leases shrink to one request and a lone
//! instance spends the last credits exactly. With several instances a request
//! may be refused while another one holds credits (at most a block each) until
//! that one stops cleanly and gives them back.
//!
//! **Loss bound.** An instance asks for `max(block - unspent, cost)`, so it
//! never holds more than `max(MAX_BLOCK, 2 * cost - 1)`: [`MAX_BLOCK`] for any
//! cost up to `MAX_BLOCK / 2`, under `2 * MAX_BLOCK` for [`MAX_COST`]. A crash
//! loses what the instance held and nothing else, so a window under-admits by
//! at most `MAX_BLOCK` per crash during it, given at most one lease in flight
//! per key per instance (the caller single-flights leases).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chrono::{Datelike, NaiveDate};
use std::cmp::Ordering;

pub const DAY_MS: i64 = 86_400_000;
/// Largest block an instance leases, and so what one crash can lose for any
/// cost up to half of it.
pub const MAX_BLOCK: i64 = 1000;
/// Largest cost the API accepts for one request.
pub const MAX_COST: i64 = 1000;
/// A lease takes at most this share of the pool, so credits stranded in other
/// instances' leases stay a small part of what is left.
const BLOCK_DIVISOR: i64 = 16;
/// chrono counts days from 0001-01-01 as day 1.
const UNIX_EPOCH_CE_DAYS: i64 = 719_163;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    Daily,
    /// On this day of every month; past the month's end, on its last day.
    Monthly {
        day: u8,
    },
}

impl Interval {
    pub fn monthly(day: u8) -> Option<Interval> {
        (1..=31).contains(&day).then_some(Interval::Monthly { day })
    }

    pub fn is_valid(&self) -> bool {
        match self {
            Interval::Daily => true,
            Interval::Monthly { day } => (1..=31).contains(day),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refill {
    pub amount: i64,
    pub interval: Interval,
}

impl Refill {
    pub fn new(amount: i64, interval: Interval) -> Option<Refill> {
        (amount >= 0 && interval.is_valid()).then_some(Refill { amount, interval })
    }

    /// Index of the refill period containing `now_ms`; never decreases as time
    /// goes on. Daily: days since the epoch. Monthly: months since January 1970
    /// whose boundary (the clamped `day`, 00:00 UTC) is at or before `now_ms`.
    pub fn period_of(&self, now_ms: i64) -> i64 {
        let days = now_ms.div_euclid(DAY_MS);
        let Interval::Monthly { day } = self.interval else {
            return days;
        };
        let date = date_from_days(days);
        let month = (i64::from(date.year()) - 1970) * 12 + i64::from(date.month0());
        let before_boundary = date.day() < boundary_day(date.year(), date.month(), day);
        month - i64::from(before_boundary)
    }

    /// Epoch ms of the first refill strictly after `now_ms` (`i64::MAX` past
    /// the calendar's end, year 262 143).
    pub fn next_refill_at(&self, now_ms: i64) -> i64 {
        let next = self.period_of(now_ms).saturating_add(1);
        match self.interval {
            Interval::Daily => next.checked_mul(DAY_MS),
            Interval::Monthly { day } => month_boundary_ms(next, day),
        }
        .unwrap_or(i64::MAX)
    }
}

/// Times beyond chrono's calendar (±262 000 years) clamp to its ends, which
/// keeps periods monotonic without a failure path.
fn date_from_days(days: i64) -> NaiveDate {
    let end = if days < 0 {
        NaiveDate::MIN
    } else {
        NaiveDate::MAX
    };
    i32::try_from(days.saturating_add(UNIX_EPOCH_CE_DAYS))
        .ok()
        .and_then(NaiveDate::from_num_days_from_ce_opt)
        .unwrap_or(end)
}

fn boundary_day(year: i32, month: u32, day: u8) -> u32 {
    let day = u32::from(day.clamp(1, 31));
    (28..=day)
        .rev()
        .find(|&d| NaiveDate::from_ymd_opt(year, month, d).is_some())
        .unwrap_or(day.min(28))
}

fn month_boundary_ms(month_index: i64, day: u8) -> Option<i64> {
    let year = i32::try_from(month_index.div_euclid(12).checked_add(1970)?).ok()?;
    let month = u32::try_from(month_index.rem_euclid(12)).ok()? + 1;
    let date = NaiveDate::from_ymd_opt(year, month, boundary_day(year, month, day))?;
    (i64::from(date.num_days_from_ce()) - UNIX_EPOCH_CE_DAYS).checked_mul(DAY_MS)
}

/// Without a refill there is a single period, 0.
pub fn period(refill: Option<&Refill>, now_ms: i64) -> i64 {
    refill.map_or(0, |r| r.period_of(now_ms))
}

/// Retry-After for a refused request: whole seconds until the next refill,
/// rounded up so the client does not come back a moment too early.
pub fn retry_after_secs(refill: Option<&Refill>, now_ms: i64) -> Option<i64> {
    refill.map(|r| {
        let wait_ms = r.next_refill_at(now_ms).saturating_sub(now_ms);
        (wait_ms / 1000 + i64::from(wait_ms % 1000 != 0)).max(1)
    })
}

/// The store's row for one key: credits not leased to any instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    pub remaining: i64,
    pub period: i64,
    pub generation: i64,
}

/// Credits leased from one window of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub granted: i64,
    pub generation: i64,
    pub period: i64,
    pub pool_after: i64,
}

impl Pool {
    pub fn new(remaining: i64, refill: Option<&Refill>, now_ms: i64) -> Pool {
        let (remaining, period) = (remaining.max(0), period(refill, now_ms));
        Pool {
            remaining,
            period,
            generation: 0,
        }
    }

    /// Applies the refill due by `now_ms`; a clock behind the stored period
    /// changes nothing.
    pub fn refreshed(mut self, refill: Option<&Refill>, now_ms: i64) -> Pool {
        if let Some(refill) = refill {
            let current = refill.period_of(now_ms);
            if current > self.period {
                (self.remaining, self.period) = (refill.amount.max(0), current);
            }
        }
        self
    }

    /// One atomic lease; the caller writes the returned pool back in the
    /// transaction that read `self`.
    pub fn lease(self, refill: Option<&Refill>, now_ms: i64, want: i64) -> (Pool, Grant) {
        let mut pool = self.refreshed(refill, now_ms);
        let granted = want.max(0).min(pool.remaining.max(0));
        pool.remaining -= granted;
        let (generation, period, pool_after) = (pool.generation, pool.period, pool.remaining);
        let grant = Grant {
            granted,
            generation,
            period,
            pool_after,
        };
        (pool, grant)
    }

    /// Takes back a stopping instance's unspent credits, unless its lease's
    /// window has ended, in which case they are void.
    pub fn give_back(
        self,
        refill: Option<&Refill>,
        now_ms: i64,
        lease_generation: i64,
        lease_period: i64,
        unspent: i64,
    ) -> Pool {
        let mut pool = self.refreshed(refill, now_ms);
        if (pool.generation, pool.period) == (lease_generation, lease_period) {
            pool.remaining = pool.remaining.saturating_add(unspent.max(0));
        }
        pool
    }

    /// Operator top-up: outstanding leases stay valid, the window only grows.
    pub fn add(self, refill: Option<&Refill>, now_ms: i64, n: i64) -> Pool {
        let mut pool = self.refreshed(refill, now_ms);
        pool.remaining = pool.remaining.saturating_add(n.max(0));
        pool
    }

    /// Operator reset to a new budget: a new generation, so credits leased
    /// under the old budget never count against this one. `refill` is the
    /// schedule from now on; the period is re-based on it.
    pub fn set(self, refill: Option<&Refill>, now_ms: i64, remaining: i64) -> Pool {
        let generation = self.generation.saturating_add(1);
        Pool {
            generation,
            ..Pool::new(remaining, refill, now_ms)
        }
    }
}

/// How much an instance should hold after a lease: shrinks with the pool so
/// the last credits go one request at a time.
pub fn block_size(pool_remaining_hint: i64, cost: i64) -> i64 {
    (pool_remaining_hint.max(0) / BLOCK_DIVISOR)
        .clamp(1, MAX_BLOCK)
        .max(cost.max(0))
}

/// One instance's lease of one key's credits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Local {
    pub generation: i64,
    pub period: i64,
    pub unspent: i64,
    /// The pool as this instance last saw it, to size blocks and give hints.
    pub pool_seen: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spend {
    Spent { remaining_hint: i64 },
    NeedLease { want: i64 },
}

/// Not enough credits left in the key's current window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exhausted;

impl Local {
    /// What this instance last knew of the key's credits: its snapshot of the
    /// pool plus its own unspent lease.
    pub fn remaining_hint(&self) -> i64 {
        self.pool_seen.max(0).saturating_add(self.unspent.max(0))
    }

    fn spend(&mut self, cost: i64) -> Result<i64, Exhausted> {
        if cost > 0 && self.unspent < cost {
            return Err(Exhausted);
        }
        self.unspent -= cost;
        Ok(self.remaining_hint())
    }

    /// The synchronous hot path. `generation` is the newest generation the
    /// caller knows of (0 if it does not track it), `period` comes from its
    /// clock; a lease older than either is void.
    pub fn try_spend(&mut self, generation: i64, period: i64, cost: i64) -> Spend {
        let cost = cost.max(0);
        if cost > 0 && (self.generation < generation || self.period < period) {
            self.unspent = 0;
        }
        match self.spend(cost) {
            Ok(remaining_hint) => Spend::Spent { remaining_hint },
            // Topping up to a block keeps the holding at one block; asking for
            // at least `cost` still admits when the grant opens a newer window,
            // where the leftover no longer counts.
            Err(Exhausted) => Spend::NeedLease {
                want: block_size(self.remaining_hint(), cost)
                    .saturating_sub(self.unspent)
                    .max(cost),
            },
        }
    }

    /// Folds a grant in, then spends `cost` if the lease now covers it.
    pub fn absorb_and_spend(&mut self, grant: &Grant, cost: i64) -> Result<i64, Exhausted> {
        let (generation, period) = (grant.generation, grant.period);
        let (unspent, pool_seen) = (grant.granted.max(0), grant.pool_after);
        // Pool windows only move forward (generation first, then period), so
        // an older grant arrived late and is void; an empty lease loses
        // nothing by being replaced.
        match (generation, period).cmp(&(self.generation, self.period)) {
            Ordering::Equal => {
                self.unspent = self.unspent.saturating_add(unspent);
                self.pool_seen = pool_seen;
            }
            Ordering::Less if self.unspent > 0 => {}
            _ => {
                *self = Local {
                    generation,
                    period,
                    unspent,
                    pool_seen,
                }
            }
        }
        self.spend(cost.max(0))
    }
}

impl Interval {
    /// The stored form: `daily` or `monthly`, and the day for `monthly`.
    pub fn to_columns(self) -> (&'static str, Option<i64>) {
        match self {
            Interval::Daily => ("daily", None),
            Interval::Monthly { day } => ("monthly", Some(i64::from(day))),
        }
    }
}

impl Refill {
    /// From its columns; `None` when there is no refill, or the stored one is not valid.
    pub fn from_columns(
        amount: Option<i64>,
        interval: Option<&str>,
        day: Option<i64>,
    ) -> Option<Refill> {
        let interval = match (interval?, day) {
            ("daily", _) => Interval::Daily,
            ("monthly", Some(day)) => Interval::monthly(u8::try_from(day).ok()?)?,
            _ => return None,
        };
        Refill::new(amount?, interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const DAILY: Refill = Refill {
        amount: 10,
        interval: Interval::Daily,
    };

    fn monthly(day: u8) -> Refill {
        Refill {
            interval: Interval::Monthly { day },
            ..DAILY
        }
    }

    fn ms(y: i32, m: u32, d: u32) -> i64 {
        let midnight = NaiveDate::from_ymd_opt(y, m, d).and_then(|d| d.and_hms_opt(0, 0, 0));
        midnight.map_or(i64::MIN, |t| t.and_utc().timestamp_millis())
    }

    #[test]
    fn daily_periods_start_at_utc_midnight() {
        assert_eq!(DAILY.period_of(0), 0);
        assert_eq!(DAILY.period_of(DAY_MS - 1), 0);
        assert_eq!(DAILY.period_of(DAY_MS), 1);
        assert_eq!(DAILY.period_of(-1), -1);
        assert_eq!(DAILY.next_refill_at(DAY_MS), 2 * DAY_MS);
        assert_eq!(DAILY.next_refill_at(-1), 0);
        assert_eq!(period(None, 123_456_789), 0);
    }

    #[test]
    fn monthly_day_past_month_end_uses_last_day() {
        let r = monthly(31);
        let feb = r.period_of(ms(2023, 2, 28));
        assert_eq!(r.period_of(ms(2023, 2, 28) - 1), feb - 1);
        assert_eq!(r.period_of(ms(2023, 3, 31) - 1), feb);
        assert_eq!(r.period_of(ms(2023, 3, 31)), feb + 1);
        assert_eq!(r.next_refill_at(ms(2023, 2, 27)), ms(2023, 2, 28));
        assert_eq!(r.next_refill_at(ms(2023, 2, 28)), ms(2023, 3, 31));
        assert_eq!(r.next_refill_at(ms(2023, 4, 1)), ms(2023, 4, 30));
        assert_eq!(r.next_refill_at(ms(2024, 2, 28)), ms(2024, 2, 29));
        assert_eq!(monthly(30).next_refill_at(ms(2024, 2, 1)), ms(2024, 2, 29));
        assert_eq!(monthly(29).next_refill_at(ms(2100, 2, 1)), ms(2100, 2, 28));
    }

    #[test]
    fn monthly_day_one_and_midnight_belongs_to_new_period() {
        let (r, jan) = (monthly(1), ms(2024, 1, 1));
        assert_eq!(r.period_of(0), 0);
        assert_eq!(r.period_of(jan), 54 * 12);
        assert_eq!(r.period_of(jan - 1), 54 * 12 - 1);
        assert_eq!(r.next_refill_at(jan - 1), jan);
        assert_eq!(r.next_refill_at(jan), ms(2024, 2, 1));
        assert_eq!(monthly(15).period_of(ms(1970, 1, 14)), -1);
    }

    #[test]
    fn validation_and_retry_after() {
        assert_eq!(Interval::monthly(0), None);
        assert_eq!(Interval::monthly(32), None);
        assert!(Interval::monthly(31).is_some_and(|i| i.is_valid()));
        assert_eq!(Refill::new(-1, Interval::Daily), None);
        assert_eq!(retry_after_secs(None, 0), None);
        assert_eq!(retry_after_secs(Some(&DAILY), DAY_MS - 1), Some(1));
        assert_eq!(retry_after_secs(Some(&DAILY), DAY_MS - 1001), Some(2));
        assert_eq!(retry_after_secs(Some(&DAILY), 0), Some(86_400));
    }

    #[test]
    fn extreme_times_stay_total() {
        for now in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
            for r in [DAILY, monthly(31), monthly(0), monthly(200)] {
                assert!(r.next_refill_at(now) >= now);
                assert!(r.period_of(now) <= r.period_of(now.saturating_add(DAY_MS)));
            }
        }
    }

    #[test]
    fn lease_never_exceeds_pool() {
        let (pool, grant) = Pool::new(5, None, 0).lease(None, 0, 10);
        assert_eq!((grant.granted, pool.remaining, grant.pool_after), (5, 0, 0));
        assert_eq!(pool.lease(None, 0, 10).1.granted, 0);
        assert_eq!(Pool::new(5, None, 0).lease(None, 0, -3).1.granted, 0);
    }

    #[test]
    fn refill_sets_remaining_once_per_period_and_never_backwards() {
        let r = Some(&DAILY);
        let mut pool = Pool::new(3, None, 0);
        pool.period = 5;
        assert_eq!(pool.refreshed(r, 4 * DAY_MS), pool);
        assert_eq!(pool.refreshed(r, 5 * DAY_MS + 1), pool);
        let next = pool.refreshed(r, 7 * DAY_MS);
        assert_eq!((next.remaining, next.period), (10, 7));
        assert_eq!(next.lease(r, 6 * DAY_MS, 4).0.remaining, 6);
    }

    #[test]
    fn a_fresh_local_takes_a_grant_from_before_1970() {
        let (r, then) = (Some(&DAILY), -5 * DAY_MS);
        let (_, g) = Pool::new(10, r, then).lease(r, then, 3);
        assert_eq!(g.period, -5);
        assert_eq!(Local::default().absorb_and_spend(&g, 1), Ok(9));
    }

    #[test]
    fn a_lagging_clock_still_admits_from_the_new_period() {
        let r = Some(&DAILY);
        let (pool, g) = Pool::new(2, r, 0).lease(r, 0, 2);
        let mut local = Local::default();
        assert_eq!(local.absorb_and_spend(&g, 0), Ok(2));
        // This instance still thinks it is day 0; the store is already on day 1.
        assert_eq!(local.try_spend(0, 0, 3), Spend::NeedLease { want: 3 });
        let (_, g) = pool.lease(r, DAY_MS, 3);
        assert_eq!(local.absorb_and_spend(&g, 3), Ok(7));
    }

    #[test]
    fn give_back_is_void_once_the_window_ends() {
        let r = Some(&DAILY);
        let (pool, g) = Pool::new(10, r, 0).lease(r, 0, 8);
        let back = |p: Pool, now| p.give_back(r, now, g.generation, g.period, 5).remaining;
        assert_eq!(back(pool, 10), 7);
        assert_eq!(back(pool, DAY_MS), 10);
        assert_eq!(back(pool.set(r, 10, 1), 10), 1);
    }

    #[test]
    fn set_voids_leases_and_add_keeps_them() {
        let mut local = Local::default();
        let (pool, old) = Pool::new(100, None, 0).lease(None, 0, 10);
        assert_eq!(local.absorb_and_spend(&old, 1), Ok(99));
        let pool = pool.add(None, 0, 5);
        assert_eq!(pool.remaining, 95);
        let spent = Spend::Spent { remaining_hint: 98 };
        assert_eq!(local.try_spend(pool.generation, 0, 1), spent);
        let pool = pool.set(None, 0, 3);
        assert_eq!((pool.generation, pool.remaining), (1, 3));
        assert_eq!(local.try_spend(1, 0, 1), Spend::NeedLease { want: 5 });
        assert_eq!(local.unspent, 0);
        let (pool, g) = pool.lease(None, 0, 5);
        assert_eq!(local.absorb_and_spend(&g, 1), Ok(2));
        // A grant from before the reset, arriving late, must not be spent.
        let late = Grant { granted: 50, ..old };
        assert_eq!(local.absorb_and_spend(&late, 3), Err(Exhausted));
        assert_eq!((local.generation, local.unspent, pool.remaining), (1, 2, 0));
    }

    #[test]
    fn block_size_shrinks_with_the_pool() {
        assert_eq!(block_size(0, 1), 1);
        assert_eq!(block_size(31, 1), 1);
        assert_eq!(block_size(32, 1), 2);
        assert_eq!(block_size(-7, 0), 1);
        assert_eq!(block_size(0, 5), 5);
        assert_eq!(block_size(i64::MAX, 1), MAX_BLOCK);
        assert_eq!(block_size(i64::MAX, MAX_COST), MAX_BLOCK);
    }

    #[test]
    fn cost_zero_always_spends() {
        let mut local = Local {
            unspent: i64::MIN,
            ..Local::default()
        };
        assert_eq!(local.try_spend(9, 9, 0), Spend::Spent { remaining_hint: 0 });
        let (_, empty) = Pool::new(0, None, 0).lease(None, 0, 5);
        assert_eq!(local.absorb_and_spend(&empty, 0), Ok(0));
        assert!(matches!(local.try_spend(0, 0, 1), Spend::NeedLease { .. }));
    }

    #[test]
    fn lone_instance_spends_the_last_credit() {
        let (mut pool, mut local, mut admitted) = (Pool::new(37, None, 0), Local::default(), 0);
        for _ in 0..50 {
            let ok = match local.try_spend(0, 0, 1) {
                Spend::Spent { .. } => true,
                Spend::NeedLease { want } => {
                    let (next, grant) = pool.lease(None, 0, want);
                    pool = next;
                    local.absorb_and_spend(&grant, 1).is_ok()
                }
            };
            admitted += i64::from(ok);
        }
        assert_eq!((admitted, pool.remaining, local.unspent), (37, 0, 0));
    }

    #[derive(Clone, Debug)]
    enum Ev {
        Req(usize, i64, bool),
        Crash(usize),
        Stop(usize),
        Advance(i64),
        Add(i64),
        Set(i64),
    }

    #[derive(Debug, Default)]
    struct Window {
        budget: i64,
        admitted: i64,
        crashes: i64,
    }

    /// The store, the instances, and a ledger of what each window had, kept
    /// independently of the code under test.
    struct Sim {
        refill: Option<Refill>,
        now: i64,
        pool: Pool,
        locals: Vec<Local>,
        windows: BTreeMap<(i64, i64), Window>,
    }

    fn found<T>(entry: Option<T>) -> Result<T, TestCaseError> {
        entry.ok_or_else(|| TestCaseError::fail("missing entry"))
    }

    fn pool_window(p: &Pool) -> (i64, i64) {
        (p.generation, p.period)
    }

    fn lease_window(l: &Local) -> (i64, i64) {
        (l.generation, l.period)
    }

    impl Sim {
        fn new(
            refill: Option<Refill>,
            now: i64,
            initial: i64,
            n: usize,
        ) -> Result<Sim, TestCaseError> {
            let pool = Pool::new(initial, refill.as_ref(), now);
            let (locals, windows) = (vec![Local::default(); n], BTreeMap::new());
            let mut sim = Sim {
                refill,
                now,
                pool,
                locals,
                windows,
            };
            sim.open(pool_window(&pool), initial)?;
            Ok(sim)
        }

        fn current(&self) -> Pool {
            self.pool.refreshed(self.refill.as_ref(), self.now)
        }

        fn open(&mut self, key: (i64, i64), budget: i64) -> Result<(), TestCaseError> {
            let fresh = self.windows.insert(key, Window::default()).is_none();
            prop_assert!(fresh, "window reopened");
            found(self.windows.get_mut(&key))?.budget = budget;
            Ok(())
        }

        /// Records the window that a lazy refill is about to open.
        fn note_refill(&mut self) -> Result<(), TestCaseError> {
            let cur = self.current();
            if pool_window(&cur) != pool_window(&self.pool) {
                prop_assert_eq!(Some(cur.remaining), self.refill.map(|r| r.amount));
                self.open(pool_window(&cur), cur.remaining)?;
            }
            Ok(())
        }

        fn local(&mut self, i: usize) -> Result<&mut Local, TestCaseError> {
            let n = self.locals.len().max(1);
            found(self.locals.get_mut(i % n))
        }

        fn request(&mut self, i: usize, cost: i64, stale: bool) -> Result<bool, TestCaseError> {
            let known_generation = if stale { 0 } else { self.pool.generation };
            let (cur, p) = (self.current(), period(self.refill.as_ref(), self.now));
            let mut l = *self.local(i)?;
            let admitted = match l.try_spend(known_generation, p, cost) {
                Spend::Spent { .. } => {
                    let live = lease_window(&l) == pool_window(&cur);
                    prop_assert!(stale || cost == 0 || live, "spent a void lease");
                    true
                }
                Spend::NeedLease { want } => {
                    prop_assert!(cost > 0 && want >= cost && l.unspent + want <= MAX_BLOCK);
                    self.note_refill()?;
                    let (pool, grant) = self.pool.lease(self.refill.as_ref(), self.now, want);
                    prop_assert!((0..=want).contains(&grant.granted));
                    prop_assert_eq!(grant.granted, cur.remaining - pool.remaining);
                    self.pool = pool;
                    let ok = l.absorb_and_spend(&grant, cost).is_ok();
                    // Refused only when the window is dry both here and in the pool.
                    prop_assert!(ok || (pool.remaining == 0 && l.unspent < cost));
                    ok
                }
            };
            if admitted && cost > 0 {
                found(self.windows.get_mut(&lease_window(&l)))?.admitted += cost;
            }
            *self.local(i)? = l;
            Ok(admitted)
        }

        fn apply(&mut self, ev: &Ev) -> Result<(), TestCaseError> {
            let (refill, now) = (self.refill, self.now);
            match *ev {
                Ev::Req(i, cost, stale) => {
                    prop_assert!(self.request(i, cost, stale)? || cost > 0);
                }
                Ev::Crash(i) => {
                    let l = std::mem::take(self.local(i)?);
                    if l.unspent > 0 {
                        found(self.windows.get_mut(&lease_window(&l)))?.crashes += 1;
                    }
                }
                Ev::Stop(i) => {
                    self.note_refill()?;
                    let l = std::mem::take(self.local(i)?);
                    let (g, p, u) = (l.generation, l.period, l.unspent);
                    self.pool = self.pool.give_back(refill.as_ref(), now, g, p, u);
                }
                Ev::Advance(dt) => self.now += dt,
                Ev::Add(n) => {
                    self.note_refill()?;
                    self.pool = self.pool.add(refill.as_ref(), now, n);
                    found(self.windows.get_mut(&pool_window(&self.pool)))?.budget += n;
                }
                Ev::Set(v) => {
                    self.pool = self.pool.set(refill.as_ref(), now, v);
                    self.open(pool_window(&self.pool), v)?;
                }
            }
            Ok(())
        }

        /// Credits of the live window that are neither admitted, in the pool,
        /// nor held by a running instance: only crashes may account for them.
        fn check(&self) -> Result<(), TestCaseError> {
            prop_assert!(self.pool.remaining >= 0);
            for w in self.windows.values() {
                prop_assert!(w.admitted <= w.budget, "overspent: {:?}", w);
            }
            for l in &self.locals {
                prop_assert!((0..=MAX_BLOCK).contains(&l.unspent));
            }
            let key = pool_window(&self.pool);
            if pool_window(&self.current()) == key {
                let w = found(self.windows.get(&key))?;
                let mine = self.locals.iter().filter(|l| lease_window(l) == key);
                let held: i64 = mine.map(|l| l.unspent).sum();
                let lost = w.budget - w.admitted - self.pool.remaining - held;
                let bound = w.crashes * MAX_BLOCK;
                prop_assert!((0..=bound).contains(&lost), "lost {} in {:?}", lost, w);
            }
            Ok(())
        }
    }

    fn budget() -> impl Strategy<Value = i64> {
        prop_oneof![6 => 0..=40i64, 3 => 0..=400i64, 1 => 0..=30_000i64]
    }

    fn refill() -> impl Strategy<Value = Option<Refill>> {
        prop_oneof![
            Just(None),
            budget().prop_map(|a| Refill::new(a, Interval::Daily)),
            (budget(), 1u8..=31).prop_map(|(a, day)| Refill::new(a, Interval::Monthly { day })),
        ]
    }

    fn event(crashes: bool) -> impl Strategy<Value = Ev> {
        let crash = move |i| if crashes { Ev::Crash(i) } else { Ev::Stop(i) };
        let request = (0..5usize, 0..=3i64, prop::bool::weighted(0.1));
        prop_oneof![
            12 => request.prop_map(|(i, cost, stale)| Ev::Req(i, cost, stale)),
            1 => (0..5usize).prop_map(crash),
            1 => (0..5usize).prop_map(Ev::Stop),
            2 => prop_oneof![0..=7_200_000i64, 0..=40 * DAY_MS].prop_map(Ev::Advance),
            1 => (0..=100i64).prop_map(Ev::Add),
            1 => budget().prop_map(Ev::Set),
        ]
    }

    /// Runs the events, then stops every other instance and drains the live
    /// window from the first: without a crash in it, every credit is admitted.
    fn run(mut sim: Sim, events: &[Ev]) -> Result<(), TestCaseError> {
        sim.check()?;
        for ev in events {
            sim.apply(ev)?;
            sim.check()?;
        }
        for i in 1..sim.locals.len() {
            sim.apply(&Ev::Stop(i))?;
        }
        sim.note_refill()?;
        sim.pool = sim.current();
        let key = pool_window(&sim.pool);
        let left = sim.windows.get(&key).map_or(0, |w| w.budget - w.admitted);
        let mut refused = false;
        for _ in 0..=left {
            refused = !sim.request(0, 1, false)?;
            sim.check()?;
            if refused {
                break;
            }
        }
        prop_assert!(refused, "admitted more than the window had");
        let w = found(sim.windows.get(&key))?;
        prop_assert!(w.crashes > 0 || w.admitted == w.budget, "stranded: {:?}", w);
        Ok(())
    }

    const START: std::ops::Range<i64> = 1_577_836_800_000..1_893_456_000_000;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn refill_schedule_is_consistent(
            now in -5_000_000_000_000i64..10_000_000_000_000,
            dt in 0..100 * DAY_MS,
            day in 1u8..=31,
        ) {
            for r in [DAILY, monthly(day)] {
                let (p, next) = (r.period_of(now), r.next_refill_at(now));
                prop_assert!(next > now && next.rem_euclid(DAY_MS) == 0);
                prop_assert_eq!(r.period_of(next), p + 1);
                prop_assert_eq!(r.period_of(next - 1), p);
                prop_assert!(p <= r.period_of(now + dt));
            }
            let date = date_from_days(monthly(day).next_refill_at(now) / DAY_MS);
            let last_of_month = date.succ_opt().is_some_and(|d| d.day() == 1);
            let wanted = u32::from(day);
            prop_assert!(date.day() == wanted || (date.day() < wanted && last_of_month));
        }

        #[test]
        fn simulation_never_overspends_and_bounds_loss(
            refill in refill(), start in START, initial in budget(), n in 1..=5usize,
            events in vec(event(true), 0..=200),
        ) {
            run(Sim::new(refill, start, initial, n)?, &events)?;
        }

        #[test]
        fn simulation_without_crashes_loses_nothing(
            refill in refill(), start in START, initial in budget(), n in 1..=5usize,
            events in vec(event(false), 0..=200),
        ) {
            run(Sim::new(refill, start, initial, n)?, &events)?;
        }
    }
}
