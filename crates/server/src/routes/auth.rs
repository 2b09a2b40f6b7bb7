//! Sign-up, email verification, sign-in and sign-out (docs/security.md#email-codes, #password-hashing, #lockout).
//!
//! Whether an account exists is never told by status, body or timing: sign-up and resend
//! answer 202 either way and send mail in the background; sign-in checks a dummy hash for an
//! unknown address.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailroom_core::EmailAddress;
use mailroom_core::accounts::{
    ACCESS_TOKEN_TTL, CODE_ATTEMPTS, CODE_TTL, CodePurpose, REFRESH_FAMILY_TTL, REFRESH_GRACE,
};
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::password_policy::{self, CompositionRules};
use mailroom_crypto::password::Verification;
use mailroom_mail::queued::MailMessage;
use mailroom_storage::accounts::{CodeAttempt, Device, NewDevice, User};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::application::lockout::{Claimant, Verdict, gated};
use crate::application::second_factor;
use crate::application::system_mail;
use crate::audit::{self, AuditTrail};
use crate::auth::{codes, session, tokens};
use crate::error::DomainError;
use crate::extract::Principal;
use crate::extract::principal::{Credential, SetupPrincipal};
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::routes::me;
use crate::state::AppState;
use crate::work_queue::mail_job;
use mailroom_storage::queue::PreparedJob;
use mailroom_storage::tokens::{NewRefreshToken, Rotation};
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    email: String,
    password: SecretString,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeEntry {
    email: String,
    code: SecretString,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailOnly {
    email: String,
}

/// `POST /v1/auth/signup`: 202 whether or not the address already has an account.
pub async fn signup(
    State(state): State<AppState>,
    trail: AuditTrail,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    sign_up(&state, &trail, &body.email, &body.password).await?;
    Ok(pending())
}

/// Records a sign-up and mails its code, unless the address has an account already; the
/// caller cannot tell which.
pub(crate) async fn sign_up(
    state: &AppState,
    trail: &AuditTrail,
    email: &str,
    password: &SecretString,
) -> Result<(), ApiError> {
    let email = parse_email(email)?;
    state.auth_limiter.check_account(&email).await?;
    // No organization yet, so no organization rules.
    check_password_policy(password, &email, CompositionRules::default())
        .map_err(|error| error.with_field("password"))?;
    // Hashed either way, so that both paths take the same time.
    let password_hash = state.passwords.hash(password).await?;
    let now = OffsetDateTime::now_utc();
    let event = AuditEvent {
        target: Some(email.to_string()),
        subject: Some(email.to_string()),
        ..trail.event(Action::SignupRequested, Outcome::Success)
    };
    if state.database.user_by_email(&email).await?.is_some() {
        return Ok(audit::record(&state.database, event).await?);
    }
    let code = codes::generate();
    let code_hash = codes::hash(&state.code_key, CodePurpose::Signup, &email, &code);
    let mail = code_mail(state, &email, "confirm your email address", &code).await?;
    let issued = state
        .database
        .save_signup(
            &email,
            password_hash.as_str(),
            &code_hash,
            now + CODE_TTL,
            Some(&mail),
            &event,
            now,
        )
        .await?;
    if issued {
        state.queue.wake();
    }
    Ok(())
}

/// `POST /v1/auth/resend-code`: a new code for a waiting sign-up; a live code's guess budget
/// carries over, a spent one's does not (at most five codes an hour). 202 whatever the
/// address.
pub async fn resend_code(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EmailOnly>,
) -> Result<Response, ApiError> {
    resend(&state, &body.email).await?;
    Ok(pending())
}

pub(crate) async fn resend(state: &AppState, email: &str) -> Result<(), ApiError> {
    let email = parse_email(email)?;
    state.auth_limiter.check_account(&email).await?;
    let now = OffsetDateTime::now_utc();
    let code = codes::generate();
    let code_hash = codes::hash(&state.code_key, CodePurpose::Signup, &email, &code);
    let mail = code_mail(state, &email, "confirm your email address", &code).await?;
    let expires_at = now + CODE_TTL;
    let replaced = state
        .database
        .replace_code(
            CodePurpose::Signup,
            &email,
            &code_hash,
            expires_at,
            Some(&mail),
            now,
        )
        .await?;
    if replaced {
        state.queue.wake();
    }
    Ok(())
}

/// `POST /v1/auth/confirm-email`: the emailed code turns the sign-up into an account (with its
/// own organization) and signs it in.
pub async fn confirm_email(
    State(state): State<AppState>,
    trail: AuditTrail,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CodeEntry>,
) -> Result<Response, ApiError> {
    let (user, token) = confirm(&state, &trail, &headers, &body.email, &body.code).await?;
    Ok(signed_in(&user, &token))
}

/// Turns a sign-up whose code is right into an account; returns it and its session token.
pub(crate) async fn confirm(
    state: &AppState,
    trail: &AuditTrail,
    headers: &HeaderMap,
    email: &str,
    code: &SecretString,
) -> Result<(User, String), ApiError> {
    let email = parse_email(email)?;
    state.auth_limiter.check_account(&email).await?;
    let now = OffsetDateTime::now_utc();
    check_code(state, CodePurpose::Signup, &email, code, now).await?;
    let issued = rotate_session(state, trail, headers, now).await?;
    let event = AuditEvent {
        session_id: Some(issued.record.id),
        target: Some(email.to_string()),
        subject: Some(email.to_string()),
        ..trail.event(Action::EmailVerified, Outcome::Success)
    };
    let user = state
        .database
        .complete_signup(&email, &issued.record, &event, now)
        .await?
        .ok_or(DomainError::InvalidCode)?;
    tracing::info!(user_id = %user.id, "account created");
    Ok((user, issued.token))
}

/// `POST /v1/auth/login`: a session, or `401 mfa_required` with the `mfa_token` to complete
/// it with at `POST /v1/auth/login/2fa`.
pub async fn login(
    State(state): State<AppState>,
    trail: AuditTrail,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    match sign_in(&state, &trail, &headers, &body.email, &body.password).await? {
        SignIn::Complete { user, session } => Ok(signed_in(&user, &session)),
        SignIn::SecondFactorOwed { mfa_token } => Err(DomainError::MfaRequired {
            mfa_token: Some(mfa_token),
        }
        .into()),
    }
}

/// Where a correct password leads.
pub(crate) enum SignIn {
    /// Signed in: the user and the new session's token.
    Complete { user: User, session: String },
    /// A second factor is owed, to be sent with this token (docs/security.md#totp).
    SecondFactorOwed { mfa_token: SecretString },
}

/// Signs in with a password: opens a session, unless a second factor is owed and this
/// browser is not a trusted device of the user's.
pub(crate) async fn sign_in(
    state: &AppState,
    trail: &AuditTrail,
    headers: &HeaderMap,
    email: &str,
    password: &SecretString,
) -> Result<SignIn, ApiError> {
    let user = authenticate(state, trail, email, password).await?;
    if user.mfa_enabled {
        if !second_factor::trusted_device(state, &user, headers).await? {
            let mfa_token = second_factor::challenge(state, &user).await?;
            return Ok(SignIn::SecondFactorOwed { mfa_token });
        }
        state
            .database
            .record_successful_login(&user, None, OffsetDateTime::now_utc())
            .await?;
    }
    let session = open_session(state, trail, headers, &user).await?;
    Ok(SignIn::Complete { user, session })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorRequest {
    mfa_token: SecretString,
    code: Option<SecretString>,
    backup_code: Option<SecretString>,
    #[serde(default)]
    remember_device: bool,
}

/// `POST /v1/auth/login/2fa`: completes a sign-in with the second factor; with
/// `remember_device`, this browser skips it for 30 days.
pub async fn login_second_factor(
    State(state): State<AppState>,
    trail: AuditTrail,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SecondFactorRequest>,
) -> Result<Response, ApiError> {
    let proof = second_factor::Proof::from_fields(body.code.as_ref(), body.backup_code.as_ref())?;
    let (user, session, trusted) = complete_second_factor(
        &state,
        &trail,
        &headers,
        &body.mfa_token,
        proof,
        body.remember_device,
    )
    .await?;
    let mut response = signed_in(&user, &session);
    if let Some(cookie) = trusted {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The second step of a sign-in: spends the challenge (each attempt takes one, so racing
/// attempts cannot both spend codes), checks the proof, opens the session; returns the user,
/// the session token, and the trusted-device cookie when asked to remember the browser. A
/// wrong code comes back with a fresh `mfa_token` for the next try.
pub(crate) async fn complete_second_factor(
    state: &AppState,
    trail: &AuditTrail,
    headers: &HeaderMap,
    mfa_token: &SecretString,
    proof: second_factor::Proof<'_>,
    remember_device: bool,
) -> Result<(User, String, Option<HeaderValue>), DomainError> {
    let user = second_factor::spend_challenge(state, mfa_token).await?;
    if let Err(error) = second_factor::check(state, trail, &user, proof).await {
        return Err(match error {
            DomainError::InvalidCode | DomainError::CodeAlreadyUsed => {
                DomainError::SecondFactorRefused {
                    refused: Box::new(error),
                    mfa_token: second_factor::challenge(state, &user).await?,
                }
            }
            error => error,
        });
    }
    let session = open_session(state, trail, headers, &user).await?;
    let trusted = if remember_device {
        Some(second_factor::trust_device(state, trail, &user).await?)
    } else {
        None
    };
    Ok((user, session, trusted))
}

/// Opens a session for a user who has just proved who they are; returns its token.
async fn open_session(
    state: &AppState,
    trail: &AuditTrail,
    headers: &HeaderMap,
    user: &User,
) -> Result<String, DomainError> {
    let now = OffsetDateTime::now_utc();
    let issued = rotate_session(state, trail, headers, now).await?;
    let signed_in = AuditEvent {
        session_id: Some(issued.record.id),
        ..trail.by_user(user, Action::SigninSucceeded, Outcome::Success)
    };
    let NewDevice(new_device) = state
        .database
        .create_session(user.id, &issued.record, &signed_in, now)
        .await?;
    if new_device {
        mail_new_device(state, trail, user).await;
    }
    tracing::info!(user_id = %user.id, "signed in");
    Ok(issued.token)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    email: String,
    code: SecretString,
    new_password: SecretString,
}

/// `POST /v1/auth/password/forgot`: 202 whatever the address. A code is recorded either way
/// (so both paths do the same work) but mailed only to an account's owner.
pub async fn forgot_password(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EmailOnly>,
) -> Result<Response, ApiError> {
    forgot(&state, &body.email).await?;
    Ok(pending())
}

pub(crate) async fn forgot(state: &AppState, email: &str) -> Result<(), ApiError> {
    let email = parse_email(email)?;
    state.auth_limiter.check_account(&email).await?;
    let now = OffsetDateTime::now_utc();
    let code = codes::generate();
    let code_hash = codes::hash(&state.code_key, CodePurpose::PasswordReset, &email, &code);
    // A code is recorded whether or not the address has an account (the answer and its
    // timing must not tell); only an account's owner is mailed.
    let mail = match state.database.user_by_email(&email).await? {
        Some(_) => Some(code_mail(state, &email, "reset your password", &code).await?),
        None => None,
    };
    let issued = state
        .database
        .save_code(
            CodePurpose::PasswordReset,
            &email,
            &code_hash,
            now + CODE_TTL,
            mail.as_ref(),
            now,
        )
        .await?;
    if issued && mail.is_some() {
        state.queue.wake();
    }
    Ok(())
}

/// `POST /v1/auth/password/reset`: the emailed code sets a new password and ends every
/// session of the account (docs/security.md#password-reset).
pub async fn reset_password(
    State(state): State<AppState>,
    trail: AuditTrail,
    ApiJson(body): ApiJson<PasswordReset>,
) -> Result<Response, ApiError> {
    reset(&state, &trail, &body.email, &body.code, &body.new_password).await?;
    Ok((StatusCode::OK, Json(json!({ "status": "password_reset" }))).into_response())
}

pub(crate) async fn reset(
    state: &AppState,
    trail: &AuditTrail,
    email: &str,
    code: &SecretString,
    new_password: &SecretString,
) -> Result<(), ApiError> {
    let email = parse_email(email)?;
    state.auth_limiter.check_account(&email).await?;
    let rules = state
        .database
        .user_by_email(&email)
        .await?
        .map(|user| user.password_rules)
        .unwrap_or_default();
    check_password_policy(new_password, &email, rules)?;
    let now = OffsetDateTime::now_utc();
    let code_hash = check_code(state, CodePurpose::PasswordReset, &email, code, now).await?;
    let password_hash = state.passwords.hash(new_password).await?;
    let event = AuditEvent {
        target: Some(email.to_string()),
        subject: Some(email.to_string()),
        ..trail.event(Action::PasswordReset, Outcome::Success)
    };
    state
        .database
        .reset_password(&email, &code_hash, password_hash.as_str(), &event, now)
        .await?
        .ok_or(DomainError::InvalidCode)?;
    Ok(())
}

/// Checks an email and password for a sign-in or a password grant: the same work, and the
/// same lockout, for an address without an account (docs/security.md#enumeration).
async fn authenticate(
    state: &AppState,
    trail: &AuditTrail,
    email: &str,
    password: &SecretString,
) -> Result<User, ApiError> {
    let Ok(address) = EmailAddress::parse(email) else {
        // A malformed address cannot have an account: answered like a wrong password.
        state.passwords.verify(password, None).await?;
        audit::record(
            &state.database,
            AuditEvent {
                target: Some(email.chars().take(254).collect()),
                ..trail.event(Action::SigninFailed, Outcome::Failure)
            },
        )
        .await?;
        return Err(DomainError::InvalidCredentials.into());
    };
    state.auth_limiter.check_account(&address).await?;
    let user = state.database.user_by_email(&address).await?;
    let claimant = Claimant::address(address, user.as_ref());
    let rehash = check_password_of(state, trail, &claimant, password).await?;
    // A dummy hash never matches: past the check there is an account.
    let user = user.ok_or(DomainError::InvalidCredentials)?;
    password_accepted(state, &user, password, rehash).await?;
    // Said only to whoever knows the password.
    if user.disabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "account_disabled",
            "This account is disabled: ask the platform's administrators.",
        ));
    }
    Ok(user)
}

/// Checks a signed-in user's password again (a sensitive change asks for it) through the
/// lockout gate.
pub(crate) async fn check_password(
    state: &AppState,
    trail: &AuditTrail,
    user: &User,
    password: &SecretString,
) -> Result<(), DomainError> {
    let claimant = Claimant::account(user)?;
    let rehash = check_password_of(state, trail, &claimant, password).await?;
    password_accepted(state, user, password, rehash).await
}

/// The password check behind the gate, against a dummy hash when there is no account; on a
/// match, whether the hash should be upgraded.
async fn check_password_of(
    state: &AppState,
    trail: &AuditTrail,
    claimant: &Claimant<'_>,
    password: &SecretString,
) -> Result<bool, DomainError> {
    let user = claimant.user();
    gated(
        state,
        trail,
        claimant,
        || DomainError::InvalidCredentials,
        async {
            let hash = user.map(|user| user.password_hash.as_str());
            Ok(match state.passwords.verify(password, hash).await? {
                Verification::Match { rehash } if user.is_some() => Verdict::Right(rehash),
                _ => Verdict::Wrong,
            })
        },
    )
    .await
}

/// After a right password: upgrades an outdated hash, and clears the failure count unless a
/// second factor is still owed (then only this attempt stops counting).
async fn password_accepted(
    state: &AppState,
    user: &User,
    password: &SecretString,
    rehash: bool,
) -> Result<(), DomainError> {
    if rehash {
        let upgraded = state.passwords.hash(password).await?;
        state
            .database
            .upgrade_password_hash(user.id, upgraded.as_str())
            .await?;
    }
    if user.mfa_enabled {
        let claimant = Claimant::account(user)?;
        Ok(state
            .database
            .forgive_login_attempt(claimant.email())
            .await?)
    } else {
        Ok(state
            .database
            .record_successful_login(user, None, OffsetDateTime::now_utc())
            .await?)
    }
}

#[derive(Deserialize)]
#[serde(tag = "grant_type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenRequest {
    Password {
        email: String,
        password: SecretString,
        /// With a second factor enabled, one of these is required as well.
        totp_code: Option<SecretString>,
        backup_code: Option<SecretString>,
    },
    RefreshToken {
        refresh_token: SecretString,
    },
}

/// `POST /v1/auth/token` (docs/security.md#refresh-tokens): a password grant starts a refresh-token family; a refresh
/// grant rotates it. A retired refresh token presented again revokes the whole family, unless
/// it comes within the grace window, when it gets the same pair as the first time.
pub async fn token(
    State(state): State<AppState>,
    trail: AuditTrail,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<Response, ApiError> {
    let now = OffsetDateTime::now_utc();
    let (user_id, family, jti, issued_at, authenticated_at, refresh_token) = match body {
        TokenRequest::Password {
            email,
            password,
            totp_code,
            backup_code,
        } => {
            let user = authenticate(&state, &trail, &email, &password).await?;
            if user.mfa_enabled {
                if totp_code.is_none() && backup_code.is_none() {
                    return Err(DomainError::MfaRequired { mfa_token: None }.into());
                }
                let proof =
                    second_factor::Proof::from_fields(totp_code.as_ref(), backup_code.as_ref())?;
                second_factor::check(&state, &trail, &user, proof).await?;
            }
            let refresh_token = tokens::new_refresh_token();
            let first = NewRefreshToken {
                id: Uuid::now_v7(),
                token_hash: tokens::refresh_hash(&refresh_token),
                access_jti: Uuid::now_v7(),
                access_iat: now,
            };
            let signed_in = AuditEvent {
                target: Some(format!("token family {}", first.id)),
                ..trail.by_user(&user, Action::SigninSucceeded, Outcome::Success)
            };
            let NewDevice(new_device) = state
                .database
                .start_token_family(
                    user.id,
                    &first,
                    now + REFRESH_FAMILY_TTL,
                    Device {
                        ip: trail.ip(),
                        user_agent: trail.user_agent(),
                    },
                    &signed_in,
                    now,
                )
                .await?;
            if new_device {
                mail_new_device(&state, &trail, &user).await;
            }
            (user.id, first.id, first.access_jti, now, now, refresh_token)
        }
        TokenRequest::RefreshToken { refresh_token } => {
            let presented = refresh_token.expose_secret();
            let successor = state.tokens.successor(presented);
            let child = NewRefreshToken {
                id: Uuid::now_v7(),
                token_hash: tokens::refresh_hash(&successor),
                access_jti: Uuid::now_v7(),
                access_iat: now,
            };
            let grace = time::Duration::try_from(REFRESH_GRACE).unwrap_or(time::Duration::ZERO);
            let rotation = state
                .database
                .rotate_refresh_token(&tokens::refresh_hash(presented), &child, grace, now)
                .await?;
            match rotation {
                Rotation::Rotated {
                    user_id,
                    family_id,
                    authenticated_at,
                } => (
                    user_id,
                    family_id,
                    child.access_jti,
                    now,
                    authenticated_at,
                    successor,
                ),
                Rotation::Replayed {
                    user_id,
                    family_id,
                    access_jti,
                    access_iat,
                    authenticated_at,
                } => (
                    user_id,
                    family_id,
                    access_jti,
                    access_iat,
                    authenticated_at,
                    successor,
                ),
                Rotation::Reused { user_id, family_id } => {
                    tracing::warn!(%user_id, %family_id, "retired refresh token reused: family revoked");
                    let org_id = state.database.user_by_id(user_id).await?.map(|u| u.org_id);
                    audit::record(
                        &state.database,
                        AuditEvent {
                            org_id,
                            actor: Some(user_id),
                            target: Some(format!("token family {family_id}")),
                            ..trail.event(Action::TokenFamilyRevoked, Outcome::Success)
                        },
                    )
                    .await?;
                    return Err(invalid_grant());
                }
                Rotation::Invalid => return Err(invalid_grant()),
            }
        }
    };
    let access_token = state
        .tokens
        .access_token(user_id, family, jti, issued_at, authenticated_at)
        .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "access_token": access_token,
        "refresh_token": refresh_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_TTL.as_secs(),
    }))
    .into_response())
}

