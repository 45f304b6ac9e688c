//! Request metrics by route template (never the raw path, which holds ids), method and status.
//! Every label comes from a closed set, so no client can add series: a method outside HTTP's
//! nine is `OTHER`.
//!
//! Each route has a `RouteMeter` that resolves its metric handles on the first request of each
//! method and keeps them, instead of hashing labels and searching the registry (and allocating
//! three label strings) on every request. Routes get theirs from `RouteMetricsLayer` (a
//! `route_layer`: the template comes from `MatchedPath`), the keyed routes from the key's layer
//! (`auth::api_key::RequireApiKey`), which counts with `RouteMeter::track` in the same layer.
//!
//! The duration is the request's, from the first byte of its head to its route's answer, read
//! from the request's scope (`request_scope`): the route reads the clock once, when it answers.

use crate::http::pipeline::request_scope;
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use metrics::{Counter, Histogram};
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tower::{Layer, Service};

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
#[derive(Default)]
pub struct RouteMeter {
    /// Learned from the router's `MatchedPath` on the first request.
    route: OnceLock<String>,
    /// Indexed as `METHODS`, then `OTHER`.
    methods: [OnceLock<MethodHandles>; METHODS.len() + 1],
}

struct MethodHandles {
    method: &'static str,
    duration: Histogram,
    statuses: [OnceLock<Counter>; COMMON_STATUSES.len()],
}

impl RouteMeter {
    /// Answers `request` with `answer`, counting and timing the answer.
    pub fn track<F>(
        self: &Arc<Self>,
        request: Request,
        answer: impl FnOnce(Request) -> F,
    ) -> RouteMetricsFuture<F> {
        let method = self.method_slot(&request);
        RouteMetricsFuture {
            inner: answer(request),
            meter: Arc::clone(self),
            method: Some(method),
        }
    }

    /// The request's method label's slot in `methods`, its handles made on first use.
    fn method_slot(&self, request: &Request) -> usize {
        let route = self.route.get_or_init(|| {
            request
                .extensions()
                .get::<MatchedPath>()
                .map(|path| path.as_str().to_owned())
                .unwrap_or_else(|| "unmatched".to_owned())
        });
        let slot = METHODS
            .iter()
            .position(|(method, _)| method == request.method())
            .unwrap_or(OTHER);
        let label = METHODS.get(slot).map_or("OTHER", |(_, label)| label);
        self.methods[slot].get_or_init(|| MethodHandles::new(label, route));
        slot
    }

    fn record(&self, slot: usize, status: u16, seconds: f64) {
        let route = self.route.get().map_or("unmatched", String::as_str);
        if let Some(handles) = self.methods.get(slot).and_then(OnceLock::get) {
            handles.count(route, status);
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

/// The router's routes: `.route_layer(RouteMetricsLayer)`.
#[derive(Clone, Copy, Default)]
pub struct RouteMetricsLayer;

impl<S> Layer<S> for RouteMetricsLayer {
    type Service = RouteMetrics<S>;

    /// Called once per route and method: the meter is shared by that endpoint's clones.
    fn layer(&self, inner: S) -> RouteMetrics<S> {
        RouteMetrics {
            inner,
            meter: Arc::default(),
        }
    }
}

#[derive(Clone)]
pub struct RouteMetrics<S> {
    inner: S,
    meter: Arc<RouteMeter>,
}

impl<S> Service<Request> for RouteMetrics<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RouteMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> RouteMetricsFuture<S::Future> {
        let inner = &mut self.inner;
        self.meter.track(request, |request| inner.call(request))
    }
}

pin_project! {
    pub struct RouteMetricsFuture<F> {
        #[pin]
        inner: F,
        meter: Arc<RouteMeter>,
        // Taken when the answer is recorded, so that it is recorded once.
        method: Option<usize>,
    }
}

impl<F> Future for RouteMetricsFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Poll::Ready(Ok(response)) = this.inner.poll(cx) else {
            return Poll::Pending;
        };
        let finished = request_scope::finish_now();
        let seconds = finished
            .saturating_duration_since(request_scope::started())
            .as_secs_f64();
        if let Some(slot) = this.method.take() {
            this.meter.record(slot, response.status().as_u16(), seconds);
        }
        Poll::Ready(Ok(response))
    }
}
