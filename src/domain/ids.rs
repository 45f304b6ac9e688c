//! Public identifiers: a type prefix and 22 random base62 characters (~131 bits), so ids are
//! neither guessable nor sequential and say what they name (`ld_3kTq9…`).

use crate::domain::base62;

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
pub const WEBHOOK: &str = "wh";
pub const WEBHOOK_MESSAGE: &str = "msg";

/// An id of one kind, so that a function taking a workspace and a user cannot be handed them
/// the other way round. The same string in the database (`sqlx(transparent)`) and in JSON
/// (`serde(transparent)`); read as a `&str` through `Deref`.
macro_rules! id_type {
    ($name:ident, $prefix:expr) => {
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn generate() -> $name {
                $name(new_id($prefix))
            }

            /// An id of this kind as a client or operator typed it: the prefix and 22 base62
            /// characters, or `None`.
            pub fn parse(text: &str) -> Option<$name> {
                let random = text.strip_prefix($prefix)?.strip_prefix('_')?;
                let well_formed =
                    random.len() == RANDOM_LEN && random.bytes().all(|b| b.is_ascii_alphanumeric());
                well_formed.then(|| $name(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> $name {
                $name(id)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

id_type!(WorkspaceId, WORKSPACE);
id_type!(UserId, USER);
id_type!(KeyId, API_KEY);
id_type!(LeadId, LEAD);
id_type!(InvitationId, INVITATION);
id_type!(WebhookId, WEBHOOK);
id_type!(MessageId, WEBHOOK_MESSAGE);

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
        assert!(KeyId::generate().starts_with("key_"));
    }

    #[test]
    fn parse_takes_only_an_id_of_its_own_kind() {
        let key = KeyId::generate();
        assert_eq!(KeyId::parse(&key), Some(key.clone()));
        assert_eq!(LeadId::parse(&key), None);
        for bad in [
            "",
            "key_",
            "key_short",
            "keyx_aaaaaaaaaaaaaaaaaaaaaa",
            "key_aaaaaaaaaaaaaaaaaaaaa!",
        ] {
            assert_eq!(KeyId::parse(bad), None, "{bad}");
        }
        assert_eq!(KeyId::parse(&format!("{key}a")), None);
    }
}
