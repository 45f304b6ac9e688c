//! The workspace's audit log, for owners and admins: newest first, cursor-paginated.

use super::workspaces::caller_role;
use crate::domain::ids::{KeyId, WorkspaceId};
use crate::domain::permissions::can_list_members;
use crate::domain::time::Timestamp;
use crate::domain::validate::Issues;
use crate::error::{ApiError, Reason};
use crate::http::auth::session::SessionUser;
use crate::http::pipeline::extract::{ApiJson, Path, RawQuery};
use crate::http::pipeline::openapi::{ErrorBody, ServerErrors, WorkspacePath};
use crate::http::state::AppState;
use crate::store::AuditEventRow;
use axum::extract::State;
use serde::Serialize;
use serde_json::Value;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Party {
    /// e.g. `user`, `api_key`, `workspace`; empty when the event has no target.
    #[serde(rename = "type")]
    kind: String,
    #[schema(required = true)]
    id: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    id: String,
    /// e.g. `api_key.created`, `member.removed`.
    action: String,
    actor: Party,
    target: Party,
    #[schema(required = true)]
    ip: Option<String>,
    #[schema(required = true)]
    user_agent: Option<String>,
    /// What the action changed, when it says more than its name.
    #[schema(value_type = Option<Object>, required = true)]
    details: Value,
    at: Timestamp,
}

impl From<AuditEventRow> for AuditEvent {
    fn from(row: AuditEventRow) -> Self {
        AuditEvent {
            id: row.id,
            action: row.action,
            actor: Party {
                kind: row.actor_type,
                id: row.actor_id,
            },
            target: Party {
                kind: row.target_type.unwrap_or_default(),
                id: row.target_id,
            },
            ip: row.ip,
            user_agent: row.user_agent,
            details: row
                .details
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or(Value::Null),
            at: row.at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    items: Vec<AuditEvent>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/audit-events",
    tag = "dashboard",
    operation_id = "listAuditEvents",
    summary = "The workspace's audit log, newest first (owners and admins)",
    security(("bearer" = [])),
    params(
        WorkspacePath,
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Events per page, default 50"),
        ("cursor" = Option<String>, Query, pattern = "^(?:evt_[0-9A-Za-z]{1,40})?$", description = "The `nextCursor` of the previous page"),
        ("keyId" = Option<String>, Query, pattern = "^key_[0-9A-Za-z]{22}$", description = "Only events about this API key (`key_…`)"),
    ),
    responses(
        (status = 200, description = "One page of events", body = AuditPage),
        (status = 400, description = "Invalid query or path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    session: SessionUser,
    Path(workspace_id): Path<WorkspaceId>,
    query: RawQuery,
) -> Result<ApiJson<AuditPage>, ApiError> {
    let role = caller_role(&state, &workspace_id, &session).await?;
    can_list_members(role).map_err(|_| {
        ApiError::forbidden(
            Reason::InsufficientPermission,
            "Only owners and admins can read the audit log.",
        )
    })?;
    let mut issues = Issues::default();
    let limit = issues.page_limit(query.get("limit"), DEFAULT_LIMIT, MAX_LIMIT);
    let after = query.get("cursor").filter(|c| !c.is_empty());
    let key_id = query.get("keyId").map(|id| (id, KeyId::parse(id)));
    if key_id.as_ref().is_some_and(|(_, parsed)| parsed.is_none()) {
        issues.add("keyId", "must be an API key id (key_…)");
    }
    issues.finish(())?;
    let key_id = key_id.and_then(|(_, parsed)| parsed);
    let bad_cursor = || ApiError::validation("cursor", "must be the nextCursor of a previous page");
    let rows = state
        .store
        .audit()
        .list(&workspace_id, key_id.as_ref(), after, limit)
        .await?
        .ok_or_else(bad_cursor)?;
    let full_page = i64::try_from(rows.len()).unwrap_or(0) == limit;
    let next_cursor = rows.last().filter(|_| full_page).map(|row| row.id.clone());
    Ok(ApiJson(AuditPage {
        items: rows.into_iter().map(AuditEvent::from).collect(),
        next_cursor,
    }))
}
