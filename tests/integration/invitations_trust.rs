//! Invitations as the attacks of an insider, on both databases: an admin who is removed,
//! disabled or demoted must not get back in through an invitation they sent, and accepting an
//! invitation without a session must not tell anyone whether an email has an account.

use crate::common::{audit_count, count, role_in_db, Account, TestApp};
use crate::on_both_databases;
use crate::test_app::Reply;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn invite_token(
    app: &TestApp,
    inviter: &Account,
    email: &str,
    role: &str,
) -> (String, String) {
    let body = app
        .invite(inviter, &inviter.workspace_id, email, role)
        .await
        .expect_status(StatusCode::CREATED);
    let field = |name: &str| body[name].as_str().expect(name).to_owned();
    (field("id"), field("token"))
}

/// Accepts without a session as a newcomer named `name` would: with a name and a password.
async fn accept_as_newcomer(app: &TestApp, token: &str, name: &str) -> (StatusCode, Value) {
    let body = json!({ "token": token, "name": name, "password": "a-long-enough-password" });
    let Reply { status, body, .. } = app.accept_invitation(None, body).await;
    (status, body)
}

#[track_caller]
fn assert_invitation_not_found(status: StatusCode, body: &Value) {
    crate::common::assert_error(
        status,
        body,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        Some("invitation_not_found"),
    );
}

async fn pending_ids(app: &TestApp, owner: &Account) -> Vec<String> {
    app.invitations(owner).await.ok()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn cancelled_with_cause(app: &TestApp, invitation_id: &str, cause: &str) -> bool {
    let details: Option<String> = sqlx::query_scalar(
        "SELECT details FROM audit_events WHERE action = 'invitation.cancelled' AND target_id = $1",
    )
    .bind(invitation_id)
    .fetch_optional(app.raw_db())
    .await
    .expect("audit");
    details.is_some_and(|details| details.contains(cause))
}

/// The attack: a rogue admin invites a second address of theirs, is removed, and comes back in
/// as an admin by accepting.
async fn a_removed_admin_cannot_come_back_through_their_own_invitation(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let rogue = app.add_member(&owner, "rogue@acme.test", "admin").await;
    let (id, token) = invite_token(&app, &rogue, "rogue.second@evil.test", "admin").await;
    app.remove_member(&owner, &owner.workspace_id, &rogue.user_id)
        .await
        .expect_status(StatusCode::NO_CONTENT);

    let (status, body) = accept_as_newcomer(&app, &token, "Rogue").await;
    assert_invitation_not_found(status, &body);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM users WHERE email_normalized = $1",
            &["rogue.second@evil.test"]
        )
        .await,
        0
    );
    assert!(!pending_ids(&app, &owner).await.contains(&id));
    assert!(cancelled_with_cause(&app, &id, "inviter_removed").await);
}

async fn a_demoted_admin_loses_the_invitations_they_could_no_longer_send(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let admin = app.add_member(&owner, "admin@acme.test", "admin").await;
    let (id, token) = invite_token(&app, &admin, "friend@acme.test", "member").await;
    // An owner's invitation survives the owner's demotion to admin only where an admin could
    // have sent it.
    let co_owner = app.add_member(&owner, "co@acme.test", "owner").await;
    let (owner_invite, _) = invite_token(&app, &co_owner, "boss@acme.test", "owner").await;
    let (admin_invite, admin_token) =
        invite_token(&app, &co_owner, "helper@acme.test", "admin").await;

    app.set_role(&owner, &owner.workspace_id, &admin.user_id, "member")
        .await
        .ok();
    app.set_role(&owner, &owner.workspace_id, &co_owner.user_id, "admin")
        .await
        .ok();

    let (status, body) = accept_as_newcomer(&app, &token, "Friend").await;
    assert_invitation_not_found(status, &body);
    let pending = pending_ids(&app, &owner).await;
    assert!(!pending.contains(&id));
    assert!(!pending.contains(&owner_invite));
    assert!(pending.contains(&admin_invite), "{pending:?}");
    assert!(cancelled_with_cause(&app, &id, "inviter_role_changed").await);
    assert!(cancelled_with_cause(&app, &owner_invite, "inviter_role_changed").await);
    assert_eq!(
        audit_count(&app, "invitation.cancelled", &admin_invite).await,
        0
    );

    let (status, joined) = accept_as_newcomer(&app, &admin_token, "Helper").await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
    assert_eq!(joined["role"], "admin");
}

