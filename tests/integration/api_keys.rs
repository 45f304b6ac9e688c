//! API keys end to end: managing them from the dashboard (/app/v1) and presenting them to the
//! x-api-key middleware (/api/v1), including every docs/api.md §4 401 reason and the workspace walls.

use crate::common::{
    assert_timestamp, audit_count, count, key_count, key_path, keys_path, Account, CreatedKey,
    TestApp,
};
use crate::on_both_databases;
use crate::test_app::Reply;
use heffl_api::domain::api_key::{ApiKey, KeyEnv};
use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{Column, Row};

const API_KEY_CHALLENGE: &str = "ApiKey header=\"x-api-key\"";

fn revoke_path(workspace_id: &str, key_id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/api-keys/{key_id}/revoke")
}

/// `^hk_live_[0-9A-Za-z]{36}$`, spelled out because the crate has no regex dependency.
fn is_live_key(key: &str) -> bool {
    key.strip_prefix("hk_live_")
        .is_some_and(|body| body.len() == 36 && body.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A field that must be present with the JSON value `null` (docs/api.md §5: absent values are null).
#[track_caller]
fn assert_null_field(body: &Value, field: &str) {
    assert_eq!(
        body.get(field),
        Some(&Value::Null),
        "{field} must be present as null: {body}"
    );
}

/// The revocation state of a key row: (revoked_at, revoked_by, revoke_reason).
async fn revocation(app: &TestApp, key_id: &str) -> (Option<i64>, Option<String>, Option<String>) {
    sqlx::query_as("SELECT revoked_at, revoked_by, revoke_reason FROM api_keys WHERE id = $1")
        .bind(key_id)
        .fetch_one(app.raw_db())
        .await
        .expect("key row")
}

/// Every column of every row of `table`, as text (bytes as lowercase hex), for scans and
/// before/after comparisons.
/// `filter` is a WHERE clause with at most one `$1`, bound to `bind`.
async fn table_dump(
    app: &TestApp,
    table: &str,
    filter: &str,
    bind: &str,
) -> Vec<Vec<(String, String)>> {
    let rows = sqlx::query(&format!("SELECT * FROM {table} WHERE {filter} ORDER BY 1"))
        .bind(bind)
        .fetch_all(app.raw_db())
        .await
        .expect("dump");
    rows.iter()
        .map(|row| {
            row.columns()
                .iter()
                .map(|column| {
                    let i = column.ordinal();
                    let text = if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                        format!("{v:?}")
                    } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                        format!("{v:?}")
                    } else if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
                        v.map_or_else(|| "None".to_owned(), hex)
                    } else {
                        panic!("column {} of {table} has an unexpected type", column.name())
                    };
                    (column.name().to_owned(), text)
                })
                .collect()
        })
        .collect()
}

fn hex(bytes: Vec<u8>) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// No part of a secret of 36 body characters may show: not the key, not any 8-character
/// window of its random body.
#[track_caller]
fn assert_no_secret(text: &str, secret: &str, what: &str) {
    assert!(!text.contains(secret), "{what} contains the key: {text}");
    let chars: Vec<char> = secret.chars().collect();
    let body = &chars[chars.len().saturating_sub(36)..];
    for window in body.windows(8) {
        let window: String = window.iter().collect();
        assert!(
            !text.contains(window.as_str()),
            "{what} contains part of the key ({window}): {text}"
        );
    }
}

/// Sends a prepared /api/v1 request and checks the docs/api.md §4 401 with `reason`, its challenge,
/// and that its message does not echo `presented` (the credential that was sent). The request
/// stays a builder because most callers send a header no typed call would.
async fn expect_key_401(
    request: RequestBuilder,
    reason: &str,
    presented: Option<&str>,
    case: &str,
) {
    let reply = Reply::read(request.send().await.expect("request")).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "{case}: {}",
        reply.body
    );
    let body = reply.expect_unauthorized(reason);
    assert_eq!(
        reply.header(WWW_AUTHENTICATE.as_str()),
        API_KEY_CHALLENGE,
        "{case}: challenge"
    );
    if let Some(presented) = presented {
        let message = body["error"]["message"].as_str().unwrap_or_default();
        if presented.chars().count() >= 36 {
            assert_no_secret(message, presented, case);
            assert_no_secret(&body.to_string(), presented, case);
        } else if !presented.is_empty() {
            assert!(!message.contains(presented), "{case}: {message}");
        }
    }
}

