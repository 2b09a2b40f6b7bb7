//! What can go wrong in an operation, in the product's words. Operations return
//! [`DomainError`]; adapters decide what each becomes for their audience: the JSON API's
//! problem with its status and stable code (`From<DomainError> for ApiError`), a page's form
//! shown again, a worker's retry. Callers that must tell outcomes apart match on variants,
//! never on codes.

use mailroom_storage::StorageError;
use mailroom_storage::bulk_jobs::JobState;
use secrecy::SecretString;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// A request value that cannot be used, and why.
    #[error("{detail}")]
    Invalid { field: &'static str, detail: String },
    /// Not an email address, and why.
    #[error("{detail}")]
    InvalidEmail { field: &'static str, detail: String },
    /// A new password the rules refuse, and why.
    #[error("{detail}")]
    WeakPassword { field: &'static str, detail: String },
    /// What the person typed to confirm does not match what it confirms.
    #[error("the confirmation does not match")]
    ConfirmationMismatch { field: &'static str },
    /// An emailed code, TOTP code or backup code that is wrong or has expired.
    #[error("the code is wrong or has expired")]
    InvalidCode,
    /// A TOTP code that was right but already used: the next one will do.
    #[error("the code was just used")]
    CodeAlreadyUsed,
    /// An emailed code whose guesses are spent.
    #[error("the code's guesses are spent")]
    CodeExhausted,
    /// A second factor refused during sign-in, with the challenge token for the next try.
    #[error("{refused}")]
    SecondFactorRefused {
        refused: Box<DomainError>,
        mfa_token: SecretString,
    },
    /// The address or password is wrong (the same for an address without an account).
    #[error("the email or password is wrong")]
    InvalidCredentials,
    /// The signed-in person's current password is wrong.
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    /// The account is disabled by the platform's administrators.
    #[error("the account is disabled")]
    AccountDisabled,
    /// Too many requests: the budget comes back after `retry_after` seconds.
    #[error("{detail}")]
    RateLimited {
        detail: &'static str,
        retry_after: u64,
    },
    /// Requests cannot be counted right now (the limit store is down, failing closed).
    #[error("the rate limiter is unavailable")]
    RateLimiterUnavailable,
    /// The sign-in challenge expired or was already completed.
    #[error("the sign-in challenge is gone")]
    InvalidMfaToken,
    /// The password was right; a second factor is owed, to be given with this token (or, in a
    /// token grant, with the password again).
    #[error("a second factor is owed")]
    MfaRequired { mfa_token: Option<SecretString> },
    /// Too many failed sign-ins: the address is locked until `until`.
    #[error("locked until {until}")]
    Locked {
        until: OffsetDateTime,
        now: OffsetDateTime,
    },
    /// In the way of something else, and what.
    #[error("{0:?}")]
    Conflict(Conflict),
    /// The invitation is unknown, expired, revoked or used.
    #[error("invalid invitation")]
    InvalidInvitation,
    /// Inviting members needs a team plan.
    #[error("a team plan is required")]
    TeamPlanRequired,
    /// The month's quota of `metric` is used up.
    #[error("the quota is used up")]
    QuotaExceeded {
        metric: mailroom_core::usage::Metric,
        quota: i64,
        used: i64,
    },
    /// A bulk job that the quota cannot cover whole.
    #[error("the job is larger than the quota left")]
    JobOverQuota {
        quota: i64,
        committed: i64,
        requested: usize,
    },
    /// An upload that cannot be a job, and why.
    #[error("{0}")]
    InvalidUpload(String),
    /// Nothing of that id that the caller may see: the same answer as for an id that does not
    /// exist.
    #[error("not found")]
    NotFound,
    /// Not allowed, and why.
    #[error("{0:?}")]
    Forbidden(Forbidden),
    /// A refresh token unknown, expired, revoked or reused: sign in again.
    #[error("the refresh token is not valid")]
    InvalidGrant,
    /// The database does not answer: try again later.
    #[error("the database is not reachable")]
    DatabaseUnreachable,
    /// The database is too busy to take the write now (it kept conflicting with others, or
    /// did not answer in time): nothing was written; try again shortly.
    #[error("the database is busy")]
    DatabaseBusy,
    /// A message that cannot be sent as asked, and why.
    #[error("{0:?}")]
    Sending(SendRefusal),
    /// An endpoint URL that webhooks may not go to, and why.
    #[error("{0:?}")]
    WebhookUrl(crate::webhook_sender::UrlRefusal),
    /// A sign-in, link or connection through an OAuth provider did not go through, and why.
    #[error("{0:?}")]
    ProviderRefused(ProviderFailure),
    /// A failure of ours: logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Why an action is not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forbidden {
    /// The signed-in account owes the second-factor setup its role requires.
    MfaSetupRequired,
    /// Only a super-admin may.
    SuperAdminOnly,
    /// This needs a sign-in from the last few minutes.
    RecentAuthRequired,
    /// Only the organization's owner or an admin may.
    NotAManager,
    /// The setup link is wrong, expired or used.
    SetupTokenInvalid,
    /// Only the organization's owner may.
    OwnerOnly,
    /// Members may not create API keys in this organization.
    KeysForManagersOnly,
    /// Only owners and admins connect mail accounts, unless the organization lets members.
    AccountsForManagersOnly,
    /// Only owners and admins may create keys that manage keys or read the audit log.
    KeyPowersForManagersOnly,
    /// The API key lacks the scope the action needs.
    MissingScope(mailroom_core::api_keys::Scope),
    /// The invitation was sent to another address.
    InvitationForAnotherAddress,
    /// Only a browser session may: an access token cannot add a way into the account.
    BrowserSessionRequired,
}

/// Why a message cannot be sent as asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendRefusal {
    /// No active account of the organization sends as the `from` address.
    FromNotConnected,
    /// A header the message may not set (a structural one, or not a header name).
    HeaderNotAllowed(String),
    /// The composed message is over the limit.
    MessageTooLarge {
        limit: usize,
    },
    /// Every recipient is on the suppression list.
    AllSuppressed,
    /// The idempotency key went with another request.
    IdempotencyKeyReused,
    /// A request with the idempotency key is under way.
    IdempotencyKeyInProgress,
    InvalidIdempotencyKey,
    /// The message is under way or done.
    NotCancelable,
}

/// Why a flow through an OAuth provider failed: audited by [`ProviderFailure::reason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderFailure {
    /// The callback came without the flow's cookie: expired, or another browser.
    FlowMissing,
    /// The callback's state is not the flow's.
    StateMismatch,
    /// The flow was answered already.
    StateReused,
    /// The provider answered the browser with an error (the user declined, say).
    ProviderError,
    /// The provider refused the code, or could not be reached.
    Exchange,
    /// The ID token failed a check.
    IdToken(mailroom_oauth::Rejection),
    /// The provider does not vouch for the address.
    EmailUnverified,
    /// An account has the address: its owner signs in as before and links the provider.
    AccountExists,
    /// Another account has this identity linked.
    IdentityTaken,
    /// The flow was started by another signed-in user than the one it comes back to.
    WrongUser,
    /// Google gave no refresh token: the account could not be used offline.
    NoRefreshToken,
    /// The user granted none of the Gmail scopes asked for.
    ScopesRefused,
    /// A reconnection consented as another Google account than the account's.
    OtherGoogleAccount,
}

impl ProviderFailure {
    pub fn reason(self) -> &'static str {
        match self {
            ProviderFailure::FlowMissing => "flow_missing",
            ProviderFailure::StateMismatch => "state_mismatch",
            ProviderFailure::StateReused => "state_reused",
            ProviderFailure::ProviderError => "provider_error",
            ProviderFailure::Exchange => "code_exchange",
            ProviderFailure::IdToken(rejection) => rejection.as_str(),
            ProviderFailure::EmailUnverified => "email_verified",
            ProviderFailure::AccountExists => "account_exists",
            ProviderFailure::IdentityTaken => "identity_taken",
            ProviderFailure::WrongUser => "wrong_user",
            ProviderFailure::NoRefreshToken => "no_refresh_token",
            ProviderFailure::ScopesRefused => "scopes_refused",
            ProviderFailure::OtherGoogleAccount => "other_google_account",
        }
    }
}

