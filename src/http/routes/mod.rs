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

use super::AppState;
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
    OpenApiRouter::new()
        .routes(routes!(me::me))
        .routes(routes!(leads::list, leads::create))
        .routes(routes!(leads::get, leads::update, leads::delete))
        .merge(verify::routes())
        .route_layer(super::api_key_auth::RequireApiKey::new(state))
        // Added after the layer, so they are not behind it: reporting a leak needs no key.
        .routes(routes!(credentials::revoke))
        .routes(routes!(secret_scanning::github))
}

/// The handlers http/dispatch.rs calls without the router: the same code as the router's
/// handlers after their extractors, taken from the request the way the extractors take it, and
/// answered at once when nothing has to wait (no boxed future, no state cloned).
pub mod direct {
    use crate::error::ApiError;
    use crate::http::{AppState, Principal};
    use axum::extract::Request;
    use axum::response::{IntoResponse, Response};
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A handler's answer, as the future a service returns: ready, or waiting (verify reading
    /// a body).
    pub enum Answer {
        Ready(Option<Response>),
        Waiting(Pin<Box<dyn Future<Output = Response> + Send>>),
    }

    impl Answer {
        pub fn ready(response: impl IntoResponse) -> Answer {
            Answer::Ready(Some(response.into_response()))
        }
    }

    impl Future for Answer {
        type Output = Result<Response, Infallible>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.get_mut() {
                Answer::Ready(response) => Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    ApiError::internal("an answer was polled twice").into_response()
                }))),
                Answer::Waiting(future) => future.as_mut().poll(cx).map(Ok),
            }
        }
    }

    pub type Handler = fn(Request, &AppState) -> Answer;

    pub fn me(mut request: Request, state: &AppState) -> Answer {
        match Principal::take(request.extensions_mut()) {
            Ok(principal) => super::me::direct(principal, state),
            Err(error) => Answer::ready(error),
        }
    }

    pub fn verify(request: Request, state: &AppState) -> Answer {
        super::verify::direct(request, state)
    }

    pub fn healthz(_request: Request, _state: &AppState) -> Answer {
        Answer::ready(super::operations::healthz_answer())
    }
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
