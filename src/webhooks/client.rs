//! Sending one webhook: an HTTP client that only reaches the internet. A name that resolves
//! to any loopback, private or link-local address is refused at connection time, after DNS,
//! so a name that changed since the endpoint was registered cannot reach the server's own
//! network; the connection goes to exactly the addresses checked. Redirects are not
//! followed (a 3xx is a failure), the whole request takes at most 15 s, and at most a few
//! kilobytes of the answer are read.

use crate::domain::net::is_public;
use crate::domain::time::Timestamp;
use crate::domain::webhooks::signature_header;
use crate::store::{AttemptResult, ClaimedMessage, Destination};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Success is a 2xx within this long.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an answer is read before the connection is let go.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

#[derive(Debug)]
struct PrivateAddress;

impl std::fmt::Display for PrivateAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the host resolves to a private or local address")
    }
}

impl std::error::Error for PrivateAddress {}

/// DNS through the system resolver, refusing private answers unless they are allowed.
struct PublicOnly {
    allow_private: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private && addresses.iter().any(|a| !is_public(a.ip())) {
                return Err(Box::new(PrivateAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    pub fn new(allow_private: bool) -> Result<Sender, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(DELIVERY_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .dns_resolver(Arc::new(PublicOnly { allow_private }))
            .user_agent(concat!("heffl-api-webhooks/", env!("CARGO_PKG_VERSION")))
            // A proxy from the environment would connect to addresses never checked here.
            .no_proxy()
            .build()?;
        Ok(Sender {
            client,
            allow_private,
        })
    }

    pub async fn send(&self, destination: &Destination, message: &ClaimedMessage) -> AttemptResult {
        let Ok(url) = url::Url::parse(&destination.url) else {
            return AttemptResult::NotSent {
                error: "the endpoint's URL cannot be read".into(),
            };
        };
        if let Some(address) = literal_address(&url) {
            if !self.allow_private && !is_public(address) {
                return AttemptResult::NotSent {
                    error: PrivateAddress.to_string(),
                };
            }
        }
        let secrets: Vec<_> = destination.secrets.iter().collect();
        let timestamp = Timestamp::now().0 / 1000;
        let body = message.payload.as_bytes();
        let signature = signature_header(&secrets, &message.id, timestamp, body);
        let request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", message.id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(message.payload.clone());
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                return AttemptResult::Failed {
                    status: None,
                    error: describe(&err),
                }
            }
        };
        let status = response.status();
        let mut read = 0;
        // Reading a little lets the connection be reused; more is the receiver's problem.
        while read < MAX_ANSWER_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        if status.is_success() {
            AttemptResult::Delivered {
                status: status.as_u16(),
            }
        } else {
            let error = if status.is_redirection() {
                "answered with a redirect, which is not followed".to_owned()
            } else {
                format!("answered {}", status.as_u16())
            };
            AttemptResult::Failed {
                status: Some(status.as_u16()),
                error,
            }
        }
    }
}

/// The address of a URL whose host is an IP literal (DNS is not asked about those).
pub fn literal_address(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// Why a request got no answer, in words that carry neither the URL nor anything it holds.
fn describe(err: &reqwest::Error) -> String {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<PrivateAddress>() {
            return PrivateAddress.to_string();
        }
        source = cause.source();
    }
    if err.is_timeout() {
        format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs())
    } else if err.is_connect() {
        "could not connect (DNS, refused connection or TLS)".to_owned()
    } else {
        "the request failed before an answer arrived".to_owned()
    }
}

/// At registration: the first address the URL's host resolves to that is not public, if
/// any. A host that doesn't resolve (yet) is accepted; its deliveries will fail until it does.
pub async fn private_address_of(url: &url::Url) -> Option<IpAddr> {
    if let Some(address) = literal_address(url) {
        return (!is_public(address)).then_some(address);
    }
    let host = url.host_str()?;
    let lookup =
        tokio::time::timeout(Duration::from_secs(3), tokio::net::lookup_host((host, 0))).await;
    match lookup {
        Ok(Ok(mut addresses)) => addresses.find(|a| !is_public(a.ip())).map(|a| a.ip()),
        _ => None,
    }
}
