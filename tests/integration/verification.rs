//! Key verification at full speed without serving stale answers. The verification
//! cache, its change feed (LISTEN/NOTIFY on PostgreSQL, the `key_events` poll on SQLite),
//! batched usage, per-key rate limits and the failed-authentication throttle.
//!
//! What needs several processes (a revoke on one instance holding on another, the CLI, a killed
//! listener) or a process's own metrics (counters are process-global, and the in-process test
//! apps run in parallel) uses real `serve` processes; the rest uses the in-process `TestApp`.
//! Propagation times are printed with `eprintln!` so they can be quoted: run with
//! `-- --nocapture`.

use crate::common::{
    assert_error, assert_too_many, assert_unauthorized, count, open_store, postgres_admin_url,
    query_count, raw_pool, Db, TestApp,
};
use crate::on_each_db;
use crate::process_harness::{
    metric_value, Deployment, Owner, Probe, Refusal, Server, POLL, PROPAGATION_DEADLINE,
};
use crate::test_app::Reply;
use heffl_api::domain::api_key::{ApiKey, KeyDigest, KeyEnv};
use heffl_api::domain::time::Timestamp;
use heffl_api::verify::Lookup;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long set-up steps that only wait for background tasks may take.
const SETTLE_DEADLINE: Duration = Duration::from_secs(10);
const ME: &str = "/api/v1/me";
const LEADS: &str = "/api/v1/leads";
const HIT: &str = "heffl_key_cache_total{result=\"hit\"}";
const MISS: &str = "heffl_key_cache_total{result=\"miss\"}";

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A deployment for `serve` processes. Polling loops make many requests with one key from one
/// address; the tests that exercise these limits turn them on in-process.
async fn cluster(db: Db, extra: &[(&str, &str)]) -> Option<Deployment> {
    let mut env = vec![
        ("HEFFL_RATE_LIMIT_PER_MINUTE", "0"),
        ("HEFFL_AUTH_FAILURES_PER_MINUTE", "0"),
    ];
    env.extend_from_slice(extra);
    Deployment::create_with(db, &env).await
}

