//! The signed-in user's second factor (docs/security.md#totp, #backup-codes, #trusted-devices): TOTP enrollment and removal, backup
//! codes, trusted devices. The domain functions here serve the JSON API and the security
//! page alike.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_crypto::totp::TotpSecret;
use qrcode::QrCode;
use qrcode::render::svg;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::application::lockout::{Claimant, Verdict, gated};
use crate::application::second_factor::{self, new_backup_codes};
use crate::audit::{self, AuditTrail};
use crate::error::{Conflict, DomainError};
use crate::extract::Principal;
use crate::extract::principal::SetupPrincipal;
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;

/// The name authenticator apps show next to the account.
const ISSUER: &str = "mailroom";

/// A secret waiting for its first code.
pub struct Enrollment {
    pub secret: SecretString,
    pub otpauth_uri: SecretString,
    /// The URI as a QR code: inline SVG, nothing fetched, nothing scripted.
    pub qr_svg: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    code: SecretString,
}

/// A current code from the app, or, for someone who lost it, a backup code.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBody {
    code: Option<SecretString>,
    backup_code: Option<SecretString>,
}

/// `POST /v1/me/2fa/totp` (recent sign-in): a new secret to scan.
pub async fn start(
    State(state): State<AppState>,
    SetupPrincipal(principal): SetupPrincipal,
) -> Result<Json<Value>, ApiError> {
    let enrollment = begin(&state, &principal).await?;
    Ok(Json(json!({
        "secret": enrollment.secret.expose_secret(),
        "otpauth_uri": enrollment.otpauth_uri.expose_secret(),
        "qr_svg": enrollment.qr_svg,
    })))
}

pub(crate) async fn begin(state: &AppState, principal: &Principal) -> Result<Enrollment, ApiError> {
    principal.require_recent_auth()?;
    let user = &principal.user;
    let secret = TotpSecret::generate();
    let started = state
        .database
        .start_totp_enrollment(user.id, secret.expose(), OffsetDateTime::now_utc())
        .await?;
    if !started {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "mfa_already_enabled",
            "Two-factor authentication is already on; turn it off first to change the app.",
        ));
    }
    let uri = secret
        .otpauth_uri(ISSUER, &user.email)
        .map_err(ApiError::internal)?;
    let qr_svg = QrCode::new(uri.as_bytes())
        .map_err(ApiError::internal)?
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok(Enrollment {
        secret: SecretString::from(secret.base32().as_str()),
        otpauth_uri: SecretString::from(uri.as_str()),
        qr_svg,
    })
}

