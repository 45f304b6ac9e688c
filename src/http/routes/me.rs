use crate::domain::permissions::Role;
use crate::domain::scopes::Scope;
use crate::error::ApiError;
use crate::http::auth::api_key::Principal;
use crate::http::pipeline::openapi::{ErrorBody, ServerErrors};
use crate::http::state::AppState;
use crate::verify::memo;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use serde::Serialize;
use serde_json::value::RawValue;

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me<'a> {
    workspace: MeWorkspace<'a>,
    user: MeUser<'a>,
    api_key: MeApiKey<'a>,
}

// Borrowed from the cached principal: serialized straight from it, nothing copied.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MeWorkspace<'a> {
    id: &'a str,
    name: &'a str,
}

/// The key's creator, with their current role: the key acts as them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MeUser<'a> {
    id: &'a str,
    email: &'a str,
    name: &'a str,
    role: Role,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeApiKey<'a> {
    id: &'a str,
    name: &'a str,
    /// The JSON object set on the key, as set.
    #[schema(value_type = Option<Object>, required = true)]
    meta: Option<&'a RawValue>,
    /// The integrator's own id for whoever the key is for.
    #[schema(required = true)]
    external_id: Option<&'a str>,
}

#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "api",
    operation_id = "getMe",
    summary = "The key's workspace, user (with role) and key",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Who this key acts as", body = Me),
        (status = 401, description = "Missing, malformed, unknown, revoked, expired or disabled key; `details.reason` says which", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`, `ip_not_allowed` or `browser_use_blocked`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (the key's rate limit), `credits_exhausted`, or `auth_throttled` (too many failed attempts from this address)", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn me(State(state): State<AppState>, principal: Principal) -> Result<Response, ApiError> {
    principal.admit(&state, Scope::MeRead).await?;
    answer(&principal)
}

/// The answer once the request is admitted.
fn answer(principal: &Principal) -> Result<Response, ApiError> {
    let body = memo::get_or_try(&principal.memo.me, || encode(&Me::of(principal)))?;
    Ok(json_answer(body.clone()))
}

/// The JSON of an answer kept in the key's memo (`verify::memo`).
pub(super) fn encode(body: &impl Serialize) -> Result<Bytes, ApiError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|_| ApiError::internal("an answer could not be encoded as JSON"))
}

/// A 200 with a JSON body encoded before: the same response `Json` makes, without encoding.
fn json_answer(body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.headers_mut() = json_headers(0);
    response
}

/// `Content-Type: application/json`, in a map made once with room for `extra` more headers
/// and those most answers get on the way out (the request id, `Content-Length`), instead of
/// growing on the way. Not room for a rate limit's five headers too: that would make every
/// answer's map an allocation past a kilobyte, to spare the answers with them one growth.
pub(super) fn json_headers(extra: usize) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(extra + 5);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers
}

impl<'a> Me<'a> {
    /// Also the body of a forward-auth verify (routes/verify.rs), which adds the scopes.
    pub fn of(principal: &'a Principal) -> Me<'a> {
        Me {
            workspace: MeWorkspace {
                id: &principal.workspace_id,
                name: &principal.workspace_name,
            },
            user: MeUser {
                id: &principal.user_id,
                email: &principal.user_email,
                name: &principal.user_name,
                role: principal.role,
            },
            api_key: MeApiKey {
                id: &principal.key_id,
                name: &principal.key_name,
                // Stored only after it was checked to be a JSON object (`meta_column`).
                meta: principal
                    .meta
                    .as_deref()
                    .and_then(|text| serde_json::from_str(text).ok()),
                external_id: principal.external_id.as_deref(),
            },
        }
    }
}
