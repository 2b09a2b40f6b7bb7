//! The test harness: every test gets a database of its own, on SQLite and on PostgreSQL, and a
//! peer that cannot be had makes its test skip loudly — or fail, under
//! `MAILROOM_TEST_REQUIRE_ALL=1` (CI), so that no suite is skipped unnoticed.

pub mod dns;
mod google;
mod imap;
mod peer_process;
mod probe;
mod smtp;
mod socks;
mod template;
mod webhooks;

use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};
use tempfile::TempDir;

/// Where PostgreSQL is when `MAILROOM_TEST_POSTGRES_URL` does not say.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub use dns::{DnsServer, Rr};
pub use google::{GoogleContract, Misbehaviour, ProviderUser};
pub use imap::{IMAP_PASSWORD, IMAP_USER, ImapOptions, ImapServer};
pub use probe::{ProbePeer, ProbeStats};
pub use smtp::{Delivered, SmtpOptions, SmtpServer};
pub use socks::{SocksPeer, SocksStats};
pub use webhooks::{Received, WebhookReceiver};

/// The two databases mailroom runs on. The kit's own, so that it links no build of the storage
/// crate: storage's unit tests then build storage once, not twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The name the app gives the backend (in `/health`, say).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A database that exists for one test and is removed after it.
pub struct TestDatabase {
    backend: Backend,
    url: String,
    /// Holds the SQLite file's directory (and anything else the test keeps on disk).
    dir: TempDir,
    postgres: Option<PostgresDatabase>,
}

struct PostgresDatabase {
    admin_url: String,
    name: String,
    /// The database's owner, when it is a role of the test's own rather than the superuser.
    owner: Option<String>,
    /// A login role of the test's own for the app's pool (`app_url`), given the tables by
    /// the app's migrations like an operator's role would be.
    app_url: String,
}

