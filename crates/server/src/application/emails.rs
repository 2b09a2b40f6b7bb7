//! Sending mail as the organization's connected accounts (docs/security.md#sending): a
//! message is checked whole (addresses by the verification engine's syntax rules, no line
//! break in any field, only custom and list headers), composed, sealed and accepted with its
//! queue job before the answer; the queue's runner delivers it, recipient by recipient, and
//! records every attempt. Delivery is at least once: a message is sent twice only if a node
//! dies between the server's acceptance of it and the record of that.

use mailroom_core::api_keys::Scope;
use mailroom_core::audit::Action;
use mailroom_core::mail_account::SendLimits;
use mailroom_core::usage::Metric;
use mailroom_core::{EmailId, JobId, MailAccountId};
use mailroom_mail::gmail::GmailError;
use mailroom_mail::outgoing::{self, Delivered, Delivery, Outgoing, OutgoingAttachment};
use mailroom_storage::emails::{
    Acceptance, Attempt, AttemptOutcome, Email, EmailRecord, EmailStatus, KeyClaim, NewEmail,
    Recipient, RecipientKind, RecipientStatus, Suppression, ToDeliver,
};
use mailroom_storage::mail_accounts::{AccountKind, MailAccount};
use mailroom_storage::queue::{ClaimedJob, JobKind, NewJob};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::application::actor::Caller;
use crate::application::mail_accounts::google::{self, TokenRefused};
use crate::application::mail_accounts::{self, Transport};
use crate::application::webhooks;
use crate::audit::AuditTrail;
use crate::config::OidcProvider;
use crate::error::{DomainError, SendRefusal};
use crate::state::AppState;
use crate::work_queue::{Lease, Ran};

/// Recipients of each kind a message may have.
pub const MAX_RECIPIENTS: usize = 50;
/// The most a composed message may weigh.
pub const MAX_MESSAGE_BYTES: usize = 25 * 1024 * 1024;
const MAX_SUBJECT: usize = 998;
const MAX_TAGS: usize = 20;
const MAX_HEADERS: usize = 50;

/// Headers a message may carry besides the ones mailroom writes: custom `X-` headers and the
/// list headers. Structural ones (From, To, Date, Message-ID, MIME's…) are mailroom's.
const LIST_HEADERS: [&str; 8] = [
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Id",
    "List-Help",
    "List-Archive",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
];

/// A message to send, as asked.
pub struct NewMessage {
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Vec<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub headers: Vec<(String, String)>,
    pub attachments: Vec<NewAttachment>,
    pub tags: Vec<Tag>,
    pub mail_account_id: Option<MailAccountId>,
    /// When to send it, if later than now (within [`MAX_SCHEDULE`]).
    pub scheduled_at: Option<OffsetDateTime>,
    pub idempotency: Option<IdempotencyKey>,
}

/// How far ahead a message may be scheduled.
pub const MAX_SCHEDULE: time::Duration = time::Duration::days(30);

/// A request's `Idempotency-Key`, and the hash of the request it came with.
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: Vec<u8>,
}

/// The longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

pub struct NewAttachment {
    pub filename: String,
    pub content_type: String,
    pub content: Vec<u8>,
    pub content_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub name: String,
    pub value: String,
}

impl Tag {
    /// The tags of a stored message (written by this module, so they read back).
    pub fn of(email: &Email) -> Vec<Tag> {
        serde_json::from_str(&email.tags).unwrap_or_default()
    }
}

/// No line break, nor any other control character but tab: nothing a header could be folded
/// or injected through.
fn one_line(field: &'static str, value: &str) -> Result<(), DomainError> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(DomainError::invalid(
            field,
            format!("{field} may not contain line breaks or control characters"),
        ));
    }
    Ok(())
}

