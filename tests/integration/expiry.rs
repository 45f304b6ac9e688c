//! When keys stop working by time: an optional expiry, validated and shown; an expired key
//! refused (even when its verification is cached), listed as expired and audited once; and the
//! filter for keys unused for some days, the candidates for expiry.

use crate::common::{
    audit_count, count, ids_of, key_count, key_time, ms, now_ms, sleep_past, wait_for_audit,
    TestApp,
};
use crate::on_both_databases;
use heffl_api::domain::time::Timestamp;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

on_both_databases!(
    expiry_is_validated_and_shown,
    expired_key_is_refused_listed_and_audited,
    unused_for_days_lists_stale_and_never_used_keys,
);

async fn expiry_is_validated_and_shown(app: TestApp) {
    let owner = app.bootstrap("Expiry", "owner@expiry.test").await;
    let before = now_ms();
    let (key, record) = app
        .new_key(&owner, json!({ "name": "day", "expiresInDays": 1 }))
        .await
        .created_key();
    let after = now_ms();
    let day = 86_400_000;
    let expires = ms(&record["expiresAt"]);
    assert!(
        (before + day..=after + day).contains(&expires),
        "expiresAt {expires} not now + 1 day: {record}"
    );
    assert_eq!(record["status"], "active");
    assert_eq!(key_time(&app, "expires_at", &key.id).await, Some(expires));
    assert_eq!(app.me(&key.key).await.status, StatusCode::OK);

    let at = Timestamp(now_ms() + 3_600_000).to_rfc3339();
    let (exact, record) = app
        .new_key(&owner, json!({ "name": "hour", "expiresAt": at }))
        .await
        .created_key();
    assert_eq!(record["expiresAt"], at.as_str());
    let (forever, record) = app
        .new_key(&owner, json!({ "name": "forever" }))
        .await
        .created_key();
    assert_eq!(record["expiresAt"], Value::Null);
    let list = app.keys(&owner, "status=active").await.ok();
    let listed = list["items"].as_array().expect("items");
    for (id, expected) in [
        (&exact.id, json!(at)),
        (&forever.id, Value::Null),
        (&key.id, json!(Timestamp(expires).to_rfc3339())),
    ] {
        let item = listed
            .iter()
            .find(|i| &i["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed"));
        assert_eq!(item["expiresAt"], expected, "{item}");
    }

    let keys_before = key_count(&app).await;
    let past = Timestamp(now_ms() - 60_000).to_rfc3339();
    let future = Timestamp(now_ms() + 60_000).to_rfc3339();
    let refused = [
        (json!({ "name": "past", "expiresAt": past }), "expiresAt"),
        (
            json!({ "name": "both", "expiresAt": future, "expiresInDays": 1 }),
            "expiresAt",
        ),
        (
            json!({ "name": "zero", "expiresInDays": 0 }),
            "expiresInDays",
        ),
        (
            json!({ "name": "long", "expiresInDays": 3651 }),
            "expiresInDays",
        ),
        (
            json!({ "name": "text", "expiresAt": "tomorrow" }),
            "expiresAt",
        ),
    ];
    for (body, field) in refused {
        app.new_key(&owner, body).await.expect_validation(field);
    }
    assert_eq!(
        key_count(&app).await,
        keys_before,
        "refused creates wrote keys"
    );
}

