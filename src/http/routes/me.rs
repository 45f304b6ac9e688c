use crate::error::ApiError;
use crate::http::extract::ApiJson;
use crate::http::openapi::{ErrorBody, ServerErrors};
use crate::http::Principal;
use crate::permissions::Role;
use crate::scopes::Scope;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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
pub struct MeApiKey<'a> {
    id: &'a str,
    name: &'a str,
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
        (status = 401, description = "Missing, malformed, unknown, revoked or expired key; `details.reason` says which", body = ErrorBody),
        (status = 403, description = "`insufficient_scope` or `browser_use_blocked`", body = ErrorBody),
        (status = 429, description = "The key's rate limit, or too many failed attempts from this address", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn me(principal: Principal) -> Result<Response, ApiError> {
    principal.require(Scope::MeRead)?;
    Ok(ApiJson(Me::of(&principal)).into_response())
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
            },
        }
    }
}
