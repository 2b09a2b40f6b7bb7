//! Probing from where port 25 is open: cloud hosts block it outbound, so an operator may send
//! every SMTP probe through a SOCKS5 proxy (RFC 1928, with RFC 1929's username and password),
//! or some mail hosts' probes through a proxy of their own. The proxy is asked for the mail
//! host's address, never its name: the private-network guard has judged that address first.

use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;

/// One SOCKS5 proxy: where it listens, and the credentials it asks for (a secret: never
/// shown, in `Debug` or anywhere else).
#[derive(Clone)]
pub struct Proxy {
    host: String,
    port: u16,
    credentials: Option<(String, SecretString)>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("a proxy is socks5://[user:password@]host:port")]
    Form,
}

/// Why a connection through the proxy failed.
pub(crate) enum Refusal {
    /// The proxy could not reach the mail host, which refused the connection.
    TargetRefused,
    /// The proxy itself failed: unreachable, refused our credentials, or broke its protocol.
    Proxy(String),
}

impl Proxy {
    /// `socks5://[user:password@]host:port`, the user and password percent-encoded.
    pub fn parse(text: &str) -> Result<Self, ProxyError> {
        let url = url::Url::parse(text).map_err(|_| ProxyError::Form)?;
        let host = url.host_str().ok_or(ProxyError::Form)?;
        let port = url.port().ok_or(ProxyError::Form)?;
        if url.scheme() != "socks5" || !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(ProxyError::Form);
        }
        let decoded = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|text| text.into_owned())
                .map_err(|_| ProxyError::Form)
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, Some(password)) if !user.is_empty() => {
                Some((decoded(user)?, SecretString::from(decoded(password)?)))
            }
            _ => return Err(ProxyError::Form),
        };
        Ok(Proxy {
            // An IPv6 literal comes bracketed; the proxy's address is looked up without them.
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            credentials,
        })
    }

    /// A connection to `target` through the proxy, ready for SMTP.
    pub(crate) async fn connect(&self, target: SocketAddr) -> Result<TcpStream, Refusal> {
        use tokio_socks::tcp::Socks5Stream;
        let proxy = (self.host.as_str(), self.port);
        let stream = match &self.credentials {
            None => Socks5Stream::connect(proxy, target).await,
            Some((user, password)) => {
                Socks5Stream::connect_with_password(proxy, target, user, password.expose_secret())
                    .await
            }
        };
        match stream {
            Ok(stream) => Ok(stream.into_inner()),
            Err(tokio_socks::Error::ConnectionRefused) => Err(Refusal::TargetRefused),
            Err(error) => Err(Refusal::Proxy(error.to_string())),
        }
    }
}

/// Which proxy each mail host's probes go through: the proxy of the longest suffix that ends
/// the host's name (`google.com` takes `aspmx.l.google.com`), else the default; with neither,
/// the probe connects directly.
#[derive(Clone, Debug, Default)]
pub struct Proxies {
    pub default: Option<Proxy>,
    pub by_mx_suffix: Vec<(String, Proxy)>,
}

impl Proxies {
    pub(crate) fn for_host(&self, mx: &str) -> Option<&Proxy> {
        self.by_mx_suffix
            .iter()
            .filter(|(suffix, _)| ends_with_labels(mx, suffix))
            .max_by_key(|(suffix, _)| suffix.len())
            .map(|(_, proxy)| proxy)
            .or(self.default.as_ref())
    }
}

/// Whether the host name `name` is `suffix` or ends with its labels (`mx.google.com` ends
/// with `google.com`, `notgoogle.com` does not), whatever the case and final dots.
pub(crate) fn ends_with_labels(name: &str, suffix: &str) -> bool {
    let name = name.trim_end_matches('.');
    let suffix = suffix.trim_start_matches('.').trim_end_matches('.');
    match name.len().checked_sub(suffix.len()) {
        Some(0) => name.eq_ignore_ascii_case(suffix),
        Some(start) => {
            name.as_bytes()[start - 1] == b'.'
                && name
                    .get(start..)
                    .is_some_and(|end| end.eq_ignore_ascii_case(suffix))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_is_a_socks5_url_and_its_password_is_never_shown() {
        let proxy = Proxy::parse("socks5://probe:p%40ss%3Aword@proxy.example:1080").unwrap();
        assert_eq!((proxy.host.as_str(), proxy.port), ("proxy.example", 1080));
        let (user, password) = proxy.credentials.as_ref().unwrap();
        assert_eq!(
            (user.as_str(), password.expose_secret()),
            ("probe", "p@ss:word")
        );
        let shown = format!("{proxy:?}");
        assert!(
            !shown.contains("p@ss") && !shown.contains("word"),
            "{shown}"
        );
        assert!(
            Proxy::parse("socks5://[::1]:1080")
                .unwrap()
                .credentials
                .is_none()
        );
        for wrong in [
            "http://proxy.example:1080",
            "socks5://proxy.example",
            "socks5://user@proxy.example:1080",
            "socks5://proxy.example:1080/path",
            "proxy.example:1080",
        ] {
            assert_eq!(Proxy::parse(wrong).err(), Some(ProxyError::Form), "{wrong}");
        }
    }

    #[test]
    fn a_mail_host_takes_the_proxy_of_its_longest_suffix_else_the_default() {
        let proxy = |port: u16| Proxy::parse(&format!("socks5://127.0.0.1:{port}")).unwrap();
        let proxies = Proxies {
            default: Some(proxy(1)),
            by_mx_suffix: vec![
                ("google.com".into(), proxy(2)),
                ("l.google.com".into(), proxy(3)),
                (".outlook.com".into(), proxy(4)),
            ],
        };
        let port = |mx: &str| proxies.for_host(mx).map(|proxy| proxy.port);
        assert_eq!(port("aspmx.l.google.com."), Some(3));
        assert_eq!(port("alt1.aspmx.google.com"), Some(2));
        assert_eq!(port("GOOGLE.com"), Some(2));
        assert_eq!(port("x.mail.protection.outlook.com"), Some(4));
        assert_eq!(port("notgoogle.com"), Some(1), "a suffix ends at a label");
        assert!(Proxies::default().for_host("mx.example").is_none());
    }
}
