//! What an operator sees when the server starts: where to go, how to begin, and a database that
//! is late or missing named with its host, port and cause.

use crate::common::{Db, TestApp, TestDb};
use crate::on_each_db;
use crate::process_harness::{free_port, run_in, Deployment, Server};
use reqwest::{redirect, Client, StatusCode};
use std::time::{Duration, Instant};

#[tokio::test]
async fn the_bare_address_leads_to_the_page() {
    let app = TestApp::sqlite().await;
    let client = Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .expect("client");
    let response = client.get(app.url("/")).send().await.expect("GET /");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()["location"].to_str().expect("ascii"),
        "/settings/developer"
    );
}

/// The first start of an empty database says where the page is and how to create the first
/// user; once a user exists the hint is gone.
async fn start_up_logs_the_urls_and_how_to_bootstrap(db: Db) {
    let Some(deployment) = Deployment::create(db).await else {
        return;
    };
    let mut server = deployment.serve("first start").await;
    let (_, log) = server.stop().await;
    let base = format!("http://127.0.0.1:{}", server.port);
    for url in [
        format!("{base}/settings/developer"),
        format!("{base}/docs"),
        format!("{base}/api/v1"),
    ] {
        assert!(log.contains(&url), "{url} not in the start-up log:\n{log}");
    }
    assert!(
        log.contains("heffl-api bootstrap --workspace"),
        "no bootstrap hint on an empty database:\n{log}"
    );

    deployment.bootstrap("Acme", "owner@acme.test").await;
    let mut server = deployment.serve("second start").await;
    let (_, log) = server.stop().await;
    assert!(
        !log.contains("heffl-api bootstrap"),
        "bootstrap hint although a user exists:\n{log}"
    );
}

on_each_db!(start_up_logs_the_urls_and_how_to_bootstrap);

/// `serve` started before its database waits for it instead of exiting: here PostgreSQL only
/// becomes reachable (through a forwarder on a port of its own) two seconds after the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_a_database_that_comes_up_later() {
    let Some(db) = TestDb::create(Db::Postgres).await else {
        return;
    };
    let (upstream, late_url) = forwarded_url(&db.url);
    let late_port = free_port();
    let late_url = late_url.replace("PORT", &late_port.to_string());
    let forwarder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        forward(late_port, upstream).await;
    });
    let dir = tempfile::tempdir().expect("dir");
    let env = vec![
        ("DATABASE_URL".to_owned(), late_url),
        ("HEFFL_DB_ACQUIRE_TIMEOUT".to_owned(), "1s".to_owned()),
        ("HEFFL_DB_STARTUP_TIMEOUT".to_owned(), "30s".to_owned()),
    ];
    let mut server = Server::spawn("late database", dir.path(), env, &["serve"]).await;
    let (_, log) = server.stop().await;
    forwarder.abort();
    assert!(
        log.contains("cannot reach the database yet; retrying"),
        "no retry was logged:\n{log}"
    );
    assert!(
        log.contains(&format!("PostgreSQL at 127.0.0.1:{late_port}")),
        "the retries do not name the host and port:\n{log}"
    );
}

/// Past `HEFFL_DB_STARTUP_TIMEOUT` it gives up, naming the variable, the host and port, and
/// the cause; one-shot commands do not wait at all.
#[tokio::test]
async fn an_unreachable_database_is_named_with_host_port_and_cause() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let env = vec![
        (
            "DATABASE_URL".to_owned(),
            format!("postgres://postgres:do-not-print@127.0.0.1:{port}/heffl"),
        ),
        ("HEFFL_DB_ACQUIRE_TIMEOUT".to_owned(), "1s".to_owned()),
        ("HEFFL_DB_STARTUP_TIMEOUT".to_owned(), "2s".to_owned()),
    ];
    let started = Instant::now();
    let out = run_in(dir.path(), &env, &["serve"], None).await;
    out.assert_failure();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "gave up after {waited:?}"
    );
    for expected in [
        "DATABASE_URL",
        &format!("PostgreSQL at 127.0.0.1:{port}"),
        "refused",
    ] {
        assert!(
            out.stderr.contains(expected),
            "no {expected:?} in:\n{}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("do-not-print"), "{}", out.stderr);

    let started = Instant::now();
    let out = run_in(dir.path(), &env, &["migrate"], None).await;
    out.assert_failure();
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "a one-shot command waited {:?}",
        started.elapsed()
    );
}

/// The upstream address of a test database's URL, and the URL with its port replaced by `PORT`.
fn forwarded_url(url: &str) -> (String, String) {
    let (scheme_and_user, rest) = url.split_once('@').expect("user@host in the URL");
    let (host_port, path) = rest.split_once('/').expect("a database in the URL");
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host);
    (
        host_port.to_owned(),
        format!("{scheme_and_user}@{host}:PORT/{path}"),
    )
}

/// A TCP forwarder from `port` to `upstream`, for as long as the task runs.
async fn forward(port: u16, upstream: String) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the forwarder");
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
