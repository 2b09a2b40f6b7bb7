//! A SOCKS5 proxy for the tests of `--verify-probe-proxy`: `tests/peers/socks5_server.py` (standard
//! library only), relaying each CONNECT and counting them, so that a test can tell that the
//! SMTP probes went through the proxy and that none went direct.

use std::time::Duration;

use serde::Deserialize;
use tempfile::TempDir;

use crate::peer_process::PeerProcess;

pub struct SocksPeer {
    process: PeerProcess,
    dir: TempDir,
    credentials: Option<(String, String)>,
}

/// What the proxy counted; see the script's docstring.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SocksStats {
    /// TCP connections accepted, whatever became of them.
    pub connections: u64,
    /// Wrong username/password, or no acceptable method offered.
    pub auth_failures: u64,
    /// CONNECT requests granted and relayed.
    pub connects: u64,
    /// CONNECT requests whose target could not be reached.
    pub refused: u64,
    /// Every CONNECT target as requested, `host:port` (`[v6]:port`), in order.
    pub targets: Vec<String>,
    /// Relays open when the stats were written.
    pub open_now: u64,
}

impl SocksPeer {
    /// Starts a proxy on 127.0.0.1 (any free port) that demands `credentials` (username,
    /// password), or no authentication when `None`; or `None` (a loud skip) when Python is
    /// missing.
    pub fn start(credentials: Option<(&str, &str)>) -> Option<Self> {
        let dir = crate::tempdir();
        let stats = dir.path().join("stats.json");
        let process = PeerProcess::start("socks5_server.py", "python3", |command| {
            command
                .args(["--host", "127.0.0.1", "--port", "0"])
                .arg("--stats")
                .arg(&stats);
            if let Some((user, password)) = credentials {
                command.args(["--user", user, "--password", password]);
            }
        })?;
        let credentials =
            credentials.map(|(user, password)| (user.to_owned(), password.to_owned()));
        Some(Self {
            process,
            dir,
            credentials,
        })
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// The proxy as `[verify] proxy` takes it: `socks5://user:pass@127.0.0.1:PORT`, the
    /// userinfo percent-encoded, or without it when the proxy needs no authentication.
    pub fn url(&self) -> String {
        let port = self.port();
        match &self.credentials {
            Some((user, password)) => format!(
                "socks5://{}:{}@127.0.0.1:{port}",
                percent_encode(user),
                percent_encode(password)
            ),
            None => format!("socks5://127.0.0.1:{port}"),
        }
    }

    /// The counts once every relay has ended (waiting up to five seconds for that), so that a
    /// client that has just closed its connection finds it counted.
    pub fn stats(&self) -> SocksStats {
        let read = || -> Option<SocksStats> {
            let text = std::fs::read_to_string(self.dir.path().join("stats.json")).ok()?;
            serde_json::from_str(&text).ok()
        };
        for _ in 0..50 {
            if let Some(stats) = read().filter(|stats| stats.open_now == 0) {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        read().unwrap_or_default()
    }
}

/// Everything but RFC 3986's unreserved characters, so that any username or password survives
/// the URL.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
