//! Where configuration comes from: command-line flags, then `MAILROOM_*`
//! environment variables, then the TOML file (`--config`, or `./mailroom.toml` when present),
//! then the defaults of [`Config::new`]. Unknown keys in the file and unknown `MAILROOM_*`
//! variables are errors that name the key, so a typo never silently falls back to a default.
//!
//! Settings come in sections ([`SECTIONS`]), and the three spellings of one setting read the
//! same way: `[verify] probe_port` in the file is `--verify-probe-port` and
//! `MAILROOM_VERIFY_PROBE_PORT`. A few that belong to no section (`data_dir`,
//! `master_key_file`) sit at the file's top.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory};
use ipnet::IpNet;
use mailroom_mail::SmtpSettings;
use mailroom_server::Config;
use mailroom_server::config::{MASTER_KEY_ENV, TlsFiles, TrustedProxies};
use mailroom_server::telemetry::LogFormat;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The file read when `--config` is not given, if it exists.
const DEFAULT_CONFIG_FILE: &str = "mailroom.toml";
/// Variables with this prefix belong to the test harness, not to the server.
const TEST_ENV_PREFIX: &str = "MAILROOM_TEST_";

/// The file's sections, in the order the README lists them. A setting's flag is its section and
/// key joined by `-` (`system_mail` is `--system-mail-…`).
const SECTIONS: [&str; 9] = [
    "http",
    "database",
    "redis",
    "system_mail",
    "mail_accounts",
    "webhooks",
    "verify",
    "jobs",
    "log",
];

