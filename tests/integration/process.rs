//! The real `heffl-api` binary, run as an operator runs it: its own process, its own clean
//! environment and working directory, talking to a real database. What only a process can
//! show lives here: the CLI's stdout and exit codes, start-up refusals, signals, and what ends
//! up in the logs.

use crate::common::{assert_error, assert_unauthorized, count_rows, parts, query_count, Db};
use crate::on_each_db;
use crate::process_harness::{free_port, run_in, Deployment, Owner};
use heffl_api::domain::api_key::{ApiKey, KeyEnv};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;
use std::time::{Duration, Instant};

on_each_db!(
    bootstrap_prints_one_json_line_and_the_password_logs_in,
    bootstrap_with_password_stdin,
    migrate_creates_the_tables_and_serve_is_the_default,
    disabling_a_user_ends_sessions_and_keys_at_once,
    keys_list_and_revoke_from_the_command_line,
    secrets_never_reach_json_logs,
    secrets_never_reach_pretty_logs,
    key_environment_tag_comes_from_configuration,
);

// ---------------------------------------------------------------------------------------------
// 1. bootstrap
// ---------------------------------------------------------------------------------------------

async fn bootstrap_prints_one_json_line_and_the_password_logs_in(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    let out = deployment
        .run(
            &[
                "bootstrap",
                "--workspace",
                "Acme",
                "--email",
                "owner@acme.test",
                "--name",
                "Owner",
            ],
            None,
        )
        .await;
    out.assert_success();
    let line = out.json_line();
    let object = line.as_object().expect("an object");
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["password", "userId", "workspaceId"], "{line}");
    let workspace_id = line["workspaceId"].as_str().expect("workspaceId");
    let user_id = line["userId"].as_str().expect("userId");
    let password = line["password"].as_str().expect("password");
    assert!(
        workspace_id.starts_with("ws_") && workspace_id.len() > 3,
        "{line}"
    );
    assert!(user_id.starts_with("usr_") && user_id.len() > 4, "{line}");
    assert!(password.len() >= 12, "generated password too short: {line}");
    // The generated password is for the operator's eyes only: stdout, never the log.
    assert!(
        !out.stderr.contains(password),
        "password on stderr: {}",
        out.stderr
    );

    let server = deployment.spawn(&[], &["serve"]).await;
    let (status, body) = server.login("owner@acme.test", password).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["id"], user_id);
    assert_eq!(body["user"]["name"], "Owner");
    let token = body["token"].as_str().expect("token");
    let (status, session) = server
        .send(Method::GET, "/app/v1/session", Some(token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(
        session["workspaces"],
        json!([{ "id": workspace_id, "name": "Acme", "role": "owner" }])
    );

    // The same email again: refused with a reason, and nothing is created.
    let again = deployment
        .run(
            &[
                "bootstrap",
                "--workspace",
                "Acme 2",
                "--email",
                "OWNER@acme.test",
            ],
            None,
        )
        .await;
    again.assert_failure();
    assert!(
        again.stdout.is_empty(),
        "stdout on failure: {}",
        again.stdout
    );
    assert!(
        again.stderr.contains("already exists")
            && again.stderr.to_lowercase().contains("owner@acme.test"),
        "stderr should say the email is taken: {}",
        again.stderr
    );
    let store = deployment.store().await;
    assert_eq!(count_rows(&store, "workspaces").await, 1);
    assert_eq!(count_rows(&store, "users").await, 1);
    store.close().await;
}

async fn bootstrap_with_password_stdin(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    let password = "correct horse battery staple";
    let out = deployment
        .run(
            &[
                "bootstrap",
                "--workspace",
                "Beta",
                "--email",
                "two@beta.test",
                "--password-stdin",
            ],
            Some(&format!("{password}\n")),
        )
        .await;
    out.assert_success();
    let line = out.json_line();
    assert!(
        line.get("password").is_none(),
        "no password when it was given: {line}"
    );
    assert!(
        line["workspaceId"]
            .as_str()
            .is_some_and(|id| id.starts_with("ws_")),
        "{line}"
    );
    assert!(
        line["userId"]
            .as_str()
            .is_some_and(|id| id.starts_with("usr_")),
        "{line}"
    );
    assert!(
        !out.stderr.contains(password),
        "password on stderr: {}",
        out.stderr
    );

    let server = deployment.spawn(&[], &[]).await;
    let (status, body) = server.login("two@beta.test", password).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["id"], line["userId"]);
    // The trailing newline is not part of the password.
    let (status, _) = server
        .login("two@beta.test", &format!("{password}\n"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let short = deployment
        .run(
            &[
                "bootstrap",
                "--workspace",
                "Gamma",
                "--email",
                "three@gamma.test",
                "--password-stdin",
            ],
            Some("short-pw\n"),
        )
        .await;
    short.assert_failure();
    assert!(
        short.stdout.is_empty(),
        "stdout on failure: {}",
        short.stdout
    );
    assert!(
        short.stderr.contains("password") && short.stderr.contains("12"),
        "stderr should explain the password rule: {}",
        short.stderr
    );
    assert!(
        !short.stderr.contains("short-pw"),
        "password echoed: {}",
        short.stderr
    );
    let store = deployment.store().await;
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM users WHERE email = $1",
            &["three@gamma.test"]
        )
        .await,
        0
    );
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM workspaces WHERE name = $1",
            &["Gamma"]
        )
        .await,
        0
    );
    store.close().await;
    let (status, _) = server.login("three@gamma.test", "short-pw").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------------------------
