//! The sign-in lockout (docs/security.md#lockout): failed attempts counted per normalized address, whether or
//! not an account has it, so that an unknown address locks exactly like a known one (docs/security.md#enumeration).

use std::time::Duration;

use futures::FutureExt;
use mailroom_core::accounts::{LOCKOUT_THRESHOLD, lockout_duration};
use mailroom_core::audit::AuditEvent;
use mailroom_core::{EmailAddress, UserId};
use time::OffsetDateTime;

use crate::accounts::{from_ms, ms};
use crate::teams::Change;
use crate::tx::{Inner, Tenancy};
use crate::{Database, StorageError, Tx, on_backend};

/// How long the counters of an address that is not locked are kept after its last failure:
/// the lockout history (each lock longer than the last) lasts as long.
pub const QUIET_COUNTERS_KEPT: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Whether a secret may be checked now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginGate {
    /// Yes: this is the `attempt`-th in a row without a success, and the address was locked
    /// `lockouts` times before (what the next lock's length follows from).
    Open { attempt: u32, lockouts: u32 },
    /// No: the address is locked.
    Locked(Lock),
}

/// An address's lock: until when, and whether the call that returned it locked it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lock {
    pub until: OffsetDateTime,
    pub just_now: bool,
    /// Whether the owner's alert was queued with the lock (see [`LockAlert`]).
    pub alert_queued: bool,
}

/// The owner's alert of a lock, sealed before the lock's transaction for the lock the caller
/// expects (`until`); queued in that transaction if the lock is made now and ends then.
#[derive(Clone)]
pub struct LockAlert {
    pub until: OffsetDateTime,
    pub mail: crate::queue::PreparedJob,
}

/// Failed sign-ins and the locks they cause. Reached through [`Database::lockout`].
#[derive(Clone, Copy)]
pub struct Lockouts<'a> {
    pub(crate) db: &'a Database,
}

impl Lockouts<'_> {
    /// Reserves one attempt for the address, before the secret is checked: it counts as a
    /// failure until a success clears it, so however many attempts race, at most the
    /// threshold of them are checked. Past the threshold the address locks, for longer each
    /// time; while locked, attempts are refused and not counted.
    pub async fn open_login_attempt(
        &self,
        email: &EmailAddress,
        now: OffsetDateTime,
    ) -> Result<LoginGate, StorageError> {
        let email = email.as_str().to_owned();
        self.db.serializable(|tx| {
            let email = email.clone();
            async move {
                let counters = counters(tx, &email).await?;
                if let Some(until) = counters.locked_until.filter(|until| *until > ms(now)) {
                    return Ok(LoginGate::Locked(Lock {
                        until: from_ms(until),
                        just_now: false,
                        alert_queued: false,
                    }));
                }
                if u32::try_from(counters.failed).unwrap_or(u32::MAX) >= LOCKOUT_THRESHOLD {
                    let until = lock(tx, &email, counters.lockouts, now).await?;
                    return Ok(LoginGate::Locked(Lock {
                        until,
                        just_now: true,
                        alert_queued: false,
                    }));
                }
                on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query(
                        "INSERT INTO login_failures (email, failed, lockouts, updated_at) VALUES ($1, 1, 0, $2) \
                         ON CONFLICT (email) DO UPDATE SET failed = login_failures.failed + 1, updated_at = $2",
                    )
                    .bind(&email)
                    .bind(ms(now))
                    .execute(&mut **tx)
                    .await?;
                });
                Ok(LoginGate::Open {
                    attempt: u32::try_from(counters.failed).unwrap_or(0) + 1,
                    lockouts: u32::try_from(counters.lockouts).unwrap_or(0),
                })
            }
            .boxed()
        })
        .await
    }

    /// After the attempt that used up the budget failed: lock now, unless a racing attempt
    /// already did.
    pub async fn lock_address(
        &self,
        email: &EmailAddress,
        alert: Option<&LockAlert>,
        now: OffsetDateTime,
    ) -> Result<Lock, StorageError> {
        let (email, alert) = (email.as_str().to_owned(), alert.cloned());
        self.db
            .serializable(|tx| {
                let (email, alert) = (email.clone(), alert.clone());
                async move {
                    let counters = counters(tx, &email).await?;
                    if let Some(until) = counters.locked_until.filter(|until| *until > ms(now)) {
                        return Ok(Lock {
                            until: from_ms(until),
                            just_now: false,
                            alert_queued: false,
                        });
                    }
                    let until = lock(tx, &email, counters.lockouts, now).await?;
                    // The alert says when the lock ends: queued only if that is this lock's end
                    // (a racing lock changed the count otherwise, and the caller mails after).
                    let alert = alert.filter(|alert| alert.until == until);
                    if let Some(alert) = &alert {
                        crate::queue::enqueue_in(tx, &alert.mail).await?;
                    }
                    Ok(Lock {
                        until,
                        just_now: true,
                        alert_queued: alert.is_some(),
                    })
                }
                .boxed()
            })
            .await
    }

    /// An attempt that was not a guess after all (a correct password while a second factor
    /// is owed, the first code of a TOTP setup, a replay of the code just used): it stops
    /// counting as a failure, but earlier failures stand, so that someone who has the
    /// password gets no fresh budget for guessing codes (docs/security.md#mfa-required).
    pub async fn forgive_login_attempt(&self, email: &EmailAddress) -> Result<(), StorageError> {
        let email = email.as_str().to_owned();
        self.db.transaction_for(&Tenancy::Email(email.clone()), |tx| {
            async move {
                on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query(
                        "UPDATE login_failures \
                         SET failed = CASE WHEN failed > 0 THEN failed - 1 ELSE 0 END WHERE email = $1",
                    )
                    .bind(&email)
                    .execute(&mut **tx)
                    .await?;
                });
                Ok(())
            }
            .boxed()
        })
        .await
    }

    /// Lifts the user's lock and forgets their failures, and appends `event` in the same
    /// transaction; false when there is no such user.
    pub async fn unlock_user(
        &self,
        user_id: UserId,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        self.db
            .teams()
            .audited_change(event, now, move |tx| {
                async move {
                    tx.act_for(&Tenancy::User(user_id)).await?;
                    let email: Option<String> = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
                            .bind(user_id.as_uuid())
                            .fetch_optional(&mut **tx)
                            .await?
                    });
                    let Some(email) = email else {
                        return Ok(Change::NotFound);
                    };
                    forget(tx, &email, None).await?;
                    Ok(Change::Done)
                }
                .boxed()
            })
            .await
            .map(|change| change == Change::Done)
    }

    /// Deletes the counters of addresses that are not locked and failed last before
    /// `before`; how many.
    pub async fn purge_login_failures(
        &self,
        before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<u64, StorageError> {
        self.db
            .transaction_for(&Tenancy::ExpiredBefore(ms(before)), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "DELETE FROM login_failures WHERE updated_at < $1 \
                             AND (locked_until IS NULL OR locked_until <= $2)",
                        )
                        .bind(ms(before))
                        .bind(ms(now))
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                    }))
                }
                .boxed()
            })
            .await
    }
}

