//! Requests hyper refuses before any handler runs (docs/api.md §4: no error without the JSON shape).

use crate::common::{assert_error, TestApp};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` on a fresh connection and reads the answer up to the server's close.
async fn raw(app: &TestApp, request: Vec<u8>) -> (StatusCode, String, Value) {
    let addr = app.base.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    // The server may answer and close before a large request is all sent; keep reading.
    let sending = tokio::spawn(async move {
        for chunk in request.chunks(16 * 1024) {
            if writer.write_all(chunk).await.is_err() {
                break;
            }
        }
        writer
    });
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 4096];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    sending.abort();
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {text:?}"));
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line: {head:?}"));
    let json =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text:?}"));
    (
        StatusCode::from_u16(status).expect("status"),
        head.to_ascii_lowercase(),
        json,
    )
}

#[track_caller]
fn assert_json_error(answer: (StatusCode, String, Value), status: StatusCode, reason: &str) {
    let (got, head, body) = answer;
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_error(got, &body, status, "BAD_REQUEST", Some(reason));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypers_own_refusals_have_json_bodies() {
    let app = TestApp::sqlite().await;
    let bad_byte = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n".to_vec();
    assert_json_error(
        raw(&app, bad_byte).await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    );

    let obs_fold = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n".to_vec();
    assert_json_error(
        raw(&app, obs_fold).await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    );

    let conflicting_length = b"POST /api/v1/leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec();
    assert_json_error(
        raw(&app, conflicting_length).await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    );

    let mut huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    assert_json_error(
        raw(&app, huge).await,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );

    let mut many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_json_error(
        raw(&app, many).await,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );

    // The server is still serving afterwards.
    let response = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(response.status(), StatusCode::OK);
}
