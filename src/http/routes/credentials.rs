//! Leaked-key revocation, after GitHub's credential-revocation API: anyone who finds a key
//! (a secret scanner, a stranger on a forum) can report it, with no authentication. The answer
//! is always 202, whether or not the keys exist, so the endpoint cannot be used as an oracle.

use crate::domain::api_key;
use crate::error::{ApiError, Reason};
use crate::http::pipeline::extract::ApiJson;
use crate::http::pipeline::openapi::{ErrorBody, ServerErrors};
use crate::http::state::AppState;
use crate::store::{ClientInfo, Leak, LeakSource};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::time::Instant;

pub const MAX_KEYS_PER_REPORT: usize = 100;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeakReport {
    /// The leaked keys, as found.
    #[schema(value_type = Vec<String>, required = true, min_items = 1, max_items = 100)]
    keys: Option<Vec<String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LeakReceipt {
    /// How many keys the report listed (not how many existed).
    received: usize,
}

/// No authentication. Always 202, whether or not the keys exist; those that do are revoked.
#[utoipa::path(
    post,
    path = "/api/v1/credentials/revoke",
    tag = "api",
    operation_id = "reportLeakedKeys",
    summary = "Report leaked API keys",
    request_body = LeakReport,
    responses(
        (status = 202, description = "Received", body = LeakReceipt),
        (status = 400, description = "Invalid JSON or fields", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "`leak_reports_throttled`", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(report): ApiJson<LeakReport>,
) -> Result<(StatusCode, ApiJson<LeakReceipt>), ApiError> {
    let limit = state.config.leak_reports_per_minute;
    let address = crate::http::pipeline::client::throttle_key(
        client.ip.as_deref().and_then(|ip| ip.parse().ok()),
    );
    if limit > 0
        && !state
            .leak_reports
            .check(&address, limit, Instant::now())
            .await
            .allowed
    {
        return Err(ApiError::TooManyRequests {
            reason: Reason::LeakReportsThrottled,
            message: "Too many reports from this address; wait a minute.".into(),
            retry_after_secs: 60,
        });
    }
    let keys = report.keys.unwrap_or_default();
    if keys.is_empty() || keys.len() > MAX_KEYS_PER_REPORT {
        return Err(ApiError::validation(
            "keys",
            format!("must list 1 to {MAX_KEYS_PER_REPORT} keys"),
        ));
    }
    let mut digests: Vec<[u8; 32]> = keys
        .iter()
        .filter_map(|text| api_key::parse(text.trim().as_bytes(), &state.config.key_env).ok())
        .map(|key| key.digest().0)
        .collect();
    digests.sort_unstable();
    digests.dedup();
    let leaks: Vec<Leak> = digests
        .into_iter()
        .map(|digest| Leak {
            digest,
            source: LeakSource::Report,
            url: None,
        })
        .collect();
    let revoked = state.verifier.revoke_leaked_keys(&leaks, &client).await?;
    if revoked > 0 {
        tracing::warn!(revoked, "API keys revoked after a leak report");
    }
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(LeakReceipt {
            received: keys.len(),
        }),
    ))
}
