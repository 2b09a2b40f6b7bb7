//! The messages an organization sends (migration 0042): what each is (sender, recipients,
//! size, tags, status) as it is, what it says (the message itself) sealed under the
//! organization's data key, bound to its row; each recipient's outcome; every attempt at
//! delivering it. A message is accepted with its queue job and its audit entry in one
//! transaction: once accepted, it is never lost.

use futures::FutureExt;
use mailroom_core::audit::AuditEvent;
use mailroom_core::webhook::EventType;
use mailroom_core::{ApiKeyId, EmailId, MailAccountId, OrgId, UserId};
use mailroom_crypto::envelope::Binding;
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::accounts::{from_ms, ms};
use crate::keyring::SealedColumn;
use crate::queue::NewJob;
use crate::tx::{Inner, Tenancy, Tx};
use crate::{Database, StorageError, on_backend};

pub(crate) const EMAIL_CONTENT: SealedColumn = SealedColumn {
    table: "emails",
    column: "content",
    row_id: "id",
    // Up to 25 MiB each: a few at a time.
    page: 8,
};

fn binding(id: EmailId) -> Binding<'static> {
    Binding {
        table: EMAIL_CONTENT.table,
        column: EMAIL_CONTENT.column,
        row: id.as_uuid(),
    }
}

/// Declares a closed set of values stored as text: `as_str` and its inverse.
macro_rules! stored_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|value| value.as_str() == text)
            }

            fn stored(text: &str) -> Result<Self, StorageError> {
                Self::parse(text).ok_or(StorageError::Internal(concat!(
                    "a stored ",
                    stringify!($name),
                    " of no known value"
                )))
            }
        }
    };
}

stored_enum!(
    /// Where a message is on its way.
    EmailStatus {
        Scheduled => "scheduled",
        Queued => "queued",
        Sending => "sending",
        Sent => "sent",
        /// Some recipients were refused for good; the others got it.
        PartiallyFailed => "partially_failed",
        Failed => "failed",
        Canceled => "canceled",
    }
);

stored_enum!(
    /// How a recipient is addressed.
    RecipientKind {
        To => "to",
        Cc => "cc",
        /// In the envelope only, never in a header.
        Bcc => "bcc",
    }
);

stored_enum!(
    /// A recipient's outcome.
    RecipientStatus {
        Pending => "pending",
        Sent => "sent",
        Failed => "failed",
        /// On the organization's suppression list: skipped.
        Suppressed => "suppressed",
    }
);

stored_enum!(
    /// Why an address is suppressed.
    SuppressionReason {
        /// A server refused it for good.
        Bounced => "bounced",
        /// The organization added it.
        Manual => "manual",
    }
);

stored_enum!(
    /// What an attempt came to.
    AttemptOutcome {
        Sent => "sent",
        /// A temporary refusal or a broken connection: tried again later.
        Deferred => "deferred",
        Failed => "failed",
    }
);

/// A message to accept.
#[derive(Clone)]
pub struct NewEmail {
    pub id: EmailId,
    pub mail_account_id: MailAccountId,
    pub from_address: String,
    pub recipients: Vec<(String, RecipientKind)>,
    pub message_id: String,
    /// `[{name, value}]`, as JSON.
    pub tags: String,
    /// The message as it goes out (RFC 5322), sealed before it is stored.
    pub content: Zeroizing<Vec<u8>>,
    pub created_by: Option<UserId>,
    pub api_key_id: Option<ApiKeyId>,
    /// When it is to go, if later than now: its job waits until then.
    pub scheduled_at: Option<OffsetDateTime>,
    /// The request's idempotency key and the hash of its body, claimed before
    /// ([`Emails::claim_key`]): the key names this message once it is accepted.
    pub idempotency: Option<(String, Vec<u8>)>,
}

/// What became of a message offered for acceptance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acceptance {
    Accepted,
    /// Every recipient is suppressed: nothing to send.
    AllSuppressed,
    /// The idempotency key names another message now (this request held it too long).
    KeyTaken,
    /// The month's quota of messages is spent.
    QuotaExceeded {
        quota: i64,
        used: i64,
    },
}

/// What an idempotency key says of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyClaim {
    /// New (or its earlier request died): this request goes ahead, holding the key.
    Fresh,
    /// The same request made this message already.
    Replay(EmailId),
    /// The key went with another request.
    Reused,
    /// The same request is under way.
    InProgress,
}

/// How long a request holds its key: a request that died under it frees it then.
const KEY_LOCK_MS: i64 = 60_000;
/// How long a key is kept.
pub const KEY_TTL: time::Duration = time::Duration::hours(24);

/// An address on the suppression list.
#[derive(Clone, Debug)]
pub struct Suppression {
    pub address: String,
    pub reason: SuppressionReason,
    pub reply: Option<String>,
    pub created_at: OffsetDateTime,
}

