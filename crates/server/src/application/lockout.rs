//! The lockout gate (docs/security.md#lockout) that every check of a sign-in secret (password, TOTP or backup
//! code) passes: failures are counted per normalized address, whether or not an account has
//! it, so an unknown address locks exactly like a known one and the lock tells nothing
//! (docs/security.md#enumeration).

use std::future::Future;

use mailroom_core::EmailAddress;
use mailroom_core::accounts::{LOCKOUT_THRESHOLD, lockout_duration};
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_mail::queued::MailMessage;
use mailroom_storage::accounts::User;
use mailroom_storage::lockout::{Lock, LockAlert, LoginGate};
use mailroom_storage::queue::JobKind;
use time::OffsetDateTime;

use crate::application::system_mail;
use crate::audit::{self, AuditTrail};
use crate::error::DomainError;
use crate::state::AppState;
use crate::work_queue::mail_job;

/// Whose secret is checked: the address the failures count against, and its account when
/// it has one.
pub(crate) struct Claimant<'a> {
    address: EmailAddress,
    user: Option<&'a User>,
}

impl<'a> Claimant<'a> {
    pub fn account(user: &'a User) -> Result<Self, DomainError> {
        let address = EmailAddress::parse(&user.email).map_err(DomainError::internal)?;
        Ok(Self {
            address,
            user: Some(user),
        })
    }

    pub fn address(address: EmailAddress, user: Option<&'a User>) -> Self {
        Self { address, user }
    }

    pub fn email(&self) -> &EmailAddress {
        &self.address
    }

    /// The account the address has, if any.
    pub fn user(&self) -> Option<&'a User> {
        self.user
    }

    /// An audit entry about this address: by its account when it has one.
    fn event(&self, trail: &AuditTrail, action: Action, outcome: Outcome) -> AuditEvent {
        let base = match self.user {
            Some(user) => trail.by_user(user, action, outcome),
            None => trail.event(action, outcome),
        };
        AuditEvent {
            target: Some(self.address.to_string()),
            subject: Some(self.address.to_string()),
            ..base
        }
    }
}

/// What a check of a secret found.
pub(crate) enum Verdict<T> {
    Right(T),
    Wrong,
    /// Not a guess, though not accepted either (a replay of the code just used): the attempt
    /// stops counting, and the caller gets this error.
    NotAGuess(DomainError),
}

/// Runs one check of a secret through the gate: the attempt is counted before the (slow)
/// check, so parallel guesses cannot exceed the budget; the one that spends it locks the
/// address, and the account's owner, if any, is told. `refused` is the error for a wrong
/// secret.
pub(crate) async fn gated<T>(
    state: &AppState,
    trail: &AuditTrail,
    claimant: &Claimant<'_>,
    refused: fn() -> DomainError,
    check: impl Future<Output = Result<Verdict<T>, DomainError>>,
) -> Result<T, DomainError> {
    let now = OffsetDateTime::now_utc();
    let (attempt, lockouts) = match state
        .database
        .lockout()
        .open_login_attempt(&claimant.address, now)
        .await?
    {
        LoginGate::Open { attempt, lockouts } => (attempt, lockouts),
        LoginGate::Locked(lock) => return refuse_locked(state, trail, claimant, lock, now).await,
    };
    match check.await? {
        Verdict::Right(value) => return Ok(value),
        Verdict::NotAGuess(error) => {
            state
                .database
                .lockout()
                .forgive_login_attempt(&claimant.address)
                .await?;
            return Err(error);
        }
        Verdict::Wrong => {}
    }
    audit::record(
        &state.database,
        claimant.event(trail, Action::SigninFailed, Outcome::Failure),
    )
    .await?;
    if attempt < LOCKOUT_THRESHOLD {
        return Err(refused());
    }
    // The owner's alert goes in the lock's own transaction (the outbox pattern).
    let alert = match claimant.user {
        Some(user) => {
            let until = now + lockout_duration(lockouts);
            let mail = mail_job(&user.email, MailMessage::AccountLocked { until });
            Some(LockAlert {
                until,
                mail: state.database.queue().prepare_job(mail).await?,
            })
        }
        None => None,
    };
    let lock = state
        .database
        .lockout()
        .lock_address(&claimant.address, alert.as_ref(), now)
        .await?;
    refuse_locked(state, trail, claimant, lock, now).await
}

/// 423 for a locked address; the lock is announced by whichever attempt made it (a racing
/// attempt may have locked it first, and told).
async fn refuse_locked<T>(
    state: &AppState,
    trail: &AuditTrail,
    claimant: &Claimant<'_>,
    lock: Lock,
    now: OffsetDateTime,
) -> Result<T, DomainError> {
    if lock.just_now {
        announce_lock(state, trail, claimant, lock).await?;
    }
    Err(DomainError::Locked {
        until: lock.until,
        now,
    })
}

/// Records the lock; mails the account's owner, when there is an account.
async fn announce_lock(
    state: &AppState,
    trail: &AuditTrail,
    claimant: &Claimant<'_>,
    lock: Lock,
) -> Result<(), DomainError> {
    let until = lock.until;
    audit::record(
        &state.database,
        claimant.event(trail, Action::AccountLocked, Outcome::Success),
    )
    .await?;
    if let Some(user) = claimant.user {
        tracing::warn!(user_id = %user.id, %until, "account locked after failed sign-ins");
        if lock.alert_queued {
            state.queue.wake(JobKind::SystemMail);
        } else {
            // Locked where no alert was sealed for (at the gate's opening, or by a racing
            // count): queued now.
            system_mail::send(state, &user.email, MailMessage::AccountLocked { until }).await;
        }
    } else {
        tracing::warn!(%until, "an address without an account locked after failed sign-ins");
    }
    Ok(())
}
