use crate::domain::ids::WorkspaceId;
use crate::domain::permissions::Role;
use crate::domain::time::Timestamp;
use crate::domain::validate::Issues;
use crate::error::{ApiError, Reason};
use crate::http::auth::session::SessionUser;
use crate::http::pipeline::extract::ApiJson;
use crate::http::pipeline::openapi::{ErrorBody, ServerErrors, Text100};
use crate::http::state::AppState;
use crate::store::{ClientInfo, WorkspaceRow};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

/// The caller's role in the workspace of the path. Not being a member is `workspace_mismatch`,
/// whether or not the workspace exists, so ids of other workspaces cannot be probed.
pub(super) async fn caller_role(
    state: &AppState,
    workspace_id: &WorkspaceId,
    session: &SessionUser,
) -> Result<Role, ApiError> {
    state
        .store
        .workspaces()
        .role_in(workspace_id, &session.user.id)
        .await?
        .ok_or_else(|| {
            ApiError::forbidden(
                Reason::WorkspaceMismatch,
                "You are not a member of this workspace; check the workspace id in the URL.",
            )
        })
}

/// The caller's role, when it lets them manage the workspace's people (owners and admins);
/// `refused` words the 403 for the resource at hand.
pub(super) async fn manager_role(
    state: &AppState,
    workspace_id: &WorkspaceId,
    session: &SessionUser,
    refused: fn() -> ApiError,
) -> Result<Role, ApiError> {
    let role = caller_role(state, workspace_id, session).await?;
    crate::domain::permissions::can_list_members(role).map_err(|_| refused())?;
    Ok(role)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    #[schema(value_type = Text100, required = true)]
    name: Option<String>,
}

/// The caller becomes the new workspace's owner.
#[utoipa::path(
    post,
    path = "/workspaces",
    tag = "dashboard",
    operation_id = "createWorkspace",
    summary = "Create a workspace",
    security(("bearer" = [])),
    request_body = CreateWorkspace,
    responses(
        (status = 201, description = "The new workspace", body = Workspace),
        (status = 400, description = "Invalid JSON or fields", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    ApiJson(body): ApiJson<CreateWorkspace>,
) -> Result<(StatusCode, ApiJson<Workspace>), ApiError> {
    let mut issues = Issues::default();
    let name = issues.required_text("name", body.name.as_deref(), 100);
    issues.finish(())?;
    let workspace = state
        .store
        .workspaces()
        .create(&name, &session.user.id, &client)
        .await?;
    Ok((StatusCode::CREATED, ApiJson(workspace.into())))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    #[schema(value_type = String)]
    id: WorkspaceId,
    name: String,
    created_at: Timestamp,
}

impl From<WorkspaceRow> for Workspace {
    fn from(row: WorkspaceRow) -> Workspace {
        Workspace {
            id: row.id,
            name: row.name,
            created_at: row.created_at,
        }
    }
}
