//! GitHub's secret scanning (docs/api.md §15): reports signed with a key the test made and
//! listed in a `public_keys` file are answered and acted on; unsigned, badly signed or
//! unknown-key reports are refused with 401 and change nothing; the answer never echoes a
//! token; a rotated keys file is read again; and without the file the endpoint is 404.

use crate::common::{audit_count, key_column, TestApp};
use crate::webhook_receiver::Receiver;
use crate::{on_both_databases, on_both_databases_with};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use heffl_api::config::Config;
use heffl_api::domain::secret_scanning::token_hash;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use reqwest::StatusCode;
use serde_json::json;
use std::path::PathBuf;
use std::sync::OnceLock;

/// GitHub's signing key, as the test plays GitHub; one per test process.
fn github_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::random(&mut rand::rngs::OsRng))
}

fn keys_document(entries: &[(&str, &SigningKey)]) -> String {
    let keys: Vec<_> = entries
        .iter()
        .map(|(identifier, key)| {
            let pem = key
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("pem");
            json!({ "key_identifier": identifier, "key": pem, "is_current": true })
        })
        .collect();
    json!({ "public_keys": keys }).to_string()
}

fn sign(key: &SigningKey, body: &str) -> String {
    let signature: Signature = key.sign(body.as_bytes());
    BASE64.encode(signature.to_der().as_bytes())
}

/// A keys file of this test's own (kept for the test's life).
fn keys_file(document: &str) -> PathBuf {
    let dir = tempfile::tempdir().expect("dir").keep();
    let path = dir.join("github-keys.json");
    std::fs::write(&path, document).expect("write keys");
    path
}

fn with_github_keys(config: &mut Config) {
    config.github_secret_scanning_keys = Some(keys_file(&keys_document(&[("gh-1", github_key())])));
    config.webhook_allow_http = true;
    config.webhook_allow_private = true;
    config.webhook_retry_scale = 0.0001;
}

fn report(tokens: &[&str]) -> String {
    let matches: Vec<_> = tokens
        .iter()
        .map(|token| {
            json!({
                "token": token,
                "type": "heffl_api_key",
                "url": "https://github.com/acme/site/blob/abc123/.env",
                "source": "content",
            })
        })
        .collect();
    serde_json::to_string(&matches).expect("body")
}

async fn a_signed_report_revokes_our_keys_and_labels_every_token(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@example.com").await;
    let receiver = Receiver::start().await;
    app.webhook_to(&owner, &receiver.url, json!(["api_key.leaked"]))
        .await;
    let active = app.create_key(&owner, "Pushed to GitHub").await;
    let revoked_before = app.create_key(&owner, "Already revoked").await;
    app.revoke(&owner, &revoked_before.id).await.ok();
    let spare = app.create_key(&owner, "Not reported").await;
    let stranger = "hk_live_notoneofoursnotoneofoursnotone00";
    let body = report(&[&active.key, &revoked_before.key, stranger, "ghp_unrelated"]);
    let signature = sign(github_key(), &body);

    let reply = app
        .github_report(&body, Some("gh-1"), Some(&signature))
        .await;
    assert!(
        [active.key.as_str(), revoked_before.key.as_str(), stranger]
            .iter()
            .all(|token| !reply.text.contains(token)),
        "the answer echoes a token: {}",
        reply.text
    );
    let labels = reply.ok();
    let expected = json!([
        { "token_hash": token_hash(&active.key), "token_type": "heffl_api_key", "label": "true_positive" },
        { "token_hash": token_hash(&revoked_before.key), "token_type": "heffl_api_key", "label": "true_positive" },
        { "token_hash": token_hash(stranger), "token_type": "heffl_api_key", "label": "false_positive" },
        { "token_hash": token_hash("ghp_unrelated"), "token_type": "heffl_api_key", "label": "false_positive" },
    ]);
    assert_eq!(labels, expected);

    app.me(&active.key)
        .await
        .expect_unauthorized("revoked_api_key");
    assert_eq!(
        key_column(&app, "revoke_reason", &active.id)
            .await
            .as_deref(),
        Some("reported_leaked")
    );
    app.me(&spare.key).await.ok();
    assert_eq!(
        audit_count(&app, "api_key.reported_leaked", &active.id).await,
        1
    );
    // Revoked before: not revoked again, no second event.
    assert_eq!(
        audit_count(&app, "api_key.reported_leaked", &revoked_before.id).await,
        0
    );
    let leaked = receiver.first_of("api_key.leaked").await;
    assert_eq!(leaked.body["data"]["key"]["id"], active.id.as_str());
    assert_eq!(leaked.body["data"]["source"], "github");
    assert_eq!(
        leaked.body["data"]["url"],
        "https://github.com/acme/site/blob/abc123/.env"
    );
    assert!(!leaked.raw.contains(&active.key));
}