/// A sign-in from a client IP and user agent never seen for this user: audited, and the
/// owner told by email (docs/security.md#new-device-alert).
/// Tells the account's owner of a sign-in from a device it had not seen.
async fn mail_new_device(state: &AppState, trail: &AuditTrail, user: &User) {
    let message = MailMessage::NewSignIn {
        ip: trail.ip().to_owned(),
        user_agent: trail.user_agent().unwrap_or("unknown").to_owned(),
    };
    system_mail::send(state, &user.email, message).await;
}

/// `POST /v1/auth/logout`: ends this session and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    trail: AuditTrail,
    SetupPrincipal(principal): SetupPrincipal,
) -> Result<Response, ApiError> {
    sign_out(&state, &trail, &principal).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, session::cleared_cookie())],
    )
        .into_response())
}

/// Ends the caller's session, or the family of their access token.
pub(crate) async fn sign_out(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
) -> Result<(), ApiError> {
    let now = OffsetDateTime::now_utc();
    let target = match principal.credential {
        Credential::Session(id) => {
            state
                .database
                .revoke_user_session(principal.user.id, id, now)
                .await?;
            id.to_string()
        }
        Credential::AccessToken { family } => {
            state
                .database
                .revoke_token_family(principal.user.id, family, now)
                .await?;
            format!("token family {family}")
        }
    };
    me::record_revocation(state, trail, principal, target).await
}