// 2. migrate, and serve as the default
// ---------------------------------------------------------------------------------------------

const TABLES: [&str; 7] = [
    "workspaces",
    "users",
    "memberships",
    "sessions",
    "api_keys",
    "leads",
    "audit_events",
];

async fn migrate_creates_the_tables_and_serve_is_the_default(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    let sqlite_file = deployment
        .db
        .url
        .strip_prefix("sqlite://")
        .map(std::path::PathBuf::from);
    if let Some(file) = &sqlite_file {
        assert!(!file.exists(), "the database file exists before migrate");
    }
    let out = deployment.run(&["migrate"], None).await;
    out.assert_success();
    assert!(
        out.stdout.starts_with("applied 1 init\n"),
        "migrate lists what it applied: {}",
        out.stdout
    );

    // Checked without the crate's store, which would apply the migrations itself.
    match db {
        Db::Sqlite => {
            let file = sqlite_file.as_ref().expect("sqlite path");
            assert!(file.exists(), "migrate did not create {}", file.display());
            let mut conn = sqlx::SqliteConnection::connect(&deployment.db.url)
                .await
                .expect("open sqlite");
            for table in TABLES {
                let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                    .fetch_one(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("table {table}: {e}"));
                assert_eq!(rows, 0, "{table} starts empty");
            }
            let applied: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&mut conn)
                    .await
                    .expect("migrations table");
            assert!(applied >= 1);
            conn.close().await.expect("close");
        }
        Db::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&deployment.db.url)
                .await
                .expect("open postgres");
            for table in TABLES {
                let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                    .fetch_one(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("table {table}: {e}"));
                assert_eq!(rows, 0, "{table} starts empty");
            }
            let applied: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&mut conn)
                    .await
                    .expect("migrations table");
            assert!(applied >= 1);
            conn.close().await.expect("close");
        }
    }

    // Running it again is a no-op, as it is on every start-up, and says so.
    let again = deployment.run(&["migrate"], None).await;
    again.assert_success();
    assert!(
        again.stdout.starts_with("already at schema "),
        "{}",
        again.stdout
    );

    // No subcommand: the server starts, and it is ready.
    let mut server = deployment.spawn(&[], &[]).await;
    let (status, body) = server.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, exit_stderr) = server.stop().await;
    assert!(status.success(), "exit {status}");
    assert!(exit_stderr.contains("heffl-api listening"), "{exit_stderr}");
    // The default log level leaves out PostgreSQL's notices about migrations already applied.
    assert!(!exit_stderr.contains("_sqlx_migrations"), "{exit_stderr}");
}

