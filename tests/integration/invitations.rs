//! docs/api.md §10 invitations, black-box on both databases: nobody joins without accepting, the
//! inviter learns nothing about accounts, and every dead token gets one 404.

use crate::common::{assert_timestamp, count, count_rows, without_request_id, Account, TestApp};
use crate::on_both_databases;
use crate::test_app::Reply;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// An invitation into the inviter's own workspace.
async fn invite(app: &TestApp, inviter: &Account, email: &str, role: &str) -> Reply {
    app.invite(inviter, &inviter.workspace_id, email, role)
        .await
}

/// Invites and returns the token, asserting the 201.
async fn invite_token(app: &TestApp, inviter: &Account, email: &str, role: &str) -> String {
    let reply = invite(app, inviter, email, role).await;
    assert_eq!(
        reply.status,
        StatusCode::CREATED,
        "invite {email}: {}",
        reply.body
    );
    reply.body["token"].as_str().expect("token").to_owned()
}

/// The one answer for every dead token; returns the body.
#[track_caller]
fn assert_not_found(reply: &Reply) -> Value {
    reply.expect_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        Some("invitation_not_found"),
    )
}

/// The id of the listed invitation to `email`.
#[track_caller]
fn listed_id(list: &Value, email: &str) -> String {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["email"] == email)
        .unwrap_or_else(|| panic!("{email} is not listed: {list}"))["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

fn keys_of(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

async fn role_of(app: &TestApp, workspace_id: &str, user_id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2")
        .bind(workspace_id)
        .bind(user_id)
        .fetch_optional(app.raw_db())
        .await
        .expect("role")
}

async fn new_person_is_invited_creates_an_account_and_joins(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let reply = invite(&app, &owner, "  New.Person@Acme.test ", "member").await;
    assert_eq!(
        reply.header("cache-control"),
        "no-store",
        "the token is shown once and never cached"
    );
    let invitation = reply.expect_status(StatusCode::CREATED);
    assert_eq!(
        keys_of(&invitation),
        [
            "createdAt",
            "email",
            "emailError",
            "emailStatus",
            "emailedAt",
            "expiresAt",
            "id",
            "invitedBy",
            "role",
            "status",
            "token"
        ]
        .map(String::from)
        .into()
    );
    let id = invitation["id"].as_str().expect("id");
    assert!(id.starts_with("inv_") && id.len() == 26, "{id}");
    assert_eq!(invitation["email"], "New.Person@Acme.test");
    assert_eq!(invitation["role"], "member");
    assert_eq!(invitation["status"], "pending");
    assert_eq!(
        invitation["invitedBy"],
        json!({ "id": owner.user_id, "email": owner.email, "name": "Owner" })
    );
    assert_timestamp(&invitation["createdAt"], "createdAt");
    assert_timestamp(&invitation["expiresAt"], "expiresAt");
    let at = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(invitation[field].as_str().expect(field)).expect(field)
    };
    assert_eq!(at("expiresAt") - at("createdAt"), chrono::Duration::days(7));
    let token = invitation["token"].as_str().expect("token").to_owned();
    assert!(
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );

    // Stored as SHA-256 only.
    let digest: Vec<u8> = sqlx::query_scalar("SELECT token_digest FROM invitations WHERE id = $1")
        .bind(id)
        .fetch_one(app.raw_db())
        .await
        .expect("digest");
    assert_eq!(digest, Sha256::digest(token.as_bytes()).to_vec());
    let leaked = count(
        &app,
        "SELECT COUNT(*) FROM invitations WHERE email LIKE $1 OR id LIKE $1",
        &[&format!("%{token}%")],
    )
    .await;
    assert_eq!(leaked, 0);

    // The list shows it, without a token.
    let list = app.invitations(&owner).await.ok();
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id);
    assert!(items[0].get("token").is_none(), "{list}");
    assert!(!list.to_string().contains(&token));

    // The link shows the workspace and role before anyone accepts.
    let preview = app.lookup_invitation(&token).await.ok();
    assert_eq!(
        preview["workspace"],
        json!({ "id": owner.workspace_id, "name": "Acme" })
    );
    assert_eq!(preview["role"], "member");
    assert_eq!(preview["email"], "New.Person@Acme.test");
    assert_eq!(preview["invitedBy"], "Owner");

    // No account: name and password are needed, and a refused accept writes nothing.
    let users = count_rows(&app.store, "users").await;
    let body = app
        .accept_invitation(None, json!({ "token": token }))
        .await
        .expect_status(StatusCode::BAD_REQUEST);
    let fields: BTreeSet<&str> = body["error"]["details"]["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| i["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, BTreeSet::from(["name", "password"]));
    for bad in [
        json!({ "token": token, "name": "New", "password": "elevenchars" }),
        json!({ "token": token, "name": "   ", "password": "long-enough-password" }),
        json!({ "token": token, "name": "Ne\u{7}w", "password": "long-enough-password" }),
        json!({ "token": token, "name": "x".repeat(101), "password": "long-enough-password" }),
    ] {
        app.accept_invitation(None, bad.clone()).await.expect_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            None,
        );
    }
    assert_eq!(count_rows(&app.store, "users").await, users);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM invitations WHERE accepted_at IS NOT NULL",
            &[]
        )
        .await,
        0
    );

    let password = "a-long-enough-password";
    let reply = app
        .accept_invitation(
            None,
            json!({ "token": token, "name": " New Person ", "password": password }),
        )
        .await;
    assert_eq!(reply.header("cache-control"), "no-store");
    let joined = reply.expect_status(StatusCode::CREATED);
    assert_eq!(
        keys_of(&joined),
        ["expiresAt", "role", "token", "user", "workspace"]
            .map(String::from)
            .into()
    );
    assert_eq!(joined["role"], "member");
    assert_eq!(
        joined["workspace"],
        json!({ "id": owner.workspace_id, "name": "Acme" })
    );
    assert_eq!(joined["user"]["email"], "New.Person@Acme.test");
    assert_eq!(joined["user"]["name"], "New Person");
    let user_id = joined["user"]["id"].as_str().expect("user id").to_owned();
    assert_eq!(
        role_of(&app, &owner.workspace_id, &user_id)
            .await
            .as_deref(),
        Some("member")
    );
    // The new session works, and so does the password.
    let session_token = joined["token"].as_str().expect("token");
    let session = app.session(session_token).await.ok();
    assert_eq!(
        session["workspaces"],
        json!([{ "id": owner.workspace_id, "name": "Acme", "role": "member" }])
    );
    app.login("new.person@acme.test", password).await;

    // Used: the link opens nothing any more, and the list no longer shows it.
    let reply = app
        .accept_invitation(
            None,
            json!({ "token": token, "name": "Again", "password": "another-long-password" }),
        )
        .await;
    assert_not_found(&reply);
    assert_not_found(&app.lookup_invitation(&token).await);
    let list = app.invitations(&owner).await.body;
    assert_eq!(list["items"], json!([]));

    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'member.invited' AND target_id = $1 AND actor_id = $2 AND workspace_id = $3",
            &[id, &owner.user_id, &owner.workspace_id]
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'member.joined' AND target_id = $1 AND actor_id = $1 AND workspace_id = $2",
            &[&user_id, &owner.workspace_id]
        )
        .await,
        1
    );
}

