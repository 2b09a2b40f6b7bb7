//! The provider identities that sign users in (docs/security.md#openid-connect): keyed by
//! (issuer, subject), never by email; and the spent states of sign-in flows.

use futures::FutureExt;
use mailroom_core::audit::AuditEvent;
use mailroom_core::{EmailAddress, IdentityId, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::accounts::{
    NO_PASSWORD, NewAccount, PlatformRole, User, by_account, email_taken, from_ms, insert_account,
    ms, note_device, user_in,
};
use crate::tx::{Inner, Tenancy};
use crate::{Database, Pool, StorageError, on_backend};

/// An identity at a provider, as a verified ID token gives it.
#[derive(Clone, Debug)]
pub struct ProviderIdentity {
    /// The provider's section name (`google`).
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    pub email: String,
    pub display_name: Option<String>,
    pub picture_url: Option<String>,
}

/// A linked identity, as its user sees it.
#[derive(Clone, Debug)]
pub struct Identity {
    pub id: IdentityId,
    pub provider: String,
    pub issuer: String,
    pub email: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct IdentityRow {
    id: Uuid,
    provider: String,
    issuer: String,
    email: String,
    created_at: i64,
    last_used_at: i64,
}

impl From<IdentityRow> for Identity {
    fn from(row: IdentityRow) -> Self {
        Self {
            id: IdentityId::from_uuid(row.id),
            provider: row.provider,
            issuer: row.issuer,
            email: row.email,
            created_at: from_ms(row.created_at),
            last_used_at: from_ms(row.last_used_at),
        }
    }
}

/// What linking an identity to a user did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linked {
    Linked,
    /// It was this user's already.
    AlreadyTheirs,
    /// Another user has it.
    TakenByAnother,
}

/// What removing an identity did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlinked {
    Removed,
    NotFound,
    /// It is the user's last way to sign in: no password and no other identity.
    LastWayIn,
}

/// Reached through [`Database::identities`].
#[derive(Clone, Copy)]
pub struct Identities<'a> {
    pub(crate) db: &'a Database,
}

fn identity_path(issuer: &str, subject: &str) -> Tenancy {
    Tenancy::Identity(format!("{issuer} {subject}"))
}

