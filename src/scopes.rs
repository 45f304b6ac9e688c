//! Key scopes: what a key itself may do, on top of (never beyond) its user's role. A key made
//! without scopes has all of them, as keys always had.

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

/// A set of scopes, stored as a space-separated list (NULL in the database means all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeSet(u8);

impl ScopeSet {
    pub fn all() -> ScopeSet {
        ScopeSet(Scope::ALL.iter().fold(0, |bits, s| bits | s.bit()))
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_all(self) -> bool {
        self == ScopeSet::all()
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// From the database column; `None` (and anything unreadable) is all scopes, the default.
    pub fn from_column(column: Option<&str>) -> ScopeSet {
        let Some(text) = column else {
            return ScopeSet::all();
        };
        let bits = text
            .split_whitespace()
            .filter_map(Scope::parse)
            .fold(0, |bits, s| bits | s.bit());
        ScopeSet(bits)
    }

    /// For the database column: `None` when the set is every scope.
    pub fn to_column(self) -> Option<String> {
        (!self.is_all()).then(|| self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" "))
    }

    /// Parses a request's list; the error names the unknown entries and the valid ones.
    pub fn parse_list(names: &[String]) -> Result<ScopeSet, String> {
        if names.is_empty() {
            return Err(format!(
                "must list at least one scope; valid scopes: {}",
                valid_list()
            ));
        }
        let unknown: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| Scope::parse(n).is_none())
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "unknown scope(s) {}; valid scopes: {}",
                unknown.join(", "),
                valid_list()
            ));
        }
        Ok(ScopeSet(
            names
                .iter()
                .filter_map(|n| Scope::parse(n))
                .fold(0, |bits, s| bits | s.bit()),
        ))
    }
}

pub fn valid_list() -> String {
    Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Serialize for ScopeSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_round_trip() {
        assert_eq!(ScopeSet::from_column(None), ScopeSet::all());
        assert_eq!(ScopeSet::all().to_column(), None);
        let read_only =
            ScopeSet::parse_list(&["leads:read".into(), "me:read".into()]).expect("valid");
        let column = read_only.to_column();
        assert_eq!(column.as_deref(), Some("me:read leads:read"));
        assert_eq!(ScopeSet::from_column(column.as_deref()), read_only);
        assert!(read_only.contains(Scope::LeadsRead));
        assert!(!read_only.contains(Scope::LeadsWrite));
    }

    #[test]
    fn unknown_and_empty_lists_are_refused_with_the_valid_ones() {
        let err = ScopeSet::parse_list(&["leads:delete".into()]).expect_err("unknown");
        assert!(err.contains("leads:delete") && err.contains("leads:write"));
        assert!(ScopeSet::parse_list(&[]).is_err());
    }

    #[test]
    fn serializes_as_names() {
        let json = serde_json::to_string(&ScopeSet::all()).expect("json");
        assert_eq!(json, r#"["me:read","leads:read","leads:write"]"#);
    }
}
