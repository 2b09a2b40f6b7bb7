//! A PostgreSQL database migrated once, that each test's database is copied from
//! (`CREATE DATABASE … TEMPLATE`): a copy takes a fraction of running every migration again.
//!
//! Its name carries a digest of the migrations, so a changed migration makes a new template and
//! a run never copies a stale schema. Runs of the suite share it across processes: an advisory
//! lock lets one of them build it, under a name of its own until complete. Roles are the
//! cluster's, not the database's, so the copies' row policies bind the test's roles as they
//! would after a fresh migration; database-level grants are not copied, and the app gives them
//! at start as it does on a fresh database.

use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection};

use crate::run_ddl as ddl;
use tokio::sync::OnceCell;

/// The app's PostgreSQL migrations, read at build time from the storage crate's tree.
static MIGRATIONS: Migrator = sqlx::migrate!("../storage/migrations/postgres");

/// Serializes the building of templates between processes (any fixed number serves).
const BUILD_LOCK: i64 = 0x6d61_696c_726f_6f6d;

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// The name of the migrated template, built by the first caller of the run that needs it.
pub(crate) async fn migrated(admin_url: &str) -> &'static str {
    TEMPLATE
        .get_or_init(|| async { build(admin_url).await })
        .await
        .as_str()
}

async fn build(admin_url: &str) -> String {
    let name = format!("mailroom_template_{:016x}", digest());
    let mut admin = connect(admin_url).await;
    ddl(
        &mut admin,
        &format!("SELECT pg_advisory_lock({BUILD_LOCK})"),
    )
    .await;
    let ready: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .unwrap_or_else(|error| panic!("looking for {name}: {error}"));
    if !ready {
        // Built under another name and renamed once whole: a run killed halfway leaves
        // nothing that looks finished.
        let building = format!("{name}_building");
        ddl(&mut admin, &format!("DROP DATABASE IF EXISTS {building}")).await;
        ddl(&mut admin, &format!("CREATE DATABASE {building}")).await;
        let mut url = url::Url::parse(admin_url)
            .unwrap_or_else(|error| panic!("MAILROOM_TEST_POSTGRES_URL is not a URL: {error}"));
        url.set_path(&building);
        let mut connection = connect(url.as_str()).await;
        MIGRATIONS
            .run(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("migrating the template: {error}"));
        let _ = connection.close().await;
        ddl(
            &mut admin,
            &format!("ALTER DATABASE {building} RENAME TO {name}"),
        )
        .await;
        ddl(
            &mut admin,
            &format!("ALTER DATABASE {name} IS_TEMPLATE true"),
        )
        .await;
    }
    ddl(
        &mut admin,
        &format!("SELECT pg_advisory_unlock({BUILD_LOCK})"),
    )
    .await;
    let _ = admin.close().await;
    name
}

/// FNV-1a over every migration's version and checksum: stable across builds and processes.
fn digest() -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for migration in MIGRATIONS.iter() {
        let version = migration.version.to_le_bytes();
        for byte in version.iter().chain(migration.checksum.iter()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|error| panic!("connecting to PostgreSQL for the template: {error}"))
}
