use super::credits::CreditsChange;
use super::sql::Sql;
use super::webhooks::{emit, Event, KeyRef};
use super::{record_audit, Actor, AuditEntry, ClientInfo, KeyTx, Store, Tx};
use crate::domain::credits::{period, Pool, Refill};
use crate::domain::ids::{KeyId, UserId, WorkspaceId};
use crate::domain::key_policy::can_change_credits;
use crate::domain::key_policy::{can_change_expiry, can_edit_key, AllowedIps, KeyField};
use crate::domain::permissions::{can_set_rate_limit, limit_kept_on_roll, Role};
use crate::domain::scopes::ScopeSet;
use crate::domain::time::Timestamp;
use crate::domain::webhooks::EventType;
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserRef {
    #[schema(value_type = String)]
    pub id: UserId,
    pub email: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
}

/// A key as the dashboard sees it: everything but the secret, which is never stored.
// `null` fields are always present (docs/api.md §5), hence `required` on each `Option`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    #[schema(value_type = String)]
    pub id: KeyId,
    #[schema(value_type = String)]
    pub workspace_id: WorkspaceId,
    pub name: String,
    /// The key's prefix and last four characters, to recognise it.
    pub hint: String,
    pub status: KeyStatus,
    pub scopes: ScopeSet,
    pub created_at: Timestamp,
    pub created_by: UserRef,
    #[schema(required = true)]
    pub last_used_at: Option<Timestamp>,
    pub request_count: i64,
    #[schema(required = true)]
    pub expires_at: Option<Timestamp>,
    #[schema(required = true)]
    pub revoked_at: Option<Timestamp>,
    #[schema(required = true)]
    pub revoked_by: Option<UserRef>,
    #[schema(required = true)]
    pub revoke_reason: Option<String>,
    /// `null`: the deployment's default limit; 0: no limit.
    #[schema(required = true)]
    pub rate_limit_per_minute: Option<i64>,
    /// The key this one replaced by a roll.
    #[schema(required = true, value_type = Option<String>)]
    pub rolled_from: Option<KeyId>,
    /// The key that replaced this one by a roll.
    #[schema(required = true, value_type = Option<String>)]
    pub replaced_by: Option<KeyId>,
    /// What the key is for, in its creator's words.
    #[schema(required = true)]
    pub description: Option<String>,
    /// `false`: paused; its requests get 401 `disabled_api_key` until it is enabled again.
    pub enabled: bool,
    /// The addresses and CIDR blocks the key may be used from, normalised; empty: any.
    pub allowed_ips: Vec<String>,
    /// The integrator's JSON object, returned with every verification.
    #[schema(required = true, value_type = Option<Object>)]
    pub meta: Option<serde_json::Value>,
    /// The integrator's own id for whoever the key is for.
    #[schema(required = true)]
    pub external_id: Option<String>,
    /// `null`: unlimited.
    #[schema(required = true)]
    pub credits: Option<CreditsView>,
}

/// A key's credits as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditsView {
    /// Credits left, counting those instances have leased and not spent; at most a few
    /// seconds behind the requests served.
    pub remaining: i64,
    #[schema(required = true)]
    pub refill: Option<RefillView>,
    /// When the next refill sets `remaining` to `refill.amount`.
    #[schema(required = true)]
    pub next_refill_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefillView {
    pub amount: i64,
    /// `daily` (at 00:00 UTC) or `monthly` (on `day`, or the month's last day if shorter).
    pub interval: &'static str,
    #[schema(required = true)]
    pub day: Option<i64>,
}

