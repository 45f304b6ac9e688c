//! Request metrics by route template (never the raw path, which holds ids), method and status.
//!
//! A `route_layer`, so each route's service learns its template once: the metric handles are
//! resolved on a route's first request and kept, instead of hashing labels and searching the
//! registry (and allocating three label strings) on every request.

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
use std::time::Instant;
use tower::{Layer, Service};

const REQUESTS: &str = "heffl_http_requests_total";
const DURATION: &str = "heffl_http_request_duration_seconds";

/// Statuses whose counters are kept per route; others are looked up when they happen.
const COMMON_STATUSES: [u16; 14] = [
    200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415, 429, 500, 503,
];

/// As a `route_layer`, the route's template comes from the router (`MatchedPath`); a service
/// the router does not reach (http/dispatch.rs) names its template itself.
#[derive(Clone, Copy, Default)]
pub struct RouteMetricsLayer {
    route: Option<&'static str>,
}

impl RouteMetricsLayer {
    pub fn for_route(route: &'static str) -> RouteMetricsLayer {
        RouteMetricsLayer { route: Some(route) }
    }
}

impl<S> Layer<S> for RouteMetricsLayer {
    type Service = RouteMetrics<S>;

    /// Called once per route and method: the handles are shared by that endpoint's clones.
    fn layer(&self, inner: S) -> RouteMetrics<S> {
        RouteMetrics {
            inner,
            handles: Arc::default(),
            route: self.route,
        }
    }
}

#[derive(Clone)]
pub struct RouteMetrics<S> {
    inner: S,
    handles: Arc<OnceLock<RouteHandles>>,
    route: Option<&'static str>,
}

struct RouteHandles {
    method: Method,
    route: String,
    duration: Histogram,
    statuses: [OnceLock<Counter>; COMMON_STATUSES.len()],
}

impl RouteHandles {
    fn new(method: Method, route: String) -> RouteHandles {
        RouteHandles {
            duration: metrics::histogram!(DURATION, "method" => method.as_str().to_owned(), "route" => route.clone()),
            method,
            route,
            statuses: Default::default(),
        }
    }

    fn count(&self, status: u16) {
        let counter = || requests_counter(self.method.as_str(), &self.route, status);
        match COMMON_STATUSES.iter().position(|common| *common == status) {
            Some(index) => self.statuses[index].get_or_init(counter).increment(1),
            None => counter().increment(1),
        }
    }
}

fn route_of(request: &Request, named: Option<&'static str>) -> String {
    if let Some(route) = named {
        return route.to_owned();
    }
    request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned())
}

fn requests_counter(method: &str, route: &str, status: u16) -> Counter {
    metrics::counter!(REQUESTS, "method" => method.to_owned(), "route" => route.to_owned(), "status" => status.to_string())
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
        let handles = self.handles.get_or_init(|| {
            RouteHandles::new(request.method().clone(), route_of(&request, self.route))
        });
        // HEAD served by a GET route, or any other method of an `any` route.
        let other = (request.method() != handles.method).then(|| {
            (
                request.method().as_str().to_owned(),
                route_of(&request, self.route),
            )
        });
        RouteMetricsFuture {
            inner: self.inner.call(request),
            handles: Arc::clone(&self.handles),
            other,
            started: Instant::now(),
        }
    }
}

pin_project! {
    pub struct RouteMetricsFuture<F> {
        #[pin]
        inner: F,
        handles: Arc<OnceLock<RouteHandles>>,
        other: Option<(String, String)>,
        started: Instant,
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
        let seconds = this.started.elapsed().as_secs_f64();
        let status = response.status().as_u16();
        match (this.other.take(), this.handles.get()) {
            (None, Some(handles)) => {
                handles.count(status);
                handles.duration.record(seconds);
            }
            (Some((method, route)), _) => {
                requests_counter(&method, &route, status).increment(1);
                metrics::histogram!(DURATION, "method" => method, "route" => route).record(seconds);
            }
            (None, None) => {}
        }
        Poll::Ready(Ok(response))
    }
}
