//! The accept loop for the API listener: hyper's HTTP/1 connections with the slow-client rules
//! of docs/api.md §9 (header-read and idle timeouts, a connection cap) and graceful shutdown.
//!
//! At the cap, a newcomer is not turned away while some connection merely waits: the one that
//! has waited longest on its client (half-open, trickling headers, idle keep-alive, or a
//! request stalled waiting for its body) is closed to make room. One address (an IPv6 /64) may
//! hold at most `HEFFL_MAX_CONNECTIONS_PER_ADDRESS`; trusted proxies are exempt. A flood of half-open connections from one address
//! therefore displaces itself, and a new client's request is still served. Only when every
//! connection is serving a request does the newcomer wait, in the listen backlog, for one to
//! finish.

use crate::config::Config;
use crate::domain::net::{AddressBucket, TrustedProxies};
use crate::http::pipeline::stack::RequestFuture;
use crate::http::pipeline::stack::RequestService as App;
use crate::http::server::connection::{InFlight, Stop, Timeouts, TrackedIo, Tracker};
use crate::http::server::slow_body::SlowBody;
use crate::http::server::tls::Tls;
use axum::response::Response;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use pin_project_lite::pin_project;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How often a newcomer waiting at the cap looks again for a connection to displace.
const DISPLACE_RETRY: Duration = Duration::from_millis(100);
/// A failed accept (out of file descriptors, say) is retried after this pause, not in a spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct Limits {
    pub timeouts: Timeouts,
    pub max_connections: usize,
    /// Per client address (an IPv6 /64); `exempt` peers (trusted proxies) have none.
    pub max_per_address: usize,
    pub exempt: TrustedProxies,
    pub body_read: Duration,
}

impl Limits {
    pub fn from_config(config: &Config, exempt: TrustedProxies) -> Limits {
        Limits {
            timeouts: Timeouts {
                header_read: config.header_read_timeout,
                idle: config.idle_timeout,
            },
            max_connections: config.max_connections as usize,
            max_per_address: config.max_connections_per_address as usize,
            exempt,
            body_read: config.body_read_timeout,
        }
    }
}

/// Open connections per client address, for `HEFFL_MAX_CONNECTIONS_PER_ADDRESS`. An address
/// leaves the table with its last connection, so the table never outgrows the connection cap.
struct PerAddress {
    limit: usize,
    counts: Mutex<HashMap<AddressBucket, usize>>,
}

/// One connection's place in its address's count; given back when dropped.
struct AddressSlot {
    table: Arc<PerAddress>,
    bucket: AddressBucket,
}

impl PerAddress {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AddressBucket, usize>> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for one more connection from `bucket`, or `None` when it has `limit` already.
    fn admit(self: &Arc<Self>, bucket: AddressBucket) -> Option<AddressSlot> {
        let mut counts = self.lock();
        let count = counts.entry(bucket).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: Arc::clone(self),
            bucket,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.table.lock();
        if let Some(count) = counts.get_mut(&self.bucket) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.bucket);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and returns
/// once the open connections have finished their requests.
pub async fn serve_connections(
    listener: TcpListener,
    app: App,
    limits: Limits,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(OpenConnections::default());
    let per_address = Arc::new(PerAddress {
        limit: limits.max_per_address,
        counts: Mutex::default(),
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // Our own clock (`connection.rs`) enforces the header deadline: hyper's would also run
    // between keep-alive requests, cutting idle connections at the header timeout.
    http.timer(TokioTimer::new()).header_read_timeout(None);
    let http = Arc::new(http);
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        // Over its address's share, a connection is closed before it can wait for a permit
        // or displace anyone. Behind a proxy every client has the proxy's address, so
        // trusted proxies are not counted.
        let slot = if limits.exempt.contains(peer.ip()) {
            None
        } else {
            match per_address.admit(AddressBucket::of(peer.ip())) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!("closing a connection over its address's share");
                    metrics::counter!("heffl_connections_refused_total", "reason" => "per_address")
                        .increment(1);
                    continue;
                }
            }
        };
        let permit = loop {
            if let Ok(permit) = Arc::clone(&permits).try_acquire_owned() {
                break Some(permit);
            }
            open.displace_longest_waiting();
            tokio::select! {
                () = &mut shutdown => break None,
                permit = Arc::clone(&permits).acquire_owned() => break permit.ok(),
                () = tokio::time::sleep(DISPLACE_RETRY) => {}
            }
        };
        let Some(permit) = permit else { break };

        let tracker = Tracker::new(limits.timeouts);
        let id = next_id;
        next_id += 1;
        open.insert(id, Arc::clone(&tracker));
        let service = ConnectionService {
            app: app.clone(),
            peer,
            tracker: Arc::clone(&tracker),
            body_read: limits.body_read,
        };
        let open = Arc::clone(&open);
        let http = Arc::clone(&http);
        // Taken now: a reload after this accept applies to the next connection.
        let acceptor = tls.as_ref().map(Tls::acceptor);
        let handshake_timeout = limits.timeouts.header_read;
        tokio::spawn(async move {
            match acceptor {
                None => serve_stream(&http, stream, service, &tracker).await,
                // The handshake runs in the connection's own task, so a slow one holds up
                // nobody, and within the time a request head may take.
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_stream(&http, stream, service, &tracker).await,
                        Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            open.remove(id);
            drop(permit);
            drop(slot);
        });
    }
    drop(listener);
    open.drain_all();
    // Each connection's task gives its permit back when it ends.
    let every_permit = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _all_closed = permits.acquire_many(every_permit).await;
}

/// Serves HTTP/1.1 on one client stream, plain or TLS, until `drive` ends it.
async fn serve_stream<S>(
    http: &hyper::server::conn::http1::Builder,
    stream: S,
    service: ConnectionService,
    tracker: &Arc<Tracker>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(TrackedIo::new(stream, Arc::clone(tracker)));
    drive(http.serve_connection(io, service), tracker).await;
}

/// Runs the connection until it ends, its clock says to close it or it is displaced; dropping
/// it closes the socket. At shutdown (`Stop::Drain`) hyper is asked to finish the request in
/// progress and close. One timer serves the connection's whole life: it is reset only when it
/// fires, at the pace `Activity::next_check` sets, so requests on a busy connection never touch
/// it.
async fn drive<C>(connection: C, tracker: &Tracker)
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(connection);
    let first = tracker
        .activity()
        .next_check(&tracker.timeouts, Instant::now());
    let clock = tokio::time::sleep_until(first);
    tokio::pin!(clock);
    let mut registered = None;
    let mut draining = false;
    std::future::poll_fn(|cx| {
        match tracker.poll_stop(cx, &mut registered) {
            Stop::Run => {}
            Stop::Drain => {
                if !draining {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            Stop::Close => {
                tracing::debug!("closing a displaced connection");
                return Poll::Ready(());
            }
        }
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            if let Err(err) = result {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            return Poll::Ready(());
        }
        while clock.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let activity = tracker.activity();
            if activity.must_close(&tracker.timeouts, now) {
                tracing::debug!("closing a slow or idle connection");
                return Poll::Ready(());
            }
            let next = activity.next_check(&tracker.timeouts, now);
            drop(activity);
            clock.as_mut().reset(next);
        }
        Poll::Pending
    })
    .await
}

/// The open connections' clocks, so that a newcomer at the cap can displace the longest waiter.
#[derive(Default)]
struct OpenConnections(Mutex<HashMap<u64, Arc<Tracker>>>);

impl OpenConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Tracker>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert(&self, id: u64, tracker: Arc<Tracker>) {
        self.lock().insert(id, tracker);
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Shutdown: every open connection finishes its request in progress and closes.
    fn drain_all(&self) {
        for tracker in self.lock().values() {
            tracker.drain();
        }
    }

