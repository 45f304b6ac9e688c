//! docs/api.md §9, keys that could be turned against their owner: only a key's creator may roll it,
//! rolling an inactive key is 409, concurrent roll and revoke calls are serial and truthful,
//! a key's rate limit is the operator's, and no other path hands a secret to someone else.
//! Rolling itself: the new key keeps the old one's name, scopes, limit and user, and the old
//! key lives on for the grace period asked for (none by default), then expires.

use crate::common::{audit_count, key_column, key_time, ms, sleep_past};
use crate::common::{count, key_count, TestApp};
use crate::test_app::Reply;
use crate::{on_both_databases, on_both_databases_with};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

on_both_databases!(
    only_the_creator_may_roll_a_key,
    rolling_an_inactive_key_is_key_inactive,
    no_other_path_hands_a_secret_to_someone_else,
    roll_and_revoke_races_end_as_some_serial_order,
    roll_and_roll_races_let_exactly_one_through,
    roll_with_grace_keeps_both_keys_until_the_old_expires,
    roll_without_body_expires_the_old_key_at_once,
    roll_is_refused_for_revoked_and_out_of_range,
    roll_follows_key_permissions_and_keeps_the_user,
);

on_both_databases_with!(
    only_managers_may_lift_a_keys_rate_limit,
    |config: &mut heffl_api::config::Config| config.rate_limit_per_minute = 60
);

const RACES: usize = 20;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

async fn rolled_from(app: &TestApp, key_id: &str) -> i64 {
    count(
        app,
        "SELECT COUNT(*) FROM api_keys WHERE rolled_from = $1",
        &[key_id],
    )
    .await
}

#[track_caller]
fn assert_conflict(reply: &Reply, reason: &str) {
    reply.expect_error(StatusCode::CONFLICT, "CONFLICT", Some(reason));
}

fn grace(seconds: i64) -> Option<Value> {
    Some(json!({ "expiresOldIn": seconds }))
}

async fn only_the_creator_may_roll_a_key(app: TestApp) {
    let owner = app.bootstrap("Backdoor", "owner@backdoor.test").await;
    let admin = app.add_member(&owner, "admin@backdoor.test", "admin").await;
    let owners_key = app.create_key(&owner, "owner's integration").await;
    let admins_key = app.create_key(&admin, "admin's").await;
    let keys_before = key_count(&app).await;

    // The attack: an admin rolls the owner's key to obtain a secret that acts as the owner.
    let body = app
        .roll(&admin, &owners_key.id, Some(json!({})))
        .await
        .expect_forbidden("insufficient_permission");
    assert_eq!(
        body["error"]["message"],
        "only the key's creator can roll it; revoke it instead"
    );
    assert!(body.get("key").is_none(), "{body}");
    assert_eq!(key_count(&app).await, keys_before);
    assert_eq!(rolled_from(&app, &owners_key.id).await, 0);
    // Not even with a grace period, and the owner cannot roll the admin's key either.
    app.roll(&admin, &owners_key.id, grace(60))
        .await
        .expect_status(StatusCode::FORBIDDEN);
    app.roll(&owner, &admins_key.id, Some(json!({})))
        .await
        .expect_status(StatusCode::FORBIDDEN);
    assert_eq!(key_count(&app).await, keys_before);
    app.me(&owners_key.key).await.ok();

    // Managers may still revoke someone else's key.
    app.revoke(&admin, &admins_key.id).await.ok();
    app.revoke(&owner, &admins_key.id).await.ok();

    // The creator may roll, and the new secret acts as them.
    let new = app
        .roll(&owner, &owners_key.id, Some(json!({})))
        .await
        .expect_status(StatusCode::CREATED);
    let me = app.me(new["key"].as_str().expect("key")).await.ok();
    assert_eq!(me["user"]["id"], owner.user_id.as_str());
}

async fn rolling_an_inactive_key_is_key_inactive(app: TestApp) {
    let owner = app.bootstrap("Inactive", "owner@inactive.test").await;
    let revoked = app.create_key(&owner, "revoked").await;
    app.revoke(&owner, &revoked.id).await.ok();
    let expired = app.create_key(&owner, "expired").await;
    sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE id = $2")
        .bind(now_ms() - 1_000)
        .bind(&expired.id)
        .execute(app.raw_db())
        .await
        .expect("expire");
    let keys_before = key_count(&app).await;
    for key_id in [&revoked.id, &expired.id] {
        let reply = app.roll(&owner, key_id, grace(60)).await;
        assert_conflict(&reply, "key_inactive");
    }
    assert_eq!(key_count(&app).await, keys_before);

    // Rolled without grace, the old key has expired at once; rolling it again is still
    // `already_rolled`, whatever else is true of it.
    let rolled = app.create_key(&owner, "rolled").await;
    app.roll(&owner, &rolled.id, Some(json!({})))
        .await
        .expect_status(StatusCode::CREATED);
    let reply = app.roll(&owner, &rolled.id, Some(json!({}))).await;
    assert_conflict(&reply, "already_rolled");
    let graced = app.create_key(&owner, "graced").await;
    app.roll(&owner, &graced.id, grace(600))
        .await
        .expect_status(StatusCode::CREATED);
    let reply = app.roll(&owner, &graced.id, Some(json!({}))).await;
    assert_conflict(&reply, "already_rolled");
}

