//! docs/api.md §10 accounts: sign-in throttling that cannot lock anyone out, a failed sign-in that
//! costs one write however many workspaces the user is in, and changing one's own password.
//! Client addresses come from X-Forwarded-For (HEFFL_TRUST_FORWARDED_FOR), as behind a proxy.
//! Signing in and out: what a login returns, identical refusals whatever was wrong, sessions
//! stored as digests only, ended by logout, expiry or disabling the user, and login bursts.

use crate::common::{assert_error, count, Account, TestApp};
use crate::common::{
    assert_spec_time, count_rows, keys_of, now_ms, session_roles, without_request_id,
};
use crate::test_app::Reply;
use crate::{on_both_databases, on_both_databases_with};
use heffl_api::domain::ids::UserId;
use heffl_api::store::ClientInfo;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

const ATTACKER: &str = "203.0.113.66";
const VICTIM: &str = "198.51.100.7";

/// Raw, as are `change_password_from`'s: the address in X-Forwarded-For is what these tests
/// vary.
async fn login_from(
    app: &TestApp,
    address: &str,
    email: &str,
    password: &str,
) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/app/v1/auth/login"))
        .header("x-forwarded-for", address)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("request");
    let Reply { status, body, .. } = Reply::read(response).await;
    (status, body)
}

async fn change_password_from(
    app: &TestApp,
    address: &str,
    token: &str,
    current: &str,
    new: &str,
) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/app/v1/session/password"))
        .header("x-forwarded-for", address)
        .bearer_auth(token)
        .json(&json!({ "currentPassword": current, "newPassword": new }))
        .send()
        .await
        .expect("request");
    let Reply { status, body, .. } = Reply::read(response).await;
    (status, body)
}

#[track_caller]
fn assert_throttled(status: StatusCode, body: &Value) {
    assert_error(
        status,
        body,
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("login_throttled"),
    );
}

/// The lockout attack: ten wrong passwords for someone's email from one address
/// used to lock them out from everywhere.
async fn guessing_from_one_address_never_locks_out_another(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let refused_after = guess_until_throttled(|| async {
        login_from(&app, ATTACKER, &owner.email, "wrong-guess").await
    })
    .await;
    assert!(refused_after >= 10, "refused after {refused_after} guesses");
    // The guesser is refused even with the right password: the throttle is not an oracle.
    let (status, body) = login_from(&app, ATTACKER, &owner.email, &owner.password).await;
    assert_throttled(status, &body);

    // The real owner, from their own address, signs in at once and again and again.
    for _ in 0..3 {
        let (status, body) = login_from(&app, VICTIM, &owner.email, &owner.password).await;
        assert_eq!(status, StatusCode::OK, "the owner was locked out: {body}");
    }
    // The guesser keeps going (about ten a minute): the owner is still in.
    for _ in 0..10 {
        let _ = login_from(&app, ATTACKER, &owner.email, "wrong-guess").await;
    }
    let (status, body) = login_from(&app, VICTIM, &owner.email, &owner.password).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Guesses (each answered 401 or 403) until one is throttled; returns how many were answered.
/// The limits refill continuously (one attempt every 6 s at 10 a minute), so a slow machine
/// may answer a few more than the limit; never fewer.
async fn guess_until_throttled<F, Fut>(mut guess: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (StatusCode, Value)>,
{
    for answered in 0..60 {
        let (status, body) = guess().await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_throttled(status, &body);
            return answered;
        }
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
            "guess {answered}: {status} {body}"
        );
    }
    panic!("60 guesses and never throttled");
}

