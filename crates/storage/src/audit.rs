//! The audit log: appends that extend each scope's hash chain, the chain check, the purge,
//! and a user's own entries.

use futures::FutureExt;
use mailroom_core::UserId;
use mailroom_core::audit::{
    AuditEvent, ChainHead, ChainedFields, PersonalFields, chain_hash, erasure_mac, head_mac,
    personal_digest,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::tx::{Inner, Tenancy};
use crate::{Database, StorageError, on_backend};

/// Entries read per query while verifying or purging: bounded memory and statements.
const BATCH: i64 = 1000;

/// An entry as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: Uuid,
    pub scope: Uuid,
    pub seq: i64,
    pub occurred_at: i64,
    pub actor_user_id: Option<Uuid>,
    pub action: String,
    pub outcome: String,
    pub target: Option<String>,
    pub subject: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub session_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    pub request_id: Option<Uuid>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub personal_digest: Option<Vec<u8>>,
    /// When account deletion blanked the personal fields (docs/security.md#account-deletion), and its proof.
    pub erased_at: Option<i64>,
    pub erasure_mac: Option<Vec<u8>>,
}

impl AuditEntry {
    fn chained_fields(&self) -> ChainedFields {
        ChainedFields {
            id: self.id,
            scope: self.scope,
            seq: self.seq,
            occurred_at_ms: self.occurred_at,
            action: self.action.clone(),
            outcome: self.outcome.clone(),
            session_id: self.session_id,
            api_key_id: self.api_key_id,
            request_id: self.request_id,
            personal_digest: self.personal_digest.clone().unwrap_or_default(),
        }
    }

    fn personal_fields(&self) -> PersonalFields {
        PersonalFields {
            actor: self.actor_user_id,
            target: self.target.clone(),
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            subject: self.subject.clone(),
        }
    }

    pub fn occurred_at(&self) -> OffsetDateTime {
        crate::accounts::from_ms(self.occurred_at)
    }
}

/// Where a chain first fails to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenLink {
    pub scope: Uuid,
    pub seq: i64,
    pub reason: &'static str,
}

const COLUMNS: &str = "id, scope, seq, occurred_at, actor_user_id, action, outcome, target, ip, \
     user_agent, session_id, api_key_id, request_id, prev_hash, hash, personal_digest, erased_at, \
     erasure_mac, subject";

/// The hash-chained audit log. Reached through [`Database::audit`].
#[derive(Clone, Copy)]
pub struct AuditLog<'a> {
    pub(crate) db: &'a Database,
}

impl AuditLog<'_> {
    /// Appends an event to its scope's chain, in a transaction of its own.
    pub async fn append_audit(
        &self,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let key = self.db.audit_key()?;
        self.db
            .serializable(|tx| {
                let (event, key) = (event.clone(), key.clone());
                async move { append(tx, &key, &event, now).await }.boxed()
            })
            .await
    }

    /// Walks every chain in order and returns the first link that does not hold: an edited
    /// entry (its hash no longer matches its fields), a deleted one (a gap in `seq`, a
    /// `prev_hash` that is not the hash before it, a chain that does not start at the first
    /// seq its keyed head records, or one that ends before its head).
    pub async fn verify_audit_chains(&self) -> Result<Option<BrokenLink>, StorageError> {
        let key = self.db.audit_key()?;
        let upkeep = self.db.upkeep()?;
        // Every chain that has, or ever had, an entry.
        let scopes: Vec<Uuid> = self
            .db
            .transaction_for(&Tenancy::AuditVerify(upkeep.clone()), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_scalar(
                            "SELECT scope FROM audit_heads UNION SELECT scope FROM audit_log \
                             ORDER BY scope",
                        )
                        .fetch_all(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        for scope in scopes {
            // One snapshot per chain: a purge running meanwhile must not look like a gap.
            let mut tx = self.db.begin_snapshot().await?;
            let found = match tx.act_for(&Tenancy::AuditVerify(upkeep.clone())).await {
                Ok(()) => first_broken_link(&mut tx, &key, scope).await,
                Err(error) => Err(error),
            };
            tx.rollback().await;
            if let Some(link) = found? {
                return Ok(Some(link));
            }
        }
        Ok(None)
    }

    /// Deletes entries older than `before`, a bounded batch per transaction; returns how
    /// many. Each batch moves the start of every chain it shortened past what it removed, in
    /// its own transaction, so that a chain never looks shortened by anyone but the purge.
    pub async fn purge_audit(&self, before: OffsetDateTime) -> Result<u64, StorageError> {
        let key = self.db.audit_key()?;
        let before = crate::accounts::ms(before);
        let mut purged = 0;
        loop {
            let deleted = self
                .db
                .serializable(|tx| {
                    let key = key.clone();
                    async move { purge_batch(tx, &key, before).await }.boxed()
                })
                .await?;
            purged += deleted;
            if deleted < u64::try_from(BATCH).unwrap_or(u64::MAX) {
                return Ok(purged);
            }
        }
    }

    /// An organization's entries (its chain), newest first, after the `before` cursor.
    pub async fn audit_for_org(
        &self,
        org_id: mailroom_core::OrgId,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        self.audit_page(
            Tenancy::Org(org_id),
            "scope",
            org_id.as_uuid(),
            before,
            limit,
        )
        .await
    }

    /// A user's own entries, newest first, after the `before` cursor (an entry id).
    pub async fn audit_for_actor(
        &self,
        actor: UserId,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        self.audit_page(
            Tenancy::User(actor),
            "actor_user_id",
            actor.as_uuid(),
            before,
            limit,
        )
        .await
    }

    /// The entries whose `column` (a constant of this module's) is `value`, newest first, read
    /// acting for `tenancy`.
    async fn audit_page(
        &self,
        tenancy: Tenancy,
        column: &'static str,
        value: Uuid,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log WHERE {column} = $1 AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        );
        self.db
            .transaction_for(&tenancy, |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&sql)
                            .bind(value)
                            .bind(before)
                            .bind(limit)
                            .fetch_all(&mut **tx)
                            .await?
                    }))
                }
                .boxed()
            })
            .await
    }
}