/// Every other way a secret is produced or shown: creation acts as the caller only, and no
/// list, record, audit event or member view carries a secret.
async fn no_other_path_hands_a_secret_to_someone_else(app: TestApp) {
    let owner = app.bootstrap("Paths", "owner@paths.test").await;
    let admin = app.add_member(&owner, "admin@paths.test", "admin").await;
    let keys_before = key_count(&app).await;
    for smuggled in [
        json!({ "name": "for the owner", "createdBy": owner.user_id }),
        json!({ "name": "for the owner", "userId": owner.user_id }),
        json!({ "name": "for the owner", "created_by": owner.user_id }),
        json!({ "name": "for the owner", "actAs": owner.user_id }),
    ] {
        app.new_key(&admin, smuggled)
            .await
            .expect_status(StatusCode::BAD_REQUEST);
    }
    assert_eq!(key_count(&app).await, keys_before);
    let (created, record) = app
        .new_key(&admin, json!({ "name": "mine" }))
        .await
        .created_key();
    assert_eq!(record["createdBy"]["id"], admin.user_id.as_str());
    let me = app.me(&created.key).await.body;
    assert_eq!(me["user"]["id"], admin.user_id.as_str());

    let owners_key = app.create_key(&owner, "owner's").await;
    let body = app
        .roll(&owner, &owners_key.id, grace(60))
        .await
        .expect_status(StatusCode::CREATED);
    let rolled_secret = body["key"].as_str().expect("key").to_owned();
    let secrets = [owners_key.key.as_str(), rolled_secret.as_str()];
    for (path, reply) in [
        ("key list", app.keys(&admin, "status=all").await),
        ("key record", app.key(&admin, &owners_key.id).await),
        ("audit events", app.audit_events(&admin, "limit=200").await),
        ("members", app.members(&admin, &owner.workspace_id).await),
        ("session", app.session(&admin.token).await),
    ] {
        let Reply { status, text, .. } = reply;
        assert!(status.is_success(), "{path}: {status} {text}");
        for secret in secrets {
            assert!(!text.contains(secret), "{path} shows a secret");
            // Nor the part after the prefix that the hint does not show.
            assert!(
                !text.contains(&secret[8..30]),
                "{path} shows part of a secret"
            );
        }
    }
}

/// Each race: a fresh key, its creator rolls it while an admin revokes it, both at once. The
/// outcome must be one of the two serial orders, and each response must say which.
async fn roll_and_revoke_races_end_as_some_serial_order(app: TestApp) {
    let owner = app.bootstrap("Race", "owner@race.test").await;
    let admin = app.add_member(&owner, "admin@race.test", "admin").await;
    let (mut roll_first, mut revoke_first) = (0, 0);
    for race in 0..RACES {
        let key = app.create_key(&owner, &format!("race {race}")).await;
        let (rolled, revoked) = tokio::join!(
            app.roll(&owner, &key.id, grace(60)),
            app.revoke(&admin, &key.id),
        );
        let roll_body = &rolled.body;
        let revoke_body = &revoked.body;
        assert_eq!(revoked.status, StatusCode::OK, "race {race}: {revoke_body}");
        assert_eq!(
            revoke_body["status"], "revoked",
            "race {race}: {revoke_body}"
        );
        match rolled.status {
            StatusCode::CREATED => {
                // Roll, then revoke: the revoke reports the live replacement.
                roll_first += 1;
                let new_id = roll_body["id"].as_str().expect("id");
                assert_eq!(
                    revoke_body["replacedBy"], new_id,
                    "race {race}: the revoke hid the replacement: {revoke_body}"
                );
                assert_eq!(rolled_from(&app, &key.id).await, 1);
                let me = app.me(roll_body["key"].as_str().expect("key")).await;
                assert_eq!(me.status, StatusCode::OK, "race {race}: {}", me.body);
            }
            _ => {
                // Revoke, then roll: nothing to roll, and no replacement exists.
                revoke_first += 1;
                assert_conflict(&rolled, "key_inactive");
                assert_eq!(revoke_body["replacedBy"], Value::Null, "race {race}");
                assert_eq!(rolled_from(&app, &key.id).await, 0, "race {race}");
            }
        }
        app.me(&key.key)
            .await
            .expect_unauthorized("revoked_api_key");
    }
    eprintln!("{RACES} roll/revoke races: roll first {roll_first}, revoke first {revoke_first}");
}

