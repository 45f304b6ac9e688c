//! Dashboard session tokens: 32 random bytes shown to the client as 64 hex characters, kept in
//! the database only as SHA-256, so a copy of the sessions table opens no session.

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

const TOKEN_BYTES: usize = 32;
const TOKEN_LEN: usize = TOKEN_BYTES * 2;

pub struct SessionToken {
    pub token: String,
    pub digest: [u8; 32],
}

pub fn generate() -> SessionToken {
    let mut bytes = [0u8; TOKEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    let token = to_hex(&bytes);
    let digest = digest(&token);
    SessionToken { token, digest }
}

/// The digest of a well-formed token; `None` for anything that no token looks like, so
/// garbage never reaches the database.
pub fn parse(token: &str) -> Option<[u8; 32]> {
    let well_formed = token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    well_formed.then(|| digest(token))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_to_their_digest() {
        let session = generate();
        assert_eq!(session.token.len(), 64);
        assert_eq!(parse(&session.token), Some(session.digest));
        assert_ne!(generate().token, session.token);
    }

    #[test]
    fn rejects_malformed_tokens() {
        assert_eq!(parse(""), None);
        assert_eq!(parse(&"A".repeat(64)), None);
        assert_eq!(parse(&"a".repeat(63)), None);
        assert_eq!(parse("hk_live_abc"), None);
    }
}
