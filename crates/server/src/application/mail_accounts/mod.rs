//! The mail accounts an organization connects to send from and read (one resource, several
//! kinds): connected by its owners and admins (members too where the organization allows it,
//! keys with `accounts:manage`), listed by anyone who sends or reads, tested for real, and
//! disconnected. Credentials are sealed under the organization's key by storage and never
//! leave this module but to log in. Google accounts connect through OAuth ([`google`]).

pub mod google;

use mailroom_core::api_keys::Scope;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::mail_account::SendLimits;
use mailroom_core::{MailAccountId, OrgId};
use mailroom_mail::probe::{ConnectionCheck, ImapSecurity, ImapSettings, check_imap, check_smtp};
use mailroom_mail::{SmtpSecurity, SmtpSettings};
use mailroom_storage::mail_accounts::{
    AccountKind, AccountStatus, CredentialsVersion, MailAccount, NewMailAccount,
};
use mailroom_storage::teams::MemberPower;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::application::accounts::parse_email;
use crate::application::actor::Caller;
use crate::audit::AuditTrail;
use crate::error::{Conflict, DomainError, Forbidden, SendRefusal};
use crate::state::AppState;

/// An account's name, in characters.
const MAX_NAME: usize = 100;
/// Other addresses an account may send as.
const MAX_FROM_ADDRESSES: usize = 50;
const MAX_HOST: usize = 253;
const MAX_USERNAME: usize = 256;
const MAX_PASSWORD: usize = 1024;

/// How a connection to a mail server is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// TLS from the first byte.
    Tls,
    /// STARTTLS, required: nothing is said in clear after the greeting.
    Starttls,
    /// No TLS: for a relay on a trusted network only.
    None,
}

impl Security {
    fn smtp(self) -> SmtpSecurity {
        match self {
            Security::Tls => SmtpSecurity::ImplicitTls,
            Security::Starttls => SmtpSecurity::StartTls,
            Security::None => SmtpSecurity::None,
        }
    }

    fn imap(self) -> ImapSecurity {
        match self {
            Security::Tls => ImapSecurity::Tls,
            Security::Starttls => ImapSecurity::StartTls,
            Security::None => ImapSecurity::None,
        }
    }
}

/// Where a mail server is and whom to log in as: stored as it is, no secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
}

/// A server as it is connected: its place, and the password to log in with.
pub struct ServerLogin {
    pub server: Server,
    pub password: Option<SecretString>,
}

/// A mail account to connect: an SMTP relay or submission server (`imap` absent), or an IMAP
/// mailbox, with SMTP submission when it also sends.
pub struct NewServerAccount {
    pub name: String,
    pub address: String,
    pub imap: Option<ServerLogin>,
    pub smtp: Option<ServerLogin>,
    pub from_addresses: Vec<String>,
    /// Its send limits, where not the defaults of its kind.
    pub limits: Option<SendLimits>,
    /// A key its messages are DKIM-signed with, over SMTP.
    pub dkim: Option<DkimKey>,
}

/// What is stored in the clear of an account: where its servers are, or whose Google
/// account it is.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<Server>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imap: Option<Server>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google: Option<GoogleGrant>,
    /// Its send limits, where not the defaults of its kind ([`send_limits`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<SendLimits>,
    /// Where receivers find the public key its messages are DKIM-signed with (the private key
    /// is sealed with the credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim: Option<DkimDomain>,
}

/// A DKIM signing domain and selector: the public key is at `<selector>._domainkey.<domain>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DkimDomain {
    pub domain: String,
    pub selector: String,
}

/// A DKIM key to sign an account's messages with, as given.
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    /// PEM: RSA (PKCS#8 or PKCS#1) or Ed25519 (PKCS#8).
    pub private_key: SecretString,
}

/// The key checked: a domain and a selector of DNS labels, and a key mailroom can sign with.
fn checked_dkim(key: DkimKey) -> Result<(DkimDomain, String), DomainError> {
    let label_ok = |text: &str| {
        !text.is_empty()
            && text.len() <= 253
            && text.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    let domain = key.domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let selector = key.selector.trim().to_ascii_lowercase();
    if !label_ok(&domain) || !label_ok(&selector) {
        return Err(DomainError::invalid(
            "dkim",
            "dkim.domain and dkim.selector are DNS names (letters, digits, hyphens)",
        ));
    }
    let pem = key.private_key.expose_secret().to_owned();
    mailroom_mail::dkim::check_key(&pem).map_err(|why| DomainError::invalid("dkim", why))?;
    Ok((DkimDomain { domain, selector }, pem))
}

/// Whose Google account an account is, and the Gmail scopes it was granted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GoogleGrant {
    /// Google's subject for the user (`sub`): the account, whatever its address becomes.
    pub subject: String,
    pub scopes: Vec<String>,
}