async fn roll_and_roll_races_let_exactly_one_through(app: TestApp) {
    let owner = app.bootstrap("Double roll", "owner@doubleroll.test").await;
    for race in 0..RACES {
        let key = app.create_key(&owner, &format!("race {race}")).await;
        let (first, second) = tokio::join!(
            app.roll(&owner, &key.id, grace(60)),
            app.roll(&owner, &key.id, grace(60)),
        );
        let mut statuses = [first.status, second.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::CREATED, StatusCode::CONFLICT],
            "race {race}: {} / {}",
            first.body,
            second.body
        );
        let loser = if first.status == StatusCode::CONFLICT {
            &first
        } else {
            &second
        };
        assert_conflict(loser, "already_rolled");
        assert_eq!(rolled_from(&app, &key.id).await, 1, "race {race}");
    }
}

async fn only_managers_may_lift_a_keys_rate_limit(app: TestApp) {
    let owner = app.bootstrap("Limits", "owner@limits.test").await;
    let admin = app.add_member(&owner, "admin@limits.test", "admin").await;
    let member = app.add_member(&owner, "member@limits.test", "member").await;
    let viewer = app.add_member(&owner, "viewer@limits.test", "viewer").await;
    for (account, role) in [(&member, "member"), (&viewer, "viewer")] {
        let keys_before = key_count(&app).await;
        for limit in [0, 61, 1_000, 1_000_000] {
            let body = app
                .new_key(
                    account,
                    json!({ "name": "unlimited", "rateLimitPerMinute": limit }),
                )
                .await
                .expect_forbidden("insufficient_permission");
            assert!(body.get("key").is_none(), "{role} {limit}: {body}");
        }
        assert_eq!(key_count(&app).await, keys_before, "{role}");
        for limit in [1, 30, 60] {
            let reply = app
                .new_key(
                    account,
                    json!({ "name": "stricter", "rateLimitPerMinute": limit }),
                )
                .await;
            assert_eq!(
                reply.status,
                StatusCode::CREATED,
                "{role} {limit}: {}",
                reply.body
            );
            assert_eq!(reply.body["rateLimitPerMinute"], limit);
        }
        let reply = app.new_key(account, json!({ "name": "default" })).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{role}: {}", reply.body);
        assert_eq!(reply.body["rateLimitPerMinute"], Value::Null);
    }
    for account in [&owner, &admin] {
        for limit in [0, 1, 60, 61, 1_000_000] {
            let reply = app
                .new_key(
                    account,
                    json!({ "name": "operator's choice", "rateLimitPerMinute": limit }),
                )
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{limit}: {}", reply.body);
        }
    }
    // Out of range is a validation error for everyone.
    for (account, limit) in [(&viewer, -1), (&owner, 1_000_001)] {
        app.new_key(
            account,
            json!({ "name": "bad", "rateLimitPerMinute": limit }),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
    }
}

async fn roll_with_grace_keeps_both_keys_until_the_old_expires(app: TestApp) {
    let owner = app.bootstrap("Roll", "owner@roll.test").await;
    let (old, _) = app
        .new_key(
            &owner,
            json!({ "name": "Zapier", "scopes": ["me:read", "leads:read"], "rateLimitPerMinute": 500 }),
        )
        .await
        .created_key();
    assert_eq!(app.me(&old.key).await.status, StatusCode::OK);

    let rolled_at = now_ms();
    let reply = app
        .roll(&owner, &old.id, Some(json!({ "expiresOldIn": 3 })))
        .await;
    assert_eq!(reply.header("cache-control"), "no-store");
    let new = reply.expect_status(StatusCode::CREATED);
    let new_key = new["key"].as_str().expect("key").to_owned();
    let new_id = new["id"].as_str().expect("id").to_owned();
    assert!(
        new_key.starts_with("hk_live_") && new_key.len() == 44,
        "{new_key}"
    );
    assert_ne!(new_key, old.key);
    assert_ne!(new_id, old.id);
    assert_eq!(new["rolledFrom"], old.id.as_str());
    assert_eq!(new["replacedBy"], Value::Null);
    assert_eq!(new["name"], "Zapier");
    assert_eq!(new["scopes"], json!(["me:read", "leads:read"]));
    assert_eq!(new["rateLimitPerMinute"], 500);
    assert_eq!(new["createdBy"]["id"], owner.user_id.as_str());
    assert_eq!(new["status"], "active");

    let old_record = app.key(&owner, &old.id).await.ok();
    assert_eq!(old_record["replacedBy"], new_id.as_str());
    assert_eq!(old_record["rolledFrom"], Value::Null);
    let old_expires = ms(&old_record["expiresAt"]);
    assert!(
        (rolled_at + 3_000..=now_ms() + 3_000).contains(&old_expires),
        "old expiresAt {old_expires} is not roll time + 3 s: {old_record}"
    );
    assert_eq!(old_record["status"], "active");

    // The new key is an independent secret, with the old key's scopes.
    let body = app.me(&new_key).await.ok();
    assert_eq!(body["apiKey"]["id"], new_id.as_str());
    app.create_lead(&new_key, json!({ "name": "x" }))
        .await
        .expect_missing_scope("leads:write");
    let body = app.me(&old.key).await.ok();
    assert_eq!(
        body["apiKey"]["id"],
        old.id.as_str(),
        "old key within its grace"
    );

    let keys_before = key_count(&app).await;
    app.roll(&owner, &old.id, Some(json!({ "expiresOldIn": 60 })))
        .await
        .expect_error(StatusCode::CONFLICT, "CONFLICT", Some("already_rolled"));
    assert_eq!(key_count(&app).await, keys_before);
    assert_eq!(
        key_time(&app, "expires_at", &old.id).await,
        Some(old_expires)
    );

    let all = app.key_ids(&owner, "status=all").await;
    assert!(all.contains(&old.id) && all.contains(&new_id));

    sleep_past(old_expires).await;
    app.me(&old.key)
        .await
        .expect_unauthorized("expired_api_key");
    app.me(&new_key).await.ok();
    let active = app.key_ids(&owner, "status=active").await;
    assert!(active.contains(&new_id) && !active.contains(&old.id));
    let list = app.keys(&owner, "status=all").await.ok();
    let items = list["items"].as_array().expect("items");
    let find = |id: &str| {
        items
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing: {list}"))
    };
    assert_eq!(find(&old.id)["replacedBy"], new_id.as_str());
    assert_eq!(find(&old.id)["status"], "expired");
    assert_eq!(find(&new_id)["rolledFrom"], old.id.as_str());

    assert_eq!(audit_count(&app, "api_key.rolled", &old.id).await, 1);
    let page = app.audit_events(&owner, "limit=200").await.ok();
    let event = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["action"] == "api_key.rolled")
        .unwrap_or_else(|| panic!("no api_key.rolled: {page}"));
    assert_eq!(
        event["actor"],
        json!({ "type": "user", "id": owner.user_id })
    );
    assert_eq!(event["target"], json!({ "type": "api_key", "id": old.id }));
    assert_eq!(event["details"]["newKeyId"], new_id.as_str());
}

