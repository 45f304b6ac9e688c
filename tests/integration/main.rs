//! Black-box tests: real servers on real SQLite and PostgreSQL, real HTTP.

mod common;

mod api_keys;
mod beyond;
mod dashboard;
mod error_messages;
mod forward_auth;
mod forward_auth_nginx;
mod leads;
mod metrics;
mod openapi;
mod process;
mod process_harness;
mod smoke;
mod startup;
mod trust_input;
mod trust_roll;
mod trust_throttle;
mod verification;
