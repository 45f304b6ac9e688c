//! Cache misses looked up together: on PostgreSQL a miss while no lookup is in flight
//! is asked for at once, and the misses that arrive while it is share one `digest = ANY($1)`
//! query; each request still gets its own key's answer, whatever the others in the batch are
//! (valid, revoked, unknown, the same key twice). On SQLite each miss stays a query of its own,
//! with the same answers.
//!
//! The tests run on a current-thread runtime: the lookups spawned together all start (the first
//! sends its query, the rest queue) before the batcher's task can run, so the query count is
//! deterministic, not a race won.

use crate::common::{assert_unauthorized, unknown_key, Account, CreatedKey, Db, TestApp};
use crate::test_app::Reply;
use heffl_api::domain::api_key::{self, KeyEnv};
use heffl_api::verify::Lookup;
use reqwest::StatusCode;
use std::future::Future;
use tokio::task::JoinSet;

/// Runs the futures as tasks and returns their outputs in the order given. On the test's
/// current-thread runtime none of them runs before all are spawned.
async fn all<T: Send + 'static>(futures: Vec<impl Future<Output = T> + Send + 'static>) -> Vec<T> {
    let mut set = JoinSet::new();
    for (index, future) in futures.into_iter().enumerate() {
        set.spawn(async move { (index, future.await) });
    }
    let mut outputs: Vec<(usize, T)> = set.join_all().await;
    outputs.sort_by_key(|(index, _)| *index);
    outputs.into_iter().map(|(_, output)| output).collect()
}

fn without_cache(config: &mut heffl_api::config::Config) {
    config.cache_capacity = 0;
}

fn digest(key: &str) -> [u8; 32] {
    *api_key::parse(key.as_bytes(), &KeyEnv::default())
        .expect("a well-formed key")
        .digest()
        .as_bytes()
}

struct Keys {
    account: Account,
    valid: Vec<CreatedKey>,
    revoked: CreatedKey,
    unknown: Vec<String>,
}

async fn keys(app: &TestApp) -> Keys {
    let account = app.bootstrap("Batch", "owner@batch.test").await;
    let mut valid = Vec::new();
    for i in 0..4 {
        valid.push(app.create_key(&account, &format!("valid {i}")).await);
    }
    let revoked = app.create_key(&account, "revoked").await;
    app.revoke(&account, &revoked.id).await.ok();
    Keys {
        account,
        valid,
        revoked,
        unknown: vec![unknown_key(), unknown_key()],
    }
}

#[track_caller]
fn assert_found(lookup: &Lookup, key: &CreatedKey, account: &Account, revoked: bool) {
    let Lookup::Found(row) = lookup else {
        panic!("{}: expected the key, got {lookup:?}", key.id);
    };
    assert_eq!(row.key_id.as_str(), key.id);
    assert_eq!(row.workspace_id.as_str(), account.workspace_id);
    assert_eq!(row.user_id.as_str(), account.user_id);
    assert_eq!(row.revoked_at.is_some(), revoked, "{}: revoked_at", key.id);
}

async fn mixed_misses_get_their_own_answers(db: Db) {
    let Some(app) = TestApp::start_with(db, without_cache).await else {
        return;
    };
    let keys = keys(&app).await;
    // Three valid keys, the revoked one, two unknown ones, and the first valid key again.
    let batched = &keys.valid[..3];
    let mut asked: Vec<[u8; 32]> = batched.iter().map(|k| digest(&k.key)).collect();
    asked.push(digest(&keys.revoked.key));
    asked.extend(keys.unknown.iter().map(|k| digest(k)));
    asked.push(digest(&keys.valid[0].key));

    let queries_before = app.verifier.key_lookup_queries();
    let lookups_before = app.verifier.key_cache().lookup_count();
    let lookups = asked.iter().map(|digest| {
        let (verifier, digest) = (app.verifier.clone(), *digest);
        async move { verifier.resolve_miss(&digest).await.expect("lookup") }
    });
    let answers: Vec<Lookup> = all(lookups.collect()).await;

    for (answer, key) in answers.iter().zip(batched) {
        assert_found(answer, key, &keys.account, false);
    }
    assert_found(&answers[3], &keys.revoked, &keys.account, true);
    assert!(matches!(answers[4], Lookup::Unknown), "{:?}", answers[4]);
    assert!(matches!(answers[5], Lookup::Unknown), "{:?}", answers[5]);
    assert_found(&answers[6], &keys.valid[0], &keys.account, false);

    // Six distinct digests; the repeated one joins the first one's lookup unless that one has
    // already landed (SQLite answers from a worker thread, so it may have).
    let lookups = app.verifier.key_cache().lookup_count() - lookups_before;
    assert!(
        lookups == 6 || lookups == 7,
        "{lookups} lookups for 7 misses"
    );
    let batched_queries = app.verifier.key_lookup_queries();
    match (db, queries_before, batched_queries) {
        (Db::Postgres, Some(before), Some(after)) => {
            // The first alone, the rest behind it in one query (and the repeated key in another
            // if it came after the first had landed).
            let queries = after - before;
            assert!(
                queries <= lookups - 4,
                "{queries} queries for {lookups} lookups"
            );
        }
        (Db::Sqlite, None, None) => {}
        other => panic!("unexpected query counts {other:?}"),
    }

    // A lone miss afterwards is answered on its own, without waiting for company.
    let lonely = app
        .verifier
        .resolve_miss(&digest(&keys.valid[3].key))
        .await
        .expect("lookup");
    assert_found(&lonely, &keys.valid[3], &keys.account, false);
    if let (Some(before), Some(after)) = (batched_queries, app.verifier.key_lookup_queries()) {
        assert_eq!(after - before, 1, "the lone miss is one query of its own");
    }
}

