//! What a verification found, and the verdict that follows from it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::dns::{DnsReport, DomainStatus};
use crate::lists::Classification;
use crate::smtp::Mailbox;
use crate::syntax::SyntaxError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Deliverable,
    Undeliverable,
    Risky,
    Unknown,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [
        Verdict::Deliverable,
        Verdict::Undeliverable,
        Verdict::Risky,
        Verdict::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Deliverable => "deliverable",
            Verdict::Undeliverable => "undeliverable",
            Verdict::Risky => "risky",
            Verdict::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<Verdict> {
        Verdict::ALL
            .into_iter()
            .find(|verdict| verdict.as_str() == text)
    }
}

/// Why the verdict is what it is: stable codes, several at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    InvalidSyntax,
    DomainNotFound,
    NoMailServer,
    NullMx,
    DnsFailure,
    Disposable,
    RoleAccount,
    TypoSuggested,
    MailboxMissing,
    MailboxFull,
    MailboxDisabled,
    CatchAll,
    Greylisted,
    SmtpTemporaryFailure,
    SmtpBlocked,
    SmtpUnreachable,
    SmtpTimeout,
    /// The mail host kept refusing or cutting our sessions short (too many of them, for it)
    /// after every retry; its last reply is the report's.
    SmtpThrottled,
    /// The mail hosts are on private networks, which the probe does not reach.
    MailHostNotPublic,
    /// The mail server refused the address without saying why.
    SmtpRejected,
    /// The address has a UTF-8 local part, which its mail server does not take (RFC 6531).
    Smtputf8Unsupported,
    /// The mail server accepted the address, but whether it accepts any address is unknown.
    CatchAllUnknown,
    /// The mail server is a provider's that accepts every address while the session is open
    /// (Microsoft 365, Yahoo): its acceptance says nothing.
    ProviderHidesMailboxes,
    SmtpNotChecked,
}

impl Reason {
    /// What the reason makes of the verdict; the gravest reason decides.
    fn verdict(self) -> Verdict {
        match self {
            Reason::InvalidSyntax
            | Reason::DomainNotFound
            | Reason::NoMailServer
            | Reason::NullMx
            | Reason::MailboxMissing
            | Reason::MailboxDisabled
            | Reason::Smtputf8Unsupported => Verdict::Undeliverable,
            Reason::Disposable
            | Reason::RoleAccount
            | Reason::TypoSuggested
            | Reason::MailboxFull
            | Reason::CatchAll
            | Reason::CatchAllUnknown => Verdict::Risky,
            Reason::DnsFailure
            | Reason::Greylisted
            | Reason::SmtpTemporaryFailure
            | Reason::SmtpBlocked
            | Reason::SmtpUnreachable
            | Reason::SmtpTimeout
            | Reason::SmtpThrottled
            | Reason::MailHostNotPublic
            | Reason::SmtpRejected
            | Reason::ProviderHidesMailboxes
            | Reason::SmtpNotChecked => Verdict::Unknown,
        }
    }
}

/// Undeliverable outweighs a known risk, which outweighs what could not be learned.
pub fn verdict_of(reasons: &[Reason]) -> Verdict {
    let rank = |verdict: Verdict| match verdict {
        Verdict::Undeliverable => 3,
        Verdict::Risky => 2,
        Verdict::Unknown => 1,
        Verdict::Deliverable => 0,
    };
    reasons
        .iter()
        .map(|reason| reason.verdict())
        .max_by_key(|verdict| rank(*verdict))
        .unwrap_or(Verdict::Deliverable)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyntaxReport {
    pub valid: bool,
    pub reason: Option<SyntaxError>,
    pub local_part: Option<String>,
    pub domain: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpReport {
    pub checked: bool,
    /// The mail host that answered.
    pub host: Option<String>,
    pub code: Option<u16>,
    pub enhanced_code: Option<String>,
    pub message: Option<String>,
    /// Whether the domain takes mail for any address at all; `None` when not learned.
    pub catch_all: Option<bool>,
    pub mailbox: Mailbox,
}

impl SmtpReport {
    pub fn not_checked() -> Self {
        SmtpReport {
            checked: false,
            host: None,
            code: None,
            enhanced_code: None,
            message: None,
            catch_all: None,
            mailbox: Mailbox::Unknown,
        }
    }
}

/// Everything one verification found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub email: String,
    /// The address as given, lowercased where that is allowed.
    pub normalized: Option<String>,
    /// The one spelling of the mailbox it reaches, by its provider's rules (Gmail's dots and
    /// tags, say): what dedup keys on. The normalized address for other providers.
    pub canonical: Option<String>,
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    pub syntax: SyntaxReport,
    pub dns: DnsReport,
    pub classification: Classification,
    pub smtp: SmtpReport,
    /// Set by whoever answers from a store of earlier results; the engine never caches whole
    /// verifications.
    pub cached: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    pub duration_ms: u64,
}

/// The reasons that the sub-results give, in a fixed order.
pub(crate) fn reasons(
    syntax: &SyntaxReport,
    dns: &DnsReport,
    classification: &Classification,
    smtp: &SmtpReport,
    smtp_reason: Option<Reason>,
) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if !syntax.valid {
        reasons.push(Reason::InvalidSyntax);
    }
    match dns.status {
        Some(DomainStatus::NotFound) => reasons.push(Reason::DomainNotFound),
        Some(DomainStatus::NoMailRecords) => reasons.push(Reason::NoMailServer),
        Some(DomainStatus::NullMx) => reasons.push(Reason::NullMx),
        Some(DomainStatus::Failed) => reasons.push(Reason::DnsFailure),
        Some(DomainStatus::Mx) | Some(DomainStatus::ImplicitMx) | None => {}
    }
    if classification.disposable {
        reasons.push(Reason::Disposable);
    }
    if classification.role_account {
        reasons.push(Reason::RoleAccount);
    }
    if classification.suggestion.is_some() {
        reasons.push(Reason::TypoSuggested);
    }
    match smtp.mailbox {
        Mailbox::Missing => reasons.push(Reason::MailboxMissing),
        Mailbox::Full => reasons.push(Reason::MailboxFull),
        Mailbox::Disabled => reasons.push(Reason::MailboxDisabled),
        Mailbox::Exists | Mailbox::Unknown => {}
    }
    if smtp.catch_all == Some(true) {
        reasons.push(Reason::CatchAll);
    }
    reasons.extend(smtp_reason);
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gravest_reason_decides() {
        assert_eq!(verdict_of(&[]), Verdict::Deliverable);
        assert_eq!(
            verdict_of(&[Reason::SmtpNotChecked, Reason::Disposable]),
            Verdict::Risky
        );
        assert_eq!(
            verdict_of(&[Reason::Disposable, Reason::MailboxMissing]),
            Verdict::Undeliverable
        );
        assert_eq!(verdict_of(&[Reason::Greylisted]), Verdict::Unknown);
    }
}
