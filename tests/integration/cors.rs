//! CORS for the dashboard: only the configured origins, only on /app/v1 (errors included, so
//! the frontend can read a 401), never on /api/v1; off by default. Browser policy with no
//! database behaviour involved, so on SQLite only.

use crate::common::TestApp;
use crate::test_app::Reply;
use reqwest::{Method, StatusCode};

const DASHBOARD_ORIGIN: &str = "https://dash.example.com";
const ALLOW_ORIGIN: &str = "access-control-allow-origin";

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> Reply {
    let response = app
        .client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight");
    Reply::read(response).await
}

/// A GET as a page at `origin` sends it, with a session token or a key (or neither).
async fn get_from(
    app: &TestApp,
    path: &str,
    origin: &str,
    token: Option<&str>,
    key: Option<&str>,
) -> Reply {
    let mut request = app.client.get(app.url(path)).header("origin", origin);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    Reply::read(request.send().await.expect("request")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_configured_origins_and_only_on_app_v1() {
    let app = TestApp::sqlite_with(|config| {
        config.dashboard_origins = vec![DASHBOARD_ORIGIN.into()];
    })
    .await;
    let owner = app.bootstrap("Acme", "owner@acme.test").await;

    for (path, method) in [
        ("/app/v1/session", "GET"),
        ("/app/v1/auth/login", "POST"),
        ("/app/v1/workspaces", "POST"),
    ] {
        let reply = preflight(&app, path, DASHBOARD_ORIGIN, method).await;
        assert!(
            reply.status.is_success(),
            "preflight {path}: {}",
            reply.status
        );
        assert_eq!(reply.header(ALLOW_ORIGIN), DASHBOARD_ORIGIN);
        let allowed_headers = reply
            .header("access-control-allow-headers")
            .to_ascii_lowercase();
        assert!(
            allowed_headers.contains("authorization"),
            "{allowed_headers}"
        );
        assert!(
            allowed_headers.contains("content-type"),
            "{allowed_headers}"
        );
        let allowed_methods = reply.header("access-control-allow-methods");
        assert!(allowed_methods.contains(method), "{allowed_methods}");
    }
    let member_path = format!(
        "/app/v1/workspaces/{}/members/{}",
        owner.workspace_id, owner.user_id
    );
    let reply = preflight(&app, &member_path, DASHBOARD_ORIGIN, "PATCH").await;
    assert_eq!(reply.header(ALLOW_ORIGIN), DASHBOARD_ORIGIN);

    // The real request from the dashboard gets the header too, and so does its error, so the
    // frontend can read a 401 and send the user to the login page.
    let token = Some(owner.token.as_str());
    let reply = get_from(&app, "/app/v1/session", DASHBOARD_ORIGIN, token, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header(ALLOW_ORIGIN), DASHBOARD_ORIGIN);
    let reply = get_from(&app, "/app/v1/session", DASHBOARD_ORIGIN, None, None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.header(ALLOW_ORIGIN), DASHBOARD_ORIGIN);

    // Any other origin gets nothing, including look-alikes.
    for origin in [
        "https://evil.example.com",
        "https://dash.example.com.evil.test",
        "http://dash.example.com",
        "null",
    ] {
        let reply = preflight(&app, "/app/v1/session", origin, "GET").await;
        assert!(
            reply.headers.get(ALLOW_ORIGIN).is_none(),
            "{origin} must not be allowed"
        );
        let reply = get_from(&app, "/app/v1/session", origin, token, None).await;
        assert!(reply.headers.get(ALLOW_ORIGIN).is_none(), "{origin}");
    }

    // /api/v1 never grants CORS, even to the dashboard's origin.
    let key = app.create_key(&owner, "Server").await;
    let reply = preflight(&app, "/api/v1/me", DASHBOARD_ORIGIN, "GET").await;
    assert!(reply.headers.get(ALLOW_ORIGIN).is_none());
    let reply = get_from(&app, "/api/v1/me", DASHBOARD_ORIGIN, None, Some(&key.key)).await;
    assert!(reply.headers.get(ALLOW_ORIGIN).is_none());
    // A key sent from a web page is refused outright (README: browser guard).
    reply.expect_forbidden("browser_use_blocked");
    let reply = get_from(&app, "/api/v1/me", DASHBOARD_ORIGIN, None, None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.get(ALLOW_ORIGIN).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_by_default() {
    let app = TestApp::sqlite().await;
    let reply = preflight(&app, "/app/v1/session", DASHBOARD_ORIGIN, "GET").await;
    assert!(reply.headers.get(ALLOW_ORIGIN).is_none());
}