/// `POST /v1/me/2fa/totp/confirm {code}`: turns two-factor on; the backup codes are in the
/// answer, and nowhere else, ever.
pub async fn confirm(
    State(state): State<AppState>,
    trail: AuditTrail,
    SetupPrincipal(principal): SetupPrincipal,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Json<Value>, ApiError> {
    let codes = confirm_with(&state, &trail, &principal, &body.code).await?;
    Ok(Json(json!({ "backup_codes": codes })))
}

pub(crate) async fn confirm_with(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    code: &SecretString,
) -> Result<Vec<String>, DomainError> {
    principal.require_recent_auth()?;
    let user = &principal.user;
    let pending = state
        .database
        .totp(user.id)
        .await?
        .filter(|totp| !totp.enabled)
        .ok_or(DomainError::Conflict(Conflict::MfaNotPending))?;
    let now = OffsetDateTime::now_utc();
    let unix = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let secret = TotpSecret::from_bytes(pending.secret);
    // Through the lockout gate: a stolen session cannot guess its way to the backup codes.
    let claimant = Claimant::account(user)?;
    let step = gated(
        state,
        trail,
        &claimant,
        || DomainError::InvalidCode,
        async {
            Ok(match secret.matching_step(code.expose_secret(), unix) {
                Some(step) => Verdict::Right(step),
                None => Verdict::Wrong,
            })
        },
    )
    .await?;
    state
        .database
        .forgive_login_attempt(claimant.email())
        .await?;
    let (codes, hashes) = new_backup_codes(&state.backup_code_key, user.id);
    let enabled = state
        .database
        .enable_totp(user.id, &pending.sealed, step, &hashes, now)
        .await?;
    if !enabled {
        return Err(DomainError::Conflict(Conflict::MfaSetupRestarted));
    }
    audit::record(
        &state.database,
        trail.by_user(user, Action::MfaEnabled, Outcome::Success),
    )
    .await?;
    Ok(codes)
}

/// `DELETE /v1/me/2fa {code | backup_code}` (recent sign-in and a current code, or a backup
/// code for someone who lost the app): turns two-factor off.
pub async fn disable(
    State(state): State<AppState>,
    trail: AuditTrail,
    SetupPrincipal(principal): SetupPrincipal,
    ApiJson(body): ApiJson<ProofBody>,
) -> Result<StatusCode, ApiError> {
    let proof = second_factor::Proof::from_fields(body.code.as_ref(), body.backup_code.as_ref())?;
    disable_with(&state, &trail, &principal, proof).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn disable_with(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    proof: second_factor::Proof<'_>,
) -> Result<(), ApiError> {
    principal.require_recent_auth()?;
    let user = &principal.user;
    if !user.mfa_enabled {
        return Err(mfa_not_enabled());
    }
    // Through the lockout gate: a stolen session is no code oracle.
    second_factor::check(state, trail, user, proof).await?;
    state.database.disable_totp(user.id).await?;
    audit::record(
        &state.database,
        trail.by_user(user, Action::MfaDisabled, Outcome::Success),
    )
    .await?;
    Ok(())
}

/// `POST /v1/me/2fa/backup-codes` (recent sign-in): ten new codes; the old ones stop working.
pub async fn regenerate_backup_codes(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let codes = regenerate(&state, &trail, &principal).await?;
    Ok(Json(json!({ "backup_codes": codes })))
}

pub(crate) async fn regenerate(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
) -> Result<Vec<String>, ApiError> {
    principal.require_recent_auth()?;
    let user = &principal.user;
    if !user.mfa_enabled {
        return Err(mfa_not_enabled());
    }
    let (codes, hashes) = new_backup_codes(&state.backup_code_key, user.id);
    state
        .database
        .replace_backup_codes(user.id, &hashes)
        .await?;
    audit::record(
        &state.database,
        trail.by_user(user, Action::BackupCodesRegenerated, Outcome::Success),
    )
    .await?;
    Ok(codes)
}

/// `GET /v1/me/trusted-devices`.
pub async fn trusted_devices(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let devices = state
        .database
        .trusted_devices(principal.user.id, OffsetDateTime::now_utc())
        .await?;
    let when = |time: OffsetDateTime| time.format(&Rfc3339).unwrap_or_default();
    Ok(Json(Value::Array(
        devices
            .iter()
            .map(|device| {
                json!({
                    "id": device.id,
                    "ip": device.ip,
                    "user_agent": device.user_agent,
                    "created_at": when(device.created_at),
                    "last_used_at": when(device.last_used_at),
                    "expires_at": when(device.expires_at),
                })
            })
            .collect(),
    )))
}

/// `DELETE /v1/me/trusted-devices/{id}`: that browser owes the second factor again.
pub async fn revoke_trusted_device(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    forget_device(&state, &trail, &principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn forget_device(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    id: Uuid,
) -> Result<(), ApiError> {
    let user = &principal.user;
    if !state.database.revoke_trusted_device(user.id, id).await? {
        return Err(ApiError::not_found());
    }
    audit::record(
        &state.database,
        AuditEvent {
            target: Some(format!("trusted device {id}")),
            ..trail.by_user(user, Action::TrustedDeviceRevoked, Outcome::Success)
        },
    )
    .await?;
    Ok(())
}

fn mfa_not_enabled() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "mfa_not_enabled",
        "Two-factor authentication is not on.",
    )
}
