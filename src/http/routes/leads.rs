//! Leads, the workspace-scoped resource behind API keys. The workspace always comes from the
//! key, and each query names it; the role rules come from `permissions`.

use crate::domain::ids::{LeadId, UserId};
use crate::domain::permissions::{
    can_create_lead, can_modify_lead, can_see_lead, lead_visibility, Denial, LeadVisibility,
};
use crate::domain::scopes::Scope;
use crate::domain::time::Timestamp;
use crate::domain::validate::{self, Issues};
use crate::error::{ApiError, Reason};
use crate::http::auth::api_key::Principal;
use crate::http::pipeline::extract::{ApiJson, Path, RawQuery};
use crate::http::pipeline::openapi::{
    ErrorBody, LeadPath, OptionalEmail, OptionalPhone, OptionalText200, ServerErrors, Text200,
};
use crate::http::state::AppState;
use crate::store::{LeadFields, LeadRow};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};

const MAX_TEXT: usize = 200;

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageMeta {
    count: usize,
    total: i64,
    page_no: i64,
    page_size: i64,
}

// `null` fields are always present (docs/api.md §5), hence `required` on each `Option`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lead {
    #[schema(value_type = String)]
    id: LeadId,
    name: String,
    #[schema(required = true)]
    email: Option<String>,
    #[schema(required = true)]
    mobile: Option<String>,
    #[schema(required = true)]
    title: Option<String>,
    #[schema(value_type = String)]
    owner_id: UserId,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl From<LeadRow> for Lead {
    fn from(row: LeadRow) -> Lead {
        Lead {
            id: row.id,
            name: row.name,
            email: row.email,
            mobile: row.mobile,
            title: row.title,
            owner_id: row.owner_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LeadPage {
    items: Vec<Lead>,
    meta: PageMeta,
}

/// Tells "absent" (keep the value) from `null` (clear it) in a PATCH body.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// As a PATCH body: the fields to change; `null` clears an optional one.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Text200)]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<OptionalEmail>)]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<OptionalPhone>)]
    mobile: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<OptionalText200>)]
    title: Option<Option<String>>,
}

/// The create body, for the document: `LeadBody` with `name` required. The handler parses
/// `LeadBody` and `validate(true)` enforces the difference.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct NewLead {
    #[schema(value_type = Text200, examples("Jane Smith"))]
    name: String,
    #[schema(value_type = Option<OptionalEmail>)]
    email: Option<String>,
    #[schema(value_type = Option<OptionalPhone>)]
    mobile: Option<String>,
    #[schema(value_type = Option<OptionalText200>, examples("Product Demo Request"))]
    title: Option<String>,
}

impl LeadBody {
    /// For create every field is considered; for update only those the body names.
    fn validate(self, creating: bool) -> Result<LeadFields, ApiError> {
        let mut issues = Issues::default();
        let name = match (&self.name, creating) {
            (Some(_), _) | (None, true) => {
                Some(issues.required_text("name", name_or_none(&self.name), MAX_TEXT))
            }
            (None, false) => None,
        };
        let email = self
            .email
            .map(|value| issues.email("email", value.as_deref(), false));
        let mobile = self
            .mobile
            .map(|value| issues.phone("mobile", value.as_deref()));
        let title = self
            .title
            .map(|value| issues.optional_text("title", value.as_deref(), MAX_TEXT));
        issues.finish(LeadFields {
            name,
            email,
            mobile,
            title,
        })
    }
}

fn name_or_none(name: &Option<Option<String>>) -> Option<&str> {
    name.as_ref().and_then(|n| n.as_deref())
}

fn denial(denial: Denial, action: &str) -> ApiError {
    match denial {
        Denial::OutsideDataBoundary => ApiError::forbidden(
            Reason::OutsideDataBoundary,
            format!("This key acts as a member who may only {action} their own leads."),
        ),
        Denial::InsufficientPermission => ApiError::forbidden(
            Reason::InsufficientPermission,
            format!("The role of this key's user does not allow it to {action} leads."),
        ),
    }
}

/// The lead, when it is in the key's workspace; otherwise 403 `workspace_mismatch` if it lives
/// in another workspace, or 404.
async fn find_lead(
    state: &AppState,
    principal: &Principal,
    lead_id: &LeadId,
) -> Result<LeadRow, ApiError> {
    if let Some(lead) = state
        .store
        .leads()
        .get(&principal.workspace_id, lead_id)
        .await?
    {
        return Ok(lead);
    }
    if state.store.leads().exists_elsewhere(lead_id).await? {
        return Err(ApiError::forbidden(
            Reason::WorkspaceMismatch,
            format!(
                "This lead belongs to another workspace; this key belongs to workspace {} \
                 (GET /api/v1/me shows it). Check that the key was created in the correct workspace.",
                principal.workspace_id
            ),
        ));
    }
    Err(ApiError::not_found("No lead with this id."))
}

