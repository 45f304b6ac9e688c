use crate::error::ApiError;
use crate::http::AppState;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

/// The process is up; says nothing about the database.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers; 503 while it does not.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.store.ping().await {
        Ok(()) => Ok(Json(json!({ "status": "ready" }))),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            Err(ApiError::database_unavailable())
        }
    }
}
