//! Key scopes against roles: a key does what both its scopes and its user's current role
//! allow, and the scopes a key is created with are validated and shown as stored.

use crate::common::{count, ids_of, key_column, key_count, string_set, Account, TestApp};
use crate::on_both_databases;
use crate::test_app::Reply;
use heffl_api::domain::ids::{UserId, WorkspaceId};
use heffl_api::store::LeadFields;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashSet;

on_both_databases!(scope_and_role_matrix, scopes_are_validated_and_shown);

const ALL_SCOPES: [&str; 3] = ["me:read", "leads:read", "leads:write"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Allowed,
    MissingScope(&'static str),
    RoleForbids,
}

fn expect(scopes: Option<&[&str]>, needed: &'static str, role_allows: bool) -> Outcome {
    if !scopes.is_none_or(|s| s.contains(&needed)) {
        Outcome::MissingScope(needed)
    } else if !role_allows {
        Outcome::RoleForbids
    } else {
        Outcome::Allowed
    }
}

#[track_caller]
fn check(what: &str, outcome: Outcome, ok: StatusCode, reply: &Reply) {
    match outcome {
        Outcome::Allowed => assert_eq!(reply.status, ok, "{what}: {}", reply.body),
        Outcome::MissingScope(scope) => reply.expect_missing_scope(scope),
        Outcome::RoleForbids => {
            reply.expect_forbidden("insufficient_permission");
        }
    }
}

async fn lead_title(app: &TestApp, lead_id: &str) -> Option<Option<String>> {
    sqlx::query_scalar::<_, Option<String>>("SELECT title FROM leads WHERE id = $1")
        .bind(lead_id)
        .fetch_optional(app.raw_db())
        .await
        .expect("lead title")
}

/// A lead of `owner_id` in the account's workspace, made through the store.
async fn lead_of(app: &TestApp, account: &Account, owner_id: &str, fields: LeadFields) -> String {
    app.store
        .leads()
        .create(
            &WorkspaceId::parse(account.workspace_id.as_str()).expect("an id"),
            &UserId::parse(owner_id).expect("an id"),
            fields,
        )
        .await
        .expect("lead")
        .id
        .into()
}

async fn scope_and_role_matrix(app: TestApp) {
    let owner = app.bootstrap("Matrix", "owner@matrix.test").await;
    let admin = app.add_member(&owner, "admin@matrix.test", "admin").await;
    let member = app.add_member(&owner, "member@matrix.test", "member").await;
    let viewer = app.add_member(&owner, "viewer@matrix.test", "viewer").await;
    // A lead the member may not see, so a member's list that leaks it would fail below.
    let foreign = lead_of(
        &app,
        &owner,
        &owner.user_id,
        LeadFields {
            name: Some("Owner's lead".into()),
            ..LeadFields::default()
        },
    )
    .await;
    let scope_sets: [Option<&[&str]>; 5] = [
        Some(&["me:read"]),
        Some(&["leads:read"]),
        Some(&["leads:write"]),
        Some(&["leads:read", "leads:write"]),
        None,
    ];
    let roles = [
        (&owner, "owner"),
        (&admin, "admin"),
        (&member, "member"),
        (&viewer, "viewer"),
    ];
    for (account, role) in roles {
        for scopes in scope_sets {
            let what = format!("{role} with {scopes:?}");
            let mut body = json!({ "name": format!("{role} key") });
            if let Some(scopes) = scopes {
                body["scopes"] = json!(scopes);
            }
            let (key, record) = app.new_key(account, body).await.created_key();
            let shown = string_set(record["scopes"].as_array().expect("scopes"));
            let expected: HashSet<String> = scopes
                .unwrap_or(&ALL_SCOPES)
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            assert_eq!(shown, expected, "{what}: scopes of the record");

            // GET /me: every role may.
            let reply = app.me(&key.key).await;
            let outcome = expect(scopes, "me:read", true);
            check(&format!("{what} GET /me"), outcome, StatusCode::OK, &reply);
            if reply.status == StatusCode::OK {
                assert_eq!(reply.body["user"]["id"], account.user_id.as_str(), "{what}");
                assert_eq!(reply.body["user"]["role"], role, "{what}");
            }

            // GET /leads: every role may, a member sees only their own.
            let reply = app.leads(&key.key, "pageSize=100").await;
            let outcome = expect(scopes, "leads:read", true);
            check(
                &format!("{what} GET /leads"),
                outcome,
                StatusCode::OK,
                &reply,
            );
            if reply.status == StatusCode::OK {
                let ids = ids_of(&reply.body);
                assert_eq!(
                    ids.contains(&foreign),
                    role != "member",
                    "{what}: {}",
                    reply.body
                );
            }

            // POST /leads: viewers may not.
            let before = count(&app, "SELECT COUNT(*) FROM leads", &[]).await;
            let new_lead = json!({ "name": "Jane Smith" });
            let reply = app.create_lead(&key.key, new_lead).await;
            let outcome = expect(scopes, "leads:write", role != "viewer");
            let what_post = format!("{what} POST /leads");
            check(&what_post, outcome, StatusCode::CREATED, &reply);
            let after = count(&app, "SELECT COUNT(*) FROM leads", &[]).await;
            if outcome == Outcome::Allowed {
                assert_eq!(after, before + 1, "{what}: lead written");
                assert_eq!(reply.body["ownerId"], account.user_id.as_str(), "{what}");
            } else {
                assert_eq!(after, before, "{what}: a refused create wrote a lead");
            }

            // PATCH and DELETE of the key user's own lead: viewers may not.
            let own = lead_of(
                &app,
                &owner,
                &account.user_id,
                LeadFields {
                    name: Some("Own lead".into()),
                    title: Some(Some("before".into())),
                    ..LeadFields::default()
                },
            )
            .await;
            let reply = app.lead(&key.key, &own).await;
            let outcome = expect(scopes, "leads:read", true);
            check(
                &format!("{what} GET own lead"),
                outcome,
                StatusCode::OK,
                &reply,
            );
            let outcome = expect(scopes, "leads:write", role != "viewer");
            let patch = json!({ "title": "after" });
            let reply = app.edit_lead(&key.key, &own, patch).await;
            check(
                &format!("{what} PATCH own lead"),
                outcome,
                StatusCode::OK,
                &reply,
            );
            let title = lead_title(&app, &own).await.expect("lead still there");
            let expected_title = if outcome == Outcome::Allowed {
                "after"
            } else {
                "before"
            };
            assert_eq!(title.as_deref(), Some(expected_title), "{what}: PATCH");

            let reply = app.delete_lead(&key.key, &own).await;
            let what_delete = format!("{what} DELETE own lead");
            check(&what_delete, outcome, StatusCode::NO_CONTENT, &reply);
            assert_eq!(
                lead_title(&app, &own).await.is_some(),
                outcome != Outcome::Allowed,
                "{what}: DELETE"
            );
        }
    }
}

async fn scopes_are_validated_and_shown(app: TestApp) {
    let owner = app.bootstrap("Scopes", "owner@scopes.test").await;
    let keys_before = key_count(&app).await;
    let reply = app
        .new_key(
            &owner,
            json!({ "name": "bad", "scopes": ["leads:read", "leads:delete"] }),
        )
        .await;
    let message = reply.expect_validation("scopes");
    for name in ["leads:delete", "me:read", "leads:read", "leads:write"] {
        assert!(
            message.contains(name),
            "message must mention {name}: {message}"
        );
    }
    let reply = app
        .new_key(&owner, json!({ "name": "none", "scopes": [] }))
        .await;
    let message = reply.expect_validation("scopes");
    assert!(message.contains("leads:write"), "{message}");
    app.new_key(&owner, json!({ "name": "str", "scopes": "leads:read" }))
        .await
        .expect_status(StatusCode::BAD_REQUEST);
    assert_eq!(
        key_count(&app).await,
        keys_before,
        "refused creates wrote keys"
    );

    let (narrow, record) = app
        .new_key(
            &owner,
            json!({ "name": "reader", "scopes": ["leads:read", "leads:read"] }),
        )
        .await
        .created_key();
    assert_eq!(record["scopes"], json!(["leads:read"]), "{record}");
    let (full, record) = app
        .new_key(&owner, json!({ "name": "full" }))
        .await
        .created_key();
    assert_eq!(
        string_set(record["scopes"].as_array().expect("scopes")),
        string_set(&json!(ALL_SCOPES).as_array().cloned().expect("array")),
    );
    assert_eq!(
        app.key(&owner, &narrow.id).await.ok()["scopes"],
        json!(["leads:read"])
    );
    let list = app.keys(&owner, "status=all").await.ok();
    let items = list["items"].as_array().expect("items");
    let scopes_of = |id: &str| -> Value {
        items
            .iter()
            .find(|item| item["id"] == id)
            .map(|item| item["scopes"].clone())
            .unwrap_or_else(|| panic!("{id} not listed: {list}"))
    };
    assert_eq!(scopes_of(&narrow.id), json!(["leads:read"]));
    assert_eq!(scopes_of(&full.id).as_array().map(Vec::len), Some(3));
    assert_eq!(
        key_column(&app, "scopes", &narrow.id).await.as_deref(),
        Some("leads:read")
    );
}
