//! The outbox with real processes: an event committed just before a `kill -9` is still
//! delivered after the restart, and two instances on one database deliver each message once.

use crate::common::{query_count, Db};
use crate::on_each_db;
use crate::process_harness::{Deployment, Server};
use crate::webhook_receiver::Receiver;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

const WEBHOOKS_TO_THIS_MACHINE: &[(&str, &str)] = &[
    ("HEFFL_WEBHOOK_ALLOW_HTTP", "true"),
    ("HEFFL_WEBHOOK_ALLOW_PRIVATE", "true"),
    ("HEFFL_RATE_LIMIT_PER_MINUTE", "0"),
];

async fn register(server: &Server, token: &str, workspace_id: &str, url: &str) {
    let (status, body) = server
        .send(
            Method::POST,
            &format!("/app/v1/workspaces/{workspace_id}/webhooks"),
            Some(token),
            Some(json!({ "url": url, "events": ["api_key.created"] })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Each round: a key is created (201) and the server is killed at once, before its worker
/// can have sent the event; after the restart the event arrives.
async fn an_event_committed_before_a_crash_is_delivered_after_restart(db: Db) {
    let Some(deployment) = Deployment::create_with(db, WEBHOOKS_TO_THIS_MACHINE).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let owner = deployment.bootstrap("Acme", "owner@example.com").await;
    let mut server = deployment.serve("before the crash").await;
    let token = server.login_token(&owner.email, &owner.password).await;
    register(&server, &token, &owner.workspace_id, &receiver.url).await;
    let mut created = Vec::new();
    let mut unsent_at_the_crash = 0;
    for round in 0..3 {
        let (id, _) = server
            .create_key(&token, &owner.workspace_id, &format!("Round {round}"))
            .await;
        server.sigkill().await;
        let sent = receiver
            .received()
            .iter()
            .any(|m| m.body["data"]["key"]["id"] == id.as_str());
        if !sent {
            unsent_at_the_crash += 1;
        }
        created.push(id);
        server = deployment.serve("after the crash").await;
    }
    // Otherwise this round tested nothing about crashes.
    assert!(
        unsent_at_the_crash > 0,
        "every event was sent before its crash"
    );
    let received = receiver
        .wait_until("an event for each key", Duration::from_secs(60), |r| {
            created
                .iter()
                .all(|id| r.iter().any(|m| m.body["data"]["key"]["id"] == id.as_str()))
        })
        .await;
    // At least once; a receiver tells repeats apart by `webhook-id`.
    let mut ids: Vec<&str> = received.iter().map(|m| m.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{received:?}");
    server.stop().await;
}

/// Two instances on one database and 20 events: every message reaches the receiver once. The
/// receiver takes longer to answer than the instances take between reads of the outbox, so
/// without claims both would send what is still pending.
async fn two_instances_deliver_each_message_once(db: Db) {
    let Some(deployment) = Deployment::create_with(db, WEBHOOKS_TO_THIS_MACHINE).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.delay(Duration::from_millis(1200));
    let owner = deployment.bootstrap("Acme", "owner@example.com").await;
    let mut first = deployment.serve("first").await;
    let mut second = deployment.serve("second").await;
    let token = first.login_token(&owner.email, &owner.password).await;
    register(&first, &token, &owner.workspace_id, &receiver.url).await;
    const EVENTS: usize = 20;
    // Alternately on each instance; both instances' workers read the one outbox throughout.
    for n in 0..EVENTS {
        let server = if n % 2 == 0 { &first } else { &second };
        server
            .create_key(&token, &owner.workspace_id, &format!("Key {n}"))
            .await;
    }
    let received = receiver
        .wait_until("every event", Duration::from_secs(60), |r| {
            let mut ids: Vec<&str> = r.iter().map(|m| m.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.len() == EVENTS
        })
        .await;
    // Nothing more arrives later either.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received_later = receiver.received();
    assert_eq!(received_later.len(), received.len());
    let mut times: HashMap<&str, usize> = HashMap::new();
    for message in &received_later {
        *times.entry(message.id.as_str()).or_default() += 1;
    }
    let doubled: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "sent more than once: {doubled:?}");
    let store = deployment.store().await;
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM webhook_messages WHERE status = 'delivered' AND attempts = 1",
            &[]
        )
        .await,
        EVENTS as i64
    );
    first.stop().await;
    second.stop().await;
}

on_each_db!(
    an_event_committed_before_a_crash_is_delivered_after_restart,
    two_instances_deliver_each_message_once,
);
