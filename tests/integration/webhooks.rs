//! Webhooks (docs/api.md §15), through a real server and a real receiver: who manages
//! endpoints, which URLs are refused, what a delivery looks like and how it is signed, retries
//! and their end, redirects and private addresses refused at delivery, and that no payload
//! carries a secret.

use crate::common::{audit_count, count, Account, TestApp};
use crate::webhook_receiver::Receiver;
use crate::{on_both_databases, on_both_databases_with};
use heffl_api::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// Deliveries to the receiver on this machine, with the gaps between tries shrunk: 5 s becomes
/// 0.5 ms and the 32.5 hours of the whole schedule about 6 s.
fn to_local_receivers(config: &mut Config) {
    config.webhook_allow_http = true;
    config.webhook_allow_private = true;
    config.webhook_retry_scale = 0.00005;
    config.rate_limit_per_minute = 0;
}

const WAIT: Duration = Duration::from_secs(20);

async fn owner(app: &TestApp) -> Account {
    app.bootstrap("Acme", "owner@example.com").await
}

#[track_caller]
fn delivery<'a>(page: &'a Value, id: &str) -> &'a Value {
    page["items"]
        .as_array()
        .and_then(|items| items.iter().find(|d| d["id"] == id))
        .unwrap_or_else(|| panic!("message {id} in {page}"))
}

/// Polls the delivery log until message `id` has `status`.
async fn wait_for_delivery(
    app: &TestApp,
    owner: &Account,
    endpoint: &str,
    id: &str,
    status: &str,
) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let page = app.deliveries(owner, endpoint, "").await.ok();
        let found = page["items"]
            .as_array()
            .and_then(|items| items.iter().find(|d| d["id"] == id).cloned());
        if let Some(found) = found.filter(|d| d["status"] == status) {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "message {id} never became {status}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn endpoints_are_managed_by_owners_and_admins(app: TestApp) {
    let owner = owner(&app).await;
    let created = app
        .create_webhook(
            &owner,
            json!({ "url": "https://example.com/hooks", "description": "CRM" }),
        )
        .await
        .expect_status(StatusCode::CREATED);
    let id = created["id"].as_str().expect("id").to_owned();
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(id.starts_with("wh_"), "{created}");
    assert!(
        secret.starts_with("whsec_") && secret.len() >= 6 + 32,
        "{created}"
    );
    assert_eq!(created["events"], json!(["*"]), "all events by default");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["description"], "CRM");

    // The secret is shown once.
    let listed = app.webhooks(&owner).await.ok();
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    assert!(!listed.to_string().contains(&secret), "{listed}");
    let one = app.webhook(&owner, &id).await.ok();
    assert!(one.get("secret").is_none(), "{one}");

    let edited = app
        .edit_webhook(
            &owner,
            &id,
            json!({ "events": ["api_key.created", "member.joined"], "enabled": false, "description": null }),
        )
        .await
        .ok();
    assert_eq!(
        edited["events"],
        json!(["api_key.created", "member.joined"])
    );
    assert_eq!(edited["enabled"], false);
    assert_eq!(edited["disabledReason"], "by_user");
    assert_eq!(edited["description"], Value::Null);

    let rolled = app.roll_webhook_secret(&owner, &id).await.ok();
    let new_secret = rolled["secret"].as_str().expect("secret");
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);

    // Members and viewers may not; other workspaces cannot even see it.
    for role in ["member", "viewer"] {
        let someone = app
            .add_member(&owner, &format!("{role}@example.com"), role)
            .await;
        app.webhooks(&someone)
            .await
            .expect_forbidden("insufficient_permission");
        app.create_webhook(&someone, json!({ "url": "https://example.com/x" }))
            .await
            .expect_forbidden("insufficient_permission");
        app.delete_webhook(&someone, &id)
            .await
            .expect_forbidden("insufficient_permission");
    }
    let admin = app.add_member(&owner, "admin@example.com", "admin").await;
    app.webhook(&admin, &id).await.ok();
    let stranger = app.bootstrap("Other", "other@example.com").await;
    app.webhook(&stranger.in_workspace(&owner.workspace_id), &id)
        .await
        .expect_forbidden("workspace_mismatch");
    app.webhook(&stranger, &id)
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);

    assert_eq!(audit_count(&app, "webhook.created", &id).await, 1);
    assert_eq!(audit_count(&app, "webhook.secret_rolled", &id).await, 1);
    app.delete_webhook(&admin, &id)
        .await
        .expect_status(StatusCode::NO_CONTENT);
    app.webhook(&owner, &id)
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    assert_eq!(audit_count(&app, "webhook.deleted", &id).await, 1);
}

