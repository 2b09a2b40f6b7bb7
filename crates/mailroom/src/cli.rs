//! Subcommands. Each is a few lines that resolve the configuration and call a library crate.

use std::io::{BufRead, IsTerminal};

use anyhow::Context;
use clap::{Parser, Subcommand};
use mailroom_core::EmailAddress;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::password_policy::{self, CompositionRules};
use mailroom_server::{App, telemetry};
use mailroom_storage::accounts::{NewAccount, PlatformRole};
use secrecy::{ExposeSecret, SecretString};

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
    /// Apply pending database migrations and exit.
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
            Command::Admin {
                command:
                    AdminCommand::Create {
                        email,
                        super_admin,
                        password_stdin,
                    },
            } => {
                let email = EmailAddress::parse(&email).context("--email")?;
                let password = read_password(password_stdin)?;
                password_policy::check(
                    password.expose_secret(),
                    email.as_str(),
                    CompositionRules::default(),
                )
                .context("the password is refused")?;
                let password_hash = mailroom_crypto::password::hash(&password)?;
                let database = config.open_database().await?;
                let platform_role = if super_admin {
                    PlatformRole::SuperAdmin
                } else {
                    PlatformRole::User
                };
                let account = NewAccount {
                    email: email.to_string(),
                    password_hash: password_hash.as_str().to_owned(),
                    platform_role,
                };
                let now = time::OffsetDateTime::now_utc();
                let created = match database.create_account(&account, now).await {
                    Err(error) if error.is_unique_violation() => Err(anyhow::anyhow!(
                        "an account with the address {email} already exists"
                    )),
                    other => other.map_err(anyhow::Error::from),
                };
                let user = match created {
                    Ok(user) => user,
                    Err(error) => {
                        database.close().await;
                        return Err(error);
                    }
                };
                let event = AuditEvent {
                    org_id: Some(user.org_id),
                    actor: None,
                    action: Action::AccountCreatedByAdmin,
                    outcome: Outcome::Success,
                    target: Some(user.email.clone()),
                    ip: None,
                    user_agent: Some("mailroom admin create".to_owned()),
                    session_id: None,
                    api_key_id: None,
                    request_id: None,
                };
                database.append_audit(&event, now).await?;
                database.close().await;
                println!(
                    "created {} ({}), owner of organization {}",
                    user.email,
                    platform_role.as_str(),
                    user.org_id
                );
                Ok(())
            }
            Command::Audit { command } => {
                let database = config.open_database().await?;
                let outcome = match command {
                    AuditCommand::Verify => match database.verify_audit_chains().await? {
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
                        let before =
                            time::OffsetDateTime::now_utc() - mailroom_core::audit::RETENTION;
                        let purged = database.purge_audit(before).await?;
                        println!("purged {purged} audit entries older than 90 days");
                        Ok(())
                    }
                };
                database.close().await;
                outcome
            }
            Command::Migrate => {
                let database = config.open_database().await?;
                tracing::info!(
                    database = database.backend().name(),
                    "migrations are up to date"
                );
                database.close().await;
                Ok(())
            }
        }
    }
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