impl Settings {
    /// The settings of a stored account (written by this module, so they read back).
    pub fn of(account: &MailAccount) -> Settings {
        serde_json::from_str(&account.settings).unwrap_or_default()
    }
}

/// What is sealed of an account.
#[derive(Default, Serialize, Deserialize)]
struct Credentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    smtp_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    imap_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// The DKIM private key (PEM), when the account signs its messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dkim_private_key: Option<String>,
}

/// One of the organization's accounts, with its credentials opened: to use them, never to
/// show them.
async fn with_credentials(
    state: &AppState,
    org_id: OrgId,
    id: MailAccountId,
) -> Result<Option<(MailAccount, Credentials, CredentialsVersion)>, DomainError> {
    let Some(opened) = state
        .database
        .mail_accounts()
        .credentials(org_id, id)
        .await?
    else {
        return Ok(None);
    };
    // Written by this module as JSON: it reads back.
    let credentials = serde_json::from_slice(&opened.credentials).unwrap_or_default();
    Ok(Some((opened.account, credentials, opened.version)))
}

/// Connects an SMTP or IMAP account for the caller's organization.
pub async fn connect_servers(
    state: &AppState,
    trail: &AuditTrail,
    caller: &Caller,
    input: NewServerAccount,
) -> Result<MailAccount, DomainError> {
    may_manage(state, caller).await?;
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(DomainError::invalid(
            "name",
            format!("name must be 1 to {MAX_NAME} characters"),
        ));
    }
    let address = parse_email(&input.address)
        .map_err(|error| error.for_field("address"))?
        .to_string();
    if input.from_addresses.len() > MAX_FROM_ADDRESSES {
        return Err(DomainError::invalid(
            "from_addresses",
            format!("from_addresses may hold at most {MAX_FROM_ADDRESSES} addresses"),
        ));
    }
    let from_addresses = input
        .from_addresses
        .iter()
        .map(|raw| parse_email(raw).map(|email| email.to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.for_field("from_addresses"))?;
    let kind = if input.imap.is_some() {
        AccountKind::Imap
    } else {
        AccountKind::Smtp
    };
    let mut settings = Settings {
        limits: input.limits.map(checked_limits).transpose()?,
        ..Settings::default()
    };
    let mut credentials = Credentials::default();
    if let Some(key) = input.dkim {
        let (domain, pem) = checked_dkim(key)?;
        settings.dkim = Some(domain);
        credentials.dkim_private_key = Some(pem);
    }
    if let Some(ServerLogin { server, password }) = input.smtp {
        settings.smtp = Some(checked_server(server, password.as_ref(), "smtp")?);
        credentials.smtp_password = password.map(|password| password.expose_secret().to_owned());
    }
    if let Some(ServerLogin { server, password }) = input.imap {
        let server = checked_server(server, password.as_ref(), "imap")?;
        if server.username.is_none() {
            return Err(DomainError::invalid(
                "imap",
                "imap.username and imap.password are needed: a mailbox is read as its user",
            ));
        }
        settings.imap = Some(server);
        credentials.imap_password = password.map(|password| password.expose_secret().to_owned());
    }
    if settings.smtp.is_none() && settings.imap.is_none() {
        return Err(DomainError::invalid("smtp", "an account needs a server"));
    }
    let id = MailAccountId::generate();
    let account = NewMailAccount {
        id,
        kind,
        name: name.to_owned(),
        address: address.clone(),
        can_send: settings.smtp.is_some(),
        can_read: settings.imap.is_some(),
        settings: serde_json::to_string(&settings).map_err(DomainError::internal)?,
        credentials: Zeroizing::new(
            serde_json::to_vec(&credentials).map_err(DomainError::internal)?,
        ),
        from_addresses,
        connected_by: match caller {
            Caller::Account(principal) => Some(principal.user.id),
            Caller::Key(_) => None,
        },
    };
    let event = AuditEvent {
        target: Some(format!("mail account {id} ({address})")),
        ..caller.event(trail, Action::MailAccountConnected)
    };
    Ok(state
        .database
        .mail_accounts()
        .connect(caller.org_id(), &account, &event, OffsetDateTime::now_utc())
        .await?)
}

