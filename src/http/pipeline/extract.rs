//! Extractors whose rejections are `ApiError`s, so a bad body, query or path gets the same JSON
//! error shape (and a precise reason) as everything else.

use crate::error::{ApiError, FieldIssue, Reason};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A JSON body in, a JSON body out, with every rejection in the JSON error shape. Named apart
/// from `axum::Json` so that a handler cannot take the one with plain-text rejections by mistake.
pub struct ApiJson<T>(pub T);

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !has_json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "Send the body as JSON with the header Content-Type: application/json.".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        crate::http::pipeline::body_limit::too_large()
    } else if crate::http::server::slow_body::is_too_slow(&rejection) {
        ApiError::RequestTimeout(
            format!(
                "The request body arrived slower than {} bytes a second; send it again, at once.",
                crate::http::server::slow_body::MIN_RATE
            )
            .into(),
        )
    } else {
        ApiError::bad_request(
            Reason::UnreadableBody,
            "The request body could not be read.",
        )
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            Reason::EmptyBody,
            "The request body is empty; send a JSON object.",
        ));
    }
    // Every body is an object. serde would take an array for a struct's fields in order
    // (`["Acme"]` as `{"name": "Acme"}`), which no client means; refuse anything else.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => ApiError::validation("body", "must be a JSON object"),
                Err(err) => invalid_json(&err),
            },
        );
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_data() {
            let message = strip_position(&inner);
            // serde's path ends at the unknown field itself; no dot means it is top-level.
            match known_fields(&message) {
                Some(known) if !path.contains('.') => every_body_issue::<T>(bytes, &known),
                _ => ApiError::Validation(vec![issue_for(&path, &message)]),
            }
        } else {
            invalid_json(&inner)
        }
    })
}

/// The fields serde's "unknown field `x`, expected one of `a`, `b`" names as the known ones.
fn known_fields(message: &str) -> Option<Vec<String>> {
    let rest = message.strip_prefix("unknown field `")?;
    let (_, expected) = rest.split_once("`, expected ")?;
    let expected = expected.strip_prefix("one of ").unwrap_or(expected);
    Some(
        expected
            .split(", ")
            .map(|field| field.trim_matches('`').to_owned())
            .filter(|field| !field.is_empty())
            .collect(),
    )
}

/// serde stops at the first unknown field; a client fixing a request wants every problem at
/// once: each unknown top-level field, then what the rest of the body gets wrong (a field of
/// the wrong type, a missing one).
fn every_body_issue<T: DeserializeOwned>(bytes: &[u8], known: &[String]) -> ApiError {
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_slice(bytes) else {
        return ApiError::validation("body", "must be a JSON object");
    };
    let unknown: Vec<String> = fields
        .keys()
        .filter(|name| !known.contains(name))
        .cloned()
        .collect();
    let listed = known.join(", ");
    let mut issues: Vec<FieldIssue> = unknown
        .iter()
        .map(|name| {
            fields.remove(name);
            FieldIssue::new(
                name,
                format!("is not a field of this request; the fields are {listed}"),
            )
        })
        .collect();
    if let Err(err) = serde_path_to_error::deserialize::<_, T>(serde_json::Value::Object(fields)) {
        let path = err.path().to_string();
        issues.push(issue_for(&path, &strip_position(err.inner())));
    }
    ApiError::Validation(issues)
}

fn invalid_json(err: &serde_json::Error) -> ApiError {
    ApiError::bad_request(
        Reason::InvalidJson,
        format!(
            "The body is not valid JSON (line {}, column {}).",
            err.line(),
            err.column()
        ),
    )
}

/// serde's messages end with " at line 1 column 9", which means nothing next to a field name.
fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(index) => text[..index].to_owned(),
        None => text,
    }
}

/// The issue names the field itself: serde's path already ends at an unknown field, but stops
/// at the object that lacks a missing one.
fn issue_for(path: &str, message: &str) -> FieldIssue {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    let field = match (path, missing) {
        (".", Some(name)) => name.to_owned(),
        (".", None) => "body".to_owned(),
        (path, Some(name)) => format!("{path}.{name}"),
        (path, None) => path.to_owned(),
    };
    FieldIssue::new(&field, plain_words(message))
}

/// serde speaks Rust ("invalid type: integer `5`, expected a string"); a client developer wants
/// "must be a string". Messages this does not recognise pass through unchanged.
fn plain_words(message: &str) -> String {
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    {
        if let Some((_, expected)) = rest.split_once(", expected ") {
            return format!("must be {}", expected_in_words(expected));
        }
    }
    if message.starts_with("missing field `") {
        return "is required".to_owned();
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let expected = rest.split_once('`').map_or("", |(_, expected)| expected);
        let expected = expected
            .trim_start_matches(", expected ")
            .trim_start_matches("one of ")
            .replace('`', "");
        return if expected.is_empty() || expected.starts_with("there are no fields") {
            "is not a field of this request".to_owned()
        } else {
            format!("is not a field of this request; the fields are {expected}")
        };
    }
    message.to_owned()
}

fn expected_in_words(expected: &str) -> String {
    let numbers = [
        "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize",
    ];
    let unsigned = expected.starts_with('u');
    match expected {
        e if numbers.contains(&e) && unsigned => "a whole number, 0 or more".to_owned(),
        e if numbers.contains(&e) => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" => "an object".to_owned(),
        e if e.starts_with("struct ") => "an object".to_owned(),
        other => other.to_owned(),
    }
}

/// Query parameters as raw text; handlers validate them into typed values with precise issues.
pub struct RawQuery(pub Vec<(String, String)>);

impl RawQuery {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RawQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(RawQuery)
            .map_err(|_| {
                ApiError::bad_request(Reason::InvalidQuery, "The query string is not valid.")
            })
    }
}

/// Path parameters; a malformed one (bad percent-encoding) is a 400, not axum's plain text.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // No id contains a control character; refusing them here keeps NUL bytes, which
        // PostgreSQL rejects in text, from ever reaching a query.
        if let Ok(raw) = RawPathParams::from_request_parts(parts, state).await {
            if raw
                .iter()
                .any(|(_, value)| value.contains(char::is_control))
            {
                return Err(ApiError::bad_request(
                    Reason::InvalidPath,
                    "A path parameter contains control characters.",
                ));
            }
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|_| {
                ApiError::bad_request(Reason::InvalidPath, "A path parameter is not valid.")
            })
    }
}

#[cfg(test)]
mod plain_words_tests {
    use super::plain_words;

    #[test]
    fn type_errors_read_as_plain_requirements() {
        let cases = [
            (
                "invalid type: integer `5`, expected a string",
                "must be a string",
            ),
            (
                "invalid type: string \"x\", expected u32",
                "must be a whole number, 0 or more",
            ),
            (
                "invalid value: integer `-1`, expected u32",
                "must be a whole number, 0 or more",
            ),
            (
                "invalid type: string \"no\", expected a boolean",
                "must be true or false",
            ),
            ("invalid type: map, expected a sequence", "must be an array"),
            ("missing field `name`", "is required"),
            (
                "unknown field `phone`, expected one of `name`, `email`",
                "is not a field of this request; the fields are name, email",
            ),
            ("something else", "something else"),
        ];
        for (serde, plain) in cases {
            assert_eq!(plain_words(serde), plain, "{serde}");
        }
    }
}
