//! GitHub's secret-scanning partner protocol without I/O (docs/api.md §15): GitHub's public
//! keys document, the check of the signature on a report, and the answer's token hash.
//! Signatures are ECDSA P-256 over SHA-256 of the raw body, base64 of the DER form.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Most entries in one report, and most bytes of its body.
pub const MAX_MATCHES: usize = 1000;

#[derive(Deserialize)]
struct KeysDocument {
    public_keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
struct KeyEntry {
    key_identifier: String,
    key: String,
}

/// The keys GitHub signs reports with, by identifier.
#[derive(Debug, Clone, Default)]
pub struct PublicKeys(Vec<(String, VerifyingKey)>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureProblem {
    Missing,
    UnknownKey,
    Malformed,
    Invalid,
}

impl SignatureProblem {
    pub fn message(self) -> &'static str {
        match self {
            SignatureProblem::Missing => {
                "Github-Public-Key-Identifier and Github-Public-Key-Signature are required."
            }
            SignatureProblem::UnknownKey => {
                "Github-Public-Key-Identifier names no key this server knows."
            }
            SignatureProblem::Malformed => {
                "Github-Public-Key-Signature is not a base64 DER ECDSA signature."
            }
            SignatureProblem::Invalid => "Github-Public-Key-Signature does not match the body.",
        }
    }
}

impl PublicKeys {
    /// GitHub's `public_keys` document (`{"public_keys": [{"key_identifier", "key", ...}]}`);
    /// the error names the first entry that cannot be used.
    pub fn parse(document: &str) -> Result<PublicKeys, String> {
        let document: KeysDocument = serde_json::from_str(document)
            .map_err(|err| format!("not a public_keys document: {err}"))?;
        let mut keys = Vec::with_capacity(document.public_keys.len());
        for entry in document.public_keys {
            let key = VerifyingKey::from_public_key_pem(entry.key.trim()).map_err(|_| {
                format!("key {} is not a PEM P-256 public key", entry.key_identifier)
            })?;
            keys.push((entry.key_identifier, key));
        }
        Ok(PublicKeys(keys))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `signature` (base64 DER) is the key `identifier`'s signature of `body`.
    pub fn verify(
        &self,
        identifier: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), SignatureProblem> {
        let (Some(identifier), Some(signature)) = (identifier, signature) else {
            return Err(SignatureProblem::Missing);
        };
        let key = self
            .0
            .iter()
            .find(|(id, _)| id == identifier.trim())
            .map(|(_, key)| key)
            .ok_or(SignatureProblem::UnknownKey)?;
        let der = BASE64
            .decode(signature.trim())
            .map_err(|_| SignatureProblem::Malformed)?;
        let signature = Signature::from_der(&der).map_err(|_| SignatureProblem::Malformed)?;
        key.verify(body, &signature)
            .map_err(|_| SignatureProblem::Invalid)
    }
}

/// The answer's `token_hash`: lowercase hex SHA-256 of the token as reported.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::{EncodePublicKey, LineEnding};

    fn document(identifier: &str, key: &SigningKey) -> String {
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem");
        serde_json::json!({ "public_keys": [{ "key_identifier": identifier, "key": pem, "is_current": true }] })
            .to_string()
    }

    fn sign(key: &SigningKey, body: &[u8]) -> String {
        let signature: Signature = key.sign(body);
        BASE64.encode(signature.to_der().as_bytes())
    }

    #[test]
    fn a_report_signed_by_a_listed_key_is_accepted_and_nothing_else() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let other = SigningKey::random(&mut rand::rngs::OsRng);
        let keys = PublicKeys::parse(&document("abc", &key)).expect("document");
        let body = br#"[{"token":"x","type":"heffl_api_key","url":"u","source":"content"}]"#;
        let good = sign(&key, body);
        assert_eq!(keys.verify(Some("abc"), Some(&good), body), Ok(()));
        assert_eq!(
            keys.verify(Some("abc"), Some(&good), b"[]"),
            Err(SignatureProblem::Invalid)
        );
        assert_eq!(
            keys.verify(Some("abc"), Some(&sign(&other, body)), body),
            Err(SignatureProblem::Invalid)
        );
        assert_eq!(
            keys.verify(Some("zzz"), Some(&good), body),
            Err(SignatureProblem::UnknownKey)
        );
        assert_eq!(
            keys.verify(Some("abc"), Some("not base64!"), body),
            Err(SignatureProblem::Malformed)
        );
        assert_eq!(
            keys.verify(None, Some(&good), body),
            Err(SignatureProblem::Missing)
        );
    }

    #[test]
    fn documents_that_cannot_be_used_are_refused() {
        assert!(PublicKeys::parse("{}").is_err());
        let bad = r#"{"public_keys":[{"key_identifier":"k","key":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----","is_current":true}]}"#;
        assert!(PublicKeys::parse(bad).is_err_and(|e| e.contains("key k")));
    }

    #[test]
    fn token_hashes_are_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