impl CreditsView {
    fn of(row: &ApiKeyRow, now: Timestamp) -> Option<CreditsView> {
        let remaining = row.credits_remaining?;
        let refill = Refill::from_columns(
            row.credits_refill_amount,
            row.credits_refill_interval.as_deref(),
            row.credits_refill_day,
        );
        let stored = Pool {
            remaining,
            period: row.credits_period,
            generation: row.credits_generation,
        };
        let pool = stored.refreshed(refill.as_ref(), now.0);
        // After a refill the leases of the period before are void.
        let leased = if pool.period == stored.period {
            row.credits_leased
        } else {
            0
        };
        Some(CreditsView {
            remaining: pool.remaining + leased.max(0),
            refill: refill.map(|refill| {
                let (interval, day) = refill.interval.to_columns();
                RefillView {
                    amount: refill.amount,
                    interval,
                    day,
                }
            }),
            next_refill_at: refill.map(|r| Timestamp(r.next_refill_at(now.0))),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    id: KeyId,
    workspace_id: WorkspaceId,
    name: String,
    hint: String,
    scopes: Option<String>,
    created_at: Timestamp,
    creator_id: UserId,
    creator_email: String,
    creator_name: String,
    last_used_at: Option<Timestamp>,
    request_count: i64,
    expires_at: Option<Timestamp>,
    revoked_at: Option<Timestamp>,
    revoker_id: Option<UserId>,
    revoker_email: Option<String>,
    revoker_name: Option<String>,
    revoke_reason: Option<String>,
    rate_limit_per_minute: Option<i64>,
    rolled_from: Option<KeyId>,
    replaced_by: Option<KeyId>,
    description: Option<String>,
    disabled_at: Option<Timestamp>,
    allowed_ips: Option<String>,
    meta: Option<String>,
    external_id: Option<String>,
    credits_remaining: Option<i64>,
    credits_period: i64,
    credits_generation: i64,
    credits_refill_amount: Option<i64>,
    credits_refill_interval: Option<String>,
    credits_refill_day: Option<i64>,
    credits_leased: i64,
}

pub fn key_status(
    revoked_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> KeyStatus {
    if revoked_at.is_some() {
        KeyStatus::Revoked
    } else if expires_at.is_some_and(|at| at <= now) {
        KeyStatus::Expired
    } else {
        KeyStatus::Active
    }
}

impl From<ApiKeyRow> for ApiKeyRecord {
    fn from(row: ApiKeyRow) -> Self {
        let credits = CreditsView::of(&row, Timestamp::now());
        let revoked_by = match (row.revoker_id, row.revoker_email, row.revoker_name) {
            (Some(id), Some(email), Some(name)) => Some(UserRef { id, email, name }),
            _ => None,
        };
        ApiKeyRecord {
            status: key_status(row.revoked_at, row.expires_at, Timestamp::now()),
            scopes: ScopeSet::from_column(row.scopes.as_deref()),
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
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            revoked_by,
            revoke_reason: row.revoke_reason,
            rate_limit_per_minute: row.rate_limit_per_minute,
            rolled_from: row.rolled_from,
            replaced_by: row.replaced_by,
            description: row.description,
            enabled: row.disabled_at.is_none(),
            allowed_ips: AllowedIps::from_column(row.allowed_ips.as_deref()).as_strings(),
            meta: row
                .meta
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            external_id: row.external_id,
            credits,
        }
    }
}

/// Where a leaked key was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakSource {
    /// Someone posted it to the leaked-key endpoint.
    Report,
    /// GitHub's secret scanning found it in a public repository.
    GitHub,
}

impl LeakSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LeakSource::Report => "report",
            LeakSource::GitHub => "github",
        }
    }
}

/// A secret reported as leaked, by its digest.
#[derive(Debug, Clone)]
pub struct Leak {
    pub digest: [u8; 32],
    pub source: LeakSource,
    /// Where it was seen (GitHub gives the file's URL).
    pub url: Option<String>,
}

impl ApiKeyRecord {
    pub fn key_ref(&self) -> KeyRef<'_> {
        KeyRef {
            id: &self.id,
            name: &self.name,
            hint: &self.hint,
        }
    }
}

const KEY_COLUMNS: &str = "SELECT k.id, k.workspace_id, k.name, k.hint, k.scopes, k.created_at, \
     c.id AS creator_id, c.email AS creator_email, c.name AS creator_name, \
     k.last_used_at, k.request_count, k.expires_at, k.revoked_at, \
     r.id AS revoker_id, r.email AS revoker_email, r.name AS revoker_name, k.revoke_reason, \
     k.rate_limit_per_minute, k.rolled_from, n.id AS replaced_by, \
     k.description, k.disabled_at, k.allowed_ips, k.meta, k.external_id, \
     k.credits_remaining, k.credits_period, k.credits_generation, k.credits_refill_amount, \
     k.credits_refill_interval, k.credits_refill_day, \
     (SELECT CAST(COALESCE(SUM(l.unspent), 0) AS BIGINT) FROM credit_leases l \
      WHERE l.key_id = k.id AND l.generation = k.credits_generation \
      AND l.period = k.credits_period) AS credits_leased \
     FROM api_keys k JOIN users c ON c.id = k.created_by LEFT JOIN users r ON r.id = k.revoked_by \
     LEFT JOIN api_keys n ON n.rolled_from = k.id";

#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum StatusFilter {
    Active,
    Revoked,
    Expired,
    All,
}

/// Which keys a list shows.
#[derive(Debug, Clone, Copy)]
pub struct KeyFilter<'a> {
    /// Only this user's keys (what members and viewers see).
    pub creator: Option<&'a UserId>,
    pub status: StatusFilter,
    /// Only keys not used since then, and never-used ones.
    pub unused_since: Option<Timestamp>,
    pub external_id: Option<&'a str>,
}

/// The policy columns of a key (docs/api.md §14) in their stored form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPolicyColumns {
    pub description: Option<String>,
    pub disabled_at: Option<Timestamp>,
    pub allowed_ips: Option<String>,
    pub meta: Option<String>,
    pub external_id: Option<String>,
    /// `None`: unlimited; else the starting credits and the refill.
    pub credits: Option<(i64, Option<Refill>)>,
}

