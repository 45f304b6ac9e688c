//! The workspace's audit log, for owners and admins: newest first, cursor-paginated.

use super::workspaces::caller_role;
use crate::error::ApiError;
use crate::http::extract::{Json, Path, RawQuery};
use crate::http::session_auth::SessionUser;
use crate::http::AppState;
use crate::permissions::can_list_members;
use crate::store::AuditEventRow;
use crate::time::Timestamp;
use crate::validate::Issues;
use axum::extract::State;
use serde::Serialize;
use serde_json::Value;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

#[derive(Serialize)]
pub struct Party {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    id: String,
    action: String,
    actor: Party,
    target: Party,
    ip: Option<String>,
    user_agent: Option<String>,
    details: Value,
    at: Timestamp,
}

impl From<AuditEventRow> for AuditEvent {
    fn from(row: AuditEventRow) -> Self {
        AuditEvent {
            id: format!("evt_{}", row.seq),
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    items: Vec<AuditEvent>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    next_cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    session: SessionUser,
    Path(workspace_id): Path<String>,
    query: RawQuery,
) -> Result<Json<AuditPage>, ApiError> {
    let role = caller_role(&state, &workspace_id, &session).await?;
    can_list_members(role).map_err(|_| {
        ApiError::forbidden(
            "insufficient_permission",
            "Only owners and admins can read the audit log.",
        )
    })?;
    let mut issues = Issues::default();
    let limit = match query.get("limit").map(|v| v.trim().parse::<i64>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            issues.add(
                "limit",
                format!("must be a whole number from 1 to {MAX_LIMIT}"),
            );
            DEFAULT_LIMIT
        }
    };
    let before = match query.get("cursor") {
        None | Some("") => None,
        Some(cursor) => match cursor.strip_prefix("evt_").unwrap_or(cursor).parse::<i64>() {
            Ok(seq) if seq > 0 => Some(seq),
            _ => {
                issues.add("cursor", "must be the nextCursor of a previous page");
                None
            }
        },
    };
    issues.finish(())?;
    let rows = state
        .store
        .list_audit_events(&workspace_id, before, limit)
        .await?;
    let full_page = i64::try_from(rows.len()).unwrap_or(0) == limit;
    let next_cursor = rows
        .last()
        .filter(|_| full_page)
        .map(|row| format!("evt_{}", row.seq));
    Ok(Json(AuditPage {
        items: rows.into_iter().map(AuditEvent::from).collect(),
        next_cursor,
    }))
}
