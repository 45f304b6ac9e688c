use crate::domain::ids::{UserId, WorkspaceId};
use crate::domain::permissions::Role;
use crate::domain::time::Timestamp;
use crate::domain::validate::Issues;
use crate::domain::{password, session_token};
use crate::error::{ApiError, Realm, Reason};
use crate::http::auth::session::SessionUser;
use crate::http::pipeline::extract::ApiJson;
use crate::http::pipeline::openapi::{Email, ErrorBody, Password, ServerErrors};
use crate::http::state::AppState;
use crate::store::{normalize_email, Actor, ClientInfo, MembershipRow, PasswordChange, UserRow};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    #[schema(value_type = Email, required = true)]
    email: Option<String>,
    #[schema(value_type = String, required = true, min_length = 1)]
    password: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    token: String,
    expires_at: Timestamp,
    user: User,
}

pub(super) fn invalid_credentials() -> ApiError {
    ApiError::Unauthorized {
        realm: Realm::Bearer,
        reason: Reason::InvalidCredentials,
        message: "The email or password is incorrect.".into(),
    }
}

/// When a session opened now ends (`HEFFL_SESSION_TTL`).
pub(super) fn new_session_expiry(state: &AppState) -> Timestamp {
    let ttl_ms = i64::try_from(state.config.session_ttl.as_millis()).unwrap_or(i64::MAX);
    Timestamp(Timestamp::now().0.saturating_add(ttl_ms))
}

pub(super) fn client_address(client: &ClientInfo) -> Option<std::net::IpAddr> {
    client.ip.as_deref().and_then(|ip| ip.parse().ok())
}

/// One row on the account, never one per workspace (see `AuditRepo::record_failed_login`).
/// Written off the response path so a wrong password answers as fast as an unknown email.
pub(super) fn record_failed_login(state: &AppState, user_id: UserId, client: ClientInfo) {
    let store = state.store.clone();
    tokio::spawn(async move {
        if let Err(err) = store.audit().record_failed_login(&user_id, &client).await {
            tracing::warn!(error = %err, "could not record a failed sign-in");
        }
    });
}

/// Wrong password and unknown email give the same 401 (`invalid_credentials`).
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "dashboard",
    operation_id = "login",
    summary = "Sign in for a session token",
    request_body = LoginBody,
    responses(
        (status = 200, description = "A session token for `Authorization: Bearer`", body = LoginResponse),
        (status = 400, description = "Invalid JSON or fields", body = ErrorBody),
        (status = 401, description = "`invalid_credentials` or `account_disabled`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "`login_throttled`: too many attempts for this email from this address, or from this address", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<impl IntoResponse, ApiError> {
    let mut issues = Issues::default();
    let email = issues.required_text("email", body.email.as_deref(), 254);
    if body.password.as_deref().is_none_or(str::is_empty) {
        issues.add("password", "is required");
    }
    issues.finish(())?;
    state
        .login_throttle
        .check(&normalize_email(&email), client_address(&client))
        .await?;

    let record = state.store.users().login_record(&email).await?;
    let stored_hash = record.as_ref().map(|r| r.password_hash.clone());
    let password_ok = password::verify(body.password.unwrap_or_default(), stored_hash).await?;
    let record = match record {
        Some(record) if password_ok => record,
        Some(record) => {
            record_failed_login(&state, record.id, client);
            return Err(invalid_credentials());
        }
        None => return Err(invalid_credentials()),
    };
    if record.disabled_at.is_some() {
        return Err(ApiError::Unauthorized {
            realm: Realm::Bearer,
            reason: Reason::AccountDisabled,
            message: "This account is disabled; ask an operator to enable it.".into(),
        });
    }
    let session = session_token::generate();
    let expires_at = new_session_expiry(&state);
    state
        .store
        .sessions()
        .create(&session.digest, &record.id, expires_at)
        .await?;
    let response = LoginResponse {
        token: session.token,
        expires_at,
        user: record.user().into(),
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], ApiJson(response)))
}

