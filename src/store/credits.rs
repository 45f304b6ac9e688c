//! Credits in the database (docs/api.md §14): the pool of unleased credits on each key row, and
//! what each instance holds leased (`credit_leases`). Every change of a pool runs in a serial
//! transaction on the row as it is (`Pool` in `domain::credits` decides), so no two leases can
//! take the same credit, on any number of instances.

use super::sql::Sql;
use super::webhooks::{Event, KeyRef};
use super::{Actor, Backend, Store, Tx};
use crate::domain::credits::{Grant, Local, Pool, Refill};
use crate::domain::ids::{KeyId, WorkspaceId};
use crate::domain::time::Timestamp;
use crate::domain::webhooks::EventType;

/// A lease row not reported for this long belongs to an instance that stopped without giving
/// its credits back (a crash); it no longer counts as remaining.
const STALE_LEASE_MS: i64 = 60_000;

/// A key's credits as stored: the pool, and the refill schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredCredits {
    pub pool: Pool,
    pub refill: Option<Refill>,
}

/// `credits_*` columns, in this order, where a pool is read for a change.
const POOL_COLUMNS: &str = "credits_remaining, credits_period, credits_generation, \
     credits_refill_amount, credits_refill_interval, credits_refill_day";

type PoolRow = (
    Option<i64>,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

fn stored(
    (remaining, period, generation, amount, interval, day): PoolRow,
) -> Option<StoredCredits> {
    Some(StoredCredits {
        pool: Pool {
            remaining: remaining?,
            period,
            generation,
        },
        refill: Refill::from_columns(amount, interval.as_deref(), day),
    })
}

/// What a change to a key's credits asks for (a PATCH, or a create).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditsChange {
    /// Unlimited from now on.
    Remove,
    /// A new budget and schedule: leases of the old budget are void.
    Set {
        remaining: i64,
        refill: Option<Refill>,
    },
    /// More credits in the current budget; leases stay valid.
    Add(i64),
}

/// Keys' credits: the balance, the leases instances take of it, and their return.
pub struct CreditRepo<'s> {
    store: &'s Store,
}

impl Store {
    pub fn credits(&self) -> CreditRepo<'_> {
        CreditRepo { store: self }
    }
}

