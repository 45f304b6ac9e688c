//! "Forgot password?" links (docs/api.md §10): one row per emailed link, its token kept only as
//! SHA-256, valid for `RESET_TTL_MS` and used at most once.

use super::{record_audit, Actor, AuditEntry, ClientInfo, Store, UserRow};
use crate::domain::ids::UserId;
use crate::domain::time::Timestamp;

/// How long a reset link works: long enough to reach a mailbox, short enough that an old email
/// found later opens nothing.
pub const RESET_TTL_MS: i64 = 60 * 60 * 1000;

/// Password resets: the one-time tokens and their redemption.
pub struct PasswordResetRepo<'s> {
    store: &'s Store,
}

impl Store {
    pub fn password_resets(&self) -> PasswordResetRepo<'_> {
        PasswordResetRepo { store: self }
    }
}

impl PasswordResetRepo<'_> {
    /// Stores a new link's digest for the user; expired rows are swept here, where links are
    /// made, rather than by a timer.
    pub async fn create(
        &self,
        user_id: &UserId,
        token_digest: &[u8; 32],
    ) -> Result<Timestamp, sqlx::Error> {
        let now = Timestamp::now();
        let expires_at = Timestamp(now.0.saturating_add(RESET_TTL_MS));
        sqlx::query("DELETE FROM password_resets WHERE expires_at <= $1")
            .bind(now)
            .execute(self.store.pool())
            .await?;
        sqlx::query(
            "INSERT INTO password_resets (token_digest, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_digest.as_slice())
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(self.store.pool())
        .await?;
        Ok(expires_at)
    }

    /// Sets the password of the user a live, unused link belongs to, ends every session of
    /// theirs and every other link, audited, all together. `None` when the token opens nothing
    /// (unknown, used or expired): the conditional UPDATE makes two uses of one token serial.
    pub async fn redeem(
        &self,
        token_digest: &[u8; 32],
        password_hash: &str,
        client: &ClientInfo,
    ) -> Result<Option<UserRow>, sqlx::Error> {
        let now = Timestamp::now();
        let mut tx = self.store.begin().await?;
        let user_id: Option<UserId> = sqlx::query_scalar(
            "UPDATE password_resets SET used_at = $1 \
             WHERE token_digest = $2 AND used_at IS NULL AND expires_at > $1 RETURNING user_id",
        )
        .bind(now)
        .bind(token_digest.as_slice())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(user_id) = user_id else {
            return Ok(None);
        };
        let user: UserRow = sqlx::query_as(
            "UPDATE users SET password_hash = $1 WHERE id = $2 RETURNING id, email, name",
        )
        .bind(password_hash)
        .bind(&user_id)
        .fetch_one(&mut *tx)
        .await?;
        // The other links of the account: one reset is what was asked for.
        sqlx::query(
            "UPDATE password_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
        let ended = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(&user_id)
            .execute(&mut *tx)
            .await?;
        record_audit(
            &mut tx,
            AuditEntry {
                workspace_id: None,
                actor: Actor::User(&user_id),
                action: "user.password_reset",
                target_type: "user",
                target_id: &user_id,
                details: Some(serde_json::json!({ "endedSessions": ended.rows_affected() })),
            },
            client,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(user))
    }
}
