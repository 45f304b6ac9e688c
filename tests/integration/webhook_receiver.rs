//! A webhook receiver for the tests: a real HTTP server on a free port that records every
//! request it gets and answers with the status the test sets (200 unless told otherwise).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use heffl_api::domain::webhooks::SigningSecret;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub raw: String,
    pub body: Value,
}

impl Received {
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }

    /// Whether one of the `webhook-signature` entries is `secret`'s signature of this request,
    /// as a receiver following the Standard Webhooks specification checks it.
    pub fn signed_with(&self, secret: &str) -> bool {
        let Some(secret) = SigningSecret::from_column(secret.to_owned()) else {
            return false;
        };
        let Ok(timestamp) = self.timestamp.parse::<i64>() else {
            return false;
        };
        let expected = secret.sign(&self.id, timestamp, self.raw.as_bytes());
        self.signature.split(' ').any(|entry| entry == expected)
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Answers to give first, in order; then `status`.
    queued: VecDeque<(StatusCode, Option<String>)>,
    status: Option<StatusCode>,
    /// How long each answer takes.
    delay: Duration,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub port: u16,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hooks"),
            port,
            inner,
        }
    }

    /// Every later request gets `status`.
    pub fn answer(&self, status: u16) {
        self.lock().status = StatusCode::from_u16(status).ok();
    }

    /// Every later answer takes `delay` (a slow receiver).
    pub fn delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// The next requests get these statuses, in order, then the standing answer.
    pub fn answer_next(&self, statuses: &[u16]) {
        let mut inner = self.lock();
        for status in statuses {
            let status = StatusCode::from_u16(*status).expect("status");
            inner.queued.push_back((status, None));
        }
    }

    /// The next request is redirected to `location`.
    pub fn redirect_next(&self, location: &str) {
        self.lock()
            .queued
            .push_back((StatusCode::TEMPORARY_REDIRECT, Some(location.to_owned())));
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    pub fn of_type(&self, kind: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.kind() == kind)
            .collect()
    }

    /// Waits until `done` holds for what arrived, or panics after `timeout` naming `what`.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            if Instant::now() > deadline {
                let kinds: Vec<&str> = received.iter().map(Received::kind).collect();
                panic!("waited {timeout:?} for {what}; received {kinds:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first message of `kind`, waiting for it.
    pub async fn first_of(&self, kind: &str) -> Received {
        self.wait_until(kind, Duration::from_secs(20), |received| {
            received.iter().any(|r| r.kind() == kind)
        })
        .await
        .into_iter()
        .find(|r| r.kind() == kind)
        .unwrap_or_else(|| panic!("{kind} arrived"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("receiver lock")
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let raw = String::from_utf8_lossy(&body).into_owned();
    let received = Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
    };
    let (status, location, delay) = {
        let mut inner = inner.lock().expect("receiver lock");
        inner.received.push(received);
        let (status, location) = inner
            .queued
            .pop_front()
            .unwrap_or((inner.status.unwrap_or(StatusCode::OK), None));
        (status, location, inner.delay)
    };
    tokio::time::sleep(delay).await;
    match location {
        Some(location) => (status, [("location", location)], "").into_response(),
        None => (status, "ok").into_response(),
    }
}