/// A message as its organization sees it: never what it says.
#[derive(Clone, Debug)]
pub struct Email {
    pub id: EmailId,
    pub org_id: OrgId,
    pub mail_account_id: Option<MailAccountId>,
    pub status: EmailStatus,
    pub from_address: String,
    pub recipient_count: i64,
    pub size_bytes: i64,
    pub message_id: String,
    pub tags: String,
    pub last_error: Option<String>,
    pub created_by: Option<UserId>,
    pub api_key_id: Option<ApiKeyId>,
    pub created_at: OffsetDateTime,
    pub scheduled_at: Option<OffsetDateTime>,
    pub sent_at: Option<OffsetDateTime>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    pub kind: RecipientKind,
    pub status: RecipientStatus,
    /// What the server said of it, when it said.
    pub reply: Option<String>,
    /// Failed because a server refused it for good: it goes on the suppression list.
    pub bounced: bool,
}

#[derive(Clone, Debug)]
pub struct Attempt {
    pub at: OffsetDateTime,
    /// `smtp` or `gmail`.
    pub transport: String,
    pub outcome: AttemptOutcome,
    pub reply: String,
    /// RFC 3463's `x.y.z`, when the server gave one.
    pub enhanced_code: Option<String>,
    pub duration_ms: i64,
}

/// A message with everything known of its delivery.
#[derive(Clone, Debug)]
pub struct EmailRecord {
    pub email: Email,
    pub recipients: Vec<Recipient>,
    pub attempts: Vec<Attempt>,
}

/// A message to deliver: what it is, to whom, and the message itself, opened.
pub struct ToDeliver {
    pub email: Email,
    pub recipients: Vec<Recipient>,
    pub content: Zeroizing<Vec<u8>>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    org_id: Uuid,
    mail_account_id: Option<Uuid>,
    status: String,
    from_address: String,
    recipient_count: i64,
    size_bytes: i64,
    message_id: String,
    tags: String,
    last_error: Option<String>,
    created_by: Option<Uuid>,
    api_key_id: Option<Uuid>,
    created_at: i64,
    scheduled_at: Option<i64>,
    sent_at: Option<i64>,
}

impl TryFrom<Row> for Email {
    type Error = StorageError;

    fn try_from(row: Row) -> Result<Self, StorageError> {
        Ok(Email {
            id: EmailId::from_uuid(row.id),
            org_id: row.org_id.into(),
            mail_account_id: row.mail_account_id.map(MailAccountId::from_uuid),
            status: EmailStatus::stored(&row.status)?,
            from_address: row.from_address,
            recipient_count: row.recipient_count,
            size_bytes: row.size_bytes,
            message_id: row.message_id,
            tags: row.tags,
            last_error: row.last_error,
            created_by: row.created_by.map(UserId::from),
            api_key_id: row.api_key_id.map(ApiKeyId::from_uuid),
            created_at: from_ms(row.created_at),
            scheduled_at: row.scheduled_at.map(from_ms),
            sent_at: row.sent_at.map(from_ms),
        })
    }
}

#[derive(sqlx::FromRow)]
struct RecipientRow {
    address: String,
    kind: String,
    status: String,
    reply: Option<String>,
}

impl TryFrom<RecipientRow> for Recipient {
    type Error = StorageError;

