//! docs/api.md §9 "Slow and idle clients are cut off", tested with raw sockets as the attacks they
//! stop: a connection that stalls inside its headers, one that trickles them, one that idles on
//! keep-alive, and a flood of half-open connections from one address.

use crate::common::TestApp;
use crate::process_harness::assert_moved;
use reqwest::StatusCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a test waits for the server to cut a connection it should cut.
const CUT_DEADLINE: Duration = Duration::from_secs(10);
const PARTIAL_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n";
const FULL_REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

async fn start(max_connections: u32, header_read: Duration) -> TestApp {
    TestApp::sqlite_with(|config| {
        config.header_read_timeout = header_read;
        config.idle_timeout = IDLE_TIMEOUT;
        config.max_connections = max_connections;
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
/// Fails if it is still open after `CUT_DEADLINE`.
async fn until_closed(stream: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + CUT_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => panic!("connection still open after {CUT_DEADLINE:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return (received, Instant::now()),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Reads one complete `/healthz` response (headers and its Content-Length body).
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("response within 5 s")
            .expect("read");
        assert!(n > 0, "closed before a full response: {received:?}");
        received.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_headers_then_silence_are_cut_off() {
    let app = start(100, HEADER_READ_TIMEOUT).await;
    let mut stream = connect(&app).await;
    let opened = Instant::now();
    stream.write_all(PARTIAL_HEAD).await.expect("write");
    let (received, closed) = until_closed(&mut stream).await;
    assert!(
        received.is_empty(),
        "no answer to a request that never ended: {received:?}"
    );
    assert!(
        closed - opened >= HEADER_READ_TIMEOUT,
        "closed before the header timeout, after {:?}",
        closed - opened
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_header_line_per_half_second_is_cut_off() {
    let header_read = Duration::from_secs(2);
    let app = start(100, header_read).await;
    let stream = connect(&app).await;
    let opened = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    // Each line arrives well within any per-read timeout; only a deadline for the whole head
    // stops this.
    let trickle = tokio::spawn(async move {
        writer.write_all(b"GET /healthz HTTP/1.1\r\n").await?;
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(500)).await;
            writer
                .write_all(format!("X-Line-{i}: {i}\r\n").as_bytes())
                .await?;
        }
        Ok::<(), std::io::Error>(())
    });
    let mut buffer = [0u8; 1024];
    let read = tokio::time::timeout(CUT_DEADLINE, reader.read(&mut buffer))
        .await
        .expect("the trickling connection is cut within the deadline");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "no answer expected, got {read:?}"
    );
    assert!(opened.elapsed() >= header_read);
    trickle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_is_cut_off_after_the_idle_timeout_not_the_header_timeout() {
    let app = start(100, HEADER_READ_TIMEOUT).await;
    let mut stream = connect(&app).await;
    stream.write_all(FULL_REQUEST).await.expect("write");
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the header timeout, shorter than the idle timeout: still served.
    tokio::time::sleep(HEADER_READ_TIMEOUT * 2).await;
    // The server's idle clock starts when it has written the answer, which is after this
    // instant and before the client has read it: timed from here, the idle time can come out a
    // round trip long, never short (a cut at the header timeout still fails the check).
    let asked = Instant::now();
    stream.write_all(FULL_REQUEST).await.expect("write");
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    let (received, closed) = until_closed(&mut stream).await;
    assert!(received.is_empty(), "{received:?}");
    assert!(
        closed - asked >= IDLE_TIMEOUT,
        "closed after {:?}, before the idle timeout",
        closed - asked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_open_connections_does_not_lock_out_a_new_client() {
    const CAP: u32 = 20;
    // Long enough that the header timeout is not what saves the newcomer: the cap's rule is.
    let app = start(CAP, Duration::from_secs(60)).await;
    let mut flood = Vec::new();
    for _ in 0..CAP * 3 {
        let mut stream = connect(&app).await;
        stream.write_all(PARTIAL_HEAD).await.expect("write");
        flood.push(stream);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let response = client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("/healthz answers within 1 s during the flood");
    assert_eq!(response.status(), StatusCode::OK);

    // The flood displaced itself: no more than the cap is left open.
    let deadline = Instant::now() + CUT_DEADLINE;
    loop {
        let mut open = 0;
        for stream in &mut flood {
            let mut byte = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await {
                Err(_) => open += 1,
                Ok(Ok(0)) | Ok(Err(_)) => {}
                Ok(Ok(_)) => panic!("a half-open connection got an answer"),
            }
        }
        if open <= CAP as usize {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} flood connections still open; cap {CAP}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A request's time runs from the first byte of its head, not from when its handler starts:
/// the duration metric (and the request log, from the same readings) sees a slow head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_counts_in_the_request_duration() {
    let app = start(100, Duration::from_secs(5)).await;
    // A route and method no other test sends slowly: the metrics are process-wide.
    let series = "heffl_http_request_duration_seconds_sum{method=\"PUT\",route=\"/api/v1/verify\"}";
    let before = app.metrics().await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"PUT /api/v1/verify HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n")
        .await
        .expect("write");
    let pause = Duration::from_millis(400);
    tokio::time::sleep(pause).await;
    stream.write_all(b"\r\n").await.expect("write");
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    let after = app.metrics().await;
    // The server reads the first bytes when it gets to the new connection, a little after
    // they were sent; a clock started with the handler would show about nothing.
    let at_least = pause - Duration::from_millis(50);
    assert_moved(&before, &after, series, at_least.as_secs_f64());
}

/// The request timeout is the handler's: a head that took longer than it to arrive (within the
/// header timeout) still gets its full time, instead of a 503 at the handler's first wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_does_not_spend_the_request_timeout() {
    let request_timeout = Duration::from_millis(500);
    let app = TestApp::sqlite_with(|config| {
        config.header_read_timeout = Duration::from_secs(5);
        config.request_timeout = request_timeout;
    })
    .await;
    let mut stream = connect(&app).await;
    // `/readyz` asks the database, so its handler waits at least once.
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    tokio::time::sleep(request_timeout * 2).await;
    stream.write_all(b"\r\n").await.expect("write");
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}
