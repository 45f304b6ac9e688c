//! The HTTP surface: `app(state)` builds the whole service with its layers; `serve` runs it with
//! graceful shutdown. Its rooms, each a folder of small modules:
//!
//! - `server/`: the accept loop, connections and their clocks, TLS, the metrics listener;
//! - `pipeline/`: what every request passes (the request layer, ids, the body limit, JSON
//!   errors, route metrics, extractors, the OpenAPI parts);
//! - `auth/`: the `x-api-key` check, sessions, throttles, credits, GitHub's keys;
//! - `routes/`: one file per resource, and the route table;
//! - `state.rs`: what the rooms share. No module imports this file.

mod auth;
mod background;
mod outbox;
mod pipeline;
mod routes;
mod server;
mod state;

pub use auth::api_key::Principal;
pub use outbox::{check_email_config, OutboxError};
pub use pipeline::client::{client_ip, throttle_key};
pub use server::metrics_listener::{serve_metrics, spawn_metrics};
pub use server::tls;
pub use state::{AppState, StateInner, MAX_BODY_BYTES, X_API_KEY};

use crate::config::Config;
use axum::http::{header, HeaderValue, Method};
use pipeline::{json_errors, openapi, stack};
use routes::Pages as _;
use server::open_files;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The whole HTTP surface as one service: the request layer (stack.rs) around the router.
pub type App = stack::RequestService;

pub fn app(state: AppState) -> App {
    // Route metrics and the key check wrap each handler where the route table registers it
    // (`metered`, `keyed`), not the routes: a route layer boxes and clones every route again
    // on every request.
    let dashboard = routes::dashboard().layer(dashboard_cors(&state.config));
    let (routes, document) = utoipa_axum::router::OpenApiRouter::with_openapi(openapi::base())
        .nest(routes::DASHBOARD, dashboard)
        // Merged with full paths rather than nested: nesting rewrites every request's URI,
        // a cost the hot path of key verification need not pay.
        .merge(routes::api())
        .merge(routes::operations())
        .split_for_parts();
    let document = openapi_json(&document);
    let router = routes
        .page("/openapi.json", move || async move {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                document,
            )
        })
        .fallback(json_errors::no_route)
        .with_state(state.clone());
    // Request id, logs, body limit, timeout, panics and JSON errors, in one layer (stack.rs),
    // around the router rather than `Router::layer`, which would box it into every route.
    stack::RequestService::new(router, state.config.request_timeout, state.proxies.clone())
}

/// Serialized once: the document is fixed for the life of the router.
fn openapi_json(document: &utoipa::openapi::OpenApi) -> axum::body::Bytes {
    match document.to_pretty_json() {
        Ok(json) => axum::body::Bytes::from(json),
        Err(err) => {
            // Cannot happen for a document made of utoipa's own types; keep serving the API.
            tracing::error!(error = %err, "could not serialize the OpenAPI document");
            axum::body::Bytes::from_static(b"{}")
        }
    }
}

/// Only the configured dashboard origins get CORS, and only on /app/v1.
fn dashboard_cors(config: &Config) -> CorsLayer {
    let origins: Vec<_> = config
        .dashboard_origins
        .iter()
        .filter_map(|origin| origin.parse().ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600))
}

/// Runs until SIGINT or SIGTERM, then stops accepting and lets in-flight requests finish.
pub async fn serve(state: AppState, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_until(state, listener, shutdown_signal()).await
}

/// Like `serve`, but stops when `shutdown` completes (tests and embedders choose the signal).
pub async fn serve_until(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = state.config.shutdown_grace;
    let tls = match (&state.config.tls_cert, &state.config.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = server::tls::Tls::load(server::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            })
            .map_err(std::io::Error::other)?;
            tls.reload_on_hangup();
            Some(tls)
        }
        _ => None,
    };
    let background = background::spawn(&state);
    let app = app(state.clone());
    let (shutdown_started_tx, shutdown_started_rx) = tokio::sync::oneshot::channel::<()>();
    let mut limits = server::accept::Limits::from_config(&state.config, state.proxies.clone());
    limits.max_connections = open_files::fit_connection_cap(
        state.config.max_connections,
        state.config.db_max_connections,
    ) as usize;
    let server = server::accept::serve_connections(listener, app, limits, tls, async move {
        shutdown.await;
        tracing::info!("shutdown signal received; finishing in-flight requests");
        let _ = shutdown_started_tx.send(());
    });
    let grace_deadline = async move {
        if shutdown_started_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        () = server => Ok(()),
        () = grace_deadline => {
            tracing::warn!("requests still running after the shutdown grace period; exiting");
            Ok(())
        }
    };
    background.stop(&state).await;
    result
}

/// SIGINT or SIGTERM. The handlers are installed here, when this is called, not when the
/// future is first polled: a signal that arrives between the first answered request and that
/// poll would otherwise kill the process with its default action, mid-request.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |stream: Option<tokio::signal::unix::Signal>| async move {
                match stream {
                    Some(mut stream) => {
                        stream.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(terminate) => {}
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