impl CreditRepo<'_> {
    /// Reads a key's pool for a change, holding its row until the transaction ends on
    /// PostgreSQL (a serial transaction holds SQLite's write lock already).
    pub(crate) async fn for_update(
        &self,
        tx: &mut Tx<'_>,
        key_id: &KeyId,
    ) -> Result<Option<StoredCredits>, sqlx::Error> {
        let lock = match self.store.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let row: Option<PoolRow> = sqlx::query_as(&format!(
            "SELECT {POOL_COLUMNS} FROM api_keys WHERE id = $1{lock}"
        ))
        .bind(key_id)
        .fetch_optional(&mut **tx)
        .await?;
        Ok(row.and_then(stored))
    }

    async fn write_pool(
        &self,
        tx: &mut Tx<'_>,
        key_id: &KeyId,
        pool: Pool,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE api_keys SET credits_remaining = $1, credits_period = $2, \
             credits_generation = $3 WHERE id = $4",
        )
        .bind(pool.remaining)
        .bind(pool.period)
        .bind(pool.generation)
        .bind(key_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Applies a change of a key's credits in the caller's (serial) transaction.
    pub(crate) async fn change_in(
        &self,
        tx: &mut Tx<'_>,
        key_id: &KeyId,
        change: CreditsChange,
        now: Timestamp,
    ) -> Result<(), sqlx::Error> {
        let current = self.for_update(tx, key_id).await?;
        let generation = current.map_or(0, |c| c.pool.generation);
        let (remaining, refill, pool) = match change {
            CreditsChange::Remove => (None, None, None),
            CreditsChange::Set { remaining, refill } => {
                let base = Pool {
                    remaining: 0,
                    period: 0,
                    generation,
                };
                let pool = base.set(refill.as_ref(), now.0, remaining);
                (Some(pool.remaining), refill, Some(pool))
            }
            CreditsChange::Add(n) => {
                let Some(current) = current else {
                    return Ok(());
                };
                let pool = current.pool.add(current.refill.as_ref(), now.0, n);
                (Some(pool.remaining), current.refill, Some(pool))
            }
        };
        let (interval, day) = refill.map(|r| r.interval.to_columns()).unzip();
        let mut sql = Sql::new("UPDATE api_keys SET credits_remaining = ");
        sql.bind(remaining)
            .push(", credits_period = ")
            .bind(pool.map_or(0, |p| p.period))
            // A new generation for anything but an addition: what was leased before is void.
            .push(", credits_generation = ")
            .bind(pool.map_or(generation + 1, |p| p.generation))
            .push(", credits_refill_amount = ")
            .bind(refill.map(|r| r.amount))
            .push(", credits_refill_interval = ")
            .bind(interval)
            .push(", credits_refill_day = ")
            .bind(day.flatten());
        // What "low" is measured against without a refill: the budget as set, and added to.
        match change {
            CreditsChange::Remove => sql.push(", credits_initial = NULL"),
            CreditsChange::Set { .. } => sql.push(", credits_initial = ").bind(remaining),
            CreditsChange::Add(n) => sql
                .push(", credits_initial = COALESCE(credits_initial, 0) + ")
                .bind(n),
        };
        sql.push(" WHERE id = ").bind(key_id);
        let (sql, args) = sql.finish()?;
        sqlx::query_with(&sql, args).execute(&mut **tx).await?;
        if !matches!(change, CreditsChange::Add(_)) {
            sqlx::query("DELETE FROM credit_leases WHERE key_id = $1")
                .bind(key_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// One lease of up to `want` credits for `instance_id`, which holds `local` and is about to
    /// spend `cost`, in one serial transaction that also records what the instance holds after
    /// both. `None` when the key has no credits (any more).
    pub async fn lease(
        &self,
        key_id: &KeyId,
        instance_id: &str,
        (local, cost): (Local, i64),
        want: i64,
        now: Timestamp,
    ) -> Result<Option<Grant>, sqlx::Error> {
        let _timer = super::QueryTimer::start("credit_lease");
        let mut tx = self.store.begin().await?;
        let Some(credits) = self.for_update(&mut tx, key_id).await? else {
            return Ok(None);
        };
        let (pool, grant) = credits.pool.lease(credits.refill.as_ref(), now.0, want);
        if pool != credits.pool {
            self.write_pool(&mut tx, key_id, pool).await?;
        }
        // Rows of instances gone without giving back no longer count as remaining.
        sqlx::query("DELETE FROM credit_leases WHERE key_id = $1 AND updated_at < $2")
            .bind(key_id)
            .bind(now.0 - STALE_LEASE_MS)
            .execute(&mut *tx)
            .await?;
        let mut held = local;
        // Only to know what the instance will hold; the spend itself is the caller's.
        if held.absorb_and_spend(&grant, cost).is_err() {
            held = local;
            let _ = held.absorb_and_spend(&grant, 0);
        }
        write_lease(&mut tx, key_id, instance_id, held, now).await?;
        if pool.remaining < credits.pool.remaining {
            notice_low_credits(&mut tx, key_id, pool, credits.refill.as_ref(), now).await?;
        }
        tx.commit().await?;
        Ok(Some(grant))
    }

    /// What this instance holds of each key, so that the API counts it as remaining; an empty
    /// lease is removed.
    pub async fn report_leases(
        &self,
        instance_id: &str,
        leases: &[(KeyId, Local)],
        now: Timestamp,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.store.begin().await?;
        for (key_id, local) in leases {
            write_lease(&mut tx, key_id, instance_id, *local, now).await?;
        }
        tx.commit().await
    }

    /// A stopping instance's unspent credits go back to their pool, unless their budget has
    /// ended since (`Pool::give_back`).
    pub async fn give_back(
        &self,
        key_id: &KeyId,
        instance_id: &str,
        local: Local,
        now: Timestamp,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.store.begin().await?;
        if let Some(credits) = self.for_update(&mut tx, key_id).await? {
            let pool = credits.pool.give_back(
                credits.refill.as_ref(),
                now.0,
                local.generation,
                local.period,
                local.unspent,
            );
            if pool != credits.pool {
                self.write_pool(&mut tx, key_id, pool).await?;
            }
        }
        sqlx::query("DELETE FROM credit_leases WHERE key_id = $1 AND instance_id = $2")
            .bind(key_id)
            .bind(instance_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
}

/// Sends `api_key.credits_low` once per budget and refill period, when the unleased credits
/// fall under a tenth of the refill amount (or, without a refill, of the credits the key was
/// given). Leased credits count as spent here, so it comes up to one lease (at most a
/// sixteenth of what was left) early.
async fn notice_low_credits(
    tx: &mut Tx<'_>,
    key_id: &KeyId,
    pool: Pool,
    refill: Option<&Refill>,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    type Row = (WorkspaceId, String, String, Option<i64>);
    let Some((workspace_id, name, hint, initial)) = sqlx::query_as::<_, Row>(
        "SELECT workspace_id, name, hint, credits_initial FROM api_keys WHERE id = $1",
    )
    .bind(key_id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(());
    };
    let Some(basis) = refill.map(|r| r.amount).or(initial) else {
        return Ok(());
    };
    if pool.remaining.saturating_mul(10) >= basis {
        return Ok(());
    }
    let notice = format!("credits_low:{}:{}", pool.generation, pool.period);
    if !super::webhooks::insert_notice(tx, key_id, &notice, now).await? {
        return Ok(());
    }
    let key = KeyRef {
        id: key_id,
        name: &name,
        hint: &hint,
    };
    let extra = serde_json::json!({ "remaining": pool.remaining, "threshold": basis / 10 });
    let event = Event::key(
        EventType::ApiKeyCreditsLow,
        &workspace_id,
        key,
        Actor::System,
        extra,
    );
    super::webhooks::emit(tx, event).await
}

/// Replaces what `instance_id` holds of the key; nothing held, no row. (Delete and insert: one
/// statement that both databases run alike.)
async fn write_lease(
    tx: &mut Tx<'_>,
    key_id: &KeyId,
    instance_id: &str,
    local: Local,
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM credit_leases WHERE key_id = $1 AND instance_id = $2")
        .bind(key_id)
        .bind(instance_id)
        .execute(&mut **tx)
        .await?;
    if local.unspent > 0 {
        // Through the key's row: a key deleted meanwhile gets no lease row.
        sqlx::query(
            "INSERT INTO credit_leases \
             (key_id, instance_id, generation, period, unspent, updated_at) \
             SELECT id, $1, $2, $3, $4, $5 FROM api_keys WHERE id = $6",
        )
        .bind(instance_id)
        .bind(local.generation)
        .bind(local.period)
        .bind(local.unspent)
        .bind(now.0)
        .bind(key_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
