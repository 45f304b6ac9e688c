//! The lookup behind the verification cache: what a key digest resolves to, in one query.

use super::Verifier;
use crate::domain::credits::Refill;
use crate::domain::ids::{KeyId, UserId, WorkspaceId};
use crate::domain::permissions::Role;
use crate::domain::time::Timestamp;
use crate::verify::memo::KeyMemo;
use sqlx::any::AnyRow;
use sqlx::Row;

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
    /// Paused (docs/api.md §14): refused with 401 `disabled_api_key`.
    pub disabled_at: Option<Timestamp>,
    /// The stored allowlist (`AllowedIps::from_column`); `None`: any address.
    pub allowed_ips: Option<String>,
    /// The integrator's JSON object, as stored.
    pub meta: Option<String>,
    pub external_id: Option<String>,
    /// `None`: unlimited.
    pub credits: Option<KeyCredits>,
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
        let _timer = crate::store::QueryTimer::start("key_lookup");
        if let Some(batcher) = self.lookup_batcher() {
            return batcher.lookup(digest).await;
        }
        let row = sqlx::query::<sqlx::Any>(KEY_PRINCIPAL)
            .bind(digest.as_slice())
            .fetch_optional(self.store.pool())
            .await?;
        row.as_ref().map(decode).transpose()
    }
}

/// What the request path needs to spend a key's credits: the budget's generation (a lease of
/// an older one is void) and the refill schedule (a lease of an older period is void).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCredits {
    pub generation: i64,
    pub refill: Option<Refill>,
}

impl KeyCredits {
    /// From the `credits_*` columns of the lookup; `None` when `remaining` is NULL (unlimited).
    pub fn from_columns(
        remaining: Option<i64>,
        generation: i64,
        amount: Option<i64>,
        interval: Option<&str>,
        day: Option<i64>,
    ) -> Option<KeyCredits> {
        remaining.map(|_| KeyCredits {
            generation,
            refill: Refill::from_columns(amount, interval, day),
        })
    }
}

/// By position, in `key_principal_select!`'s order.
fn decode(row: &AnyRow) -> Result<KeyPrincipalRow, sqlx::Error> {
    Ok(KeyPrincipalRow {
        key_id: row.try_get(0)?,
        key_name: row.try_get(1)?,
        workspace_id: row.try_get(2)?,
        workspace_name: row.try_get(3)?,
        user_id: row.try_get(4)?,
        user_email: row.try_get(5)?,
        user_name: row.try_get(6)?,
        user_disabled_at: row.try_get(7)?,
        role: row
            .try_get::<Option<String>, _>(8)?
            .as_deref()
            .and_then(Role::parse),
        revoked_at: row.try_get(9)?,
        expires_at: row.try_get(10)?,
        scopes: row.try_get(11)?,
        rate_limit_per_minute: row.try_get(12)?,
        disabled_at: row.try_get(13)?,
        allowed_ips: row.try_get(14)?,
        meta: row.try_get(15)?,
        external_id: row.try_get(16)?,
        credits: KeyCredits::from_columns(
            row.try_get(17)?,
            row.try_get(18)?,
            row.try_get(19)?,
            row.try_get::<Option<String>, _>(20)?.as_deref(),
            row.try_get(21)?,
        ),
        memo: KeyMemo::default(),
    })
}

/// The columns and joins of a key lookup, without its WHERE clause: the single lookup
/// (`KEY_PRINCIPAL`) and the batched one (`lookup_batch`) share them.
macro_rules! key_principal_select {
    () => {
        "k.id AS key_id, k.name AS key_name, k.workspace_id, w.name AS workspace_name, \
         u.id AS user_id, u.email AS user_email, u.name AS user_name, \
         u.disabled_at AS user_disabled_at, m.role, k.revoked_at, k.expires_at, k.scopes, \
         k.rate_limit_per_minute, k.disabled_at, k.allowed_ips, k.meta, k.external_id, \
         k.credits_remaining, k.credits_generation, k.credits_refill_amount, \
         k.credits_refill_interval, k.credits_refill_day \
         FROM api_keys k \
         JOIN workspaces w ON w.id = k.workspace_id \
         JOIN users u ON u.id = k.created_by \
         LEFT JOIN memberships m ON m.workspace_id = k.workspace_id AND m.user_id = k.created_by"
    };
}
pub(super) use key_principal_select;

const KEY_PRINCIPAL: &str = concat!("SELECT ", key_principal_select!(), " WHERE k.digest = $1");
