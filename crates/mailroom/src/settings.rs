//! Where configuration comes from: command-line flags, then `MAILROOM_*`
//! environment variables, then the TOML file (`--config`, or `./mailroom.toml` when present),
//! then the defaults of [`Config::new`]. Unknown keys in the file and unknown `MAILROOM_*`
//! variables are errors that name the key, so a typo never silently falls back to a default.

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

/// Every setting, as a flag (with its `MAILROOM_*` variable) and as a key of the TOML file: the
/// key is the flag's name with `_` for `-`. `None` means "not set at this layer".
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

    /// Address and port to listen on [default: 127.0.0.1:8080]
    #[arg(long, global = true, env = "MAILROOM_LISTEN", value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,

    /// Origin users reach mailroom at, e.g. https://mail.example.com [default: from --listen]
    #[arg(long, global = true, env = "MAILROOM_PUBLIC_URL", value_name = "URL")]
    public_url: Option<url::Url>,

    /// Proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For is believed [default: none]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_TRUSTED_PROXIES",
        value_name = "CIDR,…",
        value_delimiter = ','
    )]
    trusted_proxies: Option<Vec<IpNet>>,

    /// Networks (comma-separated) allowed to read /metrics [default: 127.0.0.0/8,::1/128]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_METRICS_ALLOW",
        value_name = "CIDR,…",
        value_delimiter = ','
    )]
    metrics_allow: Option<Vec<IpNet>>,

    /// PEM certificate chain; with --tls-key, serve HTTPS (TLS 1.3 only) [default: plain HTTP]
    #[arg(long, global = true, env = "MAILROOM_TLS_CERT", value_name = "PATH")]
    tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert
    #[arg(long, global = true, env = "MAILROOM_TLS_KEY", value_name = "PATH")]
    tls_key: Option<PathBuf>,

    /// Value of the X-XSS-Protection response header [default: 0]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_X_XSS_PROTECTION",
        value_name = "VALUE"
    )]
    x_xss_protection: Option<String>,

    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM [default: 30]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_SHUTDOWN_TIMEOUT",
        value_name = "SECONDS"
    )]
    shutdown_timeout: Option<u64>,

    /// SMTP relay for mailroom's own mail: smtp://user:pass@host:587 (STARTTLS), smtps://… (TLS), or …?tls=none [default: none: .eml files in <data-dir>/outbox]
    #[arg(long, global = true, env = "MAILROOM_SMTP_URL", value_name = "URL")]
    smtp_url: Option<String>,

    /// Extra CA certificate (PEM) to trust for the SMTP relay [default: public roots only]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_SMTP_CA_FILE",
        value_name = "PATH"
    )]
    smtp_ca_file: Option<PathBuf>,

    /// Sender of mailroom's own mail [default: mailroom <noreply@localhost>]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_MAIL_FROM",
        value_name = "MAILBOX"
    )]
    mail_from: Option<String>,

    /// Sign-up, sign-in, code and reset requests allowed per client IP, and per account, per 15 minutes [default: 20]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_AUTH_RATE_LIMIT",
        value_name = "COUNT"
    )]
    auth_rate_limit: Option<std::num::NonZeroU32>,

    /// The master key file (64 hex characters); MAILROOM_MASTER_KEY may hold the key itself instead [default: <data-dir>/master.key]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_MASTER_KEY_FILE",
        value_name = "PATH"
    )]
    master_key_file: Option<PathBuf>,

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
        env = "MAILROOM_RATE_LIMIT_ON_REDIS_FAILURE",
        value_name = "closed|open"
    )]
    rate_limit_on_redis_failure: Option<String>,

    /// DNS server the verifier asks, ip:port [default: the system's resolvers]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_DNS_SERVER",
        value_name = "IP:PORT"
    )]
    dns_server: Option<SocketAddr>,

    /// Port of the mail hosts the verifier probes [default: 25]
    #[arg(long, global = true, env = "MAILROOM_SMTP_PORT", value_name = "PORT")]
    smtp_port: Option<u16>,

    /// Host name the verifier says in EHLO; use one whose A record points at this machine [default: localhost]
    #[arg(long, global = true, env = "MAILROOM_HELO_NAME", value_name = "HOST")]
    helo_name: Option<String>,

    /// Address the verifier gives in MAIL FROM [default: the null sender <>]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_PROBE_FROM",
        value_name = "ADDRESS"
    )]
    probe_from: Option<String>,

    /// Seconds the verifier waits to connect to a mail host and for each reply [default: 10]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_SMTP_TIMEOUT",
        value_name = "SECONDS"
    )]
    smtp_timeout: Option<u64>,

    /// Whether the verifier may probe mail hosts on loopback, private and other non-public networks: true or false [default: false]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_PROBE_PRIVATE_NETWORKS",
        value_name = "true|false"
    )]
    probe_private_networks: Option<bool>,

    /// SOCKS5 proxy every SMTP probe goes through, where port 25 is blocked: socks5://user:password@host:port [default: none: probes connect directly]
    #[arg(long, global = true, env = "MAILROOM_PROBE_PROXY", value_name = "URL")]
    probe_proxy: Option<String>,

    /// Proxies for some mail hosts only, by the suffix of the MX host's name (comma-separated), e.g. google.com=socks5://host:1080 [default: none]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_PROBE_PROXY_BY_MX",
        value_name = "SUFFIX=URL,…",
        value_delimiter = ','
    )]
    probe_proxy_by_mx: Option<Vec<String>>,

    /// Rows of a bulk verification job checked and written together [default: 2000]
    #[arg(long, global = true, env = "MAILROOM_JOB_CHUNK", value_name = "ROWS")]
    job_chunk: Option<u32>,

    /// Seconds a node's claim on a bulk job, or on a queued job, holds without renewal: how soon a dead node's job is taken up [default: 15 for bulk jobs, 60 for queued ones]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_JOB_LEASE",
        value_name = "SECONDS"
    )]
    job_lease: Option<u64>,

    /// Whether this node runs the work queue's jobs (system mail, …): false for a node that only answers HTTP [default: true]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_QUEUE_RUNNER",
        value_name = "true|false"
    )]
    queue_runner: Option<bool>,

    /// Directory of additions to the shipped lists (disposable_domains.txt, free_provider_domains.txt, role_local_parts.txt, popular_domains.txt, providers.toml) [default: none]
    #[arg(long, global = true, env = "MAILROOM_LISTS_DIR", value_name = "DIR")]
    lists_dir: Option<PathBuf>,

    /// Log filter, e.g. info or mailroom_server=debug,info [default: info]
    #[arg(long, global = true, env = "MAILROOM_LOG", value_name = "FILTER")]
    log: Option<String>,

    /// Log format: auto (text on a terminal, JSON otherwise), json or text [default: auto]
    #[arg(
        long,
        global = true,
        env = "MAILROOM_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    log_format: Option<LogFormat>,
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
        self.log.clone().unwrap_or_else(|| "info".to_owned())
    }

    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut config = Config::new(self.data_dir.unwrap_or_else(|| PathBuf::from("./data")));
        config.database_url = self.database_url;
        config.database_app_url = self.database_app_url.map(SecretString::from);
        config.database_app_role = self.database_app_role;
        config.public_url = self.public_url;
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(proxies) = self.trusted_proxies {
            config.trusted_proxies = TrustedProxies::new(proxies);
        }
        if let Some(networks) = self.metrics_allow {
            config.metrics_allow = networks;
        }
        config.tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together: give both or neither"),
        };
        if let Some(value) = self.x_xss_protection {
            config.x_xss_protection = value;
        }
        if let Some(seconds) = self.shutdown_timeout {
            config.shutdown_timeout = Duration::from_secs(seconds);
        }
        config.smtp = self
            .smtp_url
            .map(|url| SmtpSettings::parse(&url, self.smtp_ca_file))
            .transpose()
            .context("--smtp-url")?;
        if let Some(from) = self.mail_from {
            config.mail_from = from;
        }
        if let Some(limit) = self.auth_rate_limit {
            config.auth_rate_limit = limit;
        }
        config.redis_url = self.redis_url.map(SecretString::from);
        if let Some(prefix) = self.redis_key_prefix {
            config.redis_key_prefix = prefix;
        }
        if let Some(mode) = self.rate_limit_on_redis_failure {
            config.redis_failure = mode
                .parse()
                .map_err(|error| anyhow::anyhow!("--rate-limit-on-redis-failure: {error}"))?;
        }
        let verify = &mut config.verify;
        verify.dns_server = self.dns_server;
        if let Some(port) = self.smtp_port {
            verify.smtp_port = port;
        }
        if let Some(name) = self.helo_name {
            verify.helo_name = name;
        }
        if let Some(from) = self.probe_from {
            verify.probe_from = from;
        }
        if let Some(seconds) = self.smtp_timeout {
            verify.timeout = Duration::from_secs(seconds.max(1));
        }
        verify.lists_dir = self.lists_dir;
        if let Some(url) = self.probe_proxy {
            // The error never repeats the URL: it may hold a password.
            verify.proxies.default =
                Some(mailroom_verify::Proxy::parse(&url).context("--probe-proxy")?);
        }
        for entry in self.probe_proxy_by_mx.unwrap_or_default() {
            let (suffix, url) = entry
                .split_once('=')
                .filter(|(suffix, _)| !suffix.trim().is_empty())
                .context("--probe-proxy-by-mx: each entry is SUFFIX=URL")?;
            let proxy = mailroom_verify::Proxy::parse(url)
                .with_context(|| format!("--probe-proxy-by-mx, for {suffix}"))?;
            verify
                .proxies
                .by_mx_suffix
                .push((suffix.trim().to_owned(), proxy));
        }
        if let Some(allowed) = self.probe_private_networks {
            verify.probe_private_networks = allowed;
        }
        if let Some(rows) = self.job_chunk {
            config.jobs.chunk = i64::from(rows.max(1));
        }
        if let Some(seconds) = self.job_lease {
            // Renewed three times a lease, as by default.
            config.jobs.lease = Duration::from_secs(seconds.max(3));
            config.jobs.renew_every = config.jobs.lease / 3;
            config.queue.lease = config.jobs.lease;
        }
        if let Some(run) = self.queue_runner {
            config.queue.run_here = run;
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
    toml::from_str(&text).with_context(|| format!("in the configuration file {}", path.display()))
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
        let key = if long == "config" {
            "—".to_owned()
        } else {
            format!("`{}`", long.replace('-', "_"))
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
        toml::from_str(text).unwrap()
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let from_file = file("listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/mailroom\"\n");
        let config = parse(&["--listen", "127.0.0.1:9100"])
            .over(from_file)
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.data_dir, PathBuf::from("/srv/mailroom"));
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
    fn unknown_file_keys_are_named() {
        let error = toml::from_str::<Settings>("listen = \"127.0.0.1:1\"\ndatabse_url = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("databse_url"), "{error}");
        let error = toml::from_str::<Settings>("config = \"other.toml\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("config"), "{error}");
    }

    #[test]
    fn every_flag_is_a_file_key() {
        for arg in Cli::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "config" {
                continue;
            }
            let key = long.replace('-', "_");
            let value = match key.as_str() {
                "listen" | "dns_server" => "\"127.0.0.1:1\"".to_owned(),
                "public_url" => "\"https://m.example\"".to_owned(),
                "trusted_proxies" | "metrics_allow" => "[\"10.0.0.0/8\"]".to_owned(),
                "probe_proxy_by_mx" => "[\"x\"]".to_owned(),
                "shutdown_timeout" | "auth_rate_limit" | "smtp_port" | "smtp_timeout"
                | "job_chunk" | "job_lease" => "5".to_owned(),
                "log_format" => "\"json\"".to_owned(),
                "probe_private_networks" | "queue_runner" => "true".to_owned(),
                _ => "\"x\"".to_owned(),
            };
            let text = format!("{key} = {value}\n");
            toml::from_str::<Settings>(&text)
                .unwrap_or_else(|e| panic!("--{long} has no file key `{key}`: {e}"));
        }
    }

    #[test]
    fn probe_proxies_are_read_and_a_wrong_one_is_named_without_its_password() {
        let config = parse(&[
            "--probe-proxy",
            "socks5://probe:s3cret@proxy.example:1080",
            "--probe-proxy-by-mx",
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
            ["--probe-proxy", "http://probe:s3cret@proxy.example:1080"],
            [
                "--probe-proxy-by-mx",
                "google.com=socks5://probe:s3cret@proxy.example",
            ],
            [
                "--probe-proxy-by-mx",
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
        let error = parse(&["--tls-cert", "c.pem"]).into_config().unwrap_err();
        assert!(error.to_string().contains("--tls-key"));
    }

    #[test]
    fn unknown_mailroom_env_vars_are_errors_but_test_ones_are_not() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        reject_unknown_env_vars(
            names(&["PATH", "MAILROOM_LISTEN", "MAILROOM_TEST_REQUIRE_ALL"]).into_iter(),
        )
        .unwrap();
        let error = reject_unknown_env_vars(names(&["MAILROOM_LISTN"]).into_iter())
            .unwrap_err()
            .to_string();
        assert!(error.contains("MAILROOM_LISTN"), "{error}");
    }

    #[test]
    fn comma_separated_lists_parse() {
        let config = parse(&["--trusted-proxies", "10.0.0.0/8,192.168.1.1/32"])
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
