//! Key usage: the batched flush (request counts, `lastUsedAt`, hourly buckets) and the reads
//! behind the usage endpoints (docs/api.md §11).

use super::sql::Sql;
use super::{key_status, KeyStatus, Store};
use crate::domain::ids::{KeyId, UserId, WorkspaceId};
use crate::domain::time::Timestamp;
use crate::domain::usage_counts::{Counts, KeyUsage};

/// Keys per `UPDATE api_keys` statement (3 parameters each).
const KEY_CHUNK: usize = 500;
/// Key-hours per bucket upsert (6 parameters each): both well under the databases' parameter
/// limits, and one statement for any flush of fewer key-hours.
const BUCKET_CHUNK: usize = 2000;

/// A key and what it did over a period, for the workspace usage summary.
#[derive(Debug, Clone)]
pub struct KeyUsageTotal {
    pub id: KeyId,
    pub name: String,
    pub status: KeyStatus,
    pub total: i64,
}

const SUMS: &str = "CAST(SUM(success) AS BIGINT), CAST(SUM(client_error) AS BIGINT), \
     CAST(SUM(rate_limited) AS BIGINT), CAST(SUM(rejected) AS BIGINT)";

type CountsRow = (i64, i64, i64, i64, i64);

fn hourly(rows: Vec<CountsRow>) -> Vec<(i64, Counts)> {
    rows.into_iter()
        .map(|(hour, success, client_error, rate_limited, rejected)| {
            (
                hour,
                Counts {
                    success,
                    client_error,
                    rate_limited,
                    rejected,
                },
            )
        })
        .collect()
}

/// Keys' usage counts by hour, their sums and their pruning.
pub struct UsageRepo<'s> {
    store: &'s Store,
}

impl Store {
    pub fn usage(&self) -> UsageRepo<'_> {
        UsageRepo { store: self }
    }
}

