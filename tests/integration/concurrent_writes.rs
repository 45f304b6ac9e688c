//! Writes that read before they write (is this person already a member? is this name taken?)
//! must wait their turn behind other writers, never fail with 503. On SQLite a transaction that
//! starts reading and then writes cannot wait for a writer that got in between; every
//! transaction must take the write lock from its first statement.

use crate::common::{count, TestApp};
use crate::on_both_databases;
use crate::test_app::Reply;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use tokio::task::JoinSet;

const EACH: usize = 16;

async fn invitations_and_keys_written_at_once_all_succeed(app: TestApp) {
    let app = Arc::new(app);
    let owner = Arc::new(app.bootstrap("Busy", "owner@busy.test").await);
    let mut writes: JoinSet<Reply> = JoinSet::new();
    for i in 0..EACH {
        let (inviting, inviter) = (app.clone(), owner.clone());
        writes.spawn(async move {
            let email = format!("person{i}@busy.test");
            inviting
                .invite(&inviter, &inviter.workspace_id, &email, "member")
                .await
        });
        let (creating, creator) = (app.clone(), owner.clone());
        writes.spawn(async move {
            creating
                .new_key(&creator, json!({ "name": format!("Key {i}") }))
                .await
        });
    }
    while let Some(write) = writes.join_next().await {
        write
            .expect("request task")
            .expect_status(StatusCode::CREATED);
    }
    for table in ["invitations", "api_keys"] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE workspace_id = $1");
        assert_eq!(
            count(&app, &sql, &[&owner.workspace_id]).await,
            EACH as i64,
            "{table}"
        );
    }
}

on_both_databases!(invitations_and_keys_written_at_once_all_succeed);
