//! The 1 MiB body limit. A body declared too large is read and thrown away (up to a bound)
//! before the 413 is sent: closing a connection with unread data makes the kernel reset it,
//! and the client then sees a broken connection instead of our JSON answer.

use crate::error::ApiError;
use crate::http::state::MAX_BODY_BYTES;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::time::Duration;

/// Beyond this much, the sender is not a confused client but a flood; stop reading.
const MAX_DRAIN_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub fn declared_too_large(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|length| length > MAX_BODY_BYTES as u64)
}

/// Answers 413. A client that asked first (`Expect: 100-continue`) has sent nothing yet and
/// is answered at once: reading the body would send it `100 Continue`, inviting the very
/// upload being refused. Any other client's body is read and dropped (within bounds) first.
pub async fn refuse(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if !expects_continue(&parts.headers) {
        drain(body).await;
    }
    too_large().into_response()
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

/// The 413 of a body over the limit, however it was found out.
pub fn too_large() -> ApiError {
    ApiError::PayloadTooLarge(
        format!("The request body is larger than {MAX_BODY_BYTES} bytes.").into(),
    )
}

/// Caps the body at `MAX_BODY_BYTES`. A body whose size is known and within the limit (any
/// request with an acceptable Content-Length, and every request without a body) is passed as
/// it is: wrapping it would box it for nothing.
pub fn limit(request: Request) -> Request {
    let within = request
        .body()
        .size_hint()
        .upper()
        .is_some_and(|upper| upper <= MAX_BODY_BYTES as u64);
    if within {
        return request;
    }
    let (parts, body) = request.into_parts();
    let limited = Body::new(http_body_util::Limited::new(body, MAX_BODY_BYTES));
    Request::from_parts(parts, limited)
}

async fn drain(mut body: Body) {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |data| data.len());
            if read > MAX_DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}
