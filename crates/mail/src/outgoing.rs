//! Mail an organization sends through its own accounts: the message composed (RFC 5322 and
//! MIME by lettre's builder: encoded words for non-ASCII headers, quoted-printable or base64
//! bodies, multipart/alternative and multipart/mixed), and delivered over SMTP one
//! transaction per recipient on one connection, so that a recipient refused at `RCPT` fails
//! alone and the others still get it.

use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{Address, AsyncTransport, Message};
use thiserror::Error;

use crate::SmtpSettings;

/// A message to compose. Addresses are checked already, ASCII (IDN domains in A-labels).
pub struct Outgoing {
    pub from: (Option<String>, String),
    pub reply_to: Vec<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// Written as a header only for a transport that reads its recipients from the message
    /// and drops it (Gmail's); an SMTP envelope carries them otherwise.
    pub bcc_header: Vec<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Custom headers, allowed already.
    pub headers: Vec<(String, String)>,
    pub attachments: Vec<OutgoingAttachment>,
    /// `<unique@sender.domain>`.
    pub message_id: String,
}

pub struct OutgoingAttachment {
    pub filename: String,
    pub content_type: String,
    pub content: Vec<u8>,
    /// Shown inline, referred to by `cid:` from the HTML.
    pub content_id: Option<String>,
}

#[derive(Debug, Error)]
pub enum ComposeError {
    #[error("{field}: {reason}")]
    Address { field: &'static str, reason: String },
    #[error("the header {0} cannot be written")]
    Header(String),
    #[error("the content type {0:?} is not a MIME type")]
    ContentType(String),
    #[error("the message could not be built: {0}")]
    Build(String),
}

fn address(field: &'static str, text: &str) -> Result<Address, ComposeError> {
    text.parse().map_err(
        |error: lettre::address::AddressError| ComposeError::Address {
            field,
            reason: error.to_string(),
        },
    )
}

/// The message as it goes out.
pub fn compose(message: &Outgoing) -> Result<Vec<u8>, ComposeError> {
    let (name, from) = &message.from;
    let from = Mailbox::new(name.clone(), address("from", from)?);
    let mut builder = Message::builder()
        .message_id(Some(message.message_id.clone()))
        .from(from);
    for reply_to in &message.reply_to {
        builder = builder.reply_to(Mailbox::new(None, address("reply_to", reply_to)?));
    }
    for to in &message.to {
        builder = builder.to(Mailbox::new(None, address("to", to)?));
    }
    for cc in &message.cc {
        builder = builder.cc(Mailbox::new(None, address("cc", cc)?));
    }
    for bcc in &message.bcc_header {
        builder = builder.bcc(Mailbox::new(None, address("bcc", bcc)?));
    }
    if !message.bcc_header.is_empty() {
        builder = builder.keep_bcc();
    }
    if let Some(subject) = &message.subject {
        builder = builder.subject(subject.clone());
    }
    for (name, value) in &message.headers {
        let header = HeaderName::new_from_ascii(name.clone())
            .map_err(|_| ComposeError::Header(name.clone()))?;
        builder = builder.raw_header(HeaderValue::new(header, value.clone()));
    }
    // The envelope is each delivery's own (one recipient at a time); the builder wants one.
    let envelope_from = message.from.1.as_str();
    builder = builder.envelope(
        Envelope::new(
            Some(address("from", envelope_from)?),
            vec![address("from", envelope_from)?],
        )
        .map_err(|error| ComposeError::Build(error.to_string()))?,
    );
    let body = match (&message.text, &message.html) {
        (Some(text), Some(html)) => Body::Multi(MultiPart::alternative_plain_html(
            text.clone(),
            html.clone(),
        )),
        (Some(text), None) => Body::Single(SinglePart::plain(text.clone())),
        (None, Some(html)) => Body::Single(SinglePart::html(html.clone())),
        (None, None) => Body::Single(SinglePart::plain(String::new())),
    };
    let email = if message.attachments.is_empty() {
        match body {
            Body::Multi(multi) => builder.multipart(multi),
            Body::Single(single) => builder.singlepart(single),
        }
    } else {
        let mut mixed = match body {
            Body::Multi(multi) => MultiPart::mixed().multipart(multi),
            Body::Single(single) => MultiPart::mixed().singlepart(single),
        };
        for attachment in &message.attachments {
            let content_type = ContentType::parse(&attachment.content_type)
                .map_err(|_| ComposeError::ContentType(attachment.content_type.clone()))?;
            let part = match &attachment.content_id {
                Some(id) => {
                    Attachment::new_inline_with_name(id.clone(), attachment.filename.clone())
                }
                None => Attachment::new(attachment.filename.clone()),
            };
            mixed = mixed.singlepart(part.body(attachment.content.clone(), content_type));
        }
        builder.multipart(mixed)
    }
    .map_err(|error| ComposeError::Build(error.to_string()))?;
    Ok(email.formatted())
}

enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

/// What became of one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// A temporary refusal (4xx), or no answer: tried again later.
    Deferred,
    /// A permanent refusal (5xx).
    Failed,
}

/// Each connected account's [`SmtpSender`], kept from one message to the next so that its
/// connections are reused; made afresh when the account's server or login changes.
#[derive(Default)]
pub struct SmtpSenders {
    senders: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, ([u8; 32], SmtpSender)>>,
}

impl SmtpSenders {
    /// The sender of account `account` for `settings`.
    pub fn get(
        &self,
        account: uuid::Uuid,
        settings: &SmtpSettings,
        hello: &str,
    ) -> Result<SmtpSender, crate::MailError> {
        let fingerprint = fingerprint(settings, hello);
        let mut senders = self
            .senders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((kept, sender)) = senders.get(&account)
            && *kept == fingerprint
        {
            return Ok(sender.clone());
        }
        let sender = SmtpSender::new(settings, hello)?;
        senders.insert(account, (fingerprint, sender.clone()));
        Ok(sender)
    }
}

