//! Configuration: every setting is a flag and an environment variable (also read from `.env`).
//! `value_name` repeats the variable's name so that clap's error for a bad value names it.

use crate::api_key::KeyEnv;
use crate::time::parse_duration_secs;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "heffl-api",
    version,
    about = "Workspace-scoped API keys over HTTP"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create a workspace and its owner; prints one JSON line.
    Bootstrap {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// Read the owner's password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Manage dashboard users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Inspect and revoke API keys when the dashboard is out of reach.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List a workspace's keys (all statuses), one JSON object per line.
    List {
        #[arg(long)]
        workspace: String,
    },
    /// Revoke a key by its id (key_...); idempotent.
    Revoke {
        key_id: String,
        /// Recorded as the revoke reason.
        #[arg(long, default_value = "operator")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Disable a user: they cannot sign in and their sessions end at once.
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled user again.
    Enable {
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// sqlite://PATH (created on first run) or postgres://...
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        default_value = "sqlite://heffl.db",
        global = true
    )]
    pub database_url: String,

    /// Address and port to listen on.
    #[arg(
        long,
        env = "HEFFL_BIND",
        value_name = "HEFFL_BIND",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub bind: SocketAddr,

    /// Environment tag in every key this deployment issues and accepts (`hk_<tag>_...`).
    #[arg(
        long,
        env = "HEFFL_KEY_ENV",
        value_name = "HEFFL_KEY_ENV",
        default_value = "live",
        global = true
    )]
    pub key_env: KeyEnv,

    #[arg(
        long,
        env = "HEFFL_LOG_FORMAT",
        value_name = "HEFFL_LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,

    /// How long a dashboard session lasts (e.g. 12h, 30m, 7d).
    #[arg(long, env = "HEFFL_SESSION_TTL", value_name = "HEFFL_SESSION_TTL", default_value = "12h", value_parser = parse_duration, global = true)]
    pub session_ttl: Duration,

    /// Comma-separated origins allowed to call /app/v1 from a browser (CORS). None by default.
    #[arg(long, env = "HEFFL_DASHBOARD_ORIGINS", value_name = "HEFFL_DASHBOARD_ORIGINS", value_delimiter = ',', value_parser = parse_origin, global = true)]
    pub dashboard_origins: Vec<String>,

    /// Login attempts allowed per minute for one email, and (times three) for one client address.
    #[arg(long, env = "HEFFL_LOGIN_ATTEMPTS_PER_MINUTE", value_name = "HEFFL_LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub login_attempts_per_minute: u32,

    /// Take the client address from the last X-Forwarded-For entry (only behind a proxy you run).
    #[arg(long, env = "HEFFL_TRUST_FORWARDED_FOR", value_name = "HEFFL_TRUST_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub trust_forwarded_for: bool,

    /// Most database connections in the pool.
    #[arg(long, env = "HEFFL_DB_MAX_CONNECTIONS", value_name = "HEFFL_DB_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub db_max_connections: u32,

    /// How long a request waits for a database connection before answering 503.
    #[arg(long, env = "HEFFL_DB_ACQUIRE_TIMEOUT", value_name = "HEFFL_DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = parse_duration, global = true)]
    pub db_acquire_timeout: Duration,

    /// Longest a single SQL statement may run (PostgreSQL statement_timeout; SQLite busy timeout).
    #[arg(long, env = "HEFFL_DB_STATEMENT_TIMEOUT", value_name = "HEFFL_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration, global = true)]
    pub db_statement_timeout: Duration,

    /// Longest a request may take before it is answered 503.
    #[arg(long, env = "HEFFL_REQUEST_TIMEOUT", value_name = "HEFFL_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true)]
    pub request_timeout: Duration,

    /// Requests per minute per API key (0: no limit); a key's `rateLimitPerMinute` overrides it.
    #[arg(
        long,
        env = "HEFFL_RATE_LIMIT_PER_MINUTE",
        value_name = "HEFFL_RATE_LIMIT_PER_MINUTE",
        default_value_t = 60,
        global = true
    )]
    pub rate_limit_per_minute: u32,

    /// Failed API-key authentications per minute per client address before 429 (0: no limit).
    #[arg(
        long,
        env = "HEFFL_AUTH_FAILURES_PER_MINUTE",
        value_name = "HEFFL_AUTH_FAILURES_PER_MINUTE",
        default_value_t = 60,
        global = true
    )]
    pub auth_failures_per_minute: u32,

    /// Longest a cached key verification may be served without the database (the backstop;
    /// changes normally reach every instance within a second).
    #[arg(long, env = "HEFFL_CACHE_TTL", value_name = "HEFFL_CACHE_TTL", default_value = "60s", value_parser = parse_duration, global = true)]
    pub cache_ttl: Duration,

    /// Most key verifications kept in memory (0 turns the cache off).
    #[arg(
        long,
        env = "HEFFL_CACHE_CAPACITY",
        value_name = "HEFFL_CACHE_CAPACITY",
        default_value_t = 100_000,
        global = true
    )]
    pub cache_capacity: u64,

    /// How often gathered key usage (lastUsedAt, request counts) is written to the database.
    #[arg(long, env = "HEFFL_USAGE_FLUSH_INTERVAL", value_name = "HEFFL_USAGE_FLUSH_INTERVAL", default_value = "5s", value_parser = parse_duration, global = true)]
    pub usage_flush_interval: Duration,

    /// Let browsers use API keys on /api/v1 (requests with Origin or Sec-Fetch-Site). Off: such
    /// requests get 403 browser_use_blocked, since a key in a web page is a key for everyone.
    #[arg(long, env = "HEFFL_ALLOW_BROWSER_KEYS", value_name = "HEFFL_ALLOW_BROWSER_KEYS", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub allow_browser_keys: bool,

    /// Calls per minute per client address to the unauthenticated leaked-key endpoint.
    #[arg(
        long,
        env = "HEFFL_LEAK_REPORTS_PER_MINUTE",
        value_name = "HEFFL_LEAK_REPORTS_PER_MINUTE",
        default_value_t = 10,
        global = true
    )]
    pub leak_reports_per_minute: u32,

    /// Share every limit with the other instances that use this Redis (redis://host:port/db);
    /// unset: limits are per instance.
    /// Checked by `serve` rather than here: clap would quote a bad value, password and all.
    #[arg(
        long,
        env = "HEFFL_REDIS_URL",
        value_name = "HEFFL_REDIS_URL",
        global = true
    )]
    pub redis_url: Option<String>,

    /// Start of every Redis key this server writes, so that deployments (or tests) sharing
    /// one Redis stay apart.
    #[arg(
        long,
        env = "HEFFL_REDIS_PREFIX",
        value_name = "HEFFL_REDIS_PREFIX",
        default_value = "heffl:",
        global = true
    )]
    pub redis_prefix: String,

    /// How long to wait for in-flight requests at shutdown.
    #[arg(long, env = "HEFFL_SHUTDOWN_GRACE", value_name = "HEFFL_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration, global = true)]
    pub shutdown_grace: Duration,
}

impl Config {
    /// The defaults, as if no flag or variable were set; the starting point for tests.
    pub fn defaults() -> Config {
        Cli::parse_from(["heffl-api"]).config
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let secs = parse_duration_secs(text)?;
    if secs == 0 {
        return Err("must be greater than zero".into());
    }
    Ok(Duration::from_secs(secs))
}

fn parse_origin(text: &str) -> Result<String, String> {
    let origin = text.trim().trim_end_matches('/');
    let valid_scheme = origin.starts_with("http://") || origin.starts_with("https://");
    let host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    if !valid_scheme
        || host.is_empty()
        || host.contains('/')
        || origin.contains(char::is_whitespace)
    {
        return Err(format!(
            "'{text}' is not an origin such as https://app.example.com"
        ));
    }
    Ok(origin.to_owned())
}
