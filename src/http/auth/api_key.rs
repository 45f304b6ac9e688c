//! The `x-api-key` check for /api/v1, wrapped around each keyed handler (`keyed`). It turns the
//! header into a `Principal` (the key's workspace, its creator and the creator's *current* role)
//! or a docs/api.md §4 401, before the handler runs. Malformed keys are refused without touching
//! the database, verified keys are served from the in-process cache (see `verify`), and each
//! key's rate limit is applied.

use crate::domain::api_key::{self, KeyDigest, KeyRejection};
use crate::domain::key_policy::AllowedIps;
use crate::domain::permissions::Role;
use crate::domain::scopes::{Scope, ScopeSet};
use crate::domain::time::Timestamp;
use crate::domain::usage_counts::Outcome;
use crate::error::{ApiError, ErrorReason, Message, Realm, Reason};
use crate::http::auth::credits::credit_lease;
use crate::http::auth::failed_keys::Gate;
use crate::http::pipeline::client::throttle_key;
use crate::http::pipeline::header_number::header_number;
use crate::http::pipeline::metrics::{MeteredFuture, RouteMeter};
use crate::http::pipeline::request_scope;
use crate::http::state::AppState;
use crate::http::state::X_API_KEY;
use crate::limits::{Check, Decision, Question};
use crate::verify::{KeyPrincipalRow, Lookup};
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{header, Extensions, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
// The IETF httpapi draft's structured fields, beside the three above.
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static CREDITS_REMAINING: HeaderName = HeaderName::from_static("x-heffl-credits-remaining");
// Named statically: a `&str` name is parsed and validated on every lookup.
static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
static SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");

/// Who a request with a valid key acts as: the cached row (shared, not copied: an `Arc` per
/// request instead of seven strings) with the creator's current role and the key's scopes.
/// Reads like the row: `principal.key_id`, `principal.workspace_id`, `principal.user_id`.
#[derive(Debug, Clone)]
pub struct Principal {
    row: Arc<KeyPrincipalRow>,
    pub role: Role,
    pub scopes: ScopeSet,
}

impl std::ops::Deref for Principal {
    type Target = KeyPrincipalRow;

    fn deref(&self) -> &KeyPrincipalRow {
        &self.row
    }
}

impl Principal {
    /// A key may do what its scopes allow and its user's role allows; this is the first half.
    /// Handlers ask `admit` (credits.rs), which spends the request's credits after it.
    pub(super) fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                Reason::InsufficientScope,
                format!("This API key lacks the {scope} scope; create a key with it in Settings > Developer."),
            ))
        }
    }
}

fn unauthorized(reason: Reason, message: impl Into<Message>) -> ApiError {
    ApiError::Unauthorized {
        realm: Realm::ApiKey,
        reason,
        message: message.into(),
    }
}

/// `keyed(route, handler)`: the handler behind the key check, counted and timed under `route`,
/// where the route table registers it (`endpoints!(keyed: …)`). The check wraps the handler,
/// not the route: a `route_layer` would box and clone the route a second time on every
/// request, and `axum::middleware::from_fn` would also run extractors.
pub fn keyed<H>(route: &str, handler: H) -> Keyed<H> {
    Keyed {
        handler,
        meter: Arc::new(RouteMeter::new(route)),
    }
}

#[derive(Clone)]
pub struct Keyed<H> {
    handler: H,
    meter: Arc<RouteMeter>,
}

impl<H, T> Handler<T, AppState> for Keyed<H>
where
    H: Handler<T, AppState>,
{
    type Future = MeteredFuture<KeyFuture<H::Future>>;

    fn call(self, request: Request, state: AppState) -> Self::Future {
        let Keyed { handler, meter } = self;
        meter.track(request, |request| check_key(state, request, handler))
    }
}

