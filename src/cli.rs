//! The operator commands. Each reads the same configuration as `serve`.

use crate::config::{
    AuditCommand, Cli, Command, Config, KeysCommand, MembersCommand, UsersCommand,
    WorkspacesCommand,
};
use crate::domain::api_key::{self, KeyEnv};
use crate::domain::ids::{KeyId, WorkspaceId};
use crate::domain::password;
use crate::domain::permissions::Role;
use crate::domain::time::Timestamp;
use crate::domain::validate::Issues;
use crate::http::{self, AppState};
use crate::store::{
    Actor, AuditEventRow, BootstrapOutcome, ClientInfo, KeyFilter, MemberActor, MemberChange,
    NewUser, PasswordChange, PoolSettings, SchemaStatus, StatusFilter, Store, UserDeletion,
    WorkspaceRow,
};
use crate::verify::Verifier;
use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A failure to report to the operator on stderr, with a non-zero exit: 2 when the command
/// cannot run against this database at all (missing, or at another schema), else 1.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    message: String,
    exit: u8,
}

fn fail(message: impl Into<String>) -> CliError {
    CliError {
        message: message.into(),
        exit: 1,
    }
}

fn wrong_database(message: impl Into<String>) -> CliError {
    CliError {
        message: message.into(),
        exit: 2,
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    let json = cli.config.log_format == crate::config::LogFormat::Json
        || matches!(&cli.command, Some(Command::Serve(c)) if c.log_format == crate::config::LogFormat::Json);
    match dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Under the JSON log format a fatal error is one more JSON line for the collector.
            if json {
                tracing::error!(exit = err.exit, error = %err, "fatal");
            } else {
                eprintln!("error: {err}");
            }
            ExitCode::from(err.exit)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let config = cli.config;
    match cli.command {
        None => serve(config).await,
        Some(Command::Serve(config)) => serve(*config).await,
        Some(Command::Migrate { status }) => migrate(&config, status).await,
        Some(Command::Bootstrap {
            workspace,
            email,
            name,
            password_stdin,
        }) => bootstrap(&config, &workspace, &email, name.as_deref(), password_stdin).await,
        Some(Command::Users { command }) => users(&config, command).await,
        Some(Command::Keys { command }) => keys(&config, command).await,
        Some(Command::Workspaces { command }) => workspaces(&config, command).await,
        Some(Command::Members { command }) => members(&config, command).await,
        Some(Command::Backup { file }) => backup(&config, &file).await,
        Some(Command::Audit { command }) => audit(&config, command).await,
    }
}

/// The address people type: a wildcard bind is reached through loopback on this machine.
fn base_url(address: std::net::SocketAddr, tls: bool) -> String {
    let host = match address.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{host}:{}", address.port())
}

/// Connects to the database of a command that reads or changes data (not the schema): it must
/// exist and be at this binary's schema, or the command exits 2 saying what to do. A database
/// that cannot be reached is reported at once, naming where it was looked for and why.
pub async fn open_store(config: &Config) -> Result<Store, CliError> {
    let store = open_existing(config).await?;
    let status = schema_status(&store).await?;
    if !status.pending().is_empty() {
        return Err(wrong_database(format!(
            "the database ({}) is at schema {} and this binary ({}) needs {}; run `heffl-api migrate` first (see docs/operations.md, Upgrades)",
            store.location(),
            status.database_version(),
            env!("CARGO_PKG_VERSION"),
            status.binary_version()
        )));
    }
    warn_if_newer(&store, &status);
    Ok(store)
}

/// Connects to a database that must already exist (never creates a SQLite file).
async fn open_existing(config: &Config) -> Result<Store, CliError> {
    if let Some(path) = crate::store::missing_sqlite_file(&config.database_url) {
        return Err(wrong_database(format!(
            "no database at {} (DATABASE_URL); check DATABASE_URL and the working directory, or create it with `heffl-api migrate`",
            path.display()
        )));
    }
    let store = connect(config)?;
    store
        .probe_connection(config.db_acquire_timeout)
        .await
        .map_err(|e| cannot_open(&store, &e))?;
    Ok(store)
}

async fn schema_status(store: &Store) -> Result<SchemaStatus, CliError> {
    store
        .schema_status()
        .await
        .map_err(|e| cannot_open(store, &e))
}

/// A newer release's migrations are additive: this binary runs on them, and says so.
fn warn_if_newer(store: &Store, status: &SchemaStatus) {
    if status.is_newer_than_binary() {
        let message = newer_message(store, status);
        tracing::warn!("{message}");
        eprintln!("warning: {message}");
    }
}

fn newer_message(store: &Store, status: &SchemaStatus) -> String {
    format!(
        "the database ({}) is at schema {}, newer than this binary ({}, schema {})",
        store.location(),
        status.database_version(),
        env!("CARGO_PKG_VERSION"),
        status.binary_version()
    )
}

/// `migrate`: applies what is pending and lists it; `--status` only reports.
async fn migrate(config: &Config, status_only: bool) -> Result<(), CliError> {
    let store = if status_only {
        open_existing(config).await?
    } else {
        let store = connect(config)?;
        store
            .probe_connection(config.db_acquire_timeout)
            .await
            .map_err(|e| cannot_open(&store, &e))?;
        store
    };
    let status = schema_status(&store).await?;
    if status_only {
        println!(
            "database: {} at schema {}",
            store.location(),
            status.database_version()
        );
        println!(
            "binary: heffl-api {} at schema {}",
            env!("CARGO_PKG_VERSION"),
            status.binary_version()
        );
        for migration in &status.known {
            let state = if status.applied.contains(&migration.version) {
                "applied"
            } else {
                "pending"
            };
            println!("{state} {migration}");
        }
        for version in status.unknown_applied() {
            println!("applied {version} (unknown to this binary: a newer release wrote it)");
        }
        store.close().await;
        return Ok(());
    }
    if status.is_newer_than_binary() {
        store.close().await;
        return Err(fail(format!(
            "{}; refusing to migrate it with an older binary (run the newer release's `heffl-api migrate`, or restore the backup taken before the upgrade)",
            newer_message(&store, &status)
        )));
    }
    let applied = store
        .apply_migrations()
        .await
        .map_err(|e| cannot_open(&store, &e))?;
    if applied.is_empty() {
        println!("already at schema {}", status.binary_version());
    }
    for migration in &applied {
        println!("applied {migration}");
    }
    store.close().await;
    Ok(())
}

/// `backup FILE`: SQLite copies itself consistently (`VACUUM INTO` reads one snapshot while
/// servers keep writing); PostgreSQL's own `pg_dump` does the same for it.
async fn backup(config: &Config, file: &std::path::Path) -> Result<(), CliError> {
    if file.exists() {
        return Err(fail(format!(
            "{} exists already; choose a new file (a backup never overwrites one)",
            file.display()
        )));
    }
    let store = open_existing(config).await?;
    match store.backend() {
        crate::store::Backend::Sqlite => {
            let target = file
                .to_str()
                .ok_or_else(|| fail("the backup file's path must be UTF-8"))?;
            store
                .vacuum_into(target)
                .await
                .map_err(|e| fail(format!("the backup failed: {e}")))?;
            store.close().await;
        }
        crate::store::Backend::Postgres => {
            store.close().await;
            pg_dump(&config.database_url, file).await?;
        }
    }
    println!(
        "{}",
        serde_json::json!({ "backup": file.display().to_string() })
    );
    Ok(())
}

/// Runs `pg_dump --format=custom`. The password goes in `PGPASSWORD`, not in the arguments,
/// which every user of the machine can read (`ps`).
async fn pg_dump(database_url: &str, file: &std::path::Path) -> Result<(), CliError> {
    let (url, password) = crate::store::split_password(database_url);
    // A one-shot command with nothing else to do meanwhile: waiting on the runtime's thread
    // holds up no one.
    let mut command = std::process::Command::new("pg_dump");
    command
        .arg("--format=custom")
        .arg(format!("--file={}", file.display()))
        .arg(format!("--dbname={url}"))
        .stdin(std::process::Stdio::null());
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let output = command.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail(
            "pg_dump is not on PATH: install PostgreSQL's client tools (Debian: postgresql-client) of your server's major version, or back up with your database's own tooling",
        ),
        _ => fail(format!("cannot run pg_dump: {e}")),
    })?;
    if !output.status.success() {
        let _ = std::fs::remove_file(file);
        return Err(fail(format!(
            "pg_dump failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// `serve`'s schema step: pending migrations are applied and logged, unless
/// `HEFFL_AUTO_MIGRATE=false`, which refuses to start on them.
async fn serve_schema(store: &Store, auto_migrate: bool) -> Result<i64, CliError> {
    let status = schema_status(store).await?;
    warn_if_newer(store, &status);
    let pending = status.pending();
    if pending.is_empty() {
        return Ok(status.database_version());
    }
    if !auto_migrate {
        let names: Vec<String> = pending.iter().map(ToString::to_string).collect();
        return Err(wrong_database(format!(
            "the database ({}) has pending migrations ({}) and HEFFL_AUTO_MIGRATE=false; run `heffl-api migrate`, then start the server",
            store.location(),
            names.join(", ")
        )));
    }
    let applied = store
        .apply_migrations()
        .await
        .map_err(|e| cannot_open(store, &e))?;
    for migration in &applied {
        tracing::info!(migration = %migration, "applied migration");
    }
    Ok(status.binary_version().max(status.database_version()))
}

fn connect(config: &Config) -> Result<Store, CliError> {
    let settings = PoolSettings {
        max_connections: config.db_max_connections,
        acquire_timeout: config.db_acquire_timeout,
        statement_timeout: config.db_statement_timeout,
    };
    Store::connect_lazy(&config.database_url, &settings).map_err(|e| fail(e.to_string()))
}

fn cannot_open(store: &Store, err: &dyn std::fmt::Display) -> CliError {
    fail(format!(
        "cannot open the database at DATABASE_URL ({}): {err}",
        store.location()
    ))
}

/// Like `open_store`, but waits for a database that is not up yet, for up to
/// `HEFFL_DB_STARTUP_TIMEOUT`, so that the server and its database may start in any order.
async fn open_store_waiting(config: &Config) -> Result<Store, CliError> {
    let store = connect(config)?;
    let deadline = Instant::now() + config.db_startup_timeout;
    let mut delay = Duration::from_millis(250);
    let mut attempt: u32 = 1;
    loop {
        let err = match store.probe_connection(config.db_acquire_timeout).await {
            Ok(()) => break,
            Err(err) => err,
        };
        if !is_unreachable(&err) || Instant::now() + delay >= deadline {
            return Err(cannot_open(&store, &err));
        }
        tracing::warn!(
            attempt,
            database = %store.location(),
            error = %err,
            retry_in_ms = delay.as_millis() as u64,
            "cannot reach the database yet; retrying (HEFFL_DB_STARTUP_TIMEOUT)"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        attempt += 1;
    }
    Ok(store)
}

/// Worth waiting for: the server is not there or not ready yet. A wrong password, a missing
/// database or a broken migration will not fix themselves.
fn is_unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        // cannot_connect_now: PostgreSQL is starting up or shutting down.
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

async fn serve(config: Config) -> Result<(), CliError> {
    if let Some(url) = &config.redis_url {
        // Not the URL nor the client's error in the message: either may hold the password.
        redis::Client::open(url.as_str()).map_err(|_| {
            fail("HEFFL_REDIS_URL is not a Redis URL such as redis://127.0.0.1:6379 (redis:// or unix://)")
        })?;
    }
    // Before anything starts, and without the URL in the message: it may hold a password.
    http::check_email_config(&config).map_err(|err| fail(err.to_string()))?;
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        // Checked before anything starts: a bad file is a message naming it, not a half-up server.
        http::tls::Tls::load(http::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        })
        .map_err(fail)?;
    }
    let store = open_store_waiting(&config).await?;
    let schema = serve_schema(&store, config.auto_migrate).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        store = %store.location(),
        schema,
        "heffl-api starting"
    );
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| fail(format!("cannot listen on HEFFL_BIND={}: {e}", config.bind)))?;
    password::warm_up();
    let base = base_url(
        listener.local_addr().unwrap_or(config.bind),
        config.tls_cert.is_some(),
    );
    tracing::info!(address = %config.bind, backend = ?store.backend(), key_env = %config.key_env, "heffl-api listening");
    tracing::info!(
        page = %format!("{base}/settings/developer"),
        docs = %format!("{base}/docs"),
        api = %format!("{base}/api/v1"),
        "open the Settings > Developer page to sign in and create keys"
    );
    match store.users().count().await {
        Ok(0) => tracing::info!(
            "no users yet: create the first workspace and its owner with \
             `heffl-api bootstrap --workspace NAME --email EMAIL` (prints a password once)"
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "could not count users"),
    }
    let state = AppState::new(store.clone(), config);
    let metrics = http::spawn_metrics(&state).await;
    let served = http::serve(state, listener).await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    served.map_err(|e| fail(format!("server error: {e}")))?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The same input rules as the HTTP endpoints (`validate`), reported one line per problem.
fn validated(issues: Issues) -> Result<(), CliError> {
    match issues.finish(()) {
        Err(crate::error::ApiError::Validation(found)) => {
            let problems: Vec<String> = found
                .iter()
                .map(|i| format!("{} {}", i.field, i.message))
                .collect();
            Err(fail(problems.join("; ")))
        }
        _ => Ok(()),
    }
}

async fn bootstrap(
    config: &Config,
    workspace: &str,
    email: &str,
    name: Option<&str>,
    password_stdin: bool,
) -> Result<(), CliError> {
    let mut issues = Issues::default();
    let workspace_name = issues.required_text("--workspace", Some(workspace), 100);
    let email = issues
        .email("--email", Some(email), true)
        .unwrap_or_default();
    let name = issues.optional_text("--name", name, 100);
    let (password, generated) = read_or_generate_password(&mut issues, password_stdin)?;
    validated(issues)?;
    let store = open_for_bootstrap(config).await?;
    let hash = password::hash(password.clone())
        .await
        .map_err(|_| fail("cannot hash the password"))?;
    let default_name = email.split('@').next().unwrap_or("").to_owned();
    let owner = NewUser {
        email: &email,
        name: name.as_deref().unwrap_or(&default_name),
        password_hash: &hash,
    };
    let outcome = store
        .users()
        .bootstrap(&workspace_name, &owner)
        .await
        .map_err(|e| fail(format!("database error: {e}")))?;
    store.close().await;
    match outcome {
        BootstrapOutcome::EmailTaken => Err(fail(format!(
            "a user with the email {email} already exists; sign in as them and create the workspace from the dashboard (lost password: heffl-api users set-password --email {email})"
        ))),
        BootstrapOutcome::Created { workspace, user } => {
            let mut line = serde_json::json!({ "workspaceId": workspace.id, "userId": user.id });
            if generated {
                line["password"] = serde_json::Value::String(password);
            }
            println!("{line}");
            Ok(())
        }
    }
}

/// `bootstrap` starts a deployment: it may create the database and give a fresh one its
/// schema, but never upgrades one that has data (that is `migrate`'s, on purpose).
async fn open_for_bootstrap(config: &Config) -> Result<Store, CliError> {
    let store = connect(config)?;
    store
        .probe_connection(config.db_acquire_timeout)
        .await
        .map_err(|e| cannot_open(&store, &e))?;
    let status = schema_status(&store).await?;
    if status.is_fresh() {
        store
            .apply_migrations()
            .await
            .map_err(|e| cannot_open(&store, &e))?;
        return Ok(store);
    }
    drop(store);
    open_store(config).await
}

/// The password from stdin (`--password-stdin`), else a generated one; `true` when generated.
fn read_or_generate_password(
    issues: &mut Issues,
    password_stdin: bool,
) -> Result<(String, bool), CliError> {
    if !password_stdin {
        return Ok((password::generate(), true));
    }
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| fail(format!("cannot read the password from stdin: {e}")))?;
    let input = input.trim_end_matches(['\r', '\n']);
    Ok((
        issues.password("password", Some(input)).unwrap_or_default(),
        false,
    ))
}

fn db_error(e: sqlx::Error) -> CliError {
    fail(format!("database error: {e}"))
}

/// Who runs the command, as far as the environment says; recorded as the audit actor.
fn operator_name() -> Option<String> {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
        .map(|name| name.chars().filter(|c| !c.is_control()).take(64).collect())
}

fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let line = serde_json::to_string(value).map_err(|e| fail(e.to_string()))?;
    println!("{line}");
    Ok(())
}