async fn create_key_record_and_storage(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let reply = app
        .new_key(&owner, json!({ "name": "  Website form  " }))
        .await;
    assert_eq!(reply.header("cache-control"), "no-store");
    let body = reply.expect_status(StatusCode::CREATED);

    let id = body["id"].as_str().expect("id").to_owned();
    assert!(
        id.starts_with("key_") && id.len() > 10,
        "id is not a prefixed random id: {id}"
    );
    assert_eq!(body["name"], "Website form", "the name is trimmed");
    let key = body["key"].as_str().expect("key").to_owned();
    assert!(
        is_live_key(&key),
        "key does not match the docs/api.md §3 shape: {key}"
    );
    assert_eq!(body["hint"], format!("hk_live_…{}", &key[key.len() - 4..]));
    assert_eq!(body["status"], "active");
    assert_timestamp(&body["createdAt"], "createdAt");
    assert_eq!(
        body["createdBy"],
        json!({ "id": owner.user_id, "email": owner.email, "name": "Owner" })
    );
    assert_null_field(&body, "lastUsedAt");
    assert_null_field(&body, "revokedAt");
    assert_null_field(&body, "revokedBy");

    // The key works, and acts as its creator in its workspace.
    let me = app.me(&key).await.ok();
    assert_eq!(
        me["workspace"],
        json!({ "id": owner.workspace_id, "name": "Acme" })
    );
    assert_eq!(
        me["user"],
        json!({ "id": owner.user_id, "email": owner.email, "name": "Owner", "role": "owner" })
    );
    assert_eq!(
        me["apiKey"],
        json!({ "id": id, "name": "Website form", "meta": null, "externalId": null })
    );

    // Only the digest is stored: no column of the row (nor any audit entry) holds the key.
    let rows = table_dump(&app, "api_keys", "id = $1", &id).await;
    assert_eq!(rows.len(), 1);
    for (column, value) in &rows[0] {
        assert_no_secret(value, &key, &format!("api_keys.{column}"));
    }
    let digest: Vec<u8> = sqlx::query_scalar("SELECT digest FROM api_keys WHERE id = $1")
        .bind(&id)
        .fetch_one(app.raw_db())
        .await
        .expect("digest");
    assert_eq!(digest, Sha256::digest(key.as_bytes()).to_vec());
    for row in table_dump(&app, "audit_events", "action <> $1", "").await {
        for (column, value) in row {
            assert_no_secret(&value, &key, &format!("audit_events.{column}"));
        }
    }

    let (actor_type, actor_id, workspace_id): (String, Option<String>, Option<String>) =
        sqlx::query_as(
            "SELECT actor_type, actor_id, workspace_id FROM audit_events \
             WHERE action = 'api_key.created' AND target_id = $1",
        )
        .bind(&id)
        .fetch_one(app.raw_db())
        .await
        .expect("exactly one api_key.created audit row");
    assert_eq!(actor_type, "user");
    assert_eq!(actor_id.as_deref(), Some(owner.user_id.as_str()));
    assert_eq!(workspace_id.as_deref(), Some(owner.workspace_id.as_str()));
    assert_eq!(audit_count(&app, "api_key.created", &id).await, 1);
}

