//! Who is calling: the client address (from the socket, or from X-Forwarded-For when the
//! operator says a trusted proxy sets it) and the user agent, for throttling and the audit log.

use crate::domain::net::{AddressBucket, TrustedProxies};
use crate::http::pipeline::request_scope;
use crate::http::state::AppState;
use crate::store::ClientInfo;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

const MAX_USER_AGENT_CHARS: usize = 300;

/// The client's address: the peer's, or behind a trusted proxy the right-most
/// X-Forwarded-For entry that is not a trusted proxy (`TrustedProxies::client_address`).
/// Without trusted proxies the header is not even read.
pub fn client_ip(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    proxies: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = peer?.ip();
    if proxies.is_empty() {
        return Some(peer);
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok());
    Some(proxies.client_address(peer, forwarded))
}

/// What per-address throttles count a client as: its address, an IPv6 client by its /64
/// (`AddressBucket`); clients without an address share one key.
pub fn throttle_key(address: Option<IpAddr>) -> String {
    address.map_or_else(|| "none".to_owned(), |ip| AddressBucket::of(ip).to_string())
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Infallible> {
        let ip = request_scope::client();
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect());
        Ok(ClientInfo {
            ip: ip.map(|ip| ip.to_string()),
            user_agent,
        })
    }
}