/// The key check in front of `handler`, which answers the request once its key is accepted.
///
/// A cached key whose rate limit (if any) this instance can decide alone, the common case, is
/// decided here, synchronously: its request goes straight on to the handler, with nothing
/// boxed, and refusals are answered without waiting. A miss, or a limit that must ask Redis,
/// continues in a boxed future (`admit_pending`).
fn check_key<H, T>(state: AppState, mut request: Request, handler: H) -> KeyFuture<H::Future>
where
    H: Handler<T, AppState>,
{
    match admit_cached(&state, &mut request) {
        Admission::Admitted { row, decision } => KeyFuture::Serving {
            inner: handler.call(request, state.clone()),
            state,
            row,
            decision,
        },
        Admission::Refused(response) => KeyFuture::Refused {
            response: Some(response),
        },
        Admission::Pending(pending) => KeyFuture::Checking {
            future: Box::pin(async move {
                match admit_pending(&state, &mut request, pending).await {
                    Ok((row, decision)) => {
                        let response = handler.call(request, state.clone()).await;
                        served(&state, &row, decision, response)
                    }
                    Err(refusal) => refusal,
                }
            }),
        },
    }
}

/// What the header and the cache decide without waiting.
enum Admission {
    /// The request carries its `Principal`; `decision` is its rate limit's, if it has one.
    Admitted {
        row: Arc<KeyPrincipalRow>,
        decision: Option<Decision>,
    },
    Refused(Response),
    Pending(Pending),
}

fn admit_cached(state: &AppState, request: &mut Request) -> Admission {
    let row = match check_cached(state, request.headers()) {
        Ok(Checked::Found(row)) => row,
        Ok(Checked::Miss(digest)) => return Admission::Pending(Pending::Miss(digest)),
        Err(error) => return Admission::Refused(refused(error)),
    };
    if let Err(error) = allowed_address(&row) {
        return Admission::Refused(refused_key(state, &row, error, Outcome::Rejected));
    }
    let decision = match start_limit(state, &row) {
        None => None,
        Some(Check::Decided(decision)) => Some(decision),
        Some(Check::AskRedis(question)) => {
            return Admission::Pending(Pending::AskRedis(row, question))
        }
    };
    match admit(state, request, &row, decision) {
        None => Admission::Admitted { row, decision },
        Some(refusal) => Admission::Refused(refusal),
    }
}

type BoxedResponse = Pin<Box<dyn Future<Output = Response> + Send>>;

pin_project! {
    #[project = KeyFutureProj]
    pub enum KeyFuture<F> {
        // Made in `check_key`, which runs in the request's scope (stack.rs), so an error
        // body carries the request id.
        Refused { response: Option<Response> },
        Serving {
            #[pin] inner: F,
            state: AppState,
            row: Arc<KeyPrincipalRow>,
            decision: Option<Decision>,
        },
        Checking { future: BoxedResponse },
    }
}

impl<F> Future for KeyFuture<F>
where
    F: Future<Output = Response>,
{
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        match self.project() {
            KeyFutureProj::Refused { response } => {
                Poll::Ready(response.take().unwrap_or_else(|| {
                    ApiError::internal("a refusal was polled twice").into_response()
                }))
            }
            KeyFutureProj::Serving {
                inner,
                state,
                row,
                decision,
            } => {
                let response = ready!(inner.poll(cx));
                Poll::Ready(served(state, row, *decision, response))
            }
            KeyFutureProj::Checking { future } => future.as_mut().poll(cx),
        }
    }
}

/// What `admit_cached` could not decide without waiting.
enum Pending {
    /// The cache could not answer: look the digest up, then apply the key's limit.
    Miss(KeyDigest),
    /// The key's limit needs Redis's count (the request is already counted locally).
    AskRedis(Arc<KeyPrincipalRow>, Question),
}

/// The rest of the check, once it may wait: the key's row, and its limit's decision; or the
/// refusal.
async fn admit_pending(
    state: &AppState,
    request: &mut Request,
    pending: Pending,
) -> Result<(Arc<KeyPrincipalRow>, Option<Decision>), Response> {
    let (row, limit) = match pending {
        Pending::Miss(digest) => {
            let row = resolve_miss(state, &digest).await.map_err(refused)?;
            if let Err(error) = allowed_address(&row) {
                return Err(refused_key(state, &row, error, Outcome::Rejected));
            }
            let limit = start_limit(state, &row);
            (row, limit)
        }
        Pending::AskRedis(row, question) => (row, Some(Check::AskRedis(question))),
    };
    let decision = match limit {
        None => None,
        Some(Check::Decided(decision)) => Some(decision),
        Some(Check::AskRedis(question)) => {
            Some(state.key_limits.ask_redis(&row.key_id, question).await)
        }
    };
    match admit(state, request, &row, decision) {
        None => Ok((row, decision)),
        Some(refusal) => Err(refusal),
    }
}

