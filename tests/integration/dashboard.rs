//! The dashboard side (/app/v1): login and sessions, workspaces, members, the error shape of
//! every kind of bad request, and CORS. Each test asserts the response and, where something
//! is or must not be written, the database.

use crate::common::{
    assert_error, audit_count, count, count_rows, me_with_key, parts, without_request_id, Account,
    Db, TestApp,
};
use crate::{on_both_databases, on_both_databases_with};
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Asserts a SPEC §4 error response, including its `Content-Type`, and returns the body.
async fn expect_error(
    response: Response,
    status: StatusCode,
    code: &str,
    reason: Option<&str>,
) -> Value {
    let content_type = header(response.headers(), "content-type");
    assert!(
        content_type.starts_with("application/json"),
        "error {} must be JSON, got content-type {content_type:?}",
        response.status()
    );
    let (actual, body) = parts(response).await;
    assert_error(actual, &body, status, code, reason);
    body
}

/// Asserts a 400 VALIDATION_ERROR whose `details.issues` name exactly `fields` (in any order).
async fn expect_issues(response: Response, fields: &[&str]) -> Value {
    let body = expect_error(response, StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None).await;
    let issues = body["error"]["details"]["issues"]
        .as_array()
        .unwrap_or_else(|| panic!("details.issues must be an array: {body}"));
    let mut found: Vec<&str> = issues
        .iter()
        .map(|issue| {
            assert!(
                issue["message"].as_str().is_some_and(|m| !m.is_empty()),
                "every issue has a message: {body}"
            );
            issue["field"].as_str().expect("issue field")
        })
        .collect();
    found.sort_unstable();
    let mut expected = fields.to_vec();
    expected.sort_unstable();
    assert_eq!(found, expected, "issue fields; body: {body}");
    body
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().expect("ascii header").to_owned())
        .unwrap_or_default()
}

/// Every row a member route could change, to prove that a refused request changed nothing.
async fn membership_snapshot(app: &TestApp) -> (Vec<(String, String, String)>, i64, i64, i64) {
    let memberships = sqlx::query_as::<_, (String, String, String)>(
        "SELECT workspace_id, user_id, role FROM memberships ORDER BY workspace_id, user_id",
    )
    .fetch_all(app.store.pool())
    .await
    .expect("memberships");
    let revoked = count(
        app,
        "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NOT NULL",
        &[],
    )
    .await;
    (
        memberships,
        count_rows(&app.store, "users").await,
        count_rows(&app.store, "audit_events").await,
        revoked,
    )
}

async fn role_in_db(app: &TestApp, workspace_id: &str, user_id: &str) -> Option<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2",
    )
    .bind(workspace_id)
    .bind(user_id)
    .fetch_optional(app.store.pool())
    .await
    .expect("role")
}

fn invitations_path(workspace_id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/invitations")
}

fn members_path(workspace_id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/members")
}

fn member_path(workspace_id: &str, user_id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/members/{user_id}")
}

async fn login_response(app: &TestApp, email: &str, password: &str) -> Response {
    app.send(
        Method::POST,
        "/app/v1/auth/login",
        None,
        Some(json!({ "email": email, "password": password })),
    )
    .await
}

/// Sends `body` as is, with the given `Content-Type` (none when `None`).
async fn send_raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Response {
    let mut request = app.client.request(method, app.url(path)).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    request.send().await.expect("request")
}

/// RFC 3339 UTC with exactly three fractional digits and `Z`, e.g. `2025-01-15T10:30:00.000Z`.
fn assert_spec_time(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("time must be a string: {value}"));
    let bytes = text.as_bytes();
    assert!(
        text.len() == 24 && bytes[10] == b'T' && bytes[19] == b'.' && text.ends_with('Z'),
        "not RFC 3339 UTC with milliseconds: {text}"
    );
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("unparseable time {text}: {e}"))
        .timestamp_millis()
}

fn now_ms() -> i64 {
    heffl_api::time::now_ms()
}