/// `.env` in the working directory is configuration too, below the real environment.
#[tokio::test]
async fn dotenv_in_the_working_directory_is_read_and_the_environment_wins() {
    let dir = tempfile::tempdir().expect("dir");
    let from_dotenv = dir.path().join("from-dotenv.db");
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "DATABASE_URL=sqlite://{}\nHEFFL_KEY_ENV=LIVE!\n",
            from_dotenv.display()
        ),
    )
    .expect("write .env");
    run_in(
        dir.path(),
        &[("HEFFL_KEY_ENV".into(), "live".into())],
        &["migrate"],
        None,
    )
    .await
    .assert_success();
    assert!(from_dotenv.exists(), "DATABASE_URL from .env was not used");
    assert!(
        !dir.path().join("heffl.db").exists(),
        "the default database was created"
    );

    // Without the environment's override, the .env's bad value stops the command.
    let out = run_in(dir.path(), &[], &["migrate"], None).await;
    out.assert_failure();
    assert!(out.stderr.contains("HEFFL_KEY_ENV"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// 3. users and keys commands against a running server
// ---------------------------------------------------------------------------------------------

async fn disabling_a_user_ends_sessions_and_keys_at_once(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    let Owner {
        workspace_id,
        user_id,
        password,
        ..
    } = deployment.bootstrap("Acme", "owner@acme.test").await;
    let server = deployment.spawn(&[], &["serve"]).await;
    let token = server.login_token("owner@acme.test", &password).await;
    let (key_id, key) = server
        .create_key(&token, &workspace_id, "Website form")
        .await;
    let (status, me) = server
        .send_with_key(Method::GET, "/api/v1/me", &key, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");

    let out = deployment
        .run(&["users", "disable", "--email", "owner@acme.test"], None)
        .await;
    out.assert_success();
    assert_eq!(
        out.json_line(),
        json!({ "userId": user_id, "disabled": true, "revokedKeys": 1 })
    );

    // Sessions are not cached: the CLI's delete holds on the next request.
    let (status, body) = server
        .send(Method::GET, "/app/v1/session", Some(&token), None)
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        None,
    );
    let (status, body) = server.login("owner@acme.test", &password).await;
    assert_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        None,
    );
    server.until_key_revoked(&key).await;

    let store = deployment.store().await;
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM users WHERE disabled_at IS NOT NULL AND id = $1",
            &[user_id.as_str()]
        )
        .await,
        1
    );
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
            &[user_id.as_str()]
        )
        .await,
        0
    );
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM api_keys WHERE revoke_reason = 'user_disabled' AND id = $1",
            &[key_id.as_str()]
        )
        .await,
        1
    );

    // Disabling twice is harmless; the email is matched case-insensitively.
    let out = deployment
        .run(&["users", "disable", "--email", "OWNER@Acme.test"], None)
        .await;
    out.assert_success();
    assert_eq!(out.json_line()["revokedKeys"], 0);

    let out = deployment
        .run(&["users", "enable", "--email", "owner@acme.test"], None)
        .await;
    out.assert_success();
    assert_eq!(
        out.json_line(),
        json!({ "userId": user_id, "disabled": false, "revokedKeys": 0 })
    );
    let token = server.login_token("owner@acme.test", &password).await;
    let (status, body) = server
        .send(Method::GET, "/app/v1/session", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A revoke is for good: enabling the user does not bring their old keys back.
    let (status, body) = server
        .send_with_key(Method::GET, "/api/v1/me", &key, None)
        .await;
    assert_unauthorized(status, &body, "revoked_api_key");
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM users WHERE disabled_at IS NULL AND id = $1",
            &[user_id.as_str()]
        )
        .await,
        1
    );
    store.close().await;

    let out = deployment
        .run(&["users", "disable", "--email", "nobody@acme.test"], None)
        .await;
    out.assert_failure();
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("nobody@acme.test"), "{}", out.stderr);
}

