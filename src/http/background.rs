//! The server's housekeeping tasks: the cache change feed, usage flushes, credit reports,
//! webhook deliveries and expiry notices, and pruning. They run while the server runs; at shutdown they stop, the last usage is flushed
//! and unspent credits are given back.

use crate::domain::time::Timestamp;
use crate::domain::usage_series::DAY_MS;
use crate::http::state::AppState;
use crate::store::Store;
use crate::verify::change_feed;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const PRUNE_LIMITERS_EVERY: Duration = Duration::from_secs(60);
/// Buckets are hourly; pruning more often would find nothing new.
const PRUNE_USAGE_EVERY: Duration = Duration::from_secs(3600);
/// What this instance holds of keys' credits is counted as remaining by the API: reported
/// this often, so a read is at most a few seconds behind the requests served.
const REPORT_CREDITS_EVERY: Duration = Duration::from_secs(1);
/// Every lease row is rewritten now and then, unchanged or not, so that the rows of a live
/// instance never look like those of one that crashed (store::credits, a minute).
const TOUCH_LEASES_EVERY_TICKS: u32 = 20;

pub struct Background {
    tasks: Vec<JoinHandle<()>>,
}

pub fn spawn(state: &AppState) -> Background {
    let mut tasks = vec![
        tokio::spawn(change_feed::run(state.verifier.clone())),
        tokio::spawn(change_feed::prune(state.verifier.clone())),
        tokio::spawn(state.shared_limits.clone().run()),
    ];

    let events = crate::webhooks::Settings {
        allow_private: state.config.webhook_allow_private,
        retry_scale: state.config.webhook_retry_scale,
    };
    tasks.push(tokio::spawn(crate::webhooks::deliver(
        Store::clone(&state.store),
        events,
    )));
    tasks.push(tokio::spawn(crate::webhooks::notice_expiring_keys(
        Store::clone(&state.store),
    )));
    if let Some(worker) = crate::http::outbox::worker(state) {
        tasks.push(tokio::spawn(worker));
    }

    let flusher = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut interval = tokio::time::interval(flusher.config.usage_flush_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            // Requests time their usage from readings they already took (`Timestamp::at`);
            // a step of the system clock reaches those times here.
            Timestamp::reanchor();
            if let Err(err) = flusher.usage.flush(&flusher.store).await {
                metrics::counter!("heffl_usage_flush_failures_total").increment(1);
                tracing::warn!(error = %err, "usage flush failed; will retry");
            }
        }
    }));

    let credits = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut interval = tokio::time::interval(REPORT_CREDITS_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u32 = 0;
        loop {
            interval.tick().await;
            ticks = ticks.wrapping_add(1);
            if ticks.is_multiple_of(TOUCH_LEASES_EVERY_TICKS) {
                credits.credits.touch_all();
            }
            if let Err(err) = credits.credits.report(&credits.store).await {
                metrics::counter!("heffl_credit_report_failures_total").increment(1);
                tracing::warn!(error = %err, "credit lease report failed; will retry");
            }
        }
    }));

    let usage_pruner = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut interval = tokio::time::interval(PRUNE_USAGE_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let retention_ms = i64::from(usage_pruner.config.usage_retention_days) * DAY_MS;
            let older_than = Timestamp(Timestamp::now().0 - retention_ms);
            match usage_pruner.store.usage().prune(older_than).await {
                Ok(0) => {}
                Ok(rows) => tracing::info!(rows, "pruned key usage past its retention"),
                Err(err) => tracing::warn!(error = %err, "usage pruning failed; will retry"),
            }
            if let Some(retention) = usage_pruner.config.audit_retention {
                let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
                let older_than = Timestamp(Timestamp::now().0.saturating_sub(retention_ms));
                match usage_pruner.store.audit().prune(older_than).await {
                    Ok(0) => {}
                    Ok(rows) => {
                        tracing::info!(rows, "pruned audit events past HEFFL_AUDIT_RETENTION")
                    }
                    Err(err) => tracing::warn!(error = %err, "audit pruning failed; will retry"),
                }
            }
        }
    }));

    let pruner = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut interval = tokio::time::interval(PRUNE_LIMITERS_EVERY);
        loop {
            interval.tick().await;
            let now = Instant::now();
            pruner.key_limits.prune(now);
            pruner.auth_throttle.prune(now);
            pruner.leak_reports.prune(now);
            pruner.login_throttle.prune(now);
            pruner.reset_throttle.prune(now);
            pruner.resends.prune(now);
        }
    }));
    Background { tasks }
}

impl Background {
    pub async fn stop(self, state: &AppState) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        match state.usage.flush(&state.store).await {
            Ok(keys) => tracing::info!(keys, "flushed key usage"),
            Err(err) => tracing::warn!(error = %err, "final usage flush failed"),
        }
        match state.credits.give_back_all(&state.store).await {
            Ok(0) => {}
            Ok(keys) => tracing::info!(keys, "gave unspent credits back"),
            Err(err) => {
                tracing::warn!(error = %err, "unspent credits could not be given back; they are lost")
            }
        }
    }
}