async fn create_key_name_validation(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let cases = [
        ("empty", json!({ "name": "" })),
        ("whitespace only", json!({ "name": " \t  " })),
        ("101 characters", json!({ "name": "k".repeat(101) })),
        ("missing", json!({})),
        ("null", json!({ "name": null })),
        ("not a string", json!({ "name": 42 })),
        ("line break", json!({ "name": "two\nlines" })),
    ];
    for (case, request) in cases {
        let body = app.new_key(&owner, request).await.expect_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            None,
        );
        assert_eq!(
            body["error"]["details"]["issues"][0]["field"], "name",
            "{case}: {body}"
        );
        assert!(
            body["error"]["details"]["issues"][0]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{case}: {body}"
        );
    }
    assert_eq!(key_count(&app).await, 0, "a refused create wrote a key");
    let audits = count(
        &app,
        "SELECT COUNT(*) FROM audit_events WHERE action = 'api_key.created'",
        &[],
    )
    .await;
    assert_eq!(audits, 0, "a refused create wrote an audit row");

    // 100 characters (after trimming) is the limit, counted in characters, not bytes.
    let longest = "é".repeat(100);
    let body = app
        .new_key(&owner, json!({ "name": format!("  {longest} ") }))
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(body["name"], longest.as_str());
    assert_eq!(key_count(&app).await, 1);
}

/// A workspace with a key for each role, and their creation times spread apart so "newest
/// first" is observable (keys made in the same millisecond have no defined order).
struct Team {
    owner: Account,
    admin: Account,
    member: Account,
    viewer: Account,
    owner_key: CreatedKey,
    admin_key: CreatedKey,
    member_key: CreatedKey,
    viewer_key: CreatedKey,
}

async fn team(app: &TestApp) -> Team {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let admin = app.add_member(&owner, "admin@acme.test", "admin").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let viewer = app.add_member(&owner, "viewer@acme.test", "viewer").await;
    let owner_key = app.create_key(&owner, "owner key").await;
    let member_key = app.create_key(&member, "member key").await;
    let viewer_key = app.create_key(&viewer, "viewer key").await;
    let admin_key = app.create_key(&admin, "admin key").await;
    for (index, key) in [&owner_key, &member_key, &viewer_key, &admin_key]
        .into_iter()
        .enumerate()
    {
        sqlx::query("UPDATE api_keys SET created_at = $1 WHERE id = $2")
            .bind(1_700_000_000_000_i64 + index as i64 * 60_000)
            .bind(&key.id)
            .execute(app.raw_db())
            .await
            .expect("spread created_at");
    }
    Team {
        owner,
        admin,
        member,
        viewer,
        owner_key,
        admin_key,
        member_key,
        viewer_key,
    }
}

