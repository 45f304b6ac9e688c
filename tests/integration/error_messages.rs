//! Error messages a developer can act on: each says what is wrong in their terms and what to do,
//! and none sends them looking for a problem they do not have. And the error shape of every kind
//! of bad request (unknown route, wrong method, oversized or non-JSON body, malformed JSON,
//! hostile input, bad path parameters): always a 4xx in the docs/api.md §4 shape, never a 5xx, and
//! nothing written.

use crate::common::TestApp;
use crate::common::{count, count_rows, membership_snapshot};
use crate::on_both_databases;
use crate::test_app::Reply;
use heffl_api::domain::api_key::{ApiKey, KeyEnv};
use reqwest::header::CONTENT_TYPE;
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
    let body = app
        .me(made_up.expose_secret())
        .await
        .expect_unauthorized("invalid_api_key");
    assert_message_has(&body, "not known");
    assert!(!body.to_string().contains("copied the whole"), "{body}");
}

async fn an_api_key_sent_as_a_bearer_token_is_named(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let key = app.create_key(&owner, "Website Forms").await;
    let body = app
        .session(&key.key)
        .await
        .expect_unauthorized("api_key_not_accepted");
    assert!(
        !body.to_string().contains(&key.key),
        "the key is echoed: {body}"
    );
}

async fn type_errors_read_as_requirements(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let body = app
        .create_workspace(&owner.token, json!({"name": 5}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
    let issue = &body["error"]["details"]["issues"][0];
    assert_eq!(issue["field"], "name", "{body}");
    assert_eq!(issue["message"], "must be a string", "{body}");

    let body = app
        .create_workspace(&owner.token, json!({"title": "Beta"}))
        .await
        .body;
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
    let body = app
        .create_workspace(
            &owner.token,
            json!({"title": "Beta", "color": "red", "name": 5}),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
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
    let lead = app
        .create_lead(&beta_key.key, json!({"name": "Jane Smith"}))
        .await
        .expect_status(StatusCode::CREATED);
    let lead_id = lead["id"].as_str().expect("lead id");
    let body = app
        .lead(&acme_key.key, lead_id)
        .await
        .expect_forbidden("workspace_mismatch");
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
    unknown_routes_and_wrong_methods_are_json,
    oversized_body_is_json_413_and_writes_nothing,
    json_posts_need_a_json_content_type,
    malformed_empty_and_mistyped_json_are_400,
    hostile_input_never_causes_5xx,
    bad_path_params_are_4xx_json,
);

fn invitations_path(workspace_id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/invitations")
}

fn members_path(workspace_id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/members")
}

fn member_path(workspace_id: &str, user_id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/members/{user_id}")
}

/// Sends `body` as is, with the given `Content-Type` (none when `None`).
async fn send_raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut request = app.client.request(method, app.url(path)).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    Reply::read(request.send().await.expect("request")).await
}

async fn post_json_text(app: &TestApp, token: &str, path: &str, body: &str) -> Reply {
    send_raw(
        app,
        Method::POST,
        path,
        Some(token),
        Some("application/json"),
        body.to_owned(),
    )
    .await
}

/// Asserts some 4xx error in the docs/api.md §4 shape, with the code that belongs to its status.
#[track_caller]
fn expect_client_error(reply: &Reply, what: &str) -> StatusCode {
    let status = reply.status;
    assert!(status.is_client_error(), "{what}: {status}");
    let codes: &[&str] = match status {
        StatusCode::BAD_REQUEST => &["BAD_REQUEST", "VALIDATION_ERROR"],
        StatusCode::UNAUTHORIZED => &["UNAUTHORIZED"],
        StatusCode::FORBIDDEN => &["FORBIDDEN"],
        StatusCode::NOT_FOUND => &["NOT_FOUND"],
        StatusCode::CONFLICT => &["CONFLICT"],
        StatusCode::PAYLOAD_TOO_LARGE => &["PAYLOAD_TOO_LARGE"],
        StatusCode::UNSUPPORTED_MEDIA_TYPE => &["UNSUPPORTED_MEDIA_TYPE"],
        other => panic!("{what}: unexpected status {other}"),
    };
    let content_type = reply.header("content-type");
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content-type {content_type:?}"
    );
    let body = &reply.body;
    let code = body["error"]["code"].as_str().unwrap_or_default();
    assert!(
        codes.contains(&code),
        "{what}: code {code} for {status}; body: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: message; body: {body}"
    );
    status
}

async fn unknown_routes_and_wrong_methods_are_json(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    for path in [
        "/nope",
        "/app/v1/nope",
        "/app/v1/workspaces/x/y/z",
        "/api/v1/nope",
        "/app/v2/session",
    ] {
        let response = app.call(Method::GET, path, Some(&owner.token), None).await;
        response.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    }
    for (method, path, allowed) in [
        (Method::DELETE, "/app/v1/session".to_owned(), "GET"),
        (Method::GET, "/app/v1/auth/login".to_owned(), "POST"),
        (Method::PUT, "/app/v1/workspaces".to_owned(), "POST"),
        (Method::PUT, members_path(&owner.workspace_id), "GET"),
        (
            Method::GET,
            member_path(&owner.workspace_id, &owner.user_id),
            "PATCH",
        ),
    ] {
        let response = app
            .call(method.clone(), &path, Some(&owner.token), None)
            .await;
        let allow = response.header("allow");
        assert!(allow.contains(allowed), "{method} {path}: Allow {allow:?}");
        response.expect_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", None);
    }
}

async fn oversized_body_is_json_413_and_writes_nothing(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let workspaces = count_rows(&app.store, "workspaces").await;
    let padding = "x".repeat(1024 * 1024);
    let body = format!("{{\"name\":\"{padding}\"}}");
    // One pooled client, as a real integrator has: the refused connection must not be reused.
    let client = &app.client;
    for path in [
        "/app/v1/workspaces".to_owned(),
        members_path(&owner.workspace_id),
        "/app/v1/auth/login".to_owned(),
    ] {
        let response = client
            .post(app.url(&path))
            .bearer_auth(&owner.token)
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("request");
        let response = Reply::read(response).await;
        response.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", None);
    }
    assert_eq!(count_rows(&app.store, "workspaces").await, workspaces);
}

async fn json_posts_need_a_json_content_type(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let workspaces = count_rows(&app.store, "workspaces").await;
    let body = r#"{"name":"Beta"}"#;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
    ] {
        let response = send_raw(
            &app,
            Method::POST,
            "/app/v1/workspaces",
            Some(&owner.token),
            content_type,
            body,
        )
        .await;
        response.expect_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            None,
        );
        let response = send_raw(
            &app,
            Method::POST,
            "/app/v1/auth/login",
            None,
            content_type,
            body,
        )
        .await;
        response.expect_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            None,
        );
    }
    assert_eq!(count_rows(&app.store, "workspaces").await, workspaces);
    // A charset parameter and any case are fine.
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        let response = send_raw(
            &app,
            Method::POST,
            "/app/v1/workspaces",
            Some(&owner.token),
            Some(content_type),
            body,
        )
        .await;
        assert_eq!(response.status, StatusCode::CREATED, "{content_type}");
    }
}