async fn roll_without_body_expires_the_old_key_at_once(app: TestApp) {
    let owner = app.bootstrap("Roll now", "owner@rollnow.test").await;
    let old = app.create_key(&owner, "now").await;
    // Cached before the roll: the roll must reach the cache.
    assert_eq!(app.me(&old.key).await.status, StatusCode::OK);
    let new = app
        .roll(&owner, &old.id, None)
        .await
        .expect_status(StatusCode::CREATED);
    app.me(&old.key)
        .await
        .expect_unauthorized("expired_api_key");
    app.me(new["key"].as_str().expect("key")).await.ok();
    assert!(key_time(&app, "expires_at", &old.id).await.expect("expiry") <= now_ms());
    assert_eq!(app.key(&owner, &old.id).await.ok()["status"], "expired");

    // An explicit 0 does the same.
    let other = app.create_key(&owner, "zero").await;
    let reply = app
        .roll(&owner, &other.id, Some(json!({ "expiresOldIn": 0 })))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    app.me(&other.key)
        .await
        .expect_unauthorized("expired_api_key");

    // The old key is spent; rolling it again makes nothing.
    let keys_before = key_count(&app).await;
    app.roll(&owner, &old.id, None)
        .await
        .expect_status(StatusCode::CONFLICT);
    assert_eq!(key_count(&app).await, keys_before);
}

