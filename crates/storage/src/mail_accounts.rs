//! The mail accounts an organization connects (migration 0040): an SMTP relay, an IMAP mailbox,
//! or a Google account. What an account is and where its servers are is stored as it is; its
//! credentials (passwords, a refresh token) are sealed together under the organization's data
//! key, bound to the account's row, and opened only to be used.

use futures::FutureExt;
use mailroom_core::audit::AuditEvent;
use mailroom_core::{MailAccountId, OrgId, UserId};
use mailroom_crypto::envelope::Binding;
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::accounts::{from_ms, ms};
use crate::keyring::SealedColumn;
use crate::tx::{Inner, Tenancy};
use crate::{Database, StorageError, on_backend};

pub(crate) const MAIL_ACCOUNT_SECRET: SealedColumn = SealedColumn {
    table: "mail_accounts",
    column: "secret",
    row_id: "id",
    page: crate::keyring::RESEAL_PAGE,
};

fn binding(id: MailAccountId) -> Binding<'static> {
    Binding {
        table: MAIL_ACCOUNT_SECRET.table,
        column: MAIL_ACCOUNT_SECRET.column,
        row: id.as_uuid(),
    }
}

/// How mailroom reaches an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountKind {
    /// A Google account, through OAuth and the Gmail API.
    Google,
    /// An SMTP relay or submission server: sends only.
    Smtp,
    /// An IMAP mailbox, with SMTP submission when it also sends.
    Imap,
}

impl AccountKind {
    const ALL: [AccountKind; 3] = [AccountKind::Google, AccountKind::Smtp, AccountKind::Imap];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Google => "google",
            AccountKind::Smtp => "smtp",
            AccountKind::Imap => "imap",
        }
    }

    fn stored(text: &str) -> Result<Self, StorageError> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or(StorageError::Internal("a mail account of no known kind"))
    }
}

/// Whether an account can be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    /// Its credentials were refused (a revoked grant, a changed password): connect it again.
    NeedsReconnect,
    Disconnected,
}

impl AccountStatus {
    const ALL: [AccountStatus; 3] = [
        AccountStatus::Active,
        AccountStatus::NeedsReconnect,
        AccountStatus::Disconnected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::NeedsReconnect => "needs_reconnect",
            AccountStatus::Disconnected => "disconnected",
        }
    }

    fn stored(text: &str) -> Result<Self, StorageError> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or(StorageError::Internal("a mail account of no known status"))
    }
}

/// An account to connect.
#[derive(Clone)]
pub struct NewMailAccount {
    pub id: MailAccountId,
    pub kind: AccountKind,
    pub name: String,
    pub address: String,
    pub can_send: bool,
    pub can_read: bool,
    /// Where its servers are and whom to log in as (JSON): no secret.
    pub settings: String,
    /// Its credentials (JSON), sealed before they are stored.
    pub credentials: Zeroizing<Vec<u8>>,
    pub from_addresses: Vec<String>,
    pub connected_by: Option<UserId>,
}

/// An account with its credentials opened.
pub struct Opened {
    pub account: MailAccount,
    pub credentials: Zeroizing<Vec<u8>>,
    /// Which credentials they are: a change that must not outrun a new grant names it.
    pub version: CredentialsVersion,
}

/// The credentials an account had when they were read (their sealed form: opaque).
#[derive(Clone)]
pub struct CredentialsVersion(Vec<u8>);

/// An account as its organization sees it: never its credentials.
#[derive(Clone, Debug)]
pub struct MailAccount {
    pub id: MailAccountId,
    pub org_id: OrgId,
    pub kind: AccountKind,
    pub name: String,
    pub address: String,
    pub can_send: bool,
    pub can_read: bool,
    pub status: AccountStatus,
    pub settings: String,
    pub from_addresses: Vec<String>,
    pub connected_by: Option<UserId>,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    org_id: Uuid,
    kind: String,
    name: String,
    address: String,
    can_send: bool,
    can_read: bool,
    status: String,
    settings: String,
    from_addresses: String,
    connected_by: Option<Uuid>,
    created_at: i64,
    last_used_at: Option<i64>,
    last_error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct WithSecret {
    #[sqlx(flatten)]
    row: Row,
    secret: Option<Vec<u8>>,
}

impl TryFrom<Row> for MailAccount {
    type Error = StorageError;

