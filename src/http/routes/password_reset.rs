//! "Forgot password?" (docs/api.md §10). The request answers 202 `{}` whatever the email: the
//! handler only counts the attempt and queues a job, and the worker finds out whether the
//! email has an account (http::outbox), so neither the answer nor its time says. The link's
//! token is emailed, kept only as SHA-256, works for an hour and once.

use super::auth::client_address;
use crate::domain::validate::Issues;
use crate::domain::{password, session_token};
use crate::error::{ApiError, Reason};
use crate::http::outbox::{MailJob, Outbox};
use crate::http::pipeline::extract::ApiJson;
use crate::http::pipeline::openapi::{Email, ErrorBody, Password, ServerErrors};
use crate::http::state::AppState;
use crate::store::{normalize_email, ClientInfo};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Without email there is no reset to ask for: the page says to ask an operator instead.
fn outbox(state: &AppState) -> Result<&Outbox, ApiError> {
    state.outbox.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "This server sends no email: ask an operator to run \
             `heffl-api users set-password --email <your email>`.",
        )
    })
}

fn reset_token_not_found() -> ApiError {
    ApiError::NotFoundBecause {
        reason: Reason::ResetTokenNotFound,
        message: "This reset link is not valid: it may have expired or been used already. Ask \
                  for a new one."
            .into(),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    #[schema(value_type = Email, required = true)]
    email: Option<String>,
}

/// Always `{}`: nothing in it may differ between an email with an account and one without.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Accepted {}

#[utoipa::path(
    post,
    path = "/auth/password-reset",
    tag = "dashboard",
    operation_id = "requestPasswordReset",
    summary = "Email a password-reset link, if the email has an account (the answer does not say)",
    request_body = ResetRequest,
    responses(
        (status = 202, description = "`{}`, whether or not the email has an account", body = Accepted),
        (status = 400, description = "Invalid JSON or fields", body = ErrorBody),
        (status = 404, description = "The server sends no email: an operator resets passwords", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "`login_throttled`: too many requests for this email from this address, or from this address", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn request(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<ResetRequest>,
) -> Result<Response, ApiError> {
    let outbox = outbox(&state)?;
    let mut issues = Issues::default();
    let email = issues.email("email", body.email.as_deref(), true);
    let email = issues
        .finish(email)?
        .ok_or_else(|| ApiError::internal("validated email missing"))?;
    state
        .reset_throttle
        .check(&normalize_email(&email), client_address(&client))
        .await?;
    outbox.enqueue(MailJob::PasswordReset { email });
    Ok((
        StatusCode::ACCEPTED,
        [(header::CACHE_CONTROL, "no-store")],
        ApiJson(Accepted {}),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The token from the emailed link (after `#reset=`).
    #[schema(value_type = String, required = true)]
    token: Option<String>,
    #[schema(value_type = Password, required = true)]
    password: Option<String>,
}

#[utoipa::path(
    post,
    path = "/auth/password-reset/confirm",
    tag = "dashboard",
    operation_id = "confirmPasswordReset",
    summary = "Set a new password with an emailed reset token; every session of the account ends",
    request_body = ResetConfirm,
    responses(
        (status = 204, description = "The password is set and every session of the account ended; sign in with it"),
        (status = 400, description = "Invalid JSON or fields", body = ErrorBody),
        (status = 404, description = "`reset_token_not_found`: unknown, expired or used; or the server sends no email", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn confirm(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<ResetConfirm>,
) -> Result<StatusCode, ApiError> {
    outbox(&state)?;
    let mut issues = Issues::default();
    if body.token.is_none() {
        issues.add("token", "is required");
    }
    let password = issues.password("password", body.password.as_deref());
    let password = issues
        .finish(password)?
        .ok_or_else(|| ApiError::internal("validated password missing"))?;
    let digest = body
        .token
        .as_deref()
        .and_then(|token| session_token::parse(token.trim()))
        .ok_or_else(reset_token_not_found)?;
    // Hashed before the token is looked up: a guess costs the guesser argon2's time too.
    let hash = password::hash(password).await?;
    state
        .store
        .password_resets()
        .redeem(&digest, &hash, &client)
        .await?
        .ok_or_else(reset_token_not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

/// What the sign-in page offers, before anyone signs in.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignInOptions {
    /// "Forgot password?" sends an email. Without it, an operator resets passwords
    /// (`heffl-api users set-password`).
    password_reset: bool,
    /// Invitations are emailed (the link is never shown to the inviter).
    invitation_emails: bool,
}

#[utoipa::path(
    get,
    path = "/auth/options",
    tag = "dashboard",
    operation_id = "signInOptions",
    summary = "Whether this server emails password resets and invitations",
    responses(
        (status = 200, description = "What the sign-in page may offer", body = SignInOptions),
    )
)]
pub async fn options(State(state): State<AppState>) -> ApiJson<SignInOptions> {
    let email = state.outbox.is_some();
    ApiJson(SignInOptions {
        password_reset: email,
        invitation_emails: email,
    })
}
