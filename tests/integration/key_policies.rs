//! What can be set on a key after it is made (docs/api.md §14): an edit that applies at once
//! and is audited by field, all or nothing; a pause; an address allowlist (and the spoofed
//! `X-Forwarded-For` it must not believe); metadata and an external id handed back with every
//! verification; who may change which field; the order in which a key's checks refuse; and the
//! IETF rate-limit fields.

use crate::common::{audit_count, ids_of, key_column, Account, TestApp};
use crate::on_both_databases;
use crate::test_app::Reply;
use heffl_api::domain::time::Timestamp;
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_databases!(
    an_edit_applies_at_once_and_is_audited_by_field,
    a_bad_field_changes_nothing,
    a_paused_key_is_refused_until_enabled_and_a_revoked_one_stays_revoked,
    an_allowlist_refuses_other_addresses_and_names_the_one_it_saw,
    a_spoofed_forwarded_for_does_not_pass_an_allowlist,
    meta_and_external_id_come_back_with_every_verification,
    who_may_change_what,
    a_refused_address_learns_nothing_about_limits,
    rate_limit_fields_of_the_ietf_draft_are_sent,
);

fn message(reply: &Reply) -> String {
    reply.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn an_edit_applies_at_once_and_is_audited_by_field(app: TestApp) {
    let owner = app.bootstrap("Edits", "owner@edits.test").await;
    let key = app.create_key(&owner, "Website Forms").await;
    // Cached before the edit: the edit must drop what the cache holds.
    app.me(&key.key).await.ok();

    let record = app
        .edit_key(
            &owner,
            &key.id,
            json!({ "name": "Website forms (EU)", "description": "Contact form on example.eu" }),
        )
        .await
        .ok();
    assert_eq!(record["name"], "Website forms (EU)");
    assert_eq!(record["description"], "Contact form on example.eu");
    assert_eq!(record["enabled"], true);
    assert_eq!(record["allowedIps"], json!([]));
    let me = app.me(&key.key).await.ok();
    assert_eq!(me["apiKey"]["name"], "Website forms (EU)");
    assert_eq!(app.key(&owner, &key.id).await.ok(), record);

    let events = app
        .audit_events(&owner, "action=api_key.updated")
        .await
        .ok();
    let event = &events["items"][0];
    assert_eq!(event["target"]["id"], key.id.as_str(), "{events}");
    assert_eq!(
        event["details"]["fields"],
        json!(["name", "description"]),
        "{events}"
    );

    // Sending what is already there changes nothing and records nothing.
    app.edit_key(&owner, &key.id, json!({ "name": "Website forms (EU)" }))
        .await
        .ok();
    assert_eq!(audit_count(&app, "api_key.updated", &key.id).await, 1);
    // `null` clears what may be empty.
    let record = app
        .edit_key(&owner, &key.id, json!({ "description": null }))
        .await
        .ok();
    assert_eq!(record["description"], Value::Null);
    assert_eq!(key_column(&app, "description", &key.id).await, None);
}

async fn a_bad_field_changes_nothing(app: TestApp) {
    let owner = app.bootstrap("Atomic", "owner@atomic.test").await;
    let key = app.create_key(&owner, "Data Sync").await;
    let before = app.key(&owner, &key.id).await.ok();

    let reply = app
        .edit_key(
            &owner,
            &key.id,
            json!({
                "name": "Renamed",
                "allowedIps": ["10.0.0.0/8", "10.0.0.1/24"],
                "meta": [1, 2],
                "externalId": "has space",
                "description": "x".repeat(501),
            }),
        )
        .await;
    let body = reply.expect_issues(&["allowedIps", "meta", "externalId", "description"]);
    let text = body.to_string();
    assert!(
        text.contains("entry 1") && text.contains("10.0.0.0/24"),
        "{text}"
    );
    assert_eq!(app.key(&owner, &key.id).await.ok(), before, "half-applied");
    assert_eq!(audit_count(&app, "api_key.updated", &key.id).await, 0);

    let big_meta = json!({ "blob": "a".repeat(1100) });
    app.edit_key(&owner, &key.id, json!({ "meta": big_meta }))
        .await
        .expect_issues(&["meta"]);
    let too_many: Vec<String> = (0..101).map(|i| format!("10.{i}.0.0/16")).collect();
    app.edit_key(&owner, &key.id, json!({ "allowedIps": too_many }))
        .await
        .expect_issues(&["allowedIps"]);
    let unknown = app
        .edit_key(&owner, &key.id, json!({ "nmae": "typo" }))
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.body);
    assert!(unknown.text.contains("nmae"), "{}", unknown.text);
    app.edit_key(&owner, &key.id, json!({ "name": null }))
        .await
        .expect_status(StatusCode::BAD_REQUEST);
    assert_eq!(app.key(&owner, &key.id).await.ok(), before);
}