/// How fast an account may send: its own limits, or its kind's (Gmail's for a Google account).
pub fn send_limits(account: &MailAccount) -> SendLimits {
    Settings::of(account).limits.unwrap_or(match account.kind {
        AccountKind::Google => SendLimits::GMAIL,
        AccountKind::Smtp | AccountKind::Imap => SendLimits::SMTP,
    })
}

fn checked_limits(limits: SendLimits) -> Result<SendLimits, DomainError> {
    if limits.is_valid() {
        Ok(limits)
    } else {
        Err(DomainError::invalid(
            "limits",
            "per_minute and per_day are 1 to 10,000,000 (or null: none), concurrency 1 to 100",
        ))
    }
}

/// Sets an account's send limits (`None`: its kind's defaults again).
pub async fn set_limits(
    state: &AppState,
    trail: &AuditTrail,
    caller: &Caller,
    id: MailAccountId,
    limits: Option<SendLimits>,
) -> Result<MailAccount, DomainError> {
    may_manage(state, caller).await?;
    let limits = limits.map(checked_limits).transpose()?;
    let org_id = caller.org_id();
    let accounts = state.database.mail_accounts();
    let account = accounts
        .get(org_id, id)
        .await?
        .ok_or(DomainError::NotFound)?;
    let settings = Settings {
        limits,
        ..Settings::of(&account)
    };
    let event = AuditEvent {
        target: Some(format!(
            "mail account {id} ({}): send limits",
            account.address
        )),
        ..caller.event(trail, Action::MailAccountUpdated)
    };
    let settings = serde_json::to_string(&settings).map_err(DomainError::internal)?;
    let now = OffsetDateTime::now_utc();
    if !accounts
        .set_settings(org_id, id, &settings, &event, now)
        .await?
    {
        return Err(DomainError::NotFound);
    }
    accounts.get(org_id, id).await?.ok_or(DomainError::NotFound)
}

/// A server's settings as given, checked; the field names are under `field`.
fn checked_server(
    server: Server,
    password: Option<&SecretString>,
    field: &'static str,
) -> Result<Server, DomainError> {
    let host = server.host.trim().to_owned();
    if host.is_empty()
        || host.len() > MAX_HOST
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(DomainError::invalid(
            field,
            format!("{field}.host must be a host name or an IP address"),
        ));
    }
    if host
        .trim_matches(['[', ']'])
        .parse()
        .is_ok_and(never_a_mail_host)
    {
        return Err(DomainError::invalid(
            field,
            format!(
                "{field}.host may not be a link-local, unspecified, multicast or broadcast address"
            ),
        ));
    }
    if server.port == 0 {
        return Err(DomainError::invalid(
            field,
            format!("{field}.port must be 1 to 65535"),
        ));
    }
    let username = server
        .username
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty());
    if username
        .as_ref()
        .is_some_and(|name| name.len() > MAX_USERNAME || name.chars().any(char::is_control))
    {
        return Err(DomainError::invalid(
            field,
            format!(
                "{field}.username must be at most {MAX_USERNAME} bytes, without control characters"
            ),
        ));
    }
    match (&username, password) {
        (Some(_), None) => {
            return Err(DomainError::invalid(
                field,
                format!("{field}.password is needed with a username"),
            ));
        }
        (None, Some(_)) => {
            return Err(DomainError::invalid(
                field,
                format!("{field}.username is needed with a password"),
            ));
        }
        (_, Some(password)) if password.expose_secret().len() > MAX_PASSWORD => {
            return Err(DomainError::invalid(
                field,
                format!("{field}.password must be at most {MAX_PASSWORD} bytes"),
            ));
        }
        _ => {}
    }
    Ok(Server {
        host,
        port: server.port,
        security: server.security,
        username,
    })
}

/// The account a message from `from` goes out through: an active account of the
/// organization that sends, whose address (or one of whose other addresses) it is, and
/// `chosen` if the caller chose one.
pub(crate) async fn sender(
    state: &AppState,
    org_id: OrgId,
    from: &str,
    chosen: Option<MailAccountId>,
) -> Result<MailAccount, DomainError> {
    let accounts = state.database.mail_accounts().list(org_id).await?;
    let sends_as = |account: &MailAccount| {
        account.can_send
            && (account.address.eq_ignore_ascii_case(from)
                || account
                    .from_addresses
                    .iter()
                    .any(|address| address.eq_ignore_ascii_case(from)))
    };
    let account = accounts
        .into_iter()
        .filter(|account| chosen.is_none_or(|id| account.id == id))
        .find(sends_as)
        .ok_or(DomainError::Sending(SendRefusal::FromNotConnected))?;
    if account.status != AccountStatus::Active {
        return Err(DomainError::Conflict(Conflict::AccountNeedsReconnect));
    }
    Ok(account)
}

