//! Route tables. Each submodule is one resource; this file is the map of the API.
//!
//! Documented routes are registered only with `.routes(endpoints!(wrap: handler, ...))`, which
//! takes the path and method from the handler's `#[utoipa::path]`: a handler without one does
//! not compile here, so the OpenAPI document cannot miss a route. Handlers sharing a path share
//! an `endpoints!`. `wrap` is what runs around each handler: `metered` (its route's metrics) or
//! `keyed` (the `x-api-key` check, then the metrics).

/// utoipa_axum's `routes!`, with each handler wrapped by `$wrap` (`metered` or `keyed`) under
/// its documented path (`in PREFIX` for a group nested under one). The wrapper goes around the
/// handler, inside the one boxed route axum makes of it; a `route_layer` would box and clone a
/// second route around it on every request. A method the path does not serve is answered by
/// `else` (405 unless given) through the same wrapper, so a keyed path still asks for its key
/// first.
macro_rules! endpoints {
    ($wrap:ident: $($handler:path),+) => {
        endpoints!(@ $wrap, "", [$($handler),+], $crate::http::routes::method_not_allowed)
    };
    ($wrap:ident: $($handler:path),+; else $fallback:path) => {
        endpoints!(@ $wrap, "", [$($handler),+], $fallback)
    };
    ($wrap:ident in $prefix:ident: $($handler:path),+) => {
        endpoints!(@ $wrap, $prefix, [$($handler),+], $crate::http::routes::method_not_allowed)
    };
    (@ $wrap:ident, $prefix:expr, [$($handler:path),+], $fallback:path) => {{
        use utoipa_axum::PathItemExt as _;
        let mut paths = utoipa::openapi::path::Paths::new();
        let mut schemas = Vec::new();
        let mut methods = axum::routing::MethodRouter::new();
        // The group's one path, with the prefix it is nested under.
        let mut route: Option<String> = None;
        $(
            // utoipa_axum's own reading of the handler's `#[utoipa::path]`, as its `routes!`
            // does it: path, operation (with tags) and methods, and the schemas it names.
            let (path, operation, types) = utoipa_axum::routes!(@resolve_types $handler : schemas);
            let handler = $wrap(
                route.get_or_insert_with(|| format!("{}{}", $prefix, path)),
                $handler,
            );
            for method in &types {
                methods = methods.on(method.to_method_filter(), handler.clone());
            }
            paths.add_path_operation(&path, types, operation);
        )+
        let fallback = $wrap(&route.unwrap_or_default(), $fallback);
        (schemas, paths, methods.fallback(fallback))
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
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;

/// Where `dashboard` is nested.
pub const DASHBOARD: &str = "/app/v1";

/// /app/v1: the dashboard, authenticated by session (`SessionUser` extractor).
pub fn dashboard() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(endpoints!(metered in DASHBOARD: auth::login))
        .routes(endpoints!(metered in DASHBOARD: auth::logout))
        .routes(endpoints!(metered in DASHBOARD: password_reset::options))
        .routes(endpoints!(metered in DASHBOARD: password_reset::request))
        .routes(endpoints!(metered in DASHBOARD: password_reset::confirm))
        .routes(endpoints!(metered in DASHBOARD: auth::session))
        .routes(endpoints!(metered in DASHBOARD: workspaces::create))
        .routes(endpoints!(metered in DASHBOARD: auth::change_password))
        .routes(endpoints!(metered in DASHBOARD: members::list))
        .routes(endpoints!(metered in DASHBOARD: invitations::list, invitations::create))
        .routes(endpoints!(metered in DASHBOARD: invitations::cancel))
        .routes(endpoints!(metered in DASHBOARD: invitations::resend))
        .routes(endpoints!(metered in DASHBOARD: invitations::lookup))
        .routes(endpoints!(metered in DASHBOARD: invitations::accept))
        .routes(endpoints!(metered in DASHBOARD: members::change_role, members::remove))
        .routes(endpoints!(metered in DASHBOARD: api_keys::list, api_keys::create))
        .routes(endpoints!(metered in DASHBOARD: api_keys::get, api_keys::update))
        .routes(endpoints!(metered in DASHBOARD: api_keys::revoke))
        .routes(endpoints!(metered in DASHBOARD: api_keys::roll))
        .routes(endpoints!(metered in DASHBOARD: audit::list))
        .routes(endpoints!(metered in DASHBOARD: scopes::list))
        .routes(endpoints!(metered in DASHBOARD: usage::key_usage))
        .routes(endpoints!(metered in DASHBOARD: usage::workspace_usage))
        .routes(endpoints!(metered in DASHBOARD: webhooks::list, webhooks::create))
        .routes(endpoints!(metered in DASHBOARD: webhooks::get, webhooks::update, webhooks::delete))
        .routes(endpoints!(metered in DASHBOARD: webhooks::roll_secret))
        .routes(endpoints!(metered in DASHBOARD: webhooks::deliveries))
        .routes(endpoints!(metered in DASHBOARD: webhooks::retry))
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
    let pages = axum::Router::new()
        // People who type the bare address want the page.
        .page("/", || async {
            axum::response::Redirect::to("/settings/developer")
        })
        .page("/docs", docs::index)
        .page("/docs/init.js", docs::init_script)
        .page("/docs/swagger-ui-bundle.js", docs::bundle)
        .page("/docs/swagger-ui.css", docs::stylesheet)
        .page("/settings/developer", developer_page::index)
        .page("/settings/developer/app.js", developer_page::script)
        .page("/settings/developer/api.js", developer_page::api_script)
        .page(
            "/settings/developer/account.js",
            developer_page::account_script,
        )
        .page(
            "/settings/developer/charts.js",
            developer_page::charts_script,
        )
        .page(
            "/settings/developer/webhooks.js",
            developer_page::webhooks_script,
        )
        .page(
            "/settings/developer/people.js",
            developer_page::people_script,
        )
        .page("/settings/developer/app.css", developer_page::stylesheet);
    OpenApiRouter::new()
        .routes(endpoints!(metered: operations::healthz))
        .routes(endpoints!(metered: operations::readyz))
        .merge(pages.into())
}

/// Undocumented GETs (pages, assets, the document itself), metered like the rest.
pub trait Pages {
    fn page<H, T>(self, route: &str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static;
}

impl Pages for axum::Router<AppState> {
    fn page<H, T>(self, route: &str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let methods = get(metered(route, handler)).fallback(metered(route, method_not_allowed));
        self.route(route, methods)
    }
}

/// What a path answers to a method it does not serve; axum adds the `Allow` header and
/// `json_errors` the body.
pub async fn method_not_allowed() -> StatusCode {
    StatusCode::METHOD_NOT_ALLOWED
}
