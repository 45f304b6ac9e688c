//! Connections: the accept loop and its caps, each connection's clocks and minimum body rate, TLS,
//! and the separate `/metrics` listener.

pub(crate) mod accept;
pub(crate) mod connection;
pub(crate) mod metrics_listener;
pub(crate) mod open_files;
pub(crate) mod parse_errors;
pub(crate) mod slow_body;
pub mod tls;