async fn users(config: &Config, command: UsersCommand) -> Result<(), CliError> {
    let verifier = Verifier::without_cache(open_store(config).await?);
    let result = run_users(&verifier, command).await;
    verifier.store().close().await;
    result
}

async fn run_users(verifier: &Verifier, command: UsersCommand) -> Result<(), CliError> {
    let store = verifier.store();
    let operator = operator_name();
    let actor = Actor::Operator(operator.as_deref());
    match command {
        UsersCommand::Disable { email } => set_disabled(verifier, &email, true, actor).await,
        UsersCommand::Enable { email } => set_disabled(verifier, &email, false, actor).await,
        UsersCommand::Create {
            email,
            name,
            password_stdin,
        } => {
            let mut issues = Issues::default();
            let email = issues
                .email("--email", Some(&email), true)
                .unwrap_or_default();
            let name = issues.required_text("--name", Some(&name), 100);
            let (password, generated) = read_or_generate_password(&mut issues, password_stdin)?;
            validated(issues)?;
            let hash = password::hash(password.clone())
                .await
                .map_err(|_| fail("cannot hash the password"))?;
            let new_user = NewUser {
                email: &email,
                name: &name,
                password_hash: &hash,
            };
            let user = store
                .users()
                .create(&new_user, actor)
                .await
                .map_err(db_error)?
                .ok_or_else(|| fail(format!("a user with the email {email} already exists")))?;
            let mut line = serde_json::json!({ "userId": user.id, "email": user.email });
            if generated {
                line["password"] = serde_json::Value::String(password);
            }
            print_json(&line)
        }
        UsersCommand::SetPassword {
            email,
            password_stdin,
        } => {
            let mut issues = Issues::default();
            let (password, generated) = read_or_generate_password(&mut issues, password_stdin)?;
            validated(issues)?;
            let hash = password::hash(password.clone())
                .await
                .map_err(|_| fail("cannot hash the password"))?;
            let user = store
                .users()
                .set_password(
                    PasswordChange::Operator { email: &email },
                    &hash,
                    actor,
                    &ClientInfo::default(),
                )
                .await
                .map_err(db_error)?
                .ok_or_else(|| fail(format!("no user with the email {email}")))?;
            let mut line = serde_json::json!({ "userId": user.id, "sessionsEnded": true });
            if generated {
                line["password"] = serde_json::Value::String(password);
            }
            print_json(&line)
        }
        UsersCommand::List => {
            for user in store.users().list().await.map_err(db_error)? {
                print_json(&user)?;
            }
            Ok(())
        }
        UsersCommand::Delete { email } => {
            match verifier.delete_user(&email, actor).await.map_err(db_error)? {
                UserDeletion::NotFound => Err(fail(format!("no user with the email {email}"))),
                UserDeletion::LastOwner(workspace) => Err(fail(format!(
                    "{email} is the only owner of {workspace}; make someone else its owner first (heffl-api members add … --role owner), or delete the workspace"
                ))),
                UserDeletion::Deleted {
                    user_id,
                    revoked_keys,
                } => print_json(&serde_json::json!({
                    "userId": user_id,
                    "deleted": true,
                    "revokedKeys": revoked_keys,
                })),
            }
        }
    }
}

