use super::{record_audit, Actor, AuditEntry, ClientInfo, KeyTx, Store, Tx, WorkspaceRow};
use crate::domain::ids::{UserId, WorkspaceId};
use crate::domain::permissions::Role;
use crate::domain::time::Timestamp;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub id: UserId,
    pub email: String,
    pub name: String,
}

/// What a login needs to check; never leaves the server.
#[derive(sqlx::FromRow)]
pub struct LoginRecord {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub disabled_at: Option<Timestamp>,
}

impl LoginRecord {
    pub fn user(&self) -> UserRow {
        UserRow {
            id: self.id.clone(),
            email: self.email.clone(),
            name: self.name.clone(),
        }
    }
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: &'a str,
}

/// Emails are unique whatever their case; the address is kept as typed for display.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub(super) async fn insert_user(
    tx: &mut Tx<'_>,
    new: &NewUser<'_>,
) -> Result<UserRow, sqlx::Error> {
    let user = UserRow {
        id: UserId::generate(),
        email: new.email.trim().to_owned(),
        name: new.name.to_owned(),
    };
    sqlx::query(
        "INSERT INTO users (id, email, email_normalized, name, password_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&user.id)
    .bind(&user.email)
    .bind(normalize_email(new.email))
    .bind(&user.name)
    .bind(new.password_hash)
    .bind(Timestamp::now())
    .execute(&mut **tx)
    .await?;
    Ok(user)
}

pub enum BootstrapOutcome {
    Created {
        workspace: WorkspaceRow,
        user: UserRow,
    },
    EmailTaken,
}

/// User accounts: sign-in records, creation, passwords, disabling and deletion.
pub struct UserRepo<'s> {
    store: &'s Store,
}

impl Store {
    pub fn users(&self) -> UserRepo<'_> {
        UserRepo { store: self }
    }
}

impl UserRepo<'_> {
    /// How many accounts exist: none means the operator still has to bootstrap.
    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.store.pool)
            .await
    }

    pub async fn login_record(&self, email: &str) -> Result<Option<LoginRecord>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, email, name, password_hash, disabled_at FROM users \
             WHERE email_normalized = $1",
        )
        .bind(normalize_email(email))
        .fetch_optional(self.store.pool())
        .await
    }

    pub async fn by_email(&self, email: &str) -> Result<Option<UserRow>, sqlx::Error> {
        sqlx::query_as("SELECT id, email, name FROM users WHERE email_normalized = $1")
            .bind(normalize_email(email))
            .fetch_optional(self.store.pool())
            .await
    }

    /// Creates a workspace, its first user and the owner membership together, or nothing.
    pub async fn bootstrap(
        &self,
        workspace_name: &str,
        owner: &NewUser<'_>,
    ) -> Result<BootstrapOutcome, sqlx::Error> {
        let mut tx = self.store.begin().await?;
        let user = match insert_user(&mut tx, owner).await {
            Ok(user) => user,
            Err(err) if super::is_unique_violation(&err) => {
                return Ok(BootstrapOutcome::EmailTaken)
            }
            Err(err) => return Err(err),
        };
        let workspace =
            super::insert_workspace(&mut tx, workspace_name, &user.id, Role::Owner).await?;
        record_audit(
            &mut tx,
            AuditEntry {
                workspace_id: Some(&workspace.id),
                actor: Actor::System,
                action: "workspace.bootstrapped",
                target_type: "user",
                target_id: &user.id,
                details: None,
            },
            &ClientInfo::default(),
        )
        .await?;
        tx.commit().await?;
        Ok(BootstrapOutcome::Created { workspace, user })
    }

    /// Disabling ends the user's sessions and revokes their keys in the caller's transaction,
    /// so no credential of a disabled user outlives the command. Returns `None` for an unknown
    /// email.
    /// An operator deletes a user: their sessions, keys (revoked), memberships and pending
    /// invitations go, and the account is erased down to its id (email and name replaced, no
    /// password), so the audit log's references stay whole and the email is free again. The
    /// last owner of a workspace is not deleted (the workspace would have none).
    pub async fn delete_in(
        &self,
        tx: &mut KeyTx<'_>,
        email: &str,
        actor: Actor<'_>,
    ) -> Result<UserDeletion, sqlx::Error> {
        let user: Option<UserRow> =
            sqlx::query_as("SELECT id, email, name FROM users WHERE email_normalized = $1")
                .bind(normalize_email(email))
                .fetch_optional(&mut ***tx)
                .await?;
        let Some(user) = user else {
            return Ok(UserDeletion::NotFound);
        };
        let sole_owner: Option<WorkspaceId> = sqlx::query_scalar(
            "SELECT m.workspace_id FROM memberships m WHERE m.user_id = $1 AND m.role = 'owner' \
             AND (SELECT COUNT(*) FROM memberships o WHERE o.workspace_id = m.workspace_id \
             AND o.role = 'owner') = 1 LIMIT 1",
        )
        .bind(&user.id)
        .fetch_optional(&mut ***tx)
        .await?;
        if let Some(workspace_id) = sole_owner {
            return Ok(UserDeletion::LastOwner(workspace_id));
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(&user.id)
            .execute(&mut ***tx)
            .await?;
        let revoked = super::revoke_keys_of_user(tx, &user.id, None, "user_deleted", None).await?;
        super::invitations::cancel_invitations_sent_by(
            tx,
            &user.id,
            None,
            super::InvitationCancelCause::InviterDisabled,
            actor,
            &ClientInfo::default(),
        )
        .await?;
        sqlx::query("DELETE FROM memberships WHERE user_id = $1")
            .bind(&user.id)
            .execute(&mut ***tx)
            .await?;
        let erased = format!("deleted-{}@invalid", user.id.to_lowercase());
        sqlx::query(
            "UPDATE users SET email = $1, email_normalized = $1, name = 'Deleted user', \
             password_hash = '!', disabled_at = COALESCE(disabled_at, $2) WHERE id = $3",
        )
        .bind(&erased)
        .bind(Timestamp::now())
        .bind(&user.id)
        .execute(&mut ***tx)
        .await?;
        record_audit(
            tx,
            AuditEntry {
                workspace_id: None,
                actor,
                action: "user.deleted",
                target_type: "user",
                target_id: &user.id,
                details: Some(serde_json::json!({ "revokedKeys": revoked })),
            },
            &ClientInfo::default(),
        )
        .await?;
        Ok(UserDeletion::Deleted {
            user_id: user.id.clone(),
            revoked_keys: revoked,
        })
    }

    pub async fn set_disabled_in(
        &self,
        tx: &mut KeyTx<'_>,
        email: &str,
        disabled: bool,
        actor: Actor<'_>,
    ) -> Result<Option<(UserRow, u64)>, sqlx::Error> {
        let now = Timestamp::now();
        let user: Option<UserRow> = if disabled {
            sqlx::query_as(
                "UPDATE users SET disabled_at = COALESCE(disabled_at, $1) \
                 WHERE email_normalized = $2 RETURNING id, email, name",
            )
            .bind(now)
        } else {
            sqlx::query_as(
                "UPDATE users SET disabled_at = NULL WHERE email_normalized = $1 \
                 RETURNING id, email, name",
            )
        }
        .bind(normalize_email(email))
        .fetch_optional(&mut ***tx)
        .await?;
        let Some(user) = user else {
            return Ok(None);
        };
        let mut revoked = 0;
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(&user.id)
                .execute(&mut ***tx)
                .await?;
            revoked = super::revoke_keys_of_user(tx, &user.id, None, "user_disabled", None).await?;
            super::invitations::cancel_invitations_sent_by(
                tx,
                &user.id,
                None,
                super::InvitationCancelCause::InviterDisabled,
                actor,
                &ClientInfo::default(),
            )
            .await?;
        }
        record_audit(
            tx,
            AuditEntry {
                workspace_id: None,
                actor,
                action: if disabled {
                    "user.disabled"
                } else {
                    "user.enabled"
                },
                target_type: "user",
                target_id: &user.id,
                details: None,
            },
            &ClientInfo::default(),
        )
        .await?;
        Ok(Some((user, revoked)))
    }
}

