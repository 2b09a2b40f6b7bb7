//! The `mailroom` binary: parses the command line and hands over to the library crates.

mod cli;
mod settings;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Logging may not be set up yet (a bad config file), so errors go to stderr.
            eprintln!("mailroom: {error:#}");
            ExitCode::FAILURE
        }
    }
}