async fn expired_key_is_refused_listed_and_audited(app: TestApp) {
    let owner = app.bootstrap("Expired", "owner@expired.test").await;
    let at = Timestamp(now_ms() + 3_000);
    let (key, _) = app
        .new_key(
            &owner,
            json!({ "name": "short", "expiresAt": at.to_rfc3339() }),
        )
        .await
        .created_key();
    // Used before it expires, so the verification is cached: expiry must still be checked.
    app.me(&key.key).await.ok();
    assert_eq!(audit_count(&app, "api_key.expired", &key.id).await, 0);
    sleep_past(at.0).await;

    let reply = app.me(&key.key).await;
    reply.expect_unauthorized("expired_api_key");
    assert_eq!(
        reply
            .headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok()),
        Some("ApiKey header=\"x-api-key\"")
    );
    app.create_lead(&key.key, json!({ "name": "Late" }))
        .await
        .expect_unauthorized("expired_api_key");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM leads", &[]).await, 0);

    assert_eq!(app.key(&owner, &key.id).await.ok()["status"], "expired");
    assert!(app
        .key_ids(&owner, "status=expired")
        .await
        .contains(&key.id));
    assert!(!app.key_ids(&owner, "status=active").await.contains(&key.id));
    assert!(!app
        .key_ids(&owner, "status=revoked")
        .await
        .contains(&key.id));
    assert!(app.key_ids(&owner, "status=all").await.contains(&key.id));

    assert_eq!(wait_for_audit(&app, "api_key.expired", &key.id).await, 1);
    for _ in 0..3 {
        app.me(&key.key)
            .await
            .expect_unauthorized("expired_api_key");
    }
    // The event is written off the request path; give a duplicate the time to appear.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(audit_count(&app, "api_key.expired", &key.id).await, 1);
    let page = app.audit_events(&owner, "limit=200").await.ok();
    let event = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["action"] == "api_key.expired")
        .unwrap_or_else(|| panic!("no api_key.expired in {page}"));
    assert_eq!(event["target"], json!({ "type": "api_key", "id": key.id }));
    assert_eq!(event["actor"]["type"], "system");

    // An expired key cannot be rolled back to life.
    let keys_before = key_count(&app).await;
    app.roll(&owner, &key.id, None).await.expect_error(
        StatusCode::CONFLICT,
        "CONFLICT",
        Some("key_inactive"),
    );
    assert_eq!(key_count(&app).await, keys_before);
}

async fn set_last_used(app: &TestApp, key_id: &str, at: i64) {
    sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
        .bind(at)
        .bind(key_id)
        .execute(app.raw_db())
        .await
        .expect("set last_used_at");
}

fn set_of(ids: &[&String]) -> HashSet<String> {
    ids.iter().map(|id| (*id).clone()).collect()
}

async fn unused_for_days_lists_stale_and_never_used_keys(app: TestApp) {
    let owner = app.bootstrap("Unused", "owner@unused.test").await;
    let stale = app.create_key(&owner, "stale").await;
    let recent = app.create_key(&owner, "recent").await;
    let never = app.create_key(&owner, "never").await;
    let forty_days_ago = now_ms() - 40 * 86_400_000;
    // A second ago, not "now": `unusedForDays=0` means "not used since this instant", and a
    // use stamped in the same millisecond as the query is not before it.
    let a_second_ago = now_ms() - 1_000;
    set_last_used(&app, &stale.id, forty_days_ago).await;
    set_last_used(&app, &recent.id, a_second_ago).await;
    assert_eq!(
        app.key_ids(&owner, "unusedForDays=0").await,
        set_of(&[&stale.id, &recent.id, &never.id])
    );
    let list = app.keys(&owner, "unusedForDays=30").await.ok();
    assert_eq!(ids_of(&list), set_of(&[&stale.id, &never.id]), "{list}");
    let listed_stale = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == stale.id.as_str())
        .expect("stale listed");
    assert_eq!(ms(&listed_stale["lastUsedAt"]), forty_days_ago);
    assert_eq!(
        app.key_ids(&owner, "unusedForDays=50").await,
        set_of(&[&never.id])
    );
    // Combined with a status: a revoked stale key is not "active".
    app.revoke(&owner, &stale.id).await.ok();
    assert_eq!(
        app.key_ids(&owner, "unusedForDays=30").await,
        set_of(&[&never.id])
    );
    assert!(app
        .key_ids(&owner, "unusedForDays=30&status=all")
        .await
        .contains(&stale.id));
    // A member's list is limited to their own keys, with the same filter.
    let member = app.add_member(&owner, "member@unused.test", "member").await;
    let members_stale = app.create_key(&member, "member stale").await;
    let members_recent = app.create_key(&member, "member recent").await;
    set_last_used(&app, &members_recent.id, now_ms()).await;
    assert_eq!(
        app.key_ids(&member, "unusedForDays=30&status=all").await,
        set_of(&[&members_stale.id])
    );
    for bad in ["-1", "x", "3651"] {
        app.keys(&owner, &format!("unusedForDays={bad}"))
            .await
            .expect_validation("unusedForDays");
    }
}
