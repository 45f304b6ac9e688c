//! Emails leave off the request path (docs/api.md §10): a handler puts a job on a bounded queue
//! and answers; a background worker sends it and records what happened. A failure never fails
//! the request that asked for the email: it is logged, counted in `heffl_emails_total`, and an
//! invitation shows it (`emailStatus: failed`) so the inviter can resend.

use crate::domain::email::EmailFailure;
use crate::domain::ids::{InvitationId, WorkspaceId};
use crate::domain::session_token;
use crate::http::state::AppState;
use crate::mail::{self, Email, Mailer, SmtpUrl};
use crate::store::EmailResult;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Semaphore};

/// Jobs waiting at most; past it a new one is refused (and counted) rather than held in memory
/// without bound while the SMTP server is slow.
const QUEUE_CAPACITY: usize = 1_000;
/// Messages in flight at once: SMTP servers limit connections per client.
const CONCURRENT_SENDS: usize = 4;

pub enum MailJob {
    /// The email carries the invitation's token; `token_digest` names which one, so that the
    /// result of an email a resend replaced records nothing.
    Invitation {
        workspace_id: WorkspaceId,
        invitation_id: InvitationId,
        token_digest: [u8; 32],
        email: Email,
    },
    /// Whether the email has an account is found out here, off the request path, so the answer
    /// to the request is the same, in content and in time, either way.
    PasswordReset { email: String },
}

impl MailJob {
    fn kind(&self) -> &'static str {
        match self {
            MailJob::Invitation { .. } => "invitation",
            MailJob::PasswordReset { .. } => "password_reset",
        }
    }
}

/// The queue and, until the server's background tasks take it, its worker's end.
pub struct Outbox {
    sender: mpsc::Sender<MailJob>,
    receiver: Mutex<Option<mpsc::Receiver<MailJob>>>,
    mailer: Arc<Mailer>,
    /// `HEFFL_PUBLIC_URL`, without a trailing slash.
    public_url: String,
}

/// Why email cannot be sent with this configuration (`serve` refuses to start on it).
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Url(#[from] mail::SmtpUrlError),
    #[error(transparent)]
    Setup(#[from] mail::MailSetupError),
    #[error("HEFFL_SMTP_URL is set but HEFFL_SMTP_FROM is not: emails need a sender")]
    NoFrom,
    #[error(
        "HEFFL_SMTP_URL is set but HEFFL_PUBLIC_URL is not: emails need an address for their links"
    )]
    NoPublicUrl,
    #[error("HEFFL_SMTP_CA_FILE {0} cannot be read: {1}")]
    CaFile(String, std::io::Error),
}

impl Outbox {
    /// `None` without `HEFFL_SMTP_URL`: invitations are links handed over by the inviter.
    pub fn from_config(config: &crate::config::Config) -> Result<Option<Outbox>, OutboxError> {
        let Some(url) = &config.smtp_url else {
            return Ok(None);
        };
        let url = SmtpUrl::parse(url)?;
        let from = config.smtp_from.as_deref().ok_or(OutboxError::NoFrom)?;
        let public_url = config.public_url.clone().ok_or(OutboxError::NoPublicUrl)?;
        let extra_roots = match &config.smtp_ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|err| OutboxError::CaFile(path.display().to_string(), err))?,
            ),
            None => None,
        };
        let mailer = Mailer::new(&url, from, extra_roots.as_deref())?;
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        Ok(Some(Outbox {
            sender,
            receiver: Mutex::new(Some(receiver)),
            mailer: Arc::new(mailer),
            public_url,
        }))
    }

    /// The page's address with a token after `#`: a fragment never reaches a server's log or
    /// a `Referer`, and the page takes it out of the address bar at once.
    pub fn link(&self, fragment_name: &str, token: &str) -> String {
        format!(
            "{}/settings/developer#{fragment_name}={token}",
            self.public_url
        )
    }

    /// Queues a job; `false` (counted) when the queue is full.
    pub fn enqueue(&self, job: MailJob) -> bool {
        let kind = job.kind();
        match self.sender.try_send(job) {
            Ok(()) => true,
            Err(_) => {
                count_outcome(kind, "queue_full");
                tracing::warn!(kind, "the email queue is full; an email was not sent");
                false
            }
        }
    }

    fn take_receiver(&self) -> Option<mpsc::Receiver<MailJob>> {
        match self.receiver.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

/// What `serve` checks before it starts: email is configured completely, or not at all.
pub fn check_email_config(config: &crate::config::Config) -> Result<(), OutboxError> {
    Outbox::from_config(config).map(|_| ())
}

/// The worker, for the server's background tasks; `None` without email or once taken.
pub fn worker(state: &AppState) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    let outbox = state.outbox.as_ref()?;
    let mut receiver = outbox.take_receiver()?;
    let state = state.clone();
    Some(async move {
        let permits = Arc::new(Semaphore::new(CONCURRENT_SENDS));
        while let Some(job) = receiver.recv().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                handle(&state, job).await;
                drop(permit);
            });
        }
    })
}