async fn keys_list_and_revoke_from_the_command_line(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    let Owner {
        workspace_id,
        user_id,
        password,
        ..
    } = deployment.bootstrap("Acme", "owner@acme.test").await;
    let Owner {
        workspace_id: other_workspace,
        password: other_password,
        ..
    } = deployment.bootstrap("Other", "other@other.test").await;
    let server = deployment.spawn(&[], &["serve"]).await;
    let token = server.login_token("owner@acme.test", &password).await;
    let (first_id, first_key) = server.create_key(&token, &workspace_id, "First").await;
    let (second_id, second_key) = server.create_key(&token, &workspace_id, "Second").await;
    let other_token = server
        .login_token("other@other.test", &other_password)
        .await;
    let (other_id, other_key) = server
        .create_key(&other_token, &other_workspace, "Elsewhere")
        .await;

    let out = deployment
        .run(&["keys", "list", "--workspace", &workspace_id], None)
        .await;
    out.assert_success();
    for secret in [&first_key, &second_key, &other_key] {
        assert!(
            !out.stdout.contains(secret.as_str()),
            "a secret in keys list: {}",
            out.stdout
        );
        // Not even the random part without its prefix.
        assert!(
            !out.stdout.contains(&secret[8..38]),
            "a secret in keys list: {}",
            out.stdout
        );
    }
    let lines = out.json_lines();
    let mut ids: Vec<&str> = lines
        .iter()
        .map(|l| l["id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    let mut expected = vec![first_id.as_str(), second_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "only this workspace's keys: {}", out.stdout);
    for line in &lines {
        assert!(line.get("key").is_none(), "{line}");
        assert_eq!(line["status"], "active", "{line}");
        assert_eq!(line["createdBy"]["id"], user_id.as_str(), "{line}");
        assert!(
            line["hint"]
                .as_str()
                .is_some_and(|h| h.starts_with("hk_live_")),
            "{line}"
        );
    }

    let out = deployment.run(&["keys", "revoke", &first_id], None).await;
    out.assert_success();
    let revoked = out.json_line();
    assert_eq!(revoked["id"], first_id.as_str());
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["alreadyRevoked"], false);
    assert!(revoked["revokedAt"].as_str().is_some(), "{revoked}");

    server.until_key_revoked(&first_key).await;
    let (status, body) = server
        .send_with_key(Method::GET, "/api/v1/me", &second_key, None)
        .await;
    assert_eq!(status, StatusCode::OK, "the other key is untouched: {body}");
    let (status, body) = server
        .send_with_key(Method::GET, "/api/v1/me", &other_key, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let store = deployment.store().await;
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NOT NULL AND revoked_by IS NULL \
             AND revoke_reason = 'operator' AND id = $1",
            &[first_id.as_str()]
        )
        .await,
        1
    );
    let audits =
        "SELECT COUNT(*) FROM audit_events WHERE action = 'api_key.revoked' AND target_id = $1";
    assert_eq!(query_count(&store, audits, &[first_id.as_str()]).await, 1);

    // Idempotent: same answer, same revokedAt, no second audit event.
    let out = deployment.run(&["keys", "revoke", &first_id], None).await;
    out.assert_success();
    let again = out.json_line();
    assert_eq!(again["alreadyRevoked"], true);
    assert_eq!(again["status"], "revoked");
    assert_eq!(again["revokedAt"], revoked["revokedAt"]);
    assert_eq!(query_count(&store, audits, &[first_id.as_str()]).await, 1);

    let out = deployment
        .run(&["keys", "revoke", "key_doesNotExist1234567890"], None)
        .await;
    out.assert_failure();
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr.contains("key_doesNotExist1234567890"),
        "{}",
        out.stderr
    );

    // The listing shows the revoke.
    let out = deployment
        .run(&["keys", "list", "--workspace", &workspace_id], None)
        .await;
    out.assert_success();
    let lines = out.json_lines();
    let first = lines
        .iter()
        .find(|l| l["id"] == first_id.as_str())
        .expect("first key listed");
    assert_eq!(first["status"], "revoked");
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL AND id = $1",
            &[other_id.as_str()]
        )
        .await,
        1
    );

    // A leaked secret as an argument is refused (argv shows in `ps`), and nothing is revoked;
    // from standard input it is revoked, and is never printed back, whether it is known,
    // unknown or mistyped.
    let out = deployment.run(&["keys", "revoke", &second_key], None).await;
    out.assert_failure();
    assert!(out.stderr.contains("--secret-stdin"), "{}", out.stderr);
    assert!(!out.stderr.contains(&second_key[8..38]), "{}", out.stderr);
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL AND id = $1",
            &[second_id.as_str()]
        )
        .await,
        1
    );
    let out = deployment
        .run_with(
            &["keys", "revoke", "--secret-stdin"],
            Some(&format!("{second_key}\n")),
            &[("USER", "ops-alice")],
        )
        .await;
    out.assert_success();
    assert_eq!(out.json_line()["id"], second_id.as_str());
    assert_eq!(out.json_line()["status"], "revoked");
    assert!(!out.stdout.contains(&second_key[8..38]), "{}", out.stdout);
    assert!(!out.stderr.contains(&second_key[8..38]), "{}", out.stderr);
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'api_key.revoked' \
             AND target_id = $1 AND actor_type = 'operator' AND actor_id = 'ops-alice'",
            &[second_id.as_str()]
        )
        .await,
        1
    );
    let unknown = heffl_api::domain::api_key::ApiKey::generate(
        &heffl_api::domain::api_key::KeyEnv::default(),
    );
    let mut mistyped = second_key.clone();
    mistyped.pop();
    mistyped.push(if second_key.ends_with('x') { 'y' } else { 'x' });
    for secret in [unknown.expose_secret(), mistyped.as_str()] {
        let out = deployment
            .run(&["keys", "revoke", "--secret-stdin"], Some(secret))
            .await;
        out.assert_failure();
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        assert!(
            !out.stderr.contains(&secret[8..38]),
            "a secret in the error: {}",
            out.stderr
        );
    }
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL AND id = $1",
            &[other_id.as_str()]
        )
        .await,
        1
    );
    store.close().await;

    // A mistyped workspace id is an error, not an empty list.
    let out = deployment
        .run(&["keys", "list", "--workspace", "ws_nonexistent"], None)
        .await;
    out.assert_failure();
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("ws_nonexistent"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// 4. bad configuration
// ---------------------------------------------------------------------------------------------

/// Each bad value stops start-up before anything listens, naming the variable to fix.
#[tokio::test]
async fn bad_configuration_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = format!("sqlite://{}", dir.path().join("heffl.db").display());
    let cases: [(&str, &str, &str); 6] = [
        ("HEFFL_BIND", "nonsense", "HEFFL_BIND"),
        ("HEFFL_KEY_ENV", "LIVE!", "HEFFL_KEY_ENV"),
        ("HEFFL_SESSION_TTL", "soon", "HEFFL_SESSION_TTL"),
        ("HEFFL_LOG_FORMAT", "xml", "HEFFL_LOG_FORMAT"),
        (
            "HEFFL_LOGIN_ATTEMPTS_PER_MINUTE",
            "0",
            "HEFFL_LOGIN_ATTEMPTS_PER_MINUTE",
        ),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
    ];
    for (variable, value, named) in cases {
        let mut env = vec![
            ("DATABASE_URL".to_owned(), sqlite.clone()),
            (
                "HEFFL_BIND".to_owned(),
                format!("127.0.0.1:{}", free_port()),
            ),
        ];
        env.retain(|(k, _)| k != variable);
        env.push((variable.to_owned(), value.to_owned()));
        for args in [&["serve"][..], &[][..], &["migrate"][..]] {
            let out = run_in(dir.path(), &env, args, None).await;
            out.assert_failure();
            assert!(
                out.stdout.is_empty(),
                "{variable}={value}: stdout {}",
                out.stdout
            );
            assert!(
                out.stderr.contains(named),
                "{variable}={value} ({args:?}): stderr does not name {named}: {}",
                out.stderr
            );
            eprintln!("{variable}={value} {args:?} -> {}", out.stderr.trim());
        }
    }
    assert!(
        !dir.path().join("heffl.db").exists(),
        "a refused start-up touched the database"
    );
}

