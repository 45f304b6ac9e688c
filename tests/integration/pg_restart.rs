//! The change feed under a PostgreSQL restart: two instances serve load while the database is
//! stopped and started again; each LISTEN connection comes back by itself, and a revoke made
//! after recovery holds on the other instance within a second (docs/api.md §7).
//!
//! It runs on a temporary PostgreSQL cluster of its own (initdb + pg_ctl on a free port under a
//! temp dir), never the machine's server. Without the PostgreSQL binaries it is skipped, except
//! under CI=true, where it fails.

use crate::common::postgres_required;
use crate::process_harness::{free_port, run_in, Server, PROPAGATION_DEADLINE};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RECOVERY_DEADLINE: Duration = Duration::from_secs(20);

/// A PostgreSQL cluster in a temp dir, stopped (immediately) when dropped.
struct TempCluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

impl TempCluster {
    /// `None` (or a panic under CI) when no cluster can be started here.
    fn start() -> Option<TempCluster> {
        match TempCluster::try_start() {
            Ok(cluster) => Some(cluster),
            Err(why) if postgres_required() => panic!("cannot start a temporary PostgreSQL: {why}"),
            Err(why) => {
                eprintln!("skipping: cannot start a temporary PostgreSQL ({why})");
                None
            }
        }
    }

    fn try_start() -> Result<TempCluster, String> {
        let bin = postgres_bin().ok_or("no /usr/lib/postgresql/*/bin with initdb and pg_ctl")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        if is_root() {
            // PostgreSQL refuses to run as root; the cluster belongs to the postgres user.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("chown to postgres failed".into());
            }
        }
        let cluster = TempCluster {
            bin,
            data,
            port: free_port(),
            _dir: dir,
        };
        let data = cluster.data.to_string_lossy().into_owned();
        cluster.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        )?;
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(tool);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir(self.data.parent().unwrap_or(Path::new("/tmp")))
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} {args:?}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let data = self.data.to_string_lossy().into_owned();
        let socket_dir = self
            .data
            .parent()
            .unwrap_or(Path::new("/tmp"))
            .to_string_lossy()
            .into_owned();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {socket_dir} -c fsync=off",
            self.port
        );
        let log = format!("{socket_dir}/postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-o", &options, "-l", &log, "-w", "-t", "30", "start",
            ],
        )
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), String> {
        let data = self.data.to_string_lossy().into_owned();
        self.run(
            "pg_ctl",
            &["-D", &data, "-m", mode, "-w", "-t", "30", "stop"],
        )
    }

    async fn listeners(&self) -> i64 {
        let Ok(mut conn) = sqlx::PgConnection::connect(&self.url()).await else {
            return 0;
        };
        let count =
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%'")
                .fetch_one(&mut conn)
                .await
                .unwrap_or(0);
        let _ = conn.close().await;
        count
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl_stop("immediate");
    }
}

/// Load on one instance with a key nobody revokes: counts answers by kind.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    unavailable: AtomicU64,
    unauthorized: AtomicU64,
    other: AtomicU64,
}

