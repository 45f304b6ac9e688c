//! Sending through `HEFFL_SMTP_URL` with lettre on rustls (ring), one connection per message:
//! invitations and resets are rare, so a pool would mostly hold idle connections open.

use super::message::Email;
use super::smtp_url::{Security, SmtpUrl};
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

/// Why a message was not sent, as a closed set: it is shown on a pending invitation and counted
/// in a metric, so it carries no server text (which may echo an address or a credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// No connection: nothing listening, a name that does not resolve, a refused connection.
    Connection,
    Timeout,
    /// The TLS handshake failed, or STARTTLS was required and not offered.
    Tls,
    /// The server answered 5xx: the message will not go through as it is.
    Rejected,
    /// The server answered 4xx: it may go through later.
    Deferred,
    /// The recipient is not an address lettre can write into a message.
    Address,
}

impl SendFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            SendFailure::Connection => "connection_failed",
            SendFailure::Timeout => "timeout",
            SendFailure::Tls => "tls_failed",
            SendFailure::Rejected => "rejected",
            SendFailure::Deferred => "deferred",
            SendFailure::Address => "invalid_address",
        }
    }

    fn of(error: &lettre::transport::smtp::Error, security: Security) -> SendFailure {
        if error.is_timeout() {
            SendFailure::Timeout
        } else if error.is_tls() {
            SendFailure::Tls
        } else if error.is_client() && security == Security::StartTlsRequired {
            // lettre's word for a server that does not offer the STARTTLS we insist on.
            SendFailure::Tls
        } else if failed_handshake(error) {
            SendFailure::Tls
        } else if error.is_permanent() {
            SendFailure::Rejected
        } else if error.is_transient() {
            SendFailure::Deferred
        } else {
            SendFailure::Connection
        }
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

    pub async fn send(&self, email: &Email) -> Result<(), SendFailure> {
        let to: Mailbox = email.to.parse().map_err(|_| SendFailure::Address)?;
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
            .map_err(|_| SendFailure::Address)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|error| SendFailure::of(&error, self.security))
    }
}
