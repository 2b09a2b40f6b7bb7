//! The one error type of the HTTP edge and its RFC 9457 `application/problem+json` form
//! (docs/security.md#errors).
//!
//! A handler returns `Err(ApiError)`; the response it becomes carries the error in its
//! extensions, and the edge ([`crate::edge::problems`]) renders it once the request id is at
//! hand. Responses that the framework or a layer produced on its own (404, 405, 413, a panic)
//! are rendered there too, so every error response has the same shape.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailroom_core::RequestId;
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::error::{Conflict, DomainError, Forbidden, ProviderFailure, SendRefusal};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// What each domain outcome is for an API client: its status, its stable code, and the detail
/// people read. The codes never change meaning.
impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Invalid { field, detail } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", detail).with_field(field)
            }
            DomainError::InvalidEmail { field, detail } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_email", detail).with_field(field)
            }
            DomainError::WeakPassword { field, detail } => {
                ApiError::new(StatusCode::BAD_REQUEST, "weak_password", detail).with_field(field)
            }
            DomainError::ConfirmationMismatch { field } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "confirmation_mismatch",
                "Type the account's email address to confirm the deletion.",
            )
            .with_field(field),
            DomainError::AccountDisabled => ApiError::new(
                StatusCode::FORBIDDEN,
                "account_disabled",
                "This account is disabled: ask the platform's administrators.",
            ),
            DomainError::RateLimited {
                detail,
                retry_after,
            } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
                .with_retry_after(retry_after),
            DomainError::RateLimiterUnavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "rate_limiter_unavailable",
                "Requests cannot be counted right now; try again shortly.",
            )
            .with_retry_after(5),
            DomainError::InvalidCode => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_code",
                "The code is wrong or has expired.",
            )
            .with_field("code"),
            DomainError::CodeAlreadyUsed => ApiError::new(
                StatusCode::BAD_REQUEST,
                "code_already_used",
                "This code was just used; wait for the next one.",
            )
            .with_field("code"),
            DomainError::CodeExhausted => ApiError::new(
                StatusCode::BAD_REQUEST,
                "code_exhausted",
                "Too many wrong codes: request a new one once this one expires.",
            )
            .with_field("code"),
            DomainError::SecondFactorRefused { refused, mfa_token } => {
                ApiError::from(*refused).with_member("mfa_token", mfa_token.expose_secret())
            }
            DomainError::InvalidCredentials => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "The email address or the password is wrong.",
            ),
            DomainError::WrongCurrentPassword => ApiError::new(
                StatusCode::FORBIDDEN,
                "invalid_credentials",
                "The current password is wrong.",
            )
            .with_field("current_password"),
            DomainError::InvalidMfaToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_mfa_token",
                "The sign-in has expired or was already completed: sign in again.",
            ),
            DomainError::MfaRequired { mfa_token } => {
                let error = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "mfa_required",
                    "The password is right; now the code from the authenticator app (or a backup code).",
                );
                match mfa_token {
                    Some(token) => error.with_member("mfa_token", token.expose_secret()),
                    None => error,
                }
            }
            DomainError::Locked { until, now } => locked(until, now),
            DomainError::InvalidInvitation => ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_invitation",
                "This invitation is unknown, expired, revoked or already used.",
            ),
            DomainError::TeamPlanRequired => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "team_plan_required",
                "Inviting members needs a team plan for the organization.",
            ),
            DomainError::QuotaExceeded {
                metric,
                quota,
                used,
            } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "quota_exceeded",
                format!(
                    "This month's quota of {} is used up; it resets on the 1st (UTC).",
                    metric.as_str()
                ),
            )
            .with_member("metric", metric.as_str())
            .with_member("quota", quota)
            .with_member("used", used),
            DomainError::JobOverQuota {
                quota,
                committed,
                requested,
            } => {
                let left = (quota - committed).max(0);
                ApiError::new(
                    StatusCode::PAYMENT_REQUIRED,
                    "quota_exceeded",
                    format!(
                        "This job has {requested} addresses, and this month's verification quota \
                         has {left} left once your open jobs are checked; it resets on the 1st \
                         (UTC)."
                    ),
                )
                .with_member("quota", quota)
                .with_member("used", committed)
                .with_member("requested", requested)
            }
            DomainError::InvalidUpload(detail) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_upload", detail)
            }
            DomainError::Forbidden(reason) => {
                let (code, detail) = match reason {
                    Forbidden::MissingScope(scope) => {
                        let detail = format!("This API key lacks the {scope} scope.");
                        return ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", detail);
                    }
                    Forbidden::MfaSetupRequired => (
                        "mfa_setup_required",
                        "Set up two-factor authentication first: your role requires it.",
                    ),
                    Forbidden::SuperAdminOnly => (
                        "super_admin_only",
                        "Only a platform super-admin may do this.",
                    ),
                    Forbidden::NotAManager => (
                        "insufficient_role",
                        "Only the organization's owner or an admin may do this.",
                    ),
                    Forbidden::SetupTokenInvalid => (
                        "setup_token_invalid",
                        "This setup link is wrong, expired or already used. Restart mailroom for a \
                         new one, or run `mailroom admin create --super-admin`.",
                    ),
                    Forbidden::OwnerOnly => {
                        ("owner_only", "Only the organization's owner may do this.")
                    }
                    Forbidden::AccountsForManagersOnly => (
                        "insufficient_role",
                        "Only the organization's owner or an admin may connect or disconnect mail accounts here.",
                    ),
                    Forbidden::KeysForManagersOnly => (
                        "insufficient_role",
                        "Only the organization's owner or an admin may create API keys here.",
                    ),
                    Forbidden::KeyPowersForManagersOnly => (
                        "insufficient_scope",
                        "Only owners and admins may create keys that manage keys or webhooks or read the audit log, or connect mail accounts where members may not.",
                    ),
                    Forbidden::BrowserSessionRequired => (
                        "browser_session_required",
                        "Only a signed-in browser session may do this, not an access token.",
                    ),
                    Forbidden::InvitationForAnotherAddress => (
                        "invitation_for_another_address",
                        "This invitation was sent to another address: sign in with that one.",
                    ),
                    Forbidden::RecentAuthRequired => (
                        "recent_auth_required",
                        "Sign in again first: this needs a sign-in from the last 15 minutes.",
                    ),
                };
                ApiError::new(StatusCode::FORBIDDEN, code, detail)
            }
            DomainError::Conflict(conflict) => {
                let (code, detail) = match conflict {
                    Conflict::MfaNotPending => (
                        "mfa_not_pending",
                        "Start the setup first: there is no new secret waiting for a code.",
                    ),
                    Conflict::MfaSetupRestarted => (
                        "mfa_not_pending",
                        "The setup was started again meanwhile: scan the newest code.",
                    ),
                    Conflict::MfaAlreadyEnabled => (
                        "mfa_already_enabled",
                        "Two-factor authentication is already on; turn it off first to change the app.",
                    ),
                    Conflict::MfaNotEnabled => {
                        ("mfa_not_enabled", "Two-factor authentication is not on.")
                    }
                    Conflict::TooManyJobs { limit } => {
                        let detail = format!(
                            "Your organization has {limit} jobs queued or running, as many as its \
                             plan allows; wait for one to end or cancel one."
                        );
                        return ApiError::new(StatusCode::CONFLICT, "too_many_jobs", detail);
                    }
                    Conflict::JobEnded { status } => {
                        let detail = format!("The job has already ended ({status}).");
                        return ApiError::new(StatusCode::CONFLICT, "job_ended", detail);
                    }
                    Conflict::OwnershipIsTransferred => (
                        "ownership_transfer_required",
                        "The owner's role changes only by transferring the ownership.",
                    ),
                    Conflict::MemberLimitReached => (
                        "member_limit_reached",
                        "The organization has as many members as its plan allows.",
                    ),
                    Conflict::AlreadyMember => (
                        "already_member",
                        "You are already a member of this organization.",
                    ),
                    Conflict::LeaveCurrentOrgRequired => (
                        "leave_current_org_required",
                        "Joining deletes your personal organization and its data: accept with leave_current_org set to true.",
                    ),
                    Conflict::AlreadyInAnOrg => (
                        "already_in_an_org",
                        "You belong to an organization with other members: leave it first.",
                    ),
                    Conflict::LastWayIn => (
                        "last_sign_in_method",
                        "This is the account's last way to sign in: set a password or link another provider first.",
                    ),
                    Conflict::GoogleNotConfigured => (
                        "google_not_configured",
                        "This installation has no [oidc.google] section: Google accounts cannot be connected.",
                    ),
                    Conflict::AccountNeedsReconnect => (
                        "mail_account_needs_reconnect",
                        "The account's grant was refused: connect it again.",
                    ),
                    Conflict::AccountExists => (
                        "account_exists",
                        "An account with this address already exists.",
                    ),
                    Conflict::CannotDisableYourself => (
                        "cannot_disable_yourself",
                        "A super-admin cannot disable their own account.",
                    ),
                    Conflict::OwnershipTransferRequired => (
                        "ownership_transfer_required",
                        "You own an organization with other members: transfer the ownership first.",
                    ),
                };
                ApiError::new(StatusCode::CONFLICT, code, detail)
            }
            DomainError::NotFound => ApiError::not_found(),
            DomainError::InvalidGrant => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_grant",
                "The refresh token is unknown, expired or revoked: sign in again.",
            ),
            DomainError::ProviderRefused(failure) => {
                let (status, code, detail) = match failure {
                    ProviderFailure::FlowMissing
                    | ProviderFailure::StateMismatch
                    | ProviderFailure::StateReused => (
                        StatusCode::BAD_REQUEST,
                        "oauth_state_invalid",
                        "That sign-in expired, was used already, or was started in another browser: start again.",
                    ),
                    ProviderFailure::ProviderError => (
                        StatusCode::BAD_REQUEST,
                        "oauth_provider_error",
                        "The provider did not sign you in.",
                    ),
                    ProviderFailure::Exchange => (
                        StatusCode::BAD_GATEWAY,
                        "oauth_exchange_failed",
                        "The provider did not confirm the sign-in: start again.",
                    ),
                    ProviderFailure::IdToken(_) => (
                        StatusCode::UNAUTHORIZED,
                        "oauth_id_token_invalid",
                        "The provider's answer did not pass our checks.",
                    ),
                    ProviderFailure::EmailUnverified => (
                        StatusCode::FORBIDDEN,
                        "oauth_email_unverified",
                        "The provider does not vouch for this email address.",
                    ),
                    ProviderFailure::AccountExists => (
                        StatusCode::CONFLICT,
                        "account_exists_link_required",
                        "An account with this address exists: sign in as before, then link the provider from Security.",
                    ),
                    ProviderFailure::IdentityTaken => (
                        StatusCode::CONFLICT,
                        "identity_linked_elsewhere",
                        "That provider account is linked to another mailroom account.",
                    ),
                    ProviderFailure::WrongUser => (
                        StatusCode::FORBIDDEN,
                        "oauth_wrong_user",
                        "This was started by another signed-in user.",
                    ),
                    ProviderFailure::NoRefreshToken => (
                        StatusCode::BAD_GATEWAY,
                        "oauth_no_refresh_token",
                        "Google gave no refresh token, so the account could not be used while you are away: connect it again.",
                    ),
                    ProviderFailure::ScopesRefused => (
                        StatusCode::FORBIDDEN,
                        "oauth_scopes_refused",
                        "Google did not grant access to Gmail: connect again and allow what is asked.",
                    ),
                    ProviderFailure::OtherGoogleAccount => (
                        StatusCode::CONFLICT,
                        "oauth_other_google_account",
                        "That is another Google account than the one this account connects: choose the account's own.",
                    ),
                };
                ApiError::new(status, code, detail)
            }
            DomainError::Sending(refusal) => match refusal {
                SendRefusal::FromNotConnected => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "from_not_connected",
                    "No connected account of this organization sends as that from address: connect it, or add the address to an account's from_addresses.",
                )
                .with_field("from"),
                SendRefusal::HeaderNotAllowed(name) => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "header_not_allowed",
                    format!("The header {name:?} may not be set: custom X- headers and the list headers may."),
                )
                .with_field("headers"),
                SendRefusal::MessageTooLarge { limit } => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "message_too_large",
                    format!("The message is over {limit} bytes once composed."),
                ),
                SendRefusal::AllSuppressed => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "recipient_suppressed",
                    "Every recipient is on the organization's suppression list: nothing was sent.",
                ),
                SendRefusal::IdempotencyKeyReused => ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_reused",
                    "This Idempotency-Key was used with another request in the last 24 hours.",
                ),
                SendRefusal::IdempotencyKeyInProgress => ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_progress",
                    "A request with this Idempotency-Key is under way: retry in a moment.",
                ),
                SendRefusal::InvalidIdempotencyKey => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_idempotency_key",
                    "An Idempotency-Key is 1 to 256 visible ASCII characters.",
                ),
                SendRefusal::NotCancelable => ApiError::new(
                    StatusCode::CONFLICT,
                    "email_not_cancelable",
                    "Only a message still scheduled or queued can be canceled.",
                ),
            },
            DomainError::WebhookUrl(refusal) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "webhook_url_not_allowed",
                refusal.describe(),
            )
            .with_field("url"),
            DomainError::DatabaseBusy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_busy",
                "The database is too busy to take this now; nothing was written. Try again in a moment.",
            )
            .with_retry_after(1),
            DomainError::DatabaseUnreachable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unreachable",
                "The database is not reachable.",
            ),
            DomainError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl From<mailroom_storage::StorageError> for ApiError {
    fn from(error: mailroom_storage::StorageError) -> Self {
        ApiError::internal(error)
    }
}

