//! Access and refresh tokens for API clients signing in as an account
//! (docs/security.md#refresh-tokens): a password grant starts a refresh-token family; a refresh
//! grant rotates it. A retired refresh token presented again revokes the whole family, unless
//! it comes within the grace window, when it gets the same pair as the first time.

use mailroom_core::accounts::{REFRESH_FAMILY_TTL, REFRESH_GRACE};
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::{TokenFamilyId, UserId};
use mailroom_storage::accounts::{Device, NewDevice, SignInRecord};
use mailroom_storage::queue::JobKind;
use mailroom_storage::tokens::{NewRefreshToken, Rotation};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::application::{accounts, second_factor};
use crate::audit::{self, AuditTrail};
use crate::auth::tokens;
use crate::error::DomainError;
use crate::state::AppState;

/// A signed access token and the refresh token that renews it.
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
}

/// What an access token says.
struct Grant {
    user_id: UserId,
    family: TokenFamilyId,
    jti: Uuid,
    issued_at: OffsetDateTime,
    authenticated_at: OffsetDateTime,
    refresh_token: String,
}

/// The password grant: the account's password, and its second factor when it has one.
pub async fn password_grant(
    state: &AppState,
    trail: &AuditTrail,
    email: &str,
    password: &SecretString,
    totp_code: Option<&SecretString>,
    backup_code: Option<&SecretString>,
) -> Result<TokenPair, DomainError> {
    let now = OffsetDateTime::now_utc();
    let user = accounts::authenticate(state, trail, email, password).await?;
    if user.mfa_enabled {
        if totp_code.is_none() && backup_code.is_none() {
            return Err(DomainError::MfaRequired { mfa_token: None });
        }
        let proof = second_factor::Proof::from_fields(totp_code, backup_code)?;
        second_factor::check(state, trail, &user, proof).await?;
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
    let alert = accounts::new_device_mail(state, trail, &user).await?;
    let NewDevice(new_device) = state
        .database
        .tokens()
        .start_token_family(
            user.id,
            &first,
            now + REFRESH_FAMILY_TTL,
            SignInRecord {
                device: Device {
                    ip: trail.ip(),
                    user_agent: trail.user_agent(),
                },
                event: &signed_in,
                new_device_mail: Some(&alert),
            },
            now,
        )
        .await?;
    if new_device {
        state.queue.wake(JobKind::SystemMail);
    }
    sign(
        state,
        Grant {
            user_id: user.id,
            family: TokenFamilyId::from_uuid(first.id),
            jti: first.access_jti,
            issued_at: now,
            authenticated_at: now,
            refresh_token,
        },
    )
}

/// The refresh grant: rotates the presented refresh token within its family.
pub async fn refresh_grant(
    state: &AppState,
    trail: &AuditTrail,
    refresh_token: &SecretString,
) -> Result<TokenPair, DomainError> {
    let now = OffsetDateTime::now_utc();
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
        .tokens()
        .rotate_refresh_token(&tokens::refresh_hash(presented), &child, grace, now)
        .await?;
    let grant = match rotation {
        Rotation::Rotated {
            user_id,
            family_id,
            authenticated_at,
        } => Grant {
            user_id,
            family: family_id,
            jti: child.access_jti,
            issued_at: now,
            authenticated_at,
            refresh_token: successor,
        },
        Rotation::Replayed {
            user_id,
            family_id,
            access_jti,
            access_iat,
            authenticated_at,
        } => Grant {
            user_id,
            family: family_id,
            jti: access_jti,
            issued_at: access_iat,
            authenticated_at,
            refresh_token: successor,
        },
        Rotation::Reused { user_id, family_id } => {
            tracing::warn!(%user_id, %family_id, "retired refresh token reused: family revoked");
            let org_id = state
                .database
                .accounts()
                .user_by_id(user_id)
                .await?
                .map(|u| u.org_id);
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
            return Err(DomainError::InvalidGrant);
        }
        Rotation::Invalid => return Err(DomainError::InvalidGrant),
    };
    sign(state, grant)
}

fn sign(state: &AppState, grant: Grant) -> Result<TokenPair, DomainError> {
    let access_token = state
        .tokens
        .access_token(
            grant.user_id,
            grant.family,
            grant.jti,
            grant.issued_at,
            grant.authenticated_at,
        )
        .map_err(DomainError::internal)?;
    Ok(TokenPair {
        access_token,
        refresh_token: grant.refresh_token,
    })
}