async fn a_paused_key_is_refused_until_enabled_and_a_revoked_one_stays_revoked(app: TestApp) {
    let owner = app.bootstrap("Pause", "owner@pause.test").await;
    let key = app.create_key(&owner, "Data Sync").await;
    app.me(&key.key).await.ok();

    app.edit_key(&owner, &key.id, json!({ "enabled": false }))
        .await
        .ok();
    let refused = app.me(&key.key).await;
    refused.expect_unauthorized("disabled_api_key");
    assert!(message(&refused).contains("disabled"), "{}", refused.body);
    app.verify(&key.key, "")
        .await
        .expect_unauthorized("disabled_api_key");
    let events = app
        .audit_events(&owner, "action=api_key.updated")
        .await
        .ok();
    assert_eq!(events["items"][0]["details"]["enabled"], false, "{events}");

    app.edit_key(&owner, &key.id, json!({ "enabled": true }))
        .await
        .ok();
    app.me(&key.key).await.ok();

    // Made paused: nothing works until someone enables it.
    let (paused, record) = app
        .new_key(&owner, json!({ "name": "Later", "enabled": false }))
        .await
        .created_key();
    assert_eq!(record["enabled"], false);
    app.me(&paused.key)
        .await
        .expect_unauthorized("disabled_api_key");

    app.revoke(&owner, &key.id).await.ok();
    let reply = app
        .edit_key(&owner, &key.id, json!({ "enabled": true }))
        .await;
    reply.expect_error(StatusCode::CONFLICT, "CONFLICT", Some("key_inactive"));
    app.me(&key.key)
        .await
        .expect_unauthorized("revoked_api_key");
}

async fn an_allowlist_refuses_other_addresses_and_names_the_one_it_saw(app: TestApp) {
    let owner = app.bootstrap("Allow", "owner@allow.test").await;
    let (key, record) = app
        .new_key(
            &owner,
            json!({ "name": "Office only", "allowedIps": ["192.0.2.0/24", "2001:db8::/32"] }),
        )
        .await
        .created_key();
    assert_eq!(
        record["allowedIps"],
        json!(["192.0.2.0/24", "2001:db8::/32"])
    );
    let refused = app.me(&key.key).await;
    refused.expect_forbidden("ip_not_allowed");
    assert!(message(&refused).contains("127.0.0.1"), "{}", refused.body);
    app.verify(&key.key, "")
        .await
        .expect_forbidden("ip_not_allowed");
    app.leads(&key.key, "")
        .await
        .expect_forbidden("ip_not_allowed");

    // A single address is stored as its block; then this client passes.
    let record = app
        .edit_key(
            &owner,
            &key.id,
            json!({ "allowedIps": ["192.0.2.0/24", "127.0.0.1"] }),
        )
        .await
        .ok();
    assert_eq!(
        record["allowedIps"],
        json!(["192.0.2.0/24", "127.0.0.1/32"])
    );
    assert_eq!(
        key_column(&app, "allowed_ips", &key.id).await.as_deref(),
        Some("192.0.2.0/24 127.0.0.1/32")
    );
    app.me(&key.key).await.ok();
    // An empty list is any address again.
    app.edit_key(&owner, &key.id, json!({ "allowedIps": ["192.0.2.1"] }))
        .await
        .ok();
    app.me(&key.key).await.expect_forbidden("ip_not_allowed");
    let record = app
        .edit_key(&owner, &key.id, json!({ "allowedIps": [] }))
        .await
        .ok();
    assert_eq!(record["allowedIps"], json!([]));
    assert_eq!(key_column(&app, "allowed_ips", &key.id).await, None);
    app.me(&key.key).await.ok();
}

