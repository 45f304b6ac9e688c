//! Reports of leaked keys (`POST /api/v1/credentials/revoke`, open to anyone, as secret
//! scanners send them): only real, active keys are revoked, once; the answer is the same for
//! a real key and a made-up one; the input is bounded and the reports throttled.

use crate::common::{audit_count, count, key_column, key_time, unknown_key, TestApp};
use crate::{on_both_databases, on_both_databases_with};
use heffl_api::domain::api_key::{ApiKey, KeyEnv};
use reqwest::StatusCode;
use serde_json::json;

on_both_databases!(
    leaked_key_report_revokes_only_real_active_keys,
    leak_report_reveals_nothing_and_bounds_its_input,
);
on_both_databases_with!(leak_reports_are_throttled, |c| c.leak_reports_per_minute =
    2);

/// A well-formed key of this deployment's environment that no one was ever given.
async fn reported_leaks(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT COUNT(*) FROM audit_events WHERE action = 'api_key.reported_leaked'",
        &[],
    )
    .await
}

async fn leaked_key_report_revokes_only_real_active_keys(app: TestApp) {
    let owner = app.bootstrap("Leaks", "owner@leaks.test").await;
    let active = app.create_key(&owner, "active").await;
    let revoked = app.create_key(&owner, "revoked").await;
    app.revoke(&owner, &revoked.id).await.ok();
    let bystander = app.create_key(&owner, "bystander").await;
    let other_env = ApiKey::generate(&KeyEnv::new("test").expect("env"))
        .expose_secret()
        .to_owned();
    // Verified once, so the revocation must also reach the cache.
    assert_eq!(app.me(&active.key).await.status, StatusCode::OK);

    let report = vec![
        active.key.clone(),
        revoked.key.clone(),
        unknown_key(),
        "hk_live_this is not a key".to_owned(),
        other_env,
    ];
    for round in 0..2 {
        let reply = app.report_leaks(json!({ "keys": report })).await;
        assert_eq!(
            reply.status,
            StatusCode::ACCEPTED,
            "round {round}: {}",
            reply.body
        );
        assert_eq!(reply.body, json!({ "received": 5 }), "round {round}");
        assert_eq!(
            key_column(&app, "revoke_reason", &active.id)
                .await
                .as_deref(),
            Some("reported_leaked")
        );
        assert!(key_time(&app, "revoked_at", &active.id).await.is_some());
        assert_eq!(
            key_column(&app, "revoke_reason", &revoked.id)
                .await
                .as_deref(),
            Some("revoked"),
            "an already revoked key keeps its reason"
        );
        assert_eq!(key_time(&app, "revoked_at", &bystander.id).await, None);
        assert_eq!(reported_leaks(&app).await, 1, "round {round}");
        assert_eq!(
            audit_count(&app, "api_key.reported_leaked", &active.id).await,
            1
        );
    }
    app.me(&active.key)
        .await
        .expect_unauthorized("revoked_api_key");
    assert_eq!(app.me(&bystander.key).await.status, StatusCode::OK);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NOT NULL",
            &[]
        )
        .await,
        2
    );
    let record = app.key(&owner, &active.id).await.ok();
    assert_eq!(record["status"], "revoked");
    assert_eq!(record["revokeReason"], "reported_leaked");
    let page = app.audit_events(&owner, "limit=200").await.ok();
    let event = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["action"] == "api_key.reported_leaked")
        .unwrap_or_else(|| panic!("no api_key.reported_leaked: {page}"));
    assert_eq!(
        event["target"],
        json!({ "type": "api_key", "id": active.id })
    );
    assert_eq!(event["ip"], "127.0.0.1");
    assert!(!page.to_string().contains(&active.key));
}

async fn leak_report_reveals_nothing_and_bounds_its_input(app: TestApp) {
    let owner = app.bootstrap("Oracle", "owner@oracle.test").await;
    let real = app.create_key(&owner, "real").await;

    let mut answers = Vec::new();
    for key in [real.key.clone(), unknown_key()] {
        let reply = app.report_leaks(json!({ "keys": [key] })).await;
        answers.push((reply.status, reply.header("content-type"), reply.text));
    }
    assert_eq!(answers[0].0, StatusCode::ACCEPTED);
    assert_eq!(
        answers[0], answers[1],
        "a real and a made-up key answer differently"
    );
    assert_eq!(
        key_column(&app, "revoke_reason", &real.id).await.as_deref(),
        Some("reported_leaked")
    );

    // Out of bounds: refused as a whole, nothing revoked even if a real key is in it.
    let bystander = app.create_key(&owner, "bystander").await;
    let mut too_many: Vec<String> = (0..100).map(|_| unknown_key()).collect();
    too_many.push(bystander.key.clone());
    for body in [
        json!({ "keys": too_many }),
        json!({ "keys": [] }),
        json!({}),
    ] {
        app.report_leaks(body).await.expect_validation("keys");
    }
    assert_eq!(key_time(&app, "revoked_at", &bystander.id).await, None);
    assert_eq!(app.me(&bystander.key).await.status, StatusCode::OK);
    assert_eq!(reported_leaks(&app).await, 1);
}

async fn leak_reports_are_throttled(app: TestApp) {
    let owner = app.bootstrap("Throttle", "owner@throttle.test").await;
    for _ in 0..2 {
        let reply = app.report_leaks(json!({ "keys": [unknown_key()] })).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    }
    let key = app.create_key(&owner, "survivor").await;
    app.report_leaks(json!({ "keys": [key.key] }))
        .await
        .expect_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            Some("leak_reports_throttled"),
        );
    assert_eq!(key_time(&app, "revoked_at", &key.id).await, None);
    assert_eq!(app.me(&key.key).await.status, StatusCode::OK);
}
