//! What can be set on a key besides its name (docs/api.md §14), as pure rules: the address
//! allowlist, the integrator's metadata and external id, and who may change which field.
//!
//! Each value has one stored form (a column of text) and one parsed form, so the request path
//! never parses JSON or CIDR text twice: the parsed allowlist is kept with the cached key.

use crate::domain::ids::UserId;
use crate::domain::net::{canonical, parse_net};
use crate::domain::permissions::Role;
use crate::domain::time::Timestamp;
use ipnet::IpNet;
use std::net::IpAddr;

pub const MAX_ALLOWED_IPS: usize = 100;
/// Serialized, as stored and sent back.
pub const MAX_META_BYTES: usize = 1024;
pub const MAX_EXTERNAL_ID_CHARS: usize = 255;
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// The networks a key may be used from; empty means any address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedIps(Vec<IpNet>);

impl AllowedIps {
    /// Each entry normalised (`10.0.0.1` → `10.0.0.1/32`), duplicates dropped, order kept.
    /// The error names the first bad entry by its index.
    pub fn parse(entries: &[String]) -> Result<AllowedIps, String> {
        if entries.len() > MAX_ALLOWED_IPS {
            return Err(format!(
                "must list at most {MAX_ALLOWED_IPS} addresses or CIDR blocks (got {})",
                entries.len()
            ));
        }
        let mut nets: Vec<IpNet> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let net = parse_net(entry).map_err(|reason| format!("entry {index}: {reason}"))?;
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        Ok(AllowedIps(nets))
    }

    /// The stored form: space-separated normalised blocks, `None` for "any address".
    pub fn to_column(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(IpNet::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    /// Entries that no longer parse (written by hand into the database) are dropped rather
    /// than read as "any address": an allowlist can only get stricter by damage.
    pub fn from_column(column: Option<&str>) -> AllowedIps {
        let nets = column
            .unwrap_or_default()
            .split_ascii_whitespace()
            .filter_map(|text| text.parse::<IpNet>().ok())
            .collect::<Vec<_>>();
        if nets.is_empty() && column.is_some_and(|text| !text.trim().is_empty()) {
            // Nothing readable: allow nothing rather than everything.
            return AllowedIps(vec![IpNet::from(IpAddr::from([0, 0, 0, 0]))]);
        }
        AllowedIps(nets)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn allows(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.is_empty() || self.0.iter().any(|net| net.contains(&address))
    }

    pub fn as_strings(&self) -> Vec<String> {
        self.0.iter().map(IpNet::to_string).collect()
    }
}

/// The integrator's metadata: a JSON object, stored and returned exactly as serialized here.
pub fn meta_column(value: &serde_json::Value) -> Result<String, String> {
    if !value.is_object() {
        return Err("must be a JSON object".to_owned());
    }
    let text = serde_json::to_string(value).map_err(|_| "could not be encoded".to_owned())?;
    if text.len() > MAX_META_BYTES {
        return Err(format!(
            "must be at most {MAX_META_BYTES} bytes serialized (got {})",
            text.len()
        ));
    }
    Ok(text)
}

/// The integrator's own id for whoever the key is for: visible ASCII without spaces, so it
/// can travel in a header (`X-Heffl-External-Id`) and a query string unchanged.
pub fn external_id(text: &str) -> Result<String, String> {
    let length = text.chars().count();
    if text.is_empty() {
        return Err("must not be empty; send null to remove it".to_owned());
    }
    if length > MAX_EXTERNAL_ID_CHARS {
        return Err(format!(
            "must be at most {MAX_EXTERNAL_ID_CHARS} characters (got {length})"
        ));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII characters without spaces".to_owned());
    }
    Ok(text.to_owned())
}

/// A key's fields a PATCH may name, for refusals and the audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyField {
    Name,
    Description,
    Enabled,
    ExpiresAt,
    AllowedIps,
    Meta,
    ExternalId,
    Credits,
    RateLimitPerMinute,
    Scopes,
}

impl KeyField {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyField::Name => "name",
            KeyField::Description => "description",
            KeyField::Enabled => "enabled",
            KeyField::ExpiresAt => "expiresAt",
            KeyField::AllowedIps => "allowedIps",
            KeyField::Meta => "meta",
            KeyField::ExternalId => "externalId",
            KeyField::Credits => "credits",
            KeyField::RateLimitPerMinute => "rateLimitPerMinute",
            KeyField::Scopes => "scopes",
        }
    }
}

/// The key's creator edits their key; owners and admins edit every key of the workspace.
pub fn can_edit_key(role: Role, user_id: &UserId, key_creator_id: &UserId) -> bool {
    matches!(role, Role::Owner | Role::Admin) || user_id == key_creator_id
}

/// Anyone who may edit a key may make it expire, or expire sooner; moving the end later or
/// removing it lengthens a credential's life, which is the workspace managers' call.
pub fn can_change_expiry(role: Role, current: Option<Timestamp>, new: Option<Timestamp>) -> bool {
    if matches!(role, Role::Owner | Role::Admin) {
        return true;
    }
    match (current, new) {
        (_, None) => current.is_none(),
        (None, Some(_)) => true,
        (Some(current), Some(new)) => new <= current,
    }
}