/// Only the leads inside the key's data boundary (a member's key: that member's leads).
#[utoipa::path(
    get,
    path = "/api/v1/leads",
    tag = "api",
    operation_id = "listLeads",
    summary = "List leads, newest first",
    security(("api_key" = [])),
    params(
        ("pageNo" = Option<i64>, Query, minimum = 1, maximum = 1_000_000_000, description = "From 1, default 1"),
        ("pageSize" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Default 20"),
    ),
    responses(
        (status = 200, description = "One page of leads", body = LeadPage),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked, expired or disabled key; `details.reason` says which", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`, `ip_not_allowed` or `browser_use_blocked`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (the key's rate limit), `credits_exhausted`, or `auth_throttled` (too many failed attempts from this address)", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: RawQuery,
) -> Result<ApiJson<LeadPage>, ApiError> {
    principal.admit(&state, Scope::LeadsRead).await?;
    let page = validate::page(query.get("pageNo"), query.get("pageSize"))?;
    let owner = match lead_visibility(principal.role) {
        LeadVisibility::All => None,
        LeadVisibility::OwnOnly => Some(&principal.user_id),
    };
    let (items, total) = state
        .store
        .leads()
        .list(&principal.workspace_id, owner, page.size, page.offset())
        .await?;
    Ok(ApiJson(LeadPage {
        meta: PageMeta {
            count: items.len(),
            total,
            page_no: page.number,
            page_size: page.size,
        },
        items: items.into_iter().map(Lead::from).collect(),
    }))
}

/// The key's user becomes the lead's owner.
#[utoipa::path(
    post,
    path = "/api/v1/leads",
    tag = "api",
    operation_id = "createLead",
    summary = "Create a lead",
    security(("api_key" = [])),
    request_body = NewLead,
    responses(
        (status = 201, description = "The new lead", body = Lead),
        (status = 400, description = "Invalid JSON or fields", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked, expired or disabled key; `details.reason` says which", body = ErrorBody),
        (status = 403, description = "`insufficient_permission`, `insufficient_scope`, `ip_not_allowed` or `browser_use_blocked`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "`rate_limited` (the key's rate limit), `credits_exhausted`, or `auth_throttled` (too many failed attempts from this address)", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<LeadBody>,
) -> Result<(StatusCode, ApiJson<Lead>), ApiError> {
    principal.admit(&state, Scope::LeadsWrite).await?;
    can_create_lead(principal.role).map_err(|d| denial(d, "create"))?;
    let fields = body.validate(true)?;
    let lead = state
        .store
        .leads()
        .create(&principal.workspace_id, &principal.user_id, fields)
        .await?;
    Ok((StatusCode::CREATED, ApiJson(lead.into())))
}

#[utoipa::path(
    get,
    path = "/api/v1/leads/{leadId}",
    tag = "api",
    operation_id = "getLead",
    summary = "One lead",
    security(("api_key" = [])),
    params(LeadPath),
    responses(
        (status = 200, description = "The lead", body = Lead),
        (status = 400, description = "Invalid path parameter", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked, expired or disabled key; `details.reason` says which", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch`, `outside_data_boundary`, `insufficient_permission`, `insufficient_scope`, `ip_not_allowed` or `browser_use_blocked`", body = ErrorBody),
        (status = 404, description = "No lead with this id", body = ErrorBody),
        (status = 429, description = "`rate_limited` (the key's rate limit), `credits_exhausted`, or `auth_throttled` (too many failed attempts from this address)", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(lead_id): Path<LeadId>,
) -> Result<ApiJson<Lead>, ApiError> {
    principal.admit(&state, Scope::LeadsRead).await?;
    let lead = find_lead(&state, &principal, &lead_id).await?;
    can_see_lead(principal.role, &principal.user_id, &lead.owner_id)
        .map_err(|d| denial(d, "see"))?;
    Ok(ApiJson(lead.into()))
}

#[utoipa::path(
    patch,
    path = "/api/v1/leads/{leadId}",
    tag = "api",
    operation_id = "updateLead",
    summary = "Change a lead's fields",
    security(("api_key" = [])),
    params(LeadPath),
    request_body = LeadBody,
    responses(
        (status = 200, description = "The updated lead", body = Lead),
        (status = 400, description = "Invalid JSON, fields or path parameter", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked, expired or disabled key; `details.reason` says which", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch`, `outside_data_boundary`, `insufficient_permission`, `insufficient_scope`, `ip_not_allowed` or `browser_use_blocked`", body = ErrorBody),
        (status = 404, description = "No lead with this id", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "`rate_limited` (the key's rate limit), `credits_exhausted`, or `auth_throttled` (too many failed attempts from this address)", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(lead_id): Path<LeadId>,
    ApiJson(body): ApiJson<LeadBody>,
) -> Result<ApiJson<Lead>, ApiError> {
    principal.admit(&state, Scope::LeadsWrite).await?;
    let lead = find_lead(&state, &principal, &lead_id).await?;
    can_modify_lead(principal.role, &principal.user_id, &lead.owner_id)
        .map_err(|d| denial(d, "update"))?;
    let fields = body.validate(false)?;
    state
        .store
        .leads()
        .update(&principal.workspace_id, &lead_id, fields)
        .await?
        .map(|lead| ApiJson(lead.into()))
        .ok_or_else(|| ApiError::not_found("No lead with this id."))
}

#[utoipa::path(
    delete,
    path = "/api/v1/leads/{leadId}",
    tag = "api",
    operation_id = "deleteLead",
    summary = "Delete a lead",
    security(("api_key" = [])),
    params(LeadPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid path parameter", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked, expired or disabled key; `details.reason` says which", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch`, `outside_data_boundary`, `insufficient_permission`, `insufficient_scope`, `ip_not_allowed` or `browser_use_blocked`", body = ErrorBody),
        (status = 404, description = "No lead with this id", body = ErrorBody),
        (status = 429, description = "`rate_limited` (the key's rate limit), `credits_exhausted`, or `auth_throttled` (too many failed attempts from this address)", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(lead_id): Path<LeadId>,
) -> Result<StatusCode, ApiError> {
    principal.admit(&state, Scope::LeadsWrite).await?;
    let lead = find_lead(&state, &principal, &lead_id).await?;
    can_modify_lead(principal.role, &principal.user_id, &lead.owner_id)
        .map_err(|d| denial(d, "delete"))?;
    if state
        .store
        .leads()
        .delete(&principal.workspace_id, &lead_id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("No lead with this id."))
    }
}
