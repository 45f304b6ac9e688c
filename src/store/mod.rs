//! The storage interface. One `Store` serves both databases through sqlx's `Any` driver: the
//! SQL is written once in the dialect both share (`$n` parameters, `RETURNING`, `ON CONFLICT`),
//! each database keeps its own migrations, and the few real differences are `Backend` methods.
//! Every query of workspace data names its workspace in the WHERE clause.

mod api_keys;
mod audit;
mod credits;
mod invitations;
mod key_tx;
mod leads;
mod members;
mod password_resets;
mod schema;
mod sessions;
mod sql;
mod usage;
mod users;
mod webhooks;
mod workspaces;

pub use api_keys::*;
pub use audit::*;
pub use credits::*;
pub use invitations::*;
pub use key_tx::{AppliesKeyChanges, KeyTx, NOTIFY_CHANNEL};
pub use leads::*;
pub use members::*;
pub use password_resets::*;
pub use schema::*;
pub use usage::*;
pub use users::*;
pub use webhooks::*;
pub use workspaces::*;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// Row locks for read-check-write sequences (the last-owner rule). SQLite needs none: it
    /// takes the database write lock, and a stale snapshot fails with SQLITE_BUSY instead.
    fn for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("DATABASE_URL must start with sqlite:// or postgres://")]
    UnknownScheme,
    #[error("DATABASE_URL is not a valid database URL: {0}")]
    InvalidUrl(sqlx::Error),
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL only: a pool of the native driver for the key lookup of a cache miss, the one
    /// query on the hot path. Through the `Any` driver it cost several times as much CPU
    /// (docs/dev/performance.md). Same database (the primary), same settings, same TLS; concurrent
    /// misses share one query (`verify::lookup_batch`).
    key_lookups: Option<PgPool>,
    /// Kept for the PostgreSQL change listener, which needs a connection of its own.
    url: Arc<str>,
}

