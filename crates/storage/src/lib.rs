//! All of mailroom's SQL lives here: the two backends (SQLite for one node, PostgreSQL for
//! several), their migrations, and the transaction discipline. Callers above this crate see
//! typed operations, never a query string.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod bulk_jobs;
pub mod emails;
mod error;
pub mod group_commit;
pub mod identities;
pub mod keyring;
pub mod lockout;
pub mod mail_accounts;
pub mod privacy;
pub mod queue;
pub mod roles;
#[cfg(test)]
mod row_security_tests;
pub mod teams;
pub mod tokens;
pub mod two_factor;
mod tx;
pub mod usage;
pub mod verifications;
pub mod webhooks;

/// Runs the same expression against whichever pool (or transaction) is open: one query text
/// serves both backends wherever their SQL agrees, and the compiler still type-checks each arm
/// against its own driver.
macro_rules! on_backend {
    ($value:expr, $enum:ident, $bound:ident => $body:expr) => {
        match $value {
            $enum::Sqlite($bound) => $body,
            $enum::Postgres($bound) => $body,
        }
    };
}
pub(crate) use on_backend;

use std::str::FromStr;
use std::time::Duration;

use mailroom_core::redact::{REDACTED, redact_query};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use error::StorageError;

/// What the unit tests of several modules share.
#[cfg(test)]
pub(crate) mod test_support {
    use mailroom_core::OrgId;
    use mailroom_core::audit::AuditEvent;
    use time::OffsetDateTime;

    use crate::Database;
    use crate::accounts::{NewAccount, PlatformRole, User};
    use crate::roles::AppLogin;

    /// An installation as `mailroom serve` opens one: migrated, unlocked, its app role made.
    pub async fn installed(test_db: &mailroom_testkit::TestDatabase) -> Database {
        migrated_and_unlocked(Database::connect(test_db.url()).await.unwrap()).await
    }

