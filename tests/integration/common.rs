#![allow(dead_code)] // shared by many test modules; each uses a part
//! The test harness: every test gets its own database (a SQLite file, or a fresh PostgreSQL
//! database) and a real server on a random port, and talks to it over real HTTP.

use heffl_api::config::Config;
use heffl_api::domain::ids::{UserId, WorkspaceId};
use heffl_api::domain::permissions::Role;
use heffl_api::http::{serve_metrics, serve_until, AppState};
use heffl_api::store::{
    Actor, BootstrapOutcome, ClientInfo, MemberActor, MemberChange, NewUser, PoolSettings, Store,
};
use heffl_api::verify::Verifier;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Connection};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::oneshot;

/// The PostgreSQL server the tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("HEFFL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// In CI a missing PostgreSQL fails the run; on a laptop its tests are skipped with a notice.
pub fn postgres_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("HEFFL_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A database made for one test; dropped (Postgres) or deleted (SQLite) afterwards.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// `None` only for PostgreSQL when its server is unreachable outside CI (see
    /// `postgres_required`); SQLite needs no server, so `TestDb::sqlite` cannot fail.
    pub async fn create(db: Db) -> Option<TestDb> {
        match db {
            Db::Sqlite => Some(TestDb::sqlite()),
            Db::Postgres => {
                let admin = postgres_admin_url();
                let connected = tokio::time::timeout(
                    Duration::from_secs(5),
                    sqlx::PgConnection::connect(&admin),
                )
                .await;
                let mut conn = match connected {
                    Ok(Ok(conn)) => conn,
                    other => {
                        let why = match other {
                            Ok(Err(err)) => err.to_string(),
                            _ => "timed out".to_owned(),
                        };
                        if postgres_required() {
                            panic!("PostgreSQL is required (CI) but {admin} is unreachable: {why}");
                        }
                        eprintln!("SKIPPED: PostgreSQL at {admin} is unreachable ({why})");
                        return None;
                    }
                };
                let name = format!(
                    "heffl_t_{}",
                    heffl_api::domain::base62::random_string(16).to_lowercase()
                );
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                Some(TestDb {
                    url: format!("{base}/{name}"),
                    pg_name: Some(name),
                    _dir: None,
                })
            }
        }
    }
}

impl TestDb {
    /// A SQLite file in a temp dir of its own.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("heffl.db").display());
        TestDb {
            url,
            pg_name: None,
            _dir: Some(dir),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let admin = postgres_admin_url();
        // Drop runs inside a runtime; a thread with its own runtime may block on the cleanup.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Configuration for tests: generous login throttle so that only the throttle test trips it.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::defaults();
    config.database_url = database_url.to_owned();
    config.bind = "127.0.0.1:0".parse().expect("addr");
    config.login_attempts_per_minute = 10_000;
    // Tests that exercise the limits turn them on; the rest make many requests with one key.
    config.rate_limit_per_minute = 0;
    config.auth_failures_per_minute = 0;
    config.shutdown_grace = Duration::from_secs(5);
    config
}

pub async fn open_store(config: &Config) -> Store {
    let settings = PoolSettings {
        max_connections: config.db_max_connections,
        acquire_timeout: config.db_acquire_timeout,
        statement_timeout: config.db_statement_timeout,
    };
    let store = Store::connect_lazy(&config.database_url, &settings).expect("store");
    store.migrate().await.expect("migrate");
    store
}

/// A running server and a client for it.
pub struct TestApp {
    pub db: Db,
    pub base: String,
    /// The metrics listener (HEFFL_METRICS_BIND), apart from the API's.
    pub metrics_base: String,
    pub client: Client,
    /// The server's own handles: changes made through them drop the server's cache.
    pub store: Store,
    pub verifier: Verifier,
    pub config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    metrics_server: tokio::task::JoinHandle<()>,
    /// A pool of the test's own on the same database, for raw SQL: the server's store keeps
    /// its pool to itself, and this one outlives a stopped server.
    raw_db: AnyPool,
    // Last field: dropped after the server is stopped.
    _test_db: TestDb,
}

/// A signed-in user, with the workspace they were created for.
#[derive(Debug, Clone)]
pub struct Account {
    pub user_id: String,
    pub email: String,
    pub password: String,
    pub token: String,
    pub workspace_id: String,
}

/// A key as the create response showed it.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub id: String,
    pub key: String,
}

