#![allow(dead_code)] // shared by the email tests; each uses a part
//! A small SMTP server for the tests: it speaks EHLO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP
//! and QUIT on a random port, over plain TCP, STARTTLS or TLS from the first byte (`smtps://`),
//! with a certificate rcgen makes, and keeps every message it is given, so the tests read what a
//! recipient would. It needs nothing installed, so no test skips for want of it.

use crate::common::{Db, TestApp};
use heffl_api::config::Config;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The credentials the tests put in HEFFL_SMTP_URL; the sink records what the server sent.
pub const SMTP_USER: &str = "heffl-mailer";
pub const SMTP_PASSWORD: &str = "smtp-secret-do-not-print";
pub const SMTP_FROM: &str = "heffl <noreply@heffl.test>";
pub const PUBLIC_URL: &str = "https://heffl.example.test";

/// A message as the sink received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The DATA as sent, headers and body, dot-unstuffed.
    pub raw: String,
    /// What `AUTH PLAIN` carried on the message's connection, decoded (`\0user\0password`).
    pub auth: Option<String>,
    /// Whether the message came over TLS (from the first byte, or after STARTTLS).
    pub tls: bool,
}

impl Mail {
    /// The raw message with quoted-printable undone (soft breaks and `=XX`), as a reader sees it.
    pub fn text(&self) -> String {
        decode_quoted_printable(&self.raw)
    }

    pub fn header(&self, name: &str) -> String {
        let prefix = format!("{}:", name.to_lowercase());
        self.raw
            .lines()
            .take_while(|line| !line.is_empty())
            .find(|line| line.to_lowercase().starts_with(&prefix))
            .map(|line| line[prefix.len()..].trim().to_owned())
            .unwrap_or_default()
    }

    /// The token after `#<fragment>=` in the message's link.
    #[track_caller]
    pub fn token(&self, fragment: &str) -> String {
        let text = self.text();
        let marker = format!("{PUBLIC_URL}/settings/developer#{fragment}=");
        let at = text
            .find(&marker)
            .unwrap_or_else(|| panic!("no {marker} link in:\n{text}"));
        text[at + marker.len()..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect()
    }
}

#[derive(Default)]
struct Inbox {
    mails: Vec<Mail>,
}

/// How the sink meets a connection.
#[derive(Clone)]
enum Security {
    Plain,
    /// Plain at first, offering STARTTLS.
    StartTls(TlsAcceptor),
    /// TLS from the first byte.
    Tls(TlsAcceptor),
}

pub struct SmtpSink {
    pub port: u16,
    /// `smtps` when the sink speaks TLS from the first byte.
    scheme: &'static str,
    /// `localhost`, the name in its certificate, when it has one.
    host: &'static str,
    /// The PEM of its self-signed certificate (for localhost), when it speaks TLS.
    pub certificate_pem: Option<String>,
    inbox: Arc<Mutex<Inbox>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The server under test with email on, through a sink of its own.
pub async fn app_with_email(db: Db) -> Option<(TestApp, SmtpSink)> {
    app_with_email_and(db, |_| {}).await
}

pub async fn app_with_email_and(
    db: Db,
    adjust: impl FnOnce(&mut Config),
) -> Option<(TestApp, SmtpSink)> {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let app = TestApp::start_with(db, |config| {
        email_settings(config, url);
        adjust(config);
    })
    .await?;
    Some((app, sink))
}

/// Email on, through the SMTP server at `url`.
pub fn email_settings(config: &mut Config, url: String) {
    config.smtp_url = Some(url);
    config.smtp_from = Some(SMTP_FROM.to_owned());
    config.public_url = Some(PUBLIC_URL.to_owned());
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        SmtpSink::listen(Security::Plain).await
    }

    /// TLS from the first byte, with a new self-signed certificate for localhost.
    pub async fn start_tls() -> SmtpSink {
        let (acceptor, pem) = certificate();
        let mut sink = SmtpSink::listen(Security::Tls(acceptor)).await;
        sink.certificate_pem = Some(pem);
        sink
    }

    /// Plain at first, offering STARTTLS with a new self-signed certificate for localhost.
    pub async fn start_starttls() -> SmtpSink {
        let (acceptor, pem) = certificate();
        let mut sink = SmtpSink::listen(Security::StartTls(acceptor)).await;
        sink.certificate_pem = Some(pem);
        sink
    }

    async fn listen(security: Security) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let port = listener.local_addr().expect("addr").port();
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let (scheme, host) = match security {
            Security::Plain => ("smtp", "127.0.0.1"),
            Security::StartTls(_) => ("smtp", "localhost"),
            Security::Tls(_) => ("smtps", "localhost"),
        };
        let task = tokio::spawn({
            let inbox = inbox.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, security.clone(), inbox.clone()));
                }
            }
        });
        SmtpSink {
            port,
            scheme,
            host,
            certificate_pem: None,
            inbox,
            task,
        }
    }

    /// `smtp://user:password@127.0.0.1:port` (no STARTTLS offered: the server sends in the
    /// clear, as it may to a relay on its own machine), or `smtp[s]://…@localhost:port` when
    /// the sink has a certificate (for localhost).
    pub fn url(&self) -> String {
        format!(
            "{}://{SMTP_USER}:{SMTP_PASSWORD}@{}:{}",
            self.scheme, self.host, self.port
        )
    }
}

