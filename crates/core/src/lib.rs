//! mailroom's domain core: types that validate on construction and the policies that act on
//! them. Nothing here performs I/O, so every rule can be tested in isolation and reused by the
//! server, the CLI and the workers alike.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod client_ip;
pub mod email;
pub mod gcra;
pub mod ids;
pub mod mail_account;
pub mod network;
pub mod org;
pub mod password_policy;
pub mod redact;
pub mod request_id;
pub mod usage;
pub mod webhook;

pub use client_ip::TrustedProxies;
pub use email::EmailAddress;
pub use ids::{
    ApiKeyId, EmailId, IdentityId, InvitationId, JobId, MailAccountId, OrgId, SessionId,
    TokenFamilyId, TrustedDeviceId, UserId, VerificationId, WebhookEndpointId, WebhookEventId,
};
pub use request_id::RequestId;
