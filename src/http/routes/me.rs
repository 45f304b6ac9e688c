use crate::error::ApiError;
use crate::http::extract::Json;
use crate::http::openapi::ErrorBody;
use crate::http::Principal;
use crate::permissions::Role;
use crate::scopes::Scope;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    workspace: MeWorkspace,
    user: MeUser,
    api_key: MeApiKey,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MeWorkspace {
    id: String,
    name: String,
}

/// The key's creator, with their current role: the key acts as them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MeUser {
    id: String,
    email: String,
    name: String,
    role: Role,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MeApiKey {
    id: String,
    name: String,
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
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn me(principal: Principal) -> Result<Json<Me>, ApiError> {
    principal.require(Scope::MeRead)?;
    Ok(Json(Me::of(principal)))
}

impl Me {
    /// Also the body of a forward-auth verify (routes/verify.rs), which adds the scopes.
    pub fn of(principal: Principal) -> Me {
        Me {
            workspace: MeWorkspace {
                id: principal.workspace_id,
                name: principal.workspace_name,
            },
            user: MeUser {
                id: principal.user.id,
                email: principal.user.email,
                name: principal.user.name,
                role: principal.role,
            },
            api_key: MeApiKey {
                id: principal.key_id,
                name: principal.key_name,
            },
        }
    }
}
