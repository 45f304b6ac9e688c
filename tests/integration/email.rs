//! docs/api.md §10, emailed invitations, on both databases through a real SMTP server (the
//! test's sink): the email says who invited whom to what, with the link and its expiry; with
//! email on the token travels only by email; a resend makes a new link and kills the old one;
//! and with the SMTP server down invitations still work and show the failure.

use crate::common::{count, Db, TestApp};
use crate::on_each_db;
use crate::process_harness::{free_port, metric_value, run_in};
use crate::smtp_sink::{
    app_with_email, email_settings, SmtpSink, PUBLIC_URL, SMTP_PASSWORD, SMTP_USER,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

on_each_db!(
    an_invitation_is_emailed_with_who_where_which_role_the_link_and_expiry,
    with_email_on_the_token_travels_only_by_email,
    a_resend_sends_a_new_link_and_the_old_one_stops_working,
    with_the_smtp_server_down_invitations_work_and_show_the_failure,
    starttls_required_sends_nothing_to_a_server_without_it,
    smtps_delivers_over_tls_to_a_trusted_certificate_only,
    smtp_upgrades_with_starttls_when_offered,
    without_email_the_link_is_returned_as_before,
);

/// The one pending invitation's record, once its email is no longer `pending`.
async fn settled(app: &TestApp, owner: &crate::common::Account) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = app.invitations(owner).await.ok();
        let item = list["items"][0].clone();
        if item["emailStatus"] != "pending" {
            return item;
        }
        assert!(Instant::now() < deadline, "the email never settled: {item}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn an_invitation_is_emailed_with_who_where_which_role_the_link_and_expiry(db: Db) {
    let Some((app, sink)) = app_with_email(db).await else {
        return;
    };
    let owner = app.bootstrap("Acme Rockets", "olive@acme.test").await;
    let created = app
        .invite(&owner, &owner.workspace_id, "Nina@Example.test", "admin")
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(created["emailStatus"], "pending", "{created}");

    let mail = sink.wait_for("Nina@Example.test").await;
    assert_eq!(mail.from, "noreply@heffl.test");
    assert!(mail.header("from").contains("noreply@heffl.test"));
    assert_eq!(
        mail.header("subject"),
        "Owner invited you to Acme Rockets on heffl"
    );
    assert!(
        mail.header("content-type")
            .starts_with("multipart/alternative"),
        "{}",
        mail.raw
    );
    let text = mail.text();
    assert!(text.contains("Content-Type: text/plain"), "{text}");
    assert!(text.contains("Content-Type: text/html"), "{text}");
    let expires = created["expiresAt"].as_str().expect("expiresAt");
    let expires_shown = format!("{} {} UTC", &expires[..10], &expires[11..16]);
    for expected in [
        "Owner (olive@acme.test) invited you",
        "\"Acme Rockets\" as an admin",
        &expires_shown,
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
    // The credentials of HEFFL_SMTP_URL reached the server, and no further.
    assert_eq!(
        mail.auth.as_deref(),
        Some(format!("\0{SMTP_USER}\0{SMTP_PASSWORD}").as_str())
    );

    // The link opens the invitation, and it can be accepted with it.
    let token = mail.token("invitation");
    assert!(text.contains(&format!(
        "{PUBLIC_URL}/settings/developer#invitation={token}"
    )));
    let preview = app.lookup_invitation(&token).await.ok();
    assert_eq!(preview["workspace"]["name"], "Acme Rockets");
    assert_eq!(preview["role"], "admin");

    let item = settled(&app, &owner).await;
    assert_eq!(item["emailStatus"], "sent", "{item}");
    assert!(item["emailedAt"].is_string(), "{item}");
    assert_eq!(item["emailError"], Value::Null);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM invitations WHERE email_status = 'sent' AND emailed_at IS NOT NULL",
            &[],
        )
        .await,
        1
    );
    let accepted = app
        .accept_invitation(
            None,
            json!({ "token": token, "name": "Nina", "password": "a-long-new-password" }),
        )
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(accepted["role"], "admin");
}

