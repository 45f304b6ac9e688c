use super::{record_audit, Actor, AuditEntry, ClientInfo, KeyTx, Store, Tx};
use crate::domain::ids::{UserId, WorkspaceId};
use crate::domain::permissions::Role;
use crate::domain::time::Timestamp;
use serde_json::json;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkspaceRow {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: Timestamp,
}

/// A workspace of a user's, with their role in it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MembershipRow {
    pub id: WorkspaceId,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
}

pub(super) async fn insert_workspace(
    tx: &mut Tx<'_>,
    name: &str,
    first_member: &UserId,
    role: Role,
) -> Result<WorkspaceRow, sqlx::Error> {
    let workspace = WorkspaceRow {
        id: WorkspaceId::generate(),
        name: name.to_owned(),
        created_at: Timestamp::now(),
    };
    sqlx::query("INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(&workspace.id)
        .bind(&workspace.name)
        .bind(workspace.created_at)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&workspace.id)
    .bind(first_member)
    .bind(role.as_str())
    .bind(workspace.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(workspace)
}

/// Workspaces: creating, renaming and deleting them, and a user's role in one.
pub struct WorkspaceRepo<'s> {
    store: &'s Store,
}

impl Store {
    pub fn workspaces(&self) -> WorkspaceRepo<'_> {
        WorkspaceRepo { store: self }
    }
}

impl WorkspaceRepo<'_> {
    pub async fn exists(&self, workspace_id: &WorkspaceId) -> Result<bool, sqlx::Error> {
        let found: Option<String> = sqlx::query_scalar("SELECT id FROM workspaces WHERE id = $1")
            .bind(workspace_id)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(found.is_some())
    }

    /// The creator becomes the owner, in the same transaction.
    pub async fn create(
        &self,
        name: &str,
        owner_id: &UserId,
        client: &ClientInfo,
    ) -> Result<WorkspaceRow, sqlx::Error> {
        let mut tx = self.store.begin().await?;
        let workspace = insert_workspace(&mut tx, name, owner_id, Role::Owner).await?;
        record_audit(
            &mut tx,
            AuditEntry {
                workspace_id: Some(&workspace.id),
                actor: Actor::User(owner_id),
                action: "workspace.created",
                target_type: "workspace",
                target_id: &workspace.id,
                details: None,
            },
            client,
        )
        .await?;
        tx.commit().await?;
        Ok(workspace)
    }

    pub async fn of_user(&self, user_id: &UserId) -> Result<Vec<MembershipRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT w.id, w.name, m.role FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 ORDER BY w.created_at, w.id",
        )
        .bind(user_id)
        .fetch_all(self.store.pool())
        .await
    }

    /// The user's current role in the workspace; `None` when they are not a member.
    pub async fn role_in(
        &self,
        workspace_id: &WorkspaceId,
        user_id: &UserId,
    ) -> Result<Option<Role>, sqlx::Error> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2",
        )
        .bind(workspace_id)
        .bind(user_id)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(role.as_deref().and_then(Role::parse))
    }

    /// An operator renames a workspace; `false` when there is none with this id.
    pub async fn rename_in(
        &self,
        tx: &mut KeyTx<'_>,
        workspace_id: &WorkspaceId,
        name: &str,
        actor: Actor<'_>,
    ) -> Result<bool, sqlx::Error> {
        let renamed = sqlx::query("UPDATE workspaces SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(workspace_id)
            .execute(&mut ***tx)
            .await?
            .rows_affected();
        if renamed == 0 {
            return Ok(false);
        }
        record_audit(
            tx,
            AuditEntry {
                workspace_id: Some(workspace_id),
                actor,
                action: "workspace.renamed",
                target_type: "workspace",
                target_id: workspace_id,
                details: Some(json!({ "name": name })),
            },
            &ClientInfo::default(),
        )
        .await?;
        Ok(true)
    }

    /// An operator deletes a workspace and everything in it (keys, leads, memberships,
    /// invitations, usage, its audit log); the deletion itself is audited outside it, since
    /// the workspace's own log goes with it. The name it had, or `None` when there was none.
    pub async fn delete_in(
        &self,
        tx: &mut KeyTx<'_>,
        workspace_id: &WorkspaceId,
        actor: Actor<'_>,
    ) -> Result<Option<String>, sqlx::Error> {
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM workspaces WHERE id = $1")
            .bind(workspace_id)
            .fetch_optional(&mut ***tx)
            .await?;
        let Some(name) = name else {
            return Ok(None);
        };
        let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE workspace_id = $1")
            .bind(workspace_id)
            .fetch_one(&mut ***tx)
            .await?;
        // Usage rows point at keys without a cascade: they go first.
        for table in ["key_usage_hours", "key_usage_refusals"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE workspace_id = $1"))
                .bind(workspace_id)
                .execute(&mut ***tx)
                .await?;
        }
        sqlx::query("DELETE FROM workspaces WHERE id = $1")
            .bind(workspace_id)
            .execute(&mut ***tx)
            .await?;
        record_audit(
            tx,
            AuditEntry {
                workspace_id: None,
                actor,
                action: "workspace.deleted",
                target_type: "workspace",
                target_id: workspace_id,
                details: Some(json!({ "name": name, "keys": keys })),
            },
            &ClientInfo::default(),
        )
        .await?;
        Ok(Some(name))
    }

    pub async fn list_all(&self) -> Result<Vec<WorkspaceRow>, sqlx::Error> {
        sqlx::query_as("SELECT id, name, created_at FROM workspaces ORDER BY created_at, id")
            .fetch_all(self.store.pool())
            .await
    }
}
