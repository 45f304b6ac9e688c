//! Issue 4: key verification at full speed without serving stale answers. The verification
//! cache, its change feed (LISTEN/NOTIFY on PostgreSQL, the `key_events` poll on SQLite),
//! batched usage, per-key rate limits and the failed-authentication throttle.
//!
//! What needs several processes (a revoke on one instance holding on another, the CLI, a killed
//! listener) or a process's own metrics (counters are process-global, and the in-process test
//! apps run in parallel) uses real `serve` processes; the rest uses the in-process `TestApp`.
//! Propagation times are printed with `eprintln!` so they can be quoted: run with
//! `-- --nocapture`.

use crate::common::{
    assert_error, open_store, parts, postgres_admin_url, test_config, Account, Db, TestApp, TestDb,
};
use heffl_api::api_key::{ApiKey, KeyDigest, KeyEnv};
use heffl_api::key_cache::Lookup;
use heffl_api::store::Store;
use heffl_api::time::Timestamp;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;
use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_heffl-api");
/// Migrations plus the argon2 warm-up; generous because CI machines are busy.
const READY_DEADLINE: Duration = Duration::from_secs(30);
const CLI_DEADLINE: Duration = Duration::from_secs(30);
/// How long set-up steps that only wait for background tasks may take.
const SETTLE_DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
/// SPEC §7: a revoke holds on every process within one second.
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(1);
const ME: &str = "/api/v1/me";
const LEADS: &str = "/api/v1/leads";
const HIT: &str = "heffl_key_cache_total{result=\"hit\"}";
const MISS: &str = "heffl_key_cache_total{result=\"miss\"}";

// ---------------------------------------------------------------------------------------------
// Process harness
// ---------------------------------------------------------------------------------------------

/// A port nobody listens on right now; the server must be told its address up front.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// One database and working directory shared by every process of a deployment.
struct Cluster {
    db: TestDb,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// What `heffl-api bootstrap` printed.
struct Owner {
    workspace_id: String,
    email: String,
    password: String,
}

impl Cluster {
    async fn create(db: Db, extra: &[(&str, &str)]) -> Option<Cluster> {
        let db = TestDb::create(db).await?;
        let dir = tempfile::tempdir().expect("working dir");
        let mut env: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), db.url.clone()),
            ("HEFFL_LOGIN_ATTEMPTS_PER_MINUTE".into(), "1000".into()),
            ("HEFFL_SHUTDOWN_GRACE".into(), "5s".into()),
            // Polling loops make many requests with one key from one address; the tests that
            // exercise these limits turn them on in-process.
            ("HEFFL_RATE_LIMIT_PER_MINUTE".into(), "0".into()),
            ("HEFFL_AUTH_FAILURES_PER_MINUTE".into(), "0".into()),
        ];
        for (name, value) in extra {
            env.retain(|(k, _)| k != name);
            env.push((name.to_string(), value.to_string()));
        }
        Some(Cluster { db, dir, env })
    }

    /// The binary with nothing inherited from the developer's shell, in a directory with no
    /// stray `.env`.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs a one-shot command that must succeed; returns its stdout.
    async fn cli(&self, args: &[&str]) -> String {
        let output = tokio::time::timeout(CLI_DEADLINE, self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("heffl-api {args:?} did not finish in {CLI_DEADLINE:?}"))
            .expect("run heffl-api");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "heffl-api {args:?} exited with {}; stdout: {stdout}; stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    async fn bootstrap(&self, workspace: &str, email: &str) -> Owner {
        let stdout = self
            .cli(&["bootstrap", "--workspace", workspace, "--email", email])
            .await;
        let line: Value = serde_json::from_str(stdout.trim()).expect("bootstrap prints JSON");
        Owner {
            workspace_id: line["workspaceId"]
                .as_str()
                .expect("workspaceId")
                .to_owned(),
            email: email.to_owned(),
            password: line["password"].as_str().expect("password").to_owned(),
        }
    }

    async fn serve(&self, name: &'static str) -> Server {
        let port = free_port();
        let mut command = self.command(&["serve"]);
        command.env("HEFFL_BIND", format!("127.0.0.1:{port}"));
        let mut child = command.spawn().expect("spawn heffl-api serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        // Read continuously: a full pipe would block the server's logging.
        tokio::spawn(async move {
            let mut buffer = [0u8; 8192];
            loop {
                match pipe.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().expect("lock").extend_from_slice(&buffer[..n]),
                }
            }
        });
        let mut server = Server {
            name,
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            stderr,
        };
        server.wait_ready().await;
        server
    }

    /// A direct view of the database (the binary has applied the migrations).
    async fn store(&self) -> Store {
        open_store(&test_config(&self.db.url)).await
    }

    fn pg_database_name(&self) -> String {
        self.db
            .url
            .rsplit_once('/')
            .map(|(_, name)| name.to_owned())
            .expect("database name in the URL")
    }
}