async fn list_ids(app: &TestApp, account: &Account, query: &str, secrets: &[&str]) -> Vec<String> {
    let reply = app.keys(account, query).await;
    assert_eq!(reply.status, StatusCode::OK, "?{query}: {}", reply.body);
    let body = reply.body;
    for secret in secrets {
        assert_no_secret(&body.to_string(), secret, "key list");
    }
    let items = body["items"].as_array().expect("items");
    for item in items {
        assert!(
            item.get("key").is_none(),
            "a listed key shows its secret: {item}"
        );
        assert!(item["hint"]
            .as_str()
            .is_some_and(|h| h.starts_with("hk_live_…")));
        assert!(item["createdBy"]["email"].is_string(), "{item}");
        assert!(
            item.get("lastUsedAt").is_some() && item.get("revokedAt").is_some(),
            "{item}"
        );
    }
    items
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn list_keys_by_status_and_role(app: TestApp) {
    let t = team(&app).await;
    let secrets = [
        t.owner_key.key.as_str(),
        t.admin_key.key.as_str(),
        t.member_key.key.as_str(),
        t.viewer_key.key.as_str(),
    ];
    app.revoke(&t.owner, &t.owner_key.id).await.ok();

    let active = vec![
        t.admin_key.id.clone(),
        t.viewer_key.id.clone(),
        t.member_key.id.clone(),
    ];
    let mut all = active.clone();
    all.push(t.owner_key.id.clone());
    for manager in [&t.owner, &t.admin] {
        assert_eq!(
            list_ids(&app, manager, "", &secrets).await,
            active,
            "default is active"
        );
        assert_eq!(
            list_ids(&app, manager, "status=active", &secrets).await,
            active
        );
        assert_eq!(
            list_ids(&app, manager, "status=revoked", &secrets).await,
            vec![t.owner_key.id.clone()]
        );
        assert_eq!(list_ids(&app, manager, "status=all", &secrets).await, all);
    }
    for (account, own) in [(&t.member, &t.member_key), (&t.viewer, &t.viewer_key)] {
        for query in ["", "status=active", "status=all"] {
            assert_eq!(
                list_ids(&app, account, query, &secrets).await,
                vec![own.id.clone()],
                "{} {query}",
                account.email
            );
        }
        assert!(list_ids(&app, account, "status=revoked", &secrets)
            .await
            .is_empty());
    }
    // The owner's revoked key shows who revoked it, and the record is otherwise whole.
    let body = app.keys(&t.owner, "status=revoked").await.ok();
    let revoked = &body["items"][0];
    assert_eq!(revoked["status"], "revoked");
    assert_timestamp(&revoked["revokedAt"], "revokedAt");
    assert_eq!(revoked["revokedBy"]["id"], t.owner.user_id.as_str());

    for bad in ["bogus", "", "ACTIVE", "revoked,active"] {
        let body = app
            .keys(&t.owner, &format!("status={bad}"))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
        assert_eq!(
            body["error"]["details"]["issues"][0]["field"], "status",
            "{bad}: {body}"
        );
    }

    // One record: managers read any, the others only their own; someone else's is a 404.
    for (account, key) in [
        (&t.owner, &t.member_key),
        (&t.admin, &t.owner_key),
        (&t.member, &t.member_key),
        (&t.viewer, &t.viewer_key),
    ] {
        let reply = app.key(account, &key.id).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{} reads {}: {}",
            account.email,
            key.id,
            reply.body
        );
        let body = reply.body;
        assert_eq!(body["id"], key.id.as_str());
        assert!(
            body.get("key").is_none(),
            "a read key shows its secret: {body}"
        );
        for secret in secrets {
            assert_no_secret(&body.to_string(), secret, "key record");
        }
    }
    for (account, key) in [
        (&t.member, &t.viewer_key),
        (&t.member, &t.owner_key),
        (&t.viewer, &t.member_key),
    ] {
        let body =
            app.key(account, &key.id)
                .await
                .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
        assert!(!body.to_string().contains(&key.id), "{body}");
    }
    for unknown in ["key_doesNotExist0000000000", "ld_x", "1"] {
        app.key(&t.owner, unknown)
            .await
            .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    }
}

async fn revoke_key(app: TestApp) {
    let t = team(&app).await;

    let first = app.revoke(&t.owner, &t.owner_key.id).await.ok();
    assert_eq!(first["id"], t.owner_key.id.as_str());
    assert_eq!(first["status"], "revoked");
    assert_timestamp(&first["revokedAt"], "revokedAt");
    assert_eq!(
        first["revokedBy"],
        json!({ "id": t.owner.user_id, "email": t.owner.email, "name": "Owner" })
    );
    assert!(first.get("key").is_none(), "{first}");
    let reply = app.revoke(&t.owner, &t.owner_key.id).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "revoking again is not an error: {}",
        reply.body
    );
    let second = reply.body;
    assert_eq!(second["status"], "revoked");
    assert_eq!(
        second["revokedAt"], first["revokedAt"],
        "a second revoke moved revokedAt"
    );
    assert_eq!(second["revokedBy"], first["revokedBy"]);
    assert_eq!(
        audit_count(&app, "api_key.revoked", &t.owner_key.id).await,
        1
    );
    app.me(&t.owner_key.key)
        .await
        .expect_unauthorized("revoked_api_key");

    // Members and viewers may revoke their own keys.
    for (account, key) in [(&t.member, &t.member_key), (&t.viewer, &t.viewer_key)] {
        let reply = app.revoke(account, &key.id).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}: {}",
            account.email,
            reply.body
        );
        let body = reply.body;
        assert_eq!(body["status"], "revoked");
        assert_eq!(body["revokedBy"]["id"], account.user_id.as_str());
        assert_eq!(audit_count(&app, "api_key.revoked", &key.id).await, 1);
    }

    // ...but not other people's: the key is invisible to them, so the answer is 404, and
    // nothing changes.
    let other = app.create_key(&t.owner, "another owner key").await;
    for account in [&t.member, &t.viewer] {
        app.revoke(account, &other.id)
            .await
            .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
        assert_eq!(revocation(&app, &other.id).await, (None, None, None));
        assert_eq!(audit_count(&app, "api_key.revoked", &other.id).await, 0);
    }
    let reply = app.me(&other.key).await;
    assert_eq!(reply.status, StatusCode::OK, "a refused revoke took effect");

    // Admins revoke anyone's key.
    let body = app.revoke(&t.admin, &other.id).await.ok();
    assert_eq!(body["revokedBy"]["id"], t.admin.user_id.as_str());
    let (revoked_at, revoked_by, _) = revocation(&app, &other.id).await;
    assert!(revoked_at.is_some());
    assert_eq!(revoked_by.as_deref(), Some(t.admin.user_id.as_str()));

    app.revoke(&t.owner, "key_doesNotExist0000000000")
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
}

