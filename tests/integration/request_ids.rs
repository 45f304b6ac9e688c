//! Request ids and the request log: every response carries `x-request-id`,
//! every error body the same id as `error.requestId`, and each request leaves one JSON log line
//! with its fields once, `latency_ms` as a number, the client address and, on errors, the
//! error's code and reason and the verified key's id (never the secret).

use crate::common::{Db, TestApp};
use crate::on_both_databases;
use crate::on_each_db;
use crate::process_harness::Deployment;
use crate::test_app::Reply;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_databases!(every_error_body_carries_the_request_id_of_its_response);

/// The response's `x-request-id` and its JSON body.
#[track_caller]
fn id_and_body(reply: Reply) -> (StatusCode, String, Value) {
    let status = reply.status;
    let id = reply
        .headers
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id on a {status}"))
        .to_str()
        .expect("ascii")
        .to_owned();
    (status, id, reply.body)
}

#[track_caller]
fn assert_error_has_id(status: StatusCode, id: &str, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["requestId"], id, "{status}: {body}");
    assert!(body["error"]["code"].is_string(), "{body}");
}

async fn every_error_body_carries_the_request_id_of_its_response(app: TestApp) {
    // Made by a handler, by the key middleware, by the router's fallback, by axum's method
    // router (converted to JSON afterwards) and by the body limit. Raw requests where the typed
    // calls could not go wrong in that way: no route, no key, a method the route lacks, too
    // big a body.
    let response = app.call(Method::GET, "/nope", None, None).await;
    let (status, id, body) = id_and_body(response);
    assert_error_has_id(status, &id, &body, StatusCode::NOT_FOUND);
    assert_eq!(id.len(), 36, "a generated UUID: {id}");

    let response = app.call(Method::GET, "/api/v1/me", None, None).await;
    let (status, id, body) = id_and_body(response);
    assert_error_has_id(status, &id, &body, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["details"]["reason"], "missing_api_key");

    let response = app.call(Method::PUT, "/healthz", None, None).await;
    let (status, id, body) = id_and_body(response);
    assert_error_has_id(status, &id, &body, StatusCode::METHOD_NOT_ALLOWED);

    let response = app
        .client
        .post(app.url("/app/v1/auth/login"))
        .header("content-type", "application/json")
        .body(vec![b' '; heffl_api::http::MAX_BODY_BYTES + 1])
        .send()
        .await
        .expect("request");
    let (status, id, body) = id_and_body(Reply::read(response).await);
    assert_error_has_id(status, &id, &body, StatusCode::PAYLOAD_TOO_LARGE);

    let response = app.login_with(json!({})).await;
    let (status, id, body) = id_and_body(response);
    assert_error_has_id(status, &id, &body, StatusCode::BAD_REQUEST);

    // Successful responses carry the header too, and ids differ between requests.
    let (status, first, _) = id_and_body(app.health().await);
    assert_eq!(status, StatusCode::OK);
    let (_, second, _) = id_and_body(app.health().await);
    assert_ne!(first, second);

    // A sane id from the client (or its proxy) is kept, in the header and in the body; one
    // that could break a log line is replaced. Raw, for that header.
    let response = app
        .client
        .get(app.url("/api/v1/me"))
        .header("x-request-id", "edge-7f3a.42")
        .send()
        .await
        .expect("request");
    let (status, id, body) = id_and_body(Reply::read(response).await);
    assert_eq!(id, "edge-7f3a.42");
    assert_error_has_id(status, &id, &body, StatusCode::UNAUTHORIZED);
    let response = app
        .client
        .get(app.url("/api/v1/me"))
        .header("x-request-id", "a\"b c")
        .send()
        .await
        .expect("request");
    let (status, id, body) = id_and_body(Reply::read(response).await);
    assert_ne!(id, "a\"b c");
    assert_error_has_id(status, &id, &body, StatusCode::UNAUTHORIZED);

    // Refusals the key layer decides before any handler runs: over the key's limit, and
    // revoked (both answered without waiting on anything).
    let owner = app.bootstrap("Ids", "owner@ids.test").await;
    let (tight, _) = app
        .new_key(&owner, json!({ "name": "Tight", "rateLimitPerMinute": 1 }))
        .await
        .created_key();
    app.me(&tight.key).await.ok();
    let (status, id, body) = id_and_body(app.me(&tight.key).await);
    assert_error_has_id(status, &id, &body, StatusCode::TOO_MANY_REQUESTS);
    let revoked = app.create_key(&owner, "Gone").await;
    app.revoke(&owner, &revoked.id).await.ok();
    let (status, id, body) = id_and_body(app.verify(&revoked.key, "").await);
    assert_error_has_id(status, &id, &body, StatusCode::UNAUTHORIZED);
}

