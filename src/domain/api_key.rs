//! API key format, generation, hashing and request-time parsing.
//!
//! A key looks like `hk_live_<30 random base62><6 base62 checksum>`:
//!
//! * `hk_` marks it as ours, so secret scanners and humans recognise it.
//! * `<env>` (`live` by default, `[a-z0-9]{1,8}`) stops a key issued by one
//!   deployment from being sent to another and failing mysteriously.
//! * 30 base62 characters from the OS CSPRNG give ~178 bits of entropy.
//! * The checksum (CRC-32 of everything before it, base62, zero-padded to 6)
//!   lets us reject typos and truncations without a database lookup, and lets
//!   scanners discard look-alikes.
//!
//! Only the SHA-256 of the whole key is stored ([`KeyDigest`]); a fast hash is
//! enough because the key carries far more entropy than any password.
//!
//! Secret scanners should use [`KEY_REGEX`] with word boundaries on both
//! sides:
//!
//! ```text
//! \bhk_[a-z0-9]{1,8}_[0-9A-Za-z]{36}\b
//! ```

// `parse` sees untrusted bytes on every request, so a panic there is a remote
// crash; make clippy prove there is no path to one.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable
)]

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::domain::base62;

/// Pattern matching a key, for secret scanners (GitHub push protection,
/// gitleaks, trufflehog, …).
///
/// Wrap it in word boundaries (`\b…\b`, or the scanner's equivalent) so that
/// it neither starts inside a longer identifier nor stops short of a longer
/// base62 run; every match still has to pass the checksum (see [`parse`]) to
/// count as a real key.
pub const KEY_REGEX: &str = "hk_[a-z0-9]{1,8}_[0-9A-Za-z]{36}";

/// Number of random base62 characters in a key.
pub const RANDOM_LEN: usize = 30;
/// Number of base62 checksum characters at the end of a key.
pub const CHECKSUM_LEN: usize = 6;

const PREFIX: &str = "hk_";
const BODY_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;
const MAX_ENV_LEN: usize = 8;
const DEFAULT_ENV: &str = "live";
const ENV_RULE: &str = "must be 1-8 characters of a-z and 0-9";
/// Marks the `what` of [`Malformed::Whitespace`] when the value starts with
/// `Bearer `, so the message can say exactly what to remove.
const AFTER_BEARER: &str = "a space after 'Bearer'";

/// A validated environment tag, `[a-z0-9]{1,8}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEnv(String);

impl KeyEnv {
    /// Validates `tag` as an environment tag.
    pub fn new(tag: &str) -> Result<KeyEnv, InvalidKeyEnv> {
        if is_env_tag(tag.as_bytes()) {
            Ok(KeyEnv(tag.to_owned()))
        } else {
            Err(InvalidKeyEnv)
        }
    }

    /// The tag, e.g. `live`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyEnv {
    fn default() -> Self {
        KeyEnv(DEFAULT_ENV.to_owned())
    }
}

impl FromStr for KeyEnv {
    type Err = InvalidKeyEnv;

    fn from_str(tag: &str) -> Result<Self, Self::Err> {
        KeyEnv::new(tag)
    }
}

impl fmt::Display for KeyEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An environment tag that is not `[a-z0-9]{1,8}`.
///
/// The message omits the offending value because callers such as clap
/// already quote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidKeyEnv;

impl fmt::Display for InvalidKeyEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ENV_RULE)
    }
}

impl std::error::Error for InvalidKeyEnv {}

