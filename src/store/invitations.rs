//! Invitations (docs/api.md §10): the only way into a workspace from the dashboard. A token is shown
//! once to the inviter, or with email on only emailed to the invited address, and kept here only
//! as its SHA-256. A pending invitation is one that is neither accepted, cancelled nor expired;
//! every other state answers like an unknown token.

use super::members::insert_membership;
use super::sessions::insert_session;
use super::{
    insert_user, record_audit, Actor, AuditEntry, ClientInfo, MemberActor, NewUser, Store, Tx,
    UserRow,
};
use crate::domain::email::{EmailFailure, EmailStatus};
use crate::domain::ids::{InvitationId, UserId, WorkspaceId};
use crate::domain::permissions::{can_manage_member, Role};
use crate::domain::time::Timestamp;
use crate::domain::webhooks::EventType;
use serde_json::json;

/// How long an invitation can be accepted.
pub const INVITATION_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// A pending invitation with who sent it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvitationRow {
    pub id: InvitationId,
    pub email: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub inviter_id: UserId,
    pub inviter_email: String,
    pub inviter_name: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub workspace_name: String,
    /// `None` when the server sends no email.
    pub email_status: Option<EmailStatus>,
    pub emailed_at: Option<Timestamp>,
    pub email_failed_at: Option<Timestamp>,
    pub email_failure: Option<EmailFailure>,
}

const INVITATION_COLUMNS: &str =
    "SELECT i.id, i.email, i.role, u.id AS inviter_id, u.email AS inviter_email, \
     u.name AS inviter_name, i.created_at, i.expires_at, w.name AS workspace_name, \
     i.email_status, i.emailed_at, i.email_failed_at, i.email_failure \
     FROM invitations i JOIN users u ON u.id = i.invited_by \
     JOIN workspaces w ON w.id = i.workspace_id";

/// The inviter may still send invitation `i`: a member of its workspace, not disabled, whose
/// role may give the invited role (`permissions::can_manage_member` with no current role:
/// owners any role, admins any role below owner). An invitation is the inviter's act, so it
/// dies with their right to make it; membership changes also cancel such invitations at once
/// (`cancel_invitations_sent_by`), and this keeps any that escaped (rows older than the rule)
/// from opening anything.
const INVITER_MAY_SEND: &str =
    "EXISTS (SELECT 1 FROM memberships im JOIN users iu ON iu.id = im.user_id \
     WHERE im.workspace_id = i.workspace_id AND im.user_id = i.invited_by \
     AND iu.disabled_at IS NULL \
     AND (im.role = 'owner' OR (im.role = 'admin' AND i.role <> 'owner')))";

/// Not accepted, not cancelled, not expired, and still the inviter's to send; every query binds
/// the current time as `$2`.
fn pending_at_2() -> String {
    format!(
        "i.accepted_at IS NULL AND i.cancelled_at IS NULL AND i.expires_at > $2 AND {INVITER_MAY_SEND}"
    )
}

/// Why invitations were cancelled without anyone cancelling them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationCancelCause {
    InviterRemoved,
    InviterDisabled,
    InviterRoleChanged,
}

impl InvitationCancelCause {
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationCancelCause::InviterRemoved => "inviter_removed",
            InvitationCancelCause::InviterDisabled => "inviter_disabled",
            InvitationCancelCause::InviterRoleChanged => "inviter_role_changed",
        }
    }
}

