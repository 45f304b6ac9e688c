//! heffl-api: workspace-scoped API keys over HTTP.
//!
//! The layers, each using only those above it and the edges' `error` (tests/integration/layers.rs
//! holds them to that):
//! - `domain`: the rules, without any database, cache or network I/O (key format, ids, roles,
//!   scopes, validation, usage series), so they can be unit- and property-tested on their own;
//! - `store`: the rows, in SQLite or PostgreSQL, knowing nothing of caches;
//! - `verify`: turning an `x-api-key` into a principal fast (cache, lookup, change feed) and the
//!   writes that make cached answers stale (`KeyTx`);
//! - `limits` and `usage`: rate limits (shared through Redis) and usage counts;
//! - `webhooks`: events out, delivered from the store's outbox;
//! - `mail`: the emails the server sends (built without I/O) and the SMTP connection;
//! - `http`: the server, its request stack and routes;
//! - `cli`, `config`, `telemetry`, `error`: the program's edges.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod limits;
pub mod mail;
pub mod store;
pub mod telemetry;
pub mod usage;
pub mod verify;
pub mod webhooks;
