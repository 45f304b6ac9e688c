//! This instance's side of credits (docs/api.md §14): the blocks it leased from each key's pool
//! and spends in memory, so that a request spends a credit without a database write. The rules
//! (what a lease may take, when one is void, how big a block is) are `domain::credits`; the
//! pools are the store's (`store::credits`). Here: one lease per key, one database lease in
//! flight per key, a short memory of "nothing left" so a client hammering an exhausted key does
//! not cost a transaction per request, the periodic report of what is held (so the API counts
//! it as remaining), and the give-back at shutdown.
//!
//! Redis plays no part: the pools are in the database, which every instance shares already, so
//! "never more than the credits" holds with Redis or without, up or down.

use crate::domain::credits::{period, Exhausted, Local, Spend};
use crate::domain::ids::{new_id, KeyId};
use crate::domain::time::Timestamp;
use crate::store::Store;
use crate::verify::KeyCredits;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// How long an empty pool is believed before the database is asked again: the delay with
/// which a top-up reaches a key that had run out on this instance.
const EXHAUSTED_FOR_MS: i64 = 1000;

/// One key's lease on this instance.
#[derive(Debug, Default)]
pub struct KeyLease {
    local: Mutex<Local>,
    /// One database lease at a time per key: the loss bound assumes it.
    leasing: tokio::sync::Mutex<()>,
    /// Until then (epoch ms) the key's current budget is known to be spent.
    exhausted_until: AtomicI64,
    /// Changed since the last report.
    dirty: AtomicBool,
}

impl KeyLease {
    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What this instance last knew of the key's remaining credits.
    pub fn remaining_hint(&self) -> i64 {
        self.local().remaining_hint()
    }
}

/// The outcome of a spend that did not wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendNow {
    Spent,
    Exhausted,
    /// The lease is short: `spend` asks the database.
    MustLease,
}

pub struct CreditLedger {
    /// Names this process's rows in `credit_leases`.
    instance_id: String,
    leases: Mutex<HashMap<KeyId, Arc<KeyLease>>>,
}

impl Default for CreditLedger {
    fn default() -> Self {
        CreditLedger {
            instance_id: new_id("inst"),
            leases: Mutex::default(),
        }
    }
}

impl CreditLedger {
    /// The key's lease, shared by every request for it (the cached row keeps a handle, so this
    /// map is read once per row, not per request).
    pub fn lease_of(&self, key_id: &KeyId) -> Arc<KeyLease> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(leases.entry(key_id.clone()).or_default())
    }

    /// The hot path: spends from the lease held, or says why it cannot.
    pub fn spend_now(lease: &KeyLease, budget: &KeyCredits, cost: i64, now_ms: i64) -> SpendNow {
        let current = period(budget.refill.as_ref(), now_ms);
        let mut local = lease.local();
        match local.try_spend(budget.generation, current, cost) {
            Spend::Spent { .. } => {
                lease.dirty.store(true, Ordering::Relaxed);
                SpendNow::Spent
            }
            Spend::NeedLease { .. } if now_ms < lease.exhausted_until.load(Ordering::Relaxed) => {
                SpendNow::Exhausted
            }
            Spend::NeedLease { .. } => SpendNow::MustLease,
        }
    }

    /// Spends `cost`, leasing a block from the key's pool when the lease is short. `Ok(false)`:
    /// not enough credits left in the key's budget.
    pub async fn spend(
        &self,
        store: &Store,
        key_id: &KeyId,
        lease: &KeyLease,
        budget: &KeyCredits,
        cost: i64,
    ) -> Result<bool, sqlx::Error> {
        let _one_at_a_time = lease.leasing.lock().await;
        let now = Timestamp::now();
        // Another request may have leased while this one waited.
        let local = {
            let mut local = lease.local();
            let current = period(budget.refill.as_ref(), now.0);
            match local.try_spend(budget.generation, current, cost) {
                Spend::Spent { .. } => {
                    lease.dirty.store(true, Ordering::Relaxed);
                    return Ok(true);
                }
                Spend::NeedLease { want } => (*local, want),
            }
        };
        let (held, want) = local;
        let grant = store
            .credits()
            .lease(key_id, &self.instance_id, (held, cost), want, now)
            .await?;
        metrics::counter!("heffl_credit_leases_total").increment(1);
        let Some(grant) = grant else {
            // The key's credits were removed: what the next row says decides.
            return Ok(true);
        };
        let spent = lease.local().absorb_and_spend(&grant, cost);
        lease.dirty.store(true, Ordering::Relaxed);
        match spent {
            Ok(_) => Ok(true),
            Err(Exhausted) => {
                lease
                    .exhausted_until
                    .store(now.0 + EXHAUSTED_FOR_MS, Ordering::Relaxed);
                Ok(false)
            }
        }
    }

    /// Writes what changed since the last report to `credit_leases`.
    pub async fn report(&self, store: &Store) -> Result<usize, sqlx::Error> {
        let changed: Vec<(KeyId, Local)> = {
            let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            leases
                .iter()
                .filter(|(_, lease)| lease.dirty.swap(false, Ordering::Relaxed))
                .map(|(key_id, lease)| (key_id.clone(), *lease.local()))
                .collect()
        };
        if !changed.is_empty() {
            store
                .credits()
                .report_leases(&self.instance_id, &changed, Timestamp::now())
                .await?;
        }
        Ok(changed.len())
    }

    /// Every lease held, so that the rows of a live instance never look abandoned.
    pub fn touch_all(&self) {
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        for lease in leases.values() {
            lease.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// At shutdown, after the last request: what is unspent goes back to the pools.
    pub async fn give_back_all(&self, store: &Store) -> Result<usize, sqlx::Error> {
        let held: Vec<(KeyId, Local)> = {
            let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            leases
                .drain()
                .map(|(key_id, lease)| (key_id, std::mem::take(&mut *lease.local())))
                .filter(|(_, local)| local.unspent > 0)
                .collect()
        };
        for (key_id, local) in &held {
            store
                .credits()
                .give_back(key_id, &self.instance_id, *local, Timestamp::now())
                .await?;
        }
        Ok(held.len())
    }
}
