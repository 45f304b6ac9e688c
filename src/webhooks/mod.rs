//! Events out (docs/api.md §15): the worker that delivers the webhook outbox, and the scan
//! that notices keys about to expire. Every instance runs both; the store's claims keep two
//! instances from sending the same message at once, and its notices from sending one twice.

pub mod client;

use crate::store::{disable_after, AfterAttempt, AttemptResult, ClaimedMessage, Store};
use client::Sender;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How often the outbox is read for due messages.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// A claimed message is this instance's alone for this long: longer than a try can take, so
/// a claim runs out only when its instance stopped (a crash), and then another sends it.
const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// Most tries in flight per instance.
const MAX_IN_FLIGHT: usize = 32;
const NOTICES_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `HEFFL_WEBHOOK_ALLOW_PRIVATE`: send to private and local addresses too.
    pub allow_private: bool,
    /// `HEFFL_WEBHOOK_RETRY_SCALE`: multiplies the gaps between tries (tests shrink them).
    pub retry_scale: f64,
}

/// Delivers due messages until the task is dropped.
pub async fn deliver(store: Store, settings: Settings) {
    let sender = match Sender::new(settings.allow_private) {
        Ok(sender) => sender,
        Err(err) => {
            tracing::error!(error = %err, "webhooks cannot be sent: the HTTP client did not start");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut interval = tokio::time::interval(POLL_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let free = slots.available_permits();
        if free == 0 {
            continue;
        }
        let claimed = match store
            .webhooks()
            .claim_due_messages(CLAIM_LEASE, i64::try_from(free).unwrap_or(1))
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(error = %err, "reading the webhook outbox failed; will retry");
                continue;
            }
        };
        for message in claimed {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let store = store.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                attempt(&store, &sender, &message, settings).await;
                drop(slot);
            });
        }
    }
}

async fn attempt(store: &Store, sender: &Sender, message: &ClaimedMessage, settings: Settings) {
    let destination = match store
        .webhooks()
        .destination(&message.workspace_id, &message.endpoint_id)
        .await
    {
        Ok(Some(destination)) => destination,
        // Deleted with its messages since the claim.
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(error = %err, "reading a webhook endpoint failed; will retry");
            return;
        }
    };
    let result = if destination.disabled {
        AttemptResult::NotSent {
            error: "the endpoint is disabled".into(),
        }
    } else {
        sender.send(&destination, message).await
    };
    let outcome = match &result {
        AttemptResult::Delivered { .. } => "delivered",
        AttemptResult::Failed { .. } => "failed",
        AttemptResult::NotSent { .. } => "not_sent",
    };
    metrics::counter!("heffl_webhook_attempts_total", "outcome" => outcome).increment(1);
    let scale = settings.retry_scale;
    match store
        .webhooks()
        .finish_attempt(message, &result, scale, disable_after(scale))
        .await
    {
        Ok(AfterAttempt::Failed) => {
            tracing::warn!(message_id = %message.id, endpoint_id = %message.endpoint_id, "webhook message failed after its last try");
        }
        Ok(AfterAttempt::Lost) => {
            tracing::warn!(message_id = %message.id, "a webhook try outlasted its claim; another instance owns the message");
        }
        Ok(AfterAttempt::Delivered | AfterAttempt::RetryIn(_)) => {}
        // The claim runs out and the message is tried again: sent twice rather than lost.
        Err(err) => tracing::warn!(error = %err, "recording a webhook try failed"),
    }
}

/// Sends `api_key.expiring` notices as keys come within 7 days, then 1 day, of expiring.
pub async fn notice_expiring_keys(store: Store) {
    let mut interval = tokio::time::interval(NOTICES_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(err) = store.webhooks().send_expiry_notices().await {
            tracing::warn!(error = %err, "sending key expiry notices failed; will retry");
        }
    }
}