/// An address by the verification engine's syntax rules, as it goes out (IDN domains in
/// A-labels).
fn address(field: &'static str, text: &str) -> Result<String, DomainError> {
    one_line(field, text)?;
    mailroom_verify::syntax::parse(text.trim())
        .map(|address| address.normalized())
        .map_err(|error| {
            DomainError::invalid(
                field,
                format!("{field}: {text:?} is not an address ({error})"),
            )
        })
}

fn addresses(field: &'static str, list: &[String]) -> Result<Vec<String>, DomainError> {
    if list.len() > MAX_RECIPIENTS {
        return Err(DomainError::invalid(
            field,
            format!("{field} may hold at most {MAX_RECIPIENTS} addresses"),
        ));
    }
    list.iter().map(|text| address(field, text)).collect()
}

/// `Name <address>` or a bare address.
fn mailbox(text: &str) -> Result<(Option<String>, String), DomainError> {
    one_line("from", text)?;
    let text = text.trim();
    match text
        .strip_suffix('>')
        .and_then(|rest| rest.rsplit_once('<'))
    {
        Some((name, inner)) => {
            let name = name.trim().trim_matches('"').trim();
            let name = (!name.is_empty()).then(|| name.to_owned());
            Ok((name, address("from", inner)?))
        }
        None => Ok((None, address("from", text)?)),
    }
}

fn checked_headers(headers: &[(String, String)]) -> Result<Vec<(String, String)>, DomainError> {
    if headers.len() > MAX_HEADERS {
        return Err(DomainError::invalid(
            "headers",
            format!("a message may carry at most {MAX_HEADERS} headers"),
        ));
    }
    headers
        .iter()
        .map(|(name, value)| {
            let token =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            let allowed = name.len() > 2 && name.as_bytes()[..2].eq_ignore_ascii_case(b"X-")
                || LIST_HEADERS
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(name));
            if !token || !allowed {
                return Err(DomainError::Sending(SendRefusal::HeaderNotAllowed(
                    name.chars().take(100).collect(),
                )));
            }
            one_line("headers", value)?;
            Ok((name.clone(), value.clone()))
        })
        .collect()
}

/// Accepts a message for delivery: checked, composed, sealed and queued before this returns.
///
/// With an idempotency key, the same request again answers the message it made, whatever
/// node it reaches (the key is claimed in the database); a refused request frees its key.
pub async fn send(
    state: &AppState,
    trail: &AuditTrail,
    caller: &Caller,
    mut message: NewMessage,
) -> Result<EmailId, DomainError> {
    caller.require(Scope::Send, false)?;
    let org_id = caller.org_id();
    let Some(idempotency) = message.idempotency.take() else {
        return accept(state, trail, caller, message, None).await;
    };
    let key = idempotency.key;
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(DomainError::Sending(SendRefusal::InvalidIdempotencyKey));
    }
    let emails = state.database.emails();
    match emails
        .claim_key(
            org_id,
            &key,
            &idempotency.request_hash,
            OffsetDateTime::now_utc(),
        )
        .await?
    {
        KeyClaim::Fresh => {}
        KeyClaim::Replay(id) => return Ok(id),
        KeyClaim::Reused => return Err(DomainError::Sending(SendRefusal::IdempotencyKeyReused)),
        KeyClaim::InProgress => {
            return Err(DomainError::Sending(SendRefusal::IdempotencyKeyInProgress));
        }
    }
    let claimed = (key, idempotency.request_hash);
    let accepted = accept(state, trail, caller, message, Some(claimed.clone())).await;
    if accepted.is_err() {
        emails.release_key(org_id, &claimed.0, &claimed.1).await?;
    }
    accepted
}

