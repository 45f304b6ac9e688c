use super::sql::Sql;
use super::{Store, Tx};
use crate::domain::ids::{self, KeyId, UserId, WorkspaceId};
use crate::domain::time::Timestamp;

/// Who did something, as recorded in the audit log.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    User(&'a UserId),
    ApiKey(&'a KeyId),
    System,
    Anonymous,
    /// Someone with shell access running an operator command; the id is their login name
    /// when the environment says it.
    Operator(Option<&'a str>),
}

impl Actor<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::ApiKey(_) => "api_key",
            Actor::System => "system",
            Actor::Anonymous => "anonymous",
            Actor::Operator(_) => "operator",
        }
    }

    fn id(&self) -> Option<&str> {
        match self {
            Actor::User(id) => Some(id),
            Actor::ApiKey(id) => Some(id),
            Actor::Operator(name) => *name,
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
    pub workspace_id: Option<&'a WorkspaceId>,
    pub actor: Actor<'a>,
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: &'a str,
    pub details: Option<serde_json::Value>,
}

async fn insert_event<'e, E>(
    executor: E,
    entry: &AuditEntry<'_>,
    client: &ClientInfo,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO audit_events (id, workspace_id, actor_type, actor_id, action, target_type, \
         target_id, ip, user_agent, details, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(ids::new_id(ids::AUDIT_EVENT))
    .bind(entry.workspace_id)
    .bind(entry.actor.kind())
    .bind(entry.actor.id())
    .bind(entry.action)
    .bind(entry.target_type)
    .bind(entry.target_id)
    .bind(client.ip.as_deref())
    .bind(client.user_agent.as_deref())
    .bind(entry.details.as_ref().map(|d| d.to_string()))
    .bind(Timestamp::now())
    .execute(executor)
    .await?;
    Ok(())
}

/// Written inside the caller's transaction, so an action and its audit entry land together.
pub async fn record_audit(
    tx: &mut Tx<'_>,
    entry: AuditEntry<'_>,
    client: &ClientInfo,
) -> Result<(), sqlx::Error> {
    insert_event(&mut **tx, &entry, client).await
}

/// The audit log: reading, exporting and pruning it, and the entries written outside a change.
pub struct AuditRepo<'s> {
    store: &'s Store,
}

impl Store {
    pub fn audit(&self) -> AuditRepo<'_> {
        AuditRepo { store: self }
    }
}

impl AuditRepo<'_> {
    /// Records that a key was found expired, once per key however often it is presented
    /// (concurrent instances may, rarely, both record it).
    pub async fn record_key_expired(
        &self,
        workspace_id: &WorkspaceId,
        key_id: &KeyId,
        expired_at: Timestamp,
    ) -> Result<(), sqlx::Error> {
        let recorded: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM audit_events \
             WHERE workspace_id = $1 AND action = 'api_key.expired' AND target_id = $2",
        )
        .bind(workspace_id)
        .bind(key_id)
        .fetch_optional(self.store.pool())
        .await?;
        if recorded.is_some() {
            return Ok(());
        }
        let entry = AuditEntry {
            workspace_id: Some(workspace_id),
            actor: Actor::System,
            action: "api_key.expired",
            target_type: "api_key",
            target_id: key_id,
            details: Some(serde_json::json!({ "expiredAt": expired_at })),
        };
        insert_event(self.store.pool(), &entry, &ClientInfo::default()).await
    }

    /// A failed sign-in is an event of the account, not of any workspace: one row however many
    /// workspaces the user is in (a write per workspace let a guesser stall the database), and
    /// no workspace's owners learn where their members sign in from.
    pub async fn record_failed_login(
        &self,
        user_id: &UserId,
        client: &ClientInfo,
    ) -> Result<(), sqlx::Error> {
        let entry = AuditEntry {
            workspace_id: None,
            actor: Actor::Anonymous,
            action: "auth.login_failed",
            target_type: "user",
            target_id: user_id,
            details: None,
        };
        insert_event(self.store.pool(), &entry, client).await
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditEventRow {
    pub id: String,
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

impl AuditRepo<'_> {
    /// Newest first; `after` is the id of the last event of the previous page. `None` when
    /// that id is not an event of this workspace. With `key_id`, only events about that key.
    pub async fn list(
        &self,
        workspace_id: &WorkspaceId,
        key_id: Option<&KeyId>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Option<Vec<AuditEventRow>>, sqlx::Error> {
        let before_seq = match after {
            None => i64::MAX,
            Some(id) => {
                let seq: Option<i64> = sqlx::query_scalar(
                    "SELECT seq FROM audit_events WHERE workspace_id = $1 AND id = $2",
                )
                .bind(workspace_id)
                .bind(id)
                .fetch_optional(self.store.pool())
                .await?;
                match seq {
                    Some(seq) => seq,
                    None => return Ok(None),
                }
            }
        };
        let mut sql = Sql::new(
            "SELECT id, actor_type, actor_id, action, target_type, target_id, ip, user_agent, details, at \
             FROM audit_events WHERE workspace_id = ",
        );
        sql.bind(workspace_id).push(" AND seq < ").bind(before_seq);
        if let Some(key_id) = key_id {
            sql.push(" AND target_type = 'api_key' AND target_id = ")
                .bind(key_id);
        }
        sql.push(" ORDER BY seq DESC LIMIT ").bind(limit);
        let (sql, args) = sql.finish()?;
        sqlx::query_as_with(&sql, args)
            .fetch_all(self.store.pool())
            .await
            .map(Some)
    }

    /// Every event since `since` (of one workspace, or all), oldest first, for an operator's
    /// export; events of no workspace (sign-ins, operator commands) come with all.
    pub async fn export(
        &self,
        since: Timestamp,
        workspace_id: Option<&WorkspaceId>,
    ) -> Result<Vec<(Option<WorkspaceId>, AuditEventRow)>, sqlx::Error> {
        let mut sql = Sql::new(
            "SELECT workspace_id, id, actor_type, actor_id, action, target_type, target_id, ip, \
             user_agent, details, at FROM audit_events WHERE at >= ",
        );
        sql.bind(since);
        if let Some(workspace_id) = workspace_id {
            sql.push(" AND workspace_id = ").bind(workspace_id);
        }
        sql.push(" ORDER BY seq");
        let (sql, args) = sql.finish()?;
        let rows: Vec<ExportRow> = sqlx::query_as_with(&sql, args)
            .fetch_all(self.store.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.workspace_id, row.event))
            .collect())
    }

    /// Deletes events older than `older_than` (`HEFFL_AUDIT_RETENTION`); how many.
    pub async fn prune(&self, older_than: Timestamp) -> Result<u64, sqlx::Error> {
        let result = sqlx::query("DELETE FROM audit_events WHERE at < $1")
            .bind(older_than)
            .execute(self.store.pool())
            .await?;
        Ok(result.rows_affected())
    }
}

#[derive(sqlx::FromRow)]
struct ExportRow {
    workspace_id: Option<WorkspaceId>,
    #[sqlx(flatten)]
    event: AuditEventRow,
}