/// A TLS acceptor with a new self-signed certificate for localhost, and the certificate's PEM.
fn certificate() -> (TlsAcceptor, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(made.cert.der().to_vec())], key)
        .expect("server config");
    (TlsAcceptor::from(Arc::new(config)), made.cert.pem())
}

impl SmtpSink {
    pub fn mails(&self) -> Vec<Mail> {
        self.inbox.lock().expect("inbox").mails.clone()
    }

    pub fn mails_to(&self, to: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|mail| mail.to.iter().any(|rcpt| rcpt.eq_ignore_ascii_case(to)))
            .collect()
    }

    /// Waits (up to 10 s) until `count` messages for `to` have arrived; returns the last.
    #[track_caller]
    pub fn wait_for_nth(
        &self,
        to: &str,
        count: usize,
    ) -> impl std::future::Future<Output = Mail> + '_ {
        let caller = std::panic::Location::caller();
        let to = to.to_owned();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mails = self.mails_to(&to);
                if mails.len() >= count {
                    return mails[count - 1].clone();
                }
                assert!(
                    Instant::now() < deadline,
                    "{caller}: no email #{count} for {to} arrived; the sink has {:?}",
                    self.mails().iter().map(|m| &m.to).collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    #[track_caller]
    pub fn wait_for(&self, to: &str) -> impl std::future::Future<Output = Mail> + '_ {
        self.wait_for_nth(to, 1)
    }
}

/// One connection. A client that does not trust the certificate ends at the handshake.
async fn serve(stream: tokio::net::TcpStream, security: Security, inbox: Arc<Mutex<Inbox>>) {
    match security {
        Security::Plain => {
            session(stream, Start::Greet, false, false, inbox).await;
        }
        Security::Tls(tls) => {
            if let Ok(stream) = tls.accept(stream).await {
                session(stream, Start::Greet, true, false, inbox).await;
            }
        }
        Security::StartTls(tls) => {
            let Some(stream) = session(stream, Start::Greet, false, true, inbox.clone()).await
            else {
                return;
            };
            if let Ok(stream) = tls.accept(stream).await {
                session(stream, Start::AfterStartTls, true, false, inbox).await;
            }
        }
    }
}

#[derive(PartialEq)]
enum Start {
    Greet,
    /// The greeting was given before STARTTLS; the client says EHLO again.
    AfterStartTls,
}

/// Speaks SMTP until QUIT; with `offer_starttls`, returns the stream when the client asks for
/// STARTTLS, for the caller to upgrade.
async fn session<S: AsyncRead + AsyncWrite + Send + Unpin>(
    stream: S,
    start: Start,
    tls: bool,
    offer_starttls: bool,
    inbox: Arc<Mutex<Inbox>>,
) -> Option<S> {
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read);
    if start == Start::Greet && write.write_all(b"220 sink.test ESMTP\r\n").await.is_err() {
        return None;
    }
    let mut from = String::new();
    let mut to = Vec::new();
    let mut auth = None;
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_uppercase();
        let answer: String = if upper.starts_with("EHLO") {
            let starttls = if offer_starttls {
                "250-STARTTLS\r\n"
            } else {
                ""
            };
            format!("250-sink.test\r\n{starttls}250-AUTH PLAIN\r\n250 8BITMIME\r\n")
        } else if upper == "STARTTLS" && offer_starttls {
            write
                .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                .await
                .ok()?;
            return Some(lines.into_inner().unsplit(write));
        } else if upper.starts_with("HELO") {
            "250 sink.test\r\n".to_owned()
        } else if upper.starts_with("AUTH PLAIN ") {
            auth = decode_base64(&command["AUTH PLAIN ".len()..]);
            "235 2.7.0 Authentication successful\r\n".to_owned()
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&command["MAIL FROM:".len()..]);
            to.clear();
            "250 2.1.0 Ok\r\n".to_owned()
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&command["RCPT TO:".len()..]));
            "250 2.1.5 Ok\r\n".to_owned()
        } else if upper == "DATA" {
            if write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await
                .is_err()
            {
                return None;
            }
            let mut raw = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
                let text = line.trim_end_matches(['\r', '\n']);
                if text == "." {
                    break;
                }
                raw.push_str(text.strip_prefix('.').unwrap_or(text));
                raw.push_str("\r\n");
            }
            inbox.lock().expect("inbox").mails.push(Mail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                raw,
                auth: auth.clone(),
                tls,
            });
            "250 2.0.0 Ok: queued\r\n".to_owned()
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 Ok\r\n".to_owned()
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
            return None;
        } else {
            "502 5.5.2 Command not recognized\r\n".to_owned()
        };
        if write.write_all(answer.as_bytes()).await.is_err() {
            return None;
        }
    }
}

fn address(text: &str) -> String {
    text.trim()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'=' {
            if let Some(byte) = joined
                .get(at + 1..at + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                out.push(byte);
                at += 3;
                continue;
            }
        }
        out.push(bytes[at]);
        at += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode_base64(text: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.trim().bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|c| *c == byte)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(out).ok()
}

#[test]
fn the_sinks_decoders_read_what_lettre_writes() {
    assert_eq!(
        decode_base64("AHVzZXIAcGFzcw==").as_deref(),
        Some("\0user\0pass")
    );
    assert_eq!(decode_quoted_printable("a=3Db=\r\nc"), "a=bc");
}