async fn roll_is_refused_for_revoked_and_out_of_range(app: TestApp) {
    let owner = app
        .bootstrap("Roll refused", "owner@rollrefused.test")
        .await;
    let revoked = app.create_key(&owner, "revoked").await;
    app.revoke(&owner, &revoked.id).await.ok();
    let active = app.create_key(&owner, "active").await;
    let keys_before = key_count(&app).await;

    app.roll(&owner, &revoked.id, Some(json!({ "expiresOldIn": 60 })))
        .await
        .expect_error(StatusCode::CONFLICT, "CONFLICT", Some("key_inactive"));
    app.me(&revoked.key)
        .await
        .expect_unauthorized("revoked_api_key");

    for bad in [
        json!({ "expiresOldIn": -1 }),
        json!({ "expiresOldIn": 604_801 }),
    ] {
        app.roll(&owner, &active.id, Some(bad))
            .await
            .expect_validation("expiresOldIn");
    }
    for bad in [json!({ "expiresOldIn": "60" }), json!({ "grace": 60 })] {
        app.roll(&owner, &active.id, Some(bad))
            .await
            .expect_status(StatusCode::BAD_REQUEST);
    }
    app.roll(&owner, "key_doesnotexist", None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);

    assert_eq!(
        key_count(&app).await,
        keys_before,
        "refused rolls wrote keys"
    );
    assert_eq!(key_time(&app, "expires_at", &active.id).await, None);
    assert_eq!(app.me(&active.key).await.status, StatusCode::OK);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'api_key.rolled'",
            &[]
        )
        .await,
        0
    );

    // The upper bound itself is allowed.
    app.roll(&owner, &active.id, Some(json!({ "expiresOldIn": 604_800 })))
        .await
        .expect_status(StatusCode::CREATED);
    let expires = key_time(&app, "expires_at", &active.id)
        .await
        .expect("expiry");
    assert!(
        (expires - now_ms() - 604_800_000).abs() < 60_000,
        "{expires}"
    );
}

async fn roll_follows_key_permissions_and_keeps_the_user(app: TestApp) {
    let owner = app.bootstrap("Roll perms", "owner@rollperms.test").await;
    let admin = app
        .add_member(&owner, "admin@rollperms.test", "admin")
        .await;
    let member = app
        .add_member(&owner, "member@rollperms.test", "member")
        .await;
    let other = app
        .add_member(&owner, "other@rollperms.test", "member")
        .await;
    let (members_key, _) = app
        .new_key(
            &member,
            json!({ "name": "member's", "scopes": ["me:read"], "rateLimitPerMinute": 42 }),
        )
        .await
        .created_key();
    let owners_key = app.create_key(&owner, "owner's").await;
    let keys_before = key_count(&app).await;
    let a_minute = || Some(json!({ "expiresOldIn": 60 }));

    for (key_id, what) in [
        (&members_key.id, "a member's"),
        (&owners_key.id, "the owner's"),
    ] {
        let Reply { status, body, .. } = app.roll(&other, key_id, a_minute()).await;
        assert!(
            status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN,
            "another member rolled {what} key: {status} {body}"
        );
        assert_eq!(key_time(&app, "expires_at", key_id).await, None);
    }
    assert_eq!(key_count(&app).await, keys_before);

    // Only the creator rolls (docs/api.md §9): an admin gets 403, and the member's own roll keeps
    // the key's user, scopes and limit.
    app.roll(&admin, &members_key.id, a_minute())
        .await
        .expect_status(StatusCode::FORBIDDEN);
    assert_eq!(key_count(&app).await, keys_before);
    let new = app
        .roll(&member, &members_key.id, a_minute())
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(new["createdBy"]["id"], member.user_id.as_str());
    assert_eq!(new["scopes"], json!(["me:read"]));
    assert_eq!(new["rateLimitPerMinute"], 42);
    let new_id = new["id"].as_str().expect("id");
    assert_eq!(
        key_column(&app, "created_by", new_id).await.as_deref(),
        Some(member.user_id.as_str())
    );
    let body = app.me(new["key"].as_str().expect("key")).await.ok();
    assert_eq!(body["user"]["id"], member.user_id.as_str());
    assert_eq!(body["user"]["role"], "member");
    assert!(app.key_ids(&member, "status=all").await.contains(new_id));
    let page = app.audit_events(&owner, "limit=200").await.ok();
    let event = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["action"] == "api_key.rolled")
        .unwrap_or_else(|| panic!("no api_key.rolled: {page}"));
    assert_eq!(event["actor"]["id"], member.user_id.as_str());

    // Members may roll their own keys.
    let own = app.create_key(&member, "own").await;
    app.roll(&member, &own.id, None)
        .await
        .expect_status(StatusCode::CREATED);
}