async fn handle(state: &AppState, job: MailJob) {
    let Some(outbox) = state.outbox.as_ref() else {
        return;
    };
    let kind = job.kind();
    match job {
        MailJob::Invitation {
            workspace_id,
            invitation_id,
            token_digest,
            email,
        } => {
            let result = outbox.mailer.send(&email).await;
            count(kind, &result);
            let recorded = match result {
                Ok(()) => EmailResult::Sent,
                Err(failure) => {
                    tracing::warn!(
                        invitation_id = %invitation_id,
                        reason = failure.as_str(),
                        "an invitation email was not sent"
                    );
                    EmailResult::Failed(failure)
                }
            };
            if let Err(err) = state
                .store
                .invitations()
                .record_email(&workspace_id, &invitation_id, &token_digest, recorded)
                .await
            {
                tracing::warn!(error = %err, invitation_id = %invitation_id, "could not record an invitation email's outcome");
            }
        }
        MailJob::PasswordReset { email } => {
            let record = match state.store.users().login_record(&email).await {
                Ok(record) => record,
                Err(err) => {
                    count_outcome(kind, "failed");
                    tracing::warn!(error = %err, "could not look up an account for a password reset");
                    return;
                }
            };
            // No account, or a disabled one: nothing is sent, and nobody but this counter
            // learns it.
            let Some(record) = record.filter(|record| record.disabled_at.is_none()) else {
                count_outcome(kind, "no_account");
                return;
            };
            let token = session_token::generate();
            let expires_at = match state
                .store
                .password_resets()
                .create(&record.id, &token.digest)
                .await
            {
                Ok(expires_at) => expires_at,
                Err(err) => {
                    count_outcome(kind, "failed");
                    tracing::warn!(error = %err, "could not store a password-reset link");
                    return;
                }
            };
            let link = outbox.link("reset", &token.token);
            let message = mail::password_reset(&mail::PasswordResetEmail {
                to: &record.email,
                link: &link,
                expires_at,
            });
            let result = outbox.mailer.send(&message).await;
            count(kind, &result);
            if let Err(failure) = result {
                tracing::warn!(user_id = %record.id, reason = failure.as_str(), "a password-reset email was not sent");
            }
        }
    }
}

/// `heffl_emails_total`: every email asked for ends in one outcome.
fn count_outcome(kind: &'static str, outcome: &'static str) {
    metrics::counter!("heffl_emails_total", "kind" => kind, "outcome" => outcome).increment(1);
}

fn count(kind: &'static str, result: &Result<(), EmailFailure>) {
    count_outcome(kind, if result.is_ok() { "sent" } else { "failed" });
    if let Err(failure) = result {
        metrics::counter!("heffl_email_failures_total", "kind" => kind, "reason" => failure.as_str())
            .increment(1);
    }
}