/// The enumeration attack: the inviter's answer must not tell whether an email has
/// an account (the old direct add answered 201 with the person's name, or 400).
async fn inviter_learns_nothing_about_accounts(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let victim = app.bootstrap("Victim Co", "victim@elsewhere.test").await;
    let users = count_rows(&app.store, "users").await;
    let memberships = count_rows(&app.store, "memberships").await;

    let known = invite(&app, &owner, "victim@elsewhere.test", "viewer").await;
    let unknown = invite(&app, &owner, "nobody@elsewhere.test", "viewer").await;
    assert_eq!(unknown.status, known.status);
    let known = known.expect_status(StatusCode::CREATED);
    let unknown = unknown.body;
    assert_eq!(keys_of(&known), keys_of(&unknown));
    assert_eq!(keys_of(&known["invitedBy"]), keys_of(&unknown["invitedBy"]));
    for field in ["role", "status", "invitedBy"] {
        assert_eq!(known[field], unknown[field], "{field}");
    }
    assert!(
        !known.to_string().contains(&victim.user_id),
        "the answer names nothing of the account: {known}"
    );
    // Nobody was added or created.
    assert_eq!(count_rows(&app.store, "users").await, users);
    assert_eq!(count_rows(&app.store, "memberships").await, memberships);
    assert_eq!(
        role_of(&app, &owner.workspace_id, &victim.user_id).await,
        None
    );
    let session = app.session(&victim.token).await.ok();
    assert_eq!(
        session["workspaces"].as_array().expect("workspaces").len(),
        1
    );
}

