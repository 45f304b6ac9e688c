//! Webhook endpoints (docs/api.md §15), for a workspace's owners and admins: register a URL and
//! the events it takes, read the delivery log, send a message again. The signing secret is
//! shown once, when the endpoint is made and when its secret is rolled.

use super::workspaces::manager_role;
use crate::domain::ids::{MessageId, WebhookId, WorkspaceId};
use crate::domain::time::Timestamp;
use crate::domain::validate::Issues;
use crate::domain::webhooks::{check_url, EventFilter, SigningSecret};
use crate::error::{ApiError, Reason};
use crate::http::auth::session::SessionUser;
use crate::http::pipeline::extract::{ApiJson, Path, RawQuery};
use crate::http::pipeline::openapi::{
    ErrorBody, EventName, MessagePath, OptionalText200, ServerErrors, WebhookPath, WebhookUrl,
    WorkspacePath,
};
use crate::http::state::AppState;
use crate::store::{
    ClientInfo, DeliveryRow, DeliveryStatus, NewWebhook, WebhookChanges, WebhookRow,
};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

fn not_a_manager() -> ApiError {
    ApiError::forbidden(
        Reason::InsufficientPermission,
        "Only owners and admins manage webhooks.",
    )
}

fn webhook_not_found() -> ApiError {
    ApiError::not_found("No webhook endpoint with this id in this workspace.")
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    #[schema(value_type = String)]
    id: WebhookId,
    url: String,
    #[schema(required = true)]
    description: Option<String>,
    /// The event types sent, or `["*"]` for all.
    #[schema(value_type = Vec<EventName>)]
    events: Vec<&'static str>,
    enabled: bool,
    /// Why the endpoint is disabled: `by_user`, or `failing` (every delivery failed for 5 days).
    #[schema(required = true)]
    disabled_reason: Option<String>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl From<WebhookRow> for Webhook {
    fn from(row: WebhookRow) -> Webhook {
        Webhook {
            events: row.events().names(),
            id: row.id,
            url: row.url,
            description: row.description,
            enabled: row.disabled_at.is_none(),
            disabled_reason: row.disabled_reason,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    webhook: Webhook,
    /// `whsec_…`: verifies the `webhook-signature` of each delivery (Standard Webhooks).
    /// Shown only here.
    secret: String,
}

impl WebhookWithSecret {
    fn new(row: WebhookRow, secret: &SigningSecret) -> WebhookWithSecret {
        WebhookWithSecret {
            webhook: row.into(),
            secret: secret.expose().to_owned(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookList {
    items: Vec<Webhook>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    #[schema(value_type = WebhookUrl, required = true)]
    url: Option<String>,
    /// Default `["*"]`: every event, including types added later.
    #[schema(value_type = Option<Vec<EventName>>)]
    events: Option<Vec<String>>,
    /// Default `true`.
    enabled: Option<bool>,
    #[schema(value_type = Option<OptionalText200>)]
    description: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    #[schema(value_type = Option<WebhookUrl>)]
    url: Option<String>,
    #[schema(value_type = Option<Vec<EventName>>)]
    events: Option<Vec<String>>,
    /// `true` also starts the count of failures afresh for an endpoint the server disabled.
    enabled: Option<bool>,
    /// `null` or blank removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<OptionalText200>)]
    description: Option<Option<String>>,
}

fn nullable<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// Checks a URL as given, then the addresses its host resolves to (unless private ones are
/// allowed); `None` when it was refused, with the reason in `issues`.
async fn checked_url(state: &AppState, issues: &mut Issues, text: Option<&str>) -> Option<String> {
    let text = text?;
    let url = match check_url(text, state.config.webhook_allow_http) {
        Ok(url) => url,
        Err(problem) => {
            issues.add("url", problem.message());
            return None;
        }
    };
    if !state.config.webhook_allow_private {
        if let Some(address) = crate::webhooks::client::private_address_of(&url).await {
            issues.add(
                "url",
                format!(
                    "its host resolves to {address}, a loopback, private or link-local address; \
                     webhooks go only to the internet"
                ),
            );
            return None;
        }
    }
    Some(url.to_string())
}

fn checked_events(issues: &mut Issues, events: Option<&[String]>) -> Option<EventFilter> {
    match EventFilter::parse(events?) {
        Ok(filter) => Some(filter),
        Err(message) => {
            issues.add("events", message);
            None
        }
    }
}

#[utoipa::path(
    post,
    path = "/workspaces/{workspaceId}/webhooks",
    tag = "dashboard",
    operation_id = "createWebhook",
    summary = "Register a webhook endpoint (owners and admins)",
    security(("bearer" = [])),
    params(WorkspacePath),
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "The endpoint, with its signing secret (shown only here)", body = WebhookWithSecret),
        (status = 400, description = "Invalid JSON or fields (a URL that is not https, or whose host is private)", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    Path(workspace_id): Path<WorkspaceId>,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> Result<(StatusCode, ApiJson<WebhookWithSecret>), ApiError> {
    manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    let mut issues = Issues::default();
    if body.url.is_none() {
        issues.add("url", "is required");
    }
    let description = issues.optional_text("description", body.description.as_deref(), 200);
    let events = match &body.events {
        None => Some(EventFilter::All),
        Some(events) => checked_events(&mut issues, Some(events)),
    };
    let url = checked_url(&state, &mut issues, body.url.as_deref()).await;
    let (Some(url), Some(events)) = issues.finish((url, events))? else {
        return Err(ApiError::internal("validated webhook fields missing"));
    };
    let new = NewWebhook {
        url: &url,
        description: description.as_deref(),
        events: &events,
        enabled: body.enabled.unwrap_or(true),
    };
    let (row, secret) = state
        .store
        .webhooks()
        .create(&workspace_id, &new, &session.user.id, &client)
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(WebhookWithSecret::new(row, &secret)),
    ))
}

#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/webhooks",
    tag = "dashboard",
    operation_id = "listWebhooks",
    summary = "List the workspace's webhook endpoints (owners and admins)",
    security(("bearer" = [])),
    params(WorkspacePath),
    responses(
        (status = 200, description = "The endpoints, oldest first", body = WebhookList),
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
) -> Result<ApiJson<WebhookList>, ApiError> {
    manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    let rows = state.store.webhooks().list(&workspace_id).await?;
    Ok(ApiJson(WebhookList {
        items: rows.into_iter().map(Webhook::from).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/webhooks/{webhookId}",
    tag = "dashboard",
    operation_id = "getWebhook",
    summary = "One webhook endpoint (owners and admins)",
    security(("bearer" = [])),
    params(WorkspacePath, WebhookPath),
    responses(
        (status = 200, description = "The endpoint", body = Webhook),
        (status = 400, description = "Invalid path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        (status = 404, description = "No such endpoint in this workspace", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn get(
    State(state): State<AppState>,
    session: SessionUser,
    Path((workspace_id, webhook_id)): Path<(WorkspaceId, WebhookId)>,
) -> Result<ApiJson<Webhook>, ApiError> {
    manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    let row = state
        .store
        .webhooks()
        .get(&workspace_id, &webhook_id)
        .await?
        .ok_or_else(webhook_not_found)?;
    Ok(ApiJson(row.into()))
}

#[utoipa::path(
    patch,
    path = "/workspaces/{workspaceId}/webhooks/{webhookId}",
    tag = "dashboard",
    operation_id = "updateWebhook",
    summary = "Change a webhook endpoint's URL, events, description, or pause it (owners and admins)",
    security(("bearer" = [])),
    params(WorkspacePath, WebhookPath),
    request_body = UpdateWebhook,
    responses(
        (status = 200, description = "The endpoint as changed", body = Webhook),
        (status = 400, description = "Invalid JSON, fields or path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        (status = 404, description = "No such endpoint in this workspace", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn update(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    Path((workspace_id, webhook_id)): Path<(WorkspaceId, WebhookId)>,
    ApiJson(body): ApiJson<UpdateWebhook>,
) -> Result<ApiJson<Webhook>, ApiError> {
    manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    let mut issues = Issues::default();
    let description = body
        .description
        .as_ref()
        .map(|description| issues.optional_text("description", description.as_deref(), 200));
    let events = checked_events(&mut issues, body.events.as_deref());
    let url = checked_url(&state, &mut issues, body.url.as_deref()).await;
    issues.finish(())?;
    let changes = WebhookChanges {
        url,
        description,
        events,
        enabled: body.enabled,
    };
    let row = state
        .store
        .webhooks()
        .update(
            &workspace_id,
            &webhook_id,
            &changes,
            &session.user.id,
            &client,
        )
        .await?
        .ok_or_else(webhook_not_found)?;
    Ok(ApiJson(row.into()))
}

#[utoipa::path(
    delete,
    path = "/workspaces/{workspaceId}/webhooks/{webhookId}",
    tag = "dashboard",
    operation_id = "deleteWebhook",
    summary = "Delete a webhook endpoint and its undelivered messages (owners and admins)",
    security(("bearer" = [])),
    params(WorkspacePath, WebhookPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        (status = 404, description = "No such endpoint in this workspace", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    Path((workspace_id, webhook_id)): Path<(WorkspaceId, WebhookId)>,
) -> Result<StatusCode, ApiError> {
    manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    let deleted = state
        .store
        .webhooks()
        .delete(&workspace_id, &webhook_id, &session.user.id, &client)
        .await?;
    if !deleted {
        return Err(webhook_not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The old secret keeps signing beside the new one for 24 hours, so receivers can switch
/// without missing a message (`webhook-signature` then carries two signatures).
#[utoipa::path(
    post,
    path = "/workspaces/{workspaceId}/webhooks/{webhookId}/secret",
    tag = "dashboard",
    operation_id = "rollWebhookSecret",
    summary = "Roll a webhook endpoint's signing secret (owners and admins)",
    security(("bearer" = [])),
    params(WorkspacePath, WebhookPath),
    responses(
        (status = 200, description = "The endpoint with its new secret (shown only here)", body = WebhookWithSecret),
        (status = 400, description = "Invalid path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        (status = 404, description = "No such endpoint in this workspace", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn roll_secret(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    Path((workspace_id, webhook_id)): Path<(WorkspaceId, WebhookId)>,
) -> Result<ApiJson<WebhookWithSecret>, ApiError> {
    manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    let (row, secret) = state
        .store
        .webhooks()
        .roll_secret(&workspace_id, &webhook_id, &session.user.id, &client)
        .await?
        .ok_or_else(webhook_not_found)?;
    Ok(ApiJson(WebhookWithSecret::new(row, &secret)))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The message's `webhook-id`, the same on every try.
    #[schema(value_type = String)]
    id: MessageId,
    /// The event type.
    #[serde(rename = "type")]
    #[schema(value_type = EventName)]
    kind: String,
    status: DeliveryStatus,
    /// Tries made so far.
    attempts: i64,
    /// The HTTP status of the last answer; `null` when there was none.
    #[schema(required = true)]
    last_status: Option<i64>,
    /// Why the last try failed, when it did (never the URL or a secret).
    #[schema(required = true)]
    last_error: Option<String>,
    #[schema(required = true)]
    last_attempt_at: Option<Timestamp>,
    /// When the next try is due; `null` unless pending.
    #[schema(required = true)]
    next_attempt_at: Option<Timestamp>,
    created_at: Timestamp,
}

impl From<DeliveryRow> for Delivery {
    fn from(row: DeliveryRow) -> Delivery {
        Delivery {
            id: row.id,
            kind: row.event_type,
            status: row.status,
            attempts: row.attempts,
            last_status: row.last_status,
            last_error: row.last_error,
            last_attempt_at: row.last_attempt_at,
            next_attempt_at: row.next_attempt_at,
            created_at: row.created_at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPage {
    items: Vec<Delivery>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/webhooks/{webhookId}/deliveries",
    tag = "dashboard",
    operation_id = "listWebhookDeliveries",
    summary = "The endpoint's messages and how their delivery went, newest first (owners and admins)",
    security(("bearer" = [])),
    params(
        WorkspacePath,
        WebhookPath,
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Messages per page, default 50"),
        ("cursor" = Option<String>, Query, pattern = "^(?:msg_[0-9A-Za-z]{22})?$", description = "The `nextCursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of messages", body = DeliveryPage),
        (status = 400, description = "Invalid query or path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        (status = 404, description = "No such endpoint in this workspace", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn deliveries(
    State(state): State<AppState>,
    session: SessionUser,
    Path((workspace_id, webhook_id)): Path<(WorkspaceId, WebhookId)>,
    query: RawQuery,
) -> Result<ApiJson<DeliveryPage>, ApiError> {
    manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    let mut issues = Issues::default();
    let limit = issues.page_limit(query.get("limit"), DEFAULT_LIMIT, MAX_LIMIT);
    let after = query
        .get("cursor")
        .filter(|c| !c.is_empty())
        .map(MessageId::parse);
    if after.as_ref().is_some_and(Option::is_none) {
        issues.add("cursor", "must be the nextCursor of a previous page");
    }
    issues.finish(())?;
    let after = after.flatten();
    state
        .store
        .webhooks()
        .get(&workspace_id, &webhook_id)
        .await?
        .ok_or_else(webhook_not_found)?;
    let rows = state
        .store
        .webhooks()
        .deliveries(&workspace_id, &webhook_id, after.as_ref(), limit)
        .await?
        .ok_or_else(|| {
            ApiError::validation("cursor", "must be the nextCursor of a previous page")
        })?;
    let full_page = i64::try_from(rows.len()).unwrap_or(0) == limit;
    let next_cursor = rows
        .last()
        .filter(|_| full_page)
        .map(|row| row.id.to_string());
    Ok(ApiJson(DeliveryPage {
        items: rows.into_iter().map(Delivery::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(
    post,
    path = "/workspaces/{workspaceId}/webhooks/{webhookId}/deliveries/{messageId}/retry",
    tag = "dashboard",
    operation_id = "retryWebhookDelivery",
    summary = "Send a message again now, whatever its status (owners and admins)",
    security(("bearer" = [])),
    params(WorkspacePath, WebhookPath, MessagePath),
    responses(
        (status = 202, description = "Due now; the delivery log shows how it went", body = Delivery),
        (status = 400, description = "Invalid path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        (status = 404, description = "No such message of this endpoint", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    session: SessionUser,
    Path((workspace_id, webhook_id, message_id)): Path<(WorkspaceId, WebhookId, MessageId)>,
) -> Result<(StatusCode, ApiJson<Delivery>), ApiError> {
    manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    let row = state
        .store
        .webhooks()
        .retry_delivery(&workspace_id, &webhook_id, &message_id)
        .await?
        .ok_or_else(|| ApiError::not_found("No message with this id for this endpoint."))?;
    Ok((StatusCode::ACCEPTED, ApiJson(row.into())))
}