/// Cancels, in the caller's transaction, the pending invitations `inviter` sent (in
/// `workspace_id`, or anywhere) that they may no longer send, each audited as
/// `invitation.cancelled` with its cause. Run after the change that took the right away.
pub(super) async fn cancel_invitations_sent_by(
    tx: &mut Tx<'_>,
    inviter: &UserId,
    workspace_id: Option<&WorkspaceId>,
    cause: InvitationCancelCause,
    actor: Actor<'_>,
    client: &ClientInfo,
) -> Result<u64, sqlx::Error> {
    let now = Timestamp::now();
    let dead: Vec<(InvitationId, WorkspaceId)> = sqlx::query_as(&format!(
        "SELECT i.id, i.workspace_id FROM invitations i \
         WHERE i.invited_by = $1 AND i.accepted_at IS NULL AND i.cancelled_at IS NULL \
         AND i.expires_at > $2 AND ($3 IS NULL OR i.workspace_id = $3) AND NOT {INVITER_MAY_SEND}"
    ))
    .bind(inviter)
    .bind(now)
    .bind(workspace_id)
    .fetch_all(&mut **tx)
    .await?;
    for (id, workspace) in &dead {
        sqlx::query(
            "UPDATE invitations SET cancelled_at = $1 \
             WHERE workspace_id = $2 AND id = $3 AND cancelled_at IS NULL",
        )
        .bind(now)
        .bind(workspace)
        .bind(id)
        .execute(&mut **tx)
        .await?;
        record_audit(
            tx,
            AuditEntry {
                workspace_id: Some(workspace),
                actor,
                action: "invitation.cancelled",
                target_type: "invitation",
                target_id: id,
                details: Some(json!({ "cause": cause.as_str(), "inviterId": inviter })),
            },
            client,
        )
        .await?;
    }
    Ok(dead.len() as u64)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkspaceRefRow {
    pub id: WorkspaceId,
    pub name: String,
}

/// A pending invitation as the holder of its token may see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvitationPreviewRow {
    pub workspace_id: WorkspaceId,
    pub workspace_name: String,
    pub email: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub inviter_name: String,
    pub expires_at: Timestamp,
}

#[derive(Debug)]
pub enum InviteOutcome {
    Created(Box<InvitationRow>),
    AlreadyMember,
    Forbidden,
}

#[derive(Debug)]
pub enum ResendOutcome {
    Resent(Box<InvitationRow>),
    NotFound,
    Forbidden,
}

/// What became of an invitation's email.
#[derive(Debug, Clone, Copy)]
pub enum EmailResult {
    Sent,
    Failed(EmailFailure),
}

#[derive(Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled,
    NotFound,
    Forbidden,
}

/// The invitation a token claimed, inside the accepting transaction.
#[derive(sqlx::FromRow)]
struct Claimed {
    id: InvitationId,
    workspace_id: WorkspaceId,
    email: String,
    email_normalized: String,
    #[sqlx(try_from = "String")]
    role: Role,
}

#[derive(Debug)]
pub enum AcceptOutcome {
    Joined {
        workspace: WorkspaceRefRow,
        role: Role,
    },
    /// Unknown, expired, cancelled or used: one answer for all.
    NotFound,
    /// The signed-in user is not the invited email.
    OtherUser,
    AlreadyMember,
}

#[derive(Debug)]
pub enum CreateAccountOutcome {
    Created {
        user: UserRow,
        workspace: WorkspaceRefRow,
        role: Role,
    },
    NotFound,
    /// The invited email has an account: its owner must sign in and accept.
    AccountExists,
}

/// A new session, made in the same transaction as the account it opens.
pub struct NewSession<'a> {
    pub token_digest: &'a [u8; 32],
    pub expires_at: Timestamp,
}

/// Marks the pending invitation used and returns it; `None` when the token opens nothing.
/// The conditional UPDATE makes two concurrent accepts of one token serial: one wins.
async fn claim(tx: &mut Tx<'_>, token_digest: &[u8; 32]) -> Result<Option<Claimed>, sqlx::Error> {
    let now = Timestamp::now();
    sqlx::query_as(&format!(
        "UPDATE invitations AS i SET accepted_at = $1 \
         WHERE i.token_digest = $3 AND i.accepted_at IS NULL AND i.cancelled_at IS NULL \
         AND i.expires_at > $2 AND {INVITER_MAY_SEND} \
         RETURNING id, workspace_id, email, email_normalized, role"
    ))
    .bind(now)
    .bind(now)
    .bind(token_digest.as_slice())
    .fetch_optional(&mut **tx)
    .await
}

