//! Settings > Developer: create, list, read, edit, roll and revoke a workspace's keys.

use super::workspaces::caller_role;
use crate::domain::api_key::ApiKey;
use crate::domain::credits::{Interval, Refill};
use crate::domain::ids::{KeyId, WorkspaceId};
use crate::domain::key_policy::{external_id, meta_column, AllowedIps, MAX_DESCRIPTION_CHARS};
use crate::domain::permissions::{
    can_revoke_key, can_roll_key, can_set_rate_limit, sees_all_keys, Role,
};
use crate::domain::scopes::ScopeSet;
use crate::domain::time::Timestamp;
use crate::domain::validate::Issues;
use crate::error::{ApiError, Reason};
use crate::http::auth::session::SessionUser;
use crate::http::pipeline::extract::{parse_json, ApiJson, Path, RawQuery};
use crate::http::pipeline::openapi::{ErrorBody, KeyPath, ServerErrors, Text100, WorkspacePath};
use crate::http::state::AppState;
use crate::store::{
    Actor, ApiKeyRecord, ClientInfo, CreditsChange, Editor, KeyChanges, KeyFilter,
    KeyPolicyColumns, KeyStatus, NewApiKey, RollOutcome, StatusFilter, UpdateOutcome,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::{Deserialize, Deserializer, Serialize};

pub const MAX_KEY_NAME_CHARS: usize = 100;
pub const MAX_RATE_LIMIT_PER_MINUTE: i64 = 1_000_000;
const DAY_MS: i64 = 86_400_000;
/// Ten years: long enough for any real expiry, short enough to catch a unit mistake.
const MAX_EXPIRY_DAYS: i64 = 3650;
/// A rolled key's old secret may stay valid for at most a week.
const MAX_ROLL_GRACE_SECS: i64 = 7 * 86_400;

/// A request body with the fields of docs/api.md §14 that create and edit share, written once.
/// (serde's `flatten` would lose the name of an unknown field in the 400.)
macro_rules! with_policy_fields {
    ($(#[$attr:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        $(#[$attr])*
        pub struct $name {
            $($fields)*
            /// What the key is for; up to 500 characters. `null` removes it.
            #[serde(default, deserialize_with = "nullable")]
            #[schema(value_type = Option<String>, max_length = 500)]
            description: Option<Option<String>>,
            /// `false` pauses the key: its requests get 401 `disabled_api_key`.
            enabled: Option<bool>,
            /// Up to 100 IPv4/IPv6 addresses or CIDR blocks the key may be used from; `[]` or
            /// `null`: any address.
            #[serde(default, deserialize_with = "nullable")]
            #[schema(value_type = Option<Vec<String>>, max_items = 100, examples(json!(["203.0.113.0/24", "2001:db8::/48"])))]
            allowed_ips: Option<Option<Vec<String>>>,
            /// A JSON object of up to 1 KB, returned with every verification. `null` removes it.
            #[serde(default, deserialize_with = "nullable")]
            #[schema(value_type = Option<Object>)]
            meta: Option<Option<serde_json::Value>>,
            /// Your own id for whoever the key is for (visible ASCII, up to 255). `null` removes it.
            #[serde(default, deserialize_with = "nullable")]
            #[schema(value_type = Option<String>, max_length = 255, examples("cus_4QX2"))]
            external_id: Option<Option<String>>,
            /// `null`: unlimited (the default). `{"remaining": N, "refill": null | {"amount": N,
            /// "interval": "daily" | "monthly", "day": 1-31}}` sets a budget; when editing,
            /// `{"add": N}` adds to it. Changed after creation by owners and admins only.
            #[serde(default, deserialize_with = "nullable")]
            #[schema(value_type = Option<CreditsInput>)]
            credits: Option<Option<serde_json::Value>>,
        }

        impl $name {
            fn policy_fields(&self) -> PolicyFields<'_> {
                PolicyFields {
                    description: self.description.as_ref(),
                    enabled: self.enabled,
                    allowed_ips: self.allowed_ips.as_ref(),
                    meta: self.meta.as_ref(),
                    external_id: self.external_id.as_ref(),
                    credits: self.credits.as_ref(),
                }
            }
        }
    };
}

with_policy_fields! {
    #[derive(Deserialize, utoipa::ToSchema)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct CreateKey {
        #[schema(value_type = Text100, required = true, examples("Website form"))]
        name: Option<String>,
        /// Overrides HEFFL_RATE_LIMIT_PER_MINUTE for this key; 0 means no limit.
        #[schema(minimum = 0, maximum = 1_000_000)]
        rate_limit_per_minute: Option<i64>,
        /// Default: every scope. At least one.
        #[schema(value_type = Option<ScopeSet>)]
        scopes: Option<Vec<String>>,
        /// A future RFC 3339 time within 3650 days. Send at most one of `expiresAt` and
        /// `expiresInDays`; neither means the key never expires.
        #[schema(format = DateTime)]
        expires_at: Option<String>,
        #[schema(minimum = 1, maximum = 3650)]
        expires_in_days: Option<i64>,
    }
}

