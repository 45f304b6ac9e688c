//! Who is calling: the `x-api-key` check (`api_key`), dashboard sessions, the failed-key and
//! sign-in throttles, credits and GitHub's secret-scanning keys.

pub(crate) mod api_key;
pub(crate) mod credits;
pub(crate) mod expiry_log;
pub(crate) mod failed_keys;
pub(crate) mod github_keys;
pub(crate) mod session;
pub(crate) mod sign_in_throttle;
