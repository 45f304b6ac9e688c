//! The real `heffl-api` binary run as child processes, as an operator runs it: each process
//! has its own clean environment and working directory and talks to a real database. Shared by
//! the tests that need a process of their own (`process`) or several of them on one database
//! (`verification`).

use crate::common::{assert_error, open_store, parts, test_config, Db, TestDb};
use heffl_api::store::Store;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

pub const BIN: &str = env!("CARGO_BIN_EXE_heffl-api");
/// Migrations plus the argon2 warm-up; generous because CI machines are busy.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);
pub const EXIT_DEADLINE: Duration = Duration::from_secs(10);
pub const CLI_DEADLINE: Duration = Duration::from_secs(30);
pub const POLL: Duration = Duration::from_millis(20);
/// docs/api.md §7: a revoke holds on every process within one second.
pub const PROPAGATION_DEADLINE: Duration = Duration::from_secs(1);

/// A request that succeeds with `ok` until a change made elsewhere reaches the server.
pub struct Probe<'a> {
    pub method: Method,
    pub path: &'a str,
    pub key: &'a str,
    pub body: Option<Value>,
    pub ok: StatusCode,
}

impl<'a> Probe<'a> {
    /// `GET /api/v1/me` with `key`: 200 while the key is served.
    pub fn me(key: &'a str) -> Probe<'a> {
        Probe {
            method: Method::GET,
            path: "/api/v1/me",
            key,
            body: None,
            ok: StatusCode::OK,
        }
    }
}

/// How a `Probe` must be refused once the change has arrived.
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub reason: &'static str,
}

impl Refusal {
    pub fn unauthorized(reason: &'static str) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            code: "UNAUTHORIZED",
            reason,
        }
    }

    pub fn forbidden(reason: &'static str) -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            code: "FORBIDDEN",
            reason,
        }
    }
}

/// A port nobody listens on right now. The tiny window before the server binds it is accepted:
/// the server must be told its address up front, as an operator would.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// The binary with nothing inherited: no HEFFL_* or DATABASE_URL from the developer's shell, and
/// a fresh working directory so that no stray `.env` is read.
pub fn command(dir: &Path, env: &[(String, String)], args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A timed-out or panicking test must not leave a process behind.
        .kill_on_drop(true);
    command
}

/// What a one-shot command did.
pub struct CliOutput {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "heffl-api {:?}: expected exit 0, got {}; stdout: {}; stderr: {}",
            self.args,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(
            !self.status.success(),
            "heffl-api {:?}: expected a non-zero exit; stdout: {}; stderr: {}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout as JSON lines; anything else on stdout fails the test.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"))
            })
            .collect()
    }

    /// stdout must be exactly one JSON line.
    pub fn json_line(&self) -> Value {
        assert!(
            self.stdout.ends_with('\n'),
            "stdout must end with a newline: {:?}",
            self.stdout
        );
        let lines = self.json_lines();
        assert_eq!(
            lines.len(),
            1,
            "exactly one line on stdout: {:?}",
            self.stdout
        );
        lines.into_iter().next().expect("one line")
    }
}

