use super::{Store, UserRow};
use crate::domain::ids::UserId;
use crate::domain::time::Timestamp;

/// A session's row, alone or in the transaction that opens it with something else (an
/// invitation accepted). Only the token's SHA-256 is stored: a copy of the table opens nothing.
pub(super) async fn insert_session<'c>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    token_digest: &[u8; 32],
    user_id: &UserId,
    expires_at: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sessions (token_digest, user_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(token_digest.as_slice())
    .bind(user_id)
    .bind(Timestamp::now())
    .bind(expires_at)
    .execute(executor)
    .await?;
    Ok(())
}

/// Dashboard sessions.
pub struct SessionRepo<'s> {
    store: &'s Store,
}

impl Store {
    pub fn sessions(&self) -> SessionRepo<'_> {
        SessionRepo { store: self }
    }
}

impl SessionRepo<'_> {
    /// Stores only the token's SHA-256: a copy of the table opens no session.
    pub async fn create(
        &self,
        token_digest: &[u8; 32],
        user_id: &UserId,
        expires_at: Timestamp,
    ) -> Result<(), sqlx::Error> {
        let now = Timestamp::now();
        // Expired rows are swept here, where sessions are made, rather than by a timer.
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(self.store.pool())
            .await?;
        insert_session(self.store.pool(), token_digest, user_id, expires_at).await
    }

    /// The user behind a live session of an enabled account.
    pub async fn user_of(&self, token_digest: &[u8; 32]) -> Result<Option<UserRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT u.id, u.email, u.name FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_digest = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
        )
        .bind(token_digest.as_slice())
        .bind(Timestamp::now())
        .fetch_optional(self.store.pool())
        .await
    }

    pub async fn delete(&self, token_digest: &[u8; 32]) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM sessions WHERE token_digest = $1")
            .bind(token_digest.as_slice())
            .execute(self.store.pool())
            .await?;
        Ok(())
    }
}
