//! Error messages a developer can act on: each says what is wrong in their terms and what to do,
//! and none sends them looking for a problem they do not have.

use crate::common::{assert_error, me_with_key, parts, TestApp};
use crate::on_both_databases;
use heffl_api::api_key::{ApiKey, KeyEnv};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[track_caller]
fn assert_message_has(body: &Value, wanted: &str) {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(wanted),
        "{wanted:?} not in the message: {body}"
    );
}

/// The checksum proved the key was copied whole, so the message must not say otherwise.
async fn an_unknown_key_is_called_unknown(app: TestApp) {
    let made_up = ApiKey::generate(&KeyEnv::default());
    let (status, body) = me_with_key(&app, made_up.expose_secret()).await;
    assert_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("invalid_api_key"),
    );
    assert_message_has(&body, "not known");
    assert!(!body.to_string().contains("copied the whole"), "{body}");
}

async fn an_api_key_sent_as_a_bearer_token_is_named(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let key = app.create_key(&owner, "Website Forms").await;
    let (status, body) = parts(
        app.send(Method::GET, "/app/v1/session", Some(&key.key), None)
            .await,
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("api_key_not_accepted"),
    );
    assert!(
        !body.to_string().contains(&key.key),
        "the key is echoed: {body}"
    );
}

async fn type_errors_read_as_requirements(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let (status, body) = parts(
        app.send(
            Method::POST,
            "/app/v1/workspaces",
            Some(&owner.token),
            Some(json!({"name": 5})),
        )
        .await,
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        None,
    );
    let issue = &body["error"]["details"]["issues"][0];
    assert_eq!(issue["field"], "name", "{body}");
    assert_eq!(issue["message"], "must be a string", "{body}");

    let (_, body) = parts(
        app.send(
            Method::POST,
            "/app/v1/workspaces",
            Some(&owner.token),
            Some(json!({"title": "Beta"})),
        )
        .await,
    )
    .await;
    let issue = &body["error"]["details"]["issues"][0];
    assert_eq!(
        issue["field"], "title",
        "the unknown field is named: {body}"
    );
    assert_message_has(
        &json!({"error": {"message": issue["message"]}}),
        "not a field",
    );
}

/// serde stops at the first unknown field; the answer lists every unknown field and what the
/// rest of the body gets wrong, so one round trip shows every problem.
async fn unknown_fields_come_with_the_other_problems(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let (status, body) = parts(
        app.send(
            Method::POST,
            "/app/v1/workspaces",
            Some(&owner.token),
            Some(json!({"title": "Beta", "color": "red", "name": 5})),
        )
        .await,
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        None,
    );
    let issues: Vec<(String, String)> = body["error"]["details"]["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|issue| {
            (
                issue["field"].as_str().unwrap_or_default().to_owned(),
                issue["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut fields: Vec<&str> = issues.iter().map(|(field, _)| field.as_str()).collect();
    // The unknown fields first (in the order of the body's keys, sorted), then the rest.
    fields[..2].sort_unstable();
    assert_eq!(fields, ["color", "title", "name"], "{body}");
    assert!(issues[0].1.contains("not a field"), "{body}");
    assert_eq!(issues[2].1, "must be a string", "{body}");
}

/// A lead of another workspace: the message names the workspace the key belongs to and where
/// to see it.
async fn workspace_mismatch_names_the_keys_workspace(app: TestApp) {
    let acme = app.bootstrap("Acme", "owner@acme.test").await;
    let beta = app.bootstrap("Beta", "owner@beta.test").await;
    let acme_key = app.create_key(&acme, "Acme sync").await;
    let beta_key = app.create_key(&beta, "Beta sync").await;
    let (status, lead) = parts(
        app.send_with_key(
            Method::POST,
            "/api/v1/leads",
            &beta_key.key,
            Some(json!({"name": "Jane Smith"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{lead}");
    let lead_id = lead["id"].as_str().expect("lead id");
    let (status, body) = parts(
        app.send_with_key(
            Method::GET,
            &format!("/api/v1/leads/{lead_id}"),
            &acme_key.key,
            None,
        )
        .await,
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        Some("workspace_mismatch"),
    );
    assert_message_has(&body, &acme.workspace_id);
    assert_message_has(&body, "GET /api/v1/me");
    assert!(!body.to_string().contains(&beta.workspace_id), "{body}");
}

on_both_databases!(
    an_unknown_key_is_called_unknown,
    an_api_key_sent_as_a_bearer_token_is_named,
    type_errors_read_as_requirements,
    unknown_fields_come_with_the_other_problems,
    workspace_mismatch_names_the_keys_workspace,
);
