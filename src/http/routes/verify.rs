//! Forward auth (docs/api.md §13): a gateway (nginx `auth_request`, Traefik `forwardAuth`, Envoy
//! `ext_authz`) asks whether a request with this key may pass, and learns who it acts as. It sits
//! behind the same `x-api-key` middleware as every /api/v1 route, so failures, rate limits and
//! usage are exactly theirs; this handler adds only `?scope=` and the identity headers.
//!
//! Any method: gateways send the original request's (Envoy always, nginx by default), and
//! Envoy appends the original path, hence the `{*path}` twin. The body is never read.
//!
//! The query of `/api/v1/verify` is the gateway's own configuration, so a parameter it does not
//! know is a typo (`scopes=`, `Scope=`, `scope[]=`) and is refused: ignoring it would skip the
//! scope check the operator meant. The `{*path}` twin carries the original request's query
//! (Envoy appends it), so there only `scope` is read and the rest is not ours to judge.

use super::me::{encode, json_headers, Me};
use crate::domain::credits::MAX_COST;
use crate::domain::scopes::{Scope, ScopeSet};
use crate::domain::validate::Issues;
use crate::error::{ApiError, Reason};
use crate::http::auth::api_key::{keyed, Principal};
use crate::http::pipeline::openapi::{ErrorBody, ServerErrors};
use crate::http::state::AppState;
use crate::verify::memo::{self, VerifyAnswer};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use http_body::Body as _;
use http_body_util::BodyExt;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;

static WORKSPACE_ID: HeaderName = HeaderName::from_static("x-heffl-workspace-id");
static USER_ID: HeaderName = HeaderName::from_static("x-heffl-user-id");
static USER_ROLE: HeaderName = HeaderName::from_static("x-heffl-user-role");
static KEY_ID: HeaderName = HeaderName::from_static("x-heffl-key-id");
static SCOPES: HeaderName = HeaderName::from_static("x-heffl-scopes");
static EXTERNAL_ID: HeaderName = HeaderName::from_static("x-heffl-external-id");

#[derive(Serialize, utoipa::ToSchema)]
pub struct Verified<'a> {
    #[serde(flatten)]
    identity: Me<'a>,
    /// Every scope the key has, the deployment's extra scopes included.
    scopes: Vec<&'a str>,
}

/// Both paths, every method. The document names the tail `{path}`; axum needs a catch-all, so
/// the second route is registered by hand with the documented operations.
pub fn routes() -> OpenApiRouter<AppState> {
    let root = OpenApiRouter::new().routes(endpoints!(keyed: get_verify, post_verify; else verify));
    let (_, paths, methods) =
        endpoints!(keyed: get_verify_path, post_verify_path; else verify_path);
    // An empty tail too: Envoy's check for a request to `/` is `/api/v1/verify/`.
    let mut tail = OpenApiRouter::new()
        .route("/api/v1/verify/{*path}", methods.clone())
        .route("/api/v1/verify/", methods);
    tail.get_openapi_mut().paths.paths.extend(paths.paths);
    root.merge(tail)
}

/// Whose query a verify carries, and so whether a parameter verify does not know is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Query {
    /// `/api/v1/verify`: the gateway's configuration; unknown parameters are refused.
    Gateway,
    /// `/api/v1/verify/{*path}`: the original request's; only `scope` is read.
    OriginalRequest,
}

/// What a successful verify answers; failures are those of any /api/v1 request.
pub(super) async fn verify(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    verify_with(state, request, Query::Gateway).await
}

async fn verify_path(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    verify_with(state, request, Query::OriginalRequest).await
}

/// The whole request is its one extractor: the key check left the principal in it, and the
/// query is read in place.
async fn verify_with(state: AppState, request: Request, kind: Query) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let principal = Principal::take(&mut parts.extensions)?;
    // A gateway sends no body; only a body that may hold bytes is read.
    if !body.is_end_stream() {
        discard(body).await;
    }
    let cost = admitted_cost(&state, &principal, parts.uri.query(), kind)?;
    principal.spend(&state, cost).await?;
    answer(&state, &principal)
}

/// The scopes the query asks for, checked; then what the request costs in credits (`cost`,
/// from the gateway's own query only: the original request's is its client's to write).
fn admitted_cost(
    state: &AppState,
    principal: &Principal,
    query: Option<&str>,
    kind: Query,
) -> Result<i64, ApiError> {
    let Some(query) = query else {
        return Ok(1);
    };
    let (required, cost) = read_query(state, query, kind)?;
    let missing: Vec<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|name| !principal.scopes.contains_name(name))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::forbidden(
            Reason::InsufficientScope,
            format!(
                "This API key lacks the {} scope; create a key with it in Settings > Developer.",
                missing.join(" and ")
            ),
        ));
    }
    Ok(cost)
}

/// The answer to an admitted request: the same for every request the cached key verifies
/// (`verify::memo`).
fn answer(state: &AppState, principal: &Principal) -> Result<Response, ApiError> {
    let answer = memo::get_or_try(&principal.memo.verify, || verify_answer(state, principal))?;
    let mut response = Response::new(Body::from(answer.body.clone()));
    *response.headers_mut() = answer.headers.clone();
    Ok(response)
}