/// Every setting, as a flag (with its `MAILROOM_*` variable) and as a key of the TOML file, each
/// field named `<section>_<key>`. `None` means "not set at this layer".
// Not `Debug`: `smtp_url`, `redis_url`, `database_app_url` and the probe proxies may hold a
// password.
#[derive(Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Configuration file (TOML); without it, ./mailroom.toml is read if present
    #[arg(long, global = true, env = "MAILROOM_CONFIG", value_name = "PATH")]
    #[serde(skip)]
    config: Option<PathBuf>,

    /// Directory for the SQLite database, keys and the outbox [default: ./data]
    #[arg(long, global = true, env = "MAILROOM_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// The master key file (64 hex characters); MAILROOM_MASTER_KEY may hold the key itself instead [default: <data-dir>/master.key]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_MASTER_KEY_FILE",
        value_name = "PATH"
    )]
    master_key_file: Option<PathBuf>,

    /// Address and port to listen on [default: 127.0.0.1:8080]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_HTTP_LISTEN",
        value_name = "ADDR:PORT"
    )]
    http_listen: Option<SocketAddr>,

    /// Origin users reach mailroom at, e.g. https://mail.example.com [default: from --http-listen]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_HTTP_PUBLIC_URL",
        value_name = "URL"
    )]
    http_public_url: Option<url::Url>,

    /// Proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For is believed [default: none]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_HTTP_TRUSTED_PROXIES",
        value_name = "CIDR,…",
        value_delimiter = ','
    )]
    http_trusted_proxies: Option<Vec<IpNet>>,

    /// Networks (comma-separated) allowed to read /metrics [default: 127.0.0.0/8,::1/128]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_HTTP_METRICS_ALLOW",
        value_name = "CIDR,…",
        value_delimiter = ','
    )]
    http_metrics_allow: Option<Vec<IpNet>>,

    /// PEM certificate chain; with --http-tls-key, serve HTTPS (TLS 1.3 only) [default: plain HTTP]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_HTTP_TLS_CERT",
        value_name = "PATH"
    )]
    http_tls_cert: Option<PathBuf>,

    /// PEM private key for --http-tls-cert
    #[arg(
        long,
        global = true,
        env = "MAILROOM_HTTP_TLS_KEY",
        value_name = "PATH"
    )]
    http_tls_key: Option<PathBuf>,

    /// Value of the X-XSS-Protection response header [default: 0]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_HTTP_X_XSS_PROTECTION",
        value_name = "VALUE"
    )]
    http_x_xss_protection: Option<String>,

    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM [default: 30]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_HTTP_SHUTDOWN_TIMEOUT",
        value_name = "SECONDS"
    )]
    http_shutdown_timeout: Option<u64>,

    /// Sign-up, sign-in, code and reset requests allowed per client IP, and per account, per 15 minutes [default: 20]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_HTTP_AUTH_RATE_LIMIT",
        value_name = "COUNT"
    )]
    http_auth_rate_limit: Option<std::num::NonZeroU32>,

    /// sqlite:… or postgres://… (PostgreSQL: the owner's, which migrates) [default: SQLite file mailroom.db in the data dir]
    #[arg(long, global = true, env = "MAILROOM_DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,

    /// PostgreSQL: the app role's own postgres://… URL, for an owner that may not create roles [default: a role the owner makes]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_DATABASE_APP_URL",
        value_name = "URL"
    )]
    database_app_url: Option<String>,

    /// PostgreSQL: the name of the role the owner makes for the app [default: mailroom_app_<database>]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_DATABASE_APP_ROLE",
        value_name = "ROLE"
    )]
    database_app_role: Option<String>,

    /// Redis for rate limits shared by every node, e.g. redis://127.0.0.1:6379 [default: none: each process counts alone]
    #[arg(long, global = true, env = "MAILROOM_REDIS_URL", value_name = "URL")]
    redis_url: Option<String>,

    /// Start of every key mailroom writes to Redis [default: mailroom:]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_REDIS_KEY_PREFIX",
        value_name = "PREFIX"
    )]
    redis_key_prefix: Option<String>,

    /// While Redis is down: closed (limited requests get 503) or open (they pass unlimited) [default: closed]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_REDIS_ON_FAILURE",
        value_name = "closed|open"
    )]
    redis_on_failure: Option<String>,

    /// SMTP relay for mailroom's own mail: smtp://user:pass@host:587 (STARTTLS), smtps://… (TLS), or …?tls=none [default: none: .eml files in <data-dir>/outbox]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_SYSTEM_MAIL_SMTP_URL",
        value_name = "URL"
    )]
    system_mail_smtp_url: Option<String>,

    /// Extra CA certificate (PEM) to trust for the SMTP relay [default: public roots only]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_SYSTEM_MAIL_SMTP_CA_FILE",
        value_name = "PATH"
    )]
    system_mail_smtp_ca_file: Option<PathBuf>,

    /// Sender of mailroom's own mail [default: mailroom <noreply@localhost>]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_SYSTEM_MAIL_FROM",
        value_name = "MAILBOX"
    )]
    system_mail_from: Option<String>,

    /// Extra CA certificate (PEM) to trust for the SMTP and IMAP servers of connected mail accounts, besides the public roots (an internal relay's own CA) [default: public roots only]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_MAIL_ACCOUNTS_CA_FILE",
        value_name = "PATH"
    )]
    mail_accounts_ca_file: Option<PathBuf>,

    /// DNS server the verifier asks, ip:port [default: the system's resolvers]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_VERIFY_DNS_SERVER",
        value_name = "IP:PORT"
    )]
    verify_dns_server: Option<SocketAddr>,

    /// Port of the mail hosts the verifier probes [default: 25]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_VERIFY_PROBE_PORT",
        value_name = "PORT"
    )]
    verify_probe_port: Option<u16>,

    /// Host name the verifier says in EHLO; use one whose A record points at this machine [default: localhost]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_VERIFY_HELO_NAME",
        value_name = "HOST"
    )]
    verify_helo_name: Option<String>,

    /// Address the verifier gives in MAIL FROM [default: the null sender <>]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_VERIFY_PROBE_FROM",
        value_name = "ADDRESS"
    )]
    verify_probe_from: Option<String>,

    /// Seconds the verifier waits to connect to a mail host and for each reply [default: 10]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_VERIFY_PROBE_TIMEOUT",
        value_name = "SECONDS"
    )]
    verify_probe_timeout: Option<u64>,

    /// Whether the verifier may probe mail hosts on loopback, private and other non-public networks: true or false [default: false]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_VERIFY_PROBE_PRIVATE_NETWORKS",
        value_name = "true|false"
    )]
    verify_probe_private_networks: Option<bool>,

    /// SOCKS5 proxy every SMTP probe goes through, where port 25 is blocked: socks5://user:password@host:port [default: none: probes connect directly]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_VERIFY_PROBE_PROXY",
        value_name = "URL"
    )]
    verify_probe_proxy: Option<String>,

    /// Proxies for some mail hosts only, by the suffix of the MX host's name (comma-separated), e.g. google.com=socks5://host:1080 [default: none]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_VERIFY_PROBE_PROXY_BY_MX",
        value_name = "SUFFIX=URL,…",
        value_delimiter = ','
    )]
    verify_probe_proxy_by_mx: Option<Vec<String>>,

    /// Directory of additions to the shipped lists (disposable_domains.txt, free_provider_domains.txt, role_local_parts.txt, popular_domains.txt, providers.toml) [default: none]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_VERIFY_LISTS_DIR",
        value_name = "DIR"
    )]
    verify_lists_dir: Option<PathBuf>,

    /// Whether webhook endpoints may be plain http:// URLs, not only https:// [default: false]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_WEBHOOKS_ALLOW_HTTP",
        value_name = "true|false"
    )]
    webhooks_allow_http: Option<bool>,

    /// Whether webhook endpoints may be on loopback, private and other non-public networks [default: false]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_WEBHOOKS_ALLOW_PRIVATE_NETWORKS",
        value_name = "true|false"
    )]
    webhooks_allow_private_networks: Option<bool>,

    /// Rows of a bulk verification job checked and written together [default: 2000]
    #[arg(long, global = true, env = "MAILROOM_JOBS_CHUNK", value_name = "ROWS")]
    jobs_chunk: Option<u32>,

    /// Seconds a node's claim on a queued job holds without renewal (it renews three times a lease while the job runs): how soon a dead node's job is taken up [default: 15]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_JOBS_LEASE",
        value_name = "SECONDS"
    )]
    jobs_lease: Option<u64>,

    /// Whether this node runs the work queue's jobs (system mail, bulk verification): false for a node that only answers HTTP [default: true]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_JOBS_RUNNER",
        value_name = "true|false"
    )]
    jobs_runner: Option<bool>,

    /// Seconds between the work queue's looks for due jobs when nothing wakes it sooner (a job enqueued on this node wakes it at once) [default: 1]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_JOBS_POLL_INTERVAL",
        value_name = "SECONDS"
    )]
    jobs_poll_interval: Option<f64>,

    /// Log filter, e.g. info or mailroom_server=debug,info [default: info]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_LOG_FILTER",
        value_name = "FILTER"
    )]
    log_filter: Option<String>,

    /// Log format: auto (text on a terminal, JSON otherwise), json or text [default: auto]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    log_format: Option<LogFormat>,

    /// The `[oidc.<name>]` sections: file only, a provider is too many settings for flags.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oidc: Option<std::collections::BTreeMap<String, OidcSection>>,
}