/// The attack: a client outside the allowlist claims an inside address in `X-Forwarded-For`.
/// Without a trusted proxy in front the header is not believed.
async fn a_spoofed_forwarded_for_does_not_pass_an_allowlist(app: TestApp) {
    let owner = app.bootstrap("Spoof", "owner@spoof.test").await;
    let (key, _) = app
        .new_key(
            &owner,
            json!({ "name": "Office", "allowedIps": ["192.0.2.0/24"] }),
        )
        .await
        .created_key();
    let spoofed = app
        .me_with_header(&key.key, "x-forwarded-for", "192.0.2.10")
        .await;
    spoofed.expect_forbidden("ip_not_allowed");
    assert!(message(&spoofed).contains("127.0.0.1"), "{}", spoofed.body);
}

async fn meta_and_external_id_come_back_with_every_verification(app: TestApp) {
    let owner = app.bootstrap("Meta", "owner@meta.test").await;
    let meta = json!({ "plan": "pro", "seats": 12, "tags": ["eu"] });
    let (key, record) = app
        .new_key(
            &owner,
            json!({ "name": "Customer key", "meta": meta, "externalId": "cus_4QX2" }),
        )
        .await
        .created_key();
    assert_eq!(record["meta"], meta);
    assert_eq!(record["externalId"], "cus_4QX2");
    let other = app.create_key(&owner, "No customer").await;

    let me = app.me(&key.key).await.ok();
    assert_eq!(me["apiKey"]["meta"], meta);
    assert_eq!(me["apiKey"]["externalId"], "cus_4QX2");
    let verified = app.verify(&key.key, "").await;
    assert_eq!(verified.header("x-heffl-external-id"), "cus_4QX2");
    let body = verified.ok();
    assert_eq!(body["apiKey"]["meta"], meta);
    assert_eq!(body["apiKey"]["externalId"], "cus_4QX2");

    // Fields without a value are there, as null; no header.
    let plain = app.verify(&other.key, "").await;
    assert_eq!(plain.header("x-heffl-external-id"), "");
    let body = plain.ok();
    assert_eq!(body["apiKey"]["meta"], Value::Null);
    assert_eq!(body["apiKey"]["externalId"], Value::Null);

    let listed = ids_of(&app.keys(&owner, "externalId=cus_4QX2").await.ok());
    assert_eq!(listed, [key.id.clone()].into_iter().collect());
    assert!(ids_of(&app.keys(&owner, "externalId=cus_none").await.ok()).is_empty());
    app.keys(&owner, "externalId=has%20space")
        .await
        .expect_issues(&["externalId"]);

    // A new value is what the next verification sees.
    app.edit_key(
        &owner,
        &key.id,
        json!({ "meta": { "plan": "team" }, "externalId": null }),
    )
    .await
    .ok();
    let me = app.me(&key.key).await.ok();
    assert_eq!(me["apiKey"]["meta"], json!({ "plan": "team" }));
    assert_eq!(me["apiKey"]["externalId"], Value::Null);
}