    fn try_from(row: RecipientRow) -> Result<Self, StorageError> {
        Ok(Recipient {
            address: row.address,
            kind: RecipientKind::stored(&row.kind)?,
            status: RecipientStatus::stored(&row.status)?,
            reply: row.reply,
            bounced: false,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    at: i64,
    transport: String,
    outcome: String,
    reply: String,
    enhanced_code: Option<String>,
    duration_ms: i64,
}

impl TryFrom<AttemptRow> for Attempt {
    type Error = StorageError;

    fn try_from(row: AttemptRow) -> Result<Self, StorageError> {
        Ok(Attempt {
            at: from_ms(row.at),
            transport: row.transport,
            outcome: AttemptOutcome::stored(&row.outcome)?,
            reply: row.reply,
            enhanced_code: row.enhanced_code,
            duration_ms: row.duration_ms,
        })
    }
}

/// An account's sends in the last minute and day (see [`Emails::recent_sends`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecentSends {
    pub last_minute: i64,
    pub oldest_in_minute: Option<OffsetDateTime>,
    pub last_day: i64,
    pub oldest_in_day: Option<OffsetDateTime>,
}

const COLUMNS: &str = "id, org_id, mail_account_id, status, from_address, recipient_count, \
     size_bytes, message_id, tags, last_error, created_by, api_key_id, created_at, scheduled_at, sent_at";

/// An organization's sent messages. Reached through [`Database::emails`].
#[derive(Clone, Copy)]
pub struct Emails<'a> {
    pub(crate) db: &'a Database,
}

impl Emails<'_> {
    /// Accepts a message: the message sealed, its recipients, its queue job and its audit
    /// entry, in one transaction.
    ///
    /// In the same transaction: recipients on the suppression list are marked and skipped
    /// (all of them: nothing is accepted); the message is charged to the month's quota
    /// (once, by its id); its idempotency key comes to name it.
    pub async fn accept(
        &self,
        org_id: OrgId,
        email: &NewEmail,
        job: NewJob,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Acceptance, StorageError> {
        // Sealing may add the organization's data key: a transaction of its own, first.
        let sealed = self
            .db
            .seal(org_id.as_uuid(), &binding(email.id), &email.content, now)
            .await?;
        let job = crate::queue::PreparedJob::unsealed(job)?;
        let key = self.db.audit_key()?;
        let size = i64::try_from(email.content.len()).unwrap_or(i64::MAX);
        let count = i64::try_from(email.recipients.len()).unwrap_or(i64::MAX);
        self.db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                let (email, sealed, job, key, event) = (
                    email.clone(),
                    sealed.clone(),
                    job.clone(),
                    key.clone(),
                    event.clone(),
                );
                async move {
                    let suppressed = suppressed_among(tx, org_id, &email.recipients).await?;
                    if suppressed.len() == email.recipients.len() {
                        return Ok(Acceptance::AllSuppressed);
                    }
                    let (period_start, _) = mailroom_core::usage::month_of(now);
                    let keys = [email.id.to_string()];
                    let mut ledger = crate::usage::Ledger::open(
                        tx,
                        org_id,
                        mailroom_core::usage::Metric::Emails,
                        period_start,
                        &keys,
                    )
                    .await?;
                    let quota = ledger.plan_quota;
                    if ledger.charge(&[keys[0].as_str()], 1, quota, now).is_none() {
                        return Ok(Acceptance::QuotaExceeded {
                            quota,
                            used: ledger.used,
                        });
                    }
                    // Nothing is written before this point: a refusal above leaves no trace.
                    if let Some((key, hash)) = &email.idempotency {
                        let bound = on_backend!(&mut tx.0, Inner, tx => {
                            sqlx::query(
                                "UPDATE idempotency_keys SET email_id = $3 WHERE org_id = $1 \
                                 AND key = $2 AND email_id IS NULL AND request_hash = $4",
                            )
                            .bind(org_id.as_uuid())
                            .bind(key)
                            .bind(email.id.as_uuid())
                            .bind(hash)
                            .execute(&mut **tx)
                            .await?
                            .rows_affected()
                        });
                        if bound != 1 {
                            return Ok(Acceptance::KeyTaken);
                        }
                    }
                    ledger.write(tx).await?;
                    on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "INSERT INTO emails (id, org_id, mail_account_id, status, from_address, \
                             recipient_count, size_bytes, message_id, tags, content, created_by, \
                             api_key_id, created_at, scheduled_at) \
                             VALUES ($1, $2, $3, $13, $4, $5, $6, $7, $8, $9, $10, $11, $12, $14)",
                        )
                        .bind(email.id.as_uuid())
                        .bind(org_id.as_uuid())
                        .bind(email.mail_account_id.as_uuid())
                        .bind(&email.from_address)
                        .bind(count)
                        .bind(size)
                        .bind(&email.message_id)
                        .bind(&email.tags)
                        .bind(&sealed)
                        .bind(email.created_by.map(|id| id.as_uuid()))
                        .bind(email.api_key_id.map(|id| id.as_uuid()))
                        .bind(ms(now))
                        .bind(if email.scheduled_at.is_some() {
                            EmailStatus::Scheduled
                        } else {
                            EmailStatus::Queued
                        }
                        .as_str())
                        .bind(email.scheduled_at.map(ms))
                        .execute(&mut **tx)
                        .await?;
                        let mut insert = sqlx::QueryBuilder::new(
                            "INSERT INTO email_recipients (email_id, org_id, address, kind, status) ",
                        );
                        insert.push_values(email.recipients.iter(), |mut row, (address, kind)| {
                            let status = if suppressed.contains(address) {
                                RecipientStatus::Suppressed
                            } else {
                                RecipientStatus::Pending
                            };
                            row.push_bind(email.id.as_uuid())
                                .push_bind(org_id.as_uuid())
                                .push_bind(address)
                                .push_bind(kind.as_str())
                                .push_bind(status.as_str());
                        });
                        insert.build().execute(&mut **tx).await?;
                    });
                    crate::queue::enqueue_in(tx, &job).await?;
                    crate::audit::append(tx, &key, &event, now).await?;
                    Ok(Acceptance::Accepted)
                }
                .boxed()
            })
            .await
    }

    /// Claims `key` for a request whose body hashes to `hash` (see [`KeyClaim`]). Keys live
    /// 24 hours; a request that died holding one frees it after a minute.
    pub async fn claim_key(
        &self,
        org_id: OrgId,
        key: &str,
        hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<KeyClaim, StorageError> {
        let (key, hash) = (key.to_owned(), hash.to_vec());
        self.db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                let (key, hash) = (key.clone(), hash.clone());
                async move {
                    let now = ms(now);
                    let expired = now - KEY_TTL.whole_milliseconds() as i64;
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "DELETE FROM idempotency_keys WHERE org_id = $1 AND key = $2 AND created_at < $3",
                        )
                        .bind(org_id.as_uuid())
                        .bind(&key)
                        .bind(expired)
                        .execute(&mut **tx)
                        .await?;
                        let found: Option<(Vec<u8>, Option<Uuid>, i64)> = sqlx::query_as(
                            "SELECT request_hash, email_id, locked_until FROM idempotency_keys \
                             WHERE org_id = $1 AND key = $2",
                        )
                        .bind(org_id.as_uuid())
                        .bind(&key)
                        .fetch_optional(&mut **tx)
                        .await?;
                        match found {
                            Some((stored, Some(email), _)) if stored == hash => {
                                KeyClaim::Replay(EmailId::from_uuid(email))
                            }
                            Some((_, Some(_), _)) => KeyClaim::Reused,
                            Some((stored, None, locked_until)) if locked_until > now => {
                                if stored == hash { KeyClaim::InProgress } else { KeyClaim::Reused }
                            }
                            // Held by a request that died: this one takes it over.
                            Some(_) => {
                                sqlx::query(
                                    "UPDATE idempotency_keys SET request_hash = $3, locked_until = $4 \
                                     WHERE org_id = $1 AND key = $2",
                                )
                                .bind(org_id.as_uuid())
                                .bind(&key)
                                .bind(&hash)
                                .bind(now + KEY_LOCK_MS)
                                .execute(&mut **tx)
                                .await?;
                                KeyClaim::Fresh
                            }
                            None => {
                                sqlx::query(
                                    "INSERT INTO idempotency_keys (org_id, key, request_hash, locked_until, created_at) \
                                     VALUES ($1, $2, $3, $4, $5)",
                                )
                                .bind(org_id.as_uuid())
                                .bind(&key)
                                .bind(&hash)
                                .bind(now + KEY_LOCK_MS)
                                .bind(now)
                                .execute(&mut **tx)
                                .await?;
                                KeyClaim::Fresh
                            }
                        }
                    }))
                }
                .boxed()
            })
            .await
    }

    /// Deletes the idempotency keys older than 24 hours, every organization's; how many.
    pub async fn purge_expired_keys(&self, now: OffsetDateTime) -> Result<u64, StorageError> {
        self.db
            .verifications()
            .purge_older_than("idempotency_keys", now - KEY_TTL)
            .await
    }

    /// Empties what the messages created before `before` said, every organization's (they
    /// keep what they were: sender, recipients, status, attempts); how many.
    pub async fn purge_content(&self, before: OffsetDateTime) -> Result<u64, StorageError> {
        self.db
            .transaction_for(&Tenancy::PurgeBefore(ms(before)), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE emails SET content = NULL WHERE created_at < $1 AND content IS NOT NULL",
                        )
                        .bind(ms(before))
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                    }))
                }
                .boxed()
            })
            .await
    }

    /// What the account sent in the last minute and day before `now`, counting the messages
    /// it is sending (but `except`, the one asking): against its send limits.
    pub async fn recent_sends(
        &self,
        org_id: OrgId,
        account: MailAccountId,
        except: EmailId,
        now: OffsetDateTime,
    ) -> Result<RecentSends, StorageError> {
        let (minute, day) = (
            ms(now - time::Duration::MINUTE),
            ms(now - time::Duration::DAY),
        );
        let row: (i64, Option<i64>, i64, Option<i64>) = self
            .db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT COALESCE(SUM(CASE WHEN sent_at >= $4 OR status = 'sending' THEN 1 ELSE 0 END), 0), \
                             MIN(CASE WHEN sent_at >= $4 THEN sent_at END), COUNT(*), MIN(sent_at) \
                             FROM emails WHERE org_id = $1 AND mail_account_id = $2 AND id <> $3 \
                             AND (sent_at >= $5 OR status = 'sending')",
                        )
                        .bind(org_id.as_uuid())
                        .bind(account.as_uuid())
                        .bind(except.as_uuid())
                        .bind(minute)
                        .bind(day)
                        .fetch_one(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(RecentSends {
            last_minute: row.0,
            oldest_in_minute: row.1.map(from_ms),
            last_day: row.2,
            oldest_in_day: row.3.map(from_ms),
        })
    }

    /// Frees a key whose request (of body hash `hash`) made no message (it was refused): the
    /// same key may be used again for a corrected request.
    pub async fn release_key(
        &self,
        org_id: OrgId,
        key: &str,
        hash: &[u8],
    ) -> Result<(), StorageError> {
        let (key, hash) = (key.to_owned(), hash.to_vec());
        self.db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                let (key, hash) = (key.clone(), hash.clone());
                async move {
                    on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "DELETE FROM idempotency_keys WHERE org_id = $1 AND key = $2 \
                             AND email_id IS NULL AND request_hash = $3",
                        )
                        .bind(org_id.as_uuid())
                        .bind(&key)
                        .bind(&hash)
                        .execute(&mut **tx)
                        .await?;
                    });
                    Ok(())
                }
                .boxed()
            })
            .await
    }

    /// A message taken to deliver that must wait (for its account's limits): queued again.
    pub async fn requeue(&self, org_id: OrgId, id: EmailId) -> Result<(), StorageError> {
        self.db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE emails SET status = 'queued' WHERE org_id = $1 AND id = $2 AND status = 'sending'",
                        )
                        .bind(org_id.as_uuid())
                        .bind(id.as_uuid())
                        .execute(&mut **tx)
                        .await?;
                    });
                    Ok(())
                }
                .boxed()
            })
            .await
    }

    /// Cancels a message not yet under way: false when it is not (sending, or done).
    pub async fn cancel(
        &self,
        org_id: OrgId,
        id: EmailId,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        self.db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    let canceled = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE emails SET status = 'canceled' WHERE org_id = $1 AND id = $2 \
                             AND status IN ('scheduled', 'queued')",
                        )
                        .bind(org_id.as_uuid())
                        .bind(id.as_uuid())
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                    }) == 1;
                    if canceled {
                        let extra = serde_json::json!({ "status": EmailStatus::Canceled.as_str() });
                        tell(tx, org_id, id, EventType::EmailCanceled, extra, now).await?;
                    }
                    Ok(canceled)
                }
                .boxed()
            })
            .await
    }

    /// The organization's suppression list, newest first.
    pub async fn suppressions(&self, org_id: OrgId) -> Result<Vec<Suppression>, StorageError> {
        let rows: Vec<(String, String, Option<String>, i64)> = self
            .db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT address, reason, reply, created_at FROM suppressions \
                             WHERE org_id = $1 ORDER BY created_at DESC, address",
                        )
                        .bind(org_id.as_uuid())
                        .fetch_all(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        rows.into_iter()
            .map(|(address, reason, reply, created_at)| {
                Ok(Suppression {
                    address,
                    reason: SuppressionReason::stored(&reason)?,
                    reply,
                    created_at: from_ms(created_at),
                })
            })
            .collect()
    }

    /// Adds an address to the list by hand; false when it is on it already.
    pub async fn suppress(
        &self,
        org_id: OrgId,
        address: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let address = address.to_owned();
        self.db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                let address = address.clone();
                async move {
                    suppress_in(tx, org_id, &address, SuppressionReason::Manual, None, now).await
                }
                .boxed()
            })
            .await
    }

    /// Takes an address off the list; false when it was not on it.
    pub async fn unsuppress(&self, org_id: OrgId, address: &str) -> Result<bool, StorageError> {
        let address = address.to_owned();
        self.db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                let address = address.clone();
                async move {
                    let removed = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query("DELETE FROM suppressions WHERE org_id = $1 AND address = $2")
                            .bind(org_id.as_uuid())
                            .bind(&address)
                            .execute(&mut **tx)
                            .await?
                            .rows_affected()
                    });
                    Ok(removed == 1)
                }
                .boxed()
            })
            .await
    }

    /// One of the organization's messages, with its recipients and attempts; another
    /// organization's is as missing as none.
    pub async fn get(
        &self,
        org_id: OrgId,
        id: EmailId,
    ) -> Result<Option<EmailRecord>, StorageError> {
        let sql = format!("SELECT {COLUMNS} FROM emails WHERE org_id = $1 AND id = $2");
        self.db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                let sql = sql.clone();
                async move {
                    let found: Option<(Row, Vec<RecipientRow>, Vec<AttemptRow>)> = on_backend!(&mut tx.0, Inner, tx => {
                        let row: Option<Row> = sqlx::query_as(&sql)
                            .bind(org_id.as_uuid())
                            .bind(id.as_uuid())
                            .fetch_optional(&mut **tx)
                            .await?;
                        match row {
                            None => None,
                            Some(row) => {
                                let recipients = sqlx::query_as(
                                    "SELECT address, kind, status, reply FROM email_recipients \
                                     WHERE email_id = $1 ORDER BY kind, address",
                                )
                                .bind(id.as_uuid())
                                .fetch_all(&mut **tx)
                                .await?;
                                let attempts = sqlx::query_as(
                                    "SELECT at, transport, outcome, reply, enhanced_code, duration_ms \
                                     FROM email_attempts WHERE email_id = $1 ORDER BY at, id",
                                )
                                .bind(id.as_uuid())
                                .fetch_all(&mut **tx)
                                .await?;
                                Some((row, recipients, attempts))
                            }
                        }
                    });
                    let Some((row, recipients, attempts)) = found else {
                        return Ok(None);
                    };
                    Ok(Some(EmailRecord {
                        email: row.try_into()?,
                        recipients: recipients
                            .into_iter()
                            .map(Recipient::try_from)
                            .collect::<Result<_, _>>()?,
                        attempts: attempts
                            .into_iter()
                            .map(Attempt::try_from)
                            .collect::<Result<_, _>>()?,
                    }))
                }
                .boxed()
            })
            .await
    }

    /// The organization's newest messages, newest first, before `before` (a cursor).
    pub async fn list(
        &self,
        org_id: OrgId,
        status: Option<EmailStatus>,
        before: Option<EmailId>,
        limit: i64,
    ) -> Result<Vec<Email>, StorageError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM emails WHERE org_id = $1 AND ($2 IS NULL OR status = $2) \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        let rows: Vec<Row> = self
            .db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                let sql = sql.clone();
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&sql)
                            .bind(org_id.as_uuid())
                            .bind(status.map(EmailStatus::as_str))
                            .bind(before.map(|id| id.as_uuid()))
                            .bind(limit)
                            .fetch_all(&mut **tx)
                            .await?
                    }))
                }
                .boxed()
            })
            .await?;
        rows.into_iter().map(Email::try_from).collect()
    }

    /// A message to deliver, its status `sending`: the message opened, and the recipients
    /// still pending (one suppressed since the message was accepted is marked so, and skipped). `None` when there is nothing to deliver (canceled, done, or gone).
    pub async fn to_deliver(
        &self,
        org_id: OrgId,
        id: EmailId,
    ) -> Result<Option<ToDeliver>, StorageError> {
        let sql = format!(
            "UPDATE emails SET status = 'sending' WHERE org_id = $1 AND id = $2 \
             AND status IN ('scheduled', 'queued', 'sending') RETURNING {COLUMNS}, content"
        );
        #[derive(sqlx::FromRow)]
        struct WithContent {
            #[sqlx(flatten)]
            row: Row,
            content: Option<Vec<u8>>,
        }
        let found: Option<(WithContent, Vec<RecipientRow>)> = self
            .db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                let sql = sql.clone();
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        let row: Option<WithContent> = sqlx::query_as(&sql)
                            .bind(org_id.as_uuid())
                            .bind(id.as_uuid())
                            .fetch_optional(&mut **tx)
                            .await?;
                        match row {
                            None => None,
                            Some(row) => {
                                // Put on the suppression list since the message was accepted:
                                // skipped now, as at acceptance.
                                sqlx::query(
                                    "UPDATE email_recipients SET status = 'suppressed', \
                                     reply = 'on the suppression list since the message was accepted' \
                                     WHERE email_id = $1 AND status = 'pending' AND EXISTS \
                                     (SELECT 1 FROM suppressions s WHERE s.org_id = email_recipients.org_id \
                                     AND s.address = email_recipients.address)",
                                )
                                .bind(id.as_uuid())
                                .execute(&mut **tx)
                                .await?;
                                let recipients = sqlx::query_as(
                                    "SELECT address, kind, status, reply FROM email_recipients \
                                     WHERE email_id = $1 AND status = 'pending' ORDER BY kind, address",
                                )
                                .bind(id.as_uuid())
                                .fetch_all(&mut **tx)
                                .await?;
                                Some((row, recipients))
                            }
                        }
                    }))
                }
                .boxed()
            })
            .await?;
        let Some((found, recipients)) = found else {
            return Ok(None);
        };
        let Some(sealed) = found.content else {
            return Ok(None);
        };
        let content = self
            .db
            .open(org_id.as_uuid(), &binding(id), &sealed)
            .await?;
        Ok(Some(ToDeliver {
            email: found.row.try_into()?,
            recipients: recipients
                .into_iter()
                .map(Recipient::try_from)
                .collect::<Result<_, _>>()?,
            content,
        }))
    }

    /// Records one recipient's outcome as soon as it is known (a bounce goes on the
    /// suppression list with it): a message retried after a crash is not sent again to
    /// whoever had it already.
    pub async fn record_recipient(
        &self,
        org_id: OrgId,
        id: EmailId,
        recipient: &Recipient,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let recipient = recipient.clone();
        self.db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                let recipient = recipient.clone();
                async move { decide(tx, org_id, id, &recipient, now).await }.boxed()
            })
            .await
    }

    /// Records an attempt and the recipients it decided, and sets where the message is now,
    /// from all its recipients, in one transaction: `sent` when every recipient got it,
    /// `failed` when none did, `partially_failed` between, `queued` while any waits for a
    /// retry. A message canceled meanwhile stays canceled. Its status is returned.
    pub async fn record(
        &self,
        org_id: OrgId,
        id: EmailId,
        attempt: &Attempt,
        recipients: &[Recipient],
        now: OffsetDateTime,
    ) -> Result<EmailStatus, StorageError> {
        let attempt = attempt.clone();
        let recipients = recipients.to_vec();
        self.db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                let (attempt, recipients) = (attempt.clone(), recipients.clone());
                async move {
                    on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "INSERT INTO email_attempts (id, email_id, org_id, at, transport, outcome, \
                             reply, enhanced_code, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        )
                        .bind(Uuid::now_v7())
                        .bind(id.as_uuid())
                        .bind(org_id.as_uuid())
                        .bind(ms(attempt.at))
                        .bind(&attempt.transport)
                        .bind(attempt.outcome.as_str())
                        .bind(&attempt.reply)
                        .bind(attempt.enhanced_code.as_deref())
                        .bind(attempt.duration_ms)
                        .execute(&mut **tx)
                        .await?;
                    });
                    for recipient in &recipients {
                        decide(tx, org_id, id, recipient, now).await?;
                    }
                    let counts: Vec<(String, i64)> = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT status, COUNT(*) FROM email_recipients WHERE email_id = $1 GROUP BY status",
                        )
                        .bind(id.as_uuid())
                        .fetch_all(&mut **tx)
                        .await?
                    });
                    let count = |status: RecipientStatus| {
                        counts
                            .iter()
                            .find(|(name, _)| name == status.as_str())
                            .map_or(0, |(_, n)| *n)
                    };
                    let (pending, sent) = (count(RecipientStatus::Pending), count(RecipientStatus::Sent));
                    let undelivered = count(RecipientStatus::Failed) + count(RecipientStatus::Suppressed);
                    let status = match (pending, sent, undelivered) {
                        (0, _, 0) => EmailStatus::Sent,
                        (0, 0, _) => EmailStatus::Failed,
                        (0, _, _) => EmailStatus::PartiallyFailed,
                        _ => EmailStatus::Queued,
                    };
                    let last_error = (attempt.outcome != AttemptOutcome::Sent || undelivered > 0)
                        .then_some(attempt.reply.as_str());
                    let moved = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE emails SET status = $3, last_error = $4, \
                             sent_at = CASE WHEN $3 IN ('sent', 'partially_failed') THEN $5 ELSE sent_at END \
                             WHERE org_id = $1 AND id = $2 AND status IN ('queued', 'sending')",
                        )
                        .bind(org_id.as_uuid())
                        .bind(id.as_uuid())
                        .bind(status.as_str())
                        .bind(last_error)
                        .bind(ms(now))
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                    }) == 1;
                    let told = match status {
                        EmailStatus::Sent | EmailStatus::PartiallyFailed => Some(EventType::EmailSent),
                        EmailStatus::Failed => Some(EventType::EmailFailed),
                        EmailStatus::Queued if attempt.outcome == AttemptOutcome::Deferred => {
                            Some(EventType::EmailDeliveryDelayed)
                        }
                        _ => None,
                    };
                    if let Some(event) = told.filter(|_| moved) {
                        let extra = serde_json::json!({
                            "status": status.as_str(),
                            "reply": attempt.reply,
                        });
                        tell(tx, org_id, id, event, extra, now).await?;
                    }
                    Ok(status)
                }
                .boxed()
            })
            .await
    }
}