fn is_env_tag(tag: &[u8]) -> bool {
    (1..=MAX_ENV_LEN).contains(&tag.len())
        && tag
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A complete, well-formed secret key.
///
/// `Debug` and `Display` show only [`ApiKey::hint`] so that a key logged by
/// accident is not leaked; [`ApiKey::expose_secret`] is the one way to read
/// it. Deliberately not `PartialEq`: compare [`KeyDigest`]s instead.
#[derive(Clone)]
pub struct ApiKey {
    /// Always ASCII and of the documented shape, since only `generate` and
    /// `parse` construct it.
    secret: String,
    /// Length of the `hk_<env>_` prefix.
    prefix_len: usize,
}

impl ApiKey {
    /// Issues a fresh key for `env`.
    ///
    /// # Panics
    ///
    /// Panics if the operating system's random number generator fails.
    pub fn generate(env: &KeyEnv) -> ApiKey {
        ApiKey::assemble(env.as_str(), &base62::random_string(RANDOM_LEN))
    }

    /// Builds a key from its random part; split out so tests can use a fixed
    /// body.
    fn assemble(env: &str, random: &str) -> ApiKey {
        let prefix_len = PREFIX.len() + env.len() + 1;
        let mut secret = String::with_capacity(prefix_len + BODY_LEN);
        secret.push_str(PREFIX);
        secret.push_str(env);
        secret.push('_');
        secret.push_str(random);
        let checksum = crc32fast::hash(secret.as_bytes());
        secret.push_str(&base62::encode_u32_padded(checksum, CHECKSUM_LEN));
        ApiKey { secret, prefix_len }
    }

    /// The full key. Show it to its owner once, at creation; never log it.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    /// What to store and look keys up by.
    pub fn digest(&self) -> KeyDigest {
        KeyDigest::of(&self.secret)
    }

    /// A non-secret reminder of which key this is: the prefix and the last 4
    /// characters, e.g. `hk_live_…Ab12`.
    ///
    /// The last 4 characters are checksum digits, so the hint reveals none
    /// of the random part.
    pub fn hint(&self) -> String {
        let prefix = self.secret.get(..self.prefix_len).unwrap_or_default();
        let tail_start = self.secret.len().saturating_sub(4);
        let tail = self.secret.get(tail_start..).unwrap_or_default();
        format!("{prefix}…{tail}")
    }

    /// The environment tag the key was issued for, e.g. `live`.
    pub fn env(&self) -> &str {
        let env_end = self.prefix_len.saturating_sub(1);
        self.secret.get(PREFIX.len()..env_end).unwrap_or_default()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.hint())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hint())
    }
}

