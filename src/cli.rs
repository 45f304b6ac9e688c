//! The operator commands. Each reads the same configuration as `serve`.

use crate::config::{
    Cli, Command, Config, KeysCommand, MembersCommand, UsersCommand, WorkspacesCommand,
};
use crate::http::{self, AppState};
use crate::password;
use crate::permissions::Role;
use crate::store::{
    Actor, BootstrapOutcome, ClientInfo, KeyFilter, MemberActor, MemberChange, NewUser,
    PasswordChange, PoolSettings, StatusFilter, Store,
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
        Command::Workspaces { command } => workspaces(&config, command).await,
        Command::Members { command } => members(&config, command).await,
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
    let (password, generated) = read_or_generate_password(&mut issues, password_stdin)?;
    fail_on_issues(issues)?;
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

fn fail_on_issues(issues: Issues) -> Result<(), CliError> {
    if let Err(crate::error::ApiError::Validation(found)) = issues.finish(()) {
        let problems: Vec<String> = found
            .iter()
            .map(|i| format!("{} {}", i.field, i.message))
            .collect();
        return Err(fail(problems.join("; ")));
    }
    Ok(())
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
    let store = open_store(config).await?;
    let result = run_users(&store, command).await;
    store.close().await;
    result
}

async fn run_users(store: &Store, command: UsersCommand) -> Result<(), CliError> {
    let operator = operator_name();
    let actor = Actor::Operator(operator.as_deref());
    match command {
        UsersCommand::Disable { email } => set_disabled(store, &email, true).await,
        UsersCommand::Enable { email } => set_disabled(store, &email, false).await,
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
            fail_on_issues(issues)?;
            let hash = password::hash(password.clone())
                .await
                .map_err(|_| fail("cannot hash the password"))?;
            let new_user = NewUser {
                email: &email,
                name: &name,
                password_hash: &hash,
            };
            let user = store
                .create_user(&new_user, actor)
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
            fail_on_issues(issues)?;
            let hash = password::hash(password.clone())
                .await
                .map_err(|_| fail("cannot hash the password"))?;
            let user = store
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
            for user in store.list_users().await.map_err(db_error)? {
                print_json(&user)?;
            }
            Ok(())
        }
    }
}

async fn set_disabled(store: &Store, email: &str, disable: bool) -> Result<(), CliError> {
    let (user, revoked_keys) = store
        .set_user_disabled(email, disable)
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
    let store = open_store(config).await?;
    let result = match command {
        WorkspacesCommand::List => match store.list_workspaces().await {
            Ok(list) => list.iter().try_for_each(print_json),
            Err(e) => Err(db_error(e)),
        },
    };
    store.close().await;
    result
}

async fn members(config: &Config, command: MembersCommand) -> Result<(), CliError> {
    let store = open_store(config).await?;
    let result = run_members(&store, command).await;
    store.close().await;
    result
}

async fn run_members(store: &Store, command: MembersCommand) -> Result<(), CliError> {
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
        .user_by_email(email)
        .await
        .map_err(db_error)?
        .ok_or_else(|| fail(format!("no user with the email {email}")))?;
    if !store.workspace_exists(workspace).await.map_err(db_error)? {
        return Err(fail(format!("no workspace with the id {workspace}")));
    }
    let change = match role {
        Some(role) => store.add_member(workspace, &user.id, role, &actor).await,
        None => store.remove_member(workspace, &user.id, &actor).await,
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
    let store = open_store(config).await?;
    let result = run_keys(&store, command).await;
    store.close().await;
    result
}

async fn run_keys(store: &Store, command: KeysCommand) -> Result<(), CliError> {
    match command {
        KeysCommand::List { workspace } => {
            // A mistyped id must not look like a workspace without keys.
            if !store.workspace_exists(&workspace).await.map_err(db_error)? {
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
