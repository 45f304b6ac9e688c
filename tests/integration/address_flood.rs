//! Per-address memory is bounded, tested as the flood it stops: behind a trusted proxy, a
//! client that sends each request from a new IPv6 address (any /48 holds 65,536 /64s) makes
//! every per-address table grow by an entry a request, unless the tables are bounded. With
//! `HEFFL_MAX_TRACKED_ADDRESSES` small, the server's memory after the tables are full stays
//! where it was however many more addresses come.

use crate::process_harness::Deployment;
use reqwest::Method;
use serde_json::json;

const BOUND: &str = "2000";
/// Distinct addresses in each of the measured floods.
const FLOOD: u32 = 10_000;
/// What the process may grow by after the tables are full: allocator noise, not a table.
/// Measured on this suite's machine: 2.6–3.0 MiB bounded, 14.5 MiB unbounded (the tables
/// without `HEFFL_MAX_TRACKED_ADDRESSES`) over the measured floods.
const ALLOWED_GROWTH: u64 = 8 * 1024 * 1024;
/// Floods after the tables are full.
const MEASURED_ROUNDS: u32 = 6;

async fn flood(server: &crate::process_harness::Server, round: u32) {
    const WORKERS: u32 = 32;
    let key = heffl_api::domain::api_key::ApiKey::generate(
        &heffl_api::domain::api_key::KeyEnv::default(),
    );
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let client = server.client.clone();
        let me = server.url("/api/v1/me");
        let report = server.url("/api/v1/credentials/revoke");
        let secret = key.expose_secret().to_owned();
        workers.spawn(async move {
            for n in (worker..FLOOD).step_by(WORKERS as usize) {
                // One /64 per request: 2001:db8:<round>:<n>::1.
                let address = format!("2001:db8:{round:x}:{n:x}::1");
                let unknown = client
                    .get(&me)
                    .header("x-api-key", &secret)
                    .header("x-forwarded-for", &address)
                    .send()
                    .await
                    .expect("request");
                assert!(unknown.status().is_client_error());
                let reported = client
                    .request(Method::POST, &report)
                    .header("x-forwarded-for", &address)
                    .json(&json!({ "keys": ["hk_live_notakey"] }))
                    .send()
                    .await
                    .expect("request");
                assert!(reported.status().is_success(), "{}", reported.status());
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.expect("a flood worker");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_addresses_does_not_grow_memory_past_the_bound() {
    let deployment = Deployment::sqlite();
    let server = deployment
        .spawn(
            &[
                ("HEFFL_TRUSTED_PROXIES", "127.0.0.1"),
                ("HEFFL_MAX_TRACKED_ADDRESSES", BOUND),
                ("HEFFL_LOG_FORMAT", "json"),
                ("RUST_LOG", "warn"),
            ],
            &["serve"],
        )
        .await;
    // Fill every table to its bound, and let the allocator settle at its working size.
    flood(&server, 0).await;
    flood(&server, 1).await;
    let full = server.rss_bytes();
    for round in 2..2 + MEASURED_ROUNDS {
        flood(&server, round).await;
    }
    let after = server.rss_bytes();
    assert!(
        after <= full + ALLOWED_GROWTH,
        "RSS grew from {} KiB to {} KiB over {} more addresses",
        full / 1024,
        after / 1024,
        MEASURED_ROUNDS * FLOOD
    );
}
