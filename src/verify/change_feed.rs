//! Keeps this process's verification cache in step with changes made by other processes on the
//! same database (other `serve` instances, the operator CLI): LISTEN/NOTIFY on PostgreSQL,
//! a poll of the `key_events` log on SQLite. While the feed is down the cache is bypassed.

use super::{Invalidation, Verifier, NOTIFY_CHANNEL};
use crate::domain::time::Timestamp;
use crate::store::{AppliesKeyChanges, Backend};
use sqlx::postgres::PgListener;
use std::time::Duration;

const SQLITE_POLL_INTERVAL: Duration = Duration::from_millis(200);
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
const PRUNE_EVERY: Duration = Duration::from_secs(600);
const KEEP_EVENTS_MS: i64 = 3_600_000;

/// Runs until the task is aborted.
pub async fn run(store: Verifier) {
    match store.store.backend() {
        Backend::Postgres => listen(store).await,
        Backend::Sqlite => poll(store).await,
    }
}

fn apply(store: &Verifier, subject: &str) {
    match Invalidation::decode(subject) {
        Some(change) => store.apply_change(&change),
        // Unknown to this version: the safe answer is to forget everything.
        None => store.key_cache().clear(),
    }
}

/// The feed is down: neither the cache nor the set of known keys can be trusted.
fn set_down(store: &Verifier) {
    store.key_cache().set_live(false);
    store.known_keys().set_stale();
}

async fn listen(store: Verifier) {
    let cache = store.key_cache();
    loop {
        let connected = async {
            let mut listener = PgListener::connect(store.store.url()).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            // After LISTEN: a key created meanwhile is in the load or in a notification.
            store.load_known_keys().await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "cache change listener cannot connect; cache bypassed");
                set_down(&store);
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        // Whatever changed while we were not listening is unknown: start from empty.
        cache.clear();
        cache.set_live(true);
        metrics::counter!("heffl_change_feed_connects_total").increment(1);
        tracing::info!("cache change listener connected");
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => apply(&store, notification.payload()),
                Ok(None) => {
                    tracing::warn!("cache change listener lost its connection; cache bypassed");
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cache change listener failed; cache bypassed");
                    break;
                }
            }
        }
        set_down(&store);
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

async fn poll(store: Verifier) {
    let cache = store.key_cache();
    let mut last_seen: Option<i64> = None;
    let mut interval = tokio::time::interval(SQLITE_POLL_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let result = match last_seen {
            // The position first: a key created meanwhile is in the load or after `seq`.
            None => match store.latest_key_event().await {
                Ok(seq) => store.load_known_keys().await.map(|()| {
                    cache.clear();
                    last_seen = Some(seq);
                }),
                Err(err) => Err(err),
            },
            Some(seq) => store.key_events_after(seq).await.map(|events| {
                for (seq, subject) in events {
                    apply(&store, &subject);
                    last_seen = Some(seq);
                }
            }),
        };
        match result {
            Ok(()) => {
                if !cache.is_live() {
                    cache.set_live(true);
                }
            }
            Err(err) => {
                if cache.is_live() {
                    tracing::warn!(error = %err, "cannot read key events; cache bypassed");
                }
                set_down(&store);
                // Re-read the position: events may have been pruned meanwhile.
                last_seen = None;
            }
        }
    }
}

/// Deletes old `key_events` rows now and then; every instance may do it, it is idempotent.
pub async fn prune(store: Verifier) {
    let mut interval = tokio::time::interval(PRUNE_EVERY);
    loop {
        interval.tick().await;
        let cutoff = Timestamp(Timestamp::now().0 - KEEP_EVENTS_MS);
        if let Err(err) = store.prune_key_events(cutoff).await {
            tracing::debug!(error = %err, "pruning key events failed; will retry");
        }
    }
}
