//! What every request passes on its way to a handler and back: the one request layer
//! (`stack`), ids, the body limit, JSON errors, route metrics, extractors and the OpenAPI parts.

pub(crate) mod body_limit;
pub(crate) mod client;
pub(crate) mod error_response;
pub(crate) mod extract;
pub(crate) mod header_number;
pub(crate) mod json_errors;
pub(crate) mod metrics;
pub(crate) mod openapi;
pub(crate) mod request_id;
pub(crate) mod request_scope;
pub(crate) mod stack;
