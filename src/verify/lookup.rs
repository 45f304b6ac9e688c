//! The lookup behind the verification cache: what a key digest resolves to, in one query.

use super::Verifier;
use crate::domain::ids::{KeyId, UserId, WorkspaceId};
use crate::domain::permissions::Role;
use crate::domain::time::Timestamp;
use crate::verify::memo::KeyMemo;

/// What the API-key middleware needs to authorize a request, resolved in one query.
#[derive(Debug, Clone)]
pub struct KeyPrincipalRow {
    pub key_id: KeyId,
    pub key_name: String,
    pub workspace_id: WorkspaceId,
    pub workspace_name: String,
    pub user_id: UserId,
    pub user_email: String,
    pub user_name: String,
    pub user_disabled_at: Option<Timestamp>,
    /// `None` when the creator is no longer a member of the key's workspace (or the stored role
    /// is not one this version knows, which counts the same).
    pub role: Option<Role>,
    pub revoked_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub scopes: Option<String>,
    /// The key's own limit; `None` means the deployment's default.
    pub rate_limit_per_minute: Option<i64>,
    /// Derived from the row on first use, while it is cached.
    pub memo: KeyMemo,
}

impl Verifier {
    /// What a key digest resolves to, read from the primary. On PostgreSQL through the native
    /// driver, batched with the concurrent misses (`lookup_batch`).
    pub async fn key_principal(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<KeyPrincipalRow>, sqlx::Error> {
        if let Some(batcher) = self.lookup_batcher() {
            return batcher.lookup(digest).await;
        }
        let row = sqlx::query_as::<sqlx::Any, KeyPrincipalTuple>(KEY_PRINCIPAL)
            .bind(digest.as_slice())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(KeyPrincipalRow::from_tuple))
    }
}

/// `KEY_PRINCIPAL`'s columns, in order.
type KeyPrincipalTuple = (
    KeyId,
    String,
    WorkspaceId,
    String,
    UserId,
    String,
    String,
    Option<Timestamp>,
    Option<String>,
    Option<Timestamp>,
    Option<Timestamp>,
    Option<String>,
    Option<i64>,
);

impl KeyPrincipalRow {
    fn from_tuple(
        (
            key_id,
            key_name,
            workspace_id,
            workspace_name,
            user_id,
            user_email,
            user_name,
            user_disabled_at,
            role,
            revoked_at,
            expires_at,
            scopes,
            rate_limit_per_minute,
        ): KeyPrincipalTuple,
    ) -> KeyPrincipalRow {
        KeyPrincipalRow {
            key_id,
            key_name,
            workspace_id,
            workspace_name,
            user_id,
            user_email,
            user_name,
            user_disabled_at,
            role: role.as_deref().and_then(Role::parse),
            revoked_at,
            expires_at,
            scopes,
            rate_limit_per_minute,
            memo: KeyMemo::default(),
        }
    }
}

/// The columns and joins of a key lookup, without its WHERE clause: the single lookup
/// (`KEY_PRINCIPAL`) and the batched one (`lookup_batch`) share them.
macro_rules! key_principal_select {
    () => {
        "k.id AS key_id, k.name AS key_name, k.workspace_id, w.name AS workspace_name, \
         u.id AS user_id, u.email AS user_email, u.name AS user_name, \
         u.disabled_at AS user_disabled_at, m.role, k.revoked_at, k.expires_at, k.scopes, \
         k.rate_limit_per_minute \
         FROM api_keys k \
         JOIN workspaces w ON w.id = k.workspace_id \
         JOIN users u ON u.id = k.created_by \
         LEFT JOIN memberships m ON m.workspace_id = k.workspace_id AND m.user_id = k.created_by"
    };
}
pub(super) use key_principal_select;

const KEY_PRINCIPAL: &str = concat!("SELECT ", key_principal_select!(), " WHERE k.digest = $1");