fn keys_of(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("expected an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

async fn session_of(app: &TestApp, token: &str) -> Value {
    let (status, body) = parts(
        app.send(Method::GET, "/app/v1/session", Some(token), None)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "session: {body}");
    body
}

/// The (id, role) pairs the session lists, sorted by id.
async fn session_roles(app: &TestApp, token: &str) -> Vec<(String, String)> {
    let body = session_of(app, token).await;
    let mut roles: Vec<(String, String)> = body["workspaces"]
        .as_array()
        .expect("workspaces")
        .iter()
        .map(|w| {
            (
                w["id"].as_str().expect("id").to_owned(),
                w["role"].as_str().expect("role").to_owned(),
            )
        })
        .collect();
    roles.sort();
    roles
}

/// The same user seen from another of their workspaces.
fn in_workspace(account: &Account, workspace_id: &str) -> Account {
    Account {
        workspace_id: workspace_id.to_owned(),
        ..account.clone()
    }
}

async fn create_workspace(app: &TestApp, token: &str, name: &str) -> Value {
    let (status, body) = parts(
        app.send(
            Method::POST,
            "/app/v1/workspaces",
            Some(token),
            Some(json!({ "name": name })),
        )
        .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "create workspace {name:?}: {body}"
    );
    body
}

// ---------------------------------------------------------------------------------------------
// Login, logout, session
// ---------------------------------------------------------------------------------------------

async fn login_returns_token_expiry_and_user(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let before = now_ms();
    let response = login_response(&app, &owner.email, &owner.password).await;
    assert_eq!(header(response.headers(), "cache-control"), "no-store");
    let (status, body) = parts(response).await;
    let after = now_ms();
    assert_eq!(status, StatusCode::OK, "{body}");
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

    let session = session_of(&app, token).await;
    assert_eq!(session["user"]["id"], owner.user_id.as_str());
}

async fn login_email_is_case_insensitive(app: TestApp) {
    let owner = app.bootstrap("Acme", "Owner@Acme.test").await;
    for typed in ["owner@acme.test", "OWNER@ACME.TEST", "  owner@acme.TEST  "] {
        let (status, body) = parts(login_response(&app, typed, &owner.password).await).await;
        assert_eq!(status, StatusCode::OK, "login as {typed:?}: {body}");
        // Shown as it was registered, whatever the case typed at login.
        assert_eq!(body["user"]["email"], "Owner@Acme.test");
        assert_eq!(body["user"]["id"], owner.user_id.as_str());
    }
}

async fn wrong_password_and_unknown_email_get_identical_401(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let sessions_before = count_rows(&app.store, "sessions").await;

    let wrong_password = login_response(&app, &owner.email, "not-the-password-at-all").await;
    let unknown_email = login_response(&app, "nobody@acme.test", "not-the-password-at-all").await;
    for response in [&wrong_password, &unknown_email] {
        assert_eq!(header(response.headers(), "www-authenticate"), "Bearer");
    }
    let wrong_password = expect_error(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("invalid_credentials"),
    )
    .await;
    let unknown_email = expect_error(
        unknown_email,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("invalid_credentials"),
    )
    .await;
    // Identical bodies but for the request's own id: the response must not reveal which emails
    // have accounts.
    let wrong_password = without_request_id(wrong_password);
    assert_eq!(wrong_password, without_request_id(unknown_email));

    // A correct password of another account is still a wrong password.
    let other = app.bootstrap("Beta", "other@beta.test").await;
    let crossed = login_response(&app, &owner.email, &other.password).await;
    let crossed = expect_error(crossed, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None).await;
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
        let response = app
            .send(Method::POST, "/app/v1/auth/login", None, Some(body.clone()))
            .await;
        let error = expect_issues(response, &fields).await;
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
    let before = count(
        &app,
        "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
        &[&owner.user_id],
    )
    .await;
    assert_eq!(before, 2);

    let response = app
        .send(
            Method::POST,
            "/app/v1/auth/logout",
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.text().await.expect("body").is_empty());
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
            &[&owner.user_id]
        )
        .await,
        1
    );

    let response = app
        .send(Method::GET, "/app/v1/session", Some(&owner.token), None)
        .await;
    assert_eq!(header(response.headers(), "www-authenticate"), "Bearer");
    expect_error(
        response,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("invalid_session"),
    )
    .await;
    // The ended session cannot log out again either.
    let response = app
        .send(
            Method::POST,
            "/app/v1/auth/logout",
            Some(&owner.token),
            None,
        )
        .await;
    expect_error(
        response,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("invalid_session"),
    )
    .await;
    // Other sessions of the same user live on.
    session_of(&app, &second).await;

    let response = app
        .send(Method::POST, "/app/v1/auth/logout", None, None)
        .await;
    expect_error(
        response,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("missing_session"),
    )
    .await;
}

async fn session_lists_user_and_workspaces_with_roles(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let beta = create_workspace(&app, &owner.token, "Beta").await;
    let other = app.bootstrap("Gamma", "other@gamma.test").await;
    app.add_existing_member(&other.workspace_id, &owner.user_id, "viewer")
        .await;

    let body = session_of(&app, &owner.token).await;
    assert_eq!(keys_of(&body), ["user", "workspaces"]);
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
    let roles = session_roles(&app, &other.token).await;
    assert_eq!(roles, [(other.workspace_id.clone(), "owner".to_owned())]);
}

async fn session_token_is_stored_only_as_sha256(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let stored: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT token_digest FROM sessions WHERE user_id = $1")
            .bind(&owner.user_id)
            .fetch_all(app.store.pool())
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
    session_of(&app, &member.token).await;

    let disabled = app
        .store
        .set_user_disabled(&member.email, true)
        .await
        .expect("disable");
    assert!(disabled.is_some());

    let response = app
        .send(Method::GET, "/app/v1/session", Some(&member.token), None)
        .await;
    expect_error(
        response,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("invalid_session"),
    )
    .await;
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
            &[&member.user_id]
        )
        .await,
        0
    );

    // The right password does not open a disabled account, and makes no session.
    let response = login_response(&app, &member.email, &member.password).await;
    let body = expect_error(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None).await;
    assert_ne!(
        body["error"]["details"]["reason"], "invalid_credentials",
        "{body}"
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
            &[&member.user_id]
        )
        .await,
        0
    );
    // A wrong password still says only "invalid credentials".
    let response = login_response(&app, &member.email, "not-the-password-at-all").await;
    expect_error(
        response,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("invalid_credentials"),
    )
    .await;

    let (status, body) = me_with_key(&app, &key.key).await;
    assert_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("revoked_api_key"),
    );

    // The owner is untouched.
    session_of(&app, &owner.token).await;

    // Enabling lets the user sign in again.
    app.store
        .set_user_disabled(&member.email, false)
        .await
        .expect("enable");
    let token = app.login(&member.email, &member.password).await;
    session_of(&app, &token).await;
}