/// One address spraying many emails is limited as an address (3× the pair limit).
async fn one_address_is_limited_across_emails(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let mut n = 0;
    let refused_after = guess_until_throttled(|| {
        n += 1;
        let email = format!("user{n}@acme.test");
        let app = &app;
        async move { login_from(app, ATTACKER, &email, "wrong-guess").await }
    })
    .await;
    assert!(
        (30..40).contains(&refused_after),
        "10 per pair × 3 per address; refused after {refused_after}"
    );
    let (status, body) = login_from(&app, VICTIM, &owner.email, &owner.password).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The write-amplification attack: a failed sign-in wrote one audit row per
/// workspace of the user. Now it writes one, however many workspaces.
async fn a_failed_sign_in_writes_once_however_many_workspaces(app: TestApp) {
    let busy = app.bootstrap("Acme", "busy@acme.test").await;
    let client = ClientInfo::default();
    for n in 0..60 {
        app.store
            .workspaces()
            .create(
                &format!("Workspace {n}"),
                &UserId::parse(busy.user_id.as_str()).expect("an id"),
                &client,
            )
            .await
            .expect("workspace");
    }
    let audit_rows = || count(&app, "SELECT COUNT(*) FROM audit_events", &[]);
    let before = audit_rows().await;
    let (status, _) = login_from(&app, ATTACKER, &busy.email, "wrong-guess").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The row is written off the response path: wait for it, then for any stragglers.
    for _ in 0..100 {
        if audit_rows().await > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        audit_rows().await,
        before + 1,
        "one row for one failed sign-in"
    );
    let in_workspaces = count(
        &app,
        "SELECT COUNT(*) FROM audit_events WHERE action = 'auth.login_failed' AND workspace_id IS NOT NULL",
        &[],
    )
    .await;
    assert_eq!(
        in_workspaces, 0,
        "no workspace's owners see where members sign in from"
    );
    let recorded = count(
        &app,
        "SELECT COUNT(*) FROM audit_events WHERE action = 'auth.login_failed' AND target_id = $1 AND ip = $2",
        &[&busy.user_id, ATTACKER],
    )
    .await;
    assert_eq!(recorded, 1);
}

async fn second_session(app: &TestApp, account: &Account) -> String {
    app.login(&account.email, &account.password).await
}

async fn session_status(app: &TestApp, token: &str) -> StatusCode {
    app.session(token).await.status
}

async fn changing_the_password_ends_other_sessions(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let other_session = second_session(&app, &owner).await;
    let new_password = "a-brand-new-password";

    // Bad input is named field by field and changes nothing.
    for (body, fields) in [
        (json!({}), vec!["currentPassword", "newPassword"]),
        (
            json!({ "currentPassword": owner.password, "newPassword": "short" }),
            vec!["newPassword"],
        ),
        (
            json!({ "currentPassword": "", "newPassword": new_password }),
            vec!["currentPassword"],
        ),
    ] {
        let answer = app
            .change_password(Some(&owner.token), body)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
        let named: Vec<&str> = answer["error"]["details"]["issues"]
            .as_array()
            .expect("issues")
            .iter()
            .map(|i| i["field"].as_str().expect("field"))
            .collect();
        assert_eq!(named, fields, "{answer}");
    }
    app.change_password(
        None,
        json!({ "currentPassword": owner.password, "newPassword": new_password }),
    )
    .await
    .expect_unauthorized("missing_session");

    let (status, answer) =
        change_password_from(&app, VICTIM, &owner.token, "not-my-password", new_password).await;
    assert_error(
        status,
        &answer,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        Some("wrong_password"),
    );
    assert_eq!(session_status(&app, &other_session).await, StatusCode::OK);

    let (status, answer) =
        change_password_from(&app, VICTIM, &owner.token, &owner.password, new_password).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    assert_eq!(session_status(&app, &owner.token).await, StatusCode::OK);
    assert_eq!(
        session_status(&app, &other_session).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = login_from(&app, VICTIM, &owner.email, &owner.password).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old password is gone");
    let (status, _) = login_from(&app, VICTIM, &owner.email, new_password).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'user.password_changed' AND target_id = $1 AND actor_id = $1",
            &[&owner.user_id]
        )
        .await,
        1
    );
}

