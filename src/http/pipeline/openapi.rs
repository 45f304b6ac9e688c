//! The OpenAPI 3.1 document. Each handler describes itself with `#[utoipa::path]`, and
//! `routes::*` registers handlers only through `OpenApiRouter::routes`, which takes the path
//! and methods from that description: a route cannot be served without being documented. This
//! file holds what the routes share: the header, the security schemes, the docs/api.md §4 error
//! shape, and schemas for the few types whose JSON form serde does not show.

use crate::domain::email::{EmailFailure, EmailStatus};
use crate::domain::permissions::Role;
use crate::domain::scopes::{Scope, ScopeSet};
use crate::domain::time::Timestamp;
use serde::Deserialize;
use serde_json::json;
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::SecurityScheme;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "heffl-api",
        description = "Workspace-scoped API keys. Integrators call `/api/v1` with an `x-api-key` \
header; the dashboard calls `/app/v1` with `Authorization: Bearer <session token>` from \
`POST /app/v1/auth/login`. Every error has the shape of `ErrorBody`; `error.details.reason` \
says which rule fired.",
        license(name = "MIT", identifier = "MIT")
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorBody)),
    tags(
        (name = "api", description = "For integrators, with an API key in `x-api-key`."),
        (name = "dashboard", description = "For the dashboard, with a session token."),
        (name = "operations", description = "Health and readiness for operators (metrics are on their own listener, HEFFL_METRICS_BIND).")
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "An API key (`hk_<env>_…`) created in Settings > Developer. Server-side only: \
                 requests that come from a browser are refused unless the deployment allows it.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The session token from `POST /app/v1/auth/login`."))
                    .build(),
            ),
        );
    }
}

/// The document as served: the routes' paths on top of `ApiDoc`.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Every error response (docs/api.md §4). Only describes what `crate::error::ApiError` writes; the
/// unit test below checks the two agree.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct ErrorBody {
    error: ErrorObject,
}

#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct ErrorObject {
    code: ErrorCode,
    /// For a person: what went wrong and how to fix it.
    message: String,
    /// Absent when there is nothing to add to `code`.
    #[schema(value_type = ErrorDetails, required = false)]
    details: Option<ErrorDetails>,
    /// The request's id, as in the `x-request-id` header: quote it to support, whose logs
    /// say why the request was refused.
    #[serde(rename = "requestId")]
    #[schema(value_type = String, required = false)]
    request_id: Option<String>,
}

#[derive(ToSchema, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    Unauthorized,
    Forbidden,
    NotFound,
    ValidationError,
    BadRequest,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    TooManyRequests,
    ServiceUnavailable,
    InternalServerError,
}

#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct ErrorDetails {
    /// Which rule fired, e.g. `revoked_api_key`, `workspace_mismatch`.
    #[schema(value_type = String, required = false)]
    reason: Option<String>,
    /// With `VALIDATION_ERROR`: every problem of the request.
    #[schema(value_type = Vec<FieldIssue>, required = false)]
    issues: Option<Vec<FieldIssue>>,
}

#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct FieldIssue {
    /// The JSON field or query parameter, e.g. `name`.
    field: String,
    message: String,
}

/// The two answers of any handler that reaches the database, listed once instead of in each
/// `#[utoipa::path]`.
#[derive(IntoResponses)]
#[allow(dead_code, reason = "never built: it only describes responses")]
pub enum ServerErrors {
    #[response(status = 500, description = "Internal error")]
    Internal(ErrorBody),
    #[response(status = 503, description = "Database unavailable")]
    Unavailable(ErrorBody),
}

// Path parameters, one type each so that their pattern and wording are written once. The
// handlers extract the same names with `axum::extract::Path`.

#[derive(IntoParams)]
#[into_params(parameter_in = Path, names("workspaceId"))]
#[allow(dead_code, reason = "never built: it only describes a path parameter")]
pub struct WorkspacePath(
    /// The workspace (`ws_…`)
    #[param(pattern = "^ws_[0-9A-Za-z]{22}$")]
    String,
);

#[derive(IntoParams)]
#[into_params(parameter_in = Path, names("keyId"))]
#[allow(dead_code, reason = "never built: it only describes a path parameter")]
pub struct KeyPath(
    /// The key (`key_…`)
    #[param(pattern = "^key_[0-9A-Za-z]{22}$")]
    String,
);

