//! The audit log's entries and their hash chain (docs/security.md#audit-events, #audit-chain).
//!
//! Each organization's entries form a chain: an entry's hash covers its own fields and the
//! hash of the entry before it, so editing or deleting an entry inside the retention window
//! breaks every link after it. Events that belong to no organization (a failed sign-in for an
//! unknown address, platform administration) chain under [`PLATFORM_SCOPE`].

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::ids::{ApiKeyId, OrgId, SessionId, UserId};
use crate::request_id::RequestId;

/// The chain of events that belong to no organization.
pub const PLATFORM_SCOPE: Uuid = Uuid::nil();
/// Entries older than this are purged; the purge cannot be turned off (docs/security.md#audit-retention).
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
    AccountExported,
    AccountDeleted,
    MemberRoleChanged,
    MemberRemoved,
    OwnershipTransferred,
    InvitationCreated,
    InvitationRevoked,
    InvitationAccepted,
    PlanChanged,
    UserDisabled,
    UserEnabled,
    UserUnlocked,
    ApiKeyCreated,
    ApiKeyRevoked,
    ApiKeyUsedAfterRevocation,
    MailAccountConnected,
    MailAccountDisconnected,
    /// An account's settings changed (its send limits).
    MailAccountUpdated,
    /// The provider refused the account's grant: it must be connected again.
    MailAccountNeedsReconnect,
    /// A disconnected account's grant could not be revoked at its provider.
    MailAccountRevocationFailed,
    /// Connecting an account through its provider was refused, with the reason in the target.
    MailAccountConnectFailed,
    /// A message accepted for delivery: its account, recipient count and size.
    EmailAccepted,
    /// An account made by a provider's sign-in.
    SignupByProvider,
    /// A sign-in or link through a provider refused, with its reason in the target.
    ProviderSigninFailed,
    IdentityLinked,
    IdentityUnlinked,
    WebhookCreated,
    WebhookUpdated,
    WebhookDeleted,
    /// Its deliveries failed for days: mailroom disabled it.
    WebhookDisabled,
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
            Action::AccountExported => "account.exported",
            Action::AccountDeleted => "account.deleted",
            Action::MemberRoleChanged => "org.member_role_changed",
            Action::MemberRemoved => "org.member_removed",
            Action::OwnershipTransferred => "org.ownership_transferred",
            Action::InvitationCreated => "org.invitation_created",
            Action::InvitationRevoked => "org.invitation_revoked",
            Action::InvitationAccepted => "org.invitation_accepted",
            Action::PlanChanged => "admin.plan_changed",
            Action::UserDisabled => "admin.user_disabled",
            Action::UserEnabled => "admin.user_enabled",
            Action::UserUnlocked => "admin.user_unlocked",
            Action::ApiKeyCreated => "api_key.created",
            Action::ApiKeyRevoked => "api_key.revoked",
            Action::ApiKeyUsedAfterRevocation => "api_key.used_after_revocation",
            Action::MailAccountConnected => "mail_account.connected",
            Action::MailAccountDisconnected => "mail_account.disconnected",
            Action::MailAccountUpdated => "mail_account.updated",
            Action::MailAccountNeedsReconnect => "mail_account.needs_reconnect",
            Action::MailAccountRevocationFailed => "mail_account.revocation_failed",
            Action::MailAccountConnectFailed => "mail_account.connect_failed",
            Action::EmailAccepted => "email.accepted",
            Action::SignupByProvider => "signup.provider",
            Action::ProviderSigninFailed => "signin.provider_failed",
            Action::IdentityLinked => "identity.linked",
            Action::IdentityUnlinked => "identity.unlinked",
            Action::WebhookCreated => "webhook.created",
            Action::WebhookUpdated => "webhook.updated",
            Action::WebhookDeleted => "webhook.deleted",
            Action::WebhookDisabled => "webhook.disabled",
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
    /// The normalized address of the person the entry is about, when it is about one: what
    /// account deletion erases by (docs/security.md#account-deletion), by equality, never by a match inside `target`.
    pub subject: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub session_id: Option<SessionId>,
    pub api_key_id: Option<ApiKeyId>,
    pub request_id: Option<RequestId>,
}

