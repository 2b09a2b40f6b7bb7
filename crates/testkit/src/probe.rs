//! A real mail exchanger for the SMTP probe's tests: aiosmtpd, run by
//! `tests/peers/smtp_probe_server.py`, answering each recipient as the test's config says and
//! counting what it saw (sessions, peak concurrency, RCPTs, DATA attempts).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tempfile::TempDir;

use crate::peer_process::PeerProcess;

pub struct ProbePeer {
    process: PeerProcess,
    dir: TempDir,
}

/// What the peer counted; see the script's docstring.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProbeStats {
    pub sessions: u64,
    pub max_concurrent_sessions: u64,
    pub rejected_sessions: u64,
    pub dropped_sessions: u64,
    pub rcpt: u64,
    pub rcpt_per_session_max: u64,
    pub rcpt_per_transaction_max: u64,
    pub rset: u64,
    pub data_attempts: u64,
    pub quit: u64,
    pub helo_names: Vec<String>,
    pub mail_from: Vec<String>,
    pub rcpts: Vec<String>,
}

impl ProbePeer {
    /// Starts a peer on `host` (a 127.0.0.x address) and `port` (0: any free one), or `None`
    /// (a loud skip) when Python or aiosmtpd is missing.
    pub fn start(host: &str, port: u16, config: &serde_json::Value) -> Option<Self> {
        let dir = crate::tempdir();
        let peer_config = dir.path().join("config.json");
        std::fs::write(&peer_config, config.to_string())
            .unwrap_or_else(|error| panic!("write the peer's config: {error}"));
        let stats = dir.path().join("stats.json");
        let process = PeerProcess::start("smtp_probe_server.py", "aiosmtpd", |command| {
            command
                .args(["--host", host, "--port", &port.to_string()])
                .arg("--config")
                .arg(&peer_config)
                .arg("--stats")
                .arg(&stats);
        })?;
        Some(Self { process, dir })
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// Replaces the config; the peer reads it at its next connection.
    pub fn set_config(&self, config: &serde_json::Value) {
        let path = self.config_path();
        let staged = path.with_extension("new");
        std::fs::write(&staged, config.to_string())
            .unwrap_or_else(|error| panic!("write the peer's config: {error}"));
        std::fs::rename(staged, path)
            .unwrap_or_else(|error| panic!("replace the peer's config: {error}"));
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    /// The counts once every session has ended (waiting up to five seconds for that).
    pub fn stats(&self) -> ProbeStats {
        let read = || -> Option<(ProbeStats, u64)> {
            let text = std::fs::read_to_string(self.dir.path().join("stats.json")).ok()?;
            let value: serde_json::Value = serde_json::from_str(&text).ok()?;
            let open = value.get("concurrent_now")?.as_u64()?;
            Some((serde_json::from_value(value).ok()?, open))
        };
        for _ in 0..50 {
            if let Some((stats, 0)) = read() {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        read().map(|(stats, _)| stats).unwrap_or_default()
    }
}
