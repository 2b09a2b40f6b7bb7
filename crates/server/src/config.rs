//! The resolved configuration of a mailroom server. Where the values come from (flags,
//! `MAILROOM_*` variables, `mailroom.toml`) is the binary's business; this is what they mean.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;
pub use mailroom_core::TrustedProxies;
use mailroom_crypto::master_key::{MasterKey, MasterKeyError};
use mailroom_crypto::root_key::RootKey;
use mailroom_mail::{SmtpSettings, SystemMail};
use mailroom_storage::Database;
use mailroom_storage::roles::AppLogin;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use url::Url;

/// The variable that may hold the master key itself (hex), in place of a key file.
pub const MASTER_KEY_ENV: &str = "MAILROOM_MASTER_KEY";

/// Request bodies larger than this are refused with 413 (docs/security.md#request-limits).
pub const BODY_LIMIT_BYTES: usize = 256 * 1024;
/// A request not answered within this is cut off with 408: a slow client (or a stuck
/// handler) cannot hold a connection and its resources forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A client must finish sending request headers within this (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: the SQLite database `mailroom.db` in the data directory. On PostgreSQL, the
    /// owner's: it migrates, and makes the app role unless `database_app_url` names one.
    pub database_url: Option<String>,
    /// PostgreSQL: the app role of this installation, when the owner may not make one (or
    /// the operator prefers their own). Secret: it holds the role's password.
    pub database_app_url: Option<SecretString>,
    /// PostgreSQL: the name of the role the owner makes for the app [default:
    /// `mailroom_app_<database>`].
    pub database_app_role: Option<String>,
    /// The origin users reach mailroom at (links in mail, CSRF origin checks). `None`: derived
    /// from the address the server bound.
    pub public_url: Option<Url>,
    pub trusted_proxies: TrustedProxies,
    /// Clients allowed to read `/metrics`; everyone else gets 404.
    pub metrics_allow: Vec<IpNet>,
    pub tls: Option<TlsFiles>,
    /// The value of `X-XSS-Protection` on every response.
    pub x_xss_protection: String,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// The relay for mailroom's own mail; `None`: `.eml` files in `<data-dir>/outbox/`.
    pub smtp: Option<SmtpSettings>,
    /// The sender of mailroom's own mail.
    pub mail_from: String,
    /// Sign-up, sign-in, code and reset requests allowed per client IP, and per account, per
    /// 15 minutes.
    pub auth_rate_limit: NonZeroU32,
    /// Where the master key is read from [default: `<data-dir>/master.key`].
    pub master_key_file: Option<PathBuf>,
    /// The master key itself, from [`MASTER_KEY_ENV`]; beats the file.
    pub master_key: Option<SecretString>,
    /// Rate limits shared by every node through Redis; without it, each process counts alone.
    /// Secret: the URL may hold Redis's password.
    pub redis_url: Option<SecretString>,
    /// The start of every key mailroom writes to Redis.
    pub redis_key_prefix: String,
    /// What limited requests get while Redis cannot be reached.
    pub redis_failure: crate::rate_limit::FailureMode,
    /// A CA certificate (PEM) trusted for connected mail accounts' servers, besides the public
    /// roots.
    pub mail_accounts_ca_file: Option<PathBuf>,
    /// How the verification engine reaches DNS and mail hosts.
    pub verify: mailroom_verify::Settings,
    /// The work queue's runners: production's defaults (tests take smaller chunks and leases).
    pub jobs: crate::work_queue::Settings,
    /// Where webhook endpoints may be.
    pub webhooks: crate::webhook_sender::WebhookSettings,
    /// OpenID providers users may sign in with (`[oidc.<name>]`); `google` also connects
    /// Gmail accounts.
    pub oidc: Vec<OidcProvider>,
}

/// One `[oidc.<name>]` section, resolved.
#[derive(Clone, Debug)]
pub struct OidcProvider {
    /// The section's name: in paths (`/v1/auth/oidc/<name>/start`) and in the audit log.
    pub name: String,
    /// What the sign-in button says: "Continue with <display_name>".
    pub display_name: String,
    /// Endpoints come from the issuer's discovery document.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Asked for besides `openid`.
    pub scopes: Vec<String>,
    /// The Gmail API's base URL (`[oidc.google]` only).
    pub gmail_api_url: Url,
}

impl OidcProvider {
    /// The name of the provider that connects Gmail accounts, as well as signing in.
    pub const GOOGLE: &str = "google";
    /// Google's issuer: the `google` preset's default, and the one Google URL written here.
    pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
    pub const GMAIL_API_URL: &str = "https://gmail.googleapis.com";

