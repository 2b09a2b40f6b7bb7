use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("unsupported database URL: expected `sqlite:…` or `postgres://…`")]
    UnsupportedUrl,
    #[error("creating the database file {path}: {source}")]
    CreateFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From the group commit's own SQLite connection (`group_commit::sqlite`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("no audit key was given: audit entries cannot be chained or verified")]
    NoAuditKey,
    #[error(
        "the master key does not match this database (its key check value differs): start with \
         the key this database was set up with"
    )]
    WrongMasterKey,
    #[error(
        "the master key was rotated while this process ran: restart it with the new master key"
    )]
    MasterKeyRotated,
    #[error("the keyring is locked: no master key was given")]
    Locked,
    #[error("a sealed value does not open: damaged, moved to another row, or its key is gone")]
    Undecryptable,
    #[error("the database did not answer in time")]
    Timeout,
    #[error(
        "the transaction kept conflicting with concurrent writes; gave up after {attempts} attempts"
    )]
    Contention { attempts: u32 },
    #[error("the app's PostgreSQL role: {0}")]
    AppRole(String),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl StorageError {
    /// The write broke a uniqueness rule (an email address already taken, say).
    pub fn is_unique_violation(&self) -> bool {
        use rusqlite::ffi::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
        match self {
            StorageError::Database(sqlx::Error::Database(db)) => {
                db.kind() == sqlx::error::ErrorKind::UniqueViolation
            }
            StorageError::Sqlite(rusqlite::Error::SqliteFailure(error, _)) => matches!(
                error.extended_code,
                SQLITE_CONSTRAINT_PRIMARYKEY | SQLITE_CONSTRAINT_UNIQUE
            ),
            _ => false,
        }
    }

    /// The database was too busy to take the write: conflicts retried until given up, a
    /// writer's turn or lock not had in time.
    pub(crate) fn is_busy(&self) -> bool {
        matches!(
            self,
            StorageError::Timeout | StorageError::Contention { .. }
        ) || self.is_retryable()
    }

    /// A conflict that a fresh attempt of the same transaction may not hit: a PostgreSQL
    /// serialization failure or deadlock, or SQLite still busy after its busy timeout.
    pub(crate) fn is_retryable(&self) -> bool {
        if let StorageError::Sqlite(rusqlite::Error::SqliteFailure(error, _)) = self {
            return error.code == rusqlite::ErrorCode::DatabaseBusy;
        }
        let StorageError::Database(sqlx::Error::Database(db)) = self else {
            return false;
        };
        matches!(
            db.code().as_deref(),
            // PostgreSQL: serialization_failure, deadlock_detected.
            Some("40001") | Some("40P01")
            // SQLite: SQLITE_BUSY and its extended codes (recovery, snapshot, timeout).
            | Some("5") | Some("261") | Some("517") | Some("773")
        )
    }
}
