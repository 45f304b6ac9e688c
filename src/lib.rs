//! heffl-api: workspace-scoped API keys over HTTP.
//!
//! Pure logic (key format, roles, validation) lives apart from I/O (store, http) so it can be
//! unit-tested and fuzzed on its own.

#![forbid(unsafe_code)]

pub mod api_key;
pub mod base62;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod ids;
pub mod key_memo;
pub mod known_keys;
pub mod limits;
pub mod password;
pub mod permissions;
pub mod scopes;
pub mod session_token;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod usage;
pub mod usage_series;
pub mod validate;
pub mod verify;
