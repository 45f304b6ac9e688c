//! Numbers as header values without an allocation for the common ones. `HeaderValue::from(n)`
//! formats into a fresh buffer, freed again with the response: three of them per request for
//! the `RateLimit-*` headers of a key with a limit, which every key has by default (60 a
//! minute, so every figure is below 1,000). Those below 1,000 are slices of one static table.

use axum::body::Bytes;
use axum::http::HeaderValue;

const TABLE_SIZE: usize = 1000;

/// "000001002…999": each number below 1,000 as three digits.
static DIGITS: [u8; 3 * TABLE_SIZE] = digits();

const fn digits() -> [u8; 3 * TABLE_SIZE] {
    let mut out = [0u8; 3 * TABLE_SIZE];
    let mut n = 0;
    while n < TABLE_SIZE {
        out[3 * n] = b'0' + (n / 100) as u8;
        out[3 * n + 1] = b'0' + (n / 10 % 10) as u8;
        out[3 * n + 2] = b'0' + (n % 10) as u8;
        n += 1;
    }
    out
}

/// `n` in decimal, as `HeaderValue::from(n)` writes it.
pub fn header_number(n: u64) -> HeaderValue {
    let Some(index) = usize::try_from(n).ok().filter(|n| *n < TABLE_SIZE) else {
        return HeaderValue::from(n);
    };
    let width = match index {
        0..=9 => 1,
        10..=99 => 2,
        _ => 3,
    };
    let end = 3 * index + 3;
    let digits = Bytes::from_static(&DIGITS[end - width..end]);
    // Digits are always a valid value; the fallback only keeps this free of panics.
    HeaderValue::from_maybe_shared(digits).unwrap_or_else(|_| HeaderValue::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_table_number_reads_as_itself() {
        for n in 0..=1001u64 {
            assert_eq!(header_number(n), HeaderValue::from(n), "{n}");
        }
    }

    proptest! {
        #[test]
        fn any_number_reads_as_itself(n in any::<u64>()) {
            prop_assert_eq!(header_number(n), HeaderValue::from(n));
        }
    }
}
