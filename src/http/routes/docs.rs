//! `/docs`: Swagger UI over `/openapi.json`, with every asset compiled into the binary so the
//! page works with no network (see assets/docs/VENDORED.md).

use super::static_page::{self, Headers};
use axum::response::IntoResponse;

const INDEX_HTML: &str = include_str!("../../../assets/docs/index.html");
const INIT_JS: &str = include_str!("../../../assets/docs/init.js");
const BUNDLE_JS: &str = include_str!("../../../assets/docs/swagger-ui-bundle.js");
const STYLESHEET: &str = include_str!("../../../assets/docs/swagger-ui.css");

/// Same origin only. Swagger UI sets inline `style` attributes and draws icons from `data:`
/// URLs, hence those two allowances; scripts stay external and same-origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn headers(content_type: &'static str, cache_control: &'static str) -> Headers {
    static_page::headers(content_type, cache_control, CONTENT_SECURITY_POLICY)
}

pub async fn index() -> impl IntoResponse {
    (headers("text/html; charset=utf-8", "no-cache"), INDEX_HTML)
}

pub async fn init_script() -> impl IntoResponse {
    (
        headers("text/javascript; charset=utf-8", "no-cache"),
        INIT_JS,
    )
}

/// The vendored files change only with the binary; an hour of caching spares 1.7 MB per visit.
pub async fn bundle() -> impl IntoResponse {
    (
        headers("text/javascript; charset=utf-8", "public, max-age=3600"),
        BUNDLE_JS,
    )
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        headers("text/css; charset=utf-8", "public, max-age=3600"),
        STYLESHEET,
    )
}