/// What only the verification tests ask of a process: its key cache.
impl Server {
    /// The cache answers only while the change feed is connected; until then every lookup is a
    /// query, and a "cached" key would prove nothing.
    async fn wait_cache_live(&self) {
        let deadline = Instant::now() + SETTLE_DEADLINE;
        while self.metric("heffl_key_cache_live").await != 1.0 {
            assert!(
                Instant::now() < deadline,
                "{}: key cache not live within {SETTLE_DEADLINE:?}",
                self.name
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Uses `key` until this process has answered it from its cache three times in a row, as
    /// its own hit counter shows, so that a later refusal proves the cache entry was dropped.
    async fn warm(&self, key: &str) {
        self.wait_cache_live().await;
        let deadline = Instant::now() + SETTLE_DEADLINE;
        let mut in_a_row = 0;
        while in_a_row < 3 {
            assert!(
                Instant::now() < deadline,
                "{}: the key was never served from the cache",
                self.name
            );
            let before = self.metric(HIT).await;
            let (status, body) = self.send_with_key(Method::GET, ME, key, None).await;
            assert_eq!(status, StatusCode::OK, "{}: {body}", self.name);
            let after = self.metric(HIT).await;
            in_a_row = if after == before + 1.0 {
                in_a_row + 1
            } else {
                0
            };
        }
    }
}

/// Two `serve` processes on one database, and the workspace owner signed in on A.
struct Pair {
    cluster: Deployment,
    a: Server,
    b: Server,
    owner: Owner,
    owner_token: String,
}

impl Pair {
    async fn start(db: Db) -> Option<Pair> {
        let cluster = cluster(db, &[]).await?;
        let owner = cluster.bootstrap("Acme", "owner@acme.test").await;
        let (a, b) = tokio::join!(cluster.serve("A"), cluster.serve("B"));
        let owner_token = a.login_token(&owner.email, &owner.password).await;
        tokio::join!(a.wait_cache_live(), b.wait_cache_live());
        Some(Pair {
            cluster,
            a,
            b,
            owner,
            owner_token,
        })
    }

    fn ws(&self) -> &str {
        &self.owner.workspace_id
    }
}

fn lead(name: &str) -> Value {
    json!({ "name": name, "email": "jane@example.com", "mobile": "+1234567890",
            "title": "Product Demo Request" })
}

// ---------------------------------------------------------------------------------------------
// Test lists
// ---------------------------------------------------------------------------------------------

on_each_db!(
    revoke_on_one_instance_holds_on_the_other_within_a_second,
    demotion_on_one_instance_holds_on_the_other_within_a_second,
    removal_on_one_instance_holds_on_the_other_within_a_second,
    edits_on_one_instance_hold_on_the_other_within_a_second,
    cli_revoke_reaches_a_running_server_within_a_second,
    malformed_keys_cost_no_query_and_a_repeated_fake_costs_one,
    usage_is_written_within_a_flush_interval,
    usage_is_written_at_shutdown,
    rate_limit_headers_count_down_then_429,
    per_key_rate_limit_from_create,
    failed_authentications_throttle_the_address_not_verified_keys,
    forwarded_for_is_used_only_when_trusted,
);

// ---------------------------------------------------------------------------------------------
// 1. Two instances on one database
// ---------------------------------------------------------------------------------------------

async fn revoke_on_one_instance_holds_on_the_other_within_a_second(db: Db) {
    let Some(pair) = Pair::start(db).await else {
        return;
    };
    let (key_id, key) = pair
        .a
        .create_key(&pair.owner_token, pair.ws(), "Sync")
        .await;
    let (_, bystander) = pair
        .a
        .create_key(&pair.owner_token, pair.ws(), "Bystander")
        .await;
    pair.a.warm(&key).await;
    pair.b.warm(&key).await;
    pair.b.warm(&bystander).await;

    let (status, body) = pair
        .a
        .send(
            Method::POST,
            &format!("/app/v1/workspaces/{}/api-keys/{key_id}/revoke", pair.ws()),
            Some(&pair.owner_token),
            None,
        )
        .await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "revoked");

    // The instance that made the change dropped its entry before answering.
    let (status, body) = pair.a.send_with_key(Method::GET, ME, &key, None).await;
    assert_unauthorized(status, &body, "revoked_api_key");
    pair.b
        .until_refused(
            "revoke on A",
            since,
            PROPAGATION_DEADLINE,
            Probe::me(&key),
            Refusal::unauthorized("revoked_api_key"),
        )
        .await;

    // Only that key: the other one is still served.
    let (status, body) = pair
        .b
        .send_with_key(Method::GET, ME, &bystander, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let store = pair.cluster.store().await;
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM api_keys WHERE id = $1 AND revoked_at IS NOT NULL",
            &[key_id.as_str()]
        )
        .await,
        1
    );
    store.close().await;
}

/// A pause, an allowlist and new metadata set through one instance reach the other's cache
/// as a revocation does; enabling again does too.
async fn edits_on_one_instance_hold_on_the_other_within_a_second(db: Db) {
    let Some(pair) = Pair::start(db).await else {
        return;
    };
    let (key_id, key) = pair
        .a
        .create_key(&pair.owner_token, pair.ws(), "Sync")
        .await;
    pair.a.warm(&key).await;
    pair.b.warm(&key).await;
    let path = format!("/app/v1/workspaces/{}/api-keys/{key_id}", pair.ws());
    let edit = |body: Value| {
        pair.a
            .send(Method::PATCH, &path, Some(&pair.owner_token), Some(body))
    };

    let (status, body) = edit(json!({ "enabled": false })).await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], false);
    let (status, body) = pair.a.send_with_key(Method::GET, ME, &key, None).await;
    assert_unauthorized(status, &body, "disabled_api_key");
    pair.b
        .until_refused(
            "disable on A",
            since,
            PROPAGATION_DEADLINE,
            Probe::me(&key),
            Refusal::unauthorized("disabled_api_key"),
        )
        .await;

    // Enabled again, with an allowlist that excludes the test's own address.
    let (status, body) = edit(json!({ "enabled": true, "allowedIps": ["192.0.2.0/24"] })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let since = Instant::now();
    loop {
        let (status, body) = pair.b.send_with_key(Method::GET, ME, &key, None).await;
        if status == StatusCode::FORBIDDEN {
            assert_error(
                status,
                &body,
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                Some("ip_not_allowed"),
            );
            break;
        }
        assert_unauthorized(status, &body, "disabled_api_key");
        assert!(
            since.elapsed() < PROPAGATION_DEADLINE,
            "B still refuses the key as disabled"
        );
        tokio::time::sleep(POLL).await;
    }

    // Metadata is part of what B answers once it has heard of the change.
    let (status, body) = edit(json!({ "allowedIps": [], "meta": { "plan": "pro" } })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let since = Instant::now();
    loop {
        let (status, body) = pair.b.send_with_key(Method::GET, ME, &key, None).await;
        if status == StatusCode::OK {
            assert_eq!(body["apiKey"]["meta"], json!({ "plan": "pro" }), "{body}");
            break;
        }
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            since.elapsed() < PROPAGATION_DEADLINE,
            "B still applies the old allowlist"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn demotion_on_one_instance_holds_on_the_other_within_a_second(db: Db) {
    let Some(pair) = Pair::start(db).await else {
        return;
    };
    let (member_id, member_token) = pair
        .a
        .add_member(&pair.owner_token, pair.ws(), "member@acme.test", "member")
        .await;
    let (_, key) = pair.a.create_key(&member_token, pair.ws(), "Forms").await;
    pair.a.warm(&key).await;
    pair.b.warm(&key).await;
    for server in [&pair.a, &pair.b] {
        let (status, body) = server
            .send_with_key(Method::POST, LEADS, &key, Some(lead("Before")))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{}: {body}", server.name);
    }

    let (status, body) = pair
        .a
        .send(
            Method::PATCH,
            &format!("/app/v1/workspaces/{}/members/{member_id}", pair.ws()),
            Some(&pair.owner_token),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "viewer", "{body}");

    let (status, body) = pair
        .a
        .send_with_key(Method::POST, LEADS, &key, Some(lead("On A")))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        Some("insufficient_permission"),
    );
    let (_, stale) = pair
        .b
        .until_refused(
            "demotion on A",
            since,
            PROPAGATION_DEADLINE,
            Probe {
                method: Method::POST,
                path: LEADS,
                key: &key,
                body: Some(lead("On B")),
                ok: StatusCode::CREATED,
            },
            Refusal::forbidden("insufficient_permission"),
        )
        .await;

    // B now knows the current role, and reading is still allowed for a viewer.
    let (status, body) = pair.b.send_with_key(Method::GET, ME, &key, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["role"], "viewer", "{body}");
    let store = pair.cluster.store().await;
    let leads = query_count(
        &store,
        "SELECT COUNT(*) FROM leads WHERE owner_id = $1",
        &[member_id.as_str()],
    )
    .await;
    assert_eq!(
        leads,
        2 + stale as i64,
        "only the accepted requests wrote leads"
    );
    store.close().await;
}

async fn removal_on_one_instance_holds_on_the_other_within_a_second(db: Db) {
    let Some(pair) = Pair::start(db).await else {
        return;
    };
    let (member_id, member_token) = pair
        .a
        .add_member(&pair.owner_token, pair.ws(), "member@acme.test", "member")
        .await;
    let (key_id, key) = pair.a.create_key(&member_token, pair.ws(), "Forms").await;
    pair.a.warm(&key).await;
    pair.b.warm(&key).await;

    let (status, body) = pair
        .a
        .send(
            Method::DELETE,
            &format!("/app/v1/workspaces/{}/members/{member_id}", pair.ws()),
            Some(&pair.owner_token),
            None,
        )
        .await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (status, body) = pair.a.send_with_key(Method::GET, ME, &key, None).await;
    assert_unauthorized(status, &body, "revoked_api_key");
    pair.b
        .until_refused(
            "member removal on A",
            since,
            PROPAGATION_DEADLINE,
            Probe::me(&key),
            Refusal::unauthorized("revoked_api_key"),
        )
        .await;
    let store = pair.cluster.store().await;
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM api_keys WHERE id = $1 AND revoked_at IS NOT NULL \
             AND revoke_reason = 'owner_removed'",
            &[key_id.as_str()]
        )
        .await,
        1
    );
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// 2. The operator CLI is another process too
// ---------------------------------------------------------------------------------------------

async fn cli_revoke_reaches_a_running_server_within_a_second(db: Db) {
    let Some(cluster) = cluster(db, &[]).await else {
        return;
    };
    let owner = cluster.bootstrap("Acme", "owner@acme.test").await;
    let server = cluster.serve("S").await;
    let token = server.login_token(&owner.email, &owner.password).await;
    let (key_id, key) = server.create_key(&token, &owner.workspace_id, "Sync").await;
    server.warm(&key).await;

    let out = cluster.run(&["keys", "revoke", &key_id], None).await;
    let since = Instant::now();
    let line = out.assert_success().json_line();
    assert_eq!(line["status"], "revoked", "{line}");

    server
        .until_refused(
            "CLI keys revoke",
            since,
            PROPAGATION_DEADLINE,
            Probe::me(&key),
            Refusal::unauthorized("revoked_api_key"),
        )
        .await;
}

// ---------------------------------------------------------------------------------------------
// 3. The PostgreSQL listener's connection dies
// ---------------------------------------------------------------------------------------------

async fn listener_pids(admin: &mut sqlx::PgConnection, database: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'",
    )
    .bind(database)
    .fetch_all(admin)
    .await
    .expect("list listeners")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_listener_connection_neither_serves_stale_keys_nor_stays_deaf() {
    let Some(pair) = Pair::start(Db::Postgres).await else {
        return;
    };
    let database = pair.cluster.pg_database_name();
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .expect("admin connection");
    // B manages the keys; A is the instance whose listener dies.
    let b_token = pair
        .b
        .login_token(&pair.owner.email, &pair.owner.password)
        .await;
    let (first_id, first) = pair.b.create_key(&b_token, pair.ws(), "First").await;
    let (second_id, second) = pair.b.create_key(&b_token, pair.ws(), "Second").await;
    pair.a.warm(&first).await;

    let before: HashSet<i32> = listener_pids(&mut admin, &database)
        .await
        .into_iter()
        .collect();
    assert_eq!(before.len(), 2, "one listener per instance: {before:?}");
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND query ILIKE 'LISTEN%'",
    )
    .bind(&database)
    .fetch_all(&mut admin)
    .await
    .expect("terminate listeners");
    assert!(
        terminated.len() == 2 && terminated.iter().all(|t| *t),
        "{terminated:?}"
    );

    // Revoked while A may not be listening: A must not answer from its cache.
    let (status, body) = pair
        .b
        .send(
            Method::POST,
            &format!(
                "/app/v1/workspaces/{}/api-keys/{first_id}/revoke",
                pair.ws()
            ),
            Some(&b_token),
            None,
        )
        .await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::OK, "{body}");
    pair.a
        .until_refused(
            "revoke on B right after A's listener was killed",
            since,
            Duration::from_millis(1500),
            Probe::me(&first),
            Refusal::unauthorized("revoked_api_key"),
        )
        .await;

    // A listens again on a new connection, and its cache serves again...
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let now: Vec<i32> = listener_pids(&mut admin, &database).await;
        if now.iter().filter(|pid| !before.contains(pid)).count() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listeners did not reconnect: before {before:?}, now {now:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    pair.a.warm(&second).await;
    // ...and hears the next change.
    let (status, body) = pair
        .b
        .send(
            Method::POST,
            &format!(
                "/app/v1/workspaces/{}/api-keys/{second_id}/revoke",
                pair.ws()
            ),
            Some(&b_token),
            None,
        )
        .await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::OK, "{body}");
    pair.a
        .until_refused(
            "revoke on B after A's listener reconnected",
            since,
            PROPAGATION_DEADLINE,
            Probe::me(&second),
            Refusal::unauthorized("revoked_api_key"),
        )
        .await;
    let _ = admin.close().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Malformed keys never reach the database; a repeated fake reaches it once
