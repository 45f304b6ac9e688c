//! Crash safety: the real binary is killed with SIGKILL while 16 clients create, roll and
//! revoke keys, members are removed and leads written; after a restart (with no repair step)
//! the database tells one consistent story. Five rounds per database, on one database.

use crate::common::{query_count, raw_pool, Db};
use crate::on_each_db;
use crate::process_harness::{Deployment, Server};
use heffl_api::domain::ids::{UserId, WorkspaceId};
use heffl_api::domain::permissions::Role;
use heffl_api::domain::time::Timestamp;
use heffl_api::store::{Actor, ClientInfo, MemberActor, MemberChange, NewUser, Store};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;
const CLIENTS: usize = 16;
/// Clients whose member is removed during each round, while they work.
const REMOVED_PER_ROUND: usize = 4;
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// A flush that had started when the kill came may also be lost with it.
const FLUSH_SLACK: Duration = Duration::from_millis(500);

struct Session {
    user_id: String,
    token: String,
}

/// A key the owner made for one client's integration traffic; never revoked, so every request
/// it makes is counted.
struct UsageKey {
    id: String,
    key: String,
}

/// What one client saw before the kill.
#[derive(Default)]
struct Seen {
    /// When each request made with its usage key was answered 2xx.
    usage_answered: Vec<Instant>,
    /// Requests sent with its usage key, answered or not.
    usage_sent: u64,
}

async fn session(store: &Store, user_id: &str) -> Session {
    let token = heffl_api::domain::session_token::generate();
    let expires = Timestamp(Timestamp::now().0 + 3_600_000);
    store
        .sessions()
        .create(
            &token.digest,
            &UserId::parse(user_id).expect("an id"),
            expires,
        )
        .await
        .expect("session");
    Session {
        user_id: user_id.to_owned(),
        token: token.token,
    }
}

/// Adds a member through the store, as an operator's tooling would (not over HTTP).
async fn add_member(store: &Store, workspace_id: &str, owner_id: &str, email: &str) -> Session {
    let client = ClientInfo::default();
    let owner_id = UserId::parse(owner_id).expect("an id");
    let actor = MemberActor::user(&owner_id, Role::Owner, &client);
    let user = NewUser {
        email,
        name: email,
        password_hash: "not-a-usable-hash",
    };
    let created = store
        .users()
        .create(&user, Actor::Operator(Some("crash-test")))
        .await
        .expect("create user")
        .expect("a new email");
    let change = store
        .members()
        .add(
            &WorkspaceId::parse(workspace_id).expect("an id"),
            &created.id,
            Role::Admin,
            &actor,
        )
        .await
        .expect("add member");
    let MemberChange::Done(Some(member)) = change else {
        panic!("member not added: {change:?}");
    };
    session(store, &member.user_id).await
}

fn keys_path(workspace_id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/api-keys")
}

/// Where the clients send their requests: the server of the moment, by address.
#[derive(Clone)]
struct Target {
    client: reqwest::Client,
    base: String,
}

