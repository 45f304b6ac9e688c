//! Logging. `RUST_LOG` filters (default `info`); `HEFFL_LOG_FORMAT=json` emits one JSON object
//! per line for log shippers. Logs go to stderr so stdout stays clean for CLI output.

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        // PostgreSQL notices such as "relation _sqlx_migrations already exists, skipping" on
        // every start are noise at info; RUST_LOG can still ask for them.
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal; a file or a log shipper gets plain text.
        .with_ansi(std::io::stderr().is_terminal());
    // try_init: a second initialisation (tests) is not an error worth dying for.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        // Request fields are the request line's own (http/pipeline/stack.rs); no span list repeating
        // the current span's fields on every line.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use. Tests start many apps in one
/// process; they share it, which is what a real scrape of one process would see too.
pub fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use std::sync::OnceLock;
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        const LATENCY_BUCKETS: &[f64] = &[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0,
        ];
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        describe_metrics();
        handle
    })
}

/// Every series gets a `# HELP` line (a test checks that none is missing), and the build and
/// the process describe themselves.
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "heffl_http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        "heffl_http_request_duration_seconds",
        Unit::Seconds,
        "Time from the first byte of an HTTP request's head to its answer, by method and route template"
    );
    describe_counter!(
        "heffl_connections_refused_total",
        "Client connections closed at accept, by reason (per_address: over HEFFL_MAX_CONNECTIONS_PER_ADDRESS)"
    );
    describe_counter!(
        "heffl_api_key_auth_total",
        "API-key authentications, by outcome (ok, or the error reason)"
    );
    describe_counter!(
        "heffl_key_cache_total",
        "Key verifications answered from the cache (hit) or the database (miss)"
    );
    describe_gauge!(
        "heffl_key_cache_entries",
        "Key verifications held in the cache"
    );
    describe_gauge!(
        "heffl_key_cache_live",
        "1 while the change feed keeps the cache current, 0 while the cache is bypassed"
    );
    describe_gauge!(
        "heffl_db_pool_connections",
        "Database pool connections, by state (idle, in_use)"
    );
    describe_gauge!(
        "heffl_db_pool_max_connections",
        "The pool's limit (HEFFL_DB_MAX_CONNECTIONS)"
    );
    describe_gauge!(
        "heffl_shared_limits_up",
        "1 while the limits are shared through Redis (HEFFL_REDIS_URL), 0 while each instance enforces them alone"
    );
    describe_gauge!(
        "heffl_shared_limits_instances",
        "Instances sharing the limits through Redis, as their heartbeats say"
    );
    describe_histogram!(
        "heffl_redis_round_trip_seconds",
        Unit::Seconds,
        "Time of each round trip to Redis for shared limits (timeouts included)"
    );
    describe_histogram!(
        "heffl_db_query_duration_seconds",
        Unit::Seconds,
        "Time of database work by operation: key_lookup (a cache miss), usage_flush, credit_lease"
    );
    describe_counter!(
        "heffl_emails_total",
        "Emails by kind (invitation, password_reset) and outcome (sent, failed, queue_full, no_account: a reset for an email without an enabled account, nothing sent)"
    );
    describe_counter!(
        "heffl_email_failures_total",
        "Emails the SMTP server did not take, by kind and reason (connection_failed, timeout, tls_failed, rejected, deferred, invalid_address)"
    );
    describe_counter!(
        "heffl_usage_flush_failures_total",
        "Key-usage flushes that failed (retried at the next interval; usage is kept meanwhile)"
    );
    describe_counter!(
        "heffl_change_feed_connects_total",
        "Times the key cache's change feed (re)connected; more than one means it was lost and the cache was emptied"
    );
    describe_counter!(
        "heffl_credit_leases_total",
        "Blocks of credits this instance leased from keys' pools (one database transaction each)"
    );
    describe_counter!(
        "heffl_credit_report_failures_total",
        "Reports of the credits this instance holds that failed (retried each second)"
    );
    describe_counter!(
        "heffl_webhook_events_total",
        "Events written to the webhook outbox, by type (each becomes a message per endpoint that takes it)"
    );
    describe_counter!(
        "heffl_webhook_attempts_total",
        "Webhook tries by outcome: delivered (2xx), failed (another status or no answer), not_sent (endpoint disabled or address refused)"
    );
    describe_counter!(
        "heffl_webhook_endpoints_disabled_total",
        "Webhook endpoints this instance disabled after 5 days of nothing but failed deliveries"
    );
    describe_gauge!(
        "heffl_build_info",
        "Always 1; the labels say which version and git commit this process runs"
    );
    metrics::gauge!(
        "heffl_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "git_commit" => env!("HEFFL_GIT_COMMIT"),
    )
    .set(1.0);
    process_collector().describe();
}

fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: std::sync::OnceLock<metrics_process::Collector> = std::sync::OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Samples the process's memory, open files and CPU time; called at scrape time.
pub fn sample_process_metrics() {
    process_collector().collect();
}