/// A pending recipient's outcome, and its bounce on the suppression list.
async fn decide(
    tx: &mut Tx,
    org_id: OrgId,
    id: EmailId,
    recipient: &Recipient,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    let decided = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(
            "UPDATE email_recipients SET status = $3, reply = $4 \
             WHERE email_id = $1 AND address = $2 AND status = 'pending'",
        )
        .bind(id.as_uuid())
        .bind(&recipient.address)
        .bind(recipient.status.as_str())
        .bind(recipient.reply.as_deref())
        .execute(&mut **tx)
        .await?
        .rows_affected()
    }) == 1;
    if decided && recipient.status == RecipientStatus::Failed {
        let extra = serde_json::json!({
            "recipient": recipient.address,
            "reply": recipient.reply,
            "suppressed": recipient.bounced,
        });
        tell(tx, org_id, id, EventType::EmailRecipientFailed, extra, now).await?;
    }
    if recipient.status == RecipientStatus::Failed && recipient.bounced {
        suppress_in(
            tx,
            org_id,
            &recipient.address,
            SuppressionReason::Bounced,
            recipient.reply.as_deref(),
            now,
        )
        .await?;
    }
    Ok(())
}

/// Tells the organization's webhooks of `event` about a message: what it is (never what it
/// says), and `extra`.
async fn tell(
    tx: &mut Tx,
    org_id: OrgId,
    id: EmailId,
    event: EventType,
    extra: serde_json::Value,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    let endpoints = crate::webhooks::subscribers(tx, org_id, event).await?;
    if endpoints.is_empty() {
        return Ok(());
    }
    let (from, tags, created_at, to): (String, String, i64, Vec<String>) = on_backend!(&mut tx.0, Inner, tx => {
        let (from, tags, created_at): (String, String, i64) = sqlx::query_as(
            "SELECT from_address, tags, created_at FROM emails WHERE org_id = $1 AND id = $2",
        )
        .bind(org_id.as_uuid())
        .bind(id.as_uuid())
        .fetch_one(&mut **tx)
        .await?;
        let to = sqlx::query_scalar(
            "SELECT address FROM email_recipients WHERE email_id = $1 AND kind = 'to' ORDER BY address",
        )
        .bind(id.as_uuid())
        .fetch_all(&mut **tx)
        .await?;
        (from, tags, created_at, to)
    });
    let mut data = serde_json::json!({
        "email_id": id,
        "from": from,
        "to": to,
        "tags": serde_json::from_str::<serde_json::Value>(&tags).unwrap_or_default(),
        "created_at": from_ms(created_at)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    });
    if let (Some(data), serde_json::Value::Object(extra)) = (data.as_object_mut(), extra) {
        data.extend(extra);
    }
    crate::webhooks::emit_to(tx, org_id, event, &endpoints, data, now).await?;
    Ok(())
}

