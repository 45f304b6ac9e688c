//! GitHub's secret-scanning partner endpoint (docs/api.md §15): GitHub finds one of our keys in
//! a public repository, posts it here signed with its key, and we revoke it as leaked. The
//! answer labels each token by the SHA-256 of it, never echoing the token.

use crate::domain::api_key;
use crate::domain::secret_scanning::{token_hash, MAX_MATCHES};
use crate::error::{ApiError, Realm, Reason};
use crate::http::pipeline::extract::ApiJson;
use crate::http::pipeline::openapi::{ErrorBody, ServerErrors};
use crate::http::state::AppState;
use crate::store::{ClientInfo, Leak, LeakSource};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

/// One secret GitHub found.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenMatch {
    token: String,
    /// The token type we registered with GitHub.
    #[serde(rename = "type")]
    kind: String,
    /// Where it was found.
    url: Option<String>,
    /// e.g. `content`, `commit`, `issue_comment`.
    #[allow(dead_code, reason = "part of GitHub's body; recorded through `url`")]
    source: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenLabel {
    /// Lowercase hex SHA-256 of the token.
    token_hash: String,
    token_type: String,
    /// `true_positive`: a key of this server (now revoked, if it was active);
    /// `false_positive`: not one of ours.
    label: &'static str,
}

/// Signed by GitHub (`Github-Public-Key-Identifier`, `Github-Public-Key-Signature`: ECDSA
/// P-256 over the raw body). Keys found are revoked as leaked at once.
#[utoipa::path(
    post,
    path = "/api/v1/secret-scanning/github",
    tag = "api",
    operation_id = "githubSecretScanning",
    summary = "GitHub's secret-scanning reports (signed by GitHub; needs no key)",
    request_body(content = Vec<TokenMatch>, description = "GitHub's report: at most 1000 matches"),
    params(
        ("Github-Public-Key-Identifier" = String, Header, description = "Which of GitHub's keys signed the body"),
        ("Github-Public-Key-Signature" = String, Header, description = "Base64 DER ECDSA signature of the raw body"),
    ),
    responses(
        (status = 200, description = "Each token's label", body = Vec<TokenLabel>),
        (status = 400, description = "Not GitHub's body", body = ErrorBody),
        (status = 401, description = "`invalid_signature`: missing or bad signature", body = ErrorBody),
        (status = 404, description = "Secret scanning is not configured on this server", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn github(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    body: Bytes,
) -> Result<ApiJson<Vec<TokenLabel>>, ApiError> {
    let Some(keys) = &state.github_keys else {
        return Err(ApiError::not_found(
            "GitHub secret scanning is not configured on this server.",
        ));
    };
    let keys = keys.current().await.ok_or_else(|| {
        ApiError::internal("HEFFL_GITHUB_SECRET_SCANNING_KEYS has never been readable")
    })?;
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    keys.verify(
        header("github-public-key-identifier"),
        header("github-public-key-signature"),
        &body,
    )
    .map_err(|problem| ApiError::Unauthorized {
        realm: Realm::GitHubSignature,
        reason: Reason::InvalidSignature,
        message: problem.message().into(),
    })?;
    let matches: Vec<TokenMatch> = serde_json::from_slice(&body).map_err(|_| {
        ApiError::bad_request(
            Reason::InvalidJson,
            "The body must be GitHub's list of {token, type, url, source}.",
        )
    })?;
    if matches.len() > MAX_MATCHES {
        return Err(ApiError::validation(
            "body",
            format!("must list at most {MAX_MATCHES} matches"),
        ));
    }
    let digests: Vec<Option<[u8; 32]>> = matches
        .iter()
        .map(|m| {
            api_key::parse(m.token.trim().as_bytes(), &state.config.key_env)
                .ok()
                .map(|key| key.digest().0)
        })
        .collect();
    let mut leaks: Vec<Leak> = Vec::new();
    for (found, digest) in matches.iter().zip(&digests) {
        if let Some(digest) = digest.filter(|d| !leaks.iter().any(|l| l.digest == *d)) {
            leaks.push(Leak {
                digest,
                source: LeakSource::GitHub,
                url: found.url.clone(),
            });
        }
    }
    let known_digests: Vec<[u8; 32]> = leaks.iter().map(|leak| leak.digest).collect();
    let known = state.store.api_keys().known_digests(&known_digests).await?;
    let revoked = state.verifier.revoke_leaked_keys(&leaks, &client).await?;
    if revoked > 0 {
        tracing::warn!(
            revoked,
            "API keys revoked after a GitHub secret-scanning report"
        );
    }
    let labels = matches
        .iter()
        .zip(&digests)
        .map(|(found, digest)| TokenLabel {
            token_hash: token_hash(&found.token),
            token_type: found.kind.clone(),
            label: match digest {
                Some(digest) if known.iter().any(|k| k.as_slice() == digest) => "true_positive",
                _ => "false_positive",
            },
        })
        .collect();
    Ok(ApiJson(labels))
}