async fn expired_session_is_rejected(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    session_of(&app, &owner.token).await;
    // Unavoidable: the session TTL is one second and only time can make it pass.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let response = app
        .send(Method::GET, "/app/v1/session", Some(&owner.token), None)
        .await;
    assert_eq!(header(response.headers(), "www-authenticate"), "Bearer");
    expect_error(
        response,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("invalid_session"),
    )
    .await;
    let response = app
        .send(
            Method::GET,
            &members_path(&owner.workspace_id),
            Some(&owner.token),
            None,
        )
        .await;
    expect_error(
        response,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("invalid_session"),
    )
    .await;
}

async fn login_burst_is_throttled(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let target = "victim@acme.test";
    // The limit is 3 a minute per (email, address): the first three guesses are answered
    // normally.
    for attempt in 1..=3 {
        let response = login_response(&app, target, "guess-guess-guess").await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let response = login_response(&app, target, "guess-guess-guess").await;
    let retry_after: u64 = header(response.headers(), "retry-after")
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    expect_error(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("login_throttled"),
    )
    .await;

    // The owner's email has its own budget (one attempt used by bootstrap): a right password
    // still signs in. Then a burst at the owner's email from this address locks this address
    // out of it too, even for the right password, or the throttle would only slow down
    // guessers who guess wrong. (Other addresses are untouched: see accounts.rs.)
    app.login(&owner.email, &owner.password).await;
    let mut throttled = false;
    for _ in 0..3 {
        let response = login_response(&app, &owner.email, "guess-guess-guess").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            throttled = true;
            break;
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(throttled, "the owner's email was never throttled");
    let response = login_response(&app, &owner.email, &owner.password).await;
    expect_error(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("login_throttled"),
    )
    .await;
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
            &[&owner.user_id]
        )
        .await,
        2,
        "bootstrap's and the one good login's sessions only"
    );
}

// ---------------------------------------------------------------------------------------------
// Workspaces
// ---------------------------------------------------------------------------------------------

