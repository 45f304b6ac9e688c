//! Sending through `HEFFL_SMTP_URL` with lettre on rustls (ring), one connection per message:
//! invitations and resets are rare, so a pool would mostly hold idle connections open.

use super::message::Email;
use super::smtp_url::{Security, SmtpUrl};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
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

    fn of(error: &lettre::transport::smtp::Error) -> SendFailure {
        if error.is_timeout() {
            SendFailure::Timeout
        } else if error.is_tls() {
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

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(url: &SmtpUrl, from: &str) -> Result<Mailer, MailSetupError> {
        let from: Mailbox = from.trim().parse().map_err(|_| MailSetupError::From)?;
        let tls = |host: &str| TlsParameters::new(host.to_owned()).map_err(|_| MailSetupError::Tls);
        let tls = match url.security {
            Security::StartTlsIfOffered => Tls::Opportunistic(tls(&url.host)?),
            Security::StartTlsRequired => Tls::Required(tls(&url.host)?),
            Security::Tls => Tls::Wrapper(tls(&url.host)?),
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
            .map_err(|error| SendFailure::of(&error))
    }
}
