//! PostgreSQL's roles for one installation (ORG-4). The app's pool logs in as a role of this
//! installation's own: no superuser, no `BYPASSRLS`, a member of no role (so `RESET ROLE` or
//! `SET ROLE` lead nowhere), owning nothing, and the only role besides the owner that may
//! connect to the database. The owner, whose URL runs the migrations on a connection of its
//! own, is no member of it. Roles are the cluster's, so another installation on the same
//! cluster has roles of its own and no way into this database.

use mailroom_crypto::root_key::RootKey;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::{Database, Pool, StorageError};

/// What the provisioned role's password is derived from the root key under.
const APP_PASSWORD_LABEL: &[u8] = b"mailroom/postgres-app-role/password/v1";

/// PostgreSQL's longest identifier, in bytes.
const MAX_IDENTIFIER: usize = 63;
const DEFAULT_PREFIX: &str = "mailroom_app_";

/// How the app's pool logs in to PostgreSQL.
#[derive(Clone, Debug)]
pub enum AppLogin {
    /// As a role that unlocking the keyring provisions: made when missing, with a password
    /// derived from the root key, so that every node of the installation knows it and
    /// nobody else does.
    Provisioned { role: String },
    /// As the operator's own role, from its own URL (the owner's URL then only migrates).
    Url(SecretString),
}

impl AppLogin {
    /// The role of the installation whose database is `database`: `mailroom_app_<database>`,
    /// cut to PostgreSQL's 63 bytes with a digest of the whole name where it is longer.
    pub fn default_role(database: &str) -> String {
        let clean: String = database
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let role = format!("{DEFAULT_PREFIX}{clean}");
        if role.len() <= MAX_IDENTIFIER && clean == database {
            return role;
        }
        // Distinct names must not meet in one role once cut or cleaned.
        let digest = hex::encode(&sha256(database.as_bytes())[..6]);
        let keep = MAX_IDENTIFIER - DEFAULT_PREFIX.len() - digest.len() - 1;
        let cut: String = clean.chars().take(keep).collect();
        format!("{DEFAULT_PREFIX}{cut}_{digest}")
    }

    /// The role this login names.
    pub(crate) fn role(&self) -> Result<String, StorageError> {
        match self {
            AppLogin::Provisioned { role } => Ok(role.clone()),
            AppLogin::Url(url) => {
                let options: PgConnectOptions = url.expose_secret().parse()?;
                Ok(options.get_username().to_owned())
            }
        }
    }

    /// How the app's pool connects: the operator's URL, or the owner's host and database as
    /// the provisioned role (its password set once it is known).
    pub(crate) fn connect_options(
        &self,
        owner: &PgConnectOptions,
        password: Option<&SecretString>,
    ) -> Result<PgConnectOptions, StorageError> {
        let options = match self {
            AppLogin::Url(url) => url.expose_secret().parse()?,
            AppLogin::Provisioned { role } => {
                let options = owner.clone().username(role);
                match password {
                    Some(password) => options.password(password.expose_secret()),
                    None => options,
                }
            }
        };
        Ok(options.application_name("mailroom"))
    }
}

impl Database {
    /// Unlocking's last step on PostgreSQL, for a provisioned app role: make or re-key it,
    /// give it the tables, and let the pool log in as it from now on.
    pub(crate) async fn provision_app_role(&self, root: &RootKey) -> Result<(), StorageError> {
        let (Pool::Postgres(pool), Some(logins)) = (&self.pool, &self.postgres) else {
            return Ok(());
        };
        let AppLogin::Provisioned { role } = &logins.app else {
            return Ok(());
        };
        let password = SecretString::from(hex::encode(root.derive(APP_PASSWORD_LABEL).as_bytes()));
        let mut owner = PgConnection::connect_with(&logins.owner).await?;
        let access = provision(&mut owner, role, Some(&password)).await;
        let _ = owner.close().await;
        report(access?);
        pool.set_connect_options(logins.app.connect_options(&logins.owner, Some(&password))?);
        Ok(())
    }
}

/// Warns when `PUBLIC` could not be shut out of the database.
pub(crate) fn report(access: PublicAccess) {
    if access == PublicAccess::LeftToTheOwner {
        tracing::warn!(
            "every role of the cluster may still connect to this database: its owner should \
             run REVOKE CONNECT, TEMPORARY ON DATABASE <database> FROM PUBLIC (README, \
             PostgreSQL)"
        );
    }
}

/// What a provisioning found: whether the database's `PUBLIC` could be shut out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicAccess {
    /// Nobody but the owner and the app role may connect or make temporary tables.
    Revoked,
    /// The migrating user does not own the database: its owner must revoke `CONNECT` and
    /// `TEMPORARY` from `PUBLIC` (the README says how).
    LeftToTheOwner,
}

