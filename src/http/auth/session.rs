//! Dashboard authentication: `Authorization: Bearer <session token>`. API keys never open
//! /app/v1, so a leaked key cannot mint, list or revoke keys.

use crate::domain::session_token;
use crate::error::{ApiError, Realm, Reason};
use crate::http::state::AppState;
use crate::http::state::X_API_KEY;
use crate::store::UserRow;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

pub struct SessionUser {
    pub user: UserRow,
    pub token_digest: [u8; 32],
}

fn unauthorized(reason: Reason, message: &'static str) -> ApiError {
    ApiError::Unauthorized {
        realm: Realm::Bearer,
        reason,
        message: message.into(),
    }
}

impl FromRequestParts<AppState> for SessionUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            if parts.headers.contains_key(&X_API_KEY) {
                return Err(unauthorized(
                    Reason::ApiKeyNotAccepted,
                    "API keys cannot be used on /app/v1; sign in and send Authorization: Bearer <session token>.",
                ));
            }
            return Err(unauthorized(
                Reason::MissingSession,
                "Sign in first, then send Authorization: Bearer <session token>.",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        // An API key pasted where a session token belongs: say so, rather than "malformed".
        if token.is_some_and(|t| t.starts_with("hk_")) {
            return Err(unauthorized(
                Reason::ApiKeyNotAccepted,
                "API keys cannot be used on /app/v1; sign in and send Authorization: Bearer <session token>.",
            ));
        }
        let Some(digest) = token.and_then(session_token::parse) else {
            return Err(unauthorized(
                Reason::MalformedSession,
                "The Authorization header must be 'Bearer ' followed by the token from /app/v1/auth/login.",
            ));
        };
        match state.store.sessions().user_of(&digest).await? {
            Some(user) => Ok(SessionUser {
                user,
                token_digest: digest,
            }),
            None => Err(unauthorized(
                Reason::InvalidSession,
                "This session has expired or was ended; sign in again.",
            )),
        }
    }
}