fn spawn_load(
    server: &Server,
    key: &str,
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let url = server.url("/api/v1/me");
    let key = key.to_owned();
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let counter = match client.get(&url).header("x-api-key", &key).send().await {
                Ok(r) if r.status() == StatusCode::OK => &load.ok,
                Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => &load.unavailable,
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED => &load.unauthorized,
                _ => &load.other,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

async fn wait_until_live(server: &Server) {
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    loop {
        let ready = server
            .client
            .get(server.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK);
        if ready && server.metric("heffl_key_cache_live").await == 1.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: not recovered within {RECOVERY_DEADLINE:?}",
            server.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Uses `key` until this process answers it from its cache, so that a later refusal proves the
/// cache entry was dropped by the feed.
async fn warm(server: &Server, key: &str) {
    const HIT: &str = "heffl_key_cache_total{result=\"hit\"}";
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    loop {
        let before = server.metric(HIT).await;
        let (status, body) = server
            .send_with_key(Method::GET, "/api/v1/me", key, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", server.name);
        if server.metric(HIT).await == before + 1.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: never served from the cache",
            server.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_feed_recovers_from_a_database_restart() {
    let Some(cluster) = TempCluster::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("working dir");
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", cluster.url().as_str()),
        ("HEFFL_RATE_LIMIT_PER_MINUTE", "0"),
        ("HEFFL_AUTH_FAILURES_PER_MINUTE", "0"),
        ("HEFFL_LOGIN_ATTEMPTS_PER_MINUTE", "1000"),
        ("HEFFL_SHUTDOWN_GRACE", "5s"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    run_in(dir.path(), &env, &["migrate"], None)
        .await
        .assert_success();
    let owner = run_in(
        dir.path(),
        &env,
        &[
            "bootstrap",
            "--workspace",
            "Acme",
            "--email",
            "owner@acme.test",
        ],
        None,
    )
    .await;
    owner.assert_success();
    let owner = owner.json_line();
    let workspace_id = owner["workspaceId"]
        .as_str()
        .expect("workspaceId")
        .to_owned();
    let a = Server::spawn("A", dir.path(), env.clone(), &["serve"]).await;
    let b = Server::spawn("B", dir.path(), env.clone(), &["serve"]).await;
    let token = a
        .login_token(
            "owner@acme.test",
            owner["password"].as_str().expect("password"),
        )
        .await;
    let (_, steady) = a.create_key(&token, &workspace_id, "Steady").await;
    tokio::join!(wait_until_live(&a), wait_until_live(&b));
    assert_eq!(
        cluster.listeners().await,
        2,
        "one LISTEN connection per instance"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (load_a, load_b) = (Arc::new(Load::default()), Arc::new(Load::default()));
    let loaders = [
        spawn_load(&a, &steady, Arc::clone(&load_a), Arc::clone(&stop)),
        spawn_load(&b, &steady, Arc::clone(&load_b), Arc::clone(&stop)),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;

    cluster.pg_ctl_stop("fast").expect("stop PostgreSQL");
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.pg_ctl_start().expect("start PostgreSQL again");
    let restarted = Instant::now();

    // Both come back by themselves: ready, and listening on new connections.
    tokio::join!(wait_until_live(&a), wait_until_live(&b));
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    while cluster.listeners().await < 2 {
        assert!(
            Instant::now() < deadline,
            "the LISTEN connections did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "PG RESTART: both instances live again {:?} after the start",
        restarted.elapsed()
    );

    // A revoke on A after recovery holds on B within a second, B having cached the key.
    let (key_id, key) = a
        .create_key(&token, &workspace_id, "Revoked after recovery")
        .await;
    warm(&b, &key).await;
    let (status, body) = a
        .send(
            Method::POST,
            &format!("/app/v1/workspaces/{workspace_id}/api-keys/{key_id}/revoke"),
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let took = b.until_key_revoked(&key).await;
    assert!(took <= PROPAGATION_DEADLINE);
    eprintln!("PG RESTART: revoke on A after recovery -> 401 on B after {took:?}");

    stop.store(true, Ordering::Relaxed);
    for loader in loaders {
        loader.await.expect("load task");
    }
    for (name, load) in [("A", &load_a), ("B", &load_b)] {
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        eprintln!(
            "PG RESTART load on {name}: {} ok, {} 503, {} 401, {} other",
            count(&load.ok),
            count(&load.unavailable),
            count(&load.unauthorized),
            count(&load.other)
        );
        // A good key is never told it is bad because the database was away (docs/api.md §4).
        assert_eq!(
            count(&load.unauthorized),
            0,
            "{name} answered a valid key 401"
        );
        assert_eq!(
            count(&load.other),
            0,
            "{name} answered something other than 200/503"
        );
        assert!(count(&load.ok) > 0);
    }
}