#[derive(IntoParams)]
#[into_params(parameter_in = Path, names("userId"))]
#[allow(dead_code, reason = "never built: it only describes a path parameter")]
pub struct MemberPath(
    /// The member (`usr_…`)
    #[param(pattern = "^usr_[0-9A-Za-z]{22}$")]
    String,
);

#[derive(IntoParams)]
#[into_params(parameter_in = Path, names("invitationId"))]
#[allow(dead_code, reason = "never built: it only describes a path parameter")]
pub struct InvitationPath(
    /// The invitation (`inv_…`)
    #[param(pattern = "^inv_[0-9A-Za-z]{22}$")]
    String,
);

#[derive(IntoParams)]
#[into_params(parameter_in = Path, names("leadId"))]
#[allow(dead_code, reason = "never built: it only describes a path parameter")]
pub struct LeadPath(
    /// The lead (`ld_…`)
    #[param(pattern = "^ld_[0-9A-Za-z]{22}$")]
    String,
);

#[derive(IntoParams)]
#[into_params(parameter_in = Path, names("webhookId"))]
#[allow(dead_code, reason = "never built: it only describes a path parameter")]
pub struct WebhookPath(
    /// The webhook endpoint (`wh_…`)
    #[param(pattern = "^wh_[0-9A-Za-z]{22}$")]
    String,
);

#[derive(IntoParams)]
#[into_params(parameter_in = Path, names("messageId"))]
#[allow(dead_code, reason = "never built: it only describes a path parameter")]
pub struct MessagePath(
    /// The message (`msg_…`), its `webhook-id`
    #[param(pattern = "^msg_[0-9A-Za-z]{22}$")]
    String,
);

// Request fields, as `crate::domain::validate` checks them, so generated clients and fuzzers send what
// the server accepts. The patterns use only what ECMA-262 and Python's `re` read alike.

/// No control characters (Rust's `char::is_control`), and not blank.
const TEXT_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";
/// One `@`, something on each side, a dot inside the domain, no spaces.
const EMAIL_PATTERN: &str =
    r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s.\x00-\x1f\x7f-\x9f]+(\.[^@\s.\x00-\x1f\x7f-\x9f]+)+$";
/// Digits, spaces and `+ - ( ) .`, with at least three digits.
const PHONE_PATTERN: &str = r"^[+()\-. ]*(?:[0-9][+()\-. ]*){3,}$";
const OPTIONAL_TEXT_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";

/// `pattern`, or only spaces.
fn blank_or(pattern: &str) -> String {
    let inner = pattern.trim_start_matches('^').trim_end_matches('$');
    format!("^(?: *|{inner})$")
}

fn string(min: usize, max: usize, pattern: Option<&str>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(pattern)
}

macro_rules! string_schema {
    ($(#[$doc:meta])* $name:ident, $schema:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema.into()
            }
        }

        impl ToSchema for $name {}
    };
}

string_schema!(
    /// A name or title: 1 to 100 characters after trimming, no control characters.
    Text100,
    string(1, 100, Some(TEXT_PATTERN))
);
string_schema!(
    /// 1 to 200 characters after trimming, no control characters.
    Text200,
    string(1, 200, Some(TEXT_PATTERN))
);
string_schema!(
    /// Blank means no value, like `null`.
    OptionalText200,
    string(0, 200, Some(OPTIONAL_TEXT_PATTERN))
);
string_schema!(
    Email,
    string(3, 254, Some(EMAIL_PATTERN)).examples([json!("jane@example.com")])
);
string_schema!(
    /// Blank means no value, like `null`.
    OptionalEmail,
    string(0, 254, Some(&blank_or(EMAIL_PATTERN))).examples([json!("jane@example.com")])
);
string_schema!(
    /// Blank means no value, like `null`.
    OptionalPhone,
    string(0, 32, Some(&blank_or(PHONE_PATTERN))).examples([json!("+1234567890")])
);
string_schema!(
    /// At least 12 characters.
    Password,
    string(
        crate::domain::password::MIN_PASSWORD_LEN,
        crate::domain::password::MAX_PASSWORD_LEN,
        None
    )
);