async fn set_disabled(
    verifier: &Verifier,
    email: &str,
    disable: bool,
    actor: Actor<'_>,
) -> Result<(), CliError> {
    let mut issues = Issues::default();
    let email = issues
        .email("--email", Some(email), true)
        .unwrap_or_default();
    validated(issues)?;
    let email = email.as_str();
    let (user, revoked_keys) = verifier
        .set_user_disabled(email, disable, actor)
        .await
        .map_err(db_error)?
        .ok_or_else(|| fail(format!("no user with the email {email}")))?;
    print_json(&serde_json::json!({
        "userId": user.id,
        "disabled": disable,
        "revokedKeys": revoked_keys,
    }))
}

async fn workspaces(config: &Config, command: WorkspacesCommand) -> Result<(), CliError> {
    let verifier = Verifier::without_cache(open_store(config).await?);
    let operator = operator_name();
    let actor = Actor::Operator(operator.as_deref());
    let result = match command {
        WorkspacesCommand::List => match verifier.store().workspaces().list_all().await {
            Ok(list) => list
                .into_iter()
                .map(WorkspaceLine::from)
                .try_for_each(|line| print_json(&line)),
            Err(e) => Err(db_error(e)),
        },
        WorkspacesCommand::Rename { workspace, name } => {
            let mut issues = Issues::default();
            let name = issues.required_text("--name", Some(&name), 100);
            match validated(issues) {
                Err(err) => Err(err),
                Ok(()) => match verifier.rename_workspace(&workspace, &name, actor).await {
                    Ok(true) => print_json(&serde_json::json!({ "id": workspace, "name": name })),
                    Ok(false) => Err(fail(format!("no workspace with the id {workspace}"))),
                    Err(e) => Err(db_error(e)),
                },
            }
        }
        WorkspacesCommand::Delete {
            workspace,
            confirm_name,
        } => delete_workspace(&verifier, &workspace, &confirm_name, actor).await,
    };
    verifier.store().close().await;
    result
}

