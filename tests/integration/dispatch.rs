//! The routes served without the router (src/http/dispatch.rs) answer exactly as the router
//! would. `/api/v1/verify` is served directly and its twin `/api/v1/verify/` by the router,
//! through the same handler: every outcome is sent both ways and compared, status, body and
//! headers. `/api/v1/me` and `/healthz` have no routed twin; the rest of the suite covers them,
//! and here their metrics keep the route's template as label and HEAD still goes to the router.

use crate::common::{create_key_with, without_request_id, TestApp};
use crate::on_both_databases_with;
use crate::process_harness::assert_moved;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

/// Headers that must match between the two; the request id and the window's countdown differ
/// by design.
const COMPARED_HEADERS: [&str; 11] = [
    "content-type",
    "content-length",
    "x-heffl-workspace-id",
    "x-heffl-user-id",
    "x-heffl-user-role",
    "x-heffl-key-id",
    "x-heffl-scopes",
    "ratelimit-limit",
    "retry-after",
    "www-authenticate",
    "cache-control",
];

struct Answer {
    status: StatusCode,
    body: Value,
    headers: Vec<(&'static str, Option<String>)>,
}

async fn answer(response: Response) -> Answer {
    let status = response.status();
    let headers = COMPARED_HEADERS
        .iter()
        .map(|name| {
            let value = response.headers().get(*name);
            (*name, value.map(|v| v.to_str().expect("ascii").to_owned()))
        })
        .collect();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).expect("a JSON body");
    Answer {
        status,
        body: without_request_id(body),
        headers,
    }
}

/// One request, as a gateway or client might send it.
struct Case {
    what: &'static str,
    method: Method,
    query: &'static str,
    key: Option<String>,
    extra_header: Option<(&'static str, &'static str)>,
    body: Option<&'static str>,
}

impl Case {
    fn new(what: &'static str, key: Option<&str>) -> Case {
        Case {
            what,
            method: Method::GET,
            query: "",
            key: key.map(str::to_owned),
            extra_header: None,
            body: None,
        }
    }

    async fn send(&self, app: &TestApp, path: &str) -> Answer {
        let url = app.url(&format!("{path}{}", self.query));
        let mut request = app.client.request(self.method.clone(), url);
        if let Some(key) = &self.key {
            request = request.header("x-api-key", key);
        }
        if let Some((name, value)) = self.extra_header {
            request = request.header(name, value);
        }
        if let Some(body) = self.body {
            request = request.body(body);
        }
        answer(request.send().await.expect("request")).await
    }
}

fn with_a_rate_limit(config: &mut heffl_api::config::Config) {
    config.rate_limit_per_minute = 1000;
}

async fn verify_is_answered_as_its_routed_twin(app: TestApp) {
    let owner = app.bootstrap("Twins", "owner@twins.test").await;
    let key = app.create_key(&owner, "Gateway").await.key;
    let (status, narrow) = create_key_with(
        &app,
        &owner,
        json!({ "name": "Narrow", "scopes": ["me:read"] }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{narrow}");
    let narrow = narrow["key"].as_str().expect("key").to_owned();
    let revoked = app.create_key(&owner, "Revoked").await;
    app.revoke(&owner, &revoked.id).await.ok();
    let mut malformed = key.clone();
    malformed.pop();
    malformed.push(if key.ends_with('A') { 'B' } else { 'A' });

    let cases = [
        Case::new("a valid key", Some(&key)),
        Case {
            method: Method::POST,
            ..Case::new("POST", Some(&key))
        },
        Case {
            method: Method::POST,
            body: Some("{\"original\":\"body\"}"),
            ..Case::new("POST with a body", Some(&key))
        },
        Case {
            method: Method::DELETE,
            ..Case::new("another method", Some(&key))
        },
        Case {
            query: "?scope=leads:read&scope=me:read",
            ..Case::new("scopes it has", Some(&key))
        },
        Case {
            query: "?scope=leads:write",
            ..Case::new("a scope it lacks", Some(&narrow))
        },
        Case {
            query: "?scope=no:such",
            ..Case::new("an unknown scope", Some(&key))
        },
        Case::new("no key", None),
        Case {
            extra_header: Some(("authorization", "Bearer something")),
            ..Case::new("a bearer token instead", None)
        },
        Case::new("a malformed key", Some(&malformed)),
        Case::new("a revoked key", Some(&revoked.key)),
        Case {
            extra_header: Some(("origin", "https://evil.example")),
            ..Case::new("a key sent from a browser", Some(&key))
        },
    ];
    let mut statuses = Vec::new();
    for case in &cases {
        let direct = case.send(&app, "/api/v1/verify").await;
        let routed = case.send(&app, "/api/v1/verify/").await;
        let what = case.what;
        assert_eq!(direct.status, routed.status, "{what}");
        assert_eq!(direct.body, routed.body, "{what}");
        assert_eq!(direct.headers, routed.headers, "{what}");
        statuses.push(direct.status.as_u16());
    }
    // The cases reach every kind of answer, so the comparison is not of two identical 200s.
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 403, 400, 401, 401, 401, 401, 403],
        "statuses in case order"
    );
}

on_both_databases_with!(
    verify_is_answered_as_its_routed_twin,
    super::with_a_rate_limit
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_routes_are_counted_under_their_templates() {
    let app = TestApp::sqlite().await;
    let owner = app.bootstrap("Counted", "owner@counted.test").await;
    let key = app.create_key(&owner, "Counted").await.key;
    let series = [
        "heffl_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}",
        "heffl_http_requests_total{method=\"GET\",route=\"/api/v1/verify\",status=\"200\"}",
        "heffl_http_requests_total{method=\"GET\",route=\"/api/v1/verify\",status=\"401\"}",
        "heffl_http_requests_total{method=\"GET\",route=\"/api/v1/me\",status=\"401\"}",
    ];
    let before = app.metrics().await;
    for _ in 0..2 {
        app.send(Method::GET, "/healthz", None, None).await;
        app.send_with_key(Method::GET, "/api/v1/verify", &key, None)
            .await;
        app.send(Method::GET, "/api/v1/verify", None, None).await;
        app.send(Method::GET, "/api/v1/me", None, None).await;
    }
    let after = app.metrics().await;
    for series in series {
        assert_moved(&before, &after, series, 2.0);
    }
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

/// HEAD is left to the router, which answers it as GET without a body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_of_a_direct_route_is_answered_by_the_router() {
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
