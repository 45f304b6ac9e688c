//! One client connection's clock: when it must have sent complete request headers, when its
//! keep-alive idleness ends it, and whether it may be displaced to make room for a newcomer.
//! `Activity` is the pure rule; `Tracker` shares it between the socket wrapper (`TrackedIo`,
//! which sees bytes arrive), the service (which sees requests start and finish) and the task
//! that drives the connection (which closes it when the deadline passes).
//!
//! A busy keep-alive connection pays nothing per request for its clock beyond a lock and a
//! clock read: the driving task is not woken when a request starts or ends, and keeps one timer
//! for the connection's life, which it looks at no more often than `Activity::next_check` says
//! (docs/dev/performance.md). Only a `Stop` (displacement, or the drain at shutdown) wakes it at once.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

/// What a connection is doing, as far as its deadline is concerned.
#[derive(Debug, Clone)]
pub struct Activity {
    in_flight: u32,
    served_any: bool,
    /// When the connection last had nothing to do: opened, or its last response was ready.
    free_since: Instant,
    /// The first byte of the next request head, read while the connection was free.
    head_started: Option<Instant>,
    /// Since when the request in progress has been waiting for body bytes (`slow_body.rs`):
    /// such a connection waits on its client, like an idle one, and may be displaced.
    body_waiting_since: Option<Instant>,
    displaced: bool,
}

impl Activity {
    pub fn new(now: Instant) -> Activity {
        Activity {
            in_flight: 0,
            served_any: false,
            free_since: now,
            head_started: None,
            body_waiting_since: None,
            displaced: false,
        }
    }

    /// Bytes arrived; `now` is read only when they start a request head.
    pub fn bytes_read(&mut self, now: impl FnOnce() -> Instant) {
        if self.in_flight == 0 && self.head_started.is_none() {
            self.head_started = Some(now());
        }
    }

    /// Returns when the request's head began to arrive, if this connection saw it (it was
    /// free then): the request's start, read once for all its parts.
    pub fn request_started(&mut self) -> Option<Instant> {
        self.in_flight += 1;
        self.served_any = true;
        self.head_started.take()
    }

    /// The request in progress started or stopped waiting for body bytes.
    pub fn body_waiting(&mut self, since: Option<Instant>) {
        self.body_waiting_since = since;
    }

    pub fn request_finished(&mut self, now: impl FnOnce() -> Instant) {
        self.body_waiting_since = None;
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            self.free_since = now();
        }
    }

    /// When the connection is to be closed; `None` while a request is in progress (the request
    /// timeout bounds that).
    pub fn deadline(&self, timeouts: &Timeouts) -> Option<Instant> {
        if self.in_flight > 0 {
            None
        } else if !self.served_any {
            // A new connection owes its first request's headers from the moment it opened.
            Some(self.free_since + timeouts.header_read)
        } else if let Some(started) = self.head_started {
            Some(started + timeouts.header_read)
        } else {
            Some(self.free_since + timeouts.idle)
        }
    }

    /// When the driving task should look at the clock again: the deadline, but never later than
    /// the shorter timeout from `now`. Nobody tells the task when a deadline appears or moves
    /// (that would cost a wake-up per request), and any deadline that appears after `now` (a
    /// request head begun, a response finished) is at least the shorter timeout after the moment
    /// it appears, so a look at that pace is never late.
    pub fn next_check(&self, timeouts: &Timeouts, now: Instant) -> Instant {
        let pace = now + timeouts.header_read.min(timeouts.idle);
        self.deadline(timeouts)
            .map_or(pace, |deadline| deadline.min(pace))
    }

    pub fn must_close(&self, timeouts: &Timeouts, now: Instant) -> bool {
        self.displaced
            || self
                .deadline(timeouts)
                .is_some_and(|deadline| now >= deadline)
    }

    /// Since when the connection has been waiting for (the rest of) a request, its head or its
    /// body; `None` while the server works on one, or once displaced. The longest waiter is
    /// the one to displace.
    pub fn waiting_since(&self) -> Option<Instant> {
        if self.displaced {
            None
        } else if self.in_flight == 0 {
            Some(self.free_since)
        } else {
            self.body_waiting_since
        }
    }

    pub fn displace(&mut self) {
        self.displaced = true;
    }
}

