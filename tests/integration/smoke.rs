use crate::common::TestApp;
use crate::on_both_databases;
use reqwest::StatusCode;

async fn health_and_session(app: TestApp) {
    let body = app.health().await.ok();
    assert_eq!(body["status"], "ok");
    let ready = app.readiness().await;
    assert_eq!(ready.status, StatusCode::OK);

    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let body = app.session(&owner.token).await.ok();
    assert_eq!(body["user"]["email"], "owner@acme.test");
    assert_eq!(body["workspaces"][0]["id"], owner.workspace_id.as_str());
    assert_eq!(body["workspaces"][0]["role"], "owner");
}

on_both_databases!(health_and_session);
