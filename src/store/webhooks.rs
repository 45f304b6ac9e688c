//! Webhook endpoints and their outbox (docs/api.md §15). `emit` writes an event's messages in
//! the transaction of the change it reports; the delivery worker (`crate::webhooks`) claims due
//! messages, sends them and records each try here.

use super::sql::Sql;
use super::{record_audit, Actor, AuditEntry, Backend, ClientInfo, Store, Tx};
use crate::domain::ids::{KeyId, MessageId, UserId, WebhookId, WorkspaceId};
use crate::domain::permissions::Role;
use crate::domain::time::Timestamp;
use crate::domain::webhooks::{retry_gap, scaled, EventFilter, EventType, SigningSecret};
use serde_json::{json, Value};
use std::time::Duration;

/// After a roll, the replaced secret signs beside the new one this long, so receivers can
/// switch without missing a message.
const PREVIOUS_SECRET_GRACE_MS: i64 = 24 * 3600 * 1000;

/// Something that happened in a workspace, to be sent to the endpoints that take its type.
#[derive(Debug, Clone)]
pub struct Event {
    pub workspace_id: WorkspaceId,
    pub kind: EventType,
    /// Names the workspace, the actor, and the key or member; never a secret.
    pub data: Value,
}

/// A key as events name it: never its secret, only the hint printed on the page.
pub struct KeyRef<'a> {
    pub id: &'a KeyId,
    pub name: &'a str,
    pub hint: &'a str,
}

fn actor_json(actor: Actor<'_>) -> Value {
    let (kind, id) = match actor {
        Actor::User(id) => ("user", Some(id.as_str())),
        Actor::ApiKey(id) => ("api_key", Some(id.as_str())),
        Actor::System => ("system", None),
        Actor::Anonymous => ("anonymous", None),
        Actor::Operator(name) => ("operator", name),
    };
    json!({ "type": kind, "id": id })
}

impl Event {
    /// An event about a key; `extra`'s fields are added to `data`.
    pub fn key(
        kind: EventType,
        workspace_id: &WorkspaceId,
        key: KeyRef<'_>,
        actor: Actor<'_>,
        extra: Value,
    ) -> Event {
        let mut data = json!({
            "workspace": { "id": workspace_id },
            "key": { "id": key.id, "name": key.name, "hint": key.hint },
            "actor": actor_json(actor),
        });
        merge(&mut data, extra);
        Event {
            workspace_id: workspace_id.clone(),
            kind,
            data,
        }
    }

    /// An event about a member of the workspace.
    pub fn member(
        kind: EventType,
        workspace_id: &WorkspaceId,
        member: (&UserId, &str, Role),
        actor: Actor<'_>,
        extra: Value,
    ) -> Event {
        let (user_id, email, role) = member;
        let mut data = json!({
            "workspace": { "id": workspace_id },
            "member": { "userId": user_id, "email": email, "role": role },
            "actor": actor_json(actor),
        });
        merge(&mut data, extra);
        Event {
            workspace_id: workspace_id.clone(),
            kind,
            data,
        }
    }
}

fn merge(data: &mut Value, extra: Value) {
    if let (Some(data), Value::Object(extra)) = (data.as_object_mut(), extra) {
        data.extend(extra);
    }
}

