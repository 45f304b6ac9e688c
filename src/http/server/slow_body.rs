//! Slow bodies are slow clients. A request body must keep up an average of `MIN_RATE` bytes a
//! second, counted from when its head was read, once `grace` (`HEFFL_BODY_READ_TIMEOUT`) has
//! passed; a body that falls behind ends with `BodyTooSlow`, which the JSON extractor answers
//! with 408 (and the connection is closed). While the body waits for bytes, the connection
//! counts as waiting on its client (`Tracker::body_waiting`), so at the connection cap it can
//! be displaced like an idle one: a client cannot hold the server's connections by trickling
//! bodies.
//!
//! The clock is one timer per body, reset only when it fires: at `started + grace`, and after
//! that at the moment the bytes read so far would fall under the rate if no more came.

use crate::http::server::connection::Tracker;
use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// 1 KB/s on average: any real client on any real network sends faster.
pub const MIN_RATE: u64 = 1024;

/// The body fell under `MIN_RATE` after the grace period.
#[derive(Debug)]
pub struct BodyTooSlow;

impl std::fmt::Display for BodyTooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body arrived too slowly")
    }
}

impl std::error::Error for BodyTooSlow {}

/// The longest any body is given; far beyond what the body limit lets a body earn.
const LONGEST: Duration = Duration::from_secs(24 * 60 * 60);

/// When a body of `read` bytes begun at `started` falls behind (never before `grace`).
pub fn due(started: Instant, read: u64, grace: Duration) -> Instant {
    let earned = Duration::from_millis(read.saturating_mul(1000) / MIN_RATE);
    started + grace.max(earned).min(LONGEST)
}

pin_project! {
    pub struct SlowBody<B> {
        #[pin]
        inner: B,
        #[pin]
        clock: Sleep,
        started: Instant,
        grace: Duration,
        read: u64,
        waiting: bool,
        tracker: Arc<Tracker>,
    }
}

impl<B> SlowBody<B> {
    pub fn new(inner: B, grace: Duration, tracker: Arc<Tracker>) -> SlowBody<B> {
        let started = Instant::now();
        SlowBody {
            inner,
            clock: tokio::time::sleep_until(started + grace),
            started,
            grace,
            read: 0,
            waiting: false,
            tracker,
        }
    }
}

impl<B> Body for SlowBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Pending => {
                if !*this.waiting {
                    *this.waiting = true;
                    this.tracker.body_waiting(true);
                }
                while this.clock.as_mut().poll(cx).is_ready() {
                    let next = due(*this.started, *this.read, *this.grace);
                    if next <= Instant::now() {
                        return Poll::Ready(Some(Err(Box::new(BodyTooSlow))));
                    }
                    this.clock.as_mut().reset(next);
                }
                Poll::Pending
            }
            Poll::Ready(frame) => {
                if *this.waiting {
                    *this.waiting = false;
                    this.tracker.body_waiting(false);
                }
                if let Some(Ok(frame)) = &frame {
                    let bytes = frame.data_ref().map_or(0, Bytes::len);
                    *this.read = this.read.saturating_add(bytes as u64);
                }
                Poll::Ready(frame.map(|result| result.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `error` (from reading a body) is, at its root, a body that came too slowly.
pub fn is_too_slow(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<BodyTooSlow>() {
            return true;
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_due_at_the_grace_then_at_its_rate() {
        let start = Instant::now();
        let grace = Duration::from_secs(10);
        assert_eq!(due(start, 0, grace), start + grace);
        assert_eq!(due(start, 5 * MIN_RATE, grace), start + grace);
        assert_eq!(
            due(start, 30 * MIN_RATE, grace),
            start + Duration::from_secs(30)
        );
        assert_eq!(due(start, u64::MAX, grace), start + LONGEST);
    }
}
