//! PostgreSQL only: cache misses looked up in batches. A miss while no lookup is in flight is
//! asked for at once, by the request itself (a lone miss waits for nothing and pays for no
//! extra task). A miss while one is in flight queues its digest; a dispatcher task takes every
//! digest queued at that moment (up to `MAX_BATCH`) and asks for them all in one
//! `WHERE k.digest = ANY($1)` query, then hands each waiting request its own row. Under load one
//! round trip, one TLS record each way and one wake-up serve many misses, which is where a
//! miss's CPU went (docs/dev/performance.md).
//!
//! At most `max_connections` batches run at once; while they all wait on the database, new
//! misses gather for the next one. Same SQL filter and joins as the single lookup, on the
//! primary, through the native pool (no test query before each use, one retry on a connection
//! found closed).

use super::lookup::{key_principal_select, KeyCredits, KeyPrincipalRow};
use crate::domain::permissions::Role;
use crate::verify::memo::KeyMemo;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// More digests than this wait for the next query: a bound on one statement's size and on the
/// latency of the requests at the front of the queue.
const MAX_BATCH: usize = 128;

type Answer = Result<Option<KeyPrincipalRow>, sqlx::Error>;

struct Waiter {
    digest: [u8; 32],
    answer: oneshot::Sender<Answer>,
}

pub(crate) struct KeyLookupBatcher {
    pool: PgPool,
    /// Batches running at once: the pool's size, so that a batch never waits for a connection.
    permits: Arc<Semaphore>,
    /// The dispatcher is started on the first queued miss, inside the runtime serving requests.
    queue: Mutex<Option<mpsc::UnboundedSender<Waiter>>>,
    /// Queries in flight, direct and batched: a miss goes direct only when this is 0.
    in_flight: Arc<AtomicUsize>,
    queries: Arc<AtomicU64>,
}

impl KeyLookupBatcher {
    pub(crate) fn new(pool: PgPool, max_connections: u32) -> KeyLookupBatcher {
        KeyLookupBatcher {
            pool,
            permits: Arc::new(Semaphore::new(max_connections.max(1) as usize)),
            queue: Mutex::new(None),
            in_flight: Arc::default(),
            queries: Arc::default(),
        }
    }

    /// What `digest` resolves to: asked for at once when no lookup is in flight, else from the
    /// next batch.
    pub(crate) async fn lookup(&self, digest: &[u8; 32]) -> Answer {
        if let Ok(0) = self
            .in_flight
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        {
            let _in_flight = InFlight(Arc::clone(&self.in_flight));
            self.queries.fetch_add(1, Ordering::Relaxed);
            return query_one(&self.pool, digest).await;
        }
        let (answer, answered) = oneshot::channel();
        self.enqueue(Waiter {
            digest: *digest,
            answer,
        });
        // Dropped unanswered only when the runtime is shutting down.
        answered.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }

    fn enqueue(&self, waiter: Waiter) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let waiter = match queue.as_ref() {
            Some(sender) => match sender.send(waiter) {
                Ok(()) => return,
                // Its runtime ended (a test's): start another in this one.
                Err(mpsc::error::SendError(waiter)) => waiter,
            },
            None => waiter,
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(Dispatcher {
            pool: self.pool.clone(),
            permits: Arc::clone(&self.permits),
            in_flight: Arc::clone(&self.in_flight),
            queries: Arc::clone(&self.queries),
            receiver,
        }));
        // The receiver is alive: it was just made.
        let _ = sender.send(waiter);
        *queue = Some(sender);
    }

    /// Database queries made for key lookups since start-up (each may answer many misses).
    pub(crate) fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

/// Counts a query in flight until dropped, however its request ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Dispatcher {
    pool: PgPool,
    permits: Arc<Semaphore>,
    in_flight: Arc<AtomicUsize>,
    queries: Arc<AtomicU64>,
    receiver: mpsc::UnboundedReceiver<Waiter>,
}

async fn dispatch(mut this: Dispatcher) {
    while let Some(first) = this.receiver.recv().await {
        let Ok(permit) = Arc::clone(&this.permits).acquire_owned().await else {
            return;
        };
        // One scheduler turn: requests woken by the same readiness event queue their misses.
        tokio::task::yield_now().await;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match this.receiver.try_recv() {
                Ok(waiter) => batch.push(waiter),
                Err(_) => break,
            }
        }
        this.in_flight.fetch_add(1, Ordering::AcqRel);
        let in_flight = InFlight(Arc::clone(&this.in_flight));
        this.queries.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(answer(this.pool.clone(), batch, (permit, in_flight)));
    }
}

