//! API keys (docs/security.md#api-key-format, #api-key-scopes): what a key may do. A key acts for its organization with exactly
//! its scopes; account routes (`/v1/me…`, the team) are for people, never for keys.

use std::fmt;

/// What a key may be allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Verify,
    Send,
    MailboxRead,
    AuditRead,
    KeysManage,
    AccountsManage,
    WebhooksManage,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::Verify,
        Scope::Send,
        Scope::MailboxRead,
        Scope::AuditRead,
        Scope::KeysManage,
        Scope::AccountsManage,
        Scope::WebhooksManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Verify => "verify",
            Scope::Send => "send",
            Scope::MailboxRead => "mailbox:read",
            Scope::AuditRead => "audit:read",
            Scope::KeysManage => "keys:manage",
            Scope::AccountsManage => "accounts:manage",
            Scope::WebhooksManage => "webhooks:manage",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == text)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a key stopped working before it expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// Someone revoked it.
    Revoked,
    /// The person who created it left the organization.
    CreatorLeft,
    /// The person who created it was removed from the organization.
    CreatorRemoved,
    /// The person who created it was disabled.
    CreatorDisabled,
}

impl Revocation {
    const ALL: [Revocation; 4] = [
        Revocation::Revoked,
        Revocation::CreatorLeft,
        Revocation::CreatorRemoved,
        Revocation::CreatorDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Revocation::Revoked => "revoked",
            Revocation::CreatorLeft => "creator_left",
            Revocation::CreatorRemoved => "creator_removed",
            Revocation::CreatorDisabled => "creator_disabled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }

    /// In words, for the key list.
    pub fn describe(self) -> &'static str {
        match self {
            Revocation::Revoked => "revoked",
            Revocation::CreatorLeft => "revoked: its creator left the organization",
            Revocation::CreatorRemoved => "revoked: its creator was removed from the organization",
            Revocation::CreatorDisabled => "revoked: its creator's account was disabled",
        }
    }
}

/// A key's scopes: a set, kept sorted so that it stores and compares as one text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// From names; `Err` names the first unknown one. Repeats collapse; none is refused.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut scopes = names
            .into_iter()
            .map(|name| Scope::parse(name).ok_or_else(|| name.to_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(String::new());
        }
        Ok(Self(scopes))
    }

    /// As stored: the names, space-separated. Unknown names in storage are dropped (a scope
    /// retired by a later version grants nothing).
    pub fn from_stored(text: &str) -> Self {
        let mut scopes: Vec<Scope> = text.split_whitespace().filter_map(Scope::parse).collect();
        scopes.sort();
        scopes.dedup();
        Self(scopes)
    }

    pub fn to_stored(&self) -> String {
        self.names().collect::<Vec<_>>().join(" ")
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().map(|scope| scope.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_store_and_refuse_unknown_names() {
        let scopes = Scopes::parse(["send", "verify", "send"]).unwrap();
        assert_eq!(scopes.to_stored(), "verify send");
        assert_eq!(Scopes::from_stored("verify send"), scopes);
        assert!(scopes.contains(Scope::Send) && !scopes.contains(Scope::KeysManage));
        assert_eq!(Scopes::parse(["verify", "root"]), Err("root".to_owned()));
        assert!(Scopes::parse([]).is_err());
        assert_eq!(
            Scopes::from_stored("verify retired:scope").to_stored(),
            "verify"
        );
    }
}