async fn existing_account_signs_in_to_accept(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let invitee = app.bootstrap("Home", "Invitee@Home.test").await;
    let stranger = app.bootstrap("Other", "stranger@other.test").await;
    let token = invite_token(&app, &owner, "invitee@home.TEST", "admin").await;

    // Without a session: name and password are required (as for an email without an
    // account), and a password that is not the account's own is 401 and neither creates nor
    // changes anything.
    app.accept_invitation(None, json!({ "token": token }))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
    app.accept_invitation(
        None,
        json!({ "token": token, "name": "Hijack", "password": "attackers-password" }),
    )
    .await
    .expect_unauthorized("invalid_credentials");
    let login = app
        .try_login("invitee@home.test", "attackers-password")
        .await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        role_of(&app, &owner.workspace_id, &invitee.user_id).await,
        None
    );

    // Signed in as someone else: 403, and the invitation stays usable.
    app.accept_invitation(Some(&stranger.token), json!({ "token": token }))
        .await
        .expect_forbidden("invitation_for_another_user");
    assert_eq!(
        role_of(&app, &owner.workspace_id, &stranger.user_id).await,
        None
    );
    let lookup = app.lookup_invitation(&token).await;
    assert_eq!(lookup.status, StatusCode::OK);

    // Signed in as the invited email (any case): joined with the invited role.
    let joined = app
        .accept_invitation(Some(&invitee.token), json!({ "token": token }))
        .await
        .ok();
    assert_eq!(
        joined,
        json!({ "workspace": { "id": owner.workspace_id, "name": "Acme" }, "role": "admin" })
    );
    assert_eq!(
        role_of(&app, &owner.workspace_id, &invitee.user_id)
            .await
            .as_deref(),
        Some("admin")
    );
    app.login(&invitee.email, &invitee.password).await;
    let reply = app
        .accept_invitation(Some(&invitee.token), json!({ "token": token }))
        .await;
    assert_not_found(&reply);
}

/// Unknown, wrong-shaped, expired, cancelled and used tokens: one answer, for both calls.
async fn dead_tokens_all_get_the_same_404(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let expired = invite_token(&app, &owner, "expired@acme.test", "member").await;
    sqlx::query("UPDATE invitations SET expires_at = $1 WHERE token_digest = $2")
        .bind(heffl_api::domain::time::now_ms() - 1)
        .bind(Sha256::digest(expired.as_bytes()).to_vec())
        .execute(app.raw_db())
        .await
        .expect("expire");
    let cancelled = invite_token(&app, &owner, "cancelled@acme.test", "member").await;
    let list = app.invitations(&owner).await.body;
    let cancelled_id = listed_id(&list, "cancelled@acme.test");
    let cancel = app.cancel_invitation(&owner, &cancelled_id).await;
    assert_eq!(cancel.status, StatusCode::NO_CONTENT);
    app.cancel_invitation(&owner, &cancelled_id)
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'invitation.cancelled' AND target_id = $1",
            &[&cancelled_id]
        )
        .await,
        1
    );
    let used = invite_token(&app, &owner, "used@acme.test", "member").await;
    let accepted = app
        .accept_invitation(
            None,
            json!({ "token": used, "name": "Used", "password": "long-enough-password" }),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::CREATED);

    let unknown = "0123456789abcdef".repeat(4);
    let mut answers = Vec::new();
    for token in [
        unknown.as_str(),
        expired.as_str(),
        cancelled.as_str(),
        used.as_str(),
        "abc",
        "",
        &"Z".repeat(64),
        &expired.to_uppercase(),
        "hk_live_000000000000000000000000000000000000",
        "'; DROP TABLE invitations; --",
    ] {
        for bearer in [None, Some(owner.token.as_str())] {
            let reply = app
                .accept_invitation(
                    bearer,
                    json!({ "token": token, "name": "X Y", "password": "long-enough-password" }),
                )
                .await;
            answers.push(without_request_id(assert_not_found(&reply)));
        }
        let reply = app.lookup_invitation(token).await;
        answers.push(without_request_id(assert_not_found(&reply)));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "one answer for every dead token: {answers:?}"
    );
    // Nobody joined through a dead token.
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM memberships WHERE workspace_id = $1",
            &[&owner.workspace_id]
        )
        .await,
        2
    );
}