impl KeyPolicyColumns {
    /// A roll's replacement keeps the policy of the key it replaces.
    fn of(record: &ApiKeyRecord, now: Timestamp) -> KeyPolicyColumns {
        let allowed = record.allowed_ips.join(" ");
        KeyPolicyColumns {
            description: record.description.clone(),
            disabled_at: (!record.enabled).then_some(now),
            allowed_ips: (!allowed.is_empty()).then_some(allowed),
            meta: record.meta.as_ref().map(serde_json::Value::to_string),
            external_id: record.external_id.clone(),
            // Set apart: the credits move to the replacement (`ApiKeyRepo::roll_in`).
            credits: None,
        }
    }
}

pub struct NewApiKey<'a> {
    pub workspace_id: &'a WorkspaceId,
    pub created_by: &'a UserId,
    pub name: &'a str,
    pub digest: &'a [u8; 32],
    pub hint: &'a str,
    pub rate_limit_per_minute: Option<i64>,
    pub scopes: ScopeSet,
    pub expires_at: Option<Timestamp>,
    pub policy: &'a KeyPolicyColumns,
}

pub enum RollOutcome {
    Rolled {
        new: Box<ApiKeyRecord>,
        old: Box<ApiKeyRecord>,
    },
    NotFound,
    /// Only an active key that was not rolled before can be rolled.
    NotRollable(KeyStatus),
    AlreadyRolled,
}

/// Revokes every active key the user created (in one workspace, or all of them). Runs inside
/// the caller's transaction so the revocation lands with the change that caused it.
pub(super) async fn revoke_keys_of_user(
    tx: &mut Tx<'_>,
    user_id: &UserId,
    workspace_id: Option<&WorkspaceId>,
    reason: &str,
    revoked_by: Option<&UserId>,
) -> Result<u64, sqlx::Error> {
    let mut sql = Sql::new("UPDATE api_keys SET revoked_at = ");
    sql.bind(Timestamp::now())
        .push(", revoke_reason = ")
        .bind(reason)
        .push(", revoked_by = ")
        .bind(revoked_by)
        .push(" WHERE created_by = ")
        .bind(user_id);
    if let Some(workspace_id) = workspace_id {
        sql.push(" AND workspace_id = ").bind(workspace_id);
    }
    sql.push(" AND revoked_at IS NULL RETURNING id, workspace_id, name, hint");
    let (sql, args) = sql.finish()?;
    let revoked: Vec<(KeyId, WorkspaceId, String, String)> =
        sqlx::query_as_with(&sql, args).fetch_all(&mut **tx).await?;
    let actor = revoked_by.map_or(Actor::System, Actor::User);
    for (key_id, workspace_id, name, hint) in &revoked {
        let key = KeyRef {
            id: key_id,
            name,
            hint,
        };
        let event = Event::key(
            EventType::ApiKeyRevoked,
            workspace_id,
            key,
            actor,
            json!({ "reason": reason }),
        );
        emit(tx, event).await?;
    }
    Ok(revoked.len() as u64)
}

async fn insert_key(
    tx: &mut Tx<'_>,
    new: &NewApiKey<'_>,
    rolled_from: Option<&KeyId>,
) -> Result<KeyId, sqlx::Error> {
    let id = KeyId::generate();
    let now = Timestamp::now();
    let credits = new.policy.credits;
    let refill = credits.and_then(|(_, refill)| refill);
    let (interval, day) = refill.map(|r| r.interval.to_columns()).unzip();
    sqlx::query(
        "INSERT INTO api_keys (id, workspace_id, created_by, name, digest, hint, created_at, \
         rate_limit_per_minute, scopes, expires_at, rolled_from, description, disabled_at, \
         allowed_ips, meta, external_id, credits_remaining, credits_period, \
         credits_refill_amount, credits_refill_interval, credits_refill_day, credits_initial) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21, $17)",
    )
    .bind(&id)
    .bind(new.workspace_id)
    .bind(new.created_by)
    .bind(new.name)
    .bind(new.digest.as_slice())
    .bind(new.hint)
    .bind(now)
    .bind(new.rate_limit_per_minute)
    .bind(new.scopes.to_column())
    .bind(new.expires_at)
    .bind(rolled_from)
    .bind(&new.policy.description)
    .bind(new.policy.disabled_at)
    .bind(&new.policy.allowed_ips)
    .bind(&new.policy.meta)
    .bind(&new.policy.external_id)
    .bind(credits.map(|(remaining, _)| remaining))
    .bind(period(refill.as_ref(), now.0))
    .bind(refill.map(|r| r.amount))
    .bind(interval)
    .bind(day.flatten())
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// A PATCH of a key: `None` leaves a field as it is; `Some(None)` clears a field that may be
/// empty. Values arrive validated (lengths, shapes); who may set them is decided against the
/// key as it is in the transaction (`changed_fields`).
#[derive(Debug, Clone, Default)]
pub struct KeyChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub expires_at: Option<Option<Timestamp>>,
    /// Empty: any address.
    pub allowed_ips: Option<AllowedIps>,
    pub meta: Option<Option<String>>,
    pub external_id: Option<Option<String>>,
    pub rate_limit_per_minute: Option<Option<i64>>,
    pub scopes: Option<ScopeSet>,
    pub credits: Option<CreditsChange>,
}