/// Problems found after parsing — the port is taken, the database is unreachable — also name
/// the variable.
#[tokio::test]
async fn unusable_bind_address_or_database_names_the_variable() {
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = format!("sqlite://{}", dir.path().join("heffl.db").display());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    let env = vec![
        ("DATABASE_URL".to_owned(), sqlite),
        ("HEFFL_BIND".to_owned(), taken_addr.clone()),
    ];
    let out = run_in(dir.path(), &env, &["serve"], None).await;
    out.assert_failure();
    assert!(
        out.stderr.contains("HEFFL_BIND") && out.stderr.contains(&taken_addr),
        "{}",
        out.stderr
    );
    eprintln!("port taken -> {}", out.stderr.trim());
    drop(taken);

    // Nothing listens on port 1; the bounded acquire timeout makes this quick.
    let env = vec![
        (
            "DATABASE_URL".to_owned(),
            "postgres://postgres@127.0.0.1:1/heffl".to_owned(),
        ),
        ("HEFFL_DB_ACQUIRE_TIMEOUT".to_owned(), "1s".to_owned()),
    ];
    let started = Instant::now();
    let out = run_in(dir.path(), &env, &["migrate"], None).await;
    out.assert_failure();
    assert!(out.stderr.contains("DATABASE_URL"), "{}", out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    eprintln!("database unreachable -> {}", out.stderr.trim());
}

// ---------------------------------------------------------------------------------------------
// 5. graceful shutdown
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_requests_in_flight_then_exits_zero() {
    let deployment = Deployment::sqlite();
    deployment.bootstrap("Acme", "owner@acme.test").await;
    // The request layer at debug logs "started processing request" as each request enters it,
    // which tells the test when the requests are really in flight.
    let mut server = deployment
        .spawn(
            // A grace period no busy CI machine runs out of: this test is about finishing
            // requests, not about the grace.
            &[
                ("RUST_LOG", "info,heffl_api::http::pipeline::stack=debug"),
                ("HEFFL_SHUTDOWN_GRACE", "60s"),
            ],
            &["serve"],
        )
        .await;
    let started_before = server
        .stderr_text()
        .matches("started processing request")
        .count();

    const REQUESTS: usize = 20;
    // A fresh client: each request on its own new connection, none reused from the readiness
    // probes.
    let client = Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let url = server.url("/app/v1/auth/login");
    let requests: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let request = client.post(&url).json(
                &json!({ "email": "owner@acme.test", "password": format!("wrong-password-{i}") }),
            );
            tokio::spawn(async move {
                let response = request.send().await?;
                let status = response.status();
                let body = response.text().await?;
                Ok::<_, reqwest::Error>((status, body))
            })
        })
        .collect();
    // Argon2 makes each login take tens of milliseconds, so they are still running when the
    // signal lands.
    server
        .wait_for_stderr("all requests started", |text| {
            text.matches("started processing request").count() >= started_before + REQUESTS
        })
        .await;
    server.sigterm().await;

    for request in requests {
        let result = tokio::time::timeout(Duration::from_secs(20), request)
            .await
            .expect("request finished")
            .expect("task");
        let (status, body) =
            result.unwrap_or_else(|e| panic!("request cut off by the shutdown: {e}"));
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{body}");
        assert_eq!(
            body["error"]["details"]["reason"], "invalid_credentials",
            "{body}"
        );
    }
    let (status, stderr) = server.wait_exit().await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}; stderr:\n{stderr}"
    );

    // Without this the test could pass with every request finished before the signal.
    let signal_at = stderr
        .find("shutdown signal received")
        .unwrap_or_else(|| panic!("no shutdown line in:\n{stderr}"));
    let finished_after = stderr[signal_at..]
        .matches("finished processing request")
        .count();
    eprintln!("{finished_after} of {REQUESTS} requests finished after SIGTERM");
    assert!(
        finished_after >= 1,
        "no request was in flight at SIGTERM:\n{stderr}"
    );
    assert!(stderr.contains("stopped"), "{stderr}");

    let connect = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await;
    let error = connect.expect_err("connected to a server that has exited");
    assert_eq!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. secrets never reach the logs
