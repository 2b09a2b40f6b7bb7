//! The transaction discipline for writes that must never be lost or doubled (quota charges,
//! lockout counters, token rotation): PostgreSQL runs them `SERIALIZABLE` and retries the
//! whole unit of work on a serialization failure or deadlock; SQLite takes the write lock up
//! front with `BEGIN IMMEDIATE`, so a transaction can never fail half-way on a lock upgrade.

use std::time::Duration;

use futures::future::BoxFuture;
use mailroom_crypto::root_key::RootKey;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::{Postgres, Sqlite, Transaction};

use crate::{Database, Pool, StorageError};

/// Attempts before a conflicting transaction is reported as [`StorageError::Contention`].
const MAX_ATTEMPTS: u32 = 30;
const BACKOFF_BASE: Duration = Duration::from_millis(2);
const BACKOFF_CAP: Duration = Duration::from_millis(250);

/// An open transaction on either backend. Opaque outside this crate: operations that take a
/// `&mut Tx` are defined next to their SQL.
/// The second field holds SQLite's write turn (see `Database::sqlite_writer`) until the
/// transaction ends.
pub struct Tx(
    pub(crate) Inner,
    #[expect(
        dead_code,
        reason = "held, never read: the turn ends with the transaction"
    )]
    Option<tokio::sync::OwnedMutexGuard<()>>,
);

pub(crate) enum Inner {
    Sqlite(SqliteHandle),
    Postgres(Transaction<'static, Postgres>),
}

/// On SQLite, a transaction — or, for the single statements of
/// [`Database::transaction_for`], a plain connection: SQLite has no row policies to scope,
/// and every BEGIN and COMMIT is a round trip to its worker thread on the hot path.
pub(crate) enum SqliteHandle {
    Transaction(Transaction<'static, Sqlite>),
    Autocommit(sqlx::pool::PoolConnection<Sqlite>),
}

impl std::ops::Deref for SqliteHandle {
    type Target = sqlx::SqliteConnection;

    fn deref(&self) -> &sqlx::SqliteConnection {
        match self {
            SqliteHandle::Transaction(tx) => tx,
            SqliteHandle::Autocommit(connection) => connection,
        }
    }
}

impl std::ops::DerefMut for SqliteHandle {
    fn deref_mut(&mut self) -> &mut sqlx::SqliteConnection {
        match self {
            SqliteHandle::Transaction(tx) => tx,
            SqliteHandle::Autocommit(connection) => connection,
        }
    }
}

impl Database {
    /// Runs `work` in a serializable transaction and commits it, retrying the whole of it
    /// (capped, with jittered exponential backoff) when the database reports a conflict.
    /// `work` may therefore run more than once and must have no effects outside the
    /// transaction.
    pub async fn serializable<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, StorageError>>,
    {
        let outcome = self.serializable_keeping_key_cache(work).await;
        if let Some(cache) = &self.key_cache {
            cache.wrote();
        }
        outcome
    }

    /// [`Database::serializable`], acting for `tenancy` in each try before `work`.
    pub(crate) async fn serializable_for<T, F>(
        &self,
        tenancy: &Tenancy,
        work: F,
    ) -> Result<T, StorageError>
    where
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, StorageError>>,
    {
        let outcome = self.retrying(Some(tenancy), work).await;
        if let Some(cache) = &self.key_cache {
            cache.wrote();
        }
        outcome
    }

    /// [`Database::serializable`] for writes that change nothing an API key lookup reads (the
    /// group commit's claims and log lines), which so leave the key cache as it is.
    pub(crate) async fn serializable_keeping_key_cache<T, F>(
        &self,
        work: F,
    ) -> Result<T, StorageError>
    where
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, StorageError>>,
    {
        self.retrying(None, work).await
    }

    async fn retrying<T, F>(
        &self,
        tenancy: Option<&Tenancy>,
        mut work: F,
    ) -> Result<T, StorageError>
    where
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, StorageError>>,
    {
        let mut retries = Retries::default();
        loop {
            match self.attempt(tenancy, &mut work).await {
                Err(error) => retries.after(error).await?,
                done => return done,
            }
        }
    }

    /// One try: begin (itself able to conflict, as SQLite's `BEGIN IMMEDIATE` can be busy),
    /// act for `tenancy`, run the work, commit, or roll back on an error.
    async fn attempt<T, F>(
        &self,
        tenancy: Option<&Tenancy>,
        work: &mut F,
    ) -> Result<T, StorageError>
    where
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, StorageError>>,
    {
        let mut tx = self.begin_serializable().await?;
        let acting = match tenancy {
            Some(tenancy) => tx.act_for(tenancy).await,
            None => Ok(()),
        };
        let done = match acting {
            Ok(()) => work(&mut tx).await,
            Err(error) => Err(error),
        };
        match done {
            Ok(value) => tx.commit().await.map(|()| value),
            Err(error) => {
                tx.rollback().await;
                Err(error)
            }
        }
    }

