//! One router serves every endpoint, each registered once with the declaration the OpenAPI
//! document is made from: every documented operation reaches its handler, every request is
//! counted under its route's template (never the raw path), and HEAD is answered as GET
//! without a body.

use crate::common::TestApp;
use crate::process_harness::assert_moved;
use crate::test_app::Reply;
use reqwest::{Method, StatusCode};
use serde_json::Value;

const NO_ROUTE: &str = "No route matches this path";

/// The document's paths with every `{param}` filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|part| {
            if part.starts_with('{') {
                "unknown-id"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_reaches_a_handler() {
    let app = TestApp::sqlite().await;
    let document: Value = app
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .json()
        .await
        .expect("the document");
    let paths = document["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for method in item.as_object().expect("a path item").keys() {
            let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            if !matches!(method.as_str(), "GET" | "POST" | "PATCH" | "PUT" | "DELETE") {
                continue;
            }
            operations += 1;
            let response = app.send(method.clone(), &concrete(path), None, None).await;
            let status = response.status();
            let body = response.text().await.expect("body");
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(!body.contains(NO_ROUTE), "{method} {path}: {body}");
        }
    }
    assert!(operations > 40, "only {operations} operations documented");
    // And the router's fallback does answer what no one registered.
    let missing = app.send(Method::GET, "/api/v1/nothing", None, None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.text().await.expect("body").contains(NO_ROUTE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_under_their_route_templates() {
    let app = TestApp::sqlite().await;
    let owner = app.bootstrap("Counted", "owner@counted.test").await;
    let key = app.create_key(&owner, "Counted").await.key;
    let series = [
        "heffl_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}",
        "heffl_http_requests_total{method=\"GET\",route=\"/api/v1/verify\",status=\"200\"}",
        "heffl_http_requests_total{method=\"GET\",route=\"/api/v1/verify\",status=\"401\"}",
        "heffl_http_requests_total{method=\"GET\",route=\"/api/v1/me\",status=\"401\"}",
        "heffl_http_requests_total{method=\"GET\",route=\"/api/v1/leads/{leadId}\",status=\"404\"}",
        "heffl_http_requests_total{method=\"POST\",route=\"/api/v1/credentials/revoke\",status=\"415\"}",
        "heffl_http_requests_total{method=\"GET\",route=\"/app/v1/session\",status=\"401\"}",
    ];
    let before = app.metrics().await;
    for _ in 0..2 {
        app.health().await;
        app.verify(&key, "").await;
        app.lead(&key, "ld_missing").await;
        // Raw: no key, no session, no body, each refused before any handler runs.
        app.send(Method::GET, "/api/v1/verify", None, None).await;
        app.send(Method::GET, "/api/v1/me", None, None).await;
        app.send(Method::POST, "/api/v1/credentials/revoke", None, None)
            .await;
        app.send(Method::GET, "/app/v1/session", None, None).await;
    }
    let after = app.metrics().await;
    for series in series {
        assert_moved(&before, &after, series, 2.0);
    }
    assert!(
        !after.contains("ld_missing"),
        "a raw path became a label:\n{after}"
    );
}

/// Forward auth takes any method, and a method is any token a client sends: each new one must
/// not become a new series (a client could grow the registry without bound). Methods outside
/// HTTP's nine share the label `OTHER`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_share_one_metrics_label() {
    let app = TestApp::sqlite().await;
    let owner = app.bootstrap("Methods", "owner@methods.test").await;
    let key = app.create_key(&owner, "Methods").await.key;
    let other =
        "heffl_http_requests_total{method=\"OTHER\",route=\"/api/v1/verify\",status=\"200\"}";
    let before = app.metrics().await;
    let invented: Vec<String> = (0..5).map(|i| format!("INVENTED{i}")).collect();
    for method in &invented {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let response = app
            .send_with_key(method, "/api/v1/verify", &key, None)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let after = app.metrics().await;
    for method in &invented {
        assert!(
            !after.contains(method.as_str()),
            "{method} became a label:\n{after}"
        );
    }
    assert_moved(&before, &after, other, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_answered_as_get_without_a_body() {
    let app = TestApp::sqlite().await;
    let owner = app.bootstrap("Heads", "owner@heads.test").await;
    let key = app.create_key(&owner, "Heads").await.key;
    for path in ["/api/v1/me", "/api/v1/verify", "/healthz"] {
        let get = app.send_with_key(Method::GET, path, &key, None).await;
        let head = app.send_with_key(Method::HEAD, path, &key, None).await;
        assert_eq!(get.status(), StatusCode::OK, "GET {path}");
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "{path}"
        );
        assert_eq!(head.text().await.expect("body"), "", "HEAD {path}");
    }
}

/// A method a path does not serve is answered 405 (with `Allow`) through the same wrapper as
/// the path's handlers: on a keyed path the key is asked for first, as on every other request
/// there; and each 405 is counted under its route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_pass_the_routes_own_checks() {
    let app = TestApp::sqlite().await;
    let owner = app.bootstrap("Wrong", "owner@wrong.test").await;
    let key = app.create_key(&owner, "Wrong").await.key;
    let counted = [
        "heffl_http_requests_total{method=\"PUT\",route=\"/api/v1/me\",status=\"401\"}",
        "heffl_http_requests_total{method=\"PUT\",route=\"/api/v1/me\",status=\"405\"}",
        "heffl_http_requests_total{method=\"PUT\",route=\"/api/v1/leads/{leadId}\",status=\"405\"}",
        "heffl_http_requests_total{method=\"DELETE\",route=\"/healthz\",status=\"405\"}",
        "heffl_http_requests_total{method=\"POST\",route=\"/settings/developer\",status=\"405\"}",
    ];
    let before = app.metrics().await;

    // Raw: wrong methods are what is tested.
    let without_key = Reply::read(app.send(Method::PUT, "/api/v1/me", None, None).await).await;
    without_key.expect_unauthorized("missing_api_key");

    for (method, path, allow) in [
        (Method::PUT, "/api/v1/me", "GET,HEAD"),
        (Method::PUT, "/api/v1/leads/ld_x", "GET,HEAD,PATCH,DELETE"),
        (Method::DELETE, "/healthz", "GET,HEAD"),
        (Method::POST, "/settings/developer", "GET,HEAD"),
    ] {
        let reply = Reply::read(app.send_with_key(method.clone(), path, &key, None).await).await;
        reply.expect_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", None);
        assert_eq!(reply.header("allow"), allow, "{method} {path}");
    }

    let after = app.metrics().await;
    for series in counted {
        assert_moved(&before, &after, series, 1.0);
    }
}
