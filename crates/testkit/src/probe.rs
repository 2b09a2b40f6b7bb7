//! A real mail exchanger for the SMTP probe's tests: aiosmtpd, run by
//! `tests/peers/smtp_probe_server.py`, answering each recipient as the test's config says and
//! counting what it saw (sessions, peak concurrency, RCPTs, DATA attempts).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use tempfile::TempDir;

use crate::peer_missing;

pub struct ProbePeer {
    child: Child,
    port: u16,
    dir: TempDir,
}

/// What the peer counted; see the script's docstring.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProbeStats {
    pub sessions: u64,
    pub max_concurrent_sessions: u64,
    pub rejected_sessions: u64,
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
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/smtp_probe_server.py");
        let dir = crate::tempdir();
        let peer_config = dir.path().join("config.json");
        std::fs::write(&peer_config, config.to_string())
            .unwrap_or_else(|error| panic!("write the peer's config: {error}"));
        let mut child = match Command::new("python3")
            .arg(&script)
            .args(["--host", host, "--port", &port.to_string()])
            .arg("--config")
            .arg(&peer_config)
            .arg("--stats")
            .arg(dir.path().join("stats.json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(error) => return peer_missing("python3 (for aiosmtpd)", &error.to_string()),
        };
        let stdout = child.stdout.take()?;
        let mut first_line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first_line);
        let Some(port) = first_line
            .strip_prefix("LISTENING ")
            .and_then(|port| port.trim().parse().ok())
        else {
            let _ = child.kill();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            return peer_missing("aiosmtpd", stderr.lines().last().unwrap_or("did not start"));
        };
        Some(Self { child, port, dir })
    }

    pub fn port(&self) -> u16 {
        self.port
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

impl Drop for ProbePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
