//! Workspace members: who is listed, role changes that take effect at once (keys included),
//! removal that revokes the member's keys in that workspace only, the last owner who cannot
//! leave, who may manage whom, and a foreign workspace that answers alike whether it exists.

use crate::common::{
    assert_spec_time, audit_count, count, keys_of, membership_snapshot, role_in_db, session_roles,
    without_request_id, Account, TestApp,
};
use crate::on_both_databases;
use crate::test_app::Reply;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_databases!(
    list_members_shows_everyone_with_roles,
    change_role_takes_effect_at_once,
    removing_a_member_revokes_their_keys_in_that_workspace,
    last_owner_cannot_be_removed_or_demoted,
    two_owners_demoting_each_other_at_once_leave_one_owner,
    admin_cannot_touch_owners,
    member_and_viewer_cannot_manage_members,
    roles_outside_the_four_are_rejected,
    another_workspaces_owner_gets_workspace_mismatch,
);

async fn owners(app: &TestApp, workspace_id: &str) -> i64 {
    count(
        app,
        "SELECT COUNT(*) FROM memberships WHERE workspace_id = $1 AND role = 'owner'",
        &[workspace_id],
    )
    .await
}

#[track_caller]
fn last_owner(reply: Reply) {
    reply.expect_error(StatusCode::CONFLICT, "CONFLICT", Some("last_owner"));
}

/// The same user seen from another of their workspaces.
fn in_workspace(account: &Account, workspace_id: &str) -> Account {
    Account {
        workspace_id: workspace_id.to_owned(),
        ..account.clone()
    }
}

async fn list_members_shows_everyone_with_roles(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let admin = app.add_member(&owner, "admin@acme.test", "admin").await;
    let viewer = app.add_member(&owner, "viewer@acme.test", "viewer").await;
    // Someone in another workspace must not appear.
    app.bootstrap("Beta", "other@beta.test").await;

    for caller in [&owner, &admin] {
        let body = app.members(caller, &owner.workspace_id).await.ok();
        assert_eq!(keys_of(&body), ["items"]);
        let items = body["items"].as_array().expect("items");
        assert_eq!(items.len(), 3, "{body}");
        for item in items {
            assert_eq!(
                keys_of(item),
                ["email", "joinedAt", "name", "role", "userId"]
            );
            assert_spec_time(&item["joinedAt"]);
        }
        let find = |id: &str| {
            items
                .iter()
                .find(|item| item["userId"] == id)
                .unwrap_or_else(|| panic!("{id} missing from {body}"))
        };
        let owner_item = find(&owner.user_id);
        assert_eq!(owner_item["email"], "owner@acme.test");
        assert_eq!(owner_item["name"], "Owner");
        assert_eq!(owner_item["role"], "owner");
        assert_eq!(find(&admin.user_id)["role"], "admin");
        assert_eq!(find(&viewer.user_id)["role"], "viewer");
        assert_eq!(find(&viewer.user_id)["email"], "viewer@acme.test");
    }
}

async fn change_role_takes_effect_at_once(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let key = app.create_key(&member, "Sync").await;
    let me = app.me(&key.key).await.ok();
    assert_eq!(me["user"]["role"], "member");

    let ws = &owner.workspace_id;
    let body = app
        .set_role(&owner, ws, &member.user_id, "admin")
        .await
        .ok();
    assert_eq!(
        keys_of(&body),
        ["email", "joinedAt", "name", "role", "userId"]
    );
    assert_eq!(body["userId"], member.user_id.as_str());
    assert_eq!(body["role"], "admin");
    assert_eq!(
        role_in_db(&app, ws, &member.user_id).await.as_deref(),
        Some("admin")
    );
    assert_eq!(
        audit_count(&app, "member.role_changed", &member.user_id).await,
        1
    );
    // The key acts with its user's current role.
    let me = app.me(&key.key).await.body;
    assert_eq!(me["user"]["role"], "admin");
    assert_eq!(
        session_roles(&app.session(&member.token).await.ok()),
        [(ws.clone(), "admin".to_owned())]
    );

    // Setting the role it already has is fine, and not audited as a change.
    let body = app
        .set_role(&owner, ws, &member.user_id, "admin")
        .await
        .ok();
    assert_eq!(body["role"], "admin");
    assert_eq!(
        audit_count(&app, "member.role_changed", &member.user_id).await,
        1
    );

    // Someone who is not a member of this workspace is not found here.
    let outsider = app.bootstrap("Beta", "outsider@beta.test").await;
    for user_id in [outsider.user_id.as_str(), "usr_doesnotexist"] {
        app.set_role(&owner, ws, user_id, "viewer")
            .await
            .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    }
    assert_eq!(
        role_in_db(&app, &outsider.workspace_id, &outsider.user_id)
            .await
            .as_deref(),
        Some("owner")
    );
}