    /// A provider named `name`; `google` is a preset whose issuer, name and scopes are
    /// Google's unless given.
    pub fn new(
        name: &str,
        issuer: Option<String>,
        client_id: String,
        client_secret: SecretString,
    ) -> anyhow::Result<Self> {
        let valid_name = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            bail!("[oidc.{name}]: a provider's name is 1 to 32 of a-z, 0-9 and -");
        }
        let google = name == Self::GOOGLE;
        let issuer = match issuer {
            Some(issuer) => issuer,
            None if google => Self::GOOGLE_ISSUER.to_owned(),
            None => bail!("[oidc.{name}]: `issuer` is required"),
        };
        let parsed = Url::parse(&issuer).with_context(|| format!("[oidc.{name}] issuer"))?;
        if !mailroom_oauth::allowed_url(&parsed) {
            bail!("[oidc.{name}] issuer must be https:// (http:// only on loopback)");
        }
        let mut display_name = name.to_owned();
        if let Some(first) = display_name.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        Ok(Self {
            name: name.to_owned(),
            display_name,
            issuer,
            client_id,
            client_secret,
            scopes: vec!["email".to_owned(), "profile".to_owned()],
            gmail_api_url: Url::parse(Self::GMAIL_API_URL)?,
        })
    }
}

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Config {
    /// The defaults of a single node: everything under `./data`, listening on loopback.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            data_dir: data_dir.into(),
            database_url: None,
            database_app_url: None,
            database_app_role: None,
            public_url: None,
            trusted_proxies: TrustedProxies::default(),
            metrics_allow: vec![loopback_v4(), loopback_v6()],
            tls: None,
            x_xss_protection: "0".to_owned(),
            shutdown_timeout: Duration::from_secs(30),
            smtp: None,
            mail_from: "mailroom <noreply@localhost>".to_owned(),
            auth_rate_limit: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            master_key_file: None,
            master_key: None,
            redis_url: None,
            redis_key_prefix: "mailroom:".to_owned(),
            redis_failure: crate::rate_limit::FailureMode::Closed,
            mail_accounts_ca_file: None,
            verify: mailroom_verify::Settings::default(),
            jobs: crate::work_queue::Settings::default(),
            webhooks: crate::webhook_sender::WebhookSettings::default(),
            oidc: Vec::new(),
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| sqlite_url(&self.data_dir.join("mailroom.db")))
    }

    /// Creates the data directory (owner-only: it will hold keys), connects to the database,
    /// applies pending migrations and unlocks the keyring with the master key (on PostgreSQL,
    /// provisioning the app role); returns the root key that the server's MAC and signing
    /// keys derive from. Only an installation that never started gets a new master key.
    pub async fn open_database(&self) -> anyhow::Result<(Database, RootKey)> {
        let (mut database, started_before) = self.migrated_database().await?;
        let master = self.master_key(started_before)?;
        let root = self.unlock(&mut database, master).await?;
        Ok((database, root))
    }

    /// `mailroom migrate`: the migrations, and on an installation that has started before,
    /// the app role (which needs its master key). A new installation's keyring, master key
    /// and app role are made by its first `serve`, where the key is meant to live — never by
    /// a migration job.
    /// Whether the installation had started before.
    pub async fn migrate_database(&self) -> anyhow::Result<bool> {
        let (mut database, started_before) = self.migrated_database().await?;
        let outcome = match started_before {
            true => self.unlock_existing(&mut database).await,
            false => Ok(()),
        };
        database.close().await;
        outcome.map(|()| started_before)
    }

    /// Unlocks an installation that has a master key (never makes one).
    async fn unlock_existing(&self, database: &mut Database) -> anyhow::Result<()> {
        let master = self.master_key(true)?;
        self.unlock(database, master).await.map(drop)
    }

    async fn unlock(&self, database: &mut Database, master: MasterKey) -> anyhow::Result<RootKey> {
        database
            .unlock(master, OffsetDateTime::now_utc())
            .await
            .with_context(|| {
                format!(
                    "unlocking the keyring with {}{}",
                    self.master_key_origin(),
                    self.interrupted_rotation_hint()
                )
            })
    }

    async fn migrated_database(&self) -> anyhow::Result<(Database, bool)> {
        create_private_dir(&self.data_dir)?;
        let url = self.database_url();
        let shown = mailroom_storage::redacted_url(&url);
        let mut database = Database::connect(&url)
            .await
            .with_context(|| format!("opening the database {shown}"))?;
        if let Some(app) = self.app_login() {
            database = database.with_app_login(app).context("--database-app-url")?;
        }
        // Asked before migrating: a table the migrations make holds nothing yet.
        let started_before = database
            .started_before()
            .await
            .with_context(|| format!("reading the database {shown}"))?;
        database
            .migrate()
            .await
            .with_context(|| format!("migrating the database {shown}"))?;
        Ok((database, started_before))
    }

    /// How the app's PostgreSQL pool logs in, when not as the role made by default.
    fn app_login(&self) -> Option<AppLogin> {
        match (&self.database_app_url, &self.database_app_role) {
            (Some(url), _) => Some(AppLogin::Url(url.clone())),
            (None, Some(role)) => Some(AppLogin::Provisioned { role: role.clone() }),
            (None, None) => None,
        }
    }

    /// Where `mailroom keys rotate-master` puts the new key until the database has moved.
    pub fn new_master_key_path(&self) -> PathBuf {
        self.master_key_path().with_extension("key.new")
    }

    fn interrupted_rotation_hint(&self) -> String {
        let new = self.new_master_key_path();
        if new.exists() {
            format!(
                " ({} exists: a `mailroom keys rotate-master` was interrupted, and if it got as \
                 far as the database, that file holds the key now)",
                new.display()
            )
        } else {
            String::new()
        }
    }

    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    fn master_key_origin(&self) -> String {
        match &self.master_key {
            Some(_) => MASTER_KEY_ENV.to_owned(),
            None => self.master_key_path().display().to_string(),
        }
    }

    /// The master key from the environment or the key file. Only an installation that has
    /// never started gets a new one (docs/security.md#data-key-rotation): for existing data a missing key is an error.
    pub fn master_key(&self, started_before: bool) -> anyhow::Result<MasterKey> {
        if let Some(hex) = &self.master_key {
            return Ok(MasterKey::from_hex(hex.expose_secret(), MASTER_KEY_ENV)?);
        }
        let path = self.master_key_path();
        match MasterKey::read(&path) {
            Err(MasterKeyError::Missing { .. }) if !started_before => {
                let key = MasterKey::generate();
                key.write_new(&path)?;
                tracing::warn!(
                    path = %path.display(),
                    "generated a new master key: back it up now; without it the encrypted \
                     data in this database cannot be read"
                );
                Ok(key)
            }
            Err(MasterKeyError::Missing { .. }) => bail!(
                "the master key {} is missing, but this database was set up with one: \
                 restore the key file from your backup, or give it with --master-key-file or \
                 {MASTER_KEY_ENV}. mailroom never makes a new key for existing data.{}",
                path.display(),
                self.interrupted_rotation_hint()
            ),
            other => Ok(other?),
        }
    }

    pub fn system_mail(&self) -> anyhow::Result<SystemMail> {
        let from = mailroom_mail::parse_mailbox(&self.mail_from).context("--system-mail-from")?;
        Ok(match &self.smtp {
            Some(settings) => SystemMail::smtp(settings, from)?,
            None => {
                let outbox = self.data_dir.join("outbox");
                tracing::info!(
                    outbox = %outbox.display(),
                    "no SMTP relay configured (--system-mail-smtp-url): system mail is written to the outbox"
                );
                SystemMail::outbox(&outbox, from)?
            }
        })
    }

    /// Checks what can be checked before binding: a public URL must be a bare origin.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.public_url {
            validate_public_url(url)?;
        }
        let backend =
            mailroom_storage::Backend::of_url(&self.database_url()).context("--database-url")?;
        if let Some(app) = &self.database_app_url {
            let app_backend = mailroom_storage::Backend::of_url(app.expose_secret())
                .context("--database-app-url")?;
            if (backend, app_backend)
                != (
                    mailroom_storage::Backend::Postgres,
                    mailroom_storage::Backend::Postgres,
                )
            {
                bail!("--database-app-url is for PostgreSQL, beside a postgres:// --database-url");
            }
        }
        Ok(())
    }
}