impl AuditEvent {
    /// An entry in the organization's chain by no one (the system noticed), with nothing else
    /// said: callers add the target with struct update syntax.
    pub fn by_the_system(org_id: OrgId, action: Action, outcome: Outcome) -> Self {
        Self {
            org_id: Some(org_id),
            actor: None,
            action,
            outcome,
            target: None,
            subject: None,
            ip: None,
            user_agent: None,
            session_id: None,
            api_key_id: None,
            request_id: None,
        }
    }

    /// The chain the event belongs to.
    pub fn scope(&self) -> Uuid {
        self.org_id.map_or(PLATFORM_SCOPE, |org| org.as_uuid())
    }
}

/// The personal fields of an entry: who, about whom or what, from where. The chain covers a
/// keyed digest of them rather than the fields themselves, so that erasing them when an
/// account is deleted (docs/security.md#account-deletion) keeps every chain verifiable; an edit of an entry that was not
/// erased still breaks its digest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersonalFields {
    pub actor: Option<Uuid>,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub subject: Option<String>,
}

/// The fields an entry's hash covers, in the order they are hashed. Storage reads them back
/// in this shape to verify the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainedFields {
    pub id: Uuid,
    pub scope: Uuid,
    pub seq: i64,
    pub occurred_at_ms: i64,
    pub action: String,
    pub outcome: String,
    pub session_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    pub request_id: Option<Uuid>,
    /// [`personal_digest`] of the entry's personal fields.
    pub personal_digest: Vec<u8>,
}

/// HMAC-SHA256 under the deployment's audit key over length-prefixed parts: no two different
/// sequences of parts encode alike.
struct Encoder(Hmac<Sha256>);

impl Encoder {
    fn new(key: &[u8], label: &[u8]) -> Self {
        let mut encoder = Self(
            <Hmac<Sha256> as Mac>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
        );
        encoder.put(label);
        encoder
    }

    fn put(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    /// An absent value and an empty one encode differently: a presence byte, then the bytes.
    fn put_optional(&mut self, value: Option<&[u8]>) {
        match value {
            None => self.put(&[0]),
            Some(bytes) => self.put(&[&[1][..], bytes].concat()),
        }
    }

    fn finish(self) -> Vec<u8> {
        self.0.finalize().into_bytes().to_vec()
    }
}

/// The keyed digest of an entry's personal fields. Keyed, because an IP address or an email
/// address is easy to guess from a plain hash.
pub fn personal_digest(key: &[u8], entry_id: Uuid, fields: &PersonalFields) -> Vec<u8> {
    let mut encoder = Encoder::new(key, b"mailroom-audit-personal-v1");
    // The entry's own id too: two erased entries of one person must not be linkable by
    // equal digests.
    encoder.put(entry_id.as_bytes());
    encoder.put_optional(fields.actor.as_ref().map(|id| &id.as_bytes()[..]));
    for text in [&fields.target, &fields.ip, &fields.user_agent] {
        encoder.put_optional(text.as_deref().map(str::as_bytes));
    }
    // A trailing part only when present: entries written before subjects existed keep the
    // digest they were written with, and one more part cannot encode like one fewer.
    if let Some(subject) = &fields.subject {
        encoder.put(subject.as_bytes());
    }
    encoder.finish()
}

/// The hash of an entry: HMAC-SHA256, under the deployment's audit key, over the previous
/// entry's hash and every field. Without the key (it derives from the root key, which the
/// database holds only wrapped by the master key) someone who can write to the database
/// cannot forge a chain that verifies.
pub fn chain_hash(key: &[u8], previous: &[u8], fields: &ChainedFields) -> Vec<u8> {
    let mut encoder = Encoder::new(key, b"mailroom-audit-v2");
    encoder.put(previous);
    encoder.put(fields.id.as_bytes());
    encoder.put(fields.scope.as_bytes());
    encoder.put(&fields.seq.to_be_bytes());
    encoder.put(&fields.occurred_at_ms.to_be_bytes());
    encoder.put(fields.action.as_bytes());
    encoder.put(fields.outcome.as_bytes());
    for id in [fields.session_id, fields.api_key_id, fields.request_id] {
        encoder.put_optional(id.as_ref().map(|id| &id.as_bytes()[..]));
    }
    encoder.put(&fields.personal_digest);
    encoder.finish()
}

/// The proof that an entry's personal fields were erased by mailroom (docs/security.md#account-deletion), not blanked
/// by someone with access to the database: a MAC of the entry id and the erasure time.
pub fn erasure_mac(key: &[u8], entry_id: Uuid, erased_at_ms: i64) -> Vec<u8> {
    let mut encoder = Encoder::new(key, b"mailroom-audit-erasure-v1");
    encoder.put(entry_id.as_bytes());
    encoder.put(&erased_at_ms.to_be_bytes());
    encoder.finish()
}

/// A chain's head: its newest entry, and where the chain legitimately starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainHead {
    pub scope: Uuid,
    pub seq: i64,
    pub hash: Vec<u8>,
    pub occurred_at_ms: i64,
    /// Set by the purge, before `first_seq` existed, when it removed the whole chain.
    pub purged_through_ms: Option<i64>,
    /// The seq of the chain's oldest entry: 1, until the retention purge moves it past what
    /// it removed (`seq + 1` once it removed the whole chain). Nothing else moves it. `None`
    /// only on a head written before it existed.
    pub first_seq: Option<i64>,
}

