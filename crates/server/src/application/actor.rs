//! Who acts: an account ([`Principal`], with how it authenticated) or an API key acting for its
//! organization ([`Caller::Key`]). The adapters establish them (the HTTP extractors in
//! [`crate::extract`]); the operations decide by them.

use mailroom_core::accounts::RECENT_AUTH;
use mailroom_core::api_keys::{Scope, Scopes};
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::{ApiKeyId, OrgId, SessionId, TokenFamilyId};
use mailroom_storage::accounts::{PlatformRole, User};
use time::OffsetDateTime;

use crate::audit::AuditTrail;
use crate::error::{DomainError, Forbidden};

/// A signed-in account.
#[derive(Clone)]
pub struct Principal {
    pub user: User,
    pub credential: Credential,
    /// When the owner last proved who they are: the sign-in that opened the session, or the
    /// password grant behind the access token (its `auth_time`; a refresh is no proof).
    pub authenticated_at: OffsetDateTime,
}

/// How the caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    Session(SessionId),
    /// An access token of this refresh-token family.
    AccessToken {
        family: TokenFamilyId,
    },
}

impl Principal {
    /// The browser session, for a cookie-authenticated request.
    pub fn session_id(&self) -> Option<SessionId> {
        match self.credential {
            Credential::Session(id) => Some(id),
            Credential::AccessToken { .. } => None,
        }
    }

    /// Refuses unless the owner signed in within [`RECENT_AUTH`] (docs/security.md#recent-auth).
    pub fn require_recent_auth(&self) -> Result<(), DomainError> {
        if OffsetDateTime::now_utc() - self.authenticated_at <= RECENT_AUTH {
            Ok(())
        } else {
            Err(DomainError::Forbidden(Forbidden::RecentAuthRequired))
        }
    }

    /// Whether this is one of the platform's super-admins.
    pub fn is_super_admin(&self) -> bool {
        self.user.platform_role == PlatformRole::SuperAdmin
    }

    /// A second factor (docs/security.md#mfa-required) is mandatory for this user and they have none yet.
    pub fn owes_second_factor_setup(&self) -> bool {
        self.user.second_factor_required() && !self.user.mfa_enabled
    }
}

/// An API key that authenticated a request.
#[derive(Clone, Debug)]
pub struct KeyCaller {
    pub key_id: ApiKeyId,
    pub org_id: OrgId,
    pub scopes: Scopes,
    pub requests_per_minute: u32,
    pub requests_per_day: u32,
}

/// Who calls a route that API keys may use.
pub enum Caller {
    Account(Principal),
    Key(KeyCaller),
}

impl Caller {
    /// The tenant every query of the request is scoped by.
    pub fn org_id(&self) -> OrgId {
        match self {
            Caller::Account(principal) => principal.user.org_id,
            Caller::Key(key) => key.org_id,
        }
    }

    /// A key must hold `scope`; an account must manage its organization when `manager` is
    /// set (scopes are for keys, roles for people).
    pub fn require(&self, scope: Scope, manager: bool) -> Result<(), DomainError> {
        match self {
            Caller::Key(key) if !key.scopes.contains(scope) => {
                Err(DomainError::Forbidden(Forbidden::MissingScope(scope)))
            }
            Caller::Account(principal) if manager && !principal.user.org_role.manages() => {
                Err(DomainError::Forbidden(Forbidden::NotAManager))
            }
            _ => Ok(()),
        }
    }

    /// An audit entry by this caller: the account's user, or the key.
    pub fn event(&self, trail: &AuditTrail, action: Action) -> AuditEvent {
        match self {
            Caller::Account(principal) => AuditEvent {
                session_id: principal.session_id(),
                ..trail.by_user(&principal.user, action, Outcome::Success)
            },
            Caller::Key(key) => AuditEvent {
                org_id: Some(key.org_id),
                api_key_id: Some(key.key_id),
                ..trail.event(action, Outcome::Success)
            },
        }
    }
}