/// The name typed out must be the workspace's: an id pasted from the wrong line deletes nothing.
async fn delete_workspace(
    verifier: &Verifier,
    workspace: &WorkspaceId,
    confirm_name: &str,
    actor: Actor<'_>,
) -> Result<(), CliError> {
    let store = verifier.store();
    let current = store
        .workspaces()
        .list_all()
        .await
        .map_err(db_error)?
        .into_iter()
        .find(|w| &w.id == workspace)
        .ok_or_else(|| fail(format!("no workspace with the id {workspace}")))?;
    if current.name != confirm_name {
        return Err(fail(format!(
            "--confirm-name does not match: {workspace} is named {:?}; nothing was deleted",
            current.name
        )));
    }
    match verifier
        .delete_workspace(workspace, actor)
        .await
        .map_err(db_error)?
    {
        Some(name) => {
            print_json(&serde_json::json!({ "id": workspace, "name": name, "deleted": true }))
        }
        None => Err(fail(format!("no workspace with the id {workspace}"))),
    }
}

/// `audit export`: the log as JSON lines, for a SIEM or an archive before retention prunes it.
async fn audit(config: &Config, command: AuditCommand) -> Result<(), CliError> {
    let store = open_store(config).await?;
    let result = match command {
        AuditCommand::Export { since, workspace } => {
            let since = Timestamp::parse_rfc3339(&since)
                .or_else(|| Timestamp::parse_rfc3339(&format!("{since}T00:00:00Z")))
                .ok_or_else(|| {
                    fail(format!(
                        "--since {since:?} is neither an RFC 3339 time (2025-01-15T10:30:00Z) nor a date (2025-01-15)"
                    ))
                });
            match since {
                Err(err) => Err(err),
                Ok(since) => match store.audit().export(since, workspace.as_ref()).await {
                    Ok(events) => events.into_iter().try_for_each(|(workspace_id, event)| {
                        print_json(&AuditLine::of(workspace_id, event))
                    }),
                    Err(e) => Err(db_error(e)),
                },
            }
        }
    };
    store.close().await;
    result
}