/// How an account sends.
pub(crate) enum Transport {
    /// Its SMTP server, with the password to log in with, and the DKIM key to sign with.
    Smtp(SmtpSettings, Option<Signing>),
    /// The Gmail API, with the account's access token ([`google::access_token`]).
    Gmail,
}

/// How one of the organization's accounts sends; `None` for an account that is gone or does
/// not send.
pub(crate) async fn transport_of(
    state: &AppState,
    org_id: OrgId,
    id: MailAccountId,
) -> Result<Option<(MailAccount, Transport)>, DomainError> {
    let Some((account, credentials, _)) = with_credentials(state, org_id, id).await? else {
        return Ok(None);
    };
    if account.kind == AccountKind::Google {
        return Ok(account.can_send.then_some((account, Transport::Gmail)));
    }
    let stored = Settings::of(&account);
    let Some(server) = stored.smtp else {
        return Ok(None);
    };
    let signing = stored
        .dkim
        .zip(credentials.dkim_private_key)
        .map(|(domain, key)| Signing {
            domain,
            key: SecretString::from(key),
        });
    let settings = smtp_settings(state, server, credentials.smtp_password);
    Ok(Some((account, Transport::Smtp(settings, signing))))
}

/// An account's DKIM domain and its private key, opened to sign.
pub(crate) struct Signing {
    pub domain: DkimDomain,
    pub key: SecretString,
}

impl Signing {
    /// `raw`, signed.
    pub fn sign(&self, raw: &[u8]) -> Result<Vec<u8>, String> {
        mailroom_mail::dkim::sign(
            raw,
            &self.domain.domain,
            &self.domain.selector,
            self.key.expose_secret(),
        )
    }
}

/// How to reach and log in to an account's SMTP server.
fn smtp_settings(state: &AppState, server: Server, password: Option<String>) -> SmtpSettings {
    SmtpSettings {
        host: server.host,
        port: server.port,
        security: server.security.smtp(),
        credentials: server.username.zip(password.map(SecretString::from)),
        ca_file: state.mail_accounts_ca_file.clone(),
    }
}

/// Whether `ip` can be no mail server's: private and loopback networks are (internal relays
/// are normal), but link-local addresses (a cloud's metadata service among them), the
/// unspecified address, multicast and broadcast are not.
fn never_a_mail_host(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            v4.is_unspecified() || v4.is_link_local() || v4.is_multicast() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| never_a_mail_host(IpAddr::V4(v4)))
        }
    }
}

/// Owners and admins connect and disconnect accounts; members where the organization lets
/// them; keys with `accounts:manage`.
async fn may_manage(state: &AppState, caller: &Caller) -> Result<(), DomainError> {
    caller.require(Scope::AccountsManage, false)?;
    if let Caller::Account(principal) = caller
        && !principal.user.org_role.manages()
        && !state
            .database
            .teams()
            .members_may(principal.user.org_id, MemberPower::ConnectAccounts)
            .await?
    {
        return Err(DomainError::Forbidden(Forbidden::AccountsForManagersOnly));
    }
    Ok(())
}

/// Anyone of the organization reads its accounts; a key needs `send` or `mailbox:read`.
fn may_read(caller: &Caller) -> Result<(), DomainError> {
    caller
        .require(Scope::Send, false)
        .or_else(|_| caller.require(Scope::MailboxRead, false))
}

/// The organization's accounts, oldest first.
pub async fn list(state: &AppState, caller: &Caller) -> Result<Vec<MailAccount>, DomainError> {
    may_read(caller)?;
    Ok(state.database.mail_accounts().list(caller.org_id()).await?)
}

/// One of the organization's accounts.
pub async fn get(
    state: &AppState,
    caller: &Caller,
    id: MailAccountId,
) -> Result<MailAccount, DomainError> {
    may_read(caller)?;
    state
        .database
        .mail_accounts()
        .get(caller.org_id(), id)
        .await?
        .ok_or(DomainError::NotFound)
}

/// A protocol an account speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Smtp,
    /// Google's OAuth and the Gmail API.
    Gmail,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Smtp => "smtp",
            Protocol::Gmail => "gmail",
        }
    }
}

/// What a test of an account found on each of its servers.
pub struct AccountTest {
    pub checks: Vec<(Protocol, ConnectionCheck)>,
}

