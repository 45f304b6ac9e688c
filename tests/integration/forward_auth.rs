//! docs/api.md §13, forward auth: `/api/v1/verify` answers like `/api/v1/me` plus scopes and the
//! `X-Heffl-*` headers, for any method and any tail; fails exactly as any /api/v1 request;
//! `?scope=` and `HEFFL_EXTRA_SCOPES`; counts toward the key's limit and usage. Through nginx:
//! forward_auth_nginx.rs.

use crate::common::{assert_too_many, without_request_id, Account, CreatedKey, TestApp};
use crate::on_both_databases_with;
use crate::process_harness::{free_port, run_in};
use crate::test_app::Reply;
use heffl_api::domain::scopes::{parse_extra_scope, ExtraScopes};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const IDENTITY_HEADERS: [&str; 5] = [
    "x-heffl-workspace-id",
    "x-heffl-user-id",
    "x-heffl-user-role",
    "x-heffl-key-id",
    "x-heffl-scopes",
];

fn extra_scopes() -> ExtraScopes {
    ExtraScopes::new(
        ["billing:read", "billing:write"].map(|s| parse_extra_scope(s).expect("valid")),
    )
}

fn with_extras_and_limit(config: &mut heffl_api::config::Config) {
    config.extra_scopes = extra_scopes();
    config.rate_limit_per_minute = 1000;
    config.usage_flush_interval = Duration::from_secs(1);
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[track_caller]
fn assert_no_identity_headers(headers: &HeaderMap, what: &str) {
    for name in IDENTITY_HEADERS {
        assert!(!headers.contains_key(name), "{what}: {name} on a failure");
    }
}

async fn key_with_scopes(app: &TestApp, owner: &Account, name: &str, scopes: Value) -> CreatedKey {
    app.new_key(owner, json!({ "name": name, "scopes": scopes }))
        .await
        .created_key()
        .0
}

on_both_databases_with!(
    answers_who_the_key_acts_as_for_any_method,
    super::with_extras_and_limit
);
on_both_databases_with!(
    fails_exactly_as_any_api_request,
    super::with_extras_and_limit
);
on_both_databases_with!(
    scopes_are_required_and_checked,
    super::with_extras_and_limit
);
on_both_databases_with!(
    counts_toward_the_keys_limit_and_usage,
    super::with_extras_and_limit
);
on_both_databases_with!(
    lists_built_in_and_extra_scopes,
    super::with_extras_and_limit
);

async fn answers_who_the_key_acts_as_for_any_method(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let key = app.create_key(&member, "Gateway").await;
    let me = app.me(&key.key).await.ok();

    let custom = Method::from_bytes(b"PROPFIND").expect("method");
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        custom,
    ];
    for path in ["", "/", "/orders/42/items?page=2&x=%20"] {
        for method in methods.clone() {
            let what = format!("{method} /api/v1/verify{path}");
            let Reply {
                status,
                headers,
                body,
                ..
            } = app.verify_as(method, Some(&key.key), path).await;
            assert_eq!(status, StatusCode::OK, "{what}: {body}");
            for field in ["workspace", "user", "apiKey"] {
                assert_eq!(body[field], me[field], "{what}: {field}");
            }
            assert_eq!(body["user"]["role"], "member");
            assert_eq!(
                body["scopes"],
                json!([
                    "me:read",
                    "leads:read",
                    "leads:write",
                    "billing:read",
                    "billing:write"
                ]),
                "{what}: a key made without scopes has the extra ones too"
            );
            assert_eq!(
                header(&headers, "x-heffl-workspace-id"),
                Some(owner.workspace_id.as_str()),
                "{what}"
            );
            assert_eq!(
                header(&headers, "x-heffl-user-id"),
                Some(member.user_id.as_str()),
                "{what}"
            );
            assert_eq!(
                header(&headers, "x-heffl-user-role"),
                Some("member"),
                "{what}"
            );
            assert_eq!(
                header(&headers, "x-heffl-key-id"),
                Some(key.id.as_str()),
                "{what}"
            );
            assert_eq!(
                header(&headers, "x-heffl-scopes"),
                Some("me:read leads:read leads:write billing:read billing:write"),
                "{what}"
            );
            assert_eq!(header(&headers, "ratelimit-limit"), Some("1000"), "{what}");
            assert!(headers.contains_key("ratelimit-remaining"), "{what}");
            assert!(headers.contains_key("ratelimit-reset"), "{what}");
        }
    }

    // HEAD: the headers without the body, which is what a gateway needs.
    let head = app.verify_as(Method::HEAD, Some(&key.key), "").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("x-heffl-key-id"), key.id);

    // The original request's body is not ours to read: anything, even not JSON, passes. Raw,
    // as the body is the point.
    let response = app
        .client
        .post(app.url("/api/v1/verify/upload"))
        .header("x-api-key", &key.key)
        .header("content-type", "application/octet-stream")
        .body(vec![0u8; 64 * 1024])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);

    // A role change takes effect at once, as for every key.
    app.set_role(&owner, &owner.workspace_id, &member.user_id, "viewer")
        .await
        .ok();
    let verified = app.verify(&key.key, "").await;
    assert_eq!(verified.header("x-heffl-user-role"), "viewer");
}