/// A stolen session cannot be used to guess the password faster than a sign-in could.
async fn wrong_current_passwords_count_toward_the_throttle(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let refused_after = guess_until_throttled(|| async {
        change_password_from(
            &app,
            ATTACKER,
            &owner.token,
            "guess-guess",
            "new-password-123",
        )
        .await
    })
    .await;
    assert!(refused_after >= 10, "refused after {refused_after} guesses");
    let (status, body) = change_password_from(
        &app,
        ATTACKER,
        &owner.token,
        &owner.password,
        "new-password-123",
    )
    .await;
    assert_throttled(status, &body);
    let (status, body) = login_from(&app, ATTACKER, &owner.email, &owner.password).await;
    assert_throttled(status, &body);
    // From anywhere else, the owner is fine.
    let (status, body) = login_from(&app, VICTIM, &owner.email, &owner.password).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn behind_proxy(config: &mut heffl_api::config::Config) {
    config.login_attempts_per_minute = 10;
    config.trust_forwarded_for = true;
}

on_both_databases_with!(
    guessing_from_one_address_never_locks_out_another,
    super::behind_proxy
);
on_both_databases_with!(one_address_is_limited_across_emails, super::behind_proxy);
on_both_databases_with!(
    a_failed_sign_in_writes_once_however_many_workspaces,
    super::behind_proxy
);
on_both_databases_with!(
    changing_the_password_ends_other_sessions,
    super::behind_proxy
);
on_both_databases_with!(
    wrong_current_passwords_count_toward_the_throttle,
    super::behind_proxy
);

on_both_databases!(
    login_returns_token_expiry_and_user,
    login_email_is_case_insensitive,
    wrong_password_and_unknown_email_get_identical_401,
    login_with_missing_fields_lists_every_issue,
    logout_ends_only_that_session,
    session_lists_user_and_workspaces_with_roles,
    session_token_is_stored_only_as_sha256,
    disabled_user_cannot_log_in_and_loses_sessions_at_once,
);
on_both_databases_with!(expired_session_is_rejected, |config| {
    config.session_ttl = std::time::Duration::from_secs(1);
});
on_both_databases_with!(login_burst_is_throttled, |config| {
    config.login_attempts_per_minute = 3;
});

async fn sessions_of(app: &TestApp, user_id: &str) -> i64 {
    count(
        app,
        "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
        &[user_id],
    )
    .await
}

async fn login_returns_token_expiry_and_user(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let before = now_ms();
    let reply = app.try_login(&owner.email, &owner.password).await;
    assert_eq!(reply.header("cache-control"), "no-store");
    let after = now_ms();
    let body = reply.ok();
    // Nothing else (no password hash, no internal ids) may ride along.
    assert_eq!(keys_of(&body), ["expiresAt", "token", "user"]);
    assert_eq!(
        body["user"],
        json!({ "id": owner.user_id, "email": "owner@acme.test", "name": "Owner" })
    );
    let token = body["token"].as_str().expect("token");
    assert_eq!(token.len(), 64, "token: {token}");
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_ne!(token, owner.token, "each login is a new session");

    let expires_at = assert_spec_time(&body["expiresAt"]);
    let ttl = i64::try_from(app.config.session_ttl.as_millis()).expect("ttl");
    assert!(
        (before + ttl..=after + ttl).contains(&expires_at),
        "expiresAt {expires_at} should be now + {ttl} ms"
    );

    let session = app.session(token).await.ok();
    assert_eq!(session["user"]["id"], owner.user_id.as_str());
}

async fn login_email_is_case_insensitive(app: TestApp) {
    let owner = app.bootstrap("Acme", "Owner@Acme.test").await;
    for typed in ["owner@acme.test", "OWNER@ACME.TEST", "  owner@acme.TEST  "] {
        let reply = app.try_login(typed, &owner.password).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "login as {typed:?}: {}",
            reply.body
        );
        // Shown as it was registered, whatever the case typed at login.
        assert_eq!(reply.body["user"]["email"], "Owner@Acme.test");
        assert_eq!(reply.body["user"]["id"], owner.user_id.as_str());
    }
}

