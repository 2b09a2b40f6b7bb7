//! Organizations and who may do what in them (docs/security.md#roles, #invitations): the roles, and the rules for
//! changing them, removing members and inviting. Pure functions of roles, so that every rule
//! is tested once, here, and the handlers only ask.

use std::time::Duration;

/// An invitation can be accepted for this long (docs/security.md#invitations).
pub const INVITATION_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// An organization's name, in characters.
pub const MAX_ORG_NAME: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OrgRole {
    Member,
    Admin,
    Owner,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Owner => "owner",
            OrgRole::Admin => "admin",
            OrgRole::Member => "member",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "owner" => Some(OrgRole::Owner),
            "admin" => Some(OrgRole::Admin),
            "member" => Some(OrgRole::Member),
            _ => None,
        }
    }

    /// Owners and admins manage the organization: its settings, members and invitations.
    pub fn manages(self) -> bool {
        self >= OrgRole::Admin
    }
}

/// A plan's id. The plans are the `plans` table's rows, each with its limits: `free` and
/// `team` ship, and an operator may add more.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct PlanId(String);

impl PlanId {
    pub fn new(id: impl Into<String>) -> Self {
        PlanId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for PlanId {
    fn from(id: String) -> Self {
        PlanId(id)
    }
}

impl std::fmt::Display for PlanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a change of roles or members is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Only owners and admins manage members.
    NotAManager,
    /// Only the owner makes or unmakes admins.
    OwnerOnly,
    /// The owner's role changes only by an explicit transfer of ownership.
    OwnershipIsTransferred,
}

/// May `actor` give `target` (whose role is `current`) the role `new`?
pub fn may_change_role(actor: OrgRole, current: OrgRole, new: OrgRole) -> Result<(), Refusal> {
    if !actor.manages() {
        return Err(Refusal::NotAManager);
    }
    if current == OrgRole::Owner || new == OrgRole::Owner {
        return Err(Refusal::OwnershipIsTransferred);
    }
    if (current == OrgRole::Admin || new == OrgRole::Admin) && actor != OrgRole::Owner {
        return Err(Refusal::OwnerOnly);
    }
    Ok(())
}

/// May `actor` remove a member whose role is `target`? Anyone but the owner may leave
/// (`themselves`); the owner must hand over first.
pub fn may_remove(actor: OrgRole, target: OrgRole, themselves: bool) -> Result<(), Refusal> {
    if target == OrgRole::Owner {
        return Err(Refusal::OwnershipIsTransferred);
    }
    if themselves {
        return Ok(());
    }
    if !actor.manages() {
        return Err(Refusal::NotAManager);
    }
    if target == OrgRole::Admin && actor != OrgRole::Owner {
        return Err(Refusal::OwnerOnly);
    }
    Ok(())
}

/// May `actor` invite someone as `role`? Inviting an admin is making one.
pub fn may_invite(actor: OrgRole, role: OrgRole) -> Result<(), Refusal> {
    may_change_role(actor, OrgRole::Member, role)
}

#[cfg(test)]
mod tests {
    use super::OrgRole::{Admin, Member, Owner};
    use super::*;

    #[test]
    fn only_the_owner_makes_and_unmakes_admins() {
        assert_eq!(may_change_role(Owner, Member, Admin), Ok(()));
        assert_eq!(may_change_role(Owner, Admin, Member), Ok(()));
        assert_eq!(
            may_change_role(Admin, Member, Admin),
            Err(Refusal::OwnerOnly)
        );
        assert_eq!(
            may_change_role(Admin, Admin, Member),
            Err(Refusal::OwnerOnly)
        );
        assert_eq!(may_change_role(Admin, Member, Member), Ok(()));
        assert_eq!(
            may_change_role(Member, Member, Admin),
            Err(Refusal::NotAManager)
        );
        assert_eq!(
            may_change_role(Owner, Member, Owner),
            Err(Refusal::OwnershipIsTransferred)
        );
        assert_eq!(
            may_change_role(Owner, Owner, Admin),
            Err(Refusal::OwnershipIsTransferred)
        );
    }

    #[test]
    fn members_leave_managers_remove_and_the_owner_stays() {
        assert_eq!(may_remove(Member, Member, true), Ok(()));
        assert_eq!(may_remove(Admin, Admin, true), Ok(()));
        assert_eq!(
            may_remove(Owner, Owner, true),
            Err(Refusal::OwnershipIsTransferred)
        );
        assert_eq!(may_remove(Member, Member, false), Err(Refusal::NotAManager));
        assert_eq!(may_remove(Admin, Member, false), Ok(()));
        assert_eq!(may_remove(Admin, Admin, false), Err(Refusal::OwnerOnly));
        assert_eq!(may_remove(Owner, Admin, false), Ok(()));
    }

    #[test]
    fn inviting_an_admin_is_making_one() {
        assert_eq!(may_invite(Owner, Admin), Ok(()));
        assert_eq!(may_invite(Admin, Admin), Err(Refusal::OwnerOnly));
        assert_eq!(may_invite(Admin, Member), Ok(()));
        assert_eq!(may_invite(Member, Member), Err(Refusal::NotAManager));
        assert_eq!(
            may_invite(Owner, Owner),
            Err(Refusal::OwnershipIsTransferred)
        );
        assert_eq!(OrgRole::parse("admin"), Some(Admin));
        assert_eq!(OrgRole::parse("root"), None);
    }
}
