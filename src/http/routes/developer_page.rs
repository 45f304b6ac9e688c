//! Settings > Developer: the built-in page for managing API keys. Its assets are compiled into
//! the binary, so the page works offline and cannot drift from the server that serves it. The
//! page talks only to `/app/v1` on the same origin, which is what the CSP below allows.

use super::static_page::{self, Headers};
use axum::response::IntoResponse;

const INDEX_HTML: &str = include_str!("../../../assets/developer/index.html");
const APP_JS: &str = include_str!("../../../assets/developer/app.js");
const API_JS: &str = include_str!("../../../assets/developer/api.js");
const ACCOUNT_JS: &str = include_str!("../../../assets/developer/account.js");
const APP_CSS: &str = include_str!("../../../assets/developer/app.css");
const CHARTS_JS: &str = include_str!("../../../assets/developer/charts.js");
const WEBHOOKS_JS: &str = include_str!("../../../assets/developer/webhooks.js");
const PEOPLE_JS: &str = include_str!("../../../assets/developer/people.js");

/// Nothing inline and nothing from elsewhere: a script injected into the page (through a key
/// name, say) could neither run nor send a session token or a fresh key anywhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

fn headers(content_type: &'static str, cache_control: &'static str) -> Headers {
    static_page::headers(content_type, cache_control, CONTENT_SECURITY_POLICY)
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

/// The one API client the other scripts share.
pub async fn api_script() -> impl IntoResponse {
    (
        headers("text/javascript; charset=utf-8", "no-cache"),
        API_JS,
    )
}

/// Invitations and the password: kept apart from app.js, which is about keys.
pub async fn account_script() -> impl IntoResponse {
    (
        headers("text/javascript; charset=utf-8", "no-cache"),
        ACCOUNT_JS,
    )
}

pub async fn charts_script() -> impl IntoResponse {
    (
        headers("text/javascript; charset=utf-8", "no-cache"),
        CHARTS_JS,
    )
}

pub async fn stylesheet() -> impl IntoResponse {
    (headers("text/css; charset=utf-8", "no-cache"), APP_CSS)
}

/// Webhook endpoints, for owners and admins: kept apart from app.js, which is about keys.
pub async fn webhooks_script() -> impl IntoResponse {
    (
        headers("text/javascript; charset=utf-8", "no-cache"),
        WEBHOOKS_JS,
    )
}

/// The workspace's people and a new workspace: kept apart from app.js, which is about keys.
pub async fn people_script() -> impl IntoResponse {
    (
        headers("text/javascript; charset=utf-8", "no-cache"),
        PEOPLE_JS,
    )
}
