//! docs/api.md §13, forward auth: `/api/v1/verify` answers like `/api/v1/me` plus scopes and the
//! `X-Heffl-*` headers, for any method and any tail; fails exactly as any /api/v1 request;
//! `?scope=` and `HEFFL_EXTRA_SCOPES`; counts toward the key's limit and usage. Through nginx:
//! forward_auth_nginx.rs.

use crate::common::{
    assert_error, assert_too_many, assert_unauthorized, create_key_with, key_path, parts,
    without_request_id, Account, CreatedKey, TestApp,
};
use crate::on_both_databases_with;
use crate::process_harness::{free_port, run_in};
use heffl_api::domain::scopes::{parse_extra_scope, ExtraScopes};
use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode};
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

async fn verify(app: &TestApp, method: Method, path: &str, key: Option<&str>) -> Response {
    let mut request = app.client.request(method, app.url(path));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.send().await.expect("request")
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
    let (status, body) =
        create_key_with(app, owner, json!({ "name": name, "scopes": scopes })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    CreatedKey {
        id: body["id"].as_str().expect("id").to_owned(),
        key: body["key"].as_str().expect("key").to_owned(),
    }
}

async fn revoke(app: &TestApp, owner: &Account, key_id: &str) {
    let path = format!("{}/revoke", key_path(&owner.workspace_id, key_id));
    let response = app
        .send(Method::POST, &path, Some(&owner.token), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK, "revoke");
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
    let (status, me) = parts(
        app.send_with_key(Method::GET, "/api/v1/me", &key.key, None)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{me}");

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
    for path in [
        "/api/v1/verify",
        "/api/v1/verify/",
        "/api/v1/verify/orders/42/items?page=2&x=%20",
    ] {
        for method in methods.clone() {
            let what = format!("{method} {path}");
            let response = verify(&app, method, path, Some(&key.key)).await;
            let headers = response.headers().clone();
            let (status, body) = parts(response).await;
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
    let response = verify(&app, Method::HEAD, "/api/v1/verify", Some(&key.key)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), "x-heffl-key-id"),
        Some(key.id.as_str())
    );

    // The original request's body is not ours to read: anything, even not JSON, passes.
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
    let response = app
        .send(
            Method::PATCH,
            &format!(
                "/app/v1/workspaces/{}/members/{}",
                owner.workspace_id, member.user_id
            ),
            Some(&owner.token),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = verify(&app, Method::GET, "/api/v1/verify", Some(&key.key)).await;
    assert_eq!(
        header(response.headers(), "x-heffl-user-role"),
        Some("viewer")
    );
}

/// Each way a key fails: verify answers with /api/v1/me's status, body and WWW-Authenticate,
/// and never an identity header.
async fn fails_exactly_as_any_api_request(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let revoked = app.create_key(&owner, "Revoked").await;
    revoke(&app, &owner, &revoked.id).await;
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
    let mut reasons = Vec::new();
    for (what, key, adjust) in cases {
        let me = adjust(app.client.get(app.url("/api/v1/me")), &key)
            .send()
            .await
            .expect("me");
        let me_auth = header(me.headers(), "www-authenticate").map(str::to_owned);
        let (me_status, me_body) = parts(me).await;
        for (method, path) in [
            (Method::GET, "/api/v1/verify"),
            (Method::POST, "/api/v1/verify/orders/1?scope=leads:read"),
        ] {
            let request = app.client.request(method.clone(), app.url(path));
            let response = adjust(request, &key).send().await.expect("verify");
            let headers = response.headers().clone();
            let (status, body) = parts(response).await;
            let what = format!("{what}, {method} {path}");
            assert!(status.is_client_error(), "{what}: {status}");
            assert_eq!(status, me_status, "{what}: {body}");
            assert_eq!(
                without_request_id(body),
                without_request_id(me_body.clone()),
                "{what}"
            );
            assert_eq!(
                header(&headers, "www-authenticate"),
                me_auth.as_deref(),
                "{what}"
            );
            assert_no_identity_headers(&headers, &what);
        }
        reasons.push(me_body["error"]["details"]["reason"].clone());
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
    let (status, _) =
        parts(verify(&app, Method::GET, "/api/v1/verify", Some(&good.key)).await).await;
    assert_eq!(status, StatusCode::OK);
    revoke(&app, &owner, &good.id).await;
    let response = verify(&app, Method::GET, "/api/v1/verify", Some(&good.key)).await;
    assert_eq!(
        header(response.headers(), "www-authenticate"),
        Some(r#"ApiKey header="x-api-key""#)
    );
    let (status, body) = parts(response).await;
    assert_unauthorized(status, &body, "revoked_api_key");
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

    let check = |key: String, query: &'static str| {
        let app = &app;
        async move {
            let response = verify(
                app,
                Method::GET,
                &format!("/api/v1/verify{query}"),
                Some(&key),
            )
            .await;
            let headers = response.headers().clone();
            let (status, body) = parts(response).await;
            (status, body, headers)
        }
    };

    for query in [
        "",
        "?scope=leads:read",
        "?scope=billing:read&scope=leads:read",
        // Envoy's form carries the original request's query; only `scope` is read there.
        "/orders/7?other=1&scope=leads:read",
    ] {
        let (status, body, headers) = check(reader.key.clone(), query).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(
            body["scopes"],
            json!(["leads:read", "billing:read"]),
            "{query}"
        );
        assert_eq!(
            header(&headers, "x-heffl-scopes"),
            Some("leads:read billing:read")
        );
    }
    for query in [
        "?scope=leads:write",
        "?scope=leads:read&scope=billing:write",
        "?scope=me:read",
    ] {
        let (status, body, headers) = check(reader.key.clone(), query).await;
        assert_error(
            status,
            &body,
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            Some("insufficient_scope"),
        );
        assert_no_identity_headers(&headers, query);
        assert!(
            headers.contains_key("ratelimit-remaining"),
            "{query}: still counted"
        );
    }
    let (_, body, _) = check(reader.key.clone(), "?scope=billing:write").await;
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("billing:write"), "{message}");

    // Scopes nobody defined are the gateway's mistake, not the key's: 400, named.
    for query in [
        "?scope=billing:delete",
        "?scope=",
        "?scope=leads:read&scope=LEADS:READ",
    ] {
        for key in [&reader.key, &full.key] {
            let (status, body, headers) = check(key.clone(), query).await;
            assert_error(
                status,
                &body,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                None,
            );
            assert_eq!(
                body["error"]["details"]["issues"][0]["field"], "scope",
                "{body}"
            );
            assert_no_identity_headers(&headers, query);
        }
    }

    // A key made without scopes has the extra ones; a key listing every built-in does not.
    let (status, _, headers) =
        check(full.key.clone(), "?scope=billing:write&scope=leads:write").await;
    assert_eq!(status, StatusCode::OK);
    assert!(header(&headers, "x-heffl-scopes").is_some_and(|s| s.contains("billing:write")));
    let (status, body, _) = check(built_ins.key.clone(), "?scope=billing:read").await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        Some("insufficient_scope"),
    );
    let (status, _, _) = check(built_ins.key.clone(), "?scope=leads:write&scope=me:read").await;
    assert_eq!(status, StatusCode::OK);

    // Keys may be created with the extra scopes only, and are shown with them.
    let (status, body) = create_key_with(
        &app,
        &owner,
        json!({ "name": "x", "scopes": ["billing:delete"] }),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        None,
    );
    let message = body["error"]["details"]["issues"][0]["message"]
        .as_str()
        .expect("message");
    assert!(
        message.contains("billing:delete") && message.contains("billing:write"),
        "{message}"
    );
    let record = parts(
        app.send(
            Method::GET,
            &key_path(&owner.workspace_id, &reader.id),
            Some(&owner.token),
            None,
        )
        .await,
    )
    .await
    .1;
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

    let first = verify(&app, Method::GET, "/api/v1/verify", Some(&key)).await;
    assert_eq!(header(first.headers(), "ratelimit-remaining"), Some("2"));
    let (status, _) = parts(
        app.send_with_key(Method::GET, "/api/v1/me", &key, None)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let third = verify(&app, Method::POST, "/api/v1/verify/x", Some(&key)).await;
    assert_eq!(header(third.headers(), "ratelimit-remaining"), Some("0"));

    for path in ["/api/v1/verify", "/api/v1/me"] {
        let response = verify(&app, Method::GET, path, Some(&key)).await;
        let headers = response.headers().clone();
        let (status, body) = parts(response).await;
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
        let record = parts(
            app.send(
                Method::GET,
                &key_path(&owner.workspace_id, &id),
                Some(&owner.token),
                None,
            )
            .await,
        )
        .await
        .1;
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
    let (status, body) = parts(app.send(Method::GET, "/app/v1/scopes", None, None).await).await;
    assert_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        None,
    );
    let (status, body) = parts(
        app.send(Method::GET, "/app/v1/scopes", Some(&owner.token), None)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
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
