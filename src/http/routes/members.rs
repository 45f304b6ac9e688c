use super::workspaces::manager_role;
use crate::domain::ids::{UserId, WorkspaceId};
use crate::domain::permissions::Role;
use crate::domain::time::Timestamp;
use crate::domain::validate::Issues;
use crate::error::{ApiError, Reason};
use crate::http::auth::session::SessionUser;
use crate::http::pipeline::extract::{ApiJson, Path};
use crate::http::pipeline::openapi::{ErrorBody, MemberPath, ServerErrors, WorkspacePath};
use crate::http::state::AppState;
use crate::store::{ClientInfo, MemberActor, MemberChange, MemberRow};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    #[schema(value_type = String)]
    user_id: UserId,
    email: String,
    name: String,
    role: Role,
    joined_at: Timestamp,
}

impl From<MemberRow> for Member {
    fn from(row: MemberRow) -> Member {
        Member {
            user_id: row.user_id,
            email: row.email,
            name: row.name,
            role: row.role,
            joined_at: row.joined_at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MemberList {
    items: Vec<Member>,
}

fn not_a_manager() -> ApiError {
    ApiError::forbidden(
        Reason::InsufficientPermission,
        "Only owners and admins manage members, and only owners manage owners.",
    )
}

fn outcome(change: MemberChange) -> Result<Option<Member>, ApiError> {
    match change {
        MemberChange::Done(member) => Ok(member.map(Member::from)),
        MemberChange::NotMember => Err(ApiError::not_found(
            "This user is not a member of the workspace.",
        )),
        MemberChange::AlreadyMember => Err(ApiError::conflict(
            Reason::AlreadyMember,
            "This user is already a member of the workspace; change their role instead.",
        )),
        MemberChange::LastOwner => Err(ApiError::conflict(
            Reason::LastOwner,
            "A workspace needs at least one owner; make someone else owner first.",
        )),
        MemberChange::Forbidden => Err(not_a_manager()),
    }
}

#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/members",
    tag = "dashboard",
    operation_id = "listMembers",
    summary = "List the workspace's members (owners and admins)",
    security(("bearer" = [])),
    params(WorkspacePath),
    responses(
        (status = 200, description = "The members", body = MemberList),
        (status = 400, description = "Invalid path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    session: SessionUser,
    Path(workspace_id): Path<WorkspaceId>,
) -> Result<ApiJson<MemberList>, ApiError> {
    manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    let items = state.store.members().list(&workspace_id).await?;
    Ok(ApiJson(MemberList {
        items: items.into_iter().map(Member::from).collect(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    #[schema(value_type = Role, required = true)]
    role: Option<String>,
}

#[utoipa::path(
    patch,
    path = "/workspaces/{workspaceId}/members/{userId}",
    tag = "dashboard",
    operation_id = "changeMemberRole",
    summary = "Change a member's role (owners and admins; only owners touch owners)",
    security(("bearer" = [])),
    params(
        WorkspacePath,
        MemberPath,
    ),
    request_body = ChangeRole,
    responses(
        (status = 200, description = "The member with the new role", body = Member),
        (status = 400, description = "Invalid JSON, fields or path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        (status = 404, description = "Not a member of this workspace", body = ErrorBody),
        (status = 409, description = "`last_owner`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn change_role(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    Path((workspace_id, user_id)): Path<(WorkspaceId, UserId)>,
    ApiJson(body): ApiJson<ChangeRole>,
) -> Result<ApiJson<Member>, ApiError> {
    let actor_role = manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    let mut issues = Issues::default();
    let role = issues.role("role", body.role.as_deref());
    let role = issues
        .finish(role)?
        .ok_or_else(|| ApiError::internal("validated role missing"))?;
    let actor = MemberActor::user(&session.user.id, actor_role, &client);
    let change = state
        .verifier
        .change_member_role(&workspace_id, &user_id, role, &actor)
        .await?;
    let member = outcome(change)?.ok_or_else(|| ApiError::internal("changed member not found"))?;
    Ok(ApiJson(member))
}

/// The member's keys in this workspace are revoked with reason `owner_removed`.
#[utoipa::path(
    delete,
    path = "/workspaces/{workspaceId}/members/{userId}",
    tag = "dashboard",
    operation_id = "removeMember",
    summary = "Remove a member (owners and admins; only owners touch owners)",
    security(("bearer" = [])),
    params(
        WorkspacePath,
        MemberPath,
    ),
    responses(
        (status = 204, description = "Removed, and their keys revoked"),
        (status = 400, description = "Invalid path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        (status = 404, description = "Not a member of this workspace", body = ErrorBody),
        (status = 409, description = "`last_owner`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    Path((workspace_id, user_id)): Path<(WorkspaceId, UserId)>,
) -> Result<StatusCode, ApiError> {
    let actor_role = manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    let actor = MemberActor::user(&session.user.id, actor_role, &client);
    outcome(
        state
            .verifier
            .remove_member(&workspace_id, &user_id, &actor)
            .await?,
    )?;
    Ok(StatusCode::NO_CONTENT)
}
