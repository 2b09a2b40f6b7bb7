//! Ask the mail host whether it would take mail for an address — and never send any.
//!
//! A session is EHLO, `MAIL FROM`, then `RCPT TO` for one or many addresses (with `RSET` and a
//! fresh `MAIL FROM` between transactions), then QUIT. Never DATA.
//!
//! The client is written by hand: an SMTP library is built to deliver mail, turns every
//! negative reply into an error without its enhanced status code, and does not let a session
//! stop after RCPT. A probe needs exactly those replies, so it reads them itself.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::proxy::{Proxy, Refusal};

/// A reply line longer than this is not from a mail server we can reason with.
/// (RFC 5321 §4.5.3.1.5 allows 512 octets; twice that is leniency enough.)
const MAX_LINE: u64 = 1024;
/// Nor is a reply of more lines than this.
const MAX_LINES: usize = 64;
/// What is kept of a reply's text: results are stored and a hostile server must not fill them.
const MAX_TEXT: usize = 512;

/// One reply of the server: its code, the enhanced status code when it gave one (RFC 3463),
/// and its text (at most `MAX_TEXT` bytes of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<String>,
    pub text: String,
    /// Whether an EHLO reply named the SMTPUTF8 extension (RFC 6531).
    smtputf8: bool,
}

impl Reply {
    fn positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// What a reply to `RCPT TO` says of the mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mailbox {
    Exists,
    Missing,
    Full,
    Disabled,
    Unknown,
}

/// How a reply to `RCPT TO` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    Refused(Mailbox),
    /// 4xx: try later (greylisting, a full mailbox that may drain, a busy server).
    Temporary {
        greylisted: bool,
    },
    /// 5.7.x: the server will not say, by policy (it blocked us, not the address).
    Blocked,
}

/// Reads a `RCPT TO` reply: by code and enhanced status code, the text only as a fallback
/// (servers word refusals every way, but agree on RFC 3463's codes when they give them).
pub fn classify(reply: &Reply) -> Answer {
    let enhanced = reply.enhanced.as_deref();
    let text = reply.text.to_lowercase();
    match reply.code {
        200..=399 => Answer::Accepted,
        // A 4.2.x code names the mailbox's state, as its 5.2.x twin does: a full mailbox may
        // drain, but it takes nothing now (the sender's risk, as a 552 is).
        400..=499 => match enhanced {
            Some("4.2.2") => Answer::Refused(Mailbox::Full),
            Some("4.2.1") => Answer::Refused(Mailbox::Disabled),
            None if phrases::say(&text, Phrase::Full) => Answer::Refused(Mailbox::Full),
            _ => Answer::Temporary {
                greylisted: phrases::say(&text, Phrase::Greylisted)
                    || matches!(enhanced, Some("4.7.1") | Some("4.2.0") | Some("4.7.0")),
            },
        },
        _ => match enhanced {
            // 5.1.10 is RFC 7505's "recipient address has null MX".
            Some("5.1.1") | Some("5.1.0") | Some("5.1.6") | Some("5.1.10") => {
                Answer::Refused(Mailbox::Missing)
            }
            // Microsoft 365's Directory-Based Edge Blocking refuses a recipient it does not
            // have with 5.4.1 ("no answer from host" in RFC 3463).
            Some("5.4.1") if text.contains("recipient address rejected") => {
                Answer::Refused(Mailbox::Missing)
            }
            Some("5.2.2") => Answer::Refused(Mailbox::Full),
            Some("5.2.1") => Answer::Refused(Mailbox::Disabled),
            Some(code) if code.starts_with("5.7.") => Answer::Blocked,
            _ => match phrases::refusal(&text) {
                Some(Phrase::Full) => Answer::Refused(Mailbox::Full),
                Some(Phrase::Disabled) => Answer::Refused(Mailbox::Disabled),
                Some(Phrase::Blocked) => Answer::Blocked,
                Some(Phrase::Missing) => Answer::Refused(Mailbox::Missing),
                // 550/551/553 without a better word: the mailbox is refused.
                _ if matches!(reply.code, 550 | 551 | 553) => Answer::Refused(Mailbox::Missing),
                _ => Answer::Refused(Mailbox::Unknown),
            },
        },
    }
}