// ---------------------------------------------------------------------------------------------

async fn malformed_keys_cost_no_query_and_a_repeated_fake_costs_one(db: Db) {
    let Some(cluster) = cluster(db, &[]).await else {
        return;
    };
    let owner = cluster.bootstrap("Acme", "owner@acme.test").await;
    let server = cluster.serve("S").await;
    let token = server.login_token(&owner.email, &owner.password).await;
    let (_, key) = server.create_key(&token, &owner.workspace_id, "Sync").await;
    server.wait_cache_live().await;

    let mut bad_checksum = key.clone();
    let last = bad_checksum.pop().expect("last char");
    bad_checksum.push(if last == 'A' { 'B' } else { 'A' });
    let malformed = [
        bad_checksum,
        key[..key.len() - 1].to_owned(),
        format!("{key}0"),
        format!("{} {}", &key[..20], &key[20..]),
        format!("{}\t{}", &key[..20], &key[21..]),
        key.replacen("hk_", "hx_", 1),
        "hk_live_".to_owned(),
        "x".repeat(44),
    ];
    let misses = server.metric(MISS).await;
    let refused = server
        .metric("heffl_api_key_auth_total{outcome=\"malformed_api_key\"}")
        .await;
    for i in 0..200 {
        let (status, body) = server
            .send_with_key(Method::GET, ME, &malformed[i % malformed.len()], None)
            .await;
        assert_unauthorized(status, &body, "malformed_api_key");
    }
    let text = server.metrics().await;
    assert_eq!(
        metric_value(
            &text,
            "heffl_api_key_auth_total{outcome=\"malformed_api_key\"}"
        ),
        refused + 200.0,
        "every malformed request was counted"
    );
    assert_eq!(
        metric_value(&text, MISS),
        misses,
        "malformed keys caused database lookups"
    );

    // The counter does count lookups: distinct fakes are one query each...
    let env = KeyEnv::default();
    for _ in 0..5 {
        let fake = ApiKey::generate(&env);
        let (status, body) = server
            .send_with_key(Method::GET, ME, fake.expose_secret(), None)
            .await;
        assert_unauthorized(status, &body, "invalid_api_key");
    }
    assert_eq!(server.metric(MISS).await, misses + 5.0);

    // ...but the same fake again and again is remembered.
    let fake = ApiKey::generate(&env);
    let misses = server.metric(MISS).await;
    for _ in 0..200 {
        let (status, body) = server
            .send_with_key(Method::GET, ME, fake.expose_secret(), None)
            .await;
        assert_unauthorized(status, &body, "invalid_api_key");
    }
    let repeated = server.metric(MISS).await - misses;
    eprintln!("[{db:?}] 200 requests with one unknown key: {repeated} database lookups");
    // One, plus one per expiry of the short-lived negative entry while the loop runs.
    assert!(
        (1.0..=4.0).contains(&repeated),
        "{repeated} lookups for one repeated fake"
    );

    // And a valid key is served from memory.
    let misses = server.metric(MISS).await;
    for _ in 0..200 {
        let (status, body) = server.send_with_key(Method::GET, ME, &key, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let valid = server.metric(MISS).await - misses;
    assert!(valid <= 2.0, "{valid} lookups for one valid key");
}

// ---------------------------------------------------------------------------------------------
// 8. The cache is bounded
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_stays_within_its_capacity() {
    const KEYS: usize = 3000;
    const CAPACITY: f64 = 1000.0;
    let Some(cluster) = cluster(Db::Sqlite, &[("HEFFL_CACHE_CAPACITY", "1000")]).await else {
        return;
    };
    let started = Instant::now();
    let owner = cluster.bootstrap("Acme", "owner@acme.test").await;
    let store = cluster.store().await;
    let db = raw_pool(store.url());
    let user_id: String = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(&owner.email)
        .fetch_one(&db)
        .await
        .expect("owner id");
    // Seeded directly, as the create endpoint would store them: the digest, never the key.
    let env = KeyEnv::default();
    let keys: Vec<String> = (0..KEYS)
        .map(|_| ApiKey::generate(&env).expose_secret().to_owned())
        .collect();
    let now = Timestamp::now().0;
    let mut tx = db.begin().await.expect("begin");
    for chunk in keys.chunks(500) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = 3 * i;
                format!("(${}, $1, $2, 'Seeded', ${}, ${}, $3)", p + 4, p + 5, p + 6)
            })
            .collect();
        let sql = format!(
            "INSERT INTO api_keys (id, workspace_id, created_by, name, digest, hint, created_at) \
             VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql)
            .bind(&owner.workspace_id)
            .bind(&user_id)
            .bind(now);
        for key in chunk {
            let parsed =
                heffl_api::domain::api_key::parse(key.as_bytes(), &env).expect("valid key");
            query = query
                .bind(heffl_api::domain::ids::new_id(
                    heffl_api::domain::ids::API_KEY,
                ))
                .bind(KeyDigest::of(key).as_bytes().to_vec())
                .bind(parsed.hint());
        }
        query.execute(&mut *tx).await.expect("seed keys");
    }
    tx.commit().await.expect("commit");
    db.close().await;
    store.close().await;

    let server = Arc::new(cluster.serve("S").await);
    server.wait_cache_live().await;
    let misses = server.metric(MISS).await;
    let keys = Arc::new(keys);
    let mut tasks = tokio::task::JoinSet::new();
    const WORKERS: usize = 32;
    for worker in 0..WORKERS {
        let server = Arc::clone(&server);
        let keys = Arc::clone(&keys);
        tasks.spawn(async move {
            for key in keys.iter().skip(worker).step_by(WORKERS) {
                let (status, body) = server.send_with_key(Method::GET, ME, key, None).await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("worker");
    }
    let used = server.metric(MISS).await - misses;
    assert!(
        used >= KEYS as f64,
        "each distinct key needed a lookup: {used}"
    );

    // Eviction is asynchronous in moka; a few more requests let it catch up.
    let deadline = Instant::now() + Duration::from_secs(3);
    let entries = loop {
        let entries = server.metric("heffl_key_cache_entries").await;
        if entries <= CAPACITY + 10.0 || Instant::now() >= deadline {
            break entries;
        }
        let (status, _) = server.send_with_key(Method::GET, ME, &keys[0], None).await;
        assert_eq!(status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "[Sqlite] {KEYS} distinct keys with capacity 1000: {entries} cache entries; test took {:?}",
        started.elapsed()
    );
    assert!(
        entries > 0.0 && entries <= CAPACITY + 10.0,
        "{entries} entries"
    );
}

// ---------------------------------------------------------------------------------------------
// In-process helpers
// ---------------------------------------------------------------------------------------------

async fn wait_cache_live(app: &TestApp) {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    while !app.verifier.key_cache().is_live() {
        assert!(
            Instant::now() < deadline,
            "key cache not live within {SETTLE_DEADLINE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name).map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} is not a number: {value:?}"))
    })
}

/// (RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset); None when none is present, and a
/// failure when only some are.
fn rate_headers(headers: &HeaderMap) -> Option<(u64, u64, u64)> {
    let limit = header_u64(headers, "ratelimit-limit");
    let remaining = header_u64(headers, "ratelimit-remaining");
    let reset = header_u64(headers, "ratelimit-reset");
    match (limit, remaining, reset) {
        (Some(l), Some(r), Some(s)) => {
            assert!((1..=60).contains(&s), "RateLimit-Reset {s}");
            Some((l, r, s))
        }
        (None, None, None) => None,
        other => panic!("some RateLimit headers only: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Usage
// ---------------------------------------------------------------------------------------------

async fn usage_is_written_within_a_flush_interval(db: Db) {
    let Some(app) = TestApp::start_with(db, |c| {
        c.usage_flush_interval = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let used = app.create_key(&owner, "Used").await;
    let idle = app.create_key(&owner, "Idle").await;
    let fresh = app.key(&owner, &used.id).await.ok();
    assert_eq!(fresh["lastUsedAt"], Value::Null, "{fresh}");
    assert_eq!(fresh["requestCount"], 0, "{fresh}");
    assert_eq!(fresh["rateLimitPerMinute"], Value::Null, "{fresh}");

    let first_call = Timestamp::now().0;
    for _ in 0..3 {
        assert_eq!(app.me(&used.key).await.status, StatusCode::OK);
    }
    let last_call = Timestamp::now().0;

    let since = Instant::now();
    let record = loop {
        let record = app.key(&owner, &used.id).await.ok();
        if record["requestCount"] == 3 {
            break record;
        }
        assert!(
            since.elapsed() < Duration::from_millis(2500),
            "usage not written within 2.5 s: {record}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "[{db:?}] usage visible {:?} after the calls",
        since.elapsed()
    );
    let last_used = record["lastUsedAt"]
        .as_str()
        .and_then(Timestamp::parse_rfc3339)
        .unwrap_or_else(|| panic!("lastUsedAt: {record}"));
    assert!(
        (first_call..=last_call).contains(&last_used.0),
        "lastUsedAt {} outside the calls [{first_call}, {last_call}]",
        last_used.0
    );
    let list = app.keys(&owner, "").await.body;
    let listed = list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|k| k["id"] == used.id.as_str()))
        .unwrap_or_else(|| panic!("key listed: {list}"));
    assert_eq!(listed["requestCount"], 3, "{listed}");
    assert_eq!(listed["lastUsedAt"], record["lastUsedAt"], "{listed}");
    let idle_record = app.key(&owner, &idle.id).await.ok();
    assert_eq!(idle_record["requestCount"], 0, "{idle_record}");
    assert_eq!(idle_record["lastUsedAt"], Value::Null, "{idle_record}");

    // Later flushes with nothing new must not add to what was written.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(1500) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let row: (i64, Option<i64>) =
            sqlx::query_as("SELECT request_count, last_used_at FROM api_keys WHERE id = $1")
                .bind(&used.id)
                .fetch_one(app.raw_db())
                .await
                .expect("usage row");
        assert_eq!(row, (3, Some(last_used.0)));
    }
    // A fourth call adds one.
    assert_eq!(app.me(&used.key).await.status, StatusCode::OK);
    let since = Instant::now();
    while app.key(&owner, &used.id).await.ok()["requestCount"] != 4 {
        assert!(
            since.elapsed() < Duration::from_millis(2500),
            "fourth call not written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn usage_is_written_at_shutdown(db: Db) {
    let Some(mut app) = TestApp::start_with(db, |c| {
        c.usage_flush_interval = Duration::from_secs(3600);
    })
    .await
    else {
        return;
    };
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let key = app.create_key(&owner, "Used").await;
    for _ in 0..3 {
        assert_eq!(app.me(&key.key).await.status, StatusCode::OK);
    }
    // Gathered in memory, not yet written: the next flush is an hour away.
    let record = app.key(&owner, &key.id).await.ok();
    assert_eq!(record["requestCount"], 0, "{record}");
    assert_eq!(record["lastUsedAt"], Value::Null, "{record}");

    // The app's own store is closed by `stop`; this one outlives it.
    let probe = open_store(&app.config).await;
    app.stop().await;
    let db = raw_pool(probe.url());
    let (requests, last_used): (i64, Option<i64>) =
        sqlx::query_as("SELECT request_count, last_used_at FROM api_keys WHERE id = $1")
            .bind(&key.id)
            .fetch_one(&db)
            .await
            .expect("usage row");
    db.close().await;
    probe.close().await;
    assert_eq!(requests, 3, "the shutdown flush wrote the counts");
    assert!(last_used.is_some(), "the shutdown flush wrote lastUsedAt");
}

// ---------------------------------------------------------------------------------------------
// 5. Per-key rate limit
// ---------------------------------------------------------------------------------------------

async fn rate_limit_headers_count_down_then_429(db: Db) {
    let Some(app) = TestApp::start_with(db, |c| c.rate_limit_per_minute = 5).await else {
        return;
    };
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let key = app.create_key(&owner, "Busy").await;
    let other = app.create_key(&owner, "Other").await;

    let mut last_reset = 60;
    for expected in (0..5).rev() {
        let response = app.me(&key.key).await;
        assert_eq!(response.status, StatusCode::OK);
        let (limit, remaining, reset) = rate_headers(&response.headers).expect("RateLimit headers");
        assert_eq!((limit, remaining), (5, expected));
        assert!(reset <= last_reset, "reset went up: {reset} > {last_reset}");
        last_reset = reset;
    }

    // Refused before the handler runs: nothing is written.
    let leads = count(&app, "SELECT COUNT(*) FROM leads", &[]).await;
    let response = app.create_lead(&key.key, lead("Jane Smith")).await;
    let headers = rate_headers(&response.headers).expect("RateLimit headers on 429");
    let retry_after = header_u64(&response.headers, "retry-after").expect("Retry-After");
    assert_too_many(response.status, &response.body, "rate_limited");
    assert_eq!((headers.0, headers.1), (5, 0));
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        retry_after, headers.2,
        "Retry-After agrees with RateLimit-Reset"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM leads", &[]).await, leads);
    let reply = app.me(&key.key).await;
    assert_too_many(reply.status, &reply.body, "rate_limited");

    // Another key has its own budget, and failed authentications spend nobody's.
    let response = app.me(&other.key).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        rate_headers(&response.headers).map(|h| (h.0, h.1)),
        Some((5, 4))
    );
    for _ in 0..10 {
        let fake = ApiKey::generate(&KeyEnv::default());
        let response = app.me(fake.expose_secret()).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let response = app.me(&other.key).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        rate_headers(&response.headers).map(|h| (h.0, h.1)),
        Some((5, 3))
    );
}

async fn per_key_rate_limit_from_create(db: Db) {
    let Some(app) = TestApp::start_with(db, |c| c.rate_limit_per_minute = 5).await else {
        return;
    };
    let owner = app.bootstrap("Acme", "owner@acme.test").await;

    let (slow, created) = app
        .new_key(&owner, json!({ "name": "Slow", "rateLimitPerMinute": 2 }))
        .await
        .created_key();
    assert_eq!(created["rateLimitPerMinute"], 2, "{created}");
    let (slow_id, slow) = (slow.id, slow.key);
    assert_eq!(
        app.key(&owner, &slow_id).await.ok()["rateLimitPerMinute"],
        2
    );
    for expected in [1, 0] {
        let response = app.me(&slow).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(
            rate_headers(&response.headers).map(|h| (h.0, h.1)),
            Some((2, expected))
        );
    }
    let response = app.me(&slow).await;
    assert_eq!(
        rate_headers(&response.headers).map(|h| (h.0, h.1)),
        Some((2, 0))
    );
    assert_too_many(response.status, &response.body, "rate_limited");
    // A revoked key is told so, not asked to retry later.
    app.revoke(&owner, &slow_id).await.ok();
    app.me(&slow).await.expect_unauthorized("revoked_api_key");

    // 0: no limit at all, and so nothing to report.
    let (_, created) = app
        .new_key(
            &owner,
            json!({ "name": "Unlimited", "rateLimitPerMinute": 0 }),
        )
        .await
        .created_key();
    assert_eq!(created["rateLimitPerMinute"], 0, "{created}");
    let unlimited = created["key"].as_str().expect("key").to_owned();
    for _ in 0..20 {
        let response = app.me(&unlimited).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(rate_headers(&response.headers), None);
    }

    // The upper bound is accepted; without the field the deployment's default applies.
    let (_, created) = app
        .new_key(
            &owner,
            json!({ "name": "Firehose", "rateLimitPerMinute": 1_000_000 }),
        )
        .await
        .created_key();
    let response = app.me(created["key"].as_str().expect("key")).await;
    assert_eq!(
        rate_headers(&response.headers).map(|h| (h.0, h.1)),
        Some((1_000_000, 999_999))
    );
    let (_, created) = app
        .new_key(&owner, json!({ "name": "Default" }))
        .await
        .created_key();
    assert_eq!(created["rateLimitPerMinute"], Value::Null, "{created}");
    let response = app.me(created["key"].as_str().expect("key")).await;
    assert_eq!(
        rate_headers(&response.headers).map(|h| (h.0, h.1)),
        Some((5, 4))
    );

    let keys = count(&app, "SELECT COUNT(*) FROM api_keys", &[]).await;
    for bad in [json!(-1), json!(1.5), json!("x"), json!(1_000_001)] {
        let body = app
            .new_key(&owner, json!({ "name": "Bad", "rateLimitPerMinute": bad }))
            .await
            .expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
        let issues = body["error"]["details"]["issues"]
            .as_array()
            .unwrap_or_else(|| panic!("issues for {bad}: {body}"));
        assert!(
            issues.iter().any(|i| i["field"] == "rateLimitPerMinute"),
            "{bad}: {body}"
        );
    }
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM api_keys", &[]).await,
        keys,
        "no key created by a refused request"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Failed-authentication throttle
// ---------------------------------------------------------------------------------------------

async fn failed_authentications_throttle_the_address_not_verified_keys(db: Db) {
    let Some(app) = TestApp::start_with(db, |c| c.auth_failures_per_minute = 5).await else {
        return;
    };
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let verified = app.create_key(&owner, "Verified").await;
    let unused = app.create_key(&owner, "Unused").await;
    wait_cache_live(&app).await;
    assert_eq!(app.me(&verified.key).await.status, StatusCode::OK);
    assert!(
        matches!(
            app.verifier
                .key_cache()
                .get(KeyDigest::of(&verified.key).as_bytes()),
            Some(Lookup::Found(_))
        ),
        "the used key is cached"
    );

    let env = KeyEnv::default();
    for _ in 0..5 {
        let fake = ApiKey::generate(&env);
        app.me(fake.expose_secret())
            .await
            .expect_unauthorized("invalid_api_key");
    }
    let fake = ApiKey::generate(&env);
    let response = app.me(fake.expose_secret()).await;
    let retry_after = header_u64(&response.headers, "retry-after").expect("Retry-After");
    assert_too_many(response.status, &response.body, "auth_throttled");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");

    // A forged X-Forwarded-For is not a way out when the proxy is not trusted. Raw, for that
    // header.
    let response = app
        .client
        .get(app.url(ME))
        .header("x-api-key", ApiKey::generate(&env).expose_secret())
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .expect("request");
    let Reply { status, body, .. } = Reply::read(response).await;
    assert_too_many(status, &body, "auth_throttled");

    // The integrator sharing that address keeps working with the key it already used...
    let body = app.me(&verified.key).await.ok();
    assert_eq!(body["apiKey"]["id"], verified.id.as_str(), "{body}");
    // ...and with a key not yet verified: it exists, so it is looked up (docs/api.md §9).
    app.me(&unused.key).await.ok();
}

async fn forwarded_for_is_used_only_when_trusted(db: Db) {
    let Some(app) = TestApp::start_with(db, |c| {
        c.auth_failures_per_minute = 3;
        c.trust_forwarded_for = true;
    })
    .await
    else {
        return;
    };
    let env = KeyEnv::default();
    let attempt = |forwarded: &'static str| {
        let request = app
            .client
            .get(app.url(ME))
            .header("x-api-key", ApiKey::generate(&env).expose_secret())
            .header("x-forwarded-for", forwarded);
        async move {
            let Reply { status, body, .. } =
                Reply::read(request.send().await.expect("request")).await;
            (status, body)
        }
    };
    for _ in 0..3 {
        let (status, body) = attempt("203.0.113.1").await;
        assert_unauthorized(status, &body, "invalid_api_key");
    }
    let (status, body) = attempt("203.0.113.1").await;
    assert_too_many(status, &body, "auth_throttled");
    // The address the proxy appended (the last entry) is the one that counts.
    let (status, body) = attempt("203.0.113.2, 203.0.113.1").await;
    assert_too_many(status, &body, "auth_throttled");
    let (status, body) = attempt("203.0.113.1, 203.0.113.2").await;
    assert_unauthorized(status, &body, "invalid_api_key");
}