async fn with_email_on_the_token_travels_only_by_email(db: Db) {
    let Some((app, sink)) = app_with_email(db).await else {
        return;
    };
    let owner = app.bootstrap("Only Mail", "owner@mail.test").await;
    let created = app
        .invite(&owner, &owner.workspace_id, "new@mail.test", "member")
        .await
        .expect_status(StatusCode::CREATED);
    assert!(created.get("token").is_none(), "{created}");
    let mail = sink.wait_for("new@mail.test").await;
    let token = mail.token("invitation");
    let list = app.invitations(&owner).await;
    assert!(!list.text.contains(&token), "{}", list.text);
    assert!(list.body["items"][0].get("token").is_none());
    let options = app.sign_in_options().await.ok();
    assert_eq!(
        options,
        json!({ "passwordReset": true, "invitationEmails": true })
    );
}

async fn a_resend_sends_a_new_link_and_the_old_one_stops_working(db: Db) {
    let Some((app, sink)) = app_with_email(db).await else {
        return;
    };
    let owner = app.bootstrap("Resends", "owner@resend.test").await;
    let viewer = app.add_member(&owner, "viewer@resend.test", "viewer").await;
    let created = app
        .invite(&owner, &owner.workspace_id, "late@resend.test", "member")
        .await
        .expect_status(StatusCode::CREATED);
    let id = created["id"].as_str().expect("id");
    let first = sink.wait_for("late@resend.test").await.token("invitation");
    settled(&app, &owner).await;

    app.resend_invitation(&viewer, id)
        .await
        .expect_forbidden("insufficient_permission");
    let resent = app
        .resend_invitation(&owner, id)
        .await
        .expect_status(StatusCode::ACCEPTED);
    assert_eq!(resent["id"], id);
    assert_eq!(resent["emailStatus"], "pending");
    assert!(resent.get("token").is_none());
    let second = sink
        .wait_for_nth("late@resend.test", 2)
        .await
        .token("invitation");
    assert_ne!(first, second);
    app.lookup_invitation(&first).await.expect_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        Some("invitation_not_found"),
    );
    app.lookup_invitation(&second).await.ok();
    assert_eq!(settled(&app, &owner).await["emailStatus"], "sent");

    // A second resend within the minute is refused, and sends nothing.
    let again = app.resend_invitation(&owner, id).await;
    again.expect_error(
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("resend_throttled"),
    );
    assert!(!again.header("retry-after").is_empty());
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'invitation.resent' AND target_id = $1",
            &[id],
        )
        .await,
        1
    );
    assert_eq!(sink.mails_to("late@resend.test").len(), 2);
    app.resend_invitation(&owner, "inv_doesnotexist0000000")
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
}

async fn with_the_smtp_server_down_invitations_work_and_show_the_failure(db: Db) {
    // A port with nothing listening: every connection is refused.
    let down = format!("smtp://127.0.0.1:{}", free_port());
    let Some(app) = TestApp::start_with(db, |config| email_settings(config, down)).await else {
        return;
    };
    let owner = app.bootstrap("Down", "owner@down.test").await;
    let created = app
        .invite(&owner, &owner.workspace_id, "waiting@down.test", "viewer")
        .await
        .expect_status(StatusCode::CREATED);
    assert!(created.get("token").is_none(), "{created}");
    let item = settled(&app, &owner).await;
    assert_eq!(item["emailStatus"], "failed", "{item}");
    assert_eq!(item["emailError"]["reason"], "connection_failed", "{item}");
    assert!(item["emailError"]["at"].is_string(), "{item}");
    assert_eq!(item["emailedAt"], Value::Null);
    let metrics = app.metrics().await;
    let failed = metric_value(
        &metrics,
        "heffl_emails_total{kind=\"invitation\",outcome=\"failed\"}",
    );
    assert!(failed >= 1.0, "{metrics}");
    assert!(metrics.contains("# HELP heffl_emails_total"), "{metrics}");
    // Nothing of the URL's password anywhere the inviter can see.
    let list = app.invitations(&owner).await;
    assert!(!list.text.contains("smtp-secret"), "{}", list.text);

    // The invitation is still pending, and can be resent once the server is back.
    let resent = app
        .resend_invitation(&owner, created["id"].as_str().expect("id"))
        .await
        .expect_status(StatusCode::ACCEPTED);
    assert_eq!(resent["emailStatus"], "pending");
    assert_eq!(resent["emailError"], Value::Null);
}