    /// A read-only transaction whose reads all see one snapshot (a long read that must not
    /// see a concurrent purge half-way).
    pub(crate) async fn begin_snapshot(&self) -> Result<Tx, StorageError> {
        Ok(Tx(
            match &self.pool {
                // In WAL mode a deferred transaction's first read fixes its snapshot.
                Pool::Sqlite(pool) => {
                    Inner::Sqlite(SqliteHandle::Transaction(pool.begin_with("BEGIN").await?))
                }
                Pool::Postgres(pool) => Inner::Postgres(
                    pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                        .await?,
                ),
            },
            None,
        ))
    }

    pub(crate) async fn begin_serializable(&self) -> Result<Tx, StorageError> {
        Ok(match &self.pool {
            Pool::Sqlite(pool) => {
                // Writers queue here, in turn, rather than in SQLite's busy handler, which
                // sleeps for milliseconds between tries. Bounded like the busy handler, so
                // that a writer waiting on itself fails instead of hanging.
                let turn = tokio::time::timeout(
                    crate::SQLITE_BUSY_TIMEOUT,
                    std::sync::Arc::clone(&self.sqlite_writer).lock_owned(),
                )
                .await
                .map_err(|_| StorageError::Timeout)?;
                Tx(
                    Inner::Sqlite(SqliteHandle::Transaction(
                        pool.begin_with("BEGIN IMMEDIATE").await?,
                    )),
                    Some(turn),
                )
            }
            Pool::Postgres(pool) => Tx(
                Inner::Postgres(
                    pool.begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE")
                        .await?,
                ),
                None,
            ),
        })
    }
}

/// Who a transaction acts for, as PostgreSQL's tenant policies read it (docs/security.md#tenant-scoping): an
/// organization, or one of the named cross-tenant paths of migrations 0017 and 0018.
#[derive(Clone, Debug)]
pub(crate) enum Tenancy {
    Org(mailroom_core::OrgId),
    /// A user's own rows (their second factors and devices).
    User(mailroom_core::UserId),
    /// What a sign-up, sign-in, code or reset is about: one normalized address.
    Email(String),
    /// A provider's sign-in: the identity it presents, `<issuer> <subject>`.
    Identity(String),
    /// A session found by its token's hash (hex), before its user is known.
    SessionToken(String),
    /// A refresh token found by its hash (hex), before its user is known.
    RefreshToken(String),
    /// A second-factor challenge found by its token's hash (hex), before its user is known.
    MfaChallenge(String),
    /// Second-factor state that expired before this (ms), every user's, for deleting.
    ExpiredBefore(i64),
    /// The background re-encryption of sealed columns, every row's.
    Reseal(UpkeepSecret),
    /// Appending to one audit chain (an organization's, or the platform's nil UUID): its
    /// newest entry and head are read, and extended.
    AuditAppend(uuid::Uuid),
    /// `mailroom audit verify`: every chain, read.
    AuditVerify(UpkeepSecret),
    /// The audit log's retention purge: entries before this (ms), of every chain, and the
    /// heads of the chains it shortens.
    AuditPurgeBefore(i64),
    /// The entries by or about a user whose account is being erased (with their address,
    /// [`Tenancy::ErasedEmail`]).
    ErasedUser(mailroom_core::UserId),
    /// When that erasure happens (ms): the entries it blanked, and only those, it may see.
    ErasedAt(i64),
    /// A scope's data keys: an organization's, or the system scope's (nil UUID).
    KeyScope(uuid::Uuid),
    /// The keyring's upkeep: every scope's wrapped data keys (rotation, the master key's
    /// rotation, their status).
    Keyring(UpkeepSecret),
    /// A platform administrator's view of every account (who is locked out, say).
    Platform(mailroom_core::UserId),
    /// An API key found by its lookup id, before its organization is known.
    ApiKeyLookup(String),
    /// An invitation found by its token's hash (hex), by someone of another organization.
    InvitationToken(String),
    /// The invitations to an address whose account is being erased.
    ErasedEmail(String),
    /// The retention purge: every organization's rows older than this (ms), for deleting.
    PurgeBefore(i64),
    /// The work queue's runner and its operator: every job of the queue.
    JobQueue(UpkeepSecret),
    /// The purge of the rows of jobs that failed or were cancelled before this (ms): those
    /// jobs of every organization, to find (their rows are deleted as their organization).
    PurgeEndedJobsBefore(i64),
}

/// What opens the upkeep paths over every tenant's rows on PostgreSQL (migration 0037): a
/// secret derived from the root key, so that only a node holding the master key can show it.
/// The installation keeps its SHA-256, written by the owner at unlock.
#[derive(Clone)]
pub(crate) struct UpkeepSecret(SecretString);

impl UpkeepSecret {
    const LABEL: &[u8] = b"mailroom/postgres-upkeep-paths/v1";

