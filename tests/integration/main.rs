//! Black-box tests: real servers on real SQLite and PostgreSQL, real HTTP.

mod common;

mod api_keys;
mod beyond;
mod cluster;
mod dashboard;
mod leads;
mod metrics;
mod openapi;
mod process;
mod process_harness;
mod redis_harness;
mod shared_limits;
mod smoke;
mod verification;