/// One `[oidc.<name>]` section of the file.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OidcSection {
    /// Required but for `google`, whose issuer is Google's.
    issuer: Option<String>,
    client_id: String,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    scopes: Option<Vec<String>>,
    display_name: Option<String>,
    /// `[oidc.google]` only.
    gmail_api_url: Option<url::Url>,
}

impl OidcSection {
    fn into_provider(self, name: &str) -> anyhow::Result<mailroom_server::config::OidcProvider> {
        let secret = match (self.client_secret, self.client_secret_file) {
            (Some(secret), None) => secret,
            (None, Some(path)) => std::fs::read_to_string(&path)
                .with_context(|| format!("[oidc.{name}] client_secret_file {}", path.display()))?
                .trim()
                .to_owned(),
            _ => bail!("[oidc.{name}]: give one of client_secret and client_secret_file"),
        };
        let mut provider = mailroom_server::config::OidcProvider::new(
            name,
            self.issuer,
            self.client_id,
            SecretString::from(secret),
        )?;
        if let Some(scopes) = self.scopes {
            provider.scopes = scopes;
        }
        if let Some(display_name) = self.display_name {
            provider.display_name = display_name;
        }
        if let Some(url) = self.gmail_api_url {
            if name != mailroom_server::config::OidcProvider::GOOGLE {
                bail!("[oidc.{name}]: gmail_api_url belongs to [oidc.google]");
            }
            if !mailroom_oauth::allowed_url(&url) {
                bail!("[oidc.{name}] gmail_api_url must be https:// (http:// only on loopback)");
            }
            provider.gmail_api_url = url;
        }
        Ok(provider)
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings").finish_non_exhaustive()
    }
}