/// One line of `audit export`: the API's shape of an event, with its workspace.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditLine {
    workspace_id: Option<WorkspaceId>,
    id: String,
    at: Timestamp,
    action: String,
    actor: serde_json::Value,
    target: serde_json::Value,
    ip: Option<String>,
    user_agent: Option<String>,
    details: Option<serde_json::Value>,
}

impl AuditLine {
    fn of(workspace_id: Option<WorkspaceId>, event: AuditEventRow) -> AuditLine {
        AuditLine {
            workspace_id,
            id: event.id,
            at: event.at,
            action: event.action,
            actor: serde_json::json!({ "type": event.actor_type, "id": event.actor_id }),
            target: serde_json::json!({ "type": event.target_type, "id": event.target_id }),
            ip: event.ip,
            user_agent: event.user_agent,
            details: event.details.and_then(|d| serde_json::from_str(&d).ok()),
        }
    }
}

/// One line of `workspaces list`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkspaceLine {
    id: WorkspaceId,
    name: String,
    created_at: Timestamp,
}

impl From<WorkspaceRow> for WorkspaceLine {
    fn from(row: WorkspaceRow) -> WorkspaceLine {
        WorkspaceLine {
            id: row.id,
            name: row.name,
            created_at: row.created_at,
        }
    }
}

