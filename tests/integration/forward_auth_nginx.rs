//! docs/api.md §13 through Debian's nginx: the shipped deploy/gateways/nginx config, unchanged but for
//! its three addresses, in front of a tiny upstream that echoes what it receives. Under CI a
//! missing nginx fails the test; elsewhere it is skipped with a notice.

use crate::common::{
    assert_error, assert_too_many, assert_unauthorized, postgres_required, without_request_id,
    Account, TestApp,
};
use crate::on_both_databases_with;
use crate::process_harness::free_port;
use crate::test_app::Reply;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method as AxumMethod, Uri};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/gateways/nginx");

fn nginx_binary() -> Option<PathBuf> {
    let found = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists());
    if found.is_none() {
        // The same switch as PostgreSQL's: CI=true (or HEFFL_REQUIRE_POSTGRES=1) means "fail".
        assert!(
            !postgres_required(),
            "nginx is required in CI (.ci/run installs Debian's package) but is not installed"
        );
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx)");
    }
    found
}

/// The upstream service: answers every request with what it saw, and counts them.
struct Upstream {
    port: u16,
    hits: Arc<AtomicUsize>,
}

async fn start_upstream() -> Upstream {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let echo = move |method: AxumMethod, uri: Uri, headers: HeaderMap, body: Bytes| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut seen = Map::new();
            for (name, value) in &headers {
                let values = seen.entry(name.as_str()).or_insert_with(|| json!([]));
                if let Some(list) = values.as_array_mut() {
                    list.push(json!(value.to_str().unwrap_or("<binary>")));
                }
            }
            axum::Json(json!({
                "method": method.as_str(),
                "path": uri.to_string(),
                "headers": seen,
                "body": String::from_utf8_lossy(&body),
            }))
        }
    };
    let router = axum::Router::new().fallback(echo);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Upstream { port, hits }
}

/// nginx in the foreground, with its pid, logs and temp files in its own directory.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(binary: &Path, heffl_port: u16, upstream_port: u16) -> Nginx {
        let dir = tempfile::tempdir().expect("nginx dir");
        let port = free_port();
        let shipped = std::fs::read_to_string(format!("{CONFIG_DIR}/heffl-forward-auth.conf"))
            .expect("deploy/gateways/nginx/heffl-forward-auth.conf");
        let mut site = shipped;
        for (address, port) in [
            ("8080", heffl_port),
            ("9000", upstream_port),
            ("8000", port),
        ] {
            let from = format!("127.0.0.1:{address}");
            assert_eq!(
                site.matches(&from).count(),
                1,
                "the config names {from} once"
            );
            site = site.replace(&from, &format!("127.0.0.1:{port}"));
        }
        std::fs::write(dir.path().join("heffl-forward-auth.conf"), site).expect("write site");
        std::fs::create_dir(dir.path().join("snippets")).expect("snippets dir");
        std::fs::copy(
            format!("{CONFIG_DIR}/snippets/heffl-verify.conf"),
            dir.path().join("snippets/heffl-verify.conf"),
        )
        .expect("copy snippet");
        let d = dir.path().display();
        // As root, nginx would run its workers as nobody, who cannot enter this directory.
        let user = if is_root() { "user root;" } else { "" };
        let main = format!(
            "{user}\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
             scgi_temp_path {d}/scgi;\n  include {d}/heffl-forward-auth.conf;\n}}\n"
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, main).expect("write nginx.conf");
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx { child, port, dir };
        nginx.wait_until_listening();
        nginx
    }

    fn wait_until_listening(&mut self) {
        let since = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited ({status}):\n{}", self.error_log());
            }
            assert!(
                since.elapsed() < Duration::from_secs(10),
                "nginx did not listen:\n{}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM, not KILL: the master then stops its workers too.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A request to nginx, not to the app: the typed client knows only the app's address.
async fn through(
    app: &TestApp,
    nginx: &Nginx,
    method: Method,
    path: &str,
    key: Option<&str>,
) -> Reply {
    let mut request = app.client.request(method, nginx.url(path));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    Reply::read(request.send().await.expect("request through nginx")).await
}

async fn key(app: &TestApp, account: &Account, body: Value) -> (String, String) {
    let (key, _) = app.new_key(account, body).await.created_key();
    (key.id, key.key)
}

#[track_caller]
fn seen<'a>(echo: &'a Value, header: &str) -> Option<&'a str> {
    let values = echo["headers"][header].as_array()?;
    assert_eq!(
        values.len(),
        1,
        "{header} reached the upstream {} times: {echo}",
        values.len()
    );
    values[0].as_str()
}