    async fn migrated_and_unlocked(mut db: Database) -> Database {
        db.migrate().await.unwrap();
        db.unlock(
            mailroom_crypto::master_key::MasterKey::generate(),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
        db
    }

    /// Sets `name` for the rest of a PostgreSQL session, as a role could on its own.
    pub async fn set_for_the_session(connection: &mut sqlx::PgConnection, name: &str, value: &str) {
        sqlx::query("SELECT set_config($1, $2, false)")
            .bind(name)
            .bind(value)
            .execute(connection)
            .await
            .unwrap();
    }

    /// An entry of `action` in the organization's chain, with nothing else said.
    pub fn event(org_id: OrgId, action: mailroom_core::audit::Action) -> AuditEvent {
        AuditEvent::by_the_system(org_id, action, mailroom_core::audit::Outcome::Success)
    }

    /// The test's database, its pool logging in as the test's app role on PostgreSQL (given
    /// the tables by `migrate`, as an operator's role would be): what the app's queries meet,
    /// row policies included. Not yet migrated.
    pub async fn connect(test_db: &mailroom_testkit::TestDatabase) -> Database {
        let db = Database::connect(test_db.url()).await.unwrap();
        match test_db.app_url() {
            Some(url) => db
                .with_app_login(AppLogin::Url(url.to_owned().into()))
                .unwrap(),
            None => db,
        }
    }

    /// [`connect`], migrated and unlocked: the app's paths over every tenant (the job claim,
    /// the audit's verification, the keyring's upkeep) take the secret only an unlocked node
    /// has.
    pub async fn unlocked(test_db: &mailroom_testkit::TestDatabase) -> Database {
        migrated_and_unlocked(connect(test_db).await).await
    }

    /// A new account's personal organization.
    pub async fn org(db: &Database) -> OrgId {
        let email = format!("{}@example.test", uuid::Uuid::now_v7());
        account(db, &email, OffsetDateTime::now_utc()).await.org_id
    }

    /// A new account of `email`'s, a user of the platform's.
    pub async fn account(db: &Database, email: &str, now: OffsetDateTime) -> User {
        let account = NewAccount {
            email: email.to_owned(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            platform_role: PlatformRole::User,
        };
        db.accounts().create_account(&account, now).await.unwrap()
    }

    /// A verification job of one address, queued for `org_id`.
    pub async fn one_job(db: &Database, org_id: OrgId, now: OffsetDateTime) {
        let job = crate::bulk_jobs::NewBulkJob {
            id: mailroom_core::JobId::generate(),
            user_id: None,
            api_key_id: None,
            smtp: false,
            emails: vec!["someone@example.test".to_owned()],
        };
        db.bulk_jobs()
            .create_job(org_id, &job, now, now)
            .await
            .unwrap();
    }
}
pub use tx::Tx;

/// How long a readiness probe may wait for the database before calling it unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long SQLite waits on a lock held by another connection before giving up.
pub(crate) const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A pool of connections to one of the two backends. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    /// PostgreSQL: the owner's login (migrations, the keyring's bootstrap, the app role) and
    /// the app's.
    postgres: Option<PostgresLogins>,
    /// Keys the audit hash chains; derived from the root key when the keyring is unlocked.
    audit_key: Option<std::sync::Arc<[u8]>>,
    /// Seals and opens secrets in columns; present once unlocked with the master key.
    keyring: Option<std::sync::Arc<keyring::Keyring>>,
    /// SQLite takes one writer at a time: this process's writers take turns here.
    sqlite_writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The verification hot path's writes, applied in batches (absent in the task itself).
    group_commit: Option<group_commit::GroupCommit>,
    /// SQLite only: API keys by lookup id, until the next write.
    key_cache: Option<std::sync::Arc<api_keys::KeyCache>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
struct PostgresLogins {
    owner: PgConnectOptions,
    app: roles::AppLogin,
}

#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Creates a missing database file readable by its owner only: SQLite gives the write-ahead
/// log and its index the mode of the database file, so all three are 0600.
fn create_private_file(path: &std::path::Path) -> Result<(), StorageError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StorageError::CreateFile {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The aggregates, each over the same pool and keyring: `db.accounts().create_account(…)`.
/// What is left on `Database` itself is the installation's: connecting, migrating,
/// transactions, the keyring and the app role.
impl Database {
    pub fn accounts(&self) -> accounts::Accounts<'_> {
        accounts::Accounts { db: self }
    }

    pub fn api_keys(&self) -> api_keys::ApiKeys<'_> {
        api_keys::ApiKeys { db: self }
    }

    pub fn audit(&self) -> audit::AuditLog<'_> {
        audit::AuditLog { db: self }
    }

    pub fn bulk_jobs(&self) -> bulk_jobs::BulkJobs<'_> {
        bulk_jobs::BulkJobs { db: self }
    }

    pub fn identities(&self) -> identities::Identities<'_> {
        identities::Identities { db: self }
    }

    pub fn lockout(&self) -> lockout::Lockouts<'_> {
        lockout::Lockouts { db: self }
    }

    pub fn emails(&self) -> emails::Emails<'_> {
        emails::Emails { db: self }
    }

    pub fn mail_accounts(&self) -> mail_accounts::MailAccounts<'_> {
        mail_accounts::MailAccounts { db: self }
    }

    pub fn webhooks(&self) -> webhooks::Webhooks<'_> {
        webhooks::Webhooks { db: self }
    }

    pub fn privacy(&self) -> privacy::Privacy<'_> {
        privacy::Privacy { db: self }
    }

    pub fn queue(&self) -> queue::Queue<'_> {
        queue::Queue { db: self }
    }

    pub fn teams(&self) -> teams::Teams<'_> {
        teams::Teams { db: self }
    }

    pub fn tokens(&self) -> tokens::Tokens<'_> {
        tokens::Tokens { db: self }
    }

    pub fn two_factor(&self) -> two_factor::TwoFactor<'_> {
        two_factor::TwoFactor { db: self }
    }

    pub fn usage(&self) -> usage::Usage<'_> {
        usage::Usage { db: self }
    }

    pub fn verifications(&self) -> verifications::VerificationLog<'_> {
        verifications::VerificationLog { db: self }
    }
}