/// SHA-256 of the full key string: what the database stores.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    /// Hashes a full key string.
    pub fn of(key: &str) -> KeyDigest {
        KeyDigest::of_bytes(key.as_bytes())
    }

    fn of_bytes(key: &[u8]) -> KeyDigest {
        KeyDigest(Sha256::digest(key).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Why a presented key was refused before any database lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRejection {
    Malformed(Malformed),
    /// A genuine key (valid checksum) issued for another environment.
    WrongEnvironment {
        found: String,
    },
}

/// How a presented value fails to be a key. Positions are 1-based byte
/// offsets into the value; they equal character positions because every byte
/// before a reported position is printable ASCII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    Empty,
    /// `what` describes the character, e.g. "a space", "a tab",
    /// "a line break", "a non-breaking space". For a value starting with
    /// `Bearer ` it is "a space after 'Bearer'" at position 7.
    Whitespace {
        position: usize,
        what: &'static str,
    },
    /// A control character or a non-ASCII byte that is not whitespace.
    ForbiddenByte {
        position: usize,
    },
    /// One of `" ' ` < > ( ) [ ] { }`, usually from a pasted quoted or
    /// bracketed key.
    QuotesOrBrackets {
        position: usize,
    },
    /// Does not start with `hk_`.
    WrongPrefix,
    /// `hk_` is not followed by `[a-z0-9]{1,8}_`.
    MissingEnvironment,
    /// The part after `hk_<env>_` is not 36 characters long.
    WrongLength {
        expected: usize,
        actual: usize,
    },
    /// A character after `hk_<env>_` is not base62.
    InvalidCharacter {
        position: usize,
    },
    BadChecksum,
}

impl From<Malformed> for KeyRejection {
    fn from(malformed: Malformed) -> Self {
        KeyRejection::Malformed(malformed)
    }
}

impl KeyRejection {
    /// A sentence for the client saying what is wrong and how to fix it.
    ///
    /// Never contains any part of the presented value except an environment
    /// tag, so it is safe to return and to log.
    pub fn message(&self, expected: &KeyEnv) -> String {
        let malformed = match self {
            KeyRejection::WrongEnvironment { found } => {
                return format!(
                    "This key is for the '{found}' environment, but this server accepts \
                     '{expected}' keys."
                );
            }
            KeyRejection::Malformed(malformed) => malformed,
        };
        match malformed {
            Malformed::Empty => format!(
                "The API key is empty; send the whole key, which starts with 'hk_{expected}_'."
            ),
            Malformed::Whitespace { what, .. } if *what == AFTER_BEARER => {
                "The API key starts with 'Bearer '; send only the key itself, without 'Bearer ' \
                 in front of it."
                    .to_owned()
            }
            Malformed::Whitespace {
                position,
                what: "a line break",
            } => format!(
                "The API key contains a line break at position {position}; send the key without \
                 it (a trailing newline often comes from reading the key from a file or from \
                 `echo`: trim the value or use `echo -n`)."
            ),
            Malformed::Whitespace { position, what } => format!(
                "The API key contains {what} at position {position}; copy the key again without \
                 spaces or other whitespace."
            ),
            Malformed::ForbiddenByte { position } => format!(
                "The API key contains a character that cannot be part of a key at position \
                 {position} (a control character, or a non-ASCII one such as a typographic \
                 quote or dash); keys use only letters, digits and '_', so copy the key again \
                 as plain text."
            ),
            Malformed::QuotesOrBrackets { position } => format!(
                "The API key contains a quote or bracket at position {position}; send the key \
                 without quotes or brackets around it."
            ),
            Malformed::WrongPrefix => "The API key must start with 'hk_' (lowercase); send the \
                                       key exactly as issued, with nothing such as 'Bearer ' \
                                       or a header name in front of it."
                .to_owned(),
            Malformed::MissingEnvironment => format!(
                "The API key has no valid environment tag after 'hk_': keys look like \
                 'hk_{expected}_…', with a tag of 1-8 lowercase letters or digits followed by \
                 '_'; copy the whole key again."
            ),
            Malformed::WrongLength {
                expected: want,
                actual,
            } => {
                let cause = if actual < want {
                    "it was probably cut off"
                } else {
                    "something was probably added to it"
                };
                format!(
                    "The API key should have {want} characters after its 'hk_<environment>_' \
                     prefix but has {actual}; {cause}, so copy the whole key again."
                )
            }
            Malformed::InvalidCharacter { position } => format!(
                "The API key contains a character that is not a letter or digit at position \
                 {position}; after the 'hk_<environment>_' prefix keys use only A-Z, a-z and \
                 0-9, so copy the key again."
            ),
            Malformed::BadChecksum => "The API key's checksum does not match: it was probably \
                                       mistyped or truncated; copy it again from where you \
                                       saved it."
                .to_owned(),
        }
    }
}

/// Parses a raw header value into a key for the `expected` environment.
///
/// Checks run from the most to the least obvious mistake, so the client is
/// told about the problem it can most easily see: emptiness, whitespace and
/// forbidden bytes (first offender anywhere), quotes or brackets, the `hk_`
/// prefix, the environment tag, the body's length, its alphabet, the
/// environment, and finally the checksum. A key for another environment is
/// reported as such only if its checksum holds, so garbage that merely looks
/// like a key is not described as a real one.
///
/// Allocates only for the returned key (and a rejected key's environment
/// tag); never panics.
pub fn parse(raw: &[u8], expected: &KeyEnv) -> Result<ApiKey, KeyRejection> {
    if is_well_formed(raw, expected) {
        return Ok(ApiKey {
            // Lossless: a well-formed key is ASCII.
            secret: String::from_utf8_lossy(raw).into_owned(),
            prefix_len: raw.len() - BODY_LEN,
        });
    }
    parse_explained(raw, expected)
}

/// What verification needs from a header value: the key's digest, or why it is not a key. A
/// well-formed key is hashed as it came, without the copy an `ApiKey` holds.
pub fn parse_digest(raw: &[u8], expected: &KeyEnv) -> Result<KeyDigest, KeyRejection> {
    if is_well_formed(raw, expected) {
        return Ok(KeyDigest::of_bytes(raw));
    }
    parse_explained(raw, expected).map(|key| key.digest())
}

/// The common case in one pass: exactly `hk_<expected>_` and a base62 body with a valid
/// checksum. Whatever this accepts, `parse_explained` accepts too, as the same key (a property
/// test holds the two together); whatever it refuses goes there to learn why.
fn is_well_formed(raw: &[u8], expected: &KeyEnv) -> bool {
    let body = raw
        .strip_prefix(PREFIX.as_bytes())
        .and_then(|rest| rest.strip_prefix(expected.as_str().as_bytes()))
        .and_then(|rest| rest.strip_prefix(b"_"));
    let Some(body) = body.and_then(|body| <&[u8; BODY_LEN]>::try_from(body).ok()) else {
        return false;
    };
    // Every byte, without stopping at the first bad one: a fixed-length loop without branches
    // is a few vector compares, where `all` tested and branched byte by byte.
    if !body.iter().fold(true, |all, &b| all & base62::is_base62(b)) {
        return false;
    }
    raw.split_last_chunk::<CHECKSUM_LEN>()
        .is_some_and(|(covered, encoded)| {
            decode_checksum(encoded) == Some(u64::from(crc32fast::hash(covered)))
        })
}

/// Every check, from the most to the least obvious mistake (see `parse`).
fn parse_explained(raw: &[u8], expected: &KeyEnv) -> Result<ApiKey, KeyRejection> {
    if raw.is_empty() {
        return Err(Malformed::Empty.into());
    }
    check_bytes(raw)?;
    if let Some(index) = raw.iter().position(|&b| is_quote_or_bracket(b)) {
        return Err(Malformed::QuotesOrBrackets {
            position: index + 1,
        }
        .into());
    }
    let after_prefix = raw
        .strip_prefix(PREFIX.as_bytes())
        .ok_or(Malformed::WrongPrefix)?;
    // Looking only 9 bytes ahead bounds the work for long garbage and
    // rejects tags longer than 8 characters.
    let (env, body) = after_prefix
        .iter()
        .take(MAX_ENV_LEN + 1)
        .position(|&b| b == b'_')
        .and_then(|env_len| {
            let env = after_prefix.get(..env_len)?;
            let body = after_prefix.get(env_len + 1..)?;
            Some((env, body))
        })
        .filter(|(env, _)| is_env_tag(env))
        .ok_or(Malformed::MissingEnvironment)?;
    if body.len() != BODY_LEN {
        return Err(Malformed::WrongLength {
            expected: BODY_LEN,
            actual: body.len(),
        }
        .into());
    }
    let prefix_len = PREFIX.len() + env.len() + 1;
    if let Some(index) = body.iter().position(|&b| !base62::is_base62(b)) {
        return Err(Malformed::InvalidCharacter {
            position: prefix_len + index + 1,
        }
        .into());
    }
    let checksum_ok = match raw.split_last_chunk::<CHECKSUM_LEN>() {
        Some((covered, encoded)) => {
            decode_checksum(encoded) == Some(u64::from(crc32fast::hash(covered)))
        }
        None => false,
    };
    if !checksum_ok {
        return Err(Malformed::BadChecksum.into());
    }
    if env != expected.as_str().as_bytes() {
        return Err(KeyRejection::WrongEnvironment {
            found: String::from_utf8_lossy(env).into_owned(),
        });
    }
    Ok(ApiKey {
        // Lossless: every byte was checked to be printable ASCII above.
        secret: String::from_utf8_lossy(raw).into_owned(),
        prefix_len,
    })
}

/// Reports the first whitespace, control or non-ASCII byte, if any.
fn check_bytes(raw: &[u8]) -> Result<(), Malformed> {
    let Some(index) = raw.iter().position(|&b| !b.is_ascii_graphic()) else {
        return Ok(());
    };
    let position = index + 1;
    let rest = raw.get(index..).unwrap_or_default();
    let what = match classify_whitespace(rest) {
        Some(what) => what,
        None => return Err(Malformed::ForbiddenByte { position }),
    };
    let after_bearer = what == "a space"
        && raw
            .get(..index)
            .is_some_and(|before| before.eq_ignore_ascii_case(b"bearer"));
    Err(Malformed::Whitespace {
        position,
        what: if after_bearer { AFTER_BEARER } else { what },
    })
}

/// Names the whitespace character that `rest` starts with, if it is one a
/// user could plausibly have pasted along with a key.
///
/// Invisible Unicode characters are included because a zero-width space from
/// a chat client is the hardest paste error to spot by eye.
fn classify_whitespace(rest: &[u8]) -> Option<&'static str> {
    Some(match rest {
        [b' ', ..] => "a space",
        [b'\t', ..] => "a tab",
        [b'\r' | b'\n', ..] => "a line break",
        [0x0B, ..] => "a vertical tab",
        [0x0C, ..] => "a form feed",
        // U+00A0, U+202F
        [0xC2, 0xA0, ..] | [0xE2, 0x80, 0xAF, ..] => "a non-breaking space",
        // U+0085, U+2028, U+2029
        [0xC2, 0x85, ..] | [0xE2, 0x80, 0xA8 | 0xA9, ..] => "a line break",
        // U+1680, U+2000..=U+200A, U+205F, U+3000
        [0xE1, 0x9A, 0x80, ..]
        | [0xE2, 0x80, 0x80..=0x8A, ..]
        | [0xE2, 0x81, 0x9F, ..]
        | [0xE3, 0x80, 0x80, ..] => "a Unicode space",
        // U+200B..=U+200D, U+2060, U+FEFF
        [0xE2, 0x80, 0x8B..=0x8D, ..] | [0xE2, 0x81, 0xA0, ..] | [0xEF, 0xBB, 0xBF, ..] => {
            "an invisible zero-width character"
        }
        _ => return None,
    })
}