// ---------------------------------------------------------------------------------------------

async fn secrets_never_reach_json_logs(db: Db) {
    let stderr = secrets_never_reach_logs(db, "json").await;
    let Some(stderr) = stderr else {
        return;
    };
    let mut request_lines = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(
            event["level"].is_string() && event["timestamp"].is_string(),
            "{line}"
        );
        if event["path"] == "/api/v1/leads" {
            request_lines += 1;
        }
    }
    assert!(
        request_lines >= 1,
        "no request log line for /api/v1/leads:\n{stderr}"
    );
}

async fn secrets_never_reach_pretty_logs(db: Db) {
    if let Some(stderr) = secrets_never_reach_logs(db, "pretty").await {
        assert!(
            !stderr.contains('\u{1b}'),
            "colour codes in a log that is not a terminal:\n{stderr}"
        );
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("/api/v1/leads") && l.contains("finished processing request")),
            "no request log line for /api/v1/leads:\n{stderr}"
        );
    }
}

/// Drives every credential through a debug-logging server and returns its whole stderr once
/// none of them was found in it.
async fn secrets_never_reach_logs(db: Db, format: &str) -> Option<String> {
    let deployment = Deployment::create(db).await?;
    let extra = [("RUST_LOG", "debug"), ("HEFFL_LOG_FORMAT", format)];
    let password = "Pa55word-that-must-stay-secret";
    let out = deployment
        .run_with(
            &[
                "bootstrap",
                "--workspace",
                "Acme",
                "--email",
                "owner@acme.test",
                "--password-stdin",
            ],
            Some(password),
            &extra,
        )
        .await;
    out.assert_success();
    let workspace_id = out.json_line()["workspaceId"]
        .as_str()
        .expect("workspaceId")
        .to_owned();
    let mut secrets: Vec<String> = vec![password.to_owned()];
    let mut cli_logs = out.stderr.clone();

    let mut server = deployment.spawn(&extra, &["serve"]).await;
    let wrong_password = "Wrong-password-also-secret";
    let (status, _) = server.login("owner@acme.test", wrong_password).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    secrets.push(wrong_password.to_owned());
    let token = server.login_token("owner@acme.test", password).await;
    secrets.push(token.clone());
    let (status, _) = server
        .send(Method::GET, "/app/v1/session", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, key) = server.create_key(&token, &workspace_id, "Logged?").await;
    secrets.push(key.clone());
    // The key without its prefix and checksum is still the secret.
    secrets.push(key[8..38].to_owned());

    let (status, body) = server
        .send_with_key(Method::GET, "/api/v1/me", &key, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .send_with_key(Method::GET, "/api/v1/leads", &key, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A key pasted into the query string by mistake: the request log records the path only.
    let leaked_query = server
        .client
        .get(server.url(&format!("/api/v1/leads?apiKey={key}")))
        .header("x-api-key", &key)
        .send()
        .await
        .expect("request");
    assert_eq!(leaked_query.status(), StatusCode::OK);

    // Right length, wrong checksum; and a wrong length. Both are someone's secret text.
    let mut bad_checksum = ApiKey::generate(&KeyEnv::default())
        .expose_secret()
        .to_owned();
    bad_checksum.replace_range(38.., "zzzzzz");
    let truncated = "hk_live_TruncatedPasteOfSomeSecretText";
    for malformed in [bad_checksum.as_str(), truncated] {
        let (status, body) = server
            .send_with_key(Method::GET, "/api/v1/leads", malformed, None)
            .await;
        assert_unauthorized(status, &body, "malformed_api_key");
        assert!(
            !body.to_string().contains(&malformed[8..]),
            "echoed in the response: {body}"
        );
        secrets.push(malformed.to_owned());
        secrets.push(malformed[8..].to_owned());
    }
    // The session token sent where a key belongs.
    let (status, body) = parts(
        server
            .client
            .get(server.url("/api/v1/leads"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_unauthorized(status, &body, "bearer_not_supported");
    let (status, _) = server
        .send(Method::POST, "/app/v1/auth/logout", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server
        .send(Method::GET, "/app/v1/session", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, stderr) = server.stop().await;
    assert!(status.success(), "exit {status}");
    cli_logs.push_str(&stderr);
    for secret in &secrets {
        assert!(
            !cli_logs.contains(secret.as_str()),
            "a secret in the logs: {secret}\n{cli_logs}"
        );
    }
    // Proof that the logs were looked at at all.
    assert!(stderr.contains("/api/v1/me"), "no request lines:\n{stderr}");
    assert!(
        stderr.contains("/app/v1/auth/login"),
        "no request lines:\n{stderr}"
    );
    Some(stderr)
}

// ---------------------------------------------------------------------------------------------
// 7. the key environment tag
// ---------------------------------------------------------------------------------------------

async fn key_environment_tag_comes_from_configuration(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    let Owner {
        workspace_id,
        password,
        ..
    } = deployment.bootstrap("Acme", "owner@acme.test").await;
    let server = deployment
        .spawn(&[("HEFFL_KEY_ENV", "test")], &["serve"])
        .await;
    let token = server.login_token("owner@acme.test", &password).await;
    let (key_id, key) = server.create_key(&token, &workspace_id, "Staging").await;
    assert!(key.starts_with("hk_test_"), "{key}");
    assert_eq!(key.len(), "hk_test_".len() + 36, "{key}");
    let (status, me) = server
        .send_with_key(Method::GET, "/api/v1/me", &key, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["apiKey"]["id"], key_id.as_str());

    let live = ApiKey::generate(&KeyEnv::default());
    assert!(live.expose_secret().starts_with("hk_live_"));
    let response = server
        .client
        .get(server.url("/api/v1/me"))
        .header("x-api-key", live.expose_secret())
        .send()
        .await
        .expect("request");
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("ApiKey header=\"x-api-key\"")
    );
    let (status, body) = parts(response).await;
    assert_unauthorized(status, &body, "wrong_environment");

    // A well-formed key of the right tag that was never issued is merely unknown.
    let unknown = ApiKey::generate(&KeyEnv::new("test").expect("tag"));
    let (status, body) = server
        .send_with_key(Method::GET, "/api/v1/me", unknown.expose_secret(), None)
        .await;
    assert_unauthorized(status, &body, "invalid_api_key");

    // And a default-tag server on the same database refuses the test key.
    let live_server = deployment.spawn(&[], &["serve"]).await;
    let (status, body) = live_server
        .send_with_key(Method::GET, "/api/v1/me", &key, None)
        .await;
    assert_unauthorized(status, &body, "wrong_environment");
    let (_, live_key) = live_server
        .create_key(&token, &workspace_id, "Production")
        .await;
    assert!(live_key.starts_with("hk_live_"), "{live_key}");
    let (status, body) = server
        .send_with_key(Method::GET, "/api/v1/me", &live_key, None)
        .await;
    assert_unauthorized(status, &body, "wrong_environment");
}