async fn removing_a_member_revokes_their_keys_in_that_workspace(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let other = app.bootstrap("Beta", "other@beta.test").await;
    app.add_existing_member(&other.workspace_id, &member.user_id, "member")
        .await;

    let acme_key = app.create_key(&member, "Acme sync").await;
    let acme_key_2 = app.create_key(&member, "Acme forms").await;
    let beta_key = app
        .create_key(&in_workspace(&member, &other.workspace_id), "Beta sync")
        .await;
    let owner_key = app.create_key(&owner, "Owner's").await;
    assert_eq!(app.me(&acme_key.key).await.status, StatusCode::OK);

    let ws = &owner.workspace_id;
    let reply = app.remove_member(&owner, ws, &member.user_id).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.text.is_empty());

    for key in [&acme_key, &acme_key_2] {
        let (revoked_at, reason): (Option<i64>, Option<String>) =
            sqlx::query_as("SELECT revoked_at, revoke_reason FROM api_keys WHERE id = $1")
                .bind(&key.id)
                .fetch_one(app.raw_db())
                .await
                .expect("key row");
        assert!(revoked_at.is_some(), "{} must be revoked", key.id);
        assert_eq!(reason.as_deref(), Some("owner_removed"));

        let reply = app.me(&key.key).await;
        assert_eq!(
            reply.header("www-authenticate"),
            "ApiKey header=\"x-api-key\""
        );
        reply.expect_unauthorized("revoked_api_key");
    }
    // Their key in the other workspace, and the owner's key, are untouched.
    for key in [&beta_key, &owner_key] {
        let revoked: Option<i64> =
            sqlx::query_scalar("SELECT revoked_at FROM api_keys WHERE id = $1")
                .bind(&key.id)
                .fetch_one(app.raw_db())
                .await
                .expect("key row");
        assert_eq!(revoked, None, "{} must stay active", key.id);
        assert_eq!(app.me(&key.key).await.status, StatusCode::OK);
    }

    assert_eq!(role_in_db(&app, ws, &member.user_id).await, None);
    assert_eq!(
        audit_count(&app, "member.removed", &member.user_id).await,
        1
    );
    let actor: String =
        sqlx::query_scalar("SELECT actor_id FROM audit_events WHERE action = 'member.removed'")
            .fetch_one(app.raw_db())
            .await
            .expect("actor");
    assert_eq!(actor, owner.user_id);

    // The user still exists and still belongs to Beta, but Acme is closed to them.
    assert_eq!(
        session_roles(&app.session(&member.token).await.ok()),
        [(other.workspace_id.clone(), "member".to_owned())]
    );
    app.keys(&member, "")
        .await
        .expect_forbidden("workspace_mismatch");

    // Removing them again finds no such member.
    app.remove_member(&owner, ws, &member.user_id)
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    assert_eq!(
        audit_count(&app, "member.removed", &member.user_id).await,
        1
    );
}

async fn last_owner_cannot_be_removed_or_demoted(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let ws = &owner.workspace_id;
    for role in ["admin", "member", "viewer"] {
        last_owner(app.set_role(&owner, ws, &owner.user_id, role).await);
    }
    last_owner(app.remove_member(&owner, ws, &owner.user_id).await);
    assert_eq!(
        role_in_db(&app, ws, &owner.user_id).await.as_deref(),
        Some("owner")
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action LIKE 'member.%'",
            &[]
        )
        .await,
        0
    );

    // With a second owner, the first may step down.
    let second = app.add_member(&owner, "second@acme.test", "owner").await;
    let body = app.set_role(&owner, ws, &owner.user_id, "admin").await.ok();
    assert_eq!(body["role"], "admin");
    assert_eq!(
        audit_count(&app, "member.role_changed", &owner.user_id).await,
        1
    );

    // Now the second is the last owner.
    last_owner(app.set_role(&second, ws, &second.user_id, "member").await);
    last_owner(app.remove_member(&second, ws, &second.user_id).await);
    assert_eq!(
        role_in_db(&app, ws, &second.user_id).await.as_deref(),
        Some("owner")
    );

    // And an owner may remove another owner while one remains.
    let reply = app.set_role(&second, ws, &owner.user_id, "owner").await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = app.remove_member(&owner, ws, &second.user_id).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(role_in_db(&app, ws, &second.user_id).await, None);
    assert_eq!(owners(&app, ws).await, 1);
}

async fn two_owners_demoting_each_other_at_once_leave_one_owner(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let second = app.add_member(&owner, "second@acme.test", "owner").await;
    let ws = &owner.workspace_id;
    // Several rounds, since a single pair of requests may happen not to overlap.
    for round in 0..6 {
        let (a, b) = tokio::join!(
            app.set_role(&owner, ws, &second.user_id, "admin"),
            app.set_role(&second, ws, &owner.user_id, "admin"),
        );
        let statuses = [a.status, b.status];
        // One wins. The other is refused as the last owner's demotion (409), or as an admin's
        // attempt on an owner when it already sees the caller's new role (403); never a 5xx.
        assert_eq!(
            statuses.iter().filter(|s| **s == StatusCode::OK).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses
                .iter()
                .all(|s| [StatusCode::OK, StatusCode::CONFLICT, StatusCode::FORBIDDEN].contains(s)),
            "round {round}: {statuses:?}"
        );
        assert_eq!(
            owners(&app, ws).await,
            1,
            "round {round}: exactly one owner is left"
        );

        // Make both owners again for the next round.
        let (winner, demoted) = if a.status == StatusCode::OK {
            (&owner, &second)
        } else {
            (&second, &owner)
        };
        let reply = app.set_role(winner, ws, &demoted.user_id, "owner").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(owners(&app, ws).await, 2);
    }
}