async fn wrong_password_and_unknown_email_get_identical_401(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let sessions_before = count_rows(&app.store, "sessions").await;

    let wrong_password = app.try_login(&owner.email, "not-the-password-at-all").await;
    let unknown_email = app
        .try_login("nobody@acme.test", "not-the-password-at-all")
        .await;
    for reply in [&wrong_password, &unknown_email] {
        assert_eq!(reply.header("www-authenticate"), "Bearer");
    }
    let wrong_password = wrong_password.expect_unauthorized("invalid_credentials");
    let unknown_email = unknown_email.expect_unauthorized("invalid_credentials");
    // Identical bodies but for the request's own id: the response must not reveal which emails
    // have accounts.
    let wrong_password = without_request_id(wrong_password);
    assert_eq!(wrong_password, without_request_id(unknown_email));

    // A correct password of another account is still a wrong password.
    let other = app.bootstrap("Beta", "other@beta.test").await;
    let crossed = app
        .try_login(&owner.email, &other.password)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    assert_eq!(without_request_id(crossed), wrong_password);

    assert_eq!(
        count_rows(&app.store, "sessions").await,
        sessions_before + 1,
        "only the second bootstrap's login made a session"
    );
}

async fn login_with_missing_fields_lists_every_issue(app: TestApp) {
    app.bootstrap("Acme", "owner@acme.test").await;
    let sessions_before = count_rows(&app.store, "sessions").await;
    let cases = [
        (json!({}), vec!["email", "password"]),
        (
            json!({ "email": "", "password": "" }),
            vec!["email", "password"],
        ),
        (
            json!({ "email": null, "password": null }),
            vec!["email", "password"],
        ),
        (json!({ "email": "owner@acme.test" }), vec!["password"]),
        (json!({ "password": "whatever-it-is" }), vec!["email"]),
        (
            json!({ "email": "   ", "password": "whatever-it-is" }),
            vec!["email"],
        ),
    ];
    for (body, fields) in cases {
        let error = app.login_with(body.clone()).await.expect_issues(&fields);
        assert!(
            error["error"]["message"].as_str().is_some(),
            "{body}: {error}"
        );
    }
    assert_eq!(count_rows(&app.store, "sessions").await, sessions_before);
}

async fn logout_ends_only_that_session(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let second = app.login(&owner.email, &owner.password).await;
    assert_eq!(sessions_of(&app, &owner.user_id).await, 2);

    let reply = app.logout(Some(&owner.token)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.text.is_empty());
    assert_eq!(sessions_of(&app, &owner.user_id).await, 1);

    let reply = app.session(&owner.token).await;
    assert_eq!(reply.header("www-authenticate"), "Bearer");
    reply.expect_unauthorized("invalid_session");
    // The ended session cannot log out again either.
    app.logout(Some(&owner.token))
        .await
        .expect_unauthorized("invalid_session");
    // Other sessions of the same user live on.
    app.session(&second).await.ok();

    app.logout(None)
        .await
        .expect_unauthorized("missing_session");
}

async fn session_lists_user_and_workspaces_with_roles(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let beta = app
        .create_workspace(&owner.token, json!({ "name": "Beta" }))
        .await
        .expect_status(StatusCode::CREATED);
    let other = app.bootstrap("Gamma", "other@gamma.test").await;
    app.add_existing_member(&other.workspace_id, &owner.user_id, "viewer")
        .await;

    let body = app.session(&owner.token).await.ok();
    assert_eq!(keys_of(&body), ["defaults", "user", "workspaces"]);
    // The server's default rate limit, which the page names for keys without their own.
    assert_eq!(
        body["defaults"],
        json!({ "rateLimitPerMinute": app.config.rate_limit_per_minute })
    );
    assert_eq!(
        body["user"],
        json!({ "id": owner.user_id, "email": owner.email, "name": "Owner" })
    );
    let mut workspaces = body["workspaces"].as_array().expect("workspaces").clone();
    for workspace in &workspaces {
        assert_eq!(keys_of(workspace), ["id", "name", "role"]);
    }
    workspaces.sort_by_key(|w| w["id"].as_str().unwrap_or_default().to_owned());
    let mut expected = vec![
        json!({ "id": owner.workspace_id, "name": "Acme", "role": "owner" }),
        json!({ "id": beta["id"], "name": "Beta", "role": "owner" }),
        json!({ "id": other.workspace_id, "name": "Gamma", "role": "viewer" }),
    ];
    expected.sort_by_key(|w| w["id"].as_str().unwrap_or_default().to_owned());
    assert_eq!(workspaces, expected);

    // The other user sees only their own workspace.
    let roles = session_roles(&app.session(&other.token).await.ok());
    assert_eq!(roles, [(other.workspace_id.clone(), "owner".to_owned())]);
}