fn verify_answer(state: &AppState, principal: &Principal) -> Result<VerifyAnswer, ApiError> {
    let scopes = effective_scopes(state, &principal.scopes);
    let identity = identity_headers(principal, &scopes)?;
    let body = encode(&Verified {
        identity: Me::of(principal),
        scopes,
    })?;
    // Cloned per request, which measured cheaper than inserting the identity headers each time
    // (a clone has no spare room, so the request id added on the way out makes it grow).
    let mut headers = json_headers(identity.len());
    headers.extend(identity);
    Ok(VerifyAnswer { body, headers })
}

/// A caller that sends the original body (Envoy's `with_request_body`, Traefik's
/// `forwardBody`) must get its connection back usable: unread bytes would make the server close
/// it. The body is already capped at 1 MiB (body_limit.rs); a gateway sends none.
async fn discard(mut body: Body) {
    while let Some(Ok(_)) = body.frame().await {}
}

/// The `scope` parameters (repeatable) and, in the gateway's query, `cost` (default 1). Any
/// other parameter is refused in the gateway's query and ignored in the original request's (see
/// the module's doc).
fn read_query(state: &AppState, query: &str, kind: Query) -> Result<(Vec<String>, i64), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| ApiError::validation("scope", "the query string could not be read"))?;
    let mut cost = 1;
    if kind == Query::Gateway {
        let mut issues = Issues::default();
        let mut named = Vec::new();
        let costs: Vec<&str> = pairs
            .iter()
            .filter(|(name, _)| name == "cost")
            .map(|(_, value)| value.as_str())
            .collect();
        match costs.as_slice() {
            [] => {}
            [one] => match one.parse::<i64>() {
                Ok(n) if (0..=MAX_COST).contains(&n) => cost = n,
                _ => issues.add(
                    "cost",
                    format!("must be a whole number of credits from 0 to {MAX_COST}"),
                ),
            },
            _ => issues.add("cost", "send cost once"),
        }
        for (name, _) in pairs
            .iter()
            .filter(|(name, _)| name != "scope" && name != "cost")
        {
            if !named.contains(&name) {
                named.push(name);
                let shown: String = name.chars().take(64).collect();
                issues.add(
                    &shown,
                    "is not a parameter of verify, which takes only `scope` (repeatable: \
                     ?scope=a&scope=b) and `cost`; a misspelt one would skip the check it meant",
                );
            }
        }
        issues.finish(())?;
    }
    let required: Vec<String> = pairs
        .into_iter()
        .filter(|(name, _)| name == "scope")
        .map(|(_, value)| value)
        .collect();
    let extras = &state.config.extra_scopes;
    let unknown: Vec<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|name| !extras.is_known(name))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::validation(
            "scope",
            format!(
                "unknown scope(s) {}; valid scopes: {}",
                unknown
                    .iter()
                    .map(|name| format!("'{name}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
                extras.valid_list()
            ),
        ));
    }
    Ok((required, cost))
}

/// A key made without scopes has them all: the deployment's extra scopes too.
fn effective_scopes<'a>(state: &'a AppState, scopes: &'a ScopeSet) -> Vec<&'a str> {
    match scopes {
        ScopeSet::All => Scope::ALL
            .iter()
            .map(|s| s.as_str())
            .chain(state.config.extra_scopes.iter())
            .collect(),
        listed => listed.names(),
    }
}

/// `X-Heffl-External-Id` only when the key has one (visible ASCII, checked when it was set).
fn identity_headers(
    principal: &Principal,
    scopes: &[&str],
) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
    let value = |text: &str| {
        HeaderValue::from_str(text)
            .map_err(|_| ApiError::internal("an identity header value is not a valid header"))
    };
    let mut headers = vec![
        (WORKSPACE_ID.clone(), value(&principal.workspace_id)?),
        (USER_ID.clone(), value(&principal.user_id)?),
        (
            USER_ROLE.clone(),
            HeaderValue::from_static(principal.role.as_str()),
        ),
        (KEY_ID.clone(), value(&principal.key_id)?),
        (SCOPES.clone(), value(&scopes.join(" "))?),
    ];
    if let Some(external_id) = principal.external_id.as_deref() {
        headers.push((EXTERNAL_ID.clone(), value(external_id)?));
    }
    Ok(headers)
}

