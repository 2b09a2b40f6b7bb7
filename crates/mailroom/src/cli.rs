//! Subcommands. Each is a few lines that resolve the configuration and call a library crate.

use clap::{Parser, Subcommand};
use mailroom_server::{App, telemetry};

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
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
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
                app.run_until(shutdown).await
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