impl Database {
    /// Connects to `sqlite:…` (created if missing, WAL, foreign keys on, busy timeout) or
    /// `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        let mut sqlite_file = None;
        let mut postgres = None;
        let pool = match Backend::of_url(url)? {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT);
                // The group commit opens the file a second way (see `group_commit::sqlite`):
                // only a plain file, as URL parameters (an in-memory database, a read-only
                // mode, another VFS with other locking) would not carry over to it.
                if !url.contains('?') && !url.contains(":memory:") {
                    sqlite_file = Some(options.get_filename().to_owned());
                }
                if !url.contains(":memory:") {
                    create_private_file(options.get_filename())?;
                }
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(8)
                        // A file does not go stale between uses: no ping before each.
                        .test_before_acquire(false)
                        .after_release(|connection, _| {
                            Box::pin(async move {
                                // sqlx loses a BEGIN whose caller went away (a request cancelled
                                // by its client) after SQLite answered but before the answer was
                                // read: nothing would ever end that transaction, and its write
                                // lock would stall every later write. Such a connection is
                                // closed, which rolls it back. Otherwise a transaction still
                                // open here is one whose rollback is queued: let it run first.
                                use sqlx::Connection;
                                if connection.is_in_transaction() {
                                    connection.ping().await?;
                                }
                                Ok(!connection.is_in_transaction())
                            })
                        })
                        .connect_with(options)
                        .await?,
                )
            }
            Backend::Postgres => {
                let owner = PgConnectOptions::from_str(url)?.application_name("mailroom-migrate");
                let database_name = owner
                    .get_database()
                    .unwrap_or(owner.get_username())
                    .to_owned();
                let app = roles::AppLogin::Provisioned {
                    role: roles::AppLogin::default_role(&database_name),
                };
                // Lazily: the app role exists, and its password is known, only once the
                // keyring is unlocked (`unlock`), which runs as the owner.
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_lazy_with(app.connect_options(&owner, None)?);
                postgres = Some(PostgresLogins { owner, app });
                Pool::Postgres(pool)
            }
        };
        let mut database = Self {
            pool,
            postgres,
            audit_key: None,
            keyring: None,
            sqlite_writer: Default::default(),
            group_commit: None,
            key_cache: match Backend::of_url(url)? {
                Backend::Sqlite => Some(Default::default()),
                Backend::Postgres => None,
            },
        };
        database.group_commit = Some(group_commit::GroupCommit::start(
            database.clone(),
            sqlite_file.as_deref(),
        ));
        Ok(database)
    }

    /// The key under which audit entries are chained, for a database used without a
    /// keyring (tests of the chain itself); [`Database::unlock`] sets it from the root key.
    pub fn with_audit_key(mut self, key: &[u8]) -> Self {
        self.audit_key = Some(key.into());
        self
    }

    pub(crate) fn audit_key(&self) -> Result<std::sync::Arc<[u8]>, StorageError> {
        self.audit_key.clone().ok_or(StorageError::NoAuditKey)
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// PostgreSQL: the app's pool logs in with `app` instead of the role this installation
    /// provisions for itself ([`roles::AppLogin::Provisioned`]). Nothing on SQLite.
    pub fn with_app_login(mut self, app: roles::AppLogin) -> Result<Self, StorageError> {
        if let (Pool::Postgres(pool), Some(logins)) = (&self.pool, &mut self.postgres) {
            pool.set_connect_options(app.connect_options(&logins.owner, None)?);
            logins.app = app;
        }
        Ok(self)
    }

    /// The role the app's PostgreSQL pool logs in as.
    pub fn app_role(&self) -> Result<Option<String>, StorageError> {
        self.postgres
            .as_ref()
            .map(|logins| logins.app.role())
            .transpose()
    }

    /// Applies the backend's pending migrations, and gives an operator's app role
    /// ([`roles::AppLogin::Url`]) the tables. Safe to run from several nodes at once: on
    /// PostgreSQL the migrator holds an advisory lock.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        match (&self.pool, &self.postgres) {
            (Pool::Sqlite(pool), _) => sqlx::migrate!("migrations/sqlite").run(pool).await?,
            // As the owner, on a connection of its own, never the app's pool.
            (Pool::Postgres(_), Some(logins)) => {
                let mut connection =
                    <sqlx::PgConnection as sqlx::Connection>::connect_with(&logins.owner).await?;
                if let roles::AppLogin::Provisioned { .. } = &logins.app {
                    roles::preflight(&mut connection).await?;
                }
                sqlx::migrate!("migrations/postgres")
                    .run(&mut connection)
                    .await?;
                if let roles::AppLogin::Url(_) = &logins.app {
                    let role = logins.app.role()?;
                    let access = roles::provision(&mut connection, &role, None).await?;
                    roles::report(access);
                }
                sqlx::Connection::close(connection).await?;
            }
            (Pool::Postgres(_), None) => return Err(StorageError::UnsupportedUrl),
        }
        Ok(())
    }

    /// The same database through the owner's login on PostgreSQL (one connection), for what
    /// comes before the app's own: the keyring's bootstrap. On SQLite, itself.
    pub(crate) async fn as_owner(&self) -> Result<OwnerSide, StorageError> {
        let Some(logins) = &self.postgres else {
            return Ok(OwnerSide {
                database: self.clone(),
                separate: false,
            });
        };
        // A connection of its own first: a pool that cannot connect reports only that it
        // timed out, this says why.
        let probe = <sqlx::PgConnection as sqlx::Connection>::connect_with(&logins.owner).await?;
        sqlx::Connection::close(probe).await?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(logins.owner.clone())
            .await?;
        Ok(OwnerSide {
            database: Database {
                pool: Pool::Postgres(pool),
                postgres: None,
                audit_key: None,
                keyring: None,
                sqlite_writer: Default::default(),
                group_commit: None,
                key_cache: None,
            },
            separate: true,
        })
    }

    /// Whether the database answers a trivial query within [`PING_TIMEOUT`].
    pub async fn ping(&self) -> Result<(), StorageError> {
        let query = async {
            on_backend!(&self.pool, Pool, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))
        };
        match tokio::time::timeout(PING_TIMEOUT, query).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StorageError::Timeout),
        }
    }

    /// Waits for checked-out connections to return, then closes them all.
    pub async fn close(&self) {
        on_backend!(&self.pool, Pool, pool => pool.close().await)
    }
}