async fn members(config: &Config, command: MembersCommand) -> Result<(), CliError> {
    let verifier = Verifier::without_cache(open_store(config).await?);
    let result = run_members(&verifier, command).await;
    verifier.store().close().await;
    result
}

async fn run_members(verifier: &Verifier, command: MembersCommand) -> Result<(), CliError> {
    let store = verifier.store();
    let operator = operator_name();
    let client = ClientInfo::default();
    let actor = MemberActor::operator(operator.as_deref(), &client);
    let (workspace, email, role) = match &command {
        MembersCommand::Add {
            workspace,
            email,
            role,
        } => {
            let role = Role::parse(role.trim())
                .ok_or_else(|| fail("--role must be one of owner, admin, member, viewer"))?;
            (workspace, email, Some(role))
        }
        MembersCommand::Remove { workspace, email } => (workspace, email, None),
    };
    let user = store
        .users()
        .by_email(email)
        .await
        .map_err(db_error)?
        .ok_or_else(|| fail(format!("no user with the email {email}")))?;
    if !store
        .workspaces()
        .exists(workspace)
        .await
        .map_err(db_error)?
    {
        return Err(fail(format!("no workspace with the id {workspace}")));
    }
    let change = match role {
        Some(role) => store.members().add(workspace, &user.id, role, &actor).await,
        None => verifier.remove_member(workspace, &user.id, &actor).await,
    }
    .map_err(db_error)?;
    match change {
        MemberChange::Done(member) => print_json(&serde_json::json!({
            "workspaceId": workspace,
            "userId": user.id,
            "role": member.map(|m| m.role),
        })),
        MemberChange::AlreadyMember => Err(fail(format!(
            "{email} is already a member of {workspace}; change their role from the dashboard"
        ))),
        MemberChange::NotMember => Err(fail(format!("{email} is not a member of {workspace}"))),
        MemberChange::LastOwner => Err(fail(
            "a workspace needs at least one owner; add another owner first",
        )),
        MemberChange::Forbidden => Err(fail("not allowed")),
    }
}

