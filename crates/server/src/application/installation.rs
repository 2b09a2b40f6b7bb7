//! The installation as its operator meets it: the first super-admin (a fresh install has no
//! account to sign in with, so `serve` prints a one-time link whose page creates it), whether
//! it is ready to serve, and the depth of its work queue.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailroom_core::accounts::SETUP_TOKEN_TTL;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_storage::accounts::{PlatformRole, User};
use mailroom_storage::queue::KindDepth;
use mailroom_storage::{Backend, Database};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use url::Url;

use crate::application::accounts;
use crate::audit::AuditTrail;
use crate::auth::session;
use crate::error::{DomainError, Forbidden};
use crate::state::AppState;

/// With no account yet, a fresh setup link (replacing any earlier one); otherwise `None`.
pub async fn setup_link(database: &Database, public_url: &Url) -> Result<Option<Url>, DomainError> {
    if database.accounts().has_accounts().await? {
        return Ok(None);
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = URL_SAFE_NO_PAD.encode(secret);
    let expires_at = OffsetDateTime::now_utc() + SETUP_TOKEN_TTL;
    database
        .accounts()
        .save_setup_token(&session::token_hash(&token), expires_at)
        .await?;
    let mut link = public_url.join("/setup").map_err(DomainError::internal)?;
    link.query_pairs_mut().append_pair("token", &token);
    Ok(Some(link))
}

/// Creates the first super-admin with the setup link's token, and signs them in: the new
/// session's token.
pub async fn create_first_admin(
    state: &AppState,
    trail: &AuditTrail,
    setup_token: &SecretString,
    email: &str,
    password: &SecretString,
) -> Result<String, DomainError> {
    let account =
        accounts::operator_account(&state.passwords, email, password, PlatformRole::SuperAdmin)
            .await?;
    let now = OffsetDateTime::now_utc();
    let issued = session::issue(trail, now);
    let token_hash = session::token_hash(setup_token.expose_secret());
    let event = AuditEvent {
        session_id: Some(issued.record.id),
        target: Some(account.email.clone()),
        subject: Some(account.email.clone()),
        ..trail.event(Action::SetupCompleted, Outcome::Success)
    };
    let user: User = state
        .database
        .accounts()
        .complete_setup(&token_hash, &account, &issued.record, &event, now)
        .await?
        .ok_or(DomainError::Forbidden(Forbidden::SetupTokenInvalid))?;
    tracing::info!(user_id = %user.id, "first super-admin created");
    Ok(issued.token)
}

/// Whether this node can serve: its database answers. The backend it runs on.
pub async fn readiness(state: &AppState) -> Result<Backend, DomainError> {
    match state.database.ping().await {
        Ok(()) => Ok(state.database.backend()),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed: database unreachable");
            Err(DomainError::DatabaseUnreachable)
        }
    }
}

/// The work queue's depth by kind, by the database's clock.
pub async fn queue_depths(state: &AppState) -> Result<Vec<KindDepth>, DomainError> {
    Ok(state.database.queue().job_depths().await?)
}
