//! The audit log's entries and their hash chain (AUD-1, AUD-3).
//!
//! Each organization's entries form a chain: an entry's hash covers its own fields and the
//! hash of the entry before it, so editing or deleting an entry inside the retention window
//! breaks every link after it. Events that belong to no organization (a failed sign-in for an
//! unknown address, platform administration) chain under [`PLATFORM_SCOPE`].

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::ids::{OrgId, SessionId, UserId};
use crate::request_id::RequestId;

/// The chain of events that belong to no organization.
pub const PLATFORM_SCOPE: Uuid = Uuid::nil();
/// Entries older than this are purged; the purge cannot be turned off (AUD-2).
pub const RETENTION: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 60 * 60);

/// What happened. The names are stable: exports and alerts match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    SignupRequested,
    EmailVerified,
    SigninSucceeded,
    SigninFailed,
    AccountLocked,
    SessionRevoked,
    PasswordChanged,
    PasswordReset,
    SetupCompleted,
    AccountCreatedByAdmin,
    TokenFamilyRevoked,
    SigninFromNewDevice,
    OrgSettingsChanged,
    MfaEnabled,
    MfaDisabled,
    BackupCodesRegenerated,
    BackupCodeUsed,
    TrustedDeviceAdded,
    TrustedDeviceRevoked,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SignupRequested => "signup.requested",
            Action::EmailVerified => "signup.email_verified",
            Action::SigninSucceeded => "signin.succeeded",
            Action::SigninFailed => "signin.failed",
            Action::AccountLocked => "account.locked",
            Action::SessionRevoked => "session.revoked",
            Action::PasswordChanged => "password.changed",
            Action::PasswordReset => "password.reset",
            Action::SetupCompleted => "setup.completed",
            Action::AccountCreatedByAdmin => "admin.account_created",
            Action::TokenFamilyRevoked => "token.family_revoked",
            Action::SigninFromNewDevice => "signin.new_device",
            Action::OrgSettingsChanged => "org.settings_changed",
            Action::MfaEnabled => "mfa.enabled",
            Action::MfaDisabled => "mfa.disabled",
            Action::BackupCodesRegenerated => "mfa.backup_codes_regenerated",
            Action::BackupCodeUsed => "mfa.backup_code_used",
            Action::TrustedDeviceAdded => "mfa.trusted_device_added",
            Action::TrustedDeviceRevoked => "mfa.trusted_device_revoked",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// One event, as recorded: who, in which organization, did what to what, from where.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub org_id: Option<OrgId>,
    pub actor: Option<UserId>,
    pub action: Action,
    pub outcome: Outcome,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub session_id: Option<SessionId>,
    pub api_key_id: Option<Uuid>,
    pub request_id: Option<RequestId>,
}

impl AuditEvent {
    /// The chain the event belongs to.
    pub fn scope(&self) -> Uuid {
        self.org_id.map_or(PLATFORM_SCOPE, |org| org.as_uuid())
    }
}

/// The fields an entry's hash covers, in the order they are hashed. Storage reads them back
/// in this shape to verify the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainedFields {
    pub id: Uuid,
    pub scope: Uuid,
    pub seq: i64,
    pub occurred_at_ms: i64,
    pub actor: Option<Uuid>,
    pub action: String,
    pub outcome: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub session_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    pub request_id: Option<Uuid>,
}

/// The hash of an entry: HMAC-SHA256, under the deployment's audit key, over the previous
/// entry's hash and every field, each length-prefixed so that no two different entries encode
/// alike. Without the key (it derives from the master key, which the database never holds)
/// someone who can write to the database cannot forge a chain that verifies.
pub fn chain_hash(key: &[u8], previous: &[u8], fields: &ChainedFields) -> Vec<u8> {
    let mut digest = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    let mut put = |bytes: &[u8]| {
        digest.update(&(bytes.len() as u64).to_be_bytes());
        digest.update(bytes);
    };
    // An absent value and an empty one encode differently: a presence byte, then the bytes.
    let optional = |value: Option<&[u8]>| match value {
        None => vec![0],
        Some(bytes) => [&[1][..], bytes].concat(),
    };
    let optional_uuid = |id: Option<Uuid>| optional(id.as_ref().map(|id| &id.as_bytes()[..]));
    let optional_text = |text: &Option<String>| optional(text.as_deref().map(str::as_bytes));
    put(b"mailroom-audit-v1");
    put(previous);
    put(fields.id.as_bytes());
    put(fields.scope.as_bytes());
    put(&fields.seq.to_be_bytes());
    put(&fields.occurred_at_ms.to_be_bytes());
    put(&optional_uuid(fields.actor));
    put(fields.action.as_bytes());
    put(fields.outcome.as_bytes());
    put(&optional_text(&fields.target));
    put(&optional_text(&fields.ip));
    put(&optional_text(&fields.user_agent));
    put(&optional_uuid(fields.session_id));
    put(&optional_uuid(fields.api_key_id));
    put(&optional_uuid(fields.request_id));
    digest.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> ChainedFields {
        ChainedFields {
            id: Uuid::now_v7(),
            scope: PLATFORM_SCOPE,
            seq: 1,
            occurred_at_ms: 1_700_000_000_000,
            actor: None,
            action: "signin.failed".into(),
            outcome: "failure".into(),
            target: Some("a".into()),
            ip: Some("127.0.0.1".into()),
            user_agent: None,
            session_id: None,
            api_key_id: None,
            request_id: None,
        }
    }

    #[test]
    fn every_field_and_the_previous_hash_count() {
        let base = fields();
        let hash = chain_hash(b"key", &[0; 32], &base);
        assert_ne!(hash, chain_hash(b"key", &[1; 32], &base));
        let mut edited = base.clone();
        edited.outcome = "success".into();
        assert_ne!(hash, chain_hash(b"key", &[0; 32], &edited));
        // Moving bytes between neighbouring fields changes the hash too.
        let mut shifted = base.clone();
        shifted.target = Some("a1".into());
        shifted.ip = Some("27.0.0.1".into());
        assert_ne!(hash, chain_hash(b"key", &[0; 32], &shifted));
        assert_ne!(hash, chain_hash(b"another key", &[0; 32], &base));
        // Absent is not empty.
        let mut empty = base.clone();
        empty.user_agent = Some(String::new());
        assert_ne!(hash, chain_hash(b"key", &[0; 32], &empty));
    }
}
