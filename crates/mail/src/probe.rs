//! Connection tests of mail servers, step by step, as an operator reads them. SMTP: what the server
//! answered to EHLO, STARTTLS when the settings ask for it, AUTH when they hold credentials,
//! and QUIT. Nothing is sent.

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use secrecy::ExposeSecret;

use crate::{SMTP_TIMEOUT, SmtpSecurity, SmtpSettings, tls_parameters};

/// One step of the conversation and what the server said to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub step: &'static str,
    pub reply: String,
}

/// What a connection test found: every step taken, and why it stopped, if it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionCheck {
    pub exchanges: Vec<Exchange>,
    pub error: Option<String>,
}

impl ConnectionCheck {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// Connects to the server of `settings`, saying `hello` in EHLO, and logs in as they say.
pub async fn check_smtp(settings: &SmtpSettings, hello: &str) -> ConnectionCheck {
    let mut exchanges = Vec::new();
    // The whole conversation, not only the connect: a server that accepts and then stays
    // silent must not hold the test forever.
    let outcome =
        tokio::time::timeout(SMTP_TIMEOUT, converse(settings, hello, &mut exchanges)).await;
    let error = match outcome {
        Ok(outcome) => outcome.err(),
        Err(_) => Some("the server did not answer in time".to_owned()),
    };
    ConnectionCheck { exchanges, error }
}

async fn converse(
    settings: &SmtpSettings,
    hello: &str,
    exchanges: &mut Vec<Exchange>,
) -> Result<(), String> {
    let hello = ClientId::Domain(hello.to_owned());
    let tls = match settings.security {
        SmtpSecurity::None => None,
        SmtpSecurity::StartTls | SmtpSecurity::ImplicitTls => {
            Some(tls_parameters(settings).map_err(|error| error.to_string())?)
        }
    };
    let implicit = match settings.security {
        SmtpSecurity::ImplicitTls => tls.clone(),
        SmtpSecurity::StartTls | SmtpSecurity::None => None,
    };
    let mut connection = AsyncSmtpConnection::connect_tokio1(
        (settings.host.as_str(), settings.port),
        Some(SMTP_TIMEOUT),
        &hello,
        implicit,
        None,
    )
    .await
    .map_err(|error| format!("connect: {error}"))?;
    exchanges.push(Exchange {
        step: "ehlo",
        reply: connection.server_info().to_string(),
    });
    if let (SmtpSecurity::StartTls, Some(tls)) = (settings.security, tls) {
        if !connection.can_starttls() {
            connection.abort().await;
            return Err("starttls: the server does not offer STARTTLS".to_owned());
        }
        connection
            .starttls(tls, &hello)
            .await
            .map_err(|error| format!("starttls: {error}"))?;
        exchanges.push(Exchange {
            step: "starttls",
            reply: connection.server_info().to_string(),
        });
    }
    if let Some((user, password)) = &settings.credentials {
        let credentials = Credentials::new(user.clone(), password.expose_secret().to_owned());
        match connection
            .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
            .await
        {
            Ok(response) => exchanges.push(Exchange {
                step: "auth",
                reply: said(&response),
            }),
            Err(error) => {
                connection.abort().await;
                return Err(format!("auth: {error}"));
            }
        }
    }
    let goodbye = connection
        .quit()
        .await
        .map_err(|error| format!("quit: {error}"))?;
    exchanges.push(Exchange {
        step: "quit",
        reply: said(&goodbye),
    });
    Ok(())
}

fn said(response: &Response) -> String {
    let lines: Vec<&str> = response.message().collect();
    format!("{} {}", response.code(), lines.join(" "))
}

/// How a connection to an IMAP server is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImapSecurity {
    /// TLS from the first byte (port 993).
    Tls,
    /// STARTTLS, required, before the password is sent.
    StartTls,
    /// No TLS: for a server on a trusted network only.
    None,
}

/// Where an IMAP server is and whom to log in as.
#[derive(Clone, Debug)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub security: ImapSecurity,
    pub username: String,
    pub password: secrecy::SecretString,
    /// A CA certificate (PEM) to trust for the server, besides the public roots.
    pub ca_file: Option<std::path::PathBuf>,
}

