//! The HTTP surface: `app(state)` builds the whole service with its layers; `serve` runs it with
//! graceful shutdown.

mod api_key_auth;
mod auth_throttle;
mod background;
mod body_limit;
mod client;
mod connection;
pub(crate) mod credits;
mod error_response;
mod expiry_log;
mod extract;
mod github_keys;
mod header_number;
mod json_errors;
mod metrics;
mod metrics_listener;
mod open_files;
mod openapi;
mod outbox;
mod parse_errors;
mod request_id;
mod request_scope;
mod routes;
mod server;
mod session_auth;
mod slow_body;
mod stack;
mod throttle;
pub mod tls;

pub use api_key_auth::Principal;
pub use client::{client_ip, throttle_key};
pub use metrics_listener::{serve_metrics, spawn_metrics};
pub use outbox::{check_email_config, OutboxError};

use crate::config::Config;
use crate::domain::net::TrustedProxies;
use crate::limits::{Limiter, SharedLimits};
use crate::store::Store;
use crate::usage::UsageRecorder;
use crate::verify::credits::CreditLedger;
use crate::verify::{KeyCache, Verifier};
use axum::http::{header, HeaderName, HeaderValue, Method};
use std::ops::Deref;
use std::sync::Arc;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

pub struct StateInner {
    /// Reads, and writes that leave key verification alone.
    pub store: Store,
    /// Key verification: the cache this server keeps in step (see `serve_until`), the lookups
    /// and the writes that can make a cached verification stale.
    pub verifier: Verifier,
    pub config: Config,
    /// Whose X-Forwarded-For is believed (`HEFFL_TRUSTED_PROXIES`, `HEFFL_TRUST_FORWARDED_FOR`).
    pub proxies: TrustedProxies,
    pub usage: UsageRecorder,
    /// This instance's leases of keys' credits.
    pub credits: CreditLedger,
    login_throttle: throttle::LoginThrottle,
    reset_throttle: throttle::LoginThrottle,
    /// Invitation emails resent, per invitation.
    resends: Limiter,
    /// `None` without `HEFFL_SMTP_URL`: nothing is emailed.
    outbox: Option<outbox::Outbox>,
    shared_limits: SharedLimits,
    key_limits: Limiter,
    auth_throttle: auth_throttle::AuthThrottle,
    leak_reports: Limiter,
    expiry_log: Arc<expiry_log::ExpiryLog>,
    /// `HEFFL_GITHUB_SECRET_SCANNING_KEYS`, when set.
    github_keys: Option<github_keys::GitHubKeys>,
}

impl AppState {
    pub fn new(store: Store, config: Config) -> AppState {
        crate::telemetry::prometheus();
        let cache = if config.cache_capacity == 0 {
            KeyCache::disabled()
        } else {
            KeyCache::new(config.cache_capacity, config.cache_ttl)
        };
        let verifier = Verifier::new(store.clone(), cache);
        let shared_limits = shared_limits(&config).bounded(config.max_tracked_addresses as usize);
        let login_throttle =
            throttle::LoginThrottle::new(config.login_attempts_per_minute, &shared_limits);
        let reset_throttle = throttle::LoginThrottle::password_reset(
            config.login_attempts_per_minute,
            &shared_limits,
        );
        let proxies = TrustedProxies::new(&config.trusted_proxies, config.trust_forwarded_for);
        let github_keys = config
            .github_secret_scanning_keys
            .clone()
            .map(github_keys::GitHubKeys::new);
        // `serve` refuses to start on a configuration this cannot use; an embedder's is logged.
        let outbox = outbox::Outbox::from_config(&config).unwrap_or_else(|err| {
            tracing::error!(error = %err, "email is not sent");
            None
        });
        AppState(Arc::new(StateInner {
            store,
            verifier,
            proxies,
            config,
            usage: UsageRecorder::default(),
            credits: CreditLedger::default(),
            login_throttle,
            reset_throttle,
            resends: shared_limits.limiter("resend"),
            outbox,
            key_limits: shared_limits.limiter("key"),
            auth_throttle: auth_throttle::AuthThrottle::new(
                shared_limits.limiter("auth"),
                shared_limits.max_entries(),
            ),
            leak_reports: shared_limits.limiter("leak"),
            shared_limits,
            expiry_log: Arc::default(),
            github_keys,
        }))
    }
}

/// Without a usable `HEFFL_REDIS_URL` (the configuration checked it), limits are per instance.
fn shared_limits(config: &Config) -> SharedLimits {
    let Some(url) = &config.redis_url else {
        return SharedLimits::per_instance();
    };
    SharedLimits::redis(url, &config.redis_prefix).unwrap_or_else(|err| {
        tracing::error!(error = %err, "HEFFL_REDIS_URL cannot be used; limits are per instance");
        SharedLimits::per_instance()
    })
}

impl Deref for AppState {
    type Target = StateInner;

    fn deref(&self) -> &StateInner {
        &self.0
    }
}

/// The whole HTTP surface as one service: the request layer (stack.rs) around the router.
pub type App = stack::RequestService;

pub fn app(state: AppState) -> App {
    // Each group carries its route metrics itself: the keyed routes count them in the same
    // layer as the key check (`RequireApiKey`), one layer where two would each box and clone
    // the route again on every request.
    let dashboard = routes::dashboard()
        .layer(dashboard_cors(&state.config))
        .route_layer(metrics::RouteMetricsLayer);
    let api = routes::api(state.clone());
    let (routes, document) = utoipa_axum::router::OpenApiRouter::with_openapi(openapi::base())
        .nest("/app/v1", dashboard)
        // Merged with full paths rather than nested: nesting rewrites every request's URI,
        // a cost the hot path of key verification need not pay.
        .merge(api)
        .merge(routes::operations().route_layer(metrics::RouteMetricsLayer))
        .split_for_parts();
    let document = openapi_json(&document);
    let router = routes
        .route(
            "/openapi.json",
            axum::routing::get(move || async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    document,
                )
            })
            .route_layer(metrics::RouteMetricsLayer),
        )
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
            let tls = tls::Tls::load(tls::TlsFiles {
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
    let mut limits = server::Limits::from_config(&state.config, state.proxies.clone());
    limits.max_connections = open_files::fit_connection_cap(
        state.config.max_connections,
        state.config.db_max_connections,
    ) as usize;
    let server = server::serve_connections(listener, app, limits, tls, async move {
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