#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "dashboard",
    operation_id = "logout",
    summary = "End this session",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The session is ended"),
        (status = 401, description = "No valid session", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    session: SessionUser,
) -> Result<StatusCode, ApiError> {
    state.store.sessions().delete(&session.token_digest).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct User {
    #[schema(value_type = String)]
    id: UserId,
    email: String,
    name: String,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> User {
        User {
            id: row.id,
            email: row.email,
            name: row.name,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceWithRole {
    #[schema(value_type = String)]
    id: WorkspaceId,
    name: String,
    role: Role,
}

impl From<MembershipRow> for WorkspaceWithRole {
    fn from(row: MembershipRow) -> WorkspaceWithRole {
        WorkspaceWithRole {
            id: row.id,
            name: row.name,
            role: row.role,
        }
    }
}

/// What the deployment applies when a key says nothing of its own, so the page can name it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerDefaults {
    /// `HEFFL_RATE_LIMIT_PER_MINUTE`: requests per minute of a key without its own limit
    /// (0: no limit).
    rate_limit_per_minute: u32,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionResponse {
    user: User,
    workspaces: Vec<WorkspaceWithRole>,
    defaults: ServerDefaults,
}

#[utoipa::path(
    get,
    path = "/session",
    tag = "dashboard",
    operation_id = "getSession",
    summary = "The signed-in user and their workspaces with roles",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user and their workspaces", body = SessionResponse),
        (status = 401, description = "No valid session", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn session(
    State(state): State<AppState>,
    session: SessionUser,
) -> Result<ApiJson<SessionResponse>, ApiError> {
    let workspaces = state.store.workspaces().of_user(&session.user.id).await?;
    Ok(ApiJson(SessionResponse {
        user: session.user.into(),
        workspaces: workspaces
            .into_iter()
            .map(WorkspaceWithRole::from)
            .collect(),
        defaults: ServerDefaults {
            rate_limit_per_minute: state.config.rate_limit_per_minute,
        },
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangePasswordBody {
    #[schema(value_type = String, required = true, min_length = 1)]
    current_password: Option<String>,
    #[schema(value_type = Password, required = true)]
    new_password: Option<String>,
}

/// Ends the user's other sessions; the calling one stays. A wrong `currentPassword` counts
/// toward the sign-in throttle, like a failed sign-in.
#[utoipa::path(
    post,
    path = "/session/password",
    tag = "dashboard",
    operation_id = "changePassword",
    summary = "Change your own password",
    security(("bearer" = [])),
    request_body = ChangePasswordBody,
    responses(
        (status = 204, description = "Changed; your other sessions are ended"),
        (status = 400, description = "Invalid JSON or fields", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`wrong_password`: currentPassword is not your password", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "`login_throttled`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn change_password(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    ApiJson(body): ApiJson<ChangePasswordBody>,
) -> Result<StatusCode, ApiError> {
    let mut issues = Issues::default();
    if body.current_password.as_deref().is_none_or(str::is_empty) {
        issues.add("currentPassword", "is required");
    }
    let new_password = issues.password("newPassword", body.new_password.as_deref());
    let new_password = issues
        .finish(new_password)?
        .ok_or_else(|| ApiError::internal("validated password missing"))?;
    state
        .login_throttle
        .check(
            &normalize_email(&session.user.email),
            client_address(&client),
        )
        .await?;
    let record = state
        .store
        .users()
        .login_record(&session.user.email)
        .await?
        .ok_or_else(|| ApiError::internal("a signed-in user has no login record"))?;
    let current_ok = password::verify(
        body.current_password.unwrap_or_default(),
        Some(record.password_hash),
    )
    .await?;
    if !current_ok {
        record_failed_login(&state, record.id, client);
        return Err(ApiError::forbidden(
            Reason::WrongPassword,
            "currentPassword is not your current password.",
        ));
    }
    let hash = password::hash(new_password).await?;
    state
        .store
        .users()
        .set_password(
            PasswordChange::Own {
                user_id: &session.user.id,
                keep_session: &session.token_digest,
            },
            &hash,
            Actor::User(&session.user.id),
            &client,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