/// The last step of either way: a key over its limit gets its refusal; any other gets its
/// `Principal` into the request (and `None`).
fn admit(
    state: &AppState,
    request: &mut Request,
    row: &Arc<KeyPrincipalRow>,
    decision: Option<Decision>,
) -> Option<Response> {
    if let Some(decision) = decision.filter(|d| !d.allowed) {
        return Some(rate_limited_response(state, row, decision));
    }
    hot_counters().auth_ok.increment(1);
    request.extensions_mut().insert(principal(row));
    None
}

/// A request over its key's limit: counted, and the 429 it gets, with the rate-limit headers.
fn rate_limited_response(
    state: &AppState,
    row: &Arc<KeyPrincipalRow>,
    decision: Decision,
) -> Response {
    let error = ApiError::TooManyRequests {
        reason: Reason::RateLimited,
        message: format!(
            "This key may make {} requests per minute; retry in {} seconds.",
            decision.limit, decision.reset_secs
        )
        .into(),
        retry_after_secs: decision.reset_secs,
    };
    let mut response = refused_key(state, row, error, Outcome::RateLimited);
    set_rate_limit_headers(response.headers_mut(), row, decision);
    response
}

/// A key refused after it was found (its address, its rate limit): counted by reason, in its
/// usage by `outcome`, with its credits header, and named in the request log.
fn refused_key(
    state: &AppState,
    row: &Arc<KeyPrincipalRow>,
    error: ApiError,
    outcome: Outcome,
) -> Response {
    state
        .usage
        .record(&row.key_id, Some(outcome), error.reason(), request_time());
    let mut response = refused(error);
    set_credits_header(state, row, response.headers_mut());
    response.extensions_mut().insert(principal(row));
    response
}

/// A key with an allowlist is used only from its addresses: the client's, as the trusted
/// proxies report it (`client_ip`), the same address throttles and logs see.
fn allowed_address(row: &KeyPrincipalRow) -> Result<(), ApiError> {
    let Some(column) = row.allowed_ips.as_deref() else {
        return Ok(());
    };
    let allowed = row
        .memo
        .allowed_ips
        .get_or_init(|| AllowedIps::from_column(Some(column)));
    match request_scope::client() {
        Some(address) if allowed.allows(address) => Ok(()),
        address => {
            let seen = address.map_or_else(|| "an unknown address".to_owned(), |a| a.to_string());
            Err(ApiError::forbidden(
                Reason::IpNotAllowed,
                format!("This API key may not be used from {seen}; its creator or a workspace admin can add this address to the key's allowed IPs in Settings > Developer."),
            ))
        }
    }
}

/// When the request started, as wall-clock time: its usage and expiry are judged at the
/// moment the connection already read (`request_scope`), not at another reading.
fn request_time() -> Timestamp {
    Timestamp::at(request_scope::started())
}

/// A refused key: counted by its reason, and its error.
fn refused(error: ApiError) -> Response {
    refusal_counter(error.reason()).increment(1);
    error.into_response()
}

/// The auth-outcome counter of a refusal, found in the registry once per reason: refusals
/// come in floods (a misconfigured client, a scan), each otherwise a registry lookup.
fn refusal_counter(reason: Option<Reason>) -> &'static metrics::Counter {
    static BY_REASON: [OnceLock<metrics::Counter>; Reason::ALL.len() + 1] =
        [const { OnceLock::new() }; Reason::ALL.len() + 1];
    let slot = reason.map_or(Reason::ALL.len(), Reason::index);
    BY_REASON[slot].get_or_init(|| {
        let outcome = reason.map_or("error", Reason::as_str);
        metrics::counter!("heffl_api_key_auth_total", "outcome" => outcome)
    })
}