impl TestDatabase {
    pub async fn sqlite() -> Self {
        let dir = tempdir();
        let url = format!("sqlite://{}/mailroom.db", dir.path().display());
        Self {
            backend: Backend::Sqlite,
            url,
            dir,
            postgres: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` when PostgreSQL cannot be reached (and
    /// `MAILROOM_TEST_REQUIRE_ALL` is not set).
    pub async fn postgres() -> Option<Self> {
        Self::postgres_owned(false).await
    }

    /// A fresh PostgreSQL database owned by a login role of its own that is no superuser but
    /// may create roles: an installation as a careful operator sets one up.
    pub async fn postgres_with_plain_owner() -> Option<Self> {
        Self::postgres_owned(true).await
    }

    async fn postgres_owned(plain_owner: bool) -> Option<Self> {
        let admin_url = std::env::var("MAILROOM_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let connect = PgConnection::connect(&admin_url);
        let mut admin = match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return peer_missing("PostgreSQL", &error.to_string()),
            Err(_) => return peer_missing("PostgreSQL", "connection timed out"),
        };
        let name = format!("mailroom_test_{}", uuid::Uuid::now_v7().simple());
        // `name` is generated above from hex digits: safe to splice into DDL, which cannot
        // take bind parameters.
        let owner = plain_owner.then(|| format!("{name}_owner"));
        let create = match &owner {
            // An owner of the test's own migrates from nothing, as a careful operator's would:
            // a copy of the template would leave its objects the superuser's.
            Some(owner) => {
                run_ddl(
                    &mut admin,
                    &format!("CREATE ROLE {owner} LOGIN CREATEROLE PASSWORD 'test'"),
                )
                .await;
                format!("CREATE DATABASE {name} OWNER {owner}")
            }
            None => {
                let template = template::migrated(&admin_url).await;
                format!("CREATE DATABASE {name} TEMPLATE {template}")
            }
        };
        run_ddl(&mut admin, &create).await;
        let app_role = format!("{name}_app");
        run_ddl(
            &mut admin,
            &format!("CREATE ROLE {app_role} LOGIN PASSWORD 'test'"),
        )
        .await;
        let _ = admin.close().await;
        let mut url = match url::Url::parse(&admin_url) {
            Ok(url) => url,
            Err(error) => panic!("MAILROOM_TEST_POSTGRES_URL is not a URL: {error}"),
        };
        url.set_path(&name);
        let mut app_url = url.clone();
        if let Some(owner) = &owner {
            let _ = url.set_username(owner);
            let _ = url.set_password(Some("test"));
        }
        let _ = app_url.set_username(&app_role);
        let _ = app_url.set_password(Some("test"));
        Some(Self {
            backend: Backend::Postgres,
            url: url.to_string(),
            dir: tempdir(),
            postgres: Some(PostgresDatabase {
                admin_url,
                name,
                owner,
                app_url: app_url.to_string(),
            }),
        })
    }

    pub async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite().await),
            Backend::Postgres => Self::postgres().await,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database's owner (a superuser here): what the app migrates with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// PostgreSQL: a login role of the test's own for the app's pool, as an operator would
    /// give with `--database-app-url`; the migrations give it the tables.
    pub fn app_url(&self) -> Option<&str> {
        self.postgres.as_ref().map(|pg| pg.app_url.as_str())
    }

    /// A scratch directory that lives as long as the database (a data dir, say).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Runs one statement directly against the database, behind the application's back (a
    /// test playing an attacker with database access).
    pub async fn execute(&self, sql: &str) {
        let result = match self.backend {
            Backend::Sqlite => match sqlx::SqliteConnection::connect(&self.url).await {
                Ok(mut connection) => connection.execute(sql).await.map(drop),
                Err(error) => Err(error),
            },
            Backend::Postgres => match PgConnection::connect(&self.url).await {
                Ok(mut connection) => connection.execute(sql).await.map(drop),
                Err(error) => Err(error),
            },
        };
        if let Err(error) = result {
            panic!("{sql}: {error}");
        }
    }

    /// The single number `sql` returns (a `COUNT(*)`, say).
    pub async fn count(&self, sql: &str) -> i64 {
        let result = match self.backend {
            Backend::Sqlite => match sqlx::SqliteConnection::connect(&self.url).await {
                Ok(mut connection) => sqlx::query_scalar(sql).fetch_one(&mut connection).await,
                Err(error) => Err(error),
            },
            Backend::Postgres => match PgConnection::connect(&self.url).await {
                Ok(mut connection) => sqlx::query_scalar(sql).fetch_one(&mut connection).await,
                Err(error) => Err(error),
            },
        };
        result.unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// The first column of every row `sql` returns, as bytes (a test reading what is
    /// really stored).
    pub async fn fetch_bytes(&self, sql: &str) -> Vec<Vec<u8>> {
        let result = match self.backend {
            Backend::Sqlite => match sqlx::SqliteConnection::connect(&self.url).await {
                Ok(mut connection) => sqlx::query_scalar(sql).fetch_all(&mut connection).await,
                Err(error) => Err(error),
            },
            Backend::Postgres => match PgConnection::connect(&self.url).await {
                Ok(mut connection) => sqlx::query_scalar(sql).fetch_all(&mut connection).await,
                Err(error) => Err(error),
            },
        };
        result.unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// Every `table.column` of the whole database holding `text` (case-insensitive) or the
    /// UUID `id` in any form (text, or the bytes of a BLOB/BYTEA): the test of "no row
    /// still references the user" (docs/security.md#account-deletion), over tables nobody had to list.
    pub async fn columns_mentioning(&self, text: &str, id: uuid::Uuid) -> Vec<String> {
        let hex = id.simple().to_string();
        let hyphenated = id.hyphenated().to_string();
        let text = text.to_lowercase();
        let mut found = Vec::new();
        match self.backend {
            Backend::Sqlite => {
                let mut connection = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                )
                .fetch_all(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
                for table in tables {
                    let columns: Vec<String> = sqlx::query_scalar(&format!(
                        "SELECT name FROM pragma_table_info('{table}')"
                    ))
                    .fetch_all(&mut connection)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                    for column in columns {
                        let sql = format!(
                            "SELECT COUNT(*) FROM \"{table}\" WHERE instr(lower(CAST(\"{column}\" AS TEXT)), $1) > 0 \
                             OR instr(lower(hex(\"{column}\")), $2) > 0 OR instr(lower(CAST(\"{column}\" AS TEXT)), $3) > 0"
                        );
                        let count: i64 = sqlx::query_scalar(&sql)
                            .bind(&text)
                            .bind(&hex)
                            .bind(&hyphenated)
                            .fetch_one(&mut connection)
                            .await
                            .unwrap_or_else(|e| panic!("{sql}: {e}"));
                        if count > 0 {
                            found.push(format!("{table}.{column}"));
                        }
                    }
                }
            }
            Backend::Postgres => {
                let mut connection = PgConnection::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let columns: Vec<(String, String)> = sqlx::query_as(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
                )
                .fetch_all(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
                for (table, column) in columns {
                    let sql = format!(
                        "SELECT COUNT(*) FROM \"{table}\" WHERE strpos(lower(\"{column}\"::text), $1) > 0 \
                         OR strpos(lower(\"{column}\"::text), $2) > 0 OR strpos(lower(\"{column}\"::text), $3) > 0"
                    );
                    let count: i64 = sqlx::query_scalar(&sql)
                        .bind(&text)
                        .bind(&hex)
                        .bind(&hyphenated)
                        .fetch_one(&mut connection)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                    if count > 0 {
                        found.push(format!("{table}.{column}"));
                    }
                }
            }
        }
        found
    }

    /// Makes the PostgreSQL database refuse connections and drops the open ones, as if its
    /// server had gone away. SQLite is in-process and cannot become unreachable.
    pub async fn make_unreachable(&self) {
        let Some(pg) = &self.postgres else {
            panic!("only a PostgreSQL database can be made unreachable");
        };
        let mut admin = PgConnection::connect(&pg.admin_url)
            .await
            .unwrap_or_else(|e| panic!("admin connection: {e}"));
        let name = &pg.name;
        for statement in [
            format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ),
        ] {
            if let Err(error) = admin.execute(statement.as_str()).await {
                panic!("{statement}: {error}");
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(pg) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on itself: a thread with a
        // runtime of its own removes the database.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&pg.admin_url).await {
                    let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", pg.name);
                    let _ = admin.execute(statement.as_str()).await;
                    // Roles are the cluster's: the test's, and the one the app made, which it
                    // marks with the database's name.
                    let made_by_the_app: Vec<String> = sqlx::query_scalar(
                        "SELECT rolname::text FROM pg_roles \
                         WHERE shobj_description(oid, 'pg_authid') = $1",
                    )
                    .bind(format!("mailroom: the app role of database {}", pg.name))
                    .fetch_all(&mut admin)
                    .await
                    .unwrap_or_default();
                    let roles = [Some(format!("{}_app", pg.name)), pg.owner]
                        .into_iter()
                        .flatten()
                        .chain(made_by_the_app);
                    for role in roles {
                        let statement = format!("DROP ROLE IF EXISTS \"{role}\"");
                        let _ = admin.execute(statement.as_str()).await;
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

pub(crate) async fn run_ddl(admin: &mut PgConnection, statement: &str) {
    if let Err(error) = admin.execute(statement).await {
        panic!("{statement}: {error}");
    }
}

/// Whether every peer must be present (CI): a missing one is then a failure, not a skip.
pub fn require_all() -> bool {
    std::env::var("MAILROOM_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Reports a peer the test needs but cannot have: a loud skip, or a failure under
/// `MAILROOM_TEST_REQUIRE_ALL=1`. The test harness captures a passing test's output, so the
/// skip is also appended to the file named by `MAILROOM_TEST_SKIP_LOG`, which
/// `./scripts/test` prints at the end of the run.
pub fn peer_missing<T>(peer: &str, why: &str) -> Option<T> {
    if require_all() {
        panic!("{peer} is required (MAILROOM_TEST_REQUIRE_ALL=1) but unavailable: {why}");
    }
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    let line = format!("SKIPPED {test}: {peer} unavailable ({why})");
    eprintln!("{line}; run ./scripts/test to provide it");
    if let Ok(path) = std::env::var("MAILROOM_TEST_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(log, "{line}");
        }
    }
    None
}

/// A Redis for tests that share rate limits (`MAILROOM_TEST_REDIS_URL`, default the local
/// one), with a key prefix of the test's own so that tests never count each other's
/// requests; or a loud skip.
pub fn test_redis() -> Option<(String, String)> {
    let url = std::env::var("MAILROOM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let address = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_owned();
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&address)
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_ok()
        });
    if !reachable {
        return peer_missing("Redis", &format!("nothing answers at {address}"));
    }
    Some((url, format!("mailroom-test:{}:", uuid::Uuid::now_v7())))
}

fn tempdir() -> TempDir {
    match tempfile::Builder::new().prefix("mailroom-test-").tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("creating a temporary directory: {error}"),
    }
}

/// Declares each test twice, as `name::sqlite` and `name::postgres`, each with a fresh
/// [`TestDatabase`] bound to the given name.
#[macro_export]
macro_rules! both_backends {
    ($(async fn $name:ident($db:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $db = $crate::TestDatabase::sqlite().await;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some($db) = $crate::TestDatabase::postgres().await else {
                    return;
                };
                $body
            }
        }
    )*};
}

/// A self-signed certificate for `localhost` and its key, written as PEM files into `dir`:
/// a private CA of one, for the TLS peers of the tests. Returns their paths.
pub fn localhost_certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let certified = match rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]) {
        Ok(certified) => certified,
        Err(error) => panic!("making a certificate: {error}"),
    };
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    for (path, pem) in [
        (&cert, certified.cert.pem()),
        (&key, certified.key_pair.serialize_pem()),
    ] {
        if let Err(error) = std::fs::write(path, pem) {
            panic!("writing {}: {error}", path.display());
        }
    }
    (cert, key)
}
