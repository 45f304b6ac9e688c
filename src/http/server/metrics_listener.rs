//! /metrics on its own listener (`HEFFL_METRICS_BIND`, loopback by default), for the scraper
//! only: the auth-outcome and route counters tell an outsider which keys and routes are in use,
//! so the API listener never serves them (it answers the JSON 404).

use crate::config::MetricsBind;
use crate::http::pipeline::json_errors;
use crate::http::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Binds `HEFFL_METRICS_BIND` and serves it in the background; `None` when it is `off`. A port
/// already in use leaves this instance without metrics rather than without an API (say, a
/// second instance on one host with the default), and says so in the log.
pub async fn spawn_metrics(state: &AppState) -> Option<JoinHandle<()>> {
    let MetricsBind::On(address) = state.config.metrics_bind else {
        return None;
    };
    match TcpListener::bind(address).await {
        Ok(listener) => {
            tracing::info!(%address, "metrics listening");
            let state = state.clone();
            Some(tokio::spawn(async move {
                if let Err(err) = serve_metrics(state, listener).await {
                    tracing::warn!(error = %err, "metrics listener stopped");
                }
            }))
        }
        Err(err) => {
            tracing::error!(%address, error = %err, "cannot listen on HEFFL_METRICS_BIND; /metrics is not served");
            None
        }
    }
}

/// Serves /metrics (and the JSON 404 for anything else) on `listener` until the task ends.
pub async fn serve_metrics(state: AppState, listener: TcpListener) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .fallback(json_errors::no_route)
        .with_state(state);
    axum::serve(listener, router).await
}

/// Prometheus text format. Gauges are sampled at scrape time.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (size, idle) = state.store.pool_connections();
    let (size, idle) = (f64::from(size), idle as f64);
    metrics::gauge!("heffl_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("heffl_db_pool_connections", "state" => "in_use").set((size - idle).max(0.0));
    metrics::gauge!("heffl_db_pool_max_connections")
        .set(f64::from(state.config.db_max_connections));
    metrics::gauge!("heffl_key_cache_entries").set(state.verifier.key_cache().entry_count() as f64);
    metrics::gauge!("heffl_key_cache_live").set(if state.verifier.key_cache().is_live() {
        1.0
    } else {
        0.0
    });
    crate::telemetry::sample_process_metrics();
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
