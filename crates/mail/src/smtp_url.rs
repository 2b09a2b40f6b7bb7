//! `--system-mail-smtp-url`: one URL says where the relay is, how to secure the connection and how to log
//! in, as operators write it: `smtp://user:pass@relay.example.com:587` (STARTTLS, required),
//! `smtps://…:465` (TLS from the first byte), or `smtp://relay:25?tls=none` for a relay on a
//! trusted local network only.

use std::path::PathBuf;

use secrecy::SecretString;
use url::Url;

use crate::MailError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// STARTTLS, and the message is not sent if the relay cannot do it.
    StartTls,
    /// TLS from the first byte (`smtps://`).
    ImplicitTls,
    /// No TLS at all (`?tls=none`): the password and the mail cross the network in clear.
    None,
}

#[derive(Clone, Debug)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub credentials: Option<(String, SecretString)>,
    /// A CA certificate (PEM) to trust for the relay, besides the public roots.
    pub ca_file: Option<PathBuf>,
}

impl SmtpSettings {
    pub fn parse(raw: &str, ca_file: Option<PathBuf>) -> Result<Self, MailError> {
        // Errors never quote the URL: it holds a password.
        let url = Url::parse(raw)
            .map_err(|error| MailError::InvalidSmtpUrl(format!("not a URL ({error})")))?;
        let (default_port, mut security) = match url.scheme() {
            "smtp" => (587, SmtpSecurity::StartTls),
            "smtps" => (465, SmtpSecurity::ImplicitTls),
            other => {
                return Err(MailError::InvalidSmtpUrl(format!(
                    "scheme `{other}`: use smtp:// or smtps://"
                )));
            }
        };
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref()) {
                ("tls", "none") if security == SmtpSecurity::StartTls => {
                    security = SmtpSecurity::None;
                }
                ("tls", "required") if security == SmtpSecurity::StartTls => {}
                (key, value) => {
                    return Err(MailError::InvalidSmtpUrl(format!(
                        "unsupported parameter `{key}={value}` (smtp:// takes tls=required or tls=none)"
                    )));
                }
            }
        }
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| MailError::InvalidSmtpUrl("no host".to_owned()))?
            .trim_matches(['[', ']'])
            .to_owned();
        let credentials = if url.username().is_empty() {
            None
        } else {
            let decode = |part: &str| {
                percent_decode(part)
                    .ok_or_else(|| MailError::InvalidSmtpUrl("user info is not valid UTF-8".into()))
            };
            let user = decode(url.username())?;
            let password = decode(url.password().unwrap_or(""))?;
            Some((user, SecretString::from(password)))
        };
        Ok(Self {
            host,
            port: url.port().unwrap_or(default_port),
            security,
            credentials,
            ca_file,
        })
    }
}

fn percent_decode(part: &str) -> Option<String> {
    percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn smtp_means_required_starttls_on_587() {
        let s = SmtpSettings::parse("smtp://me%40x.test:p%2Fss@relay.example.com", None).unwrap();
        assert_eq!(s.host, "relay.example.com");
        assert_eq!(s.port, 587);
        assert_eq!(s.security, SmtpSecurity::StartTls);
        let (user, password) = s.credentials.unwrap();
        assert_eq!(user, "me@x.test");
        assert_eq!(password.expose_secret(), "p/ss");
    }

    #[test]
    fn smtps_and_plain() {
        let s = SmtpSettings::parse("smtps://relay.example.com", None).unwrap();
        assert_eq!((s.port, s.security), (465, SmtpSecurity::ImplicitTls));
        assert!(s.credentials.is_none());
        let s = SmtpSettings::parse("smtp://127.0.0.1:2525?tls=none", None).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.security),
            ("127.0.0.1", 2525, SmtpSecurity::None)
        );
    }

    #[test]
    fn bad_urls_are_refused_without_quoting_them() {
        for bad in [
            "http://u:secret-pw@relay",
            "smtps://u:secret-pw@relay?tls=none",
            "smtp://u:secret-pw@relay?foo=bar",
            "smtp://u:secret-pw@",
        ] {
            let error = SmtpSettings::parse(bad, None).unwrap_err().to_string();
            assert!(!error.contains("secret-pw"), "{error}");
        }
    }
}