fn is_quote_or_bracket(byte: u8) -> bool {
    matches!(
        byte,
        b'"' | b'\'' | b'`' | b'<' | b'>' | b'(' | b')' | b'[' | b']' | b'{' | b'}'
    )
}

/// Decodes the checksum digits rather than encoding the CRC, to avoid an
/// allocation per request. Six base62 digits can exceed `u32::MAX`, hence
/// `u64`; such a value simply never matches.
fn decode_checksum(encoded: &[u8; CHECKSUM_LEN]) -> Option<u64> {
    encoded.iter().try_fold(0u64, |acc, &byte| {
        Some(acc * 62 + u64::from(base62::decode_digit(byte)?))
    })
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ZEROS: &str = "000000000000000000000000000000";

    fn live() -> KeyEnv {
        KeyEnv::default()
    }

    fn env(tag: &str) -> KeyEnv {
        KeyEnv::new(tag).unwrap()
    }

    fn malformed(raw: &[u8]) -> Malformed {
        match parse(raw, &live()) {
            Err(KeyRejection::Malformed(m)) => m,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    /// A valid key whose body is easy to reason about.
    fn fixed_key() -> String {
        ApiKey::assemble("live", ZEROS).expose_secret().to_owned()
    }

    /// Minimal matcher for `KEY_REGEX` anchored at both ends, so the test
    /// does not need the regex crate.
    fn matches_key_shape(s: &str) -> bool {
        let Some(rest) = s.strip_prefix("hk_") else {
            return false;
        };
        let Some((env, body)) = rest.split_once('_') else {
            return false;
        };
        is_env_tag(env.as_bytes())
            && body.len() == 36
            && body.bytes().all(|b| b.is_ascii_alphanumeric())
    }

    #[test]
    fn known_vector() {
        let key = fixed_key();
        let crc = crc32fast::hash(b"hk_live_000000000000000000000000000000");
        assert_eq!(crc, 0x24FE_1DFB);
        let checksum = base62::encode_u32_padded(crc, 6);
        assert_eq!(checksum, "0g079H");
        assert_eq!(&key[key.len() - 6..], checksum);
        assert_eq!(key, "hk_live_0000000000000000000000000000000g079H");
        assert!(parse(key.as_bytes(), &live()).is_ok());
    }

    #[test]
    fn known_vector_other_env() {
        let key = ApiKey::assemble("test", "abcdefghijABCDEFGHIJ0123456789");
        let crc = crc32fast::hash(b"hk_test_abcdefghijABCDEFGHIJ0123456789");
        assert_eq!(
            key.expose_secret(),
            format!(
                "hk_test_abcdefghijABCDEFGHIJ0123456789{}",
                base62::encode_u32_padded(crc, 6)
            )
        );
        assert_eq!(
            key.expose_secret(),
            "hk_test_abcdefghijABCDEFGHIJ01234567893lUUQ9"
        );
    }

    #[test]
    fn generated_key_shape() {
        let key = ApiKey::generate(&live());
        let secret = key.expose_secret();
        assert_eq!(secret.len(), 44);
        assert!(secret.starts_with("hk_live_"));
        assert!(matches_key_shape(secret), "{secret}");
        assert_eq!(key.env(), "live");
        assert_eq!(KEY_REGEX, "hk_[a-z0-9]{1,8}_[0-9A-Za-z]{36}");
    }

    #[test]
    fn generated_keys_differ() {
        let a = ApiKey::generate(&live());
        let b = ApiKey::generate(&live());
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn hint_format() {
        let key = ApiKey::assemble("live", ZEROS);
        assert_eq!(key.hint(), "hk_live_…079H");
        let generated = ApiKey::generate(&env("test"));
        let hint = generated.hint();
        assert!(hint.starts_with("hk_test_…"));
        assert!(hint.ends_with(&generated.expose_secret()[40..]));
        assert_eq!(hint.chars().count(), "hk_test_".len() + 1 + 4);
    }

    #[test]
    fn debug_and_display_hide_secret() {
        let key = ApiKey::generate(&live());
        let secret = key.expose_secret();
        let random = &secret[8..38];
        let debug = format!("{key:?}");
        let display = format!("{key}");
        assert_eq!(debug, format!("ApiKey({})", key.hint()));
        assert_eq!(display, key.hint());
        for shown in [&debug, &display, &format!("{:?}", Some(&key))] {
            assert!(!shown.contains(secret));
            assert!(!shown.contains(random));
            assert!(!shown.contains(&random[..8]));
        }
    }

    #[test]
    fn digest_is_sha256_of_whole_key() {
        let key = ApiKey::assemble("live", ZEROS);
        assert_eq!(key.digest(), KeyDigest::of(key.expose_secret()));
        // sha256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            KeyDigest::of("abc").as_bytes()[..4],
            [0xba, 0x78, 0x16, 0xbf]
        );
    }

    #[test]
    fn parse_accepts_valid_key() {
        let key = parse(fixed_key().as_bytes(), &live()).unwrap();
        assert_eq!(key.expose_secret(), fixed_key());
        assert_eq!(key.env(), "live");
        assert_eq!(key.hint(), "hk_live_…079H");
    }

    #[test]
    fn empty() {
        assert_eq!(malformed(b""), Malformed::Empty);
    }

    #[test]
    fn whitespace() {
        let key = fixed_key();
        let cases: Vec<(Vec<u8>, usize, &str)> = vec![
            (format!(" {key}").into_bytes(), 1, "a space"),
            (format!("{key}\n").into_bytes(), 45, "a line break"),
            (format!("{key}\r\n").into_bytes(), 45, "a line break"),
            (
                format!("{}\t{}", &key[..12], &key[12..]).into_bytes(),
                13,
                "a tab",
            ),
            (
                format!("{key}\u{a0}").into_bytes(),
                45,
                "a non-breaking space",
            ),
            (
                format!("{key}\u{202f}").into_bytes(),
                45,
                "a non-breaking space",
            ),
            (
                format!("\u{feff}{key}").into_bytes(),
                1,
                "an invisible zero-width character",
            ),
            (
                format!("{}\u{200b}{}", &key[..9], &key[9..]).into_bytes(),
                10,
                "an invisible zero-width character",
            ),
            (format!("{key}\u{2028}").into_bytes(), 45, "a line break"),
            (format!("{key}\u{3000}").into_bytes(), 45, "a Unicode space"),
            (format!("{key}\u{2003}").into_bytes(), 45, "a Unicode space"),
            (format!("{key}\u{b}").into_bytes(), 45, "a vertical tab"),
            // The first offender wins, even before a forbidden byte.
            (format!("{key} \0").into_bytes(), 45, "a space"),
        ];
        for (raw, position, what) in cases {
            assert_eq!(
                malformed(&raw),
                Malformed::Whitespace { position, what },
                "{raw:?}"
            );
        }
    }

    #[test]
    fn bearer_prefix() {
        let key = fixed_key();
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let raw = format!("{scheme} {key}");
            let m = malformed(raw.as_bytes());
            assert!(
                matches!(m, Malformed::Whitespace { position: 7, .. }),
                "{m:?}"
            );
            let message = KeyRejection::Malformed(m).message(&live());
            assert!(message.contains("without 'Bearer '"), "{message}");
        }
        // Any other word of the same length gets the ordinary message.
        let m = malformed(format!("Basics {key}").as_bytes());
        assert_eq!(
            m,
            Malformed::Whitespace {
                position: 7,
                what: "a space"
            }
        );
        assert!(!KeyRejection::Malformed(m)
            .message(&live())
            .contains("Bearer"));
    }

    #[test]
    fn forbidden_bytes() {
        let key = fixed_key();
        let cases: Vec<(Vec<u8>, usize)> = vec![
            (format!("{}\0{}", &key[..8], &key[9..]).into_bytes(), 9),
            (format!("{key}\u{7f}").into_bytes(), 45),
            (format!("{key}\u{1b}").into_bytes(), 45),
            (format!("{}é{}", &key[..20], &key[21..]).into_bytes(), 21),
            (format!("“{key}”").into_bytes(), 1),
            ([key.as_bytes(), &[0xff]].concat(), 45),
            // A lone lead byte of a whitespace sequence is not whitespace.
            ([key.as_bytes(), &[0xe2, 0x80]].concat(), 45),
        ];
        for (raw, position) in cases {
            assert_eq!(
                malformed(&raw),
                Malformed::ForbiddenByte { position },
                "{raw:?}"
            );
        }
    }

    #[test]
    fn quotes_or_brackets() {
        let key = fixed_key();
        for (raw, position) in [
            (format!("\"{key}\""), 1),
            (format!("'{key}'"), 1),
            (format!("<{key}>"), 1),
            (format!("{key}]"), 45),
            (format!("`{key}`"), 1),
            (format!("{{{key}}}"), 1),
        ] {
            assert_eq!(
                malformed(raw.as_bytes()),
                Malformed::QuotesOrBrackets { position },
                "{raw}"
            );
        }
    }

    #[test]
    fn wrong_prefix() {
        let key = fixed_key();
        for raw in [
            format!("Bearer:{key}"),
            key.to_uppercase(),
            format!("x{key}"),
            key[1..].to_owned(),
            "hk".to_owned(),
            "sk_live_abc".to_owned(),
        ] {
            assert_eq!(malformed(raw.as_bytes()), Malformed::WrongPrefix, "{raw}");
        }
    }

    #[test]
    fn missing_environment() {
        let body = &fixed_key()[8..];
        for raw in [
            format!("hk__{body}"),
            format!("hk_LIVE_{body}"),
            format!("hk_toolongenv_{body}"),
            format!("hk_live{body}"),
            format!("hk_{body}"),
            "hk_".to_owned(),
            "hk_live".to_owned(),
            "hk_abcdefghi_".to_owned(),
        ] {
            assert_eq!(
                malformed(raw.as_bytes()),
                Malformed::MissingEnvironment,
                "{raw}"
            );
        }
    }

    #[test]
    fn wrong_length() {
        let key = fixed_key();
        let cases = [
            (key[..43].to_owned(), 35),
            (format!("{key}0"), 37),
            ("hk_live_".to_owned(), 0),
            ("hk_abcdefgh_x".to_owned(), 1),
        ];
        for (raw, actual) in cases {
            assert_eq!(
                malformed(raw.as_bytes()),
                Malformed::WrongLength {
                    expected: 36,
                    actual
                },
                "{raw}"
            );
        }
    }

    #[test]
    fn invalid_character() {
        let key = fixed_key();
        for (index, replacement) in [(20, "-"), (8, "_"), (43, "."), (30, "+")] {
            let raw = format!("{}{replacement}{}", &key[..index], &key[index + 1..]);
            assert_eq!(
                malformed(raw.as_bytes()),
                Malformed::InvalidCharacter {
                    position: index + 1
                },
                "{raw}"
            );
        }
    }

    #[test]
    fn bad_checksum() {
        let key = fixed_key();
        let raw = format!("{}1{}", &key[..10], &key[11..]);
        assert_eq!(malformed(raw.as_bytes()), Malformed::BadChecksum);
        // Six base62 digits can encode more than u32::MAX.
        let raw = format!("{}zzzzzz", &key[..38]);
        assert_eq!(malformed(raw.as_bytes()), Malformed::BadChecksum);
    }

    #[test]
    fn wrong_environment() {
        let key = ApiKey::generate(&env("test"));
        let rejection = parse(key.expose_secret().as_bytes(), &live()).unwrap_err();
        assert_eq!(
            rejection,
            KeyRejection::WrongEnvironment {
                found: "test".to_owned()
            }
        );
        assert_eq!(
            rejection.message(&live()),
            "This key is for the 'test' environment, but this server accepts 'live' keys."
        );
        assert!(parse(key.expose_secret().as_bytes(), &env("test")).is_ok());
    }

    #[test]
    fn wrong_environment_with_bad_checksum_is_bad_checksum() {
        let key = ApiKey::assemble("test", ZEROS);
        let secret = key.expose_secret();
        let raw = format!("{}1{}", &secret[..10], &secret[11..]);
        assert_eq!(malformed(raw.as_bytes()), Malformed::BadChecksum);
    }

    #[test]
    fn messages_are_one_based_and_secret_free() {
        let key = fixed_key();
        let m = Malformed::Whitespace {
            position: 12,
            what: "a space",
        };
        assert_eq!(
            KeyRejection::Malformed(m).message(&live()),
            "The API key contains a space at position 12; copy the key again without spaces \
             or other whitespace."
        );
        let tab = format!("{}\t{}", &key[..12], &key[12..]);
        let message = parse(tab.as_bytes(), &live()).unwrap_err().message(&live());
        assert!(message.contains("position 13"), "{message}");
        assert_eq!(
            KeyRejection::Malformed(Malformed::BadChecksum).message(&live()),
            "The API key's checksum does not match: it was probably mistyped or truncated; \
             copy it again from where you saved it."
        );
        let all = [
            Malformed::Empty,
            Malformed::Whitespace {
                position: 3,
                what: "a line break",
            },
            Malformed::ForbiddenByte { position: 4 },
            Malformed::QuotesOrBrackets { position: 1 },
            Malformed::WrongPrefix,
            Malformed::MissingEnvironment,
            Malformed::WrongLength {
                expected: 36,
                actual: 35,
            },
            Malformed::WrongLength {
                expected: 36,
                actual: 40,
            },
            Malformed::InvalidCharacter { position: 21 },
            Malformed::BadChecksum,
        ];
        for m in all {
            let message = KeyRejection::Malformed(m.clone()).message(&env("test"));
            assert!(message.starts_with("The API key"), "{message}");
            assert!(message.ends_with('.'), "{message}");
            assert!(!message.contains(ZEROS), "{message}");
        }
    }

    #[test]
    fn key_env_validation() {
        for ok in ["live", "test", "a", "0", "abcdefgh", "dev2", "12345678"] {
            let parsed: KeyEnv = ok.parse().unwrap();
            assert_eq!(parsed.as_str(), ok);
            assert_eq!(parsed.to_string(), ok);
            assert_eq!(KeyEnv::new(ok), Ok(parsed));
        }
        for bad in [
            "",
            "LIVE",
            "Live",
            "live-1",
            "live_1",
            "abcdefghi",
            " live",
            "lïve",
        ] {
            assert_eq!(KeyEnv::new(bad), Err(InvalidKeyEnv), "{bad:?}");
            assert!(bad.parse::<KeyEnv>().is_err());
        }
        assert_eq!(KeyEnv::default().as_str(), "live");
        assert_eq!(
            InvalidKeyEnv.to_string(),
            "must be 1-8 characters of a-z and 0-9"
        );
        let err: Box<dyn std::error::Error> = Box::new(InvalidKeyEnv);
        assert_eq!(err.to_string(), ENV_RULE);
    }

    fn env_strategy() -> impl Strategy<Value = KeyEnv> {
        "[a-z0-9]{1,8}".prop_map(|tag| KeyEnv::new(&tag).unwrap())
    }

    fn other_base62(original: u8, pick: u8) -> u8 {
        let others: Vec<u8> = base62::ALPHABET
            .iter()
            .copied()
            .filter(|&b| b != original)
            .collect();
        others[usize::from(pick) % others.len()]
    }

    proptest! {
        #[test]
        fn parse_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Err(rejection) = parse(&raw, &live()) {
                let _ = rejection.message(&live());
            }
        }

        #[test]
        fn parse_never_panics_near_valid_keys(
            tag in env_strategy(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..4),
        ) {
            let mut raw = ApiKey::generate(&tag).expose_secret().as_bytes().to_vec();
            for (index, byte, op) in edits {
                let index = index % (raw.len() + 1);
                match op {
                    0 => raw.insert(index, byte),
                    1 if index < raw.len() => { raw.remove(index); }
                    _ if index < raw.len() => raw[index] = byte,
                    _ => {}
                }
            }
            // The one-pass check is a shortcut, never a second opinion: it accepts only what
            // the explained parse accepts, and both paths give the same key and digest.
            for expected in [tag.clone(), live()] {
                let explained = parse_explained(&raw, &expected);
                if is_well_formed(&raw, &expected) {
                    prop_assert!(explained.is_ok());
                }
                let via_parse = parse(&raw, &expected).map(|key| (key.expose_secret().to_owned(), key.prefix_len));
                let via_explained = explained.as_ref().map(|key| (key.expose_secret().to_owned(), key.prefix_len));
                prop_assert_eq!(via_parse.ok(), via_explained.ok());
                prop_assert_eq!(
                    parse_digest(&raw, &expected).ok(),
                    explained.ok().map(|key| key.digest())
                );
            }
            match parse(&raw, &tag) {
                Ok(key) => prop_assert_eq!(key.expose_secret().as_bytes(), &raw[..]),
                Err(rejection) => {
                    let message = rejection.message(&tag);
                    // No 8-byte window of the value may reach the message.
                    for window in raw.get(tag.as_str().len() + 4..).unwrap_or_default().windows(8) {
                        prop_assert!(!message.as_bytes().windows(8).any(|w| w == window),
                            "{message}");
                    }
                }
            }
        }

        #[test]
        fn generate_parse_round_trip(tag in env_strategy()) {
            let key = ApiKey::generate(&tag);
            let secret = key.expose_secret();
            prop_assert_eq!(secret.len(), 3 + tag.as_str().len() + 1 + 36);
            prop_assert!(matches_key_shape(secret));
            let parsed = parse(secret.as_bytes(), &tag).unwrap();
            prop_assert_eq!(parsed.expose_secret(), secret);
            prop_assert_eq!(parsed.env(), tag.as_str());
            prop_assert_eq!(parsed.hint(), key.hint());
            prop_assert_eq!(parsed.digest(), key.digest());
        }

        #[test]
        fn digest_matches_exposed_secret(tag in env_strategy()) {
            let key = ApiKey::generate(&tag);
            prop_assert_eq!(key.digest(), KeyDigest::of(key.expose_secret()));
        }

        #[test]
        fn body_substitution_rejected(tag in env_strategy(), index in 0usize..36, pick in any::<u8>()) {
            let key = ApiKey::generate(&tag);
            let mut raw = key.expose_secret().as_bytes().to_vec();
            let at = raw.len() - 36 + index;
            raw[at] = other_base62(raw[at], pick);
            prop_assert_eq!(
                parse(&raw, &tag).unwrap_err(),
                KeyRejection::Malformed(Malformed::BadChecksum)
            );
        }

        #[test]
        fn env_substitution_rejected(tag in env_strategy(), index in 0usize..8, pick in any::<u8>()) {
            let key = ApiKey::generate(&tag);
            let mut raw = key.expose_secret().as_bytes().to_vec();
            let at = 3 + index % tag.as_str().len();
            raw[at] = other_base62(raw[at], pick);
            let rejection = parse(&raw, &tag).unwrap_err();
            let expected = if raw[at].is_ascii_uppercase() {
                Malformed::MissingEnvironment
            } else {
                Malformed::BadChecksum
            };
            prop_assert_eq!(rejection, KeyRejection::Malformed(expected));
        }

        #[test]
        fn truncation_rejected(tag in env_strategy(), cut in 1usize..48, from_front in any::<bool>()) {
            let key = ApiKey::generate(&tag);
            let secret = key.expose_secret().as_bytes();
            let cut = cut.min(secret.len());
            let raw = if from_front { &secret[cut..] } else { &secret[..secret.len() - cut] };
            prop_assert!(parse(raw, &tag).is_err());
        }
    }
}