impl TestApp {
    pub async fn start(db: Db) -> Option<TestApp> {
        TestApp::start_with(db, |_| {}).await
    }

    /// `None` only when PostgreSQL is unreachable outside CI (see `TestDb::create`).
    pub async fn start_with(db: Db, adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
        let test_db = TestDb::create(db).await?;
        Some(TestApp::launch(db, test_db, adjust).await)
    }

    /// A server on SQLite, which needs no server of its own and so is always there.
    pub async fn sqlite() -> TestApp {
        TestApp::sqlite_with(|_| {}).await
    }

    pub async fn sqlite_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        TestApp::launch(Db::Sqlite, TestDb::sqlite(), adjust).await
    }

    async fn launch(db: Db, test_db: TestDb, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = test_config(&test_db.url);
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (shutdown, stop) = oneshot::channel::<()>();
        let state = AppState::new(open_store(&config).await, config.clone());
        let (store, verifier) = (state.store.clone(), state.verifier.clone());
        let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind metrics");
        let metrics_base = format!("http://{}", metrics_listener.local_addr().expect("addr"));
        let metrics_server = tokio::spawn({
            let state = state.clone();
            async move {
                let _ = serve_metrics(state, metrics_listener).await;
            }
        });
        let server = tokio::spawn(async move {
            let _ = serve_until(state, listener, async {
                let _ = stop.await;
            })
            .await;
        });
        TestApp {
            db,
            base,
            metrics_base,
            client: Client::new(),
            store,
            verifier,
            config,
            shutdown: Some(shutdown),
            server: Some(server),
            metrics_server,
            raw_db: raw_pool(&test_db.url),
            _test_db: test_db,
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.store.close().await;
    }

    /// Stops the server gracefully (flushing what it gathered) and starts a new one on the same
    /// database and configuration, as an operator's restart would.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.config.bind)
            .await
            .expect("bind");
        self.base = format!("http://{}", listener.local_addr().expect("addr"));
        let (shutdown, stop) = oneshot::channel::<()>();
        let state = AppState::new(open_store(&self.config).await, self.config.clone());
        self.store = state.store.clone();
        self.verifier = state.verifier.clone();
        self.server = Some(tokio::spawn(async move {
            let _ = serve_until(state, listener, async {
                let _ = stop.await;
            })
            .await;
        }));
        self.shutdown = Some(shutdown);
    }

    /// The test's own pool on the app's database, for raw SQL.
    pub fn raw_db(&self) -> &AnyPool {
        &self.raw_db
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The Prometheus text of `/metrics` on the metrics listener (read a series with
    /// `process_harness::metric_value`).
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.metrics_base);
        let response = self.client.get(url).send().await.expect("scrape");
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        response.text().await.expect("body")
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    /// Sends a request to /api/v1 with an `x-api-key` header.
    pub async fn send_with_key(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .header("x-api-key", key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    /// Creates a workspace and its owner through the store (as `heffl-api bootstrap` does),
    /// then signs in over HTTP.
    pub async fn bootstrap(&self, workspace: &str, email: &str) -> Account {
        let password = format!("pw-{}", heffl_api::domain::base62::random_string(16));
        let hash = heffl_api::domain::password::hash(password.clone())
            .await
            .expect("hash");
        let outcome = self
            .store
            .users()
            .bootstrap(
                workspace,
                &NewUser {
                    email,
                    name: "Owner",
                    password_hash: &hash,
                },
            )
            .await
            .expect("bootstrap");
        let BootstrapOutcome::Created { workspace, user } = outcome else {
            panic!("email taken: {email}");
        };
        let token = self.login(email, &password).await;
        Account {
            user_id: user.id.into(),
            email: email.to_owned(),
            password,
            token,
            workspace_id: workspace.id.into(),
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let reply = self.try_login(email, password).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "login of {email}: {}",
            reply.body
        );
        reply.body["token"].as_str().expect("token").to_owned()
    }

    /// Creates a user and adds them to the owner's workspace with `role` through the store
    /// (as the operator's `users create` and `members add` do; people join over HTTP only by
    /// invitation), then signs them in.
    pub async fn add_member(&self, owner: &Account, email: &str, role: &str) -> Account {
        let password = format!("pw-{}", heffl_api::domain::base62::random_string(16));
        let user_id = self.create_user(email, &password).await;
        self.add_existing_member(&owner.workspace_id, &user_id, role)
            .await;
        let token = self.login(email, &password).await;
        Account {
            user_id,
            email: email.to_owned(),
            password,
            token,
            workspace_id: owner.workspace_id.clone(),
        }
    }

    /// A user in no workspace, as `heffl-api users create` makes one; returns the user id.
    pub async fn create_user(&self, email: &str, password: &str) -> String {
        let hash = heffl_api::domain::password::hash(password.to_owned())
            .await
            .expect("hash");
        let new_user = NewUser {
            email,
            name: email,
            password_hash: &hash,
        };
        self.store
            .users()
            .create(&new_user, Actor::Operator(Some("test")))
            .await
            .expect("create user")
            .unwrap_or_else(|| panic!("email taken: {email}"))
            .id
            .into()
    }

    /// Adds an existing user to a workspace, as `heffl-api members add` does.
    pub async fn add_existing_member(&self, workspace_id: &str, user_id: &str, role: &str) {
        let client = ClientInfo::default();
        let role = Role::parse(role).unwrap_or_else(|| panic!("role {role}"));
        let change = self
            .store
            .members()
            .add(
                &WorkspaceId::parse(workspace_id).expect("an id"),
                &UserId::parse(user_id).expect("an id"),
                role,
                &MemberActor::operator(Some("test"), &client),
            )
            .await
            .expect("add member");
        assert!(
            matches!(change, MemberChange::Done(_)),
            "add member: {change:?}"
        );
    }

    pub async fn create_key(&self, account: &Account, name: &str) -> CreatedKey {
        self.new_key(account, json!({ "name": name }))
            .await
            .created_key()
            .0
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.metrics_server.abort();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Reads a response as (status, JSON body); a non-JSON body fails the test.
pub async fn parts(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("body");
    if text.is_empty() {
        return (status, Value::Null);
    }
    assert!(
        content_type.starts_with("application/json"),
        "non-JSON body ({content_type}) with {status}: {text}"
    );
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON {e}: {text}"));
    (status, body)
}

/// Asserts the docs/api.md §4 error shape with the given status, code and (if any) reason.
#[track_caller]
pub fn assert_error(
    status: StatusCode,
    body: &Value,
    expected: StatusCode,
    code: &str,
    reason: Option<&str>,
) {
    assert_eq!(status, expected, "status; body: {body}");
    assert_eq!(body["error"]["code"], code, "code; body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message; body: {body}"
    );
    if let Some(reason) = reason {
        assert_eq!(
            body["error"]["details"]["reason"], reason,
            "reason; body: {body}"
        );
    }
}

/// A docs/api.md §4 401 with this reason.
#[track_caller]
pub fn assert_unauthorized(status: StatusCode, body: &Value, reason: &str) {
    assert_error(
        status,
        body,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        Some(reason),
    );
}

/// A docs/api.md §4 429 with this reason.
#[track_caller]
pub fn assert_too_many(status: StatusCode, body: &Value, reason: &str) {
    assert_error(
        status,
        body,
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        Some(reason),
    );
}

/// Generates one `#[tokio::test]` per database for each named `async fn(TestApp)`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestApp::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::common::TestApp::start($crate::common::Db::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

/// Like `on_both_databases!`, for tests that need a non-default configuration. Generates
/// `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! on_both_databases_with {
    ($name:ident, $adjust:expr) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::TestApp::sqlite_with($adjust).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let app =
                    $crate::common::TestApp::start_with($crate::common::Db::Postgres, $adjust);
                if let Some(app) = app.await {
                    super::$name(app).await;
                }
            }
        }
    };
}

