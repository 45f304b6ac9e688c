//! Settings > Developer: the built-in page for managing API keys. Its assets are compiled into
//! the binary, so the page works offline and cannot drift from the server that serves it. The
//! page talks only to `/app/v1` on the same origin, which is what the CSP below allows.

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::IntoResponse;

const INDEX_HTML: &str = include_str!("../../../assets/developer/index.html");
const APP_JS: &str = include_str!("../../../assets/developer/app.js");
const APP_CSS: &str = include_str!("../../../assets/developer/app.css");

/// Nothing inline and nothing from elsewhere: a script injected into the page (through a key
/// name, say) could neither run nor send a session token or a fresh key anywhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

type Headers = [(HeaderName, HeaderValue); 5];

fn headers(content_type: &'static str, cache_control: &'static str) -> Headers {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
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

// `no-cache` (revalidate, not "never store") everywhere: the assets have no content hash in
// their names, so a browser must not keep running yesterday's script against today's API.

pub async fn index() -> impl IntoResponse {
    (headers("text/html; charset=utf-8", "no-cache"), INDEX_HTML)
}

pub async fn script() -> impl IntoResponse {
    (
        headers("text/javascript; charset=utf-8", "no-cache"),
        APP_JS,
    )
}

pub async fn stylesheet() -> impl IntoResponse {
    (headers("text/css; charset=utf-8", "no-cache"), APP_CSS)
}