string_schema!(
    /// An event type, or `*` (alone) for every type.
    EventName,
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(
        std::iter::once("*").chain(
            crate::domain::webhooks::EventType::ALL
                .iter()
                .map(|kind| kind.as_str())
        )
    ))
);
string_schema!(
    /// An `https://` URL (`http://` only where the deployment allows it) whose host is not a
    /// loopback, private or link-local address.
    WebhookUrl,
    string(10, crate::domain::webhooks::MAX_URL_LEN, Some("^https?://[^\\s#@]+$"))
        .format(Some(SchemaFormat::Custom("uri".into())))
        .examples([json!("https://example.com/webhooks/heffl")])
);

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339, UTC, with milliseconds."))
            .examples([json!("2025-01-15T10:30:00.000Z")])
            .into()
    }
}

impl ToSchema for Timestamp {}

impl PartialSchema for ScopeSet {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(
                // Not an enum: HEFFL_EXTRA_SCOPES adds other services' scopes at start-up.
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[a-z][a-z0-9_-]*:[a-z][a-z0-9_-]*$"))
                    .examples([json!(Scope::LeadsRead.as_str())]),
            )
            .unique_items(true)
            .min_items(Some(1))
            .description(Some(
                "What the key may do, on top of its user's role: the built-in me:read, \
                 leads:read, leads:write, and the deployment's extra scopes \
                 (GET /app/v1/scopes lists them all).",
            ))
            .into()
    }
}

impl ToSchema for ScopeSet {}

impl PartialSchema for Role {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Role::ALL.map(Role::as_str)))
            .into()
    }
}

impl ToSchema for Role {}

impl PartialSchema for EmailStatus {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(EmailStatus::ALL.iter().map(|status| status.as_str())))
            .into()
    }
}

impl ToSchema for EmailStatus {}

impl PartialSchema for EmailFailure {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(
                EmailFailure::ALL.iter().map(|failure| failure.as_str()),
            ))
            .into()
    }
}

impl ToSchema for EmailFailure {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ApiError, FieldIssue as Issue, Realm, Reason};

    /// Every variant `ApiError` has, through the body it writes, parses as `ErrorBody`.
    #[test]
    fn error_body_describes_every_api_error() {
        let errors = [
            ApiError::Unauthorized {
                realm: Realm::ApiKey,
                reason: Reason::RevokedApiKey,
                message: "revoked".into(),
            },
            ApiError::forbidden(Reason::WorkspaceMismatch, "elsewhere"),
            ApiError::not_found("none"),
            ApiError::Validation(vec![Issue::new("name", "is required")]),
            ApiError::bad_request(Reason::InvalidJson, "bad"),
            ApiError::conflict(Reason::LastOwner, "no"),
            ApiError::PayloadTooLarge("big".into()),
            ApiError::UnsupportedMediaType("json".into()),
            ApiError::MethodNotAllowed,
            ApiError::TooManyRequests {
                reason: Reason::RateLimited,
                message: "slow".into(),
                retry_after_secs: 1,
            },
            ApiError::database_unavailable(),
            ApiError::internal("boom"),
        ];
        for error in errors {
            let code = error.code();
            let reason = error.reason().map(Reason::as_str);
            let is_validation = matches!(error, ApiError::Validation(_));
            let response = axum::response::IntoResponse::into_response(error);
            let body = futures_body(response);
            let parsed: ErrorBody = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{code}: {e}: {}", String::from_utf8_lossy(&body)));
            assert!(!parsed.error.message.is_empty(), "{code}");
            // Written by the request layer, which knows the id; a bare ApiError has none.
            assert_eq!(parsed.error.request_id, None, "{code}");
            let details = parsed.error.details;
            assert_eq!(
                details.as_ref().and_then(|d| d.reason.as_deref()),
                reason,
                "{code}"
            );
            let issues = details.and_then(|d| d.issues).unwrap_or_default();
            assert_eq!(!issues.is_empty(), is_validation, "{code}");
            assert!(issues
                .iter()
                .all(|i| !i.field.is_empty() && !i.message.is_empty()));
            let written: ErrorCode =
                serde_json::from_value(json!(code)).expect("code is in ErrorCode");
            assert_eq!(written, parsed.error.code);
        }
    }

    fn futures_body(response: axum::response::Response) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .expect("body")
            .to_vec()
    }

    #[test]
    fn document_is_openapi_3_1_with_both_schemes() {
        let document = serde_json::to_value(base()).expect("json");
        assert!(document["openapi"]
            .as_str()
            .unwrap_or("")
            .starts_with("3.1"));
        let schemes = &document["components"]["securitySchemes"];
        assert_eq!(schemes["api_key"]["in"], "header");
        assert_eq!(schemes["api_key"]["name"], "x-api-key");
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
    }
}