impl UsageRepo<'_> {
    /// Adds gathered usage in one transaction: the keys' `request_count` and `last_used_at`,
    /// then the hourly buckets in one upsert (per `BUCKET_CHUNK` key-hours). A failed flush
    /// writes nothing, so retrying it cannot count twice.
    pub async fn add(&self, rows: &[(KeyId, KeyUsage)]) -> Result<(), sqlx::Error> {
        let used: Vec<(&str, i64, Timestamp)> = rows
            .iter()
            .filter_map(|(id, usage)| {
                usage
                    .last_used_at
                    .map(|at| (id.as_str(), usage.requests(), at))
            })
            .collect();
        let buckets: Vec<(&str, i64, Counts)> = rows
            .iter()
            .flat_map(|(id, usage)| {
                usage
                    .hours
                    .iter()
                    .map(move |(hour, counts)| (id.as_str(), *hour, *counts))
            })
            .collect();
        let mut tx = self.store.begin().await?;
        for chunk in used.chunks(KEY_CHUNK) {
            // VALUES columns are column1..3 in both SQLite and PostgreSQL.
            let mut sql = Sql::new(
                "UPDATE api_keys SET request_count = request_count + v.column2, \
                 last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < v.column3 \
                 THEN v.column3 ELSE last_used_at END FROM (VALUES ",
            );
            sql.push_list(chunk, ", ", |sql, &(key_id, requests, at)| {
                sql.push("(")
                    .bind(key_id)
                    .push(", ")
                    .bind(requests)
                    .push(", ")
                    .bind(at)
                    .push(")");
            })
            .push(") AS v WHERE api_keys.id = v.column1");
            let (sql, args) = sql.finish()?;
            sqlx::query_with(&sql, args).execute(&mut *tx).await?;
        }
        for chunk in buckets.chunks(BUCKET_CHUNK) {
            let mut sql = Sql::new(
                "INSERT INTO key_usage_hours \
                 (key_id, workspace_id, hour_start, success, client_error, rate_limited, rejected) \
                 SELECT v.column1, k.workspace_id, v.column2, v.column3, v.column4, v.column5, v.column6 \
                 FROM (VALUES ",
            );
            sql.push_list(chunk, ", ", |sql, &(key_id, hour, counts)| {
                sql.push("(").bind(key_id);
                for value in [
                    hour,
                    counts.success,
                    counts.client_error,
                    counts.rate_limited,
                    counts.rejected,
                ] {
                    sql.push(", ").bind(value);
                }
                sql.push(")");
            })
            // `WHERE true` lets SQLite tell the upsert's ON CONFLICT from a join constraint.
            .push(
                ") AS v JOIN api_keys k ON k.id = v.column1 WHERE true \
                 ON CONFLICT (key_id, hour_start) DO UPDATE SET \
                 success = key_usage_hours.success + excluded.success, \
                 client_error = key_usage_hours.client_error + excluded.client_error, \
                 rate_limited = key_usage_hours.rate_limited + excluded.rate_limited, \
                 rejected = key_usage_hours.rejected + excluded.rejected",
            );
            let (sql, args) = sql.finish()?;
            sqlx::query_with(&sql, args).execute(&mut *tx).await?;
        }
        let refusals: Vec<(&str, i64, &'static str, i64)> = rows
            .iter()
            .flat_map(|(id, usage)| {
                usage
                    .refusals
                    .iter()
                    .map(move |(hour, reason, n)| (id.as_str(), *hour, reason.as_str(), *n))
            })
            .collect();
        for chunk in refusals.chunks(BUCKET_CHUNK) {
            let mut sql = Sql::new(
                "INSERT INTO key_usage_refusals (key_id, workspace_id, hour_start, reason, requests) \
                 SELECT v.column1, k.workspace_id, v.column2, v.column3, v.column4 FROM (VALUES ",
            );
            sql.push_list(chunk, ", ", |sql, &(key_id, hour, reason, requests)| {
                sql.push("(")
                    .bind(key_id)
                    .push(", ")
                    .bind(hour)
                    .push(", ")
                    .bind(reason)
                    .push(", ")
                    .bind(requests)
                    .push(")");
            })
            .push(
                ") AS v JOIN api_keys k ON k.id = v.column1 WHERE true \
                 ON CONFLICT (key_id, hour_start, reason) DO UPDATE SET \
                 requests = key_usage_refusals.requests + excluded.requests",
            );
            let (sql, args) = sql.finish()?;
            sqlx::query_with(&sql, args).execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// Refused requests in `[from, to)` by reason, most first: of one key, or of the
    /// workspace's keys (or `creator`'s only).
    pub async fn refusals_by_reason(
        &self,
        workspace_id: &WorkspaceId,
        key_id: Option<&KeyId>,
        creator: Option<&UserId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let mut sql = Sql::new(
            "SELECT reason, CAST(SUM(requests) AS BIGINT) AS requests FROM key_usage_refusals \
             WHERE workspace_id = ",
        );
        sql.bind(workspace_id)
            .push(" AND hour_start >= ")
            .bind(from)
            .push(" AND hour_start < ")
            .bind(to);
        if let Some(key_id) = key_id {
            sql.push(" AND key_id = ").bind(key_id);
        }
        if let Some(creator) = creator {
            sql.push(" AND key_id IN (SELECT id FROM api_keys WHERE workspace_id = ")
                .bind(workspace_id)
                .push(" AND created_by = ")
                .bind(creator)
                .push(")");
        }
        sql.push(" GROUP BY reason ORDER BY requests DESC, reason");
        let (sql, args) = sql.finish()?;
        sqlx::query_as_with(&sql, args)
            .fetch_all(self.store.pool())
            .await
    }

    /// One key's hourly buckets in `[from, to)`.
    pub async fn key_hours(
        &self,
        workspace_id: &WorkspaceId,
        key_id: &KeyId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(i64, Counts)>, sqlx::Error> {
        let rows: Vec<CountsRow> = sqlx::query_as(
            "SELECT hour_start, success, client_error, rate_limited, rejected FROM key_usage_hours \
             WHERE workspace_id = $1 AND key_id = $2 AND hour_start >= $3 AND hour_start < $4 \
             ORDER BY hour_start",
        )
        .bind(workspace_id)
        .bind(key_id)
        .bind(from)
        .bind(to)
        .fetch_all(self.store.pool())
        .await?;
        Ok(hourly(rows))
    }

    /// The workspace's hourly buckets in `[from, to)`, summed over its keys, or over the keys
    /// of `creator` only.
    pub async fn workspace_hours(
        &self,
        workspace_id: &WorkspaceId,
        creator: Option<&UserId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(i64, Counts)>, sqlx::Error> {
        let mut sql = Sql::new(format!(
            "SELECT hour_start, {SUMS} FROM key_usage_hours WHERE workspace_id = "
        ));
        sql.bind(workspace_id)
            .push(" AND hour_start >= ")
            .bind(from)
            .push(" AND hour_start < ")
            .bind(to);
        if let Some(creator) = creator {
            sql.push(" AND key_id IN (SELECT id FROM api_keys WHERE workspace_id = ")
                .bind(workspace_id)
                .push(" AND created_by = ")
                .bind(creator)
                .push(")");
        }
        sql.push(" GROUP BY hour_start ORDER BY hour_start");
        let (sql, args) = sql.finish()?;
        let rows: Vec<CountsRow> = sqlx::query_as_with(&sql, args)
            .fetch_all(self.store.pool())
            .await?;
        Ok(hourly(rows))
    }

    /// Each key of the workspace (or of `creator`) with its total in `[from, to)`; busiest
    /// first, then newest.
    pub async fn totals_by_key(
        &self,
        workspace_id: &WorkspaceId,
        creator: Option<&UserId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<KeyUsageTotal>, sqlx::Error> {
        let mut sql = Sql::new(
            "SELECT k.id, k.name, k.revoked_at, k.expires_at, \
             CAST(COALESCE(SUM(u.success + u.client_error + u.rate_limited + u.rejected), 0) AS BIGINT) AS total \
             FROM api_keys k LEFT JOIN key_usage_hours u \
             ON u.key_id = k.id AND u.workspace_id = k.workspace_id AND u.hour_start >= ",
        );
        sql.bind(from)
            .push(" AND u.hour_start < ")
            .bind(to)
            .push(" WHERE k.workspace_id = ")
            .bind(workspace_id);
        if let Some(creator) = creator {
            sql.push(" AND k.created_by = ").bind(creator);
        }
        sql.push(
            " GROUP BY k.id, k.name, k.revoked_at, k.expires_at, k.created_at \
             ORDER BY total DESC, k.created_at DESC, k.id",
        );
        type Row = (KeyId, String, Option<Timestamp>, Option<Timestamp>, i64);
        let (sql, args) = sql.finish()?;
        let rows: Vec<Row> = sqlx::query_as_with(&sql, args)
            .fetch_all(self.store.pool())
            .await?;
        let now = Timestamp::now();
        Ok(rows
            .into_iter()
            .map(|(id, name, revoked_at, expires_at, total)| KeyUsageTotal {
                id,
                name,
                status: key_status(revoked_at, expires_at, now),
                total,
            })
            .collect())
    }

    /// Drops buckets that started before `older_than` (the retention period).
    pub async fn prune(&self, older_than: Timestamp) -> Result<u64, sqlx::Error> {
        let result = sqlx::query("DELETE FROM key_usage_hours WHERE hour_start < $1")
            .bind(older_than)
            .execute(self.store.pool())
            .await?;
        let refusals = sqlx::query("DELETE FROM key_usage_refusals WHERE hour_start < $1")
            .bind(older_than)
            .execute(self.store.pool())
            .await?;
        Ok(result.rows_affected() + refusals.rows_affected())
    }
}
