use super::{record_audit, Actor, AuditEntry, ClientInfo, Store, Tx};
use crate::ids;
use crate::key_cache::Invalidation;
use crate::permissions::Role;
use crate::time::Timestamp;
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRef {
    pub id: String,
    pub email: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Revoked,
}

/// A key as the dashboard sees it: everything but the secret, which is never stored.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub hint: String,
    pub status: KeyStatus,
    pub created_at: Timestamp,
    pub created_by: UserRef,
    pub last_used_at: Option<Timestamp>,
    pub request_count: i64,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<UserRef>,
    pub revoke_reason: Option<String>,
    /// `null`: the deployment's default limit; 0: no limit.
    pub rate_limit_per_minute: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    id: String,
    workspace_id: String,
    name: String,
    hint: String,
    created_at: Timestamp,
    creator_id: String,
    creator_email: String,
    creator_name: String,
    last_used_at: Option<Timestamp>,
    request_count: i64,
    revoked_at: Option<Timestamp>,
    revoker_id: Option<String>,
    revoker_email: Option<String>,
    revoker_name: Option<String>,
    revoke_reason: Option<String>,
    rate_limit_per_minute: Option<i64>,
}

impl From<ApiKeyRow> for ApiKeyRecord {
    fn from(row: ApiKeyRow) -> Self {
        let revoked_by = match (row.revoker_id, row.revoker_email, row.revoker_name) {
            (Some(id), Some(email), Some(name)) => Some(UserRef { id, email, name }),
            _ => None,
        };
        ApiKeyRecord {
            status: if row.revoked_at.is_some() {
                KeyStatus::Revoked
            } else {
                KeyStatus::Active
            },
            id: row.id,
            workspace_id: row.workspace_id,
            name: row.name,
            hint: row.hint,
            created_at: row.created_at,
            created_by: UserRef {
                id: row.creator_id,
                email: row.creator_email,
                name: row.creator_name,
            },
            last_used_at: row.last_used_at,
            request_count: row.request_count,
            revoked_at: row.revoked_at,
            revoked_by,
            revoke_reason: row.revoke_reason,
            rate_limit_per_minute: row.rate_limit_per_minute,
        }
    }
}

const KEY_COLUMNS: &str = "SELECT k.id, k.workspace_id, k.name, k.hint, k.created_at, \
     c.id AS creator_id, c.email AS creator_email, c.name AS creator_name, \
     k.last_used_at, k.request_count, k.revoked_at, \
     r.id AS revoker_id, r.email AS revoker_email, r.name AS revoker_name, k.revoke_reason, \
     k.rate_limit_per_minute \
     FROM api_keys k JOIN users c ON c.id = k.created_by LEFT JOIN users r ON r.id = k.revoked_by";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Active,
    Revoked,
    All,
}

impl StatusFilter {
    fn sql(self) -> &'static str {
        match self {
            StatusFilter::Active => " AND k.revoked_at IS NULL",
            StatusFilter::Revoked => " AND k.revoked_at IS NOT NULL",
            StatusFilter::All => "",
        }
    }
}

pub struct NewApiKey<'a> {
    pub workspace_id: &'a str,
    pub created_by: &'a str,
    pub name: &'a str,
    pub digest: &'a [u8; 32],
    pub hint: &'a str,
    pub rate_limit_per_minute: Option<i64>,
}

/// What the API-key middleware needs to authorize a request, resolved in one query.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyPrincipalRow {
    pub key_id: String,
    pub key_name: String,
    pub workspace_id: String,
    pub workspace_name: String,
    pub user_id: String,
    pub user_email: String,
    pub user_name: String,
    pub user_disabled_at: Option<Timestamp>,
    /// `None` when the creator is no longer a member of the key's workspace.
    pub role: Option<String>,
    pub revoked_at: Option<Timestamp>,
    /// The key's own limit; `None` means the deployment's default.
    pub rate_limit_per_minute: Option<i64>,
}

impl KeyPrincipalRow {
    pub fn current_role(&self) -> Option<Role> {
        self.role.as_deref().and_then(Role::parse)
    }
}

