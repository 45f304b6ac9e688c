//! What a write changed that can make a cached key verification stale, in the form written to
//! the `key_events` log and sent to other instances.

use crate::domain::ids::{KeyId, UserId, WorkspaceId};

/// What changed, as written to `key_events` and sent over NOTIFY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    Key(KeyId),
    User(UserId),
    Member {
        workspace_id: WorkspaceId,
        user_id: UserId,
    },
    /// Every key of a workspace (renamed or deleted).
    Workspace(WorkspaceId),
    /// Not an invalidation: a key was created (or rolled) with this digest, for `KnownKeys`.
    KeyIssued([u8; 32]),
}

impl Invalidation {
    pub fn encode(&self) -> String {
        match self {
            Invalidation::Key(id) => format!("key:{id}"),
            Invalidation::User(id) => format!("user:{id}"),
            Invalidation::Workspace(id) => format!("workspace:{id}"),
            Invalidation::Member {
                workspace_id,
                user_id,
            } => format!("member:{workspace_id}:{user_id}"),
            Invalidation::KeyIssued(digest) => {
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                format!("issued:{hex}")
            }
        }
    }

    pub fn decode(text: &str) -> Option<Invalidation> {
        let (kind, rest) = text.split_once(':')?;
        match kind {
            "key" => Some(Invalidation::Key(rest.to_owned().into())),
            "user" => Some(Invalidation::User(rest.to_owned().into())),
            "workspace" => Some(Invalidation::Workspace(rest.to_owned().into())),
            "issued" => {
                let mut digest = [0u8; 32];
                if rest.len() != 64 {
                    return None;
                }
                for (i, byte) in digest.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(rest.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                Some(Invalidation::KeyIssued(digest))
            }
            "member" => {
                let (workspace_id, user_id) = rest.split_once(':')?;
                Some(Invalidation::Member {
                    workspace_id: workspace_id.to_owned().into(),
                    user_id: user_id.to_owned().into(),
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidations_round_trip() {
        for change in [
            Invalidation::Key("key_1".to_owned().into()),
            Invalidation::User("usr_1".to_owned().into()),
            Invalidation::Member {
                workspace_id: "ws_1".to_owned().into(),
                user_id: "usr_1".to_owned().into(),
            },
            Invalidation::Workspace("ws_1".to_owned().into()),
            Invalidation::KeyIssued([0xa7; 32]),
        ] {
            assert_eq!(Invalidation::decode(&change.encode()), Some(change));
        }
        assert_eq!(Invalidation::decode("nonsense"), None);
    }
}