/// A running `serve` process; dropping it kills the process (and prints its log on a panic).
struct Server {
    name: &'static str,
    child: Child,
    base: String,
    client: Client,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- heffl-api {} stderr ---\n{}",
                self.name,
                String::from_utf8_lossy(&self.stderr.lock().expect("lock"))
            );
        }
        let _ = self.child.start_kill();
    }
}

impl Server {
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "heffl-api {} exited with {status} before it was ready",
                    self.name
                );
            }
            let probe = self
                .client
                .get(format!("{}/healthz", self.base))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if probe.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "heffl-api {} not ready within {READY_DEADLINE:?}",
                self.name
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        parts(request.send().await.expect("request")).await
    }

    async fn dashboard(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.request(method, path, Some(token), None, body).await
    }

    async fn api(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.request(method, path, None, Some(key), body).await
    }

    async fn metrics(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("metrics text")
    }

    async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

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

    async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .request(
                Method::POST,
                "/app/v1/auth/login",
                None,
                None,
                Some(json!({ "email": email, "password": password })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login of {email}: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Returns (id, key).
    async fn create_key(&self, token: &str, workspace_id: &str, name: &str) -> (String, String) {
        let (status, body) = self
            .dashboard(
                Method::POST,
                &format!("/app/v1/workspaces/{workspace_id}/api-keys"),
                token,
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create key: {body}");
        (
            body["id"].as_str().expect("id").to_owned(),
            body["key"].as_str().expect("key").to_owned(),
        )
    }

    /// Adds a new user with `role`; returns (user id, their session token).
    async fn add_member(
        &self,
        owner_token: &str,
        workspace_id: &str,
        email: &str,
        role: &str,
    ) -> (String, String) {
        let password = format!("pw-{}", heffl_api::base62::random_string(16));
        let (status, body) = self
            .dashboard(
                Method::POST,
                &format!("/app/v1/workspaces/{workspace_id}/members"),
                owner_token,
                Some(json!({ "email": email, "role": role, "name": email, "password": password })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "add member: {body}");
        let user_id = body["userId"].as_str().expect("userId").to_owned();
        (user_id, self.login(email, &password).await)
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
            let (status, body) = self.api(Method::GET, ME, key, None).await;
            assert_eq!(status, StatusCode::OK, "{}: {body}", self.name);
            let after = self.metric(HIT).await;
            in_a_row = if after == before + 1.0 {
                in_a_row + 1
            } else {
                0
            };
        }
    }

    /// Repeats a request (every `POLL`) while it still succeeds with `ok`, until it is refused
    /// as expected; fails if that takes longer than `deadline` from `since`. Returns how long it
    /// took and how many requests still succeeded meanwhile.
    #[allow(clippy::too_many_arguments)]
    async fn until_refused(
        &self,
        since: Instant,
        deadline: Duration,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
        ok: StatusCode,
        refused: (StatusCode, &str, &str),
    ) -> (Duration, usize) {
        let mut stale = 0;
        loop {
            let (status, answer) = self.api(method.clone(), path, key, body.clone()).await;
            let elapsed = since.elapsed();
            if status == refused.0 {
                assert_error(status, &answer, refused.0, refused.1, Some(refused.2));
                assert!(
                    elapsed <= deadline,
                    "{}: refused only after {elapsed:?} (limit {deadline:?})",
                    self.name
                );
                return (elapsed, stale);
            }
            assert_eq!(status, ok, "{}: {answer}", self.name);
            stale += 1;
            assert!(
                elapsed < deadline,
                "{}: still {ok} {elapsed:?} after the change ({stale} stale answers)",
                self.name
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The value of one series in Prometheus text (0 when the series has not appeared yet).
fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().expect("metric value"))
        })
        .unwrap_or(0.0)
}

/// Two `serve` processes on one database, and the workspace owner signed in on A.
struct Pair {
    cluster: Cluster,
    a: Server,
    b: Server,
    owner: Owner,
    owner_token: String,
}

impl Pair {
    async fn start(db: Db) -> Option<Pair> {
        let cluster = Cluster::create(db, &[]).await?;
        let owner = cluster.bootstrap("Acme", "owner@acme.test").await;
        let (a, b) = tokio::join!(cluster.serve("A"), cluster.serve("B"));
        let owner_token = a.login(&owner.email, &owner.password).await;
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

async fn scalar(store: &Store, sql: &str, bind: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .bind(bind)
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn lead(name: &str) -> Value {
    json!({ "name": name, "email": "jane@example.com", "mobile": "+1234567890",
            "title": "Product Demo Request" })
}

// ---------------------------------------------------------------------------------------------
// Test lists
// ---------------------------------------------------------------------------------------------

/// Generates a sqlite and a postgres `#[tokio::test]` for each `async fn(Db)`.
macro_rules! on_each_db {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::Db::Postgres).await;
                }
            )*
        }
    };
}

