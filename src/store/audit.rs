use super::Tx;
use crate::time::Timestamp;

/// Who did something, as recorded in the audit log.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    User(&'a str),
    ApiKey(&'a str),
    System,
    Anonymous,
}

impl Actor<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::ApiKey(_) => "api_key",
            Actor::System => "system",
            Actor::Anonymous => "anonymous",
        }
    }

    fn id(&self) -> Option<&str> {
        match self {
            Actor::User(id) | Actor::ApiKey(id) => Some(id),
            Actor::System | Actor::Anonymous => None,
        }
    }
}

/// Where a request came from, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

pub struct AuditEntry<'a> {
    pub workspace_id: Option<&'a str>,
    pub actor: Actor<'a>,
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: &'a str,
    pub details: Option<serde_json::Value>,
}

/// Written inside the caller's transaction, so an action and its audit entry land together.
pub async fn record_audit(
    tx: &mut Tx<'_>,
    entry: AuditEntry<'_>,
    client: &ClientInfo,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_events (workspace_id, actor_type, actor_id, action, target_type, \
         target_id, ip, user_agent, details, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(entry.workspace_id)
    .bind(entry.actor.kind())
    .bind(entry.actor.id())
    .bind(entry.action)
    .bind(entry.target_type)
    .bind(entry.target_id)
    .bind(client.ip.as_deref())
    .bind(client.user_agent.as_deref())
    .bind(entry.details.map(|d| d.to_string()))
    .bind(Timestamp::now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl super::Store {
    /// Records that a key was found expired, once per key however often it is presented.
    pub async fn record_key_expired(
        &self,
        workspace_id: &str,
        key_id: &str,
        expired_at: Timestamp,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO audit_events (workspace_id, actor_type, action, target_type, target_id, details, at) \
             SELECT $1, 'system', 'api_key.expired', 'api_key', $2, $3, $4 \
             WHERE NOT EXISTS (SELECT 1 FROM audit_events \
             WHERE workspace_id = $1 AND action = 'api_key.expired' AND target_id = $2)",
        )
        .bind(workspace_id)
        .bind(key_id)
        .bind(serde_json::json!({ "expiredAt": expired_at }).to_string())
        .bind(expired_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A failed sign-in against a user is an event of every workspace they belong to.
    pub async fn record_failed_login(
        &self,
        user_id: &str,
        client: &ClientInfo,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO audit_events (workspace_id, actor_type, action, target_type, target_id, ip, user_agent, at) \
             SELECT workspace_id, 'anonymous', 'auth.login_failed', 'user', $1, $2, $3, $4 \
             FROM memberships WHERE user_id = $1",
        )
        .bind(user_id)
        .bind(client.ip.as_deref())
        .bind(client.user_agent.as_deref())
        .bind(Timestamp::now())
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditEventRow {
    pub seq: i64,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: Option<String>,
    pub at: Timestamp,
}

impl super::Store {
    /// Newest first; `before` is the `seq` of the last event of the previous page.
    pub async fn list_audit_events(
        &self,
        workspace_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEventRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT seq, actor_type, actor_id, action, target_type, target_id, ip, user_agent, details, at \
             FROM audit_events WHERE workspace_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(workspace_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.pool())
        .await
    }
}