/// Writes the event's message for each enabled endpoint of its workspace that takes its type,
/// in the caller's transaction: committed with the change, or not at all.
pub(crate) async fn emit(tx: &mut Tx<'_>, event: Event) -> Result<(), sqlx::Error> {
    let endpoints: Vec<(WebhookId, String)> = sqlx::query_as(
        "SELECT id, events FROM webhook_endpoints WHERE workspace_id = $1 AND disabled_at IS NULL",
    )
    .bind(&event.workspace_id)
    .fetch_all(&mut **tx)
    .await?;
    let now = Timestamp::now();
    let payload = json!({
        "type": event.kind,
        "timestamp": now,
        "data": event.data,
    })
    .to_string();
    for (endpoint_id, events) in endpoints {
        if !EventFilter::from_column(&events).matches(event.kind) {
            continue;
        }
        sqlx::query(
            "INSERT INTO webhook_messages (id, workspace_id, endpoint_id, event_type, payload, \
             status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7)",
        )
        .bind(MessageId::generate())
        .bind(&event.workspace_id)
        .bind(&endpoint_id)
        .bind(event.kind.as_str())
        .bind(&payload)
        .bind(now)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    metrics::counter!("heffl_webhook_events_total", "type" => event.kind.as_str()).increment(1);
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: WebhookId,
    pub workspace_id: WorkspaceId,
    pub url: String,
    pub description: Option<String>,
    events: String,
    pub disabled_at: Option<Timestamp>,
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl WebhookRow {
    pub fn events(&self) -> EventFilter {
        EventFilter::from_column(&self.events)
    }
}

const ENDPOINT_COLUMNS: &str = "SELECT id, workspace_id, url, description, events, disabled_at, \
     disabled_reason, created_at, updated_at FROM webhook_endpoints";

pub struct NewWebhook<'a> {
    pub url: &'a str,
    pub description: Option<&'a str>,
    pub events: &'a EventFilter,
    pub enabled: bool,
}

/// A PATCH of an endpoint: `None` leaves a field as it is.
#[derive(Default)]
pub struct WebhookChanges {
    pub url: Option<String>,
    pub description: Option<Option<String>>,
    pub events: Option<EventFilter>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    fn from_column(text: &str) -> DeliveryStatus {
        match text {
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct DeliveryColumns {
    id: MessageId,
    event_type: String,
    status: String,
    attempts: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    last_attempt_at: Option<Timestamp>,
    next_attempt_at: Option<Timestamp>,
    created_at: Timestamp,
}

/// One message to an endpoint, as its delivery log shows it.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: MessageId,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Timestamp>,
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl From<DeliveryColumns> for DeliveryRow {
    fn from(row: DeliveryColumns) -> DeliveryRow {
        let status = DeliveryStatus::from_column(&row.status);
        DeliveryRow {
            id: row.id,
            event_type: row.event_type,
            status,
            attempts: row.attempts,
            last_status: row.last_status,
            last_error: row.last_error,
            last_attempt_at: row.last_attempt_at,
            next_attempt_at: row
                .next_attempt_at
                .filter(|_| status == DeliveryStatus::Pending),
            created_at: row.created_at,
        }
    }
}

const DELIVERY_COLUMNS: &str = "SELECT id, event_type, status, attempts, last_status, \
     last_error, last_attempt_at, next_attempt_at, created_at FROM webhook_messages";

/// A due message claimed by one instance, with what it takes to send it.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    pub id: MessageId,
    pub workspace_id: WorkspaceId,
    pub endpoint_id: WebhookId,
    pub payload: String,
    pub attempts: i64,
    pub claim: String,
}

/// Where and how to send a claimed message.
#[derive(Debug, Clone)]
pub struct Destination {
    pub url: String,
    /// The current secret first, then the replaced one while it still signs.
    pub secrets: Vec<SigningSecret>,
    pub disabled: bool,
}

/// How one try ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// A 2xx within the time allowed.
    Delivered { status: u16 },
    /// Any other status, or no answer; `error` says why without any secret.
    Failed { status: Option<u16>, error: String },
    /// The endpoint was disabled or its address refused: no request was made.
    NotSent { error: String },
}

/// What a try led to, for the worker's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    RetryIn(Duration),
    Failed,
    /// Another instance took the message over (the claim ran out): this result was dropped.
    Lost,
}

/// Webhook endpoints, the outbox of their messages and its delivery log.
pub struct WebhookRepo<'s> {
    store: &'s Store,
}

impl Store {
    pub fn webhooks(&self) -> WebhookRepo<'_> {
        WebhookRepo { store: self }
    }
}