/// What the server asks of a connection from outside, in rising order: a later request never
/// weakens an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stop {
    Run = 0,
    /// The server is shutting down: finish the request in progress, then close.
    Drain = 1,
    /// Displaced by a newcomer at the connection cap: close now.
    Close = 2,
}

impl Stop {
    fn from_u8(value: u8) -> Stop {
        match value {
            0 => Stop::Run,
            1 => Stop::Drain,
            _ => Stop::Close,
        }
    }
}

/// `Activity` shared by the parts of one connection, and the wake-up that tells its driving
/// task to stop.
#[derive(Debug)]
pub struct Tracker {
    activity: Mutex<Activity>,
    pub timeouts: Timeouts,
    /// A `Stop`, readable without the lock on each of the driver's wake-ups.
    stop: AtomicU8,
    driver: atomic_waker::AtomicWaker,
}

impl Tracker {
    pub fn new(timeouts: Timeouts) -> Arc<Tracker> {
        Arc::new(Tracker {
            activity: Mutex::new(Activity::new(Instant::now())),
            timeouts,
            stop: AtomicU8::new(Stop::Run as u8),
            driver: atomic_waker::AtomicWaker::new(),
        })
    }

    pub fn activity(&self) -> MutexGuard<'_, Activity> {
        // The lock guards plain data, so a poisoned one is still consistent.
        self.activity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bytes_read(&self) {
        self.activity().bytes_read(Instant::now);
    }

    /// Marks a request as in progress until the returned guard is finished or dropped; also
    /// returns when its head began to arrive, if known.
    pub fn request_started(self: &Arc<Self>) -> (InFlight, Option<Instant>) {
        let head_started = self.activity().request_started();
        let in_flight = InFlight {
            tracker: Arc::clone(self),
            finished: None,
        };
        (in_flight, head_started)
    }

    pub fn displace(&self) {
        self.activity().displace();
        self.ask(Stop::Close);
    }

    /// The request in progress is (or no longer is) waiting for body bytes.
    pub fn body_waiting(&self, waiting: bool) {
        let since = waiting.then(Instant::now);
        self.activity().body_waiting(since);
    }

    /// The server is shutting down (see `server::drive`).
    pub fn drain(&self) {
        self.ask(Stop::Drain);
    }

    fn ask(&self, stop: Stop) {
        self.stop.fetch_max(stop as u8, Ordering::AcqRel);
        self.driver.wake();
    }

    /// What the server asks; the driver is woken when that changes. `registered` is the waker
    /// the driver last gave: the driving task's waker does not change between its polls, so
    /// registering it again (two atomic operations) on each of them is skipped, for as long as
    /// nothing was asked (a wake-up, which only `ask` makes, empties the registration).
    pub fn poll_stop(&self, cx: &mut Context<'_>, registered: &mut Option<Waker>) -> Stop {
        let asked = self.stop.load(Ordering::Acquire) != Stop::Run as u8;
        if asked || !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.driver.register(cx.waker());
            *registered = Some(cx.waker().clone());
        }
        Stop::from_u8(self.stop.load(Ordering::Acquire))
    }
}

pub struct InFlight {
    tracker: Arc<Tracker>,
    finished: Option<Instant>,
}

impl InFlight {
    /// The request is done, answered at `at` if the request already read the clock then.
    pub fn finish(mut self, at: Option<Instant>) {
        self.finished = at;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let finished = self.finished;
        self.tracker
            .activity()
            .request_finished(|| finished.unwrap_or_else(Instant::now));
    }
}

/// The socket as hyper sees it: reads tell the tracker that a request head has begun, and
/// hyper's own bodiless parse-error answers are rewritten with a JSON body on their way out.
pub struct TrackedIo<T> {
    inner: T,
    tracker: Arc<Tracker>,
    /// A replacement being written instead of what hyper handed over, and how much is out.
    replacing: Option<(Vec<u8>, usize)>,
}

