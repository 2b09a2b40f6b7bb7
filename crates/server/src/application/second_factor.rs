//! The second factor at sign-in (docs/security.md#totp, #backup-codes, #trusted-devices): the challenge that stands for an accepted
//! password, checking a TOTP or backup code through the lockout gate, and the trusted-device
//! device that skips the second factor on one browser (its cookie is the adapters').

use mailroom_core::accounts::{MFA_CHALLENGE_TTL, TRUSTED_DEVICE_TTL};
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::{TrustedDeviceId, UserId};
use mailroom_crypto::backup_codes;
use mailroom_crypto::root_key::DerivedKey;
use mailroom_crypto::totp::TotpSecret;
use mailroom_storage::accounts::User;
use mailroom_storage::two_factor::NewTrustedDevice;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::application::lockout::{Claimant, Verdict, gated};
use crate::audit::{self, AuditTrail};
use crate::auth::session::{random_token, token_hash};
use crate::error::DomainError;
use crate::state::AppState;

/// What the caller offers as the second factor.
pub enum Proof<'a> {
    Totp(&'a SecretString),
    BackupCode(&'a SecretString),
}

impl<'a> Proof<'a> {
    /// From the two optional fields of a request: exactly one must be given.
    pub fn from_fields(
        totp_code: Option<&'a SecretString>,
        backup_code: Option<&'a SecretString>,
    ) -> Result<Self, DomainError> {
        match (totp_code, backup_code) {
            (Some(code), None) => Ok(Proof::Totp(code)),
            (None, Some(code)) => Ok(Proof::BackupCode(code)),
            _ => Err(DomainError::invalid(
                "code",
                "Give either the code from the authenticator app or a backup code.",
            )),
        }
    }
}

/// A password was right and a second factor is owed: a single-use token that stands for
/// the password for five minutes.
pub async fn challenge(state: &AppState, user: &User) -> Result<SecretString, DomainError> {
    let token = random_token();
    let expires_at = OffsetDateTime::now_utc() + MFA_CHALLENGE_TTL;
    state
        .database
        .two_factor()
        .create_mfa_challenge(user.id, &token_hash(&token), expires_at)
        .await?;
    Ok(SecretString::from(token))
}

/// Spends a live challenge token; the user it stood for.
pub async fn spend_challenge(state: &AppState, token: &SecretString) -> Result<User, DomainError> {
    let user_id = state
        .database
        .two_factor()
        .spend_mfa_challenge(
            &token_hash(token.expose_secret()),
            OffsetDateTime::now_utc(),
        )
        .await?
        .ok_or(DomainError::InvalidMfaToken)?;
    state
        .database
        .accounts()
        .user_by_id(user_id)
        .await?
        .ok_or(DomainError::InvalidMfaToken)
}

/// Checks the second factor through the lockout gate: wrong codes count toward lockout
/// (docs/security.md#mfa-required). A TOTP code is accepted once: its replay is refused as `code_already_used`, and
/// is not a guess. A backup code works once ever. On success the failure count is cleared:
/// the sign-in is complete.
pub async fn check(
    state: &AppState,
    trail: &AuditTrail,
    user: &User,
    proof: Proof<'_>,
) -> Result<(), DomainError> {
    let now = OffsetDateTime::now_utc();
    let claimant = Claimant::account(user)?;
    gated(
        state,
        trail,
        &claimant,
        || DomainError::InvalidCode,
        async {
            Ok(match &proof {
                Proof::Totp(code) => match totp_check(state, user.id, code, now).await? {
                    TotpCheck::Accepted => Verdict::Right(()),
                    TotpCheck::AlreadyUsed => Verdict::NotAGuess(DomainError::CodeAlreadyUsed),
                    TotpCheck::Wrong => Verdict::Wrong,
                },
                Proof::BackupCode(code) => {
                    let spent = match backup_codes::normalize(code.expose_secret()) {
                        Some(normalized) => {
                            state
                                .database
                                .two_factor()
                                .spend_backup_code(
                                    user.id,
                                    &backup_code_hash(&state.backup_code_key, user.id, &normalized),
                                    now,
                                )
                                .await?
                        }
                        None => false,
                    };
                    if !spent {
                        return Ok(Verdict::Wrong);
                    }
                    audit::record(
                        &state.database,
                        trail.by_user(user, Action::BackupCodeUsed, Outcome::Success),
                    )
                    .await?;
                    Verdict::Right(())
                }
            })
        },
    )
    .await?;
    Ok(state
        .database
        .accounts()
        .record_successful_login(user, None, now)
        .await?)
}

/// What a TOTP code is to the user's enabled secret.
pub enum TotpCheck {
    /// A current code, not used before: its step is spent now.
    Accepted,
    /// A current code whose step (or a later one) was already used.
    AlreadyUsed,
    /// No current code, or no enabled secret.
    Wrong,
}

/// Checks `code` against the user's enabled secret; a match spends its step.
pub async fn totp_check(
    state: &AppState,
    user_id: UserId,
    code: &SecretString,
    now: OffsetDateTime,
) -> Result<TotpCheck, DomainError> {
    let Some(totp) = state
        .database
        .two_factor()
        .totp(user_id)
        .await?
        .filter(|totp| totp.enabled)
    else {
        return Ok(TotpCheck::Wrong);
    };
    let secret = TotpSecret::from_bytes(totp.secret);
    let unix = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let Some(step) = secret.matching_step(code.expose_secret(), unix) else {
        return Ok(TotpCheck::Wrong);
    };
    Ok(
        if state
            .database
            .two_factor()
            .spend_totp_step(user_id, step)
            .await?
        {
            TotpCheck::Accepted
        } else {
            TotpCheck::AlreadyUsed
        },
    )
}

/// Backup codes are stored as MACs under a server key: short enough to guess offline from a
/// plain hash, not without the key.
pub fn backup_code_hash(key: &DerivedKey, user_id: UserId, normalized: &str) -> Vec<u8> {
    let mut message = user_id.as_uuid().as_bytes().to_vec();
    message.extend_from_slice(normalized.as_bytes());
    key.mac(&message).to_vec()
}

/// A fresh set of backup codes: the codes for the user, the MACs for storage.
pub fn new_backup_codes(key: &DerivedKey, user_id: UserId) -> (Vec<String>, Vec<Vec<u8>>) {
    let codes = backup_codes::generate();
    let hashes = codes
        .iter()
        .filter_map(|code| backup_codes::normalize(code))
        .map(|normalized| backup_code_hash(key, user_id, &normalized))
        .collect();
    (codes, hashes)
}

/// Whether this browser is a trusted device of `user`'s (docs/security.md#trusted-devices).
pub async fn trusted_device(
    state: &AppState,
    user: &User,
    token: Option<&str>,
) -> Result<bool, DomainError> {
    let Some(token) = token else {
        return Ok(false);
    };
    Ok(state
        .database
        .two_factor()
        .use_trusted_device(user.id, &token_hash(token), OffsetDateTime::now_utc())
        .await?)
}

/// Remembers this browser as a trusted device; returns the token its cookie carries.
pub async fn trust_device(
    state: &AppState,
    trail: &AuditTrail,
    user: &User,
) -> Result<SecretString, DomainError> {
    let token = random_token();
    let now = OffsetDateTime::now_utc();
    let device = NewTrustedDevice {
        id: TrustedDeviceId::generate(),
        token_hash: token_hash(&token),
        ip: trail.ip().to_owned(),
        user_agent: trail.user_agent().map(str::to_owned),
        expires_at: now + TRUSTED_DEVICE_TTL,
    };
    state
        .database
        .two_factor()
        .add_trusted_device(user.id, &device, now)
        .await?;
    audit::record(
        &state.database,
        AuditEvent {
            target: Some(format!("trusted device {}", device.id)),
            ..trail.by_user(user, Action::TrustedDeviceAdded, Outcome::Success)
        },
    )
    .await?;
    Ok(SecretString::from(token))
}
