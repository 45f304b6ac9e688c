//! Headers shared by the pages compiled into the binary (/settings/developer, /docs): each page
//! brings its own Content-Security-Policy; the rest is the same hardening for both.

use axum::http::{header, HeaderName, HeaderValue};

pub type Headers = [(HeaderName, HeaderValue); 5];

pub fn headers(
    content_type: &'static str,
    cache_control: &'static str,
    content_security_policy: &'static str,
) -> Headers {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(content_security_policy),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ]
}