async fn middleware_rejects_bad_keys(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let created = app.create_key(&owner, "good").await;
    let key = created.key.as_str();
    let url = app.url("/api/v1/me");
    let get = || app.client.get(&url);

    expect_key_401(get(), "missing_api_key", None, "no header").await;
    expect_key_401(
        get().bearer_auth(&owner.token),
        "bearer_not_supported",
        Some(&owner.token),
        "session token as Bearer",
    )
    .await;
    expect_key_401(
        get().bearer_auth(key),
        "bearer_not_supported",
        Some(key),
        "key as Bearer",
    )
    .await;

    let mut changed = key.as_bytes().to_vec();
    // Within the random part: a different base62 character breaks the checksum.
    changed[20] = if changed[20] == b'a' { b'b' } else { b'a' };
    let changed = String::from_utf8(changed).expect("ascii");
    let mut non_ascii = key.as_bytes()[..20].to_vec();
    non_ascii.extend_from_slice("“".as_bytes());
    non_ascii.extend_from_slice(&key.as_bytes()[23..]);
    let malformed: Vec<(&str, HeaderValue)> = vec![
        (
            "a space inside",
            HeaderValue::from_str(&format!("{} {}", &key[..20], &key[20..])).expect("value"),
        ),
        (
            "a tab inside",
            HeaderValue::from_str(&format!("{}\t{}", &key[..20], &key[20..])).expect("value"),
        ),
        (
            "Bearer in x-api-key",
            HeaderValue::from_str(&format!("Bearer {key}")).expect("value"),
        ),
        (
            "wrong prefix",
            HeaderValue::from_str(&format!("sk_{}", &key[3..])).expect("value"),
        ),
        (
            "truncated",
            HeaderValue::from_str(&key[..key.len() - 3]).expect("value"),
        ),
        (
            "one character changed",
            HeaderValue::from_str(&changed).expect("value"),
        ),
        (
            "non-ASCII bytes",
            HeaderValue::from_bytes(&non_ascii).expect("value"),
        ),
        (
            "quoted",
            HeaderValue::from_str(&format!("\"{key}\"")).expect("value"),
        ),
        ("empty", HeaderValue::from_static("")),
        (
            "session token",
            HeaderValue::from_str(&owner.token).expect("value"),
        ),
    ];
    for (case, value) in malformed {
        let presented = String::from_utf8_lossy(value.as_bytes()).into_owned();
        expect_key_401(
            get().header("x-api-key", value),
            "malformed_api_key",
            Some(&presented),
            case,
        )
        .await;
    }
    // reqwest appends: this sends two x-api-key headers, both carrying the valid key.
    expect_key_401(
        get().header("x-api-key", key).header("x-api-key", key),
        "malformed_api_key",
        Some(key),
        "two x-api-key headers",
    )
    .await;

    let staging = ApiKey::generate(&KeyEnv::new("test").expect("env"));
    let staging = staging.expose_secret();
    expect_key_401(
        get().header("x-api-key", staging),
        "wrong_environment",
        Some(staging),
        "a valid test key",
    )
    .await;
    let forged = ApiKey::generate(&KeyEnv::default());
    let forged = forged.expose_secret();
    assert!(is_live_key(forged));
    expect_key_401(
        get().header("x-api-key", forged),
        "invalid_api_key",
        Some(forged),
        "well-formed but never issued",
    )
    .await;

    // The real key still works after all of that: failures did not poison anything.
    app.me(key).await.ok();
}

