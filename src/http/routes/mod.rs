//! Route tables. Each submodule is one resource; this file is the map of the API.
//!
//! Documented routes are registered only with `.routes(routes!(handler, ...))`, which takes the
//! path and method from the handler's `#[utoipa::path]`: a handler without one does not compile
//! here, so the OpenAPI document cannot miss a route. Handlers sharing a path share a `routes!`.

mod api_keys;
mod audit;
mod auth;
mod credentials;
mod developer_page;
mod docs;
mod invitations;
mod leads;
mod me;
mod members;
mod operations;
mod password_reset;
mod scopes;
mod secret_scanning;
mod static_page;
mod usage;
mod verify;
mod webhooks;
mod workspaces;

use crate::http::state::AppState;
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// /app/v1: the dashboard, authenticated by session (`SessionUser` extractor).
pub fn dashboard() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(password_reset::options))
        .routes(routes!(password_reset::request))
        .routes(routes!(password_reset::confirm))
        .routes(routes!(auth::session))
        .routes(routes!(workspaces::create))
        .routes(routes!(auth::change_password))
        .routes(routes!(members::list))
        .routes(routes!(invitations::list, invitations::create))
        .routes(routes!(invitations::cancel))
        .routes(routes!(invitations::resend))
        .routes(routes!(invitations::lookup))
        .routes(routes!(invitations::accept))
        .routes(routes!(members::change_role, members::remove))
        .routes(routes!(api_keys::list, api_keys::create))
        .routes(routes!(api_keys::get, api_keys::update))
        .routes(routes!(api_keys::revoke))
        .routes(routes!(api_keys::roll))
        .routes(routes!(audit::list))
        .routes(routes!(scopes::list))
        .routes(routes!(usage::key_usage))
        .routes(routes!(usage::workspace_usage))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::roll_secret))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::retry))
}

/// /api/v1 (full paths in the handlers' annotations): integrators, authenticated by
/// `x-api-key` in a middleware before any handler.
pub fn api(state: AppState) -> OpenApiRouter<AppState> {
    let keyed = OpenApiRouter::new()
        .routes(routes!(me::me))
        .routes(routes!(leads::list, leads::create))
        .routes(routes!(leads::get, leads::update, leads::delete))
        .merge(verify::routes())
        .route_layer(crate::http::auth::api_key::RequireApiKey::new(state));
    // Reporting a leak needs no key.
    let open = OpenApiRouter::new()
        .routes(routes!(credentials::revoke))
        .routes(routes!(secret_scanning::github))
        .route_layer(crate::http::pipeline::metrics::RouteMetricsLayer);
    keyed.merge(open)
}

/// Operations are documented; the pages and their assets are not API and are left out.
pub fn operations() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(operations::healthz))
        .routes(routes!(operations::readyz))
        // People who type the bare address want the page.
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/settings/developer") }),
        )
        .route("/docs", get(docs::index))
        .route("/docs/init.js", get(docs::init_script))
        .route("/docs/swagger-ui-bundle.js", get(docs::bundle))
        .route("/docs/swagger-ui.css", get(docs::stylesheet))
        .route("/settings/developer", get(developer_page::index))
        .route("/settings/developer/app.js", get(developer_page::script))
        .route(
            "/settings/developer/api.js",
            get(developer_page::api_script),
        )
        .route(
            "/settings/developer/account.js",
            get(developer_page::account_script),
        )
        .route(
            "/settings/developer/charts.js",
            get(developer_page::charts_script),
        )
        .route(
            "/settings/developer/webhooks.js",
            get(developer_page::webhooks_script),
        )
        .route(
            "/settings/developer/people.js",
            get(developer_page::people_script),
        )
        .route(
            "/settings/developer/app.css",
            get(developer_page::stylesheet),
        )
}