/// What stands in an action's way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// A second factor's setup was confirmed with no setup started.
    MfaNotPending,
    /// A second factor is already on (turn it off first to change it).
    MfaAlreadyEnabled,
    /// The second factor is not on.
    MfaNotEnabled,
    /// The account owns an organization with other members.
    OwnershipTransferRequired,
    /// The owner's role changes only by a transfer of the ownership.
    OwnershipIsTransferred,
    /// The organization has as many members as its plan allows.
    MemberLimitReached,
    /// Already a member of the organization.
    AlreadyMember,
    /// Joining would delete the personal organization: it must be said so.
    LeaveCurrentOrgRequired,
    /// A member of an organization with other members.
    AlreadyInAnOrg,
    /// A super-admin disabling their own account.
    CannotDisableYourself,
    /// The organization has as many bulk jobs open as its plan allows.
    TooManyJobs { limit: i32 },
    /// The job has already ended (done, failed or cancelled).
    JobEnded { status: JobState },
    /// An account with the address exists already.
    AccountExists,
    /// The setup was started again while this one was confirmed.
    MfaSetupRestarted,
    /// The identity is the account's last way to sign in (no password, no other identity).
    LastWayIn,
    /// This installation has no `[oidc.google]`: Google accounts cannot be connected.
    GoogleNotConfigured,
    /// The account's grant was refused: it must be connected again.
    AccountNeedsReconnect,
}

impl From<StorageError> for DomainError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Contention { .. } | StorageError::Timeout => {
                tracing::warn!(%error, "a write was refused: the database is busy");
                DomainError::DatabaseBusy
            }
            error => DomainError::Internal(error.into()),
        }
    }
}

impl DomainError {
    /// A failure of ours, from anything that can say what it was.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        DomainError::Internal(cause.into())
    }

    /// The same refusal, about the request field of another name (a form's `password` is the
    /// API's `new_password`).
    pub fn for_field(self, name: &'static str) -> Self {
        match self {
            DomainError::Invalid { detail, .. } => DomainError::Invalid {
                field: name,
                detail,
            },
            DomainError::InvalidEmail { detail, .. } => DomainError::InvalidEmail {
                field: name,
                detail,
            },
            DomainError::WeakPassword { detail, .. } => DomainError::WeakPassword {
                field: name,
                detail,
            },
            other => other,
        }
    }

    pub fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        DomainError::Invalid {
            field,
            detail: detail.into(),
        }
    }
}