/// Which of `recipients` are on the organization's suppression list.
async fn suppressed_among(
    tx: &mut Tx,
    org_id: OrgId,
    recipients: &[(String, RecipientKind)],
) -> Result<std::collections::HashSet<String>, StorageError> {
    let mut suppressed = std::collections::HashSet::new();
    for (address, _) in recipients {
        let found: Option<String> = on_backend!(&mut tx.0, Inner, tx => {
            sqlx::query_scalar("SELECT address FROM suppressions WHERE org_id = $1 AND address = $2")
                .bind(org_id.as_uuid())
                .bind(address)
                .fetch_optional(&mut **tx)
                .await?
        });
        suppressed.extend(found);
    }
    Ok(suppressed)
}

/// Puts `address` on the list (unless it is there): whether it was added.
async fn suppress_in(
    tx: &mut Tx,
    org_id: OrgId,
    address: &str,
    reason: SuppressionReason,
    reply: Option<&str>,
    now: OffsetDateTime,
) -> Result<bool, StorageError> {
    let added = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(
            "INSERT INTO suppressions (org_id, address, reason, reply, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(org_id.as_uuid())
        .bind(address)
        .bind(reason.as_str())
        .bind(reply)
        .bind(ms(now))
        .execute(&mut **tx)
        .await?
        .rows_affected()
    });
    Ok(added == 1)
}

