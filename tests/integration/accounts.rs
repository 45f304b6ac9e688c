//! SPEC §10 accounts: sign-in throttling that cannot lock anyone out, a failed sign-in that
//! costs one write however many workspaces the user is in, and changing one's own password.
//! Client addresses come from X-Forwarded-For (HEFFL_TRUST_FORWARDED_FOR), as behind a proxy.

use crate::common::{assert_error, count, parts, Account, TestApp};
use crate::on_both_databases_with;
use heffl_api::store::ClientInfo;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const ATTACKER: &str = "203.0.113.66";
const VICTIM: &str = "198.51.100.7";

async fn login_from(
    app: &TestApp,
    address: &str,
    email: &str,
    password: &str,
) -> (StatusCode, Value) {
    parts(
        app.client
            .post(app.url("/app/v1/auth/login"))
            .header("x-forwarded-for", address)
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("request"),
    )
    .await
}

async fn change_password_from(
    app: &TestApp,
    address: &str,
    token: &str,
    current: &str,
    new: &str,
) -> (StatusCode, Value) {
    parts(
        app.client
            .post(app.url("/app/v1/session/password"))
            .header("x-forwarded-for", address)
            .bearer_auth(token)
            .json(&json!({ "currentPassword": current, "newPassword": new }))
            .send()
            .await
            .expect("request"),
    )
    .await
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

/// The lockout attack of issue 10: ten wrong passwords for someone's email from one address
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

/// The write-amplification attack of issue 10: a failed sign-in wrote one audit row per
/// workspace of the user. Now it writes one, however many workspaces.
async fn a_failed_sign_in_writes_once_however_many_workspaces(app: TestApp) {
    let busy = app.bootstrap("Acme", "busy@acme.test").await;
    let client = ClientInfo::default();
    for n in 0..60 {
        app.store
            .create_workspace(&format!("Workspace {n}"), &busy.user_id, &client)
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
    app.send(Method::GET, "/app/v1/session", Some(token), None)
        .await
        .status()
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
        let (status, answer) = parts(
            app.send(
                Method::POST,
                "/app/v1/session/password",
                Some(&owner.token),
                Some(body),
            )
            .await,
        )
        .await;
        assert_error(
            status,
            &answer,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            None,
        );
        let named: Vec<&str> = answer["error"]["details"]["issues"]
            .as_array()
            .expect("issues")
            .iter()
            .map(|i| i["field"].as_str().expect("field"))
            .collect();
        assert_eq!(named, fields, "{answer}");
    }
    let (status, answer) = parts(
        app.send(
            Method::POST,
            "/app/v1/session/password",
            None,
            Some(json!({ "currentPassword": owner.password, "newPassword": new_password })),
        )
        .await,
    )
    .await;
    assert_error(
        status,
        &answer,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("missing_session"),
    );

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
