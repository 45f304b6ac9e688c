//! `scripts/cluster.sh` — three instances on one PostgreSQL and one Redis behind
//! Debian's nginx with `deploy/nginx.conf` — checked from outside, through nginx only, as a
//! client sees it: one key's limit holds within the bound, a revoke holds everywhere within a
//! second, a killed instance loses no idempotent request, and the throttles see each client's
//! own address. PostgreSQL only: several instances need it (SQLite is for one server).

use crate::common::{assert_too_many, assert_unauthorized, postgres_required, Db};
use crate::process_harness::{free_port, Deployment, BIN};
use crate::redis_harness::{shared_redis, test_prefix};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const NGINX: &str = "/usr/sbin/nginx";
const ME: &str = "/api/v1/me";

/// The running script; dropping it sends SIGTERM, which stops nginx and the instances.
struct Cluster {
    script: Child,
    dir: tempfile::TempDir,
    base: String,
    instance_ports: Vec<u16>,
    metrics_ports: Vec<u16>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(pid) = self.script.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        // Give the script its moment to stop what it started.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && self.script.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if std::thread::panicking() {
            for log in logs(self.dir.path()) {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                eprintln!("--- {} ---\n{text}", log.display());
            }
        }
    }
}

fn logs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("logs"))
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

fn ports(list: &[u16]) -> String {
    list.iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Cluster {
    async fn start(deployment: &Deployment, redis_url: &str, prefix: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("cluster dir");
        let port = free_port();
        let instance_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let metrics_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh");
        let mut child = Command::new("bash")
            .arg(script)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(deployment.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("HEFFL_REDIS_URL", redis_url)
            .env("HEFFL_REDIS_PREFIX", prefix)
            .env("HEFFL_RATE_LIMIT_PER_MINUTE", "60")
            .env("HEFFL_LEAK_REPORTS_PER_MINUTE", "3")
            // Polling a revoked key must not trip the failed-key throttle.
            .env("HEFFL_AUTH_FAILURES_PER_MINUTE", "0")
            .env("HEFFL_BIN", BIN)
            .env("NGINX", NGINX)
            .env("CLUSTER_PORT", port.to_string())
            .env("CLUSTER_INSTANCE_PORTS", ports(&instance_ports))
            .env("CLUSTER_METRICS_PORTS", ports(&metrics_ports))
            .env("CLUSTER_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run scripts/cluster.sh");
        let stdout = child.stdout.take().expect("stdout");
        let cluster = Cluster {
            script: child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
            instance_ports,
            metrics_ports,
        };
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("cluster ready") {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "scripts/cluster.sh never said it was ready"
        );
        for index in 0..3 {
            cluster.until_sharing(index).await;
        }
        cluster
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One instance's Prometheus text: on its metrics listener where it has one, else on its
    /// API listener.
    async fn metrics(&self, index: usize) -> String {
        let client = Client::new();
        for port in [self.metrics_ports[index], self.instance_ports[index]] {
            if let Ok(response) = client
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
            {
                if response.status() == StatusCode::OK {
                    return response.text().await.expect("metrics");
                }
            }
        }
        String::new()
    }

    async fn until_sharing(&self, index: usize) {
        // Generous: with the whole suite running on two cores, a heartbeat (3 s TTL) can be
        // late enough that the count dips below 3 for a while; this waits, it measures nothing.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.metrics(index).await;
            let value = |series: &str| crate::process_harness::metric_value(&text, series);
            if value("heffl_shared_limits_up") == 1.0
                && value("heffl_shared_limits_instances") == 3.0
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "instance {index} never shared limits with 3 instances"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill_instance(&self, index: usize) {
        let port = self.instance_ports[index];
        let pid = std::fs::read_to_string(self.dir.path().join(format!("instance-{port}.pid")))
            .expect("pid file");
        let status = std::process::Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

/// A client whose connections come from `address` (any of 127.0.0.0/8 on Linux).
fn client_from(address: &str) -> Client {
    Client::builder()
        .local_address(address.parse::<IpAddr>().expect("address"))
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("request through nginx");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn me(client: &Client, cluster: &Cluster, key: &str) -> (StatusCode, Value) {
    send(client.get(cluster.url(ME)).header("x-api-key", key)).await
}

async fn create_key(
    client: &Client,
    cluster: &Cluster,
    token: &str,
    ws: &str,
    body: Value,
) -> (String, String) {
    let (status, body) = send(
        client
            .post(cluster.url(&format!("/app/v1/workspaces/{ws}/api-keys")))
            .bearer_auth(token)
            .json(&body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["id"].as_str().expect("id").to_owned(),
        body["key"].as_str().expect("key").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_nginx_behave_as_one_service() {
    if !Path::new(NGINX).exists() {
        assert!(
            !postgres_required(),
            "{NGINX} is required (CI): apt-get install nginx"
        );
        eprintln!("SKIPPED: {NGINX} is not installed");
        return;
    }
    let Some(redis_url) = shared_redis().await else {
        return;
    };
    let Some(deployment) = Deployment::create_with(Db::Postgres, &[]).await else {
        return;
    };
    let owner = deployment.bootstrap("Acme", "owner@example.com").await;
    let cluster = Cluster::start(&deployment, &redis_url, &test_prefix()).await;
    let client = client_from("127.0.0.1");
    let (status, body) = send(
        client
            .post(cluster.url("/app/v1/auth/login"))
            .json(&json!({ "email": owner.email, "password": owner.password })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    let ws = owner.workspace_id.as_str();

    // 1. docs/api.md §12: 300 requests in 10 s, round-robin over 3 instances, a limit of 60.
    let (_, limited) =
        create_key(&client, &cluster, &token, ws, json!({ "name": "limited" })).await;
    let start = Instant::now();
    let mut admitted = 0;
    for i in 0..300u32 {
        let due = start + Duration::from_millis(33) * i;
        tokio::time::sleep_until(due.into()).await;
        let (status, body) = me(&client, &cluster, &limited).await;
        match status {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => assert_too_many(status, &body, "rate_limited"),
            other => panic!("{other}: {body}"),
        }
    }
    eprintln!(
        "300 requests in {:?} through nginx: {admitted} answers other than 429",
        start.elapsed()
    );
    assert!(
        (60..=66).contains(&admitted),
        "{admitted} answers other than 429"
    );

    // 2. The throttles see each client's own address (the instances trust nginx's
    //    X-Forwarded-For): 3 leak reports a minute for 127.0.0.2 across all instances (within
    //    the burst bound, N − 1 = 2 over), and 127.0.0.3 is not affected.
    let report = |client: Client| {
        let url = cluster.url("/api/v1/credentials/revoke");
        async move {
            send(
                client
                    .post(url)
                    .json(&json!({ "keys": ["hk_live_notakey"] })),
            )
            .await
            .0
        }
    };
    let mut from_two = Vec::new();
    for _ in 0..10 {
        from_two.push(report(client_from("127.0.0.2")).await);
    }
    let accepted = from_two
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    assert!(
        (3..=5).contains(&accepted),
        "reports from 127.0.0.2: {from_two:?}"
    );
    assert!(
        from_two[5..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{from_two:?}"
    );
    assert_eq!(report(client_from("127.0.0.3")).await, StatusCode::ACCEPTED);

    // 3. A revoke made through nginx (on whichever instance) holds on all of them within 1 s.
    let unlimited = json!({ "name": "unlimited", "rateLimitPerMinute": 0 });
    let (revoked_id, revoked) = create_key(&client, &cluster, &token, ws, unlimited.clone()).await;
    for _ in 0..6 {
        assert_eq!(me(&client, &cluster, &revoked).await.0, StatusCode::OK);
    }
    let (status, body) = send(
        client
            .post(cluster.url(&format!(
                "/app/v1/workspaces/{ws}/api-keys/{revoked_id}/revoke"
            )))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let since = Instant::now();
    // Three refusals in a row: round-robin has then asked every instance.
    let mut refusals_in_a_row = 0;
    while refusals_in_a_row < 3 {
        let (status, body) = me(&client, &cluster, &revoked).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_unauthorized(status, &body, "revoked_api_key");
            refusals_in_a_row += 1;
        } else {
            assert_eq!(status, StatusCode::OK, "{body}");
            refusals_in_a_row = 0;
        }
        assert!(
            since.elapsed() <= Duration::from_secs(1),
            "revoked key still served after {:?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "revoke held on every instance through nginx after {:?}",
        since.elapsed()
    );
    for _ in 0..6 {
        assert_eq!(
            me(&client, &cluster, &revoked).await.0,
            StatusCode::UNAUTHORIZED
        );
    }

    // 4. One instance killed: nginx retries each idempotent request on another; none is lost.
    let (_, key) = create_key(&client, &cluster, &token, ws, unlimited).await;
    for _ in 0..6 {
        assert_eq!(me(&client, &cluster, &key).await.0, StatusCode::OK);
    }
    cluster.kill_instance(1);
    let mut statuses = Vec::new();
    for _ in 0..60 {
        statuses.push(me(&client, &cluster, &key).await.0);
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "after killing an instance: {statuses:?}"
    );
}