/// A trailing space cannot reach the server: HTTP strips whitespace around a field value
/// (RFC 9110 §5.5), so the key arrives whole and works. Sent over a raw socket so that no client
/// library trims it first.
async fn trailing_space_is_stripped_by_http(app: TestApp) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let created = app.create_key(&owner, "good").await;
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request = format!(
        "GET /api/v1/me HTTP/1.1\r\nHost: {address}\r\nx-api-key: {} \r\nConnection: close\r\n\r\n",
        created.key
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(response.contains(&created.id), "{response}");
}

async fn revoked_reasons(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let revoked = app.create_key(&owner, "to revoke").await;
    let leaver = app.add_member(&owner, "leaver@acme.test", "member").await;
    let leaver_key = app.create_key(&leaver, "leaver key").await;
    let disabled = app.add_member(&owner, "disabled@acme.test", "admin").await;
    let disabled_key = app.create_key(&disabled, "disabled key").await;
    for key in [&revoked, &leaver_key, &disabled_key] {
        app.me(&key.key).await.ok();
    }
    let me = |key: &str| {
        let request = app
            .client
            .get(app.url("/api/v1/me"))
            .header("x-api-key", key);
        let key = key.to_owned();
        async move { expect_key_401(request, "revoked_api_key", Some(&key), "revoked").await }
    };

    app.revoke(&owner, &revoked.id).await.ok();
    me(&revoked.key).await;

    app.remove_member(&owner, &owner.workspace_id, &leaver.user_id)
        .await
        .expect_status(StatusCode::NO_CONTENT);
    me(&leaver_key.key).await;
    let (revoked_at, _, reason) = revocation(&app, &leaver_key.id).await;
    assert!(revoked_at.is_some());
    assert_eq!(reason.as_deref(), Some("owner_removed"));

    let outcome = app
        .verifier
        .set_user_disabled(&disabled.email, true, heffl_api::store::Actor::System)
        .await
        .expect("disable");
    assert!(outcome.is_some());
    me(&disabled_key.key).await;

    // The owner's other credentials are untouched.
    let fresh = app.create_key(&owner, "still fine").await;
    app.me(&fresh.key).await.ok();
}

async fn credentials_do_not_cross(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let created = app.create_key(&owner, "integration").await;
    let list = keys_path(&owner.workspace_id);
    let keys_before = key_count(&app).await;

    // A key, sent either way, opens nothing on /app/v1. Raw requests: the typed calls only
    // send a session.
    for (method, path) in [
        (Method::GET, "/app/v1/session".to_owned()),
        (Method::GET, list.clone()),
        (Method::POST, list.clone()),
        (Method::GET, key_path(&owner.workspace_id, &created.id)),
        (Method::POST, revoke_path(&owner.workspace_id, &created.id)),
    ] {
        for as_bearer in [false, true] {
            let mut request = app.client.request(method.clone(), app.url(&path));
            request = if as_bearer {
                request.bearer_auth(&created.key)
            } else {
                request.header("x-api-key", &created.key)
            };
            if method == Method::POST {
                request = request.json(&json!({ "name": "minted with a key" }));
            }
            let reply = Reply::read(request.send().await.expect("request")).await;
            let body = reply.expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
            assert_eq!(
                reply.header(WWW_AUTHENTICATE.as_str()),
                "Bearer",
                "{method} {path}"
            );
            assert_no_secret(&body.to_string(), &created.key, &path);
        }
    }
    assert_eq!(key_count(&app).await, keys_before, "a key minted a key");
    assert_eq!(
        revocation(&app, &created.id).await,
        (None, None, None),
        "a key revoked itself"
    );

    // A session token is not a key.
    expect_key_401(
        app.client
            .get(app.url("/api/v1/me"))
            .header("x-api-key", &owner.token),
        "malformed_api_key",
        Some(&owner.token),
        "session token as x-api-key",
    )
    .await;
    expect_key_401(
        app.client
            .post(app.url("/api/v1/leads"))
            .header("x-api-key", &owner.token)
            .json(&json!({ "name": "Jane" })),
        "malformed_api_key",
        Some(&owner.token),
        "session token as x-api-key on a write",
    )
    .await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM leads", &[]).await, 0);
}

