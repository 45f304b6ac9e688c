use super::invitations::{cancel_invitations_sent_by, InvitationCancelCause};
use super::webhooks::{emit, Event};
use super::{record_audit, Actor, AuditEntry, ClientInfo, KeyTx, Store, Tx};
use crate::domain::ids::{UserId, WorkspaceId};
use crate::domain::permissions::{can_manage_member, Role};
use crate::domain::time::Timestamp;
use crate::domain::webhooks::EventType;
use serde_json::json;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub joined_at: Timestamp,
}

/// Who is asking to change the membership list, with their current role.
pub struct MemberActor<'a> {
    pub actor: Actor<'a>,
    pub role: Role,
    pub client: &'a ClientInfo,
}

impl<'a> MemberActor<'a> {
    pub fn user(user_id: &'a UserId, role: Role, client: &'a ClientInfo) -> MemberActor<'a> {
        MemberActor {
            actor: Actor::User(user_id),
            role,
            client,
        }
    }

    /// An operator at the shell, with an owner's powers (the last-owner rule still holds).
    pub fn operator(name: Option<&'a str>, client: &'a ClientInfo) -> MemberActor<'a> {
        MemberActor {
            actor: Actor::Operator(name),
            role: Role::Owner,
            client,
        }
    }

    pub fn user_id(&self) -> Option<&'a UserId> {
        match self.actor {
            Actor::User(id) => Some(id),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub enum MemberChange {
    Done(Option<MemberRow>),
    NotMember,
    AlreadyMember,
    LastOwner,
    Forbidden,
}

impl MemberRow {
    pub(super) fn event(
        &self,
        kind: EventType,
        workspace_id: &WorkspaceId,
        actor: Actor<'_>,
        extra: serde_json::Value,
    ) -> Event {
        let member = (&self.user_id, self.email.as_str(), self.role);
        Event::member(kind, workspace_id, member, actor, extra)
    }
}

const MEMBER_COLUMNS: &str =
    "SELECT m.user_id, u.email, u.name, m.role, m.created_at AS joined_at \
     FROM memberships m JOIN users u ON u.id = m.user_id";

/// `false` when the user is already a member.
pub(super) async fn insert_membership(
    tx: &mut Tx<'_>,
    workspace_id: &WorkspaceId,
    user_id: &UserId,
    role: Role,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (workspace_id, user_id) DO NOTHING",
    )
    .bind(workspace_id)
    .bind(user_id)
    .bind(role.as_str())
    .bind(Timestamp::now())
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() > 0)
}

pub(super) async fn member_in_tx(
    tx: &mut Tx<'_>,
    workspace_id: &WorkspaceId,
    user_id: &UserId,
) -> Result<Option<MemberRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{MEMBER_COLUMNS} WHERE m.workspace_id = $1 AND m.user_id = $2"
    ))
    .bind(workspace_id)
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await
}

/// Memberships: who belongs to a workspace, in which role.
pub struct MemberRepo<'s> {
    store: &'s Store,
}

impl Store {
    pub fn members(&self) -> MemberRepo<'_> {
        MemberRepo { store: self }
    }
}