/// Each way a key fails: verify answers with /api/v1/me's status, body and WWW-Authenticate,
/// and never an identity header.
async fn fails_exactly_as_any_api_request(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let revoked = app.create_key(&owner, "Revoked").await;
    app.revoke(&owner, &revoked.id).await.ok();
    let good = app.create_key(&owner, "Good").await;
    let unknown = heffl_api::domain::api_key::ApiKey::generate(&app.config.key_env);
    let other_env = heffl_api::domain::api_key::ApiKey::generate(&"test".parse().expect("env"));
    let mut truncated = good.key.clone();
    truncated.pop();

    type Adjust = fn(reqwest::RequestBuilder, &str) -> reqwest::RequestBuilder;
    let cases: Vec<(&str, String, Adjust)> = vec![
        ("missing", String::new(), |r, _| r),
        ("bearer", good.key.clone(), |r, k| r.bearer_auth(k)),
        ("truncated", truncated, |r, k| r.header("x-api-key", k)),
        ("two headers", good.key.clone(), |r, k| {
            r.header("x-api-key", k).header("x-api-key", k)
        }),
        (
            "other environment",
            other_env.expose_secret().to_owned(),
            |r, k| r.header("x-api-key", k),
        ),
        ("unknown", unknown.expose_secret().to_owned(), |r, k| {
            r.header("x-api-key", k)
        }),
        ("revoked", revoked.key.clone(), |r, k| {
            r.header("x-api-key", k)
        }),
        ("from a browser", good.key.clone(), |r, k| {
            r.header("x-api-key", k)
                .header("origin", "https://evil.example")
        }),
    ];
    // Raw requests: each case is a way of sending the key that the typed calls do not have.
    let mut reasons = Vec::new();
    for (what, key, adjust) in cases {
        let me = adjust(app.client.get(app.url("/api/v1/me")), &key)
            .send()
            .await
            .expect("me");
        let me = Reply::read(me).await;
        for (method, path) in [
            (Method::GET, "/api/v1/verify"),
            (Method::POST, "/api/v1/verify/orders/1?scope=leads:read"),
        ] {
            let request = app.client.request(method.clone(), app.url(path));
            let response = adjust(request, &key).send().await.expect("verify");
            let Reply {
                status,
                headers,
                body,
                ..
            } = Reply::read(response).await;
            let what = format!("{what}, {method} {path}");
            assert!(status.is_client_error(), "{what}: {status}");
            assert_eq!(status, me.status, "{what}: {body}");
            assert_eq!(
                without_request_id(body),
                without_request_id(me.body.clone()),
                "{what}"
            );
            assert_eq!(
                header(&headers, "www-authenticate"),
                header(&me.headers, "www-authenticate"),
                "{what}"
            );
            assert_no_identity_headers(&headers, &what);
        }
        reasons.push(me.body["error"]["details"]["reason"].clone());
    }
    assert_eq!(
        reasons,
        json!([
            "missing_api_key",
            "bearer_not_supported",
            "malformed_api_key",
            "malformed_api_key",
            "wrong_environment",
            "invalid_api_key",
            "revoked_api_key",
            "browser_use_blocked"
        ])
        .as_array()
        .expect("array")
        .clone(),
    );

    // A revoke holds on verify at once, even for a key that verified a moment ago.
    app.verify(&good.key, "").await.ok();
    app.revoke(&owner, &good.id).await.ok();
    let refused = app.verify(&good.key, "").await;
    assert_eq!(
        refused.header("www-authenticate"),
        r#"ApiKey header="x-api-key""#
    );
    refused.expect_unauthorized("revoked_api_key");
}

