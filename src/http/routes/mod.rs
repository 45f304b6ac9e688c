//! Route tables. Each submodule is one resource; this file is the map of the API.

mod api_keys;
mod audit;
mod auth;
mod credentials;
mod developer_page;
mod leads;
mod me;
mod members;
mod operations;
mod workspaces;

use super::AppState;
use axum::routing::{get, post};
use axum::Router;

/// /app/v1: the dashboard, authenticated by session (`SessionUser` extractor).
pub fn dashboard() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/session", get(auth::session))
        .route("/workspaces", post(workspaces::create))
        .route(
            "/workspaces/{workspace_id}/members",
            get(members::list).post(members::add),
        )
        .route(
            "/workspaces/{workspace_id}/members/{user_id}",
            axum::routing::patch(members::change_role).delete(members::remove),
        )
        .route(
            "/workspaces/{workspace_id}/api-keys",
            get(api_keys::list).post(api_keys::create),
        )
        .route(
            "/workspaces/{workspace_id}/api-keys/{key_id}",
            get(api_keys::get),
        )
        .route(
            "/workspaces/{workspace_id}/api-keys/{key_id}/revoke",
            post(api_keys::revoke),
        )
        .route(
            "/workspaces/{workspace_id}/api-keys/{key_id}/roll",
            post(api_keys::roll),
        )
        .route("/workspaces/{workspace_id}/audit-events", get(audit::list))
}

/// /api/v1: integrators, authenticated by `x-api-key` in a middleware before any handler.
pub fn api(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/me", get(me::me))
        .route("/leads", get(leads::list).post(leads::create))
        .route(
            "/leads/{lead_id}",
            get(leads::get).patch(leads::update).delete(leads::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            super::api_key_auth::require_api_key,
        ))
        // Added after the layer, so it is not behind it: reporting a leak needs no key.
        .route("/credentials/revoke", post(credentials::revoke))
}

pub fn operations() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(operations::healthz))
        .route("/readyz", get(operations::readyz))
        .route("/metrics", get(operations::metrics))
        .route("/settings/developer", get(developer_page::index))
        .route("/settings/developer/app.js", get(developer_page::script))
        .route(
            "/settings/developer/app.css",
            get(developer_page::stylesheet),
        )
}