/// `?starttls=required`: a server that does not offer STARTTLS (the sink never does) gets
/// neither the message nor the credentials.
async fn starttls_required_sends_nothing_to_a_server_without_it(db: Db) {
    let sink = SmtpSink::start().await;
    let url = format!("{}?starttls=required", sink.url());
    let Some(app) = TestApp::start_with(db, |config| email_settings(config, url)).await else {
        return;
    };
    let owner = app.bootstrap("Insist", "owner@insist.test").await;
    app.invite(&owner, &owner.workspace_id, "careful@insist.test", "member")
        .await
        .expect_status(StatusCode::CREATED);
    let item = settled(&app, &owner).await;
    assert_eq!(item["emailStatus"], "failed", "{item}");
    assert_eq!(item["emailError"]["reason"], "tls_failed", "{item}");
    assert!(sink.mails().is_empty(), "{:?}", sink.mails());
}

/// `smtps://`: TLS from the first byte, to a server whose certificate is trusted (here through
/// HEFFL_SMTP_CA_FILE); a certificate nobody vouches for gets nothing, credentials included.
async fn smtps_delivers_over_tls_to_a_trusted_certificate_only(db: Db) {
    let sink = SmtpSink::start_tls().await;
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = dir.path().join("smtp-ca.pem");
    std::fs::write(&ca_file, sink.certificate_pem.as_deref().expect("pem")).expect("write ca");
    let url = sink.url();
    let Some(app) = TestApp::start_with(db, |config| {
        email_settings(config, url);
        config.smtp_ca_file = Some(ca_file);
    })
    .await
    else {
        return;
    };
    let owner = app.bootstrap("Sealed", "owner@sealed.test").await;
    app.invite(&owner, &owner.workspace_id, "tls@sealed.test", "member")
        .await
        .expect_status(StatusCode::CREATED);
    let mail = sink.wait_for("tls@sealed.test").await;
    assert!(mail.tls);
    assert_eq!(
        mail.auth.as_deref(),
        Some(format!("\0{SMTP_USER}\0{SMTP_PASSWORD}").as_str())
    );
    assert_eq!(settled(&app, &owner).await["emailStatus"], "sent");

    // The same server, its certificate not trusted.
    let untrusting = sink.url();
    let Some(app) = TestApp::start_with(db, |config| email_settings(config, untrusting)).await
    else {
        return;
    };
    let owner = app.bootstrap("Unsealed", "owner@unsealed.test").await;
    app.invite(&owner, &owner.workspace_id, "tls@unsealed.test", "member")
        .await
        .expect_status(StatusCode::CREATED);
    let item = settled(&app, &owner).await;
    assert_eq!(item["emailStatus"], "failed", "{item}");
    assert_eq!(item["emailError"]["reason"], "tls_failed", "{item}");
    assert!(sink.mails_to("tls@unsealed.test").is_empty());
}