/// Appends an event to its scope's chain inside `tx`, so that it is written if and only if
/// the rest of the transaction is. The transaction is serializable: two appends to one scope
/// cannot both extend the same entry (and `UNIQUE (scope, seq)` would refuse the second).
pub(crate) async fn append(
    tx: &mut crate::Tx,
    key: &[u8],
    event: &AuditEvent,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    let scope = event.scope();
    let personal = PersonalFields {
        actor: event.actor.map(|id| id.as_uuid()),
        target: event.target.clone(),
        ip: event.ip.clone(),
        user_agent: event.user_agent.clone(),
        subject: event.subject.clone(),
    };
    tx.act_for(&Tenancy::AuditAppend(scope)).await?;
    on_backend!(&mut tx.0, Inner, tx => {
        let mut last: Option<(i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, occurred_at, hash FROM audit_log WHERE scope = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(scope)
        .fetch_optional(&mut **tx)
        .await?;
        let head: Option<(i64, i64, Vec<u8>, Option<i64>)> = sqlx::query_as(
            "SELECT seq, occurred_at, hash, first_seq FROM audit_heads WHERE scope = $1",
        )
        .bind(scope)
        .fetch_optional(&mut **tx)
        .await?;
        let first_seq = match &head {
            None => 1,
            Some((_, _, _, Some(first_seq))) => *first_seq,
            // A head written before chains recorded their start: the chain starts where it
            // does now, as the check of such a chain took it.
            Some((seq, ..)) => match &last {
                Some(_) => sqlx::query_scalar("SELECT MIN(seq) FROM audit_log WHERE scope = $1")
                    .bind(scope)
                    .fetch_one(&mut **tx)
                    .await?,
                None => seq + 1,
            },
        };
        // A chain the purge emptied goes on from its head.
        if last.is_none() {
            last = head.map(|(seq, occurred_at, hash, _)| (seq, occurred_at, hash));
        }
        // Times never go backwards along a chain, so that the purge, which goes by time,
        // always removes a prefix of it.
        let occurred_at_ms = last.as_ref().map_or(crate::accounts::ms(now), |(_, at, _)| {
            (*at).max(crate::accounts::ms(now))
        });
        let (seq, prev_hash) = last.map_or((1, vec![0; 32]), |(seq, _, hash)| (seq + 1, hash));
        let id = Uuid::now_v7();
        let fields = ChainedFields {
            id,
            scope,
            seq,
            occurred_at_ms,
            action: event.action.as_str().to_owned(),
            outcome: event.outcome.as_str().to_owned(),
            session_id: event.session_id.map(|id| id.as_uuid()),
            api_key_id: event.api_key_id.map(|id| id.as_uuid()),
            request_id: event.request_id.map(|id| id.as_uuid()),
            personal_digest: personal_digest(key, id, &personal),
        };
        let hash = chain_hash(key, &prev_hash, &fields);
        sqlx::query(&format!(
            "INSERT INTO audit_log ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, NULL, NULL, $17)"
        ))
        .bind(fields.id)
        .bind(fields.scope)
        .bind(fields.seq)
        .bind(fields.occurred_at_ms)
        .bind(personal.actor)
        .bind(&fields.action)
        .bind(&fields.outcome)
        .bind(&personal.target)
        .bind(&personal.ip)
        .bind(&personal.user_agent)
        .bind(fields.session_id)
        .bind(fields.api_key_id)
        .bind(fields.request_id)
        .bind(&prev_hash)
        .bind(&hash)
        .bind(&fields.personal_digest)
        .bind(&personal.subject)
        .execute(&mut **tx)
        .await?;
        let head = ChainHead {
            scope,
            seq,
            hash: hash.clone(),
            occurred_at_ms,
            purged_through_ms: None,
            first_seq: Some(first_seq),
        };
        sqlx::query(
            "INSERT INTO audit_heads (scope, seq, hash, occurred_at, first_seq, mac) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (scope) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, \
             occurred_at = excluded.occurred_at, purged_through = NULL, \
             first_seq = excluded.first_seq, mac = excluded.mac",
        )
        .bind(fields.scope)
        .bind(fields.seq)
        .bind(&hash)
        .bind(fields.occurred_at_ms)
        .bind(first_seq)
        .bind(head_mac(key, &head))
        .execute(&mut **tx)
        .await?;
    });
    Ok(())
}

/// Blanks the personal fields of every entry by `user_id` or about them (docs/security.md#account-deletion), in every
/// chain, each with the MAC that proves mailroom did it; their digests stay, so the chains
/// still verify. An entry is about them when its subject is their address; one written before
/// entries had subjects, when its target is their address, alone or as `<address> as <role>`.
/// Equality only: an address that merely contains theirs (`n@corp.test` in
/// `admin@corp.test`) is someone else's.
pub(crate) async fn erase_personal_fields(
    tx: &mut crate::Tx,
    key: &[u8],
    user_id: UserId,
    email: &str,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    let erased_at = crate::accounts::ms(now);
    tx.act_for(&Tenancy::ErasedUser(user_id)).await?;
    tx.act_for(&Tenancy::ErasedAt(erased_at)).await?;
    tx.act_for(&Tenancy::ErasedEmail(email.to_lowercase()))
        .await?;
    on_backend!(&mut tx.0, Inner, tx => {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM audit_log WHERE erased_at IS NULL AND (actor_user_id = $1 OR subject = $2 \
             OR (subject IS NULL AND (lower(target) = $2 OR lower(target) = $2 || ' as owner' \
             OR lower(target) = $2 || ' as admin' OR lower(target) = $2 || ' as member')))",
        )
        .bind(user_id.as_uuid())
        .bind(email.to_lowercase())
        .fetch_all(&mut **tx)
        .await?;
        for id in ids {
            sqlx::query(
                "UPDATE audit_log SET actor_user_id = NULL, target = NULL, ip = NULL, \
                 user_agent = NULL, subject = NULL, erased_at = $1, erasure_mac = $2 WHERE id = $3",
            )
            .bind(erased_at)
            .bind(erasure_mac(key, id, erased_at))
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
    });
    Ok(())
}

/// One batch of the purge: the oldest entries before the cutoff, and the start of every
/// chain it shortened moved past them (the chain's times never go backwards, so what goes is
/// a prefix of each).
async fn purge_batch(tx: &mut crate::Tx, key: &[u8], before: i64) -> Result<u64, StorageError> {
    type HeadRow = (i64, Vec<u8>, i64, Option<i64>);
    tx.act_for(&Tenancy::AuditPurgeBefore(before)).await?;
    on_backend!(&mut tx.0, Inner, tx => {
        let removed: Vec<(Uuid, i64)> = sqlx::query_as(
            "DELETE FROM audit_log WHERE id IN \
             (SELECT id FROM audit_log WHERE occurred_at < $1 ORDER BY occurred_at, scope, seq LIMIT $2) \
             RETURNING scope, seq",
        )
        .bind(before)
        .bind(BATCH)
        .fetch_all(&mut **tx)
        .await?;
        let mut starts = std::collections::BTreeMap::<Uuid, i64>::new();
        for (scope, seq) in &removed {
            let start = starts.entry(*scope).or_insert(seq + 1);
            *start = (*start).max(seq + 1);
        }
        for (scope, first_seq) in starts {
            let head: Option<HeadRow> = sqlx::query_as(
                "SELECT seq, hash, occurred_at, purged_through FROM audit_heads WHERE scope = $1",
            )
            .bind(scope)
            .fetch_optional(&mut **tx)
            .await?;
            // A chain without a head is reported by the check whatever the purge does.
            let Some((seq, hash, occurred_at_ms, purged_through_ms)) = head else {
                continue;
            };
            let head = ChainHead {
                scope,
                seq,
                hash,
                occurred_at_ms,
                purged_through_ms,
                first_seq: Some(first_seq),
            };
            sqlx::query("UPDATE audit_heads SET first_seq = $1, mac = $2 WHERE scope = $3")
                .bind(first_seq)
                .bind(head_mac(key, &head))
                .bind(scope)
                .execute(&mut **tx)
                .await?;
        }
        Ok(u64::try_from(removed.len()).unwrap_or(u64::MAX))
    })
}

async fn first_broken_link(
    tx: &mut crate::Tx,
    key: &[u8],
    scope: Uuid,
) -> Result<Option<BrokenLink>, StorageError> {
    type HeadRow = (i64, Vec<u8>, i64, Option<i64>, Option<i64>, Option<Vec<u8>>);
    let row: Option<HeadRow> = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_as(
            "SELECT seq, hash, occurred_at, purged_through, first_seq, mac FROM audit_heads \
             WHERE scope = $1",
        )
        .bind(scope)
        .fetch_optional(&mut **tx)
        .await?
    });
    let head = match row {
        Some((seq, hash, occurred_at_ms, purged_through_ms, first_seq, mac)) => {
            let head = ChainHead {
                scope,
                seq,
                hash,
                occurred_at_ms,
                purged_through_ms,
                first_seq,
            };
            if mac.as_deref() != Some(head_mac(key, &head).as_slice()) {
                return Ok(Some(BrokenLink {
                    scope,
                    seq,
                    reason: "the record of this chain's newest entry was changed",
                }));
            }
            Some(head)
        }
        None => None,
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log WHERE scope = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    );
    let mut previous: Option<AuditEntry> = None;
    loop {
        let after = previous.as_ref().map_or(i64::MIN, |entry| entry.seq);
        let batch: Vec<AuditEntry> = on_backend!(&mut tx.0, Inner, tx => {
            sqlx::query_as(&sql).bind(scope).bind(after).bind(BATCH).fetch_all(&mut **tx).await?
        });
        if batch.is_empty() {
            return Ok(tail_mismatch(scope, previous.as_ref(), head.as_ref()));
        }
        for entry in batch {
            let start = head.as_ref().and_then(|head| head.first_seq);
            if previous.is_none()
                && let Some(first_seq) = start
                && entry.seq != first_seq
            {
                return Ok(Some(BrokenLink {
                    scope,
                    seq: first_seq,
                    reason: "the oldest entries of this chain are missing",
                }));
            }
            if let Some(reason) = broken(key, previous.as_ref(), &entry) {
                return Ok(Some(BrokenLink {
                    scope,
                    seq: entry.seq,
                    reason,
                }));
            }
            previous = Some(entry);
        }
    }
}