    fn try_from(row: Row) -> Result<Self, StorageError> {
        Ok(MailAccount {
            id: row.id.into(),
            org_id: row.org_id.into(),
            kind: AccountKind::stored(&row.kind)?,
            name: row.name,
            address: row.address,
            can_send: row.can_send,
            can_read: row.can_read,
            status: AccountStatus::stored(&row.status)?,
            settings: row.settings,
            // Only this crate writes the list, as JSON.
            from_addresses: serde_json::from_str(&row.from_addresses).unwrap_or_default(),
            connected_by: row.connected_by.map(UserId::from),
            created_at: from_ms(row.created_at),
            last_used_at: row.last_used_at.map(from_ms),
            last_error: row.last_error,
        })
    }
}

const COLUMNS: &str = "id, org_id, kind, name, address, can_send, can_read, status, settings, \
     from_addresses, connected_by, created_at, last_used_at, last_error";

/// An organization's mail accounts. Reached through [`Database::mail_accounts`].
#[derive(Clone, Copy)]
pub struct MailAccounts<'a> {
    pub(crate) db: &'a Database,
}

impl MailAccounts<'_> {
    /// Stores an account for `org_id`, its credentials sealed, with its audit entry.
    pub async fn connect(
        &self,
        org_id: OrgId,
        account: &NewMailAccount,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<MailAccount, StorageError> {
        let sealed = self.sealed_credentials(org_id, account, now).await?;
        let key = self.db.audit_key()?;
        let from_addresses = serde_json::to_string(&account.from_addresses)
            .map_err(|_| StorageError::Internal("addresses that do not serialize"))?;
        let insert = format!(
            "INSERT INTO mail_accounts (id, org_id, kind, name, address, can_send, can_read, status, \
             settings, secret, from_addresses, connected_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, $10, $11, $12) RETURNING {COLUMNS}"
        );
        let row: Row = self
            .db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                let (account, sealed, from_addresses, insert, key, event) = (
                    account.clone(),
                    sealed.clone(),
                    from_addresses.clone(),
                    insert.clone(),
                    key.clone(),
                    event.clone(),
                );
                async move {
                    let row: Row = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&insert)
                            .bind(account.id.as_uuid())
                            .bind(org_id.as_uuid())
                            .bind(account.kind.as_str())
                            .bind(&account.name)
                            .bind(&account.address)
                            .bind(account.can_send)
                            .bind(account.can_read)
                            .bind(&account.settings)
                            .bind(&sealed)
                            .bind(&from_addresses)
                            .bind(account.connected_by.map(|id| id.as_uuid()))
                            .bind(ms(now))
                            .fetch_one(&mut **tx)
                            .await?
                    });
                    crate::audit::append(tx, &key, &event, now).await?;
                    Ok(row)
                }
                .boxed()
            })
            .await?;
        row.try_into()
    }

    /// The organization's accounts, oldest first.
    pub async fn list(&self, org_id: OrgId) -> Result<Vec<MailAccount>, StorageError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM mail_accounts WHERE org_id = $1 ORDER BY created_at, id"
        );
        let rows: Vec<Row> = self
            .db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&sql).bind(org_id.as_uuid()).fetch_all(&mut **tx).await?
                    }))
                }
                .boxed()
            })
            .await?;
        rows.into_iter().map(MailAccount::try_from).collect()
    }

    /// One of the organization's accounts; another organization's is as missing as none.
    pub async fn get(
        &self,
        org_id: OrgId,
        id: MailAccountId,
    ) -> Result<Option<MailAccount>, StorageError> {
        Ok(self
            .with_secret(org_id, id)
            .await?
            .map(|(account, _)| account))
    }

    /// One of the organization's accounts with its credentials, opened: to use them, never
    /// to show them.
    pub async fn credentials(
        &self,
        org_id: OrgId,
        id: MailAccountId,
    ) -> Result<Option<Opened>, StorageError> {
        let Some((account, sealed)) = self.with_secret(org_id, id).await? else {
            return Ok(None);
        };
        let credentials = match &sealed {
            Some(sealed) => self.db.open(org_id.as_uuid(), &binding(id), sealed).await?,
            None => Zeroizing::new(Vec::new()),
        };
        Ok(Some(Opened {
            account,
            credentials,
            version: CredentialsVersion(sealed.unwrap_or_default()),
        }))
    }

    async fn with_secret(
        &self,
        org_id: OrgId,
        id: MailAccountId,
    ) -> Result<Option<(MailAccount, Option<Vec<u8>>)>, StorageError> {
        let sql =
            format!("SELECT {COLUMNS}, secret FROM mail_accounts WHERE org_id = $1 AND id = $2");
        let found: Option<WithSecret> = self
            .db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&sql)
                            .bind(org_id.as_uuid())
                            .bind(id.as_uuid())
                            .fetch_optional(&mut **tx)
                            .await?
                    }))
                }
                .boxed()
            })
            .await?;
        found
            .map(|found| Ok((MailAccount::try_from(found.row)?, found.secret)))
            .transpose()
    }

    /// Replaces what the account's settings say (its limits, say), with its audit entry;
    /// false when the organization has no such account.
    pub async fn set_settings(
        &self,
        org_id: OrgId,
        id: MailAccountId,
        settings: &str,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let settings = settings.to_owned();
        self.db
            .changed_one(org_id, std::slice::from_ref(event), now, move |tx| {
                let settings = settings.clone();
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query("UPDATE mail_accounts SET settings = $3 WHERE org_id = $1 AND id = $2")
                            .bind(org_id.as_uuid())
                            .bind(id.as_uuid())
                            .bind(&settings)
                            .execute(&mut **tx)
                            .await?
                            .rows_affected()
                    }))
                }
                .boxed()
            })
            .await
    }

    /// Notes a use of the account: when, and what went wrong if anything did.
    pub async fn record_use(
        &self,
        org_id: OrgId,
        id: MailAccountId,
        error: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let error = error.map(str::to_owned);
        self.db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE mail_accounts SET last_used_at = $3, last_error = $4 \
                             WHERE org_id = $1 AND id = $2",
                        )
                        .bind(org_id.as_uuid())
                        .bind(id.as_uuid())
                        .bind(ms(now))
                        .bind(error.as_deref())
                        .execute(&mut **tx)
                        .await?;
                    });
                    Ok(())
                }
                .boxed()
            })
            .await
    }

    /// Gives an account new credentials and what they grant (a reconnected Google account),
    /// and who connected it now: active again, its last error cleared, with its audit entry. False when the
    /// organization has no such account.
    pub async fn reconnect(
        &self,
        org_id: OrgId,
        account: &NewMailAccount,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let sealed = self.sealed_credentials(org_id, account, now).await?;
        let account = account.clone();
        self.db
            .changed_one(org_id, std::slice::from_ref(event), now, move |tx| {
                let (account, sealed) = (account.clone(), sealed.clone());
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE mail_accounts SET secret = $3, settings = $4, can_send = $5, \
                             can_read = $6, address = $7, connected_by = $8, status = 'active', \
                             last_error = NULL WHERE org_id = $1 AND id = $2",
                        )
                        .bind(org_id.as_uuid())
                        .bind(account.id.as_uuid())
                        .bind(&sealed)
                        .bind(&account.settings)
                        .bind(account.can_send)
                        .bind(account.can_read)
                        .bind(&account.address)
                        .bind(account.connected_by.map(|id| id.as_uuid()))
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                    }))
                }
                .boxed()
            })
            .await
    }

    /// Marks an active account as needing its owner to connect it again (the grant of its
    /// credentials `refused` was refused), with why and its audit entry. False when it was not
    /// active, or has other credentials since (a reconnection outran the refusal): the first
    /// to notice marks it, once.
    pub async fn needs_reconnect(
        &self,
        org_id: OrgId,
        id: MailAccountId,
        refused: &CredentialsVersion,
        error: &str,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let (error, refused) = (error.to_owned(), refused.0.clone());
        self.db
            .changed_one(org_id, std::slice::from_ref(event), now, move |tx| {
                let (error, refused) = (error.clone(), refused.clone());
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE mail_accounts SET status = 'needs_reconnect', last_error = $3, \
                             last_used_at = $4 WHERE org_id = $1 AND id = $2 AND status = 'active' \
                             AND secret = $5",
                        )
                        .bind(org_id.as_uuid())
                        .bind(id.as_uuid())
                        .bind(&error)
                        .bind(ms(now))
                        .bind(&refused)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                    }))
                }
                .boxed()
            })
            .await
    }

    /// Deletes the account and its sealed credentials, with its audit entries (one for what
    /// went wrong at its provider, if anything did); false when the organization has no such
    /// account.
    pub async fn disconnect(
        &self,
        org_id: OrgId,
        id: MailAccountId,
        events: &[AuditEvent],
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        self.db
            .changed_one(org_id, events, now, move |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query("DELETE FROM mail_accounts WHERE org_id = $1 AND id = $2")
                            .bind(org_id.as_uuid())
                            .bind(id.as_uuid())
                            .execute(&mut **tx)
                            .await?
                            .rows_affected()
                    }))
                }
                .boxed()
            })
            .await
    }

    /// The account's credentials, sealed. Sealing may add the organization's data key: a
    /// transaction of its own, before the one that stores them.
    async fn sealed_credentials(
        &self,
        org_id: OrgId,
        account: &NewMailAccount,
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, StorageError> {
        self.db
            .seal(
                org_id.as_uuid(),
                &binding(account.id),
                &account.credentials,
                now,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use mailroom_core::audit::Action;
    use mailroom_testkit::both_backends;

    use super::*;
    use crate::test_support::{event, org, unlocked};

    const CREDENTIALS: &[u8] = br#"{"smtp_password":"correct horse relay"}"#;

    fn relay() -> NewMailAccount {
        NewMailAccount {
            id: MailAccountId::generate(),
            kind: AccountKind::Smtp,
            name: "Relay".to_owned(),
            address: "news@example.test".to_owned(),
            can_send: true,
            can_read: false,
            settings: r#"{"smtp":{"host":"relay.example.test","port":587}}"#.to_owned(),
            credentials: Zeroizing::new(CREDENTIALS.to_vec()),
            from_addresses: vec!["team@example.test".to_owned()],
            connected_by: None,
        }
    }

    async fn stored_secret(db: &Database, org_id: OrgId, id: MailAccountId) -> Vec<u8> {
        db.transaction_for(&Tenancy::Org(org_id), |tx| {
            async move {
                Ok(on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query_scalar("SELECT secret FROM mail_accounts WHERE id = $1")
                        .bind(id.as_uuid())
                        .fetch_one(&mut **tx)
                        .await?
                }))
            }
            .boxed()
        })
        .await
        .unwrap()
    }

    both_backends! {
        async fn an_accounts_credentials_are_sealed_at_rest_and_its_organizations_alone(test_db) {
            let db = unlocked(&test_db).await;
            let (a, b) = (org(&db).await, org(&db).await);
            let now = OffsetDateTime::now_utc();
            let account = relay();
            let connected = db
                .mail_accounts()
                .connect(a, &account, &event(a, Action::MailAccountConnected), now)
                .await
                .unwrap();
            assert_eq!((connected.kind, connected.status), (AccountKind::Smtp, AccountStatus::Active));
            assert_eq!(connected.from_addresses, ["team@example.test"]);

            let sealed = stored_secret(&db, a, account.id).await;
            assert!(!String::from_utf8_lossy(&sealed).contains("correct horse"), "sealed at rest");
            let opened = db.mail_accounts().credentials(a, account.id).await.unwrap().unwrap();
            assert_eq!(&opened.credentials[..], CREDENTIALS);

            // Another organization sees nothing of it, and cannot remove it.
            assert!(db.mail_accounts().get(b, account.id).await.unwrap().is_none());
            assert!(db.mail_accounts().credentials(b, account.id).await.unwrap().is_none());
            assert!(db.mail_accounts().list(b).await.unwrap().is_empty());
            let by_b = event(b, Action::MailAccountDisconnected);
            assert!(!db.mail_accounts().disconnect(b, account.id, &[by_b], now).await.unwrap());

            db.mail_accounts().record_use(a, account.id, Some("535 no"), now).await.unwrap();
            let listed = db.mail_accounts().list(a).await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].last_error.as_deref(), Some("535 no"));

            let by_a = event(a, Action::MailAccountDisconnected);
            assert!(db.mail_accounts().disconnect(a, account.id, &[by_a], now).await.unwrap());
            assert!(db.mail_accounts().get(a, account.id).await.unwrap().is_none());
            assert!(db.audit().verify_audit_chains().await.unwrap().is_none());
        }

        async fn a_refused_grant_is_marked_once_and_a_reconnection_reseals_it(test_db) {
            let db = unlocked(&test_db).await;
            let (a, b) = (org(&db).await, org(&db).await);
            let now = OffsetDateTime::now_utc();
            let account = NewMailAccount {
                kind: AccountKind::Google,
                credentials: Zeroizing::new(br#"{"refresh_token":"1//old-grant"}"#.to_vec()),
                ..relay()
            };
            db.mail_accounts()
                .connect(a, &account, &event(a, Action::MailAccountConnected), now)
                .await
                .unwrap();
            let marked = event(a, Action::MailAccountNeedsReconnect);
            let old = db.mail_accounts().credentials(a, account.id).await.unwrap().unwrap().version;
            // Another organization cannot mark it; the first to notice does, once.
            let by_b = event(b, Action::MailAccountNeedsReconnect);
            assert!(!db.mail_accounts().needs_reconnect(b, account.id, &old, "no", &by_b, now).await.unwrap());
            assert!(db.mail_accounts().needs_reconnect(a, account.id, &old, "invalid_grant", &marked, now).await.unwrap());
            assert!(!db.mail_accounts().needs_reconnect(a, account.id, &old, "invalid_grant", &marked, now).await.unwrap());
            let shown = db.mail_accounts().get(a, account.id).await.unwrap().unwrap();
            assert_eq!((shown.status, shown.last_error.as_deref()), (AccountStatus::NeedsReconnect, Some("invalid_grant")));

            let reconnected = NewMailAccount {
                credentials: Zeroizing::new(br#"{"refresh_token":"1//new-grant"}"#.to_vec()),
                can_read: true,
                ..account.clone()
            };
            let by_a = event(a, Action::MailAccountConnected);
            assert!(!db.mail_accounts().reconnect(b, &reconnected, &event(b, Action::MailAccountConnected), now).await.unwrap());
            assert!(db.mail_accounts().reconnect(a, &reconnected, &by_a, now).await.unwrap());
            let opened = db.mail_accounts().credentials(a, account.id).await.unwrap().unwrap();
            let shown = opened.account;
            assert_eq!((shown.status, shown.last_error, shown.can_read), (AccountStatus::Active, None, true));
            assert_eq!(&opened.credentials[..], br#"{"refresh_token":"1//new-grant"}"#);
            assert!(!String::from_utf8_lossy(&stored_secret(&db, a, account.id).await).contains("new-grant"));
            // A refusal of the old grant that comes back after the reconnection marks nothing.
            assert!(!db.mail_accounts().needs_reconnect(a, account.id, &old, "invalid_grant", &marked, now).await.unwrap());
            assert!(db.audit().verify_audit_chains().await.unwrap().is_none());
        }

        async fn a_sealed_password_moves_to_a_rotated_key_and_still_opens(test_db) {
            let db = unlocked(&test_db).await;
            let a = org(&db).await;
            let now = OffsetDateTime::now_utc();
            let account = relay();
            db.mail_accounts()
                .connect(a, &account, &event(a, Action::MailAccountConnected), now)
                .await
                .unwrap();
            let before = stored_secret(&db, a, account.id).await;
            let later = now + crate::keyring::DATA_KEY_MAX_AGE + time::Duration::days(1);
            assert!(db.rotate_data_keys(later).await.unwrap() >= 1);
            assert!(db.reseal_old_values(later).await.unwrap() >= 1);
            let after = stored_secret(&db, a, account.id).await;
            assert_ne!(before, after, "re-sealed under the new key");
            let opened = db.mail_accounts().credentials(a, account.id).await.unwrap().unwrap();
            assert_eq!(&opened.credentials[..], CREDENTIALS);
        }
    }
}