impl MemberRepo<'_> {
    pub async fn list(&self, workspace_id: &WorkspaceId) -> Result<Vec<MemberRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "{MEMBER_COLUMNS} WHERE m.workspace_id = $1 ORDER BY m.created_at, m.user_id"
        ))
        .bind(workspace_id)
        .fetch_all(self.store.pool())
        .await
    }

    /// Adds an existing user directly: the operator's `members add`. People join from the
    /// dashboard only by accepting an invitation.
    pub async fn add(
        &self,
        workspace_id: &WorkspaceId,
        user_id: &UserId,
        role: Role,
        actor: &MemberActor<'_>,
    ) -> Result<MemberChange, sqlx::Error> {
        if can_manage_member(actor.role, None, Some(role)).is_err() {
            return Ok(MemberChange::Forbidden);
        }
        let mut tx = self.store.begin().await?;
        if !insert_membership(&mut tx, workspace_id, user_id, role).await? {
            return Ok(MemberChange::AlreadyMember);
        }
        record_audit(
            &mut tx,
            AuditEntry {
                workspace_id: Some(workspace_id),
                actor: actor.actor,
                action: "member.added",
                target_type: "user",
                target_id: user_id,
                details: Some(json!({ "role": role })),
            },
            actor.client,
        )
        .await?;
        let member = member_in_tx(&mut tx, workspace_id, user_id).await?;
        if let Some(member) = &member {
            emit(
                &mut tx,
                member.event(
                    EventType::MemberJoined,
                    workspace_id,
                    actor.actor,
                    json!({}),
                ),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(MemberChange::Done(member))
    }

    /// In the caller's transaction, to be committed only if `Done`. The flag says whether the role changed.
    pub async fn change_role_in(
        &self,
        tx: &mut KeyTx<'_>,
        workspace_id: &WorkspaceId,
        user_id: &UserId,
        new_role: Role,
        actor: &MemberActor<'_>,
    ) -> Result<(MemberChange, bool), sqlx::Error> {
        let current = match self
            .guard_owner_change(tx, workspace_id, user_id, Some(new_role), actor)
            .await?
        {
            Ok(current) => current,
            Err(refusal) => return Ok((refusal, false)),
        };
        let changed = current != new_role;
        if changed {
            sqlx::query(
                "UPDATE memberships SET role = $1 WHERE workspace_id = $2 AND user_id = $3",
            )
            .bind(new_role.as_str())
            .bind(workspace_id)
            .bind(user_id)
            .execute(&mut ***tx)
            .await?;
            record_audit(
                tx,
                AuditEntry {
                    workspace_id: Some(workspace_id),
                    actor: actor.actor,
                    action: "member.role_changed",
                    target_type: "user",
                    target_id: user_id,
                    details: Some(json!({ "from": current, "to": new_role })),
                },
                actor.client,
            )
            .await?;
            cancel_invitations_sent_by(
                tx,
                user_id,
                Some(workspace_id),
                InvitationCancelCause::InviterRoleChanged,
                actor.actor,
                actor.client,
            )
            .await?;
        }
        let member = member_in_tx(tx, workspace_id, user_id).await?;
        if let Some(member) = member.as_ref().filter(|_| changed) {
            let extra = json!({ "previousRole": current });
            emit(
                tx,
                member.event(
                    EventType::MemberRoleChanged,
                    workspace_id,
                    actor.actor,
                    extra,
                ),
            )
            .await?;
        }
        Ok((MemberChange::Done(member), changed))
    }

    /// Removes the membership and revokes the user's keys in that workspace, together, in the
    /// caller's transaction, to be committed only if `Done`.
    pub async fn remove_in(
        &self,
        tx: &mut KeyTx<'_>,
        workspace_id: &WorkspaceId,
        user_id: &UserId,
        actor: &MemberActor<'_>,
    ) -> Result<MemberChange, sqlx::Error> {
        if let Err(refusal) = self
            .guard_owner_change(tx, workspace_id, user_id, None, actor)
            .await?
        {
            return Ok(refusal);
        }
        if let Some(member) = member_in_tx(tx, workspace_id, user_id).await? {
            emit(
                tx,
                member.event(
                    EventType::MemberRemoved,
                    workspace_id,
                    actor.actor,
                    json!({}),
                ),
            )
            .await?;
        }
        sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
            .bind(workspace_id)
            .bind(user_id)
            .execute(&mut ***tx)
            .await?;
        let revoked = super::revoke_keys_of_user(
            tx,
            user_id,
            Some(workspace_id),
            "owner_removed",
            actor.user_id(),
        )
        .await?;
        record_audit(
            tx,
            AuditEntry {
                workspace_id: Some(workspace_id),
                actor: actor.actor,
                action: "member.removed",
                target_type: "user",
                target_id: user_id,
                details: Some(json!({ "revokedKeys": revoked })),
            },
            actor.client,
        )
        .await?;
        cancel_invitations_sent_by(
            tx,
            user_id,
            Some(workspace_id),
            InvitationCancelCause::InviterRemoved,
            actor.actor,
            actor.client,
        )
        .await?;
        Ok(MemberChange::Done(None))
    }

    /// Checks, under lock, that the change is allowed and leaves the workspace an owner.
    /// `new_role` is `None` for a removal. Returns the member's current role.
    async fn guard_owner_change(
        &self,
        tx: &mut Tx<'_>,
        workspace_id: &WorkspaceId,
        user_id: &UserId,
        new_role: Option<Role>,
        actor: &MemberActor<'_>,
    ) -> Result<Result<Role, MemberChange>, sqlx::Error> {
        let owners: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT user_id FROM memberships WHERE workspace_id = $1 AND role = 'owner'{}",
            self.store.backend().for_update()
        ))
        .bind(workspace_id)
        .fetch_all(&mut **tx)
        .await?;
        let current: Option<String> = sqlx::query_scalar(
            "SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2",
        )
        .bind(workspace_id)
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(current) = current.as_deref().and_then(Role::parse) else {
            return Ok(Err(MemberChange::NotMember));
        };
        if can_manage_member(actor.role, Some(current), new_role).is_err() {
            return Ok(Err(MemberChange::Forbidden));
        }
        let loses_owner = current == Role::Owner && new_role != Some(Role::Owner);
        if loses_owner && owners.len() <= 1 {
            return Ok(Err(MemberChange::LastOwner));
        }
        Ok(Ok(current))
    }
}
