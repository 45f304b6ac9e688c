//! docs/api.md §9, "no invisible characters": names, titles and emails refuse Unicode control (Cc)
//! and format (Cf) characters, so nothing can look like something it is not (a lead named
//! "Invoice \u{202e}gnp.exe" displays as "Invoice exe.png"; `adm\u{200b}@a.test` displays as
//! `adm@a.test`). Blank after whitespace is blank; emails are plain `local@domain`.

use crate::common::{count_rows, key_count, TestApp};
use crate::on_both_databases;
use crate::process_harness::Deployment;
use crate::test_app::Reply;
use reqwest::{Method, StatusCode};
use serde_json::json;

on_both_databases!(
    key_names_refuse_invisible_characters,
    lead_fields_refuse_invisible_characters,
    workspace_and_member_fields_refuse_invisible_characters,
    emails_are_plain_trimmed_and_case_insensitive,
);

mod cli {
    crate::on_each_db!(the_cli_refuses_invisible_characters);

    async fn the_cli_refuses_invisible_characters(db: crate::common::Db) {
        super::the_cli_refuses_invisible_characters(db).await;
    }
}

/// Each is invisible, reorders text, or breaks a line where none shows.
const INVISIBLE: [(&str, &str); 10] = [
    ("right-to-left override", "\u{202e}"),
    ("left-to-right isolate", "\u{2066}"),
    ("zero-width space", "\u{200b}"),
    ("zero-width joiner", "\u{200d}"),
    ("word joiner", "\u{2060}"),
    ("byte-order mark", "\u{feff}"),
    ("soft hyphen", "\u{00ad}"),
    ("escape", "\u{1b}"),
    ("delete", "\u{7f}"),
    ("tag character", "\u{e0041}"),
];