#[track_caller]
fn single(response: &Reply, header: &str) -> Option<String> {
    let values: Vec<_> = response.headers.get_all(header).iter().collect();
    assert!(
        values.len() <= 1,
        "{header} sent {} times: {values:?}",
        values.len()
    );
    values
        .first()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

on_both_databases_with!(nginx_lets_through_only_what_heffl_api_allows, |config| {
    config.extra_scopes = heffl_api::domain::scopes::ExtraScopes::new(
        ["orders:read", "orders:write"]
            .map(|s| heffl_api::domain::scopes::parse_extra_scope(s).expect("valid")),
    );
    config.rate_limit_per_minute = 1000;
});

async fn nginx_lets_through_only_what_heffl_api_allows(app: TestApp) {
    let Some((nginx, upstream)) = gateway(&app).await else {
        return;
    };

    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let (reader_id, reader) = key(
        &app,
        &member,
        json!({ "name": "Reader", "scopes": ["orders:read"] }),
    )
    .await;
    let (_, limited) = key(
        &app,
        &owner,
        json!({ "name": "Limited", "rateLimitPerMinute": 2 }),
    )
    .await;
    let (revoked_id, revoked) = key(&app, &owner, json!({ "name": "Revoked" })).await;
    let mut allowed = 0;

    // A valid key: the upstream sees who it acts as, not the key, and not what the client forged.
    let response = app
        .client
        .post(nginx.url("/orders/17?expand=items"))
        .header("x-api-key", &reader)
        .header("x-heffl-user-role", "owner")
        .header("x-heffl-workspace-id", "ws_forged")
        .json(&json!({ "item": "widget" }))
        .send()
        .await
        .expect("through nginx");
    let response = Reply::read(response).await;
    allowed += 1;
    assert_eq!(
        single(&response, "ratelimit-limit").as_deref(),
        Some("1000")
    );
    assert_eq!(
        single(&response, "ratelimit-remaining").as_deref(),
        Some("999")
    );
    let Reply {
        status, body: echo, ..
    } = response;
    assert_eq!(status, StatusCode::OK, "{echo}\n{}", nginx.error_log());
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/orders/17?expand=items");
    assert_eq!(
        echo["body"], r#"{"item":"widget"}"#,
        "the body reaches the service"
    );
    assert_eq!(
        seen(&echo, "x-heffl-workspace-id"),
        Some(owner.workspace_id.as_str())
    );
    assert_eq!(
        seen(&echo, "x-heffl-user-id"),
        Some(member.user_id.as_str())
    );
    assert_eq!(seen(&echo, "x-heffl-user-role"), Some("member"));
    assert_eq!(seen(&echo, "x-heffl-key-id"), Some(reader_id.as_str()));
    assert_eq!(seen(&echo, "x-heffl-scopes"), Some("orders:read"));
    assert_eq!(
        seen(&echo, "x-api-key"),
        None,
        "the secret reached the service: {echo}"
    );

    // Any valid key on a location that names no scope.
    let Reply {
        status, body: echo, ..
    } = through(&app, &nginx, Method::DELETE, "/anything", Some(&revoked)).await;
    allowed += 1;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(seen(&echo, "x-heffl-user-role"), Some("owner"));

    // Wrong scope: heffl-api's 403.
    let response = through(&app, &nginx, Method::GET, "/admin/settings", Some(&reader)).await;
    assert!(single(&response, "x-heffl-user-id").is_none());
    assert!(single(&response, "ratelimit-remaining").is_some());
    let body = response.expect_forbidden("insufficient_scope");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("orders:write")),
        "{body}"
    );

    // No key, then a revoked one: heffl-api's 401 JSON and WWW-Authenticate, exactly.
    through(&app, &nginx, Method::GET, "/orders/1", None)
        .await
        .expect_unauthorized("missing_api_key");
    app.revoke(&owner, &revoked_id).await.ok();
    let response = through(&app, &nginx, Method::POST, "/orders/1", Some(&revoked)).await;
    assert_eq!(
        single(&response, "www-authenticate").as_deref(),
        Some(r#"ApiKey header="x-api-key""#)
    );
    let Reply { status, body, .. } = response;
    let direct = app.verify(&revoked, "").await;
    assert_unauthorized(status, &body, "revoked_api_key");
    assert_eq!(
        (status, without_request_id(body)),
        (direct.status, without_request_id(direct.body)),
        "nginx relays heffl-api's answer"
    );

    // Rate-limited: the key's third request in the minute is heffl-api's 429, with Retry-After.
    for _ in 0..2 {
        let response = through(&app, &nginx, Method::GET, "/orders/2", Some(&limited)).await;
        assert_eq!(response.status, StatusCode::OK);
        allowed += 1;
    }
    let response = through(&app, &nginx, Method::GET, "/orders/2", Some(&limited)).await;
    let retry_after = single(&response, "retry-after");
    assert!(
        retry_after
            .as_deref()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| (1..=60).contains(&s)),
        "{retry_after:?}"
    );
    assert_eq!(
        single(&response, "ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert_too_many(response.status, &response.body, "rate_limited");

    // A browser's request is refused as on /api/v1.
    let response = app
        .client
        .get(nginx.url("/orders/3"))
        .header("x-api-key", &reader)
        .header("origin", "https://shop.example")
        .send()
        .await
        .expect("through nginx");
    Reply::read(response)
        .await
        .expect_forbidden("browser_use_blocked");

    assert_eq!(
        upstream.hits.load(Ordering::SeqCst),
        allowed,
        "only allowed requests reach the service"
    );
}

on_both_databases_with!(
    an_allowlist_applies_to_the_address_nginx_forwards,
    |config| {
        // nginx connects from 127.0.0.1; clients come from other loopback addresses.
        config.trusted_proxies = vec!["127.0.0.1/32".parse().expect("a net")];
    }
);

/// The shipped nginx config in front of `app`, with the echoing upstream behind it; `None`
/// when nginx is not installed (outside CI).
async fn gateway(app: &TestApp) -> Option<(Nginx, Upstream)> {
    let binary = nginx_binary()?;
    let heffl_port = app
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let upstream = start_upstream().await;
    let nginx = Nginx::start(&binary, heffl_port, upstream.port);
    Some((nginx, upstream))
}

/// A request through nginx, from `client` (a loopback address of the test's choosing), with an
/// `X-Forwarded-For` of the client's own invention when `claimed` is set.
async fn from_address(
    nginx: &Nginx,
    client: &str,
    key: &str,
    claimed: Option<&str>,
) -> (StatusCode, Value) {
    let http = reqwest::Client::builder()
        .local_address(client.parse::<std::net::IpAddr>().expect("an address"))
        .build()
        .expect("client");
    let mut request = http.get(nginx.url("/anything")).header("x-api-key", key);
    if let Some(claimed) = claimed {
        request = request.header("x-forwarded-for", claimed);
    }
    let Reply { status, body, .. } =
        Reply::read(request.send().await.expect("through nginx")).await;
    (status, body)
}

/// Forward auth applies a key's allowlist to the client nginx forwards for, not to nginx, and
/// not to what the client claims.
async fn an_allowlist_applies_to_the_address_nginx_forwards(app: TestApp) {
    let Some((nginx, upstream)) = gateway(&app).await else {
        return;
    };
    let owner = app.bootstrap("Allow", "owner@allow-nginx.test").await;
    let (_, office) = key(
        &app,
        &owner,
        json!({ "name": "Office", "allowedIps": ["127.0.0.2"] }),
    )
    .await;

    let (status, echo) = from_address(&nginx, "127.0.0.2", &office, None).await;
    assert_eq!(status, StatusCode::OK, "{echo}\n{}", nginx.error_log());
    // Another client, even one claiming the office's address, is refused by its own.
    for claimed in [None, Some("127.0.0.2")] {
        let (status, body) = from_address(&nginx, "127.0.0.3", &office, claimed).await;
        assert_error(
            status,
            &body,
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            Some("ip_not_allowed"),
        );
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("127.0.0.3"), "{body}");
    }
    assert_eq!(
        upstream.hits.load(Ordering::Relaxed),
        1,
        "refused requests reached the service"
    );
}
