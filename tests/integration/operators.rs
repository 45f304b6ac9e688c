//! docs/api.md §10 operator recovery, run as an operator runs it: the real binary in its own process.
//! Each command is one transaction with an audit event whose actor is the operator.

use crate::common::{assert_error, assert_unauthorized, count_rows, query_count, Db};
use crate::on_each_db;
use crate::process_harness::{Deployment, Owner};
use reqwest::{Method, StatusCode};
use serde_json::json;

on_each_db!(
    lost_password_is_reset_from_the_shell,
    operators_create_users_and_manage_members,
    operators_rename_and_delete_workspaces,
    operators_delete_users_down_to_their_id,
    the_audit_log_exports_as_json_lines,
);

const OPERATOR: (&str, &str) = ("USER", "ops-alice");

/// The owner lost the bootstrap password: `users set-password` gets them back in, and every
/// session of the old password ends.
async fn lost_password_is_reset_from_the_shell(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    let Owner {
        user_id, password, ..
    } = deployment.bootstrap("Acme", "owner@acme.test").await;
    let server = deployment.spawn(&[], &["serve"]).await;
    let old_session = server.login_token("owner@acme.test", &password).await;

    // Bootstrap again refuses, and says what to do instead.
    let again = deployment
        .run(
            &[
                "bootstrap",
                "--workspace",
                "Acme",
                "--email",
                "owner@acme.test",
            ],
            None,
        )
        .await;
    again.assert_failure();
    assert!(
        again.stderr.contains("users set-password"),
        "{}",
        again.stderr
    );

    // A generated password, printed once on stdout.
    let out = deployment
        .run_with(
            &["users", "set-password", "--email", "OWNER@acme.test"],
            None,
            &[OPERATOR],
        )
        .await;
    out.assert_success();
    let line = out.json_line();
    assert_eq!(line["userId"], user_id.as_str(), "{line}");
    let generated = line["password"].as_str().expect("password").to_owned();
    assert!(generated.len() >= 12);
    assert!(!out.stderr.contains(&generated), "password on stderr");

    let (status, body) = server.login("owner@acme.test", &password).await;
    assert_unauthorized(status, &body, "invalid_credentials");
    let (status, body) = server
        .send(Method::GET, "/app/v1/session", Some(&old_session), None)
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        None,
    );
    let (status, body) = server.login("owner@acme.test", &generated).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Or one the operator chooses, from stdin (never from the command line).
    let chosen = "chosen-by-the-operator";
    let out = deployment
        .run_with(
            &[
                "users",
                "set-password",
                "--email",
                "owner@acme.test",
                "--password-stdin",
            ],
            Some(&format!("{chosen}\n")),
            &[OPERATOR],
        )
        .await;
    out.assert_success();
    assert!(out.json_line().get("password").is_none());
    let (status, body) = server.login("owner@acme.test", chosen).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let short = deployment
        .run(
            &[
                "users",
                "set-password",
                "--email",
                "owner@acme.test",
                "--password-stdin",
            ],
            Some("short\n"),
        )
        .await;
    short.assert_failure();
    assert!(short.stderr.contains("at least 12"), "{}", short.stderr);
    let nobody = deployment
        .run(
            &["users", "set-password", "--email", "nobody@acme.test"],
            None,
        )
        .await;
    nobody.assert_failure();
    assert!(nobody.stdout.is_empty(), "no password printed for nobody");

    let store = deployment.store().await;
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'user.password_changed' \
             AND target_id = $1 AND actor_type = 'operator' AND actor_id = 'ops-alice'",
            &[user_id.as_str()],
        )
        .await,
        2
    );
    store.close().await;
}

