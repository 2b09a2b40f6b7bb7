//! Subcommands. Each is a few lines that resolve the configuration and call a library crate.

use std::io::{BufRead, IsTerminal};

use anyhow::Context;
use clap::{Parser, Subcommand};
use mailroom_core::JobId;
use mailroom_crypto::envelope::SYSTEM_SCOPE;
use mailroom_crypto::master_key::MasterKey;
use mailroom_server::config::MASTER_KEY_ENV;
use mailroom_server::{ApiError, App, Config, DomainError, installation, telemetry};
use mailroom_storage::accounts::PlatformRole;
use mailroom_storage::queue::{JobFilter, JobKind, JobStatus};
use mailroom_verify::{Mode, Options, Verifier};
use secrecy::SecretString;
use time::format_description::well_known::Rfc3339;

use crate::settings::Settings;

#[derive(Parser)]
#[command(
    name = "mailroom",
    version,
    about = "Self-hosted email API platform: verify addresses, send email, read mailboxes."
)]
pub struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: open (and migrate) the database, listen, serve until SIGINT/SIGTERM.
    Serve,
    /// Apply pending database migrations (on PostgreSQL, and make the app role) and exit.
    Migrate,
    /// Accounts, from the terminal.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Verify addresses here, without a server: one JSON result per line.
    Verify {
        /// The addresses to check.
        #[arg(required = true, value_name = "ADDRESS")]
        addresses: Vec<String>,
        /// Check syntax, DNS and the lists only; do not ask the mail hosts.
        #[arg(long)]
        no_smtp: bool,
    },
    /// The master key and the data keys it wraps.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The work queue: every background job (system mail, …), its state and its last error.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// List jobs, newest first: id, kind, status, attempts, when due, the last error.
    List {
        /// Only jobs in this state: queued, running, done, dead or cancelled.
        #[arg(long, value_parser = parse_status)]
        status: Option<JobStatus>,
        /// Only jobs of this kind, e.g. system_mail.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<JobKind>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Queue a dead or cancelled job again, its attempts afresh.
    Retry { id: JobId },
    /// Cancel a queued or running job: it never runs (again).
    Cancel { id: JobId },
}

fn parse_status(text: &str) -> Result<JobStatus, String> {
    JobStatus::parse(text).ok_or_else(|| "queued, running, done, dead or cancelled".to_owned())
}

