use crate::error::ApiError;
use crate::http::pipeline::openapi::{ErrorBody, ServerErrors};
use crate::http::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Json;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok` from /healthz, `ready` from /readyz.
    #[schema(examples("ok", "ready"))]
    status: &'static str,
}

/// The process is up; says nothing about the database.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "Liveness: the process is up",
    responses(
        (status = 200, description = "Up", body = Status),
        (status = 500, description = "Internal error", body = ErrorBody),
    )
)]
/// Always the same answer, so its JSON is written once, here (a test holds it to `Status`).
pub async fn healthz() -> Response {
    let mut response = Response::new(Body::from(Bytes::from_static(HEALTHZ_BODY)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

const HEALTHZ_BODY: &[u8] = br#"{"status":"ok"}"#;

/// The database answers; 503 while it does not.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "Readiness: the database answers",
    responses(
        (status = 200, description = "Ready", body = Status),
        ServerErrors,
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    match state.store.ping().await {
        Ok(()) => Ok(Json(Status { status: "ready" })),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            Err(ApiError::database_unavailable())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_healthz_body_is_the_documented_status() {
        let encoded = serde_json::to_vec(&Status { status: "ok" }).expect("json");
        assert_eq!(HEALTHZ_BODY, encoded.as_slice());
    }
}
