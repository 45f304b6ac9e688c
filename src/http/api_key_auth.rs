//! The `x-api-key` middleware for /api/v1. It turns the header into a `Principal` (the key's
//! workspace, its creator and the creator's *current* role) or a SPEC §4 401, before any
//! handler runs. Malformed keys are refused without touching the database, verified keys are
//! served from the in-process cache (see `key_cache`), and each key's rate limit is applied.

use super::{client_ip, AppState, X_API_KEY};
use crate::api_key::{self, KeyRejection};
use crate::error::{ApiError, Realm};
use crate::key_cache::Lookup;
use crate::limits::Decision;
use crate::permissions::Role;
use crate::scopes::{Scope, ScopeSet};
use crate::store::{KeyPrincipalRow, User};
use crate::time::Timestamp;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Who a request with a valid key acts as.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    pub key_name: String,
    pub workspace_id: String,
    pub workspace_name: String,
    pub user: User,
    pub role: Role,
    pub scopes: ScopeSet,
}

impl Principal {
    /// A key may do what its scopes allow and its user's role allows; this is the first half.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "insufficient_scope",
                format!("This API key lacks the {scope} scope; create a key with it in Settings > Developer."),
            ))
        }
    }
}

fn unauthorized(reason: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Unauthorized {
        realm: Realm::ApiKey,
        reason,
        message: message.into(),
    }
}

pub async fn require_api_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let address = client_ip(request.headers(), peer, state.config.trust_forwarded_for);
    let now = Instant::now();
    let row = match authenticate(&state, request.headers(), address, now).await {
        Ok(row) => row,
        Err(error) => {
            metrics::counter!("heffl_api_key_auth_total", "outcome" => error.reason().unwrap_or("error")).increment(1);
            return error.into_response();
        }
    };
    let decision = rate_limit(&state, &row, now).await;
    if let Some(decision) = decision.filter(|d| !d.allowed) {
        metrics::counter!("heffl_api_key_auth_total", "outcome" => "rate_limited").increment(1);
        let mut response = ApiError::TooManyRequests {
            reason: "rate_limited",
            message: format!(
                "This key may make {} requests per minute; retry in {} seconds.",
                decision.limit, decision.reset_secs
            ),
            retry_after_secs: decision.reset_secs,
        }
        .into_response();
        set_rate_limit_headers(response.headers_mut(), decision);
        return response;
    }
    hot_counters().auth_ok.increment(1);
    state.usage.record(&row.key_id, Timestamp::now());
    request.extensions_mut().insert(principal(&row));
    let mut response = next.run(request).await;
    if let Some(decision) = decision {
        set_rate_limit_headers(response.headers_mut(), decision);
    }
    response
}

fn principal(row: &KeyPrincipalRow) -> Principal {
    Principal {
        key_id: row.key_id.clone(),
        key_name: row.key_name.clone(),
        workspace_id: row.workspace_id.clone(),
        workspace_name: row.workspace_name.clone(),
        user: User {
            id: row.user_id.clone(),
            email: row.user_email.clone(),
            name: row.user_name.clone(),
        },
        // Checked in `authenticate`; a row without a role never gets here.
        role: row.current_role().unwrap_or(Role::Viewer),
        scopes: ScopeSet::from_column(row.scopes.as_deref()),
    }
}

/// `None` when no limit applies to this key.
async fn rate_limit(state: &AppState, row: &KeyPrincipalRow, now: Instant) -> Option<Decision> {
    let limit = match row.rate_limit_per_minute {
        Some(own) => u32::try_from(own).unwrap_or(u32::MAX),
        None => state.config.rate_limit_per_minute,
    };
    if limit == 0 {
        return None;
    }
    Some(state.key_limits.check(&row.key_id, limit, now).await)
}

fn set_rate_limit_headers(headers: &mut HeaderMap, decision: Decision) {
    headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(decision.limit));
    headers.insert(
        RATELIMIT_REMAINING.clone(),
        HeaderValue::from(decision.remaining),
    );
    headers.insert(
        RATELIMIT_RESET.clone(),
        HeaderValue::from(decision.reset_secs),
    );
}

/// A client address that keeps failing gets 429 for anything that would need the database or
/// fails; keys already verified (cache hits) keep working, so a shared NAT is not locked out.
/// Only browsers send `Origin` on same-origin-less requests and `Sec-Fetch-Site`; server-side
/// clients (curl, requests, Node's fetch, which does send `Sec-Fetch-Mode: cors`) send neither.
fn from_browser(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN)
        || headers.contains_key("sec-fetch-site")
        || headers.contains_key("sec-fetch-dest")
}

/// `Some(seconds until reset)` when the address has used up its failed attempts.
fn failures_exhausted(state: &AppState, address: Option<IpAddr>, now: Instant) -> Option<u64> {
    let limit = state.config.auth_failures_per_minute;
    (limit > 0)
        .then(|| {
            state
                .auth_failures
                .exhausted(&address_key(address), limit, now)
        })
        .flatten()
}

