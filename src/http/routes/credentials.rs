//! Leaked-key revocation, after GitHub's credential-revocation API: anyone who finds a key
//! (a secret scanner, a stranger on a forum) can report it, with no authentication. The answer
//! is always 202, whether or not the keys exist, so the endpoint cannot be used as an oracle.

use crate::api_key;
use crate::error::ApiError;
use crate::http::extract::Json;
use crate::http::AppState;
use crate::store::ClientInfo;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Instant;

pub const MAX_KEYS_PER_REPORT: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakReport {
    keys: Option<Vec<String>>,
}

pub async fn revoke(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(report): Json<LeakReport>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let limit = state.config.leak_reports_per_minute;
    let address = client.ip.clone().unwrap_or_default();
    if limit > 0
        && !state
            .leak_reports
            .check(&address, limit, Instant::now())
            .allowed
    {
        return Err(ApiError::TooManyRequests {
            reason: "leak_reports_throttled",
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
    let revoked = state.store.revoke_leaked_keys(&digests, &client).await?;
    if revoked > 0 {
        tracing::warn!(revoked, "API keys revoked after a leak report");
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "received": keys.len() })),
    ))
}