#[cfg(test)]
mod tests {
    use mailroom_core::JobId;
    use mailroom_core::audit::Action;
    use mailroom_testkit::both_backends;

    use super::*;
    use crate::queue::JobKind;
    use crate::test_support::{event, org, unlocked};

    async fn account(db: &Database, org_id: OrgId) -> MailAccountId {
        let account = crate::mail_accounts::NewMailAccount {
            id: MailAccountId::generate(),
            kind: crate::mail_accounts::AccountKind::Smtp,
            name: "Relay".to_owned(),
            address: "news@example.test".to_owned(),
            can_send: true,
            can_read: false,
            settings: "{}".to_owned(),
            credentials: Zeroizing::new(b"{}".to_vec()),
            from_addresses: Vec::new(),
            connected_by: None,
        };
        let now = OffsetDateTime::now_utc();
        db.mail_accounts()
            .connect(
                org_id,
                &account,
                &event(org_id, Action::MailAccountConnected),
                now,
            )
            .await
            .unwrap();
        account.id
    }

    fn message(account: MailAccountId) -> NewEmail {
        NewEmail {
            id: EmailId::generate(),
            mail_account_id: account,
            from_address: "news@example.test".to_owned(),
            recipients: vec![("anna@example.test".to_owned(), RecipientKind::To)],
            message_id: "<x@example.test>".to_owned(),
            tags: "[]".to_owned(),
            content: Zeroizing::new(b"Subject: secret plans\r\n\r\nthe secret plans".to_vec()),
            created_by: None,
            api_key_id: None,
            scheduled_at: None,
            idempotency: None,
        }
    }

