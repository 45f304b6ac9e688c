//! Black-box tests: real servers on real SQLite and PostgreSQL, real HTTP.

mod common;

mod api_keys;
mod beyond;
mod crash_safety;
mod dashboard;
mod leads;
mod metrics;
mod openapi;
mod parse_errors;
mod pg_restart;
mod process;
mod process_harness;
mod slow_clients;
mod smoke;
mod verification;
