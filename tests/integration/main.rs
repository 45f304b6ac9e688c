//! Black-box tests: real servers on real SQLite and PostgreSQL, real HTTP.

mod common;

mod accounts;
mod api_keys;
mod beyond;
mod cli_help;
mod cluster;
mod crash_safety;
mod dashboard;
mod error_messages;
mod forward_auth;
mod forward_auth_nginx;
mod invitations;
mod leads;
mod metrics;
mod miss_batching;
mod openapi;
mod operators;
mod parse_errors;
mod pg_restart;
mod process;
mod process_harness;
mod readme;
mod redis_harness;
mod request_ids;
mod shared_limits;
mod slow_clients;
mod smoke;
mod startup;
mod trust_input;
mod trust_roll;
mod trust_throttle;
mod usage;
mod verification;
