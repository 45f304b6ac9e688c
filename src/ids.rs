//! Public identifiers: a type prefix and 22 random base62 characters (~131 bits), so ids are
//! neither guessable nor sequential and say what they name (`ld_3kTq9…`).

use crate::base62;

const RANDOM_LEN: usize = 22;

pub fn new_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 1 + RANDOM_LEN);
    id.push_str(prefix);
    id.push('_');
    id.push_str(&base62::random_string(RANDOM_LEN));
    id
}

pub const WORKSPACE: &str = "ws";
pub const USER: &str = "usr";
pub const API_KEY: &str = "key";
pub const LEAD: &str = "ld";
pub const AUDIT_EVENT: &str = "evt";
pub const INVITATION: &str = "inv";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = new_id(LEAD);
        let b = new_id(LEAD);
        assert!(a.starts_with("ld_"));
        assert_eq!(a.len(), 3 + RANDOM_LEN);
        assert_ne!(a, b);
    }
}