async fn malformed_empty_and_mistyped_json_are_400(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let before = (
        count_rows(&app.store, "workspaces").await,
        count_rows(&app.store, "users").await,
    );
    let token = owner.token.as_str();
    // Each JSON route, a text field it knows, and a body it would accept plus a field it does
    // not know.
    let routes = [
        (
            "/app/v1/workspaces".to_owned(),
            "name",
            r#"{"name": "Beta", "isAdmin": true}"#,
        ),
        (
            invitations_path(&owner.workspace_id),
            "email",
            r#"{"email": "a@b.co", "role": "admin", "isAdmin": true}"#,
        ),
        (
            "/app/v1/auth/login".to_owned(),
            "email",
            r#"{"email": "owner@acme.test", "password": "whatever-it-is", "isAdmin": true}"#,
        ),
    ];

    for (path, field, unknown_field) in &routes {
        for template in [
            r#"{"name": "Beta""#,
            "{name: 'Beta'}",
            r#"{"name": "Beta",}"#,
            "nope",
            r#"{"name": "\ud800"}"#,
            "{\"name\": \"Be\u{1}ta\"}",
        ] {
            // The known field, so that the syntax error is what the parser meets first.
            let malformed = template.replace("name", field);
            let response = post_json_text(&app, token, path, &malformed).await;
            let body =
                response.expect_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", Some("invalid_json"));
            assert!(
                !body.to_string().contains("Beta"),
                "the error does not echo the body: {body}"
            );
        }
        for empty in ["", "   \n"] {
            let response = post_json_text(&app, token, path, empty).await;
            response.expect_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", Some("empty_body"));
        }
        // Valid JSON, but not an object of the expected fields. An array must not be taken
        // for the fields in order.
        for mistyped in [
            "[]",
            r#"["Beta"]"#,
            r#"["owner@acme.test", "whatever-it-is"]"#,
            r#"["x@y.co", "admin", null, "long-enough-password"]"#,
            r#""x""#,
            "null",
            "12",
            "true",
            r#"{"name": 12}"#,
            r#"{"email": 12, "role": []}"#,
        ] {
            let response = post_json_text(&app, token, path, mistyped).await;
            let body = response.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
            assert!(
                body["error"]["details"]["issues"]
                    .as_array()
                    .is_some_and(|i| !i.is_empty()),
                "{path} {mistyped}: {body}"
            );
        }
        // Unknown fields are refused rather than silently dropped.
        let response = post_json_text(&app, token, path, unknown_field).await;
        let body = response.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
        assert!(
            body.to_string().contains("isAdmin"),
            "the issue names the field: {body}"
        );
    }
    let response = send_raw(
        &app,
        Method::PATCH,
        &member_path(&owner.workspace_id, &owner.user_id),
        Some(token),
        Some("application/json"),
        r#"{"role": "owner", "userId": "usr_x"}"#,
    )
    .await;
    response.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
    assert_eq!(
        (
            count_rows(&app.store, "workspaces").await,
            count_rows(&app.store, "users").await
        ),
        before
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
            &[&owner.user_id]
        )
        .await,
        1,
        "no login went through"
    );
}