with_policy_fields! {
    /// A PATCH: only the fields sent change, all or none of them.
    #[derive(Deserialize, utoipa::ToSchema)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct UpdateKey {
        #[serde(default, deserialize_with = "nullable")]
        #[schema(value_type = Option<Text100>)]
        name: Option<Option<String>>,
        /// Overrides HEFFL_RATE_LIMIT_PER_MINUTE for this key; 0: no limit; `null`: the
        /// server's default again.
        #[serde(default, deserialize_with = "nullable")]
        #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000)]
        rate_limit_per_minute: Option<Option<i64>>,
        /// Narrowing only: a subset of the key's scopes.
        #[schema(value_type = Option<ScopeSet>)]
        scopes: Option<Vec<String>>,
        /// A future RFC 3339 time within 3650 days, or `null` for none. Members may set one or
        /// move it earlier; owners and admins also later, or remove it.
        #[serde(default, deserialize_with = "nullable")]
        #[schema(value_type = Option<String>, format = DateTime)]
        expires_at: Option<Option<String>>,
    }
}

/// The policy fields of a body, borrowed, to be checked the same way for create and edit.
struct PolicyFields<'a> {
    description: Option<&'a Option<String>>,
    enabled: Option<bool>,
    allowed_ips: Option<&'a Option<Vec<String>>>,
    meta: Option<&'a Option<serde_json::Value>>,
    external_id: Option<&'a Option<String>>,
    credits: Option<&'a Option<serde_json::Value>>,
}

/// The shapes `credits` takes, for the OpenAPI document (the handler reads it field by field,
/// to name each bad one).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreditsInput {
    /// 0 to 10^12: the budget from now on.
    remaining: Option<i64>,
    refill: Option<RefillInput>,
    /// Editing only, instead of `remaining`: 1 to 10^12 more, racing no request.
    add: Option<i64>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RefillInput {
    /// What `remaining` is set to at each refill, 1 to 10^12.
    amount: i64,
    /// `daily` (00:00 UTC) or `monthly`.
    interval: String,
    /// Monthly only: the day of the month (1-31; a shorter month refills on its last day).
    day: Option<i64>,
}

const MAX_CREDITS: i64 = 1_000_000_000_000;

