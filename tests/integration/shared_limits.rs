//! Shared limits (docs/api.md §12): instances that use one Redis share every limit, within the documented
//! over-admission bound; when Redis goes away they keep serving with per-instance limits, say
//! so once, and share again by themselves when it returns.
//!
//! Real `serve` processes: each has its own `/metrics`, and two of them on one database and one
//! Redis are what an operator runs. Each test has its own key prefix on the machine's Redis;
//! the outage test stops only a `redis-server` of its own.

use crate::common::{assert_too_many, assert_unauthorized, unknown_key, Db};
use crate::on_each_db;
use crate::process_harness::{Deployment, Owner, Server};
use crate::redis_harness::{get_count, shared_redis, test_prefix, OwnRedis};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

const ME: &str = "/api/v1/me";
const LEAK: &str = "/api/v1/credentials/revoke";
const UP: &str = "heffl_shared_limits_up";
const INSTANCES: &str = "heffl_shared_limits_instances";
/// docs/api.md §12: sharing resumes within 5 s of Redis returning.
const RESUME_DEADLINE: Duration = Duration::from_secs(5);
/// docs/api.md §12 allows 66 for a limit of 60; docs/scaling.md's bound, `limit + 2·N·C` with the local
/// share `C = max(1, ⌊limit / 20N⌋)` = 1, is 64 for two instances and 66 for three.
const MOST_ADMITTED: usize = 66;

async fn deployment(
    db: Db,
    redis_url: &str,
    prefix: &str,
    extra: &[(&str, &str)],
) -> Option<Deployment> {
    let mut env = vec![
        ("HEFFL_REDIS_URL", redis_url),
        ("HEFFL_REDIS_PREFIX", prefix),
        ("HEFFL_AUTH_FAILURES_PER_MINUTE", "0"),
    ];
    env.extend_from_slice(extra);
    Deployment::create_with(db, &env).await
}

