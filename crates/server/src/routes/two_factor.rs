//! The signed-in user's second factor (docs/security.md#totp, #backup-codes, #trusted-devices): TOTP enrollment and removal, backup
//! codes, trusted devices. The domain functions here serve the JSON API and the security
//! page alike.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mailroom_core::TrustedDeviceId;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::application::second_factor;
use crate::application::two_factor;
use crate::audit::AuditTrail;
use crate::extract::Principal;
use crate::extract::principal::SetupPrincipal;
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;

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
    let enrollment = two_factor::begin(&state, &principal).await?;
    Ok(Json(json!({
        "secret": enrollment.secret.expose_secret(),
        "otpauth_uri": enrollment.otpauth_uri.expose_secret(),
        "qr_svg": enrollment.qr_svg,
    })))
}

/// `POST /v1/me/2fa/totp/confirm {code}`: turns two-factor on; the backup codes are in the
/// answer, and nowhere else, ever.
pub async fn confirm(
    State(state): State<AppState>,
    trail: AuditTrail,
    SetupPrincipal(principal): SetupPrincipal,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Json<Value>, ApiError> {
    let codes = two_factor::confirm_with(&state, &trail, &principal, &body.code).await?;
    Ok(Json(json!({ "backup_codes": codes })))
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
    two_factor::disable_with(&state, &trail, &principal, proof).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/me/2fa/backup-codes` (recent sign-in): ten new codes; the old ones stop working.
pub async fn regenerate_backup_codes(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let codes = two_factor::regenerate(&state, &trail, &principal).await?;
    Ok(Json(json!({ "backup_codes": codes })))
}

/// `GET /v1/me/trusted-devices`.
pub async fn trusted_devices(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let devices = two_factor::trusted_devices(&state, &principal).await?;
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
    Path(id): Path<TrustedDeviceId>,
) -> Result<StatusCode, ApiError> {
    two_factor::forget_device(&state, &trail, &principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