impl WebhookRepo<'_> {
    pub async fn create(
        &self,
        workspace_id: &WorkspaceId,
        new: &NewWebhook<'_>,
        actor: &UserId,
        client: &ClientInfo,
    ) -> Result<(WebhookRow, SigningSecret), sqlx::Error> {
        let id = WebhookId::generate();
        let secret = SigningSecret::generate();
        let now = Timestamp::now();
        let mut tx = self.store.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, workspace_id, url, description, events, secret, \
             disabled_at, disabled_reason, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&id)
        .bind(workspace_id)
        .bind(new.url)
        .bind(new.description)
        .bind(new.events.to_column())
        .bind(secret.expose())
        .bind((!new.enabled).then_some(now))
        .bind((!new.enabled).then_some("by_user"))
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit(
            &mut tx,
            workspace_id,
            Actor::User(actor),
            "webhook.created",
            &id,
            json!({ "url": new.url, "events": new.events.names() }),
            client,
        )
        .await?;
        let row = fetch_endpoint(&mut *tx, workspace_id, &id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        tx.commit().await?;
        Ok((row, secret))
    }

    pub async fn list(&self, workspace_id: &WorkspaceId) -> Result<Vec<WebhookRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "{ENDPOINT_COLUMNS} WHERE workspace_id = $1 ORDER BY created_at, id"
        ))
        .bind(workspace_id)
        .fetch_all(self.store.pool())
        .await
    }

    pub async fn get(
        &self,
        workspace_id: &WorkspaceId,
        id: &WebhookId,
    ) -> Result<Option<WebhookRow>, sqlx::Error> {
        fetch_endpoint(self.store.pool(), workspace_id, id).await
    }

    /// All of `changes` or none. Enabling an endpoint the server disabled starts its failure
    /// count afresh.
    pub async fn update(
        &self,
        workspace_id: &WorkspaceId,
        id: &WebhookId,
        changes: &WebhookChanges,
        actor: &UserId,
        client: &ClientInfo,
    ) -> Result<Option<WebhookRow>, sqlx::Error> {
        let mut tx = self.store.begin().await?;
        let now = Timestamp::now();
        let mut sql = Sql::new("UPDATE webhook_endpoints SET updated_at = ");
        sql.bind(now);
        let mut fields = Vec::new();
        if let Some(url) = &changes.url {
            sql.push(", url = ").bind(url.clone());
            fields.push("url");
        }
        if let Some(description) = &changes.description {
            sql.push(", description = ").bind(description.clone());
            fields.push("description");
        }
        if let Some(events) = &changes.events {
            sql.push(", events = ").bind(events.to_column());
            fields.push("events");
        }
        match changes.enabled {
            Some(true) => {
                sql.push(", disabled_at = NULL, disabled_reason = NULL, failing_since = NULL");
                fields.push("enabled");
            }
            Some(false) => {
                sql.push(", disabled_at = COALESCE(disabled_at, ")
                    .bind(now)
                    .push("), disabled_reason = COALESCE(disabled_reason, 'by_user')");
                fields.push("enabled");
            }
            None => {}
        }
        sql.push(" WHERE workspace_id = ")
            .bind(workspace_id)
            .push(" AND id = ")
            .bind(id);
        let (sql, args) = sql.finish()?;
        if sqlx::query_with(&sql, args)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 0
        {
            return Ok(None);
        }
        audit(
            &mut tx,
            workspace_id,
            Actor::User(actor),
            "webhook.updated",
            id,
            json!({ "fields": fields }),
            client,
        )
        .await?;
        let row = fetch_endpoint(&mut *tx, workspace_id, id).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Deletes the endpoint and its messages; `false` when there was none.
    pub async fn delete(
        &self,
        workspace_id: &WorkspaceId,
        id: &WebhookId,
        actor: &UserId,
        client: &ClientInfo,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.store.begin().await?;
        // Explicitly, rather than by the foreign key: SQLite enforces cascades only per
        // connection setting, and the messages must not outlive their endpoint.
        sqlx::query("DELETE FROM webhook_messages WHERE workspace_id = $1 AND endpoint_id = $2")
            .bind(workspace_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted =
            sqlx::query("DELETE FROM webhook_endpoints WHERE workspace_id = $1 AND id = $2")
                .bind(workspace_id)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
        if deleted {
            audit(
                &mut tx,
                workspace_id,
                Actor::User(actor),
                "webhook.deleted",
                id,
                Value::Null,
                client,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// A new secret; the replaced one keeps signing beside it for a day.
    pub async fn roll_secret(
        &self,
        workspace_id: &WorkspaceId,
        id: &WebhookId,
        actor: &UserId,
        client: &ClientInfo,
    ) -> Result<Option<(WebhookRow, SigningSecret)>, sqlx::Error> {
        let secret = SigningSecret::generate();
        let now = Timestamp::now();
        let mut tx = self.store.begin().await?;
        let changed = sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = $1, \
             secret = $2, updated_at = $3 WHERE workspace_id = $4 AND id = $5",
        )
        .bind(now.0 + PREVIOUS_SECRET_GRACE_MS)
        .bind(secret.expose())
        .bind(now)
        .bind(workspace_id)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        audit(
            &mut tx,
            workspace_id,
            Actor::User(actor),
            "webhook.secret_rolled",
            id,
            Value::Null,
            client,
        )
        .await?;
        let row = fetch_endpoint(&mut *tx, workspace_id, id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        tx.commit().await?;
        Ok(Some((row, secret)))
    }

    /// Newest first; `after` is the id of the last message of the previous page. `None` when
    /// `after` is not a message of this endpoint.
    pub async fn deliveries(
        &self,
        workspace_id: &WorkspaceId,
        endpoint_id: &WebhookId,
        after: Option<&MessageId>,
        limit: i64,
    ) -> Result<Option<Vec<DeliveryRow>>, sqlx::Error> {
        let mut sql = Sql::new(DELIVERY_COLUMNS);
        sql.push(" WHERE workspace_id = ")
            .bind(workspace_id)
            .push(" AND endpoint_id = ")
            .bind(endpoint_id);
        if let Some(after) = after {
            let created: Option<Timestamp> = sqlx::query_scalar(
                "SELECT created_at FROM webhook_messages \
                 WHERE workspace_id = $1 AND endpoint_id = $2 AND id = $3",
            )
            .bind(workspace_id)
            .bind(endpoint_id)
            .bind(after)
            .fetch_optional(self.store.pool())
            .await?;
            let Some(created) = created else {
                return Ok(None);
            };
            sql.push(" AND (created_at < ")
                .bind(created)
                .push(" OR (created_at = ")
                .bind(created)
                .push(" AND id < ")
                .bind(after)
                .push("))");
        }
        sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .bind(limit);
        let (sql, args) = sql.finish()?;
        let rows: Vec<DeliveryColumns> = sqlx::query_as_with(&sql, args)
            .fetch_all(self.store.pool())
            .await?;
        Ok(Some(rows.into_iter().map(DeliveryRow::from).collect()))
    }

    /// Makes the message due now, whatever its status; a failed one gets one more try.
    pub async fn retry_delivery(
        &self,
        workspace_id: &WorkspaceId,
        endpoint_id: &WebhookId,
        message_id: &MessageId,
    ) -> Result<Option<DeliveryRow>, sqlx::Error> {
        let now = Timestamp::now();
        let changed = sqlx::query(
            "UPDATE webhook_messages SET status = 'pending', next_attempt_at = $1 \
             WHERE workspace_id = $2 AND endpoint_id = $3 AND id = $4",
        )
        .bind(now)
        .bind(workspace_id)
        .bind(endpoint_id)
        .bind(message_id)
        .execute(self.store.pool())
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        let row: Option<DeliveryColumns> = sqlx::query_as(&format!(
            "{DELIVERY_COLUMNS} WHERE workspace_id = $1 AND id = $2"
        ))
        .bind(workspace_id)
        .bind(message_id)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.map(DeliveryRow::from))
    }

    /// Claims up to `limit` due messages for `lease`: until it runs out, no other instance
    /// takes them. PostgreSQL skips rows another instance is claiming; SQLite has one writer.
    pub async fn claim_due_messages(
        &self,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<ClaimedMessage>, sqlx::Error> {
        let now = Timestamp::now();
        let claim = crate::domain::ids::new_id("claim");
        let skip_locked = match self.store.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let until = now.0 + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let rows: Vec<(MessageId, WorkspaceId, WebhookId, String, i64)> = sqlx::query_as(&format!(
            "UPDATE webhook_messages SET claim_token = $1, claimed_until = $2 \
             WHERE id IN (SELECT id FROM webhook_messages WHERE status = 'pending' \
             AND next_attempt_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3) \
             ORDER BY next_attempt_at LIMIT $4{skip_locked}) \
             AND status = 'pending' AND (claimed_until IS NULL OR claimed_until < $3) \
             RETURNING id, workspace_id, endpoint_id, payload, attempts"
        ))
        .bind(&claim)
        .bind(until)
        .bind(now)
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, workspace_id, endpoint_id, payload, attempts)| ClaimedMessage {
                    id,
                    workspace_id,
                    endpoint_id,
                    payload,
                    attempts,
                    claim: claim.clone(),
                },
            )
            .collect())
    }

    pub async fn destination(
        &self,
        workspace_id: &WorkspaceId,
        endpoint_id: &WebhookId,
    ) -> Result<Option<Destination>, sqlx::Error> {
        type Row = (String, String, Option<String>, Option<i64>, Option<i64>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT url, secret, previous_secret, previous_secret_until, disabled_at \
             FROM webhook_endpoints WHERE workspace_id = $1 AND id = $2",
        )
        .bind(workspace_id)
        .bind(endpoint_id)
        .fetch_optional(self.store.pool())
        .await?;
        let now = Timestamp::now().0;
        Ok(
            row.map(|(url, secret, previous, previous_until, disabled_at)| {
                let previous = previous
                    .filter(|_| previous_until.is_some_and(|until| until > now))
                    .and_then(SigningSecret::from_column);
                Destination {
                    url,
                    secrets: SigningSecret::from_column(secret)
                        .into_iter()
                        .chain(previous)
                        .collect(),
                    disabled: disabled_at.is_some(),
                }
            }),
        )
    }

    /// Records a try of a claimed message: delivered, due again after the schedule's next gap
    /// (`scale`: `HEFFL_WEBHOOK_RETRY_SCALE`), or failed for good. An endpoint that has only
    /// failed for `disable_after` is disabled, with an audit event.
    pub async fn finish_attempt(
        &self,
        message: &ClaimedMessage,
        result: &AttemptResult,
        scale: f64,
        disable_after: Duration,
    ) -> Result<AfterAttempt, sqlx::Error> {
        let now = Timestamp::now();
        let attempts = message.attempts + 1;
        let (status, last_status, last_error, next, after) = match result {
            AttemptResult::Delivered { status } => (
                "delivered",
                Some(i64::from(*status)),
                None,
                None,
                AfterAttempt::Delivered,
            ),
            AttemptResult::Failed { status, error } => {
                failed_try(attempts, scale, now, status.map(i64::from), error)
            }
            AttemptResult::NotSent { error } => failed_try(attempts, scale, now, None, error),
        };
        let mut tx = self.store.begin().await?;
        let recorded = sqlx::query(
            "UPDATE webhook_messages SET status = $1, attempts = $2, last_status = $3, \
             last_error = $4, last_attempt_at = $5, next_attempt_at = $6, claim_token = NULL, \
             claimed_until = NULL WHERE id = $7 AND claim_token = $8",
        )
        .bind(status)
        .bind(attempts)
        .bind(last_status)
        .bind(last_error)
        .bind(now)
        .bind(next)
        .bind(&message.id)
        .bind(&message.claim)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            return Ok(AfterAttempt::Lost);
        }
        if after == AfterAttempt::Delivered {
            sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1")
                .bind(&message.endpoint_id)
                .execute(&mut *tx)
                .await?;
        } else if !matches!(result, AttemptResult::NotSent { .. }) {
            self.count_endpoint_failure(&mut tx, message, now, disable_after)
                .await?;
        }
        tx.commit().await?;
        Ok(after)
    }

    async fn count_endpoint_failure(
        &self,
        tx: &mut Tx<'_>,
        message: &ClaimedMessage,
        now: Timestamp,
        disable_after: Duration,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1) WHERE id = $2",
        )
        .bind(now)
        .bind(&message.endpoint_id)
        .execute(&mut **tx)
        .await?;
        let cutoff = now.0 - i64::try_from(disable_after.as_millis()).unwrap_or(i64::MAX / 2);
        let disabled = sqlx::query(
            "UPDATE webhook_endpoints SET disabled_at = $1, disabled_reason = 'failing' \
             WHERE id = $2 AND disabled_at IS NULL AND failing_since <= $3",
        )
        .bind(now)
        .bind(&message.endpoint_id)
        .bind(cutoff)
        .execute(&mut **tx)
        .await?
        .rows_affected()
            > 0;
        if disabled {
            audit(
                tx,
                &message.workspace_id,
                Actor::System,
                "webhook.disabled",
                &message.endpoint_id,
                json!({ "reason": "failing", "failingForSeconds": disable_after.as_secs() }),
                &ClientInfo::default(),
            )
            .await?;
            metrics::counter!("heffl_webhook_endpoints_disabled_total").increment(1);
        }
        Ok(())
    }

    /// Sends `api_key.expiring` for keys that reach 7 days, then 1 day, before `expiresAt`:
    /// once each per key (the nearer one alone when a key is created closer than 7 days), on
    /// whichever instance sees it first. Keys replaced by a roll are left out: their end was
    /// chosen at the roll. How many were sent.
    pub async fn send_expiry_notices(&self) -> Result<usize, sqlx::Error> {
        const DAY_MS: i64 = 24 * 3600 * 1000;
        let now = Timestamp::now();
        type Row = (KeyId, WorkspaceId, String, String, Timestamp);
        let due: Vec<Row> = sqlx::query_as(
            "SELECT k.id, k.workspace_id, k.name, k.hint, k.expires_at FROM api_keys k \
             WHERE k.revoked_at IS NULL AND k.expires_at > $1 AND k.expires_at <= $2 \
             AND NOT EXISTS (SELECT 1 FROM api_keys r WHERE r.rolled_from = k.id) \
             AND NOT EXISTS (SELECT 1 FROM key_notices n WHERE n.key_id = k.id \
                 AND n.notice = CASE WHEN k.expires_at <= $3 THEN 'expiring_1d' ELSE 'expiring_7d' END) \
             LIMIT 500",
        )
        .bind(now)
        .bind(now.0 + 7 * DAY_MS)
        .bind(now.0 + DAY_MS)
        .fetch_all(self.store.pool())
        .await?;
        let mut sent = 0;
        for (key_id, workspace_id, name, hint, expires_at) in due {
            let (notice, days) = if expires_at.0 <= now.0 + DAY_MS {
                ("expiring_1d", 1)
            } else {
                ("expiring_7d", 7)
            };
            let mut tx = self.store.begin().await?;
            if !insert_notice(&mut tx, &key_id, notice, now).await? {
                continue;
            }
            if days == 1 {
                // A key first seen within a day of its end skips the 7-day notice.
                insert_notice(&mut tx, &key_id, "expiring_7d", now).await?;
            }
            let key = KeyRef {
                id: &key_id,
                name: &name,
                hint: &hint,
            };
            let event = Event::key(
                EventType::ApiKeyExpiring,
                &workspace_id,
                key,
                Actor::System,
                json!({ "expiresAt": expires_at, "daysLeft": days }),
            );
            emit(&mut tx, event).await?;
            tx.commit().await?;
            sent += 1;
        }
        Ok(sent)
    }
}

