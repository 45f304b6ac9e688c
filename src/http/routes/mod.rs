//! Route tables. Each submodule is one resource; this file is the map of the API.
//!
//! Documented routes are registered only with `.routes(endpoints!(wrap: handler, ...))`, which
//! takes the path and method from the handler's `#[utoipa::path]`: a handler without one does
//! not compile here, so the OpenAPI document cannot miss a route. Handlers sharing a path share
//! an `endpoints!`. `wrap` is what runs around each handler: `metered` (its route's metrics) or
//! `keyed` (the `x-api-key` check, then the metrics).

/// utoipa_axum's `routes!`, with each handler wrapped by `$wrap` (`metered` or `keyed`). The
/// wrapper goes around the handler, inside the one boxed route axum makes of it; a
/// `route_layer` would box and clone a second route around it on every request. A method the
/// path does not serve is answered 405 through the same wrapper, so a keyed path still asks
/// for its key first.
macro_rules! endpoints {
    ($wrap:ident: $($handler:path),+ $(,)?) => {{
        use utoipa_axum::PathItemExt as _;
        let mut paths = utoipa::openapi::path::Paths::new();
        let mut schemas = Vec::new();
        let mut methods = axum::routing::MethodRouter::new();
        $(
            // utoipa_axum's own reading of the handler's `#[utoipa::path]`, as its `routes!`
            // does it: path, operation (with tags) and methods, and the schemas it names.
            let (path, operation, types) = utoipa_axum::routes!(@resolve_types $handler : schemas);
            let handler = $wrap($handler);
            for method in &types {
                methods = methods.on(method.to_method_filter(), handler.clone());
            }
            paths.add_path_operation(&path, types, operation);
        )+
        (schemas, paths, methods.fallback($wrap($crate::http::routes::method_not_allowed)))
    }};
}

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

use crate::http::auth::api_key::keyed;
use crate::http::pipeline::metrics::metered;
use crate::http::state::AppState;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::routing::{get, MethodRouter};
use utoipa_axum::router::OpenApiRouter;

/// /app/v1: the dashboard, authenticated by session (`SessionUser` extractor).
pub fn dashboard() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(endpoints!(metered: auth::login))
        .routes(endpoints!(metered: auth::logout))
        .routes(endpoints!(metered: password_reset::options))
        .routes(endpoints!(metered: password_reset::request))
        .routes(endpoints!(metered: password_reset::confirm))
        .routes(endpoints!(metered: auth::session))
        .routes(endpoints!(metered: workspaces::create))
        .routes(endpoints!(metered: auth::change_password))
        .routes(endpoints!(metered: members::list))
        .routes(endpoints!(metered: invitations::list, invitations::create))
        .routes(endpoints!(metered: invitations::cancel))
        .routes(endpoints!(metered: invitations::resend))
        .routes(endpoints!(metered: invitations::lookup))
        .routes(endpoints!(metered: invitations::accept))
        .routes(endpoints!(metered: members::change_role, members::remove))
        .routes(endpoints!(metered: api_keys::list, api_keys::create))
        .routes(endpoints!(metered: api_keys::get, api_keys::update))
        .routes(endpoints!(metered: api_keys::revoke))
        .routes(endpoints!(metered: api_keys::roll))
        .routes(endpoints!(metered: audit::list))
        .routes(endpoints!(metered: scopes::list))
        .routes(endpoints!(metered: usage::key_usage))
        .routes(endpoints!(metered: usage::workspace_usage))
        .routes(endpoints!(metered: webhooks::list, webhooks::create))
        .routes(endpoints!(metered: webhooks::get, webhooks::update, webhooks::delete))
        .routes(endpoints!(metered: webhooks::roll_secret))
        .routes(endpoints!(metered: webhooks::deliveries))
        .routes(endpoints!(metered: webhooks::retry))
}

/// /api/v1 (full paths in the handlers' annotations): integrators, authenticated by
/// `x-api-key` (`keyed`) before any handler runs.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(endpoints!(keyed: me::me))
        .routes(endpoints!(keyed: leads::list, leads::create))
        .routes(endpoints!(keyed: leads::get, leads::update, leads::delete))
        .merge(verify::routes())
        // Reporting a leak needs no key.
        .routes(endpoints!(metered: credentials::revoke))
        .routes(endpoints!(metered: secret_scanning::github))
}

/// Operations are documented; the pages and their assets are not API and are left out.
pub fn operations() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(endpoints!(metered: operations::healthz))
        .routes(endpoints!(metered: operations::readyz))
        // People who type the bare address want the page.
        .route(
            "/",
            page(|| async { axum::response::Redirect::to("/settings/developer") }),
        )
        .route("/docs", page(docs::index))
        .route("/docs/init.js", page(docs::init_script))
        .route("/docs/swagger-ui-bundle.js", page(docs::bundle))
        .route("/docs/swagger-ui.css", page(docs::stylesheet))
        .route("/settings/developer", page(developer_page::index))
        .route("/settings/developer/app.js", page(developer_page::script))
        .route(
            "/settings/developer/api.js",
            page(developer_page::api_script),
        )
        .route(
            "/settings/developer/account.js",
            page(developer_page::account_script),
        )
        .route(
            "/settings/developer/charts.js",
            page(developer_page::charts_script),
        )
        .route(
            "/settings/developer/webhooks.js",
            page(developer_page::webhooks_script),
        )
        .route(
            "/settings/developer/people.js",
            page(developer_page::people_script),
        )
        .route(
            "/settings/developer/app.css",
            page(developer_page::stylesheet),
        )
}

/// An undocumented GET (a page, an asset), metered like the rest.
pub fn page<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    get(metered(handler)).fallback(metered(method_not_allowed))
}

/// What a path answers to a method it does not serve; axum adds the `Allow` header and
/// `json_errors` the body.
pub async fn method_not_allowed() -> StatusCode {
    StatusCode::METHOD_NOT_ALLOWED
}
