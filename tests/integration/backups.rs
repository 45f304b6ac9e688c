//! `heffl-api backup FILE` while a server keeps writing, and the documented restore
//! (docs/operations.md, Backups): every key acknowledged before the backup began authenticates
//! on the restored database. SQLite through `VACUUM INTO`, PostgreSQL through `pg_dump` and
//! `pg_restore` into a fresh database.

use crate::common::{postgres_admin_url, Db};
use crate::on_each_db;
use crate::process_harness::{Deployment, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::{Connection, Executor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

on_each_db!(a_backup_under_writes_restores_every_key_acknowledged_before_it);

async fn a_backup_under_writes_restores_every_key_acknowledged_before_it(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    let owner = deployment.bootstrap("Backup", "owner@backup.test").await;
    let server = deployment.serve("writer").await;
    let token = server.login_token(&owner.email, &owner.password).await;

    // A writer creating keys as fast as the server acknowledges them.
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (acknowledged, stop) = (Arc::clone(&acknowledged), Arc::clone(&stop));
        let url = server.url(&format!(
            "/app/v1/workspaces/{}/api-keys",
            owner.workspace_id
        ));
        let client = reqwest::Client::new();
        async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "name": format!("Key {n}") }))
                    .send()
                    .await
                    .expect("create a key");
                assert_eq!(response.status(), StatusCode::CREATED);
                let body: serde_json::Value = response.json().await.expect("json");
                let key = body["key"].as_str().expect("key").to_owned();
                acknowledged.lock().expect("lock").push(key);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before: Vec<String> = acknowledged.lock().expect("lock").clone();
    assert!(!before.is_empty(), "the writer acknowledged nothing");
    let file = deployment.dir.path().join(match db {
        Db::Sqlite => "backup.db",
        Db::Postgres => "backup.dump",
    });
    let file_arg = file.to_str().expect("utf-8 path");
    let out = deployment.run(&["backup", file_arg], None).await;
    out.assert_success();
    assert!(file.exists(), "no backup at {}", file.display());
    // A second backup to the same file is refused, not an overwrite.
    deployment
        .run(&["backup", file_arg], None)
        .await
        .assert_failure();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let after = acknowledged.lock().expect("lock").len();
    eprintln!(
        "BACKUP [{db:?}] {} keys acknowledged before the backup, {after} in all",
        before.len()
    );
    drop(server);

    let (restored_url, restored_pg) = match db {
        Db::Sqlite => (format!("sqlite://{file_arg}"), None),
        Db::Postgres => {
            let name = format!("heffl_t_restore_{}", std::process::id());
            let admin = postgres_admin_url();
            let mut conn = sqlx::PgConnection::connect(&admin).await.expect("admin");
            conn.execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
                .await
                .expect("drop");
            conn.execute(format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("create");
            let url = admin
                .rsplit_once('/')
                .map(|(server, _)| format!("{server}/{name}"))
                .expect("a database in the URL");
            let status = std::process::Command::new("pg_restore")
                .args(["--no-owner", &format!("--dbname={url}"), file_arg])
                .status()
                .expect("pg_restore");
            assert!(status.success(), "pg_restore failed");
            (url, Some((conn, name)))
        }
    };
    let mut env = deployment.env_with(&[]);
    env.retain(|(k, _)| k != "DATABASE_URL");
    env.push(("DATABASE_URL".to_owned(), restored_url));
    let restored = Server::spawn("restored", deployment.dir.path(), env, &["serve"]).await;
    for key in &before {
        let (status, body) = restored
            .send_with_key(Method::GET, "/api/v1/me", key, None)
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a key acknowledged before the backup: {body}"
        );
    }
    drop(restored);
    if let Some((mut conn, name)) = restored_pg {
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await;
    }
}