async fn session_token_is_stored_only_as_sha256(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let stored: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT token_digest FROM sessions WHERE user_id = $1")
            .bind(&owner.user_id)
            .fetch_all(app.raw_db())
            .await
            .expect("digests");
    let expected: Vec<u8> = Sha256::digest(owner.token.as_bytes()).to_vec();
    assert_eq!(
        stored,
        vec![expected],
        "exactly one session row, holding SHA-256(token)"
    );

    assert_eq!(stored[0].len(), 32);
    assert_ne!(stored[0].as_slice(), owner.token.as_bytes());
    let like = format!("%{}%", owner.token);
    // And nothing in the audit log either.
    let in_audit = count(
        &app,
        "SELECT COUNT(*) FROM audit_events WHERE details LIKE $1 OR target_id LIKE $1",
        &[&like],
    )
    .await;
    assert_eq!(in_audit, 0);
}

async fn disabled_user_cannot_log_in_and_loses_sessions_at_once(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let key = app.create_key(&member, "Sync").await;
    app.session(&member.token).await.ok();

    let disabled = app
        .verifier
        .set_user_disabled(&member.email, true, heffl_api::store::Actor::System)
        .await
        .expect("disable");
    assert!(disabled.is_some());

    app.session(&member.token)
        .await
        .expect_unauthorized("invalid_session");
    assert_eq!(sessions_of(&app, &member.user_id).await, 0);

    // The right password does not open a disabled account, and makes no session.
    let body = app
        .try_login(&member.email, &member.password)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    assert_ne!(
        body["error"]["details"]["reason"], "invalid_credentials",
        "{body}"
    );
    assert_eq!(sessions_of(&app, &member.user_id).await, 0);
    // A wrong password still says only "invalid credentials".
    app.try_login(&member.email, "not-the-password-at-all")
        .await
        .expect_unauthorized("invalid_credentials");

    app.me(&key.key)
        .await
        .expect_unauthorized("revoked_api_key");

    // The owner is untouched.
    app.session(&owner.token).await.ok();

    // Enabling lets the user sign in again.
    app.verifier
        .set_user_disabled(&member.email, false, heffl_api::store::Actor::System)
        .await
        .expect("enable");
    let token = app.login(&member.email, &member.password).await;
    app.session(&token).await.ok();
}

async fn expired_session_is_rejected(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    app.session(&owner.token).await.ok();
    // Unavoidable: the session TTL is one second and only time can make it pass.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let reply = app.session(&owner.token).await;
    assert_eq!(reply.header("www-authenticate"), "Bearer");
    reply.expect_unauthorized("invalid_session");
    app.members(&owner, &owner.workspace_id)
        .await
        .expect_unauthorized("invalid_session");
}

async fn login_burst_is_throttled(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let target = "victim@acme.test";
    // The limit is 3 a minute per (email, address): the first three guesses are answered
    // normally.
    for attempt in 1..=3 {
        let reply = app.try_login(target, "guess-guess-guess").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let reply = app.try_login(target, "guess-guess-guess").await;
    let retry_after: u64 = reply
        .header("retry-after")
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    reply.expect_error(
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("login_throttled"),
    );

    // The owner's email has its own budget (one attempt used by bootstrap): a right password
    // still signs in. Then a burst at the owner's email from this address locks this address
    // out of it too, even for the right password, or the throttle would only slow down
    // guessers who guess wrong. (Other addresses are untouched: see the tests above.)
    app.login(&owner.email, &owner.password).await;
    let mut throttled = false;
    for _ in 0..3 {
        let reply = app.try_login(&owner.email, "guess-guess-guess").await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = true;
            break;
        }
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    assert!(throttled, "the owner's email was never throttled");
    app.try_login(&owner.email, &owner.password)
        .await
        .expect_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            Some("login_throttled"),
        );
    assert_eq!(
        sessions_of(&app, &owner.user_id).await,
        2,
        "bootstrap's and the one good login's sessions only"
    );
}
