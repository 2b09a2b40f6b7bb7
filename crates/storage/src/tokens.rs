//! Refresh-token families (docs/security.md#refresh-tokens): issue, rotate on every use, re-issue within the grace
//! window, and revoke a whole family when a retired token comes back.

use futures::FutureExt;
use mailroom_core::{TokenFamilyId, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::accounts::{Device, NewDevice, SignInRecord, from_ms, ms, record_sign_in};
use crate::tx::{Inner, Tenancy};
use crate::{Database, StorageError, on_backend};

/// A refresh token to store (its hash) with the access token issued beside it (its claims).
#[derive(Clone, Debug)]
pub struct NewRefreshToken {
    pub id: Uuid,
    pub token_hash: Vec<u8>,
    pub access_jti: Uuid,
    pub access_iat: OffsetDateTime,
}

/// What presenting a refresh token did.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// It was live: it is retired, and the child given is now the family's live token.
    Rotated {
        user_id: UserId,
        family_id: TokenFamilyId,
        authenticated_at: OffsetDateTime,
    },
    /// It was retired moments ago (two tabs racing): the child issued then, whose access
    /// token had these claims, is the answer again.
    Replayed {
        user_id: UserId,
        family_id: TokenFamilyId,
        access_jti: Uuid,
        access_iat: OffsetDateTime,
        authenticated_at: OffsetDateTime,
    },
    /// It was retired before the grace window: presumed stolen, the whole family is revoked.
    Reused {
        user_id: UserId,
        family_id: TokenFamilyId,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

#[derive(sqlx::FromRow)]
struct Presented {
    id: Uuid,
    family_id: Uuid,
    user_id: Uuid,
    family_expires_at: i64,
    authenticated_at: i64,
    used_at: Option<i64>,
    revoked_at: Option<i64>,
}

/// Refresh token families and their rotation. Reached through [`Database::tokens`].
#[derive(Clone, Copy)]
pub struct Tokens<'a> {
    pub(crate) db: &'a Database,
}

impl Tokens<'_> {
    /// Starts a family with its first token (the family is named after it) for a password
    /// grant from `device`, and records the sign-in ([`record_sign_in`]'s
    /// entries) in the same transaction.
    pub async fn start_token_family(
        &self,
        user_id: UserId,
        first: &NewRefreshToken,
        family_expires_at: OffsetDateTime,
        sign_in: SignInRecord<'_>,
        now: OffsetDateTime,
    ) -> Result<NewDevice, StorageError> {
        let key = self.db.audit_key()?;
        let (first, ip, user_agent, mail, signed_in) = (
            first.clone(),
            sign_in.device.ip.to_owned(),
            sign_in.device.user_agent.map(str::to_owned),
            sign_in.new_device_mail.cloned(),
            sign_in.event.clone(),
        );
        self.db
            .serializable(|tx| {
                let (first, key, signed_in) = (first.clone(), key.clone(), signed_in.clone());
                let mail = mail.clone();
                let (ip, user_agent) = (ip.clone(), user_agent.clone());
                async move {
                    let family = Family {
                        id: first.id,
                        user_id,
                        expires_at: family_expires_at,
                        authenticated_at: now,
                    };
                    insert_token(tx, &first, &family, None, now).await?;
                    let device = Device {
                        ip: &ip,
                        user_agent: user_agent.as_deref(),
                    };
                    record_sign_in(tx, &key, user_id, device, &signed_in, mail.as_ref(), now).await
                }
                .boxed()
            })
            .await
    }

    /// Exchanges a presented refresh token; `child` is what a live one is exchanged for.
    pub async fn rotate_refresh_token(
        &self,
        presented_hash: &[u8],
        child: &NewRefreshToken,
        grace: time::Duration,
        now: OffsetDateTime,
    ) -> Result<Rotation, StorageError> {
        let (presented_hash, child) = (presented_hash.to_owned(), child.clone());
        self.db.serializable_for(&Tenancy::RefreshToken(hex::encode(&presented_hash)), |tx| {
            let (presented_hash, child) = (presented_hash.clone(), child.clone());
            async move {
                let presented: Option<Presented> = on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query_as(
                        "SELECT id, family_id, user_id, family_expires_at, authenticated_at, used_at, revoked_at \
                         FROM refresh_tokens WHERE token_hash = $1",
                    )
                    .bind(&presented_hash)
                    .fetch_optional(&mut **tx)
                    .await?
                });
                let Some(token) = presented else {
                    return Ok(Rotation::Invalid);
                };
                if token.revoked_at.is_some() || token.family_expires_at <= ms(now) {
                    return Ok(Rotation::Invalid);
                }
                let (user_id, family_id) = (UserId::from_uuid(token.user_id), token.family_id);
                // The rest is the token's user's family.
                tx.act_for(&Tenancy::User(user_id)).await?;
                let authenticated_at = from_ms(token.authenticated_at);
                match token.used_at {
                    None => {
                        on_backend!(&mut tx.0, Inner, tx => {
                            sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE id = $2")
                                .bind(ms(now))
                                .bind(token.id)
                                .execute(&mut **tx)
                                .await?;
                        });
                        let family = Family {
                            id: family_id,
                            user_id,
                            expires_at: from_ms(token.family_expires_at),
                            authenticated_at,
                        };
                        insert_token(tx, &child, &family, Some(token.id), now).await?;
                        Ok(Rotation::Rotated {
                            user_id,
                            family_id: TokenFamilyId::from_uuid(family_id),
                            authenticated_at,
                        })
                    }
                    Some(used_at) if ms(now) - used_at <= grace.whole_milliseconds() as i64 => {
                        let issued: Option<(Uuid, i64)> = on_backend!(&mut tx.0, Inner, tx => {
                            sqlx::query_as(
                                "SELECT access_jti, access_iat FROM refresh_tokens WHERE parent_id = $1",
                            )
                            .bind(token.id)
                            .fetch_optional(&mut **tx)
                            .await?
                        });
                        Ok(match issued {
                            Some((access_jti, access_iat)) => Rotation::Replayed {
                                user_id,
                                family_id: TokenFamilyId::from_uuid(family_id),
                                access_jti,
                                access_iat: from_ms(access_iat),
                                authenticated_at,
                            },
                            None => Rotation::Invalid,
                        })
                    }
                    Some(_) => {
                        on_backend!(&mut tx.0, Inner, tx => {
                            sqlx::query(
                                "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
                            )
                            .bind(ms(now))
                            .bind(family_id)
                            .execute(&mut **tx)
                            .await?;
                        });
                        Ok(Rotation::Reused {
                            user_id,
                            family_id: TokenFamilyId::from_uuid(family_id),
                        })
                    }
                }
            }
            .boxed()
        })
        .await
    }

    /// Whether any token of the user's family is still good: access tokens of a revoked
    /// family stop working at once, not when they expire.
    pub async fn token_family_live(
        &self,
        user_id: UserId,
        family_id: TokenFamilyId,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let live: i64 = self
            .db
            .transaction_for(&Tenancy::User(user_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_scalar(
                            "SELECT COUNT(*) FROM refresh_tokens WHERE user_id = $1 \
                             AND family_id = $2 AND revoked_at IS NULL AND family_expires_at > $3",
                        )
                        .bind(user_id.as_uuid())
                        .bind(family_id.as_uuid())
                        .bind(ms(now))
                        .fetch_one(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(live > 0)
    }

    pub async fn revoke_token_family(
        &self,
        user_id: UserId,
        family_id: TokenFamilyId,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        self.db
            .transaction_for(&Tenancy::User(user_id), |tx| {
                async move {
                    on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE refresh_tokens SET revoked_at = $1 \
                             WHERE user_id = $2 AND family_id = $3 AND revoked_at IS NULL",
                        )
                        .bind(ms(now))
                        .bind(user_id.as_uuid())
                        .bind(family_id.as_uuid())
                        .execute(&mut **tx)
                        .await?;
                    });
                    Ok(())
                }
                .boxed()
            })
            .await
    }
}

/// What every token of a family shares.
struct Family {
    id: Uuid,
    user_id: UserId,
    expires_at: OffsetDateTime,
    authenticated_at: OffsetDateTime,
}

async fn insert_token(
    tx: &mut crate::Tx,
    token: &NewRefreshToken,
    family: &Family,
    parent_id: Option<Uuid>,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    tx.act_for(&Tenancy::User(family.user_id)).await?;
    on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(
            "INSERT INTO refresh_tokens (id, family_id, parent_id, user_id, token_hash, access_jti, \
             access_iat, authenticated_at, created_at, family_expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(token.id)
        .bind(family.id)
        .bind(parent_id)
        .bind(family.user_id.as_uuid())
        .bind(&token.token_hash)
        .bind(token.access_jti)
        .bind(ms(token.access_iat))
        .bind(ms(family.authenticated_at))
        .bind(ms(now))
        .bind(ms(family.expires_at))
        .execute(&mut **tx)
        .await?;
    });
    Ok(())
}
