//! docs/api.md §9, "one careless client never locks out its neighbours": a client repeating its own
//! revoked, expired, mistyped or malformed key changes nothing for other keys from its address;
//! a scanner of distinct unknown keys is throttled and costs at most
//! HEFFL_AUTH_FAILURES_PER_MINUTE database lookups, while valid keys from its address still work.
//! All requests of a test come from 127.0.0.1, one address. The bound is proved with the
//! server's own count of key lookups (`KeyCache::lookup_count`).

use crate::common::{
    assert_too_many, assert_unauthorized, unknown_key, Account, CreatedKey, TestApp,
};
use crate::on_both_databases_with;
use crate::test_app::Reply;
use heffl_api::config::Config;
use heffl_api::domain::ids::{KeyId, UserId, WorkspaceId};
use reqwest::StatusCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LIMIT: u32 = 5;

fn throttled(config: &mut Config) {
    config.auth_failures_per_minute = LIMIT;
}

fn throttled_without_cache(config: &mut Config) {
    config.auth_failures_per_minute = LIMIT;
    config.cache_capacity = 0;
}

on_both_databases_with!(
    a_careless_client_never_locks_out_its_neighbours,
    super::throttled
);
on_both_databases_with!(
    a_scanner_is_throttled_but_valid_keys_still_work,
    super::throttled
);
on_both_databases_with!(
    without_a_cache_valid_keys_still_work_beside_a_scanner,
    super::throttled_without_cache
);

/// A well-formed key (right prefix, length and checksum) that no deployment issued.
fn lookups(app: &TestApp) -> u64 {
    app.verifier.key_cache().lookup_count()
}