/// What every answer to a verified key gets on its way out: its usage counted, the key named
/// for the request log on errors, and the rate-limit headers.
fn served(
    state: &AppState,
    row: &Arc<KeyPrincipalRow>,
    decision: Option<Decision>,
    mut response: Response,
) -> Response {
    let status = response.status();
    // An error answer carries its reason (`error_response`): refusals are counted by rule.
    let refusal = response
        .extensions()
        .get::<ErrorReason>()
        .and_then(|ErrorReason(reason)| *reason);
    state.usage.record(
        &row.key_id,
        Outcome::of_verified(status),
        refusal,
        request_time(),
    );
    if status.is_client_error() || status.is_server_error() {
        // For the request log: the key that was verified (its id, never the secret).
        response.extensions_mut().insert(principal(row));
    }
    if let Some(decision) = decision {
        set_rate_limit_headers(response.headers_mut(), row, decision);
    }
    set_credits_header(state, row, response.headers_mut());
    response
}

/// What this instance knows of the key's remaining credits, on every answer to a key with
/// credits.
fn set_credits_header(state: &AppState, row: &KeyPrincipalRow, headers: &mut HeaderMap) {
    if row.credits.is_some() {
        let remaining = credit_lease(state, row).remaining_hint();
        headers.insert(
            CREDITS_REMAINING.clone(),
            header_number(u64::try_from(remaining).unwrap_or(0)),
        );
    }
}

fn principal(row: &Arc<KeyPrincipalRow>) -> Principal {
    Principal {
        row: Arc::clone(row),
        // `verify` refuses a row without a role, so this default is never used.
        role: row.role.unwrap_or(Role::Viewer),
        scopes: row
            .memo
            .scopes
            .get_or_init(|| ScopeSet::from_column(row.scopes.as_deref()))
            .clone(),
    }
}

/// The key's own limit, else the server's (0: none), counted against this request; `None` when
/// no limit applies (and the answer carries no `RateLimit-*` headers).
fn start_limit(state: &AppState, row: &KeyPrincipalRow) -> Option<Check> {
    let limit = match row.rate_limit_per_minute {
        Some(own) => u32::try_from(own).unwrap_or(u32::MAX),
        None => state.config.rate_limit_per_minute,
    };
    (limit != 0).then(|| {
        state
            .key_limits
            .start(&row.key_id, limit, request_scope::started())
    })
}

/// Heffl's three `RateLimit-*` headers, and the IETF draft's `RateLimit-Policy` (the same for
/// every answer to the key, so made once and kept with it) and `RateLimit`.
fn set_rate_limit_headers(headers: &mut HeaderMap, row: &KeyPrincipalRow, decision: Decision) {
    headers.insert(
        RATELIMIT_LIMIT.clone(),
        header_number(u64::from(decision.limit)),
    );
    headers.insert(
        RATELIMIT_REMAINING.clone(),
        header_number(u64::from(decision.remaining)),
    );
    headers.insert(RATELIMIT_RESET.clone(), header_number(decision.reset_secs));
    let policy = row.memo.rate_limit_policy.get_or_init(|| {
        HeaderValue::try_from(format!("\"minute\";q={};w=60", decision.limit))
            .unwrap_or_else(|_| HeaderValue::from_static("\"minute\""))
    });
    headers.insert(RATELIMIT_POLICY.clone(), policy.clone());
    if let Some(value) = current_limit(decision.remaining, decision.reset_secs) {
        headers.insert(RATELIMIT.clone(), value);
    }
}