async fn operators_create_users_and_manage_members(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    let owner = deployment.bootstrap("Acme", "owner@acme.test").await;

    let out = deployment
        .run_with(
            &[
                "users",
                "create",
                "--email",
                "Jane@Acme.test",
                "--name",
                "Jane Doe",
            ],
            None,
            &[OPERATOR],
        )
        .await;
    out.assert_success();
    let line = out.json_line();
    let jane = line["userId"].as_str().expect("userId").to_owned();
    assert!(jane.starts_with("usr_"), "{line}");
    let jane_password = line["password"].as_str().expect("password").to_owned();

    // Refusals name the problem and write nothing.
    for (args, says) in [
        (
            vec![
                "users",
                "create",
                "--email",
                "jane@acme.test",
                "--name",
                "Again",
            ],
            "already exists",
        ),
        (
            vec!["users", "create", "--email", "not-an-email", "--name", "X"],
            "--email",
        ),
        (
            vec![
                "users",
                "create",
                "--email",
                "x@acme.test",
                "--name",
                "Bad\u{7}Name",
            ],
            "--name",
        ),
        (
            vec![
                "members",
                "add",
                "--workspace",
                &owner.workspace_id,
                "--email",
                "jane@acme.test",
                "--role",
                "superuser",
            ],
            "--role",
        ),
        (
            vec![
                "members",
                "add",
                "--workspace",
                "ws_nope",
                "--email",
                "jane@acme.test",
                "--role",
                "member",
            ],
            "no workspace",
        ),
        (
            vec![
                "members",
                "add",
                "--workspace",
                &owner.workspace_id,
                "--email",
                "ghost@acme.test",
                "--role",
                "member",
            ],
            "no user",
        ),
        (
            vec![
                "members",
                "remove",
                "--workspace",
                &owner.workspace_id,
                "--email",
                "owner@acme.test",
            ],
            "owner",
        ),
    ] {
        let out = deployment.run(&args, None).await;
        out.assert_failure();
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }

    let out = deployment
        .run_with(
            &[
                "members",
                "add",
                "--workspace",
                &owner.workspace_id,
                "--email",
                "jane@acme.test",
                "--role",
                "admin",
            ],
            None,
            &[OPERATOR],
        )
        .await;
    out.assert_success();
    assert_eq!(
        out.json_line(),
        json!({ "workspaceId": owner.workspace_id, "userId": jane, "role": "admin" })
    );

    let server = deployment.spawn(&[], &["serve"]).await;
    let token = server.login_token("jane@acme.test", &jane_password).await;
    let (status, session) = server
        .send(Method::GET, "/app/v1/session", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(
        session["workspaces"],
        json!([{ "id": owner.workspace_id, "name": "Acme", "role": "admin" }])
    );

    let users = deployment.run(&["users", "list"], None).await;
    users.assert_success();
    let emails: Vec<String> = users
        .json_lines()
        .iter()
        .map(|u| u["email"].as_str().expect("email").to_owned())
        .collect();
    assert_eq!(emails, ["owner@acme.test", "Jane@Acme.test"]);
    assert!(
        !users.stdout.contains("argon2"),
        "no password hash in the list"
    );
    let workspaces = deployment.run(&["workspaces", "list"], None).await;
    workspaces.assert_success();
    let listed = workspaces.json_lines();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], owner.workspace_id.as_str());
    assert_eq!(listed[0]["name"], "Acme");

    let (key_id, key) = server
        .create_key(&token, &owner.workspace_id, "Jane's")
        .await;
    let out = deployment
        .run_with(
            &[
                "members",
                "remove",
                "--workspace",
                &owner.workspace_id,
                "--email",
                "jane@acme.test",
            ],
            None,
            &[OPERATOR],
        )
        .await;
    out.assert_success();
    server.until_key_revoked(&key).await;

    let store = deployment.store().await;
    assert_eq!(count_rows(&store, "memberships").await, 1);
    for (action, target) in [
        ("user.created", jane.as_str()),
        ("member.added", jane.as_str()),
        ("member.removed", jane.as_str()),
    ] {
        assert_eq!(
            query_count(
                &store,
                "SELECT COUNT(*) FROM audit_events WHERE action = $1 AND target_id = $2 \
                 AND actor_type = 'operator' AND actor_id = 'ops-alice'",
                &[action, target],
            )
            .await,
            1,
            "{action}"
        );
    }
    let revoked_by_operator = query_count(
        &store,
        "SELECT COUNT(*) FROM api_keys WHERE id = $1 AND revoke_reason = 'owner_removed' AND revoked_by IS NULL",
        &[key_id.as_str()],
    )
    .await;
    assert_eq!(revoked_by_operator, 1);
    store.close().await;
}

