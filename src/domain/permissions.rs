//! The role rules of docs/api.md §6 as pure functions, so they can be tested exhaustively without a
//! database. Stores and handlers ask these functions; they never compare role strings themselves.

use crate::domain::ids::UserId;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }

    fn is_manager(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(text: String) -> Result<Role, String> {
        Role::parse(&text).ok_or_else(|| format!("unknown role '{text}'"))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which leads a role may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadVisibility {
    All,
    OwnOnly,
}

pub fn lead_visibility(role: Role) -> LeadVisibility {
    match role {
        Role::Member => LeadVisibility::OwnOnly,
        Role::Owner | Role::Admin | Role::Viewer => LeadVisibility::All,
    }
}

/// Why an action was refused; each maps to a docs/api.md §4 403 reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The record exists in the workspace but lies outside the user's data boundary.
    OutsideDataBoundary,
    /// The role may not perform this kind of action at all.
    InsufficientPermission,
}

pub fn can_see_lead(role: Role, user_id: &UserId, lead_owner_id: &UserId) -> Result<(), Denial> {
    match lead_visibility(role) {
        LeadVisibility::All => Ok(()),
        LeadVisibility::OwnOnly if user_id == lead_owner_id => Ok(()),
        LeadVisibility::OwnOnly => Err(Denial::OutsideDataBoundary),
    }
}

pub fn can_create_lead(role: Role) -> Result<(), Denial> {
    match role {
        Role::Viewer => Err(Denial::InsufficientPermission),
        Role::Owner | Role::Admin | Role::Member => Ok(()),
    }
}

/// Update and delete share one rule: managers touch every lead, members their own.
pub fn can_modify_lead(role: Role, user_id: &UserId, lead_owner_id: &UserId) -> Result<(), Denial> {
    match role {
        Role::Owner | Role::Admin => Ok(()),
        Role::Member if user_id == lead_owner_id => Ok(()),
        Role::Member => Err(Denial::OutsideDataBoundary),
        Role::Viewer => Err(Denial::InsufficientPermission),
    }
}

/// Owners and admins see and revoke every key of the workspace; the others only their own.
pub fn sees_all_keys(role: Role) -> bool {
    role.is_manager()
}

pub fn can_revoke_key(role: Role, user_id: &UserId, key_creator_id: &UserId) -> Result<(), Denial> {
    if role.is_manager() || user_id == key_creator_id {
        Ok(())
    } else {
        Err(Denial::InsufficientPermission)
    }
}

/// A rolled secret acts as the key's creator, so only the creator may receive one: anyone else
/// holding it would be impersonating them. Managers revoke other people's keys instead.
pub fn can_roll_key(user_id: &UserId, key_creator_id: &UserId) -> Result<(), Denial> {
    if user_id == key_creator_id {
        Ok(())
    } else {
        Err(Denial::InsufficientPermission)
    }
}

/// A key's own rate limit (`Some(0)`: none) is the operator's to relax: owners and admins may
/// set any value, the others only a limit at least as strict as the server's default
/// (`server_default` 0 means the server has none, so any positive limit is stricter).
pub fn can_set_rate_limit(role: Role, requested: i64, server_default: u32) -> Result<(), Denial> {
    let within_default =
        requested >= 1 && (server_default == 0 || requested <= i64::from(server_default));
    if role.is_manager() || within_default {
        Ok(())
    } else {
        Err(Denial::InsufficientPermission)
    }
}

/// What a rolled key's replacement is limited to: the old key's own limit (`Some`) only if the
/// person rolling may set that limit now, else the server's default (`None`). A creator who was
/// demoted since does not carry a manager's "no limit" into a fresh secret.
pub fn limit_kept_on_roll(roller: Role, old: Option<i64>, server_default: u32) -> Option<i64> {
    old.filter(|limit| can_set_rate_limit(roller, *limit, server_default).is_ok())
}

pub fn can_list_members(role: Role) -> Result<(), Denial> {
    if role.is_manager() {
        Ok(())
    } else {
        Err(Denial::InsufficientPermission)
    }
}

/// May `actor` give someone `new_role`, or change/remove a member who holds `target_role`
/// (`None` for someone not yet a member)? Admins manage everyone but owners, and cannot make
/// anyone an owner.
pub fn can_manage_member(
    actor: Role,
    target_role: Option<Role>,
    new_role: Option<Role>,
) -> Result<(), Denial> {
    match actor {
        Role::Owner => Ok(()),
        Role::Admin => {
            if target_role == Some(Role::Owner) || new_role == Some(Role::Owner) {
                Err(Denial::InsufficientPermission)
            } else {
                Ok(())
            }
        }
        Role::Member | Role::Viewer => Err(Denial::InsufficientPermission),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_matrix_matches_spec_table() {
        use Denial::*;
        // (role, see other's, create, modify other's, modify own)
        let expected = [
            (Role::Owner, Ok(()), Ok(()), Ok(()), Ok(())),
            (Role::Admin, Ok(()), Ok(()), Ok(()), Ok(())),
            (
                Role::Member,
                Err(OutsideDataBoundary),
                Ok(()),
                Err(OutsideDataBoundary),
                Ok(()),
            ),
            (
                Role::Viewer,
                Ok(()),
                Err(InsufficientPermission),
                Err(InsufficientPermission),
                Err(InsufficientPermission),
            ),
        ];
        let (me, other) = (UserId::generate(), UserId::generate());
        for (role, see_other, create, modify_other, modify_own) in expected {
            assert_eq!(can_see_lead(role, &me, &other), see_other, "{role} see");
            assert_eq!(can_see_lead(role, &me, &me), Ok(()), "{role} see own");
            assert_eq!(can_create_lead(role), create, "{role} create");
            assert_eq!(
                can_modify_lead(role, &me, &other),
                modify_other,
                "{role} modify"
            );
            assert_eq!(
                can_modify_lead(role, &me, &me),
                modify_own,
                "{role} modify own"
            );
        }
    }

    #[test]
    fn key_rules() {
        let (me, other) = (UserId::generate(), UserId::generate());
        for role in Role::ALL {
            assert_eq!(can_revoke_key(role, &me, &me), Ok(()));
            let managers = matches!(role, Role::Owner | Role::Admin);
            assert_eq!(sees_all_keys(role), managers);
            assert_eq!(can_revoke_key(role, &me, &other).is_ok(), managers);
        }
    }

    #[test]
    fn only_the_creator_rolls() {
        let (me, other) = (UserId::generate(), UserId::generate());
        assert_eq!(can_roll_key(&me, &me), Ok(()));
        assert_eq!(
            can_roll_key(&me, &other),
            Err(Denial::InsufficientPermission)
        );
    }

    #[test]
    fn rate_limits_beyond_the_default_are_for_managers() {
        for role in Role::ALL {
            let managers = matches!(role, Role::Owner | Role::Admin);
            assert!(can_set_rate_limit(role, 1, 60).is_ok());
            assert!(can_set_rate_limit(role, 60, 60).is_ok());
            assert_eq!(can_set_rate_limit(role, 61, 60).is_ok(), managers, "{role}");
            assert_eq!(can_set_rate_limit(role, 0, 60).is_ok(), managers, "{role}");
            assert_eq!(can_set_rate_limit(role, 0, 0).is_ok(), managers, "{role}");
            assert!(can_set_rate_limit(role, 1_000_000, 0).is_ok());
        }
    }

    #[test]
    fn a_roll_keeps_only_a_limit_the_roller_may_set() {
        for role in Role::ALL {
            let managers = matches!(role, Role::Owner | Role::Admin);
            assert_eq!(limit_kept_on_roll(role, None, 60), None);
            assert_eq!(limit_kept_on_roll(role, Some(30), 60), Some(30));
            let unlimited = limit_kept_on_roll(role, Some(0), 60);
            assert_eq!(unlimited, managers.then_some(0), "{role}");
            let above = limit_kept_on_roll(role, Some(500), 60);
            assert_eq!(above, managers.then_some(500), "{role}");
        }
    }

    #[test]
    fn member_management() {
        assert!(can_manage_member(Role::Owner, Some(Role::Owner), Some(Role::Admin)).is_ok());
        assert!(can_manage_member(Role::Admin, Some(Role::Member), Some(Role::Admin)).is_ok());
        assert!(can_manage_member(Role::Admin, None, Some(Role::Viewer)).is_ok());
        assert!(can_manage_member(Role::Admin, Some(Role::Owner), None).is_err());
        assert!(can_manage_member(Role::Admin, None, Some(Role::Owner)).is_err());
        assert!(can_manage_member(Role::Member, None, Some(Role::Viewer)).is_err());
        assert!(can_manage_member(Role::Viewer, Some(Role::Viewer), None).is_err());
    }

    #[test]
    fn role_round_trips() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("Owner"), None);
        assert_eq!(Role::parse("superuser"), None);
    }
}