/// The change feed loads what the throttle needs; until then the server is still starting.
async fn wait_until_live(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.verifier.key_cache().is_live() {
        assert!(Instant::now() < deadline, "the change feed never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn assert_works(app: &TestApp, key: &CreatedKey, what: &str) {
    let reply = app.me(&key.key).await;
    assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.body);
}

async fn setup(app: &TestApp, name: &str) -> Account {
    wait_until_live(app).await;
    app.bootstrap(name, &format!("owner@{}.test", name.to_lowercase()))
        .await
}

async fn a_careless_client_never_locks_out_its_neighbours(app: TestApp) {
    let owner = setup(&app, "Careless").await;
    let revoked = app.create_key(&owner, "revoked").await;
    app.verifier
        .revoke_api_key(
            &WorkspaceId::parse(owner.workspace_id.as_str()).expect("an id"),
            &KeyId::parse(revoked.id.as_str()).expect("an id"),
            heffl_api::store::Actor::User(&UserId::parse(owner.user_id.as_str()).expect("an id")),
            "revoked",
            &Default::default(),
        )
        .await
        .expect("revoke");
    let expired = app.create_key(&owner, "expired").await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE id = $2")
        .bind(now - 1_000)
        .bind(&expired.id)
        .execute(app.raw_db())
        .await
        .expect("expire");
    // Never used before the careless client starts: not in any cache.
    let neighbour = app.create_key(&owner, "neighbour").await;
    let later_neighbour = app.create_key(&owner, "later neighbour").await;
    let mistyped = unknown_key();
    // One character off: the checksum fails.
    let last = if neighbour.key.ends_with('x') {
        'y'
    } else {
        'x'
    };
    let malformed = format!("{}{last}", &neighbour.key[..neighbour.key.len() - 1]);

    // Far more than the limit, each client with its own broken key, 61 times as in the review.
    for attempt in 0..61 {
        for (key, reason) in [
            (revoked.key.as_str(), "revoked_api_key"),
            (expired.key.as_str(), "expired_api_key"),
            (mistyped.as_str(), "invalid_api_key"),
            (malformed.as_str(), "malformed_api_key"),
        ] {
            let Reply { status, body, .. } = app.me(key).await;
            assert_eq!(
                body["error"]["details"]["reason"], reason,
                "attempt {attempt}: the careless client's own answer changed: {status} {body}"
            );
            assert_unauthorized(status, &body, reason);
        }
        if attempt == 30 {
            assert_works(&app, &neighbour, "an uncached neighbour mid-way").await;
        }
    }
    assert_works(&app, &later_neighbour, "an uncached neighbour afterwards").await;
    assert_works(&app, &neighbour, "a cached neighbour").await;
}

async fn a_scanner_is_throttled_but_valid_keys_still_work(app: TestApp) {
    scan_beside_valid_keys(&app).await;
}

async fn without_a_cache_valid_keys_still_work_beside_a_scanner(app: TestApp) {
    scan_beside_valid_keys(&app).await;
}

async fn scan_beside_valid_keys(app: &TestApp) {
    let owner = setup(app, "Scanner").await;
    let cached = app.create_key(&owner, "cached").await;
    assert_works(app, &cached, "before the scan").await;
    let uncached = app.create_key(&owner, "uncached").await;

    let before = lookups(app);
    let mut throttled = 0;
    for probe in 0..60 {
        let Reply { status, body, .. } = app.me(&unknown_key()).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            throttled += 1;
            assert_too_many(status, &body, "auth_throttled");
        } else {
            assert_unauthorized(status, &body, "invalid_api_key");
            assert!(
                probe < LIMIT as usize,
                "probe {probe} was looked up past the limit"
            );
        }
    }
    assert_eq!(
        throttled,
        60 - LIMIT as usize,
        "the scanner was not throttled"
    );
    let scanned = lookups(app) - before;
    assert!(
        scanned <= u64::from(LIMIT),
        "60 distinct unknown keys cost {scanned} database lookups (limit {LIMIT})"
    );

    // Valid keys from the scanner's own address: cached, uncached, and created after the scan.
    assert_works(app, &uncached, "an uncached key from the scanner's address").await;
    assert_works(app, &cached, "a cached key from the scanner's address").await;
    let fresh = app.create_key(&owner, "created after the scan").await;
    assert_works(app, &fresh, "a key created after the scan").await;

    // The scanner carries on: still throttled, still no lookups for its guesses.
    let before = lookups(app);
    for _ in 0..20 {
        let reply = app.me(&unknown_key()).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(
        lookups(app),
        before,
        "throttled guesses reached the database"
    );
}

mod instances {
    crate::on_each_db!(a_key_created_on_another_instance_works_beside_a_scanner);

    async fn a_key_created_on_another_instance_works_beside_a_scanner(db: crate::common::Db) {
        super::a_key_created_on_another_instance_works_beside_a_scanner(db).await;
    }
}

/// The set of known keys follows creations on other instances through the change feed: a key
/// created on `a` after `b` has throttled a scanner still works on `b` from that address.
async fn a_key_created_on_another_instance_works_beside_a_scanner(db: crate::common::Db) {
    use crate::process_harness::Deployment;
    use reqwest::Method;
    let limit = LIMIT.to_string();
    let Some(deployment) =
        Deployment::create_with(db, &[("HEFFL_AUTH_FAILURES_PER_MINUTE", &limit)]).await
    else {
        return;
    };
    let owner = deployment.bootstrap("Two", "owner@two.test").await;
    let a = deployment.serve("a").await;
    let b = deployment.serve("b").await;
    let token = a.login_token(&owner.email, &owner.password).await;
    let mut throttled = 0;
    for _ in 0..(LIMIT as usize + 10) {
        let (status, _) = b
            .send_with_key(Method::GET, "/api/v1/me", &unknown_key(), None)
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            throttled += 1;
        }
    }
    assert_eq!(throttled, 10, "b did not throttle the scanner");
    let (_, key) = a.create_key(&token, &owner.workspace_id, "made on a").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = b.send_with_key(Method::GET, "/api/v1/me", &key, None).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(
            Instant::now() < deadline,
            "b never learned of the key created on a"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