/// Runs a one-shot command to completion in `dir` with exactly `env`, optionally writing
/// `stdin` to it.
pub async fn run_in(
    dir: &Path,
    env: &[(String, String)],
    args: &[&str],
    stdin: Option<&str>,
) -> CliOutput {
    let mut command = command(dir, env, args);
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.spawn().expect("spawn heffl-api");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).await.expect("write stdin");
        // Dropping the pipe sends EOF, which `--password-stdin` reads up to.
        drop(pipe);
    }
    let output = tokio::time::timeout(CLI_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("heffl-api {args:?} did not finish within {CLI_DEADLINE:?}"))
        .expect("wait for heffl-api");
    CliOutput {
        args: args.iter().map(|a| a.to_string()).collect(),
        status: output.status,
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A database and a working directory for one test, and the environment every process of the
/// deployment shares.
pub struct Deployment {
    pub db: TestDb,
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

/// What `heffl-api bootstrap` printed, and the email it was given.
pub struct Owner {
    pub workspace_id: String,
    pub user_id: String,
    pub email: String,
    pub password: String,
}

impl Deployment {
    pub async fn create(db: Db) -> Option<Deployment> {
        Deployment::create_with(db, &[]).await
    }

    /// As `create`, with `extra` added to (or replacing part of) the shared environment.
    pub async fn create_with(db: Db, extra: &[(&str, &str)]) -> Option<Deployment> {
        Some(Deployment::on(TestDb::create(db).await?, extra))
    }

    /// A deployment on SQLite, which needs no server and so is always there.
    pub fn sqlite() -> Deployment {
        Deployment::on(TestDb::sqlite(), &[])
    }

    fn on(db: TestDb, extra: &[(&str, &str)]) -> Deployment {
        let dir = tempfile::tempdir().expect("working dir");
        let mut deployment = Deployment {
            env: vec![
                ("DATABASE_URL".to_owned(), db.url.clone()),
                (
                    "HEFFL_LOGIN_ATTEMPTS_PER_MINUTE".to_owned(),
                    "1000".to_owned(),
                ),
                ("HEFFL_SHUTDOWN_GRACE".to_owned(), "5s".to_owned()),
            ],
            db,
            dir,
        };
        deployment.env = deployment.env_with(extra);
        deployment
    }

    /// The shared environment with `extra` added, an `extra` variable replacing a shared one.
    pub fn env_with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .env
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .cloned()
            .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    /// Runs a one-shot command to completion, optionally writing `stdin` to it.
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        self.run_with(args, stdin, &[]).await
    }

    pub async fn run_with(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        extra: &[(&str, &str)],
    ) -> CliOutput {
        run_in(self.dir.path(), &self.env_with(extra), args, stdin).await
    }

    /// Starts the binary with `args` (a server command) and waits until it is ready.
    pub async fn spawn(&self, extra: &[(&str, &str)], args: &[&str]) -> Server {
        Server::spawn("server", self.dir.path(), self.env_with(extra), args).await
    }

    /// Starts `serve`, named in failure messages and in the log printed on a panic.
    pub async fn serve(&self, name: &'static str) -> Server {
        Server::spawn(name, self.dir.path(), self.env.clone(), &["serve"]).await
    }

    /// `bootstrap` with a generated password.
    pub async fn bootstrap(&self, workspace: &str, email: &str) -> Owner {
        let out = self
            .run(
                &["bootstrap", "--workspace", workspace, "--email", email],
                None,
            )
            .await;
        out.assert_success();
        let line = out.json_line();
        let field = |name: &str| {
            line[name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} in {line}"))
                .to_owned()
        };
        Owner {
            workspace_id: field("workspaceId"),
            user_id: field("userId"),
            email: email.to_owned(),
            password: field("password"),
        }
    }

    /// A direct view of the database (migrations already applied by the binary).
    pub async fn store(&self) -> Store {
        open_store(&test_config(&self.db.url)).await
    }

    pub fn pg_database_name(&self) -> String {
        self.db
            .url
            .rsplit_once('/')
            .map(|(_, name)| name.to_owned())
            .expect("database name in the URL")
    }
}

/// A running server process. Dropping it kills the process, so a failing test leaves nothing
/// behind; on a panic it also prints what the server logged.
pub struct Server {
    pub name: &'static str,
    pub port: u16,
    /// Where this process serves /metrics (HEFFL_METRICS_BIND), when it does.
    pub metrics_port: Option<u16>,
    pub client: Client,
    child: Child,
    pid: u32,
    base: String,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts the binary on a free port (`HEFFL_BIND` is set here) and waits until it is ready.
    pub async fn spawn(
        name: &'static str,
        dir: &Path,
        mut env: Vec<(String, String)>,
        args: &[&str],
    ) -> Server {
        let port = free_port();
        env.retain(|(k, _)| k != "HEFFL_BIND");
        env.push(("HEFFL_BIND".to_owned(), format!("127.0.0.1:{port}")));
        // Each process its own metrics port: the default would collide between tests.
        if !env.iter().any(|(k, _)| k == "HEFFL_METRICS_BIND") {
            env.push((
                "HEFFL_METRICS_BIND".to_owned(),
                format!("127.0.0.1:{}", free_port()),
            ));
        }
        let metrics_port = env
            .iter()
            .find(|(k, _)| k == "HEFFL_METRICS_BIND")
            .and_then(|(_, v)| v.parse::<std::net::SocketAddr>().ok())
            .map(|address| address.port());
        let mut child = command(dir, &env, args).spawn().expect("spawn heffl-api");
        let pid = child.id().expect("pid");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        // Read continuously: a full pipe would block the server's logging, and the test needs
        // everything it wrote.
        let stderr_reader = tokio::spawn(async move {
            let mut buffer = [0u8; 8192];
            loop {
                match pipe.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .expect("stderr lock")
                        .extend_from_slice(&buffer[..n]),
                }
            }
        });
        let mut server = Server {
            name,
            child,
            pid,
            port,
            metrics_port,
            base: format!("http://127.0.0.1:{port}"),
            client: Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("client"),
            stderr,
            stderr_reader: Some(stderr_reader),
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        let url = self.url("/healthz");
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "heffl-api {} exited with {status} before it was ready; stderr:\n{}",
                    self.name,
                    self.stderr_text()
                );
            }
            let probe = self
                .client
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if probe.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "heffl-api {} not ready within {READY_DEADLINE:?}; stderr:\n{}",
                self.name,
                self.stderr_text()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The process's resident memory, in bytes (Linux's /proc).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("the server's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmRSS");
        kib * 1024
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Everything the process has written to stderr so far.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).into_owned()
    }

    /// Waits until stderr satisfies `done`, polling with a deadline.
    pub async fn wait_for_stderr(&self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done(&self.stderr_text()) {
            assert!(
                Instant::now() < deadline,
                "stderr never showed {what}; stderr:\n{}",
                self.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// SIGTERM, as a process supervisor sends it.
    pub async fn sigterm(&self) {
        let status = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid);
    }

    /// Waits for the process to exit and for its stderr to be read to the end.
    pub async fn wait_exit(&mut self) -> (ExitStatus, String) {
        let status = match tokio::time::timeout(EXIT_DEADLINE, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!(
                "heffl-api {} did not exit within {EXIT_DEADLINE:?} of SIGTERM; stderr:\n{}",
                self.name,
                self.stderr_text()
            ),
        };
        if let Some(reader) = self.stderr_reader.take() {
            tokio::time::timeout(EXIT_DEADLINE, reader)
                .await
                .expect("stderr closes after exit")
                .expect("stderr reader");
        }
        (status, self.stderr_text())
    }

    /// SIGKILL: the process gets no chance to finish a request, flush usage or close anything.
    pub async fn sigkill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        tokio::time::timeout(EXIT_DEADLINE, self.child.wait())
            .await
            .expect("exit after SIGKILL")
            .expect("wait");
    }

    /// SIGTERM, then the exit status and the whole of stderr.
    pub async fn stop(&mut self) -> (ExitStatus, String) {
        self.sigterm().await;
        self.wait_exit().await
    }

    /// A request with an optional bearer token, `x-api-key` and JSON body, read with `parts`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
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

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.request(method, path, bearer, None, body).await
    }

    pub async fn send_with_key(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.request(method, path, None, Some(key), body).await
    }

    pub async fn login(&self, email: &str, password: &str) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            "/app/v1/auth/login",
            None,
            Some(json!({ "email": email, "password": password })),
        )
        .await
    }

    pub async fn login_token(&self, email: &str, password: &str) -> String {
        let (status, body) = self.login(email, password).await;
        assert_eq!(status, StatusCode::OK, "login of {email}: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Creates a key over HTTP; returns (id, key).
    pub async fn create_key(
        &self,
        token: &str,
        workspace_id: &str,
        name: &str,
    ) -> (String, String) {
        let (status, body) = self
            .send(
                Method::POST,
                &format!("/app/v1/workspaces/{workspace_id}/api-keys"),
                Some(token),
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create key: {body}");
        (
            body["id"].as_str().expect("id").to_owned(),
            body["key"].as_str().expect("key").to_owned(),
        )
    }

    /// Invites a new person with `role` and accepts as them, creating their account (docs/api.md
    /// §10); returns (user id, their session token).
    pub async fn add_member(
        &self,
        owner_token: &str,
        workspace_id: &str,
        email: &str,
        role: &str,
    ) -> (String, String) {
        let password = format!("pw-{}", heffl_api::domain::base62::random_string(16));
        let (status, body) = self
            .send(
                Method::POST,
                &format!("/app/v1/workspaces/{workspace_id}/invitations"),
                Some(owner_token),
                Some(json!({ "email": email, "role": role })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "invite: {body}");
        let (status, body) = self
            .send(
                Method::POST,
                "/app/v1/invitations/accept",
                None,
                Some(json!({ "token": body["token"], "name": email, "password": password })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "accept: {body}");
        let user_id = body["user"]["id"].as_str().expect("user id").to_owned();
        (user_id, self.login_token(email, &password).await)
    }

    /// This process's own Prometheus text.
    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(format!(
                "http://127.0.0.1:{}/metrics",
                self.metrics_port
                    .expect("this server has no metrics listener")
            ))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("metrics text")
    }

    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    /// Repeats `probe` (every `POLL`) while it still succeeds, until it is refused as
    /// `refusal`; fails, naming the caller's line, if that takes longer than `deadline` from
    /// `since`, when the `change` was made. Logs and returns how long it took and how many
    /// requests still succeeded meanwhile.
    #[track_caller]
    pub fn until_refused<'a>(
        &'a self,
        change: &'a str,
        since: Instant,
        deadline: Duration,
        probe: Probe<'a>,
        refusal: Refusal,
    ) -> impl std::future::Future<Output = (Duration, usize)> + 'a {
        let at = std::panic::Location::caller();
        async move {
            let mut stale = 0;
            loop {
                let (status, answer) = self
                    .send_with_key(
                        probe.method.clone(),
                        probe.path,
                        probe.key,
                        probe.body.clone(),
                    )
                    .await;
                let elapsed = since.elapsed();
                if status == refusal.status {
                    assert_error(
                        status,
                        &answer,
                        refusal.status,
                        refusal.code,
                        Some(refusal.reason),
                    );
                    assert!(
                        elapsed <= deadline,
                        "{at}: {}: refused only after {elapsed:?} (limit {deadline:?})",
                        self.name
                    );
                    eprintln!(
                        "PROPAGATION {change} -> {} on {} after {elapsed:?} ({stale} stale answers)",
                        refusal.status.as_u16(),
                        self.name
                    );
                    return (elapsed, stale);
                }
                assert_eq!(status, probe.ok, "{at}: {}: {answer}", self.name);
                stale += 1;
                assert!(
                    elapsed < deadline,
                    "{at}: {}: still {} {elapsed:?} after the change ({stale} stale answers)",
                    self.name,
                    probe.ok
                );
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// A key whose workspace (or row) was deleted by another process is refused as unknown
    /// within the propagation deadline; returns how long it took.
    #[track_caller]
    pub fn until_key_gone<'a>(
        &'a self,
        key: &'a str,
    ) -> impl std::future::Future<Output = Duration> + 'a {
        let refused = self.until_refused(
            "deletion elsewhere",
            Instant::now(),
            PROPAGATION_DEADLINE,
            Probe::me(key),
            Refusal::unauthorized("invalid_api_key"),
        );
        async move { refused.await.0 }
    }

    /// A change made by another process (the CLI, another server) reaches this one within one
    /// second (docs/api.md §7): its key cache hears of it through the database. Returns how long it
    /// took from now.
    #[track_caller]
    pub fn until_key_revoked<'a>(
        &'a self,
        key: &'a str,
    ) -> impl std::future::Future<Output = Duration> + 'a {
        let refused = self.until_refused(
            "revoke elsewhere",
            Instant::now(),
            PROPAGATION_DEADLINE,
            Probe::me(key),
            Refusal::unauthorized("revoked_api_key"),
        );
        async move { refused.await.0 }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- heffl-api {} stderr ---\n{}",
                self.name,
                self.stderr_text()
            );
        }
        let _ = self.child.start_kill();
    }
}

/// The value of one series in Prometheus text (0 when the series has not appeared yet).
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().expect("metric value"))
        })
        .unwrap_or(0.0)
}

/// Asserts that `series` grew by at least `at_least` between two scrapes (the recorder is
/// process-wide and tests run in parallel, so others may add to it too).
#[track_caller]
pub fn assert_moved(before: &str, after: &str, series: &str, at_least: f64) {
    let moved = metric_value(after, series) - metric_value(before, series);
    assert!(
        moved >= at_least,
        "{series} moved by {moved}, not at least {at_least}:\n{after}"
    );
}
