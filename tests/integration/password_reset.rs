//! docs/api.md §10, "Forgot password?", on both databases through a real SMTP server (the test's
//! sink), each rule as the attack it stops: the answer (status, body, time) is the same whether
//! or not the email has an account; requests are throttled per (email, address) and per
//! address, never per email alone; a link works once and for an hour; and a reset signs out
//! every session of the account.

use crate::common::{count, Db, TestApp};
use crate::on_each_db;
use crate::smtp_sink::{app_with_email, app_with_email_and};
use crate::test_app::Reply;
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

on_each_db!(
    a_reset_link_sets_a_new_password_and_signs_every_session_out,
    the_answer_is_the_same_whether_or_not_the_email_has_an_account,
    a_link_works_once,
    an_expired_link_opens_nothing,
    requests_are_throttled_per_email_and_address_and_per_address_never_per_email,
);

const NEW_PASSWORD: &str = "a-brand-new-password";

#[track_caller]
fn assert_reset_token_not_found(reply: &Reply) {
    reply.expect_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        Some("reset_token_not_found"),
    );
}

async fn a_reset_link_sets_a_new_password_and_signs_every_session_out(db: Db) {
    let Some((app, sink)) = app_with_email(db).await else {
        return;
    };
    let owner = app.bootstrap("Resets", "jane@reset.test").await;
    let second_session = app.login(&owner.email, &owner.password).await;

    let asked = app.request_password_reset("JANE@reset.test").await;
    assert_eq!(asked.status, StatusCode::ACCEPTED);
    assert_eq!(asked.body, json!({}));
    assert_eq!(asked.header("cache-control"), "no-store");
    let mail = sink.wait_for("jane@reset.test").await;
    assert_eq!(mail.header("subject"), "Reset your heffl password");
    let text = mail.text();
    assert!(text.contains("ignore this email"), "{text}");
    let token = mail.token("reset");
    assert_eq!(token.len(), 64);
    // Stored as its SHA-256 only.
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM password_resets", &[]).await,
        1
    );

    app.confirm_password_reset(&token, "short")
        .await
        .expect_issues(&["password"]);
    let done = app.confirm_password_reset(&token, NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.text);

    for session in [&owner.token, &second_session] {
        app.session(session)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    }
    app.try_login(&owner.email, &owner.password)
        .await
        .expect_unauthorized("invalid_credentials");
    app.login(&owner.email, NEW_PASSWORD).await;
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'user.password_reset' \
             AND target_id = $1 AND actor_id = $1",
            &[&owner.user_id],
        )
        .await,
        1
    );
}

/// Median of a few timings: one slow request (a GC pause, the other engineer's build) must not
/// decide the comparison.
async fn median_time(app: &TestApp, email: &str) -> Duration {
    let mut times = Vec::new();
    for _ in 0..9 {
        let started = Instant::now();
        let reply = app.request_password_reset(email).await;
        times.push(started.elapsed());
        assert_eq!(reply.status, StatusCode::ACCEPTED);
    }
    times.sort();
    times[times.len() / 2]
}

async fn the_answer_is_the_same_whether_or_not_the_email_has_an_account(db: Db) {
    let Some((app, sink)) = app_with_email(db).await else {
        return;
    };
    app.bootstrap("Same Answer", "known@same.test").await;
    let known = app.request_password_reset("known@same.test").await;
    let unknown = app.request_password_reset("nobody@same.test").await;
    assert_eq!(known.status, unknown.status);
    assert_eq!(known.text, unknown.text);
    for header in ["content-type", "cache-control", "content-length"] {
        assert_eq!(known.header(header), unknown.header(header), "{header}");
    }
    sink.wait_for("known@same.test").await;

    // Neither answer waits on the database or the mail server, so their times differ only by
    // noise; a lookup or an email on the request path for one of them would show here.
    let known_time = median_time(&app, "known@same.test").await;
    let unknown_time = median_time(&app, "nobody@same.test").await;
    let gap = known_time.abs_diff(unknown_time);
    assert!(
        gap < Duration::from_millis(50),
        "known {known_time:?}, unknown {unknown_time:?}"
    );
    // A disabled account is answered the same, and gets no link either.
    let owner = app.bootstrap("Disabled", "disabled@same.test").await;
    app.verifier
        .set_user_disabled(&owner.email, true, heffl_api::store::Actor::System)
        .await
        .expect("disable");
    let disabled = app.request_password_reset(&owner.email).await;
    assert_eq!(
        (disabled.status, &disabled.text),
        (known.status, &known.text)
    );

    // Only the account's owner got mail, one per request.
    sink.wait_for_nth("known@same.test", 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.mails_to("nobody@same.test").is_empty());
    assert!(sink.mails_to("disabled@same.test").is_empty());
}

