//! What the parts of the HTTP server share: the state every handler and layer reads
//! (`AppState`), and the request-wide constants. The rooms beside it (`server`, `pipeline`,
//! `auth`, `routes`) import it from here, never from `http` itself.

use crate::config::Config;
use crate::domain::net::TrustedProxies;
use crate::http::auth::{failed_keys, github_keys, sign_in_throttle};
use crate::http::outbox;
use crate::limits::{Limiter, SharedLimits};
use crate::store::Store;
use crate::usage::UsageRecorder;
use crate::verify::credits::CreditLedger;
use crate::verify::{KeyCache, Verifier};
use axum::http::HeaderName;
use std::ops::Deref;
use std::sync::Arc;

pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

pub struct StateInner {
    /// Reads, and writes that leave key verification alone.
    pub store: Store,
    /// Key verification: the cache this server keeps in step (see `serve_until`), the lookups
    /// and the writes that can make a cached verification stale.
    pub verifier: Verifier,
    pub config: Config,
    /// Whose X-Forwarded-For is believed (`HEFFL_TRUSTED_PROXIES`, `HEFFL_TRUST_FORWARDED_FOR`).
    pub proxies: TrustedProxies,
    pub usage: UsageRecorder,
    /// This instance's leases of keys' credits.
    pub credits: CreditLedger,
    pub(crate) login_throttle: sign_in_throttle::LoginThrottle,
    pub(crate) reset_throttle: sign_in_throttle::LoginThrottle,
    /// Invitation emails resent, per invitation.
    pub(crate) resends: Limiter,
    /// `None` without `HEFFL_SMTP_URL`: nothing is emailed.
    pub(crate) outbox: Option<outbox::Outbox>,
    pub(crate) shared_limits: SharedLimits,
    pub(crate) key_limits: Limiter,
    pub(crate) auth_throttle: failed_keys::AuthThrottle,
    pub(crate) leak_reports: Limiter,
    pub(crate) expiry_log: Arc<crate::http::auth::expiry_log::ExpiryLog>,
    /// `HEFFL_GITHUB_SECRET_SCANNING_KEYS`, when set.
    pub(crate) github_keys: Option<github_keys::GitHubKeys>,
}

impl AppState {
    pub fn new(store: Store, config: Config) -> AppState {
        crate::telemetry::prometheus();
        let cache = if config.cache_capacity == 0 {
            KeyCache::disabled()
        } else {
            KeyCache::new(config.cache_capacity, config.cache_ttl)
        };
        let verifier = Verifier::new(store.clone(), cache);
        let shared_limits = shared_limits(&config).bounded(config.max_tracked_addresses as usize);
        let login_throttle =
            sign_in_throttle::LoginThrottle::new(config.login_attempts_per_minute, &shared_limits);
        let reset_throttle = sign_in_throttle::LoginThrottle::password_reset(
            config.login_attempts_per_minute,
            &shared_limits,
        );
        let proxies = TrustedProxies::new(&config.trusted_proxies, config.trust_forwarded_for);
        let github_keys = config
            .github_secret_scanning_keys
            .clone()
            .map(github_keys::GitHubKeys::new);
        // `serve` refuses to start on a configuration this cannot use; an embedder's is logged.
        let outbox = outbox::Outbox::from_config(&config).unwrap_or_else(|err| {
            tracing::error!(error = %err, "email is not sent");
            None
        });
        AppState(Arc::new(StateInner {
            store,
            verifier,
            proxies,
            config,
            usage: UsageRecorder::default(),
            credits: CreditLedger::default(),
            login_throttle,
            reset_throttle,
            resends: shared_limits.limiter("resend"),
            outbox,
            key_limits: shared_limits.limiter("key"),
            auth_throttle: failed_keys::AuthThrottle::new(
                shared_limits.limiter("auth"),
                shared_limits.max_entries(),
            ),
            leak_reports: shared_limits.limiter("leak"),
            shared_limits,
            expiry_log: Arc::default(),
            github_keys,
        }))
    }
}

/// Without a usable `HEFFL_REDIS_URL` (the configuration checked it), limits are per instance.
fn shared_limits(config: &Config) -> SharedLimits {
    let Some(url) = &config.redis_url else {
        return SharedLimits::per_instance();
    };
    SharedLimits::redis(url, &config.redis_prefix).unwrap_or_else(|err| {
        tracing::error!(error = %err, "HEFFL_REDIS_URL cannot be used; limits are per instance");
        SharedLimits::per_instance()
    })
}

impl Deref for AppState {
    type Target = StateInner;

    fn deref(&self) -> &StateInner {
        &self.0
    }
}