/// `credits` as sent: `None` for `null` (unlimited).
fn parse_credits(
    issues: &mut Issues,
    value: Option<&serde_json::Value>,
    editing: bool,
) -> Option<CreditsChange> {
    let Some(value) = value else {
        return Some(CreditsChange::Remove);
    };
    let Some(fields) = value.as_object() else {
        issues.add(
            "credits",
            "must be null or an object with `remaining` (and `refill`)",
        );
        return None;
    };
    let known: &[&str] = if editing && fields.contains_key("add") {
        &["add"]
    } else {
        &["remaining", "refill"]
    };
    let unknown: Vec<&String> = fields
        .keys()
        .filter(|name| !known.contains(&name.as_str()))
        .collect();
    for name in &unknown {
        issues.add(
            &format!("credits.{name}"),
            format!("is not a field here; send {}", known.join(" or ")),
        );
    }
    if !unknown.is_empty() {
        return None;
    }
    if known == ["add"] {
        return credit_count(issues, "credits.add", fields.get("add"), 1).map(CreditsChange::Add);
    }
    let remaining = credit_count(issues, "credits.remaining", fields.get("remaining"), 0);
    let refill = match fields.get("refill") {
        None | Some(serde_json::Value::Null) => Some(None),
        Some(refill) => parse_refill(issues, refill).map(Some),
    };
    Some(CreditsChange::Set {
        remaining: remaining?,
        refill: refill?,
    })
}

/// A whole number of credits from `min` to `MAX_CREDITS`, or the issue with it.
fn credit_count(
    issues: &mut Issues,
    field: &str,
    value: Option<&serde_json::Value>,
    min: i64,
) -> Option<i64> {
    let n = value
        .and_then(serde_json::Value::as_i64)
        .filter(|n| (min..=MAX_CREDITS).contains(n));
    if n.is_none() {
        issues.add(
            field,
            format!("must be a whole number from {min} to {MAX_CREDITS}"),
        );
    }
    n
}

