//! Second factors (docs/security.md#totp, #backup-codes, #trusted-devices): the sealed TOTP secret with its last used step, backup codes,
//! the challenges that stand between a password and a session, and trusted devices.

use futures::FutureExt;
use mailroom_core::{TrustedDeviceId, UserId};
use mailroom_crypto::envelope::{Binding, SYSTEM_SCOPE};
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::accounts::{from_ms, ms};
use crate::keyring::SealedColumn;
use crate::tx::{Inner, Tenancy};
use crate::{Database, StorageError, Tx, on_backend};

pub(crate) const TOTP_SECRET: SealedColumn = SealedColumn {
    table: "mfa_totp",
    column: "secret",
    row_id: "user_id",
    page: crate::keyring::RESEAL_PAGE,
};

fn totp_binding(user_id: UserId) -> Binding<'static> {
    Binding {
        table: TOTP_SECRET.table,
        column: TOTP_SECRET.column,
        row: user_id.as_uuid(),
    }
}

/// A user's TOTP secret and whether it is confirmed.
pub struct TotpState {
    pub secret: Zeroizing<Vec<u8>>,
    pub enabled: bool,
    /// The value as stored: confirming checks that it is still the secret the code was for.
    pub sealed: Vec<u8>,
}

/// A trusted device to remember.
#[derive(Clone)]
pub struct NewTrustedDevice {
    pub id: TrustedDeviceId,
    pub token_hash: Vec<u8>,
    pub ip: String,
    pub user_agent: Option<String>,
    pub expires_at: OffsetDateTime,
}

#[derive(Clone, Debug)]
pub struct TrustedDevice {
    pub id: TrustedDeviceId,
    pub ip: String,
    pub user_agent: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_used_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Second factors: TOTP, backup codes, challenges and trusted devices. Reached through [`Database::two_factor`].
#[derive(Clone, Copy)]
pub struct TwoFactor<'a> {
    pub(crate) db: &'a Database,
}

