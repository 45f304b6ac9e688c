//! Key scopes: what a key itself may do, on top of (never beyond) its user's role. A key made
//! without scopes has all of them, as keys always had — including the scopes of other services
//! named by `HEFFL_EXTRA_SCOPES` (docs/api.md §13), present and future.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Scope {
    #[serde(rename = "me:read")]
    MeRead,
    #[serde(rename = "leads:read")]
    LeadsRead,
    #[serde(rename = "leads:write")]
    LeadsWrite,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::MeRead, Scope::LeadsRead, Scope::LeadsWrite];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::MeRead => "me:read",
            Scope::LeadsRead => "leads:read",
            Scope::LeadsWrite => "leads:write",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Scope::MeRead => "Read the key's own identity (GET /api/v1/me).",
            Scope::LeadsRead => "List and read leads.",
            Scope::LeadsWrite => "Create, update and delete leads.",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == text)
    }

    fn bit(self) -> u8 {
        match self {
            Scope::MeRead => 1,
            Scope::LeadsRead => 2,
            Scope::LeadsWrite => 4,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const ALL_BUILT_IN: u8 = 1 | 2 | 4;

/// The scopes of other services this deployment knows (`HEFFL_EXTRA_SCOPES`), each
/// `service:action`. Validated at start-up; kept sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraScopes(Vec<String>);

impl ExtraScopes {
    pub fn new(names: impl IntoIterator<Item = String>) -> ExtraScopes {
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        names.dedup();
        ExtraScopes(names)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.binary_search_by(|n| n.as_str().cmp(name)).is_ok()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// A built-in or extra scope of this deployment.
    pub fn is_known(&self, name: &str) -> bool {
        Scope::parse(name).is_some() || self.contains(name)
    }

    /// Every scope a key may be created with, built-in first, for messages.
    pub fn valid_list(&self) -> String {
        Scope::ALL
            .iter()
            .map(|s| s.as_str())
            .chain(self.iter())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Checks one `HEFFL_EXTRA_SCOPES` entry: `[a-z][a-z0-9_-]*:[a-z][a-z0-9_-]*`, not a built-in.
pub fn parse_extra_scope(text: &str) -> Result<String, String> {
    let name = text.trim();
    let part_ok = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    let valid = name
        .split_once(':')
        .is_some_and(|(service, action)| part_ok(service) && part_ok(action));
    if !valid {
        return Err(format!(
            "'{text}' is not a scope such as billing:read ([a-z][a-z0-9_-]*:[a-z][a-z0-9_-]*)"
        ));
    }
    if Scope::parse(name).is_some() {
        return Err(format!(
            "'{name}' is a built-in scope; list only other services' scopes"
        ));
    }
    Ok(name.to_owned())
}

/// A key's scopes, stored as a space-separated list (NULL in the database means all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeSet {
    /// Every scope, built-in and extra, including extra scopes configured later.
    All,
    /// Exactly these; `extra` is sorted and without duplicates.
    Listed { built_in: u8, extra: Vec<String> },
}

impl ScopeSet {
    pub fn all() -> ScopeSet {
        ScopeSet::All
    }

    pub fn contains(&self, scope: Scope) -> bool {
        match self {
            ScopeSet::All => true,
            ScopeSet::Listed { built_in, .. } => built_in & scope.bit() != 0,
        }
    }

    /// For a scope named by a caller (forward auth's `?scope=`), built-in or extra.
    pub fn contains_name(&self, name: &str) -> bool {
        match (self, Scope::parse(name)) {
            (ScopeSet::All, _) => true,
            (_, Some(scope)) => self.contains(scope),
            (ScopeSet::Listed { extra, .. }, None) => extra.iter().any(|e| e == name),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, ScopeSet::All)
    }

    /// Whether every scope of `self` is one of `other`'s: a key's scopes may be narrowed to
    /// such a set, never widened.
    pub fn is_within(&self, other: &ScopeSet) -> bool {
        match (self, other) {
            (_, ScopeSet::All) => true,
            (ScopeSet::All, ScopeSet::Listed { .. }) => false,
            (
                ScopeSet::Listed { built_in, extra },
                ScopeSet::Listed {
                    built_in: allowed,
                    extra: allowed_extra,
                },
            ) => built_in & !allowed == 0 && extra.iter().all(|e| allowed_extra.contains(e)),
        }
    }

    /// The names, built-in first. `All` lists the built-in scopes only: the extra ones are the
    /// deployment's, not the key's (see `ExtraScopes`).
    pub fn names(&self) -> Vec<&str> {
        let (bits, extra): (u8, &[String]) = match self {
            ScopeSet::All => (ALL_BUILT_IN, &[]),
            ScopeSet::Listed { built_in, extra } => (*built_in, extra.as_slice()),
        };
        Scope::ALL
            .into_iter()
            .filter(|s| bits & s.bit() != 0)
            .map(|s| -> &str { s.as_str() })
            .chain(extra.iter().map(String::as_str))
            .collect()
    }

    /// From the database column; `None` is all scopes, the default. Extra names are kept even
    /// when no longer configured: they grant nothing a gateway still asks for.
    pub fn from_column(column: Option<&str>) -> ScopeSet {
        let Some(text) = column else {
            return ScopeSet::All;
        };
        let mut built_in = 0;
        let mut extra = Vec::new();
        for name in text.split_whitespace() {
            match Scope::parse(name) {
                Some(scope) => built_in |= scope.bit(),
                None => extra.push(name.to_owned()),
            }
        }
        extra.sort();
        extra.dedup();
        ScopeSet::Listed { built_in, extra }
    }

    /// For the database column: `None` when the set is every scope.
    pub fn to_column(&self) -> Option<String> {
        (!self.is_all()).then(|| self.names().join(" "))
    }

    /// Parses a request's list against the deployment's scopes; the error names the unknown
    /// entries and the valid ones. A list of every scope there is is stored as all.
    pub fn parse_list(names: &[String], extras: &ExtraScopes) -> Result<ScopeSet, String> {
        if names.is_empty() {
            return Err(format!(
                "must list at least one scope; valid scopes: {}",
                extras.valid_list()
            ));
        }
        let unknown: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !extras.is_known(n))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "unknown scope(s) {}; valid scopes: {}",
                unknown.join(", "),
                extras.valid_list()
            ));
        }
        let set = ScopeSet::from_column(Some(&names.join(" ")));
        let covers_all = match &set {
            ScopeSet::All => true,
            ScopeSet::Listed { built_in, extra } => {
                *built_in == ALL_BUILT_IN && extra.len() == extras.0.len()
            }
        };
        Ok(if covers_all { ScopeSet::All } else { set })
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.names())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn column_round_trip() {
        let none = ExtraScopes::default();
        assert_eq!(ScopeSet::from_column(None), ScopeSet::all());
        assert_eq!(ScopeSet::all().to_column(), None);
        let read_only =
            ScopeSet::parse_list(&list(&["leads:read", "me:read"]), &none).expect("valid");
        let column = read_only.to_column();
        assert_eq!(column.as_deref(), Some("me:read leads:read"));
        assert_eq!(ScopeSet::from_column(column.as_deref()), read_only);
        assert!(read_only.contains(Scope::LeadsRead));
        assert!(!read_only.contains(Scope::LeadsWrite));
    }

    #[test]
    fn narrowing_is_within_and_widening_is_not() {
        let extras = ExtraScopes::new(list(&["billing:read"]));
        let read = ScopeSet::parse_list(&list(&["leads:read"]), &extras).expect("valid");
        let read_me = ScopeSet::parse_list(&list(&["leads:read", "me:read"]), &extras).expect("ok");
        let billing = ScopeSet::parse_list(&list(&["billing:read"]), &extras).expect("valid");
        assert!(read.is_within(&read_me));
        assert!(read.is_within(&ScopeSet::all()));
        assert!(!read_me.is_within(&read));
        assert!(!ScopeSet::all().is_within(&read_me));
        assert!(!billing.is_within(&read_me));
        assert!(billing.is_within(&billing));
    }

    #[test]
    fn unknown_and_empty_lists_are_refused_with_the_valid_ones() {
        let extras = ExtraScopes::new(list(&["billing:read"]));
        let err = ScopeSet::parse_list(&list(&["leads:delete"]), &extras).expect_err("unknown");
        assert!(err.contains("leads:delete") && err.contains("leads:write"));
        assert!(err.contains("billing:read"), "{err}");
        assert!(ScopeSet::parse_list(&[], &extras).is_err());
        let none = ExtraScopes::default();
        assert!(ScopeSet::parse_list(&list(&["billing:read"]), &none).is_err());
    }

    #[test]
    fn extra_scopes_are_kept_and_listing_every_built_in_is_not_all_when_extras_exist() {
        let extras = ExtraScopes::new(list(&["billing:write", "billing:read"]));
        let built_ins = list(&["me:read", "leads:read", "leads:write"]);
        let set = ScopeSet::parse_list(&built_ins, &extras).expect("valid");
        assert!(!set.is_all(), "would widen the key to the billing scopes");
        assert!(!set.contains_name("billing:read"));
        assert_eq!(
            set.to_column().as_deref(),
            Some("me:read leads:read leads:write")
        );

        let billing =
            ScopeSet::parse_list(&list(&["billing:read", "me:read"]), &extras).expect("valid");
        assert_eq!(billing.to_column().as_deref(), Some("me:read billing:read"));
        let stored = ScopeSet::from_column(billing.to_column().as_deref());
        assert!(stored.contains_name("billing:read") && stored.contains(Scope::MeRead));
        assert!(!stored.contains_name("billing:write") && !stored.contains(Scope::LeadsRead));

        let mut everything = built_ins.clone();
        everything.extend(list(&["billing:read", "billing:write"]));
        assert!(ScopeSet::parse_list(&everything, &extras)
            .expect("valid")
            .is_all());
        assert!(ScopeSet::All.contains_name("billing:write"));
        // Without extras configured, every built-in is all, as before.
        let none = ExtraScopes::default();
        assert!(ScopeSet::parse_list(&built_ins, &none)
            .expect("valid")
            .is_all());
    }

    #[test]
    fn extra_scope_names_are_checked() {
        for good in ["billing:read", "a:b", "orders-v2:write_all", "x9:y-1"] {
            assert_eq!(parse_extra_scope(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            "billing",
            "Billing:read",
            "billing:",
            ":read",
            "1a:read",
            "a:b:c",
            "a :b",
            "a:B",
            "leads:read",
            "a:é",
        ] {
            assert!(parse_extra_scope(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn serializes_as_names() {
        let json = serde_json::to_string(&ScopeSet::all()).expect("json");
        assert_eq!(json, r#"["me:read","leads:read","leads:write"]"#);
    }

    proptest! {
        #[test]
        fn a_listed_set_never_grants_an_unlisted_scope(picks in proptest::collection::vec(0usize..5, 1..5), probe in 0usize..5) {
            let names = ["me:read", "leads:read", "leads:write", "billing:read", "billing:write"];
            let extras = ExtraScopes::new(list(&names[3..]));
            let chosen: Vec<String> = picks.iter().map(|i| names[*i].to_owned()).collect();
            let set = ScopeSet::parse_list(&chosen, &extras).expect("valid");
            let stored = ScopeSet::from_column(set.to_column().as_deref());
            prop_assert_eq!(stored.contains_name(names[probe]), chosen.iter().any(|c| c == names[probe]));
        }
    }
}