    pub(crate) fn derive(root: &RootKey) -> Self {
        Self(SecretString::from(hex::encode(
            root.derive(Self::LABEL).as_bytes(),
        )))
    }

    /// What the installation keeps of it.
    pub(crate) fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.0.expose_secret().as_bytes()).into()
    }

    pub(crate) fn shown(&self) -> String {
        self.0.expose_secret().to_owned()
    }
}

impl std::fmt::Debug for UpkeepSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpkeepSecret([REDACTED])")
    }
}

impl Tenancy {
    fn setting(&self) -> (&'static str, String) {
        match self {
            Tenancy::Org(org) => ("app.org_id", org.as_uuid().to_string()),
            Tenancy::User(user) => ("app.user_id", user.as_uuid().to_string()),
            Tenancy::Email(email) => ("app.email", email.clone()),
            Tenancy::Identity(identity) => ("app.identity", identity.clone()),
            Tenancy::SessionToken(hash) => ("app.session_token", hash.clone()),
            Tenancy::RefreshToken(hash) => ("app.refresh_token", hash.clone()),
            Tenancy::MfaChallenge(hash) => ("app.mfa_challenge", hash.clone()),
            Tenancy::ExpiredBefore(ms) => ("app.expired_before", ms.to_string()),
            Tenancy::Reseal(secret) => ("app.reseal", secret.shown()),
            Tenancy::Keyring(secret) => ("app.keyring", secret.shown()),
            Tenancy::KeyScope(scope) => ("app.key_scope", scope.to_string()),
            Tenancy::AuditAppend(scope) => ("app.audit_append", scope.to_string()),
            Tenancy::AuditVerify(secret) => ("app.audit_verify", secret.shown()),
            Tenancy::AuditPurgeBefore(ms) => ("app.audit_purge_before", ms.to_string()),
            Tenancy::ErasedUser(user) => ("app.erase_user", user.as_uuid().to_string()),
            Tenancy::ErasedAt(ms) => ("app.erased_at", ms.to_string()),
            Tenancy::Platform(admin) => ("app.platform_admin", admin.as_uuid().to_string()),
            Tenancy::ApiKeyLookup(id) => ("app.api_key_lookup_id", id.clone()),
            Tenancy::InvitationToken(hash) => ("app.invitation_token", hash.clone()),
            Tenancy::ErasedEmail(email) => ("app.erase_email", email.clone()),
            Tenancy::PurgeBefore(ms) => ("app.purge_before", ms.to_string()),
            Tenancy::JobQueue(secret) => ("app.job_queue", secret.shown()),
            Tenancy::PurgeEndedJobsBefore(ms) => ("app.purge_ended_before", ms.to_string()),
        }
    }
}