/// Who edits or rolls a key, with their role now and the server's default limit: together they
/// decide which rate limit they may set, or a roll's replacement may keep.
pub struct Editor<'a> {
    pub user_id: &'a UserId,
    pub role: Role,
    pub server_default_limit: u32,
}

/// A field the editor may not set to the value sent, and why, in words for the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: KeyField,
    pub message: &'static str,
    /// The key's state stands in the way (409), not the editor's role (403).
    pub conflict: bool,
}

pub enum UpdateOutcome {
    Updated {
        record: Box<ApiKeyRecord>,
        /// In the order of `KeyField`; empty when every value sent was the current one.
        changed: Vec<KeyField>,
    },
    /// No such key, or one the editor may not edit (reported alike).
    NotFound,
    /// Revoked: nothing about it can change.
    Inactive,
    Refused(Refusal),
}

/// The fields `changes` would change, or the first one the editor may not set that way.
fn changed_fields(
    current: &ApiKeyRecord,
    changes: &KeyChanges,
    editor: &Editor<'_>,
) -> Result<Vec<KeyField>, Refusal> {
    let mut changed = Vec::new();
    if changes
        .name
        .as_ref()
        .is_some_and(|name| *name != current.name)
    {
        changed.push(KeyField::Name);
    }
    if changes
        .description
        .as_ref()
        .is_some_and(|d| *d != current.description)
    {
        changed.push(KeyField::Description);
    }
    if changes.enabled.is_some_and(|e| e != current.enabled) {
        changed.push(KeyField::Enabled);
    }
    if let Some(expires_at) = changes.expires_at.filter(|at| *at != current.expires_at) {
        if !can_change_expiry(editor.role, current.expires_at, expires_at) {
            return Err(Refusal {
                field: KeyField::ExpiresAt,
                message: "Only owners and admins can move a key's expiresAt later or remove it; set an earlier time.",
                conflict: false,
            });
        }
        changed.push(KeyField::ExpiresAt);
    }
    if let Some(allowed) = &changes.allowed_ips {
        if allowed.as_strings() != current.allowed_ips {
            changed.push(KeyField::AllowedIps);
        }
    }
    if let Some(meta) = &changes.meta {
        let current_meta = current.meta.as_ref().map(serde_json::Value::to_string);
        if *meta != current_meta {
            changed.push(KeyField::Meta);
        }
    }
    if changes
        .external_id
        .as_ref()
        .is_some_and(|id| *id != current.external_id)
    {
        changed.push(KeyField::ExternalId);
    }
    if let Some(limit) = changes
        .rate_limit_per_minute
        .filter(|limit| *limit != current.rate_limit_per_minute)
    {
        // `None` is the server's default, which anyone may go back to.
        if let Some(limit) = limit {
            can_set_rate_limit(editor.role, limit, editor.server_default_limit).map_err(|_| {
                Refusal {
                    field: KeyField::RateLimitPerMinute,
                    message: "Only owners and admins can raise or remove a key's rate limit; set a limit no higher than the server's default.",
                    conflict: false,
                }
            })?;
        }
        changed.push(KeyField::RateLimitPerMinute);
    }
    if let Some(scopes) = changes.scopes.as_ref().filter(|s| **s != current.scopes) {
        if !scopes.is_within(&current.scopes) {
            return Err(Refusal {
                field: KeyField::Scopes,
                message: "A key's scopes can only be narrowed; create a new key for more.",
                conflict: false,
            });
        }
        changed.push(KeyField::Scopes);
    }
    if let Some(credits) = changes.credits {
        if !can_change_credits(editor.role) {
            return Err(Refusal {
                field: KeyField::Credits,
                message: "Only owners and admins can change a key's credits.",
                conflict: false,
            });
        }
        if matches!(credits, CreditsChange::Add(_)) && current.credits.is_none() {
            return Err(Refusal {
                field: KeyField::Credits,
                message: "This key has unlimited credits, so there is nothing to add to; set `remaining` instead.",
                conflict: true,
            });
        }
        if !(credits == CreditsChange::Remove && current.credits.is_none()) {
            changed.push(KeyField::Credits);
        }
    }
    Ok(changed)
}