/// `workspaces rename` shows at once in what keys answer; `workspaces delete` wants the name
/// typed out, takes everything with it, and the workspace's keys stop working.
async fn operators_rename_and_delete_workspaces(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    let owner = deployment.bootstrap("Acme", "owner@acme.test").await;
    let server = deployment.spawn(&[], &["serve"]).await;
    let token = server.login_token(&owner.email, &owner.password).await;
    let (_, key) = server.create_key(&token, &owner.workspace_id, "Sync").await;
    let (status, me) = server
        .send_with_key(Method::GET, "/api/v1/me", &key, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");

    let ws = owner.workspace_id.as_str();
    let out = deployment
        .run_with(
            &[
                "workspaces",
                "rename",
                "--workspace",
                ws,
                "--name",
                "Acme GmbH",
            ],
            None,
            &[OPERATOR],
        )
        .await;
    out.assert_success();
    assert_eq!(out.json_line()["name"], "Acme GmbH");
    // The running server's cached answer follows within a second.
    let since = std::time::Instant::now();
    loop {
        let (_, me) = server
            .send_with_key(Method::GET, "/api/v1/me", &key, None)
            .await;
        if me["workspace"]["name"] == "Acme GmbH" {
            break;
        }
        assert!(since.elapsed() < std::time::Duration::from_secs(3), "{me}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The wrong name deletes nothing.
    let wrong = deployment
        .run_with(
            &[
                "workspaces",
                "delete",
                "--workspace",
                ws,
                "--confirm-name",
                "Acme",
            ],
            None,
            &[OPERATOR],
        )
        .await;
    wrong.assert_failure();
    assert!(wrong.stderr.contains("Acme GmbH"), "{}", wrong.stderr);
    let store = deployment.store().await;
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM workspaces WHERE id = $1",
            &[ws]
        )
        .await,
        1
    );

    let out = deployment
        .run_with(
            &[
                "workspaces",
                "delete",
                "--workspace",
                ws,
                "--confirm-name",
                "Acme GmbH",
            ],
            None,
            &[OPERATOR],
        )
        .await;
    out.assert_success();
    for table in [
        "workspaces WHERE id = $1",
        "api_keys WHERE workspace_id = $1",
        "memberships WHERE workspace_id = $1",
    ] {
        assert_eq!(
            query_count(&store, &format!("SELECT COUNT(*) FROM {table}"), &[ws]).await,
            0,
            "{table}"
        );
    }
    // Audited outside the workspace (whose own log went with it), as the operator.
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'workspace.deleted' AND target_id = $1 \
             AND actor_type = 'operator' AND actor_id = 'ops-alice'",
            &[ws]
        )
        .await,
        1
    );
    store.close().await;
    // The running server hears of it through the database, as of a revocation.
    let elapsed = server.until_key_gone(&key).await;
    eprintln!("PROPAGATION [{db:?}] workspace deleted -> key refused after {elapsed:?}");
}

/// `users delete`: the account is erased down to its id, its keys and sessions end, the email
/// is free again; the last owner of a workspace is refused.
async fn operators_delete_users_down_to_their_id(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    let owner = deployment.bootstrap("Acme", "owner@acme.test").await;
    let server = deployment.spawn(&[], &["serve"]).await;
    let token = server.login_token(&owner.email, &owner.password).await;
    let (jane_id, jane_token) = server
        .add_member(&token, &owner.workspace_id, "jane@acme.test", "admin")
        .await;
    let (_, jane_key) = server
        .create_key(&jane_token, &owner.workspace_id, "Jane's")
        .await;

    let refused = deployment
        .run_with(
            &["users", "delete", "--email", "owner@acme.test"],
            None,
            &[OPERATOR],
        )
        .await;
    refused.assert_failure();
    assert!(refused.stderr.contains("only owner"), "{}", refused.stderr);

    let out = deployment
        .run_with(
            &["users", "delete", "--email", "Jane@acme.test"],
            None,
            &[OPERATOR],
        )
        .await;
    out.assert_success();
    assert_eq!(out.json_line()["revokedKeys"], 1);
    let (status, body) = server
        .send_with_key(Method::GET, "/api/v1/me", &jane_key, None)
        .await;
    assert_unauthorized(status, &body, "revoked_api_key");
    let (status, _) = server
        .send(Method::GET, "/app/v1/session", Some(&jane_token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let store = deployment.store().await;
    assert_eq!(
        query_count(&store, "SELECT COUNT(*) FROM users WHERE id = $1 AND email LIKE 'deleted-%' AND name = 'Deleted user'", &[&jane_id]).await,
        1
    );
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM memberships WHERE user_id = $1",
            &[&jane_id]
        )
        .await,
        0
    );
    assert_eq!(
        query_count(&store, "SELECT COUNT(*) FROM audit_events WHERE action = 'user.deleted' AND target_id = $1 AND actor_id = 'ops-alice'", &[&jane_id]).await,
        1
    );
    store.close().await;
    // The email is free for a new account.
    let out = deployment
        .run(
            &[
                "users",
                "create",
                "--email",
                "jane@acme.test",
                "--name",
                "Jane",
            ],
            None,
        )
        .await;
    out.assert_success();
    // Disabling from the shell is the operator's act too, by name.
    deployment
        .run_with(
            &["users", "disable", "--email", "jane@acme.test"],
            None,
            &[OPERATOR],
        )
        .await
        .assert_success();
    let new_jane = out.json_line()["userId"]
        .as_str()
        .expect("userId")
        .to_owned();
    let store = deployment.store().await;
    assert_eq!(
        query_count(
            &store,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'user.disabled' AND target_id = $1 \
             AND actor_type = 'operator' AND actor_id = 'ops-alice'",
            &[&new_jane]
        )
        .await,
        1
    );
    store.close().await;
}