/// Like `on_both_databases!`, for tests that set up their own servers or processes: generates
/// a sqlite and a postgres `#[tokio::test]` for each `async fn(Db)`.
#[macro_export]
macro_rules! on_each_db {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Db::Postgres).await;
                }
            )*
        }
    };
}

/// A pool of the test's own on a database (lazy: it connects on first use), for raw SQL
/// beside a store, whose pool is its own.
pub fn raw_pool(database_url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(2)
        .connect_lazy(database_url)
        .expect("test database URL")
}

/// The `i64` a query such as `SELECT COUNT(*) ...` returns, with `binds` for `$1`, `$2`, ...
pub async fn query_count(store: &Store, sql: &str, binds: &[&str]) -> i64 {
    let pool = raw_pool(store.url());
    let count = count_in(&pool, sql, binds).await;
    pool.close().await;
    count
}

async fn count_in(pool: &AnyPool, sql: &str, binds: &[&str]) -> i64 {
    let mut query = sqlx::query_scalar::<_, i64>(sql);
    for bind in binds {
        query = query.bind(*bind);
    }
    query
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `query_count` on the app's database.
pub async fn count(app: &TestApp, sql: &str, binds: &[&str]) -> i64 {
    count_in(app.raw_db(), sql, binds).await
}

pub async fn count_rows(store: &Store, table: &str) -> i64 {
    query_count(store, &format!("SELECT COUNT(*) FROM {table}"), &[]).await
}

pub async fn key_count(app: &TestApp) -> i64 {
    count_rows(&app.store, "api_keys").await
}

pub async fn audit_count(app: &TestApp, action: &str, target_id: &str) -> i64 {
    count(
        app,
        "SELECT COUNT(*) FROM audit_events WHERE action = $1 AND target_id = $2",
        &[action, target_id],
    )
    .await
}

pub fn keys_path(workspace_id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/api-keys")
}

/// A well-formed key with a valid checksum that no server issued.
pub fn unknown_key() -> String {
    heffl_api::domain::api_key::ApiKey::generate(&heffl_api::domain::api_key::KeyEnv::default())
        .expose_secret()
        .to_owned()
}

pub fn key_path(workspace_id: &str, key_id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/api-keys/{key_id}")
}

/// docs/api.md §5: RFC 3339 UTC with milliseconds, e.g. `2025-01-15T10:30:00.000Z`.
#[track_caller]
pub fn assert_timestamp(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    assert!(
        text.len() == 24 && text.ends_with('Z') && text.as_bytes()[19] == b'.',
        "{what} is not RFC 3339 with milliseconds: {text}"
    );
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{what} does not parse ({e}): {text}"));
}

/// An error body without `error.requestId`, which differs on every request by design: for
/// comparing the answers of two requests.
#[track_caller]
pub fn without_request_id(mut body: Value) -> Value {
    if let Some(error) = body["error"].as_object_mut() {
        assert!(
            error.remove("requestId").is_some(),
            "no requestId: {error:?}"
        );
    }
    body
}

/// RFC 3339 UTC with exactly three fractional digits and `Z`, e.g. `2025-01-15T10:30:00.000Z`;
/// returns the time in milliseconds since the epoch.
#[track_caller]
pub fn assert_spec_time(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("time must be a string: {value}"));
    let bytes = text.as_bytes();
    assert!(
        text.len() == 24 && bytes[10] == b'T' && bytes[19] == b'.' && text.ends_with('Z'),
        "not RFC 3339 UTC with milliseconds: {text}"
    );
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("unparseable time {text}: {e}"))
        .timestamp_millis()
}