/// API keys: issuing, listing, editing, rolling and revoking them, and their lookups by digest.
pub struct ApiKeyRepo<'s> {
    store: &'s Store,
}

impl Store {
    pub fn api_keys(&self) -> ApiKeyRepo<'_> {
        ApiKeyRepo { store: self }
    }
}

impl ApiKeyRepo<'_> {
    /// Inserts the key with its audit event, in the caller's transaction (`verify` logs that
    /// its digest was issued). `None` only if the key cannot be read back.
    pub async fn create_in(
        &self,
        tx: &mut KeyTx<'_>,
        new: &NewApiKey<'_>,
        client: &ClientInfo,
    ) -> Result<Option<ApiKeyRecord>, sqlx::Error> {
        let id = insert_key(tx, new, None).await?;
        record_audit(
            tx,
            AuditEntry {
                workspace_id: Some(new.workspace_id),
                actor: Actor::User(new.created_by),
                action: "api_key.created",
                target_type: "api_key",
                target_id: &id,
                details: Some(
                    json!({ "name": new.name, "scopes": new.scopes, "expiresAt": new.expires_at }),
                ),
            },
            client,
        )
        .await?;
        let record = fetch_key(&mut ***tx, new.workspace_id, &id).await?;
        if let Some(record) = &record {
            let extra = json!({ "scopes": record.scopes, "expiresAt": record.expires_at });
            let event = Event::key(
                EventType::ApiKeyCreated,
                new.workspace_id,
                record.key_ref(),
                Actor::User(new.created_by),
                extra,
            );
            emit(tx, event).await?;
        }
        Ok(record)
    }

    /// Newest first.
    pub async fn list(
        &self,
        workspace_id: &WorkspaceId,
        filter: &KeyFilter<'_>,
    ) -> Result<Vec<ApiKeyRecord>, sqlx::Error> {
        let now = Timestamp::now();
        let mut sql = Sql::new(KEY_COLUMNS);
        sql.push(" WHERE k.workspace_id = ").bind(workspace_id);
        if let Some(creator) = filter.creator {
            sql.push(" AND k.created_by = ").bind(creator);
        }
        match filter.status {
            StatusFilter::Active => {
                sql.push(" AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > ")
                    .bind(now)
                    .push(")");
            }
            StatusFilter::Expired => {
                sql.push(" AND k.revoked_at IS NULL AND k.expires_at <= ")
                    .bind(now);
            }
            StatusFilter::Revoked => {
                sql.push(" AND k.revoked_at IS NOT NULL");
            }
            StatusFilter::All => {}
        }
        if let Some(external_id) = filter.external_id {
            sql.push(" AND k.external_id = ").bind(external_id);
        }
        if let Some(since) = filter.unused_since {
            sql.push(" AND (k.last_used_at IS NULL OR k.last_used_at < ")
                .bind(since)
                .push(")");
        }
        sql.push(" ORDER BY k.created_at DESC, k.id DESC");
        let (sql, args) = sql.finish()?;
        let rows: Vec<ApiKeyRow> = sqlx::query_as_with(&sql, args)
            .fetch_all(self.store.pool())
            .await?;
        Ok(rows.into_iter().map(ApiKeyRecord::from).collect())
    }

    pub async fn get(
        &self,
        workspace_id: &WorkspaceId,
        key_id: &KeyId,
    ) -> Result<Option<ApiKeyRecord>, sqlx::Error> {
        fetch_key(self.store.pool(), workspace_id, key_id).await
    }

    /// Idempotent: revoking a revoked key changes nothing and reports `false`. `revoked_by`
    /// names a user only when a user revoked it.
    pub async fn revoke_in(
        &self,
        tx: &mut KeyTx<'_>,
        workspace_id: &WorkspaceId,
        key_id: &KeyId,
        actor: Actor<'_>,
        reason: &str,
        client: &ClientInfo,
    ) -> Result<Option<(ApiKeyRecord, bool)>, sqlx::Error> {
        let revoked_by = match actor {
            Actor::User(user_id) => Some(user_id),
            _ => None,
        };
        // Waits for a roll of this key in flight, so the record read below shows its
        // replacement: the answer matches the order in which the two took effect.
        self.lock_row(tx, workspace_id, key_id).await?;
        let changed = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1, revoked_by = $2, revoke_reason = $3 \
             WHERE workspace_id = $4 AND id = $5 AND revoked_at IS NULL",
        )
        .bind(Timestamp::now())
        .bind(revoked_by)
        .bind(reason)
        .bind(workspace_id)
        .bind(key_id)
        .execute(&mut ***tx)
        .await?
        .rows_affected()
            > 0;
        if changed {
            record_audit(
                tx,
                AuditEntry {
                    workspace_id: Some(workspace_id),
                    actor,
                    action: "api_key.revoked",
                    target_type: "api_key",
                    target_id: key_id,
                    details: Some(json!({ "reason": reason })),
                },
                client,
            )
            .await?;
        }
        let record = fetch_key(&mut ***tx, workspace_id, key_id).await?;
        if let Some(record) = record.as_ref().filter(|_| changed) {
            let event = Event::key(
                EventType::ApiKeyRevoked,
                workspace_id,
                record.key_ref(),
                actor,
                json!({ "reason": reason }),
            );
            emit(tx, event).await?;
        }
        Ok(record.map(|record| (record, changed)))
    }

    /// Replaces a key with a new one of the same name and scopes, and the same limit when the
    /// roller may set it (`limit_kept_on_roll`); the old key keeps working until
    /// `old_expires_at` (sooner if it was due to expire before). The caller commits only if
    /// `Rolled`.
    #[allow(clippy::too_many_arguments)]
    pub async fn roll_in(
        &self,
        tx: &mut KeyTx<'_>,
        workspace_id: &WorkspaceId,
        key_id: &KeyId,
        replacement: &NewApiKey<'_>,
        old_expires_at: Timestamp,
        roller: &Editor<'_>,
        client: &ClientInfo,
    ) -> Result<RollOutcome, sqlx::Error> {
        // Decided on the key as it is once every earlier roll or revoke of it has committed.
        self.lock_row(tx, workspace_id, key_id).await?;
        let Some(old) = fetch_key(&mut ***tx, workspace_id, key_id).await? else {
            return Ok(RollOutcome::NotFound);
        };
        // Before the status: a key rolled without grace has expired, yet it was rolled.
        if old.replaced_by.is_some() {
            return Ok(RollOutcome::AlreadyRolled);
        }
        if old.status != KeyStatus::Active {
            return Ok(RollOutcome::NotRollable(old.status));
        }
        let policy = KeyPolicyColumns::of(&old, Timestamp::now());
        let new = NewApiKey {
            name: &old.name,
            policy: &policy,
            scopes: old.scopes,
            rate_limit_per_minute: limit_kept_on_roll(
                roller.role,
                old.rate_limit_per_minute,
                roller.server_default_limit,
            ),
            ..*replacement
        };
        let new_id = match insert_key(tx, &new, Some(key_id)).await {
            Ok(id) => id,
            // Two rolls raced; the unique index on rolled_from let one through.
            Err(err) if super::is_unique_violation(&err) => return Ok(RollOutcome::AlreadyRolled),
            Err(err) => return Err(err),
        };
        self.move_credits_in(tx, key_id, &new_id).await?;
        let expires_at = match old.expires_at {
            Some(existing) if existing < old_expires_at => existing,
            _ => old_expires_at,
        };
        sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE workspace_id = $2 AND id = $3")
            .bind(expires_at)
            .bind(workspace_id)
            .bind(key_id)
            .execute(&mut ***tx)
            .await?;
        // The replacement is a key like any other: its history starts with its creation.
        record_audit(
            tx,
            AuditEntry {
                workspace_id: Some(workspace_id),
                actor: Actor::User(roller.user_id),
                action: "api_key.created",
                target_type: "api_key",
                target_id: &new_id,
                details: Some(json!({
                    "name": new.name,
                    "scopes": new.scopes,
                    "expiresAt": new.expires_at,
                    "rolledFrom": key_id,
                })),
            },
            client,
        )
        .await?;
        record_audit(
            tx,
            AuditEntry {
                workspace_id: Some(workspace_id),
                actor: Actor::User(roller.user_id),
                action: "api_key.rolled",
                target_type: "api_key",
                target_id: key_id,
                details: Some(json!({ "newKeyId": new_id, "oldExpiresAt": expires_at })),
            },
            client,
        )
        .await?;
        let new_record = fetch_key(&mut ***tx, workspace_id, &new_id).await?;
        let old_record = fetch_key(&mut ***tx, workspace_id, key_id).await?;
        if let (Some(new), Some(old)) = (&new_record, &old_record) {
            let extra = json!({
                "newKey": { "id": new.id, "name": new.name, "hint": new.hint },
                "oldExpiresAt": old.expires_at,
            });
            let event = Event::key(
                EventType::ApiKeyRolled,
                workspace_id,
                old.key_ref(),
                Actor::User(roller.user_id),
                extra,
            );
            emit(tx, event).await?;
        }
        match (new_record, old_record) {
            (Some(new), Some(old)) => Ok(RollOutcome::Rolled {
                new: Box::new(new),
                old: Box::new(old),
            }),
            _ => Err(sqlx::Error::RowNotFound),
        }
    }

    /// Applies a PATCH to a key as it is once earlier changes to it have committed: every
    /// field or none. The audit event names the fields that changed.
    pub async fn update_in(
        &self,
        tx: &mut KeyTx<'_>,
        workspace_id: &WorkspaceId,
        key_id: &KeyId,
        changes: &KeyChanges,
        editor: &Editor<'_>,
        client: &ClientInfo,
    ) -> Result<UpdateOutcome, sqlx::Error> {
        self.lock_row(tx, workspace_id, key_id).await?;
        let Some(current) = fetch_key(&mut ***tx, workspace_id, key_id).await? else {
            return Ok(UpdateOutcome::NotFound);
        };
        if !can_edit_key(editor.role, editor.user_id, &current.created_by.id) {
            return Ok(UpdateOutcome::NotFound);
        }
        if current.status == KeyStatus::Revoked {
            return Ok(UpdateOutcome::Inactive);
        }
        let changed = match changed_fields(&current, changes, editor) {
            Ok(changed) => changed,
            Err(refusal) => return Ok(UpdateOutcome::Refused(refusal)),
        };
        if changed.is_empty() {
            return Ok(UpdateOutcome::Updated {
                record: Box::new(current),
                changed,
            });
        }
        let now = Timestamp::now();
        let mut sql = Sql::new("UPDATE api_keys SET id = id");
        for field in &changed {
            match field {
                KeyField::Name => {
                    sql.push(", name = ").bind(changes.name.clone());
                }
                KeyField::Description => {
                    sql.push(", description = ")
                        .bind(changes.description.clone().flatten());
                }
                KeyField::Enabled => {
                    let disabled = changes.enabled == Some(false);
                    sql.push(", disabled_at = ").bind(disabled.then_some(now));
                }
                KeyField::ExpiresAt => {
                    sql.push(", expires_at = ")
                        .bind(changes.expires_at.flatten());
                }
                KeyField::AllowedIps => {
                    let column = changes.allowed_ips.as_ref().and_then(AllowedIps::to_column);
                    sql.push(", allowed_ips = ").bind(column);
                }
                KeyField::Meta => {
                    sql.push(", meta = ").bind(changes.meta.clone().flatten());
                }
                KeyField::ExternalId => {
                    sql.push(", external_id = ")
                        .bind(changes.external_id.clone().flatten());
                }
                KeyField::RateLimitPerMinute => {
                    sql.push(", rate_limit_per_minute = ")
                        .bind(changes.rate_limit_per_minute.flatten());
                }
                KeyField::Scopes => {
                    let column = changes.scopes.as_ref().and_then(ScopeSet::to_column);
                    sql.push(", scopes = ").bind(column);
                }
                KeyField::Credits => {}
            }
        }
        sql.push(" WHERE workspace_id = ")
            .bind(workspace_id)
            .push(" AND id = ")
            .bind(key_id);
        let (sql, args) = sql.finish()?;
        sqlx::query_with(&sql, args).execute(&mut ***tx).await?;
        if let Some(credits) = changes
            .credits
            .filter(|_| changed.contains(&KeyField::Credits))
        {
            self.store
                .credits()
                .change_in(tx, key_id, credits, now)
                .await?;
        }
        let names: Vec<&str> = changed.iter().map(|field| field.as_str()).collect();
        let mut details = json!({ "fields": names });
        if let Some(enabled) = changes
            .enabled
            .filter(|_| changed.contains(&KeyField::Enabled))
        {
            details["enabled"] = json!(enabled);
        }
        record_audit(
            tx,
            AuditEntry {
                workspace_id: Some(workspace_id),
                actor: Actor::User(editor.user_id),
                action: "api_key.updated",
                target_type: "api_key",
                target_id: key_id,
                details: Some(details.clone()),
            },
            client,
        )
        .await?;
        let record = fetch_key(&mut ***tx, workspace_id, key_id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        let event = Event::key(
            EventType::ApiKeyUpdated,
            workspace_id,
            record.key_ref(),
            Actor::User(editor.user_id),
            details,
        );
        emit(tx, event).await?;
        Ok(UpdateOutcome::Updated {
            record: Box::new(record),
            changed,
        })
    }

    /// A roll hands the key's credits to its replacement: the unleased ones and the refill.
    /// The old secret keeps only what instances already leased for it, for its grace period,
    /// so the two never spend one credit twice.
    async fn move_credits_in(
        &self,
        tx: &mut Tx<'_>,
        old: &KeyId,
        new: &KeyId,
    ) -> Result<(), sqlx::Error> {
        let Some(credits) = self.store.credits().for_update(tx, old).await? else {
            return Ok(());
        };
        let now = Timestamp::now();
        let pool = credits.pool.refreshed(credits.refill.as_ref(), now.0);
        sqlx::query(
            "UPDATE api_keys SET credits_remaining = 0, credits_period = $1, \
             credits_refill_amount = NULL, credits_refill_interval = NULL, \
             credits_refill_day = NULL WHERE id = $2",
        )
        .bind(pool.period)
        .bind(old)
        .execute(&mut **tx)
        .await?;
        let change = CreditsChange::Set {
            remaining: pool.remaining,
            refill: credits.refill,
        };
        self.store.credits().change_in(tx, new, change, now).await?;
        // "Low" stays measured against the budget the old key was given.
        sqlx::query(
            "UPDATE api_keys SET credits_initial = \
             (SELECT o.credits_initial FROM api_keys o WHERE o.id = $1) WHERE id = $2",
        )
        .bind(old)
        .bind(new)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// On PostgreSQL, holds the key's row until the transaction ends; on SQLite the
    /// transaction already holds the database's write lock (`Store::begin`).
    async fn lock_row(
        &self,
        tx: &mut Tx<'_>,
        workspace_id: &WorkspaceId,
        key_id: &KeyId,
    ) -> Result<(), sqlx::Error> {
        if self.store.backend() == super::Backend::Postgres {
            sqlx::query("SELECT id FROM api_keys WHERE workspace_id = $1 AND id = $2 FOR UPDATE")
                .bind(workspace_id)
                .bind(key_id)
                .fetch_optional(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Revokes the active keys among `leaks` (reported as leaked), each with an audit event
    /// and an `api_key.leaked` event naming where it was found, in the caller's transaction;
    /// returns their ids. One statement finds them whatever the mix, so the time taken says
    /// little about which keys exist.
    pub async fn revoke_leaked_in(
        &self,
        tx: &mut KeyTx<'_>,
        leaks: &[Leak],
        client: &ClientInfo,
    ) -> Result<Vec<KeyId>, sqlx::Error> {
        let mut sql = Sql::new("UPDATE api_keys SET revoked_at = ");
        sql.bind(Timestamp::now())
            .push(", revoke_reason = ")
            .bind("reported_leaked")
            .push(" WHERE revoked_at IS NULL AND digest IN (")
            .push_list(leaks, ", ", |sql, leak| {
                sql.bind(leak.digest.as_slice());
            })
            .push(") RETURNING id, workspace_id, name, hint, digest");
        let (sql, args) = sql.finish()?;
        let revoked: Vec<(KeyId, WorkspaceId, String, String, Vec<u8>)> =
            sqlx::query_as_with(&sql, args)
                .fetch_all(&mut ***tx)
                .await?;
        for (key_id, workspace_id, name, hint, digest) in &revoked {
            let leak = leaks.iter().find(|leak| leak.digest.as_slice() == digest);
            let source = leak.map_or(LeakSource::Report, |leak| leak.source);
            let url = leak.and_then(|leak| leak.url.as_deref());
            let details = json!({ "source": source.as_str(), "url": url });
            record_audit(
                tx,
                AuditEntry {
                    workspace_id: Some(workspace_id),
                    actor: Actor::Anonymous,
                    action: "api_key.reported_leaked",
                    target_type: "api_key",
                    target_id: key_id,
                    details: Some(details.clone()),
                },
                client,
            )
            .await?;
            let key = KeyRef {
                id: key_id,
                name,
                hint,
            };
            let event = Event::key(
                EventType::ApiKeyLeaked,
                workspace_id,
                key,
                Actor::Anonymous,
                details,
            );
            emit(tx, event).await?;
        }
        Ok(revoked.into_iter().map(|(key_id, ..)| key_id).collect())
    }

    /// Which of `digests` belong to keys of this server, whatever their status.
    pub async fn known_digests(&self, digests: &[[u8; 32]]) -> Result<Vec<Vec<u8>>, sqlx::Error> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new("SELECT digest FROM api_keys WHERE digest IN (");
        sql.push_list(digests, ", ", |sql, digest| {
            sql.bind(digest.as_slice());
        })
        .push(")");
        let (sql, args) = sql.finish()?;
        sqlx::query_scalar_with(&sql, args)
            .fetch_all(self.store.pool())
            .await
    }

    /// For the operator CLI, which knows a key id but maybe not its workspace.
    /// The id of the key whose secret has this digest (an operator revoking a leaked secret).
    pub async fn id_by_digest(&self, digest: &[u8; 32]) -> Result<Option<KeyId>, sqlx::Error> {
        sqlx::query_scalar("SELECT id FROM api_keys WHERE digest = $1")
            .bind(digest.as_slice())
            .fetch_optional(self.store.pool())
            .await
    }

    pub async fn workspace_of(&self, key_id: &KeyId) -> Result<Option<WorkspaceId>, sqlx::Error> {
        sqlx::query_scalar("SELECT workspace_id FROM api_keys WHERE id = $1")
            .bind(key_id)
            .fetch_optional(self.store.pool())
            .await
    }
}

async fn fetch_key<'e, E>(
    executor: E,
    workspace_id: &WorkspaceId,
    key_id: &KeyId,
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
