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
