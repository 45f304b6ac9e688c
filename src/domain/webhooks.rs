//! Webhooks without I/O (docs/api.md §15): the event types, which of them an endpoint takes,
//! the retry schedule, the signing secret and the Standard Webhooks signature, and which
//! endpoint URLs are acceptable.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::time::Duration;

/// What happened, as the `type` of a webhook message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "api_key.created")]
    ApiKeyCreated,
    #[serde(rename = "api_key.updated")]
    ApiKeyUpdated,
    #[serde(rename = "api_key.rolled")]
    ApiKeyRolled,
    #[serde(rename = "api_key.revoked")]
    ApiKeyRevoked,
    #[serde(rename = "api_key.leaked")]
    ApiKeyLeaked,
    #[serde(rename = "api_key.expiring")]
    ApiKeyExpiring,
    #[serde(rename = "api_key.credits_low")]
    ApiKeyCreditsLow,
    #[serde(rename = "member.joined")]
    MemberJoined,
    #[serde(rename = "member.removed")]
    MemberRemoved,
    #[serde(rename = "member.role_changed")]
    MemberRoleChanged,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::ApiKeyCreated,
        EventType::ApiKeyUpdated,
        EventType::ApiKeyRolled,
        EventType::ApiKeyRevoked,
        EventType::ApiKeyLeaked,
        EventType::ApiKeyExpiring,
        EventType::ApiKeyCreditsLow,
        EventType::MemberJoined,
        EventType::MemberRemoved,
        EventType::MemberRoleChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ApiKeyCreated => "api_key.created",
            EventType::ApiKeyUpdated => "api_key.updated",
            EventType::ApiKeyRolled => "api_key.rolled",
            EventType::ApiKeyRevoked => "api_key.revoked",
            EventType::ApiKeyLeaked => "api_key.leaked",
            EventType::ApiKeyExpiring => "api_key.expiring",
            EventType::ApiKeyCreditsLow => "api_key.credits_low",
            EventType::MemberJoined => "member.joined",
            EventType::MemberRemoved => "member.removed",
            EventType::MemberRoleChanged => "member.role_changed",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// The events an endpoint is sent: all of them (`["*"]`, which includes event types added
/// later), or the ones listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Only(Vec<EventType>),
}

impl EventFilter {
    /// From a request's `events`: `["*"]` or event types, each at most once. The error names
    /// the first entry that is neither.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<EventFilter, String> {
        if entries.is_empty() {
            return Err("must list at least one event type, or [\"*\"] for all".into());
        }
        if entries.len() == 1 && entries[0].as_ref() == "*" {
            return Ok(EventFilter::All);
        }
        let mut kinds = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.as_ref();
            let Some(kind) = EventType::parse(entry) else {
                return Err(if entry == "*" {
                    "\"*\" stands alone: it already means every event".into()
                } else {
                    format!("'{entry}' is not an event type (e.g. api_key.created; see docs/api.md §15)")
                });
            };
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(EventFilter::Only(kinds))
    }

    pub fn matches(&self, kind: EventType) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Only(kinds) => kinds.contains(&kind),
        }
    }

    /// The stored and returned form: `["*"]` or the type names.
    pub fn names(&self) -> Vec<&'static str> {
        match self {
            EventFilter::All => vec!["*"],
            EventFilter::Only(kinds) => kinds.iter().map(|kind| kind.as_str()).collect(),
        }
    }

    pub fn to_column(&self) -> String {
        serde_json::Value::from(self.names()).to_string()
    }

    /// A stored filter; unknown names (from a newer binary on the same database) are skipped.
    pub fn from_column(column: &str) -> EventFilter {
        let names: Vec<String> = serde_json::from_str(column).unwrap_or_default();
        if names.iter().any(|name| name == "*") {
            return EventFilter::All;
        }
        EventFilter::Only(names.iter().filter_map(|n| EventType::parse(n)).collect())
    }
}

/// The gaps before the second to eighth tries; after the eighth failure a message has failed.
pub const RETRY_GAPS: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// An endpoint whose deliveries have all failed for this long is disabled.
pub const DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);

/// How long to wait before the next try, after `tries` automatic tries have failed; `None`
/// when that was the last. `scale` (`HEFFL_WEBHOOK_RETRY_SCALE`) shrinks the gaps for tests.
pub fn retry_gap(tries: u32, scale: f64) -> Option<Duration> {
    let index = usize::try_from(tries.checked_sub(1)?).ok()?;
    RETRY_GAPS.get(index).map(|gap| scaled(*gap, scale))
}

pub fn scaled(duration: Duration, scale: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() * scale).unwrap_or(duration)
}

const SECRET_PREFIX: &str = "whsec_";
const SECRET_BYTES: usize = 24;

/// An endpoint's signing secret: `whsec_` and the base64 of the HMAC key, as the Standard
/// Webhooks libraries expect it. It is needed to sign, so it is stored as it is (unlike API
/// keys); it is shown once, when made or rolled, and never in logs (`Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl SigningSecret {
    pub fn generate() -> SigningSecret {
        use rand::RngCore;
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        SigningSecret(format!("{SECRET_PREFIX}{}", BASE64.encode(bytes)))
    }

    /// A stored secret; `None` if it is not one of ours.
    pub fn from_column(text: String) -> Option<SigningSecret> {
        let key = text.strip_prefix(SECRET_PREFIX)?;
        BASE64
            .decode(key)
            .ok()
            .filter(|k| k.len() >= SECRET_BYTES)?;
        Some(SigningSecret(text))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    fn key(&self) -> Vec<u8> {
        let encoded = self.0.strip_prefix(SECRET_PREFIX).unwrap_or_default();
        BASE64.decode(encoded).unwrap_or_default()
    }

    /// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key()) else {
            // HMAC takes keys of any length; this cannot happen.
            return String::new();
        };
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(whsec_…)")
    }
}