/// Records a once-only notice for a key; `false` when it was already sent.
pub(crate) async fn insert_notice(
    tx: &mut Tx<'_>,
    key_id: &KeyId,
    notice: &str,
    now: Timestamp,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO key_notices (key_id, notice, sent_at) VALUES ($1, $2, $3) \
         ON CONFLICT (key_id, notice) DO NOTHING",
    )
    .bind(key_id)
    .bind(notice)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0)
}

type TryColumns = (
    &'static str,
    Option<i64>,
    Option<String>,
    Option<Timestamp>,
    AfterAttempt,
);

fn failed_try(
    attempts: i64,
    scale: f64,
    now: Timestamp,
    status: Option<i64>,
    error: &str,
) -> TryColumns {
    let tries = u32::try_from(attempts).unwrap_or(u32::MAX);
    match retry_gap(tries, scale) {
        Some(gap) => {
            let gap_ms = i64::try_from(gap.as_millis()).unwrap_or(i64::MAX / 2);
            (
                "pending",
                status,
                Some(error.to_owned()),
                Some(Timestamp(now.0 + gap_ms)),
                AfterAttempt::RetryIn(gap),
            )
        }
        None => (
            "failed",
            status,
            Some(error.to_owned()),
            None,
            AfterAttempt::Failed,
        ),
    }
}

/// How long an endpoint may fail before it is disabled, at this retry scale.
pub fn disable_after(scale: f64) -> Duration {
    scaled(crate::domain::webhooks::DISABLE_AFTER, scale)
}

async fn audit(
    tx: &mut Tx<'_>,
    workspace_id: &WorkspaceId,
    actor: Actor<'_>,
    action: &'static str,
    endpoint_id: &WebhookId,
    details: Value,
    client: &ClientInfo,
) -> Result<(), sqlx::Error> {
    record_audit(
        tx,
        AuditEntry {
            workspace_id: Some(workspace_id),
            actor,
            action,
            target_type: "webhook",
            target_id: endpoint_id,
            details: (!details.is_null()).then_some(details),
        },
        client,
    )
    .await
}

async fn fetch_endpoint<'e, E>(
    executor: E,
    workspace_id: &WorkspaceId,
    id: &WebhookId,
) -> Result<Option<WebhookRow>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query_as(&format!(
        "{ENDPOINT_COLUMNS} WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace_id)
    .bind(id)
    .fetch_optional(executor)
    .await
}
