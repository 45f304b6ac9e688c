//! Every key digest this deployment has issued, in memory, so that an address over its
//! failed-key budget can still be told "this key exists, look it up" without the database
//! hearing about each of a scanner's guesses (docs/api.md §9).
//!
//! Each digest is kept as its first 8 bytes: SHA-256 output is uniform, so a guess matches some
//! real key's prefix with odds of about (keys / 2^64), and a match only costs one lookup. The
//! set is loaded when the change feed connects and kept current by it (`KeyIssued` events);
//! while the feed is down it answers nothing, since creations may have been missed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

#[derive(Default)]
pub struct KnownKeys {
    prefixes: RwLock<HashSet<u64>>,
    live: AtomicBool,
}

fn prefix(digest: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

impl KnownKeys {
    /// Replaces the contents with `digests` (all keys in the database) and starts answering.
    pub fn load<'a>(&self, digests: impl IntoIterator<Item = &'a [u8]>) {
        let loaded: HashSet<u64> = digests
            .into_iter()
            .filter_map(|d| <&[u8; 32]>::try_from(d).ok())
            .map(prefix)
            .collect();
        match self.prefixes.write() {
            Ok(mut set) => *set = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        self.live.store(true, Ordering::Release);
    }

    pub fn insert(&self, digest: &[u8; 32]) {
        match self.prefixes.write() {
            Ok(mut set) => set.insert(prefix(digest)),
            Err(poisoned) => poisoned.into_inner().insert(prefix(digest)),
        };
    }

    /// The feed is down: creations elsewhere may be missed, so stop answering until `load`.
    pub fn set_stale(&self) {
        self.live.store(false, Ordering::Release);
    }

    /// `Some(false)`: certainly no such key. `Some(true)`: probably one. `None`: cannot tell.
    pub fn contains(&self, digest: &[u8; 32]) -> Option<bool> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let set = match self.prefixes.read() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        Some(set.contains(&prefix(digest)))
    }

    pub fn len(&self) -> usize {
        self.prefixes.read().map(|set| set.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_while_live() {
        let known = KnownKeys::default();
        assert_eq!(known.contains(&[1; 32]), None);
        known.load([[1u8; 32].as_slice()]);
        assert_eq!(known.contains(&[1; 32]), Some(true));
        assert_eq!(known.contains(&[2; 32]), Some(false));
        known.insert(&[2; 32]);
        assert_eq!(known.contains(&[2; 32]), Some(true));
        known.set_stale();
        assert_eq!(known.contains(&[1; 32]), None);
        known.load(std::iter::empty());
        assert_eq!(known.contains(&[1; 32]), Some(false));
    }
}
