//! Mail transports. For now: mailroom's own mail (sign-up codes, alerts, invitations) sent
//! through an SMTP relay, or — with no relay configured — written as `.eml` files into an
//! outbox directory so that a single node works with no setup at all.
//!
//! Connected accounts are tested here ([`probe`] logs in to SMTP and IMAP servers, [`gmail`]
//! asks the Gmail API); sending on users' behalf and reading their mailboxes join it later.

pub mod dkim;
pub mod gmail;
pub mod outgoing;
pub mod probe;
pub mod queued;
mod smtp_url;
pub mod templates;

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use thiserror::Error;

pub use lettre::Address;
pub use smtp_url::{SmtpSecurity, SmtpSettings};
pub use templates::Rendered;

/// How long one SMTP command may take before the relay is considered gone.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections kept open to the relay.
const SMTP_POOL_SIZE: u32 = 4;

#[derive(Debug, Error)]
pub enum MailError {
    #[error("invalid SMTP URL: {0}")]
    InvalidSmtpUrl(String),
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    #[error("reading the relay's CA certificate {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("creating the outbox {path}: {source}")]
    OutboxDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing to the outbox: {0}")]
    Outbox(#[from] lettre::transport::file::Error),
}

/// TLS to the relay of `settings`: its name checked against the public roots, and against
/// the CA the settings name, if any.
pub(crate) fn tls_parameters(settings: &SmtpSettings) -> Result<TlsParameters, MailError> {
    let mut builder = TlsParameters::builder(settings.host.clone());
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(|source| MailError::CaFile {
            path: path.clone(),
            source,
        })?;
        builder = builder.add_root_certificate(Certificate::from_pem(&pem)?);
    }
    Ok(builder.build_rustls()?)
}

/// A pooled SMTP transport to the server of `settings`, with TLS and login as they say, saying
/// `hello` in EHLO (lettre's default, the machine's name, otherwise).
pub(crate) fn smtp_transport(
    settings: &SmtpSettings,
    hello: Option<&str>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let tls = match settings.security {
        SmtpSecurity::StartTls => Tls::Required(tls_parameters(settings)?),
        SmtpSecurity::ImplicitTls => Tls::Wrapper(tls_parameters(settings)?),
        SmtpSecurity::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
        .port(settings.port)
        .tls(tls)
        .timeout(Some(SMTP_TIMEOUT))
        .pool_config(PoolConfig::new().max_size(SMTP_POOL_SIZE));
    if let Some(hello) = hello {
        builder = builder.hello_name(ClientId::Domain(hello.to_owned()));
    }
    if let Some((user, password)) = &settings.credentials {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

/// Where mailroom's own messages go.
#[derive(Clone)]
pub struct SystemMail {
    from: Mailbox,
    transport: Transport,
    /// Messages composed and not yet delivered (or given up on).
    in_flight: std::sync::Arc<tokio::sync::watch::Sender<usize>>,
}

#[derive(Clone)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox {
        dir: PathBuf,
        files: AsyncFileTransport<Tokio1Executor>,
    },
}

impl SystemMail {
    /// Through an SMTP relay (pooled connections; TLS as the settings say).
    pub fn smtp(settings: &SmtpSettings, from: Mailbox) -> Result<Self, MailError> {
        Ok(Self {
            from,
            transport: Transport::Smtp(smtp_transport(settings, None)?),
            in_flight: Default::default(),
        })
    }

    /// Into `dir` (created if missing, readable by its owner only: the messages hold sign-in
    /// codes), one RFC 5322 `.eml` file per message.
    pub fn outbox(dir: &Path, from: Mailbox) -> Result<Self, MailError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|source| MailError::OutboxDir {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Self {
            from,
            transport: Transport::Outbox {
                dir: dir.to_owned(),
                files: AsyncFileTransport::new(dir),
            },
            in_flight: Default::default(),
        })
    }

    /// Sends one message with a plain-text and an HTML alternative.
    pub async fn send(&self, to: &Address, message: &Rendered) -> Result<(), MailError> {
        self.deliver(self.compose(to, message)?).await
    }

    /// The message, stamped now: its Message-ID (a UUIDv7 under our own sending domain, as
    /// receiving filters expect) orders messages by when they were composed, whenever each
    /// is delivered.
    pub fn compose(&self, to: &Address, message: &Rendered) -> Result<Composed, MailError> {
        let message_id = format!("<{}@{}>", uuid::Uuid::now_v7(), self.from.email.domain());
        let email = Message::builder()
            .message_id(Some(message_id))
            .from(self.from.clone())
            .to(Mailbox::new(None, to.clone()))
            .subject(&message.subject)
            .multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                message.html.clone(),
            ))?;
        self.in_flight.send_modify(|count| *count += 1);
        Ok(Composed {
            to: to.clone(),
            email,
            _in_flight: InFlight(std::sync::Arc::clone(&self.in_flight)),
        })
    }

    /// Waits until every message composed so far is delivered or given up on: what a test
    /// waits for before it says that some mail was not sent.
    pub async fn settled(&self) {
        let mut count = self.in_flight.subscribe();
        let _ = count.wait_for(|count| *count == 0).await;
    }

    /// Sends a composed message.
    pub async fn deliver(&self, composed: Composed) -> Result<(), MailError> {
        // The guard, bound, stays in flight until the message is out or has failed.
        let Composed {
            to,
            email,
            _in_flight,
        } = composed;
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(email).await?;
                // Never the subject or body: they may hold a code (docs/security.md#log-redaction).
                tracing::info!(to = %to, "system mail sent");
            }
            Transport::Outbox { dir, files } => {
                let id = files.send(email).await?;
                // The message may hold a code: the log names the file, never its content.
                tracing::info!(
                    to = %to,
                    file = %dir.join(format!("{id}.eml")).display(),
                    "system mail written to the outbox (no SMTP relay configured)"
                );
            }
        }
        Ok(())
    }
}

/// A message ready to deliver; in flight until dropped.
pub struct Composed {
    to: Address,
    email: Message,
    _in_flight: InFlight,
}

struct InFlight(std::sync::Arc<tokio::sync::watch::Sender<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count = count.saturating_sub(1));
    }
}

/// `Name <address>` or a bare address.
pub fn parse_mailbox(text: &str) -> Result<Mailbox, MailError> {
    text.parse()
        .map_err(|error: lettre::address::AddressError| {
            MailError::InvalidAddress(error.to_string())
        })
}