impl Store {
    /// Builds the pool without connecting: start-up and `/readyz` find out whether the database
    /// answers, and the pool reconnects by itself when it comes back.
    pub fn connect_lazy(url: &str, settings: &PoolSettings) -> Result<Store, ConnectError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url).ok_or(ConnectError::UnknownScheme)?;
        let url = match backend {
            // Create the file on first run unless the operator chose a mode.
            Backend::Sqlite if !url.contains("mode=") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(ConnectError::InvalidUrl)?;
        let statement_timeout_ms = settings.statement_timeout.as_millis();
        let key_lookups = match backend {
            Backend::Postgres => Some(key_lookup_pool(&url, settings)?),
            Backend::Sqlite => None,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(move |conn, _meta| {
                let setup = match backend {
                    Backend::Sqlite => format!(
                        "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                         PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = {statement_timeout_ms};"
                    ),
                    Backend::Postgres => format!(
                        "SET statement_timeout = {statement_timeout_ms}; SET lock_timeout = {statement_timeout_ms};"
                    ),
                };
                Box::pin(async move {
                    conn.execute(sqlx::raw_sql(&setup)).await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        Ok(Store {
            pool,
            backend,
            key_lookups,
            url: Arc::from(url.as_str()),
        })
    }

    /// SQLite only: a consistent copy of the database in `path`, made while others write.
    pub async fn vacuum_into(&self, path: &str) -> Result<(), sqlx::Error> {
        sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(self.pool())
            .await
            .map(|_| ())
    }

    /// Applies what is pending (see `schema` for the named, logged form the CLI uses).
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        self.apply_migrations().await.map(|_| ())
    }

    /// Where the database is, for messages: `PostgreSQL at host:port` or `SQLite at path`,
    /// never the credentials the URL may carry.
    pub fn location(&self) -> String {
        describe_location(&self.url)
    }

    /// One connection of its own, outside the pool, closed again: the pool reports a database
    /// that refuses connections only as "timed out", and an operator needs the real cause.
    pub async fn probe_connection(&self, timeout: Duration) -> Result<(), sqlx::Error> {
        use sqlx::Connection;
        let connecting = sqlx::AnyConnection::connect(&self.url);
        match tokio::time::timeout(timeout, connecting).await {
            Ok(connection) => connection?.close().await,
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// For the store's own modules and `verify`; the rest of the server uses the repositories,
    /// and tests open a pool of their own.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool's open connections and how many of them are idle, for `/metrics`.
    pub fn pool_connections(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// The one way to open a transaction: every transaction here writes, and most decide what
    /// to write from what they read first. On SQLite a deferred transaction that reads and then
    /// writes cannot wait for a concurrent writer (SQLITE_BUSY at once, whatever the busy
    /// timeout, which would surface as a 503); BEGIN IMMEDIATE takes the write lock up front and
    /// waits its turn. PostgreSQL callers that must see a row unchanged lock it
    /// (`ApiKeyRepo::lock_row`). A test in `tests/integration/layers.rs` finds any other `begin`.
    pub(crate) async fn begin(&self) -> Result<Tx<'static>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub async fn close(&self) {
        if let Some(pool) = &self.key_lookups {
            pool.close().await;
        }
        self.pool.close().await;
    }

    /// PostgreSQL: the native pool for the key lookup (`verify::lookup_batch`).
    pub(crate) fn key_lookups(&self) -> Option<&PgPool> {
        self.key_lookups.as_ref()
    }
}

/// The native PostgreSQL pool for key lookups. No test query before handing out a connection
/// (a round trip per lookup, as much as the lookup itself): a connection found broken is
/// replaced and the lookup, a read, retried once (`verify::lookup_batch`).
fn key_lookup_pool(url: &str, settings: &PoolSettings) -> Result<PgPool, ConnectError> {
    let options = PgConnectOptions::from_str(url).map_err(ConnectError::InvalidUrl)?;
    let statement_timeout_ms = settings.statement_timeout.as_millis();
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            let setup = format!("SET statement_timeout = {statement_timeout_ms};");
            Box::pin(async move {
                conn.execute(sqlx::raw_sql(&setup)).await?;
                Ok(())
            })
        })
        .connect_lazy_with(options))
}

/// A transaction on whichever database is in use.
pub type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Times one database operation for `heffl_db_query_duration_seconds{operation}` when
/// dropped, however the operation ends. Operations are a closed set of names.
pub struct QueryTimer {
    operation: &'static str,
    started: std::time::Instant,
}

impl QueryTimer {
    pub fn start(operation: &'static str) -> QueryTimer {
        QueryTimer {
            operation,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for QueryTimer {
    fn drop(&mut self) {
        metrics::histogram!("heffl_db_query_duration_seconds", "operation" => self.operation)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// A PostgreSQL URL without its password, and the password (percent-decoded), so that a
/// child process gets it in its environment rather than in its arguments.
pub fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let Some((user, password)) = userinfo.split_once(':') else {
        return (url.to_owned(), None);
    };
    (
        format!("{scheme}://{user}@{host}{tail}"),
        Some(percent_decode(password)),
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match (bytes.get(i), bytes.get(i + 1..i + 3)) {
            (Some(b'%'), Some(hex)) => std::str::from_utf8(hex)
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.extend(bytes.get(i).copied());
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The SQLite file a URL names when it does not exist (an in-memory database never is
/// missing); `None` for PostgreSQL, whose server reports a missing database itself.
pub fn missing_sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use sqlx::sqlite::SqliteConnectOptions;
    if Backend::from_url(url) != Some(Backend::Sqlite)
        || url.contains(":memory:")
        || url.contains("mode=memory")
    {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    (!path.exists()).then(|| path.to_path_buf())
}

fn describe_location(url: &str) -> String {
    use sqlx::postgres::PgConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    match Backend::from_url(url) {
        Some(Backend::Postgres) => match PgConnectOptions::from_str(url) {
            Ok(options) => format!(
                "PostgreSQL at {}:{}",
                options.get_host(),
                options.get_port()
            ),
            Err(_) => "PostgreSQL".to_owned(),
        },
        Some(Backend::Sqlite) => match SqliteConnectOptions::from_str(url) {
            Ok(options) => format!("SQLite at {}", options.get_filename().display()),
            Err(_) => "SQLite".to_owned(),
        },
        None => "the database".to_owned(),
    }
}

#[cfg(test)]
mod location_tests {
    use super::{describe_location, split_password};

    #[test]
    fn a_password_leaves_the_url_decoded() {
        assert_eq!(
            split_password("postgres://heffl:p%40ss%3Aw@db.internal:5432/heffl?sslmode=require"),
            (
                "postgres://heffl@db.internal:5432/heffl?sslmode=require".to_owned(),
                Some("p@ss:w".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://heffl@db/heffl"),
            ("postgres://heffl@db/heffl".to_owned(), None)
        );
        assert_eq!(split_password("postgres://db/x").1, None);
    }

    #[test]
    fn names_host_and_port_but_never_the_password() {
        let text = describe_location("postgres://app:s3cret@db.internal:6543/heffl");
        assert_eq!(text, "PostgreSQL at db.internal:6543");
        assert_eq!(
            describe_location("sqlite://data/heffl.db?mode=rwc"),
            "SQLite at data/heffl.db"
        );
    }
}