fn parse_kind(text: &str) -> Result<JobKind, String> {
    JobKind::parse(text).ok_or_else(|| {
        let kinds: Vec<&str> = JobKind::ALL.iter().map(|kind| kind.as_str()).collect();
        kinds.join(", ")
    })
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List every key scope's data key versions, their ages, and which is current.
    Status,
    /// Re-wrap the root key and every data key under a new master key, in one transaction.
    /// Without --new-key-file a key is generated and replaces the key file, the old one kept
    /// beside it as master.key.retired-<time>.
    RotateMaster {
        /// A new master key (64 hex characters) made beforehand, e.g. in a secrets manager.
        #[arg(long, value_name = "PATH")]
        new_key_file: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a verified account, owner of a new personal organization.
    Create {
        #[arg(long)]
        email: String,
        /// Make the account a platform super-admin.
        #[arg(long)]
        super_admin: bool,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every organization's hash chain; fail at the first edited or missing entry.
    Verify,
    /// Delete the entries past the 90-day retention now (the server also does this hourly).
    Purge,
}

impl Cli {
    #[cfg(test)]
    pub fn into_settings(self) -> Settings {
        self.settings
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let settings = self.settings.layered()?;
        telemetry::init(settings.log_format(), &settings.log_filter())?;
        let config = settings.into_config()?;
        match self.command {
            Command::Serve => {
                let shutdown = mailroom_server::shutdown::listen()?;
                let app = App::build(config).await?;
                tracing::info!(
                    url = %app.public_url(),
                    listen = %app.local_addr(),
                    "mailroom is listening"
                );
                if let Some(link) = app.setup_link().await? {
                    // The link grants super-admin: it goes to the operator's terminal
                    // (standard error), not into the log stream that aggregators collect.
                    eprintln!(
                        "\nNo account exists yet. Within an hour, open this one-time link to create \
                         the first super-admin:\n\n    {link}\n\n(or run `mailroom admin create \
                         --super-admin`)\n"
                    );
                    tracing::info!(
                        "no account exists yet: a one-time setup link was printed on standard error"
                    );
                }
                app.run_until(shutdown).await
            }
            Command::Verify { addresses, no_smtp } => {
                let engine = Verifier::new(config.verify).context("cannot set up the verifier")?;
                let options = Options {
                    smtp: !no_smtp,
                    mode: Mode::Sync,
                };
                for result in engine.verify_many(&addresses, options).await {
                    println!("{}", serde_json::to_string(&result)?);
                }
                Ok(())
            }
            Command::Admin {
                command:
                    AdminCommand::Create {
                        email,
                        super_admin,
                        password_stdin,
                    },
            } => {
                let password = read_password(password_stdin)?;
                let platform_role = if super_admin {
                    PlatformRole::SuperAdmin
                } else {
                    PlatformRole::User
                };
                let passwords = mailroom_server::PasswordWork::new()?;
                let (database, _) = config.open_database().await?;
                let created = installation::create_account(
                    &database,
                    &passwords,
                    &email,
                    &password,
                    platform_role,
                )
                .await;
                database.close().await;
                let user = created.map_err(|error| refused("the account is refused", error))?;
                println!(
                    "created {} ({}), owner of organization {}",
                    user.email,
                    platform_role.as_str(),
                    user.org_id
                );
                Ok(())
            }
            Command::Audit { command } => {
                let (database, _) = config.open_database().await?;
                let outcome = match command {
                    AuditCommand::Verify => match installation::verify_audit(&database)
                        .await
                        .map_err(|error| refused("the audit log cannot be read", error))?
                    {
                        None => {
                            println!("audit log intact: every chain verifies");
                            Ok(())
                        }
                        Some(broken) => Err(anyhow::anyhow!(
                            "audit log broken: scope {} entry {}: {}",
                            broken.scope,
                            broken.seq,
                            broken.reason
                        )),
                    },
                    AuditCommand::Purge => {
                        let purged = installation::purge_audit(&database)
                            .await
                            .map_err(|error| refused("the audit log cannot be purged", error))?;
                        println!("purged {purged} audit entries older than 90 days");
                        Ok(())
                    }
                };
                database.close().await;
                outcome
            }
            Command::Keys { command } => keys(&config, command).await,
            Command::Jobs { command } => jobs(&config, command).await,
            Command::Migrate => {
                let started_before = config.migrate_database().await?;
                if started_before {
                    tracing::info!("migrations are up to date");
                } else {
                    tracing::info!(
                        "migrations are up to date; the first `mailroom serve` makes the keyring, \
                         its master key and, on PostgreSQL, the app role"
                    );
                }
                Ok(())
            }
        }
    }
}

/// An operation's refusal as the terminal says it: what was refused and why, or, for a failure
/// of ours, its whole chain of causes.
fn refused(what: &str, error: DomainError) -> anyhow::Error {
    match error {
        DomainError::Internal(cause) => cause.context(what.to_owned()),
        other => anyhow::anyhow!("{what}: {}", ApiError::from(other).detail()),
    }
}

async fn jobs(config: &Config, command: JobsCommand) -> anyhow::Result<()> {
    let (database, _) = config.open_database().await?;
    let outcome = match command {
        JobsCommand::List {
            status,
            kind,
            limit,
        } => installation::jobs(
            &database,
            JobFilter {
                status,
                kind,
                limit,
            },
        )
        .await
            .map(|jobs| {
                println!("id                                    kind         status     attempts  due                        last error");
                for job in jobs {
                    println!(
                        "{:<37} {:<12} {:<10} {:>3}/{:<4}  {:<25}  {}",
                        job.id,
                        job.kind,
                        job.status.as_str(),
                        job.attempts,
                        job.max_attempts,
                        job.run_at.format(&Rfc3339).unwrap_or_default(),
                        job.last_error.unwrap_or_default()
                    );
                }
            })
        .map_err(|error| refused("the jobs cannot be listed", error)),
        JobsCommand::Retry { id } => match installation::retry_job(&database, id).await {
            Ok(()) => {
                println!("job {id} queued again");
                Ok(())
            }
            Err(DomainError::NotFound) => Err(anyhow::anyhow!("no dead or cancelled job {id}")),
            Err(error) => Err(refused("the job cannot be retried", error)),
        },
        JobsCommand::Cancel { id } => match installation::cancel_job(&database, id).await {
            Ok(()) => {
                println!("job {id} cancelled");
                Ok(())
            }
            Err(DomainError::NotFound) => Err(anyhow::anyhow!("no queued or running job {id}")),
            Err(error) => Err(refused("the job cannot be cancelled", error)),
        },
    };
    database.close().await;
    outcome
}

async fn keys(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    let (database, _) = config.open_database().await?;
    let outcome = match command {
        KeysCommand::Status => database.data_key_status().await.map(|keys| {
            println!("scope                                 version  created                    age (days)  current");
            let now = time::OffsetDateTime::now_utc();
            for key in keys {
                let scope = if key.scope == SYSTEM_SCOPE {
                    "system".to_owned()
                } else {
                    key.scope.to_string()
                };
                println!(
                    "{scope:<37} {:>7}  {:<25}  {:>10}  {}",
                    key.version,
                    key.created_at.format(&Rfc3339).unwrap_or_default(),
                    (now - key.created_at).whole_days(),
                    if key.current { "yes" } else { "" }
                );
            }
        }).map_err(anyhow::Error::from),
        KeysCommand::RotateMaster { new_key_file } => rotate_master(config, &database, new_key_file).await,
    };
    database.close().await;
    outcome
}

/// The new key is on disk before the database moves to it, so that no moment exists
/// when the data is wrapped by a key that is nowhere.
async fn rotate_master(
    config: &Config,
    database: &mailroom_storage::Database,
    new_key_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let current = config.master_key_path();
    let (new, generated) = match new_key_file {
        Some(path) => (MasterKey::read(&path)?, None),
        None => {
            let path = config.new_master_key_path();
            let key = MasterKey::generate();
            key.write_new(&path).with_context(|| {
                format!(
                    "{} exists: a rotation was interrupted? Start with it or remove it",
                    path.display()
                )
            })?;
            (key, Some(path))
        }
    };
    let rewrapped = match database
        .rotate_master_key(new, time::OffsetDateTime::now_utc())
        .await
    {
        Ok(rewrapped) => rewrapped,
        Err(error) => {
            // The database did not move: the new key is nothing, and must not look like
            // the current one to the next start.
            if let Some(path) = &generated {
                let _ = std::fs::remove_file(path);
            }
            return Err(error.into());
        }
    };
    println!(
        "master key rotated: the root key and {rewrapped} data keys are wrapped by the new key"
    );
    match generated {
        Some(new_path) if config.master_key.is_none() => {
            let retired = current.with_extension(format!(
                "key.retired-{}",
                time::OffsetDateTime::now_utc().unix_timestamp()
            ));
            std::fs::rename(&current, &retired)
                .with_context(|| format!("moving the old key aside to {}", retired.display()))?;
            std::fs::rename(&new_path, &current)
                .with_context(|| format!("moving the new key to {}", current.display()))?;
            println!(
                "the new key is {}; the old one is {} (destroy it once no backup needs it)",
                current.display(),
                retired.display()
            );
        }
        Some(new_path) => println!(
            "the new key is in {}: put it in {MASTER_KEY_ENV} before the next start",
            new_path.display()
        ),
        None => println!("start mailroom with the new key from now on"),
    }
    println!("restart every other node with the new key: until then they refuse to add keys");
    Ok(())
}

/// The new account's password: typed twice at a prompt that does not echo, or the first line
/// of standard input with `--password-stdin` or when standard input is not a terminal.
fn read_password(from_stdin: bool) -> anyhow::Result<SecretString> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(SecretString::from(
            line.trim_end_matches(['\r', '\n']).to_owned(),
        ));
    }
    let first = rpassword::prompt_password("Password: ")?;
    let again = rpassword::prompt_password("Password (again): ")?;
    if first != again {
        anyhow::bail!("the two passwords differ");
    }
    Ok(SecretString::from(first))
}