#[utoipa::path(
    get,
    path = "/api/v1/verify",
    tag = "api",
    operation_id = "verifyKey",
    summary = "Forward auth: may a request with this key pass? (any method)",
    description = "For gateways (nginx auth_request, Traefik forwardAuth, Envoy ext_authz). \
        Accepts every HTTP method; GET and POST are listed. The body is never read. \
        A 200 carries the identity in the body and in the X-Heffl-* headers; every failure is \
        exactly that of any /api/v1 request. See docs/forward-auth.md.",
    security(("api_key" = [])),
    params(
        ("scope" = Option<Vec<String>>, Query, description = "A scope the key must have; repeatable"),
        ("cost" = Option<i64>, Query, minimum = 0, maximum = 1000, description = "Credits the request spends, for a key with credits (default 1; `/api/v1/verify` only)"),
    ),
    responses(
        (status = 200, description = "The key is valid and has every required scope", body = Verified,
            headers(
                ("X-Heffl-Workspace-Id" = String, description = "The key's workspace"),
                ("X-Heffl-User-Id" = String, description = "The user the key acts as"),
                ("X-Heffl-User-Role" = String, description = "That user's current role"),
                ("X-Heffl-Key-Id" = String, description = "The key's id"),
                ("X-Heffl-Scopes" = String, description = "The key's scopes, space-separated"),
                ("X-Heffl-External-Id" = String, description = "The key's externalId, when it has one"),
                ("RateLimit-Limit" = u32, description = "Requests per minute for this key"),
                ("RateLimit-Remaining" = u32, description = "Left in this window"),
                ("RateLimit-Reset" = u64, description = "Seconds until the window resets"),
                ("RateLimit-Policy" = String, description = "IETF draft field, e.g. `\"minute\";q=60;w=60`"),
                ("RateLimit" = String, description = "IETF draft field, e.g. `\"minute\";r=59;t=42`"),
            )),
        (status = 400, description = "A `scope` that is neither built-in nor in HEFFL_EXTRA_SCOPES", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked, expired or disabled key; `details.reason` says which", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`, `ip_not_allowed` or `browser_use_blocked`", body = ErrorBody),
        (status = 413, description = "A declared body over 1 MiB", body = ErrorBody),
        (status = 429, description = "`rate_limited` (the key's rate limit), `credits_exhausted`, or `auth_throttled` (too many failed attempts from this address)", body = ErrorBody),
        ServerErrors,
    )
)]
async fn get_verify(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    verify_with(state, request, Query::Gateway).await
}

#[utoipa::path(
    post,
    path = "/api/v1/verify",
    tag = "api",
    operation_id = "verifyKeyPost",
    summary = "Forward auth, as GET (any method is accepted)",
    security(("api_key" = [])),
    params(
        ("scope" = Option<Vec<String>>, Query, description = "A scope the key must have; repeatable"),
        ("cost" = Option<i64>, Query, minimum = 0, maximum = 1000, description = "Credits the request spends, for a key with credits (default 1; `/api/v1/verify` only)"),
    ),
    responses(
        (status = 200, description = "As GET", body = Verified),
        VerifyFailures,
        ServerErrors,
    )
)]
async fn post_verify(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    verify_with(state, request, Query::Gateway).await
}

#[utoipa::path(
    get,
    path = "/api/v1/verify/{path}",
    tag = "api",
    operation_id = "verifyKeyForPath",
    summary = "Forward auth with the original path appended (Envoy's path_prefix); any method",
    description = "The same as /api/v1/verify; the path after /verify/ (any number of segments) is ignored.",
    security(("api_key" = [])),
    params(
        ("path" = String, Path, description = "The original request's path; ignored"),
        ("scope" = Option<Vec<String>>, Query, description = "A scope the key must have; repeatable"),
    ),
    responses(
        (status = 200, description = "As /api/v1/verify", body = Verified),
        VerifyFailures,
        ServerErrors,
    )
)]
async fn get_verify_path(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    verify_with(state, request, Query::OriginalRequest).await
}

#[utoipa::path(
    post,
    path = "/api/v1/verify/{path}",
    tag = "api",
    operation_id = "verifyKeyForPathPost",
    summary = "Forward auth with the original path appended, as GET",
    security(("api_key" = [])),
    params(
        ("path" = String, Path, description = "The original request's path; ignored"),
        ("scope" = Option<Vec<String>>, Query, description = "A scope the key must have; repeatable"),
    ),
    responses(
        (status = 200, description = "As /api/v1/verify", body = Verified),
        VerifyFailures,
        ServerErrors,
    )
)]
async fn post_verify_path(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    verify_with(state, request, Query::OriginalRequest).await
}

/// The failures of the three twins of `GET /api/v1/verify` (POST, and both with a path), which
/// answer exactly as it does; listed once instead of in each.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "never built: it only describes responses")]
enum VerifyFailures {
    #[response(
        status = 400,
        description = "Unknown `scope`, or (on /api/v1/verify) a query parameter other than `scope`"
    )]
    UnknownScope(ErrorBody),
    #[response(status = 401, description = "As any /api/v1 request")]
    Unauthorized(ErrorBody),
    #[response(
        status = 403,
        description = "`insufficient_scope`, `ip_not_allowed` or `browser_use_blocked`"
    )]
    Forbidden(ErrorBody),
    #[response(status = 413, description = "A declared body over 1 MiB")]
    TooLarge(ErrorBody),
    #[response(status = 429, description = "Rate limited")]
    RateLimited(ErrorBody),
}
