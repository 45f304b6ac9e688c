//! Configuration: every setting is a flag and an environment variable (also read from `.env`).
//! `value_name` repeats the variable's name so that clap's error for a bad value names it.

use crate::domain::api_key::KeyEnv;
use crate::domain::ids::WorkspaceId;
use crate::domain::time::parse_duration_secs;
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

impl Cli {
    /// Parses the process's arguments. `--help` never shows a setting's value from the
    /// environment: `DATABASE_URL` and `HEFFL_REDIS_URL` hold passwords.
    pub fn parse_args() -> Cli {
        use clap::FromArgMatches;
        let matches = Cli::command_without_env_values().get_matches();
        match Cli::from_arg_matches(&matches) {
            Ok(cli) => cli,
            Err(err) => err.exit(),
        }
    }

    /// The command line's definition with every environment value hidden from `--help`.
    pub fn command_without_env_values() -> clap::Command {
        use clap::CommandFactory;
        hide_env_values(Cli::command())
    }
}

fn hide_env_values(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| arg.hide_env_values(true))
        .mut_subcommands(hide_env_values)
}

/// Where a one-shot command's settings come from, at the end of its `--help`.
const SETTINGS_HELP: &str = "Settings (DATABASE_URL, HEFFL_KEY_ENV, ...) come from the environment or .env, as for `serve` (`heffl-api serve --help` lists them all).";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default). Every setting is also an environment variable.
    Serve(Box<Config>),
    /// Apply pending database migrations, listing each ("already at N" when none), and exit.
    #[command(after_help = SETTINGS_HELP)]
    Migrate {
        /// Only list the migrations applied and pending; change nothing.
        #[arg(long)]
        status: bool,
    },
    /// Create a workspace and its owner; prints one JSON line.
    #[command(after_help = SETTINGS_HELP)]
    Bootstrap {
        /// The workspace's name.
        #[arg(long)]
        workspace: String,
        /// The owner's email: they sign in with it.
        #[arg(long)]
        email: String,
        /// The owner's name (default: the part of the email before the @).
        #[arg(long)]
        name: Option<String>,
        /// Read the owner's password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Manage dashboard users.
    #[command(after_help = SETTINGS_HELP)]
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// List workspaces.
    #[command(after_help = SETTINGS_HELP)]
    Workspaces {
        #[command(subcommand)]
        command: WorkspacesCommand,
    },
    /// Add people to a workspace, or remove them, from the shell.
    #[command(after_help = SETTINGS_HELP)]
    Members {
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Inspect and revoke API keys when the dashboard is out of reach.
    #[command(after_help = SETTINGS_HELP)]
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Read the audit log from the shell.
    #[command(after_help = SETTINGS_HELP)]
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Write a consistent copy of the database to FILE while servers run: SQLite's `VACUUM
    /// INTO`, or `pg_dump --format=custom` for PostgreSQL (docs/operations.md, Backups).
    #[command(after_help = SETTINGS_HELP)]
    Backup {
        /// Where to write the copy; it must not exist yet.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List a workspace's keys (all statuses), one JSON object per line.
    #[command(after_help = SETTINGS_HELP)]
    List {
        /// The workspace's id (ws_…; `heffl-api workspaces list` shows them).
        #[arg(long)]
        workspace: WorkspaceId,
    },
    /// Revoke a key by its id, or by its secret when that leaked; idempotent.
    #[command(after_help = SETTINGS_HELP)]
    Revoke {
        /// The key's id (key_…; `keys list` shows them). Not a secret: use --secret-stdin.
        #[arg(required_unless_present = "secret_stdin")]
        key_id: Option<String>,
        /// Read a leaked secret (hk_…) from standard input, so it never shows in `ps` or in
        /// shell history: `heffl-api keys revoke --secret-stdin < leaked.txt`.
        #[arg(long, conflicts_with = "key_id")]
        secret_stdin: bool,
        /// Recorded as the revoke reason.
        #[arg(long, default_value = "operator")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Disable a user: they cannot sign in and their sessions end at once.
    #[command(after_help = SETTINGS_HELP)]
    Disable {
        /// The user's email.
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled user again.
    #[command(after_help = SETTINGS_HELP)]
    Enable {
        /// The user's email.
        #[arg(long)]
        email: String,
    },
    /// Create a user (in no workspace); prints one JSON line, with a generated password
    /// unless --password-stdin.
    #[command(after_help = SETTINGS_HELP)]
    Create {
        /// The new user's email: they sign in with it.
        #[arg(long)]
        email: String,
        /// The new user's name, as shown to their workspaces.
        #[arg(long)]
        name: String,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (a lost password); ends all their sessions.
    #[command(after_help = SETTINGS_HELP)]
    SetPassword {
        /// The user's email.
        #[arg(long)]
        email: String,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user: sessions, keys (revoked), memberships and invitations go, and the
    /// account is erased down to its id (the audit log keeps its references). Not the last
    /// owner of a workspace.
    #[command(after_help = SETTINGS_HELP)]
    Delete {
        /// The user's email.
        #[arg(long)]
        email: String,
    },
    /// List users, one JSON object per line.
    #[command(after_help = SETTINGS_HELP)]
    List,
}

#[derive(Debug, Subcommand)]
pub enum WorkspacesCommand {
    /// List workspaces, one JSON object per line.
    #[command(after_help = SETTINGS_HELP)]
    List,
    /// Rename a workspace.
    #[command(after_help = SETTINGS_HELP)]
    Rename {
        /// The workspace's id (ws_…).
        #[arg(long)]
        workspace: WorkspaceId,
        /// The new name.
        #[arg(long)]
        name: String,
    },
    /// Delete a workspace with its keys, leads, members' access and audit log; its keys stop
    /// working at once. Cannot be undone (but a backup can be restored).
    #[command(after_help = SETTINGS_HELP)]
    Delete {
        /// The workspace's id (ws_…).
        #[arg(long)]
        workspace: WorkspaceId,
        /// The workspace's current name, typed out, as a safeguard against the wrong id.
        #[arg(long)]
        confirm_name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print audit events since a time, oldest first, one JSON object per line.
    #[command(after_help = SETTINGS_HELP)]
    Export {
        /// RFC 3339 time or date (2025-01-15 means its midnight, UTC).
        #[arg(long)]
        since: String,
        /// Only this workspace's events (ws_…); default: every event.
        #[arg(long)]
        workspace: Option<WorkspaceId>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Add an existing user to a workspace with a role.
    #[command(after_help = SETTINGS_HELP)]
    Add {
        /// The workspace's id (ws_…).
        #[arg(long)]
        workspace: WorkspaceId,
        /// The email of an existing user (`heffl-api users create` makes one).
        #[arg(long)]
        email: String,
        /// owner, admin, member or viewer.
        #[arg(long)]
        role: String,
    },
    /// Remove a user from a workspace; their keys there are revoked.
    #[command(after_help = SETTINGS_HELP)]
    Remove {
        /// The workspace's id (ws_…).
        #[arg(long)]
        workspace: WorkspaceId,
        /// The member's email.
        #[arg(long)]
        email: String,
    },
}

/// The metrics listener's address, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsBind {
    Off,
    On(SocketAddr),
}

fn parse_metrics_bind(text: &str) -> Result<MetricsBind, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(MetricsBind::Off);
    }
    text.trim()
        .parse()
        .map(MetricsBind::On)
        .map_err(|_| format!("'{text}' is neither an address such as 127.0.0.1:9464 nor off"))
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
        default_value = "sqlite://heffl.db"
    )]
    pub database_url: String,

    /// Address and port to listen on.
    #[arg(
        long,
        env = "HEFFL_BIND",
        value_name = "HEFFL_BIND",
        default_value = "127.0.0.1:8080"
    )]
    pub bind: SocketAddr,

    /// Where Prometheus scrapes /metrics: its own listener, never the API's (`off`: nowhere).
    #[arg(
        long,
        env = "HEFFL_METRICS_BIND",
        value_name = "HEFFL_METRICS_BIND",
        default_value = "127.0.0.1:9464",
        value_parser = parse_metrics_bind)]
    pub metrics_bind: MetricsBind,

    /// Environment tag in every key this deployment issues and accepts (`hk_<tag>_...`).
    #[arg(
        long,
        env = "HEFFL_KEY_ENV",
        value_name = "HEFFL_KEY_ENV",
        default_value = "live"
    )]
    pub key_env: KeyEnv,

    /// How logs are written to stderr: `pretty` for a person at a terminal, `json` for a log
    /// shipper (one object per line). Which logs: the RUST_LOG filter (default `info`; for
    /// example RUST_LOG=info,heffl_api=debug).
    #[arg(
        long,
        env = "HEFFL_LOG_FORMAT",
        value_name = "HEFFL_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,

    /// How long a dashboard session lasts (e.g. 12h, 30m, 7d).
    #[arg(long, env = "HEFFL_SESSION_TTL", value_name = "HEFFL_SESSION_TTL", default_value = "12h", value_parser = parse_duration)]
    pub session_ttl: Duration,

    /// Comma-separated origins allowed to call /app/v1 from a browser (CORS). None by default.
    #[arg(long, env = "HEFFL_DASHBOARD_ORIGINS", value_name = "HEFFL_DASHBOARD_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub dashboard_origins: Vec<String>,

    /// Sign-in attempts allowed per minute for one (email, client address) pair, and (times
    /// three) for one client address. Never per email alone, so nobody can be locked out.
    #[arg(long, env = "HEFFL_LOGIN_ATTEMPTS_PER_MINUTE", value_name = "HEFFL_LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_attempts_per_minute: u32,

    /// Believe X-Forwarded-For from a proxy on this machine (127.0.0.0/8, ::1): the same as
    /// listing those in HEFFL_TRUSTED_PROXIES.
    #[arg(long, env = "HEFFL_TRUST_FORWARDED_FOR", value_name = "HEFFL_TRUST_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_forwarded_for: bool,

    /// Comma-separated addresses or CIDR blocks of your proxies and gateways. When the peer is
    /// one of them, the client is the right-most X-Forwarded-For entry that is not; these
    /// peers are also exempt from HEFFL_MAX_CONNECTIONS_PER_ADDRESS. None by default.
    #[arg(long, env = "HEFFL_TRUSTED_PROXIES", value_name = "HEFFL_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_trusted_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Most database connections in the pool.
    #[arg(long, env = "HEFFL_DB_MAX_CONNECTIONS", value_name = "HEFFL_DB_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub db_max_connections: u32,

    /// How long a request waits for a database connection before answering 503.
    #[arg(long, env = "HEFFL_DB_ACQUIRE_TIMEOUT", value_name = "HEFFL_DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,

    /// Longest a single SQL statement may run (PostgreSQL statement_timeout; SQLite busy timeout).
    #[arg(long, env = "HEFFL_DB_STATEMENT_TIMEOUT", value_name = "HEFFL_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_statement_timeout: Duration,

    /// How long `serve` keeps retrying (with backoff) a database it cannot reach at start-up,
    /// so that services may start in any order.
    #[arg(long, env = "HEFFL_DB_STARTUP_TIMEOUT", value_name = "HEFFL_DB_STARTUP_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub db_startup_timeout: Duration,

    /// How long audit events are kept (e.g. 400d); older ones are deleted hourly. Default:
    /// kept for ever.
    #[arg(long, env = "HEFFL_AUDIT_RETENTION", value_name = "HEFFL_AUDIT_RETENTION", value_parser = parse_duration)]
    pub audit_retention: Option<Duration>,

    /// Whether `serve` applies pending migrations at start-up (and logs each). `false` refuses
    /// to start while migrations are pending: upgrades then happen only by `heffl-api migrate`.
    #[arg(long, env = "HEFFL_AUTO_MIGRATE", value_name = "HEFFL_AUTO_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_migrate: bool,

    /// Longest a request may take before it is answered 503.
    #[arg(long, env = "HEFFL_REQUEST_TIMEOUT", value_name = "HEFFL_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Requests per minute per API key (0: no limit); a key's `rateLimitPerMinute` overrides it.
    #[arg(
        long,
        env = "HEFFL_RATE_LIMIT_PER_MINUTE",
        value_name = "HEFFL_RATE_LIMIT_PER_MINUTE",
        default_value_t = 60
    )]
    pub rate_limit_per_minute: u32,

    /// Failed API-key authentications per minute per client address before 429 (0: no limit).
    #[arg(
        long,
        env = "HEFFL_AUTH_FAILURES_PER_MINUTE",
        value_name = "HEFFL_AUTH_FAILURES_PER_MINUTE",
        default_value_t = 60
    )]
    pub auth_failures_per_minute: u32,

    /// Longest a cached key verification may be served without the database (the backstop;
    /// changes normally reach every instance within a second).
    #[arg(long, env = "HEFFL_CACHE_TTL", value_name = "HEFFL_CACHE_TTL", default_value = "10m", value_parser = parse_duration)]
    pub cache_ttl: Duration,

    /// Most key verifications kept in memory (0 turns the cache off).
    #[arg(
        long,
        env = "HEFFL_CACHE_CAPACITY",
        value_name = "HEFFL_CACHE_CAPACITY",
        default_value_t = 100_000
    )]
    pub cache_capacity: u64,

    /// How often gathered key usage (lastUsedAt, request counts) is written to the database.
    #[arg(long, env = "HEFFL_USAGE_FLUSH_INTERVAL", value_name = "HEFFL_USAGE_FLUSH_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub usage_flush_interval: Duration,

    /// Days of hourly per-key usage kept for the usage endpoints and charts (docs/api.md §11).
    #[arg(long, env = "HEFFL_USAGE_RETENTION_DAYS", value_name = "HEFFL_USAGE_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub usage_retention_days: u32,

    /// Let browsers use API keys on /api/v1 (requests with Origin or Sec-Fetch-Site). Off: such
    /// requests get 403 browser_use_blocked, since a key in a web page is a key for everyone.
    #[arg(long, env = "HEFFL_ALLOW_BROWSER_KEYS", value_name = "HEFFL_ALLOW_BROWSER_KEYS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_browser_keys: bool,

    /// Calls per minute per client address to the unauthenticated leaked-key endpoint.
    #[arg(
        long,
        env = "HEFFL_LEAK_REPORTS_PER_MINUTE",
        value_name = "HEFFL_LEAK_REPORTS_PER_MINUTE",
        default_value_t = 10
    )]
    pub leak_reports_per_minute: u32,

    /// Comma-separated scopes of other services (`service:action`) that keys may be created
    /// with, for forward auth (docs/api.md §13). None by default.
    #[arg(long, env = "HEFFL_EXTRA_SCOPES", value_name = "HEFFL_EXTRA_SCOPES", default_value = "", value_parser = parse_extra_scopes)]
    pub extra_scopes: crate::domain::scopes::ExtraScopes,
    /// A connection must send complete request headers within this long of opening (or of its
    /// first byte after an idle spell), or it is closed.
    #[arg(long, env = "HEFFL_HEADER_READ_TIMEOUT", value_name = "HEFFL_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// A keep-alive connection with no request for this long is closed.
    #[arg(long, env = "HEFFL_IDLE_TIMEOUT", value_name = "HEFFL_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Most client connections open at once; past it, a newcomer displaces the connection that
    /// has waited longest without a request in progress.
    #[arg(long, env = "HEFFL_MAX_CONNECTIONS", value_name = "HEFFL_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Most connections open at once from one client address (an IPv6 /64); a new one over it
    /// is closed at once. Trusted proxies are exempt.
    #[arg(long, env = "HEFFL_MAX_CONNECTIONS_PER_ADDRESS", value_name = "HEFFL_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: u32,

    /// A request body must arrive at 1 KB/s on average once this long has passed since its
    /// head was read, or the request is answered 408 and the connection closed.
    #[arg(long, env = "HEFFL_BODY_READ_TIMEOUT", value_name = "HEFFL_BODY_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// A PEM certificate chain: with HEFFL_TLS_KEY, `serve` speaks HTTPS itself (rustls). Both
    /// files are read again on SIGHUP, without dropping open connections.
    #[arg(
        long,
        env = "HEFFL_TLS_CERT",
        value_name = "HEFFL_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The PEM private key of HEFFL_TLS_CERT (PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "HEFFL_TLS_KEY",
        value_name = "HEFFL_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<std::path::PathBuf>,

    /// Most client addresses (IPv6: /64s) each throttle keeps a window for; past it, ended
    /// windows are dropped first, then arbitrary ones, so a flood of addresses cannot grow
    /// memory without bound.
    #[arg(long, env = "HEFFL_MAX_TRACKED_ADDRESSES", value_name = "HEFFL_MAX_TRACKED_ADDRESSES", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(16..))]
    pub max_tracked_addresses: u32,

    /// Share every limit with the other instances that use this Redis (redis://host:port/db);
    /// unset: limits are per instance.
    /// Checked by `serve` rather than here: clap would quote a bad value, password and all.
    #[arg(long, env = "HEFFL_REDIS_URL", value_name = "HEFFL_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Start of every Redis key this server writes, so that deployments (or tests) sharing
    /// one Redis stay apart.
    #[arg(
        long,
        env = "HEFFL_REDIS_PREFIX",
        value_name = "HEFFL_REDIS_PREFIX",
        default_value = "heffl:"
    )]
    pub redis_prefix: String,

    /// Let webhook endpoints use plain `http://` URLs (tests, or a receiver on a private
    /// network behind its own TLS). Off: `https://` only.
    #[arg(long, env = "HEFFL_WEBHOOK_ALLOW_HTTP", value_name = "HEFFL_WEBHOOK_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_http: bool,

    /// Let webhooks reach hosts that resolve to loopback, private, link-local or unspecified
    /// addresses. Off: such endpoints are refused when registered and at every delivery.
    #[arg(long, env = "HEFFL_WEBHOOK_ALLOW_PRIVATE", value_name = "HEFFL_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,

    /// Multiplies the gaps between webhook tries (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) and
    /// the 5 days after which a failing endpoint is disabled; for tests.
    #[arg(long, env = "HEFFL_WEBHOOK_RETRY_SCALE", value_name = "HEFFL_WEBHOOK_RETRY_SCALE", default_value_t = 1.0, value_parser = parse_scale)]
    pub webhook_retry_scale: f64,

    /// GitHub's secret-scanning public keys (their `public_keys` document, saved as a file;
    /// read again when it changes). Set: GitHub can report our keys it finds in public
    /// repositories at POST /api/v1/secret-scanning/github. Unset: that endpoint is 404.
    #[arg(
        long,
        env = "HEFFL_GITHUB_SECRET_SCANNING_KEYS",
        value_name = "HEFFL_GITHUB_SECRET_SCANNING_KEYS"
    )]
    pub github_secret_scanning_keys: Option<std::path::PathBuf>,
    /// Send invitation and password-reset emails through this server:
    /// smtp://[user:password@]host[:port] (STARTTLS when offered; add ?starttls=required to
    /// insist on it) or smtps://… (TLS from the start). Unset: invitations are links to hand
    /// over and passwords are reset by an operator.
    /// Checked by `serve` rather than here: clap would quote a bad value, password and all.
    #[arg(long, env = "HEFFL_SMTP_URL", value_name = "HEFFL_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// A PEM file of certificate authorities to trust for HEFFL_SMTP_URL's TLS besides the
    /// public ones: a relay with a certificate of your own CA.
    #[arg(long, env = "HEFFL_SMTP_CA_FILE", value_name = "HEFFL_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<std::path::PathBuf>,

    /// The sender of those emails, e.g. "heffl <noreply@example.com>" (required with
    /// HEFFL_SMTP_URL).
    #[arg(long, env = "HEFFL_SMTP_FROM", value_name = "HEFFL_SMTP_FROM")]
    pub smtp_from: Option<String>,

    /// Where people reach this server, for the links in emails (https://heffl.example.com;
    /// required with HEFFL_SMTP_URL).
    #[arg(long, env = "HEFFL_PUBLIC_URL", value_name = "HEFFL_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// How long to wait for in-flight requests at shutdown.
    #[arg(long, env = "HEFFL_SHUTDOWN_GRACE", value_name = "HEFFL_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl Config {
    /// The defaults, as if no flag or variable were set; the starting point for tests. The
    /// environment is left out on purpose: a stray `HEFFL_*` in a developer's shell must not
    /// change what the tests run against.
    pub fn defaults() -> Config {
        use clap::{CommandFactory, FromArgMatches};
        let command = Cli::command().mut_args(|arg| arg.env(None));
        match command
            .try_get_matches_from(["heffl-api"])
            .and_then(|matches| Cli::from_arg_matches(&matches))
        {
            Ok(cli) => cli.config,
            // Only a broken default value in the declarations above can get here.
            Err(err) => err.exit(),
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let secs = parse_duration_secs(text)?;
    if secs == 0 {
        return Err("must be greater than zero".into());
    }
    Ok(Duration::from_secs(secs))
}

fn parse_scale(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale > 0.0 && scale <= 1000.0 => Ok(scale),
        _ => Err("must be a number greater than 0 (1 is real time)".into()),
    }
}