async fn role_changes_apply_to_keys_at_once(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let key = app.create_key(&member, "sync").await;
    let set_role = |role: &'static str| {
        let app = &app;
        let (owner, member) = (&owner, &member);
        async move {
            let body = app
                .set_role(owner, &owner.workspace_id, &member.user_id, role)
                .await
                .ok();
            assert_eq!(body["role"], role);
        }
    };
    let create_lead = |name: &'static str| app.create_lead(&key.key, json!({ "name": name }));
    let leads = || count(&app, "SELECT COUNT(*) FROM leads", &[]);

    create_lead("first")
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(leads().await, 1);

    set_role("viewer").await;
    create_lead("as viewer")
        .await
        .expect_forbidden("insufficient_permission");
    assert_eq!(leads().await, 1, "a viewer's key created a lead");
    let me = app.me(&key.key).await.body;
    assert_eq!(me["user"]["role"], "viewer");

    set_role("member").await;
    let body = create_lead("member again")
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(body["ownerId"], member.user_id.as_str());
    assert_eq!(leads().await, 2);
    let me = app.me(&key.key).await.body;
    assert_eq!(me["user"]["role"], "member");
}

/// Everything of workspace B that could leak into a response of A's.
struct Other {
    owner: Account,
    key: CreatedKey,
    spare: CreatedKey,
    lead_id: String,
}