impl Identities<'_> {
    /// The user this identity signs in, if it is linked; its use is noted, with the
    /// address, name and picture the provider gave this time, unless the account is disabled.
    pub async fn sign_in(
        &self,
        identity: &ProviderIdentity,
        now: OffsetDateTime,
    ) -> Result<Option<User>, StorageError> {
        let identity = identity.clone();
        self.db
            .serializable_for(&identity_path(&identity.issuer, &identity.subject), |tx| {
                let identity = identity.clone();
                async move {
                    let Some(user_id) = holder(tx, &identity).await? else {
                        return Ok(None);
                    };
                    let Some(mut user) = user_in(tx, user_id).await? else {
                        return Ok(None);
                    };
                    // A disabled account is refused by the caller: nothing of this use is kept.
                    if user.disabled {
                        return Ok(Some(user));
                    }
                    on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE user_identities SET last_used_at = $1, email = $2 \
                             WHERE issuer = $3 AND subject = $4 AND user_id = $5",
                        )
                        .bind(ms(now))
                        .bind(&identity.email)
                        .bind(&identity.issuer)
                        .bind(&identity.subject)
                        .bind(user_id.as_uuid())
                        .execute(&mut **tx)
                        .await?;
                    });
                    save_profile(tx, user_id, &identity).await?;
                    // What `save_profile` wrote.
                    user.display_name = identity.display_name.clone().or(user.display_name);
                    user.picture_url = identity.picture_url.clone().or(user.picture_url);
                    Ok(Some(user))
                }
                .boxed()
            })
            .await
    }

    /// A new account for an address no account has, signed in by `identity`: its email
    /// counts as confirmed, it owns a new personal organization, it has no password, and the
    /// device it came from is noted as its first. `event` is appended as the account's own.
    /// `None` when the address has an account already (a racing request made it, say).
    pub async fn create_account(
        &self,
        email: &EmailAddress,
        identity: &ProviderIdentity,
        device: (&str, Option<&str>),
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Option<User>, StorageError> {
        let key = self.db.audit_key()?;
        let email = email.as_str().to_owned();
        let (identity, event) = (identity.clone(), event.clone());
        let (ip, user_agent) = (device.0.to_owned(), device.1.map(str::to_owned));
        let created = self
            .db
            .serializable_for(&Tenancy::Email(email.clone()), |tx| {
                let (email, identity, event, key) =
                    (email.clone(), identity.clone(), event.clone(), key.clone());
                let (ip, user_agent) = (ip.clone(), user_agent.clone());
                async move {
                    if email_taken(tx, &email).await? {
                        return Ok(None);
                    }
                    let account = NewAccount {
                        email,
                        password_hash: NO_PASSWORD.to_owned(),
                        platform_role: PlatformRole::User,
                    };
                    let (user_id, org_id) = insert_account(tx, &account, now).await?;
                    insert_identity(tx, user_id, &identity, now).await?;
                    save_profile(tx, user_id, &identity).await?;
                    note_device(tx, user_id, &ip, user_agent.as_deref(), now).await?;
                    crate::audit::append(tx, &key, &by_account(&event, user_id, org_id), now)
                        .await?;
                    Ok(Some(user_id))
                }
                .boxed()
            })
            .await?;
        match created {
            Some(user_id) => self.db.accounts().user_by_id(user_id).await,
            None => Ok(None),
        }
    }

    /// Links `identity` to a signed-in user, appending `event` if it did.
    pub async fn link(
        &self,
        user_id: UserId,
        identity: &ProviderIdentity,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Linked, StorageError> {
        let key = self.db.audit_key()?;
        let (identity, event) = (identity.clone(), event.clone());
        self.db
            .serializable_for(&identity_path(&identity.issuer, &identity.subject), |tx| {
                let (identity, event, key) = (identity.clone(), event.clone(), key.clone());
                async move {
                    match holder(tx, &identity).await? {
                        Some(holder) if holder == user_id => {
                            return Ok(Linked::AlreadyTheirs);
                        }
                        Some(_) => return Ok(Linked::TakenByAnother),
                        None => {}
                    }
                    tx.act_for(&Tenancy::User(user_id)).await?;
                    insert_identity(tx, user_id, &identity, now).await?;
                    save_profile(tx, user_id, &identity).await?;
                    crate::audit::append(tx, &key, &event, now).await?;
                    Ok(Linked::Linked)
                }
                .boxed()
            })
            .await
    }

    /// The user's linked identities, oldest first.
    pub async fn of_user(&self, user_id: UserId) -> Result<Vec<Identity>, StorageError> {
        let rows: Vec<IdentityRow> = self
            .db
            .transaction_for(&Tenancy::User(user_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT id, provider, issuer, email, created_at, last_used_at \
                             FROM user_identities WHERE user_id = $1 ORDER BY created_at, id",
                        )
                        .bind(user_id.as_uuid())
                        .fetch_all(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(rows.into_iter().map(Identity::from).collect())
    }

    /// Removes one of the user's identities, unless it is their last way to sign in;
    /// appends `event` if it did.
    pub async fn unlink(
        &self,
        user_id: UserId,
        id: IdentityId,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Unlinked, StorageError> {
        let key = self.db.audit_key()?;
        let event = event.clone();
        self.db
            .serializable_for(&Tenancy::User(user_id), |tx| {
                let (event, key) = (event.clone(), key.clone());
                async move {
                    let (exists, others, has_password): (bool, i64, bool) = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT EXISTS (SELECT 1 FROM user_identities WHERE id = $1 AND user_id = $2), \
                             (SELECT COUNT(*) FROM user_identities WHERE id <> $1 AND user_id = $2), \
                             (SELECT password_hash <> '' FROM users WHERE id = $2)",
                        )
                        .bind(id.as_uuid())
                        .bind(user_id.as_uuid())
                        .fetch_one(&mut **tx)
                        .await?
                    });
                    if !exists {
                        return Ok(Unlinked::NotFound);
                    }
                    if others == 0 && !has_password {
                        return Ok(Unlinked::LastWayIn);
                    }
                    on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query("DELETE FROM user_identities WHERE id = $1 AND user_id = $2")
                            .bind(id.as_uuid())
                            .bind(user_id.as_uuid())
                            .execute(&mut **tx)
                            .await?;
                    });
                    crate::audit::append(tx, &key, &event, now).await?;
                    Ok(Unlinked::Removed)
                }
                .boxed()
            })
            .await
    }

    /// Marks a flow's state as answered; `false` if it was answered before (a replay).
    pub async fn spend_state(
        &self,
        state_hash: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let done = on_backend!(&self.db.pool, Pool, pool => {
            sqlx::query(
                "INSERT INTO oauth_spent_states (state_hash, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (state_hash) DO NOTHING",
            )
            .bind(state_hash)
            .bind(ms(expires_at))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Forgets the spent states whose flows have expired: they cannot be replayed anyway.
    pub async fn purge_spent_states(&self, now: OffsetDateTime) -> Result<u64, StorageError> {
        Ok(on_backend!(&self.db.pool, Pool, pool => {
            sqlx::query("DELETE FROM oauth_spent_states WHERE expires_at < $1")
                .bind(ms(now))
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}

/// The user who has the identity, if anyone does.
async fn holder(
    tx: &mut crate::Tx,
    identity: &ProviderIdentity,
) -> Result<Option<UserId>, StorageError> {
    let user_id: Option<Uuid> = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_scalar("SELECT user_id FROM user_identities WHERE issuer = $1 AND subject = $2")
            .bind(&identity.issuer)
            .bind(&identity.subject)
            .fetch_optional(&mut **tx)
            .await?
    });
    Ok(user_id.map(UserId::from_uuid))
}

async fn insert_identity(
    tx: &mut crate::Tx,
    user_id: UserId,
    identity: &ProviderIdentity,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(
            "INSERT INTO user_identities \
             (id, user_id, provider, issuer, subject, email, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(IdentityId::generate().as_uuid())
        .bind(user_id.as_uuid())
        .bind(&identity.provider)
        .bind(&identity.issuer)
        .bind(&identity.subject)
        .bind(&identity.email)
        .bind(ms(now))
        .execute(&mut **tx)
        .await?;
    });
    Ok(())
}

/// Keeps the name and picture the provider gave, where it gave them.
async fn save_profile(
    tx: &mut crate::Tx,
    user_id: UserId,
    identity: &ProviderIdentity,
) -> Result<(), StorageError> {
    if identity.display_name.is_none() && identity.picture_url.is_none() {
        return Ok(());
    }
    on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(
            "UPDATE users SET display_name = COALESCE($1, display_name), \
             picture_url = COALESCE($2, picture_url) WHERE id = $3",
        )
        .bind(&identity.display_name)
        .bind(&identity.picture_url)
        .bind(user_id.as_uuid())
        .execute(&mut **tx)
        .await?;
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::test_support::{account, event, unlocked};
    use mailroom_core::OrgId;
    use mailroom_core::audit::Action;
    use mailroom_testkit::both_backends;

    fn identity(subject: &str) -> ProviderIdentity {
        ProviderIdentity {
            provider: "corp".into(),
            issuer: "https://idp.example".into(),
            subject: subject.into(),
            email: "jane@example.com".into(),
            display_name: Some("Jane Doe".into()),
            picture_url: None,
        }
    }

    both_backends! {
        async fn an_identity_makes_one_account_and_signs_it_in_again(test_db) {
            let db = unlocked(&test_db).await;
            let now = OffsetDateTime::now_utc();
            let email = EmailAddress::parse("jane@example.com").unwrap();
            let signed_in = event(OrgId::generate(), Action::SigninSucceeded);
            assert!(db.identities().sign_in(&identity("s1"), now).await.unwrap().is_none());
            let user = db
                .identities()
                .create_account(&email, &identity("s1"), ("127.0.0.1", None), &signed_in, now)
                .await
                .unwrap()
                .unwrap();
            assert!(user.password_hash.is_none());
            assert_eq!(user.display_name.as_deref(), Some("Jane Doe"));
            // The address has an account now: a second one is not made.
            let second = db
                .identities()
                .create_account(&email, &identity("s2"), ("127.0.0.1", None), &signed_in, now)
                .await
                .unwrap();
            assert!(second.is_none());
            let again = db.identities().sign_in(&identity("s1"), now).await.unwrap().unwrap();
            assert_eq!(again.id, user.id);
            assert_eq!(again.display_name.as_deref(), Some("Jane Doe"));
            // A disabled account's sign-in is refused, and leaves no trace of its use.
            test_db.execute("UPDATE users SET disabled_at = 1").await;
            let later = now + time::Duration::hours(1);
            let mut renamed = identity("s1");
            renamed.display_name = Some("Someone Else".into());
            let disabled = db.identities().sign_in(&renamed, later).await.unwrap().unwrap();
            assert!(disabled.disabled);
            assert_eq!(disabled.display_name.as_deref(), Some("Jane Doe"));
            let used = db.identities().of_user(user.id).await.unwrap();
            assert_eq!(used[0].last_used_at.unix_timestamp(), now.unix_timestamp());
            test_db.execute("UPDATE users SET disabled_at = NULL").await;
            // Keyed by subject, never by email.
            assert!(db.identities().sign_in(&identity("s2"), now).await.unwrap().is_none());

            // The only way in stays; with a second identity, either can go.
            let only = db.identities().of_user(user.id).await.unwrap();
            assert_eq!(only.len(), 1);
            let linked = event(user.org_id, Action::SigninSucceeded);
            let ids = db.identities();
            assert_eq!(ids.unlink(user.id, only[0].id, &linked, now).await.unwrap(), Unlinked::LastWayIn);
            let s2 = identity("s2");
            assert_eq!(ids.link(user.id, &s2, &linked, now).await.unwrap(), Linked::Linked);
            assert_eq!(ids.link(user.id, &s2, &linked, now).await.unwrap(), Linked::AlreadyTheirs);
            assert_eq!(ids.unlink(user.id, only[0].id, &linked, now).await.unwrap(), Unlinked::Removed);
            assert_eq!(ids.unlink(user.id, only[0].id, &linked, now).await.unwrap(), Unlinked::NotFound);

            // Another user can neither take it nor see it.
            let other = account(&db, "other@example.com", now).await;
            assert_eq!(ids.link(other.id, &s2, &linked, now).await.unwrap(), Linked::TakenByAnother);
            assert!(ids.of_user(other.id).await.unwrap().is_empty());
            let theirs = ids.of_user(user.id).await.unwrap();
            assert_eq!(ids.unlink(other.id, theirs[0].id, &linked, now).await.unwrap(), Unlinked::NotFound);
        }
    }

    both_backends! {
        async fn a_flows_state_is_spent_once(test_db) {
            let db = unlocked(&test_db).await;
            let now = OffsetDateTime::now_utc();
            let later = now + time::Duration::minutes(10);
            assert!(db.identities().spend_state(b"h1", later).await.unwrap());
            assert!(!db.identities().spend_state(b"h1", later).await.unwrap());
            assert_eq!(db.identities().purge_spent_states(now).await.unwrap(), 0);
            let after = later + time::Duration::seconds(1);
            assert_eq!(db.identities().purge_spent_states(after).await.unwrap(), 1);
        }
    }
}
