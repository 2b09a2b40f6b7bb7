//! Sign-up, email verification, sign-in and sign-out (docs/security.md#email-codes, #password-hashing, #lockout).
//!
//! Whether an account exists is never told by status, body or timing: sign-up and resend
//! answer 202 either way and send mail in the background; sign-in checks a dummy hash for an
//! unknown address.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailroom_core::accounts::ACCESS_TOKEN_TTL;
use mailroom_storage::accounts::User;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::application::{accounts, api_tokens, second_factor};
use crate::audit::AuditTrail;
use crate::auth::session;
use crate::error::DomainError;
use crate::extract::principal::SetupPrincipal;
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;

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
    accounts::sign_up(&state, &trail, &body.email, &body.password).await?;
    Ok(pending())
}

/// `POST /v1/auth/resend-code`: a new code for a waiting sign-up; a live code's guess budget
/// carries over, a spent one's does not (at most five codes an hour). 202 whatever the
/// address.
pub async fn resend_code(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EmailOnly>,
) -> Result<Response, ApiError> {
    accounts::resend(&state, &body.email).await?;
    Ok(pending())
}

/// `POST /v1/auth/confirm-email`: the emailed code turns the sign-up into an account (with its
/// own organization) and signs it in.
pub async fn confirm_email(
    State(state): State<AppState>,
    trail: AuditTrail,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CodeEntry>,
) -> Result<Response, ApiError> {
    let (user, token) = accounts::confirm(
        &state,
        &trail,
        session::presented(&headers),
        &body.email,
        &body.code,
    )
    .await?;
    Ok(signed_in(&user, &token))
}

/// `POST /v1/auth/login`: a session, or `401 mfa_required` with the `mfa_token` to complete
/// it with at `POST /v1/auth/login/2fa`.
pub async fn login(
    State(state): State<AppState>,
    trail: AuditTrail,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    match accounts::sign_in(
        &state,
        &trail,
        session::presented(&headers),
        &body.email,
        &body.password,
    )
    .await?
    {
        accounts::SignIn::Complete { user, session } => Ok(signed_in(&user, &session)),
        accounts::SignIn::SecondFactorOwed { mfa_token } => Err(DomainError::MfaRequired {
            mfa_token: Some(mfa_token),
        }
        .into()),
    }
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
    let (user, session, trusted) = accounts::complete_second_factor(
        &state,
        &trail,
        session::presented(&headers),
        &body.mfa_token,
        proof,
        body.remember_device,
    )
    .await?;
    let mut response = signed_in(&user, &session);
    if let Some(token) = trusted {
        let cookie = session::trusted_device_cookie(&token)?;
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
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
    accounts::forgot(&state, &body.email).await?;
    Ok(pending())
}

/// `POST /v1/auth/password/reset`: the emailed code sets a new password and ends every
/// session of the account (docs/security.md#password-reset).
pub async fn reset_password(
    State(state): State<AppState>,
    trail: AuditTrail,
    ApiJson(body): ApiJson<PasswordReset>,
) -> Result<Response, ApiError> {
    accounts::reset(&state, &trail, &body.email, &body.code, &body.new_password).await?;
    Ok((StatusCode::OK, Json(json!({ "status": "password_reset" }))).into_response())
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
    let pair = match body {
        TokenRequest::Password {
            email,
            password,
            totp_code,
            backup_code,
        } => {
            api_tokens::password_grant(
                &state,
                &trail,
                &email,
                &password,
                totp_code.as_ref(),
                backup_code.as_ref(),
            )
            .await?
        }
        TokenRequest::RefreshToken { refresh_token } => {
            api_tokens::refresh_grant(&state, &trail, &refresh_token).await?
        }
    };
    Ok(Json(json!({
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_TTL.as_secs(),
    }))
    .into_response())
}

/// `POST /v1/auth/logout`: ends this session and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    trail: AuditTrail,
    SetupPrincipal(principal): SetupPrincipal,
) -> Result<Response, ApiError> {
    accounts::sign_out(&state, &trail, &principal).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, session::cleared_cookie())],
    )
        .into_response())
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
        "name": user.display_name,
        "picture_url": user.picture_url,
        "has_password": user.password_hash.is_some(),
        "org_id": user.org_id,
        "org_role": user.org_role.as_str(),
        "platform_role": user.platform_role.as_str(),
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