async fn unsigned_or_badly_signed_reports_are_refused(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@example.com").await;
    let key = app.create_key(&owner, "Target").await;
    let body = report(&[&key.key]);
    let impostor = SigningKey::random(&mut rand::rngs::OsRng);
    let good = sign(github_key(), &body);
    let attempts = [
        (None, None),
        (Some("gh-1"), None),
        (None, Some(good.as_str())),
        (Some("gh-unknown"), Some(good.as_str())),
        (Some("gh-1"), Some("bm90IGEgc2lnbmF0dXJl")),
    ];
    for (identifier, signature) in attempts {
        let reply = app.github_report(&body, identifier, signature).await;
        reply.expect_unauthorized("invalid_signature");
        assert!(!reply.text.contains(&key.key));
    }
    let forged = sign(&impostor, &body);
    app.github_report(&body, Some("gh-1"), Some(&forged))
        .await
        .expect_unauthorized("invalid_signature");
    // A signature of another body does not carry over.
    let other = report(&["hk_live_something_else"]);
    app.github_report(&body, Some("gh-1"), Some(&sign(github_key(), &other)))
        .await
        .expect_unauthorized("invalid_signature");
    app.me(&key.key).await.ok();
    // Signed but not GitHub's shape: 400, nothing revoked.
    let junk = r#"{"token": 1}"#;
    app.github_report(junk, Some("gh-1"), Some(&sign(github_key(), junk)))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", Some("invalid_json"));
    app.me(&key.key).await.ok();
}

/// GitHub rotates its keys; the operator (or a cron job) rewrites the file, no restart.
async fn a_rewritten_keys_file_is_read_again(app: TestApp) {
    let owner = app.bootstrap("Acme", "owner@example.com").await;
    let path = app
        .config
        .github_secret_scanning_keys
        .clone()
        .expect("configured");
    let next = SigningKey::random(&mut rand::rngs::OsRng);
    let body = report(&["hk_live_nothing_of_ours_here_at_all_000"]);
    app.github_report(&body, Some("gh-2"), Some(&sign(&next, &body)))
        .await
        .expect_unauthorized("invalid_signature");
    std::fs::write(&path, keys_document(&[("gh-2", &next)])).expect("rotate");
    app.github_report(&body, Some("gh-2"), Some(&sign(&next, &body)))
        .await
        .ok();
    app.github_report(&body, Some("gh-1"), Some(&sign(github_key(), &body)))
        .await
        .expect_unauthorized("invalid_signature");
    // A broken rewrite keeps the keys read before.
    std::fs::write(&path, "{ not json").expect("break");
    app.github_report(&body, Some("gh-2"), Some(&sign(&next, &body)))
        .await
        .ok();
    let _ = owner;
}

async fn without_keys_the_endpoint_does_not_exist(app: TestApp) {
    let body = report(&["hk_live_x"]);
    app.github_report(&body, Some("gh-1"), Some(&sign(github_key(), &body)))
        .await
        .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
}

on_both_databases_with!(
    a_signed_report_revokes_our_keys_and_labels_every_token,
    super::with_github_keys
);
on_both_databases_with!(
    unsigned_or_badly_signed_reports_are_refused,
    super::with_github_keys
);
on_both_databases_with!(a_rewritten_keys_file_is_read_again, super::with_github_keys);
on_both_databases!(without_keys_the_endpoint_does_not_exist);
