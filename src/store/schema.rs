//! The schema's version: which migrations this binary knows, which the database has, and
//! applying the pending ones on purpose. Upgrades happen only when `serve` or `migrate` say so
//! (docs/operations.md), and a database newer than the binary (a rolling upgrade, a rollback)
//! is named with both versions instead of failing on sqlx's "previously applied but missing".

use super::{Backend, Store, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
use sqlx::migrate::{MigrateError, Migrator};

/// One migration, by its number and name (`7 key policies`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationName {
    pub version: i64,
    pub description: String,
}

impl std::fmt::Display for MigrationName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.version, self.description)
    }
}

/// What the binary knows against what the database has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    pub known: Vec<MigrationName>,
    /// Successfully applied versions, in order.
    pub applied: Vec<i64>,
}

impl SchemaStatus {
    /// Known, not applied.
    pub fn pending(&self) -> Vec<&MigrationName> {
        self.known
            .iter()
            .filter(|m| !self.applied.contains(&m.version))
            .collect()
    }

    /// Applied, not known: written by a newer binary.
    pub fn unknown_applied(&self) -> Vec<i64> {
        self.applied
            .iter()
            .copied()
            .filter(|v| !self.known.iter().any(|m| m.version == *v))
            .collect()
    }

    /// The database's schema version: its newest migration (0: none).
    pub fn database_version(&self) -> i64 {
        self.applied.iter().copied().max().unwrap_or(0)
    }

    /// The newest migration this binary knows.
    pub fn binary_version(&self) -> i64 {
        self.known.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// A database with migrations this binary does not know (a newer release wrote them).
    pub fn is_newer_than_binary(&self) -> bool {
        !self.unknown_applied().is_empty()
    }

    /// A database no migration has touched yet (just created).
    pub fn is_fresh(&self) -> bool {
        self.applied.is_empty()
    }
}

impl Store {
    fn migrator(&self) -> &'static Migrator {
        match self.backend() {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    pub async fn schema_status(&self) -> Result<SchemaStatus, sqlx::Error> {
        let known = self
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| MigrationName {
                version: m.version,
                description: m.description.to_string(),
            })
            .collect();
        let exists_sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_name = '_sqlx_migrations' AND table_schema = current_schema()"
            }
        };
        let exists: i64 = sqlx::query_scalar(exists_sql)
            .fetch_one(self.pool())
            .await?;
        let applied = if exists == 0 {
            Vec::new()
        } else {
            sqlx::query_scalar(
                "SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version",
            )
            .fetch_all(self.pool())
            .await?
        };
        Ok(SchemaStatus { known, applied })
    }

    /// Applies the pending migrations and names them. Migrations the binary does not know are
    /// left alone (they stay additive, so an older binary runs on a newer schema).
    pub async fn apply_migrations(&self) -> Result<Vec<MigrationName>, MigrateError> {
        let before = self.schema_status().await?;
        let pending: Vec<MigrationName> = before.pending().into_iter().cloned().collect();
        if pending.is_empty() {
            return Ok(pending);
        }
        let base = self.migrator();
        let migrator = Migrator {
            migrations: base.migrations.clone(),
            ignore_missing: true,
            locking: base.locking,
            no_tx: base.no_tx,
        };
        migrator.run(self.pool()).await?;
        Ok(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(known: &[i64], applied: &[i64]) -> SchemaStatus {
        SchemaStatus {
            known: known
                .iter()
                .map(|v| MigrationName {
                    version: *v,
                    description: format!("m{v}"),
                })
                .collect(),
            applied: applied.to_vec(),
        }
    }

    #[test]
    fn pending_newer_and_versions() {
        let behind = status(&[1, 2, 3], &[1, 2]);
        assert_eq!(behind.pending().len(), 1);
        assert_eq!((behind.database_version(), behind.binary_version()), (2, 3));
        assert!(!behind.is_newer_than_binary());
        let ahead = status(&[1, 2], &[1, 2, 3]);
        assert!(ahead.pending().is_empty());
        assert_eq!(ahead.unknown_applied(), vec![3]);
        assert!(ahead.is_newer_than_binary());
        assert!(status(&[1], &[]).is_fresh());
    }
}
