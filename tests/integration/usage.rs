//! docs/api.md §11: usage you can see. Traffic of each kind, counted exactly in hourly buckets across
//! flushes and restarts, read back by day and by hour, with the key record's visibility.

use crate::common::*;
use crate::test_app::Reply;
use heffl_api::domain::time::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

crate::on_both_databases_with!(counts_each_outcome_exactly_across_restarts, |c| {
    c.usage_flush_interval = std::time::Duration::from_secs(3600)
});
crate::on_both_databases_with!(periodic_flushes_never_count_twice, |c| {
    c.usage_flush_interval = std::time::Duration::from_millis(300)
});
crate::on_both_databases!(
    buckets_have_one_entry_per_period_ending_now,
    bad_windows_are_validation_errors,
    usage_has_the_key_records_visibility,
    audit_events_filter_by_key,
    docs_page_requests_are_not_told_to_replace_the_key,
);
crate::on_both_databases_with!(old_buckets_are_pruned_at_start, |c| {
    c.usage_retention_days = 90
});

/// The four counters summed over every bucket.
#[track_caller]
fn totals(usage: &Value) -> [i64; 4] {
    let buckets = usage["buckets"].as_array().expect("buckets");
    let sum = |field: &str| {
        buckets
            .iter()
            .map(|b| b[field].as_i64().expect(field))
            .sum()
    };
    [
        sum("success"),
        sum("clientError"),
        sum("rateLimited"),
        sum("rejected"),
    ]
}

/// One round of traffic; returns the keys (ok, limited, revoked, expired).
struct Keys {
    ok: CreatedKey,
    limited: CreatedKey,
    revoked: CreatedKey,
    expired: CreatedKey,
    scoped: CreatedKey,
}

async fn make_keys(app: &TestApp, owner: &Account) -> Keys {
    let ok = app.create_key(owner, "Busy").await;
    let (limited, _) = app
        .new_key(owner, json!({"name": "Limited", "rateLimitPerMinute": 2}))
        .await
        .created_key();
    let revoked = app.create_key(owner, "Revoked").await;
    let expired = app.create_key(owner, "Expired").await;
    // Expired before its first use, so no cache holds it as valid.
    sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE id = $2")
        .bind(Timestamp::now().0 - 1000)
        .bind(&expired.id)
        .execute(app.raw_db())
        .await
        .unwrap();
    let (scoped, _) = app
        .new_key(owner, json!({"name": "Scoped", "scopes": ["me:read"]}))
        .await
        .created_key();
    Keys {
        ok,
        limited,
        revoked,
        expired,
        scoped,
    }
}

