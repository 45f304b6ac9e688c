//! Login throttling: every attempt counts against its email and its client address before any
//! argon2 work is done, so a burst of guesses costs the server almost nothing.

use crate::error::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;

/// How much more a single address may try than a single email: an office behind one NAT
/// shares an address.
const PER_ADDRESS_FACTOR: u32 = 3;

pub struct LoginThrottle {
    per_email: DefaultKeyedRateLimiter<String>,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
}

impl LoginThrottle {
    pub fn new(per_minute: u32) -> LoginThrottle {
        let per_email = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let per_address =
            per_email.saturating_mul(NonZeroU32::MIN.saturating_add(PER_ADDRESS_FACTOR - 1));
        LoginThrottle {
            per_email: RateLimiter::keyed(Quota::per_minute(per_email)),
            per_address: RateLimiter::keyed(Quota::per_minute(per_address)),
        }
    }

    pub fn check(&self, normalized_email: &str, address: Option<IpAddr>) -> Result<(), ApiError> {
        let clock = DefaultClock::default();
        let email_key = normalized_email.to_owned();
        let refused = address
            .and_then(|ip| self.per_address.check_key(&ip).err())
            .or_else(|| self.per_email.check_key(&email_key).err());
        // Keep the maps from growing without bound under a spray of random emails.
        if self.per_email.len() > 100_000 {
            self.per_email.retain_recent();
        }
        if self.per_address.len() > 100_000 {
            self.per_address.retain_recent();
        }
        match refused {
            None => Ok(()),
            Some(not_until) => Err(ApiError::TooManyRequests {
                reason: "login_throttled",
                message: "Too many sign-in attempts; wait a minute and try again.".into(),
                retry_after_secs: not_until.wait_time_from(clock.now()).as_secs().max(1),
            }),
        }
    }
}