/// The owner's side of the database ([`Database::as_owner`]).
pub(crate) struct OwnerSide {
    pub database: Database,
    /// A connection of its own, to close when done (not the app's pool).
    separate: bool,
}

impl OwnerSide {
    pub async fn close(self) {
        if self.separate {
            self.database.close().await;
        }
    }
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Self, StorageError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StorageError::UnsupportedUrl)
        }
    }
}

/// A database URL fit for a log line: the password, in the user info or as a
/// `?password=` parameter, is replaced.
pub fn redacted_url(raw: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(raw) else {
        return "[unparseable database url]".to_owned();
    };
    if parsed.password().is_some() {
        // Only fails for URLs that cannot have a password, which this one has.
        let _ = parsed.set_password(Some(REDACTED));
    }
    if let Some(query) = parsed.query().map(redact_query) {
        parsed.set_query(Some(&query));
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_told_by_scheme() {
        assert_eq!(
            Backend::of_url("sqlite://data/m.db").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(Backend::of_url("sqlite:m.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::of_url("postgresql://h/db").unwrap(),
            Backend::Postgres
        );
        assert!(matches!(
            Backend::of_url("mysql://h/db"),
            Err(StorageError::UnsupportedUrl)
        ));
    }

    /// A migration on one backend without its twin on the other is a schema that differs by
    /// backend: a bug that only one half of the tests would see.
    #[test]
    fn both_backends_have_the_same_migrations() {
        let migrations = |backend: &str| -> std::collections::BTreeSet<String> {
            let dir = format!("{}/migrations/{backend}", env!("CARGO_MANIFEST_DIR"));
            std::fs::read_dir(dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".sql"))
                .collect()
        };
        assert_eq!(migrations("sqlite"), migrations("postgres"));
    }

    #[test]
    fn passwords_never_reach_log_lines() {
        let shown = redacted_url("postgres://app:hunter2@db.internal:5432/mailroom");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("app:"), "{shown}");
        let shown = redacted_url("postgres://db.internal/mailroom?user=app&password=hunter2");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("user=app"), "{shown}");
        assert_eq!(redacted_url("sqlite://./data/m.db"), "sqlite://./data/m.db");
    }
}