async fn join(
    tx: &mut Tx<'_>,
    claimed: &Claimed,
    user_id: &UserId,
    new_account: bool,
    client: &ClientInfo,
) -> Result<Option<WorkspaceRefRow>, sqlx::Error> {
    if !insert_membership(tx, &claimed.workspace_id, user_id, claimed.role).await? {
        return Ok(None);
    }
    sqlx::query("UPDATE invitations SET accepted_by = $1 WHERE id = $2")
        .bind(user_id)
        .bind(&claimed.id)
        .execute(&mut **tx)
        .await?;
    record_audit(
        tx,
        AuditEntry {
            workspace_id: Some(&claimed.workspace_id),
            actor: Actor::User(user_id),
            action: "member.joined",
            target_type: "user",
            target_id: user_id,
            details: Some(json!({
                "role": claimed.role,
                "invitationId": claimed.id,
                "newAccount": new_account,
            })),
        },
        client,
    )
    .await?;
    if let Some(member) = super::members::member_in_tx(tx, &claimed.workspace_id, user_id).await? {
        let extra = json!({ "invitationId": claimed.id });
        let event = member.event(
            EventType::MemberJoined,
            &claimed.workspace_id,
            Actor::User(user_id),
            extra,
        );
        super::webhooks::emit(tx, event).await?;
    }
    let workspace = sqlx::query_as("SELECT id, name FROM workspaces WHERE id = $1")
        .bind(&claimed.workspace_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(Some(workspace))
}

/// Invitations: sending, resending, cancelling, previewing and accepting them.
pub struct InvitationRepo<'s> {
    store: &'s Store,
}

impl Store {
    pub fn invitations(&self) -> InvitationRepo<'_> {
        InvitationRepo { store: self }
    }
}

