//! Guarantees that no error leaves the server as plain text: responses made by layers and by
//! axum itself (405, 408 timeout, 413, a caught panic) get the docs/api.md §4 JSON shape.

use crate::error::{ApiError, Reason};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub async fn no_route() -> ApiError {
    ApiError::not_found("No route matches this path; see /docs for the API.")
}

/// A caught panic. The payload may quote request data, so it is not logged verbatim.
pub fn panic_response_now() -> Response {
    ApiError::internal("handler panicked").into_response()
}

/// The request outlived `HEFFL_REQUEST_TIMEOUT`.
pub fn timeout_response() -> Response {
    ApiError::ServiceUnavailable {
        reason: Reason::Timeout,
        message: "The request took too long to process; retry it.".into(),
    }
    .into_response()
}

/// Called for 4xx and 5xx responses only.
pub fn ensure_json_errors(mut response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::REQUEST_TIMEOUT {
        // The body was refused unread, so the connection cannot carry another request; say so,
        // or a client's pool reuses it and loses its next request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::not_found("Not found."),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => crate::http::pipeline::body_limit::too_large(),
        StatusCode::REQUEST_TIMEOUT => ApiError::ServiceUnavailable {
            reason: Reason::Timeout,
            message: "The request took too long to process; retry it.".into(),
        },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
            "Send the body as JSON with Content-Type: application/json.".into(),
        ),
        StatusCode::INTERNAL_SERVER_ERROR => ApiError::internal("non-JSON 500 from a layer"),
        other if other.is_server_error() => ApiError::ServiceUnavailable {
            reason: Reason::Unavailable,
            message: "The service is unavailable right now; retry in a few seconds.".into(),
        },
        _ => ApiError::bad_request(Reason::BadRequest, "The request could not be understood."),
    };
    let (mut parts, _) = response.into_parts();
    let mut replacement = error.into_response();
    // Keep headers set by earlier layers (Allow on 405, CORS, request id) under the new body.
    for (name, value) in replacement.headers().iter() {
        parts.headers.insert(name.clone(), value.clone());
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    *replacement.headers_mut() = parts.headers;
    replacement
}
