//! The one error type of the server. Every failure, from a bad key to a lost database, becomes
//! an `ApiError`, and every `ApiError` becomes the docs/api.md §4 JSON shape. Internal causes are
//! logged with the request id when the error becomes a response (`http/pipeline/error_response.rs`) and
//! never shown.

use axum::http::StatusCode;
use serde::Serialize;
use std::borrow::Cow;

/// Which credential a 401 asks for, so `WWW-Authenticate` points the caller the right way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realm {
    ApiKey,
    Bearer,
    /// GitHub's signed secret-scanning reports.
    GitHubSignature,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldIssue {
    pub field: String,
    pub message: String,
}

impl FieldIssue {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldIssue {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

macro_rules! reasons {
    ($($variant:ident => $name:literal,)*) => {
        /// Why a request failed, as `details.reason` says (docs/api.md): a closed set, so a
        /// caller can rely on the names and the code cannot invent one by a typo.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Reason {
            $($variant,)*
        }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// Its place in `ALL`, for tables indexed by reason.
            pub fn index(self) -> usize {
                self as usize
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $name,)*
                }
            }
        }
    };
}

reasons! {
    AccountDisabled => "account_disabled",
    AlreadyMember => "already_member",
    AlreadyRolled => "already_rolled",
    ApiKeyNotAccepted => "api_key_not_accepted",
    AuthThrottled => "auth_throttled",
    BadRequest => "bad_request",
    BearerNotSupported => "bearer_not_supported",
    BrowserUseBlocked => "browser_use_blocked",
    CreditsExhausted => "credits_exhausted",
    DatabaseUnavailable => "database_unavailable",
    DisabledApiKey => "disabled_api_key",
    EmptyBody => "empty_body",
    ExpiredApiKey => "expired_api_key",
    HeadersTooLarge => "headers_too_large",
    InsufficientPermission => "insufficient_permission",
    InsufficientScope => "insufficient_scope",
    InvalidApiKey => "invalid_api_key",
    InvalidCredentials => "invalid_credentials",
    InvalidJson => "invalid_json",
    InvalidPath => "invalid_path",
    InvalidQuery => "invalid_query",
    InvalidSession => "invalid_session",
    InvalidSignature => "invalid_signature",
    InvitationForAnotherUser => "invitation_for_another_user",
    InvitationNotFound => "invitation_not_found",
    IpNotAllowed => "ip_not_allowed",
    KeyInactive => "key_inactive",
    LastOwner => "last_owner",
    LeakReportsThrottled => "leak_reports_throttled",
    LoginThrottled => "login_throttled",
    MalformedApiKey => "malformed_api_key",
    MalformedRequest => "malformed_request",
    MalformedSession => "malformed_session",
    MissingApiKey => "missing_api_key",
    MissingSession => "missing_session",
    OutsideDataBoundary => "outside_data_boundary",
    RateLimited => "rate_limited",
    ResendThrottled => "resend_throttled",
    ResetTokenNotFound => "reset_token_not_found",
    RevokedApiKey => "revoked_api_key",
    Timeout => "timeout",
    Unavailable => "unavailable",
    UnreadableBody => "unreadable_body",
    UriTooLong => "uri_too_long",
    WorkspaceMismatch => "workspace_mismatch",
    WrongEnvironment => "wrong_environment",
    WrongPassword => "wrong_password",
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error's message: most are fixed text, which needs no copy; some are formatted.
pub type Message = Cow<'static, str>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized ({reason})")]
    Unauthorized {
        realm: Realm,
        reason: Reason,
        message: Message,
    },
    #[error("forbidden ({reason})")]
    Forbidden { reason: Reason, message: Message },
    #[error("not found")]
    NotFound(Message),
    /// A 404 that names its rule, e.g. `invitation_not_found`.
    #[error("not found ({reason})")]
    NotFoundBecause { reason: Reason, message: Message },
    #[error("validation failed")]
    Validation(Vec<FieldIssue>),
    #[error("bad request ({reason})")]
    BadRequest { reason: Reason, message: Message },
    #[error("conflict ({reason})")]
    Conflict { reason: Reason, message: Message },
    #[error("payload too large")]
    PayloadTooLarge(Message),
    /// The body came too slowly; the connection is closed after the answer.
    #[error("request timeout")]
    RequestTimeout(Message),
    #[error("unsupported media type")]
    UnsupportedMediaType(Message),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("too many requests")]
    TooManyRequests {
        reason: Reason,
        message: Message,
        retry_after_secs: u64,
    },
    #[error("service unavailable ({reason})")]
    ServiceUnavailable { reason: Reason, message: Message },
    #[error("internal error: {0}")]
    Internal(#[source] BoxError),
}

impl ApiError {
    pub fn internal(err: impl Into<BoxError>) -> Self {
        ApiError::Internal(err.into())
    }

    pub fn bad_request(reason: Reason, message: impl Into<Message>) -> Self {
        ApiError::BadRequest {
            reason,
            message: message.into(),
        }
    }

    pub fn forbidden(reason: Reason, message: impl Into<Message>) -> Self {
        ApiError::Forbidden {
            reason,
            message: message.into(),
        }
    }

