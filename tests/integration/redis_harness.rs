//! Redis for the tests: the machine's (127.0.0.1:6379, or HEFFL_TEST_REDIS_URL), shared by all
//! tests, each under its own key prefix; and throw-away `redis-server` processes on free ports
//! for the tests that stop Redis. The machine's Redis is never stopped.

use crate::common::postgres_required;
use crate::process_harness::free_port;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub fn redis_url() -> String {
    std::env::var("HEFFL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other test (or earlier run) uses.
pub fn test_prefix() -> String {
    format!(
        "heffl-test:{}:",
        heffl_api::domain::base62::random_string(12).to_lowercase()
    )
}

async fn ping(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let attempt = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(3), attempt).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// The shared Redis's URL, or `None` (the test is skipped) when it is unreachable outside CI.
/// In CI (CI=true, as for PostgreSQL) an unreachable Redis fails the test.
pub async fn shared_redis() -> Option<String> {
    let url = redis_url();
    match ping(&url).await {
        Ok(()) => Some(url),
        Err(why) if postgres_required() => {
            panic!("Redis is required (CI) but {url} is unreachable: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: Redis at {url} is unreachable ({why})");
            None
        }
    }
}

/// Reads one integer key (a shared count), 0 when it does not exist.
pub async fn get_count(url: &str, key: &str) -> u64 {
    let client = redis::Client::open(url).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    redis::cmd("GET")
        .arg(key)
        .query_async::<Option<u64>>(&mut connection)
        .await
        .expect("GET")
        .unwrap_or(0)
}

/// A `redis-server` of the test's own, keeping nothing on disk. Dropping it kills it.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub async fn start() -> OwnRedis {
        let mut redis = OwnRedis {
            port: free_port(),
            child: None,
        };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while ping(&self.url()).await.is_err() {
            assert!(Instant::now() < deadline, "own redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills it (SIGKILL: an outage, not a shutdown) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill own redis-server");
        }
    }
}