/// Makes (or, with `password`, makes or re-keys) the app role and gives it what the app
/// needs: the tables but the migrator's, the sequences, the schema, and `CONNECT` on this
/// database — which `PUBLIC` loses where the migrating user may take it away. Refuses a role
/// that could step out of the row policies. Several nodes may run it at once.
pub(crate) async fn provision(
    owner: &mut PgConnection,
    role: &str,
    password: Option<&SecretString>,
) -> Result<PublicAccess, StorageError> {
    let quoted = quote_identifier(role)?;
    let mut tx = owner.begin().await?;
    // Two nodes starting at once: one makes the role, the other finds it.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('mailroom provision ' || current_database()))",
    )
    .execute(&mut *tx)
    .await?;
    let exists: Option<(bool, bool, bool)> = sqlx::query_as(
        "SELECT rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(&mut *tx)
    .await?;
    match (exists, password) {
        (None, None) => {
            return Err(StorageError::AppRole(format!(
                "the role {role} does not exist"
            )));
        }
        (None, Some(password)) => {
            let statement = format!(
                "CREATE ROLE {quoted} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT \
                 NOREPLICATION NOBYPASSRLS PASSWORD {}",
                quote_literal(&scram_verifier(password))
            );
            sqlx::raw_sql(&statement).execute(&mut *tx).await?;
        }
        (Some(_), Some(password)) => {
            let statement = format!(
                "ALTER ROLE {quoted} LOGIN PASSWORD {}",
                quote_literal(&scram_verifier(password))
            );
            sqlx::raw_sql(&statement).execute(&mut *tx).await?;
        }
        (Some(_), None) => {}
    }
    let (superuser, bypass, create_role): (bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_one(&mut *tx)
    .await?;
    if superuser || bypass || create_role {
        return Err(StorageError::AppRole(format!(
            "the role {role} is a superuser, bypasses row security or creates roles: the row \
             policies would not bind it"
        )));
    }
    // The owner must not act as the app role by inheritance, nor the app role reach any
    // other role's rights.
    let owner_inherits: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid \
         JOIN pg_roles m ON m.oid = a.member WHERE r.rolname = $1 AND m.rolname = current_user)",
    )
    .bind(role)
    .fetch_one(&mut *tx)
    .await?;
    if owner_inherits {
        sqlx::raw_sql(&format!("REVOKE {quoted} FROM CURRENT_USER"))
            .execute(&mut *tx)
            .await?;
    }
    let memberships: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member \
         WHERE m.rolname = $1",
    )
    .bind(role)
    .fetch_one(&mut *tx)
    .await?;
    if memberships > 0 {
        return Err(StorageError::AppRole(format!(
            "the role {role} is a member of other roles: it could step into their rights"
        )));
    }
    let (database, schema): (String, String) =
        sqlx::query_as("SELECT current_database(), current_schema()")
            .fetch_one(&mut *tx)
            .await?;
    let (database, schema) = (quote_identifier(&database)?, quote_identifier(&schema)?);
    for statement in [
        format!("GRANT USAGE ON SCHEMA {schema} TO {quoted}"),
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {quoted}"
        ),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {quoted}"),
        format!("REVOKE ALL ON _sqlx_migrations FROM {quoted}"),
        format!("GRANT CONNECT ON DATABASE {database} TO {quoted}"),
    ] {
        sqlx::raw_sql(&statement).execute(&mut *tx).await?;
    }
    let may_revoke: bool = sqlx::query_scalar(
        "SELECT pg_has_role(current_user, d.datdba, 'USAGE') FROM pg_database d \
         WHERE d.datname = current_database()",
    )
    .fetch_one(&mut *tx)
    .await?;
    let public = if may_revoke {
        sqlx::raw_sql(&format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC"
        ))
        .execute(&mut *tx)
        .await?;
        PublicAccess::Revoked
    } else {
        PublicAccess::LeftToTheOwner
    };
    tx.commit().await?;
    Ok(public)
}

