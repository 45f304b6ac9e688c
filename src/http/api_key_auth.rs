//! The `x-api-key` middleware for /api/v1. It turns the header into a `Principal` (the key's
//! workspace, its creator and the creator's *current* role) or a SPEC §4 401, before any
//! handler runs. Malformed keys are refused without touching the database.

use super::{AppState, X_API_KEY};
use crate::api_key::{self, KeyRejection};
use crate::error::{ApiError, Realm};
use crate::permissions::Role;
use crate::store::User;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Who a request with a valid key acts as.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    pub key_name: String,
    pub workspace_id: String,
    pub workspace_name: String,
    pub user: User,
    pub role: Role,
}

fn unauthorized(reason: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Unauthorized {
        realm: Realm::ApiKey,
        reason,
        message: message.into(),
    }
}

pub async fn require_api_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    match authenticate(&state, request.headers()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let mut values = headers.get_all(&X_API_KEY).iter();
    let Some(raw) = values.next() else {
        if headers.contains_key(header::AUTHORIZATION) {
            return Err(unauthorized(
                "bearer_not_supported",
                "Send the key in the x-api-key header, not Authorization.",
            ));
        }
        return Err(unauthorized(
            "missing_api_key",
            "Send your API key in the x-api-key header.",
        ));
    };
    if values.next().is_some() {
        return Err(unauthorized(
            "malformed_api_key",
            "Send exactly one x-api-key header; this request has several.",
        ));
    }
    let expected_env = &state.config.key_env;
    let key = api_key::parse(raw.as_bytes(), expected_env).map_err(|rejection| {
        let reason = match rejection {
            KeyRejection::Malformed(_) => "malformed_api_key",
            KeyRejection::WrongEnvironment { .. } => "wrong_environment",
        };
        unauthorized(reason, rejection.message(expected_env))
    })?;
    let Some(row) = state.store.key_principal(key.digest().as_bytes()).await? else {
        return Err(unauthorized(
            "invalid_api_key",
            "This API key does not exist; check that you copied the whole key, or create a new one in Settings > Developer.",
        ));
    };
    let role = row.current_role();
    let revoked = row.revoked_at.is_some() || row.user_disabled_at.is_some() || role.is_none();
    match role {
        Some(role) if !revoked => Ok(Principal {
            key_id: row.key_id,
            key_name: row.key_name,
            workspace_id: row.workspace_id,
            workspace_name: row.workspace_name,
            user: User {
                id: row.user_id,
                email: row.user_email,
                name: row.user_name,
            },
            role,
        }),
        _ => Err(unauthorized(
            "revoked_api_key",
            "This API key has been revoked; create a new one in Settings > Developer.",
        )),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            ApiError::internal("Principal extractor used outside the API-key middleware")
        })
    }
}
