//! The installation as its operator meets it: the first super-admin (a fresh install has no
//! account to sign in with, so `serve` prints a one-time link whose page creates it), accounts
//! made from the terminal, whether it is ready to serve, the work queue (its depth, its jobs
//! listed, retried and cancelled) and the audit log's upkeep. The operations over a bare
//! [`Database`] are the CLI's, which runs no server.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailroom_core::JobId;
use mailroom_core::accounts::SETUP_TOKEN_TTL;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_storage::accounts::{PlatformRole, User};
use mailroom_storage::audit::BrokenLink;
use mailroom_storage::queue::{JobFilter, JobSummary, KindDepth};
use mailroom_storage::{Backend, Database};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use url::Url;

use crate::application::accounts;
use crate::audit::AuditTrail;
use crate::auth::passwords::PasswordWork;
use crate::auth::session;
use crate::error::{Conflict, DomainError, Forbidden};
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

/// Makes an account from the terminal (`mailroom admin create`): the same checks and hashing
/// as the setup page's ([`accounts::operator_account`]), and an audit entry of its own.
pub async fn create_account(
    database: &Database,
    passwords: &PasswordWork,
    email: &str,
    password: &SecretString,
    platform_role: PlatformRole,
) -> Result<User, DomainError> {
    let account = accounts::operator_account(passwords, email, password, platform_role).await?;
    let now = OffsetDateTime::now_utc();
    let user = match database.accounts().create_account(&account, now).await {
        Ok(user) => user,
        Err(error) if error.is_unique_violation() => {
            return Err(DomainError::Conflict(Conflict::AccountExists));
        }
        Err(error) => return Err(error.into()),
    };
    let event = AuditEvent {
        org_id: Some(user.org_id),
        actor: None,
        action: Action::AccountCreatedByAdmin,
        outcome: Outcome::Success,
        target: Some(user.email.clone()),
        subject: Some(user.email.clone()),
        ip: None,
        user_agent: Some("mailroom admin create".to_owned()),
        session_id: None,
        api_key_id: None,
        request_id: None,
    };
    database.audit().append_audit(&event, now).await?;
    Ok(user)
}

/// Every audit chain checked: the first broken link, if any.
pub async fn verify_audit(database: &Database) -> Result<Option<BrokenLink>, DomainError> {
    Ok(database.audit().verify_audit_chains().await?)
}

/// Deletes the audit entries past the retention period; how many.
pub async fn purge_audit(database: &Database) -> Result<u64, DomainError> {
    let before = OffsetDateTime::now_utc() - mailroom_core::audit::RETENTION;
    Ok(database.audit().purge_audit(before).await?)
}

/// The work queue's jobs that `filter` asks for, newest first, never their payloads.
pub async fn jobs(database: &Database, filter: JobFilter) -> Result<Vec<JobSummary>, DomainError> {
    Ok(database.queue().list_jobs(filter).await?)
}

/// Queues a dead or cancelled job again, its attempts afresh.
pub async fn retry_job(database: &Database, id: JobId) -> Result<(), DomainError> {
    if database.queue().retry_job(id).await? {
        Ok(())
    } else {
        Err(DomainError::NotFound)
    }
}

/// Cancels a queued or running job (a bulk job for its organization too).
pub async fn cancel_job(database: &Database, id: JobId) -> Result<(), DomainError> {
    if database.queue().cancel_job_by_id(id).await? {
        Ok(())
    } else {
        Err(DomainError::NotFound)
    }
}