/// The server's defaults: `https://` only, and never a host of the server's own network.
async fn urls_must_be_https_and_reach_the_internet(app: TestApp) {
    let owner = owner(&app).await;
    let refused = [
        ("http://example.com/hooks", "https://"),
        ("https://127.0.0.1/hooks", "127.0.0.1"),
        ("https://localhost:8080/hooks", "resolves to"),
        ("https://10.1.2.3/hooks", "private"),
        ("https://[::1]/hooks", "::1"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://0.0.0.0/", "0.0.0.0"),
        ("https://user:secret@example.com/", "password"),
        ("not a url", "absolute URL"),
    ];
    for (url, says) in refused {
        let reply = app.create_webhook(&owner, json!({ "url": url })).await;
        let message = reply.expect_validation("url");
        assert!(message.contains(says), "{url}: {message}");
    }
    app.create_webhook(
        &owner,
        json!({ "url": "https://example.com/", "events": ["api_key.create"] }),
    )
    .await
    .expect_validation("events");
    app.create_webhook(
        &owner,
        json!({ "url": "https://example.com/", "events": ["*", "member.joined"] }),
    )
    .await
    .expect_validation("events");
    // A host that does not resolve (yet) is accepted; its deliveries will fail until it does.
    app.create_webhook(&owner, json!({ "url": "https://hooks.heffl.invalid/in" }))
        .await
        .expect_status(StatusCode::CREATED);
    // Nothing refused was written.
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM webhook_endpoints", &[]).await,
        1
    );
    // A PATCH is checked the same way.
    let (id, _) = app
        .webhook_to(&owner, "https://example.com/ok", json!(["*"]))
        .await;
    app.edit_webhook(&owner, &id, json!({ "url": "https://127.0.0.1/" }))
        .await
        .expect_validation("url");
    assert_eq!(
        app.webhook(&owner, &id).await.ok()["url"],
        "https://example.com/ok"
    );
}

async fn events_arrive_signed_by_the_standard_webhooks_rules(app: TestApp) {
    let owner = owner(&app).await;
    let receiver = Receiver::start().await;
    let (endpoint, secret) = app
        .webhook_to(
            &owner,
            &receiver.url,
            json!(["api_key.created", "api_key.revoked"]),
        )
        .await;
    let key = app.create_key(&owner, "Website Forms").await;
    let created = receiver.first_of("api_key.created").await;
    assert!(created.id.starts_with("msg_"), "{created:?}");
    assert!(created.signed_with(&secret), "signature of {created:?}");
    assert!(!created.signed_with("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    let sent_at: i64 = created.timestamp.parse().expect("unix seconds");
    assert!(
        (sent_at - crate::common::now_ms() / 1000).abs() < 60,
        "{sent_at}"
    );
    let data = &created.body["data"];
    assert_eq!(data["workspace"]["id"], owner.workspace_id.as_str());
    assert_eq!(data["key"]["id"], key.id.as_str());
    assert_eq!(data["key"]["name"], "Website Forms");
    assert!(data["key"]["hint"]
        .as_str()
        .is_some_and(|h| key.key.ends_with(&h[h.len() - 4..])));
    assert_eq!(
        data["actor"],
        json!({ "type": "user", "id": owner.user_id })
    );
    crate::common::assert_timestamp(&created.body["timestamp"], "timestamp");

    // Not subscribed: an edit sends nothing; a revoke does.
    app.edit_key(&owner, &key.id, json!({ "name": "Forms" }))
        .await
        .ok();
    app.revoke(&owner, &key.id).await.ok();
    let revoked = receiver.first_of("api_key.revoked").await;
    assert_eq!(revoked.body["data"]["reason"], "revoked");
    assert!(revoked.signed_with(&secret));
    assert!(receiver.of_type("api_key.updated").is_empty());

    let page = app.deliveries(&owner, &endpoint, "").await.ok();
    let first = wait_for_delivery(&app, &owner, &endpoint, &created.id, "delivered").await;
    assert_eq!(first["type"], "api_key.created");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["lastStatus"], 200);
    assert_eq!(first["nextAttemptAt"], Value::Null);
    // Newest first.
    assert_eq!(page["items"][0]["type"], "api_key.revoked", "{page}");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM webhook_messages", &[]).await,
        2
    );

    // After a roll of the endpoint's secret, both secrets sign for a day.
    let rolled = app.roll_webhook_secret(&owner, &endpoint).await.ok();
    let new_secret = rolled["secret"].as_str().expect("secret").to_owned();
    app.create_key(&owner, "After the roll").await;
    let after = receiver
        .wait_until("a second api_key.created", WAIT, |r| {
            r.iter().filter(|m| m.kind() == "api_key.created").count() == 2
        })
        .await;
    let latest = after.last().expect("one");
    assert!(latest.signed_with(&new_secret) && latest.signed_with(&secret));
}