async fn accept(
    state: &AppState,
    trail: &AuditTrail,
    caller: &Caller,
    message: NewMessage,
    idempotency: Option<(String, Vec<u8>)>,
) -> Result<EmailId, DomainError> {
    let org_id = caller.org_id();
    let (name, from) = mailbox(&message.from)?;
    if let Some(name) = &name {
        one_line("from", name)?;
    }
    let to = addresses("to", &message.to)?;
    let cc = addresses("cc", &message.cc)?;
    let bcc = addresses("bcc", &message.bcc)?;
    let reply_to = addresses("reply_to", &message.reply_to)?;
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(DomainError::invalid("to", "a message needs a recipient"));
    }
    if message.text.is_none() && message.html.is_none() {
        return Err(DomainError::invalid(
            "text",
            "a message needs text, html or both",
        ));
    }
    if let Some(subject) = &message.subject {
        one_line("subject", subject)?;
        if subject.chars().count() > MAX_SUBJECT {
            return Err(DomainError::invalid(
                "subject",
                format!("subject may be at most {MAX_SUBJECT} characters"),
            ));
        }
    }
    let headers = checked_headers(&message.headers)?;
    let now = OffsetDateTime::now_utc();
    let scheduled_at = message.scheduled_at.filter(|at| *at > now);
    if scheduled_at.is_some_and(|at| at > now + MAX_SCHEDULE) {
        return Err(DomainError::invalid(
            "scheduled_at",
            "scheduled_at may be at most 30 days ahead",
        ));
    }
    if message.tags.len() > MAX_TAGS {
        return Err(DomainError::invalid(
            "tags",
            format!("a message may carry at most {MAX_TAGS} tags"),
        ));
    }
    for tag in &message.tags {
        let word = |text: &str| {
            !text.is_empty()
                && text.len() <= 256
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !word(&tag.name) || !word(&tag.value) {
            return Err(DomainError::invalid(
                "tags",
                "a tag's name and value are 1 to 256 letters, digits, _ or -",
            ));
        }
    }
    let mut attachments = Vec::with_capacity(message.attachments.len());
    for attachment in message.attachments {
        one_line("attachments", &attachment.filename)?;
        one_line("attachments", &attachment.content_type)?;
        // A part of its own, not a structure: no nested multipart or message.
        let kind = attachment.content_type.trim().to_ascii_lowercase();
        if kind.starts_with("multipart/") || kind.starts_with("message/") {
            return Err(DomainError::invalid(
                "attachments",
                "an attachment's content_type may not be multipart/* or message/*",
            ));
        }
        if let Some(id) = &attachment.content_id {
            one_line("attachments", id)?;
        }
        attachments.push(OutgoingAttachment {
            filename: attachment.filename,
            content_type: attachment.content_type,
            content: attachment.content,
            content_id: attachment.content_id,
        });
    }
    let account = mail_accounts::sender(state, org_id, &from, message.mail_account_id).await?;
    let id = EmailId::generate();
    let domain = from
        .rsplit_once('@')
        .map_or("localhost", |(_, domain)| domain);
    let message_id = format!("<{id}@{domain}>");
    let outgoing = Outgoing {
        from: (name, from.clone()),
        reply_to,
        to: to.clone(),
        cc: cc.clone(),
        // Gmail reads the recipients from the message, and drops the Bcc header.
        bcc_header: if account.kind == AccountKind::Google {
            bcc.clone()
        } else {
            Vec::new()
        },
        subject: message.subject,
        text: message.text,
        html: message.html,
        headers,
        attachments,
        message_id: message_id.clone(),
    };
    let raw = Zeroizing::new(
        outgoing::compose(&outgoing)
            .map_err(|error| DomainError::invalid("message", error.to_string()))?,
    );
    if raw.len() > MAX_MESSAGE_BYTES {
        return Err(DomainError::Sending(SendRefusal::MessageTooLarge {
            limit: MAX_MESSAGE_BYTES,
        }));
    }
    let mut recipients: Vec<(String, RecipientKind)> = Vec::new();
    for (list, kind) in [
        (to, RecipientKind::To),
        (cc, RecipientKind::Cc),
        (bcc, RecipientKind::Bcc),
    ] {
        for address in list {
            // Once each: the same address twice is one delivery.
            if !recipients.iter().any(|(known, _)| *known == address) {
                recipients.push((address, kind));
            }
        }
    }
    let size = raw.len();
    let count = recipients.len();
    let email = NewEmail {
        id,
        mail_account_id: account.id,
        from_address: from,
        recipients,
        message_id,
        tags: serde_json::to_string(&message.tags).map_err(DomainError::internal)?,
        content: raw,
        created_by: match caller {
            Caller::Account(principal) => Some(principal.user.id),
            Caller::Key(_) => None,
        },
        api_key_id: match caller {
            Caller::Key(key) => Some(key.key_id),
            Caller::Account(_) => None,
        },
        scheduled_at,
        idempotency,
    };
    let job = NewJob {
        id: JobId::from_uuid(id.as_uuid()),
        org_id: Some(org_id),
        kind: JobKind::SendEmail,
        payload: Vec::new(),
        idempotency_key: None,
        // The job waits until the message is due.
        delay: scheduled_at
            .map(|at| (at - now).unsigned_abs())
            .unwrap_or_default(),
    };
    let event = mailroom_core::audit::AuditEvent {
        target: Some(format!(
            "email {id} through mail account {} to {count} recipients, {size} bytes",
            account.id
        )),
        ..caller.event(trail, Action::EmailAccepted)
    };
    let acceptance = state
        .database
        .emails()
        .accept(org_id, &email, job, &event, now)
        .await?;
    match acceptance {
        Acceptance::Accepted => {
            state.queue.wake(JobKind::SendEmail);
            Ok(id)
        }
        Acceptance::AllSuppressed => Err(DomainError::Sending(SendRefusal::AllSuppressed)),
        Acceptance::KeyTaken => Err(DomainError::Sending(SendRefusal::IdempotencyKeyInProgress)),
        Acceptance::QuotaExceeded { quota, used } => Err(DomainError::QuotaExceeded {
            metric: Metric::Emails,
            quota,
            used,
        }),
    }
}