async fn keys(config: &Config, command: KeysCommand) -> Result<(), CliError> {
    let verifier = Verifier::without_cache(open_store(config).await?);
    let result = run_keys(&verifier, command, &config.key_env).await;
    verifier.store().close().await;
    result
}

/// A key id given as an argument. A secret there is refused, not used: arguments are visible
/// to every user of the machine in `ps`, and stay in shell history. Nothing of what was given
/// is echoed, since it might be a secret.
fn key_id_argument(text: &str) -> Result<KeyId, CliError> {
    if let Some(id) = KeyId::parse(text) {
        return Ok(id);
    }
    if text.trim_start().starts_with("hk_") {
        return Err(fail(
            "refusing a secret given as an argument: arguments are visible in `ps` and stay in \
             shell history. Pipe it instead: heffl-api keys revoke --secret-stdin < leaked.txt \
             (and treat this secret as leaked twice)",
        ));
    }
    Err(fail(
        "the argument is not a key id (key_…); to revoke by secret, use --secret-stdin",
    ))
}

fn read_secret_stdin() -> Result<String, CliError> {
    let mut input = String::new();
    std::io::stdin()
        .read_line(&mut input)
        .map_err(|e| fail(format!("cannot read the secret from stdin: {e}")))?;
    Ok(input.trim().to_owned())
}