impl<T> TrackedIo<T> {
    pub fn new(inner: T, tracker: Arc<Tracker>) -> TrackedIo<T> {
        TrackedIo {
            inner,
            tracker,
            replacing: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.tracker.bytes_read();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            match crate::http::server::parse_errors::json_replacement(buf) {
                Some(replacement) => self.replacing = Some((replacement, 0)),
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
            }
        }
        // hyper offers the same bytes again after Pending, so `buf` counts as written only once
        // the whole replacement is out.
        let this = &mut *self;
        while let Some((bytes, written)) = this.replacing.as_mut() {
            if *written == bytes.len() {
                this.replacing = None;
                return Poll::Ready(Ok(buf.len()));
            }
            match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                other => return other,
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[test]
    fn a_new_connection_owes_its_headers_from_the_start() {
        let start = Instant::now();
        let mut a = Activity::new(start);
        assert_eq!(a.deadline(&T), Some(start + T.header_read));
        // Trickling bytes does not move the deadline.
        a.bytes_read(|| start + Duration::from_secs(1));
        a.bytes_read(|| start + Duration::from_secs(9));
        assert_eq!(a.deadline(&T), Some(start + T.header_read));
        assert!(!a.must_close(&T, start + Duration::from_secs(9)));
        assert!(a.must_close(&T, start + T.header_read));
    }

    #[test]
    fn a_request_in_progress_has_no_deadline_and_then_idleness_counts() {
        let start = Instant::now();
        let mut a = Activity::new(start);
        a.bytes_read(|| start);
        assert_eq!(
            a.request_started(),
            Some(start),
            "the head's first byte starts it"
        );
        assert_eq!(a.deadline(&T), None);
        assert!(!a.must_close(&T, start + Duration::from_secs(3600)));
        let done = start + Duration::from_secs(5);
        a.request_finished(|| done);
        assert_eq!(a.deadline(&T), Some(done + T.idle));
        // The next request's first byte starts its header clock.
        let next = done + Duration::from_secs(30);
        a.bytes_read(|| next);
        assert_eq!(a.deadline(&T), Some(next + T.header_read));
    }

    #[test]
    fn pipelined_requests_keep_the_connection_busy_until_the_last() {
        let start = Instant::now();
        let mut a = Activity::new(start);
        a.request_started();
        a.request_started();
        a.request_finished(|| start);
        assert_eq!(a.deadline(&T), None);
        a.request_finished(|| start);
        assert!(a.deadline(&T).is_some());
    }

    #[test]
    fn displaced_connections_close_and_are_not_chosen_twice() {
        let start = Instant::now();
        let mut a = Activity::new(start);
        assert_eq!(a.waiting_since(), Some(start));
        a.displace();
        assert!(a.must_close(&T, start));
        assert_eq!(a.waiting_since(), None);
        let mut busy = Activity::new(start);
        busy.request_started();
        assert_eq!(busy.waiting_since(), None);
    }

    #[test]
    fn the_driver_looks_again_before_any_deadline_can_pass_unseen() {
        let start = Instant::now();
        let mut a = Activity::new(start);
        // A new connection: its header deadline is the next look.
        assert_eq!(a.next_check(&T, start), start + T.header_read);
        a.request_started();
        // Busy: no deadline, but a look within the shorter timeout.
        let later = start + Duration::from_secs(100);
        assert_eq!(a.next_check(&T, later), later + T.header_read);
        a.request_finished(|| later);
        // Idle: the idle deadline is further off than the pace, so the pace wins; a head begun
        // right after that look has its deadline no earlier than the next look.
        let look = a.next_check(&T, later);
        assert_eq!(look, later + T.header_read);
        a.bytes_read(|| later + Duration::from_millis(1));
        assert!(a.deadline(&T).is_some_and(|deadline| deadline >= look));
        assert_eq!(
            a.next_check(&T, look),
            later + Duration::from_millis(1) + T.header_read
        );
    }

    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_driver_is_woken_for_each_stop_and_a_stop_never_weakens() {
        let tracker = Tracker::new(T);
        let count = Arc::new(CountingWaker(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let mut registered = None;
        let woken = || count.0.load(Ordering::SeqCst);

        assert_eq!(tracker.poll_stop(&mut cx, &mut registered), Stop::Run);
        // Polled again without anything asked: registered once, still woken when asked.
        assert_eq!(tracker.poll_stop(&mut cx, &mut registered), Stop::Run);
        tracker.drain();
        assert_eq!(woken(), 1);
        assert_eq!(tracker.poll_stop(&mut cx, &mut registered), Stop::Drain);
        // The wake-up emptied the registration; the poll after it registered again.
        tracker.displace();
        assert_eq!(woken(), 2);
        assert_eq!(tracker.poll_stop(&mut cx, &mut registered), Stop::Close);
        tracker.drain();
        assert_eq!(tracker.poll_stop(&mut cx, &mut registered), Stop::Close);
    }
}
