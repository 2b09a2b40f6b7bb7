//! A real IMAP server for tests: Debian's dovecot (`dovecot-imapd`), run in the foreground
//! with a configuration of its own in a temporary directory, one passwd-file user, plain IMAP on
//! a loopback port. Killed when dropped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::peer_missing;

pub struct ImapServer {
    child: Child,
    port: u16,
    _dir: TempDir,
}

/// The one user the server knows.
pub const IMAP_USER: &str = "reader@example.test";
pub const IMAP_PASSWORD: &str = "imap-pass-9xK";

/// How the server behaves.
#[derive(Default)]
pub struct ImapOptions {
    /// Offer STARTTLS with this certificate and key (PEM files), and refuse LOGIN without it.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl ImapServer {
    /// Starts dovecot with plain IMAP, or `None` (a loud skip) when it is not installed.
    pub fn start() -> Option<Self> {
        Self::start_with(ImapOptions::default())
    }

    /// Starts dovecot as `options` say, or `None` (a loud skip) when it is not installed.
    pub fn start_with(options: ImapOptions) -> Option<Self> {
        let dovecot = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists());
        let Some(dovecot) = dovecot else {
            return peer_missing("dovecot (dovecot-imapd)", "not installed");
        };
        let dir = crate::tempdir();
        let root = dir.path();
        // The mail processes run as the mailboxes' owner, who must reach their home in it.
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).ok()?;
        for sub in ["run", "state", "home"] {
            std::fs::create_dir_all(root.join(sub)).ok()?;
        }
        // A port the kernel gave us a moment ago; dovecot binds it next.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        std::fs::write(
            root.join("users"),
            format!("{IMAP_USER}:{{PLAIN}}{IMAP_PASSWORD}::::::\n"),
        )
        .ok()?;
        let (uid, gid) = mail_owner(&root.join("home"))?;
        let tls = match &options.tls {
            Some((cert, key)) => format!(
                "ssl = required\nssl_cert = <{}\nssl_key = <{}\ndisable_plaintext_auth = yes\n",
                cert.display(),
                key.display()
            ),
            None => "ssl = no\ndisable_plaintext_auth = no\n".to_owned(),
        };
        let config = format!(
            "protocols = imap\n\
             listen = 127.0.0.1\n\
             base_dir = {root}/run\n\
             state_dir = {root}/state\n\
             log_path = {root}/dovecot.log\n\
             {tls}\
             auth_mechanisms = plain login\n\
             mail_location = maildir:{root}/home/%u/Maildir\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {root}/users\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={root}/home/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service stats {{\n  unix_listener stats-writer {{\n    mode = 0666\n  }}\n}}\n",
            root = root.display()
        );
        let config_path = root.join("dovecot.conf");
        std::fs::write(&config_path, config).ok()?;
        let child = match Command::new(dovecot)
            .arg("-F")
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(error) => return peer_missing("dovecot", &error.to_string()),
        };
        let mut server = Self {
            child,
            port,
            _dir: dir,
        };
        // Ready when its port answers (or gone, with its reason).
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            if let Ok(Some(_)) = server.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = server.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                return peer_missing("dovecot", stderr.lines().last().unwrap_or("exited"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        peer_missing("dovecot", "its port never answered")
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Who the mailboxes under `home` belong to: whoever runs the tests, unless that is root,
/// whom dovecot never lets own mail; then `nobody`, given `home`.
fn mail_owner(home: &std::path::Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(home).ok()?;
    if metadata.uid() != 0 {
        return Some((metadata.uid(), metadata.gid()));
    }
    const NOBODY: u32 = 65534;
    std::os::unix::fs::chown(home, Some(NOBODY), Some(NOBODY)).ok()?;
    Some((NOBODY, NOBODY))
}

impl Drop for ImapServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
