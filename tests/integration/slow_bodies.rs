//! Slow bodies are slow clients, tested as the attacks they stop: a body that trickles one
//! byte at a time, connections that hold every slot of the server with stalled bodies, one
//! address taking more than its share of connections, an upload invited by `100 Continue` only
//! to be refused, and an open-files limit too small for the connection cap.

use crate::common::TestApp;
use crate::process_harness::{free_port, BIN};
use reqwest::StatusCode;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const LOGIN_HEAD: &str = "POST /app/v1/auth/login HTTP/1.1\r\nHost: localhost\r\n\
     Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Everything the server sends until it closes the connection (or `within` passes).
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => panic!(
                "still open after {within:?}; got {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Whether the server closed `stream` without a word within `within`.
async fn closed_at_once(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_gets_408_and_the_connection_is_closed() {
    let grace = Duration::from_secs(1);
    let app = TestApp::sqlite_with(|config| config.body_read_timeout = grace).await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    stream.write_all(LOGIN_HEAD.as_bytes()).await.expect("head");
    stream.write_all(b"{").await.expect("one byte");
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"REQUEST_TIMEOUT\""), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(started.elapsed() >= grace, "cut before the grace period");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_at_a_steady_pace_is_read_whole() {
    let app =
        TestApp::sqlite_with(|config| config.body_read_timeout = Duration::from_secs(1)).await;
    // 2 KB/s for about two seconds: past the grace period, and above the rate.
    let body = format!(
        "{{\"email\": \"nobody@example.com\", \"password\": \"{}\"}}",
        "p".repeat(4000)
    );
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /app/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    for chunk in body.as_bytes().chunks(200) {
        stream.write_all(chunk).await.expect("chunk");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_on_every_connection_do_not_lock_out_a_new_client() {
    const CAP: u32 = 20;
    let app = TestApp::sqlite_with(|config| {
        config.max_connections = CAP;
        // Long enough that the body timeout is not what saves the newcomer: the cap's rule is.
        config.body_read_timeout = Duration::from_secs(60);
    })
    .await;
    let mut flood = Vec::new();
    for _ in 0..CAP {
        let mut stream = connect(&app).await;
        stream.write_all(LOGIN_HEAD.as_bytes()).await.expect("head");
        stream.write_all(b"{").await.expect("one byte");
        flood.push(stream);
    }
    // Let the server see every stalled body before the newcomer comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let started = Instant::now();
    let response = client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("/healthz answers within 1 s while every other connection stalls its body");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_at_most_its_share_of_connections() {
    const SHARE: u32 = 5;
    let app = TestApp::sqlite_with(|config| config.max_connections_per_address = SHARE).await;
    let mut held = Vec::new();
    for _ in 0..SHARE {
        held.push(connect(&app).await);
    }
    let mut over = connect(&app).await;
    assert!(
        closed_at_once(&mut over, Duration::from_secs(2)).await,
        "a connection over the address's share stays open"
    );
    // The ones within the share are served.
    held[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut held[0], Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A closed connection gives its place back.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = reqwest::get(app.url("/healthz")).await.expect("healthz");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_is_not_held_to_one_address_share() {
    const SHARE: u32 = 3;
    let app = TestApp::sqlite_with(|config| {
        config.max_connections_per_address = SHARE;
        config.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..SHARE * 3 {
        held.push(connect(&app).await);
    }
    let last = held.last_mut().expect("a connection");
    assert!(!closed_at_once(last, Duration::from_millis(500)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_with_a_body_over_the_limit_gets_413_and_no_invitation() {
    let app = TestApp::sqlite().await;
    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /app/v1/auth/login HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/json\r\nContent-Length: 16777216\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await
        .expect("head");
    let answer = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"code\":\"PAYLOAD_TOO_LARGE\""),
        "{answer}"
    );
}

/// `ulimit -n 256` with the default cap of 10,000: the server lowers the cap to what fits and
/// says so with both numbers, instead of failing accepts under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_the_open_files_limit_cannot_hold_is_lowered_with_a_warning() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut child = tokio::process::Command::new("prlimit")
        .args(["--nofile=256:256", "--", BIN, "serve"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/heffl.db", dir.path().display()),
        )
        .env("HEFFL_BIND", format!("127.0.0.1:{port}"))
        .env("HEFFL_METRICS_BIND", "off")
        .env("HEFFL_LOG_FORMAT", "json")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("prlimit (util-linux) runs the server");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let warning = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("open-files limit") && line.contains("WARN") {
                return line;
            }
        }
        panic!("the server ended without the warning");
    })
    .await
    .expect("the warning within 30 s");
    // 256 descriptors less the server's own needs (64) and its database pool (10).
    assert!(
        warning.contains("\"configured_max_connections\":10000"),
        "{warning}"
    );
    assert!(warning.contains("\"max_connections\":182"), "{warning}");
    assert!(warning.contains("\"open_files_limit\":256"), "{warning}");
    child.kill().await.expect("kill");
}