/// A connection test of an IMAP server: the greeting, STARTTLS when asked, LOGIN, CAPABILITY
/// and LOGOUT, with what the server said. Nothing is read or changed.
pub async fn check_imap(settings: &ImapSettings) -> ConnectionCheck {
    let mut exchanges = Vec::new();
    let outcome = tokio::time::timeout(SMTP_TIMEOUT, imap_converse(settings, &mut exchanges)).await;
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error),
        Err(_) => Some("the server did not answer in time".to_owned()),
    };
    ConnectionCheck { exchanges, error }
}

async fn imap_converse(
    settings: &ImapSettings,
    exchanges: &mut Vec<Exchange>,
) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect((settings.host.as_str(), settings.port))
        .await
        .map_err(|error| format!("connect: {error}"))?;
    match settings.security {
        ImapSecurity::None => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client, exchanges).await?;
            imap_session(client, settings, exchanges).await
        }
        ImapSecurity::Tls => {
            let tls = tls_stream(tcp, settings).await?;
            let mut client = async_imap::Client::new(tls);
            greeting(&mut client, exchanges).await?;
            imap_session(client, settings, exchanges).await
        }
        ImapSecurity::StartTls => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client, exchanges).await?;
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|error| format!("starttls: {error}"))?;
            exchanges.push(Exchange {
                step: "starttls",
                reply: "OK".to_owned(),
            });
            let tls = tls_stream(client.into_inner(), settings).await?;
            // No greeting after STARTTLS.
            imap_session(async_imap::Client::new(tls), settings, exchanges).await
        }
    }
}

async fn greeting<S>(
    client: &mut async_imap::Client<S>,
    exchanges: &mut Vec<Exchange>,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let greeting = client
        .read_response()
        .await
        .map_err(|error| format!("greeting: {error}"))?
        .ok_or_else(|| "greeting: the server closed the connection".to_owned())?;
    exchanges.push(Exchange {
        step: "greeting",
        reply: greeting_text(greeting.parsed()),
    });
    Ok(())
}

/// The human part of a greeting (`* OK [CAPABILITY …] Dovecot ready.`): its status and text.
fn greeting_text(response: &async_imap::imap_proto::Response<'_>) -> String {
    match response {
        async_imap::imap_proto::Response::Data { status, outcome } => format!(
            "{status:?} {}",
            outcome.information.as_deref().unwrap_or_default()
        ),
        other => format!("{other:?}"),
    }
}

async fn imap_session<S>(
    client: async_imap::Client<S>,
    settings: &ImapSettings,
    exchanges: &mut Vec<Exchange>,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let mut session = client
        .login(&settings.username, settings.password.expose_secret())
        .await
        .map_err(|(error, _)| format!("login: {error}"))?;
    exchanges.push(Exchange {
        step: "login",
        reply: "OK".to_owned(),
    });
    let capabilities = session
        .capabilities()
        .await
        .map_err(|error| format!("capability: {error}"))?;
    let mut names: Vec<String> = capabilities
        .iter()
        .map(|capability| format!("{capability:?}"))
        .collect();
    names.sort();
    exchanges.push(Exchange {
        step: "capability",
        reply: names.join(" "),
    });
    session
        .logout()
        .await
        .map_err(|error| format!("logout: {error}"))?;
    exchanges.push(Exchange {
        step: "logout",
        reply: "OK".to_owned(),
    });
    Ok(())
}

/// TLS to the server of `settings` over `tcp`, its certificate checked against the public
/// roots and the CA the settings name, if any.
async fn tls_stream(
    tcp: tokio::net::TcpStream,
    settings: &ImapSettings,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = tokio_rustls::rustls::RootCertStore::from_iter(
        webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
    );
    if let Some(path) = &settings.ca_file {
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|error| format!("tls: the CA file {}: {error}", path.display()))?;
        for certificate in certificates {
            let certificate = certificate
                .map_err(|error| format!("tls: the CA file {}: {error}", path.display()))?;
            roots
                .add(certificate)
                .map_err(|error| format!("tls: the CA file {}: {error}", path.display()))?;
        }
    }
    let host = settings.host.as_str();
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| format!("tls: {error}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|error| format!("tls: {error}"))?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|error| format!("tls: {error}"))
}
