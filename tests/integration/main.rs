//! Black-box tests: real servers on real SQLite and PostgreSQL, real HTTP.

mod common;

mod accounts;
mod api_keys;
mod beyond;
mod dashboard;
mod invitations;
mod leads;
mod metrics;
mod openapi;
mod operators;
mod process;
mod process_harness;
mod smoke;
mod verification;