/// The `webhook-signature` header: one signature per secret in use (the current one, and the
/// one it replaced while that still counts), separated by spaces.
pub fn signature_header(
    secrets: &[&SigningSecret],
    message_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(message_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

pub const MAX_URL_LEN: usize = 2000;

/// Why an endpoint URL is refused, before any name is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlProblem {
    Invalid,
    TooLong,
    NotHttps,
    UnsupportedScheme,
    Credentials,
    Fragment,
}

impl UrlProblem {
    pub fn message(&self) -> &'static str {
        match self {
            UrlProblem::Invalid => "must be an absolute URL such as https://example.com/webhooks",
            UrlProblem::TooLong => "must be at most 2000 characters",
            UrlProblem::NotHttps => {
                "must start with https:// (this server does not send webhooks over plain HTTP)"
            }
            UrlProblem::UnsupportedScheme => "must start with https://",
            UrlProblem::Credentials => {
                "must not carry a user or password; authenticate deliveries by their signature"
            }
            UrlProblem::Fragment => "must not have a #fragment, which is never sent",
        }
    }
}

/// An endpoint URL as given: absolute, `https` (or `http` when the server allows it), with a
/// host, and no credentials or fragment. Whether its host is private is decided on the
/// addresses it resolves to, at creation and at every delivery.
pub fn check_url(text: &str, allow_http: bool) -> Result<url::Url, UrlProblem> {
    if text.len() > MAX_URL_LEN {
        return Err(UrlProblem::TooLong);
    }
    let url = url::Url::parse(text.trim()).map_err(|_| UrlProblem::Invalid)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err(UrlProblem::NotHttps),
        _ => return Err(UrlProblem::UnsupportedScheme),
    }
    if url.host().is_none() {
        return Err(UrlProblem::Invalid);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlProblem::Credentials);
    }
    if url.fragment().is_some() {
        return Err(UrlProblem::Fragment);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        // The example of the Standard Webhooks specification.
        let secret = SigningSecret::from_column("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into())
            .expect("the specification's secret");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_rolled_secret_signs_with_both_while_the_old_one_counts() {
        let old = SigningSecret::generate();
        let new = SigningSecret::generate();
        let header = signature_header(&[&new, &old], "msg_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            parts,
            [new.sign("msg_1", 1, b"{}"), old.sign("msg_1", 1, b"{}")]
        );
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn secrets_are_long_and_never_debug_printed() {
        let secret = SigningSecret::generate();
        assert!(secret.expose().starts_with("whsec_"));
        assert_eq!(secret.key().len(), SECRET_BYTES);
        assert!(!format!("{secret:?}").contains(&secret.expose()[6..]));
        assert!(SigningSecret::from_column("whsec_c2hvcnQ=".into()).is_none());
    }

    #[test]
    fn retries_follow_the_schedule_then_stop() {
        let gaps: Vec<u64> = (1..=8)
            .filter_map(|tries| retry_gap(tries, 1.0))
            .map(|gap| gap.as_secs())
            .collect();
        assert_eq!(gaps, [5, 300, 1800, 7200, 18000, 36000, 36000]);
        assert_eq!(retry_gap(8, 1.0), None);
        assert_eq!(retry_gap(0, 1.0), None);
        assert_eq!(retry_gap(1, 0.001), Some(Duration::from_millis(5)));
    }

    #[test]
    fn filters_take_a_star_or_known_types() {
        assert_eq!(EventFilter::parse(&["*"]), Ok(EventFilter::All));
        let only = EventFilter::parse(&["api_key.created", "member.joined", "api_key.created"])
            .expect("known types");
        assert_eq!(
            only,
            EventFilter::Only(vec![EventType::ApiKeyCreated, EventType::MemberJoined])
        );
        assert!(only.matches(EventType::MemberJoined));
        assert!(!only.matches(EventType::ApiKeyRevoked));
        assert!(EventFilter::parse(&["api_key.create"]).is_err());
        assert!(EventFilter::parse(&["*", "api_key.created"]).is_err());
        assert!(EventFilter::parse::<&str>(&[]).is_err());
        assert_eq!(EventFilter::from_column(&only.to_column()), only);
        assert_eq!(EventFilter::from_column(r#"["*"]"#).names(), vec!["*"],);
    }

    #[test]
    fn urls_must_be_https_without_credentials() {
        assert!(check_url("https://example.com/hooks", false).is_ok());
        assert_eq!(
            check_url("http://example.com/hooks", false),
            Err(UrlProblem::NotHttps)
        );
        assert!(check_url("http://example.com/hooks", true).is_ok());
        assert_eq!(
            check_url("ftp://example.com", true),
            Err(UrlProblem::UnsupportedScheme)
        );
        assert_eq!(
            check_url("https://user:pw@example.com/", false),
            Err(UrlProblem::Credentials)
        );
        assert_eq!(
            check_url("https://example.com/#x", false),
            Err(UrlProblem::Fragment)
        );
        assert_eq!(check_url("example.com", false), Err(UrlProblem::Invalid));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(check_url(&long, false), Err(UrlProblem::TooLong));
    }
}