/// `GET /v1/me`: also for a user who still owes the second-factor setup, who learns so here.
pub async fn me(SetupPrincipal(principal): SetupPrincipal) -> Json<Value> {
    let mut user = user_json(&principal.user);
    user["mfa_setup_required"] = Value::Bool(principal.owes_second_factor_setup());
    Json(user)
}

pub fn user_json(user: &User) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "org_id": user.org_id,
        "org_role": user.org_role.as_str(),
        "platform_role": user.platform_role,
        "mfa_enabled": user.mfa_enabled,
        "created_at": user.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    })
}

fn signed_in(user: &User, token: &str) -> Response {
    (
        StatusCode::OK,
        [(header::SET_COOKIE, session::cookie(token))],
        Json(json!({ "user": user_json(user) })),
    )
        .into_response()
}

fn pending() -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({ "status": "accepted", "detail": "If the address can receive a code, one is on its way." })),
    )
        .into_response()
}

/// A new session for a browser that just proved who it is. The session it carried before, if
/// any, ends: a session id is never kept across a sign-in (no fixation: docs/security.md#session-fixation).
async fn rotate_session(
    state: &AppState,
    trail: &AuditTrail,
    headers: &HeaderMap,
    now: OffsetDateTime,
) -> Result<session::IssuedSession, DomainError> {
    if let Some(previous) = session::token_from(headers) {
        state
            .database
            .revoke_session_by_token(&session::token_hash(previous), now)
            .await?;
    }
    Ok(session::issue(trail, now))
}