async fn failed_tries_are_retried_under_one_id_then_given_up(app: TestApp) {
    let owner = owner(&app).await;
    let receiver = Receiver::start().await;
    let (endpoint, _) = app
        .webhook_to(&owner, &receiver.url, json!(["api_key.created"]))
        .await;
    receiver.answer_next(&[500, 503]);
    app.create_key(&owner, "Flaky").await;
    let tries = receiver
        .wait_until("three tries", WAIT, |r| r.len() == 3)
        .await;
    assert!(tries.iter().all(|t| t.id == tries[0].id), "{tries:?}");
    let done = wait_for_delivery(&app, &owner, &endpoint, &tries[0].id, "delivered").await;
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["lastStatus"], 200);
    assert_eq!(done["lastError"], Value::Null);

    // A receiver that never recovers: eight tries, then `failed`.
    receiver.answer(500);
    app.create_key(&owner, "Doomed").await;
    let doomed = receiver
        .wait_until("the new message", WAIT, |r| r.len() > 3)
        .await[3]
        .id
        .clone();
    let failed = wait_for_delivery(&app, &owner, &endpoint, &doomed, "failed").await;
    assert_eq!(failed["attempts"], 8, "{failed}");
    assert_eq!(failed["lastStatus"], 500);
    assert_eq!(failed["lastError"], "answered 500");
    assert_eq!(failed["nextAttemptAt"], Value::Null);
    assert_eq!(
        receiver
            .received()
            .iter()
            .filter(|r| r.id == doomed)
            .count(),
        8
    );

    // Retry now: one more try, which succeeds.
    receiver.answer(204);
    let retried = app
        .retry_delivery(&owner, &endpoint, &doomed)
        .await
        .expect_status(StatusCode::ACCEPTED);
    assert_eq!(retried["status"], "pending");
    let delivered = wait_for_delivery(&app, &owner, &endpoint, &doomed, "delivered").await;
    assert_eq!(delivered["attempts"], 9);
    assert_eq!(delivered["lastStatus"], 204);
    app.retry_delivery(&owner, &endpoint, "msg_0000000000000000000000")
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
}

