//! The OpenAPI document against the running server: every route the server serves is in the
//! document, everything in the document is served, security and error responses are declared,
//! and the /docs page works with no network. Routing does not depend on the database, so these
//! run on SQLite only.

use crate::common::{parts, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;

/// Every operation the server serves (docs/api.md §5 and src/http/routes/mod.rs). Adding a route to
/// the server without documenting it cannot compile; removing it from the document, or
/// dropping the route, fails here.
const SERVED: &[(&str, &str)] = &[
    ("post", "/app/v1/auth/login"),
    ("post", "/app/v1/auth/logout"),
    ("get", "/app/v1/auth/options"),
    ("post", "/app/v1/auth/password-reset"),
    ("post", "/app/v1/auth/password-reset/confirm"),
    ("get", "/app/v1/session"),
    ("post", "/app/v1/workspaces"),
    ("get", "/app/v1/workspaces/{workspaceId}/members"),
    ("post", "/app/v1/session/password"),
    ("get", "/app/v1/workspaces/{workspaceId}/invitations"),
    ("post", "/app/v1/workspaces/{workspaceId}/invitations"),
    (
        "delete",
        "/app/v1/workspaces/{workspaceId}/invitations/{invitationId}",
    ),
    (
        "post",
        "/app/v1/workspaces/{workspaceId}/invitations/{invitationId}/resend",
    ),
    ("post", "/app/v1/invitations/lookup"),
    ("post", "/app/v1/invitations/accept"),
    ("patch", "/app/v1/workspaces/{workspaceId}/members/{userId}"),
    (
        "delete",
        "/app/v1/workspaces/{workspaceId}/members/{userId}",
    ),
    ("get", "/app/v1/workspaces/{workspaceId}/api-keys"),
    ("post", "/app/v1/workspaces/{workspaceId}/api-keys"),
    ("get", "/app/v1/workspaces/{workspaceId}/api-keys/{keyId}"),
    (
        "post",
        "/app/v1/workspaces/{workspaceId}/api-keys/{keyId}/revoke",
    ),
    (
        "post",
        "/app/v1/workspaces/{workspaceId}/api-keys/{keyId}/roll",
    ),
    ("get", "/app/v1/workspaces/{workspaceId}/audit-events"),
    ("get", "/api/v1/me"),
    ("get", "/api/v1/leads"),
    ("post", "/api/v1/leads"),
    ("get", "/api/v1/leads/{leadId}"),
    ("patch", "/api/v1/leads/{leadId}"),
    ("delete", "/api/v1/leads/{leadId}"),
    ("post", "/api/v1/credentials/revoke"),
    ("get", "/api/v1/verify"),
    ("post", "/api/v1/verify"),
    ("get", "/api/v1/verify/{path}"),
    ("post", "/api/v1/verify/{path}"),
    ("get", "/app/v1/scopes"),
    ("post", "/api/v1/secret-scanning/github"),
    ("get", "/app/v1/workspaces/{workspaceId}/webhooks"),
    ("post", "/app/v1/workspaces/{workspaceId}/webhooks"),
    (
        "get",
        "/app/v1/workspaces/{workspaceId}/webhooks/{webhookId}",
    ),
    (
        "patch",
        "/app/v1/workspaces/{workspaceId}/webhooks/{webhookId}",
    ),
    (
        "delete",
        "/app/v1/workspaces/{workspaceId}/webhooks/{webhookId}",
    ),
    (
        "post",
        "/app/v1/workspaces/{workspaceId}/webhooks/{webhookId}/secret",
    ),
    (
        "get",
        "/app/v1/workspaces/{workspaceId}/webhooks/{webhookId}/deliveries",
    ),
    (
        "post",
        "/app/v1/workspaces/{workspaceId}/webhooks/{webhookId}/deliveries/{messageId}/retry",
    ),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

const FALLBACK_MESSAGE: &str = "No route matches";

async fn start() -> TestApp {
    TestApp::sqlite().await
}

async fn document(app: &TestApp) -> Value {
    let response = app.send(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (_, body) = parts(response).await;
    body
}

/// (method, path, operation) for every operation of the document.
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let paths = document["paths"].as_object().expect("paths object");
    let mut found = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("path item object");
        for (method, operation) in item {
            if METHODS.contains(&method.as_str()) {
                found.push((method.clone(), path.clone(), operation.clone()));
            }
        }
    }
    found
}

/// `#/components/schemas/X` → the schema `X`, followed through `$ref`s.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
            let target = &document["components"]["schemas"][name];
            assert!(!target.is_null(), "dangling $ref {reference}");
            resolve(document, target)
        }
        None => schema,
    }
}

