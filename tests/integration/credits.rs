//! Credits on a key (docs/api.md §14): each admitted request spends its cost, at zero the key
//! gets 429 `credits_exhausted`; refused requests spend nothing; owners and admins top up or
//! set a budget; refills; unspent leases go back at shutdown; a roll hands the credits over;
//! and, across three instances with Redis stopped halfway, never more requests than credits.

use crate::common::{audit_count, count, postgres_required, Account, Db, TestApp};
use crate::on_both_databases;
use crate::process_harness::Deployment;
use crate::redis_harness::OwnRedis;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

on_both_databases!(
    credits_are_spent_and_refused_at_zero_until_topped_up,
    refused_requests_spend_nothing_and_verify_spends_its_cost,
    a_due_refill_restores_the_budget_and_retry_after_points_at_it,
    a_roll_hands_the_credits_to_the_new_secret,
    who_may_change_credits,
    unspent_credits_go_back_at_shutdown,
);

/// The API counts what instances lease as remaining; they report every second.
const READ_DEADLINE: Duration = Duration::from_secs(5);

/// `credits.remaining` as the API reads it, once it equals `expected` (within the deadline).
async fn remaining_reads(app: &TestApp, owner: &Account, key_id: &str, expected: i64) {
    let since = Instant::now();
    loop {
        let record = app.key(owner, key_id).await.ok();
        if record["credits"]["remaining"] == expected {
            return;
        }
        assert!(
            since.elapsed() < READ_DEADLINE,
            "credits.remaining still {} after {READ_DEADLINE:?}, expected {expected}",
            record["credits"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn credits_are_spent_and_refused_at_zero_until_topped_up(app: TestApp) {
    let owner = app.bootstrap("Credits", "owner@credits.test").await;
    let (key, record) = app
        .new_key(
            &owner,
            json!({ "name": "Metered", "credits": { "remaining": 3 } }),
        )
        .await
        .created_key();
    assert_eq!(
        record["credits"],
        json!({ "remaining": 3, "refill": null, "nextRefillAt": null })
    );
    for left in ["2", "1", "0"] {
        let reply = app.me(&key.key).await;
        assert_eq!(reply.header("x-heffl-credits-remaining"), left);
        reply.ok();
    }
    let refused = app.me(&key.key).await;
    refused.expect_error(
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("credits_exhausted"),
    );
    // No refill: nothing to wait for.
    assert_eq!(refused.header("retry-after"), "");
    assert_eq!(refused.header("x-heffl-credits-remaining"), "0");
    remaining_reads(&app, &owner, &key.id, 0).await;

    let record = app
        .edit_key(&owner, &key.id, json!({ "credits": { "add": 2 } }))
        .await
        .ok();
    assert_eq!(record["credits"]["remaining"], 2);
    // What an instance learnt of an empty pool it believes for at most a second.
    let since = Instant::now();
    loop {
        let reply = app.me(&key.key).await;
        if reply.status == StatusCode::OK {
            break;
        }
        assert!(since.elapsed() < Duration::from_secs(3), "top-up not seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.me(&key.key).await.ok();
    app.me(&key.key)
        .await
        .expect_status(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(audit_count(&app, "api_key.updated", &key.id).await, 1);

    // Unlimited again: no header, no refusal.
    let record = app
        .edit_key(&owner, &key.id, json!({ "credits": null }))
        .await
        .ok();
    assert_eq!(record["credits"], Value::Null);
    let reply = app.me(&key.key).await;
    assert_eq!(reply.header("x-heffl-credits-remaining"), "");
    reply.ok();
}

async fn refused_requests_spend_nothing_and_verify_spends_its_cost(app: TestApp) {
    let owner = app.bootstrap("Order", "owner@spend.test").await;
    let (key, _) = app
        .new_key(
            &owner,
            json!({ "name": "Leads only", "scopes": ["leads:read"], "credits": { "remaining": 5 } }),
        )
        .await
        .created_key();
    // The route's scope is checked before credits are spent.
    for _ in 0..3 {
        app.me(&key.key).await.expect_missing_scope("me:read");
    }
    app.verify(&key.key, "?scope=me:read")
        .await
        .expect_missing_scope("me:read");
    // A bad cost is refused before anything is spent.
    app.verify(&key.key, "?cost=1001")
        .await
        .expect_issues(&["cost"]);
    // A request the handler runs spends, whatever it answers (here a 404).
    app.lead(&key.key, "ld_0000000000000000000000")
        .await
        .expect_status(StatusCode::NOT_FOUND);
    let reply = app.verify(&key.key, "?cost=3").await;
    assert_eq!(reply.header("x-heffl-credits-remaining"), "1");
    reply.ok();
    // More than is left: refused, and nothing spent.
    app.verify(&key.key, "?cost=2")
        .await
        .expect_status(StatusCode::TOO_MANY_REQUESTS);
    // Free checks stay free at zero.
    app.verify(&key.key, "?cost=1").await.ok();
    app.verify(&key.key, "?cost=0").await.ok();
    app.verify(&key.key, "")
        .await
        .expect_status(StatusCode::TOO_MANY_REQUESTS);
    remaining_reads(&app, &owner, &key.id, 0).await;
    // The original request's query (Envoy's tail) is its client's: its `cost` is not read.
    app.edit_key(&owner, &key.id, json!({ "credits": { "add": 1 } }))
        .await
        .ok();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.verify(&key.key, "/orders?cost=0").await.ok();
    app.verify(&key.key, "/orders?cost=0")
        .await
        .expect_status(StatusCode::TOO_MANY_REQUESTS);
}

async fn a_due_refill_restores_the_budget_and_retry_after_points_at_it(app: TestApp) {
    let owner = app.bootstrap("Refill", "owner@refill.test").await;
    let (key, record) = app
        .new_key(
            &owner,
            json!({ "name": "Daily", "credits": { "remaining": 1, "refill": { "amount": 5, "interval": "daily" } } }),
        )
        .await
        .created_key();
    assert_eq!(
        record["credits"]["refill"],
        json!({ "amount": 5, "interval": "daily", "day": null })
    );
    let next = record["credits"]["nextRefillAt"]
        .as_str()
        .expect("next refill")
        .to_owned();
    assert!(next.ends_with("T00:00:00.000Z"), "{next}");
    app.me(&key.key).await.ok();
    let refused = app.me(&key.key).await;
    let retry: u64 = refused.header("retry-after").parse().expect("Retry-After");
    refused.expect_status(StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=86_400).contains(&retry), "{retry}");
    remaining_reads(&app, &owner, &key.id, 0).await;

    // The pool as it would be stored before midnight: the refill is due.
    sqlx::query("UPDATE api_keys SET credits_period = credits_period - 1 WHERE id = $1")
        .bind(&key.id)
        .execute(app.raw_db())
        .await
        .expect("age the pool");
    remaining_reads(&app, &owner, &key.id, 5).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = app.me(&key.key).await;
    assert_eq!(reply.header("x-heffl-credits-remaining"), "4");
    reply.ok();

    // Monthly refills name their day; days past a month's end are allowed.
    let record = app
        .edit_key(
            &owner,
            &key.id,
            json!({ "credits": { "remaining": 10, "refill": { "amount": 10, "interval": "monthly", "day": 31 } } }),
        )
        .await
        .ok();
    assert_eq!(record["credits"]["refill"]["day"], 31);
    assert_eq!(record["credits"]["remaining"], 10);
    for bad in [
        json!({ "remaining": -1 }),
        json!({ "remaining": 1, "refill": { "amount": 5, "interval": "weekly" } }),
        json!({ "remaining": 1, "refill": { "amount": 5, "interval": "monthly" } }),
        json!({ "remaining": 1, "refill": { "amount": 5, "interval": "daily", "day": 3 } }),
        json!({ "remaining": 1, "refill": { "amount": 0, "interval": "daily" } }),
    ] {
        let reply = app
            .edit_key(&owner, &key.id, json!({ "credits": bad }))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.body
        );
        assert!(reply.text.contains("credits."), "{}", reply.text);
    }
    app.new_key(&owner, json!({ "name": "x", "credits": { "add": 5 } }))
        .await
        .expect_issues(&["credits.add"]);
}

async fn a_roll_hands_the_credits_to_the_new_secret(app: TestApp) {
    let owner = app.bootstrap("Roll", "owner@roll-credits.test").await;
    let (key, _) = app
        .new_key(
            &owner,
            json!({ "name": "Metered", "credits": { "remaining": 40 } }),
        )
        .await
        .created_key();
    app.me(&key.key).await.ok();
    remaining_reads(&app, &owner, &key.id, 39).await;
    let (new, record) = app
        .roll(&owner, &key.id, Some(json!({ "expiresOldIn": 3600 })))
        .await
        .created_key();
    // What this instance leased for the old secret stays with it; the rest moved.
    let moved = record["credits"]["remaining"].as_i64().expect("credits");
    assert!((30..=39).contains(&moved), "{record}");
    let old = app.key(&owner, &key.id).await.ok();
    let old_left = old["credits"]["remaining"].as_i64().expect("old credits");
    assert_eq!(old_left + moved, 39, "no credit twice: {old}");
    app.me(&new.key).await.ok();
}

async fn who_may_change_credits(app: TestApp) {
    let owner = app.bootstrap("Who", "owner@who-credits.test").await;
    let member = app
        .add_member(&owner, "member@who-credits.test", "member")
        .await;
    // A member may give their own key a budget when they make it...
    let (key, _) = app
        .new_key(
            &member,
            json!({ "name": "Mine", "credits": { "remaining": 10 } }),
        )
        .await
        .created_key();
    // ...but not top it up, reset it or lift it.
    for credits in [
        json!({ "add": 5 }),
        json!({ "remaining": 100 }),
        Value::Null,
    ] {
        let body = app
            .edit_key(&member, &key.id, json!({ "credits": credits }))
            .await
            .expect_forbidden("insufficient_permission");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("credits"));
    }
    let untouched = "SELECT COUNT(*) FROM api_keys WHERE id = $1 AND credits_remaining = 10";
    assert_eq!(count(&app, untouched, &[&key.id]).await, 1);
    // Adding to a key without credits is a conflict, not a way to give it some.
    let plain = app.create_key(&owner, "Plain").await;
    app.edit_key(&owner, &plain.id, json!({ "credits": { "add": 5 } }))
        .await
        .expect_error(StatusCode::CONFLICT, "CONFLICT", Some("key_inactive"));
}

/// Three `serve` processes on one PostgreSQL and one Redis; a key with 50 credits; 200
/// requests at once spread over the three, twice (the second time with Redis stopped
/// halfway): never more admitted than credits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_never_admit_more_than_the_credits() {
    let mut redis = OwnRedis::start().await;
    let redis_url = redis.url();
    let env = [
        ("HEFFL_REDIS_URL", redis_url.as_str()),
        ("HEFFL_RATE_LIMIT_PER_MINUTE", "0"),
        ("HEFFL_AUTH_FAILURES_PER_MINUTE", "0"),
    ];
    let Some(deployment) = Deployment::create_with(Db::Postgres, &env).await else {
        assert!(!postgres_required(), "PostgreSQL is required in CI");
        return;
    };
    let owner = deployment.bootstrap("Three", "owner@three.test").await;
    let (a, b, c) = tokio::join!(
        deployment.serve("A"),
        deployment.serve("B"),
        deployment.serve("C")
    );
    let servers = [&a, &b, &c];
    let token = a.login_token(&owner.email, &owner.password).await;
    for round in ["with Redis", "Redis stopped halfway"] {
        let (status, record) = a
            .send(
                Method::POST,
                &format!("/app/v1/workspaces/{}/api-keys", owner.workspace_id),
                Some(&token),
                Some(json!({ "name": round, "credits": { "remaining": 50 } })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{record}");
        let key = record["key"].as_str().expect("key").to_owned();
        let admitted = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let mut requests = Vec::new();
        for i in 0..200 {
            let url = servers[i % 3].url("/api/v1/me");
            let key = key.clone();
            let (admitted, refused) = (Arc::clone(&admitted), Arc::clone(&refused));
            requests.push(tokio::spawn(async move {
                let response = reqwest::Client::new()
                    .get(url)
                    .header("x-api-key", key)
                    .send()
                    .await
                    .expect("request");
                match response.status() {
                    StatusCode::OK => admitted.fetch_add(1, Ordering::Relaxed),
                    StatusCode::TOO_MANY_REQUESTS => refused.fetch_add(1, Ordering::Relaxed),
                    other => panic!("unexpected {other}"),
                };
            }));
            if i == 100 && round == "Redis stopped halfway" {
                redis.kill().await;
            }
        }
        for request in requests {
            request.await.expect("request task");
        }
        let (admitted, refused) = (
            admitted.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
        );
        eprintln!("CREDITS [{round}] 50 credits, 200 requests over 3 instances: {admitted} admitted, {refused} refused");
        assert!(
            admitted <= 50,
            "{round}: {admitted} admitted with 50 credits"
        );
        assert_eq!(admitted + refused, 200);
        // Shares held by the other two instances may be refused elsewhere, never more.
        assert!(
            admitted >= 30,
            "{round}: only {admitted} of 50 credits could be spent"
        );
    }
}

/// A clean stop gives back what the instance leased and did not spend: nothing is lost.
async fn unspent_credits_go_back_at_shutdown(mut app: TestApp) {
    let owner = app.bootstrap("Stop", "owner@stop-credits.test").await;
    let (key, _) = app
        .new_key(
            &owner,
            json!({ "name": "Metered", "credits": { "remaining": 1000 } }),
        )
        .await
        .created_key();
    for _ in 0..3 {
        app.me(&key.key).await.ok();
    }
    // The second lease took a block (1/16 of what was left), more than the two it spent.
    let pool = "SELECT COUNT(*) FROM api_keys WHERE id = $1 AND credits_remaining < 990";
    assert_eq!(count(&app, pool, &[&key.id]).await, 1);
    app.stop().await;
    let returned = "SELECT COUNT(*) FROM api_keys WHERE id = $1 AND credits_remaining = 997";
    assert_eq!(
        count(&app, returned, &[&key.id]).await,
        1,
        "unspent credits lost"
    );
    let leases = "SELECT COUNT(*) FROM credit_leases WHERE key_id = $1";
    assert_eq!(count(&app, leases, &[&key.id]).await, 0);
}
