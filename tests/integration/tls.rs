//! HTTPS without a proxy (docs/operations.md, `HEFFL_TLS_CERT`/`HEFFL_TLS_KEY`): a real `serve`
//! process with a certificate the test makes, spoken to by a rustls client that trusts only
//! that certificate. A SIGHUP after the files are replaced gives new connections the new
//! certificate while an open connection keeps working; broken files on a later SIGHUP leave
//! the certificate in use; plain HTTP to the TLS port gets no answer.

use crate::process_harness::{command, free_port, Deployment};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Writes a new self-signed certificate for localhost to cert.pem and key.pem; returns it.
fn new_certificate(dir: &Path) -> CertificateDer<'static> {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("a certificate");
    std::fs::write(dir.join("cert.pem"), made.cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), made.key_pair.serialize_pem()).expect("write key");
    made.cert.der().clone()
}

fn connector(trusted: &[&CertificateDer<'static>]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone()).expect("a root");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn connect(connector: &TlsConnector, port: u16) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("localhost").expect("a name");
    connector.connect(name, tcp).await
}

/// The certificate the server presented on this connection.
fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    let (_, session) = stream.get_ref();
    session
        .peer_certificates()
        .and_then(|certs| certs.first())
        .expect("a server certificate")
        .clone()
        .into_owned()
}

/// One keep-alive `GET path` on the connection: the status line and the body.
async fn get(stream: &mut TlsStream<TcpStream>, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).await.expect("read");
        assert!(n > 0, "the connection closed mid-answer");
        received.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if body.len() >= length {
                let status = head.lines().next().unwrap_or_default().to_owned();
                return (status, body[..length].to_owned());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_served_and_a_sighup_swaps_the_certificate_without_dropping_connections() {
    let deployment = Deployment::sqlite();
    let dir = deployment.dir.path();
    let first = new_certificate(dir);
    let port = free_port();
    let env = deployment.env_with(&[
        ("HEFFL_BIND", &format!("127.0.0.1:{port}")),
        ("HEFFL_METRICS_BIND", "off"),
        (
            "HEFFL_TLS_CERT",
            dir.join("cert.pem").to_str().expect("utf-8"),
        ),
        (
            "HEFFL_TLS_KEY",
            dir.join("key.pem").to_str().expect("utf-8"),
        ),
    ]);
    let mut server = command(dir, &env, &["serve"]).spawn().expect("spawn");
    let pid = server.id().expect("pid");

    let trusts_first = connector(&[&first]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut open = loop {
        if let Ok(stream) = connect(&trusts_first, port).await {
            break stream;
        }
        assert!(
            server.try_wait().expect("try_wait").is_none(),
            "the server exited before serving"
        );
        assert!(Instant::now() < deadline, "no TLS answer within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(presented(&open), first);
    let (status, body) = get(&mut open, "/healthz").await;
    assert!(status.contains("200"), "{status}: {body}");

    // Plain HTTP on the TLS port is not answered as HTTP.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));

    // A renewed certificate, then SIGHUP.
    let second = new_certificate(dir);
    assert_ne!(first, second);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    let trusts_both = connector(&[&first, &second]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let fresh = connect(&trusts_both, port).await.expect("a new connection");
        if presented(&fresh) == second {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still the old certificate 5 s after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection opened before the reload still works.
    let (status, _) = get(&mut open, "/healthz").await;
    assert!(status.contains("200"), "{status}");

    // A broken file on the next SIGHUP: the certificate in use stays.
    std::fs::write(dir.join("cert.pem"), "not a certificate").expect("break the cert");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut after = connect(&trusts_both, port).await.expect("still serving");
    assert_eq!(presented(&after), second);
    let (status, _) = get(&mut after, "/healthz").await;
    assert!(status.contains("200"), "{status}");
    assert!(
        server.try_wait().expect("try_wait").is_none(),
        "a failed reload stopped the server"
    );
    let _ = server.kill().await;
}

/// A certificate that cannot be read stops start-up with a message naming the setting.
#[tokio::test]
async fn a_bad_certificate_stops_start_up_naming_it() {
    let deployment = Deployment::sqlite();
    let dir = deployment.dir.path();
    new_certificate(dir);
    std::fs::write(dir.join("cert.pem"), "garbage").expect("break the cert");
    let out = deployment
        .run_with(
            &["serve"],
            None,
            &[
                ("HEFFL_BIND", "127.0.0.1:0"),
                (
                    "HEFFL_TLS_CERT",
                    dir.join("cert.pem").to_str().expect("utf-8"),
                ),
                (
                    "HEFFL_TLS_KEY",
                    dir.join("key.pem").to_str().expect("utf-8"),
                ),
            ],
        )
        .await;
    out.assert_failure();
    assert!(out.stderr.contains("HEFFL_TLS_CERT"), "{}", out.stderr);
    // Both or neither.
    let out = deployment
        .run_with(
            &["serve"],
            None,
            &[(
                "HEFFL_TLS_CERT",
                dir.join("cert.pem").to_str().expect("utf-8"),
            )],
        )
        .await;
    out.assert_failure();
    assert!(
        out.stderr.contains("HEFFL_TLS_KEY") || out.stderr.contains("tls-key"),
        "{}",
        out.stderr
    );
}
