//! `ApiError` as an HTTP response: the docs/api.md §4 body with the current request's id, the status,
//! and the headers some errors carry (`WWW-Authenticate`, `Retry-After`). Kept in `http` so
//! that the error type itself depends on nothing of the server.

use crate::error::{ApiError, ErrorCode, ErrorReason, Realm};
use crate::http::pipeline::header_number::header_number;
use crate::http::pipeline::request_scope;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(source) = &self {
            request_scope::with_current_id(
                |request_id| tracing::error!(error = %source, request_id, "internal error"),
            );
        }
        let body = request_scope::with_current_id(|id| self.body(id));
        let mut response = Response::new(axum::body::Body::from(body));
        *response.status_mut() = self.status_code();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match &self {
            ApiError::Unauthorized { realm, .. } => {
                let challenge = match realm {
                    Realm::ApiKey => "ApiKey header=\"x-api-key\"",
                    Realm::Bearer => "Bearer",
                    Realm::GitHubSignature => "GitHub-Signature",
                };
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            // 0: nothing to wait for that would help (credits with no refill).
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } if *retry_after_secs > 0 => {
                headers.insert(header::RETRY_AFTER, header_number(*retry_after_secs));
            }
            _ => {}
        }
        // Errors may carry reasons tied to one caller's credentials; never cache them.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let extensions = response.extensions_mut();
        extensions.insert(ErrorReason(self.reason()));
        extensions.insert(ErrorCode(self.code()));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Reason;
    use axum::http::StatusCode;

    #[test]
    fn unauthorized_carries_reason_and_challenge() {
        let err = ApiError::Unauthorized {
            realm: Realm::ApiKey,
            reason: Reason::RevokedApiKey,
            message: "This API key has been revoked.".into(),
        };
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "ApiKey header=\"x-api-key\""
        );
    }
}