fn parse_refill(issues: &mut Issues, value: &serde_json::Value) -> Option<Refill> {
    let Some(fields) = value.as_object() else {
        issues.add(
            "credits.refill",
            "must be null or an object with amount and interval",
        );
        return None;
    };
    if let Some(name) = fields
        .keys()
        .find(|n| !["amount", "interval", "day"].contains(&n.as_str()))
    {
        issues.add(
            &format!("credits.refill.{name}"),
            "is not a field here; send amount, interval and, for monthly, day",
        );
        return None;
    }
    let amount = fields
        .get("amount")
        .and_then(serde_json::Value::as_i64)
        .filter(|n| (1..=MAX_CREDITS).contains(n));
    if amount.is_none() {
        issues.add(
            "credits.refill.amount",
            format!("must be a whole number from 1 to {MAX_CREDITS}"),
        );
    }
    let day = fields.get("day").filter(|d| !d.is_null());
    let interval = match (
        fields.get("interval").and_then(serde_json::Value::as_str),
        day,
    ) {
        (Some("daily"), None) => Some(Interval::Daily),
        (Some("daily"), Some(_)) => {
            issues.add("credits.refill.day", "is for monthly refills only");
            None
        }
        (Some("monthly"), day) => {
            let monthly = day
                .and_then(serde_json::Value::as_u64)
                .and_then(|d| u8::try_from(d).ok())
                .and_then(Interval::monthly);
            if monthly.is_none() {
                issues.add("credits.refill.day", "must be a day of the month from 1 to 31 (a shorter month refills on its last day)");
            }
            monthly
        }
        _ => {
            issues.add("credits.refill.interval", "must be daily or monthly");
            None
        }
    };
    Refill::new(amount?, interval?)
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`, with `default`).
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The policy fields checked, in their stored forms; `None` where a field was left out.
#[derive(Default)]
struct Policy {
    description: Option<Option<String>>,
    enabled: Option<bool>,
    allowed_ips: Option<AllowedIps>,
    meta: Option<Option<String>>,
    external_id: Option<Option<String>>,
    credits: Option<CreditsChange>,
}

impl PolicyFields<'_> {
    fn check(&self, issues: &mut Issues, editing: bool) -> Policy {
        let description = self.description.as_ref().map(|text| {
            issues.optional_text("description", text.as_deref(), MAX_DESCRIPTION_CHARS)
        });
        let allowed_ips = self.allowed_ips.as_ref().map(|list| {
            AllowedIps::parse(list.as_deref().unwrap_or_default()).unwrap_or_else(|message| {
                issues.add("allowedIps", message);
                AllowedIps::default()
            })
        });
        let meta = self.meta.as_ref().map(|meta| {
            meta.as_ref().and_then(|value| {
                meta_column(value)
                    .map_err(|message| issues.add("meta", message))
                    .ok()
            })
        });
        let external_id = self.external_id.as_ref().map(|id| {
            id.as_deref().and_then(|id| {
                external_id(id)
                    .map_err(|message| issues.add("externalId", message))
                    .ok()
            })
        });
        let credits = self
            .credits
            .and_then(|credits| parse_credits(issues, credits.as_ref(), editing));
        Policy {
            description,
            enabled: self.enabled,
            allowed_ips,
            meta,
            external_id,
            credits,
        }
    }
}

impl Policy {
    fn columns(self) -> KeyPolicyColumns {
        KeyPolicyColumns {
            description: self.description.flatten(),
            disabled_at: (self.enabled == Some(false)).then(Timestamp::now),
            allowed_ips: self.allowed_ips.as_ref().and_then(AllowedIps::to_column),
            meta: self.meta.flatten(),
            external_id: self.external_id.flatten(),
            credits: match self.credits {
                Some(CreditsChange::Set { remaining, refill }) => Some((remaining, refill)),
                _ => None,
            },
        }
    }
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollKey {
    /// Seconds the old key keeps working, 0 (now) to 7 days.
    #[schema(minimum = 0, maximum = 604_800)]
    expires_old_in: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    record: ApiKeyRecord,
    /// The only time the secret is shown.
    key: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyList {
    items: Vec<ApiKeyRecord>,
}

fn key_not_found() -> ApiError {
    ApiError::not_found("No API key with this id in this workspace.")
}

fn shown_once(record: ApiKeyRecord, key: &ApiKey) -> impl IntoResponse {
    let created = CreatedKey {
        record,
        key: key.expose_secret().to_owned(),
    };
    (
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        ApiJson(created),
    )
}

/// A future time within the longest expiry, or the issue with it.
fn expiry_time(issues: &mut Issues, text: &str, now: Timestamp) -> Option<Timestamp> {
    match Timestamp::parse_rfc3339(text) {
        Some(at) if at > now && at.0 <= now.0 + MAX_EXPIRY_DAYS * DAY_MS => Some(at),
        Some(_) => {
            issues.add(
                "expiresAt",
                format!("must be in the future and within {MAX_EXPIRY_DAYS} days"),
            );
            None
        }
        None => {
            issues.add(
                "expiresAt",
                "must be an RFC 3339 time such as 2030-01-15T10:30:00.000Z",
            );
            None
        }
    }
}

fn parse_expiry(issues: &mut Issues, body: &CreateKey, now: Timestamp) -> Option<Timestamp> {
    match (&body.expires_at, body.expires_in_days) {
        (None, None) => None,
        (Some(_), Some(_)) => {
            issues.add("expiresAt", "send expiresAt or expiresInDays, not both");
            None
        }
        (None, Some(days)) if (1..=MAX_EXPIRY_DAYS).contains(&days) => {
            Some(Timestamp(now.0 + days * DAY_MS))
        }
        (None, Some(_)) => {
            issues.add(
                "expiresInDays",
                format!("must be a whole number of days from 1 to {MAX_EXPIRY_DAYS}"),
            );
            None
        }
        (Some(text), None) => expiry_time(issues, text, now),
    }
}

/// The response is the only time the key's secret is shown (`Cache-Control: no-store`).
#[utoipa::path(
    post,
    path = "/workspaces/{workspaceId}/api-keys",
    tag = "dashboard",
    operation_id = "createApiKey",
    summary = "Create an API key",
    security(("bearer" = [])),
    params(WorkspacePath),
    request_body = CreateKey,
    responses(
        (status = 201, description = "The key record and, this once, `key`", body = CreatedKey),
        (status = 400, description = "Invalid JSON, fields or path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch`, or `insufficient_permission` for a `rateLimitPerMinute` beyond the server's default from a member or viewer", body = ErrorBody),
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
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<impl IntoResponse, ApiError> {
    let role = caller_role(&state, &workspace_id, &session).await?;
    let mut issues = Issues::default();
    let name = issues.required_text("name", body.name.as_deref(), MAX_KEY_NAME_CHARS);
    let mut limit_in_range = true;
    if let Some(limit) = body.rate_limit_per_minute {
        if !(0..=MAX_RATE_LIMIT_PER_MINUTE).contains(&limit) {
            limit_in_range = false;
            issues.add(
                "rateLimitPerMinute",
                format!("must be a whole number from 0 (no limit) to {MAX_RATE_LIMIT_PER_MINUTE}"),
            );
        }
    }
    let scopes = match body
        .scopes
        .as_deref()
        .map(|names| ScopeSet::parse_list(names, &state.config.extra_scopes))
    {
        None => ScopeSet::all(),
        Some(Ok(scopes)) => scopes,
        Some(Err(message)) => {
            issues.add("scopes", message);
            ScopeSet::all()
        }
    };
    let expires_at = parse_expiry(&mut issues, &body, Timestamp::now());
    let policy = body.policy_fields().check(&mut issues, false).columns();
    issues.finish(())?;
    let default_limit = state.config.rate_limit_per_minute;
    if let Some(limit) = body.rate_limit_per_minute.filter(|_| limit_in_range) {
        can_set_rate_limit(role, limit, default_limit).map_err(|_| {
            let range = if default_limit == 0 {
                "a limit of at least 1".to_owned()
            } else {
                format!("a limit from 1 to {default_limit} (the server's default)")
            };
            ApiError::forbidden(
                Reason::InsufficientPermission,
                format!("Only owners and admins can raise or remove a key's rate limit; set {range}, or leave rateLimitPerMinute out."),
            )
        })?;
    }
    let key = ApiKey::generate(&state.config.key_env);
    let record = state
        .verifier
        .create_api_key(
            &NewApiKey {
                workspace_id: &workspace_id,
                created_by: &session.user.id,
                name: &name,
                digest: key.digest().as_bytes(),
                hint: &key.hint(),
                rate_limit_per_minute: body.rate_limit_per_minute,
                scopes,
                expires_at,
                policy: &policy,
            },
            &client,
        )
        .await?;
    Ok(shown_once(record, &key))
}

/// Owners and admins see every key of the workspace, the others their own; newest first.
#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/api-keys",
    tag = "dashboard",
    operation_id = "listApiKeys",
    summary = "List API keys",
    security(("bearer" = [])),
    params(
        WorkspacePath,
        ("status" = inline(Option<StatusFilter>), Query, description = "Default `active`"),
        ("unusedForDays" = Option<i64>, Query, minimum = 0, maximum = 3650, description = "Only keys not used for this many days"),
        ("externalId" = Option<String>, Query, description = "Only keys with this externalId"),
    ),
    responses(
        (status = 200, description = "The keys", body = KeyList),
        (status = 400, description = "Invalid query or path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    session: SessionUser,
    Path(workspace_id): Path<WorkspaceId>,
    query: RawQuery,
) -> Result<ApiJson<KeyList>, ApiError> {
    let role = caller_role(&state, &workspace_id, &session).await?;
    let mut issues = Issues::default();
    let status = match query.get("status") {
        None | Some("active") => StatusFilter::Active,
        Some("revoked") => StatusFilter::Revoked,
        Some("expired") => StatusFilter::Expired,
        Some("all") => StatusFilter::All,
        Some(_) => {
            issues.add("status", "must be one of active, revoked, expired, all");
            StatusFilter::All
        }
    };
    let unused_since = match query.get("unusedForDays").map(|v| v.trim().parse::<i64>()) {
        None => None,
        Some(Ok(days)) if (0..=MAX_EXPIRY_DAYS).contains(&days) => {
            Some(Timestamp(Timestamp::now().0 - days * DAY_MS))
        }
        Some(_) => {
            issues.add(
                "unusedForDays",
                format!("must be a whole number of days from 0 to {MAX_EXPIRY_DAYS}"),
            );
            None
        }
    };
    let external_id = query.get("externalId").and_then(|id| {
        external_id(id)
            .map_err(|message| issues.add("externalId", message))
            .ok()
    });
    issues.finish(())?;
    let filter = KeyFilter {
        creator: (!sees_all_keys(role)).then_some(&session.user.id),
        status,
        unused_since,
        external_id: external_id.as_deref(),
    };
    let items = state.store.api_keys().list(&workspace_id, &filter).await?;
    Ok(ApiJson(KeyList { items }))
}

/// A key the caller may see: any key of the workspace for managers, their own for the others.
/// Someone else's key is reported as missing, like a key of another workspace.
pub(super) async fn visible_key(
    state: &AppState,
    session: &SessionUser,
    workspace_id: &WorkspaceId,
    key_id: &KeyId,
) -> Result<(Role, ApiKeyRecord), ApiError> {
    let role = caller_role(state, workspace_id, session).await?;
    let record = state.store.api_keys().get(workspace_id, key_id).await?;
    match record {
        Some(record) if sees_all_keys(role) || record.created_by.id == session.user.id => {
            Ok((role, record))
        }
        _ => Err(key_not_found()),
    }
}

/// Managers may revoke any key, the others their own.
async fn revocable_key(
    state: &AppState,
    session: &SessionUser,
    workspace_id: &WorkspaceId,
    key_id: &KeyId,
) -> Result<ApiKeyRecord, ApiError> {
    let (role, record) = visible_key(state, session, workspace_id, key_id).await?;
    can_revoke_key(role, &session.user.id, &record.created_by.id).map_err(|_| {
        ApiError::forbidden(
            Reason::InsufficientPermission,
            "Only owners and admins can revoke other people's keys.",
        )
    })?;
    Ok(record)
}

#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/api-keys/{keyId}",
    tag = "dashboard",
    operation_id = "getApiKey",
    summary = "One API key",
    security(("bearer" = [])),
    params(WorkspacePath, KeyPath),
    responses(
        (status = 200, description = "The key", body = ApiKeyRecord),
        (status = 400, description = "Invalid path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch`", body = ErrorBody),
        (status = 404, description = "No such key visible to the caller", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn get(
    State(state): State<AppState>,
    session: SessionUser,
    Path((workspace_id, key_id)): Path<(WorkspaceId, KeyId)>,
) -> Result<ApiJson<ApiKeyRecord>, ApiError> {
    let (_, record) = visible_key(&state, &session, &workspace_id, &key_id).await?;
    Ok(ApiJson(record))
}

/// Changes what is sent, all of it or nothing: the key's creator edits their key, owners and
/// admins every key of the workspace; who may set which value is in docs/api.md §14. A
/// change applies on every instance within a second, like a revocation.
#[utoipa::path(
    patch,
    path = "/workspaces/{workspaceId}/api-keys/{keyId}",
    tag = "dashboard",
    operation_id = "updateApiKey",
    summary = "Edit an API key",
    security(("bearer" = [])),
    params(WorkspacePath, KeyPath),
    request_body = UpdateKey,
    responses(
        (status = 200, description = "The key as it is now", body = ApiKeyRecord),
        (status = 400, description = "Invalid JSON, fields or path parameter; nothing changed", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch`, or `insufficient_permission` naming the field the caller may not set that way", body = ErrorBody),
        (status = 404, description = "No such key the caller may edit", body = ErrorBody),
        (status = 409, description = "`key_inactive`: the key is revoked", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn update(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    Path((workspace_id, key_id)): Path<(WorkspaceId, KeyId)>,
    ApiJson(body): ApiJson<UpdateKey>,
) -> Result<ApiJson<ApiKeyRecord>, ApiError> {
    let mut issues = Issues::default();
    // A key always has a name: `null` is refused like a blank one.
    let name = body
        .name
        .as_ref()
        .map(|name| issues.required_text("name", name.as_deref(), MAX_KEY_NAME_CHARS));
    if let Some(Some(limit)) = body.rate_limit_per_minute {
        if !(0..=MAX_RATE_LIMIT_PER_MINUTE).contains(&limit) {
            issues.add(
                "rateLimitPerMinute",
                format!("must be a whole number from 0 (no limit) to {MAX_RATE_LIMIT_PER_MINUTE}, or null for the server's default"),
            );
        }
    }
    let scopes = body.scopes.as_deref().and_then(|names| {
        ScopeSet::parse_list(names, &state.config.extra_scopes)
            .map_err(|message| issues.add("scopes", message))
            .ok()
    });
    let now = Timestamp::now();
    let expires_at = body.expires_at.as_ref().map(|at| {
        at.as_deref()
            .and_then(|text| expiry_time(&mut issues, text, now))
    });
    let policy = body.policy_fields().check(&mut issues, true);
    issues.finish(())?;
    let changes = KeyChanges {
        name,
        description: policy.description,
        enabled: policy.enabled,
        expires_at,
        allowed_ips: policy.allowed_ips,
        meta: policy.meta,
        external_id: policy.external_id,
        rate_limit_per_minute: body.rate_limit_per_minute,
        scopes,
        credits: policy.credits,
    };
    let (role, _) = visible_key(&state, &session, &workspace_id, &key_id).await?;
    let outcome = state
        .verifier
        .update_api_key(
            &workspace_id,
            &key_id,
            &changes,
            &Editor {
                user_id: &session.user.id,
                role,
                server_default_limit: state.config.rate_limit_per_minute,
            },
            &client,
        )
        .await?;
    match outcome {
        UpdateOutcome::Updated { record, .. } => Ok(ApiJson(*record)),
        UpdateOutcome::NotFound => Err(key_not_found()),
        UpdateOutcome::Inactive => Err(ApiError::conflict(
            Reason::KeyInactive,
            "This key is revoked; nothing about it can change. Create a new one instead.",
        )),
        UpdateOutcome::Refused(refusal) if refusal.conflict => Err(ApiError::conflict(
            Reason::KeyInactive,
            format!("{}: {}", refusal.field.as_str(), refusal.message),
        )),
        UpdateOutcome::Refused(refusal) => Err(ApiError::forbidden(
            Reason::InsufficientPermission,
            format!("{}: {}", refusal.field.as_str(), refusal.message),
        )),
    }
}

/// For good, and idempotent. Owners and admins any key, the others their own.
#[utoipa::path(
    post,
    path = "/workspaces/{workspaceId}/api-keys/{keyId}/revoke",
    tag = "dashboard",
    operation_id = "revokeApiKey",
    summary = "Revoke an API key",
    security(("bearer" = [])),
    params(WorkspacePath, KeyPath),
    responses(
        (status = 200, description = "The revoked key", body = ApiKeyRecord),
        (status = 400, description = "Invalid path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        (status = 404, description = "No such key visible to the caller", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    Path((workspace_id, key_id)): Path<(WorkspaceId, KeyId)>,
) -> Result<ApiJson<ApiKeyRecord>, ApiError> {
    revocable_key(&state, &session, &workspace_id, &key_id).await?;
    let revoked = state
        .verifier
        .revoke_api_key(
            &workspace_id,
            &key_id,
            Actor::User(&session.user.id),
            "revoked",
            &client,
        )
        .await?;
    let (record, _newly_revoked) = revoked.ok_or_else(key_not_found)?;
    Ok(ApiJson(record))
}

/// A new secret for the same key (name, scopes, limit, and the same user behind it); the old
/// secret keeps working for `expiresOldIn` seconds so integrations can switch over. Only the
/// key's creator may roll it: the new secret acts as them.
#[utoipa::path(
    post,
    path = "/workspaces/{workspaceId}/api-keys/{keyId}/roll",
    tag = "dashboard",
    operation_id = "rollApiKey",
    summary = "Roll an API key: a new secret, the old one valid for a grace period",
    security(("bearer" = [])),
    params(WorkspacePath, KeyPath),
    request_body(content = Option<RollKey>, description = "Optional; no body (or `null`) means the old secret stops now", content_type = "application/json"),
    responses(
        (status = 201, description = "The replacement key record and, this once, `key`", body = CreatedKey),
        (status = 400, description = "Invalid JSON, fields or path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        (status = 404, description = "No such key visible to the caller", body = ErrorBody),
        (status = 409, description = "`already_rolled`, or `key_inactive` (revoked or expired)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn roll(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    Path((workspace_id, key_id)): Path<(WorkspaceId, KeyId)>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    // The body is optional: an empty one (or `null`) means "expire the old key now".
    let body: RollKey = if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null"
    {
        RollKey::default()
    } else {
        parse_json(&body)?
    };
    let grace = body.expires_old_in.unwrap_or(0);
    if !(0..=MAX_ROLL_GRACE_SECS).contains(&grace) {
        return Err(ApiError::validation(
            "expiresOldIn",
            format!("must be a whole number of seconds from 0 to {MAX_ROLL_GRACE_SECS} (7 days)"),
        ));
    }
    let (role, old) = visible_key(&state, &session, &workspace_id, &key_id).await?;
    can_roll_key(&session.user.id, &old.created_by.id).map_err(|_| {
        ApiError::forbidden(
            Reason::InsufficientPermission,
            "only the key's creator can roll it; revoke it instead",
        )
    })?;
    let now = Timestamp::now();
    let key = ApiKey::generate(&state.config.key_env);
    let digest = key.digest();
    let replacement = NewApiKey {
        workspace_id: &workspace_id,
        // The roller is the creator (checked above): the new secret acts as them.
        created_by: &session.user.id,
        name: &old.name,
        digest: digest.as_bytes(),
        hint: &key.hint(),
        rate_limit_per_minute: old.rate_limit_per_minute,
        scopes: old.scopes,
        // A key that expires gets a replacement with the same lifetime, counted from now, so a
        // roll renews it rather than handing over a secret that dies with the old one.
        expires_at: old
            .expires_at
            .map(|at| Timestamp(now.0 + (at.0 - old.created_at.0).max(0))),
        // The store copies the policy from the key as it is when the roll takes effect.
        policy: &KeyPolicyColumns::default(),
    };
    let old_expires_at = Timestamp(now.0 + grace * 1000);
    let outcome = state
        .verifier
        .roll_api_key(
            &workspace_id,
            &key_id,
            &replacement,
            old_expires_at,
            &Editor {
                user_id: &session.user.id,
                role,
                server_default_limit: state.config.rate_limit_per_minute,
            },
            &client,
        )
        .await?;
    match outcome {
        RollOutcome::Rolled { new, .. } => Ok(shown_once(*new, &key)),
        RollOutcome::NotFound => Err(key_not_found()),
        RollOutcome::AlreadyRolled => Err(ApiError::conflict(
            Reason::AlreadyRolled,
            "This key was already rolled; roll its replacement instead.",
        )),
        RollOutcome::NotRollable(status) => Err(ApiError::conflict(
            Reason::KeyInactive,
            match status {
                KeyStatus::Expired => "This key has expired; create a new one instead.",
                _ => "This key is revoked; create a new one instead.",
            },
        )),
    }
}