/// `smtp://` with a server that offers STARTTLS: the credentials and the message go over TLS,
/// whether STARTTLS is merely taken when offered or required.
async fn smtp_upgrades_with_starttls_when_offered(db: Db) {
    let sink = SmtpSink::start_starttls().await;
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = dir.path().join("smtp-ca.pem");
    std::fs::write(&ca_file, sink.certificate_pem.as_deref().expect("pem")).expect("write ca");
    for (n, url) in [sink.url(), format!("{}?starttls=required", sink.url())]
        .into_iter()
        .enumerate()
    {
        let ca_file = ca_file.clone();
        let Some(app) = TestApp::start_with(db, |config| {
            email_settings(config, url);
            config.smtp_ca_file = Some(ca_file);
        })
        .await
        else {
            return;
        };
        let owner = app
            .bootstrap("Upgraded", &format!("owner{n}@upgraded.test"))
            .await;
        let to = format!("tls{n}@upgraded.test");
        app.invite(&owner, &owner.workspace_id, &to, "member")
            .await
            .expect_status(StatusCode::CREATED);
        let mail = sink.wait_for(&to).await;
        assert!(mail.tls, "the message came in the clear");
        assert_eq!(
            mail.auth.as_deref(),
            Some(format!("\0{SMTP_USER}\0{SMTP_PASSWORD}").as_str())
        );
        assert_eq!(settled(&app, &owner).await["emailStatus"], "sent");
    }
}

async fn without_email_the_link_is_returned_as_before(db: Db) {
    let Some(app) = TestApp::start(db).await else {
        return;
    };
    let owner = app.bootstrap("No Mail", "owner@nomail.test").await;
    let created = app
        .invite(&owner, &owner.workspace_id, "handed@nomail.test", "member")
        .await
        .expect_status(StatusCode::CREATED);
    let token = created["token"].as_str().expect("token");
    assert_eq!(created["emailStatus"], Value::Null);
    app.lookup_invitation(token).await.ok();
    app.resend_invitation(&owner, created["id"].as_str().expect("id"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    let options = app.sign_in_options().await.ok();
    assert_eq!(
        options,
        json!({ "passwordReset": false, "invitationEmails": false })
    );
    app.request_password_reset("owner@nomail.test")
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    app.confirm_password_reset(&"a".repeat(64), "a-long-new-password")
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
}

/// `serve` refuses a half-made email configuration before it starts anything, naming what is
/// missing and never quoting the URL, which holds a password.
#[tokio::test]
async fn serve_refuses_email_without_a_public_url_or_sender_and_never_prints_the_password() {
    const PASSWORD: &str = "pl4nted-smtp-Passw0rd";
    let dir = tempfile::tempdir().expect("dir");
    let database = format!("sqlite://{}", dir.path().join("heffl.db").display());
    let base = vec![
        ("DATABASE_URL".to_owned(), database),
        ("HEFFL_BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ("HEFFL_METRICS_BIND".to_owned(), "off".to_owned()),
        (
            "HEFFL_SMTP_URL".to_owned(),
            format!("smtp://mailer:{PASSWORD}@127.0.0.1:{}", free_port()),
        ),
    ];
    for (extra, missing) in [
        (
            vec![("HEFFL_SMTP_FROM", "heffl <noreply@heffl.test>")],
            "HEFFL_PUBLIC_URL",
        ),
        (vec![("HEFFL_PUBLIC_URL", PUBLIC_URL)], "HEFFL_SMTP_FROM"),
    ] {
        let mut env = base.clone();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let out = run_in(dir.path(), &env, &["serve"], None).await;
        out.assert_failure();
        assert!(out.stderr.contains(missing), "{}", out.stderr);
        assert!(!out.stderr.contains(PASSWORD), "{}", out.stderr);
    }
    let mut env = base.clone();
    env[3].1 = format!("smtp://mailer:{PASSWORD}@smtp.example:99999");
    env.push((
        "HEFFL_SMTP_FROM".to_owned(),
        "heffl <noreply@heffl.test>".to_owned(),
    ));
    env.push(("HEFFL_PUBLIC_URL".to_owned(), PUBLIC_URL.to_owned()));
    let out = run_in(dir.path(), &env, &["serve"], None).await;
    out.assert_failure();
    assert!(out.stderr.contains("HEFFL_SMTP_URL"), "{}", out.stderr);
    assert!(!out.stderr.contains(PASSWORD), "{}", out.stderr);
}
