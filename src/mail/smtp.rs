//! Sending through `HEFFL_SMTP_URL` with lettre on rustls (ring), one connection per message:
//! invitations and resets are rare, so a pool would mostly hold idle connections open.

use super::message::Email;
use super::smtp_url::{Security, SmtpUrl};
use crate::domain::email::EmailFailure;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// Longest one SMTP command may wait for its answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    #[error("HEFFL_SMTP_FROM is not an address such as \"heffl <noreply@example.com>\"")]
    From,
    #[error("HEFFL_SMTP_URL's host cannot be used for TLS")]
    Tls,
    #[error("HEFFL_SMTP_CA_FILE holds no PEM certificate")]
    Ca,
}

/// Why the server did not take a message, from lettre's error (never its text).
fn failure_of(error: &lettre::transport::smtp::Error, security: Security) -> EmailFailure {
    if error.is_timeout() {
        EmailFailure::Timeout
    } else if error.is_tls() {
        EmailFailure::Tls
    } else if error.is_client() && security == Security::StartTlsRequired {
        // lettre's word for a server that does not offer the STARTTLS we insist on.
        EmailFailure::Tls
    } else if failed_handshake(error) {
        EmailFailure::Tls
    } else if error.is_permanent() {
        EmailFailure::Rejected
    } else if error.is_transient() {
        EmailFailure::Deferred
    } else {
        EmailFailure::Connection
    }
}

/// A TLS handshake that failed (an untrusted certificate, a name that does not match) reaches
/// lettre as a connection error; rustls's own error is inside it as an `InvalidData` I/O error.
fn failed_handshake(error: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    security: Security,
}

impl Mailer {
    /// `extra_roots`: PEM certificates trusted besides the public roots (HEFFL_SMTP_CA_FILE).
    pub fn new(
        url: &SmtpUrl,
        from: &str,
        extra_roots: Option<&[u8]>,
    ) -> Result<Mailer, MailSetupError> {
        let from: Mailbox = from.trim().parse().map_err(|_| MailSetupError::From)?;
        let mut parameters = TlsParameters::builder(url.host.clone());
        if let Some(pem) = extra_roots {
            let root = Certificate::from_pem(pem).map_err(|_| MailSetupError::Ca)?;
            parameters = parameters.add_root_certificate(root);
        }
        let parameters = parameters.build().map_err(|_| MailSetupError::Tls)?;
        let tls = match url.security {
            Security::StartTlsIfOffered => Tls::Opportunistic(parameters),
            Security::StartTlsRequired => Tls::Required(parameters),
            Security::Tls => Tls::Wrapper(parameters),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&url.host)
            .port(url.port)
            .tls(tls)
            .timeout(Some(COMMAND_TIMEOUT));
        if let Some((user, password)) = &url.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            security: url.security,
        })
    }

    pub async fn send(&self, email: &Email) -> Result<(), EmailFailure> {
        let to: Mailbox = email.to.parse().map_err(|_| EmailFailure::InvalidAddress)?;
        // Quoted-printable whatever the text: lines stay short and readable in any client.
        let part = |content_type: ContentType, body: &str| {
            SinglePart::builder()
                .header(content_type)
                .header(ContentTransferEncoding::QuotedPrintable)
                .body(body.to_owned())
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .multipart(
                MultiPart::alternative()
                    .singlepart(part(ContentType::TEXT_PLAIN, &email.text))
                    .singlepart(part(ContentType::TEXT_HTML, &email.html)),
            )
            .map_err(|_| EmailFailure::InvalidAddress)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|error| failure_of(&error, self.security))
    }
}
