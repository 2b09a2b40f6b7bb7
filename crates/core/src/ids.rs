//! Typed identifiers: a user id cannot be passed where an organization id is expected.

use std::fmt;

use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7).
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A user account.
    UserId
);
id_type!(
    /// An organization: the tenant every piece of tenant data belongs to.
    OrgId
);
id_type!(
    /// A browser session (not its secret token).
    SessionId
);
id_type!(
    /// An invitation to join an organization (not its secret token).
    InvitationId
);
id_type!(
    /// A family of refresh tokens: one password grant and every token rotated from it.
    TokenFamilyId
);
id_type!(
    /// A job of the durable work queue (system mail, and every background job to come).
    JobId
);
id_type!(
    /// An organization's API key (not its secret, nor its public lookup id).
    ApiKeyId
);
id_type!(
    /// An entry of the verification log: one address checked once.
    VerificationId
);
id_type!(
    /// A browser trusted to skip the second factor for a while (not its secret cookie).
    TrustedDeviceId
);
id_type!(
    /// A mail account an organization connected: an SMTP relay, an IMAP mailbox, a Google account.
    MailAccountId
);
id_type!(
    /// A message an organization sent (or is sending) through one of its mail accounts.
    EmailId
);
id_type!(
    /// A provider identity linked to a user: their (issuer, subject) at an OpenID provider.
    IdentityId
);
id_type!(
    /// An organization's webhook endpoint: a URL told of the events it subscribed to.
    WebhookEndpointId
);
id_type!(
    /// One event told to webhook endpoints: its `webhook-id` on every delivery and retry.
    WebhookEventId
);
