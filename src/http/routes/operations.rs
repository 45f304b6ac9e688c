use crate::error::ApiError;
use crate::http::openapi::ErrorBody;
use crate::http::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
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
pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// The database answers; 503 while it does not.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "Readiness: the database answers",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
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

/// Prometheus text format. Gauges are sampled at scrape time.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"),
        (status = 500, description = "Internal error", body = ErrorBody),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let pool = state.store.pool();
    let size = f64::from(pool.size());
    let idle = pool.num_idle() as f64;
    metrics::gauge!("heffl_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("heffl_db_pool_connections", "state" => "in_use").set((size - idle).max(0.0));
    metrics::gauge!("heffl_db_pool_max_connections")
        .set(f64::from(state.config.db_max_connections));
    metrics::gauge!("heffl_key_cache_entries").set(state.store.key_cache().entry_count() as f64);
    metrics::gauge!("heffl_key_cache_live").set(if state.store.key_cache().is_live() {
        1.0
    } else {
        0.0
    });
    let handle = crate::telemetry::prometheus();
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}
