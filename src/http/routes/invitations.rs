//! Invitations (docs/api.md §10). The inviter's answer never depends on whether the email has an
//! account, and every token that opens nothing (unknown, expired, cancelled, used, or not even
//! token-shaped) gets the one 404 `invitation_not_found`. With email on, the token travels only
//! by email: holding one proves its holder reads the invited mailbox.

use super::auth::{
    client_address, invalid_credentials, new_session_expiry, record_failed_login, User,
};
use super::workspaces::manager_role;
use crate::domain::email::{EmailFailure, EmailStatus};
use crate::domain::ids::{InvitationId, WorkspaceId};
use crate::domain::permissions::Role;
use crate::domain::time::Timestamp;
use crate::domain::validate::Issues;
use crate::domain::{password, session_token};
use crate::error::{ApiError, Reason};
use crate::http::auth::session::SessionUser;
use crate::http::outbox::MailJob;
use crate::http::pipeline::extract::{ApiJson, Path};
use crate::http::pipeline::openapi::{
    Email, ErrorBody, InvitationPath, Password, ServerErrors, Text100, WorkspacePath,
};
use crate::http::state::AppState;
use crate::mail;
use crate::store::{normalize_email, EmailResult, MemberActor, ResendOutcome};
use crate::store::{
    AcceptOutcome, CancelOutcome, ClientInfo, CreateAccountOutcome, InvitationPreviewRow,
    InvitationRow, InviteOutcome, NewSession, UserRow, WorkspaceRefRow,
};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

fn not_a_manager() -> ApiError {
    ApiError::forbidden(
        Reason::InsufficientPermission,
        "Only owners and admins invite people, and only owners invite owners.",
    )
}

fn invitation_not_found() -> ApiError {
    ApiError::NotFoundBecause {
        reason: Reason::InvitationNotFound,
        message: "This invitation link is not valid: it may have expired, been cancelled or \
                  been used already. Ask for a new one."
            .into(),
    }
}