/// The row of one digest: the batch's statement with `= $1`, which is cheaper for one digest
/// than an array of one (no array to encode, and a single-row fetch).
async fn query_one(pool: &PgPool, digest: &[u8; 32]) -> Answer {
    let run = || {
        sqlx::query::<sqlx::Postgres>(KEY_PRINCIPAL_ONE)
            .bind(digest.as_slice())
            .fetch_optional(pool)
    };
    let row = retrying_once(run).await?;
    row.as_ref()
        .map(decode)
        .transpose()
        .map(|row| row.map(|(_, row)| row))
}

/// The rows of the keys with these digests, each with its digest.
async fn query(
    pool: &PgPool,
    digests: &[&[u8]],
) -> Result<Vec<([u8; 32], KeyPrincipalRow)>, sqlx::Error> {
    let run = || {
        sqlx::query::<sqlx::Postgres>(KEY_PRINCIPAL_BATCH)
            .bind(digests)
            .fetch_all(pool)
    };
    let rows = retrying_once(run).await?;
    rows.iter().map(decode).collect()
}

/// A pooled connection the server closed (restart, idle timeout) fails with `Io`: the pool
/// drops it, and one retry runs on a fresh one.
async fn retrying_once<T, F, Fut>(run: F) -> Result<T, sqlx::Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    match run().await {
        Err(sqlx::Error::Io(_)) => run().await,
        result => result,
    }
}

async fn answer(pool: PgPool, mut batch: Vec<Waiter>, _running: (OwnedSemaphorePermit, InFlight)) {
    let digests: Vec<&[u8]> = batch.iter().map(|w| w.digest.as_slice()).collect();
    let rows = query(&pool, &digests).await;
    drop(digests);
    let rows = match rows {
        Ok(rows) => rows,
        Err(err) => {
            for waiter in batch {
                let _ = waiter.answer.send(Err(super::shared_error(&err)));
            }
            return;
        }
    };
    let mut found: HashMap<[u8; 32], KeyPrincipalRow> = rows.into_iter().collect();
    // Two requests for one digest in a batch (flights of different epochs) each get the row;
    // the last of them takes it without a copy.
    batch.sort_unstable_by_key(|waiter| waiter.digest);
    let mut waiters = batch.into_iter().peekable();
    while let Some(waiter) = waiters.next() {
        let again = waiters
            .peek()
            .is_some_and(|next| next.digest == waiter.digest);
        let row = if again {
            found.get(&waiter.digest).cloned()
        } else {
            found.remove(&waiter.digest)
        };
        let _ = waiter.answer.send(Ok(row));
    }
}

/// The single lookup's statement (`lookup::KEY_PRINCIPAL`) with `= ANY($1)` for `= $1`, and
/// the digest first, to tell the rows apart.
const KEY_PRINCIPAL_BATCH: &str = concat!(
    "SELECT k.digest, ",
    key_principal_select!(),
    " WHERE k.digest = ANY($1)"
);

const KEY_PRINCIPAL_ONE: &str = concat!(
    "SELECT k.digest, ",
    key_principal_select!(),
    " WHERE k.digest = $1"
);

/// By position, in `KEY_PRINCIPAL_BATCH`'s order: by name, each column is a search.
fn decode(row: &PgRow) -> Result<([u8; 32], KeyPrincipalRow), sqlx::Error> {
    let digest: &[u8] = row.try_get(0)?;
    let digest = <[u8; 32]>::try_from(digest).map_err(|_| sqlx::Error::ColumnDecode {
        index: "digest".into(),
        source: "an api_keys digest is not 32 bytes".into(),
    })?;
    Ok((
        digest,
        KeyPrincipalRow {
            key_id: row.try_get(1)?,
            key_name: row.try_get(2)?,
            workspace_id: row.try_get(3)?,
            workspace_name: row.try_get(4)?,
            user_id: row.try_get(5)?,
            user_email: row.try_get(6)?,
            user_name: row.try_get(7)?,
            user_disabled_at: row.try_get(8)?,
            role: row.try_get::<Option<&str>, _>(9)?.and_then(Role::parse),
            revoked_at: row.try_get(10)?,
            expires_at: row.try_get(11)?,
            scopes: row.try_get(12)?,
            rate_limit_per_minute: row.try_get(13)?,
            disabled_at: row.try_get(14)?,
            allowed_ips: row.try_get(15)?,
            meta: row.try_get(16)?,
            external_id: row.try_get(17)?,
            credits: KeyCredits::from_columns(
                row.try_get(18)?,
                row.try_get(19)?,
                row.try_get(20)?,
                row.try_get::<Option<&str>, _>(21)?,
                row.try_get(22)?,
            ),
            memo: KeyMemo::default(),
        },
    ))
}
