//! What is worked out from a cached key row once and reused by every request the row verifies
//! until it leaves the cache: the parsed scopes and the encoded answers of the routes that
//! depend on nothing but the row and the process's configuration (`GET /api/v1/me`, a forward
//! auth verify that asks for no scope). Serializing those on each request was the largest
//! cost of a verified request after the HTTP stack itself (docs/dev/performance.md).
//!
//! A row is replaced, never changed, when anything it says changes (revocation, role, …: see
//! `verify::cache`), so what is derived from it cannot go stale while it is cached.

use crate::domain::key_policy::AllowedIps;
use crate::domain::scopes::ScopeSet;
use crate::verify::credits::KeyLease;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue};
use std::sync::Arc;
use std::sync::OnceLock;

#[derive(Debug, Clone, Default)]
pub struct KeyMemo {
    pub scopes: OnceLock<ScopeSet>,
    pub allowed_ips: OnceLock<AllowedIps>,
    /// This instance's lease of the key's credits (the ledger's, shared by the rows that
    /// follow this one).
    pub credit_lease: OnceLock<Arc<KeyLease>>,
    /// The IETF `RateLimit-Policy` field of the key's limit.
    pub rate_limit_policy: OnceLock<HeaderValue>,
    /// The JSON body of `GET /api/v1/me`.
    pub me: OnceLock<Bytes>,
    pub verify: OnceLock<VerifyAnswer>,
}

/// What `cell` holds, made by `make` the first time (`OnceLock::get_or_try_init` is not stable).
/// Two requests may both make it; both answers are the same, and the first is kept.
pub fn get_or_try<T, E>(cell: &OnceLock<T>, make: impl FnOnce() -> Result<T, E>) -> Result<&T, E> {
    if let Some(value) = cell.get() {
        return Ok(value);
    }
    let value = make()?;
    Ok(cell.get_or_init(|| value))
}

/// A successful forward-auth verify's body and headers (`Content-Type` and the identity
/// headers): the map is cloned, not built, per request, since inserting a header name that is
/// not a standard one hashes it.
#[derive(Debug, Clone)]
pub struct VerifyAnswer {
    pub body: Bytes,
    pub headers: HeaderMap,
}