/// Through HTTP: concurrent requests with the keys above answer exactly as one at a time would.
async fn concurrent_requests_answer_per_key(db: Db) {
    let Some(app) = TestApp::start_with(db, without_cache).await else {
        return;
    };
    let keys = keys(&app).await;
    // Each key, and what it must get: its own key id, or a refusal with this reason.
    let mut requests: Vec<(String, Result<&str, &str>)> = Vec::new();
    for key in &keys.valid {
        requests.push((key.key.clone(), Ok(key.id.as_str())));
    }
    requests.push((keys.revoked.key.clone(), Err("revoked_api_key")));
    for key in &keys.unknown {
        requests.push((key.clone(), Err("invalid_api_key")));
    }
    let queries_before = app.verifier.key_lookup_queries();
    // Built by hand: each request runs on a task of its own, which a typed call, borrowing the
    // app, cannot.
    let sends = requests.iter().map(|(key, _)| {
        let request = app
            .client
            .get(app.url("/api/v1/me"))
            .header("x-api-key", key);
        async move {
            let Reply { status, body, .. } =
                Reply::read(request.send().await.expect("request")).await;
            (status, body)
        }
    });
    let answers = all(sends.collect()).await;
    let queries_after = app.verifier.key_lookup_queries();
    for ((status, body), (_, expected)) in answers.into_iter().zip(&requests) {
        match expected {
            // The valid keys share a workspace and user: only the key id tells a batch that
            // handed one key's row to another.
            Ok(key_id) => {
                assert_eq!(status, StatusCode::OK, "{body}");
                assert_eq!(body["apiKey"]["id"], *key_id, "{body}");
                assert_eq!(body["workspace"]["id"], keys.account.workspace_id.as_str());
                assert_eq!(body["user"]["id"], keys.account.user_id.as_str());
            }
            Err(reason) => assert_unauthorized(status, &body, reason),
        }
    }
    let body = app.me(&keys.valid[2].key).await.ok();
    assert_eq!(body["apiKey"]["id"], keys.valid[2].id.as_str());
    if let (Some(before), Some(after)) = (queries_before, queries_after) {
        // However the requests happened to arrive, never more queries than misses (seven).
        assert!(
            after - before >= 1 && after - before <= requests.len() as u64,
            "{before} -> {after}"
        );
    }
}

mod sqlite {
    use crate::common::Db;

    #[tokio::test]
    async fn mixed_misses_get_their_own_answers() {
        super::mixed_misses_get_their_own_answers(Db::Sqlite).await;
    }

    #[tokio::test]
    async fn concurrent_requests_answer_per_key() {
        super::concurrent_requests_answer_per_key(Db::Sqlite).await;
    }
}

mod postgres {
    use crate::common::Db;

    #[tokio::test]
    async fn mixed_misses_get_their_own_answers() {
        super::mixed_misses_get_their_own_answers(Db::Postgres).await;
    }

    #[tokio::test]
    async fn concurrent_requests_answer_per_key() {
        super::concurrent_requests_answer_per_key(Db::Postgres).await;
    }
}