async fn an_endpoint_failing_for_five_days_is_disabled(app: TestApp) {
    let owner = owner(&app).await;
    let receiver = Receiver::start().await;
    receiver.answer(500);
    let (endpoint, _) = app
        .webhook_to(&owner, &receiver.url, json!(["api_key.created"]))
        .await;
    // Five days at this scale are about 22 s of nothing but failures.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut made = 0;
    loop {
        let state = app.webhook(&owner, &endpoint).await.ok();
        if state["enabled"] == false {
            assert_eq!(state["disabledReason"], "failing", "{state}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never disabled: {state}"
        );
        app.create_key(&owner, &format!("Key {made}")).await;
        made += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(audit_count(&app, "webhook.disabled", &endpoint).await, 1);
    // A disabled endpoint is sent nothing new; enabling it starts afresh.
    let before = count(&app, "SELECT COUNT(*) FROM webhook_messages", &[]).await;
    app.create_key(&owner, "While disabled").await;
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM webhook_messages", &[]).await,
        before
    );
    let enabled = app
        .edit_webhook(&owner, &endpoint, json!({ "enabled": true }))
        .await
        .ok();
    assert_eq!(enabled["disabledReason"], Value::Null);
    receiver.answer(200);
    let before = receiver.received().len();
    app.create_key(&owner, "Enabled again").await;
    receiver
        .wait_until("a delivery after enabling", WAIT, |r| {
            r.len() > before
                && r.iter()
                    .any(|m| m.body["data"]["key"]["name"] == "Enabled again")
        })
        .await;
}

fn slow_schedule(config: &mut Config) {
    to_local_receivers(config);
    config.webhook_retry_scale = 0.000_2;
}

async fn redirects_are_not_followed(app: TestApp) {
    let owner = owner(&app).await;
    let receiver = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    let (endpoint, _) = app
        .webhook_to(&owner, &receiver.url, json!(["api_key.created"]))
        .await;
    receiver.redirect_next(&elsewhere.url);
    app.create_key(&owner, "Redirected").await;
    let first = receiver.first_of("api_key.created").await;
    let page = app.deliveries(&owner, &endpoint, "").await.ok();
    let deadline = std::time::Instant::now() + WAIT;
    let mut entry = delivery(&page, &first.id).clone();
    while entry["attempts"] == 0 || entry["lastStatus"] == Value::Null {
        assert!(std::time::Instant::now() < deadline, "{entry}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let page = app.deliveries(&owner, &endpoint, "").await.ok();
        entry = delivery(&page, &first.id).clone();
    }
    assert_eq!(entry["lastStatus"], 307, "{entry}");
    assert!(entry["lastError"]
        .as_str()
        .is_some_and(|e| e.contains("redirect")));
    // Retried later at the endpoint itself, never at the redirect's target.
    wait_for_delivery(&app, &owner, &endpoint, &first.id, "delivered").await;
    assert!(elsewhere.received().is_empty());
}

/// DNS can change after registration: a host that now resolves to a private address is refused
/// when the message is sent, not only when the endpoint was registered.
async fn private_addresses_are_refused_at_delivery(app: TestApp) {
    let owner = owner(&app).await;
    let receiver = Receiver::start().await;
    // As if each host had resolved to a public address when registered.
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("http://{host}:{}/hooks", receiver.port);
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, workspace_id, url, events, secret, created_at, updated_at) \
             VALUES ($1, $2, $3, '[\"*\"]', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 0, 0)",
        )
        .bind(format!("wh_{host:0<22}").replace('.', "0"))
        .bind(&owner.workspace_id)
        .bind(&url)
        .execute(app.raw_db())
        .await
        .expect("endpoint");
    }
    app.create_key(&owner, "Never sent").await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let errors: Vec<Option<String>> =
            sqlx::query_scalar("SELECT last_error FROM webhook_messages WHERE workspace_id = $1")
                .bind(&owner.workspace_id)
                .fetch_all(app.raw_db())
                .await
                .expect("messages");
        if errors.len() == 2 && errors.iter().all(Option::is_some) {
            for error in errors.into_iter().flatten() {
                assert!(error.contains("private or local address"), "{error}");
            }
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{errors:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        receiver.received().is_empty(),
        "a private address was reached"
    );
}

fn http_but_not_private(config: &mut Config) {
    to_local_receivers(config);
    config.webhook_allow_private = false;
}