    fn job(email: &NewEmail, org_id: OrgId) -> NewJob {
        NewJob {
            id: JobId::from_uuid(email.id.as_uuid()),
            org_id: Some(org_id),
            kind: JobKind::SendEmail,
            payload: Vec::new(),
            idempotency_key: None,
            delay: std::time::Duration::ZERO,
        }
    }

    both_backends! {
        async fn a_message_is_sealed_its_own_organizations_and_its_content_goes_after_ninety_days(test_db) {
            let db = unlocked(&test_db).await;
            let (a, b) = (org(&db).await, org(&db).await);
            let now = OffsetDateTime::now_utc();
            let sender = account(&db, a).await;
            let email = message(sender);
            let accepted = db.emails()
                .accept(a, &email, job(&email, a), &event(a, Action::EmailAccepted), now)
                .await
                .unwrap();
            assert_eq!(accepted, Acceptance::Accepted);
            // Another, accepted 91 days ago.
            let old = message(sender);
            let long_ago = now - time::Duration::days(91);
            db.emails()
                .accept(a, &old, job(&old, a), &event(a, Action::EmailAccepted), long_ago)
                .await
                .unwrap();
            assert!(test_db.columns_mentioning("secret plans", uuid::Uuid::now_v7()).await.is_empty(), "sealed at rest");
            assert!(db.emails().get(b, email.id).await.unwrap().is_none());
            assert!(db.emails().to_deliver(b, email.id).await.unwrap().is_none());
            let todo = db.emails().to_deliver(a, email.id).await.unwrap().unwrap();
            assert_eq!(&todo.content[..], &email.content[..]);

            // Past the 90 days, only what it said goes; within them, it stays.
            assert_eq!(db.emails().purge_content(now - time::Duration::days(90)).await.unwrap(), 1);
            assert!(db.emails().to_deliver(a, email.id).await.unwrap().is_some());
            assert!(db.emails().to_deliver(a, old.id).await.unwrap().is_none());
            let kept = db.emails().get(a, old.id).await.unwrap().unwrap();
            assert_eq!(kept.recipients.len(), 1, "what it was stays");
            assert!(db.audit().verify_audit_chains().await.unwrap().is_none());
        }
    }
}
