//! Base62 (`0-9A-Za-z`) helpers for API keys.
//!
//! Base62 is used because its characters survive copy-and-paste, URLs,
//! shells and double-click selection without escaping, unlike base64's
//! `+`, `/` and `=`.

use rand::rngs::OsRng;
use rand::RngCore;

/// The base62 digits in ascending value: `0-9`, then `A-Z`, then `a-z`.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Base62 digits needed for any `u32` (`62^5 < u32::MAX < 62^6`).
const MAX_U32_DIGITS: usize = 6;

/// Largest multiple of 62 that fits in a byte's range (`4 * 62`): bytes below
/// it map onto each digit exactly four times, so rejecting the rest keeps
/// `byte % 62` uniform.
const REJECT_FROM: u8 = 248;

/// Encodes `value` in base62, most significant digit first, left-padded with
/// `'0'` to at least `width` characters.
///
/// Never truncates: a `width` smaller than the number of digits `value`
/// needs (at most 6) yields the unpadded digits, like `format!("{:0>w$}")`.
pub fn encode_u32_padded(value: u32, width: usize) -> String {
    let mut digits = [0u8; MAX_U32_DIGITS];
    let mut start = MAX_U32_DIGITS;
    let mut rest = value;
    loop {
        start -= 1;
        // `rest % 62` is always below 62, and a u32 never needs more than
        // `MAX_U32_DIGITS` iterations, so neither index can be out of range.
        digits[start] = ALPHABET[(rest % 62) as usize];
        rest /= 62;
        if rest == 0 {
            break;
        }
    }
    let digits = &digits[start..];
    let mut out = String::with_capacity(width.max(digits.len()));
    out.extend(std::iter::repeat_n('0', width.saturating_sub(digits.len())));
    out.extend(digits.iter().copied().map(char::from));
    out
}

/// Returns `len` characters drawn uniformly and independently from
/// [`ALPHABET`] using the operating system's CSPRNG.
///
/// # Panics
///
/// Panics if the operating system cannot supply random bytes; issuing a key
/// from anything weaker would be worse than failing.
pub fn random_string(len: usize) -> String {
    let mut out = String::with_capacity(len);
    // One getrandom call per 64 bytes rather than one per character; with a
    // 3% rejection rate a 30-character key almost always needs a single call.
    let mut buf = [0u8; 64];
    let mut remaining = len;
    while remaining > 0 {
        OsRng.fill_bytes(&mut buf);
        for digit in buf.iter().filter_map(|&byte| digit_from_random_byte(byte)) {
            if remaining == 0 {
                break;
            }
            out.push(char::from(digit));
            remaining -= 1;
        }
    }
    out
}

/// Maps a uniformly random byte to a uniformly random base62 character, or
/// `None` when the byte must be rejected to avoid modulo bias.
fn digit_from_random_byte(byte: u8) -> Option<u8> {
    if byte < REJECT_FROM {
        ALPHABET.get(usize::from(byte % 62)).copied()
    } else {
        None
    }
}

/// Whether `byte` is one of the 62 characters of [`ALPHABET`]. Written without branches
/// (`| 0x20` folds upper case onto lower, and nothing else onto a letter), so that a check
/// of a whole key body compiles to a few vector compares instead of a branch per byte.
pub fn is_base62(byte: u8) -> bool {
    let digit = byte.wrapping_sub(b'0') < 10;
    let letter = (byte | 0x20).wrapping_sub(b'a') < 26;
    digit | letter
}

/// The value (0..62) of a base62 character, or `None` for any other byte.
///
/// Lets callers verify an encoded number by decoding it in place instead of
/// allocating a fresh encoding to compare against.
pub fn decode_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'Z' => Some(byte - b'A' + 10),
        b'a'..=b'z' => Some(byte - b'a' + 36),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_base62_is_exactly_the_alphabet() {
        for byte in 0..=u8::MAX {
            assert_eq!(
                is_base62(byte),
                ALPHABET.contains(&byte),
                "byte {byte:#04x}"
            );
        }
    }

    #[test]
    fn alphabet_is_ordered_digits_upper_lower() {
        let expected: Vec<u8> = (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .collect();
        assert_eq!(&ALPHABET[..], &expected[..]);
    }

    #[test]
    fn encode_known_values() {
        assert_eq!(encode_u32_padded(0, 6), "000000");
        assert_eq!(encode_u32_padded(61, 6), "00000z");
        assert_eq!(encode_u32_padded(62, 6), "000010");
        assert_eq!(encode_u32_padded(u32::MAX, 6), "4gfFC3");
        assert_eq!(encode_u32_padded(u32::MAX, 0), "4gfFC3");
        assert_eq!(encode_u32_padded(0, 0), "0");
        assert_eq!(encode_u32_padded(61, 1), "z");
        assert_eq!(encode_u32_padded(3843, 8), "000000zz");
    }

    #[test]
    fn decode_inverts_alphabet() {
        for (value, &byte) in ALPHABET.iter().enumerate() {
            assert_eq!(decode_digit(byte), Some(value as u8));
            assert!(is_base62(byte));
        }
        let others = (0u8..=255).filter(|b| !ALPHABET.contains(b));
        for byte in others {
            assert_eq!(decode_digit(byte), None);
            assert!(!is_base62(byte));
        }
    }

    #[test]
    fn encode_then_decode_round_trips() {
        for value in [
            0u32,
            1,
            61,
            62,
            3843,
            3844,
            916_132_831,
            916_132_832,
            u32::MAX,
        ] {
            let encoded = encode_u32_padded(value, 6);
            let decoded = encoded.bytes().fold(0u64, |acc, b| {
                acc * 62 + u64::from(decode_digit(b).unwrap())
            });
            assert_eq!(decoded, u64::from(value), "{encoded}");
        }
    }

    #[test]
    fn random_byte_mapping_is_unbiased() {
        let mut hits = [0u32; 62];
        for byte in 0u8..=255 {
            if let Some(d) = digit_from_random_byte(byte) {
                hits[usize::from(decode_digit(d).unwrap())] += 1;
            }
        }
        assert!(hits.iter().all(|&n| n == 4), "{hits:?}");
    }

    #[test]
    fn random_string_has_requested_length_and_alphabet() {
        for len in [0, 1, 30, 63, 64, 65, 500] {
            let s = random_string(len);
            assert_eq!(s.len(), len);
            assert!(s.bytes().all(is_base62));
        }
    }

    #[test]
    fn random_string_uses_whole_alphabet() {
        // P(some digit absent from 20_000 draws) ≈ 62·(61/62)^20000 ≈ 1e-140.
        let s = random_string(20_000);
        for &byte in ALPHABET {
            assert!(s.as_bytes().contains(&byte), "{} never drawn", byte as char);
        }
    }
}