async fn scopes_are_required_and_checked(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let reader = key_with_scopes(
        &app,
        &owner,
        "Reader",
        json!(["leads:read", "billing:read"]),
    )
    .await;
    let full = app.create_key(&owner, "Full").await;
    let built_ins = key_with_scopes(
        &app,
        &owner,
        "Built-ins",
        json!(["me:read", "leads:read", "leads:write"]),
    )
    .await;

    for query in [
        "",
        "?scope=leads:read",
        "?scope=billing:read&scope=leads:read",
        // Envoy's form carries the original request's query; only `scope` is read there.
        "/orders/7?other=1&scope=leads:read",
    ] {
        let reply = app.verify(&reader.key, query).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.body);
        assert_eq!(
            reply.body["scopes"],
            json!(["leads:read", "billing:read"]),
            "{query}"
        );
        assert_eq!(reply.header("x-heffl-scopes"), "leads:read billing:read");
    }
    for query in [
        "?scope=leads:write",
        "?scope=leads:read&scope=billing:write",
        "?scope=me:read",
    ] {
        let reply = app.verify(&reader.key, query).await;
        reply.expect_forbidden("insufficient_scope");
        let headers = &reply.headers;
        assert_no_identity_headers(headers, query);
        assert!(
            headers.contains_key("ratelimit-remaining"),
            "{query}: still counted"
        );
    }
    let body = app.verify(&reader.key, "?scope=billing:write").await.body;
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("billing:write"), "{message}");

    // Scopes nobody defined are the gateway's mistake, not the key's: 400, named.
    for query in [
        "?scope=billing:delete",
        "?scope=",
        "?scope=leads:read&scope=LEADS:READ",
    ] {
        for key in [&reader.key, &full.key] {
            let reply = app.verify(key, query).await;
            let body = reply.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
            assert_eq!(
                body["error"]["details"]["issues"][0]["field"], "scope",
                "{body}"
            );
            assert_no_identity_headers(&reply.headers, query);
        }
    }

    // A key made without scopes has the extra ones; a key listing every built-in does not.
    let reply = app
        .verify(&full.key, "?scope=billing:write&scope=leads:write")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("x-heffl-scopes").contains("billing:write"));
    app.verify(&built_ins.key, "?scope=billing:read")
        .await
        .expect_forbidden("insufficient_scope");
    let reply = app
        .verify(&built_ins.key, "?scope=leads:write&scope=me:read")
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    // Keys may be created with the extra scopes only, and are shown with them.
    let body = app
        .new_key(&owner, json!({ "name": "x", "scopes": ["billing:delete"] }))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
    let message = body["error"]["details"]["issues"][0]["message"]
        .as_str()
        .expect("message");
    assert!(
        message.contains("billing:delete") && message.contains("billing:write"),
        "{message}"
    );
    let record = app.key(&owner, &reader.id).await.body;
    assert_eq!(
        record["scopes"],
        json!(["leads:read", "billing:read"]),
        "{record}"
    );
}

async fn counts_toward_the_keys_limit_and_usage(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let (created, _) = app
        .new_key(
            &owner,
            json!({ "name": "Limited", "rateLimitPerMinute": 3 }),
        )
        .await
        .created_key();
    let (key, id) = (created.key, created.id);

    let first = app.verify(&key, "").await;
    assert_eq!(first.header("ratelimit-remaining"), "2");
    let me = app.me(&key).await;
    assert_eq!(me.status, StatusCode::OK);
    let third = app.verify_as(Method::POST, Some(&key), "/x").await;
    assert_eq!(third.header("ratelimit-remaining"), "0");

    for (path, reply) in [
        ("/api/v1/verify", app.verify(&key, "").await),
        ("/api/v1/me", app.me(&key).await),
    ] {
        let Reply {
            status,
            headers,
            body,
            ..
        } = reply;
        assert_too_many(status, &body, "rate_limited");
        assert!(
            header(&headers, "retry-after").is_some_and(|s| s.parse::<u64>().is_ok()),
            "{path}"
        );
        assert_no_identity_headers(&headers, path);
    }

    // Two verifies and one /me were allowed, two verifies refused with 429: requestCount counts
    // rate-limited requests too (docs/api.md §11), so five.
    let since = Instant::now();
    loop {
        let record = app.key(&owner, &id).await.body;
        if record["requestCount"] == 5 {
            assert!(record["lastUsedAt"].is_string(), "{record}");
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "usage not written: {record}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn lists_built_in_and_extra_scopes(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    app.scopes(None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    let body = app.scopes(Some(&owner.token)).await.ok();
    let items = body["items"].as_array().expect("items");
    let listed: Vec<(&str, bool)> = items
        .iter()
        .map(|item| {
            assert!(
                item["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{item}"
            );
            (
                item["name"].as_str().expect("name"),
                item["builtIn"].as_bool().expect("builtIn"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("me:read", true),
            ("leads:read", true),
            ("leads:write", true),
            ("billing:read", false),
            ("billing:write", false)
        ]
    );
}

/// A bad `HEFFL_EXTRA_SCOPES` stops start-up naming the variable, before anything listens.
#[tokio::test]
async fn bad_extra_scopes_stop_start_up() {
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = format!("sqlite://{}", dir.path().join("heffl.db").display());
    for value in [
        "billing",
        "Billing:read",
        "billing:read,leads:read",
        "a:b c",
    ] {
        let env = vec![
            ("DATABASE_URL".to_owned(), sqlite.clone()),
            (
                "HEFFL_BIND".to_owned(),
                format!("127.0.0.1:{}", free_port()),
            ),
            ("HEFFL_EXTRA_SCOPES".to_owned(), value.to_owned()),
        ];
        let out = run_in(dir.path(), &env, &["serve"], None).await;
        out.assert_failure();
        assert!(
            out.stderr.contains("HEFFL_EXTRA_SCOPES"),
            "{value}: {}",
            out.stderr
        );
    }
    assert!(!dir.path().join("heffl.db").exists());
}