impl Settings {
    /// These settings (flags and environment) over the configuration file's.
    pub fn layered(self) -> anyhow::Result<Self> {
        reject_unknown_env_vars(std::env::vars().map(|(name, _)| name))?;
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                read_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => Settings::default(),
        };
        self.over(file)
    }

    /// Each setting of `self` that is set replaces the one of `lower`.
    fn over(self, lower: Settings) -> anyhow::Result<Self> {
        let mut merged = toml::Table::try_from(&lower)?;
        merged.extend(toml::Table::try_from(&self)?);
        let mut settings: Settings = merged.try_into()?;
        settings.config = self.config;
        Ok(settings)
    }

    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or(LogFormat::Auto)
    }

    pub fn log_filter(&self) -> String {
        self.log_filter.clone().unwrap_or_else(|| "info".to_owned())
    }

    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut config = Config::new(self.data_dir.unwrap_or_else(|| PathBuf::from("./data")));
        config.database_url = self.database_url;
        config.database_app_url = self.database_app_url.map(SecretString::from);
        config.database_app_role = self.database_app_role;
        config.public_url = self.http_public_url;
        if let Some(listen) = self.http_listen {
            config.listen = listen;
        }
        if let Some(proxies) = self.http_trusted_proxies {
            config.trusted_proxies = TrustedProxies::new(proxies);
        }
        if let Some(networks) = self.http_metrics_allow {
            config.metrics_allow = networks;
        }
        config.tls = match (self.http_tls_cert, self.http_tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => bail!("--http-tls-cert and --http-tls-key go together: give both or neither"),
        };
        if let Some(value) = self.http_x_xss_protection {
            config.x_xss_protection = value;
        }
        if let Some(seconds) = self.http_shutdown_timeout {
            config.shutdown_timeout = Duration::from_secs(seconds);
        }
        config.smtp = self
            .system_mail_smtp_url
            .map(|url| SmtpSettings::parse(&url, self.system_mail_smtp_ca_file))
            .transpose()
            .context("--system-mail-smtp-url")?;
        if let Some(from) = self.system_mail_from {
            config.mail_from = from;
        }
        config.mail_accounts_ca_file = self.mail_accounts_ca_file;
        if let Some(limit) = self.http_auth_rate_limit {
            config.auth_rate_limit = limit;
        }
        config.redis_url = self.redis_url.map(SecretString::from);
        if let Some(prefix) = self.redis_key_prefix {
            config.redis_key_prefix = prefix;
        }
        if let Some(mode) = self.redis_on_failure {
            config.redis_failure = mode
                .parse()
                .map_err(|error| anyhow::anyhow!("--redis-on-failure: {error}"))?;
        }
        let verify = &mut config.verify;
        verify.dns_server = self.verify_dns_server;
        if let Some(port) = self.verify_probe_port {
            verify.smtp_port = port;
        }
        if let Some(name) = self.verify_helo_name {
            verify.helo_name = name;
        }
        if let Some(from) = self.verify_probe_from {
            verify.probe_from = from;
        }
        if let Some(seconds) = self.verify_probe_timeout {
            verify.timeout = Duration::from_secs(seconds.max(1));
        }
        verify.lists_dir = self.verify_lists_dir;
        if let Some(url) = self.verify_probe_proxy {
            // The error never repeats the URL: it may hold a password.
            verify.proxies.default =
                Some(mailroom_verify::Proxy::parse(&url).context("--verify-probe-proxy")?);
        }
        for entry in self.verify_probe_proxy_by_mx.unwrap_or_default() {
            let (suffix, url) = entry
                .split_once('=')
                .filter(|(suffix, _)| !suffix.trim().is_empty())
                .context("--verify-probe-proxy-by-mx: each entry is SUFFIX=URL")?;
            let proxy = mailroom_verify::Proxy::parse(url)
                .with_context(|| format!("--verify-probe-proxy-by-mx, for {suffix}"))?;
            verify
                .proxies
                .by_mx_suffix
                .push((suffix.trim().to_owned(), proxy));
        }
        if let Some(allowed) = self.verify_probe_private_networks {
            verify.probe_private_networks = allowed;
        }
        if let Some(allowed) = self.webhooks_allow_http {
            config.webhooks.allow_http = allowed;
        }
        if let Some(allowed) = self.webhooks_allow_private_networks {
            config.webhooks.allow_private_networks = allowed;
        }
        if let Some(rows) = self.jobs_chunk {
            config.jobs.bulk_chunk = i64::from(rows.max(1));
        }
        if let Some(seconds) = self.jobs_lease {
            config.jobs.lease = Duration::from_secs(seconds.max(3));
        }
        if let Some(run) = self.jobs_runner {
            config.jobs.run_here = run;
        }
        if let Some(seconds) = self.jobs_poll_interval {
            config.jobs.poll_every = Duration::try_from_secs_f64(seconds)
                .ok()
                .filter(|every| !every.is_zero())
                .context("--jobs-poll-interval: a number of seconds above 0")?;
        }
        for (name, section) in self.oidc.unwrap_or_default() {
            config.oidc.push(section.into_provider(&name)?);
        }
        config.master_key_file = self.master_key_file;
        // The key itself only from the environment: never a flag (visible in `ps`) or the
        // configuration file (often readable, often committed).
        config.master_key = std::env::var(MASTER_KEY_ENV).ok().map(SecretString::from);
        Ok(config)
    }
}