async fn a_disabled_inviter_s_invitations_die(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let admin = app.add_member(&owner, "admin@acme.test", "admin").await;
    let (id, token) = invite_token(&app, &admin, "friend@acme.test", "viewer").await;
    app.verifier
        .set_user_disabled(&admin.email, true, heffl_api::store::Actor::System)
        .await
        .expect("disable")
        .expect("a user");
    let (status, body) = accept_as_newcomer(&app, &token, "Friend").await;
    assert_invitation_not_found(status, &body);
    assert!(!pending_ids(&app, &owner).await.contains(&id));
    assert!(cancelled_with_cause(&app, &id, "inviter_disabled").await);
}

/// An invitation row older than the rule (its inviter demoted without the cancellation) still
/// opens nothing.
async fn an_invitation_whose_inviter_lost_the_right_opens_nothing_even_uncancelled(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let admin = app.add_member(&owner, "admin@acme.test", "admin").await;
    let (id, token) = invite_token(&app, &admin, "friend@acme.test", "member").await;
    sqlx::query("UPDATE memberships SET role = 'viewer' WHERE user_id = $1")
        .bind(&admin.user_id)
        .execute(app.raw_db())
        .await
        .expect("demote behind the server's back");
    let lookup = app.lookup_invitation(&token).await;
    assert_invitation_not_found(lookup.status, &lookup.body);
    let (status, body) = accept_as_newcomer(&app, &token, "Friend").await;
    assert_invitation_not_found(status, &body);
    assert!(!pending_ids(&app, &owner).await.contains(&id));
}

/// The attack: a viewer with a workspace of their own invites emails and accepts without a
/// session, reading "has an account" from the answer.
async fn accepting_without_a_session_tells_nothing_about_accounts(app: TestApp) {
    let prober = app.bootstrap("Probe", "prober@probe.test").await;
    let victim = app.bootstrap("Home", "victim@home.test").await;
    let (_, known) = invite_token(&app, &prober, "victim@home.test", "member").await;
    let (_, unknown) = invite_token(&app, &prober, "nobody@home.test", "member").await;

    // Without a password, both answer the same 400.
    for body in [
        json!({ "token": known }),
        json!({ "token": known, "name": "X" }),
    ] {
        let Reply {
            status: known_status,
            body: known_answer,
            ..
        } = app.accept_invitation(None, body.clone()).await;
        let mut other = body;
        other["token"] = json!(unknown);
        let Reply {
            status: unknown_status,
            body: unknown_answer,
            ..
        } = app.accept_invitation(None, other).await;
        assert_eq!(known_status, StatusCode::BAD_REQUEST, "{known_answer}");
        assert_eq!(unknown_status, known_status);
        assert_eq!(
            crate::common::without_request_id(known_answer.clone()),
            crate::common::without_request_id(unknown_answer.clone())
        );
    }

    // A wrong password for the account: 401, nothing joined or changed.
    app.accept_invitation(
        None,
        json!({ "token": known, "name": "Hijack", "password": "attackers-password" }),
    )
    .await
    .expect_unauthorized("invalid_credentials");
    assert_eq!(
        role_in_db(&app, &prober.workspace_id, &victim.user_id).await,
        None
    );
    app.login(&victim.email, &victim.password).await;

    // The account's own password: joined and signed in, in the shape a new account gets.
    let joined = app
        .accept_invitation(
            None,
            json!({ "token": known, "name": "Ignored", "password": victim.password }),
        )
        .await
        .expect_status(StatusCode::CREATED);
    let (status, created) = accept_as_newcomer(&app, &unknown, "Nobody").await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let keys = |value: &Value| {
        let mut keys: Vec<String> = value.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&joined), keys(&created));
    assert_eq!(joined["user"]["id"], victim.user_id.as_str());
    assert_eq!(
        joined["user"]["name"], "Owner",
        "an existing account's name is kept"
    );
    assert_eq!(
        role_in_db(&app, &prober.workspace_id, &victim.user_id)
            .await
            .as_deref(),
        Some("member")
    );
    let session = joined["token"].as_str().expect("token");
    app.session(session).await.ok();
}

on_both_databases!(
    a_removed_admin_cannot_come_back_through_their_own_invitation,
    a_demoted_admin_loses_the_invitations_they_could_no_longer_send,
    a_disabled_inviter_s_invitations_die,
    an_invitation_whose_inviter_lost_the_right_opens_nothing_even_uncancelled,
    accepting_without_a_session_tells_nothing_about_accounts,
);
