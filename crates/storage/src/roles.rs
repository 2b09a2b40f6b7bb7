//! PostgreSQL's roles for one installation (docs/security.md#tenant-scoping). The app's pool logs in as a role of this
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

/// Before migrating: whether the owner can make the provisioned role. Checked first, so that
/// an owner that cannot does not migrate the database away from an older version's role and
/// then fail to start.
pub(crate) async fn preflight(owner: &mut PgConnection) -> Result<(), StorageError> {
    let may: bool = sqlx::query_scalar(
        "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut *owner)
    .await?;
    if may {
        Ok(())
    } else {
        Err(StorageError::AppRole(
            "the database user cannot create roles: give it CREATEROLE, or make a login role \
             for the app and pass its URL as --database-app-url (README, PostgreSQL)"
                .to_owned(),
        ))
    }
}

/// Makes (or, with `password`, makes or re-keys) the app role and gives it what the app
/// needs: the tables but the migrator's, the sequences, the schema, and `CONNECT` on this
/// database — which `PUBLIC` loses where the migrating user may take it away. Refuses a role
/// that could step out of the row policies, and, to re-key, a role made for another database.
/// Several nodes may run it at once.
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
    let (database, schema, owner_name): (String, String, String) =
        sqlx::query_as("SELECT current_database(), current_schema(), current_user::text")
            .fetch_one(&mut *tx)
            .await?;
    if role == owner_name {
        return Err(StorageError::AppRole(format!(
            "{role} is the database user that migrates: the app needs a role of its own"
        )));
    }
    let mark = format!("mailroom: the app role of database {database}");
    let found: Option<Option<String>> = sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(&mut *tx)
    .await?;
    let verifier = password.map(|password| quote_literal(&scram_verifier(password)));
    match (found, verifier) {
        (None, None) => {
            return Err(StorageError::AppRole(format!(
                "the role {role} does not exist"
            )));
        }
        (None, Some(verifier)) => {
            for statement in [
                format!(
                    "CREATE ROLE {quoted} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT \
                     NOREPLICATION NOBYPASSRLS PASSWORD {verifier}"
                ),
                format!("COMMENT ON ROLE {quoted} IS {}", quote_literal(&mark)),
            ] {
                sqlx::raw_sql(&statement).execute(&mut *tx).await?;
            }
        }
        (Some(comment), Some(verifier)) => {
            // A role of that name made by someone else (another installation whose database
            // name comes out the same) is not taken over.
            if comment.as_deref() != Some(mark.as_str()) {
                return Err(StorageError::AppRole(format!(
                    "the role {role} exists but was not made for this database: name another \
                     with --database-app-role"
                )));
            }
            sqlx::raw_sql(&format!("ALTER ROLE {quoted} LOGIN PASSWORD {verifier}"))
                .execute(&mut *tx)
                .await?;
        }
        (Some(_), None) => {}
    }
    refuse_unsafe_role(&mut tx, role).await?;
    let (database, schema) = (quote_identifier(&database)?, quote_identifier(&schema)?);
    for statement in [
        format!("GRANT USAGE ON SCHEMA {schema} TO {quoted}"),
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {quoted}"
        ),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {quoted}"),
        format!("REVOKE ALL ON _sqlx_migrations FROM {quoted}"),
        // The platform's records are written by their triggers, as the owner; who administers
        // the platform is not the app's to change.
        format!("REVOKE INSERT, UPDATE, DELETE ON platform_admins, installation FROM {quoted}"),
        format!("REVOKE UPDATE ON users FROM {quoted}"),
        format!(
            "GRANT UPDATE (password_hash, disabled_at, display_name, picture_url) ON users TO {quoted}"
        ),
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
    // A GRANT without the right to give it does nothing but warn.
    let connects: bool =
        sqlx::query_scalar("SELECT has_database_privilege($1, current_database(), 'CONNECT')")
            .bind(role)
            .fetch_one(&mut *tx)
            .await?;
    if !connects {
        return Err(StorageError::AppRole(format!(
            "{role} may not connect to this database: its owner should GRANT CONNECT ON \
             DATABASE {database} TO {quoted}"
        )));
    }
    tx.commit().await?;
    Ok(public)
}