impl Tx {
    /// Says, for the rest of this transaction only, whom it acts for. SQLite has no row
    /// policies; there the tenant is in every query's `WHERE`.
    pub(crate) async fn act_for(&mut self, tenancy: &Tenancy) -> Result<(), StorageError> {
        if let Inner::Postgres(tx) = &mut self.0 {
            let (name, value) = tenancy.setting();
            sqlx::query("SELECT set_config($1, $2, true)")
                .bind(name)
                .bind(value)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

impl Database {
    /// Runs `work` acting for `tenancy`: on PostgreSQL in a plain transaction (no
    /// serialization), on SQLite with its statements in autocommit — so `work` is one
    /// statement, a read or a single write, on a hot path (an API key on every request).
    pub(crate) async fn transaction_for<T, F>(
        &self,
        tenancy: &Tenancy,
        work: F,
    ) -> Result<T, StorageError>
    where
        F: for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<T, StorageError>>,
    {
        let mut tx = Tx(
            match &self.pool {
                Pool::Sqlite(pool) => {
                    Inner::Sqlite(SqliteHandle::Autocommit(pool.acquire().await?))
                }
                Pool::Postgres(pool) => Inner::Postgres(pool.begin().await?),
            },
            None,
        );
        let outcome = match tx.act_for(tenancy).await {
            Ok(()) => work(&mut tx).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(value) => tx.commit().await.map(|()| value),
            Err(error) => {
                tx.rollback().await;
                Err(error)
            }
        }
    }
}

impl Tx {
    pub(crate) fn backend(&self) -> crate::Backend {
        match &self.0 {
            Inner::Sqlite(_) => crate::Backend::Sqlite,
            Inner::Postgres(_) => crate::Backend::Postgres,
        }
    }

    pub(crate) async fn commit(self) -> Result<(), StorageError> {
        match self.0 {
            Inner::Sqlite(SqliteHandle::Transaction(tx)) => tx.commit().await?,
            Inner::Sqlite(SqliteHandle::Autocommit(_)) => {}
            Inner::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// A failed rollback needs no handling: the connection is discarded and the server rolls
    /// the transaction back when it goes away.
    pub(crate) async fn rollback(self) {
        let result = match self.0 {
            Inner::Sqlite(SqliteHandle::Transaction(tx)) => tx.rollback().await,
            Inner::Sqlite(SqliteHandle::Autocommit(_)) => Ok(()),
            Inner::Postgres(tx) => tx.rollback().await,
        };
        if let Err(error) = result {
            tracing::warn!(%error, "rollback failed");
        }
    }
}

/// The retry discipline for a transaction that conflicted: capped attempts, each after a
/// jittered exponential backoff.
#[derive(Default)]
pub(crate) struct Retries {
    failed: u32,
}

impl Retries {
    /// After a failed attempt: waits and returns `Ok` when the transaction may be tried again,
    /// or returns the error to give up with (a conflict once the attempts are spent).
    pub(crate) async fn after(&mut self, error: StorageError) -> Result<(), StorageError> {
        if !error.is_retryable() {
            return Err(error);
        }
        self.failed += 1;
        if self.failed == MAX_ATTEMPTS {
            tracing::warn!(%error, attempts = self.failed, "transaction gave up");
            return Err(StorageError::Contention {
                attempts: self.failed,
            });
        }
        tracing::debug!(attempt = self.failed, %error, "transaction conflict, retrying");
        tokio::time::sleep(backoff(self.failed)).await;
        Ok(())
    }
}

/// Full jitter: a random wait up to an exponentially growing cap, so that conflicting
/// transactions spread out instead of colliding again in lockstep.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(BACKOFF_CAP);
    rand::rng().random_range(Duration::ZERO..=ceiling)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use futures::FutureExt;
    use mailroom_testkit::both_backends;

    use super::*;
    use crate::on_backend;

    /// Reads the counter in one statement and writes `read + 1` in another: without real
    /// serializability two tasks read the same value and one increment is lost.
    async fn increment(tx: &mut Tx) -> Result<(), StorageError> {
        on_backend!(&mut tx.0, Inner, tx => {
            let value: i64 = sqlx::query_scalar("SELECT value FROM scratch_counter")
                .fetch_one(&mut **tx)
                .await?;
            sqlx::query("UPDATE scratch_counter SET value = $1")
                .bind(value + 1)
                .execute(&mut **tx)
                .await?;
        });
        Ok(())
    }

    async fn counter(db: &Database) -> i64 {
        on_backend!(&db.pool, Pool, pool => sqlx::query_scalar("SELECT value FROM scratch_counter")
            .fetch_one(pool)
            .await
            .unwrap())
    }

    /// A scratch table, made as the database's owner (after the migrations, which make the
    /// app role) and open to the app role the pool acts as.
    async fn create_scratch_counter(test_db: &mailroom_testkit::TestDatabase, db: &Database) {
        db.migrate().await.unwrap();
        test_db
            .execute("CREATE TABLE scratch_counter (value BIGINT NOT NULL)")
            .await;
        test_db
            .execute("INSERT INTO scratch_counter (value) VALUES (0)")
            .await;
        if let Some(role) = db.app_role().unwrap() {
            test_db
                .execute(&format!("GRANT ALL ON scratch_counter TO {role}"))
                .await;
        }
    }

    both_backends! {
        async fn fifty_concurrent_read_modify_writes_end_exact(test_db) {
            let db = Arc::new(crate::test_support::connect(&test_db).await);
            create_scratch_counter(&test_db, &db).await;

            let tasks: Vec<_> = (0..50)
                .map(|_| {
                    let db = Arc::clone(&db);
                    tokio::spawn(async move {
                        db.serializable(|tx| increment(tx).boxed()).await
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap().unwrap();
            }
            assert_eq!(counter(&db).await, 50);
        }

        async fn an_error_in_the_work_rolls_everything_back(test_db) {
            let db = crate::test_support::connect(&test_db).await;
            create_scratch_counter(&test_db, &db).await;
            let result: Result<(), _> = db
                .serializable(|tx| {
                    async move {
                        increment(tx).await?;
                        Err(StorageError::Timeout)
                    }
                    .boxed()
                })
                .await;
            assert!(matches!(result, Err(StorageError::Timeout)));
            assert_eq!(counter(&db).await, 0);
        }

        async fn migrations_apply_twice_and_ping_answers(test_db) {
            let db = crate::test_support::connect(&test_db).await;
            assert_eq!(db.backend().name(), test_db.backend().name());
            db.migrate().await.unwrap();
            db.migrate().await.unwrap();
            db.ping().await.unwrap();
        }
    }

    /// Two transactions read the counter, then both write it: PostgreSQL must fail one with a
    /// serialization error, and the helper must run it again on the new value. (On SQLite the
    /// write lock taken at `BEGIN IMMEDIATE` keeps the two from interleaving at all.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_serialization_conflict_is_retried_not_lost() {
        let Some(test_db) = mailroom_testkit::TestDatabase::postgres().await else {
            return;
        };
        let db = Arc::new(crate::test_support::connect(&test_db).await);
        create_scratch_counter(&test_db, &db).await;
        let both_have_read = Arc::new(tokio::sync::Barrier::new(2));
        let attempts = Arc::new(AtomicU32::new(0));

        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let (db, both_have_read, attempts) = (
                    Arc::clone(&db),
                    Arc::clone(&both_have_read),
                    Arc::clone(&attempts),
                );
                tokio::spawn(async move {
                    let mut first_attempt = true;
                    db.serializable(|tx| {
                        let wait = std::mem::take(&mut first_attempt);
                        let both_have_read = Arc::clone(&both_have_read);
                        attempts.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let Inner::Postgres(tx) = &mut tx.0 else {
                                unreachable!("a PostgreSQL test");
                            };
                            let value: i64 =
                                sqlx::query_scalar("SELECT value FROM scratch_counter")
                                    .fetch_one(&mut **tx)
                                    .await?;
                            if wait {
                                both_have_read.wait().await;
                            }
                            sqlx::query("UPDATE scratch_counter SET value = $1")
                                .bind(value + 1)
                                .execute(&mut **tx)
                                .await?;
                            Ok(())
                        }
                        .boxed()
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(counter(&db).await, 2, "no increment lost");
        assert_eq!(attempts.load(Ordering::SeqCst), 3, "exactly one retry");
    }

    #[tokio::test]
    async fn sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout() {
        let test_db = mailroom_testkit::TestDatabase::sqlite().await;
        let db = crate::test_support::connect(&test_db).await;
        let Pool::Sqlite(pool) = &db.pool else {
            panic!("a sqlite: URL opens SQLite");
        };
        let mut connection = pool.acquire().await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        for (pragma, expected) in [("PRAGMA foreign_keys", 1), ("PRAGMA busy_timeout", 5000)] {
            let value: i64 = sqlx::query_scalar(pragma)
                .fetch_one(&mut *connection)
                .await
                .unwrap();
            assert_eq!(value, expected, "{pragma}");
        }
    }

    /// sqlx can lose a `BEGIN` whose caller went away after SQLite answered it but before the
    /// answer was read (a request cancelled when its client hung up): the connection went back
    /// to the pool holding the write lock, and every later write waited on it forever.
    #[tokio::test]
    async fn a_begin_abandoned_mid_answer_does_not_keep_the_write_lock() {
        let test_db = mailroom_testkit::TestDatabase::sqlite().await;
        let db = crate::test_support::connect(&test_db).await;
        db.migrate().await.unwrap();
        for polls in (1..=4).cycle().take(24) {
            let mut begin = std::pin::pin!(db.begin_serializable());
            // Polled far enough to send BEGIN, then left unpolled while the worker answers.
            for _ in 0..polls {
                if futures::poll!(begin.as_mut()).is_ready() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let write = db.serializable(|tx| {
            async move {
                on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query("UPDATE plans SET name = name").execute(&mut **tx).await?;
                });
                Ok(())
            }
            .boxed()
        });
        tokio::time::timeout(Duration::from_secs(4), write)
            .await
            .expect("a write is not left waiting on a lost transaction")
            .unwrap();
    }

    #[test]
    fn backoff_stays_under_the_cap() {
        for attempt in 1..=MAX_ATTEMPTS {
            assert!(backoff(attempt) <= BACKOFF_CAP);
        }
    }
}