/// The digest of a token from a request body; a token of the wrong shape is not found, like
/// any other token that opens nothing.
fn token_digest(token: Option<&str>) -> Result<[u8; 32], ApiError> {
    match token {
        None => Err(ApiError::validation("token", "is required")),
        Some(token) => session_token::parse(token.trim()).ok_or_else(invitation_not_found),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    #[schema(value_type = Email, required = true)]
    email: Option<String>,
    #[schema(value_type = Role, required = true)]
    role: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedInvitation {
    #[serde(flatten)]
    invitation: Invitation,
    /// Only when the server sends no email (`emailStatus` null), and shown only here: pass on
    /// the link `<base>/settings/developer#invitation=<token>`. With email on, the token goes
    /// only to the invited address.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

/// Puts the invitation's email on the queue; a full queue is recorded on the invitation as a
/// failure the inviter sees and may resend.
async fn email_invitation(
    state: &AppState,
    workspace_id: &WorkspaceId,
    invitation: &InvitationRow,
    token: &session_token::SessionToken,
) -> Result<(), ApiError> {
    let Some(outbox) = state.outbox.as_ref() else {
        return Ok(());
    };
    let link = outbox.link("invitation", &token.token);
    let email = mail::invitation(&mail::InvitationEmail {
        to: &invitation.email,
        inviter_name: &invitation.inviter_name,
        inviter_email: &invitation.inviter_email,
        workspace_name: &invitation.workspace_name,
        role: invitation.role.as_str(),
        link: &link,
        expires_at: invitation.expires_at,
    });
    let queued = outbox.enqueue(MailJob::Invitation {
        workspace_id: workspace_id.clone(),
        invitation_id: invitation.id.clone(),
        token_digest: token.digest,
        email,
    });
    if !queued {
        state
            .store
            .invitations()
            .record_email(
                workspace_id,
                &invitation.id,
                &token.digest,
                EmailResult::Failed(EmailFailure::QueueFull),
            )
            .await?;
    }
    Ok(())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitationList {
    items: Vec<Invitation>,
}

/// The answer has the same shape and status whether or not the email has an account.
#[utoipa::path(
    post,
    path = "/workspaces/{workspaceId}/invitations",
    tag = "dashboard",
    operation_id = "createInvitation",
    summary = "Invite someone by email (owners; admins for roles below owner)",
    security(("bearer" = [])),
    params(WorkspacePath),
    request_body = CreateInvitation,
    responses(
        (status = 201, description = "The invitation; its token (shown this once) only when the server sends no email", body = CreatedInvitation),
        (status = 400, description = "Invalid JSON, fields or path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        (status = 409, description = "`already_member`", body = ErrorBody),
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
    ApiJson(body): ApiJson<CreateInvitation>,
) -> Result<Response, ApiError> {
    let inviter_role = manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    let mut issues = Issues::default();
    let email = issues.email("email", body.email.as_deref(), true);
    let role = issues.role("role", body.role.as_deref());
    let (Some(email), Some(role)) = issues.finish((email, role))? else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let token = session_token::generate();
    let emailed = state.outbox.is_some();
    let outcome = state
        .store
        .invitations()
        .create(
            &workspace_id,
            &email,
            role,
            &token.digest,
            emailed,
            &MemberActor::user(&session.user.id, inviter_role, &client),
        )
        .await?;
    match outcome {
        InviteOutcome::Created(invitation) => {
            email_invitation(&state, &workspace_id, &invitation, &token).await?;
            Ok((
                StatusCode::CREATED,
                [(header::CACHE_CONTROL, "no-store")],
                ApiJson(CreatedInvitation {
                    invitation: (*invitation).into(),
                    token: (!emailed).then_some(token.token),
                }),
            )
                .into_response())
        }
        InviteOutcome::AlreadyMember => Err(ApiError::conflict(
            Reason::AlreadyMember,
            "This email is already a member of the workspace; change their role instead.",
        )),
        InviteOutcome::Forbidden => Err(not_a_manager()),
    }
}

#[utoipa::path(
    get,
    path = "/workspaces/{workspaceId}/invitations",
    tag = "dashboard",
    operation_id = "listInvitations",
    summary = "List pending invitations (owners and admins), without tokens",
    security(("bearer" = [])),
    params(WorkspacePath),
    responses(
        (status = 200, description = "Pending invitations, newest first", body = InvitationList),
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
) -> Result<ApiJson<InvitationList>, ApiError> {
    manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    let items = state.store.invitations().list(&workspace_id).await?;
    Ok(ApiJson(InvitationList {
        items: items.into_iter().map(Invitation::from).collect(),
    }))
}

#[utoipa::path(
    delete,
    path = "/workspaces/{workspaceId}/invitations/{invitationId}",
    tag = "dashboard",
    operation_id = "cancelInvitation",
    summary = "Cancel a pending invitation (owners; admins for roles below owner)",
    security(("bearer" = [])),
    params(
        WorkspacePath,
        InvitationPath,
    ),
    responses(
        (status = 204, description = "Cancelled: its link opens nothing any more"),
        (status = 400, description = "Invalid path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        (status = 404, description = "No pending invitation with this id in this workspace", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    Path((workspace_id, invitation_id)): Path<(WorkspaceId, InvitationId)>,
) -> Result<StatusCode, ApiError> {
    let role = manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    let outcome = state
        .store
        .invitations()
        .cancel(
            &workspace_id,
            &invitation_id,
            &MemberActor::user(&session.user.id, role, &client),
        )
        .await?;
    match outcome {
        CancelOutcome::Cancelled => Ok(StatusCode::NO_CONTENT),
        CancelOutcome::NotFound => Err(ApiError::not_found(
            "No pending invitation with this id in this workspace.",
        )),
        CancelOutcome::Forbidden => Err(not_a_manager()),
    }
}

/// Resends allowed per invitation per minute: enough to fix a typo'd mail server, too few to
/// flood a mailbox.
const RESENDS_PER_MINUTE: u32 = 1;

/// A new link goes to the invited address; the old one stops working and the week starts over.
#[utoipa::path(
    post,
    path = "/workspaces/{workspaceId}/invitations/{invitationId}/resend",
    tag = "dashboard",
    operation_id = "resendInvitation",
    summary = "Email a pending invitation again, with a new link (owners; admins for roles below owner)",
    security(("bearer" = [])),
    params(
        WorkspacePath,
        InvitationPath,
    ),
    responses(
        (status = 202, description = "A new email is on its way (`emailStatus: pending`); the previous link opens nothing", body = Invitation),
        (status = 400, description = "Invalid path parameter", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "`workspace_mismatch` or `insufficient_permission`", body = ErrorBody),
        (status = 404, description = "No pending invitation with this id in this workspace, or the server sends no email", body = ErrorBody),
        (status = 429, description = "`resend_throttled`: this invitation was resent less than a minute ago", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn resend(
    State(state): State<AppState>,
    session: SessionUser,
    client: ClientInfo,
    Path((workspace_id, invitation_id)): Path<(WorkspaceId, InvitationId)>,
) -> Result<(StatusCode, ApiJson<Invitation>), ApiError> {
    let role = manager_role(&state, &workspace_id, &session, not_a_manager).await?;
    if state.outbox.is_none() {
        return Err(ApiError::not_found(
            "This server sends no email (HEFFL_SMTP_URL is not set): copy the invitation's link \
             when you create it, or cancel it and invite again.",
        ));
    }
    let decision = state
        .resends
        .check(
            invitation_id.as_str(),
            RESENDS_PER_MINUTE,
            std::time::Instant::now(),
        )
        .await;
    if !decision.allowed {
        return Err(ApiError::TooManyRequests {
            reason: Reason::ResendThrottled,
            message: "This invitation was emailed a moment ago; wait a minute before resending."
                .into(),
            retry_after_secs: decision.reset_secs,
        });
    }
    let token = session_token::generate();
    let outcome = state
        .store
        .invitations()
        .resend(
            &workspace_id,
            &invitation_id,
            &token.digest,
            &MemberActor::user(&session.user.id, role, &client),
        )
        .await?;
    match outcome {
        ResendOutcome::Resent(invitation) => {
            email_invitation(&state, &workspace_id, &invitation, &token).await?;
            Ok((StatusCode::ACCEPTED, ApiJson((*invitation).into())))
        }
        ResendOutcome::NotFound => Err(ApiError::not_found(
            "No pending invitation with this id in this workspace.",
        )),
        ResendOutcome::Forbidden => Err(not_a_manager()),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The token from the invitation link (after `#invitation=`).
    #[schema(value_type = String, required = true)]
    token: Option<String>,
}

/// What the link opens, for the page to show before anyone accepts. It does not say whether
/// the email has an account: the inviter holds the token too.
#[utoipa::path(
    post,
    path = "/invitations/lookup",
    tag = "dashboard",
    operation_id = "lookupInvitation",
    summary = "See the workspace and role an invitation token opens",
    request_body = TokenBody,
    responses(
        (status = 200, description = "The pending invitation", body = InvitationPreview),
        (status = 400, description = "Invalid JSON or fields", body = ErrorBody),
        (status = 404, description = "`invitation_not_found`: unknown, expired, cancelled or used", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn lookup(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<Response, ApiError> {
    let digest = token_digest(body.token.as_deref())?;
    let preview = state
        .store
        .invitations()
        .preview(&digest)
        .await?
        .ok_or_else(invitation_not_found)?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        ApiJson(InvitationPreview::from(preview)),
    )
        .into_response())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InvitationStatus {
    Pending,
}

/// Why the last email was not sent, without anything the mail server said.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EmailError {
    /// `connection_failed`, `timeout`, `tls_failed`, `rejected` (5xx), `deferred` (4xx),
    /// `invalid_address` or `queue_full`.
    reason: EmailFailure,
    at: Timestamp,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    /// `inv_…`
    #[schema(value_type = String)]
    id: InvitationId,
    email: String,
    role: Role,
    status: InvitationStatus,
    invited_by: User,
    created_at: Timestamp,
    expires_at: Timestamp,
    /// `pending` (queued), `sent` (the mail server took it), `failed` (see `emailError`), or
    /// null when the server sends no email and the link was handed to the inviter.
    email_status: Option<EmailStatus>,
    /// When the mail server took the last email.
    emailed_at: Option<Timestamp>,
    /// Set while `emailStatus` is `failed`.
    email_error: Option<EmailError>,
}

impl From<InvitationRow> for Invitation {
    fn from(row: InvitationRow) -> Invitation {
        Invitation {
            id: row.id,
            email: row.email,
            role: row.role,
            status: InvitationStatus::Pending,
            invited_by: User::from(UserRow {
                id: row.inviter_id,
                email: row.inviter_email,
                name: row.inviter_name,
            }),
            created_at: row.created_at,
            expires_at: row.expires_at,
            email_status: row.email_status,
            emailed_at: row.emailed_at,
            email_error: match (row.email_failure, row.email_failed_at) {
                (Some(reason), Some(at)) => Some(EmailError { reason, at }),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceRef {
    #[schema(value_type = String)]
    id: WorkspaceId,
    name: String,
}

impl From<WorkspaceRefRow> for WorkspaceRef {
    fn from(row: WorkspaceRefRow) -> WorkspaceRef {
        WorkspaceRef {
            id: row.id,
            name: row.name,
        }
    }
}

/// What the holder of a token may see before accepting: never whether the email has an
/// account (the inviter holds the token too).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationPreview {
    workspace: WorkspaceRef,
    email: String,
    role: Role,
    invited_by: String,
    expires_at: Timestamp,
}

impl From<InvitationPreviewRow> for InvitationPreview {
    fn from(row: InvitationPreviewRow) -> InvitationPreview {
        InvitationPreview {
            workspace: WorkspaceRef {
                id: row.workspace_id,
                name: row.workspace_name,
            },
            email: row.email,
            role: row.role,
            invited_by: row.inviter_name,
            expires_at: row.expires_at,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    #[schema(value_type = String, required = true)]
    token: Option<String>,
    /// Required without a session: the new account's name (ignored for an existing account).
    #[schema(value_type = Option<Text100>)]
    name: Option<String>,
    /// Required without a session: the new account's password, or the existing account's own.
    #[schema(value_type = Option<Password>)]
    password: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Joined {
    workspace: WorkspaceRef,
    role: Role,
}

/// The login shape plus the workspace joined: a new session for the account, whether it was
/// made now or proven by its password.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinedWithNewAccount {
    token: String,
    expires_at: Timestamp,
    user: User,
    workspace: WorkspaceRef,
    role: Role,
}

/// A session when the request carries one; `None` without an `Authorization` header. A header
/// that opens no session is refused as it is everywhere on /app/v1.
pub struct OptionalSession(Option<SessionUser>);

impl FromRequestParts<AppState> for OptionalSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(OptionalSession(None));
        }
        SessionUser::from_request_parts(parts, state)
            .await
            .map(|session| OptionalSession(Some(session)))
    }
}

fn for_another_user() -> ApiError {
    ApiError::forbidden(
        Reason::InvitationForAnotherUser,
        "This invitation is for another email; sign out and sign in as the invited person.",
    )
}

/// Signed in as the invited email: join (200). Without a session, `name` and `password` are
/// required whoever the email belongs to, and the answer never says which: no account → the
/// account is made, joined and signed in (201); an account → joined and signed in only with
/// that account's own password (201, the same shape), else 401 `invalid_credentials`, which
/// counts toward the sign-in throttle like a failed sign-in.
#[utoipa::path(
    post,
    path = "/invitations/accept",
    tag = "dashboard",
    operation_id = "acceptInvitation",
    summary = "Accept an invitation, signed in or with a name and password",
    security((), ("bearer" = [])),
    request_body = AcceptBody,
    responses(
        (status = 200, description = "Joined as the signed-in user", body = Joined),
        (status = 201, description = "Signed in (the account made if the email had none) and joined", body = JoinedWithNewAccount),
        (status = 400, description = "Invalid JSON or fields (without a session, name and password are required)", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: the email has an account and this is not its password; or a session header that opens nothing", body = ErrorBody),
        (status = 403, description = "`invitation_for_another_user`", body = ErrorBody),
        (status = 404, description = "`invitation_not_found`: unknown, expired, cancelled or used", body = ErrorBody),
        (status = 409, description = "`already_member`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "`login_throttled`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn accept(
    State(state): State<AppState>,
    OptionalSession(session): OptionalSession,
    client: ClientInfo,
    ApiJson(body): ApiJson<AcceptBody>,
) -> Result<Response, ApiError> {
    if let Some(session) = session {
        let digest = token_digest(body.token.as_deref())?;
        let outcome = state
            .store
            .invitations()
            .accept(&digest, &session.user, None, &client)
            .await?;
        let (workspace, role) = joined(outcome)?;
        return Ok(ApiJson(Joined {
            workspace: workspace.into(),
            role,
        })
        .into_response());
    }
    // The whole body is checked before anything is looked up, so its answer cannot depend on
    // whether the invited email has an account.
    let mut issues = Issues::default();
    if body.token.is_none() {
        issues.add("token", "is required");
    }
    let name = issues.required_text("name", body.name.as_deref(), 100);
    let password = issues.password("password", body.password.as_deref());
    let password = issues
        .finish(password)?
        .ok_or_else(|| ApiError::internal("validated password missing"))?;
    let digest = token_digest(body.token.as_deref())?;
    let invited = state
        .store
        .invitations()
        .invited_email(&digest)
        .await?
        .ok_or_else(invitation_not_found)?;
    state
        .login_throttle
        .check(&normalize_email(&invited), client_address(&client))
        .await?;
    let new_session = session_token::generate();
    let expires_at = new_session_expiry(&state);
    let session = NewSession {
        token_digest: &new_session.digest,
        expires_at,
    };
    let (user, workspace, role) = match state.store.users().login_record(&invited).await? {
        Some(record) => {
            // The same argon2 work as the branch below, which hashes instead.
            let password_ok =
                password::verify(password, Some(record.password_hash.clone())).await?;
            if !password_ok || record.disabled_at.is_some() {
                if !password_ok {
                    record_failed_login(&state, record.id.clone(), client);
                }
                return Err(invalid_credentials());
            }
            let user = record.user();
            let outcome = state
                .store
                .invitations()
                .accept(&digest, &user, Some(&session), &client)
                .await?;
            let (workspace, role) = joined(outcome)?;
            (user, workspace, role)
        }
        None => {
            let hash = password::hash(password).await?;
            match state
                .store
                .invitations()
                .accept_with_new_account(&digest, &name, &hash, &session, &client)
                .await?
            {
                CreateAccountOutcome::Created {
                    user,
                    workspace,
                    role,
                } => (user, workspace, role),
                CreateAccountOutcome::NotFound => return Err(invitation_not_found()),
                // An account was made for the email a moment ago: its password is not known
                // to match this one.
                CreateAccountOutcome::AccountExists => return Err(invalid_credentials()),
            }
        }
    };
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        ApiJson(JoinedWithNewAccount {
            token: new_session.token,
            expires_at,
            user: user.into(),
            workspace: workspace.into(),
            role,
        }),
    )
        .into_response())
}

/// The workspace and role an existing account joined, or why it did not.
fn joined(outcome: AcceptOutcome) -> Result<(WorkspaceRefRow, Role), ApiError> {
    match outcome {
        AcceptOutcome::Joined { workspace, role } => Ok((workspace, role)),
        AcceptOutcome::NotFound => Err(invitation_not_found()),
        AcceptOutcome::OtherUser => Err(for_another_user()),
        AcceptOutcome::AlreadyMember => Err(ApiError::conflict(
            Reason::AlreadyMember,
            "You are already a member of this workspace.",
        )),
    }
}