impl InvitationRepo<'_> {
    /// The same outcome whether or not the email has an account: the inviter learns nothing.
    /// `emailed`: the token goes out by email (its status starts `pending`), not to the inviter.
    pub async fn create(
        &self,
        workspace_id: &WorkspaceId,
        email: &str,
        role: Role,
        token_digest: &[u8; 32],
        emailed: bool,
        inviter: &MemberActor<'_>,
    ) -> Result<InviteOutcome, sqlx::Error> {
        // An invitation names the user who sent it; operators add people directly instead.
        let Some(inviter_id) = inviter.user_id() else {
            return Ok(InviteOutcome::Forbidden);
        };
        if can_manage_member(inviter.role, None, Some(role)).is_err() {
            return Ok(InviteOutcome::Forbidden);
        }
        let normalized = super::normalize_email(email);
        let mut tx = self.store.begin().await?;
        let member: Option<String> = sqlx::query_scalar(
            "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.workspace_id = $1 AND u.email_normalized = $2",
        )
        .bind(workspace_id)
        .bind(&normalized)
        .fetch_optional(&mut *tx)
        .await?;
        if member.is_some() {
            return Ok(InviteOutcome::AlreadyMember);
        }
        let id = InvitationId::generate();
        let now = Timestamp::now();
        sqlx::query(
            "INSERT INTO invitations (id, workspace_id, email, email_normalized, role, token_digest, \
             invited_by, created_at, expires_at, email_status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&id)
        .bind(workspace_id)
        .bind(email)
        .bind(&normalized)
        .bind(role.as_str())
        .bind(token_digest.as_slice())
        .bind(inviter_id)
        .bind(now)
        .bind(Timestamp(now.0.saturating_add(INVITATION_TTL_MS)))
        .bind(emailed.then_some(EmailStatus::Pending.as_str()))
        .execute(&mut *tx)
        .await?;
        record_audit(
            &mut tx,
            AuditEntry {
                workspace_id: Some(workspace_id),
                actor: Actor::User(inviter_id),
                action: "member.invited",
                target_type: "invitation",
                target_id: &id,
                details: Some(json!({ "email": email, "role": role })),
            },
            inviter.client,
        )
        .await?;
        let row: InvitationRow = sqlx::query_as(&format!(
            "{INVITATION_COLUMNS} WHERE i.workspace_id = $1 AND i.id = $2"
        ))
        .bind(workspace_id)
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(InviteOutcome::Created(Box::new(row)))
    }

    /// Pending invitations, newest first.
    pub async fn list(
        &self,
        workspace_id: &WorkspaceId,
    ) -> Result<Vec<InvitationRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "{INVITATION_COLUMNS} WHERE i.workspace_id = $1 AND {} \
             ORDER BY i.created_at DESC, i.id",
            pending_at_2()
        ))
        .bind(workspace_id)
        .bind(Timestamp::now())
        .fetch_all(self.store.pool())
        .await
    }

    /// Admins may cancel what they may send: invitations for roles below owner.
    pub async fn cancel(
        &self,
        workspace_id: &WorkspaceId,
        invitation_id: &InvitationId,
        actor: &MemberActor<'_>,
    ) -> Result<CancelOutcome, sqlx::Error> {
        let mut tx = self.store.begin().await?;
        let role: Option<String> = sqlx::query_scalar(&format!(
            "SELECT i.role FROM invitations i WHERE i.workspace_id = $1 AND i.id = $3 AND {}",
            pending_at_2()
        ))
        .bind(workspace_id)
        .bind(Timestamp::now())
        .bind(invitation_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(role) = role.as_deref().and_then(Role::parse) else {
            return Ok(CancelOutcome::NotFound);
        };
        if can_manage_member(actor.role, None, Some(role)).is_err() {
            return Ok(CancelOutcome::Forbidden);
        }
        let cancelled = sqlx::query(
            "UPDATE invitations SET cancelled_at = $1 \
             WHERE workspace_id = $2 AND id = $3 AND accepted_at IS NULL AND cancelled_at IS NULL",
        )
        .bind(Timestamp::now())
        .bind(workspace_id)
        .bind(invitation_id)
        .execute(&mut *tx)
        .await?;
        if cancelled.rows_affected() == 0 {
            return Ok(CancelOutcome::NotFound);
        }
        record_audit(
            &mut tx,
            AuditEntry {
                workspace_id: Some(workspace_id),
                actor: actor.actor,
                action: "invitation.cancelled",
                target_type: "invitation",
                target_id: invitation_id,
                details: None,
            },
            actor.client,
        )
        .await?;
        tx.commit().await?;
        Ok(CancelOutcome::Cancelled)
    }

    /// A new token for a pending invitation, to be emailed again: the old link stops working
    /// (only the new digest is kept) and the week starts over. Who may resend is who may cancel.
    pub async fn resend(
        &self,
        workspace_id: &WorkspaceId,
        invitation_id: &InvitationId,
        token_digest: &[u8; 32],
        actor: &MemberActor<'_>,
    ) -> Result<ResendOutcome, sqlx::Error> {
        let mut tx = self.store.begin().await?;
        let now = Timestamp::now();
        let role: Option<String> = sqlx::query_scalar(&format!(
            "SELECT i.role FROM invitations i WHERE i.workspace_id = $1 AND i.id = $3 AND {}",
            pending_at_2()
        ))
        .bind(workspace_id)
        .bind(now)
        .bind(invitation_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(role) = role.as_deref().and_then(Role::parse) else {
            return Ok(ResendOutcome::NotFound);
        };
        if can_manage_member(actor.role, None, Some(role)).is_err() {
            return Ok(ResendOutcome::Forbidden);
        }
        let updated = sqlx::query(
            "UPDATE invitations SET token_digest = $1, expires_at = $2, email_status = 'pending', \
             email_failed_at = NULL, email_failure = NULL \
             WHERE workspace_id = $3 AND id = $4 AND accepted_at IS NULL AND cancelled_at IS NULL",
        )
        .bind(token_digest.as_slice())
        .bind(Timestamp(now.0.saturating_add(INVITATION_TTL_MS)))
        .bind(workspace_id)
        .bind(invitation_id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(ResendOutcome::NotFound);
        }
        record_audit(
            &mut tx,
            AuditEntry {
                workspace_id: Some(workspace_id),
                actor: actor.actor,
                action: "invitation.resent",
                target_type: "invitation",
                target_id: invitation_id,
                details: None,
            },
            actor.client,
        )
        .await?;
        let row: InvitationRow = sqlx::query_as(&format!(
            "{INVITATION_COLUMNS} WHERE i.workspace_id = $1 AND i.id = $2"
        ))
        .bind(workspace_id)
        .bind(invitation_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ResendOutcome::Resent(Box::new(row)))
    }

    /// Records what became of the email that carried `token_digest`. An email of a token since
    /// replaced by a resend records nothing: the invitation now waits for the newer one.
    pub async fn record_email(
        &self,
        workspace_id: &WorkspaceId,
        invitation_id: &InvitationId,
        token_digest: &[u8; 32],
        result: EmailResult,
    ) -> Result<(), sqlx::Error> {
        let now = Timestamp::now();
        let query = match result {
            EmailResult::Sent => sqlx::query(
                "UPDATE invitations SET email_status = 'sent', emailed_at = $1, \
                 email_failed_at = NULL, email_failure = NULL \
                 WHERE workspace_id = $2 AND id = $3 AND token_digest = $4",
            )
            .bind(now),
            EmailResult::Failed(_) => sqlx::query(
                "UPDATE invitations SET email_status = 'failed', email_failed_at = $1, \
                 email_failure = $5 WHERE workspace_id = $2 AND id = $3 AND token_digest = $4",
            )
            .bind(now),
        };
        let query = query
            .bind(workspace_id)
            .bind(invitation_id)
            .bind(token_digest.as_slice());
        let query = match result {
            EmailResult::Sent => query,
            EmailResult::Failed(failure) => query.bind(failure.as_str()),
        };
        query.execute(self.store.pool()).await?;
        Ok(())
    }

    pub async fn preview(
        &self,
        token_digest: &[u8; 32],
    ) -> Result<Option<InvitationPreviewRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT w.id AS workspace_id, w.name AS workspace_name, i.email, i.role, \
             u.name AS inviter_name, i.expires_at \
             FROM invitations i JOIN workspaces w ON w.id = i.workspace_id \
             JOIN users u ON u.id = i.invited_by \
             WHERE i.token_digest = $1 AND {}",
            pending_at_2()
        ))
        .bind(token_digest.as_slice())
        .bind(Timestamp::now())
        .fetch_optional(self.store.pool())
        .await
    }

    /// The invitation's email of the pending invitation behind a token.
    pub async fn invited_email(
        &self,
        token_digest: &[u8; 32],
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar(&format!(
            "SELECT i.email FROM invitations i WHERE i.token_digest = $1 AND {}",
            pending_at_2()
        ))
        .bind(token_digest.as_slice())
        .bind(Timestamp::now())
        .fetch_optional(self.store.pool())
        .await
    }

    /// A user accepts: signed in, or (with `session`, opened in the same transaction) proven
    /// by their password. The invitation must be for their email.
    pub async fn accept(
        &self,
        token_digest: &[u8; 32],
        user: &UserRow,
        session: Option<&NewSession<'_>>,
        client: &ClientInfo,
    ) -> Result<AcceptOutcome, sqlx::Error> {
        let mut tx = self.store.begin().await?;
        let Some(claimed) = claim(&mut tx, token_digest).await? else {
            return Ok(AcceptOutcome::NotFound);
        };
        // Returning drops the transaction, which rolls the claim back.
        if claimed.email_normalized != super::normalize_email(&user.email) {
            return Ok(AcceptOutcome::OtherUser);
        }
        let Some(workspace) = join(&mut tx, &claimed, &user.id, false, client).await? else {
            return Ok(AcceptOutcome::AlreadyMember);
        };
        if let Some(session) = session {
            insert_session(&mut *tx, session.token_digest, &user.id, session.expires_at).await?;
        }
        tx.commit().await?;
        Ok(AcceptOutcome::Joined {
            workspace,
            role: claimed.role,
        })
    }

    /// Someone without an account accepts: the account (with the invited email), the
    /// membership and a session are made together, or nothing is.
    pub async fn accept_with_new_account(
        &self,
        token_digest: &[u8; 32],
        name: &str,
        password_hash: &str,
        session: &NewSession<'_>,
        client: &ClientInfo,
    ) -> Result<CreateAccountOutcome, sqlx::Error> {
        let mut tx = self.store.begin().await?;
        let Some(claimed) = claim(&mut tx, token_digest).await? else {
            return Ok(CreateAccountOutcome::NotFound);
        };
        let new_user = NewUser {
            email: &claimed.email,
            name,
            password_hash,
        };
        let user = match insert_user(&mut tx, &new_user).await {
            Ok(user) => user,
            Err(err) if super::is_unique_violation(&err) => {
                return Ok(CreateAccountOutcome::AccountExists)
            }
            Err(err) => return Err(err),
        };
        let Some(workspace) = join(&mut tx, &claimed, &user.id, true, client).await? else {
            return Err(sqlx::Error::Protocol(
                "a brand-new user was already a member".into(),
            ));
        };
        insert_session(&mut *tx, session.token_digest, &user.id, session.expires_at).await?;
        tx.commit().await?;
        Ok(CreateAccountOutcome::Created {
            user,
            workspace,
            role: claimed.role,
        })
    }
}
