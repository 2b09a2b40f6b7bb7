//! The signed-in user's second factor (docs/security.md#totp, #backup-codes,
//! #trusted-devices): enrollment and its confirmation, backup codes, trusted devices, and
//! turning it off.

use mailroom_core::TrustedDeviceId;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_crypto::totp::TotpSecret;
use mailroom_storage::two_factor::TrustedDevice;
use qrcode::QrCode;
use qrcode::render::svg;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::application::actor::Principal;
use crate::application::lockout::{Claimant, Verdict, gated};
use crate::application::second_factor::{self, new_backup_codes};
use crate::audit::{self, AuditTrail};
use crate::error::{Conflict, DomainError};
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

pub async fn begin(state: &AppState, principal: &Principal) -> Result<Enrollment, DomainError> {
    principal.require_recent_auth()?;
    let user = &principal.user;
    let secret = TotpSecret::generate();
    let started = state
        .database
        .two_factor()
        .start_totp_enrollment(user.id, secret.expose(), OffsetDateTime::now_utc())
        .await?;
    if !started {
        return Err(DomainError::Conflict(Conflict::MfaAlreadyEnabled));
    }
    let uri = secret
        .otpauth_uri(ISSUER, &user.email)
        .map_err(DomainError::internal)?;
    let qr_svg = QrCode::new(uri.as_bytes())
        .map_err(DomainError::internal)?
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok(Enrollment {
        secret: SecretString::from(secret.base32().as_str()),
        otpauth_uri: SecretString::from(uri.as_str()),
        qr_svg,
    })
}

pub async fn confirm_with(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    code: &SecretString,
) -> Result<Vec<String>, DomainError> {
    principal.require_recent_auth()?;
    let user = &principal.user;
    let pending = state
        .database
        .two_factor()
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
        .lockout()
        .forgive_login_attempt(claimant.email())
        .await?;
    let (codes, hashes) = new_backup_codes(&state.backup_code_key, user.id);
    let enabled = state
        .database
        .two_factor()
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

pub async fn disable_with(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    proof: second_factor::Proof<'_>,
) -> Result<(), DomainError> {
    principal.require_recent_auth()?;
    let user = &principal.user;
    if !user.mfa_enabled {
        return Err(DomainError::Conflict(Conflict::MfaNotEnabled));
    }
    // Through the lockout gate: a stolen session is no code oracle.
    second_factor::check(state, trail, user, proof).await?;
    state.database.two_factor().disable_totp(user.id).await?;
    audit::record(
        &state.database,
        trail.by_user(user, Action::MfaDisabled, Outcome::Success),
    )
    .await?;
    Ok(())
}

pub async fn regenerate(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
) -> Result<Vec<String>, DomainError> {
    principal.require_recent_auth()?;
    let user = &principal.user;
    if !user.mfa_enabled {
        return Err(DomainError::Conflict(Conflict::MfaNotEnabled));
    }
    let (codes, hashes) = new_backup_codes(&state.backup_code_key, user.id);
    state
        .database
        .two_factor()
        .replace_backup_codes(user.id, &hashes)
        .await?;
    audit::record(
        &state.database,
        trail.by_user(user, Action::BackupCodesRegenerated, Outcome::Success),
    )
    .await?;
    Ok(codes)
}

pub async fn forget_device(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    id: TrustedDeviceId,
) -> Result<(), DomainError> {
    let user = &principal.user;
    if !state
        .database
        .two_factor()
        .revoke_trusted_device(user.id, id)
        .await?
    {
        return Err(DomainError::NotFound);
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

/// How many of the owner's backup codes are still unused.
pub async fn backup_codes_left(
    state: &AppState,
    principal: &Principal,
) -> Result<i64, DomainError> {
    Ok(state
        .database
        .two_factor()
        .unused_backup_codes(principal.user.id)
        .await?)
}

/// The owner's live trusted devices.
pub async fn trusted_devices(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<TrustedDevice>, DomainError> {
    Ok(state
        .database
        .two_factor()
        .trusted_devices(principal.user.id, OffsetDateTime::now_utc())
        .await?)
}