/// Refuses a role the row policies would not bind, or that could reach further: a superuser,
/// `BYPASSRLS`, `CREATEROLE` or `REPLICATION`; an owner of anything (owners may turn
/// policies off); a member of any role; or one whose member the migrating user is.
async fn refuse_unsafe_role(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    role: &str,
) -> Result<(), StorageError> {
    let (privileged, owns, memberships): (bool, bool, bool) = sqlx::query_as(
        "SELECT r.rolsuper OR r.rolbypassrls OR r.rolcreaterole OR r.rolreplication, \
         EXISTS (SELECT 1 FROM pg_class WHERE relowner = r.oid) \
           OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspowner = r.oid) \
           OR EXISTS (SELECT 1 FROM pg_proc WHERE proowner = r.oid) \
           OR EXISTS (SELECT 1 FROM pg_database WHERE datdba = r.oid), \
         EXISTS (SELECT 1 FROM pg_auth_members WHERE member = r.oid) \
         FROM pg_roles r WHERE r.rolname = $1",
    )
    .bind(role)
    .fetch_one(&mut **tx)
    .await?;
    if privileged || owns || memberships {
        return Err(StorageError::AppRole(format!(
            "the role {role} is privileged, owns objects or is a member of other roles: the \
             row policies would not bind it"
        )));
    }
    if owner_is_member(tx, role).await? {
        let quoted = quote_identifier(role)?;
        sqlx::raw_sql(&format!("REVOKE {quoted} FROM CURRENT_USER"))
            .execute(&mut **tx)
            .await?;
        // PostgreSQL 16 records some such grants as the bootstrap superuser's, and a REVOKE
        // by anyone else matches nothing.
        if owner_is_member(tx, role).await? {
            return Err(StorageError::AppRole(format!(
                "the migrating user is a member of {role}: a superuser should REVOKE {quoted} \
                 FROM it"
            )));
        }
    }
    Ok(())
}

async fn owner_is_member(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    role: &str,
) -> Result<bool, StorageError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid \
         WHERE r.rolname = $1 AND a.member = (SELECT oid FROM pg_roles WHERE rolname = current_user))",
    )
    .bind(role)
    .fetch_one(&mut **tx)
    .await?)
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
        let db = crate::test_support::installed(&test_db).await;
        let org = crate::test_support::org(&db).await;
        crate::test_support::one_job(&db, org, OffsetDateTime::now_utc()).await;
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

    /// What could step out of the policies is refused: the owner as the app role, a role of
    /// that name made for something else, and an owner that cannot make roles is stopped
    /// before it migrates anything.
    #[tokio::test]
    async fn unsafe_app_roles_are_refused() {
        let Some(test_db) = TestDatabase::postgres_with_plain_owner().await else {
            return;
        };
        let owner = owner_of(test_db.url());
        let unlock = async |app: AppLogin| {
            let mut db = Database::connect(test_db.url())
                .await
                .unwrap()
                .with_app_login(app)
                .unwrap();
            db.migrate().await?;
            // One installation, one master key, whatever its app role.
            let master = MasterKey::from_hex(&"01".repeat(32), "test").unwrap();
            db.unlock(master, OffsetDateTime::now_utc()).await.map(drop)
        };
        let as_owner = unlock(AppLogin::Provisioned {
            role: owner.clone(),
        })
        .await;
        assert!(
            matches!(as_owner, Err(StorageError::AppRole(_))),
            "{as_owner:?}"
        );
        let owner_url = AppLogin::Url(test_db.url().to_owned().into());
        let by_url = unlock(owner_url).await;
        assert!(
            matches!(by_url, Err(StorageError::AppRole(_))),
            "{by_url:?}"
        );

        let mut admin = PgConnection::connect(&as_role(test_db.url(), "postgres"))
            .await
            .unwrap();
        let stranger = format!("{owner}_stranger");
        sqlx::raw_sql(&format!("CREATE ROLE {stranger} LOGIN"))
            .execute(&mut admin)
            .await
            .unwrap();
        let taken = unlock(AppLogin::Provisioned {
            role: stranger.clone(),
        })
        .await;
        sqlx::raw_sql(&format!("DROP ROLE {stranger}"))
            .execute(&mut admin)
            .await
            .unwrap();
        assert!(matches!(taken, Err(StorageError::AppRole(_))), "{taken:?}");

        let Some(fresh) = TestDatabase::postgres_with_plain_owner().await else {
            return;
        };
        let fresh_owner = owner_of(fresh.url());
        sqlx::raw_sql(&format!("ALTER ROLE {fresh_owner} NOCREATEROLE"))
            .execute(&mut admin)
            .await
            .unwrap();
        let db = Database::connect(fresh.url()).await.unwrap();
        assert!(matches!(db.migrate().await, Err(StorageError::AppRole(_))));
        let mut fresh_owner = PgConnection::connect(fresh.url()).await.unwrap();
        let migrated: bool = sqlx::query_scalar("SELECT to_regclass('users') IS NOT NULL")
            .fetch_one(&mut fresh_owner)
            .await
            .unwrap();
        assert!(
            !migrated,
            "nothing migrated by an owner that could not finish the job"
        );
    }

    #[tokio::test]
    async fn two_installations_on_one_cluster_cannot_reach_each_other() {
        let (Some(a), Some(b)) = (
            TestDatabase::postgres_with_plain_owner().await,
            TestDatabase::postgres_with_plain_owner().await,
        ) else {
            return;
        };
        let (db_a, db_b) = (
            crate::test_support::installed(&a).await,
            crate::test_support::installed(&b).await,
        );
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