/// The chain's end must be its recorded head: otherwise its newest entries were deleted —
/// unless the retention purge removed the whole chain, and said so (by moving its start past
/// the head, or, on a head written before chains had starts, by `purged_through`).
fn tail_mismatch(
    scope: Uuid,
    last: Option<&AuditEntry>,
    head: Option<&ChainHead>,
) -> Option<BrokenLink> {
    let missing = |seq| BrokenLink {
        scope,
        seq,
        reason: "the newest entries of this chain are missing",
    };
    match (last, head) {
        (Some(last), Some(head)) if last.seq == head.seq && last.hash == head.hash => None,
        (Some(last), _) => Some(missing(last.seq + 1)),
        (None, Some(head)) if head.first_seq == Some(head.seq + 1) => None,
        (None, Some(head)) if head.first_seq.is_none() && head.purged_through_ms.is_some() => None,
        (None, Some(head)) => Some(missing(head.seq)),
        (None, None) => None,
    }
}

fn broken(key: &[u8], previous: Option<&AuditEntry>, entry: &AuditEntry) -> Option<&'static str> {
    if let Some(previous) = previous {
        if entry.seq != previous.seq + 1 {
            return Some("an entry before this one is missing");
        }
        if entry.prev_hash != previous.hash {
            return Some("this entry does not follow the one before it");
        }
    }
    let changed = Some("this entry was changed after it was written");
    match entry.erased_at {
        // The others must still hold what their digest covers.
        None => {
            let digest = personal_digest(key, entry.id, &entry.personal_fields());
            if entry.personal_digest.as_deref() != Some(digest.as_slice()) {
                return changed;
            }
        }
        // An erased entry keeps the digest of what it held, holds nothing personal, and
        // proves that mailroom erased it.
        Some(erased_at) => {
            let proof = erasure_mac(key, entry.id, erased_at);
            if entry.personal_fields() != PersonalFields::default()
                || entry.erasure_mac.as_deref() != Some(proof.as_slice())
            {
                return changed;
            }
        }
    }
    if chain_hash(key, &entry.prev_hash, &entry.chained_fields()) != entry.hash {
        return changed;
    }
    None
}