fn references_error_body(response: &Value) -> bool {
    response["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ErrorBody"
}

#[tokio::test]
async fn document_is_openapi_3_1_with_both_security_schemes() {
    let app = start().await;
    let response = app.send(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().expect("ascii");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let (_, document) = parts(response).await;

    let version = document["openapi"].as_str().expect("openapi field");
    assert!(version.starts_with("3.1"), "openapi {version}");
    assert!(document["info"]["title"].is_string());

    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["type"], "apiKey");
    assert_eq!(schemes["api_key"]["in"], "header");
    assert_eq!(schemes["api_key"]["name"], "x-api-key");
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");

    // The error shape of docs/api.md §4, with every code the server writes.
    let error = resolve(&document, &document["components"]["schemas"]["ErrorBody"]);
    let inner = resolve(&document, &error["properties"]["error"]);
    let required: BTreeSet<&str> = inner["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, BTreeSet::from(["code", "message"]));
    let codes = resolve(&document, &inner["properties"]["code"]);
    for code in [
        "UNAUTHORIZED",
        "FORBIDDEN",
        "NOT_FOUND",
        "VALIDATION_ERROR",
        "BAD_REQUEST",
        "CONFLICT",
        "PAYLOAD_TOO_LARGE",
        "UNSUPPORTED_MEDIA_TYPE",
        "TOO_MANY_REQUESTS",
        "SERVICE_UNAVAILABLE",
        "INTERNAL_SERVER_ERROR",
    ] {
        assert!(
            codes["enum"]
                .as_array()
                .is_some_and(|e| e.contains(&Value::from(code))),
            "{code} missing from {codes}"
        );
    }
    let details = resolve(&document, &inner["properties"]["details"]);
    assert!(details["properties"]["reason"].is_object());
    assert!(details["properties"]["issues"].is_object());
}

#[tokio::test]
async fn every_served_route_is_documented() {
    let app = start().await;
    let document = document(&app).await;
    let documented: BTreeSet<(String, String)> = operations(&document)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let missing: Vec<_> = SERVED
        .iter()
        .filter(|(method, path)| !documented.contains(&(method.to_string(), path.to_string())))
        .collect();
    assert!(missing.is_empty(), "not in /openapi.json: {missing:?}");

    // Operation ids are unique: generated clients name their methods after them.
    let ids: Vec<&str> = document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("item").values())
        .filter_map(|operation| operation["operationId"].as_str())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "duplicate operationId in {ids:?}");
    assert_eq!(ids.len(), documented.len(), "operation without operationId");
}

/// Placeholders get made-up ids of the right shape; the router does not look at them.
fn fill(path: &str) -> String {
    path.replace("{workspaceId}", "ws_0000000000000000000000")
        .replace("{keyId}", "key_0000000000000000000000")
        .replace("{userId}", "usr_0000000000000000000000")
        .replace("{leadId}", "ld_0000000000000000000000")
        .replace("{path}", "any/original/path")
        .replace("{invitationId}", "inv_0000000000000000000000")
        .replace("{webhookId}", "wh_0000000000000000000000")
        .replace("{messageId}", "msg_0000000000000000000000")
}

#[tokio::test]
async fn everything_documented_is_served() {
    let app = start().await;
    let document = document(&app).await;

    // The control: what an unserved path looks like, so the check below can tell.
    let (status, body) = parts(
        app.send(Method::GET, "/api/v1/not-a-route", None, None)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains(FALLBACK_MESSAGE)));

    let operations = operations(&document);
    assert!(operations.len() >= SERVED.len());
    for (method, path, _) in operations {
        let url = fill(&path);
        assert!(!url.contains('{'), "placeholder left in {url}");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let response = app.send(method.clone(), &url, None, None).await;
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is documented but its path serves other methods"
        );
        assert!(
            !(status == StatusCode::NOT_FOUND && text.contains(FALLBACK_MESSAGE)),
            "{method} {path} is documented but not served: {text}"
        );
    }
}