async fn who_may_invite_and_cancel(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let admin = app.add_member(&owner, "admin@acme.test", "admin").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let viewer = app.add_member(&owner, "viewer@acme.test", "viewer").await;
    let intruder = app.bootstrap("Beta", "intruder@beta.test").await;
    let before = count_rows(&app.store, "invitations").await;

    invite(&app, &admin, "boss@acme.test", "owner")
        .await
        .expect_forbidden("insufficient_permission");
    for caller in [&member, &viewer] {
        invite(&app, caller, "friend@acme.test", "viewer")
            .await
            .expect_forbidden("insufficient_permission");
        app.invitations(caller)
            .await
            .expect_forbidden("insufficient_permission");
    }
    app.invite(&intruder, &owner.workspace_id, "spy@beta.test", "admin")
        .await
        .expect_forbidden("workspace_mismatch");
    // Already a member, whatever the case of the email.
    for email in ["member@acme.test", "MEMBER@Acme.Test", "owner@acme.test"] {
        invite(&app, &owner, email, "viewer").await.expect_error(
            StatusCode::CONFLICT,
            "CONFLICT",
            Some("already_member"),
        );
    }
    // Bad fields, each named.
    for (body, field) in [
        (
            json!({ "email": "x@acme.test", "role": "superuser" }),
            "role",
        ),
        (json!({ "email": "x@acme.test" }), "role"),
        (
            json!({ "email": "not-an-email", "role": "member" }),
            "email",
        ),
        (
            json!({ "email": "x\u{7}@acme.test", "role": "member" }),
            "email",
        ),
        (json!({ "role": "member" }), "email"),
    ] {
        let answer = app.invite_with(&owner, body).await.expect_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            None,
        );
        assert_eq!(
            answer["error"]["details"]["issues"][0]["field"], field,
            "{answer}"
        );
    }
    assert_eq!(count_rows(&app.store, "invitations").await, before);

    // Admins invite below owner, and cancel only what they could send.
    invite_token(&app, &admin, "helper@acme.test", "admin").await;
    invite_token(&app, &owner, "co-owner@acme.test", "owner").await;
    let list = app.invitations(&admin).await.body;
    let owner_invite = listed_id(&list, "co-owner@acme.test");
    app.cancel_invitation(&admin, &owner_invite)
        .await
        .expect_forbidden("insufficient_permission");
    let helper_invite = listed_id(&list, "helper@acme.test");
    // Another workspace's owner cannot cancel it either.
    app.cancel_invitation(&intruder, &helper_invite)
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    let cancel = app.cancel_invitation(&admin, &helper_invite).await;
    assert_eq!(cancel.status, StatusCode::NO_CONTENT);
}

/// Two people racing with one link: exactly one account and one membership come of it.
async fn one_token_accepted_twice_at_once_joins_once(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let token = invite_token(&app, &owner, "racer@acme.test", "member").await;
    let body = json!({ "token": token, "name": "Racer", "password": "long-enough-password" });
    let (a, b) = tokio::join!(
        app.accept_invitation(None, body.clone()),
        app.accept_invitation(None, body.clone())
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert!(
        statuses == [StatusCode::CREATED, StatusCode::UNAUTHORIZED]
            || statuses == [StatusCode::CREATED, StatusCode::NOT_FOUND],
        "{a:?} {b:?}"
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM users WHERE email_normalized = $1",
            &["racer@acme.test"]
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM memberships WHERE workspace_id = $1",
            &[&owner.workspace_id]
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'member.joined'",
            &[]
        )
        .await,
        1
    );
}

/// docs/api.md §10: the old direct add is gone.
async fn direct_add_is_gone(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let users = count_rows(&app.store, "users").await;
    // Raw: the route is gone, so the typed client has no call for it.
    let Reply { status, body, .. } = app
        .call(
            reqwest::Method::POST,
            &format!("/app/v1/workspaces/{}/members", owner.workspace_id),
            Some(&owner.token),
            Some(json!({ "email": "x@acme.test", "role": "member", "password": "long-enough-password" })),
        )
        .await;
    assert!(
        status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_FOUND,
        "{status} {body}"
    );
    assert!(body["error"]["code"].is_string(), "{body}");
    assert_eq!(count_rows(&app.store, "users").await, users);
}

on_both_databases!(
    new_person_is_invited_creates_an_account_and_joins,
    inviter_learns_nothing_about_accounts,
    existing_account_signs_in_to_accept,
    dead_tokens_all_get_the_same_404,
    who_may_invite_and_cancel,
    one_token_accepted_twice_at_once_joins_once,
    direct_add_is_gone,
);