struct Counters {
    failed: i32,
    lockouts: i32,
    locked_until: Option<i64>,
}

/// The address's counters; the transaction acts for the address from here on.
async fn counters(tx: &mut Tx, email: &str) -> Result<Counters, StorageError> {
    tx.act_for(&Tenancy::Email(email.to_owned())).await?;
    let row: Option<(i32, i32, Option<i64>)> = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_as("SELECT failed, lockouts, locked_until FROM login_failures WHERE email = $1")
            .bind(email)
            .fetch_optional(&mut **tx)
            .await?
    });
    let (failed, lockouts, locked_until) = row.unwrap_or((0, 0, None));
    Ok(Counters {
        failed,
        lockouts,
        locked_until,
    })
}

/// Locks the address for its next lockout duration; returns until when.
async fn lock(
    tx: &mut Tx,
    email: &str,
    previous_lockouts: i32,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, StorageError> {
    let until = now + lockout_duration(u32::try_from(previous_lockouts).unwrap_or(0));
    on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(
            "INSERT INTO login_failures (email, failed, lockouts, locked_until, updated_at) \
             VALUES ($1, 0, 1, $2, $3) \
             ON CONFLICT (email) DO UPDATE SET failed = 0, lockouts = login_failures.lockouts + 1, \
             locked_until = $2, updated_at = $3",
        )
        .bind(email)
        .bind(ms(until))
        .bind(ms(now))
        .execute(&mut **tx)
        .await?;
    });
    Ok(until)
}

/// Forgets the address's failures and lockout history — unless, with `unless_locked_at`, a
/// racing failure has locked it meanwhile.
pub(crate) async fn forget(
    tx: &mut Tx,
    email: &str,
    unless_locked_at: Option<OffsetDateTime>,
) -> Result<(), StorageError> {
    tx.act_for(&Tenancy::Email(email.to_owned())).await?;
    on_backend!(&mut tx.0, Inner, tx => {
        match unless_locked_at {
            Some(now) => sqlx::query(
                "DELETE FROM login_failures WHERE email = $1 \
                 AND (locked_until IS NULL OR locked_until <= $2)",
            )
            .bind(email)
            .bind(ms(now)),
            None => sqlx::query("DELETE FROM login_failures WHERE email = $1").bind(email),
        }
        .execute(&mut **tx)
        .await?;
    });
    Ok(())
}