/// Every event type a workspace's life produces, and not one payload holding a secret made
/// along the way: key secrets, the webhook's signing secret, session tokens, passwords, the
/// invitation token.
async fn no_payload_carries_a_secret(app: TestApp) {
    let owner = owner(&app).await;
    let receiver = Receiver::start().await;
    let (endpoint, signing_secret) = app.webhook_to(&owner, &receiver.url, json!(["*"])).await;
    let mut secrets = vec![signing_secret, owner.token.clone(), owner.password.clone()];

    let key = app.create_key(&owner, "Data Sync").await;
    secrets.push(key.key.clone());
    app.edit_key(
        &owner,
        &key.id,
        json!({ "description": "nightly", "enabled": false }),
    )
    .await
    .ok();
    let rolled = app
        .roll(&owner, &key.id, None)
        .await
        .expect_status(StatusCode::CREATED);
    secrets.push(rolled["key"].as_str().expect("new key").to_owned());
    let leaked = app.create_key(&owner, "Leaked").await;
    secrets.push(leaked.key.clone());
    app.report_leaks(json!({ "keys": [leaked.key] }))
        .await
        .expect_status(StatusCode::ACCEPTED);
    let invited = app
        .invite(&owner, &owner.workspace_id, "new@example.com", "member")
        .await;
    let invitation = invited.expect_status(StatusCode::CREATED);
    if let Some(token) = invitation["token"].as_str() {
        secrets.push(token.to_owned());
    }
    let member = app.add_member(&owner, "member@example.com", "member").await;
    secrets.extend([member.token.clone(), member.password.clone()]);
    let member_key = app.create_key(&member, "Member's").await;
    secrets.push(member_key.key.clone());
    app.set_role(&owner, &owner.workspace_id, &member.user_id, "admin")
        .await
        .ok();
    app.remove_member(&owner, &owner.workspace_id, &member.user_id)
        .await
        .expect_status(StatusCode::NO_CONTENT);

    let expected = [
        "api_key.created",
        "api_key.updated",
        "api_key.rolled",
        "api_key.leaked",
        "api_key.revoked",
        "member.joined",
        "member.role_changed",
        "member.removed",
    ];
    let received = receiver
        .wait_until("every event type", WAIT, |r| {
            expected
                .iter()
                .all(|kind| r.iter().any(|m| m.kind() == *kind))
        })
        .await;
    for message in &received {
        for secret in &secrets {
            assert!(
                !message.raw.contains(secret.as_str()),
                "{} carries a secret: {}",
                message.kind(),
                message.raw
            );
        }
    }
    let rolled_event = receiver.first_of("api_key.rolled").await;
    assert_eq!(rolled_event.body["data"]["key"]["id"], key.id.as_str());
    assert_eq!(rolled_event.body["data"]["newKey"]["id"], rolled["id"]);
    let leak = receiver.first_of("api_key.leaked").await;
    assert_eq!(leak.body["data"]["key"]["id"], leaked.id.as_str());
    assert_eq!(leak.body["data"]["source"], "report");
    let role = receiver.first_of("member.role_changed").await;
    assert_eq!(role.body["data"]["member"]["role"], "admin");
    assert_eq!(role.body["data"]["previousRole"], "member");
    // Removing the member revoked their key, and said so.
    let revoked_theirs = receiver
        .wait_until("the member's key revoked", WAIT, |r| {
            r.iter().any(|m| {
                m.kind() == "api_key.revoked"
                    && m.body["data"]["key"]["id"] == member_key.id.as_str()
            })
        })
        .await;
    assert!(!revoked_theirs.is_empty());
    let page = app.deliveries(&owner, &endpoint, "limit=2").await.ok();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    let next = page["nextCursor"].as_str().expect("a next page");
    let second = app
        .deliveries(&owner, &endpoint, &format!("limit=2&cursor={next}"))
        .await
        .ok();
    assert_ne!(second["items"][0]["id"], page["items"][0]["id"]);
    app.deliveries(&owner, &endpoint, "cursor=msg_nope")
        .await
        .expect_validation("cursor");
}

