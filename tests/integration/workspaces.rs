//! Creating workspaces: the caller becomes the owner at once, the name is trimmed and counted
//! in characters, and a bad name writes nothing.

use crate::common::{assert_spec_time, audit_count, count, count_rows, keys_of, now_ms};
use crate::common::{role_in_db, session_roles, TestApp};
use crate::on_both_databases;
use reqwest::{Method, StatusCode};
use serde_json::json;

on_both_databases!(
    create_workspace_makes_caller_owner,
    create_workspace_rejects_bad_names_and_writes_nothing,
);

async fn create_workspace_makes_caller_owner(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let before = now_ms();
    let body = app
        .create_workspace(&owner.token, json!({ "name": "  Beta Team  " }))
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(keys_of(&body), ["createdAt", "id", "name"]);
    assert_eq!(body["name"], "Beta Team", "names are trimmed");
    let id = body["id"].as_str().expect("id");
    assert!(id.starts_with("ws_") && id.len() > 10, "id {id}");
    let created_at = assert_spec_time(&body["createdAt"]);
    assert!((before - 1000..=now_ms() + 1000).contains(&created_at));

    assert_eq!(
        role_in_db(&app, id, &owner.user_id).await.as_deref(),
        Some("owner")
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM memberships WHERE workspace_id = $1",
            &[id]
        )
        .await,
        1
    );
    assert_eq!(audit_count(&app, "workspace.created", id).await, 1);
    let roles = session_roles(&app.session(&owner.token).await.ok());
    assert!(
        roles.contains(&(id.to_owned(), "owner".to_owned())),
        "{roles:?}"
    );

    // The new owner manages members there at once.
    let body = app.members(&owner, id).await.ok();
    assert_eq!(body["items"][0]["role"], "owner");

    // Exactly 100 characters (not bytes) is allowed.
    for name in ["é".repeat(100), "🚀".repeat(100)] {
        app.create_workspace(&owner.token, json!({ "name": name }))
            .await
            .expect_status(StatusCode::CREATED);
    }

    // Raw: `create_workspace` always sends a session, and this request has none.
    app.call(
        Method::POST,
        "/app/v1/workspaces",
        None,
        Some(json!({ "name": "X" })),
    )
    .await
    .expect_unauthorized("missing_session");
}

async fn create_workspace_rejects_bad_names_and_writes_nothing(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let workspaces = count_rows(&app.store, "workspaces").await;
    let memberships = count_rows(&app.store, "memberships").await;
    let audit = count_rows(&app.store, "audit_events").await;
    let cases = [
        json!({}),
        json!({ "name": null }),
        json!({ "name": "" }),
        json!({ "name": "   \t " }),
        json!({ "name": "x".repeat(101) }),
        json!({ "name": "🚀".repeat(101) }),
        json!({ "name": "line\nbreak" }),
        json!({ "name": "nul\u{0}byte" }),
        json!({ "name": 12 }),
        json!({ "name": ["Acme"] }),
        json!({ "name": { "first": "Acme" } }),
        json!({ "name": true }),
    ];
    for body in cases {
        let error = app
            .create_workspace(&owner.token, body.clone())
            .await
            .expect_issues(&["name"]);
        assert!(!error.to_string().contains("sqlx"), "{body}: {error}");
    }
    assert_eq!(count_rows(&app.store, "workspaces").await, workspaces);
    assert_eq!(count_rows(&app.store, "memberships").await, memberships);
    assert_eq!(count_rows(&app.store, "audit_events").await, audit);
}