async fn cross_workspace_walk(app: TestApp) {
    let a = app.bootstrap("Alpha Corp", "owner@alpha.test").await;
    let a_key = app.create_key(&a, "alpha key").await;
    app.create_lead(&a_key.key, json!({ "name": "Alpha Lead" }))
        .await
        .expect_status(StatusCode::CREATED);

    let b_owner = app
        .bootstrap("Bravo Secret Workspace", "owner@bravo.test")
        .await;
    let b_key = app.create_key(&b_owner, "bravo integration key").await;
    let b_spare = app.create_key(&b_owner, "bravo spare key").await;
    let lead = app
        .create_lead(
            &b_key.key,
            json!({ "name": "Bravo Hidden Lead", "email": "hidden@bravo-client.test",
                    "mobile": "+1999888777", "title": "Confidential" }),
        )
        .await
        .expect_status(StatusCode::CREATED);
    let b = Other {
        owner: b_owner,
        key: b_key,
        spare: b_spare,
        lead_id: lead["id"].as_str().expect("id").to_owned(),
    };
    let forbidden_text = [
        b.owner.workspace_id.as_str(),
        b.owner.user_id.as_str(),
        b.owner.email.as_str(),
        "Bravo Secret Workspace",
        b.key.id.as_str(),
        b.spare.id.as_str(),
        "bravo integration key",
        "bravo spare key",
        "Bravo Hidden Lead",
        "hidden@bravo-client.test",
        "+1999888777",
        "Confidential",
    ];
    let check_no_leak = |body: &Value, case: &str| {
        let text = body.to_string();
        for needle in forbidden_text {
            assert!(
                !text.contains(needle),
                "{case}: response leaks {needle}: {text}"
            );
        }
        assert_no_secret(&text, &b.key.key, case);
        assert_no_secret(&text, &b.spare.key, case);
    };
    // Only B's rows: A's key legitimately records its own use.
    let b_ws = b.owner.workspace_id.clone();
    // Usage figures are flushed in the background (B's key was used to set up), so they are
    // left out of the comparison.
    let b_rows = |table: &'static str| {
        let app = &app;
        let b_ws = b_ws.clone();
        async move {
            let mut rows = table_dump(app, table, "workspace_id = $1", &b_ws).await;
            for row in &mut rows {
                row.retain(|(column, _)| column != "last_used_at" && column != "request_count");
            }
            rows
        }
    };
    let audit_sql = "SELECT COUNT(*) FROM audit_events WHERE workspace_id = $1";
    let leads_before = b_rows("leads").await;
    let keys_before = b_rows("api_keys").await;
    let audit_before = count(&app, audit_sql, &[b.owner.workspace_id.as_str()]).await;

    // /api/v1 with A's key on B's lead: 403 workspace_mismatch, whatever the method.
    // (The lead id itself is in the request, so only the other fields must not come back.)
    let lead = &b.lead_id;
    for (case, reply) in [
        ("GET", app.lead(&a_key.key, lead).await),
        (
            "PATCH name",
            app.edit_lead(&a_key.key, lead, json!({ "name": "Taken over" }))
                .await,
        ),
        (
            "PATCH email",
            app.edit_lead(&a_key.key, lead, json!({ "email": null }))
                .await,
        ),
        ("DELETE", app.delete_lead(&a_key.key, lead).await),
    ] {
        let response = reply.expect_forbidden("workspace_mismatch");
        check_no_leak(&response, &format!("{case} of B's lead"));
    }
    for (case, reply) in [
        ("me", app.me(&a_key.key).await),
        ("leads", app.leads(&a_key.key, "").await),
        (
            "leads?pageSize=100",
            app.leads(&a_key.key, "pageSize=100").await,
        ),
    ] {
        assert_eq!(reply.status, StatusCode::OK, "{case}: {}", reply.body);
        check_no_leak(&reply.body, case);
    }

    // /app/v1 with A's session on B's workspace id: 403 workspace_mismatch for every route.
    let b_ws = &b.owner.workspace_id;
    let a_in_b = a.in_workspace(b_ws);
    for (case, reply) in [
        ("list keys", app.keys(&a_in_b, "").await),
        ("list all keys", app.keys(&a_in_b, "status=all").await),
        (
            "create a key",
            app.new_key(&a_in_b, json!({ "name": "planted" })).await,
        ),
        ("read B's key", app.key(&a_in_b, &b.key.id).await),
        ("revoke B's key", app.revoke(&a_in_b, &b.key.id).await),
        ("read A's key", app.key(&a_in_b, &a_key.id).await),
        ("revoke A's key", app.revoke(&a_in_b, &a_key.id).await),
        ("list members", app.members(&a, b_ws).await),
    ] {
        let response = reply.expect_forbidden("workspace_mismatch");
        check_no_leak(&response, &format!("{case} in B"));
    }
    // A's own workspace with B's key ids: the keys are not in A, so 404.
    for key_id in [&b.key.id, &b.spare.id] {
        for (case, reply) in [
            ("read", app.key(&a, key_id).await),
            ("revoke", app.revoke(&a, key_id).await),
        ] {
            let response = reply.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
            check_no_leak(&response, &format!("{case} {key_id} in A"));
        }
    }
    for query in ["", "status=all", "status=revoked"] {
        let reply = app.keys(&a, query).await;
        assert_eq!(reply.status, StatusCode::OK);
        check_no_leak(&reply.body, &format!("list keys ?{query}"));
    }

    assert_eq!(b_rows("leads").await, leads_before, "B's leads changed");
    assert_eq!(b_rows("api_keys").await, keys_before, "B's keys changed");
    let audit_after = count(&app, audit_sql, &[b.owner.workspace_id.as_str()]).await;
    assert_eq!(
        audit_after, audit_before,
        "a refused request wrote an audit row"
    );
    for key in [&b.key, &b.spare] {
        let reply = app.me(&key.key).await;
        assert_eq!(reply.status, StatusCode::OK, "B's key stopped working");
    }
}

on_both_databases!(
    create_key_record_and_storage,
    create_key_name_validation,
    list_keys_by_status_and_role,
    revoke_key,
    middleware_rejects_bad_keys,
    trailing_space_is_stripped_by_http,
    revoked_reasons,
    credentials_do_not_cross,
    role_changes_apply_to_keys_at_once,
    cross_workspace_walk,
);
