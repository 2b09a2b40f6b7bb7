//! A peer the tests run as a Python script of `tests/peers/` (aiosmtpd's servers, the webhook
//! receiver): started, waited for until it prints `LISTENING <port>`, and killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::peer_missing;

pub(crate) struct PeerProcess {
    child: Child,
    pub(crate) port: u16,
}

impl PeerProcess {
    /// Runs `tests/peers/<script>` with the arguments `args` adds, or `None` (a loud skip)
    /// when Python or the package it runs on (`package`) is missing.
    pub(crate) fn start(
        script: &str,
        package: &str,
        args: impl FnOnce(&mut Command),
    ) -> Option<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/peers")
            .join(script);
        let mut command = Command::new("python3");
        command.arg(&script);
        args(&mut command);
        let mut child = match command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(error) => return peer_missing("python3", &error.to_string()),
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
            return peer_missing(package, stderr.lines().last().unwrap_or("did not start"));
        };
        Some(Self { child, port })
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
