//! The baseline of `scripts/bench.sh`: a plain axum 0.8 server with one route that returns a
//! small JSON, with nothing else (no layers, the default allocator). heffl-api's requests are
//! reported as a ratio to this one, measured in the same run.
//!
//! `cargo run --release --example hello -- 127.0.0.1:18090`, then `GET /hello`.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

#[derive(Serialize)]
struct Hello {
    message: &'static str,
}

async fn hello() -> Json<Hello> {
    Json(Hello { message: "hello" })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    axum::serve(listener, Router::new().route("/hello", get(hello))).await
}
