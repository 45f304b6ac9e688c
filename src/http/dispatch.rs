//! The requests an API-key server answers most, sent straight to their handlers: `GET
//! /api/v1/me`, forward auth's `/api/v1/verify` (any method but HEAD; a gateway asks it before
//! every request it lets through) and `GET /healthz` (load balancers). Every other request goes
//! through the router.
//!
//! Why: axum boxes each layer a route carries, and clones the boxed service, on every request,
//! besides matching the path and recording it; for these three that was about a third of the
//! instructions a request cost (docs/dev/performance.md). Here each is one fixed stack of plain
//! function calls, nothing cloned but what its future keeps: route metrics, the `x-api-key`
//! check where the router has it, and the router's handler code after its extractors
//! (`routes::direct`), answered without a boxed future when nothing has to wait. What they
//! answer is what the router would: `tests/integration/dispatch.rs` sends each request both
//! ways and compares.
//!
//! The router keeps these routes too: HEAD, the `/api/v1/verify/{*path}` twins and the OpenAPI
//! document are served from there.

use super::api_key_auth::{check_key, KeyFuture};
use super::metrics::{RouteMeter, RouteMetricsFuture};
use super::routes::direct::{self, Answer, Handler};
use super::AppState;
use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::Router;
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Service;

/// Which fixed stack serves a request, if any; the path must match exactly (a query is fine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    Me,
    Verify,
    Healthz,
}

impl Direct {
    pub fn of(method: &Method, path: &str) -> Option<Direct> {
        match path {
            "/api/v1/me" if method == Method::GET => Some(Direct::Me),
            // HEAD answers carry no body; the router knows how to strip it.
            "/api/v1/verify" if method != Method::HEAD => Some(Direct::Verify),
            "/healthz" if method == Method::GET => Some(Direct::Healthz),
            _ => None,
        }
    }
}

struct Stacks {
    state: AppState,
    me: Arc<RouteMeter>,
    verify: Arc<RouteMeter>,
    healthz: Arc<RouteMeter>,
    router: Router,
}

/// The router with the direct stacks in front of it. A clone is one reference count.
#[derive(Clone)]
pub struct Dispatch(Arc<Stacks>);

impl Dispatch {
    pub fn new(state: &AppState, router: Router) -> Dispatch {
        Dispatch(Arc::new(Stacks {
            state: state.clone(),
            me: RouteMeter::named("/api/v1/me"),
            verify: RouteMeter::named("/api/v1/verify"),
            healthz: RouteMeter::named("/healthz"),
            router,
        }))
    }

    /// Each direct stack is composed here, per request, from references: route metrics
    /// around the key check around the handler. Only what a future must keep is counted up:
    /// the route's meter, and the state for the key check's way out.
    pub fn handle(&self, request: Request) -> DispatchFuture {
        let stacks = &*self.0;
        match Direct::of(request.method(), request.uri().path()) {
            Some(Direct::Me) => stacks.keyed(&stacks.me, request, direct::me),
            Some(Direct::Verify) => stacks.keyed(&stacks.verify, request, direct::verify),
            Some(Direct::Healthz) => DispatchFuture::Open {
                future: stacks
                    .healthz
                    .track(request, |request| direct::healthz(request, &stacks.state)),
            },
            None => DispatchFuture::Routed {
                future: stacks.router.clone().call(request),
            },
        }
    }
}

impl Stacks {
    fn keyed(&self, meter: &Arc<RouteMeter>, request: Request, handler: Handler) -> DispatchFuture {
        let future = meter.track(request, |request| {
            check_key(&self.state, request, move |request, state| {
                handler(request, state)
            })
        });
        DispatchFuture::Keyed { future }
    }
}

pin_project! {
    #[project = DispatchProj]
    pub enum DispatchFuture {
        Keyed { #[pin] future: RouteMetricsFuture<KeyFuture<Answer>> },
        Open { #[pin] future: RouteMetricsFuture<Answer> },
        Routed { #[pin] future: RouteFuture<Infallible> },
    }
}

impl Future for DispatchFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DispatchProj::Keyed { future } => future.poll(cx),
            DispatchProj::Open { future } => future.poll(cx),
            DispatchProj::Routed { future } => future.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_paths_and_their_methods_are_served_directly() {
        let cases = [
            (Method::GET, "/api/v1/me", Some(Direct::Me)),
            (Method::HEAD, "/api/v1/me", None),
            (Method::POST, "/api/v1/me", None),
            (Method::GET, "/api/v1/me/", None),
            (Method::GET, "/api/v1/mex", None),
            (Method::GET, "/api/v1/verify", Some(Direct::Verify)),
            (Method::POST, "/api/v1/verify", Some(Direct::Verify)),
            (Method::DELETE, "/api/v1/verify", Some(Direct::Verify)),
            (Method::HEAD, "/api/v1/verify", None),
            (Method::GET, "/api/v1/verify/", None),
            (Method::GET, "/api/v1/verify/orders/1", None),
            (Method::GET, "/healthz", Some(Direct::Healthz)),
            (Method::POST, "/healthz", None),
            (Method::GET, "/readyz", None),
            (Method::GET, "/API/v1/me", None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(Direct::of(&method, path), expected, "{method} {path}");
        }
    }
}