/// What a reply's words say of the mailbox, for replies without an enhanced status code that
/// decides: the phrases of `data/smtp_reply_phrases.txt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phrase {
    Full,
    Disabled,
    Blocked,
    Missing,
    Greylisted,
}

pub(crate) mod phrases {
    use std::sync::LazyLock;

    use super::Phrase;

    const SHIPPED: &str = include_str!("../data/smtp_reply_phrases.txt");

    /// Every phrase, lowercased, with its kind.
    static PHRASES: LazyLock<Vec<(Phrase, String)>> = LazyLock::new(|| {
        lines()
            .filter_map(|line| {
                let (kind, phrase) = line.split_once('\t')?;
                Some((kind_named(kind)?, phrase.trim().to_lowercase()))
            })
            .collect()
    });

    fn lines() -> impl Iterator<Item = &'static str> {
        SHIPPED
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
    }

    fn kind_named(name: &str) -> Option<Phrase> {
        Some(match name {
            "full" => Phrase::Full,
            "disabled" => Phrase::Disabled,
            "blocked" => Phrase::Blocked,
            "missing" => Phrase::Missing,
            "greylisted" => Phrase::Greylisted,
            _ => return None,
        })
    }

    /// Whether `text` (lowercased) has a phrase of `kind`.
    pub(crate) fn say(text: &str, kind: Phrase) -> bool {
        PHRASES
            .iter()
            .any(|(of, phrase)| *of == kind && text.contains(phrase.as_str()))
    }

    /// What a refusal's text (lowercased) says of the mailbox. A full or disabled mailbox is
    /// also "unavailable", and a refusal by policy also "rejected": the more telling kind
    /// comes first.
    pub(crate) fn refusal(text: &str) -> Option<Phrase> {
        [
            Phrase::Full,
            Phrase::Disabled,
            Phrase::Blocked,
            Phrase::Missing,
        ]
        .into_iter()
        .find(|kind| say(text, *kind))
    }

    #[cfg(test)]
    pub(crate) fn all() -> impl Iterator<Item = (Phrase, &'static str)> {
        PHRASES
            .iter()
            .map(|(kind, phrase)| (*kind, phrase.as_str()))
    }

    /// Every line names a kind and a phrase.
    #[cfg(test)]
    pub(crate) fn unreadable_lines() -> Vec<&'static str> {
        lines()
            .filter(|line| {
                line.split_once('\t').is_none_or(|(kind, phrase)| {
                    kind_named(kind).is_none() || phrase.trim().is_empty()
                })
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("the server did not answer in time")]
    Timeout,
    #[error("the server refused the session: {} {}", .0.code, .0.text)]
    Refused(Reply),
    #[error("the server broke the protocol: {0}")]
    Protocol(&'static str),
    /// The server closed the connection without a reply.
    #[error("the server closed the connection")]
    Closed,
    /// The proxy the probe goes through failed (not the mail host).
    #[error("the proxy failed: {0}")]
    Proxy(String),
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What a session says of itself.
#[derive(Clone, Debug)]
pub struct Greeting {
    pub helo_name: String,
    pub probe_from: String,
    pub timeout: Duration,
}

pub struct Session {
    stream: BufReader<TcpStream>,
    timeout: Duration,
    probe_from: String,
    /// The server takes UTF-8 addresses (RFC 6531); `MAIL FROM` then says so.
    smtputf8: bool,
}

impl SessionError {
    /// Whether the host cut the session short — closed or reset it, or refused it for now —
    /// as a host does that takes fewer sessions from one client than it was given.
    pub fn cut_short(&self) -> bool {
        use std::io::ErrorKind;
        match self {
            SessionError::Closed => true,
            SessionError::Refused(reply) => (400..500).contains(&reply.code),
            SessionError::Io(error) => matches!(
                error.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            ),
            SessionError::Connect(_)
            | SessionError::Timeout
            | SessionError::Protocol(_)
            | SessionError::Proxy(_) => false,
        }
    }

    /// Whether the host would not take a connection at all.
    pub fn connection_refused(&self) -> bool {
        matches!(self, SessionError::Connect(error) if error.kind() == std::io::ErrorKind::ConnectionRefused)
    }
}

impl Session {
    /// Connects (directly, or through `proxy`), reads the banner, says EHLO (HELO if EHLO is
    /// refused) and opens a transaction with `MAIL FROM`.
    pub async fn open(
        address: SocketAddr,
        proxy: Option<&Proxy>,
        greeting: &Greeting,
    ) -> Result<Self, SessionError> {
        let connect = async {
            match proxy {
                None => TcpStream::connect(address)
                    .await
                    .map_err(SessionError::Connect),
                Some(proxy) => proxy
                    .connect(address)
                    .await
                    .map_err(|refusal| match refusal {
                        Refusal::TargetRefused => {
                            SessionError::Connect(std::io::ErrorKind::ConnectionRefused.into())
                        }
                        Refusal::Proxy(why) => SessionError::Proxy(why),
                    }),
            }
        };
        let stream = tokio::time::timeout(greeting.timeout, connect)
            .await
            .map_err(|_| SessionError::Timeout)??;
        let mut session = Session {
            stream: BufReader::new(stream),
            timeout: greeting.timeout,
            probe_from: greeting.probe_from.clone(),
            smtputf8: false,
        };
        session.expect_positive(None).await?;
        let ehlo = session
            .command(&format!("EHLO {}", greeting.helo_name))
            .await?;
        session.smtputf8 = ehlo.positive() && ehlo.smtputf8;
        if !ehlo.positive() {
            session
                .expect_positive(Some(&format!("HELO {}", greeting.helo_name)))
                .await?;
        }
        session.mail_from().await?;
        Ok(session)
    }

    async fn mail_from(&mut self) -> Result<(), SessionError> {
        let utf8 = if self.smtputf8 { " SMTPUTF8" } else { "" };
        let command = format!("MAIL FROM:<{}>{utf8}", self.probe_from);
        self.expect_positive(Some(&command)).await
    }

    /// Whether the server may be asked about an address with a UTF-8 local part.
    pub fn takes_utf8(&self) -> bool {
        self.smtputf8
    }

    /// `RCPT TO` one address (in its ASCII form).
    pub async fn rcpt(&mut self, address: &str) -> Result<Reply, SessionError> {
        self.command(&format!("RCPT TO:<{address}>")).await
    }

    /// Ends the transaction and opens the next one.
    pub async fn reset(&mut self) -> Result<(), SessionError> {
        self.expect_positive(Some("RSET")).await?;
        self.mail_from().await
    }

    /// Says goodbye; the reply does not matter.
    pub async fn quit(mut self) {
        let _ = self.command("QUIT").await;
    }

    async fn expect_positive(&mut self, command: Option<&str>) -> Result<(), SessionError> {
        let reply = match command {
            Some(command) => self.command(command).await?,
            None => self.reply().await?,
        };
        if reply.positive() {
            Ok(())
        } else {
            Err(SessionError::Refused(reply))
        }
    }

    async fn command(&mut self, command: &str) -> Result<Reply, SessionError> {
        let line = format!("{command}\r\n");
        tokio::time::timeout(
            self.timeout,
            self.stream.get_mut().write_all(line.as_bytes()),
        )
        .await
        .map_err(|_| SessionError::Timeout)??;
        self.reply().await
    }

    async fn reply(&mut self) -> Result<Reply, SessionError> {
        tokio::time::timeout(self.timeout, read_reply(&mut self.stream))
            .await
            .map_err(|_| SessionError::Timeout)?
    }
}

/// Reads one reply, of one line (`250 OK`) or many (`250-…` then `250 …`).
async fn read_reply(stream: &mut BufReader<TcpStream>) -> Result<Reply, SessionError> {
    let mut code = None;
    let mut lines = Vec::new();
    for _ in 0..MAX_LINES {
        let mut line = Vec::new();
        let read = (&mut *stream)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if read == 0 {
            return Err(SessionError::Closed);
        }
        if line.last() != Some(&b'\n') {
            return Err(SessionError::Protocol(
                "a reply line was cut short or too long",
            ));
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        let (this_code, rest) = match (line.get(..3), line.get(3..)) {
            (Some(digits), Some(rest)) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                (digits.parse::<u16>().unwrap_or(0), rest)
            }
            _ => return Err(SessionError::Protocol("a reply line has no code")),
        };
        if *code.get_or_insert(this_code) != this_code {
            return Err(SessionError::Protocol("a reply changed its code midway"));
        }
        let (more, text) = match rest.chars().next() {
            Some('-') => (true, &rest[1..]),
            Some(' ') => (false, &rest[1..]),
            None => (false, ""),
            Some(_) => return Err(SessionError::Protocol("a reply line is malformed")),
        };
        lines.push(text.to_owned());
        if !more {
            let code = this_code;
            let smtputf8 = lines
                .iter()
                .any(|line| line.trim().eq_ignore_ascii_case("SMTPUTF8"));
            let (enhanced, first) = split_enhanced(code, &lines[0]);
            let mut text = std::iter::once(first)
                .chain(lines.into_iter().skip(1))
                .collect::<Vec<_>>()
                .join("\n");
            truncate(&mut text, MAX_TEXT);
            return Ok(Reply {
                code,
                enhanced,
                text,
                smtputf8,
            });
        }
    }
    Err(SessionError::Protocol("a reply has too many lines"))
}

/// RFC 3463: `class.subject.detail` at the start of the text, its class that of the code.
fn split_enhanced(code: u16, text: &str) -> (Option<String>, String) {
    let (first, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let parts: Vec<&str> = first.split('.').collect();
    let is_enhanced = parts.len() == 3
        && parts[0] == (code / 100).to_string()
        && parts[1..]
            .iter()
            .all(|part| (1..=3).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit()));
    if is_enhanced {
        (Some(first.to_owned()), rest.to_owned())
    } else {
        (None, text.to_owned())
    }
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> Reply {
        let (enhanced, text) = split_enhanced(code, text);
        Reply {
            code,
            enhanced,
            text,
            smtputf8: false,
        }
    }

    #[test]
    fn enhanced_codes_decide_and_text_is_the_fallback() {
        let cases = [
            (250, "2.1.5 OK", Answer::Accepted),
            (550, "5.1.1 No such user", Answer::Refused(Mailbox::Missing)),
            (550, "5.1.10 Null MX", Answer::Refused(Mailbox::Missing)),
            (552, "5.2.2 Mailbox full", Answer::Refused(Mailbox::Full)),
            (
                550,
                "5.2.1 Mailbox disabled",
                Answer::Refused(Mailbox::Disabled),
            ),
            (550, "5.7.1 Client host blocked", Answer::Blocked),
            (
                450,
                "4.2.0 Greylisted, try again later",
                Answer::Temporary { greylisted: true },
            ),
            (452, "4.2.2 Over quota", Answer::Refused(Mailbox::Full)),
            (
                450,
                "4.2.1 Mailbox disabled, not accepting messages",
                Answer::Refused(Mailbox::Disabled),
            ),
            (
                451,
                "Temporary local problem",
                Answer::Temporary { greylisted: false },
            ),
            // No enhanced code: the words decide, and a bare 550 means no such mailbox.
            (
                550,
                "User unknown in virtual mailbox table",
                Answer::Refused(Mailbox::Missing),
            ),
            (
                552,
                "Requested action aborted: mailbox full",
                Answer::Refused(Mailbox::Full),
            ),
            (
                550,
                "Requested action not taken",
                Answer::Refused(Mailbox::Missing),
            ),
            (554, "Transaction failed", Answer::Refused(Mailbox::Unknown)),
        ];
        for (code, text, answer) in cases {
            assert_eq!(classify(&reply(code, text)), answer, "{code} {text}");
        }
    }

    /// Each phrase of the data file, alone in a reply without an enhanced code, is read as its
    /// kind (a 554, which says nothing by itself; greylisting in a 450).
    #[test]
    fn every_phrase_is_read_as_its_kind() {
        assert_eq!(phrases::unreadable_lines(), Vec::<&str>::new());
        let mut count = 0;
        for (kind, phrase) in phrases::all() {
            count += 1;
            let (code, expected) = match kind {
                Phrase::Full => (554, Answer::Refused(Mailbox::Full)),
                Phrase::Disabled => (554, Answer::Refused(Mailbox::Disabled)),
                Phrase::Blocked => (554, Answer::Blocked),
                Phrase::Missing => (554, Answer::Refused(Mailbox::Missing)),
                Phrase::Greylisted => (450, Answer::Temporary { greylisted: true }),
            };
            let text = format!("<someone@example.test>: {}", phrase.to_uppercase());
            assert_eq!(classify(&reply(code, &text)), expected, "{code} {text}");
        }
        assert!(count > 100, "{count} phrases");
    }

    /// Refusals as the big providers word them, some without an enhanced code.
    #[test]
    fn providers_refusals_are_read_as_they_mean() {
        let missing = Answer::Refused(Mailbox::Missing);
        let cases = [
            (
                550,
                "5.1.1 The email account that you tried to reach does not exist.",
                missing,
            ),
            (
                550,
                "Requested action not taken: mailbox unavailable",
                missing,
            ),
            (
                554,
                "delivery error: dd This user doesn't have a yahoo.com account",
                missing,
            ),
            (
                554,
                "30 Sorry, no mailbox here by that name. (#5.1.1)",
                missing,
            ),
            (554, "Benutzer unbekannt", missing),
            (554, "Utilisateur inconnu / Destinataire inconnu", missing),
            (554, "Usuario desconocido", missing),
            (554, "Utente inesistente", missing),
            (554, "Usuário desconhecido", missing),
            (554, "Пользователь не найден", missing),
            (
                554,
                "Mailbox quota exceeded",
                Answer::Refused(Mailbox::Full),
            ),
            (
                452,
                "Mailbox full, try again later",
                Answer::Refused(Mailbox::Full),
            ),
            (
                554,
                "This account has been disabled",
                Answer::Refused(Mailbox::Disabled),
            ),
            (
                554,
                "Service unavailable; client host blocked using Spamhaus",
                Answer::Blocked,
            ),
            (
                554,
                "Recipient address rejected: Access denied",
                Answer::Blocked,
            ),
            (
                550,
                "5.4.1 Recipient address rejected: Access denied. AS(201806281)",
                missing,
            ),
            (
                451,
                "Recipient address rejected: Greylisted, see https://postgrey.schweikert.ch/",
                Answer::Temporary { greylisted: true },
            ),
        ];
        for (code, text, answer) in cases {
            assert_eq!(classify(&reply(code, text)), answer, "{code} {text}");
        }
    }

    #[test]
    fn an_enhanced_code_must_match_the_reply_class() {
        assert_eq!(split_enhanced(550, "5.1.1 No").0.as_deref(), Some("5.1.1"));
        assert_eq!(split_enhanced(550, "4.1.1 No").0, None);
        assert_eq!(split_enhanced(250, "OK").0, None);
        assert_eq!(split_enhanced(250, "2.0.0").0.as_deref(), Some("2.0.0"));
    }
}