fn validate_public_url(url: &Url) -> anyhow::Result<()> {
    if !matches!(url.scheme(), "http" | "https") {
        bail!(
            "--http-public-url must be http:// or https://, not {}://",
            url.scheme()
        );
    }
    if url.host().is_none() {
        bail!("--http-public-url must name a host");
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        bail!(
            "--http-public-url must be an origin such as https://mail.example.com, without a path"
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("--http-public-url must not carry credentials");
    }
    Ok(())
}

/// The URL of a SQLite file. sqlx percent-decodes the path and ends it at `?`, so those
/// characters are escaped.
fn sqlite_url(path: &Path) -> String {
    let path = path
        .display()
        .to_string()
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    format!("sqlite://{path}")
}

fn loopback_v4() -> IpNet {
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8)
}

fn loopback_v6() -> IpNet {
    IpNet::new_assert(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 128)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_database_is_sqlite_in_the_data_dir() {
        let config = Config::new("./data");
        assert_eq!(config.database_url(), "sqlite://./data/mailroom.db");
        config.validate().unwrap();
    }

    #[test]
    fn data_dirs_with_url_characters_stay_one_path() {
        let config = Config::new("/srv/a?b#c%d");
        assert_eq!(
            config.database_url(),
            "sqlite:///srv/a%3Fb%23c%25d/mailroom.db"
        );
    }

    #[test]
    fn public_url_must_be_an_origin() {
        let mut config = Config::new("./data");
        for bad in [
            "ftp://example.com",
            "https://example.com/app",
            "https://example.com/?x=1",
            "https://user:pw@example.com",
        ] {
            config.public_url = Some(bad.parse().unwrap());
            assert!(config.validate().is_err(), "{bad} accepted");
        }
        config.public_url = Some("https://mail.example.com:8443".parse().unwrap());
        config.validate().unwrap();
    }

    #[test]
    fn foreign_database_schemes_are_refused_up_front() {
        let mut config = Config::new("./data");
        config.database_url = Some("mysql://db/mailroom".into());
        assert!(config.validate().is_err());
    }
}