/// Anyone of the organization reads its messages; a key needs `send`.
pub async fn get(
    state: &AppState,
    caller: &Caller,
    id: EmailId,
) -> Result<EmailRecord, DomainError> {
    caller.require(Scope::Send, false)?;
    state
        .database
        .emails()
        .get(caller.org_id(), id)
        .await?
        .ok_or(DomainError::NotFound)
}

/// The organization's newest messages, newest first, before the `before` cursor.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    status: Option<EmailStatus>,
    before: Option<EmailId>,
    limit: i64,
) -> Result<Vec<Email>, DomainError> {
    caller.require(Scope::Send, false)?;
    Ok(state
        .database
        .emails()
        .list(caller.org_id(), status, before, limit.clamp(1, 100))
        .await?)
}

/// Cancels a message still scheduled or queued: its job finds nothing to send.
pub async fn cancel(state: &AppState, caller: &Caller, id: EmailId) -> Result<(), DomainError> {
    caller.require(Scope::Send, false)?;
    let emails = state.database.emails();
    if emails
        .cancel(caller.org_id(), id, OffsetDateTime::now_utc())
        .await?
    {
        webhooks::events_emitted(state);
        return Ok(());
    }
    match emails.get(caller.org_id(), id).await? {
        Some(_) => Err(DomainError::Sending(SendRefusal::NotCancelable)),
        None => Err(DomainError::NotFound),
    }
}