/// The draft's `RateLimit` value, `"minute";r=<remaining>;t=<reset>`, written with `itoa`
/// rather than `format!`, whose machinery cost more than the rest of the header on every answer.
fn current_limit(remaining: u32, reset_secs: u64) -> Option<HeaderValue> {
    let (mut r, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (r, t) = (
        r.format(remaining).as_bytes(),
        t.format(reset_secs).as_bytes(),
    );
    let mut value = Vec::with_capacity(16 + r.len() + t.len());
    value.extend_from_slice(b"\"minute\";r=");
    value.extend_from_slice(r);
    value.extend_from_slice(b";t=");
    value.extend_from_slice(t);
    HeaderValue::from_maybe_shared(Bytes::from(value)).ok()
}

/// A browser marks what it sends: `Sec-Fetch-Site` and `Sec-Fetch-Dest` on every request of
/// current engines, `Origin` on cross-origin ones (and older engines' `fetch`). Server-side
/// clients (curl, Python's requests) send none of the three. `Sec-Fetch-Mode` is not checked:
/// Node's `fetch` sends `Sec-Fetch-Mode: cors` from a server.
fn from_browser(headers: &HeaderMap) -> bool {
    // One pass over the few names a request carries costs less than hashing three lookups.
    headers
        .keys()
        .any(|name| name == header::ORIGIN || name == SEC_FETCH_SITE || name == SEC_FETCH_DEST)
}

/// A request from one of this server's own pages (the /docs "Try it out") says nothing about
/// the key, so it must not suggest replacing it; only a key sent from another site may have
/// been shipped in a web page.
fn browser_blocked_message(headers: &HeaderMap) -> &'static str {
    let same_origin = headers
        .get(&SEC_FETCH_SITE)
        .is_some_and(|site| site == "same-origin");
    if same_origin {
        "API keys may not be sent from a browser, so this server refuses keys sent from its own pages such as /docs. Your key is fine: copy the curl command shown and run it from a terminal or your server."
    } else {
        "API keys may not be sent from a browser: a key in a web page can be read by anyone who loads it. Call the API from your server; if this key was put into a public web page, roll it in Settings > Developer."
    }
}

fn throttled(retry_after_secs: u64) -> ApiError {
    ApiError::TooManyRequests {
        reason: Reason::AuthThrottled,
        message: "Too many unknown API keys from this address; wait a minute and check the key."
            .into(),
        retry_after_secs,
    }
}

/// Counters of the common outcomes, looked up once instead of on every request.
struct HotCounters {
    auth_ok: metrics::Counter,
    cache_hit: metrics::Counter,
}

fn hot_counters() -> &'static HotCounters {
    static COUNTERS: OnceLock<HotCounters> = OnceLock::new();
    COUNTERS.get_or_init(|| HotCounters {
        auth_ok: metrics::counter!("heffl_api_key_auth_total", "outcome" => "ok"),
        cache_hit: metrics::counter!("heffl_key_cache_total", "result" => "hit"),
    })
}

/// What the header and the cache can tell without waiting: a usable cached key, a digest the
/// cache could not answer, or the refusal.
enum Checked {
    Found(Arc<KeyPrincipalRow>),
    Miss(KeyDigest),
}

fn check_cached(state: &AppState, headers: &HeaderMap) -> Result<Checked, ApiError> {
    let mut values = headers.get_all(&X_API_KEY).iter();
    let first = values.next();
    if first.is_some() && !state.config.allow_browser_keys && from_browser(headers) {
        return Err(ApiError::forbidden(
            Reason::BrowserUseBlocked,
            browser_blocked_message(headers),
        ));
    }
    let Some(raw) = first else {
        if headers.contains_key(header::AUTHORIZATION) {
            return Err(unauthorized(
                Reason::BearerNotSupported,
                "Send the key in the x-api-key header, not Authorization.",
            ));
        }
        return Err(unauthorized(
            Reason::MissingApiKey,
            "Send your API key in the x-api-key header.",
        ));
    };
    if values.next().is_some() {
        return Err(unauthorized(
            Reason::MalformedApiKey,
            "Send exactly one x-api-key header; this request has several.",
        ));
    }
    let expected_env = &state.config.key_env;
    let digest = api_key::parse_digest(raw.as_bytes(), expected_env).map_err(|rejection| {
        let reason = match rejection {
            KeyRejection::Malformed(_) => Reason::MalformedApiKey,
            KeyRejection::WrongEnvironment { .. } => Reason::WrongEnvironment,
        };
        unauthorized(reason, rejection.message(expected_env))
    })?;
    match state.verifier.key_cache().get(digest.as_bytes()) {
        Some(hit) => {
            hot_counters().cache_hit.increment(1);
            Ok(Checked::Found(usable(state, hit)?))
        }
        None => {
            metrics::counter!("heffl_key_cache_total", "result" => "miss").increment(1);
            Ok(Checked::Miss(digest))
        }
    }
}

async fn resolve_miss(
    state: &AppState,
    digest: &KeyDigest,
) -> Result<Arc<KeyPrincipalRow>, ApiError> {
    // Only a miss is throttled per address.
    let lookup = look_up(state, digest.as_bytes(), request_scope::client()).await?;
    usable(state, lookup)
}