pub fn now_ms() -> i64 {
    heffl_api::domain::time::Timestamp::now().0
}

/// A time the API showed, in milliseconds since the epoch.
#[track_caller]
pub fn ms(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    heffl_api::domain::time::Timestamp::parse_rfc3339(text)
        .unwrap_or_else(|| panic!("not RFC 3339: {text}"))
        .0
}

/// Sleeps until the wall clock is past `at_ms` (plus a margin for clock granularity).
pub async fn sleep_past(at_ms: i64) {
    let wait = at_ms - now_ms() + 250;
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

/// The names of an object's fields, sorted.
#[track_caller]
pub fn keys_of(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("expected an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[track_caller]
pub fn string_set<'a>(items: impl IntoIterator<Item = &'a Value>) -> HashSet<String> {
    items
        .into_iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect()
}

/// The ids of a list response's `items`.
#[track_caller]
pub fn ids_of(list: &Value) -> HashSet<String> {
    string_set(
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| &item["id"]),
    )
}

/// The (workspace id, role) pairs a `GET /app/v1/session` body lists, sorted by id.
#[track_caller]
pub fn session_roles(session: &Value) -> Vec<(String, String)> {
    let mut roles: Vec<(String, String)> = session["workspaces"]
        .as_array()
        .expect("workspaces")
        .iter()
        .map(|w| {
            (
                w["id"].as_str().expect("id").to_owned(),
                w["role"].as_str().expect("role").to_owned(),
            )
        })
        .collect();
    roles.sort();
    roles
}

/// Some audit events are written off the request path; waits (boundedly) until one lands and
/// returns how many there are.
pub async fn wait_for_audit(app: &TestApp, action: &str, target_id: &str) -> i64 {
    for _ in 0..100 {
        let n = audit_count(app, action, target_id).await;
        if n > 0 {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {action} audit event for {target_id} within 5 s");
}

/// A text column of a key's row.
pub async fn key_column(app: &TestApp, column: &str, key_id: &str) -> Option<String> {
    sqlx::query_scalar::<_, Option<String>>(&format!("SELECT {column} FROM api_keys WHERE id = $1"))
        .bind(key_id)
        .fetch_one(app.raw_db())
        .await
        .expect("key column")
}

/// A time column (milliseconds) of a key's row.
pub async fn key_time(app: &TestApp, column: &str, key_id: &str) -> Option<i64> {
    sqlx::query_scalar::<_, Option<i64>>(&format!("SELECT {column} FROM api_keys WHERE id = $1"))
        .bind(key_id)
        .fetch_one(app.raw_db())
        .await
        .expect("key time")
}

/// A user's role in a workspace, as stored.
pub async fn role_in_db(app: &TestApp, workspace_id: &str, user_id: &str) -> Option<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2",
    )
    .bind(workspace_id)
    .bind(user_id)
    .fetch_optional(app.raw_db())
    .await
    .expect("role")
}

/// Every row a member route could change, to prove that a refused request changed nothing.
pub async fn membership_snapshot(app: &TestApp) -> (Vec<(String, String, String)>, i64, i64, i64) {
    let memberships = sqlx::query_as::<_, (String, String, String)>(
        "SELECT workspace_id, user_id, role FROM memberships ORDER BY workspace_id, user_id",
    )
    .fetch_all(app.raw_db())
    .await
    .expect("memberships");
    let revoked = count(
        app,
        "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NOT NULL",
        &[],
    )
    .await;
    (
        memberships,
        count_rows(&app.store, "users").await,
        count_rows(&app.store, "audit_events").await,
        revoked,
    )
}