/// The MAC of a chain's head, under the audit key: a head rewritten to hide deleted entries
/// does not verify.
pub fn head_mac(key: &[u8], head: &ChainHead) -> Vec<u8> {
    let mut encoder = Encoder::new(key, b"mailroom-audit-head-v1");
    encoder.put(head.scope.as_bytes());
    encoder.put(&head.seq.to_be_bytes());
    encoder.put(&head.hash);
    encoder.put(&head.occurred_at_ms.to_be_bytes());
    encoder.put_optional(
        head.purged_through_ms
            .map(i64::to_be_bytes)
            .as_ref()
            .map(|b| &b[..]),
    );
    // Trailing and only when present, like the subject of a personal digest: heads written
    // before it existed keep their MAC.
    if let Some(first_seq) = head.first_seq {
        encoder.put(&first_seq.to_be_bytes());
    }
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn personal() -> PersonalFields {
        PersonalFields {
            actor: None,
            target: Some("a".into()),
            ip: Some("127.0.0.1".into()),
            user_agent: None,
            subject: None,
        }
    }

    fn fields() -> ChainedFields {
        ChainedFields {
            id: Uuid::now_v7(),
            scope: PLATFORM_SCOPE,
            seq: 1,
            occurred_at_ms: 1_700_000_000_000,
            action: "signin.failed".into(),
            outcome: "failure".into(),
            session_id: None,
            api_key_id: None,
            request_id: None,
            personal_digest: personal_digest(b"key", Uuid::nil(), &personal()),
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
        assert_ne!(hash, chain_hash(b"another key", &[0; 32], &base));
        let mut session = base.clone();
        session.session_id = Some(Uuid::nil());
        assert_ne!(hash, chain_hash(b"key", &[0; 32], &session));
    }

    #[test]
    fn every_personal_field_counts_and_absent_is_not_empty() {
        let base = personal_digest(b"key", Uuid::nil(), &personal());
        assert_ne!(base, personal_digest(b"key", Uuid::max(), &personal()));
        // Moving bytes between neighbouring fields changes the digest too.
        let shifted = PersonalFields {
            target: Some("a1".into()),
            ip: Some("27.0.0.1".into()),
            ..personal()
        };
        assert_ne!(base, personal_digest(b"key", Uuid::nil(), &shifted));
        let empty = PersonalFields {
            user_agent: Some(String::new()),
            ..personal()
        };
        assert_ne!(base, personal_digest(b"key", Uuid::nil(), &empty));
        let actor = PersonalFields {
            actor: Some(Uuid::nil()),
            ..personal()
        };
        assert_ne!(base, personal_digest(b"key", Uuid::nil(), &actor));
        let subject = PersonalFields {
            subject: Some(String::new()),
            ..personal()
        };
        assert_ne!(base, personal_digest(b"key", Uuid::nil(), &subject));
        assert_ne!(
            base,
            personal_digest(b"other key", Uuid::nil(), &personal())
        );
    }

    #[test]
    fn a_heads_start_counts() {
        let head = ChainHead {
            scope: PLATFORM_SCOPE,
            seq: 11,
            hash: vec![7; 32],
            occurred_at_ms: 1_700_000_000_000,
            purged_through_ms: None,
            first_seq: Some(1),
        };
        let moved = ChainHead {
            first_seq: Some(11),
            ..head.clone()
        };
        let unset = ChainHead {
            first_seq: None,
            ..head.clone()
        };
        assert_ne!(head_mac(b"key", &head), head_mac(b"key", &moved));
        assert_ne!(head_mac(b"key", &head), head_mac(b"key", &unset));
    }
}