impl TwoFactor<'_> {
    /// Stores a new, unconfirmed TOTP secret, replacing an unconfirmed one. Returns false,
    /// changing nothing, when the user already has TOTP enabled.
    pub async fn start_totp_enrollment(
        &self,
        user_id: UserId,
        secret: &[u8],
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let sealed = self
            .db
            .seal(SYSTEM_SCOPE, &totp_binding(user_id), secret, now)
            .await?;
        self.db
            .serializable_for(&Tenancy::User(user_id), |tx| {
                let sealed = sealed.clone();
                async move {
                on_backend!(&mut tx.0, Inner, tx => {
                    let written = sqlx::query(
                        "INSERT INTO mfa_totp (user_id, secret, created_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, \
                         created_at = excluded.created_at, last_used_step = NULL \
                         WHERE mfa_totp.enabled_at IS NULL",
                    )
                    .bind(user_id.as_uuid())
                    .bind(&sealed)
                    .bind(ms(now))
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                    Ok(written == 1)
                })
            }
            .boxed()
            })
            .await
    }

    /// The user's TOTP secret, opened, if they have one (confirmed or not).
    pub async fn totp(&self, user_id: UserId) -> Result<Option<TotpState>, StorageError> {
        let row: Option<(Vec<u8>, Option<i64>)> = self
            .db
            .transaction_for(&Tenancy::User(user_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as("SELECT secret, enabled_at FROM mfa_totp WHERE user_id = $1")
                            .bind(user_id.as_uuid())
                            .fetch_optional(&mut **tx)
                            .await?
                    }))
                }
                .boxed()
            })
            .await?;
        let Some((sealed, enabled_at)) = row else {
            return Ok(None);
        };
        let secret = self
            .db
            .open(SYSTEM_SCOPE, &totp_binding(user_id), &sealed)
            .await?;
        Ok(Some(TotpState {
            secret,
            enabled: enabled_at.is_some(),
            sealed,
        }))
    }

    /// Spends a TOTP step: true only for a step later than every one used before, so that a
    /// code is accepted once (docs/security.md#totp), however many requests race with it.
    pub async fn spend_totp_step(&self, user_id: UserId, step: u64) -> Result<bool, StorageError> {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.db
            .serializable(|tx| async move { spend_step(tx, user_id, step).await }.boxed())
            .await
    }

    /// Confirms the pending secret `sealed` (as read with the code's check: a secret that
    /// a racing setup replaced meanwhile is not enabled) with the step of its first code, and
    /// stores the backup codes' MACs. False when that secret is no longer pending.
    pub async fn enable_totp(
        &self,
        user_id: UserId,
        sealed: &[u8],
        step: u64,
        backup_code_hashes: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let (sealed, hashes) = (sealed.to_vec(), backup_code_hashes.to_vec());
        self.db
            .serializable_for(&Tenancy::User(user_id), |tx| {
                let (sealed, hashes) = (sealed.clone(), hashes.clone());
                async move {
                    let enabled = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE mfa_totp SET enabled_at = $1, last_used_step = $2 \
                             WHERE user_id = $3 AND secret = $4 AND enabled_at IS NULL",
                        )
                        .bind(ms(now))
                        .bind(step)
                        .bind(user_id.as_uuid())
                        .bind(&sealed)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                    });
                    if enabled != 1 {
                        return Ok(false);
                    }
                    insert_backup_codes(tx, user_id, &hashes).await?;
                    Ok(true)
                }
                .boxed()
            })
            .await
    }

    /// Turns the second factor off: the secret, the backup codes and the trusted devices go.
    pub async fn disable_totp(&self, user_id: UserId) -> Result<(), StorageError> {
        self.db
            .serializable_for(&Tenancy::User(user_id), |tx| {
                async move {
                    on_backend!(&mut tx.0, Inner, tx => {
                        for sql in [
                            "DELETE FROM mfa_totp WHERE user_id = $1",
                            "DELETE FROM mfa_backup_codes WHERE user_id = $1",
                        ] {
                            sqlx::query(sql).bind(user_id.as_uuid()).execute(&mut **tx).await?;
                        }
                    });
                    forget_devices(tx, user_id).await
                }
                .boxed()
            })
            .await
    }

    /// Replaces every backup code with new ones.
    pub async fn replace_backup_codes(
        &self,
        user_id: UserId,
        hashes: &[Vec<u8>],
    ) -> Result<(), StorageError> {
        let hashes = hashes.to_vec();
        self.db
            .serializable_for(&Tenancy::User(user_id), |tx| {
                let hashes = hashes.clone();
                async move {
                    on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query("DELETE FROM mfa_backup_codes WHERE user_id = $1")
                            .bind(user_id.as_uuid())
                            .execute(&mut **tx)
                            .await?;
                    });
                    insert_backup_codes(tx, user_id, &hashes).await
                }
                .boxed()
            })
            .await
    }

    /// Spends a backup code: true once, for an unused code of this user's.
    pub async fn spend_backup_code(
        &self,
        user_id: UserId,
        hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let hash = hash.to_vec();
        let spent = self
            .db
            .transaction_for(&Tenancy::User(user_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE mfa_backup_codes SET used_at = $1 \
                             WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
                        )
                        .bind(ms(now))
                        .bind(user_id.as_uuid())
                        .bind(&hash)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(spent == 1)
    }

    pub async fn unused_backup_codes(&self, user_id: UserId) -> Result<i64, StorageError> {
        self.db.transaction_for(&Tenancy::User(user_id), |tx| {
            async move {
                Ok(on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query_scalar(
                        "SELECT COUNT(*) FROM mfa_backup_codes WHERE user_id = $1 AND used_at IS NULL",
                    )
                    .bind(user_id.as_uuid())
                    .fetch_one(&mut **tx)
                    .await?
                }))
            }
            .boxed()
        })
        .await
    }

    pub async fn create_mfa_challenge(
        &self,
        user_id: UserId,
        token_hash: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let token_hash = token_hash.to_vec();
        self.db.transaction_for(&Tenancy::User(user_id), |tx| {
            async move {
                on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query("INSERT INTO mfa_challenges (token_hash, user_id, expires_at) VALUES ($1, $2, $3)")
                        .bind(&token_hash)
                        .bind(user_id.as_uuid())
                        .bind(ms(expires_at))
                        .execute(&mut **tx)
                        .await?;
                });
                Ok(())
            }
            .boxed()
        })
        .await
    }

    /// Spends a live challenge and says whose it was: one of any number of racing uses of
    /// the same token gets the user, the others nothing.
    pub async fn spend_mfa_challenge(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<Option<UserId>, StorageError> {
        let hash = token_hash.to_vec();
        let user: Option<Uuid> = self
            .db
            .transaction_for(&Tenancy::MfaChallenge(hex::encode(token_hash)), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_scalar(
                            "DELETE FROM mfa_challenges WHERE token_hash = $1 AND expires_at > $2 \
                             RETURNING user_id",
                        )
                        .bind(&hash)
                        .bind(ms(now))
                        .fetch_optional(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(user.map(UserId::from_uuid))
    }

    /// Forgets expired challenges and trusted devices; returns how many.
    pub async fn purge_expired_second_factor_state(
        &self,
        now: OffsetDateTime,
    ) -> Result<u64, StorageError> {
        self.db
            .transaction_for(&Tenancy::ExpiredBefore(ms(now)), |tx| {
                async move {
                    let mut purged = 0;
                    for sql in [
                        "DELETE FROM mfa_challenges WHERE expires_at <= $1",
                        "DELETE FROM trusted_devices WHERE expires_at <= $1",
                    ] {
                        purged += on_backend!(&mut tx.0, Inner, tx => {
                            sqlx::query(sql).bind(ms(now)).execute(&mut **tx).await?.rows_affected()
                        });
                    }
                    Ok(purged)
                }
                .boxed()
            })
            .await
    }

    pub async fn add_trusted_device(
        &self,
        user_id: UserId,
        device: &NewTrustedDevice,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let device = device.clone();
        self.db.transaction_for(&Tenancy::User(user_id), |tx| {
            async move {
                on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query(
                        "INSERT INTO trusted_devices (id, user_id, token_hash, ip, user_agent, created_at, last_used_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
                    )
                    .bind(device.id.as_uuid())
                    .bind(user_id.as_uuid())
                    .bind(&device.token_hash)
                    .bind(&device.ip)
                    .bind(device.user_agent.as_deref())
                    .bind(ms(now))
                    .bind(ms(device.expires_at))
                    .execute(&mut **tx)
                    .await?;
                });
                Ok(())
            }
            .boxed()
        })
        .await
    }

    /// Whether the browser holding this token is a live trusted device of this user's;
    /// notes its use.
    pub async fn use_trusted_device(
        &self,
        user_id: UserId,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let token_hash = token_hash.to_vec();
        let used = self
            .db
            .transaction_for(&Tenancy::User(user_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE trusted_devices SET last_used_at = $1 \
                             WHERE user_id = $2 AND token_hash = $3 AND expires_at > $1",
                        )
                        .bind(ms(now))
                        .bind(user_id.as_uuid())
                        .bind(&token_hash)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(used == 1)
    }

    pub async fn trusted_devices(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<TrustedDevice>, StorageError> {
        let rows: Vec<(Uuid, String, Option<String>, i64, i64, i64)> = self
            .db
            .transaction_for(&Tenancy::User(user_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT id, ip, user_agent, created_at, last_used_at, expires_at \
                             FROM trusted_devices WHERE user_id = $1 AND expires_at > $2 \
                             ORDER BY created_at DESC",
                        )
                        .bind(user_id.as_uuid())
                        .bind(ms(now))
                        .fetch_all(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, ip, user_agent, created_at, last_used_at, expires_at)| TrustedDevice {
                    id: id.into(),
                    ip,
                    user_agent,
                    created_at: from_ms(created_at),
                    last_used_at: from_ms(last_used_at),
                    expires_at: from_ms(expires_at),
                },
            )
            .collect())
    }

    /// Forgets one of the user's trusted devices; false when they have none with this id.
    pub async fn revoke_trusted_device(
        &self,
        user_id: UserId,
        id: TrustedDeviceId,
    ) -> Result<bool, StorageError> {
        let deleted = self
            .db
            .transaction_for(&Tenancy::User(user_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query("DELETE FROM trusted_devices WHERE id = $1 AND user_id = $2")
                            .bind(id.as_uuid())
                            .bind(user_id.as_uuid())
                            .execute(&mut **tx)
                            .await?
                            .rows_affected()
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(deleted == 1)
    }
}

async fn spend_step(tx: &mut Tx, user_id: UserId, step: i64) -> Result<bool, StorageError> {
    tx.act_for(&Tenancy::User(user_id)).await?;
    let spent = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(
            "UPDATE mfa_totp SET last_used_step = $1 WHERE user_id = $2 AND enabled_at IS NOT NULL \
             AND (last_used_step IS NULL OR last_used_step < $1)",
        )
        .bind(step)
        .bind(user_id.as_uuid())
        .execute(&mut **tx)
        .await?
        .rows_affected()
    });
    Ok(spent == 1)
}

async fn insert_backup_codes(
    tx: &mut Tx,
    user_id: UserId,
    hashes: &[Vec<u8>],
) -> Result<(), StorageError> {
    tx.act_for(&Tenancy::User(user_id)).await?;
    for hash in hashes {
        on_backend!(&mut tx.0, Inner, tx => {
            sqlx::query("INSERT INTO mfa_backup_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(user_id.as_uuid())
                .bind(hash)
                .execute(&mut **tx)
                .await?;
        });
    }
    Ok(())
}

/// Trusted devices and pending challenges end with a password change or reset (docs/security.md#trusted-devices).
pub(crate) async fn forget_devices(tx: &mut Tx, user_id: UserId) -> Result<(), StorageError> {
    tx.act_for(&Tenancy::User(user_id)).await?;
    on_backend!(&mut tx.0, Inner, tx => {
        for sql in [
            "DELETE FROM trusted_devices WHERE user_id = $1",
            "DELETE FROM mfa_challenges WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(user_id.as_uuid()).execute(&mut **tx).await?;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use mailroom_crypto::envelope::KeyId;
    use mailroom_crypto::master_key::MasterKey;
    use mailroom_testkit::both_backends;

    use super::*;
    use crate::accounts::{NewAccount, PlatformRole};
    use crate::keyring::DATA_KEY_MAX_AGE;

    both_backends! {
        async fn old_secrets_move_to_the_new_data_key_in_the_background(test_db) {
            let mut db = Database::connect(test_db.url()).await.unwrap();
            db.migrate().await.unwrap();
            let now = OffsetDateTime::now_utc();
            db.unlock(MasterKey::generate(), now).await.unwrap();
            let account = NewAccount {
                email: "sealed@example.test".into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                platform_role: PlatformRole::User,
            };
            let user = db.accounts().create_account(&account, now).await.unwrap();
            assert!(db.two_factor().start_totp_enrollment(user.id, b"twenty bytes secret!", now).await.unwrap());
            let pending = db.two_factor().totp(user.id).await.unwrap().unwrap();
            // A secret replaced by a racing setup is not the one enabled.
            assert!(db.two_factor().start_totp_enrollment(user.id, b"twenty bytes secret!", now).await.unwrap());
            assert!(!db.two_factor().enable_totp(user.id, &pending.sealed, 1, &[], now).await.unwrap());
            let pending = db.two_factor().totp(user.id).await.unwrap().unwrap();
            assert!(db.two_factor().enable_totp(user.id, &pending.sealed, 1, &[], now).await.unwrap());
            let stored = || async { db.two_factor().totp(user.id).await.unwrap().unwrap().sealed };
            assert_eq!(KeyId::of(&stored().await).unwrap().version, 1);

            let later = now + DATA_KEY_MAX_AGE + time::Duration::days(1);
            assert_eq!(db.reseal_old_values(later).await.unwrap(), 0, "nothing is old yet");
            assert_eq!(db.rotate_data_keys(later).await.unwrap(), 1);
            assert_eq!(db.reseal_old_values(later).await.unwrap(), 1);
            assert_eq!(KeyId::of(&stored().await).unwrap().version, 2);
            assert_eq!(db.reseal_old_values(later).await.unwrap(), 0, "done once");
            let totp = db.two_factor().totp(user.id).await.unwrap().unwrap();
            assert_eq!(totp.secret.as_slice(), b"twenty bytes secret!");
        }
    }
}