async fn create_workspace_makes_caller_owner(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let before = now_ms();
    let response = app
        .send(
            Method::POST,
            "/app/v1/workspaces",
            Some(&owner.token),
            Some(json!({ "name": "  Beta Team  " })),
        )
        .await;
    let (status, body) = parts(response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(keys_of(&body), ["createdAt", "id", "name"]);
    assert_eq!(body["name"], "Beta Team", "names are trimmed");
    let id = body["id"].as_str().expect("id");
    assert!(id.starts_with("ws_") && id.len() > 10, "id {id}");
    let created_at = assert_spec_time(&body["createdAt"]);
    assert!((before - 1000..=now_ms() + 1000).contains(&created_at));

    assert_eq!(
        role_in_db(&app, id, &owner.user_id).await.as_deref(),
        Some("owner")
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM memberships WHERE workspace_id = $1",
            &[id]
        )
        .await,
        1
    );
    assert_eq!(audit_count(&app, "workspace.created", id).await, 1);
    let roles = session_roles(&app, &owner.token).await;
    assert!(
        roles.contains(&(id.to_owned(), "owner".to_owned())),
        "{roles:?}"
    );

    // The new owner manages members there at once.
    let (status, body) = parts(
        app.send(Method::GET, &members_path(id), Some(&owner.token), None)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"][0]["role"], "owner");

    // Exactly 100 characters (not bytes) is allowed.
    create_workspace(&app, &owner.token, &"é".repeat(100)).await;
    create_workspace(&app, &owner.token, &"🚀".repeat(100)).await;

    let response = app
        .send(
            Method::POST,
            "/app/v1/workspaces",
            None,
            Some(json!({ "name": "X" })),
        )
        .await;
    expect_error(
        response,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("missing_session"),
    )
    .await;
}

async fn create_workspace_rejects_bad_names_and_writes_nothing(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let workspaces = count_rows(&app.store, "workspaces").await;
    let memberships = count_rows(&app.store, "memberships").await;
    let audit = count_rows(&app.store, "audit_events").await;
    let cases = [
        json!({}),
        json!({ "name": null }),
        json!({ "name": "" }),
        json!({ "name": "   \t " }),
        json!({ "name": "x".repeat(101) }),
        json!({ "name": "🚀".repeat(101) }),
        json!({ "name": "line\nbreak" }),
        json!({ "name": "nul\u{0}byte" }),
        json!({ "name": 12 }),
        json!({ "name": ["Acme"] }),
        json!({ "name": { "first": "Acme" } }),
        json!({ "name": true }),
    ];
    for body in cases {
        let response = app
            .send(
                Method::POST,
                "/app/v1/workspaces",
                Some(&owner.token),
                Some(body.clone()),
            )
            .await;
        let error = expect_issues(response, &["name"]).await;
        assert!(!error.to_string().contains("sqlx"), "{body}: {error}");
    }
    assert_eq!(count_rows(&app.store, "workspaces").await, workspaces);
    assert_eq!(count_rows(&app.store, "memberships").await, memberships);
    assert_eq!(count_rows(&app.store, "audit_events").await, audit);
}

// ---------------------------------------------------------------------------------------------
// Members
// ---------------------------------------------------------------------------------------------

async fn list_members_shows_everyone_with_roles(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let admin = app.add_member(&owner, "admin@acme.test", "admin").await;
    let viewer = app.add_member(&owner, "viewer@acme.test", "viewer").await;
    // Someone in another workspace must not appear.
    app.bootstrap("Beta", "other@beta.test").await;

    for caller in [&owner, &admin] {
        let (status, body) = parts(
            app.send(
                Method::GET,
                &members_path(&owner.workspace_id),
                Some(&caller.token),
                None,
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
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
    let (status, me) = me_with_key(&app, &key.key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user"]["role"], "member");

    let path = member_path(&owner.workspace_id, &member.user_id);
    let (status, body) = parts(
        app.send(
            Method::PATCH,
            &path,
            Some(&owner.token),
            Some(json!({ "role": "admin" })),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        keys_of(&body),
        ["email", "joinedAt", "name", "role", "userId"]
    );
    assert_eq!(body["userId"], member.user_id.as_str());
    assert_eq!(body["role"], "admin");
    assert_eq!(
        role_in_db(&app, &owner.workspace_id, &member.user_id)
            .await
            .as_deref(),
        Some("admin")
    );
    assert_eq!(
        audit_count(&app, "member.role_changed", &member.user_id).await,
        1
    );
    // The key acts with its user's current role.
    let (_, me) = me_with_key(&app, &key.key).await;
    assert_eq!(me["user"]["role"], "admin");
    assert_eq!(
        session_roles(&app, &member.token).await,
        [(owner.workspace_id.clone(), "admin".to_owned())]
    );

    // Setting the role it already has is fine, and not audited as a change.
    let (status, body) = parts(
        app.send(
            Method::PATCH,
            &path,
            Some(&owner.token),
            Some(json!({ "role": "admin" })),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["role"], "admin");
    assert_eq!(
        audit_count(&app, "member.role_changed", &member.user_id).await,
        1
    );

    // Someone who is not a member of this workspace is not found here.
    let outsider = app.bootstrap("Beta", "outsider@beta.test").await;
    let response = app
        .send(
            Method::PATCH,
            &member_path(&owner.workspace_id, &outsider.user_id),
            Some(&owner.token),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    expect_error(response, StatusCode::NOT_FOUND, "NOT_FOUND", None).await;
    let response = app
        .send(
            Method::PATCH,
            &member_path(&owner.workspace_id, "usr_doesnotexist"),
            Some(&owner.token),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    expect_error(response, StatusCode::NOT_FOUND, "NOT_FOUND", None).await;
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
    assert_eq!(me_with_key(&app, &acme_key.key).await.0, StatusCode::OK);

    let response = app
        .send(
            Method::DELETE,
            &member_path(&owner.workspace_id, &member.user_id),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.text().await.expect("body").is_empty());

    for key in [&acme_key, &acme_key_2] {
        let (revoked_at, reason): (Option<i64>, Option<String>) =
            sqlx::query_as("SELECT revoked_at, revoke_reason FROM api_keys WHERE id = $1")
                .bind(&key.id)
                .fetch_one(app.store.pool())
                .await
                .expect("key row");
        assert!(revoked_at.is_some(), "{} must be revoked", key.id);
        assert_eq!(reason.as_deref(), Some("owner_removed"));

        let response = app
            .send_with_key(Method::GET, "/api/v1/me", &key.key, None)
            .await;
        assert_eq!(
            header(response.headers(), "www-authenticate"),
            "ApiKey header=\"x-api-key\""
        );
        expect_error(
            response,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            Some("revoked_api_key"),
        )
        .await;
    }
    // Their key in the other workspace, and the owner's key, are untouched.
    for key in [&beta_key, &owner_key] {
        let revoked: Option<i64> =
            sqlx::query_scalar("SELECT revoked_at FROM api_keys WHERE id = $1")
                .bind(&key.id)
                .fetch_one(app.store.pool())
                .await
                .expect("key row");
        assert_eq!(revoked, None, "{} must stay active", key.id);
        assert_eq!(me_with_key(&app, &key.key).await.0, StatusCode::OK);
    }

    assert_eq!(
        role_in_db(&app, &owner.workspace_id, &member.user_id).await,
        None
    );
    assert_eq!(
        audit_count(&app, "member.removed", &member.user_id).await,
        1
    );
    let actor: String =
        sqlx::query_scalar("SELECT actor_id FROM audit_events WHERE action = 'member.removed'")
            .fetch_one(app.store.pool())
            .await
            .expect("actor");
    assert_eq!(actor, owner.user_id);

    // The user still exists and still belongs to Beta, but Acme is closed to them.
    assert_eq!(
        session_roles(&app, &member.token).await,
        [(other.workspace_id.clone(), "member".to_owned())]
    );
    let response = app
        .send(
            Method::GET,
            &format!("/app/v1/workspaces/{}/api-keys", owner.workspace_id),
            Some(&member.token),
            None,
        )
        .await;
    expect_error(
        response,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        Some("workspace_mismatch"),
    )
    .await;

    // Removing them again finds no such member.
    let response = app
        .send(
            Method::DELETE,
            &member_path(&owner.workspace_id, &member.user_id),
            Some(&owner.token),
            None,
        )
        .await;
    expect_error(response, StatusCode::NOT_FOUND, "NOT_FOUND", None).await;
    assert_eq!(
        audit_count(&app, "member.removed", &member.user_id).await,
        1
    );
}

async fn last_owner_cannot_be_removed_or_demoted(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let self_path = member_path(&owner.workspace_id, &owner.user_id);
    for role in ["admin", "member", "viewer"] {
        let response = app
            .send(
                Method::PATCH,
                &self_path,
                Some(&owner.token),
                Some(json!({ "role": role })),
            )
            .await;
        expect_error(
            response,
            StatusCode::CONFLICT,
            "CONFLICT",
            Some("last_owner"),
        )
        .await;
    }
    let response = app
        .send(Method::DELETE, &self_path, Some(&owner.token), None)
        .await;
    expect_error(
        response,
        StatusCode::CONFLICT,
        "CONFLICT",
        Some("last_owner"),
    )
    .await;
    assert_eq!(
        role_in_db(&app, &owner.workspace_id, &owner.user_id)
            .await
            .as_deref(),
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
    let (status, body) = parts(
        app.send(
            Method::PATCH,
            &self_path,
            Some(&owner.token),
            Some(json!({ "role": "admin" })),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "admin");
    assert_eq!(
        audit_count(&app, "member.role_changed", &owner.user_id).await,
        1
    );

    // Now the second is the last owner.
    let second_path = member_path(&owner.workspace_id, &second.user_id);
    let response = app
        .send(
            Method::PATCH,
            &second_path,
            Some(&second.token),
            Some(json!({ "role": "member" })),
        )
        .await;
    expect_error(
        response,
        StatusCode::CONFLICT,
        "CONFLICT",
        Some("last_owner"),
    )
    .await;
    let response = app
        .send(Method::DELETE, &second_path, Some(&second.token), None)
        .await;
    expect_error(
        response,
        StatusCode::CONFLICT,
        "CONFLICT",
        Some("last_owner"),
    )
    .await;
    assert_eq!(
        role_in_db(&app, &owner.workspace_id, &second.user_id)
            .await
            .as_deref(),
        Some("owner")
    );

    // And an owner may remove another owner while one remains.
    let response = app
        .send(
            Method::PATCH,
            &self_path,
            Some(&second.token),
            Some(json!({ "role": "owner" })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .send(Method::DELETE, &second_path, Some(&owner.token), None)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        role_in_db(&app, &owner.workspace_id, &second.user_id).await,
        None
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM memberships WHERE workspace_id = $1 AND role = 'owner'",
            &[&owner.workspace_id]
        )
        .await,
        1
    );
}

async fn two_owners_demoting_each_other_at_once_leave_one_owner(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let second = app.add_member(&owner, "second@acme.test", "owner").await;
    let first_path = member_path(&owner.workspace_id, &owner.user_id);
    let second_path = member_path(&owner.workspace_id, &second.user_id);
    let owners = || async {
        count(
            &app,
            "SELECT COUNT(*) FROM memberships WHERE workspace_id = $1 AND role = 'owner'",
            &[&owner.workspace_id],
        )
        .await
    };
    // Several rounds, since a single pair of requests may happen not to overlap.
    for round in 0..6 {
        let (a, b) = tokio::join!(
            app.send(
                Method::PATCH,
                &second_path,
                Some(&owner.token),
                Some(json!({ "role": "admin" }))
            ),
            app.send(
                Method::PATCH,
                &first_path,
                Some(&second.token),
                Some(json!({ "role": "admin" }))
            ),
        );
        let statuses = [a.status(), b.status()];
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
            owners().await,
            1,
            "round {round}: exactly one owner is left"
        );

        // Make both owners again for the next round.
        let (winner, demoted) = if a.status() == StatusCode::OK {
            (&owner, &second_path)
        } else {
            (&second, &first_path)
        };
        let response = app
            .send(
                Method::PATCH,
                demoted,
                Some(&winner.token),
                Some(json!({ "role": "owner" })),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(owners().await, 2);
    }
}

async fn admin_cannot_touch_owners(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let admin = app.add_member(&owner, "admin@acme.test", "admin").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let viewer = app.add_member(&owner, "viewer@acme.test", "viewer").await;
    let owner_path = member_path(&owner.workspace_id, &owner.user_id);
    let before = membership_snapshot(&app).await;

    let refused = [
        app.send(Method::DELETE, &owner_path, Some(&admin.token), None)
            .await,
        app.send(
            Method::PATCH,
            &owner_path,
            Some(&admin.token),
            Some(json!({ "role": "admin" })),
        )
        .await,
        app.send(
            Method::PATCH,
            &member_path(&owner.workspace_id, &member.user_id),
            Some(&admin.token),
            Some(json!({ "role": "owner" })),
        )
        .await,
        app.send(
            Method::PATCH,
            &member_path(&owner.workspace_id, &admin.user_id),
            Some(&admin.token),
            Some(json!({ "role": "owner" })),
        )
        .await,
        app.send(
            Method::POST,
            &invitations_path(&owner.workspace_id),
            Some(&admin.token),
            Some(json!({ "email": "new@acme.test", "role": "owner" })),
        )
        .await,
    ];
    for response in refused {
        expect_error(
            response,
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            Some("insufficient_permission"),
        )
        .await;
    }
    assert_eq!(
        membership_snapshot(&app).await,
        before,
        "a refused change writes nothing"
    );

    // Below owner, an admin manages members.
    let (status, body) = parts(
        app.send(
            Method::PATCH,
            &member_path(&owner.workspace_id, &member.user_id),
            Some(&admin.token),
            Some(json!({ "role": "viewer" })),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = app
        .send(
            Method::POST,
            &invitations_path(&owner.workspace_id),
            Some(&admin.token),
            Some(json!({ "email": "new@acme.test", "role": "member" })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app
        .send(
            Method::DELETE,
            &member_path(&owner.workspace_id, &viewer.user_id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        role_in_db(&app, &owner.workspace_id, &viewer.user_id).await,
        None
    );
    assert_eq!(
        role_in_db(&app, &owner.workspace_id, &owner.user_id)
            .await
            .as_deref(),
        Some("owner")
    );
}

async fn member_and_viewer_cannot_manage_members(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let viewer = app.add_member(&owner, "viewer@acme.test", "viewer").await;
    let before = membership_snapshot(&app).await;

    for (caller, other) in [(&member, &viewer), (&viewer, &member)] {
        let token = Some(caller.token.as_str());
        let list = app
            .send(Method::GET, &members_path(&owner.workspace_id), token, None)
            .await;
        let add = app
            .send(
                Method::POST,
                &invitations_path(&owner.workspace_id),
                token,
                Some(json!({ "email": "new@acme.test", "role": "viewer" })),
            )
            .await;
        let change_other = app
            .send(
                Method::PATCH,
                &member_path(&owner.workspace_id, &other.user_id),
                token,
                Some(json!({ "role": "viewer" })),
            )
            .await;
        let promote_self = app
            .send(
                Method::PATCH,
                &member_path(&owner.workspace_id, &caller.user_id),
                token,
                Some(json!({ "role": "admin" })),
            )
            .await;
        let remove_owner = app
            .send(
                Method::DELETE,
                &member_path(&owner.workspace_id, &owner.user_id),
                token,
                None,
            )
            .await;
        let remove_other = app
            .send(
                Method::DELETE,
                &member_path(&owner.workspace_id, &other.user_id),
                token,
                None,
            )
            .await;
        for response in [
            list,
            add,
            change_other,
            promote_self,
            remove_owner,
            remove_other,
        ] {
            expect_error(
                response,
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                Some("insufficient_permission"),
            )
            .await;
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
        let response = app
            .send(
                Method::POST,
                &invitations_path(&owner.workspace_id),
                Some(&owner.token),
                Some(json!({ "email": "new@acme.test", "role": role })),
            )
            .await;
        expect_issues(response, &["role"]).await;
        let response = app
            .send(
                Method::PATCH,
                &member_path(&owner.workspace_id, &member.user_id),
                Some(&owner.token),
                Some(json!({ "role": role })),
            )
            .await;
        expect_issues(response, &["role"]).await;
    }
    let response = app
        .send(
            Method::PATCH,
            &member_path(&owner.workspace_id, &member.user_id),
            Some(&owner.token),
            Some(json!({})),
        )
        .await;
    expect_issues(response, &["role"]).await;
    assert_eq!(membership_snapshot(&app).await, before);
}

async fn another_workspaces_owner_gets_workspace_mismatch(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let intruder = app.bootstrap("Beta", "intruder@beta.test").await;
    let before = membership_snapshot(&app).await;

    let mut bodies = Vec::new();
    for workspace_id in [owner.workspace_id.as_str(), "ws_doesnotexist0000000000"] {
        let token = Some(intruder.token.as_str());
        let responses = [
            app.send(Method::GET, &members_path(workspace_id), token, None)
                .await,
            app.send(
                Method::POST,
                &invitations_path(workspace_id),
                token,
                Some(json!({ "email": intruder.email, "role": "owner" })),
            )
            .await,
            app.send(
                Method::POST,
                &invitations_path(workspace_id),
                token,
                Some(json!({ "email": "spy@beta.test", "role": "admin" })),
            )
            .await,
            app.send(
                Method::PATCH,
                &member_path(workspace_id, &member.user_id),
                token,
                Some(json!({ "role": "owner" })),
            )
            .await,
            app.send(
                Method::PATCH,
                &member_path(workspace_id, &owner.user_id),
                token,
                Some(json!({ "role": "viewer" })),
            )
            .await,
            app.send(
                Method::DELETE,
                &member_path(workspace_id, &owner.user_id),
                token,
                None,
            )
            .await,
            app.send(
                Method::DELETE,
                &member_path(workspace_id, &member.user_id),
                token,
                None,
            )
            .await,
        ];
        for response in responses {
            bodies.push(
                expect_error(
                    response,
                    StatusCode::FORBIDDEN,
                    "FORBIDDEN",
                    Some("workspace_mismatch"),
                )
                .await,
            );
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

// ---------------------------------------------------------------------------------------------
// The error shape of every kind of bad request
// ---------------------------------------------------------------------------------------------

async fn unknown_routes_and_wrong_methods_are_json(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    for path in [
        "/nope",
        "/app/v1/nope",
        "/app/v1/workspaces/x/y/z",
        "/api/v1/nope",
        "/app/v2/session",
    ] {
        let response = app.send(Method::GET, path, Some(&owner.token), None).await;
        expect_error(response, StatusCode::NOT_FOUND, "NOT_FOUND", None).await;
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
            .send(method.clone(), &path, Some(&owner.token), None)
            .await;
        let allow = header(response.headers(), "allow");
        assert!(allow.contains(allowed), "{method} {path}: Allow {allow:?}");
        expect_error(
            response,
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            None,
        )
        .await;
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
        expect_error(
            response,
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            None,
        )
        .await;
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
        expect_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            None,
        )
        .await;
        let response = send_raw(
            &app,
            Method::POST,
            "/app/v1/auth/login",
            None,
            content_type,
            body,
        )
        .await;
        expect_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            None,
        )
        .await;
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
        assert_eq!(response.status(), StatusCode::CREATED, "{content_type}");
    }
}

async fn post_json_text(app: &TestApp, token: &str, path: &str, body: &str) -> Response {
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
            let body = expect_error(
                response,
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                Some("invalid_json"),
            )
            .await;
            assert!(
                !body.to_string().contains("Beta"),
                "the error does not echo the body: {body}"
            );
        }
        for empty in ["", "   \n"] {
            let response = post_json_text(&app, token, path, empty).await;
            expect_error(
                response,
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                Some("empty_body"),
            )
            .await;
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
            let body =
                expect_error(response, StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None).await;
            assert!(
                body["error"]["details"]["issues"]
                    .as_array()
                    .is_some_and(|i| !i.is_empty()),
                "{path} {mistyped}: {body}"
            );
        }
        // Unknown fields are refused rather than silently dropped.
        let response = post_json_text(&app, token, path, unknown_field).await;
        let body = expect_error(response, StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None).await;
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
    expect_error(response, StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None).await;
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
        // Emoji without joiners: U+200D is a format character, refused by SPEC §9.
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
        let body = create_workspace(&app, &owner.token, name).await;
        assert_eq!(body["name"], name);
        let stored: String = sqlx::query_scalar("SELECT name FROM workspaces WHERE id = $1")
            .bind(body["id"].as_str().expect("id"))
            .fetch_one(app.store.pool())
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
        .send(
            Method::POST,
            &invitations_path(&owner.workspace_id),
            Some(&owner.token),
            Some(json!({ "email": "o'hara+x@acme.test", "role": "member" })),
        )
        .await;
    let (status, invitation) = parts(invitation).await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    let joined = app
        .send(
            Method::POST,
            "/app/v1/invitations/accept",
            None,
            Some(json!({ "token": invitation["token"], "name": "شيماء 🌙 O'Hara", "password": "pässwörd-🔑-long" })),
        )
        .await;
    let (status, joined) = parts(joined).await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
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
        expect_client_error(response, &format!("POST {path} {shown}…")).await;
    }
    // Logins with absurd credentials are refused like any wrong login.
    for (email, password) in [
        (long.as_str(), "x"),
        ("owner@acme.test", long.as_str()),
        ("' OR '1'='1", "' OR '1'='1"),
        ("owner@acme.test' --", "anything-at-all"),
    ] {
        let response = login_response(&app, email, password).await;
        let what = format!("login {email:.40}");
        let status = expect_client_error(response, &what).await;
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::BAD_REQUEST].contains(&status),
            "{what}: {status}"
        );
    }
    assert_eq!(count_rows(&app.store, "workspaces").await, workspaces);
    assert_eq!(count_rows(&app.store, "users").await, users);
}

/// Asserts some 4xx error in the SPEC §4 shape, with the code that belongs to its status.
async fn expect_client_error(response: Response, what: &str) -> StatusCode {
    let status = response.status();
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
    let content_type = header(response.headers(), "content-type");
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content-type {content_type:?}"
    );
    let (_, body) = parts(response).await;
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
    for (method, path, body) in requests {
        let shown: String = path.chars().take(80).collect();
        let response = app
            .send(method.clone(), &path, Some(&owner.token), body)
            .await;
        expect_client_error(response, &format!("{method} {shown}")).await;
    }
    let response = app
        .send(
            Method::GET,
            "/app/v1/workspaces/%FF/members",
            Some(&owner.token),
            None,
        )
        .await;
    expect_error(
        response,
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
        Some("invalid_path"),
    )
    .await;
    assert_eq!(membership_snapshot(&app).await, before);
}

// ---------------------------------------------------------------------------------------------
// CORS (browser policy; no database behaviour involved, so SQLite only)
// ---------------------------------------------------------------------------------------------

const DASHBOARD_ORIGIN: &str = "https://dash.example.com";

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_configured_origins_and_only_on_app_v1() {
    let Some(app) = TestApp::start_with(Db::Sqlite, |config| {
        config.dashboard_origins = vec![DASHBOARD_ORIGIN.into()];
    })
    .await
    else {
        return;
    };
    let owner = app.bootstrap("Acme", "owner@acme.test").await;

    for (path, method) in [
        ("/app/v1/session", "GET"),
        ("/app/v1/auth/login", "POST"),
        ("/app/v1/workspaces", "POST"),
    ] {
        let response = preflight(&app, path, DASHBOARD_ORIGIN, method).await;
        assert!(
            response.status().is_success(),
            "preflight {path}: {}",
            response.status()
        );
        let headers = response.headers();
        assert_eq!(
            header(headers, "access-control-allow-origin"),
            DASHBOARD_ORIGIN
        );
        let allowed_headers = header(headers, "access-control-allow-headers").to_ascii_lowercase();
        assert!(
            allowed_headers.contains("authorization"),
            "{allowed_headers}"
        );
        assert!(
            allowed_headers.contains("content-type"),
            "{allowed_headers}"
        );
        let allowed_methods = header(headers, "access-control-allow-methods");
        assert!(allowed_methods.contains(method), "{allowed_methods}");
    }
    let response = preflight(
        &app,
        &member_path(&owner.workspace_id, &owner.user_id),
        DASHBOARD_ORIGIN,
        "PATCH",
    )
    .await;
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        DASHBOARD_ORIGIN
    );

    // The real request from the dashboard gets the header too, and so does its error, so the
    // frontend can read a 401 and send the user to the login page.
    let response = app
        .client
        .get(app.url("/app/v1/session"))
        .header("origin", DASHBOARD_ORIGIN)
        .bearer_auth(&owner.token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        DASHBOARD_ORIGIN
    );
    let response = app
        .client
        .get(app.url("/app/v1/session"))
        .header("origin", DASHBOARD_ORIGIN)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        DASHBOARD_ORIGIN
    );

    // Any other origin gets nothing, including look-alikes.
    for origin in [
        "https://evil.example.com",
        "https://dash.example.com.evil.test",
        "http://dash.example.com",
        "null",
    ] {
        let response = preflight(&app, "/app/v1/session", origin, "GET").await;
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{origin} must not be allowed"
        );
        let response = app
            .client
            .get(app.url("/app/v1/session"))
            .header("origin", origin)
            .bearer_auth(&owner.token)
            .send()
            .await
            .expect("request");
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{origin}"
        );
    }

    // /api/v1 never grants CORS, even to the dashboard's origin.
    let key = app.create_key(&owner, "Server").await;
    let response = preflight(&app, "/api/v1/me", DASHBOARD_ORIGIN, "GET").await;
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let response = app
        .client
        .get(app.url("/api/v1/me"))
        .header("origin", DASHBOARD_ORIGIN)
        .header("x-api-key", &key.key)
        .send()
        .await
        .expect("request");
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    // A key sent from a web page is refused outright (README: browser guard).
    expect_error(
        response,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        Some("browser_use_blocked"),
    )
    .await;
    let response = app
        .client
        .get(app.url("/api/v1/me"))
        .header("origin", DASHBOARD_ORIGIN)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_by_default() {
    let Some(app) = TestApp::start(Db::Sqlite).await else {
        return;
    };
    let response = preflight(&app, "/app/v1/session", DASHBOARD_ORIGIN, "GET").await;
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

on_both_databases!(
    login_returns_token_expiry_and_user,
    login_email_is_case_insensitive,
    wrong_password_and_unknown_email_get_identical_401,
    login_with_missing_fields_lists_every_issue,
    logout_ends_only_that_session,
    session_lists_user_and_workspaces_with_roles,
    session_token_is_stored_only_as_sha256,
    disabled_user_cannot_log_in_and_loses_sessions_at_once,
    create_workspace_makes_caller_owner,
    create_workspace_rejects_bad_names_and_writes_nothing,
    list_members_shows_everyone_with_roles,
    change_role_takes_effect_at_once,
    removing_a_member_revokes_their_keys_in_that_workspace,
    last_owner_cannot_be_removed_or_demoted,
    two_owners_demoting_each_other_at_once_leave_one_owner,
    admin_cannot_touch_owners,
    member_and_viewer_cannot_manage_members,
    roles_outside_the_four_are_rejected,
    another_workspaces_owner_gets_workspace_mismatch,
    unknown_routes_and_wrong_methods_are_json,
    oversized_body_is_json_413_and_writes_nothing,
    json_posts_need_a_json_content_type,
    malformed_empty_and_mistyped_json_are_400,
    hostile_input_never_causes_5xx,
    bad_path_params_are_4xx_json,
);

on_both_databases_with!(expired_session_is_rejected, |config| {
    config.session_ttl = std::time::Duration::from_secs(1);
});

on_both_databases_with!(login_burst_is_throttled, |config| {
    config.login_attempts_per_minute = 3;
});