impl Database {
    /// Runs `change` as the organization, and records `events` if it changed one row: whether
    /// it did.
    pub(crate) async fn changed_one<F>(
        &self,
        org_id: mailroom_core::OrgId,
        events: &[AuditEvent],
        now: OffsetDateTime,
        change: F,
    ) -> Result<bool, StorageError>
    where
        F: for<'t> Fn(
                &'t mut crate::Tx,
            ) -> futures::future::BoxFuture<'t, Result<u64, StorageError>>
            + Clone
            + Send
            + 'static,
    {
        let key = self.audit_key()?;
        self.serializable_for(&Tenancy::Org(org_id), |tx| {
            let (key, events, change) = (key.clone(), events.to_vec(), change.clone());
            async move {
                let changed = change(tx).await? == 1;
                if changed {
                    for event in &events {
                        crate::audit::append(tx, &key, event, now).await?;
                    }
                }
                Ok(changed)
            }
            .boxed()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mailroom_core::OrgId;
    use mailroom_core::audit::{Action, Outcome};
    use mailroom_testkit::both_backends;

    use super::*;
    use crate::Pool;

    fn event(org: Option<OrgId>, action: Action) -> AuditEvent {
        AuditEvent {
            org_id: org,
            actor: Some(UserId::generate()),
            action,
            outcome: Outcome::Failure,
            target: Some("jane@example.test".into()),
            subject: Some("jane@example.test".into()),
            ip: Some("203.0.113.5".into()),
            user_agent: Some("test".into()),
            session_id: None,
            api_key_id: None,
            request_id: None,
        }
    }

    /// Past the 90 days the log is kept: what the purge may take.
    fn long_ago() -> OffsetDateTime {
        OffsetDateTime::now_utc() - time::Duration::days(120)
    }

    /// The database as its owner (the test's superuser) sees it, behind the app's back: the
    /// app role may not edit the log.
    async fn owner(test_db: &mailroom_testkit::TestDatabase, db: &Database) -> Pool {
        match &db.pool {
            Pool::Sqlite(pool) => Pool::Sqlite(pool.clone()),
            Pool::Postgres(_) => {
                Pool::Postgres(sqlx::PgPool::connect(test_db.url()).await.unwrap())
            }
        }
    }

    /// Runs tampering SQL against one organization's chain (`$1`), as the owner.
    async fn tamper(
        test_db: &mailroom_testkit::TestDatabase,
        db: &Database,
        sql: &str,
        org: OrgId,
    ) {
        match &db.pool {
            Pool::Sqlite(pool) => {
                sqlx::query(sql)
                    .bind(org.as_uuid())
                    .execute(pool)
                    .await
                    .unwrap();
            }
            // One session, whose triggers are off: a superuser editing the table by hand.
            Pool::Postgres(_) => {
                use sqlx::Connection;
                let mut connection = sqlx::PgConnection::connect(test_db.url()).await.unwrap();
                sqlx::raw_sql("SET session_replication_role = replica")
                    .execute(&mut connection)
                    .await
                    .unwrap();
                sqlx::query(sql)
                    .bind(org.as_uuid())
                    .execute(&mut connection)
                    .await
                    .unwrap();
            }
        }
    }

    async fn seeded(test_db: &mailroom_testkit::TestDatabase) -> (Database, OrgId) {
        seeded_at(test_db, OffsetDateTime::now_utc()).await
    }

    /// A chain of four entries of an organization's and one of the platform's, written at
    /// `now`.
    async fn seeded_at(
        test_db: &mailroom_testkit::TestDatabase,
        now: OffsetDateTime,
    ) -> (Database, OrgId) {
        let db = crate::test_support::unlocked(test_db).await;
        let org = OrgId::generate();
        for action in [
            Action::SigninFailed,
            Action::SigninFailed,
            Action::AccountLocked,
            Action::SigninSucceeded,
        ] {
            db.audit()
                .append_audit(&event(Some(org), action), now)
                .await
                .unwrap();
        }
        db.audit()
            .append_audit(&event(None, Action::SigninFailed), now)
            .await
            .unwrap();
        (db, org)
    }

    both_backends! {
        async fn intact_chains_verify(test_db) {
            let (db, _) = seeded(&test_db).await;
            assert_eq!(db.audit().verify_audit_chains().await.unwrap(), None);
        }

        async fn an_edited_entry_is_found(test_db) {
            let (db, org) = seeded(&test_db).await;
            tamper(&test_db, &db, "UPDATE audit_log SET outcome = 'success' WHERE seq = 3 AND scope = $1", org).await;
            let broken = db.audit().verify_audit_chains().await.unwrap().unwrap();
            assert_eq!((broken.scope, broken.seq), (org.as_uuid(), 3));
            assert_eq!(broken.reason, "this entry was changed after it was written");
        }

        async fn personal_fields_can_be_erased_but_not_edited(test_db) {
            let (db, org) = seeded(&test_db).await;
            tamper(&test_db, &db, "UPDATE audit_log SET ip = '198.51.100.1' WHERE seq = 2 AND scope = $1", org).await;
            let broken = db.audit().verify_audit_chains().await.unwrap().unwrap();
            assert_eq!((broken.scope, broken.seq), (org.as_uuid(), 2));
            tamper(&test_db, &db, "UPDATE audit_log SET ip = '203.0.113.5' WHERE seq = 2 AND scope = $1", org).await;
            assert_eq!(db.audit().verify_audit_chains().await.unwrap(), None);
            // Blanking them without the key, or calling an edit an erasure, is found.
            tamper(&test_db, &db, "UPDATE audit_log SET ip = NULL, erased_at = 1 WHERE seq = 2 AND scope = $1", org).await;
            assert_eq!(db.audit().verify_audit_chains().await.unwrap().unwrap().seq, 2);
            // Erasure (docs/security.md#account-deletion) as mailroom does it: the chain holds.
            let actor = on_backend!(&owner(&test_db, &db).await, Pool, pool => {
                sqlx::query_scalar::<_, Uuid>("SELECT actor_user_id FROM audit_log WHERE seq = 1 AND scope = $1")
                    .bind(org.as_uuid()).fetch_one(pool).await.unwrap()
            });
            tamper(&test_db, &db, "UPDATE audit_log SET ip = '203.0.113.5', erased_at = NULL WHERE seq = 2 AND scope = $1", org).await;
            let key = db.audit_key().unwrap();
            let mut tx = db.begin_serializable().await.unwrap();
            erase_personal_fields(&mut tx, &key, UserId::from_uuid(actor), "jane@example.test", OffsetDateTime::now_utc()).await.unwrap();
            tx.commit().await.unwrap();
            assert_eq!(db.audit().verify_audit_chains().await.unwrap(), None);
            // An erased entry given a personal field back is found.
            tamper(&test_db, &db, "UPDATE audit_log SET ip = '198.51.100.1' WHERE seq = 2 AND scope = $1", org).await;
            assert!(db.audit().verify_audit_chains().await.unwrap().is_some());
        }

        async fn a_deleted_entry_is_found(test_db) {
            let (db, org) = seeded(&test_db).await;
            tamper(&test_db, &db, "DELETE FROM audit_log WHERE seq = 2 AND scope = $1", org).await;
            let broken = db.audit().verify_audit_chains().await.unwrap().unwrap();
            assert_eq!((broken.scope, broken.seq), (org.as_uuid(), 3));
        }

        async fn deleting_the_newest_entries_or_a_whole_chain_is_found(test_db) {
            let (db, org) = seeded(&test_db).await;
            tamper(&test_db, &db, "DELETE FROM audit_log WHERE seq = 4 AND scope = $1", org).await;
            let broken = db.audit().verify_audit_chains().await.unwrap().unwrap();
            assert_eq!((broken.scope, broken.seq), (org.as_uuid(), 4));
            tamper(&test_db, &db, "DELETE FROM audit_log WHERE scope = $1", org).await;
            let broken = db.audit().verify_audit_chains().await.unwrap().unwrap();
            assert_eq!(broken.scope, org.as_uuid());
        }

        async fn deleting_the_oldest_entries_is_found(test_db) {
            let (db, org) = seeded(&test_db).await;
            for _ in 0..7 {
                db.audit().append_audit(&event(Some(org), Action::SigninFailed), OffsetDateTime::now_utc()).await.unwrap();
            }
            // An 11-entry chain without its first ten.
            tamper(&test_db, &db, "DELETE FROM audit_log WHERE seq <= 10 AND scope = $1", org).await;
            let broken = db.audit().verify_audit_chains().await.unwrap().unwrap();
            assert_eq!((broken.scope, broken.seq), (org.as_uuid(), 1));
            assert_eq!(broken.reason, "the oldest entries of this chain are missing");
            // Moving the recorded start over them takes the key.
            tamper(&test_db, &db, "UPDATE audit_heads SET first_seq = 11 WHERE scope = $1", org).await;
            let broken = db.audit().verify_audit_chains().await.unwrap().unwrap();
            assert_eq!(broken.reason, "the record of this chain's newest entry was changed");

            // The platform's chain, without its first entry (checked first: its nil UUID sorts
            // before every organization's).
            db.audit().append_audit(&event(None, Action::SigninFailed), OffsetDateTime::now_utc()).await.unwrap();
            on_backend!(&owner(&test_db, &db).await, Pool, pool => {
                sqlx::query("DELETE FROM audit_log WHERE seq = 1 AND scope = $1")
                    .bind(mailroom_core::audit::PLATFORM_SCOPE).execute(pool).await.unwrap();
            });
            let broken = db.audit().verify_audit_chains().await.unwrap().unwrap();
            assert_eq!((broken.scope, broken.seq), (mailroom_core::audit::PLATFORM_SCOPE, 1));
        }

        async fn only_the_purge_moves_a_chains_start(test_db) {
            // Written past the retention: only such entries are the purge's to take.
            let (db, org) = seeded_at(&test_db, long_ago()).await;
            let later = long_ago() + time::Duration::days(1);
            db.audit().append_audit(&event(Some(org), Action::SigninSucceeded), later).await.unwrap();
            assert_eq!(db.audit().purge_audit(later - time::Duration::hours(1)).await.unwrap(), 5);
            let owner = owner(&test_db, &db).await;
            let start = || async {
                on_backend!(&owner, Pool, pool => {
                    sqlx::query_scalar::<_, Option<i64>>("SELECT first_seq FROM audit_heads WHERE scope = $1")
                        .bind(org.as_uuid()).fetch_one(pool).await.unwrap()
                })
            };
            assert_eq!(start().await, Some(5));
            // Appends after the purge keep the start; the platform chain, purged whole, goes on
            // from its head.
            db.audit().append_audit(&event(Some(org), Action::SigninFailed), later).await.unwrap();
            db.audit().append_audit(&event(None, Action::SigninFailed), later).await.unwrap();
            assert_eq!(start().await, Some(5));
            assert_eq!(db.audit().verify_audit_chains().await.unwrap(), None);
            // What survived the purge cannot be shortened further by hand.
            tamper(&test_db, &db, "DELETE FROM audit_log WHERE seq = 5 AND scope = $1", org).await;
            let broken = db.audit().verify_audit_chains().await.unwrap().unwrap();
            assert_eq!((broken.scope, broken.seq), (org.as_uuid(), 5));
        }

        async fn erasure_takes_the_persons_entries_and_no_look_alikes(test_db) {
            let (db, _) = seeded(&test_db).await;
            let about = |address: &str, target: String| AuditEvent {
                actor: None,
                target: Some(target),
                // Entries written before subjects existed have none.
                subject: Some(address.to_owned()).filter(|address| !address.is_empty()),
                ..event(None, Action::SigninFailed)
            };
            let now = OffsetDateTime::now_utc();
            for (address, target) in [
                ("n@corp.test", "n@corp.test".to_owned()),
                ("admin@corp.test", "admin@corp.test".to_owned()),
                ("victim@company.com", "victim@company.com as member".to_owned()),
                ("n@company.co", "n@company.co as admin".to_owned()),
                ("", "n@corp.test as member".to_owned()),
                ("", "admin@corp.test as member".to_owned()),
            ] {
                db.audit().append_audit(&about(address, target), now).await.unwrap();
            }
            let key = db.audit_key().unwrap();
            for gone in ["n@corp.test", "n@company.co"] {
                let mut tx = db.begin_serializable().await.unwrap();
                erase_personal_fields(&mut tx, &key, UserId::generate(), gone, now).await.unwrap();
                tx.commit().await.unwrap();
            }
            let left: Vec<(String, Option<String>)> = on_backend!(&owner(&test_db, &db).await, Pool, pool => {
                sqlx::query_as("SELECT action, target FROM audit_log WHERE scope = $1 ORDER BY seq")
                    .bind(mailroom_core::audit::PLATFORM_SCOPE).fetch_all(pool).await.unwrap()
            });
            let targets: Vec<_> = left.into_iter().map(|(_, target)| target).collect();
            assert_eq!(
                targets,
                [
                    Some("jane@example.test".to_owned()),
                    None,
                    Some("admin@corp.test".to_owned()),
                    Some("victim@company.com as member".to_owned()),
                    None,
                    None,
                    Some("admin@corp.test as member".to_owned()),
                ]
            );
            assert_eq!(db.audit().verify_audit_chains().await.unwrap(), None);
        }

        async fn a_head_moved_back_over_deleted_entries_is_found(test_db) {
            let (db, org) = seeded(&test_db).await;
            // Delete the newest entry, and point the head at the one before, as it was then.
            tamper(&test_db, &db, "DELETE FROM audit_log WHERE seq = 4 AND scope = $1", org).await;
            tamper(
                &test_db,
                &db,
                "UPDATE audit_heads SET seq = 3, hash = (SELECT hash FROM audit_log WHERE seq = 3 AND scope = $1) \
                 WHERE scope = $1",
                org,
            )
            .await;
            let broken = db.audit().verify_audit_chains().await.unwrap().unwrap();
            assert_eq!(broken.scope, org.as_uuid());
            assert_eq!(broken.reason, "the record of this chain's newest entry was changed");
            // Nor can a deleted chain pass for a purged one.
            tamper(&test_db, &db, "DELETE FROM audit_log WHERE scope = $1", org).await;
            tamper(&test_db, &db, "UPDATE audit_heads SET purged_through = 1 WHERE scope = $1", org).await;
            assert!(db.audit().verify_audit_chains().await.unwrap().is_some());
        }

        async fn a_chain_extended_without_the_key_does_not_verify(test_db) {
            let (db, org) = seeded(&test_db).await;
            assert_eq!(db.audit().verify_audit_chains().await.unwrap(), None);
            let keyless = crate::test_support::connect(&test_db).await;
            assert!(matches!(keyless.audit().verify_audit_chains().await, Err(StorageError::NoAuditKey)));
            // Nor can a process without the master key verify, whatever key it guesses.
            let impostor = crate::test_support::connect(&test_db).await.with_audit_key(b"guessed key");
            assert!(matches!(impostor.audit().verify_audit_chains().await, Err(StorageError::Locked)));
            impostor.audit().append_audit(&event(Some(org), Action::SigninSucceeded), OffsetDateTime::now_utc()).await.unwrap();
            let broken = db.audit().verify_audit_chains().await.unwrap().unwrap();
            assert_eq!(broken.scope, org.as_uuid());
        }

        async fn the_purge_removes_old_entries_and_the_rest_still_verifies(test_db) {
            let (db, org) = seeded_at(&test_db, long_ago()).await;
            let later = long_ago() + time::Duration::days(1);
            db.audit().append_audit(&event(Some(org), Action::SigninSucceeded), later).await.unwrap();
            let purged = db.audit().purge_audit(later - time::Duration::hours(1)).await.unwrap();
            assert_eq!(purged, 5);
            assert_eq!(db.audit().verify_audit_chains().await.unwrap(), None);
        }

        async fn times_never_go_backwards_along_a_chain_so_purges_take_a_prefix(test_db) {
            let db = crate::test_support::unlocked(&test_db).await;
            let org = OrgId::generate();
            let now = long_ago();
            db.audit().append_audit(&event(Some(org), Action::SigninFailed), now).await.unwrap();
            // A writer whose clock lags (or whose retry kept an older time) comes second.
            db.audit().append_audit(&event(Some(org), Action::SigninFailed), now - time::Duration::hours(1)).await.unwrap();
            db.audit().append_audit(&event(Some(org), Action::SigninFailed), now + time::Duration::hours(1)).await.unwrap();
            let purged = db.audit().purge_audit(now - time::Duration::minutes(30)).await.unwrap();
            assert_eq!(purged, 0, "the lagging entry is stamped no earlier than the one before it");
            assert_eq!(db.audit().purge_audit(now + time::Duration::minutes(30)).await.unwrap(), 2);
            assert_eq!(db.audit().verify_audit_chains().await.unwrap(), None);
        }

        async fn concurrent_appends_extend_one_chain(test_db) {
            let db = Arc::new(crate::test_support::unlocked(&test_db).await);
            let org = OrgId::generate();
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    let db = Arc::clone(&db);
                    tokio::spawn(async move {
                        db.audit().append_audit(&event(Some(org), Action::SigninFailed), OffsetDateTime::now_utc()).await
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap().unwrap();
            }
            assert_eq!(db.audit().verify_audit_chains().await.unwrap(), None);
            let count: i64 = on_backend!(&owner(&test_db, &db).await, Pool, pool => {
                sqlx::query_scalar("SELECT MAX(seq) FROM audit_log").fetch_one(pool).await.unwrap()
            });
            assert_eq!(count, 20);
        }
    }
}