/// Spends one guess of the budget on `code`, then checks it; returns the stored hash it
/// matched, for the caller to spend the code by.
async fn check_code(
    state: &AppState,
    purpose: CodePurpose,
    email: &EmailAddress,
    code: &SecretString,
    now: OffsetDateTime,
) -> Result<Vec<u8>, DomainError> {
    let attempt = state
        .database
        .take_code_attempt(purpose, email, CODE_ATTEMPTS, now)
        .await?;
    match attempt {
        CodeAttempt::Counted { code_hash }
            if codes::matches(
                &state.code_key,
                &code_hash,
                purpose,
                email,
                code.expose_secret(),
            ) =>
        {
            Ok(code_hash)
        }
        CodeAttempt::Exhausted => Err(DomainError::CodeExhausted),
        CodeAttempt::Counted { .. } | CodeAttempt::Missing => Err(DomainError::InvalidCode),
    }
}

/// The mail of a code, sealed and ready to be queued with the code itself (the outbox
/// pattern).
async fn code_mail(
    state: &AppState,
    email: &EmailAddress,
    purpose: &'static str,
    code: &str,
) -> Result<PreparedJob, ApiError> {
    let message = MailMessage::Code {
        purpose: purpose.to_owned(),
        code: code.to_owned(),
        valid_minutes: u32::try_from(CODE_TTL.as_secs() / 60).unwrap_or(u32::MAX),
    };
    Ok(state
        .database
        .prepare_job(mail_job(email.as_str(), message))
        .await?)
}

/// The rules for a new password (docs/security.md#password-policy); the error names `new_password` (sign-up renames it).
pub fn check_password_policy(
    password: &SecretString,
    email: &EmailAddress,
    rules: CompositionRules,
) -> Result<(), ApiError> {
    password_policy::check(password.expose_secret(), email.as_str(), rules).map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "weak_password",
            rejection.to_string(),
        )
        .with_field("new_password")
    })
}

fn parse_email(raw: &str) -> Result<EmailAddress, ApiError> {
    EmailAddress::parse(raw).map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_email", error.to_string())
            .with_field("email")
    })
}

fn invalid_grant() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
        "The refresh token is unknown, expired or revoked: sign in again.",
    )
}