/// The organization's suppression list.
pub async fn suppressions(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<Suppression>, DomainError> {
    caller.require(Scope::Send, false)?;
    Ok(state
        .database
        .emails()
        .suppressions(caller.org_id())
        .await?)
}

/// Adds an address to the list: later messages skip it. False when it was on it already.
pub async fn suppress(
    state: &AppState,
    caller: &Caller,
    address_text: &str,
) -> Result<bool, DomainError> {
    caller.require(Scope::Send, false)?;
    let address = address("address", address_text)?;
    Ok(state
        .database
        .emails()
        .suppress(caller.org_id(), &address, OffsetDateTime::now_utc())
        .await?)
}

/// Takes an address off the list.
pub async fn unsuppress(
    state: &AppState,
    caller: &Caller,
    address_text: &str,
) -> Result<(), DomainError> {
    caller.require(Scope::Send, false)?;
    let address = address("address", address_text)?;
    if state
        .database
        .emails()
        .unsuppress(caller.org_id(), &address)
        .await?
    {
        Ok(())
    } else {
        Err(DomainError::NotFound)
    }
}

/// Delivers a queued message (the queue's job of the same id) to its recipients still
/// pending, and records the attempt. Over SMTP each recipient's outcome is recorded as soon
/// as the server gave it, so a retry after a crash sends again only to the recipient that was
/// in flight; a lost lease stops the delivery between recipients. A temporary failure is the
/// job's failure, so the queue tries again with backoff; on its last try, what is still
/// pending fails.
pub async fn deliver(
    state: &AppState,
    job: &ClaimedJob,
    lease: &Lease,
) -> Result<Ran, DomainError> {
    let (org_id, id) = job_email(job)?;
    let emails = state.database.emails();
    let Some(todo) = emails.to_deliver(org_id, id).await? else {
        return Ok(Ran::Done);
    };
    let now = OffsetDateTime::now_utc();
    let started = Instant::now();
    let account = match todo.email.mail_account_id {
        Some(account_id) => mail_accounts::transport_of(state, org_id, account_id).await?,
        None => None,
    };
    let Some((account, transport)) = account else {
        let why = "the mail account was disconnected";
        let failed = each(&todo.recipients, Delivery::Failed, why);
        return finish(state, job, &todo.recipients, &failed, "none", now, started).await;
    };
    let limits = mail_accounts::send_limits(&account);
    let slot = match over_rate(state, &account, &limits, id, now).await? {
        Some(postponed) => Err(postponed),
        None => state
            .send_slots
            .try_take(account.id.as_uuid(), limits.concurrency)
            .ok_or_else(|| Ran::Postponed {
                why: format!(
                    "the account is sending {} messages at once, its most",
                    limits.concurrency
                ),
                delay: CONCURRENCY_WAIT,
            }),
    };
    let slot = match slot {
        Ok(slot) => slot,
        Err(postponed) => {
            // It waits, queued again, for its account's limit: never dropped, no attempt
            // spent.
            emails.requeue(org_id, id).await?;
            return Ok(postponed);
        }
    };
    let (name, outcomes) = send_through(state, &todo, &account, transport, lease).await?;
    drop(slot);
    finish(state, job, &todo.recipients, &outcomes, name, now, started).await
}

/// How long a message whose account sends all it may at once waits to look again.
const CONCURRENCY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether the account sent all its rate allows (per minute, per day) and the message must
/// wait, and until the oldest send in the window ages out of it.
async fn over_rate(
    state: &AppState,
    account: &MailAccount,
    limits: &SendLimits,
    id: EmailId,
    now: OffsetDateTime,
) -> Result<Option<Ran>, DomainError> {
    if limits.per_minute.is_none() && limits.per_day.is_none() {
        return Ok(None);
    }
    let recent = state
        .database
        .emails()
        .recent_sends(account.org_id, account.id, id, now)
        .await?;
    let windows = [
        (
            limits.per_minute,
            recent.last_minute,
            recent.oldest_in_minute,
            time::Duration::MINUTE,
            "minute",
        ),
        (
            limits.per_day,
            recent.last_day,
            recent.oldest_in_day,
            time::Duration::DAY,
            "day",
        ),
    ];
    for (limit, sent, oldest, window, name) in windows {
        let Some(limit) = limit else { continue };
        if sent < i64::from(limit) {
            continue;
        }
        // Messages still sending count too and have no time: look again in a second.
        let frees_at = oldest.map_or(now + time::Duration::SECOND, |oldest| oldest + window);
        let delay = (frees_at - now).clamp(time::Duration::SECOND, window);
        return Ok(Some(Ran::Postponed {
            why: format!("over the account's limit of {limit} messages a {name}"),
            delay: delay.unsigned_abs(),
        }));
    }
    Ok(None)
}

/// Sends the message through the account, recipient by recipient over SMTP (each outcome
/// recorded as soon as it is known), or once through Gmail.
async fn send_through(
    state: &AppState,
    todo: &ToDeliver,
    account: &MailAccount,
    transport: Transport,
    lease: &Lease,
) -> Result<(&'static str, Vec<Delivered>), DomainError> {
    let (org_id, id) = (account.org_id, todo.email.id);
    match transport {
        Transport::Smtp(settings, signing) => {
            let content = match &signing {
                Some(signing) => match signing.sign(&todo.content) {
                    Ok(signed) => Zeroizing::new(signed),
                    Err(why) => {
                        let why = format!("the account's DKIM key did not sign: {why}");
                        return Ok(("smtp", each(&todo.recipients, Delivery::Failed, &why)));
                    }
                },
                None => todo.content.clone(),
            };
            let hello = mail_accounts::hello_name(state);
            let sender = match state
                .smtp_senders
                .get(account.id.as_uuid(), &settings, &hello)
            {
                Ok(sender) => sender,
                Err(error) => {
                    let why = error.to_string();
                    return Ok(("smtp", each(&todo.recipients, Delivery::Deferred, &why)));
                }
            };
            let mut outcomes = Vec::with_capacity(todo.recipients.len());
            for (n, recipient) in todo.recipients.iter().enumerate() {
                if lease.is_lost() {
                    return Err(anyhow::anyhow!("the job's lease was lost mid-delivery").into());
                }
                let outcome = sender
                    .send_to(&todo.email.from_address, &recipient.address, &content)
                    .await;
                // The last one's outcome is recorded with the attempt, straight after.
                let last = n + 1 == todo.recipients.len();
                if outcome.delivery != Delivery::Deferred && !last {
                    let now = OffsetDateTime::now_utc();
                    state
                        .database
                        .emails()
                        .record_recipient(org_id, id, &decided(recipient, &outcome, false), now)
                        .await?;
                }
                outcomes.push(outcome);
            }
            Ok(("smtp", outcomes))
        }
        Transport::Gmail => {
            let (delivery, reply) = send_gmail(state, account, &todo.content).await;
            Ok(("gmail", each(&todo.recipients, delivery, &reply)))
        }
    }
}

/// The message a send job delivers (the job has its id), and its organization.
fn job_email(job: &ClaimedJob) -> Result<(mailroom_core::OrgId, EmailId), DomainError> {
    let org_id = job
        .org_id
        .ok_or_else(|| anyhow::anyhow!("a send job of no organization"))?;
    Ok((org_id, EmailId::from_uuid(job.id.as_uuid())))
}

/// A recipient as an outcome decides it; on the job's last try, a deferral is a failure.
fn decided(recipient: &Recipient, outcome: &Delivered, last_try: bool) -> Recipient {
    Recipient {
        status: match outcome.delivery {
            Delivery::Sent => RecipientStatus::Sent,
            Delivery::Failed => RecipientStatus::Failed,
            Delivery::Deferred if last_try => RecipientStatus::Failed,
            Delivery::Deferred => RecipientStatus::Pending,
        },
        reply: Some(outcome.reply.clone()),
        bounced: outcome.bounced,
        ..recipient.clone()
    }
}

/// Records the attempt and where the message is after it; a deferral is the job's failure,
/// for the queue's retry.
async fn finish(
    state: &AppState,
    job: &ClaimedJob,
    recipients: &[Recipient],
    outcomes: &[Delivered],
    transport: &str,
    at: OffsetDateTime,
    started: Instant,
) -> Result<Ran, DomainError> {
    let (org_id, id) = job_email(job)?;
    let last_try = job.attempt >= JobKind::SendEmail.retry_policy().max_attempts;
    let decided: Vec<Recipient> = recipients
        .iter()
        .zip(outcomes)
        .map(|(recipient, outcome)| decided(recipient, outcome, last_try))
        .collect();
    let deferred = outcomes
        .iter()
        .filter(|outcome| outcome.delivery == Delivery::Deferred)
        .count();
    let outcome = if deferred > 0 && !last_try {
        AttemptOutcome::Deferred
    } else if outcomes.iter().any(|o| o.delivery == Delivery::Sent) {
        AttemptOutcome::Sent
    } else {
        AttemptOutcome::Failed
    };
    let attempt = Attempt {
        at,
        transport: transport.to_owned(),
        outcome,
        enhanced_code: outcomes.iter().find_map(|o| o.enhanced_code.clone()),
        reply: if outcomes.is_empty() {
            "no recipient left to send to: the rest are on the suppression list".to_owned()
        } else {
            outcomes
                .iter()
                .map(|o| format!("{}: {}", o.recipient, o.reply))
                .collect::<Vec<_>>()
                .join("; ")
        },
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
    };
    state
        .database
        .emails()
        .record(org_id, id, &attempt, &decided, OffsetDateTime::now_utc())
        .await?;
    webhooks::events_emitted(state);
    if outcome == AttemptOutcome::Deferred {
        // The queue tries again later, with backoff. Its log and record say how many, never
        // who: the replies are the message's own record.
        return Err(anyhow::anyhow!("{deferred} recipients deferred").into());
    }
    Ok(Ran::Done)
}

/// The same outcome for every recipient: a message that went (or did not) whole.
fn each(recipients: &[Recipient], delivery: Delivery, reply: &str) -> Vec<Delivered> {
    recipients
        .iter()
        .map(|recipient| Delivered {
            recipient: recipient.address.clone(),
            delivery,
            reply: reply.to_owned(),
            enhanced_code: None,
            bounced: false,
        })
        .collect()
}

/// Sends through the Gmail API as the account: its access token (refreshed when it nears
/// its expiry, and once more if Gmail says it expired), then `users.messages.send`. A grant
/// Google refused fails the message, with why; a rate limit or Google's trouble defers it.
async fn send_gmail(state: &AppState, account: &MailAccount, raw: &[u8]) -> (Delivery, String) {
    let Some(gmail) = state
        .identity_providers
        .get(OidcProvider::GOOGLE)
        .and_then(|google| google.gmail.as_ref())
    else {
        return (
            Delivery::Deferred,
            "[oidc.google] is not configured".to_owned(),
        );
    };
    let mut retried = false;
    loop {
        let token = match google::access_token(state, account.org_id, account.id).await {
            Ok(token) => token,
            Err(TokenRefused::Provider(error)) => return (Delivery::Deferred, error),
            Err(_) => {
                return (
                    Delivery::Failed,
                    "Google refused the account's grant: connect the account again".to_owned(),
                );
            }
        };
        match gmail.send(&token.secret, raw).await {
            Ok(sent) => return (Delivery::Sent, format!("Gmail message {}", sent.id)),
            Err(GmailError::Unauthenticated(_)) if !retried => {
                // Expired before its time (revoked, or the clocks disagree): a new one, once.
                retried = true;
                state
                    .identity_providers
                    .access_tokens
                    .clear(account.org_id, account.id)
                    .await;
            }
            Err(error)
                if error.is_transient() || matches!(error, GmailError::Unauthenticated(_)) =>
            {
                return (Delivery::Deferred, error.to_string());
            }
            Err(error) => return (Delivery::Failed, error.to_string()),
        }
    }
}