impl AccountTest {
    /// Why it failed, server by server; `None` when every server let it in.
    pub fn error(&self) -> Option<String> {
        let errors: Vec<String> = self
            .checks
            .iter()
            .filter_map(|(protocol, check)| {
                check
                    .error
                    .as_ref()
                    .map(|error| format!("{}: {error}", protocol.as_str()))
            })
            .collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    }
}

/// Connects to each of the account's servers and logs in, for real, and says what each server
/// said; the outcome is the account's last use. A login with the account's secrets is for
/// those who may connect it.
pub async fn test(
    state: &AppState,
    caller: &Caller,
    id: MailAccountId,
) -> Result<AccountTest, DomainError> {
    may_manage(state, caller).await?;
    let (account, credentials, _) = with_credentials(state, caller.org_id(), id)
        .await?
        .ok_or(DomainError::NotFound)?;
    if account.kind == AccountKind::Google {
        // A refused grant marks the account itself (needs_reconnect).
        let check = google::test(state, &account).await;
        let tested = AccountTest {
            checks: vec![(Protocol::Gmail, check)],
        };
        record_test(state, &account, &tested).await?;
        return Ok(tested);
    }
    let settings = Settings::of(&account);
    let mut checks = Vec::new();
    if let Some(server) = settings.imap {
        let imap = ImapSettings {
            host: server.host,
            port: server.port,
            security: server.security.imap(),
            username: server.username.unwrap_or_default(),
            password: SecretString::from(credentials.imap_password.unwrap_or_default()),
            ca_file: state.mail_accounts_ca_file.clone(),
        };
        checks.push((Protocol::Imap, check_imap(&imap).await));
    }
    if let Some(server) = settings.smtp {
        let smtp = smtp_settings(state, server, credentials.smtp_password);
        checks.push((Protocol::Smtp, check_smtp(&smtp, &hello_name(state)).await));
    }
    let tested = AccountTest { checks };
    record_test(state, &account, &tested).await?;
    Ok(tested)
}

/// A test's outcome is the account's last use.
async fn record_test(
    state: &AppState,
    account: &MailAccount,
    tested: &AccountTest,
) -> Result<(), DomainError> {
    Ok(state
        .database
        .mail_accounts()
        .record_use(
            account.org_id,
            account.id,
            tested.error().as_deref(),
            OffsetDateTime::now_utc(),
        )
        .await?)
}

/// The name this installation says in EHLO: its public host.
pub(crate) fn hello_name(state: &AppState) -> String {
    url::Url::parse(&state.public_origin)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// What became of a disconnected account's grant at its provider.
pub enum Revocation {
    /// The account had no grant to revoke (SMTP, IMAP: the password is simply deleted).
    NotNeeded,
    Revoked,
    /// The provider could not be told, and why: the credentials are deleted all the same.
    Failed(String),
}

/// Disconnects the account: a Google grant is revoked at Google first; its credentials are
/// deleted with it, even when the revocation failed (which is reported and audited).
pub async fn disconnect(
    state: &AppState,
    trail: &AuditTrail,
    caller: &Caller,
    id: MailAccountId,
) -> Result<Revocation, DomainError> {
    may_manage(state, caller).await?;
    let org_id = caller.org_id();
    let (account, credentials, _) = with_credentials(state, org_id, id)
        .await?
        .ok_or(DomainError::NotFound)?;
    let revocation = match credentials.refresh_token.map(SecretString::from) {
        Some(token) => match google::revoke(state, &token).await {
            Ok(()) => Revocation::Revoked,
            Err(error) => Revocation::Failed(error),
        },
        None => Revocation::NotNeeded,
    };
    state.identity_providers.access_tokens.forget(org_id, id);
    let target = format!("mail account {id} ({})", account.address);
    let mut events = Vec::new();
    if let Revocation::Failed(error) = &revocation {
        tracing::warn!(account = %id, %error, "a disconnected account's grant was not revoked");
        events.push(AuditEvent {
            outcome: Outcome::Failure,
            target: Some(format!("{target}: {error}")),
            ..caller.event(trail, Action::MailAccountRevocationFailed)
        });
    }
    events.push(AuditEvent {
        target: Some(target),
        ..caller.event(trail, Action::MailAccountDisconnected)
    });
    if state
        .database
        .mail_accounts()
        .disconnect(org_id, id, &events, OffsetDateTime::now_utc())
        .await?
    {
        Ok(revocation)
    } else {
        Err(DomainError::NotFound)
    }
}