impl Target {
    fn of(server: &Server) -> Target {
        Target {
            client: server.client.clone(),
            base: server.url(""),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// One request; `None` once the server is gone.
async fn call(
    server: &Target,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    key: Option<&str>,
    body: Option<Value>,
) -> Option<(StatusCode, Value)> {
    let mut request = server.client.request(method, server.url(path));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.ok()?;
    let status = response.status();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    Some((status, body))
}

/// A client's loop: its own keys created, rolled and revoked as its member; leads written and
/// `/api/v1/me` read with its usage key. Runs until the server is gone.
async fn work(server: Target, workspace_id: String, member: Session, usage: UsageKey) -> Seen {
    let mut seen = Seen::default();
    let mut own: Vec<String> = Vec::new();
    let token = member.token.as_str();
    for n in 0u64.. {
        let answer = match n % 5 {
            0 => {
                let answer = call(
                    &server,
                    Method::POST,
                    &keys_path(&workspace_id),
                    Some(token),
                    None,
                    Some(json!({ "name": format!("k{n}") })),
                )
                .await;
                if let Some((StatusCode::CREATED, body)) = &answer {
                    own.push(body["id"].as_str().expect("id").to_owned());
                }
                answer.map(|_| ())
            }
            1 => match own.pop() {
                Some(id) => {
                    let path = format!("{}/{id}/roll", keys_path(&workspace_id));
                    let answer = call(&server, Method::POST, &path, Some(token), None, None).await;
                    match &answer {
                        Some((StatusCode::CREATED, body)) => {
                            own.push(body["id"].as_str().expect("id").to_owned())
                        }
                        _ => own.push(id),
                    }
                    answer.map(|_| ())
                }
                None => Some(()),
            },
            2 if own.len() > 2 => {
                let id = own.remove(0);
                let path = format!("{}/{id}/revoke", keys_path(&workspace_id));
                call(&server, Method::POST, &path, Some(token), None, None)
                    .await
                    .map(|_| ())
            }
            2 | 3 => {
                seen.usage_sent += 1;
                let body = json!({ "name": format!("Lead {n}"), "email": format!("lead{n}@example.test") });
                let answer = call(
                    &server,
                    Method::POST,
                    "/api/v1/leads",
                    None,
                    Some(&usage.key),
                    Some(body),
                )
                .await;
                if answer
                    .as_ref()
                    .is_some_and(|(status, _)| status.is_success())
                {
                    seen.usage_answered.push(Instant::now());
                }
                answer.map(|_| ())
            }
            _ => {
                seen.usage_sent += 1;
                let answer = call(
                    &server,
                    Method::GET,
                    "/api/v1/me",
                    None,
                    Some(&usage.key),
                    None,
                )
                .await;
                if answer
                    .as_ref()
                    .is_some_and(|(status, _)| status.is_success())
                {
                    seen.usage_answered.push(Instant::now());
                }
                answer.map(|_| ())
            }
        };
        if answer.is_none() {
            break;
        }
    }
    seen
}

async fn request_counts(store: &Store, ids: &[String]) -> HashMap<String, i64> {
    let db = raw_pool(store.url());
    let mut counts = HashMap::new();
    for id in ids {
        let count: i64 = sqlx::query_scalar("SELECT request_count FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_one(&db)
            .await
            .expect("request_count");
        counts.insert(id.clone(), count);
    }
    db.close().await;
    counts
}

async fn assert_none(store: &Store, what: &str, sql: &str) {
    let found = query_count(store, sql, &[]).await;
    assert_eq!(found, 0, "{what}: {found} rows of {sql}");
}

/// Everything that must hold after a crash, whatever moment it hit.
async fn assert_consistent(store: &Store, server: &Target, owner: &Session, workspace_id: &str) {
    assert_none(
        store,
        "keys without exactly one api_key.created event",
        "SELECT COUNT(*) FROM api_keys k WHERE (SELECT COUNT(*) FROM audit_events e \
         WHERE e.action = 'api_key.created' AND e.target_id = k.id) <> 1",
    )
    .await;
    assert_none(
        store,
        "api_key.created events of keys that do not exist",
        "SELECT COUNT(*) FROM audit_events e WHERE e.action = 'api_key.created' \
         AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = e.target_id)",
    )
    .await;
    assert_none(
        store,
        "replacements whose old key is missing, elsewhere or not given an end",
        "SELECT COUNT(*) FROM api_keys n LEFT JOIN api_keys o ON o.id = n.rolled_from \
         WHERE n.rolled_from IS NOT NULL \
         AND (o.id IS NULL OR o.workspace_id <> n.workspace_id OR o.expires_at IS NULL)",
    )
    .await;
    assert_none(
        store,
        "rolls without their api_key.rolled event",
        "SELECT COUNT(*) FROM api_keys n WHERE n.rolled_from IS NOT NULL AND NOT EXISTS \
         (SELECT 1 FROM audit_events e WHERE e.action = 'api_key.rolled' AND e.target_id = n.rolled_from)",
    )
    .await;
    assert_none(
        store,
        "api_key.rolled events without a replacement",
        "SELECT COUNT(*) FROM audit_events e WHERE e.action = 'api_key.rolled' AND NOT EXISTS \
         (SELECT 1 FROM api_keys n WHERE n.rolled_from = e.target_id)",
    )
    .await;
    assert_none(
        store,
        "memberships without their user",
        "SELECT COUNT(*) FROM memberships m LEFT JOIN users u ON u.id = m.user_id WHERE u.id IS NULL",
    )
    .await;
    assert_none(
        store,
        "keys revoked for a removal without a member.removed event",
        "SELECT COUNT(*) FROM api_keys k WHERE k.revoke_reason = 'owner_removed' AND NOT EXISTS \
         (SELECT 1 FROM audit_events e WHERE e.action = 'member.removed' \
          AND e.workspace_id = k.workspace_id AND e.target_id = k.created_by)",
    )
    .await;
    assert_none(
        store,
        "removed members still in the workspace",
        "SELECT COUNT(*) FROM audit_events e JOIN memberships m \
         ON m.workspace_id = e.workspace_id AND m.user_id = e.target_id \
         WHERE e.action = 'member.removed'",
    )
    .await;
    // Each member.removed event counts exactly the keys its removal revoked.
    let pool = raw_pool(store.url());
    let removals: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT target_id, details FROM audit_events WHERE action = 'member.removed'",
    )
    .fetch_all(&pool)
    .await
    .expect("removals");
    pool.close().await;
    for (user_id, details) in removals {
        let details: Value =
            serde_json::from_str(details.as_deref().unwrap_or("null")).expect("details");
        let revoked = query_count(
            store,
            "SELECT COUNT(*) FROM api_keys WHERE created_by = $1 AND revoke_reason = 'owner_removed'",
            &[&user_id],
        )
        .await;
        assert_eq!(
            details["revokedKeys"].as_i64(),
            Some(revoked),
            "member.removed of {user_id} says {details}, {revoked} keys revoked for it"
        );
    }

    // The API tells the same story of every roll.
    let (status, page) = call(
        server,
        Method::GET,
        &format!("{}?limit=100", keys_path(workspace_id)),
        Some(&owner.token),
        None,
        None,
    )
    .await
    .expect("list keys");
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed: Vec<Value> = page["items"].as_array().cloned().unwrap_or_default();
    let by_id: HashMap<&str, &Value> = listed
        .iter()
        .filter_map(|k| Some((k["id"].as_str()?, k)))
        .collect();
    for key in &listed {
        if let Some(old) = key["rolledFrom"].as_str() {
            if let Some(old_key) = by_id.get(old) {
                assert_eq!(old_key["replacedBy"], key["id"], "{old_key} / {key}");
            }
        }
        if let Some(new) = key["replacedBy"].as_str() {
            if let Some(new_key) = by_id.get(new) {
                assert_eq!(new_key["rolledFrom"], key["id"], "{new_key} / {key}");
            }
        }
    }
}

async fn crash_rounds(db: Db) {
    let Some(deployment) = Deployment::create_with(
        db,
        &[
            ("HEFFL_USAGE_FLUSH_INTERVAL", "1s"),
            ("HEFFL_RATE_LIMIT_PER_MINUTE", "0"),
            ("HEFFL_AUTH_FAILURES_PER_MINUTE", "0"),
        ],
    )
    .await
    else {
        return;
    };
    let owner_account = deployment.bootstrap("Crash", "owner@crash.test").await;
    let workspace_id = owner_account.workspace_id.clone();
    let store = deployment.store().await;
    let owner = session(&store, &owner_account.user_id).await;
    let mut server = deployment.serve("before the first crash").await;
    let mut target = Target::of(&server);

    let mut usage_keys = Vec::new();
    for i in 0..CLIENTS {
        let (status, body) = call(
            &target,
            Method::POST,
            &keys_path(&workspace_id),
            Some(&owner.token),
            None,
            Some(json!({ "name": format!("usage {i}") })),
        )
        .await
        .expect("server up");
        assert_eq!(status, StatusCode::CREATED, "{body}");
        usage_keys.push((
            body["id"].as_str().expect("id").to_owned(),
            body["key"].as_str().expect("key").to_owned(),
        ));
    }
    let usage_ids: Vec<String> = usage_keys.iter().map(|(id, _)| id.clone()).collect();

    for round in 0..ROUNDS {
        let baseline = request_counts(&store, &usage_ids).await;
        let mut members = Vec::new();
        for i in 0..CLIENTS {
            let email = format!("r{round}c{i}@crash.test");
            members.push(add_member(&store, &workspace_id, &owner.user_id, &email).await);
        }
        let removed: Vec<String> = members[CLIENTS - REMOVED_PER_ROUND..]
            .iter()
            .map(|m| m.user_id.clone())
            .collect();

        let mut clients = Vec::new();
        for (member, (id, key)) in members.into_iter().zip(&usage_keys) {
            let usage = UsageKey {
                id: id.clone(),
                key: key.clone(),
            };
            clients.push((
                usage.id.clone(),
                tokio::spawn(work(target.clone(), workspace_id.clone(), member, usage)),
            ));
        }
        let (remover_delay, kill_after) = {
            let mut rng = rand::thread_rng();
            (rng.gen_range(100..600), rng.gen_range(600..1500))
        };
        let remover = {
            let target = target.clone();
            let workspace_id = workspace_id.clone();
            let owner_token = owner.token.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(remover_delay)).await;
                for user_id in removed {
                    let path = format!("/app/v1/workspaces/{workspace_id}/members/{user_id}");
                    if call(
                        &target,
                        Method::DELETE,
                        &path,
                        Some(&owner_token),
                        None,
                        None,
                    )
                    .await
                    .is_none()
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };

        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        let killed_at = Instant::now();
        server.sigkill().await;
        let mut seen = HashMap::new();
        for (id, client) in clients {
            seen.insert(id, client.await.expect("client task"));
        }
        remover.await.expect("remover task");

        // Started again as it is: no repair step.
        server = deployment.serve("after a crash").await;
        target = Target::of(&server);
        let (status, _) = call(&target, Method::GET, "/readyz", None, None, None)
            .await
            .expect("readyz");
        assert_eq!(
            status,
            StatusCode::OK,
            "round {round}: not ready after the crash"
        );
        assert_consistent(&store, &target, &owner, &workspace_id).await;

        // Usage: what was lost is at most what was answered in the last flush interval.
        let after = request_counts(&store, &usage_ids).await;
        let window_start = killed_at - FLUSH_INTERVAL - FLUSH_SLACK;
        for id in &usage_ids {
            let seen = &seen[id];
            let recorded = after[id] - baseline[id];
            let answered = seen.usage_answered.len() as i64;
            let recent = seen
                .usage_answered
                .iter()
                .filter(|at| **at >= window_start)
                .count() as i64;
            assert!(
                recorded <= seen.usage_sent as i64,
                "round {round}, key {id}: {recorded} recorded, only {} sent",
                seen.usage_sent
            );
            assert!(
                answered - recorded <= recent,
                "round {round}, key {id}: {answered} answered, {recorded} recorded: {} lost, \
                 but only {recent} were answered in the last flush interval",
                answered - recorded
            );
        }
        eprintln!("crash round {round}: killed after {kill_after} ms; consistent");
    }
    // The rounds did what they claim to test.
    for (what, sql) in [
        (
            "rolled keys",
            "SELECT COUNT(*) FROM api_keys WHERE rolled_from IS NOT NULL",
        ),
        (
            "revoked keys",
            "SELECT COUNT(*) FROM api_keys WHERE revoke_reason IS NOT NULL",
        ),
        (
            "keys revoked by a removal",
            "SELECT COUNT(*) FROM api_keys WHERE revoke_reason = 'owner_removed'",
        ),
        (
            "removals",
            "SELECT COUNT(*) FROM audit_events WHERE action = 'member.removed'",
        ),
        ("leads", "SELECT COUNT(*) FROM leads"),
    ] {
        assert!(
            query_count(&store, sql, &[]).await > 0,
            "no {what} in {ROUNDS} rounds"
        );
    }
    store.close().await;
}

on_each_db!(crash_rounds);