impl Server {
    /// Waits until this process reports `up` (1: sharing, 0: per instance); returns how long.
    async fn until_shared_limits(&self, up: f64, deadline: Duration) -> Duration {
        let start = Instant::now();
        while self.metric(UP).await != up {
            assert!(
                start.elapsed() < deadline,
                "{}: {UP} not {up} within {deadline:?}; stderr:\n{}",
                self.name,
                self.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        start.elapsed()
    }

    /// Waits until this process shares limits and counts `instances` sharing them (a new
    /// instance is counted by the others at their next health check, within a second).
    async fn until_sharing_with(&self, instances: f64) {
        self.until_shared_limits(1.0, RESUME_DEADLINE).await;
        let start = Instant::now();
        while self.metric(INSTANCES).await != instances {
            assert!(
                start.elapsed() < RESUME_DEADLINE,
                "{}: never counted {instances} instances",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn me(&self, key: &str) -> StatusCode {
        let (status, body) = self.send_with_key(Method::GET, ME, key, None).await;
        if !throttled(status, &body, "rate_limited") {
            assert_eq!(status, StatusCode::OK, "{}: {body}", self.name);
        }
        status
    }
}

async fn owner_key(server: &Server, owner: &Owner, name: &str) -> (String, String) {
    let token = server.login_token(&owner.email, &owner.password).await;
    server.create_key(&token, &owner.workspace_id, name).await
}

/// How many of `statuses` were not 429.
fn admitted(statuses: &[StatusCode]) -> usize {
    statuses
        .iter()
        .filter(|s| **s != StatusCode::TOO_MANY_REQUESTS)
        .count()
}

#[track_caller]
fn assert_within_bound(admitted: usize, limit: usize, what: &str) {
    assert!(
        (limit..=limit + MOST_ADMITTED - 60).contains(&admitted),
        "{what}: {admitted} answers other than 429 for a limit of {limit}"
    );
}

/// The attack: a client spreads one key's requests over two instances. Before limits were shared each
/// instance had its own window, and 150 requests got 119 answers.
async fn two_instances_share_one_keys_limit(db: Db) {
    let Some(url) = shared_redis().await else {
        return;
    };
    let prefix = test_prefix();
    let Some(deployment) =
        deployment(db, &url, &prefix, &[("HEFFL_RATE_LIMIT_PER_MINUTE", "60")]).await
    else {
        return;
    };
    let owner = deployment.bootstrap("Acme", "owner@example.com").await;
    let a = deployment.serve("a").await;
    let b = deployment.serve("b").await;
    for server in [&a, &b] {
        server.until_sharing_with(2.0).await;
    }
    let (key_id, key) = owner_key(&a, &owner, "round robin").await;

    let mut statuses = Vec::new();
    for i in 0..150 {
        let server = if i % 2 == 0 { &a } else { &b };
        statuses.push(server.me(&key).await);
    }
    assert_within_bound(
        admitted(&statuses),
        60,
        "150 requests alternating over 2 instances",
    );
    // Once refused, refused everywhere until the window ends: no 200 after the first 429.
    let first_refusal = statuses
        .iter()
        .position(|s| *s == StatusCode::TOO_MANY_REQUESTS)
        .expect("a refusal");
    assert!(
        statuses[first_refusal..]
            .iter()
            .filter(|s| **s == StatusCode::OK)
            .count()
            <= 1,
        "answers after the first 429: {statuses:?}"
    );

    // Every admitted request reached the shared count, and no refused one did.
    let shared_key = format!("{prefix}limit:key:{key_id}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        get_count(&url, &shared_key).await,
        admitted(&statuses) as u64
    );
}

/// docs/api.md §12's check, concurrently: the same key hit by 300 requests at once, round-robin over
/// three instances, gets 60–66 answers that aren't 429 (per-instance windows gave 180, and
/// before each instance's local share was capped, ~90 over two), and every admit is in the
/// shared count.
async fn a_burst_over_three_instances_stays_within_the_bound(db: Db) {
    let Some(url) = shared_redis().await else {
        return;
    };
    let prefix = test_prefix();
    let Some(deployment) =
        deployment(db, &url, &prefix, &[("HEFFL_RATE_LIMIT_PER_MINUTE", "60")]).await
    else {
        return;
    };
    let owner = deployment.bootstrap("Acme", "owner@example.com").await;
    let servers = [
        deployment.serve("a").await,
        deployment.serve("b").await,
        deployment.serve("c").await,
    ];
    for server in &servers {
        server.until_sharing_with(3.0).await;
    }
    let (key_id, key) = owner_key(&servers[0], &owner, "burst").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let url = servers[i % 3].url(ME);
        let client = servers[0].client.clone();
        let key = key.clone();
        tasks.spawn(async move {
            client
                .get(url)
                .header("x-api-key", key)
                .send()
                .await
                .expect("request")
                .status()
        });
    }
    let statuses = tasks.join_all().await;
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shared = get_count(&url, &format!("{prefix}limit:key:{key_id}")).await;
    let admitted = admitted(&statuses);
    eprintln!("burst: {admitted} admitted, shared count {shared}");
    // Every admitted request reached the shared count.
    assert_eq!(shared, admitted as u64);
    assert_within_bound(
        admitted,
        60,
        "300 concurrent requests round-robin over 3 instances",
    );
}

/// The leak-report throttle counts each address once across instances.
async fn leak_report_throttle_is_shared(db: Db) {
    let Some(url) = shared_redis().await else {
        return;
    };
    let prefix = test_prefix();
    let Some(deployment) = deployment(
        db,
        &url,
        &prefix,
        &[("HEFFL_LEAK_REPORTS_PER_MINUTE", "10")],
    )
    .await
    else {
        return;
    };
    let a = deployment.serve("a").await;
    let b = deployment.serve("b").await;
    for server in [&a, &b] {
        server.until_sharing_with(2.0).await;
    }
    let mut statuses = Vec::new();
    for i in 0..30 {
        let server = if i % 2 == 0 { &a } else { &b };
        let (status, body) = server
            .send(
                Method::POST,
                LEAK,
                None,
                Some(json!({ "keys": ["hk_live_notakey"] })),
            )
            .await;
        if !throttled(status, &body, "leak_reports_throttled") {
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
        statuses.push(status);
    }
    let admitted = admitted(&statuses);
    // 10 a minute for one address, over both instances (before: 10 on each, 20 in all).
    assert!(
        (10..=12).contains(&admitted),
        "{admitted} leak reports accepted: {statuses:?}"
    );
}

/// Redis killed and restarted: requests are served throughout (authentication never needs
/// Redis), the instance enforces the limit on its own meanwhile, warns once, shows the gauge,
/// and shares again within 5 s of Redis returning.
async fn redis_outage_keeps_serving_and_sharing_resumes(db: Db) {
    let mut redis = OwnRedis::start().await;
    let prefix = test_prefix();
    let Some(deployment) = deployment(
        db,
        &redis.url(),
        &prefix,
        &[("HEFFL_RATE_LIMIT_PER_MINUTE", "20")],
    )
    .await
    else {
        return;
    };
    let owner = deployment.bootstrap("Acme", "owner@example.com").await;
    let a = deployment.serve("a").await;
    a.until_shared_limits(1.0, RESUME_DEADLINE).await;
    let (_, before) = owner_key(&a, &owner, "before the outage").await;
    assert_eq!(a.me(&before).await, StatusCode::OK);
    // Load throughout the outage and the return: every request is answered, 200 or 429.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (_, load_key) = owner_key(&a, &owner, "load").await;
    let load = {
        let (client, url, key) = (a.client.clone(), a.url(ME), load_key);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let response = client.get(&url).header("x-api-key", &key).send().await;
                statuses.push(response.expect("an answer during the outage").status());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            statuses
        })
    };

    redis.kill().await;
    // Served at once, while the instance has not yet noticed, and after.
    assert_eq!(a.me(&before).await, StatusCode::OK);
    a.until_shared_limits(0.0, RESUME_DEADLINE).await;
    // Authentication never needs Redis: a key made during the outage works; its limit holds
    // on this instance alone.
    let (during_id, during) = owner_key(&a, &owner, "during the outage").await;
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(a.me(&during).await);
    }
    assert_eq!(admitted(&statuses), 20, "{statuses:?}");
    // Several failed health checks later, still one warning for this outage.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let warnings = a.stderr_text().matches("Redis unreachable").count();
    assert_eq!(warnings, 1, "stderr:\n{}", a.stderr_text());

    redis.restart().await;
    let resumed = a.until_shared_limits(1.0, RESUME_DEADLINE).await;
    eprintln!("shared limits resumed {resumed:?} after Redis returned");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = load.await.expect("the load task");
    assert!(statuses.len() > 100, "only {} requests", statuses.len());
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Sharing again: a fresh key's admits reach the restarted (empty) Redis.
    let (after_id, after) = owner_key(&a, &owner, "after the outage").await;
    for _ in 0..3 {
        assert_eq!(a.me(&after).await, StatusCode::OK);
    }
    let shared_key = format!("{prefix}limit:key:{after_id}");
    let deadline = Instant::now() + Duration::from_secs(1);
    while get_count(&redis.url(), &shared_key).await != 3 {
        assert!(
            Instant::now() < deadline,
            "admits never reached Redis after it returned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What was admitted during the outage is not replayed into the new Redis.
    assert_eq!(
        get_count(&redis.url(), &format!("{prefix}limit:key:{during_id}")).await,
        0
    );
    assert!(
        a.stderr_text().contains("limits are shared"),
        "stderr:\n{}",
        a.stderr_text()
    );
}

/// A well-formed key (right prefix, length and checksum) that no deployment issued.
/// A scanner sends `count` distinct unknown keys, alternating over `servers`; returns, per
/// server, how many were looked up (401 `invalid_api_key`: each one a database lookup).
async fn scan(servers: &[&Server], count: usize) -> Vec<usize> {
    let mut looked_up = vec![0; servers.len()];
    for i in 0..count {
        let n = i % servers.len();
        let (status, body) = servers[n]
            .send_with_key(Method::GET, ME, &unknown_key(), None)
            .await;
        if !throttled(status, &body, "auth_throttled") {
            assert_unauthorized(status, &body, "invalid_api_key");
            looked_up[n] += 1;
        }
    }
    looked_up
}

/// A guesser tries `count` wrong passwords for `email`, alternating over `servers`; returns,
/// per server, how many were answered (401) rather than throttled.
async fn guess(servers: &[&Server], email: &str, count: usize) -> Vec<usize> {
    let mut answered = vec![0; servers.len()];
    for i in 0..count {
        let n = i % servers.len();
        let (status, body) = servers[n].login(email, "wrong-guess-wrong").await;
        if !throttled(status, &body, "login_throttled") {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            answered[n] += 1;
        }
    }
    answered
}

const THROTTLE_LIMIT: usize = 10;

/// The bound of docs/scaling.md for a limit of 10 over two instances: `limit + 2·N·C` with a local share
/// `C` of 1.
const THROTTLE_BOUND: usize = THROTTLE_LIMIT + 2 * 2;

#[track_caller]
fn assert_shared_throttle(per_server: &[usize], most: usize, what: &str) {
    let total: usize = per_server.iter().sum();
    assert!(
        (THROTTLE_LIMIT..=most).contains(&total),
        "{what}: {per_server:?} over two instances sharing a limit of {THROTTLE_LIMIT}"
    );
}

fn throttles_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("HEFFL_AUTH_FAILURES_PER_MINUTE", "10"),
        ("HEFFL_LOGIN_ATTEMPTS_PER_MINUTE", "10"),
    ]
}

/// The attack of docs/api.md §12 on the throttles: a scanner or a password guesser that alternates
/// over the instances gets each budget once, not once per instance. (Before, each instance
/// had its own: 20 lookups and 20 guesses.)
async fn the_throttles_are_shared(db: Db) {
    let Some(url) = shared_redis().await else {
        return;
    };
    let prefix = test_prefix();
    let Some(deployment) = deployment(db, &url, &prefix, &throttles_env()).await else {
        return;
    };
    let owner = deployment.bootstrap("Acme", "owner@example.com").await;
    let a = deployment.serve("a").await;
    let b = deployment.serve("b").await;
    for server in [&a, &b] {
        server.until_sharing_with(2.0).await;
    }
    let looked_up = scan(&[&a, &b], 40).await;
    eprintln!("throttles: unknown keys looked up per instance {looked_up:?}");
    // An unknown key is counted once its lookup says so: each instance makes one more lookup,
    // the one whose count Redis refuses, before it refuses the address itself.
    assert_shared_throttle(&looked_up, THROTTLE_BOUND + 2, "unknown keys looked up");
    // 25: under the per-address limit (3 × 10), so only the pair's limit refuses.
    let answered = guess(&[&a, &b], "victim@example.com", 25).await;
    eprintln!("throttles: sign-in guesses answered per instance {answered:?}");
    assert_shared_throttle(&answered, THROTTLE_BOUND, "sign-in guesses answered");
    // The guesser's address is throttled for that email only: the owner still signs in.
    let (status, body) = b.login(&owner.email, &owner.password).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Redis down: each instance still throttles, on its own (at most the limit on each).
async fn without_redis_each_instance_still_throttles(db: Db) {
    let mut redis = OwnRedis::start().await;
    let prefix = test_prefix();
    let Some(deployment) = deployment(db, &redis.url(), &prefix, &throttles_env()).await else {
        return;
    };
    deployment.bootstrap("Acme", "owner@example.com").await;
    let a = deployment.serve("a").await;
    let b = deployment.serve("b").await;
    for server in [&a, &b] {
        server.until_sharing_with(2.0).await;
    }
    redis.kill().await;
    for server in [&a, &b] {
        server.until_shared_limits(0.0, RESUME_DEADLINE).await;
    }
    let looked_up = scan(&[&a, &b], 60).await;
    assert_eq!(
        looked_up,
        [THROTTLE_LIMIT, THROTTLE_LIMIT],
        "unknown keys looked up on each instance"
    );
    let answered = guess(&[&a, &b], "victim@example.com", 60).await;
    assert_eq!(
        answered,
        [THROTTLE_LIMIT, THROTTLE_LIMIT],
        "sign-in guesses answered on each instance"
    );
}

/// A bad HEFFL_REDIS_URL stops start-up with a message naming it, and never prints the
/// password the URL may carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_redis_url_stops_start_up_without_printing_it() {
    let Some(deployment) = Deployment::create_with(Db::Sqlite, &[]).await else {
        return;
    };
    let out = deployment
        .run_with(
            &["serve"],
            None,
            &[("HEFFL_REDIS_URL", "rediss-nope://:hunter2secret@cache:6379")],
        )
        .await;
    out.assert_failure();
    assert!(
        out.stderr.contains("HEFFL_REDIS_URL"),
        "stderr: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("hunter2secret"),
        "stderr: {}",
        out.stderr
    );
}

on_each_db!(
    two_instances_share_one_keys_limit,
    a_burst_over_three_instances_stays_within_the_bound,
    leak_report_throttle_is_shared,
    redis_outage_keeps_serving_and_sharing_resumes,
    the_throttles_are_shared,
    without_redis_each_instance_still_throttles,
);

/// Whether the answer is a 429 for `reason`; when it is, its whole docs/api.md §4 shape is checked.
#[track_caller]
fn throttled(status: StatusCode, body: &serde_json::Value, reason: &str) -> bool {
    if status != StatusCode::TOO_MANY_REQUESTS {
        return false;
    }
    assert_too_many(status, body, reason);
    true
}