fn read_file(path: &Path) -> anyhow::Result<Settings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    from_toml(&text).with_context(|| format!("in the configuration file {}", path.display()))
}

/// The settings of a configuration file's text: each `[section] key` becomes the field
/// `section_key`, and a key that names no setting is an error that says where it was.
fn from_toml(text: &str) -> anyhow::Result<Settings> {
    let file: toml::Table = toml::from_str(text)?;
    let known = file_keys();
    let mut flat = toml::Table::new();
    for (name, value) in file {
        match value {
            // `[oidc.<name>]`: one table per provider, read as they are.
            toml::Value::Table(providers) if name == "oidc" => {
                flat.insert(name, toml::Value::Table(providers));
            }
            toml::Value::Table(section) if SECTIONS.contains(&name.as_str()) => {
                for (key, value) in section {
                    let field = format!("{name}_{key}");
                    if !known.contains(&field) {
                        bail!("unknown key `{key}` in [{name}]");
                    }
                    flat.insert(field, value);
                }
            }
            toml::Value::Table(_) => {
                bail!(
                    "unknown section [{name}]; known: [{}]",
                    SECTIONS.join("], [")
                )
            }
            value => {
                if !known.contains(&name) || section_of(&name).is_some() {
                    let place = section_of(&name)
                        .filter(|_| known.contains(&name))
                        .map(|(section, key)| format!(": it is `{key}` in [{section}]"))
                        .unwrap_or_default();
                    bail!("unknown key `{name}` at the top of the file{place}");
                }
                flat.insert(name, value);
            }
        }
    }
    Ok(flat.try_into()?)
}

