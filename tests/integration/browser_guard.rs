//! The browser guard: a key is a server's secret, so a request carrying browser metadata
//! (Origin, Sec-Fetch-Site, Sec-Fetch-Dest) is refused unless the operator opts in; /api/v1
//! never grants CORS either way.

use crate::common::{count, TestApp};
use crate::test_app::Reply;
use crate::{on_both_databases, on_both_databases_with};
use reqwest::header::ACCESS_CONTROL_ALLOW_ORIGIN;
use reqwest::{Method, StatusCode};
use serde_json::json;

on_both_databases!(browser_guard_blocks_browser_metadata);
on_both_databases_with!(browser_keys_allowed_by_opt_in, |c| {
    c.allow_browser_keys = true;
    c.dashboard_origins = vec![super::EVIL_ORIGIN.to_owned()];
});

const EVIL_ORIGIN: &str = "https://evil.example";

async fn preflight_allows_origin(app: &TestApp, path: &str, headers: &str) -> bool {
    let response = app
        .client
        .request(Method::OPTIONS, app.url(path))
        .header("Origin", EVIL_ORIGIN)
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", headers)
        .send()
        .await
        .expect("request");
    response.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN)
}

async fn browser_guard_blocks_browser_metadata(app: TestApp) {
    let owner = app.bootstrap("Browser", "owner@browser.test").await;
    let key = app.create_key(&owner, "server only").await;
    for (name, value) in [
        ("Origin", EVIL_ORIGIN),
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Dest", "empty"),
    ] {
        let body = app
            .me_with_header(&key.key, name, value)
            .await
            .expect_forbidden("browser_use_blocked");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("browser"),
            "the message explains why: {body}"
        );
    }
    let before = count(&app, "SELECT COUNT(*) FROM leads", &[]).await;
    let response = app
        .client
        .post(app.url("/api/v1/leads"))
        .header("x-api-key", &key.key)
        .header("Origin", EVIL_ORIGIN)
        .json(&json!({ "name": "From a page" }))
        .send()
        .await
        .expect("request");
    Reply::read(response)
        .await
        .expect_forbidden("browser_use_blocked");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM leads", &[]).await, before);

    // What Node's fetch sends from a server is not a browser.
    app.me_with_header(&key.key, "Sec-Fetch-Mode", "cors")
        .await
        .ok();
    app.me(&key.key).await.ok();

    assert!(!preflight_allows_origin(&app, "/api/v1/me", "x-api-key").await);
    assert!(!preflight_allows_origin(&app, "/api/v1/leads", "x-api-key,content-type").await);
}

async fn browser_keys_allowed_by_opt_in(app: TestApp) {
    let owner = app.bootstrap("Opt in", "owner@optin.test").await;
    let key = app.create_key(&owner, "browser ok").await;
    for (name, value) in [
        ("Origin", EVIL_ORIGIN),
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Mode", "cors"),
    ] {
        let reply = app.me_with_header(&key.key, name, value).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.body);
    }
    // Even an origin trusted by the dashboard gets no CORS on /api/v1; the dashboard does,
    // which shows this check would see the header if it were there.
    assert!(preflight_allows_origin(&app, "/app/v1/session", "authorization").await);
    assert!(!preflight_allows_origin(&app, "/api/v1/me", "x-api-key").await);
    let reply = app.me_with_header(&key.key, "Origin", EVIL_ORIGIN).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.headers.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
}