on_each_db!(
    revoke_on_one_instance_holds_on_the_other_within_a_second,
    demotion_on_one_instance_holds_on_the_other_within_a_second,
    removal_on_one_instance_holds_on_the_other_within_a_second,
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
        .dashboard(
            Method::POST,
            &format!("/app/v1/workspaces/{}/api-keys/{key_id}/revoke", pair.ws()),
            &pair.owner_token,
            None,
        )
        .await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "revoked");

    // The instance that made the change dropped its entry before answering.
    let (status, body) = pair.a.api(Method::GET, ME, &key, None).await;
    assert_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("revoked_api_key"),
    );
    let (elapsed, stale) = pair
        .b
        .until_refused(
            since,
            PROPAGATION_DEADLINE,
            Method::GET,
            ME,
            &key,
            None,
            StatusCode::OK,
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "revoked_api_key"),
        )
        .await;
    eprintln!(
        "PROPAGATION [{db:?}] revoke on A -> 401 on B after {elapsed:?} ({stale} stale answers)"
    );

    // Only that key: the other one is still served.
    let (status, body) = pair.b.api(Method::GET, ME, &bystander, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let store = pair.cluster.store().await;
    assert_eq!(
        scalar(
            &store,
            "SELECT COUNT(*) FROM api_keys WHERE id = $1 AND revoked_at IS NOT NULL",
            &key_id
        )
        .await,
        1
    );
    store.close().await;
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
            .api(Method::POST, LEADS, &key, Some(lead("Before")))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{}: {body}", server.name);
    }

    let (status, body) = pair
        .a
        .dashboard(
            Method::PATCH,
            &format!("/app/v1/workspaces/{}/members/{member_id}", pair.ws()),
            &pair.owner_token,
            Some(json!({ "role": "viewer" })),
        )
        .await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "viewer", "{body}");

    let (status, body) = pair
        .a
        .api(Method::POST, LEADS, &key, Some(lead("On A")))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        Some("insufficient_permission"),
    );
    let (elapsed, stale) = pair
        .b
        .until_refused(
            since,
            PROPAGATION_DEADLINE,
            Method::POST,
            LEADS,
            &key,
            Some(lead("On B")),
            StatusCode::CREATED,
            (
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "insufficient_permission",
            ),
        )
        .await;
    eprintln!(
        "PROPAGATION [{db:?}] demotion on A -> 403 on B after {elapsed:?} ({stale} stale answers)"
    );

    // B now knows the current role, and reading is still allowed for a viewer.
    let (status, body) = pair.b.api(Method::GET, ME, &key, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["role"], "viewer", "{body}");
    let store = pair.cluster.store().await;
    let leads = scalar(
        &store,
        "SELECT COUNT(*) FROM leads WHERE owner_id = $1",
        &member_id,
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
        .dashboard(
            Method::DELETE,
            &format!("/app/v1/workspaces/{}/members/{member_id}", pair.ws()),
            &pair.owner_token,
            None,
        )
        .await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (status, body) = pair.a.api(Method::GET, ME, &key, None).await;
    assert_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("revoked_api_key"),
    );
    let (elapsed, stale) = pair
        .b
        .until_refused(
            since,
            PROPAGATION_DEADLINE,
            Method::GET,
            ME,
            &key,
            None,
            StatusCode::OK,
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "revoked_api_key"),
        )
        .await;
    eprintln!(
        "PROPAGATION [{db:?}] member removal on A -> 401 on B after {elapsed:?} ({stale} stale answers)"
    );
    let store = pair.cluster.store().await;
    assert_eq!(
        scalar(
            &store,
            "SELECT COUNT(*) FROM api_keys WHERE id = $1 AND revoked_at IS NOT NULL \
             AND revoke_reason = 'owner_removed'",
            &key_id
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
    let Some(cluster) = Cluster::create(db, &[]).await else {
        return;
    };
    let owner = cluster.bootstrap("Acme", "owner@acme.test").await;
    let server = cluster.serve("S").await;
    let token = server.login(&owner.email, &owner.password).await;
    let (key_id, key) = server.create_key(&token, &owner.workspace_id, "Sync").await;
    server.warm(&key).await;

    let stdout = cluster.cli(&["keys", "revoke", &key_id]).await;
    let since = Instant::now();
    let line: Value = serde_json::from_str(stdout.trim()).expect("keys revoke prints JSON");
    assert_eq!(line["status"], "revoked", "{line}");

    let (elapsed, stale) = server
        .until_refused(
            since,
            PROPAGATION_DEADLINE,
            Method::GET,
            ME,
            &key,
            None,
            StatusCode::OK,
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "revoked_api_key"),
        )
        .await;
    eprintln!(
        "PROPAGATION [{db:?}] CLI keys revoke -> 401 on the server after {elapsed:?} ({stale} stale answers)"
    );
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
    let b_token = pair.b.login(&pair.owner.email, &pair.owner.password).await;
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
        .dashboard(
            Method::POST,
            &format!(
                "/app/v1/workspaces/{}/api-keys/{first_id}/revoke",
                pair.ws()
            ),
            &b_token,
            None,
        )
        .await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (elapsed, stale) = pair
        .a
        .until_refused(
            since,
            Duration::from_millis(1500),
            Method::GET,
            ME,
            &first,
            None,
            StatusCode::OK,
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "revoked_api_key"),
        )
        .await;
    eprintln!(
        "PROPAGATION [Postgres] revoke on B right after A's listener was killed -> 401 on A after {elapsed:?} ({stale} stale answers)"
    );

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
        .dashboard(
            Method::POST,
            &format!(
                "/app/v1/workspaces/{}/api-keys/{second_id}/revoke",
                pair.ws()
            ),
            &b_token,
            None,
        )
        .await;
    let since = Instant::now();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (elapsed, stale) = pair
        .a
        .until_refused(
            since,
            PROPAGATION_DEADLINE,
            Method::GET,
            ME,
            &second,
            None,
            StatusCode::OK,
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "revoked_api_key"),
        )
        .await;
    eprintln!(
        "PROPAGATION [Postgres] revoke on B after A's listener reconnected -> 401 on A after {elapsed:?} ({stale} stale answers)"
    );
    let _ = admin.close().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Malformed keys never reach the database; a repeated fake reaches it once