async fn admin_cannot_touch_owners(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let admin = app.add_member(&owner, "admin@acme.test", "admin").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let viewer = app.add_member(&owner, "viewer@acme.test", "viewer").await;
    let ws = &owner.workspace_id;
    let before = membership_snapshot(&app).await;

    let refused = [
        app.remove_member(&admin, ws, &owner.user_id).await,
        app.set_role(&admin, ws, &owner.user_id, "admin").await,
        app.set_role(&admin, ws, &member.user_id, "owner").await,
        app.set_role(&admin, ws, &admin.user_id, "owner").await,
        app.invite(&admin, ws, "new@acme.test", "owner").await,
    ];
    for reply in refused {
        reply.expect_forbidden("insufficient_permission");
    }
    assert_eq!(
        membership_snapshot(&app).await,
        before,
        "a refused change writes nothing"
    );

    // Below owner, an admin manages members.
    app.set_role(&admin, ws, &member.user_id, "viewer")
        .await
        .ok();
    let reply = app.invite(&admin, ws, "new@acme.test", "member").await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let reply = app.remove_member(&admin, ws, &viewer.user_id).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(role_in_db(&app, ws, &viewer.user_id).await, None);
    assert_eq!(
        role_in_db(&app, ws, &owner.user_id).await.as_deref(),
        Some("owner")
    );
}

async fn member_and_viewer_cannot_manage_members(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let viewer = app.add_member(&owner, "viewer@acme.test", "viewer").await;
    let ws = &owner.workspace_id;
    let before = membership_snapshot(&app).await;

    for (caller, other) in [(&member, &viewer), (&viewer, &member)] {
        let refused = [
            app.members(caller, ws).await,
            app.invite(caller, ws, "new@acme.test", "viewer").await,
            app.set_role(caller, ws, &other.user_id, "viewer").await,
            app.set_role(caller, ws, &caller.user_id, "admin").await,
            app.remove_member(caller, ws, &owner.user_id).await,
            app.remove_member(caller, ws, &other.user_id).await,
        ];
        for reply in refused {
            reply.expect_forbidden("insufficient_permission");
        }
    }
    assert_eq!(
        membership_snapshot(&app).await,
        before,
        "a refused change writes nothing"
    );
}

async fn roles_outside_the_four_are_rejected(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let ws = &owner.workspace_id;
    let before = membership_snapshot(&app).await;
    let bad_roles = [
        json!("superuser"),
        json!("Owner"),
        json!("ADMIN"),
        json!(" member "),
        json!(""),
        json!(null),
        json!(5),
        json!(["admin"]),
    ];
    for role in bad_roles {
        app.invite(&owner, ws, "new@acme.test", role.clone())
            .await
            .expect_issues(&["role"]);
        app.set_role(&owner, ws, &member.user_id, role)
            .await
            .expect_issues(&["role"]);
    }
    // Raw: an empty body, where `set_role` always sends a role.
    let path = format!("/app/v1/workspaces/{ws}/members/{}", member.user_id);
    app.call(Method::PATCH, &path, Some(&owner.token), Some(json!({})))
        .await
        .expect_issues(&["role"]);
    assert_eq!(membership_snapshot(&app).await, before);
}

async fn another_workspaces_owner_gets_workspace_mismatch(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let intruder = app.bootstrap("Beta", "intruder@beta.test").await;
    let before = membership_snapshot(&app).await;

    let mut bodies: Vec<Value> = Vec::new();
    for ws in [owner.workspace_id.as_str(), "ws_doesnotexist0000000000"] {
        let refused = [
            app.members(&intruder, ws).await,
            app.invite(&intruder, ws, &intruder.email, "owner").await,
            app.invite(&intruder, ws, "spy@beta.test", "admin").await,
            app.set_role(&intruder, ws, &member.user_id, "owner").await,
            app.set_role(&intruder, ws, &owner.user_id, "viewer").await,
            app.remove_member(&intruder, ws, &owner.user_id).await,
            app.remove_member(&intruder, ws, &member.user_id).await,
        ];
        for reply in refused {
            bodies.push(reply.expect_forbidden("workspace_mismatch"));
        }
    }
    // An existing and a made-up workspace id answer alike (but for each request's own id), so
    // ids cannot be probed.
    let bodies: Vec<Value> = bodies.into_iter().map(without_request_id).collect();
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "{bodies:?}"
    );
    assert_eq!(membership_snapshot(&app).await, before, "nothing changed");
}