async fn a_link_works_once(db: Db) {
    let Some((app, sink)) = app_with_email(db).await else {
        return;
    };
    let owner = app.bootstrap("Once", "once@reset.test").await;
    app.request_password_reset(&owner.email).await;
    let first = sink.wait_for(&owner.email).await.token("reset");
    app.request_password_reset(&owner.email).await;
    let second = sink.wait_for_nth(&owner.email, 2).await.token("reset");

    let done = app.confirm_password_reset(&first, NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.text);
    // Reused, the same link opens nothing; nor does the account's other link.
    assert_reset_token_not_found(
        &app.confirm_password_reset(&first, "another-password-1")
            .await,
    );
    assert_reset_token_not_found(
        &app.confirm_password_reset(&second, "another-password-2")
            .await,
    );
    // Nor a made-up or malformed one.
    assert_reset_token_not_found(
        &app.confirm_password_reset(&"0".repeat(64), NEW_PASSWORD)
            .await,
    );
    assert_reset_token_not_found(
        &app.confirm_password_reset("not-a-token", NEW_PASSWORD)
            .await,
    );
    app.login(&owner.email, NEW_PASSWORD).await;
}

async fn an_expired_link_opens_nothing(db: Db) {
    let Some((app, sink)) = app_with_email(db).await else {
        return;
    };
    let owner = app.bootstrap("Expiry", "late@reset.test").await;
    app.request_password_reset(&owner.email).await;
    let token = sink.wait_for(&owner.email).await.token("reset");
    // Made an hour ago, as the link's lifetime says.
    let expires: i64 = count(&app, "SELECT MAX(expires_at) FROM password_resets", &[]).await;
    let created: i64 = count(&app, "SELECT MAX(created_at) FROM password_resets", &[]).await;
    assert_eq!(expires - created, 60 * 60 * 1000);
    sqlx::query("UPDATE password_resets SET expires_at = created_at - 1")
        .execute(app.raw_db())
        .await
        .expect("age the link");
    assert_reset_token_not_found(&app.confirm_password_reset(&token, NEW_PASSWORD).await);
    app.login(&owner.email, &owner.password).await;
}

const LIMIT: u32 = 3;

async fn reset_from(app: &TestApp, address: &str, email: &str) -> StatusCode {
    app.client
        .post(app.url("/app/v1/auth/password-reset"))
        .header("x-forwarded-for", address)
        .json(&json!({ "email": email }))
        .send()
        .await
        .expect("request")
        .status()
}

async fn requests_are_throttled_per_email_and_address_and_per_address_never_per_email(db: Db) {
    let Some((app, _sink)) = app_with_email_and(db, |config| {
        config.login_attempts_per_minute = LIMIT;
        config.trust_forwarded_for = true;
    })
    .await
    else {
        return;
    };
    let owner = app.bootstrap("Throttle", "victim@throttle.test").await;
    const ATTACKER: &str = "203.0.113.66";
    for _ in 0..LIMIT {
        assert_eq!(
            reset_from(&app, ATTACKER, &owner.email).await,
            StatusCode::ACCEPTED
        );
    }
    // The pair is spent: the attacker may not send the victim more mail from there.
    let refused = app
        .client
        .post(app.url("/app/v1/auth/password-reset"))
        .header("x-forwarded-for", ATTACKER)
        .json(&json!({ "email": owner.email }))
        .send()
        .await
        .expect("request");
    let refused = Reply::read(refused).await;
    refused.expect_error(
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("login_throttled"),
    );
    assert!(!refused.header("retry-after").is_empty());
    // Never per email alone: the victim, elsewhere, still gets a link, and still signs in.
    assert_eq!(
        reset_from(&app, "198.51.100.7", &owner.email).await,
        StatusCode::ACCEPTED
    );
    app.login(&owner.email, &owner.password).await;
    // Per address: other emails from the attacker's address use up what is left of its
    // allowance of 3 × LIMIT (LIMIT + 1 requests, the refused one included, are spent).
    let mut accepted = 0;
    for n in 0..(2 * LIMIT + 1) {
        if reset_from(&app, ATTACKER, &format!("other{n}@throttle.test")).await
            == StatusCode::ACCEPTED
        {
            accepted += 1;
        }
    }
    assert_eq!(
        accepted,
        2 * LIMIT - 1,
        "the address allows 3 × {LIMIT} in all"
    );
}