// ---------------------------------------------------------------------------------------------

async fn malformed_keys_cost_no_query_and_a_repeated_fake_costs_one(db: Db) {
    let Some(cluster) = Cluster::create(db, &[]).await else {
        return;
    };
    let owner = cluster.bootstrap("Acme", "owner@acme.test").await;
    let server = cluster.serve("S").await;
    let token = server.login(&owner.email, &owner.password).await;
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
            .api(Method::GET, ME, &malformed[i % malformed.len()], None)
            .await;
        assert_error(
            status,
            &body,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            Some("malformed_api_key"),
        );
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
            .api(Method::GET, ME, fake.expose_secret(), None)
            .await;
        assert_error(
            status,
            &body,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            Some("invalid_api_key"),
        );
    }
    assert_eq!(server.metric(MISS).await, misses + 5.0);

    // ...but the same fake again and again is remembered.
    let fake = ApiKey::generate(&env);
    let misses = server.metric(MISS).await;
    for _ in 0..200 {
        let (status, body) = server
            .api(Method::GET, ME, fake.expose_secret(), None)
            .await;
        assert_error(
            status,
            &body,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            Some("invalid_api_key"),
        );
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
        let (status, body) = server.api(Method::GET, ME, &key, None).await;
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
    let Some(cluster) = Cluster::create(Db::Sqlite, &[("HEFFL_CACHE_CAPACITY", "1000")]).await
    else {
        return;
    };
    let started = Instant::now();
    let owner = cluster.bootstrap("Acme", "owner@acme.test").await;
    let store = cluster.store().await;
    let user_id: String = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(&owner.email)
        .fetch_one(store.pool())
        .await
        .expect("owner id");
    // Seeded directly, as the create endpoint would store them: the digest, never the key.
    let env = KeyEnv::default();
    let keys: Vec<String> = (0..KEYS)
        .map(|_| ApiKey::generate(&env).expose_secret().to_owned())
        .collect();
    let now = Timestamp::now().0;
    let mut tx = store.pool().begin().await.expect("begin");
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
            let parsed = heffl_api::api_key::parse(key.as_bytes(), &env).expect("valid key");
            query = query
                .bind(heffl_api::ids::new_id(heffl_api::ids::API_KEY))
                .bind(KeyDigest::of(key).as_bytes().to_vec())
                .bind(parsed.hint());
        }
        query.execute(&mut *tx).await.expect("seed keys");
    }
    tx.commit().await.expect("commit");
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
                let (status, body) = server.api(Method::GET, ME, key, None).await;
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
        let (status, _) = server.api(Method::GET, ME, &keys[0], None).await;
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
    while !app.store.key_cache().is_live() {
        assert!(
            Instant::now() < deadline,
            "key cache not live within {SETTLE_DEADLINE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

fn header_u64(response: &Response, name: &str) -> Option<u64> {
    response.headers().get(name).map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} is not a number: {value:?}"))
    })
}

