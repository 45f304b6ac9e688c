//! Black-box tests: real servers on real SQLite and PostgreSQL, real HTTP.

mod common;

mod smoke;