/// A user as the operator's `users list` shows them.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct UserListing {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub created_at: Timestamp,
    pub disabled_at: Option<Timestamp>,
}

/// Whose password changes, and which session (if any) survives.
pub enum PasswordChange<'a> {
    /// The user themselves, keeping the session they are using.
    Own {
        user_id: &'a UserId,
        keep_session: &'a [u8; 32],
    },
    /// An operator resetting a lost password: every session ends.
    Operator { email: &'a str },
}

impl UserRepo<'_> {
    /// The operator's `users create`: an account without any workspace, audited once.
    pub async fn create(
        &self,
        new: &NewUser<'_>,
        actor: Actor<'_>,
    ) -> Result<Option<UserRow>, sqlx::Error> {
        let mut tx = self.store.begin().await?;
        let user = match insert_user(&mut tx, new).await {
            Ok(user) => user,
            Err(err) if super::is_unique_violation(&err) => return Ok(None),
            Err(err) => return Err(err),
        };
        record_audit(
            &mut tx,
            AuditEntry {
                workspace_id: None,
                actor,
                action: "user.created",
                target_type: "user",
                target_id: &user.id,
                details: None,
            },
            &ClientInfo::default(),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    /// Sets a new password hash and ends the user's other sessions, together. `None` when no
    /// such user.
    pub async fn set_password(
        &self,
        change: PasswordChange<'_>,
        password_hash: &str,
        actor: Actor<'_>,
        client: &ClientInfo,
    ) -> Result<Option<UserRow>, sqlx::Error> {
        let mut tx = self.store.begin().await?;
        let user: Option<UserRow> = match &change {
            PasswordChange::Own { user_id, .. } => sqlx::query_as(
                "UPDATE users SET password_hash = $1 WHERE id = $2 RETURNING id, email, name",
            )
            .bind(password_hash)
            .bind(*user_id),
            PasswordChange::Operator { email } => sqlx::query_as(
                "UPDATE users SET password_hash = $1 WHERE email_normalized = $2 \
                 RETURNING id, email, name",
            )
            .bind(password_hash)
            .bind(normalize_email(email)),
        }
        .fetch_optional(&mut *tx)
        .await?;
        let Some(user) = user else {
            return Ok(None);
        };
        let ended = match &change {
            PasswordChange::Own { keep_session, .. } => {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_digest <> $2")
                    .bind(&user.id)
                    .bind(keep_session.as_slice())
                    .execute(&mut *tx)
                    .await?
            }
            PasswordChange::Operator { .. } => {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                    .bind(&user.id)
                    .execute(&mut *tx)
                    .await?
            }
        };
        record_audit(
            &mut tx,
            AuditEntry {
                workspace_id: None,
                actor,
                action: "user.password_changed",
                target_type: "user",
                target_id: &user.id,
                details: Some(serde_json::json!({ "endedSessions": ended.rows_affected() })),
            },
            client,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    pub async fn list(&self) -> Result<Vec<UserListing>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, email, name, created_at, disabled_at FROM users ORDER BY created_at, id",
        )
        .fetch_all(self.store.pool())
        .await
    }
}

/// What `UserRepo::delete_in` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserDeletion {
    NotFound,
    /// The user is the only owner of this workspace: give it another owner first.
    LastOwner(WorkspaceId),
    Deleted {
        user_id: UserId,
        revoked_keys: u64,
    },
}