    fn displace_longest_waiting(&self) {
        let open = self.lock();
        let longest = open
            .values()
            .filter_map(|tracker| Some((tracker.activity().waiting_since()?, tracker)))
            .min_by_key(|(since, _)| *since);
        if let Some((_, tracker)) = longest {
            tracker.displace();
        }
    }
}

/// The app as one connection's hyper service: it carries the peer address (to the request
/// layer, which works out the client's) and tells the connection's clock when requests run.
#[derive(Clone)]
struct ConnectionService {
    app: App,
    peer: SocketAddr,
    tracker: Arc<Tracker>,
    body_read: Duration,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response;
    type Error = Infallible;
    type Future = ServedRequest;

    fn call(&self, request: Request<Incoming>) -> ServedRequest {
        let (in_flight, head_started) = self.tracker.request_started();
        let started = head_started.map_or_else(std::time::Instant::now, Instant::into_std);
        // The app is always ready, so it is called directly: no `Oneshot` state machine and no
        // boxed future per request.
        // A request without a body (most of them) is not wrapped: nothing to time.
        let request = if request.body().is_end_stream() {
            request.map(axum::body::Body::new)
        } else {
            let tracker = Arc::clone(&self.tracker);
            let grace = self.body_read;
            request.map(|body| axum::body::Body::new(SlowBody::new(body, grace, tracker)))
        };
        let response = self.app.handle(request, started, self.peer);
        ServedRequest {
            response,
            in_flight: Some(in_flight),
        }
    }
}

pin_project! {
    /// The app's answer; the request counts as in progress until it is ready.
    pub struct ServedRequest {
        #[pin]
        response: RequestFuture,
        in_flight: Option<InFlight>,
    }
}

impl Future for ServedRequest {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let response = ready!(this.response.as_mut().poll(cx));
        if let Some(in_flight) = this.in_flight.take() {
            in_flight.finish(this.response.finished().map(Instant::from_std));
        }
        Poll::Ready(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> Arc<Tracker> {
        Tracker::new(Timeouts {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        })
    }

    /// Fresh connections are far from their deadlines: closing now means displaced.
    fn displaced(tracker: &Tracker) -> bool {
        tracker
            .activity()
            .must_close(&tracker.timeouts, tokio::time::Instant::now())
    }

    #[test]
    fn the_longest_waiter_is_displaced_and_a_request_in_progress_never_is() {
        let open = OpenConnections::default();
        let busy = tracker();
        let _in_flight = busy.request_started();
        std::thread::sleep(Duration::from_millis(2));
        let oldest_waiter = tracker();
        std::thread::sleep(Duration::from_millis(2));
        let newest_waiter = tracker();
        for (id, tracker) in [&busy, &oldest_waiter, &newest_waiter]
            .into_iter()
            .enumerate()
        {
            open.insert(id as u64, Arc::clone(tracker));
        }

        open.displace_longest_waiting();
        assert!(displaced(&oldest_waiter));
        assert!(!displaced(&newest_waiter));
        open.displace_longest_waiting();
        assert!(displaced(&newest_waiter));
        // Only the busy one is left, and it is not touched.
        open.displace_longest_waiting();
        assert!(!busy
            .activity()
            .must_close(&busy.timeouts, tokio::time::Instant::now()));
    }
}