    pub fn conflict(reason: Reason, message: impl Into<Message>) -> Self {
        ApiError::Conflict {
            reason,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<Message>) -> Self {
        ApiError::NotFound(message.into())
    }

    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldIssue::new(field, message)])
    }

    pub fn database_unavailable() -> Self {
        ApiError::ServiceUnavailable {
            reason: Reason::DatabaseUnavailable,
            message: "The database is unreachable right now; retry in a few seconds.".into(),
        }
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NotFoundBecause { .. } => StatusCode::NOT_FOUND,
            ApiError::Validation(_) | ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ServiceUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized { .. } => "UNAUTHORIZED",
            ApiError::Forbidden { .. } => "FORBIDDEN",
            ApiError::NotFound(_) | ApiError::NotFoundBecause { .. } => "NOT_FOUND",
            ApiError::Validation(_) => "VALIDATION_ERROR",
            ApiError::BadRequest { .. } => "BAD_REQUEST",
            ApiError::Conflict { .. } => "CONFLICT",
            ApiError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            ApiError::RequestTimeout(_) => "REQUEST_TIMEOUT",
            ApiError::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ApiError::TooManyRequests { .. } => "TOO_MANY_REQUESTS",
            ApiError::ServiceUnavailable { .. } => "SERVICE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// The `details.reason` of the body, when the error has one.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            ApiError::Unauthorized { reason, .. }
            | ApiError::Forbidden { reason, .. }
            | ApiError::BadRequest { reason, .. }
            | ApiError::Conflict { reason, .. }
            | ApiError::NotFoundBecause { reason, .. }
            | ApiError::TooManyRequests { reason, .. }
            | ApiError::ServiceUnavailable { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    fn message(&self) -> Cow<'_, str> {
        match self {
            ApiError::Unauthorized { message, .. }
            | ApiError::Forbidden { message, .. }
            | ApiError::BadRequest { message, .. }
            | ApiError::Conflict { message, .. }
            | ApiError::NotFoundBecause { message, .. }
            | ApiError::TooManyRequests { message, .. }
            | ApiError::ServiceUnavailable { message, .. }
            | ApiError::NotFound(message)
            | ApiError::PayloadTooLarge(message)
            | ApiError::RequestTimeout(message)
            | ApiError::UnsupportedMediaType(message) => Cow::Borrowed(message),
            ApiError::Validation(issues) => match issues.as_slice() {
                [one] => Cow::Owned(format!("{}: {}", one.field, one.message)),
                _ => Cow::Borrowed("The request has invalid fields; see details.issues."),
            },
            ApiError::MethodNotAllowed => Cow::Borrowed("This method is not allowed on this path."),
            ApiError::Internal(_) => {
                Cow::Borrowed("Something went wrong on our side; the error was logged.")
            }
        }
    }

    /// The docs/api.md §4 body; `request_id` is the id of the request being answered, which every
    /// error body carries so that support can find its log line.
    pub(crate) fn body(&self, request_id: Option<&str>) -> Vec<u8> {
        let message = self.message();
        let details = match self {
            ApiError::Validation(issues) => Some(Details::Issues { issues }),
            _ => self.reason().map(|reason| Details::Reason {
                reason: reason.as_str(),
            }),
        };
        let envelope = Envelope {
            error: ErrorObject {
                code: self.code(),
                details,
                message: &message,
                request_id,
            },
        };
        // Serializing borrowed strings into a Vec cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }
}

// Fields in alphabetical order, the order of the bodies before these structs existed.
#[derive(Serialize)]
struct Envelope<'a> {
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorObject<'a> {
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Details<'a> {
    Issues { issues: &'a [FieldIssue] },
    Reason { reason: &'static str },
}

/// Left on error responses so metrics and logs can count outcomes by reason.
#[derive(Debug, Clone, Copy)]
pub struct ErrorReason(pub Option<Reason>);

/// Left on error responses for the request log: the body's `error.code`.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            tracing::warn!(error = %err, "database unavailable");
            return ApiError::database_unavailable();
        }
        ApiError::internal(err)
    }
}

/// Failures that mean "the database is not answering", as opposed to a bug in a query: those
/// must surface as 503 so an integrator retries instead of believing their key is bad.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite reports extended codes (517 = BUSY_SNAPSHOT, 262 = LOCKED_SHAREDCACHE
                // ...); the primary code is the low byte: SQLITE_BUSY 5, SQLITE_LOCKED 6.
                code.and_then(|c| c.parse::<i64>().ok())
                    .is_some_and(|c| matches!(c & 0xff, 5 | 6))
            } else {
                // Postgres: query_canceled (statement_timeout), admin/crash shutdown, cannot
                // connect now, too many connections.
                matches!(
                    code.as_deref(),
                    Some("57014" | "57P01" | "57P02" | "57P03" | "53300")
                )
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_is_at_its_index() {
        for (index, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), index, "{reason}");
        }
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let err = ApiError::internal(std::io::Error::other("password=hunter2 at db"));
        let body = String::from_utf8(err.body(None)).unwrap();
        assert!(!body.contains("hunter2"));
        assert_eq!(err.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn validation_lists_issues() {
        let err = ApiError::Validation(vec![
            FieldIssue::new("name", "is required"),
            FieldIssue::new("email", "is not an email address"),
        ]);
        let body: serde_json::Value = serde_json::from_slice(&err.body(None)).unwrap();
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(body["error"]["details"]["issues"][1]["field"], "email");
    }
}