async fn hostile_input_never_causes_5xx(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;

    // Unusual but legitimate names are stored and returned exactly.
    let names = [
        // Emoji without joiners: U+200D is a format character, refused by docs/api.md §9.
        "🚀 Launch Team 👩👩👧👦 ❤️",
        "مساحة العمل",
        "צוות מכירות",
        "'; DROP TABLE users; --",
        "Robert'); DROP TABLE workspaces;--",
        "\" OR 1=1 --",
        "%s%n%x {{7*7}} ${jndi:x}",
        "<script>alert(1)</script>",
        "Ünïcödé ñame",
    ];
    for name in names {
        let body = app
            .create_workspace(&owner.token, json!({ "name": name }))
            .await
            .expect_status(StatusCode::CREATED);
        assert_eq!(body["name"], name);
        let stored: String = sqlx::query_scalar("SELECT name FROM workspaces WHERE id = $1")
            .bind(body["id"].as_str().expect("id"))
            .fetch_one(app.raw_db())
            .await
            .expect("stored");
        assert_eq!(stored, name);
    }
    // The tables the SQL-looking names mention are all still there.
    assert!(count_rows(&app.store, "users").await >= 1);
    assert_eq!(
        count_rows(&app.store, "workspaces").await,
        1 + names.len() as i64
    );

    let invitation = app
        .invite(&owner, &owner.workspace_id, "o'hara+x@acme.test", "member")
        .await
        .expect_status(StatusCode::CREATED);
    let accept = json!({
        "token": invitation["token"],
        "name": "شيماء 🌙 O'Hara",
        "password": "pässwörd-🔑-long",
    });
    let joined = app
        .accept_invitation(None, accept)
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(joined["user"]["name"], "شيماء 🌙 O'Hara");
    app.login("o'hara+x@acme.test", "pässwörd-🔑-long").await;

    // Bad input of every kind: always a 4xx JSON error, never a 5xx, and nothing written.
    let workspaces = count_rows(&app.store, "workspaces").await;
    let users = count_rows(&app.store, "users").await;
    let long = "x".repeat(10_000);
    let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_object = format!("{}1{}", r#"{"name":"#.repeat(10_000), "}".repeat(10_000));
    let deep_in_field = format!(r#"{{"name":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    let raw_bodies = [
        json!({ "name": long }).to_string(),
        r#"{"name": 1e309}"#.to_owned(),
        r#"{"name": -1e309}"#.to_owned(),
        r#"{"name": 123456789012345678901234567890}"#.to_owned(),
        r#"{"name": "a\u0000b"}"#.to_owned(),
        r#"{"name": "\u202e\u0000"}"#.to_owned(),
        deep_array,
        deep_object,
        deep_in_field,
        format!(r#"{{"name": "x", "name": "{long}"}}"#),
    ];
    let member_bodies = [
        json!({ "email": format!("{long}@acme.test"), "role": "member" }).to_string(),
        json!({ "email": "x@acme.test", "role": "member", "password": long }).to_string(),
        json!({ "email": "x@acme.test", "role": long }).to_string(),
        json!({ "email": "'; DROP TABLE users; --", "role": "member" }).to_string(),
        json!({ "email": "a\u{0}b@acme.test", "role": "member" }).to_string(),
        json!({ "email": "x@acme.test", "role": "'; DROP TABLE memberships; --" }).to_string(),
        json!({ "email": "x@acme.test", "role": 1e300 }).to_string(),
    ];
    let targets = raw_bodies
        .iter()
        .map(|body| ("/app/v1/workspaces".to_owned(), body.clone()))
        .chain(
            raw_bodies
                .iter()
                .map(|body| ("/app/v1/auth/login".to_owned(), body.clone())),
        )
        .chain(
            member_bodies
                .iter()
                .map(|body| (invitations_path(&owner.workspace_id), body.clone())),
        );
    for (path, body) in targets {
        let response = send_raw(
            &app,
            Method::POST,
            &path,
            Some(&owner.token),
            Some("application/json"),
            body.clone(),
        )
        .await;
        let shown: String = body.chars().take(80).collect();
        expect_client_error(&response, &format!("POST {path} {shown}…"));
    }
    // Logins with absurd credentials are refused like any wrong login.
    for (email, password) in [
        (long.as_str(), "x"),
        ("owner@acme.test", long.as_str()),
        ("' OR '1'='1", "' OR '1'='1"),
        ("owner@acme.test' --", "anything-at-all"),
    ] {
        let response = app.try_login(email, password).await;
        let what = format!("login {email:.40}");
        let status = expect_client_error(&response, &what);
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::BAD_REQUEST].contains(&status),
            "{what}: {status}"
        );
    }
    assert_eq!(count_rows(&app.store, "workspaces").await, workspaces);
    assert_eq!(count_rows(&app.store, "users").await, users);
}

