//! The rules, apart from any database or network: the key format, ids, roles, scopes, input
//! validation, password hashing, session tokens, times, usage series and webhooks.

pub mod api_key;
pub mod base62;
pub mod credits;
pub mod email;
pub mod ids;
pub mod key_change;
pub mod key_policy;
pub mod net;
pub mod password;
pub mod permissions;
pub mod scopes;
pub mod secret_scanning;
pub mod session_token;
pub mod time;
pub mod usage_counts;
pub mod usage_series;
pub mod validate;
pub mod webhooks;