/// ok: 4 success, 3 client errors; limited: 2 success, 2 rate limited; revoked: 1 success
/// before, 3 rejected after revocation; expired: 1 rejected. Unknown and malformed keys count
/// for no key.
async fn traffic(app: &TestApp, owner: &Account, keys: &Keys, first_round: bool) {
    for _ in 0..3 {
        app.me(&keys.ok.key).await.ok();
    }
    let lead = json!({"name": "Jane Smith"});
    app.create_lead(&keys.ok.key, lead)
        .await
        .expect_status(StatusCode::CREATED);
    for _ in 0..2 {
        app.lead(&keys.ok.key, "ld_0000000000000000000000")
            .await
            .expect_status(StatusCode::NOT_FOUND);
    }
    app.leads(&keys.ok.key, "pageSize=1000")
        .await
        .expect_status(StatusCode::BAD_REQUEST);
    let mut limited = Vec::new();
    for _ in 0..4 {
        limited.push(app.me(&keys.limited.key).await.status);
    }
    assert_eq!(
        limited,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    if first_round {
        app.me(&keys.revoked.key).await.ok();
        app.revoke(owner, &keys.revoked.id).await.ok();
    }
    for _ in 0..3 {
        app.me(&keys.revoked.key)
            .await
            .expect_status(StatusCode::UNAUTHORIZED);
    }
    app.me(&keys.expired.key)
        .await
        .expect_status(StatusCode::UNAUTHORIZED);
    // Refused by the handler's scope check: a client error, counted by its reason too.
    app.leads(&keys.scoped.key, "")
        .await
        .expect_status(StatusCode::FORBIDDEN);
    // No key to count these against.
    let unknown = "hk_live_000000000000000000000000000000000000";
    app.me(unknown)
        .await
        .expect_status(StatusCode::UNAUTHORIZED);
}

#[track_caller]
fn assert_key_totals(usage: &Value, expected: [i64; 4], what: &str) {
    assert_eq!(totals(usage), expected, "{what}: {usage}");
}

async fn assert_round_counts(app: &TestApp, owner: &Account, keys: &Keys, rounds: i64) {
    let n = rounds;
    for query in [
        "days=2&granularity=day",
        "days=1&granularity=hour",
        "days=7&granularity=hour",
    ] {
        let ok = app.usage(owner, &keys.ok.id, query).await.ok();
        assert_key_totals(&ok, [4 * n, 3 * n, 0, 0], "ok key");
        let limited = app.usage(owner, &keys.limited.id, query).await.ok();
        // Limits are kept in memory: each round follows a restart (or is the only one).
        assert_key_totals(&limited, [2 * n, 0, 2 * n, 0], "limited key");
        let revoked = app.usage(owner, &keys.revoked.id, query).await.ok();
        assert_key_totals(&revoked, [1, 0, 0, 3 * n], "revoked key");
        let expired = app.usage(owner, &keys.expired.id, query).await.ok();
        assert_key_totals(&expired, [0, 0, 0, n], "expired key");
        // Refusals by reason: a 404 or a validation error has none.
        assert_eq!(ok["refusals"], json!([]), "ok key");
        assert_eq!(
            limited["refusals"],
            json!([{ "reason": "rate_limited", "requests": 2 * n }])
        );
        assert_eq!(
            revoked["refusals"],
            json!([{ "reason": "revoked_api_key", "requests": 3 * n }])
        );
        assert_eq!(
            expired["refusals"],
            json!([{ "reason": "expired_api_key", "requests": n }])
        );
        let scoped = app.usage(owner, &keys.scoped.id, query).await.ok();
        assert_key_totals(&scoped, [0, n, 0, 0], "scoped key");
        assert_eq!(
            scoped["refusals"],
            json!([{ "reason": "insufficient_scope", "requests": n }])
        );
    }
    let ok = app.key(owner, &keys.ok.id).await.ok();
    assert_eq!(ok["requestCount"], 7 * n, "{ok}");
    assert!(ok["lastUsedAt"].is_string(), "{ok}");
    assert_eq!(
        app.key(owner, &keys.limited.id).await.ok()["requestCount"],
        4 * n
    );
    assert_eq!(
        app.key(owner, &keys.revoked.id).await.ok()["requestCount"],
        1
    );
    let expired = app.key(owner, &keys.expired.id).await.ok();
    assert_eq!(
        expired["requestCount"], 0,
        "rejected attempts are not requests: {expired}"
    );
    assert_eq!(
        expired["lastUsedAt"],
        Value::Null,
        "a dead key is not used: {expired}"
    );

    let workspace = app.workspace_usage(owner, "days=2").await.ok();
    assert_eq!(
        totals(&workspace),
        [4 * n + 2 * n + 1, 3 * n + n, 2 * n, 3 * n + n],
        "{workspace}"
    );
    assert_eq!(
        workspace["refusals"],
        json!([
            { "reason": "revoked_api_key", "requests": 3 * n },
            { "reason": "rate_limited", "requests": 2 * n },
            { "reason": "expired_api_key", "requests": n },
            { "reason": "insufficient_scope", "requests": n },
        ]),
        "most first, then by name"
    );
    let total_of = |id: &str| {
        workspace["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap_or_else(|| panic!("{id} listed: {workspace}"))["total"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(total_of(&keys.ok.id), 7 * n);
    assert_eq!(total_of(&keys.limited.id), 4 * n);
    assert_eq!(total_of(&keys.revoked.id), 1 + 3 * n);
    assert_eq!(total_of(&keys.expired.id), n);
}

async fn counts_each_outcome_exactly_across_restarts(mut app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let keys = make_keys(&app, &owner).await;
    traffic(&app, &owner, &keys, true).await;
    // Gathered in memory only: the next flush is an hour away.
    let unflushed = app
        .usage(&owner, &keys.ok.id, "days=1&granularity=hour")
        .await
        .ok();
    assert_key_totals(&unflushed, [0, 0, 0, 0], "before any flush");

    app.restart().await;
    assert_round_counts(&app, &owner, &keys, 1).await;
    let rows = count(
        &app,
        "SELECT COUNT(*) FROM key_usage_hours WHERE key_id = $1",
        &[&keys.ok.id],
    )
    .await;
    assert!(
        rows <= 2,
        "one row per key and hour, not per request: {rows}"
    );

    // A second round after the restart adds to the same buckets; nothing is counted twice.
    traffic(&app, &owner, &keys, false).await;
    app.restart().await;
    assert_round_counts(&app, &owner, &keys, 2).await;
    // Restarting with nothing gathered changes nothing.
    app.restart().await;
    assert_round_counts(&app, &owner, &keys, 2).await;
}

async fn periodic_flushes_never_count_twice(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let keys = make_keys(&app, &owner).await;
    traffic(&app, &owner, &keys, true).await;
    let since = Instant::now();
    while totals(
        &app.usage(&owner, &keys.expired.id, "days=1&granularity=hour")
            .await
            .ok(),
    )[3] != 1
        || app.key(&owner, &keys.ok.id).await.ok()["requestCount"] != 7
    {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "usage not flushed within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Several more flush intervals with nothing new.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_round_counts(&app, &owner, &keys, 1).await;
}

async fn buckets_have_one_entry_per_period_ending_now(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let key = app.create_key(&owner, "Quiet").await;
    let cases = [
        ("days=7&granularity=day", 7, DAY_MS),
        ("days=7", 7, DAY_MS),
        ("", 30, DAY_MS),
        ("days=90", 90, DAY_MS),
        ("days=1&granularity=hour", 24, HOUR_MS),
        ("days=7&granularity=hour", 168, HOUR_MS),
    ];
    for (query, count, period) in cases {
        for usage in [
            app.usage(&owner, &key.id, query).await.ok(),
            app.workspace_usage(&owner, query).await.ok(),
        ] {
            let before = Timestamp::now().0;
            let buckets = usage["buckets"].as_array().expect("buckets");
            assert_eq!(buckets.len(), count, "{query}: {usage}");
            let expected_granularity = if period == DAY_MS { "day" } else { "hour" };
            assert_eq!(usage["granularity"], expected_granularity);
            let starts: Vec<i64> = buckets
                .iter()
                .map(|b| {
                    assert_timestamp(&b["start"], "start");
                    let fields: Vec<&String> = b.as_object().unwrap().keys().collect();
                    assert_eq!(fields.len(), 5, "{b}");
                    for field in ["success", "clientError", "rateLimited", "rejected"] {
                        assert_eq!(b[field], 0, "{query}: {b}");
                    }
                    Timestamp::parse_rfc3339(b["start"].as_str().unwrap())
                        .unwrap()
                        .0
                })
                .collect();
            assert!(starts.windows(2).all(|w| w[1] - w[0] == period), "{query}");
            let last = *starts.last().unwrap();
            assert_eq!(last % period, 0, "UTC {expected_granularity} boundaries");
            // The last bucket is the current one (allowing for a boundary passed meanwhile).
            assert!(
                before - last < 2 * period && last <= before,
                "{query}: last {last}, now {before}"
            );
            assert_eq!(usage["from"], buckets[0]["start"]);
            assert_eq!(
                Timestamp::parse_rfc3339(usage["to"].as_str().unwrap())
                    .unwrap()
                    .0,
                last + period
            );
        }
    }
    let one = app.usage(&owner, &key.id, "days=1").await.ok();
    assert_eq!(one["keyId"], key.id.as_str());
    let workspace = app.workspace_usage(&owner, "days=1").await.ok();
    assert_eq!(
        workspace["keys"],
        json!([{"id": key.id, "name": "Quiet", "status": "active", "total": 0}])
    );
}

async fn bad_windows_are_validation_errors(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let key = app.create_key(&owner, "Quiet").await;
    let cases = [
        ("days=0", "days"),
        ("days=91", "days"),
        ("days=-1", "days"),
        ("days=ten", "days"),
        ("days=8&granularity=hour", "days"),
        ("granularity=hour", "days"),
        ("granularity=week", "granularity"),
    ];
    for (query, field) in cases {
        for (view, reply) in [
            ("key", app.usage(&owner, &key.id, query).await),
            ("workspace", app.workspace_usage(&owner, query).await),
        ] {
            let body = reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
            assert_eq!(
                body["error"]["details"]["issues"][0]["field"], field,
                "{view} ?{query}: {body}"
            );
        }
    }
    // Raw: the typed calls always send their caller's session, and this one has none.
    let path = format!("{}/usage", key_path(&owner.workspace_id, &key.id));
    app.call(Method::GET, &path, None, None).await.expect_error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        None,
    );
}

async fn usage_has_the_key_records_visibility(mut app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let admin = app.add_member(&owner, "admin@acme.test", "admin").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let owners_key = app.create_key(&owner, "Owner's").await;
    let members_key = app.create_key(&member, "Member's").await;
    for _ in 0..2 {
        app.me(&owners_key.key).await.ok();
    }
    app.me(&members_key.key).await.ok();
    app.restart().await;

    // A member sees their own key's usage, and not the owner's key (404, as for the record).
    assert_key_totals(
        &app.usage(&member, &members_key.id, "days=1").await.ok(),
        [1, 0, 0, 0],
        "own",
    );
    app.usage(&member, &owners_key.id, "days=1")
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    let mine = app.workspace_usage(&member, "days=1").await.ok();
    assert_key_totals(&mine, [1, 0, 0, 0], "member's workspace view");
    let listed: Vec<&Value> = mine["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["id"])
        .collect();
    assert_eq!(listed, [&json!(members_key.id)], "{mine}");

    // Owners and admins see every key.
    for manager in [&owner, &admin] {
        assert_key_totals(
            &app.usage(manager, &members_key.id, "days=1").await.ok(),
            [1, 0, 0, 0],
            "manager",
        );
        let all = app.workspace_usage(manager, "days=1").await.ok();
        assert_key_totals(&all, [3, 0, 0, 0], "manager's workspace view");
        assert_eq!(
            all["keys"][0]["id"],
            owners_key.id.as_str(),
            "busiest first: {all}"
        );
        assert_eq!(all["keys"][0]["total"], 2);
    }

    // Another workspace: its owner is refused, and a key id of ours is unknown in theirs.
    let stranger = app.bootstrap("Other", "owner@other.test").await;
    app.workspace_usage(&stranger.in_workspace(&owner.workspace_id), "")
        .await
        .expect_forbidden("workspace_mismatch");
    app.usage(&stranger, &owners_key.id, "days=1")
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    let theirs = app.workspace_usage(&stranger, "days=1").await.ok();
    assert_key_totals(&theirs, [0, 0, 0, 0], "another workspace's usage");
}

async fn audit_events_filter_by_key(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let first = app.create_key(&owner, "First").await;
    let second = app.create_key(&owner, "Second").await;
    app.revoke(&owner, &first.id).await.ok();
    let body = app
        .audit_events(&owner, &format!("keyId={}", first.id))
        .await
        .ok();
    let actions: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["api_key.revoked", "api_key.created"], "{body}");
    assert!(body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["target"]["id"] == first.id.as_str()));
    let body = app
        .audit_events(&owner, &format!("keyId={}", second.id))
        .await
        .body;
    assert_eq!(body["items"].as_array().unwrap().len(), 1, "{body}");
    let body = app
        .audit_events(&owner, "keyId=ld_nope")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
    assert_eq!(body["error"]["details"]["issues"][0]["field"], "keyId");
}

async fn docs_page_requests_are_not_told_to_replace_the_key(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let key = app.create_key(&owner, "Docs").await;
    // Raw: what a browser sends with it is the point.
    let from_docs = app
        .client
        .get(app.url("/api/v1/me"))
        .header("x-api-key", &key.key)
        .header("sec-fetch-site", "same-origin")
        .header("sec-fetch-mode", "cors")
        .header("referer", app.url("/docs"))
        .send()
        .await
        .unwrap();
    let body = Reply::read(from_docs)
        .await
        .expect_forbidden("browser_use_blocked");
    let message = body["error"]["message"].as_str().unwrap().to_lowercase();
    assert!(
        !message.contains("revoke") && !message.contains("roll"),
        "{message}"
    );
    assert!(message.contains("curl"), "{message}");
    let from_elsewhere = app
        .client
        .get(app.url("/api/v1/me"))
        .header("x-api-key", &key.key)
        .header("origin", "https://shop.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    let body = Reply::read(from_elsewhere)
        .await
        .expect_forbidden("browser_use_blocked");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("roll it"),
        "{body}"
    );
    // The key itself still works from a server.
    app.me(&key.key).await.ok();
}

async fn old_buckets_are_pruned_at_start(mut app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let key = app.create_key(&owner, "Old").await;
    let now_hour = Timestamp::now().0 / HOUR_MS * HOUR_MS;
    for (hour, success) in [(now_hour - 91 * DAY_MS, 5_i64), (now_hour - 89 * DAY_MS, 7)] {
        sqlx::query(
            "INSERT INTO key_usage_hours (key_id, workspace_id, hour_start, success) VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.id)
        .bind(&owner.workspace_id)
        .bind(hour)
        .bind(success)
        .execute(app.raw_db())
        .await
        .unwrap();
    }
    app.restart().await;
    let since = Instant::now();
    while count(
        &app,
        "SELECT COUNT(*) FROM key_usage_hours WHERE key_id = $1",
        &[&key.id],
    )
    .await
        != 1
    {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "not pruned at start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kept = count(
        &app,
        "SELECT success FROM key_usage_hours WHERE key_id = $1",
        &[&key.id],
    )
    .await;
    assert_eq!(kept, 7, "the bucket inside the retention period stays");
    assert_key_totals(
        &app.usage(&owner, &key.id, "days=90").await.ok(),
        [7, 0, 0, 0],
        "90 days",
    );
}