fn throttled(retry_after_secs: u64) -> ApiError {
    ApiError::TooManyRequests {
        reason: "auth_throttled",
        message:
            "Too many failed API-key attempts from this address; wait a minute and check the key."
                .into(),
        retry_after_secs,
    }
}

/// Only guesses count against an address: failures that needed a key lookup. A client that is
/// merely misconfigured (no header, `Authorization`, a mangled key) costs nothing and should
/// not lock out its neighbours behind the same NAT.
fn is_guess(error: &ApiError) -> bool {
    matches!(
        error.reason(),
        Some("invalid_api_key" | "revoked_api_key" | "expired_api_key")
    )
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

/// The throttle's key for a client; formatted only on the paths that need it.
fn address_key(address: Option<IpAddr>) -> String {
    address.map(|ip| ip.to_string()).unwrap_or_default()
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    address: Option<IpAddr>,
    now: Instant,
) -> Result<Arc<KeyPrincipalRow>, ApiError> {
    let result = verify(state, headers, address, now).await;
    if let Err(error) = &result {
        let limit = state.config.auth_failures_per_minute;
        if limit > 0 && is_guess(error) {
            state.auth_failures.check(&address_key(address), limit, now);
        }
    }
    result
}

async fn verify(
    state: &AppState,
    headers: &HeaderMap,
    address: Option<IpAddr>,
    now: Instant,
) -> Result<Arc<KeyPrincipalRow>, ApiError> {
    let mut values = headers.get_all(&X_API_KEY).iter();
    if headers.contains_key(&X_API_KEY) && !state.config.allow_browser_keys && from_browser(headers)
    {
        return Err(ApiError::forbidden(
            "browser_use_blocked",
            "API keys must never be used from a browser, where anyone can read them; call the API from your server, and revoke this key if it was shipped to a browser.",
        ));
    }
    let Some(raw) = values.next() else {
        if headers.contains_key(header::AUTHORIZATION) {
            return Err(unauthorized(
                "bearer_not_supported",
                "Send the key in the x-api-key header, not Authorization.",
            ));
        }
        return Err(unauthorized(
            "missing_api_key",
            "Send your API key in the x-api-key header.",
        ));
    };
    if values.next().is_some() {
        return Err(unauthorized(
            "malformed_api_key",
            "Send exactly one x-api-key header; this request has several.",
        ));
    }
    let expected_env = &state.config.key_env;
    let key = api_key::parse(raw.as_bytes(), expected_env).map_err(|rejection| {
        let reason = match rejection {
            KeyRejection::Malformed(_) => "malformed_api_key",
            KeyRejection::WrongEnvironment { .. } => "wrong_environment",
        };
        unauthorized(reason, rejection.message(expected_env))
    })?;
    let digest = key.digest();
    let cached = state.store.key_cache().get(digest.as_bytes());
    if !matches!(cached, Some(Lookup::Found(_))) {
        if let Some(retry_after_secs) = failures_exhausted(state, address, now) {
            return Err(throttled(retry_after_secs));
        }
    }
    let lookup = match cached {
        Some(Lookup::Found(row)) => {
            hot_counters().cache_hit.increment(1);
            Lookup::Found(row)
        }
        Some(Lookup::Unknown) => {
            metrics::counter!("heffl_key_cache_total", "result" => "hit").increment(1);
            Lookup::Unknown
        }
        None => {
            metrics::counter!("heffl_key_cache_total", "result" => "miss").increment(1);
            state.store.resolve_key(digest.as_bytes()).await?.0
        }
    };
    let row = match lookup {
        Lookup::Found(row) => row,
        Lookup::Unknown => {
            return Err(unauthorized(
                "invalid_api_key",
                "This API key does not exist; check that you copied the whole key, or create a new one in Settings > Developer.",
            ))
        }
    };
    let active =
        row.revoked_at.is_none() && row.user_disabled_at.is_none() && row.current_role().is_some();
    if !active {
        return Err(unauthorized(
            "revoked_api_key",
            "This API key has been revoked; create a new one in Settings > Developer.",
        ));
    }
    if let Some(expired_at) = row.expires_at.filter(|at| *at <= Timestamp::now()) {
        state.expiry_log.note(&state.store, &row, expired_at);
        return Err(unauthorized(
            "expired_api_key",
            format!(
                "This API key expired at {}; create a new one in Settings > Developer.",
                expired_at.to_rfc3339()
            ),
        ));
    }
    Ok(row)
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        // Taken, not cloned: each handler extracts it once.
        parts.extensions.remove::<Principal>().ok_or_else(|| {
            ApiError::internal("Principal extractor used outside the API-key middleware")
        })
    }
}