/// Credits are a quota someone pays for or planned: only owners and admins change them after
/// creation (a creator who could top up their own key would have no quota at all).
pub fn can_change_credits(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn addresses_are_normalised_to_blocks_and_duplicates_dropped() {
        let list = AllowedIps::parse(&strings(&[
            "10.0.0.1",
            "10.0.0.1/32",
            "2001:db8::/48",
            "::1",
        ]))
        .expect("valid");
        assert_eq!(
            list.as_strings(),
            ["10.0.0.1/32", "2001:db8::/48", "::1/128"]
        );
        assert_eq!(
            list.to_column().as_deref(),
            Some("10.0.0.1/32 2001:db8::/48 ::1/128")
        );
        assert_eq!(AllowedIps::from_column(list.to_column().as_deref()), list);
    }

    #[test]
    fn host_bits_and_garbage_name_the_entry() {
        let error = AllowedIps::parse(&strings(&["10.0.0.0/8", "10.0.0.1/24"])).unwrap_err();
        assert!(error.starts_with("entry 1:"), "{error}");
        assert!(error.contains("10.0.0.0/24"), "{error}");
        let error = AllowedIps::parse(&strings(&["example.com"])).unwrap_err();
        assert!(error.contains("entry 0"), "{error}");
        let many: Vec<String> = (0..101).map(|i| format!("10.0.{i}.0/24")).collect();
        assert!(AllowedIps::parse(&many)
            .unwrap_err()
            .contains("at most 100"));
    }

    #[test]
    fn an_empty_list_allows_any_address_and_a_list_only_its_blocks() {
        let any = AllowedIps::parse(&[]).expect("empty");
        assert!(any.allows("203.0.113.9".parse().expect("ip")));
        assert_eq!(any.to_column(), None);
        let list = AllowedIps::parse(&strings(&["203.0.113.0/24", "2001:db8::/32"])).expect("ok");
        assert!(list.allows("203.0.113.200".parse().expect("ip")));
        assert!(!list.allows("203.0.114.1".parse().expect("ip")));
        assert!(list.allows("2001:db8:1::5".parse().expect("ip")));
        // What a dual-stack socket reports for an IPv4 peer.
        assert!(list.allows("::ffff:203.0.113.7".parse().expect("ip")));
    }

    #[test]
    fn an_unreadable_stored_list_allows_nothing() {
        let damaged = AllowedIps::from_column(Some("not-a-net"));
        assert!(!damaged.allows("203.0.113.9".parse().expect("ip")));
        assert!(!damaged.allows("0.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn meta_must_be_a_small_object() {
        assert_eq!(
            meta_column(&serde_json::json!({"plan": "pro", "n": 1})).as_deref(),
            Ok(r#"{"n":1,"plan":"pro"}"#)
        );
        assert!(meta_column(&serde_json::json!([1])).is_err());
        assert!(meta_column(&serde_json::json!("x")).is_err());
        let big = serde_json::json!({ "x": "a".repeat(1100) });
        assert!(meta_column(&big).unwrap_err().contains("1024"));
    }

    #[test]
    fn external_ids_travel_in_headers_unchanged() {
        assert_eq!(external_id("cus_123").as_deref(), Ok("cus_123"));
        assert!(external_id("").is_err());
        assert!(external_id("a b").is_err());
        assert!(external_id("é").is_err());
        assert!(external_id(&"a".repeat(256)).is_err());
        assert!(external_id(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn expiry_rules() {
        let at = |ms| Some(Timestamp(ms));
        for role in [Role::Owner, Role::Admin] {
            assert!(can_change_expiry(role, at(10), None));
            assert!(can_change_expiry(role, at(10), at(20)));
        }
        for role in [Role::Member, Role::Viewer] {
            assert!(can_change_expiry(role, None, at(20)), "set one");
            assert!(can_change_expiry(role, at(20), at(10)), "earlier");
            assert!(can_change_expiry(role, at(20), at(20)), "unchanged");
            assert!(!can_change_expiry(role, at(10), at(20)), "later");
            assert!(!can_change_expiry(role, at(10), None), "remove");
            assert!(can_change_expiry(role, None, None), "none stays none");
        }
    }

    #[test]
    fn who_edits() {
        let (a, b) = (UserId::generate(), UserId::generate());
        assert!(can_edit_key(Role::Admin, &a, &b));
        assert!(can_edit_key(Role::Viewer, &a, &a));
        assert!(!can_edit_key(Role::Member, &a, &b));
        assert!(can_change_credits(Role::Owner));
        assert!(!can_change_credits(Role::Member));
    }

    proptest! {
        /// What is stored reads back as the same list, and allows exactly what it allowed.
        #[test]
        fn stored_lists_read_back_the_same(
            blocks in proptest::collection::vec((any::<[u8; 4]>(), 0u8..=32), 0..20),
            probe in any::<[u8; 4]>(),
        ) {
            let entries: Vec<String> = blocks
                .iter()
                .map(|(octets, prefix)| {
                    let net = ipnet::Ipv4Net::new((*octets).into(), *prefix).expect("prefix ≤ 32");
                    net.trunc().to_string()
                })
                .collect();
            let list = AllowedIps::parse(&entries).expect("valid blocks");
            let back = AllowedIps::from_column(list.to_column().as_deref());
            prop_assert_eq!(&back, &list);
            let probe = IpAddr::from(probe);
            prop_assert_eq!(back.allows(probe), list.allows(probe));
        }
    }
}
