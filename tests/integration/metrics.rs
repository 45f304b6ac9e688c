//! /metrics: Prometheus text with request, authentication, cache and pool metrics, served on
//! its own listener (HEFFL_METRICS_BIND) only. The recorder is process-wide and tests run in
//! parallel, so this checks that the series exist and move, not exact values.

use crate::common::TestApp;
use crate::process_harness::assert_moved;
use crate::test_app::Reply;
use reqwest::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_routes_auth_outcomes_cache_and_pool() {
    let app = TestApp::sqlite().await;
    let owner = app.bootstrap("Metrics", "owner@metrics.test").await;
    let key = app.create_key(&owner, "metrics").await;
    let me_ok = "heffl_http_requests_total{method=\"GET\",route=\"/api/v1/me\",status=\"200\"}";
    let missing = "heffl_api_key_auth_total{outcome=\"missing_api_key\"}";
    let before = app.metrics().await;

    for _ in 0..3 {
        app.me(&key.key).await.ok();
    }
    // Raw: no key at all, which `me` always sends.
    let response = app.call(Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    let after = app.metrics().await;

    assert_moved(&before, &after, me_ok, 3.0);
    assert_moved(&before, &after, missing, 1.0);
    // Route templates, never raw ids, label the series.
    assert!(after.contains("route=\"/app/v1/workspaces/{workspaceId}/api-keys\""));
    assert!(!after.contains(&owner.workspace_id));
    assert!(after.contains("heffl_http_request_duration_seconds_bucket{"));
    assert!(after.contains("heffl_key_cache_total{result=\"hit\"}"));
    assert!(after.contains("heffl_db_pool_connections{state=\"idle\"}"));
    assert!(after.contains("heffl_db_pool_max_connections"));
    assert!(after.contains("heffl_key_cache_live"));
    // The key itself never becomes a label.
    assert!(!after.contains(&key.key));
}

/// docs/api.md §9: anyone who can reach the API must not read its counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_listener_answers_metrics_with_the_json_404() {
    let app = TestApp::sqlite().await;
    for path in ["/metrics", "/metrics/", "/Metrics"] {
        app.call(Method::GET, path, None, None).await.expect_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            None,
        );
    }
}

/// The metrics listener serves only /metrics; the rest is the JSON 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_serves_only_metrics() {
    let app = TestApp::sqlite().await;
    assert!(!app.metrics().await.is_empty());
    for path in ["/healthz", "/api/v1/me", "/app/v1/session", "/"] {
        let response = app
            .client
            .get(format!("{}{path}", app.metrics_base))
            .send()
            .await
            .expect("request");
        Reply::read(response)
            .await
            .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    }
}

/// Every series has a `# HELP` line; the build and the process describe themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_is_described_with_build_and_process_metrics() {
    // With Redis, so that the shared-limit series are there too.
    let redis = crate::redis_harness::redis_url();
    let app = TestApp::sqlite_with(|config| {
        config.redis_url = Some(redis);
        config.redis_prefix = crate::redis_harness::test_prefix();
    })
    .await;
    let owner = app.bootstrap("Metrics", "owner@metrics.test").await;
    let key = app.create_key(&owner, "metrics").await;
    app.me(&key.key).await.ok();
    // A key with credits: the lease series appear too.
    let (metered, _) = app
        .new_key(
            &owner,
            serde_json::json!({ "name": "metered", "credits": { "remaining": 10 } }),
        )
        .await
        .created_key();
    app.me(&metered.key).await.ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = app.metrics().await;
        if text.contains("heffl_shared_limits_up") || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    for series in [
        "heffl_shared_limits_up",
        "heffl_credit_leases_total",
        "heffl_db_query_duration_seconds",
        "heffl_redis_round_trip_seconds",
    ] {
        assert!(text.contains(series), "{series} missing from /metrics");
    }

    let described: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    let series: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| described.contains(base))
                .unwrap_or(name)
        })
        .collect();
    let undescribed: Vec<_> = series.difference(&described).collect();
    assert!(undescribed.is_empty(), "no # HELP for {undescribed:?}");

    let build = text
        .lines()
        .find(|line| line.starts_with("heffl_build_info{"))
        .unwrap_or_else(|| panic!("no heffl_build_info in {text}"));
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(build.contains("git_commit=\""), "{build}");
    for process in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(process)),
            "no {process} in {text}"
        );
    }
}