#[tokio::test]
async fn operations_declare_security_and_error_responses() {
    let app = start().await;
    let document = document(&app).await;
    for (method, path, operation) in operations(&document) {
        let schemes: BTreeSet<String> = operation["security"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .flat_map(|requirement| requirement.keys().cloned())
            .collect();
        let unauthenticated = [
            "/api/v1/credentials/revoke",
            // Signed by GitHub instead (its own headers, documented as parameters).
            "/api/v1/secret-scanning/github",
            "/app/v1/auth/login",
            "/app/v1/auth/options",
            "/app/v1/auth/password-reset",
            "/app/v1/auth/password-reset/confirm",
            "/app/v1/invitations/lookup",
        ];
        let expected: BTreeSet<String> = if unauthenticated.contains(&path.as_str()) {
            BTreeSet::new()
        } else if path.starts_with("/api/v1/") {
            BTreeSet::from(["api_key".to_owned()])
        } else if path.starts_with("/app/v1/") {
            BTreeSet::from(["bearer".to_owned()])
        } else {
            BTreeSet::new()
        };
        assert_eq!(schemes, expected, "security of {method} {path}");

        let responses = operation["responses"].as_object().expect("responses");
        let errors: Vec<&String> = responses
            .iter()
            .filter(|(status, _)| status.starts_with('4') || status.starts_with('5'))
            .inspect(|(status, response)| {
                assert!(
                    references_error_body(response),
                    "{method} {path} {status} is not an ErrorBody: {response}"
                );
            })
            .map(|(status, _)| status)
            .collect();
        assert!(
            responses
                .keys()
                .any(|status| status.starts_with('2') || status.starts_with('3')),
            "{method} {path} has no success response"
        );
        if path == "/app/v1/auth/options" {
            // It takes no input and reads only the configuration: it has no error to document.
        } else if path.starts_with("/api/v1/") || path.starts_with("/app/v1/") {
            assert!(
                errors.iter().any(|status| status.starts_with('4')),
                "{method} {path} documents no 4xx"
            );
        } else {
            // Operations endpoints have no client errors, but their failures are documented.
            assert!(!errors.is_empty(), "{method} {path} documents no error");
        }
        if !expected.is_empty() {
            assert!(responses.contains_key("401"), "{method} {path} lacks 401");
        }
        if let Some(body) = operation.get("requestBody") {
            assert!(
                responses.contains_key("400"),
                "{method} {path} takes a body but documents no 400"
            );
            assert!(body["content"]["application/json"]["schema"].is_object());
        }
    }
}

#[tokio::test]
async fn docs_page_works_offline() {
    let app = start().await;
    let response = app.send(Method::GET, "/docs", None, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().expect("ascii");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = response.text().await.expect("html");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    // Scripts are external (the CSP forbids inline ones) and same-origin.
    assert!(!html.contains("<script>"), "inline script in {html}");
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/init.js",
    ] {
        assert!(html.contains(&format!("\"{asset}\"")), "{asset} not linked");
    }

    for (asset, expected_type, must_contain) in [
        ("/docs/swagger-ui.css", "text/css", ".swagger-ui"),
        (
            "/docs/swagger-ui-bundle.js",
            "text/javascript",
            "SwaggerUIBundle",
        ),
        ("/docs/init.js", "text/javascript", "/openapi.json"),
    ] {
        let response = app.send(Method::GET, asset, None, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            content_type.starts_with(expected_type),
            "{asset}: {content_type}"
        );
        let text = response.text().await.expect("asset");
        assert!(text.contains(must_contain), "{asset} lacks {must_contain}");
    }
    // The initializer points Swagger UI at this server's document and nothing online.
    let init = app
        .send(Method::GET, "/docs/init.js", None, None)
        .await
        .text()
        .await
        .expect("init.js");
    assert!(init.contains("validatorUrl: null"), "{init}");
    assert!(!init.contains("http://") && !init.contains("https://"));
}

/// The document declares the roll body optional and nullable (`Option<RollKey>`); the server
/// must take `null` as it takes no body, not answer 400.
#[tokio::test]
async fn roll_takes_the_null_body_the_document_allows() {
    let app = start().await;
    let document = document(&app).await;
    let roll = &document["paths"]["/app/v1/workspaces/{workspaceId}/api-keys/{keyId}/roll"]["post"];
    assert_ne!(roll["requestBody"]["required"], true, "{roll}");

    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let old = app.create_key(&owner, "rolled").await;
    let body = app
        .roll(&owner, &old.id, Some(Value::Null))
        .await
        .expect_status(StatusCode::CREATED);
    let new_id = body["id"].as_str().expect("new id");
    assert_ne!(new_id, old.id);
    let replaced_by: Option<String> =
        sqlx::query_scalar("SELECT id FROM api_keys WHERE rolled_from = $1")
            .bind(&old.id)
            .fetch_optional(app.raw_db())
            .await
            .expect("query");
    assert_eq!(replaced_by.as_deref(), Some(new_id));
}