/// `audit export --since`: every event from then on, oldest first, one JSON line each, with
/// its workspace; `--workspace` narrows it; a bad time is refused.
async fn the_audit_log_exports_as_json_lines(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    let owner = deployment.bootstrap("Acme", "owner@acme.test").await;
    let other = deployment.bootstrap("Other", "owner@other.test").await;
    let server = deployment.spawn(&[], &["serve"]).await;
    let token = server.login_token(&owner.email, &owner.password).await;
    server.create_key(&token, &owner.workspace_id, "Sync").await;
    drop(server);

    let out = deployment
        .run(&["audit", "export", "--since", "2000-01-01"], None)
        .await;
    out.assert_success();
    let lines = out.json_lines();
    let actions: Vec<&str> = lines.iter().filter_map(|l| l["action"].as_str()).collect();
    assert!(actions.contains(&"api_key.created"), "{actions:?}");
    let times: Vec<&str> = lines.iter().filter_map(|l| l["at"].as_str()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "oldest first");
    assert!(lines
        .iter()
        .any(|l| l["workspaceId"] == other.workspace_id.as_str()));

    let mine = deployment
        .run(
            &[
                "audit",
                "export",
                "--since",
                "2000-01-01T00:00:00Z",
                "--workspace",
                &owner.workspace_id,
            ],
            None,
        )
        .await;
    mine.assert_success();
    let mine = mine.json_lines();
    assert!(!mine.is_empty());
    assert!(mine
        .iter()
        .all(|l| l["workspaceId"] == owner.workspace_id.as_str()));
    let future = deployment
        .run(&["audit", "export", "--since", "2999-01-01"], None)
        .await;
    future.assert_success();
    assert!(future.stdout.is_empty());
    let bad = deployment
        .run(&["audit", "export", "--since", "yesterday"], None)
        .await;
    bad.assert_failure();
    assert!(bad.stderr.contains("--since"), "{}", bad.stderr);

    // HEFFL_AUDIT_RETENTION: a server prunes what is older, and only that.
    let store = deployment.store().await;
    let before = count_rows(&store, "audit_events").await;
    sqlx::query(
        "INSERT INTO audit_events (id, workspace_id, actor_type, action, target_type, target_id, at) \
         VALUES ('evt_ancient', $1, 'system', 'workspace.bootstrapped', 'workspace', $1, 1000)",
    )
    .bind(&owner.workspace_id)
    .execute(&crate::common::raw_pool(&deployment.db.url))
    .await
    .expect("an ancient event");
    let server = deployment
        .spawn(&[("HEFFL_AUDIT_RETENTION", "30d")], &["serve"])
        .await;
    let since = std::time::Instant::now();
    while query_count(
        &store,
        "SELECT COUNT(*) FROM audit_events WHERE id = 'evt_ancient'",
        &[],
    )
    .await
        == 1
    {
        assert!(
            since.elapsed() < std::time::Duration::from_secs(10),
            "not pruned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        count_rows(&store, "audit_events").await,
        before,
        "only the old one goes"
    );
    drop(server);
    store.close().await;
}
