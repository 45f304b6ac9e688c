//! Request ids: the `x-request-id` a client sent (when it is a sane token), or a fresh id shaped
//! as a UUID v4. Fresh ids draw no randomness per request (a `getrandom` system call, and later
//! the thread's CSPRNG, were measurable: docs/dev/performance.md): they are a per-process counter
//! passed through a keyed bijection, so they are unique within the process by construction,
//! across processes by random bits drawn once, and do not reveal how many requests the
//! server handled between two of a client's. While a request is handled, its id is reachable
//! from `ApiError::into_response` (every error body carries it) through `request_scope`.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest accepted client-sent id; longer ones are replaced by a generated id.
const MAX_LEN: usize = 64;

/// A request id, stored inline: it is copied into the task-local, the log line and the body.
#[derive(Clone, Copy)]
pub struct RequestId {
    bytes: [u8; MAX_LEN],
    len: u8,
}

impl RequestId {
    /// The client's id when it is 1–64 characters of `[A-Za-z0-9._:-]` (safe in JSON and in
    /// logs as it is), else a new one.
    pub fn from_headers(headers: &HeaderMap) -> RequestId {
        headers
            .get(&X_REQUEST_ID)
            .and_then(|value| RequestId::accept(value.as_bytes()))
            .unwrap_or_else(RequestId::generate)
    }

    fn accept(text: &[u8]) -> Option<RequestId> {
        let sane = !text.is_empty()
            && text.len() <= MAX_LEN
            && text
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        sane.then(|| {
            let mut bytes = [0; MAX_LEN];
            bytes[..text.len()].copy_from_slice(text);
            RequestId {
                bytes,
                len: text.len() as u8,
            }
        })
    }

    /// A new id in the form of a UUID v4, e.g. `0d6c1c2e-5f0a-4b7e-9a43-3f1e2d4c5b6a`.
    pub fn generate() -> RequestId {
        static KEYS: OnceLock<[u64; 2]> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let [prefix, key] = *KEYS.get_or_init(rand::random);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        // The scrambled count fills bytes 7 and 9–15, which the version and variant bits (bytes 6
        // and 8) leave whole, so it survives intact; the prefix fills the rest.
        let prefix = prefix.to_be_bytes();
        let count = scramble(count ^ key).to_be_bytes();
        let mut uuid = [0u8; 16];
        uuid[..7].copy_from_slice(&prefix[..7]);
        uuid[7] = count[0];
        uuid[8] = prefix[7];
        uuid[9..].copy_from_slice(&count[1..]);
        uuid[6] = (uuid[6] & 0x0f) | 0x40;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        // Where each byte's two digits go in `8-4-4-4-12`: fixed, so the loop has no branch.
        const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        let mut bytes = [b'-'; MAX_LEN];
        for (byte, at) in uuid.iter().zip(AT) {
            bytes[at] = HEX[usize::from(byte >> 4)];
            bytes[at + 1] = HEX[usize::from(byte & 0x0f)];
        }
        RequestId { bytes, len: 36 }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `accept`, hex in `generate`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.bytes[..usize::from(self.len)])
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// splitmix64's finalizer: a bijection on `u64` (each step is invertible), so distinct counts
/// stay distinct while consecutive ones look unrelated.
fn scramble(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_uuid_v4() {
        let id = RequestId::generate();
        let text = id.as_str();
        assert_eq!(text.len(), 36);
        assert_eq!(text.as_bytes()[14], b'4');
        assert!(matches!(text.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        assert_eq!(text.matches('-').count(), 4);
        assert_ne!(text, RequestId::generate().as_str());
    }

    #[test]
    fn generated_ids_do_not_repeat() {
        let ids: std::collections::HashSet<String> = (0..10_000)
            .map(|_| RequestId::generate().as_str().to_owned())
            .collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn client_ids_are_kept_only_when_sane() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123_x.y:z"));
        assert_eq!(RequestId::from_headers(&headers).as_str(), "abc-123_x.y:z");
        for bad in ["", "has space", "quote\"", &"x".repeat(65)] {
            headers.insert(&X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = RequestId::from_headers(&headers);
            assert_eq!(id.as_str().len(), 36, "{bad:?} should be replaced");
        }
    }
}