/// Revokes every active key the user created (in one workspace, or all of them). Runs inside
/// the caller's transaction so the revocation lands with the change that caused it.
pub(super) async fn revoke_keys_of_user(
    tx: &mut Tx<'_>,
    user_id: &str,
    workspace_id: Option<&str>,
    reason: &str,
    now: Timestamp,
) -> Result<u64, sqlx::Error> {
    let result = match workspace_id {
        Some(workspace_id) => sqlx::query(
            "UPDATE api_keys SET revoked_at = $1, revoke_reason = $2 \
             WHERE created_by = $3 AND workspace_id = $4 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(user_id)
        .bind(workspace_id),
        None => sqlx::query(
            "UPDATE api_keys SET revoked_at = $1, revoke_reason = $2 \
             WHERE created_by = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(user_id),
    }
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected())
}

impl Store {
    pub async fn create_api_key(
        &self,
        new: &NewApiKey<'_>,
        client: &ClientInfo,
    ) -> Result<ApiKeyRecord, sqlx::Error> {
        let id = ids::new_id(ids::API_KEY);
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, workspace_id, created_by, name, digest, hint, created_at, \
             rate_limit_per_minute) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(new.workspace_id)
        .bind(new.created_by)
        .bind(new.name)
        .bind(new.digest.as_slice())
        .bind(new.hint)
        .bind(Timestamp::now())
        .bind(new.rate_limit_per_minute)
        .execute(&mut *tx)
        .await?;
        record_audit(
            &mut tx,
            AuditEntry {
                workspace_id: Some(new.workspace_id),
                actor: Actor::User(new.created_by),
                action: "api_key.created",
                target_type: "api_key",
                target_id: &id,
                details: Some(json!({ "name": new.name })),
            },
            client,
        )
        .await?;
        let record = fetch_key(&mut *tx, new.workspace_id, &id).await?;
        tx.commit().await?;
        record.ok_or(sqlx::Error::RowNotFound)
    }

    /// Newest first. `creator` limits the list to one user's keys (for non-managers).
    pub async fn list_api_keys(
        &self,
        workspace_id: &str,
        creator: Option<&str>,
        status: StatusFilter,
    ) -> Result<Vec<ApiKeyRecord>, sqlx::Error> {
        let creator_clause = if creator.is_some() {
            " AND k.created_by = $2"
        } else {
            ""
        };
        let sql = format!(
            "{KEY_COLUMNS} WHERE k.workspace_id = $1{creator_clause}{} ORDER BY k.created_at DESC, k.id DESC",
            status.sql()
        );
        let mut query = sqlx::query_as::<_, ApiKeyRow>(&sql).bind(workspace_id);
        if let Some(creator) = creator {
            query = query.bind(creator);
        }
        let rows = query.fetch_all(self.pool()).await?;
        Ok(rows.into_iter().map(ApiKeyRecord::from).collect())
    }

    pub async fn get_api_key(
        &self,
        workspace_id: &str,
        key_id: &str,
    ) -> Result<Option<ApiKeyRecord>, sqlx::Error> {
        fetch_key(self.pool(), workspace_id, key_id).await
    }

    /// Idempotent: revoking a revoked key changes nothing and reports `false`.
    /// `actor` is `None` for the operator CLI.
    pub async fn revoke_api_key(
        &self,
        workspace_id: &str,
        key_id: &str,
        actor: Option<&str>,
        reason: &str,
        client: &ClientInfo,
    ) -> Result<Option<(ApiKeyRecord, bool)>, sqlx::Error> {
        let mut tx = self.pool().begin().await?;
        let changed = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1, revoked_by = $2, revoke_reason = $3 \
             WHERE workspace_id = $4 AND id = $5 AND revoked_at IS NULL",
        )
        .bind(Timestamp::now())
        .bind(actor)
        .bind(reason)
        .bind(workspace_id)
        .bind(key_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        let change = Invalidation::Key(key_id.to_owned());
        if changed {
            self.log_key_event(&mut tx, &change).await?;
            record_audit(
                &mut tx,
                AuditEntry {
                    workspace_id: Some(workspace_id),
                    actor: actor.map_or(Actor::System, Actor::User),
                    action: "api_key.revoked",
                    target_type: "api_key",
                    target_id: key_id,
                    details: Some(json!({ "reason": reason })),
                },
                client,
            )
            .await?;
        }
        let record = fetch_key(&mut *tx, workspace_id, key_id).await?;
        tx.commit().await?;
        if changed {
            self.forget(&change);
        }
        Ok(record.map(|record| (record, changed)))
    }

    /// For the operator CLI, which knows a key id but maybe not its workspace.
    pub async fn workspace_of_key(&self, key_id: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT workspace_id FROM api_keys WHERE id = $1")
            .bind(key_id)
            .fetch_optional(self.pool())
            .await
    }

    pub async fn key_principal(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<KeyPrincipalRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT k.id AS key_id, k.name AS key_name, k.workspace_id, w.name AS workspace_name, \
             u.id AS user_id, u.email AS user_email, u.name AS user_name, \
             u.disabled_at AS user_disabled_at, m.role, k.revoked_at, k.rate_limit_per_minute \
             FROM api_keys k \
             JOIN workspaces w ON w.id = k.workspace_id \
             JOIN users u ON u.id = k.created_by \
             LEFT JOIN memberships m ON m.workspace_id = k.workspace_id AND m.user_id = k.created_by \
             WHERE k.digest = $1",
        )
        .bind(digest.as_slice())
        .fetch_optional(self.pool())
        .await
    }
}

async fn fetch_key<'e, E>(
    executor: E,
    workspace_id: &str,
    key_id: &str,
) -> Result<Option<ApiKeyRecord>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<ApiKeyRow> = sqlx::query_as(&format!(
        "{KEY_COLUMNS} WHERE k.workspace_id = $1 AND k.id = $2"
    ))
    .bind(workspace_id)
    .bind(key_id)
    .fetch_optional(executor)
    .await?;
    Ok(row.map(ApiKeyRecord::from))
}
