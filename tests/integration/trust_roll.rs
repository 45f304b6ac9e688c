//! SPEC §9, keys that could be turned against their owner: only a key's creator may roll it,
//! rolling an inactive key is 409, concurrent roll and revoke calls are serial and truthful,
//! a key's rate limit is the operator's, and no other path hands a secret to someone else.

use crate::common::{
    assert_error, count, create_key_with, key_count, key_path, keys_path, me_with_key, parts,
    Account, TestApp,
};
use crate::{on_both_databases, on_both_databases_with};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

on_both_databases!(
    only_the_creator_may_roll_a_key,
    rolling_an_inactive_key_is_key_inactive,
    no_other_path_hands_a_secret_to_someone_else,
    roll_and_revoke_races_end_as_some_serial_order,
    roll_and_roll_races_let_exactly_one_through,
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

async fn roll(app: &TestApp, account: &Account, key_id: &str, body: Value) -> (StatusCode, Value) {
    parts(
        app.send(
            Method::POST,
            &format!("{}/roll", key_path(&account.workspace_id, key_id)),
            Some(&account.token),
            Some(body),
        )
        .await,
    )
    .await
}

async fn revoke(app: &TestApp, account: &Account, key_id: &str) -> (StatusCode, Value) {
    parts(
        app.send(
            Method::POST,
            &format!("{}/revoke", key_path(&account.workspace_id, key_id)),
            Some(&account.token),
            None,
        )
        .await,
    )
    .await
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
fn assert_conflict(status: StatusCode, body: &Value, reason: &str) {
    assert_error(status, body, StatusCode::CONFLICT, "CONFLICT", Some(reason));
}

async fn only_the_creator_may_roll_a_key(app: TestApp) {
    let owner = app.bootstrap("Backdoor", "owner@backdoor.test").await;
    let admin = app.add_member(&owner, "admin@backdoor.test", "admin").await;
    let owners_key = app.create_key(&owner, "owner's integration").await;
    let admins_key = app.create_key(&admin, "admin's").await;
    let keys_before = key_count(&app).await;

    // The attack: an admin rolls the owner's key to obtain a secret that acts as the owner.
    let (status, body) = roll(&app, &admin, &owners_key.id, json!({})).await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        Some("insufficient_permission"),
    );
    assert_eq!(
        body["error"]["message"],
        "only the key's creator can roll it; revoke it instead"
    );
    assert!(body.get("key").is_none(), "{body}");
    assert_eq!(key_count(&app).await, keys_before);
    assert_eq!(rolled_from(&app, &owners_key.id).await, 0);
    // Not even with a grace period, and the owner cannot roll the admin's key either.
    let (status, _) = roll(&app, &admin, &owners_key.id, json!({ "expiresOldIn": 60 })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = roll(&app, &owner, &admins_key.id, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(key_count(&app).await, keys_before);
    let (status, _) = me_with_key(&app, &owners_key.key).await;
    assert_eq!(status, StatusCode::OK);

    // Managers may still revoke someone else's key.
    let (status, body) = revoke(&app, &admin, &admins_key.id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = revoke(&app, &owner, &admins_key.id).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The creator may roll, and the new secret acts as them.
    let (status, new) = roll(&app, &owner, &owners_key.id, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{new}");
    let (status, me) = me_with_key(&app, new["key"].as_str().expect("key")).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["id"], owner.user_id.as_str());
}

async fn rolling_an_inactive_key_is_key_inactive(app: TestApp) {
    let owner = app.bootstrap("Inactive", "owner@inactive.test").await;
    let revoked = app.create_key(&owner, "revoked").await;
    let (status, _) = revoke(&app, &owner, &revoked.id).await;
    assert_eq!(status, StatusCode::OK);
    let expired = app.create_key(&owner, "expired").await;
    sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE id = $2")
        .bind(now_ms() - 1_000)
        .bind(&expired.id)
        .execute(app.store.pool())
        .await
        .expect("expire");
    let keys_before = key_count(&app).await;
    for key_id in [&revoked.id, &expired.id] {
        let (status, body) = roll(&app, &owner, key_id, json!({ "expiresOldIn": 60 })).await;
        assert_conflict(status, &body, "key_inactive");
    }
    assert_eq!(key_count(&app).await, keys_before);

    // Rolled without grace, the old key has expired at once; rolling it again is still
    // `already_rolled`, whatever else is true of it.
    let rolled = app.create_key(&owner, "rolled").await;
    let (status, body) = roll(&app, &owner, &rolled.id, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = roll(&app, &owner, &rolled.id, json!({})).await;
    assert_conflict(status, &body, "already_rolled");
    let graced = app.create_key(&owner, "graced").await;
    let (status, body) = roll(&app, &owner, &graced.id, json!({ "expiresOldIn": 600 })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = roll(&app, &owner, &graced.id, json!({})).await;
    assert_conflict(status, &body, "already_rolled");
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
        let (status, body) = create_key_with(&app, &admin, smuggled).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(key_count(&app).await, keys_before);
    let (status, created) = create_key_with(&app, &admin, json!({ "name": "mine" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["createdBy"]["id"], admin.user_id.as_str());
    let (_, me) = me_with_key(&app, created["key"].as_str().expect("key")).await;
    assert_eq!(me["user"]["id"], admin.user_id.as_str());

    let owners_key = app.create_key(&owner, "owner's").await;
    let (status, body) = roll(&app, &owner, &owners_key.id, json!({ "expiresOldIn": 60 })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let rolled_secret = body["key"].as_str().expect("key").to_owned();
    let secrets = [owners_key.key.as_str(), rolled_secret.as_str()];
    let ws = &owner.workspace_id;
    for path in [
        format!("{}?status=all", keys_path(ws)),
        key_path(ws, &owners_key.id),
        format!("/app/v1/workspaces/{ws}/audit-events?limit=200"),
        format!("/app/v1/workspaces/{ws}/members"),
        "/app/v1/session".to_owned(),
    ] {
        let response = app.send(Method::GET, &path, Some(&admin.token), None).await;
        let status = response.status();
        let text = response.text().await.expect("body");
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
            roll(&app, &owner, &key.id, json!({ "expiresOldIn": 60 })),
            revoke(&app, &admin, &key.id),
        );
        let (roll_status, roll_body) = rolled;
        let (revoke_status, revoke_body) = revoked;
        assert_eq!(revoke_status, StatusCode::OK, "race {race}: {revoke_body}");
        assert_eq!(
            revoke_body["status"], "revoked",
            "race {race}: {revoke_body}"
        );
        match roll_status {
            StatusCode::CREATED => {
                // Roll, then revoke: the revoke reports the live replacement.
                roll_first += 1;
                let new_id = roll_body["id"].as_str().expect("id");
                assert_eq!(
                    revoke_body["replacedBy"], new_id,
                    "race {race}: the revoke hid the replacement: {revoke_body}"
                );
                assert_eq!(rolled_from(&app, &key.id).await, 1);
                let (status, me) = me_with_key(&app, roll_body["key"].as_str().expect("key")).await;
                assert_eq!(status, StatusCode::OK, "race {race}: {me}");
            }
            _ => {
                // Revoke, then roll: nothing to roll, and no replacement exists.
                revoke_first += 1;
                assert_conflict(roll_status, &roll_body, "key_inactive");
                assert_eq!(revoke_body["replacedBy"], Value::Null, "race {race}");
                assert_eq!(rolled_from(&app, &key.id).await, 0, "race {race}");
            }
        }
        let (status, body) = me_with_key(&app, &key.key).await;
        assert_error(
            status,
            &body,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            Some("revoked_api_key"),
        );
    }
    eprintln!("{RACES} roll/revoke races: roll first {roll_first}, revoke first {revoke_first}");
}

async fn roll_and_roll_races_let_exactly_one_through(app: TestApp) {
    let owner = app.bootstrap("Double roll", "owner@doubleroll.test").await;
    for race in 0..RACES {
        let key = app.create_key(&owner, &format!("race {race}")).await;
        let (first, second) = tokio::join!(
            roll(&app, &owner, &key.id, json!({ "expiresOldIn": 60 })),
            roll(&app, &owner, &key.id, json!({ "expiresOldIn": 60 })),
        );
        let mut statuses = [first.0, second.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::CREATED, StatusCode::CONFLICT],
            "race {race}: {} / {}",
            first.1,
            second.1
        );
        let loser = if first.0 == StatusCode::CONFLICT {
            &first
        } else {
            &second
        };
        assert_conflict(loser.0, &loser.1, "already_rolled");
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
            let (status, body) = create_key_with(
                &app,
                account,
                json!({ "name": "unlimited", "rateLimitPerMinute": limit }),
            )
            .await;
            assert_error(
                status,
                &body,
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                Some("insufficient_permission"),
            );
            assert!(body.get("key").is_none(), "{role} {limit}: {body}");
        }
        assert_eq!(key_count(&app).await, keys_before, "{role}");
        for limit in [1, 30, 60] {
            let (status, body) = create_key_with(
                &app,
                account,
                json!({ "name": "stricter", "rateLimitPerMinute": limit }),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{role} {limit}: {body}");
            assert_eq!(body["rateLimitPerMinute"], limit);
        }
        let (status, body) = create_key_with(&app, account, json!({ "name": "default" })).await;
        assert_eq!(status, StatusCode::CREATED, "{role}: {body}");
        assert_eq!(body["rateLimitPerMinute"], Value::Null);
    }
    for account in [&owner, &admin] {
        for limit in [0, 1, 60, 61, 1_000_000] {
            let (status, body) = create_key_with(
                &app,
                account,
                json!({ "name": "operator's choice", "rateLimitPerMinute": limit }),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{limit}: {body}");
        }
    }
    // Out of range is a validation error for everyone.
    for (account, limit) in [(&viewer, -1), (&owner, 1_000_001)] {
        let (status, body) = create_key_with(
            &app,
            account,
            json!({ "name": "bad", "rateLimitPerMinute": limit }),
        )
        .await;
        assert_error(
            status,
            &body,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            None,
        );
    }
}