/// The id of the key whose secret `secret` is. The secret is never echoed in a message.
async fn key_id_of_secret(
    store: &Store,
    secret: &str,
    key_env: &KeyEnv,
) -> Result<KeyId, CliError> {
    let secret = api_key::parse(secret.as_bytes(), key_env).map_err(|rejection| {
        fail(format!(
            "standard input is not an API key of this deployment: {}",
            rejection.message(key_env)
        ))
    })?;
    store
        .api_keys()
        .id_by_digest(secret.digest().as_bytes())
        .await
        .map_err(|e| fail(format!("database error: {e}")))?
        .ok_or_else(|| fail("no API key of this deployment has the given secret"))
}

async fn run_keys(
    verifier: &Verifier,
    command: KeysCommand,
    key_env: &KeyEnv,
) -> Result<(), CliError> {
    let store = verifier.store();
    match command {
        KeysCommand::List { workspace } => {
            // A mistyped id must not look like a workspace without keys.
            if !store
                .workspaces()
                .exists(&workspace)
                .await
                .map_err(db_error)?
            {
                return Err(fail(format!("no workspace with the id {workspace}")));
            }
            let keys = store
                .api_keys()
                .list(
                    &workspace,
                    &KeyFilter {
                        creator: None,
                        status: StatusFilter::All,
                        unused_since: None,
                        external_id: None,
                    },
                )
                .await
                .map_err(db_error)?;
            for key in keys {
                let line = serde_json::to_string(&key).map_err(|e| fail(e.to_string()))?;
                println!("{line}");
            }
            Ok(())
        }
        KeysCommand::Revoke {
            key_id,
            secret_stdin,
            reason,
        } => {
            let mut issues = Issues::default();
            let reason = issues.required_text("--reason", Some(&reason), 100);
            validated(issues)?;
            let key_id = match key_id {
                Some(text) => key_id_argument(&text)?,
                None if secret_stdin => {
                    key_id_of_secret(store, &read_secret_stdin()?, key_env).await?
                }
                None => return Err(fail("name a key id (key_…), or pass --secret-stdin")),
            };
            let workspace = store
                .api_keys()
                .workspace_of(&key_id)
                .await
                .map_err(db_error)?
                .ok_or_else(|| fail(format!("no API key with the id {key_id}")))?;
            let revoked = verifier
                .revoke_api_key(
                    &workspace,
                    &key_id,
                    Actor::Operator(operator_name().as_deref()),
                    &reason,
                    &ClientInfo::default(),
                )
                .await
                .map_err(db_error)?;
            let (record, newly_revoked) =
                revoked.ok_or_else(|| fail(format!("no API key with the id {key_id}")))?;
            let line = serde_json::json!({
                "id": record.id,
                "status": record.status,
                "revokedAt": record.revoked_at,
                "alreadyRevoked": !newly_revoked,
            });
            println!("{line}");
            Ok(())
        }
    }
}
