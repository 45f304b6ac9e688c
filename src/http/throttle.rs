//! Sign-in throttling (SPEC §10). Every attempt counts before any argon2 work is done, so a
//! burst of guesses costs the server almost nothing; the counters are per (email, address) pair
//! and per address, never per email alone: whoever guesses at an email from one address slows
//! only themselves, and the owner of the email still signs in from anywhere else. Guessing from
//! many addresses is bounded by the per-address limit times the addresses, and by argon2.

use crate::error::{ApiError, Reason};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;

/// How much more a single address may try than a single (email, address) pair: an office
/// behind one NAT shares an address.
const PER_ADDRESS_FACTOR: u32 = 3;

/// Beyond this many tracked keys, idle ones are dropped so a spray of emails cannot grow the
/// maps without bound.
const MAX_TRACKED: usize = 100_000;

pub struct LoginThrottle {
    per_pair: DefaultKeyedRateLimiter<(String, Option<IpAddr>)>,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
}

impl LoginThrottle {
    pub fn new(per_minute: u32) -> LoginThrottle {
        let per_pair = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let per_address =
            per_pair.saturating_mul(NonZeroU32::MIN.saturating_add(PER_ADDRESS_FACTOR - 1));
        LoginThrottle {
            per_pair: RateLimiter::keyed(Quota::per_minute(per_pair)),
            per_address: RateLimiter::keyed(Quota::per_minute(per_address)),
        }
    }

    /// Counts one attempt with a password (a sign-in, or a password change) for the email from
    /// the address; refuses it with 429 `login_throttled` past either limit.
    pub fn check(&self, normalized_email: &str, address: Option<IpAddr>) -> Result<(), ApiError> {
        let clock = DefaultClock::default();
        let pair = (normalized_email.to_owned(), address);
        let refused = address
            .and_then(|ip| self.per_address.check_key(&ip).err())
            .or_else(|| self.per_pair.check_key(&pair).err());
        if self.per_pair.len() > MAX_TRACKED {
            self.per_pair.retain_recent();
        }
        if self.per_address.len() > MAX_TRACKED {
            self.per_address.retain_recent();
        }
        match refused {
            None => Ok(()),
            Some(not_until) => Err(ApiError::TooManyRequests {
                reason: Reason::LoginThrottled,
                message:
                    "Too many sign-in attempts from this address; wait a minute and try again."
                        .into(),
                retry_after_secs: not_until.wait_time_from(clock.now()).as_secs().max(1),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    #[test]
    fn a_guesser_at_one_address_never_locks_out_another() {
        let throttle = LoginThrottle::new(10);
        for _ in 0..10 {
            assert!(throttle.check("jane@example.com", ip("10.0.0.1")).is_ok());
        }
        assert!(throttle.check("jane@example.com", ip("10.0.0.1")).is_err());
        assert!(throttle.check("jane@example.com", ip("10.0.0.2")).is_ok());
    }

    #[test]
    fn one_address_is_limited_across_emails() {
        let throttle = LoginThrottle::new(2);
        for n in 0..6 {
            assert!(throttle
                .check(&format!("u{n}@example.com"), ip("10.0.0.1"))
                .is_ok());
        }
        assert!(throttle.check("new@example.com", ip("10.0.0.1")).is_err());
        assert!(throttle.check("new@example.com", ip("10.0.0.9")).is_ok());
    }
}
