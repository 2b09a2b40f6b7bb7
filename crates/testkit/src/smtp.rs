//! A real SMTP server for tests: aiosmtpd, run by `tests/peers/smtp_server.py`.

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;

use crate::peer_process::PeerProcess;

/// How the server behaves.
#[derive(Default)]
pub struct SmtpOptions {
    /// Offer STARTTLS with this certificate and key (PEM files), and refuse mail without it.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Require AUTH with these credentials.
    pub login: Option<(String, String)>,
    /// Answer `RCPT TO` of these addresses with these replies (`550 5.1.1 No such user`).
    pub refuse: Vec<(String, String)>,
    /// Answer `RCPT TO` of these addresses only after this long.
    pub slow: Vec<(String, Duration)>,
    /// Check each message's DKIM signature with dkimpy, the keys at this DNS server.
    pub dkim_dns: Option<std::net::SocketAddr>,
}

pub struct SmtpServer {
    process: PeerProcess,
    out: TempDir,
}

/// One accepted message: its raw RFC 5322 text, and the session it came in with the message
/// as Python's `email` package parsed it (`session["parsed"]`).
pub struct Delivered {
    pub raw: String,
    pub session: serde_json::Value,
}

impl SmtpServer {
    /// Starts the server, or `None` (a loud skip) when Python or aiosmtpd is missing.
    pub fn start(options: SmtpOptions) -> Option<Self> {
        let out = crate::tempdir();
        let process = PeerProcess::start("smtp_server.py", "aiosmtpd", |command| {
            command.arg(out.path());
            if let Some((cert, key)) = &options.tls {
                command.arg("--cert").arg(cert).arg("--key").arg(key);
            }
            if let Some((user, password)) = &options.login {
                command.args(["--user", user, "--password", password]);
            }
            for (address, reply) in &options.refuse {
                command.arg("--refuse").arg(format!("{address}={reply}"));
            }
            if let Some(dns) = options.dkim_dns {
                command.arg("--dkim-dns").arg(dns.to_string());
            }
            for (address, wait) in &options.slow {
                command
                    .arg("--slow")
                    .arg(format!("{address}={}", wait.as_secs_f64()));
            }
        })?;
        Some(Self { process, out })
    }

    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// The messages accepted so far, waiting up to five seconds for at least `count`.
    pub fn delivered(&self, count: usize) -> Vec<Delivered> {
        for _ in 0..50 {
            let messages = self.read();
            if messages.len() >= count {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.read()
    }

    fn read(&self) -> Vec<Delivered> {
        let mut messages = Vec::new();
        for n in 1.. {
            let eml = self.out.path().join(format!("{n}.eml"));
            let json = self.out.path().join(format!("{n}.json"));
            let (Ok(raw), Ok(session)) =
                (std::fs::read_to_string(eml), std::fs::read_to_string(json))
            else {
                break;
            };
            let Ok(session) = serde_json::from_str(&session) else {
                break;
            };
            messages.push(Delivered { raw, session });
        }
        messages
    }
}
