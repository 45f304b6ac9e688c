//! Upgrades happen on purpose (docs/operations.md): only `serve` and `migrate` change the
//! schema, and only `serve`, `migrate` and `bootstrap` create a database. Every other command,
//! run from the wrong directory or against a database a migration behind, exits 2 saying what
//! is wrong instead of creating an empty database or upgrading production under older
//! instances; a database newer than the binary is named with both versions.

use crate::common::{raw_pool, Db};
use crate::on_each_db;
use crate::process_harness::Deployment;
use sqlx::migrate::Migrator;
use std::path::Path;

on_each_db!(
    a_database_a_migration_behind_is_upgraded_only_on_purpose,
    a_database_newer_than_the_binary_is_named_with_both_versions,
);

/// Every command but `serve`, `migrate` and `bootstrap`: they read or change data.
const DATA_COMMANDS: &[&[&str]] = &[
    &["users", "list"],
    &["users", "disable", "--email", "someone@example.com"],
    &["workspaces", "list"],
    &[
        "members",
        "add",
        "--workspace",
        "ws_0000000000000000000000",
        "--email",
        "a@example.com",
        "--role",
        "member",
    ],
    &["keys", "list", "--workspace", "ws_0000000000000000000000"],
    &["keys", "revoke", "key_0000000000000000000000"],
];

#[tokio::test]
async fn no_command_but_serve_migrate_and_bootstrap_creates_a_database() {
    let deployment = Deployment::sqlite();
    let file = deployment
        .db
        .url
        .strip_prefix("sqlite://")
        .map(std::path::PathBuf::from)
        .expect("a sqlite path");
    let mut commands: Vec<&[&str]> = DATA_COMMANDS.to_vec();
    commands.push(&["migrate", "--status"]);
    for args in commands {
        let out = deployment.run(args, None).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(&file.display().to_string()),
            "{args:?} must name the path: {}",
            out.stderr
        );
        assert!(!file.exists(), "{args:?} created {}", file.display());
    }
    // The revoke an operator runs during a leak says "no database", never "no such key".
    let out = deployment
        .run(&["keys", "revoke", "key_0000000000000000000000"], None)
        .await;
    assert!(out.stderr.contains("no database"), "{}", out.stderr);
}

/// The database as an older release left it: every migration but the newest.
async fn one_migration_behind(deployment: &Deployment, db: Db) -> String {
    let dir = match db {
        Db::Sqlite => "migrations/sqlite",
        Db::Postgres => "migrations/postgres",
    };
    let mut migrator = Migrator::new(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .await
        .expect("the migrations");
    let latest = migrator
        .iter()
        .map(|m| m.version)
        .max()
        .expect("a migration");
    let older: Vec<_> = migrator
        .iter()
        .filter(|m| m.version < latest)
        .cloned()
        .collect();
    migrator.migrations = older.into();
    let url = match db {
        Db::Sqlite => format!("{}?mode=rwc", deployment.db.url),
        Db::Postgres => deployment.db.url.clone(),
    };
    let pool = raw_pool(&url);
    migrator.run(&pool).await.expect("the older schema");
    pool.close().await;
    let newest = Migrator::new(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .await
        .expect("the migrations");
    let name = newest
        .iter()
        .find(|m| m.version == latest)
        .map(|m| format!("{} {}", m.version, m.description))
        .expect("the newest");
    name
}

async fn a_database_a_migration_behind_is_upgraded_only_on_purpose(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    let newest = one_migration_behind(&deployment, db).await;

    for args in DATA_COMMANDS {
        let out = deployment.run(args, None).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("heffl-api migrate"),
            "{args:?} must say what to run: {}",
            out.stderr
        );
    }
    let status = deployment.run(&["migrate", "--status"], None).await;
    status.assert_success();
    assert!(
        status.stdout.contains(&format!("pending {newest}")),
        "{}",
        status.stdout
    );
    // With HEFFL_AUTO_MIGRATE=false the server refuses to start on pending migrations.
    let refused = deployment
        .run_with(
            &["serve"],
            None,
            &[
                ("HEFFL_AUTO_MIGRATE", "false"),
                ("HEFFL_BIND", "127.0.0.1:0"),
            ],
        )
        .await;
    assert_eq!(refused.status.code(), Some(2), "{}", refused.stderr);
    assert!(refused.stderr.contains(&newest), "{}", refused.stderr);
    // Still behind: nothing above changed the schema.
    let status = deployment.run(&["migrate", "--status"], None).await;
    assert!(
        status.stdout.contains(&format!("pending {newest}")),
        "{}",
        status.stdout
    );

    // `serve` upgrades by default, and logs what it applied and where it stands.
    let server = deployment.serve("upgrading").await;
    let log = server.stderr_text();
    assert!(
        log.contains("applied migration") && log.contains(&newest),
        "{log}"
    );
    assert!(log.contains(env!("CARGO_PKG_VERSION")), "{log}");
    drop(server);
    deployment
        .run(&["users", "list"], None)
        .await
        .assert_success();
    let again = deployment.run(&["migrate"], None).await;
    again.assert_success();
    assert!(
        again.stdout.starts_with("already at schema"),
        "{}",
        again.stdout
    );
}

async fn a_database_newer_than_the_binary_is_named_with_both_versions(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    deployment.run(&["migrate"], None).await.assert_success();
    // What a newer release would leave behind: a migration this binary has never heard of.
    let pool = raw_pool(&deployment.db.url);
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer release', TRUE, $1, 0)",
    )
    .bind(vec![0u8; 4])
    .execute(&pool)
    .await
    .expect("a newer migration");
    pool.close().await;

    let refused = deployment.run(&["migrate"], None).await;
    assert_eq!(refused.status.code(), Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("99990101000000")
            && refused.stderr.contains(env!("CARGO_PKG_VERSION")),
        "both versions: {}",
        refused.stderr
    );
    // Other commands run (migrations are additive), with a warning naming both.
    let listed = deployment.run(&["users", "list"], None).await;
    listed.assert_success();
    assert!(
        listed.stderr.contains("newer than this binary"),
        "{}",
        listed.stderr
    );
    let server = deployment.serve("older binary").await;
    assert!(
        server.stderr_text().contains("newer than this binary"),
        "{}",
        server.stderr_text()
    );
}
