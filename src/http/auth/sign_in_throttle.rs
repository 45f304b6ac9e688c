//! Sign-in throttling (docs/api.md §10). Every attempt counts before any argon2 work is done, so a
//! burst of guesses costs the server almost nothing; the counters are per (email, address) pair
//! and per address, never per email alone: whoever guesses at an email from one address slows
//! only themselves, and the owner of the email still signs in from anywhere else. Guessing from
//! many addresses is bounded by the per-address limit times the addresses, and by argon2.
//!
//! Both counters are `Limiter`s, so instances sharing Redis share them (docs/api.md §12): an attacker
//! who spreads guesses over the instances gets the limit once, not once per instance.

use crate::error::{ApiError, Reason};
use crate::limits::{Limiter, SharedLimits};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::Instant;

/// How much more a single address may try than a single (email, address) pair: an office
/// behind one NAT shares an address.
const PER_ADDRESS_FACTOR: u32 = 3;

pub struct LoginThrottle {
    /// What is being tried, for the refusal's message.
    attempts: &'static str,
    per_minute: u32,
    per_pair: Limiter,
    per_address: Limiter,
}

/// The pair as a limiter key: hashed, so that emails are not written into Redis key names, and
/// of fixed length however long the email.
fn pair_key(normalized_email: &str, address: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(normalized_email.as_bytes());
    hasher.update([0]);
    hasher.update(address.as_bytes());
    hex_prefix(&hasher.finalize())
}

fn hex_prefix(digest: &[u8]) -> String {
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

impl LoginThrottle {
    pub fn new(per_minute: u32, limits: &SharedLimits) -> LoginThrottle {
        LoginThrottle {
            attempts: "sign-in attempts",
            per_minute: per_minute.max(1),
            per_pair: limits.limiter("login"),
            per_address: limits.limiter("login-address"),
        }
    }

    /// "Forgot password?" requests, by the same rules with counters of their own: asking for
    /// reset emails does not use up anyone's sign-in attempts, and each request may send an
    /// email, so flooding one mailbox from one address stops at the same limit.
    pub fn password_reset(per_minute: u32, limits: &SharedLimits) -> LoginThrottle {
        LoginThrottle {
            attempts: "password-reset requests",
            per_minute: per_minute.max(1),
            per_pair: limits.limiter("reset"),
            per_address: limits.limiter("reset-address"),
        }
    }

    /// Counts one attempt with a password (a sign-in, or a password change) for the email from
    /// the address; refuses it with 429 `login_throttled` past either limit. An attempt the
    /// address limit refuses does not count against the pair.
    pub async fn check(
        &self,
        normalized_email: &str,
        address: Option<IpAddr>,
    ) -> Result<(), ApiError> {
        let now = Instant::now();
        let address = crate::http::pipeline::client::throttle_key(address);
        let per_address = self.per_minute.saturating_mul(PER_ADDRESS_FACTOR);
        let mut decision = self.per_address.check(&address, per_address, now).await;
        if decision.allowed {
            let pair = pair_key(normalized_email, &address);
            decision = self.per_pair.check(&pair, self.per_minute, now).await;
        }
        if decision.allowed {
            return Ok(());
        }
        Err(ApiError::TooManyRequests {
            reason: Reason::LoginThrottled,
            message: format!(
                "Too many {} from this address; wait a minute and try again.",
                self.attempts
            )
            .into(),
            retry_after_secs: decision.reset_secs,
        })
    }

    /// Drops windows that have ended.
    pub fn prune(&self, now: Instant) {
        self.per_pair.prune(now);
        self.per_address.prune(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    #[tokio::test]
    async fn a_guesser_at_one_address_never_locks_out_another() {
        let throttle = LoginThrottle::new(10, &SharedLimits::per_instance());
        for _ in 0..10 {
            assert!(throttle
                .check("jane@example.com", ip("10.0.0.1"))
                .await
                .is_ok());
        }
        assert!(throttle
            .check("jane@example.com", ip("10.0.0.1"))
            .await
            .is_err());
        assert!(throttle
            .check("jane@example.com", ip("10.0.0.2"))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn one_address_is_limited_across_emails() {
        let throttle = LoginThrottle::new(2, &SharedLimits::per_instance());
        for n in 0..6 {
            assert!(throttle
                .check(&format!("u{n}@example.com"), ip("10.0.0.1"))
                .await
                .is_ok());
        }
        assert!(throttle
            .check("new@example.com", ip("10.0.0.1"))
            .await
            .is_err());
        assert!(throttle
            .check("new@example.com", ip("10.0.0.9"))
            .await
            .is_ok());
    }

    #[test]
    fn pair_keys_hide_the_email_and_tell_pairs_apart() {
        let key = pair_key("jane@example.com", "10.0.0.1");
        assert_eq!(key.len(), 32);
        assert!(!key.contains("jane"));
        assert_ne!(key, pair_key("jane@example.com", "10.0.0.2"));
        assert_ne!(key, pair_key("jane@example.com1", "0.0.0.1"));
    }
}
