use crate::common::{parts, TestApp};
use crate::on_both_databases;
use reqwest::{Method, StatusCode};

async fn health_and_session(app: TestApp) {
    let (status, body) = parts(app.send(Method::GET, "/healthz", None, None).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let (status, _) = parts(app.send(Method::GET, "/readyz", None, None).await).await;
    assert_eq!(status, StatusCode::OK);

    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let (status, body) = parts(
        app.send(Method::GET, "/app/v1/session", Some(&owner.token), None)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"]["email"], "owner@acme.test");
    assert_eq!(body["workspaces"][0]["id"], owner.workspace_id.as_str());
    assert_eq!(body["workspaces"][0]["role"], "owner");
}

on_both_databases!(health_and_session);
