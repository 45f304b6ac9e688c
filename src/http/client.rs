//! Who is calling: the client address (from the socket, or from X-Forwarded-For when the
//! operator says a trusted proxy sets it) and the user agent, for throttling and the audit log.

use super::AppState;
use crate::store::ClientInfo;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

const MAX_USER_AGENT_CHARS: usize = 300;

/// The client's address. Behind a proxy, the last X-Forwarded-For entry is the one the proxy
/// appended; earlier entries are whatever the client claimed and are ignored.
pub fn client_ip(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trust_forwarded_for: bool,
) -> Option<IpAddr> {
    if trust_forwarded_for {
        // Only the entry our proxy appended counts; if it is unreadable, use the socket.
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|entry| entry.trim().parse::<IpAddr>().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    peer.map(|addr| addr.ip())
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr);
        let ip = client_ip(&parts.headers, peer, state.config.trust_forwarded_for);
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
