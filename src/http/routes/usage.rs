//! Usage you can see (docs/api.md §11): one key's series, and the workspace's over the keys the caller
//! may see. Both read the hourly buckets the usage flush writes.

use super::api_keys::visible_key;
use super::workspaces::caller_role;
use crate::domain::ids::{KeyId, WorkspaceId};
use crate::domain::permissions::sees_all_keys;
use crate::domain::time::Timestamp;
use crate::domain::usage_series::{parse_query, Bucket, Granularity, Window};
use crate::error::{ApiError, FieldIssue};
use crate::http::auth::session::SessionUser;
use crate::http::pipeline::extract::{ApiJson, Path, RawQuery};
use crate::http::pipeline::openapi::{ErrorBody, KeyPath, ServerErrors, WorkspacePath};
use crate::http::state::AppState;
use crate::store::KeyStatus;
use axum::extract::State;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyUsage {
    key_id: String,
    granularity: Granularity,
    /// The start of the first bucket.
    from: Timestamp,
    /// The end (exclusive) of the last bucket, the current UTC day or hour.
    to: Timestamp,
    /// Oldest first, one per period, empty periods included.
    buckets: Vec<Bucket>,
    /// The period's refused requests by the rule that refused them, most first.
    refusals: Vec<RefusalTotal>,
}

/// How many requests one rule refused in the period.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RefusalTotal {
    /// The error's `details.reason`: `rate_limited`, `credits_exhausted`, `ip_not_allowed`,
    /// `insufficient_scope`, `outside_data_boundary`, `revoked_api_key`, …
    reason: String,
    requests: i64,
}

fn refusal_totals(rows: Vec<(String, i64)>) -> Vec<RefusalTotal> {
    rows.into_iter()
        .map(|(reason, requests)| RefusalTotal { reason, requests })
        .collect()
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyTotal {
    id: String,
    name: String,
    status: KeyStatus,
    /// The four counters summed over the period.
    total: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkspaceUsage {
    granularity: Granularity,
    from: Timestamp,
    to: Timestamp,
    /// Summed over the keys the caller may see; oldest first, empty periods included.
    buckets: Vec<Bucket>,
    /// The keys the caller may see: active ones, and others with use in the period; busiest
    /// first.
    keys: Vec<KeyTotal>,
    /// Their refused requests by the rule that refused them, most first.
    refusals: Vec<RefusalTotal>,
}

fn window(query: &RawQuery) -> Result<Window, ApiError> {
    let (days, granularity) =
        parse_query(query.get("days"), query.get("granularity")).map_err(|issues| {
            ApiError::Validation(
                issues
                    .into_iter()
                    .map(|(field, message)| FieldIssue::new(field, message))
                    .collect(),
            )
        })?;
    Ok(Window::ending_at(Timestamp::now(), days, granularity))
}

/// Same visibility as the key record: managers any key of the workspace, the others their own.
#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/api-keys/{keyId}/usage",
    tag = "dashboard",
    operation_id = "getApiKeyUsage",
    summary = "One API key's usage by day or hour",
    security(("bearer" = [])),
    params(
        WorkspacePath,
        KeyPath,
        ("days" = Option<i64>, Query, minimum = 1, maximum = 90, description = "Default 30; at most 7 with `granularity=hour`"),
        ("granularity" = Option<Granularity>, Query, description = "`day` (default) or `hour`"),
    ),
    responses(
        (status = 200, description = "The key's buckets", body = KeyUsage),
        (status = 400, description = "Invalid query or path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch`", body = ErrorBody),
        (status = 404, description = "No such key visible to the caller", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn key_usage(
    State(state): State<AppState>,
    session: SessionUser,
    Path((workspace_id, key_id)): Path<(WorkspaceId, KeyId)>,
    query: RawQuery,
) -> Result<ApiJson<KeyUsage>, ApiError> {
    let (_, record) = visible_key(&state, &session, &workspace_id, &key_id).await?;
    let window = window(&query)?;
    let hours = state
        .store
        .usage()
        .key_hours(&workspace_id, &record.id, window.from, window.to)
        .await?;
    let refusals = state
        .store
        .usage()
        .refusals_by_reason(
            &workspace_id,
            Some(&record.id),
            None,
            window.from,
            window.to,
        )
        .await?;
    Ok(ApiJson(KeyUsage {
        key_id: record.id.into(),
        granularity: window.granularity,
        from: window.from,
        to: window.to,
        buckets: window.buckets(&hours),
        refusals: refusal_totals(refusals),
    }))
}

/// Over the keys the caller may see: all of the workspace's for owners and admins, their own
/// for members and viewers.
#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/usage",
    tag = "dashboard",
    operation_id = "getWorkspaceUsage",
    summary = "The workspace's API-key usage by day or hour",
    security(("bearer" = [])),
    params(
        WorkspacePath,
        ("days" = Option<i64>, Query, minimum = 1, maximum = 90, description = "Default 30; at most 7 with `granularity=hour`"),
        ("granularity" = Option<Granularity>, Query, description = "`day` (default) or `hour`"),
    ),
    responses(
        (status = 200, description = "The workspace's buckets and per-key totals", body = WorkspaceUsage),
        (status = 400, description = "Invalid query or path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn workspace_usage(
    State(state): State<AppState>,
    session: SessionUser,
    Path(workspace_id): Path<WorkspaceId>,
    query: RawQuery,
) -> Result<ApiJson<WorkspaceUsage>, ApiError> {
    let role = caller_role(&state, &workspace_id, &session).await?;
    let window = window(&query)?;
    let creator = (!sees_all_keys(role)).then_some(&session.user.id);
    let hours = state
        .store
        .usage()
        .workspace_hours(&workspace_id, creator, window.from, window.to)
        .await?;
    let keys = state
        .store
        .usage()
        .totals_by_key(&workspace_id, creator, window.from, window.to)
        .await?
        .into_iter()
        .filter(|key| key.total > 0 || key.status == KeyStatus::Active)
        .map(|key| KeyTotal {
            id: key.id.into(),
            name: key.name,
            status: key.status,
            total: key.total,
        })
        .collect();
    let refusals = state
        .store
        .usage()
        .refusals_by_reason(&workspace_id, None, creator, window.from, window.to)
        .await?;
    Ok(ApiJson(WorkspaceUsage {
        granularity: window.granularity,
        from: window.from,
        to: window.to,
        buckets: window.buckets(&hours),
        keys,
        refusals: refusal_totals(refusals),
    }))
}