fn parse_trusted_proxy(text: &str) -> Result<ipnet::IpNet, String> {
    crate::domain::net::parse_net(text)
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

/// An http(s) address, with a path if the server is behind one; links are made by appending
/// `/settings/developer#…`, so a trailing slash is dropped.
fn parse_public_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .map(|rest| rest.split('/').next().unwrap_or(""))
        .unwrap_or("");
    if host.is_empty()
        || host.contains('@')
        || url.contains(['?', '#'])
        || url.contains(char::is_whitespace)
    {
        return Err(format!(
            "'{text}' is not an address such as https://heffl.example.com"
        ));
    }
    Ok(url.to_owned())
}

fn parse_extra_scopes(text: &str) -> Result<crate::domain::scopes::ExtraScopes, String> {
    let names = text
        .split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(crate::domain::scopes::parse_extra_scope)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::domain::scopes::ExtraScopes::new(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        assert_eq!(
            parse_public_url("https://h.example.com/").as_deref(),
            Ok("https://h.example.com")
        );
        assert_eq!(
            parse_public_url("http://127.0.0.1:8080/heffl").as_deref(),
            Ok("http://127.0.0.1:8080/heffl")
        );
        for bad in [
            "h.example.com",
            "https://",
            "https://h/x?y",
            "https://u@h",
            "ftp://h",
        ] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_ignore_the_environment() {
        // A value that would abort start-up if it were read.
        std::env::set_var("HEFFL_KEY_ENV", "NOT A TAG");
        std::env::set_var("HEFFL_DB_MAX_CONNECTIONS", "77");
        let config = Config::defaults();
        std::env::remove_var("HEFFL_KEY_ENV");
        std::env::remove_var("HEFFL_DB_MAX_CONNECTIONS");
        assert_eq!(config.key_env.as_str(), "live");
        assert_eq!(config.db_max_connections, 10);
    }

    /// Every setting is in `.env.example` exactly once, and nothing else is (besides RUST_LOG).
    #[test]
    fn env_example_lists_every_setting_once() {
        use clap::CommandFactory;
        let example = include_str!("../.env.example");
        let listed: Vec<&str> = example
            .lines()
            .map(|line| line.trim_start_matches('#').trim())
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .filter(|name| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            })
            .collect();
        let command = Cli::command();
        let settings: Vec<String> = command
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .collect();
        for setting in &settings {
            let times = listed.iter().filter(|name| **name == setting).count();
            assert_eq!(times, 1, "{setting} appears {times} times in .env.example");
        }
        for name in &listed {
            assert!(
                *name == "RUST_LOG" || settings.iter().any(|s| s == name),
                "{name} is in .env.example but is no setting"
            );
        }
    }
}