/// 423 with when the lock ends: in the detail for people, as `locked_until` and
/// `Retry-After` for programs. The same for an address without an account.
fn locked(until: time::OffsetDateTime, now: time::OffsetDateTime) -> ApiError {
    let clock = until
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_else(|_| "a while".to_owned());
    let rfc3339 = until
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let seconds = u64::try_from((until - now).whole_seconds()).unwrap_or(0);
    ApiError::new(
        StatusCode::LOCKED,
        "account_locked",
        format!(
            "Too many failed sign-ins: signing in with this address is locked until {clock}. \
             Wait, or reset the password."
        ),
    )
    .with_member("locked_until", rfc3339)
    .with_retry_after(seconds.max(1))
}

#[derive(Clone, Debug)]
pub struct ApiError {
    status: StatusCode,
    /// Stable, machine-readable: clients switch on it; it never changes meaning.
    code: &'static str,
    detail: String,
    /// The request field the error is about, as a path (`csp-report.line-number`).
    field: Option<String>,
    /// What went wrong inside, for the log only (5xx).
    cause: Option<Arc<anyhow::Error>>,
    /// Seconds until the client may try again (`Retry-After`).
    retry_after: Option<u64>,
    /// Extension members of the problem (RFC 9457 §3.2), e.g. the `mfa_token` of
    /// `mfa_required`.
    /// Boxed: errors travel in `Result`s everywhere, and are rarely this rich.
    members: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            field: None,
            cause: None,
            retry_after: None,
            members: None,
        }
    }

    /// Adds an extension member to the problem document.
    pub fn with_member(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.members
            .get_or_insert_default()
            .insert(name.to_owned(), value.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// A failure of ours: the cause is logged with the request id, the client learns nothing
    /// of it.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        let mut error = Self::for_status(StatusCode::INTERNAL_SERVER_ERROR);
        error.cause = Some(Arc::new(cause.into()));
        error
    }

    pub fn not_found() -> Self {
        Self::for_status(StatusCode::NOT_FOUND)
    }

    /// The generic problem for a status that came with nothing more specific.
    pub fn for_status(status: StatusCode) -> Self {
        let (code, detail) = match status {
            StatusCode::BAD_REQUEST => ("bad_request", "The request could not be understood."),
            StatusCode::UNAUTHORIZED => ("unauthorized", "Authentication is required."),
            StatusCode::FORBIDDEN => ("forbidden", "This action is not allowed."),
            StatusCode::NOT_FOUND => ("not_found", "There is nothing at this address."),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "This address does not accept that method; see the Allow header.",
            ),
            StatusCode::REQUEST_TIMEOUT => ("request_timeout", "The request took too long."),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload_too_large",
                "The request body is larger than this endpoint accepts.",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "The request body's Content-Type is not accepted here.",
            ),
            StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "Too many requests; slow down."),
            StatusCode::SERVICE_UNAVAILABLE => (
                "service_unavailable",
                "The service cannot answer right now; try again shortly.",
            ),
            s if s.is_server_error() => (
                "internal_error",
                "Something went wrong on our side; quote the request id when reporting it.",
            ),
            _ => ("http_error", "The request failed."),
        };
        Self::new(status, code, detail)
    }

    /// An extension member of the problem, if it has one by that name.
    pub fn member(&self, name: &str) -> Option<&serde_json::Value> {
        self.members.as_ref()?.get(name)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// A log line for failures of ours; other statuses are answers, not failures, and their
    /// handlers log what matters.
    pub(crate) fn log(&self) {
        // `problem_code`, not `code`: the log redacts fields named `code` (OTPs).
        match &self.cause {
            Some(cause) => tracing::error!(
                problem_code = self.code,
                error = format!("{cause:#}"),
                "request failed"
            ),
            None if self.status == StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(problem_code = self.code, "request failed")
            }
            None => {}
        }
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The problem document, and a log line for failures of ours.
    pub(crate) fn render(&self, request_id: Option<RequestId>) -> Response {
        self.log();
        let problem = Problem {
            r#type: format!("urn:mailroom:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            request_id: request_id.map(|id| id.to_string()),
            field: self.field.as_deref(),
            members: self.members.as_deref(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Handlers' errors travel to the edge in the response's extensions, to be rendered there with
/// the request id.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    r#type: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(flatten)]
    members: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// One test, not two: the error callsite must not be hit by a parallel test while this
    /// one captures the log (tracing caches callsite interest process-wide).
    #[tokio::test]
    async fn internal_errors_log_their_cause_and_tell_the_client_nothing() {
        let id = RequestId::generate();
        let mut response = None;
        let logged = crate::telemetry::capture(true, || {
            let error = ApiError::internal(anyhow::anyhow!("connection to 10.0.0.5 refused"));
            response = Some(error.render(Some(id)));
        });
        assert!(
            logged.contains("connection to 10.0.0.5 refused"),
            "{logged}"
        );
        assert!(logged.contains("ERROR"), "{logged}");
        assert!(
            logged.contains(r#""problem_code":"internal_error""#),
            "{logged}"
        );

        let response = response.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = body_json(response).await;
        assert_eq!(body["code"], "internal_error");
        assert_eq!(body["request_id"], id.to_string());
        assert!(!body.to_string().contains("10.0.0.5"));
    }

    #[tokio::test]
    async fn problems_have_every_member() {
        let body = body_json(
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", "bad")
                .with_field("a.b")
                .render(None),
        )
        .await;
        for member in [
            "type",
            "title",
            "status",
            "detail",
            "code",
            "request_id",
            "field",
        ] {
            assert!(body.get(member).is_some(), "{member} missing from {body}");
        }
        assert_eq!(body["type"], "urn:mailroom:problem:invalid_field");
        assert_eq!(body["title"], "Bad Request");
    }
}
