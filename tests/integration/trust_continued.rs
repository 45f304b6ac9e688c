//! Trust rules tested as the attacks they stop, on both databases: a gateway's misspelt scope
//! parameter must not skip the scope check, a demoted creator must not roll a manager's "no
//! limit" into a fresh secret, and names that render as nothing are refused.

use crate::common::{Account, TestApp};
use crate::on_both_databases;
use reqwest::StatusCode;
use serde_json::json;

/// A gateway configured with `scopes=` (or `Scope=`, `scope[]=`) meant to require a scope; the
/// key lacks it. Ignoring the parameter would answer 200 with identity headers.
async fn verify_refuses_a_misspelt_scope_parameter(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let (key, _) = app
        .new_key(&owner, json!({ "name": "reader", "scopes": ["me:read"] }))
        .await
        .created_key();
    for query in [
        "scopes=leads:write",
        "Scope=leads:write",
        "scope[]=leads:write",
        "scope=me:read&Scope=leads:write",
    ] {
        let reply = app.verify(&key.key, &format!("?{query}")).await;
        let name = query
            .rsplit('&')
            .next()
            .and_then(|p| p.split('=').next())
            .expect("name");
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "?{query}: {}",
            reply.body
        );
        assert!(reply.header("x-heffl-key-id").is_empty(), "?{query}");
        let issues = reply.body["error"]["details"]["issues"].to_string();
        assert!(issues.contains(name), "?{query} names {name}: {issues}");
    }
    // The correct spelling still works, and Envoy's form keeps the original request's query.
    app.verify(&key.key, "?scope=me:read").await.ok();
    app.verify(&key.key, "/orders/7?page=2").await.ok();
    app.verify(&key.key, "?scope=leads:write")
        .await
        .expect_forbidden("insufficient_scope");
}

/// Rolls `key_id` as `caller` (without grace) and returns the replacement's limit.
async fn rolled_limit(app: &TestApp, caller: &Account, key_id: &str) -> serde_json::Value {
    let rolled = app
        .roll(caller, key_id, None)
        .await
        .expect_status(StatusCode::CREATED);
    rolled["rateLimitPerMinute"].clone()
}

/// An admin makes a key with no limit, is demoted to member, and rolls it.
async fn a_demoted_creator_s_roll_gets_the_default_limit(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let admin = app.add_member(&owner, "admin@acme.test", "admin").await;
    let (unlimited, body) = app
        .new_key(
            &admin,
            json!({ "name": "firehose", "rateLimitPerMinute": 0 }),
        )
        .await
        .created_key();
    assert_eq!(body["rateLimitPerMinute"], 0, "{body}");
    let (modest, _) = app
        .new_key(
            &admin,
            json!({ "name": "modest", "rateLimitPerMinute": 30 }),
        )
        .await
        .created_key();
    app.set_role(&owner, &owner.workspace_id, &admin.user_id, "member")
        .await
        .ok();

    assert_eq!(
        rolled_limit(&app, &admin, &unlimited.id).await,
        serde_json::Value::Null
    );
    // A limit a member may set is kept.
    assert_eq!(rolled_limit(&app, &admin, &modest.id).await, 30);
    // An owner rolling their own unlimited key keeps it.
    let (own, _) = app
        .new_key(
            &owner,
            json!({ "name": "owner's", "rateLimitPerMinute": 0 }),
        )
        .await
        .created_key();
    assert_eq!(rolled_limit(&app, &owner, &own.id).await, 0);
}

async fn names_that_render_as_nothing_are_refused(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    for name in [
        "\u{3164}",
        "\u{ffa0}",
        "\u{115f}\u{1160}",
        "a\u{034f}b",
        "\u{fe0f}",
        "\u{2800}",
    ] {
        app.new_key(&owner, json!({ "name": name }))
            .await
            .expect_validation("name");
        app.invite(
            &owner,
            &owner.workspace_id,
            &format!("x{name}y@acme.test"),
            "member",
        )
        .await
        .expect_validation("email");
    }
    let (_, body) = app
        .new_key(&owner, json!({ "name": "I ❤\u{fe0f} forms" }))
        .await
        .created_key();
    assert_eq!(body["name"], "I ❤\u{fe0f} forms");
}

on_both_databases!(
    verify_refuses_a_misspelt_scope_parameter,
    a_demoted_creator_s_roll_gets_the_default_limit,
    names_that_render_as_nothing_are_refused,
);