/// `api_key.expiring` 7 days and 1 day before, once each, and only the nearer one for a key
/// made closer to its end. The scan runs every 30 s on each instance; here it is run at once.
async fn keys_about_to_expire_are_announced_once(app: TestApp) {
    let owner = owner(&app).await;
    let receiver = Receiver::start().await;
    app.webhook_to(&owner, &receiver.url, json!(["api_key.expiring"]))
        .await;
    let in_days = |days: f64| {
        let ms = crate::common::now_ms() + (days * 86_400_000.0) as i64;
        heffl_api::domain::time::Timestamp(ms).to_rfc3339()
    };
    let week = app
        .new_key(&owner, json!({ "name": "Week", "expiresAt": in_days(3.0) }))
        .await
        .created_key()
        .0;
    let day = app
        .new_key(&owner, json!({ "name": "Day", "expiresAt": in_days(0.5) }))
        .await
        .created_key()
        .0;
    app.new_key(
        &owner,
        json!({ "name": "Later", "expiresAt": in_days(30.0) }),
    )
    .await
    .created_key();
    let notices = app.store.webhooks();
    assert_eq!(notices.send_expiry_notices().await.expect("scan"), 2);
    assert_eq!(notices.send_expiry_notices().await.expect("scan"), 0);
    let received = receiver
        .wait_until("two notices", WAIT, |r| r.len() == 2)
        .await;
    let days_left = |id: &str| {
        received
            .iter()
            .find(|m| m.body["data"]["key"]["id"] == id)
            .map(|m| m.body["data"]["daysLeft"].clone())
    };
    assert_eq!(days_left(&week.id), Some(json!(7)));
    assert_eq!(days_left(&day.id), Some(json!(1)));
    // The week key reaching its last day gets the second notice; the day key never a 7-day one.
    sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE id = $2")
        .bind(crate::common::now_ms() + 3_600_000)
        .bind(&week.id)
        .execute(app.raw_db())
        .await
        .expect("move expiry");
    assert_eq!(notices.send_expiry_notices().await.expect("scan"), 1);
    assert_eq!(notices.send_expiry_notices().await.expect("scan"), 0);
}

/// `api_key.credits_low` once, when what is left falls under a tenth of what the key was given.
async fn credits_running_low_are_announced_once(app: TestApp) {
    let owner = owner(&app).await;
    let receiver = Receiver::start().await;
    app.webhook_to(&owner, &receiver.url, json!(["api_key.credits_low"]))
        .await;
    let (key, _) = app
        .new_key(
            &owner,
            json!({ "name": "Metered", "credits": { "remaining": 100 }, "rateLimitPerMinute": 0 }),
        )
        .await
        .created_key();
    for _ in 0..80 {
        app.me(&key.key).await.ok();
    }
    assert!(receiver.of_type("api_key.credits_low").is_empty());
    for _ in 0..20 {
        app.me(&key.key).await;
    }
    let low = receiver.first_of("api_key.credits_low").await;
    assert_eq!(low.body["data"]["key"]["id"], key.id.as_str());
    assert_eq!(low.body["data"]["threshold"], 10);
    assert!(low.body["data"]["remaining"]
        .as_i64()
        .is_some_and(|n| n < 10));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.of_type("api_key.credits_low").len(), 1);
}

on_both_databases!(
    endpoints_are_managed_by_owners_and_admins,
    urls_must_be_https_and_reach_the_internet,
);
on_both_databases_with!(
    events_arrive_signed_by_the_standard_webhooks_rules,
    super::to_local_receivers
);
on_both_databases_with!(
    failed_tries_are_retried_under_one_id_then_given_up,
    super::to_local_receivers
);
on_both_databases_with!(
    an_endpoint_failing_for_five_days_is_disabled,
    super::to_local_receivers
);
on_both_databases_with!(redirects_are_not_followed, super::slow_schedule);
on_both_databases_with!(
    private_addresses_are_refused_at_delivery,
    super::http_but_not_private
);
on_both_databases_with!(no_payload_carries_a_secret, super::to_local_receivers);
on_both_databases_with!(
    keys_about_to_expire_are_announced_once,
    super::to_local_receivers
);
on_both_databases_with!(
    credits_running_low_are_announced_once,
    super::to_local_receivers
);
