//! Settings > Developer: create, list, read and revoke a workspace's keys.

use super::workspaces::caller_role;
use crate::api_key::ApiKey;
use crate::error::ApiError;
use crate::http::extract::{Json, Path, RawQuery};
use crate::http::session_auth::SessionUser;
use crate::http::AppState;
use crate::permissions::{can_revoke_key, sees_all_keys};
use crate::store::{ApiKeyRecord, ClientInfo, NewApiKey, StatusFilter};
use crate::validate::Issues;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

pub const MAX_KEY_NAME_CHARS: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct CreateKey {
    name: Option<String>,
    /// Overrides HEFFL_RATE_LIMIT_PER_MINUTE for this key; 0 means no limit.
    rate_limit_per_minute: Option<i64>,
}

pub const MAX_RATE_LIMIT_PER_MINUTE: i64 = 1_000_000;

#[derive(Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    record: ApiKeyRecord,
    /// The only time the secret is shown.
    key: String,
}

#[derive(Serialize)]
pub struct KeyList {
    items: Vec<ApiKeyRecord>,
}

pub async fn create(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    Path(workspace_id): Path<String>,
    Json(body): Json<CreateKey>,
) -> Result<impl IntoResponse, ApiError> {
    caller_role(&state, &workspace_id, &session).await?;
    let mut issues = Issues::default();
    let name = issues.required_text("name", body.name.as_deref(), MAX_KEY_NAME_CHARS);
    if let Some(limit) = body.rate_limit_per_minute {
        if !(0..=MAX_RATE_LIMIT_PER_MINUTE).contains(&limit) {
            issues.add(
                "rateLimitPerMinute",
                format!("must be a whole number from 0 (no limit) to {MAX_RATE_LIMIT_PER_MINUTE}"),
            );
        }
    }
    issues.finish(())?;
    let key = ApiKey::generate(&state.config.key_env);
    let record = state
        .store
        .create_api_key(
            &NewApiKey {
                workspace_id: &workspace_id,
                created_by: &session.user.id,
                name: &name,
                digest: key.digest().as_bytes(),
                hint: &key.hint(),
                rate_limit_per_minute: body.rate_limit_per_minute,
            },
            &client,
        )
        .await?;
    let created = CreatedKey {
        record,
        key: key.expose_secret().to_owned(),
    };
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(created),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    session: SessionUser,
    Path(workspace_id): Path<String>,
    query: RawQuery,
) -> Result<Json<KeyList>, ApiError> {
    let role = caller_role(&state, &workspace_id, &session).await?;
    let status = match query.get("status") {
        None | Some("active") => StatusFilter::Active,
        Some("revoked") => StatusFilter::Revoked,
        Some("all") => StatusFilter::All,
        Some(_) => {
            return Err(ApiError::validation(
                "status",
                "must be one of active, revoked, all",
            ))
        }
    };
    let creator = (!sees_all_keys(role)).then_some(session.user.id.as_str());
    let items = state
        .store
        .list_api_keys(&workspace_id, creator, status)
        .await?;
    Ok(Json(KeyList { items }))
}

/// A key the caller may see: any key of the workspace for managers, their own for the others.
/// Someone else's key is reported as missing, like a key of another workspace.
async fn visible_key(
    state: &AppState,
    session: &SessionUser,
    workspace_id: &str,
    key_id: &str,
) -> Result<ApiKeyRecord, ApiError> {
    let role = caller_role(state, workspace_id, session).await?;
    let record = state.store.get_api_key(workspace_id, key_id).await?;
    match record {
        Some(record) if sees_all_keys(role) || record.created_by.id == session.user.id => {
            Ok(record)
        }
        _ => Err(ApiError::not_found(
            "No API key with this id in this workspace.",
        )),
    }
}

pub async fn get(
    State(state): State<AppState>,
    session: SessionUser,
    Path((workspace_id, key_id)): Path<(String, String)>,
) -> Result<Json<ApiKeyRecord>, ApiError> {
    visible_key(&state, &session, &workspace_id, &key_id)
        .await
        .map(Json)
}

pub async fn revoke(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    Path((workspace_id, key_id)): Path<(String, String)>,
) -> Result<Json<ApiKeyRecord>, ApiError> {
    let role = caller_role(&state, &workspace_id, &session).await?;
    let record = visible_key(&state, &session, &workspace_id, &key_id).await?;
    can_revoke_key(role, &session.user.id, &record.created_by.id).map_err(|_| {
        ApiError::forbidden(
            "insufficient_permission",
            "Only owners and admins can revoke other people's keys.",
        )
    })?;
    let revoked = state
        .store
        .revoke_api_key(
            &workspace_id,
            &key_id,
            Some(&session.user.id),
            "revoked",
            &client,
        )
        .await?;
    let (record, _newly_revoked) =
        revoked.ok_or_else(|| ApiError::not_found("No API key with this id in this workspace."))?;
    Ok(Json(record))
}
