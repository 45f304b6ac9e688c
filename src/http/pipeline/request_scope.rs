//! What the parts of a request share while it is handled: its id (every error body carries it),
//! the client's address and its clock. The address is worked out once, by the request layer
//! from the connection's peer (and X-Forwarded-For behind a trusted proxy), for the log line,
//! the key's IP allowlist, the throttles and the audit log alike; it travels here rather than
//! in the request's extensions, whose map would otherwise be allocated for it on every request.
//! The clock is read once when the request starts and once when its route is done, and those
//! two readings serve the request log, the route's duration metric, the key's rate limit, its
//! usage timestamp and the connection's idle clock, which each read the clock themselves
//! before: on this machine a reading costs about 45 ns, and a request took seven
//! (docs/dev/performance.md).
//!
//! The scope is a task-local, entered by the request layer (stack.rs) around the inner
//! service's `call` and each poll of its future; outside it (tests calling a service directly)
//! the functions here read the clock instead.

use crate::http::pipeline::request_id::RequestId;
use std::cell::Cell;
use std::future::Future;
use std::net::IpAddr;
use std::time::Instant;
use tokio::task::futures::TaskLocalFuture;

pub struct RequestScope {
    id: RequestId,
    started: Instant,
    client: Option<IpAddr>,
    /// Set by the route's metrics when it answers (`finish_now`).
    finished: Cell<Option<Instant>>,
}

tokio::task_local! {
    static CURRENT: RequestScope;
}

impl RequestScope {
    pub fn new(id: RequestId, started: Instant, client: Option<IpAddr>) -> RequestScope {
        RequestScope {
            id,
            started,
            client,
            finished: Cell::new(None),
        }
    }

    /// Runs `future` inside this scope.
    pub fn run<F: Future>(self, future: F) -> TaskLocalFuture<RequestScope, F> {
        CURRENT.scope(self, future)
    }

    /// Runs `f` inside this scope (for work done outside the future: `call`, responses made
    /// after a panic or a timeout).
    pub fn sync<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }

    /// When the route answered, if it said (the scope taken back from its future).
    pub fn finished(&self) -> Option<Instant> {
        self.finished.get()
    }
}

/// Calls `f` with the id of the request being handled, if any.
pub fn with_current_id<R>(f: impl FnOnce(Option<&str>) -> R) -> R {
    match CURRENT.try_with(|scope| scope.id) {
        Ok(id) => f(Some(id.as_str())),
        Err(_) => f(None),
    }
}

/// The current request's client address (`client::client_ip`); `None` outside a request or
/// for a connection without an address.
pub fn client() -> Option<IpAddr> {
    CURRENT.try_with(|scope| scope.client).ok().flatten()
}

/// When the current request started; the clock's reading now outside a request.
pub fn started() -> Instant {
    CURRENT
        .try_with(|scope| scope.started)
        .unwrap_or_else(|_| Instant::now())
}

/// Reads the clock as the request's route finishes, and keeps the reading for the request
/// log and the connection's clock.
pub fn finish_now() -> Instant {
    let now = Instant::now();
    let _outside_a_request = CURRENT.try_with(|scope| scope.finished.set(Some(now)));
    now
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_scope_carries_the_id_and_both_readings() {
        let id = RequestId::generate();
        let started = Instant::now() - Duration::from_millis(5);
        let scope = RequestScope::new(id, started, None);
        let (seen_id, seen_started) = scope.sync(|| {
            (
                with_current_id(|current| current.map(str::to_owned)),
                self::started(),
            )
        });
        assert_eq!(seen_id.as_deref(), Some(id.as_str()));
        assert_eq!(seen_started, started);
        assert_eq!(with_current_id(|current| current.map(str::to_owned)), None);
        assert!(
            self::started() > started,
            "outside a request: the clock now"
        );
    }

    #[tokio::test]
    async fn the_finish_reading_comes_back_with_the_scope() {
        let scope = RequestScope::new(RequestId::generate(), Instant::now(), None);
        let mut future = std::pin::pin!(scope.run(async { finish_now() }));
        let finished = future.as_mut().await;
        let scope = future.take_value().expect("the scope is returned");
        assert_eq!(scope.finished(), Some(finished));
    }
}
