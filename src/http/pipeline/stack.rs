//! The layer every request passes through, written as one tower service rather than a stack of
//! general-purpose layers (request id, sensitive headers, trace span, JSON errors, panic
//! catcher, body limit, timeout), each of which cost an allocation, a boxed future, a timer or a
//! header copy per request (docs/dev/performance.md). What it does, in order:
//!
//! - takes the client's `x-request-id` or makes one, answers with it, and makes it the current
//!   request's for `ApiError` bodies (`error.requestId`);
//! - marks `Authorization`, `Cookie` and `x-api-key` sensitive before anything can print them;
//! - refuses bodies over `MAX_BODY_BYTES` (see `body_limit`);
//! - answers 503 `timeout` when the request outlives `HEFFL_REQUEST_TIMEOUT`; the timer is armed
//!   only if the handler has to wait for something, so requests answered at once cost no timer;
//! - turns a panic into the JSON 500, and any non-JSON 4xx/5xx into the docs/api.md §4 shape;
//! - writes one log line per request (INFO; ERROR for 5xx) with every field once: method, path
//!   (never the query), status, `latency_ms`, `request_id`, the client address and, on errors,
//!   the error `code`, `reason` and the verified key's `key_id`. The line's fields are built
//!   only when the level is enabled.

use crate::domain::net::TrustedProxies;
use crate::error::{ErrorCode, ErrorReason, Reason};
use crate::http::auth::api_key::Principal;
use crate::http::pipeline::body_limit;
use crate::http::pipeline::client::client_ip;
use crate::http::pipeline::json_errors;
use crate::http::pipeline::request_id::{RequestId, X_REQUEST_ID};
use crate::http::pipeline::request_scope::RequestScope;
use crate::http::state::X_API_KEY;
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::Router;
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::task::futures::TaskLocalFuture;
use tower::Service;

/// The whole HTTP surface: this layer around the router. A clone is one reference count; the
/// connection (server.rs) calls `handle` on it without cloning.
#[derive(Clone)]
pub struct RequestService {
    router: Router,
    timeout: Duration,
    proxies: TrustedProxies,
}

/// What the log line needs from the request, which the inner service consumes.
struct RequestLine {
    id: RequestId,
    started: Instant,
    /// When the route answered (`request_scope::finish_now`), if it said.
    finished: Option<Instant>,
    method: Method,
    uri: Uri,
    client: Option<IpAddr>,
}

type BoxedResponse = Pin<Box<dyn Future<Output = Response> + Send>>;

impl RequestLine {
    /// The request's scope, entered for work done outside its future.
    fn scope(&self) -> RequestScope {
        RequestScope::new(self.id, self.started, self.client)
    }
}

impl RequestService {
    pub fn new(router: Router, timeout: Duration, proxies: TrustedProxies) -> RequestService {
        RequestService {
            router,
            timeout,
            proxies,
        }
    }

    /// Handles a request from `peer` that started at `started`: the connection knows, from when
    /// the first bytes of its head arrived, and passes the reading on instead of taking another.
    pub fn handle(
        &self,
        mut request: Request,
        started: Instant,
        peer: SocketAddr,
    ) -> RequestFuture {
        let id = RequestId::from_headers(request.headers());
        mark_sensitive(request.headers_mut());
        let line = RequestLine {
            id,
            started,
            finished: None,
            method: request.method().clone(),
            uri: request.uri().clone(),
            client: client_ip(request.headers(), Some(peer), &self.proxies),
        };
        // For following a request as it happens (and for tests that need to know it arrived).
        tracing::debug!(
            method = %line.method,
            path = line.uri.path(),
            request_id = line.id.as_str(),
            "started processing request"
        );
        let state = if body_limit::declared_too_large(request.headers()) {
            State::Refusing {
                future: Box::pin(line.scope().run(body_limit::refuse(request))),
            }
        } else {
            let request = body_limit::limit(request);
            // A router's clone is a reference count.
            let call = AssertUnwindSafe(|| self.router.clone().call(request));
            match line.scope().sync(|| std::panic::catch_unwind(call)) {
                Ok(future) => State::Running {
                    future: line.scope().run(future),
                },
                Err(_) => State::Done {
                    response: Some(line.scope().sync(json_errors::panic_response_now)),
                },
            }
        };
        RequestFuture {
            state,
            line,
            timeout: self.timeout,
            sleep: None,
        }
    }
}

pin_project! {
    pub struct RequestFuture {
        #[pin]
        state: State,
        line: RequestLine,
        timeout: Duration,
        // Armed on the first `Pending`: most requests never need it.
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Running { #[pin] future: TaskLocalFuture<RequestScope, RouteFuture<Infallible>> },
        Refusing { future: BoxedResponse },
        Done { response: Option<Response> },
    }
}

impl RequestFuture {
    /// When the route answered, once this future is ready (`None` if it did not say: the
    /// router's fallback, a timeout, a panic).
    pub fn finished(&self) -> Option<Instant> {
        self.line.finished
    }
}

impl Future for RequestFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let line = &mut *this.line;
        let response = match this.state.project() {
            StateProj::Running { mut future } => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                    Ok(Poll::Ready(Ok(response))) => {
                        line.finished = future.take_value().and_then(|s| s.finished());
                        response
                    }
                    Ok(Poll::Pending) => {
                        // From the handler's first wait, not from the head's first byte: a
                        // slow upload of the head is the header timeout's business.
                        let timeout = *this.timeout;
                        let sleep = this
                            .sleep
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                        if sleep.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        line.scope().sync(json_errors::timeout_response)
                    }
                    Err(_panic) => line.scope().sync(json_errors::panic_response_now),
                }
            }
            StateProj::Refusing { future } => match future.as_mut().poll(cx) {
                Poll::Ready(response) => response,
                Poll::Pending => return Poll::Pending,
            },
            StateProj::Done { response } => response
                .take()
                .unwrap_or_else(|| line.scope().sync(json_errors::panic_response_now)),
        };
        Poll::Ready(Ok(finish(line, response)))
    }
}

fn finish(line: &RequestLine, mut response: Response) -> Response {
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        response = line
            .scope()
            .sync(|| json_errors::ensure_json_errors(response));
    }
    response
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), line.id.header_value());
    log(line, &response);
    response
}

fn log(line: &RequestLine, response: &Response) {
    let status = response.status();
    // Field values are computed only when the level is enabled (inside the macros).
    macro_rules! request_line {
        ($level:ident) => {
            tracing::$level!(
                method = %line.method,
                path = line.uri.path(),
                status = status.as_u16(),
                latency_ms = latency_ms(line),
                request_id = line.id.as_str(),
                client = line.client.map(tracing::field::display),
                code = response.extensions().get::<ErrorCode>().map(|c| c.0),
                reason = response
                    .extensions()
                    .get::<ErrorReason>()
                    .and_then(|r| r.0)
                    .map(Reason::as_str),
                key_id = response.extensions().get::<Principal>().map(|p| p.key_id.as_str()),
                "finished processing request"
            )
        };
    }
    if status.is_server_error() {
        request_line!(error);
    } else {
        request_line!(info);
    }
}

/// Milliseconds with microsecond precision, as a JSON number.
fn latency_ms(line: &RequestLine) -> f64 {
    let finished = line.finished.unwrap_or_else(Instant::now);
    let latency = finished.saturating_duration_since(line.started);
    (latency.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// One pass over the request's few headers: cheaper than hashing three names for lookups.
fn mark_sensitive(headers: &mut HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if name == header::AUTHORIZATION || name == header::COOKIE || name == X_API_KEY {
            value.set_sensitive(true);
        }
    }
}