/// (RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset); None when none is present, and a
/// failure when only some are.
fn rate_headers(response: &Response) -> Option<(u64, u64, u64)> {
    let limit = header_u64(response, "ratelimit-limit");
    let remaining = header_u64(response, "ratelimit-remaining");
    let reset = header_u64(response, "ratelimit-reset");
    match (limit, remaining, reset) {
        (Some(l), Some(r), Some(s)) => {
            assert!((1..=60).contains(&s), "RateLimit-Reset {s}");
            Some((l, r, s))
        }
        (None, None, None) => None,
        other => panic!("some RateLimit headers only: {other:?}"),
    }
}

async fn key_record(app: &TestApp, owner: &Account, key_id: &str) -> Value {
    let response = app
        .send(
            Method::GET,
            &format!(
                "/app/v1/workspaces/{}/api-keys/{key_id}",
                owner.workspace_id
            ),
            Some(&owner.token),
            None,
        )
        .await;
    let (status, body) = parts(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn create_key_with(app: &TestApp, owner: &Account, body: Value) -> (StatusCode, Value) {
    parts(
        app.send(
            Method::POST,
            &format!("/app/v1/workspaces/{}/api-keys", owner.workspace_id),
            Some(&owner.token),
            Some(body),
        )
        .await,
    )
    .await
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(app.store.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn me(app: &TestApp, key: &str) -> Response {
    app.send_with_key(Method::GET, ME, key, None).await
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
    let fresh = key_record(&app, &owner, &used.id).await;
    assert_eq!(fresh["lastUsedAt"], Value::Null, "{fresh}");
    assert_eq!(fresh["requestCount"], 0, "{fresh}");
    assert_eq!(fresh["rateLimitPerMinute"], Value::Null, "{fresh}");

    let first_call = Timestamp::now().0;
    for _ in 0..3 {
        assert_eq!(me(&app, &used.key).await.status(), StatusCode::OK);
    }
    let last_call = Timestamp::now().0;

    let since = Instant::now();
    let record = loop {
        let record = key_record(&app, &owner, &used.id).await;
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
    let list = parts(
        app.send(
            Method::GET,
            &format!("/app/v1/workspaces/{}/api-keys", owner.workspace_id),
            Some(&owner.token),
            None,
        )
        .await,
    )
    .await
    .1;
    let listed = list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|k| k["id"] == used.id.as_str()))
        .unwrap_or_else(|| panic!("key listed: {list}"));
    assert_eq!(listed["requestCount"], 3, "{listed}");
    assert_eq!(listed["lastUsedAt"], record["lastUsedAt"], "{listed}");
    let idle_record = key_record(&app, &owner, &idle.id).await;
    assert_eq!(idle_record["requestCount"], 0, "{idle_record}");
    assert_eq!(idle_record["lastUsedAt"], Value::Null, "{idle_record}");

    // Later flushes with nothing new must not add to what was written.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(1500) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let row: (i64, Option<i64>) =
            sqlx::query_as("SELECT request_count, last_used_at FROM api_keys WHERE id = $1")
                .bind(&used.id)
                .fetch_one(app.store.pool())
                .await
                .expect("usage row");
        assert_eq!(row, (3, Some(last_used.0)));
    }
    // A fourth call adds one.
    assert_eq!(me(&app, &used.key).await.status(), StatusCode::OK);
    let since = Instant::now();
    while key_record(&app, &owner, &used.id).await["requestCount"] != 4 {
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
        assert_eq!(me(&app, &key.key).await.status(), StatusCode::OK);
    }
    // Gathered in memory, not yet written: the next flush is an hour away.
    let record = key_record(&app, &owner, &key.id).await;
    assert_eq!(record["requestCount"], 0, "{record}");
    assert_eq!(record["lastUsedAt"], Value::Null, "{record}");

    // The app's own store is closed by `stop`; this one outlives it.
    let probe = open_store(&app.config).await;
    app.stop().await;
    let (requests, last_used): (i64, Option<i64>) =
        sqlx::query_as("SELECT request_count, last_used_at FROM api_keys WHERE id = $1")
            .bind(&key.id)
            .fetch_one(probe.pool())
            .await
            .expect("usage row");
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
        let response = me(&app, &key.key).await;
        assert_eq!(response.status(), StatusCode::OK);
        let (limit, remaining, reset) = rate_headers(&response).expect("RateLimit headers");
        assert_eq!((limit, remaining), (5, expected));
        assert!(reset <= last_reset, "reset went up: {reset} > {last_reset}");
        last_reset = reset;
    }

    // Refused before the handler runs: nothing is written.
    let leads = count(&app, "SELECT COUNT(*) FROM leads").await;
    let response = app
        .send_with_key(Method::POST, LEADS, &key.key, Some(lead("Jane Smith")))
        .await;
    let headers = rate_headers(&response).expect("RateLimit headers on 429");
    let retry_after = header_u64(&response, "retry-after").expect("Retry-After");
    let (status, body) = parts(response).await;
    assert_error(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("rate_limited"),
    );
    assert_eq!((headers.0, headers.1), (5, 0));
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        retry_after, headers.2,
        "Retry-After agrees with RateLimit-Reset"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM leads").await, leads);
    let (status, body) = parts(me(&app, &key.key).await).await;
    assert_error(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("rate_limited"),
    );

    // Another key has its own budget, and failed authentications spend nobody's.
    let response = me(&app, &other.key).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(rate_headers(&response).map(|h| (h.0, h.1)), Some((5, 4)));
    for _ in 0..10 {
        let fake = ApiKey::generate(&KeyEnv::default());
        let response = me(&app, fake.expose_secret()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = me(&app, &other.key).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(rate_headers(&response).map(|h| (h.0, h.1)), Some((5, 3)));
}

async fn per_key_rate_limit_from_create(db: Db) {
    let Some(app) = TestApp::start_with(db, |c| c.rate_limit_per_minute = 5).await else {
        return;
    };
    let owner = app.bootstrap("Acme", "owner@acme.test").await;

    let (status, created) = create_key_with(
        &app,
        &owner,
        json!({ "name": "Slow", "rateLimitPerMinute": 2 }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["rateLimitPerMinute"], 2, "{created}");
    let slow_id = created["id"].as_str().expect("id").to_owned();
    let slow = created["key"].as_str().expect("key").to_owned();
    assert_eq!(
        key_record(&app, &owner, &slow_id).await["rateLimitPerMinute"],
        2
    );
    for expected in [1, 0] {
        let response = me(&app, &slow).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            rate_headers(&response).map(|h| (h.0, h.1)),
            Some((2, expected))
        );
    }
    let response = me(&app, &slow).await;
    assert_eq!(rate_headers(&response).map(|h| (h.0, h.1)), Some((2, 0)));
    let (status, body) = parts(response).await;
    assert_error(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("rate_limited"),
    );
    // A revoked key is told so, not asked to retry later.
    let (status, body) = parts(
        app.send(
            Method::POST,
            &format!(
                "/app/v1/workspaces/{}/api-keys/{slow_id}/revoke",
                owner.workspace_id
            ),
            Some(&owner.token),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = parts(me(&app, &slow).await).await;
    assert_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("revoked_api_key"),
    );

    // 0: no limit at all, and so nothing to report.
    let (status, created) = create_key_with(
        &app,
        &owner,
        json!({ "name": "Unlimited", "rateLimitPerMinute": 0 }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["rateLimitPerMinute"], 0, "{created}");
    let unlimited = created["key"].as_str().expect("key").to_owned();
    for _ in 0..20 {
        let response = me(&app, &unlimited).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(rate_headers(&response), None);
    }

    // The upper bound is accepted; without the field the deployment's default applies.
    let (status, created) = create_key_with(
        &app,
        &owner,
        json!({ "name": "Firehose", "rateLimitPerMinute": 1_000_000 }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let response = me(&app, created["key"].as_str().expect("key")).await;
    assert_eq!(
        rate_headers(&response).map(|h| (h.0, h.1)),
        Some((1_000_000, 999_999))
    );
    let (status, created) = create_key_with(&app, &owner, json!({ "name": "Default" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["rateLimitPerMinute"], Value::Null, "{created}");
    let response = me(&app, created["key"].as_str().expect("key")).await;
    assert_eq!(rate_headers(&response).map(|h| (h.0, h.1)), Some((5, 4)));

    let keys = count(&app, "SELECT COUNT(*) FROM api_keys").await;
    for bad in [json!(-1), json!(1.5), json!("x"), json!(1_000_001)] {
        let (status, body) = create_key_with(
            &app,
            &owner,
            json!({ "name": "Bad", "rateLimitPerMinute": bad }),
        )
        .await;
        assert_error(
            status,
            &body,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            None,
        );
        let issues = body["error"]["details"]["issues"]
            .as_array()
            .unwrap_or_else(|| panic!("issues for {bad}: {body}"));
        assert!(
            issues.iter().any(|i| i["field"] == "rateLimitPerMinute"),
            "{bad}: {body}"
        );
    }
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM api_keys").await,
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
    assert_eq!(me(&app, &verified.key).await.status(), StatusCode::OK);
    assert!(
        matches!(
            app.store
                .key_cache()
                .get(KeyDigest::of(&verified.key).as_bytes()),
            Some(Lookup::Found(_))
        ),
        "the used key is cached"
    );

    let env = KeyEnv::default();
    for _ in 0..5 {
        let fake = ApiKey::generate(&env);
        let (status, body) = parts(me(&app, fake.expose_secret()).await).await;
        assert_error(
            status,
            &body,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            Some("invalid_api_key"),
        );
    }
    let fake = ApiKey::generate(&env);
    let response = me(&app, fake.expose_secret()).await;
    let retry_after = header_u64(&response, "retry-after").expect("Retry-After");
    let (status, body) = parts(response).await;
    assert_error(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("auth_throttled"),
    );
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");

    // A forged X-Forwarded-For is not a way out when the proxy is not trusted.
    let response = app
        .client
        .get(app.url(ME))
        .header("x-api-key", ApiKey::generate(&env).expose_secret())
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .expect("request");
    let (status, body) = parts(response).await;
    assert_error(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("auth_throttled"),
    );

    // The integrator sharing that address keeps working with the key it already used...
    let (status, body) = parts(me(&app, &verified.key).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["apiKey"]["id"], verified.id.as_str(), "{body}");
    // ...while a key not yet verified would need the database, and waits like the flood.
    let (status, body) = parts(me(&app, &unused.key).await).await;
    assert_error(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("auth_throttled"),
    );
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
        async move { parts(request.send().await.expect("request")).await }
    };
    for _ in 0..3 {
        let (status, body) = attempt("203.0.113.1").await;
        assert_error(
            status,
            &body,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            Some("invalid_api_key"),
        );
    }
    let (status, body) = attempt("203.0.113.1").await;
    assert_error(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("auth_throttled"),
    );
    // The address the proxy appended (the last entry) is the one that counts.
    let (status, body) = attempt("203.0.113.2, 203.0.113.1").await;
    assert_error(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some("auth_throttled"),
    );
    let (status, body) = attempt("203.0.113.1, 203.0.113.2").await;
    assert_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some("invalid_api_key"),
    );
}
