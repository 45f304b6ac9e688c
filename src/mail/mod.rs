//! Email: what the server sends, built as plain data with no I/O (`message`, unit-tested), the
//! `HEFFL_SMTP_URL` it is sent through (`smtp_url`, pure), and the SMTP connection that sends it
//! (`smtp`). Queueing and recording what happened belong to the caller (http::outbox), so this
//! module knows nothing of the store.

mod message;
mod smtp;
mod smtp_url;

pub use message::{invitation, password_reset, Email, InvitationEmail, PasswordResetEmail};
pub use smtp::{MailSetupError, Mailer};
pub use smtp_url::{Security, SmtpUrl, SmtpUrlError};