/// The messages each account is sending at once on this node, up to its concurrency.
#[derive(Default)]
pub struct SendSlots {
    slots: std::sync::Mutex<
        std::collections::HashMap<uuid::Uuid, (u32, std::sync::Arc<tokio::sync::Semaphore>)>,
    >,
}

impl SendSlots {
    /// A slot of account `account` (of `concurrency` slots), held until dropped; `None` when
    /// every slot is taken.
    pub fn try_take(
        &self,
        account: uuid::Uuid,
        concurrency: u32,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = {
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match slots.get(&account) {
                Some((kept, semaphore)) if *kept == concurrency => std::sync::Arc::clone(semaphore),
                // New, or the account's concurrency changed: new slots (the old ones drain).
                _ => {
                    let permits = usize::try_from(concurrency).unwrap_or(1);
                    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(permits));
                    slots.insert(account, (concurrency, std::sync::Arc::clone(&semaphore)));
                    semaphore
                }
            }
        };
        semaphore.try_acquire_owned().ok()
    }
}

/// What tells one server and login from another, without keeping the password.
fn fingerprint(settings: &SmtpSettings, hello: &str) -> [u8; 32] {
    use secrecy::ExposeSecret;
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [
        settings.host.as_str(),
        &settings.port.to_string(),
        &format!("{:?}", settings.security),
        settings.credentials.as_ref().map_or("", |(user, _)| user),
        settings
            .credentials
            .as_ref()
            .map_or("", |(_, password)| password.expose_secret()),
        &format!("{:?}", settings.ca_file),
        hello,
    ] {
        hash.update(part.len().to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

/// One recipient's delivery, and what the server said of it.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub recipient: String,
    pub delivery: Delivery,
    pub reply: String,
    /// RFC 3463's `x.y.z`, when the reply has one.
    pub enhanced_code: Option<String>,
    /// Refused for good by the recipient's side (not for a reason of the sender's): it goes
    /// on the suppression list.
    pub bounced: bool,
}

/// An SMTP server to deliver messages through, one transaction per recipient on pooled
/// connections, saying `hello` in EHLO. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct SmtpSender {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
}

impl SmtpSender {
    pub fn new(settings: &SmtpSettings, hello: &str) -> Result<Self, crate::MailError> {
        Ok(Self {
            transport: crate::smtp_transport(settings, Some(hello))?,
        })
    }

    /// Delivers `raw` from `from` (the envelope's sender) to `recipient` alone: what the
    /// server said of it.
    pub async fn send_to(&self, from: &str, recipient: &str, raw: &[u8]) -> Delivered {
        let refused = |reply: String| Delivered {
            recipient: recipient.to_owned(),
            delivery: Delivery::Failed,
            reply,
            enhanced_code: None,
            bounced: false,
        };
        let to = match recipient.parse::<Address>() {
            Ok(to) => to,
            Err(error) => return refused(error.to_string()),
        };
        let from = match from.parse::<Address>() {
            Ok(from) => from,
            Err(error) => return refused(error.to_string()),
        };
        let envelope = match Envelope::new(Some(from), vec![to]) {
            Ok(envelope) => envelope,
            Err(error) => return refused(error.to_string()),
        };
        match self.transport.send_raw(&envelope, raw).await {
            Ok(response) => {
                let reply = format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                );
                Delivered {
                    recipient: recipient.to_owned(),
                    delivery: Delivery::Sent,
                    enhanced_code: enhanced_code(&reply),
                    reply,
                    bounced: false,
                }
            }
            Err(error) => {
                let reply = error.to_string();
                Delivered {
                    recipient: recipient.to_owned(),
                    delivery: if error.is_permanent() {
                        Delivery::Failed
                    } else {
                        Delivery::Deferred
                    },
                    bounced: error.is_permanent() && names_the_recipient(&reply),
                    enhanced_code: enhanced_code(&reply),
                    reply,
                }
            }
        }
    }
}

/// Whether a permanent refusal is about the recipient (RFC 3463's 5.1.x, a bad destination
/// address, and 5.2.1, a disabled mailbox), not about the sender, the login or the message:
/// only those put an address on the suppression list.
fn names_the_recipient(reply: &str) -> bool {
    enhanced_code(reply).is_some_and(|code| code.starts_with("5.1.") || code == "5.2.1")
}

/// The first `class.subject.detail` of a reply (RFC 3463), if it has one.
fn enhanced_code(reply: &str) -> Option<String> {
    reply
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ':')
        .find(|word| {
            let parts: Vec<&str> = word.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..].iter().all(|part| {
                    (1..=3).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit())
                })
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_of_the_recipient_is_a_bounce() {
        assert!(names_the_recipient(
            "permanent error (550): 5.1.1 no such user"
        ));
        assert!(names_the_recipient(
            "permanent error (550): 5.2.1 mailbox disabled"
        ));
        assert!(!names_the_recipient(
            "permanent error (535): 5.7.8 bad credentials"
        ));
        assert!(!names_the_recipient("permanent error (554): 5.7.1 spam"));
        assert!(!names_the_recipient("permanent error (550): relay denied"));
    }

    #[test]
    fn the_enhanced_code_is_found_in_a_reply() {
        assert_eq!(
            enhanced_code("permanent error (550): 5.1.1 no such user").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            enhanced_code("250 2.0.0 Ok: queued").as_deref(),
            Some("2.0.0")
        );
        assert_eq!(enhanced_code("250 Ok 1.2"), None);
    }
}