/// A key that exists may still be revoked, its creator gone, or expired.
fn usable(state: &AppState, lookup: Lookup) -> Result<Arc<KeyPrincipalRow>, ApiError> {
    let row = match lookup {
        Lookup::Found(row) => row,
        Lookup::Unknown => {
            return Err(unauthorized(
                Reason::InvalidApiKey,
                "This API key is not known here. Its checksum is valid, so it was copied whole: check that it was issued by this deployment (and not, say, by staging), or create a new one in Settings > Developer.",
            ))
        }
    };
    let active = row.revoked_at.is_none() && row.user_disabled_at.is_none() && row.role.is_some();
    // The clock is read only for a key that can expire.
    let expired_at = row.expires_at.filter(|at| *at <= request_time());
    let (reason, message): (Reason, Message) = if !active {
        (
            Reason::RevokedApiKey,
            "This API key has been revoked; create a new one in Settings > Developer.".into(),
        )
    } else if let Some(expired_at) = expired_at {
        state.expiry_log.note(&state.store, &row, expired_at);
        (
            Reason::ExpiredApiKey,
            format!(
                "This API key expired at {}; create a new one in Settings > Developer.",
                expired_at.to_rfc3339()
            )
            .into(),
        )
    } else if row.disabled_at.is_some() {
        (
            Reason::DisabledApiKey,
            "This API key is disabled; its creator or a workspace admin can enable it in Settings > Developer.".into(),
        )
    } else {
        return Ok(row);
    };
    state.usage.record(
        &row.key_id,
        Some(Outcome::Rejected),
        Some(reason),
        request_time(),
    );
    Err(unauthorized(reason, message))
}

/// A digest the cache could not answer, within the address's failed-key budget (see
/// `auth::failed_keys`): revoked and expired keys are real keys and cost nothing; each distinct
/// unknown key costs one lookup, until the budget is spent; then only keys that exist are
/// looked up, and the rest get 429.
async fn look_up(
    state: &AppState,
    digest: &[u8; 32],
    address: Option<IpAddr>,
) -> Result<Lookup, ApiError> {
    let limit = state.config.auth_failures_per_minute;
    if limit == 0 {
        return Ok(state.verifier.resolve_miss(digest).await?);
    }
    match state.auth_throttle.gate(
        &throttle_key(address),
        digest,
        limit,
        request_scope::started(),
    ) {
        Gate::Repeat => Ok(Lookup::Unknown),
        Gate::Lookup(reservation) => {
            let lookup = state.verifier.resolve_miss(digest).await?;
            if matches!(lookup, Lookup::Unknown) {
                reservation.unknown(digest).await;
            }
            Ok(lookup)
        }
        // While the change feed is down (`None`) nobody can tell; the database comes first.
        Gate::OverBudget { retry_after_secs } => match state.verifier.known_keys().contains(digest)
        {
            Some(true) => Ok(state.verifier.resolve_miss(digest).await?),
            Some(false) | None => Err(throttled(retry_after_secs)),
        },
    }
}

impl Principal {
    /// The principal the key check put into the request. Taken, not cloned: each handler
    /// takes it once.
    pub fn take(extensions: &mut Extensions) -> Result<Principal, ApiError> {
        extensions
            .remove::<Principal>()
            .ok_or_else(|| ApiError::internal("a Principal was asked for outside a keyed handler"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Principal::take(&mut parts.extensions)
    }
}

#[cfg(test)]
mod tests {
    use super::current_limit;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_current_limit_reads_as_formatted(remaining in any::<u32>(), reset in any::<u64>()) {
            let value = current_limit(remaining, reset).expect("digits are a valid value");
            let formatted = format!("\"minute\";r={remaining};t={reset}");
            prop_assert_eq!(value.as_bytes(), formatted.as_bytes());
        }
    }

    #[test]
    fn the_current_limit_at_the_edges() {
        for (remaining, reset) in [(0, 0), (9, 10), (99, 100), (u32::MAX, u64::MAX)] {
            let value = current_limit(remaining, reset).expect("digits are a valid value");
            assert_eq!(
                value,
                format!("\"minute\";r={remaining};t={reset}").as_str()
            );
        }
    }
}