/// A SCRAM-SHA-256 verifier, so that the password itself never reaches the server, nor its
/// statement log.
fn scram_verifier(password: &SecretString) -> String {
    postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes())
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// `"name"`, for DDL, which takes no bind parameters. A role named by the operator may hold
/// anything but a NUL; quotes are doubled.
fn quote_identifier(name: &str) -> Result<String, StorageError> {
    if name.is_empty() || name.len() > MAX_IDENTIFIER || name.contains('\0') {
        return Err(StorageError::AppRole(format!(
            "{name:?} cannot name a PostgreSQL role"
        )));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `'text'` for DDL: the verifier is base64 and `$`/`:` only, but quoted all the same.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use mailroom_crypto::master_key::MasterKey;
    use mailroom_testkit::TestDatabase;
    use time::OffsetDateTime;

    use super::*;

    /// An installation as `mailroom serve` opens one: migrated, unlocked, its app role made.
    async fn installed(test_db: &TestDatabase) -> Database {
        let mut db = Database::connect(test_db.url()).await.unwrap();
        db.migrate().await.unwrap();
        db.unlock(MasterKey::generate(), OffsetDateTime::now_utc())
            .await
            .unwrap();
        db
    }

    /// `url` with another login (trust authentication on the test cluster: the password is
    /// not what is tested, the role's rights are).
    fn as_role(url: &str, role: &str) -> String {
        let mut url = url::Url::parse(url).unwrap();
        url.set_username(role).unwrap();
        url.set_password(None).unwrap();
        url.to_string()
    }

    fn owner_of(url: &str) -> String {
        url::Url::parse(url).unwrap().username().to_owned()
    }

    #[tokio::test]
    async fn the_pool_cannot_step_out_of_its_role() {
        let Some(test_db) = TestDatabase::postgres_with_plain_owner().await else {
            return;
        };
        let db = installed(&test_db).await;
        let org = crate::test_support::org(&db).await;
        let job = crate::jobs::NewJob {
            id: uuid::Uuid::now_v7(),
            user_id: None,
            api_key_id: None,
            smtp: false,
            emails: vec!["someone@example.test".to_owned()],
        };
        let now = OffsetDateTime::now_utc();
        db.create_job(org, &job, now, now).await.unwrap();
        let role = db.app_role().unwrap().unwrap();
        let Pool::Postgres(pool) = &db.pool else {
            unreachable!("a PostgreSQL test");
        };
        let mut connection = pool.acquire().await.unwrap();
        sqlx::raw_sql("RESET ROLE")
            .execute(&mut *connection)
            .await
            .unwrap();
        let (current, session): (String, String) =
            sqlx::query_as("SELECT current_user::text, session_user::text")
                .fetch_one(&mut *connection)
                .await
                .unwrap();
        assert_eq!(
            (current.as_str(), session.as_str()),
            (role.as_str(), role.as_str())
        );
        let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM verify_jobs")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        assert_eq!(jobs, 0, "no tenant said, no tenant row seen");
        for other in [owner_of(test_db.url()), "postgres".to_owned()] {
            let stepped = sqlx::raw_sql(&format!("SET ROLE \"{other}\""))
                .execute(&mut *connection)
                .await;
            assert!(stepped.is_err(), "SET ROLE {other}");
        }
        // Nor is its owner a member of it, or of the shared role of older versions.
        let mut owner = PgConnection::connect(test_db.url()).await.unwrap();
        for granted in [role.as_str(), "mailroom_app"] {
            let member: Option<bool> = sqlx::query_scalar(
                "SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = $1",
            )
            .bind(granted)
            .fetch_optional(&mut owner)
            .await
            .unwrap();
            assert_ne!(member, Some(true), "the owner is a member of {granted}");
        }
    }

    #[tokio::test]
    async fn two_installations_on_one_cluster_cannot_reach_each_other() {
        let (Some(a), Some(b)) = (
            TestDatabase::postgres_with_plain_owner().await,
            TestDatabase::postgres_with_plain_owner().await,
        ) else {
            return;
        };
        let (db_a, db_b) = (installed(&a).await, installed(&b).await);
        let logins = |test_db: &TestDatabase, db: &Database| {
            [owner_of(test_db.url()), db.app_role().unwrap().unwrap()]
        };
        for (home, home_db, away) in [(&a, &db_a, &b), (&b, &db_b, &a)] {
            for role in logins(home, home_db) {
                PgConnection::connect(&as_role(home.url(), &role))
                    .await
                    .unwrap_or_else(|error| panic!("{role} at home: {error}"));
                let abroad = PgConnection::connect(&as_role(away.url(), &role)).await;
                let refused = abroad
                    .err()
                    .map(|error| error.to_string())
                    .unwrap_or_default();
                assert!(
                    refused.contains("permission denied"),
                    "{role} abroad: {refused:?}"
                );
            }
        }
        // The database's other roles are shut out too (PUBLIC lost CONNECT and TEMPORARY).
        let mut owner = PgConnection::connect(a.url()).await.unwrap();
        let public: bool = sqlx::query_scalar(
            "SELECT has_database_privilege('public', current_database(), 'CONNECT') \
             OR has_database_privilege('public', current_database(), 'TEMPORARY')",
        )
        .fetch_one(&mut owner)
        .await
        .unwrap();
        assert!(!public);
    }

    #[test]
    fn default_roles_are_distinct_valid_identifiers() {
        assert_eq!(AppLogin::default_role("mailroom"), "mailroom_app_mailroom");
        let long = "a".repeat(80);
        let cut = AppLogin::default_role(&long);
        assert!(cut.len() <= MAX_IDENTIFIER, "{cut}");
        assert_ne!(cut, AppLogin::default_role(&"a".repeat(81)));
        assert_ne!(
            AppLogin::default_role("Mail-Room"),
            AppLogin::default_role("mail_room")
        );
        assert!(
            AppLogin::default_role("Mail-Room")
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_identifier("a\"b").unwrap(), "\"a\"\"b\"");
        assert!(quote_identifier("").is_err());
        assert!(quote_identifier("a\0b").is_err());
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