async fn bad_path_params_are_4xx_json(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let before = membership_snapshot(&app).await;
    let ws = &owner.workspace_id;
    let long = "w".repeat(10_000);
    let requests = [
        (
            Method::GET,
            "/app/v1/workspaces/%FF/members".to_owned(),
            None,
        ),
        (
            Method::GET,
            "/app/v1/workspaces/%C3%28/members".to_owned(),
            None,
        ),
        (
            Method::GET,
            "/app/v1/workspaces/ws%00x/members".to_owned(),
            None,
        ),
        (
            Method::GET,
            "/app/v1/workspaces/%0A/members".to_owned(),
            None,
        ),
        (
            Method::GET,
            "/app/v1/workspaces/'%3B%20DROP%20TABLE%20users%3B%20--/members".to_owned(),
            None,
        ),
        (
            Method::GET,
            format!("/app/v1/workspaces/{long}/members"),
            None,
        ),
        (
            Method::GET,
            "/app/v1/workspaces/%F0%9F%9A%80/members".to_owned(),
            None,
        ),
        (
            Method::PATCH,
            format!("/app/v1/workspaces/{ws}/members/%FF"),
            Some(json!({ "role": "viewer" })),
        ),
        (
            Method::PATCH,
            format!("/app/v1/workspaces/{ws}/members/usr%00x"),
            Some(json!({ "role": "viewer" })),
        ),
        (
            Method::DELETE,
            format!("/app/v1/workspaces/{ws}/members/%FF"),
            None,
        ),
        (
            Method::DELETE,
            format!("/app/v1/workspaces/{ws}/members/usr%00"),
            None,
        ),
        (
            Method::DELETE,
            format!("/app/v1/workspaces/{ws}/members/{}%00", member.user_id),
            None,
        ),
        (
            Method::DELETE,
            format!("/app/v1/workspaces/{ws}/members/'%20OR%20'1'%3D'1"),
            None,
        ),
        (
            Method::GET,
            format!("/app/v1/workspaces/{ws}/api-keys/%FF"),
            None,
        ),
        (
            Method::GET,
            format!("/app/v1/workspaces/{ws}/api-keys/key%00"),
            None,
        ),
    ];
    // Raw: each path is itself the bad input (stray encodings, injections, overlong ids).
    for (method, path, body) in requests {
        let shown: String = path.chars().take(80).collect();
        let response = app
            .call(method.clone(), &path, Some(&owner.token), body)
            .await;
        expect_client_error(&response, &format!("{method} {shown}"));
    }
    let response = app
        .call(
            Method::GET,
            "/app/v1/workspaces/%FF/members",
            Some(&owner.token),
            None,
        )
        .await;
    response.expect_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", Some("invalid_path"));
    assert_eq!(membership_snapshot(&app).await, before);
}
