//! Request metrics by route template (never the raw path, which holds ids), method and status.
//! Every label comes from a closed set, so no client can add series: a method outside HTTP's
//! nine is `OTHER`.
//!
//! Each route has a `RouteMeter` that resolves its metric handles on the first request of each
//! method and keeps them, instead of hashing labels and searching the registry (and allocating
//! three label strings) on every request. A handler gets its meter where the route table
//! registers it, with its documented template: `metered(route, handler)`, or
//! `keyed(route, handler)` (`auth::api_key`), whose key check counts with `RouteMeter::track`
//! itself. Wrapping the handler rather than the route (a `route_layer`) keeps one boxed route
//! per endpoint: a layer boxes and clones the route again on every request; and knowing the
//! template spares every request axum's `MatchedPath` (a hash and an insert into its
//! extensions).
//!
//! The duration is the request's, from the first byte of its head to its route's answer, read
//! from the request's scope (`request_scope`): the route reads the clock once, when it answers.

use crate::http::pipeline::request_scope;
use axum::extract::Request;
use axum::handler::Handler;
use axum::http::Method;
use axum::response::Response;
use metrics::{Counter, Histogram};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

const REQUESTS: &str = "heffl_http_requests_total";
const DURATION: &str = "heffl_http_request_duration_seconds";

/// Statuses whose counters are kept per route and method; others are looked up when they
/// happen.
const COMMON_STATUSES: [u16; 14] = [
    200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415, 429, 500, 503,
];

/// HTTP's methods, each its own label; any other method (a client may send any token, and
/// forward auth takes every method) is counted as `OTHER`, so that no client can add series.
static METHODS: [(Method, &str); 9] = [
    (Method::GET, "GET"),
    (Method::POST, "POST"),
    (Method::PUT, "PUT"),
    (Method::PATCH, "PATCH"),
    (Method::DELETE, "DELETE"),
    (Method::HEAD, "HEAD"),
    (Method::OPTIONS, "OPTIONS"),
    (Method::TRACE, "TRACE"),
    (Method::CONNECT, "CONNECT"),
];

const OTHER: usize = METHODS.len();

/// One route's handles, per method label. Forward auth's `/api/v1/verify` takes every method a
/// gateway forwards, so each is kept, not only the route's first.
pub struct RouteMeter {
    /// The route's template, as documented (`/api/v1/leads/{leadId}`).
    route: Box<str>,
    /// Indexed as `METHODS`, then `OTHER`.
    methods: [OnceLock<MethodHandles>; METHODS.len() + 1],
}

struct MethodHandles {
    method: &'static str,
    duration: Histogram,
    statuses: [OnceLock<Counter>; COMMON_STATUSES.len()],
}

impl RouteMeter {
    pub fn new(route: &str) -> RouteMeter {
        RouteMeter {
            route: route.into(),
            methods: Default::default(),
        }
    }

    /// Answers `request` with `answer`, counting and timing the answer.
    pub fn track<F>(
        self: Arc<Self>,
        request: Request,
        answer: impl FnOnce(Request) -> F,
    ) -> MeteredFuture<F> {
        let method = self.method_slot(request.method());
        MeteredFuture {
            inner: answer(request),
            meter: self,
            method: Some(method),
        }
    }

    /// The method's label's slot in `methods`, its handles made on first use.
    fn method_slot(&self, method: &Method) -> usize {
        let slot = METHODS
            .iter()
            .position(|(known, _)| known == method)
            .unwrap_or(OTHER);
        let label = METHODS.get(slot).map_or("OTHER", |(_, label)| label);
        self.methods[slot].get_or_init(|| MethodHandles::new(label, &self.route));
        slot
    }

    fn record(&self, slot: usize, status: u16, seconds: f64) {
        if let Some(handles) = self.methods.get(slot).and_then(OnceLock::get) {
            handles.count(&self.route, status);
            handles.duration.record(seconds);
        }
    }
}

impl MethodHandles {
    fn new(method: &'static str, route: &str) -> MethodHandles {
        MethodHandles {
            method,
            duration: metrics::histogram!(DURATION, "method" => method, "route" => route.to_owned()),
            statuses: Default::default(),
        }
    }

    fn count(&self, route: &str, status: u16) {
        let counter = || requests_counter(self.method, route, status);
        match COMMON_STATUSES.iter().position(|common| *common == status) {
            Some(index) => self.statuses[index].get_or_init(counter).increment(1),
            None => counter().increment(1),
        }
    }
}

fn requests_counter(method: &str, route: &str, status: u16) -> Counter {
    metrics::counter!(REQUESTS, "method" => method.to_owned(), "route" => route.to_owned(), "status" => status.to_string())
}

/// A handler counted and timed under `route`, its template: `metered(route, handler)` where it
/// is registered (the route table's `endpoints!`). Each handler's meter is shared by that
/// endpoint's clones.
pub fn metered<H>(route: &str, handler: H) -> Metered<H> {
    Metered {
        handler,
        meter: Arc::new(RouteMeter::new(route)),
    }
}

#[derive(Clone)]
pub struct Metered<H> {
    handler: H,
    meter: Arc<RouteMeter>,
}

impl<H, T, S> Handler<T, S> for Metered<H>
where
    H: Handler<T, S>,
    S: Send + 'static,
{
    type Future = MeteredFuture<H::Future>;

    fn call(self, request: Request, state: S) -> Self::Future {
        let Metered { handler, meter } = self;
        meter.track(request, |request| handler.call(request, state))
    }
}

pin_project! {
    pub struct MeteredFuture<F> {
        #[pin]
        inner: F,
        meter: Arc<RouteMeter>,
        // Taken when the answer is recorded, so that it is recorded once.
        method: Option<usize>,
    }
}

impl<F> Future for MeteredFuture<F>
where
    F: Future<Output = Response>,
{
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.project();
        let Poll::Ready(response) = this.inner.poll(cx) else {
            return Poll::Pending;
        };
        let finished = request_scope::finish_now();
        let seconds = finished
            .saturating_duration_since(request_scope::started())
            .as_secs_f64();
        if let Some(slot) = this.method.take() {
            this.meter.record(slot, response.status().as_u16(), seconds);
        }
        Poll::Ready(response)
    }
}