/// The binary's own log, read from its stderr.
mod request_log {
    use super::*;

    on_each_db!(the_request_log_has_each_field_once_and_names_the_refused_key);

    /// The JSON lines of `stderr` whose `path` is `path`.
    fn request_lines<'a>(stderr: &'a str, path: &str) -> Vec<(&'a str, Value)> {
        stderr
            .lines()
            .filter_map(|line| Some((line, serde_json::from_str::<Value>(line).ok()?)))
            .filter(|(_, event)| event["path"] == path)
            .collect()
    }

    async fn the_request_log_has_each_field_once_and_names_the_refused_key(db: Db) {
        let Some(deployment) = Deployment::create(db).await else {
            return;
        };
        let owner = deployment.bootstrap("Logs", "owner@logs.test").await;
        let extra = [("RUST_LOG", "info"), ("HEFFL_LOG_FORMAT", "json")];
        let mut server = deployment.spawn(&extra, &["serve"]).await;
        let token = server.login_token(&owner.email, &owner.password).await;
        // A key without `me:read`: verified, then refused by the handler.
        let (status, created) = server
            .send(
                Method::POST,
                &format!("/app/v1/workspaces/{}/api-keys", owner.workspace_id),
                Some(&token),
                Some(json!({ "name": "leads only", "scopes": ["leads:read"] })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let key = created["key"].as_str().expect("key").to_owned();
        let key_id = created["id"].as_str().expect("key id").to_owned();

        let refused = server
            .client
            .get(server.url("/api/v1/me"))
            .header("x-api-key", &key)
            .send()
            .await
            .expect("request");
        let (status, refused_id, body) = id_and_body(Reply::read(refused).await);
        assert_error_has_id(status, &refused_id, &body, StatusCode::FORBIDDEN);
        let (status, _) = server.send(Method::GET, "/healthz", None, None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = server
            .send_with_key(Method::GET, "/api/v1/leads", &key, None)
            .await;
        assert_eq!(status, StatusCode::OK);

        let (_, stderr) = server.stop().await;
        assert!(!stderr.contains(&key), "the key reached the log");

        let me = request_lines(&stderr, "/api/v1/me");
        let [(line, event)] = me.as_slice() else {
            panic!("expected one line for /api/v1/me:\n{stderr}");
        };
        assert_eq!(event["method"], "GET", "{line}");
        assert_eq!(event["status"], 403, "{line}");
        assert_eq!(event["request_id"], refused_id.as_str(), "{line}");
        assert_eq!(event["code"], "FORBIDDEN", "{line}");
        assert_eq!(event["reason"], "insufficient_scope", "{line}");
        assert_eq!(event["key_id"], key_id.as_str(), "{line}");
        assert_eq!(event["client"], "127.0.0.1", "{line}");
        assert!(
            event["latency_ms"].is_f64(),
            "latency_ms is a number: {line}"
        );
        for field in ["request_id", "path", "method", "status"] {
            assert_eq!(
                line.matches(&format!("\"{field}\"")).count(),
                1,
                "{field} once per line: {line}"
            );
        }

        let healthz = request_lines(&stderr, "/healthz");
        let (line, event) = healthz.last().expect("a line for /healthz");
        assert_eq!(event["status"], 200, "{line}");
        assert!(
            event.get("code").is_none() && event.get("key_id").is_none(),
            "{line}"
        );

        // A successful request with a verified key logs no key id: only errors need one.
        let leads = request_lines(&stderr, "/api/v1/leads");
        let (line, event) = leads.last().expect("a line for /api/v1/leads");
        assert_eq!(event["status"], 200, "{line}");
    }
}