/// The key's creator edits their key within the rules a creator has; owners and admins edit
/// every key; nobody widens scopes. A refusal names the field.
async fn who_may_change_what(app: TestApp) {
    let owner = app.bootstrap("Rules", "owner@rules.test").await;
    let member = app.add_member(&owner, "member@rules.test", "member").await;
    let in_a_week = Timestamp(Timestamp::now().0 + 7 * 86_400_000).to_rfc3339();
    let in_a_month = Timestamp(Timestamp::now().0 + 30 * 86_400_000).to_rfc3339();
    let tomorrow = Timestamp(Timestamp::now().0 + 86_400_000).to_rfc3339();
    let (key, _) = app
        .new_key(
            &member,
            json!({ "name": "Mine", "expiresAt": in_a_week, "scopes": ["me:read", "leads:read"] }),
        )
        .await
        .created_key();

    let refused = |reply: Reply, field: &str| {
        let body = reply.expect_forbidden("insufficient_permission");
        let text = body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            text.starts_with(field),
            "the refusal must name {field}: {body}"
        );
    };
    refused(
        app.edit_key(&member, &key.id, json!({ "expiresAt": in_a_month }))
            .await,
        "expiresAt",
    );
    refused(
        app.edit_key(&member, &key.id, json!({ "expiresAt": null }))
            .await,
        "expiresAt",
    );
    refused(
        app.edit_key(&member, &key.id, json!({ "rateLimitPerMinute": 0 }))
            .await,
        "rateLimitPerMinute",
    );
    refused(
        app.edit_key(
            &member,
            &key.id,
            json!({ "scopes": ["me:read", "leads:write"] }),
        )
        .await,
        "scopes",
    );
    // A refused field stops the whole edit.
    refused(
        app.edit_key(
            &member,
            &key.id,
            json!({ "name": "Renamed", "expiresAt": in_a_month }),
        )
        .await,
        "expiresAt",
    );
    assert_eq!(app.key(&member, &key.id).await.ok()["name"], "Mine");

    // What a creator may do: sooner, stricter, narrower.
    let record = app
        .edit_key(
            &member,
            &key.id,
            json!({ "expiresAt": tomorrow, "rateLimitPerMinute": 10, "scopes": ["leads:read"] }),
        )
        .await
        .ok();
    assert_eq!(record["expiresAt"], tomorrow.as_str());
    assert_eq!(record["rateLimitPerMinute"], 10);
    assert_eq!(record["scopes"], json!(["leads:read"]));
    app.me(&key.key).await.expect_missing_scope("me:read");

    // Someone else's key is not the member's to see, let alone edit.
    let owners = app.create_key(&owner, "Owner's").await;
    app.edit_key(&member, &owners.id, json!({ "name": "Mine now" }))
        .await
        .expect_status(StatusCode::NOT_FOUND);
    // Owners and admins edit any key, later expiry included; scopes still only narrow.
    let record = app
        .edit_key(
            &owner,
            &key.id,
            json!({ "expiresAt": null, "rateLimitPerMinute": 0 }),
        )
        .await
        .ok();
    assert_eq!(record["expiresAt"], Value::Null);
    assert_eq!(record["rateLimitPerMinute"], 0);
    refused(
        app.edit_key(
            &owner,
            &key.id,
            json!({ "scopes": ["leads:read", "leads:write"] }),
        )
        .await,
        "scopes",
    );
}

/// The order of checks: a key refused for its address is refused before its limit is counted,
/// so the answer carries no limit figures and the limit is untouched.
async fn a_refused_address_learns_nothing_about_limits(app: TestApp) {
    let owner: Account = app.bootstrap("Order", "owner@order.test").await;
    let (key, _) = app
        .new_key(
            &owner,
            json!({ "name": "Tight", "rateLimitPerMinute": 2, "allowedIps": ["192.0.2.0/24"] }),
        )
        .await
        .created_key();
    for _ in 0..4 {
        let reply = app.me(&key.key).await;
        reply.expect_forbidden("ip_not_allowed");
        assert_eq!(reply.header("ratelimit-limit"), "", "{:?}", reply.headers);
        assert_eq!(reply.header("ratelimit"), "");
    }
    app.edit_key(&owner, &key.id, json!({ "allowedIps": [] }))
        .await
        .ok();
    // The refused requests spent none of the two.
    let first = app.me(&key.key).await;
    assert_eq!(first.header("ratelimit-remaining"), "1");
    first.ok();
    app.me(&key.key).await.ok();
    app.me(&key.key)
        .await
        .expect_status(StatusCode::TOO_MANY_REQUESTS);
}

async fn rate_limit_fields_of_the_ietf_draft_are_sent(app: TestApp) {
    let owner = app.bootstrap("Ietf", "owner@ietf.test").await;
    let (key, _) = app
        .new_key(&owner, json!({ "name": "Sixty", "rateLimitPerMinute": 60 }))
        .await
        .created_key();
    let reply = app.me(&key.key).await;
    assert_eq!(reply.header("ratelimit-policy"), "\"minute\";q=60;w=60");
    let current = reply.header("ratelimit");
    let reset = reply.header("ratelimit-reset");
    assert_eq!(
        current,
        format!("\"minute\";r=59;t={reset}"),
        "{:?}",
        reply.headers
    );
    assert_eq!(reply.header("ratelimit-limit"), "60");
    let verify = app.verify(&key.key, "").await;
    assert!(
        verify.header("ratelimit").starts_with("\"minute\";r=58;t="),
        "{:?}",
        verify.headers
    );
}