/// Every setting's field name, from the flags (`--verify-probe-port` is `verify_probe_port`).
fn file_keys() -> Vec<String> {
    crate::cli::Cli::command()
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| *long != "config")
        .map(|long| long.replace('-', "_"))
        .collect()
}

/// The section and key a field belongs to, or `None` for one at the file's top.
fn section_of(field: &str) -> Option<(&'static str, &str)> {
    SECTIONS.iter().find_map(|section| {
        field
            .strip_prefix(section)
            .and_then(|rest| rest.strip_prefix('_'))
            .map(|key| (*section, key))
    })
}

/// The `MAILROOM_*` variables that configure mailroom.
fn known_env_vars() -> Vec<String> {
    crate::cli::Cli::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .chain([MASTER_KEY_ENV.to_owned()])
        .collect()
}

fn reject_unknown_env_vars(names: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let known = known_env_vars();
    let unknown: Vec<String> = names
        .filter(|name| name.starts_with("MAILROOM_") && !name.starts_with(TEST_ENV_PREFIX))
        .filter(|name| !known.contains(name))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    bail!(
        "unknown environment variable {}; known: {}",
        unknown.join(", "),
        known.join(", ")
    )
}

/// The README's configuration table, made from the flags themselves.
#[cfg(test)]
pub fn markdown_table() -> String {
    let mut table =
        String::from("| flag | environment | `mailroom.toml` key | meaning |\n|---|---|---|---|\n");
    for arg in crate::cli::Cli::command().get_arguments() {
        let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        let field = long.replace('-', "_");
        let key = match section_of(&field) {
            _ if long == "config" => "—".to_owned(),
            Some((section, key)) => format!("`[{section}]` `{key}`"),
            None => format!("`{field}`"),
        };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        table.push_str(&format!(
            "| `--{long}` | `{}` | {key} | {} |\n",
            env.to_string_lossy(),
            help.replace('|', "\\|")
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn parse(args: &[&str]) -> Settings {
        let mut argv = vec!["mailroom"];
        argv.extend_from_slice(args);
        argv.push("serve");
        Cli::try_parse_from(argv).unwrap().into_settings()
    }

    fn file(text: &str) -> Settings {
        from_toml(text).unwrap()
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let from_file = file(
            "data_dir = \"/srv/mailroom\"\n[http]\nlisten = \"127.0.0.1:9000\"\n\
             [verify]\nprobe_port = 2525\n",
        );
        let config = parse(&["--http-listen", "127.0.0.1:9100"])
            .over(from_file)
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.data_dir, PathBuf::from("/srv/mailroom"));
        assert_eq!(config.verify.smtp_port, 2525);
        assert_eq!(config.x_xss_protection, "0");
    }

    #[test]
    fn defaults_are_what_the_help_says() {
        let config = Settings::default().into_config().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.database_url(), "sqlite://./data/mailroom.db");
        assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
        assert!(config.trusted_proxies.networks().is_empty());
        assert_eq!(
            config.metrics_allow,
            vec![
                "127.0.0.0/8".parse::<IpNet>().unwrap(),
                "::1/128".parse().unwrap()
            ]
        );
    }

    #[test]
    fn unknown_file_keys_are_named_with_their_place() {
        for (text, named) in [
            (
                "[http]\nlisten = \"127.0.0.1:1\"\n[database]\nulr = \"x\"\n",
                "`ulr` in [database]",
            ),
            ("[htp]\nlisten = \"127.0.0.1:1\"\n", "[htp]"),
            ("config = \"other.toml\"\n", "`config`"),
            // A setting at the top that belongs in a section is told where it goes.
            ("listen = \"127.0.0.1:1\"\n", "`listen`"),
            (
                "http_listen = \"127.0.0.1:1\"\n",
                "it is `listen` in [http]",
            ),
        ] {
            let error = from_toml(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains(named), "{text}: {error}");
        }
    }

    #[test]
    fn openid_providers_are_read_from_their_sections() {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("corp.secret");
        std::fs::write(&secret_file, "from-a-file\n").unwrap();
        let text = format!(
            "[oidc.google]\nclient_id = \"g\"\nclient_secret = \"s\"\n\
             [oidc.corp]\nissuer = \"https://sso.example.com\"\nclient_id = \"c\"\n\
             client_secret_file = \"{}\"\ndisplay_name = \"Corp SSO\"\n",
            secret_file.display()
        );
        let config = file(&text).into_config().unwrap();
        let google = config.oidc.iter().find(|p| p.name == "google").unwrap();
        assert_eq!(google.issuer, "https://accounts.google.com");
        assert_eq!(google.display_name, "Google");
        let corp = config.oidc.iter().find(|p| p.name == "corp").unwrap();
        assert_eq!(corp.display_name, "Corp SSO");
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&corp.client_secret),
            "from-a-file"
        );

        for (text, named) in [
            (
                "[oidc.corp]\nclient_id = \"c\"\nclient_secret = \"s\"\n",
                "`issuer` is required",
            ),
            (
                "[oidc.corp]\nissuer = \"http://sso.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
                "https://",
            ),
            ("[oidc.google]\nclient_id = \"g\"\n", "client_secret"),
            (
                "[oidc.google]\nclient_id = \"g\"\nclient_secret = \"s\"\nsecret = \"x\"\n",
                "secret",
            ),
            (
                "[oidc.Bad]\nclient_id = \"g\"\nclient_secret = \"s\"\nissuer = \"https://x\"\n",
                "a-z",
            ),
        ] {
            let error = from_toml(text)
                .and_then(Settings::into_config)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(error.contains(named), "{text}: {error}");
        }
    }

    #[test]
    fn every_flag_is_a_file_key_in_its_section() {
        for arg in Cli::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "config" {
                continue;
            }
            let field = long.replace('-', "_");
            let value = match field.as_str() {
                "http_listen" | "verify_dns_server" => "\"127.0.0.1:1\"".to_owned(),
                "http_public_url" => "\"https://m.example\"".to_owned(),
                "http_trusted_proxies" | "http_metrics_allow" => "[\"10.0.0.0/8\"]".to_owned(),
                "verify_probe_proxy_by_mx" => "[\"x\"]".to_owned(),
                "http_shutdown_timeout"
                | "http_auth_rate_limit"
                | "verify_probe_port"
                | "verify_probe_timeout"
                | "jobs_chunk"
                | "jobs_lease" => "5".to_owned(),
                "jobs_poll_interval" => "0.5".to_owned(),
                "log_format" => "\"json\"".to_owned(),
                "verify_probe_private_networks"
                | "jobs_runner"
                | "webhooks_allow_http"
                | "webhooks_allow_private_networks" => "true".to_owned(),
                _ => "\"x\"".to_owned(),
            };
            let text = match section_of(&field) {
                Some((section, key)) => format!("[{section}]\n{key} = {value}\n"),
                None => format!("{field} = {value}\n"),
            };
            from_toml(&text).unwrap_or_else(|e| panic!("--{long} is not `{text}`: {e}"));
            let env = arg.get_env().map(|env| env.to_string_lossy().into_owned());
            assert_eq!(
                env.as_deref(),
                Some(format!("MAILROOM_{}", field.to_uppercase()).as_str()),
                "--{long}'s variable"
            );
        }
    }

    #[test]
    fn the_poll_interval_is_read_and_a_zero_refused() {
        let config = parse(&["--jobs-poll-interval", "0.25"])
            .into_config()
            .unwrap();
        assert_eq!(config.jobs.poll_every, Duration::from_millis(250));
        for wrong in ["--jobs-poll-interval=0", "--jobs-poll-interval=-1"] {
            let error = parse(&[wrong]).into_config().unwrap_err();
            assert!(
                error.to_string().contains("--jobs-poll-interval"),
                "{error}"
            );
        }
    }

    #[test]
    fn probe_proxies_are_read_and_a_wrong_one_is_named_without_its_password() {
        let config = parse(&[
            "--verify-probe-proxy",
            "socks5://probe:s3cret@proxy.example:1080",
            "--verify-probe-proxy-by-mx",
            "google.com=socks5://gproxy.example:1080,outlook.com=socks5://oproxy.example:1080",
        ])
        .into_config()
        .unwrap();
        let proxies = &config.verify.proxies;
        assert!(proxies.default.is_some());
        let suffixes: Vec<&str> = proxies
            .by_mx_suffix
            .iter()
            .map(|(s, _)| s.as_str())
            .collect();
        assert_eq!(suffixes, ["google.com", "outlook.com"]);
        assert!(!format!("{proxies:?}").contains("s3cret"));
        for argv in [
            [
                "--verify-probe-proxy",
                "http://probe:s3cret@proxy.example:1080",
            ],
            [
                "--verify-probe-proxy-by-mx",
                "google.com=socks5://probe:s3cret@proxy.example",
            ],
            [
                "--verify-probe-proxy-by-mx",
                "socks5://probe:s3cret@proxy.example:1080",
            ],
        ] {
            let error = format!("{:#}", parse(&argv).into_config().unwrap_err());
            assert!(
                error.contains(argv[0]) && !error.contains("s3cret"),
                "{error}"
            );
        }
    }

    #[test]
    fn tls_flags_go_together() {
        let error = parse(&["--http-tls-cert", "c.pem"])
            .into_config()
            .unwrap_err();
        assert!(error.to_string().contains("--http-tls-key"));
    }

    #[test]
    fn unknown_mailroom_env_vars_are_errors_but_test_ones_are_not() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        reject_unknown_env_vars(
            names(&["PATH", "MAILROOM_HTTP_LISTEN", "MAILROOM_TEST_REQUIRE_ALL"]).into_iter(),
        )
        .unwrap();
        let error = reject_unknown_env_vars(names(&["MAILROOM_LISTN"]).into_iter())
            .unwrap_err()
            .to_string();
        assert!(error.contains("MAILROOM_LISTN"), "{error}");
    }

    #[test]
    fn comma_separated_lists_parse() {
        let config = parse(&["--http-trusted-proxies", "10.0.0.0/8,192.168.1.1/32"])
            .into_config()
            .unwrap();
        assert_eq!(config.trusted_proxies.networks().len(), 2);
    }

    /// The README's table is generated from the flags; `MAILROOM_BLESS=1` rewrites it.
    #[test]
    fn readme_configuration_table_matches_the_flags() {
        let readme_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(readme_path).unwrap();
        let (start, end) = ("<!-- config-table:start -->\n", "<!-- config-table:end -->");
        let from = readme
            .find(start)
            .expect("README lacks the table start marker")
            + start.len();
        let to = readme.find(end).expect("README lacks the table end marker");
        let expected = markdown_table();
        if readme[from..to] != expected {
            if std::env::var("MAILROOM_BLESS").is_ok_and(|v| v == "1") {
                let updated = format!("{}{expected}{}", &readme[..from], &readme[to..]);
                std::fs::write(readme_path, updated).unwrap();
            } else {
                panic!(
                    "README.md's configuration table is stale; run \
                     `MAILROOM_BLESS=1 cargo test -p mailroom readme` to regenerate it:\n{expected}"
                );
            }
        }
    }
}