#[track_caller]
fn assert_invalid_field(reply: &Reply, field: &str, what: &str) {
    let body = reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
    let fields: Vec<&str> = body["error"]["details"]["issues"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no issues: {body}"))
        .iter()
        .filter_map(|issue| issue["field"].as_str())
        .collect();
    assert!(fields.contains(&field), "{what}: {field} not named: {body}");
}

async fn key_names_refuse_invisible_characters(app: TestApp) {
    let owner = app
        .bootstrap("Invisible keys", "owner@invisiblekeys.test")
        .await;
    let keys_before = key_count(&app).await;
    for (what, c) in INVISIBLE {
        for name in [format!("Website{c}form"), c.repeat(3), format!("{c}Zapier")] {
            let reply = app.new_key(&owner, json!({ "name": name })).await;
            assert_invalid_field(&reply, "name", what);
        }
    }
    // Blank once whitespace of any kind is removed.
    for blank in ["\u{3000}\u{2003}", " \u{a0} ", "\u{2028}"] {
        let reply = app.new_key(&owner, json!({ "name": blank })).await;
        assert_invalid_field(&reply, "name", "blank");
    }
    assert_eq!(key_count(&app).await, keys_before);
    // Visible text of any script is fine.
    for name in [
        "Zapier → CRM",
        "Интеграция",
        "売上 同期",
        "مزامنة",
        "Café ☕",
    ] {
        let reply = app.new_key(&owner, json!({ "name": name })).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{name}: {}", reply.body);
        assert_eq!(reply.body["name"], name);
    }
}

async fn lead_fields_refuse_invisible_characters(app: TestApp) {
    let owner = app
        .bootstrap("Invisible leads", "owner@invisibleleads.test")
        .await;
    let key = app.create_key(&owner, "leads").await;
    let leads_before = count_rows(&app.store, "leads").await;
    let reply = app
        .create_lead(&key.key, json!({ "name": "Invoice \u{202e}gnp.exe" }))
        .await;
    assert_invalid_field(&reply, "name", "the reviewed lead name");
    for (what, c) in INVISIBLE {
        for (field, lead) in [
            ("name", json!({ "name": format!("Jane{c} Smith") })),
            (
                "title",
                json!({ "name": "Jane", "title": format!("Demo{c}") }),
            ),
            (
                "email",
                json!({ "name": "Jane", "email": format!("jane{c}@example.com") }),
            ),
        ] {
            let reply = app.create_lead(&key.key, lead).await;
            assert_invalid_field(&reply, field, what);
        }
    }
    assert_eq!(count_rows(&app.store, "leads").await, leads_before);

    let lead = app
        .create_lead(&key.key, json!({ "name": "Jane Smith" }))
        .await
        .expect_status(StatusCode::CREATED);
    let lead_id = lead["id"].as_str().expect("id");
    for (field, patch) in [
        ("name", json!({ "name": "Jane\u{200b}" })),
        ("title", json!({ "title": "\u{202e}CEO" })),
        ("email", json!({ "email": "\u{feff}jane@example.com" })),
    ] {
        let reply = app.edit_lead(&key.key, lead_id, patch).await;
        assert_invalid_field(&reply, field, "patch");
    }
    let unchanged = app.lead(&key.key, lead_id).await.body;
    assert_eq!(unchanged["name"], "Jane Smith");
}

async fn workspace_and_member_fields_refuse_invisible_characters(app: TestApp) {
    let owner = app
        .bootstrap("Invisible people", "owner@invisiblepeople.test")
        .await;
    let workspaces_before = count_rows(&app.store, "workspaces").await;
    let users_before = count_rows(&app.store, "users").await;
    // People join by invitation (docs/api.md §10): the invited email and the name given on accepting.
    let invitation = app
        .invite(&owner, &owner.workspace_id, "adm@a.test", "admin")
        .await
        .expect_status(StatusCode::CREATED);
    let token = invitation["token"].as_str().expect("token").to_owned();
    for (what, c) in INVISIBLE {
        let reply = app
            .create_workspace(&owner.token, json!({ "name": format!("Acme{c}") }))
            .await;
        assert_invalid_field(&reply, "name", what);
        let reply = app
            .invite(
                &owner,
                &owner.workspace_id,
                &format!("adm{c}@a.test"),
                "admin",
            )
            .await;
        assert_invalid_field(&reply, "email", what);
        let reply = app
            .accept_invitation(
                None,
                json!({ "token": token, "name": format!("Adm{c}"), "password": "a long enough password" }),
            )
            .await;
        assert_invalid_field(&reply, "name", what);
    }
    assert_eq!(
        count_rows(&app.store, "workspaces").await,
        workspaces_before
    );
    assert_eq!(count_rows(&app.store, "users").await, users_before);
    // Signing in with an invisible character is a clear 400, not a lookup.
    let reply = app
        .try_login("owner@invisible\u{200b}people.test", &owner.password)
        .await;
    assert_invalid_field(&reply, "email", "login");
}

async fn emails_are_plain_trimmed_and_case_insensitive(app: TestApp) {
    let owner = app.bootstrap("Emails", "owner@emails.test").await;
    let key = app.create_key(&owner, "leads").await;
    for email in [
        "Jane Smith <jane@example.com>",
        "\"jane smith\"@example.com",
        "jane(comment)@example.com",
        "jane@exa mple.com",
        "jane@example..com",
        "jane@[127.0.0.1]",
        "jane@example.com,bob@example.com",
        "jane;bob@example.com",
        "jane\\@example.com",
    ] {
        let reply = app
            .create_lead(&key.key, json!({ "name": "Jane", "email": email }))
            .await;
        assert_invalid_field(&reply, "email", email);
    }
    let lead = app
        .create_lead(
            &key.key,
            json!({ "name": "Jane", "email": "  Jane.Smith+crm@Example.com \t" }),
        )
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(lead["email"], "Jane.Smith+crm@Example.com");

    // A user's email is trimmed and matched without regard to case.
    let member = app
        .add_member(&owner, "  Mixed.Case@Emails.TEST ", "member")
        .await;
    let token = app.login("mixed.case@emails.test", &member.password).await;
    assert!(!token.is_empty());
    // Raw: the direct add is gone (a 404 or 405 now), and must not come back as a way to a
    // second user for one address.
    let Reply { status, body, .. } = app
        .call(
            Method::POST,
            &format!("/app/v1/workspaces/{}/members", owner.workspace_id),
            Some(&owner.token),
            Some(json!({ "email": "MIXED.CASE@emails.test", "role": "viewer", "name": "Again", "password": "a long enough password" })),
        )
        .await;
    assert!(
        status != StatusCode::CREATED || body["userId"] == member.user_id.as_str(),
        "the same address became a second user: {status} {body}"
    );
}

async fn the_cli_refuses_invisible_characters(db: crate::common::Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    for (args, field) in [
        (
            vec![
                "bootstrap",
                "--workspace",
                "Acme\u{202e}",
                "--email",
                "o@acme.test",
            ],
            "--workspace",
        ),
        (
            vec![
                "bootstrap",
                "--workspace",
                "Acme",
                "--email",
                "o\u{200b}@acme.test",
            ],
            "--email",
        ),
        (
            vec![
                "bootstrap",
                "--workspace",
                "Acme",
                "--email",
                "o@acme.test",
                "--name",
                "\u{feff}Olga",
            ],
            "--name",
        ),
    ] {
        let output = deployment.run(&args, None).await;
        assert!(
            !output.status.success(),
            "{args:?} succeeded: {}",
            output.stdout
        );
        assert!(output.stderr.contains(field), "{args:?}: {}", output.stderr);
    }
    // Commands other than bootstrap need a database that exists.
    deployment.run(&["migrate"], None).await.assert_success();
    let output = deployment
        .run(
            &["users", "disable", "--email", "o\u{200b}@acme.test"],
            None,
        )
        .await;
    assert!(!output.status.success());
    assert!(output.stderr.contains("--email"), "{}", output.stderr);
}
