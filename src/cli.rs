//! The operator commands. Each reads the same configuration as `serve`.

use crate::config::{Cli, Command, Config, KeysCommand, UsersCommand};
use crate::http::{self, AppState};
use crate::password;
use crate::store::{
    BootstrapOutcome, ClientInfo, KeyFilter, NewUser, PoolSettings, StatusFilter, Store,
};
use crate::validate::Issues;
use std::io::Read;
use std::process::ExitCode;

/// A failure to report to the operator on stderr, with a non-zero exit.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(String);

fn fail(message: impl Into<String>) -> CliError {
    CliError(message.into())
}

pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let store = open_store(&config).await?;
            eprintln!("migrations applied");
            store.close().await;
            Ok(())
        }
        Command::Bootstrap {
            workspace,
            email,
            name,
            password_stdin,
        } => bootstrap(&config, &workspace, &email, name.as_deref(), password_stdin).await,
        Command::Users { command } => users(&config, command).await,
        Command::Keys { command } => keys(&config, command).await,
    }
}

/// Connects and applies pending migrations.
pub async fn open_store(config: &Config) -> Result<Store, CliError> {
    let settings = PoolSettings {
        max_connections: config.db_max_connections,
        acquire_timeout: config.db_acquire_timeout,
        statement_timeout: config.db_statement_timeout,
    };
    let store =
        Store::connect_lazy(&config.database_url, &settings).map_err(|e| fail(e.to_string()))?;
    store
        .migrate()
        .await
        .map_err(|e| fail(format!("cannot migrate the database at DATABASE_URL: {e}")))?;
    Ok(store)
}

async fn serve(config: Config) -> Result<(), CliError> {
    if let Some(url) = &config.redis_url {
        // Not the URL nor the client's error in the message: either may hold the password.
        redis::Client::open(url.as_str()).map_err(|_| {
            fail("HEFFL_REDIS_URL is not a Redis URL such as redis://127.0.0.1:6379 (redis:// or unix://)")
        })?;
    }
    let store = open_store(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| fail(format!("cannot listen on HEFFL_BIND={}: {e}", config.bind)))?;
    password::warm_up();
    tracing::info!(address = %config.bind, backend = ?store.backend(), key_env = %config.key_env, "heffl-api listening");
    let state = AppState::new(store.clone(), config);
    http::serve(state, listener)
        .await
        .map_err(|e| fail(format!("server error: {e}")))?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
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
    let (password, generated) = if password_stdin {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| fail(format!("cannot read the password from stdin: {e}")))?;
        let input = input.trim_end_matches(['\r', '\n']);
        (
            issues.password("password", Some(input)).unwrap_or_default(),
            false,
        )
    } else {
        (password::generate(), true)
    };
    if let Err(crate::error::ApiError::Validation(found)) = issues.finish(()) {
        let problems: Vec<String> = found
            .iter()
            .map(|i| format!("{} {}", i.field, i.message))
            .collect();
        return Err(fail(problems.join("; ")));
    }
    let store = open_store(config).await?;
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
        .bootstrap(&workspace_name, &owner)
        .await
        .map_err(|e| fail(format!("database error: {e}")))?;
    store.close().await;
    match outcome {
        BootstrapOutcome::EmailTaken => Err(fail(format!(
            "a user with the email {email} already exists; sign in as them and create the workspace from the dashboard"
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

async fn users(config: &Config, command: UsersCommand) -> Result<(), CliError> {
    let (email, disable) = match &command {
        UsersCommand::Disable { email } => (email, true),
        UsersCommand::Enable { email } => (email, false),
    };
    let store = open_store(config).await?;
    let result = store
        .set_user_disabled(email, disable)
        .await
        .map_err(|e| fail(format!("database error: {e}")))?;
    store.close().await;
    let Some((user, revoked_keys)) = result else {
        return Err(fail(format!("no user with the email {email}")));
    };
    let line = serde_json::json!({
        "userId": user.id,
        "disabled": disable,
        "revokedKeys": revoked_keys,
    });
    println!("{line}");
    Ok(())
}

async fn keys(config: &Config, command: KeysCommand) -> Result<(), CliError> {
    let store = open_store(config).await?;
    let result = run_keys(&store, command).await;
    store.close().await;
    result
}

async fn run_keys(store: &Store, command: KeysCommand) -> Result<(), CliError> {
    let db_error = |e: sqlx::Error| fail(format!("database error: {e}"));
    match command {
        KeysCommand::List { workspace } => {
            // A mistyped id must not look like a workspace without keys.
            let found: Option<String> =
                sqlx::query_scalar("SELECT id FROM workspaces WHERE id = $1")
                    .bind(&workspace)
                    .fetch_optional(store.pool())
                    .await
                    .map_err(db_error)?;
            if found.is_none() {
                return Err(fail(format!("no workspace with the id {workspace}")));
            }
            let keys = store
                .list_api_keys(
                    &workspace,
                    &KeyFilter {
                        creator: None,
                        status: StatusFilter::All,
                        unused_since: None,
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
        KeysCommand::Revoke { key_id, reason } => {
            let workspace = store
                .workspace_of_key(&key_id)
                .await
                .map_err(db_error)?
                .ok_or_else(|| fail(format!("no API key with the id {key_id}")))?;
            let revoked = store
                .revoke_api_key(&workspace, &key_id, None, &reason, &ClientInfo::default())
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
