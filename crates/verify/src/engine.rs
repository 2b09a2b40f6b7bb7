//! The verifier: runs every check on a list of addresses and decides each verdict.
//!
//! Bulk runs are cheap on the mail hosts they ask: the addresses that share mail hosts share
//! sessions (many `RCPT TO` per session, `RSET` between transactions), no host sees more than
//! `sessions_per_host` sessions of ours at once, and the whole engine holds at most
//! `max_sessions`. A domain's catch-all test is made once and remembered.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::Rng;
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::dns::{Dns, DnsReport, MailHost};
use crate::lists::{Classification, Lists, ListsError};
use crate::providers::Providers;
use crate::proxy::Proxies;
use crate::report::{self, Reason, SmtpReport, SyntaxReport, Verification, verdict_of};
use crate::smtp::{self, Answer, Greeting, Mailbox, Reply, Session, SessionError};
use crate::syntax::{self, Address};

/// How the engine reaches the world. The defaults suit production but for `helo_name` and
/// `probe_from`, which an operator should set to a name and address of their own.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A resolver to ask instead of the system's (`ip:port`).
    pub dns_server: Option<SocketAddr>,
    pub smtp_port: u16,
    /// Said in EHLO: a real host name whose A record points back at this machine.
    pub helo_name: String,
    /// Said in `MAIL FROM`; empty is the null reverse path `<>`.
    pub probe_from: String,
    /// For connecting, and for each reply.
    pub timeout: Duration,
    /// The most one group of addresses may take at its mail host, however slowly the host
    /// answers each reply; the addresses not asked by then are reported as timed out.
    pub session_deadline: Duration,
    /// The most sessions of ours one mail host is given at once. A host that refuses one, or
    /// cuts one short, is given fewer (never below one), and more again, one at a time, after
    /// sessions that end well.
    pub sessions_per_host: usize,
    pub max_sessions: usize,
    /// How often the addresses of a session the host refused or cut short are tried again…
    pub throttle_retries: usize,
    /// …first after about this long, each wait about twice the last.
    pub throttle_backoff: Duration,
    /// A session ends (QUIT) after this many `RCPT TO`; the next one opens afresh.
    pub rcpts_per_session: usize,
    /// A transaction ends (`RSET`) after this many `RCPT TO`.
    pub rcpts_per_transaction: usize,
    /// In bulk runs, greylisted addresses are asked again after this long…
    pub greylist_retry_after: Duration,
    /// …this many times at most.
    pub greylist_retries: usize,
    /// Operator additions to the shipped lists.
    pub lists_dir: Option<PathBuf>,
    /// The SOCKS5 proxies the probes go through; none: they connect directly.
    pub proxies: Proxies,
    /// Whether mail hosts on loopback, private, link-local and other non-public addresses
    /// may be probed. Off by default: anyone who can ask for a verification can point a
    /// domain's MX at an internal host, and the probe would then knock on it.
    pub probe_private_networks: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dns_server: None,
            smtp_port: 25,
            helo_name: "localhost".to_owned(),
            probe_from: String::new(),
            timeout: Duration::from_secs(10),
            session_deadline: Duration::from_secs(120),
            sessions_per_host: 2,
            max_sessions: 64,
            throttle_retries: 5,
            throttle_backoff: Duration::from_secs(1),
            rcpts_per_session: 100,
            // RFC 5321 §4.5.3.1.8: a server must take at least 100 recipients at once.
            rcpts_per_transaction: 100,
            greylist_retry_after: Duration::from_secs(60),
            greylist_retries: 2,
            lists_dir: None,
            proxies: Proxies::default(),
            probe_private_networks: false,
        }
    }
}

/// Whether greylisted addresses are waited for (a bulk job can; a caller waiting on an HTTP
/// answer cannot, and gets `unknown` with the reason `greylisted`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Sync,
    Bulk,
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub smtp: bool,
    pub mode: Mode,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsSetupError),
    #[error(transparent)]
    Lists(#[from] ListsError),
}

/// How long a domain's catch-all answer is trusted.
const CATCH_ALL_TTL: Duration = Duration::from_secs(3600);
/// The most addresses of a domain's mail hosts tried before giving up (Postfix's
/// `smtp_mx_address_limit`): a domain with fifty MX records must not make fifty connections.
const MX_ADDRESSES_TRIED: usize = 5;
/// Past this many remembered hosts, the idle ones are forgotten.
const REMEMBERED_HOSTS: usize = 4096;
/// A host given fewer sessions is given one more after this many sessions end well.
const SESSIONS_TO_RECOVER: usize = 16;
/// The longest wait before trying a throttling host again.
const MAX_THROTTLE_BACKOFF: Duration = Duration::from_secs(60);

pub struct Verifier {
    dns: Dns,
    lists: Lists,
    providers: Providers,
    settings: Settings,
    greeting: Greeting,
    sessions: Arc<Semaphore>,
    hosts: Mutex<HashMap<IpAddr, Arc<HostLimit>>>,
    catch_all: Mutex<HashMap<String, (bool, Instant)>>,
}

/// One address on its way through the checks.
struct Pending {
    email: String,
    address: Option<Address>,
    canonical: Option<String>,
    syntax: SyntaxReport,
    dns: DnsReport,
    classification: Classification,
    smtp: SmtpReport,
    smtp_reason: Option<Reason>,
}

/// What the probe learned of one address.
struct Probed {
    host: String,
    outcome: Result<Reply, Failure>,
}

impl Probed {
    fn at(host: &str, outcome: Result<Reply, Failure>) -> Self {
        Probed {
            host: host.to_owned(),
            outcome,
        }
    }
}

/// Every address of `rest`, failed the same way at `host`.
fn all_failed<'a>(
    rest: &'a [(usize, &Address)],
    host: &'a str,
    failure: &'a Failure,
) -> impl Iterator<Item = (usize, Probed)> + 'a {
    rest.iter()
        .map(move |&(index, _)| (index, Probed::at(host, Err(failure.clone()))))
}

#[derive(Clone)]
enum Failure {
    Unreachable,
    Timeout,
    /// The session was refused (banner, EHLO or `MAIL FROM`) with this reply code.
    Refused(u16),
    /// The host kept refusing sessions or cutting them short, past every retry; its last
    /// reply, if it gave one.
    Throttled(Option<Reply>),
    /// Every address of the hosts is on a network the probe may not reach.
    NotPublic,
    /// The address has a UTF-8 local part and the server does not take those.
    NoSmtpUtf8,
}

impl From<&SessionError> for Failure {
    fn from(error: &SessionError) -> Self {
        match error {
            SessionError::Timeout => Failure::Timeout,
            SessionError::Refused(reply) => Failure::Refused(reply.code),
            SessionError::Connect(_)
            | SessionError::Protocol(_)
            | SessionError::Io(_)
            | SessionError::Closed
            | SessionError::Proxy(_) => Failure::Unreachable,
        }
    }
}

/// Why no session could be opened with any of a domain's hosts.
struct Unusable {
    host: String,
    failure: Failure,
    /// A host refused or cut the session short as one does that takes fewer of ours at once:
    /// worth trying again, when.
    throttled: Option<Pace>,
}

/// When to try a host again that refused a session or cut one short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pace {
    /// Other sessions of ours were open there: the refusal is explained by them, and the
    /// attempt waits for a place under the lowered limit, not for a clock.
    AfterOurOthers,
    /// None was: the host is busy for reasons of its own; wait a while.
    Backoff,
}

/// A session with the mail host `host`, holding its place under the host's limit and the
/// engine's.
struct Opened {
    host: String,
    session: Session,
    slot: HostSlot,
    _engine: tokio::sync::OwnedSemaphorePermit,
}

/// How many sessions of ours one mail host takes at once, as learned: `sessions_per_host` at
/// first; each sign of throttling lowers it below the sessions then open (never below one),
/// and every [`SESSIONS_TO_RECOVER`] sessions that end well raise it by one again.
struct HostLimit {
    state: Mutex<HostState>,
    freed: tokio::sync::Notify,
    most: usize,
}

struct HostState {
    limit: usize,
    open: usize,
    ended_well: usize,
    /// The host has answered us: a refused connection now is a host that takes no more.
    answered: bool,
}

/// One session's place under its host's limit; given back when dropped.
struct HostSlot(Arc<HostLimit>);

impl HostLimit {
    fn new(most: usize) -> Self {
        HostLimit {
            state: Mutex::new(HostState {
                limit: most,
                open: 0,
                ended_well: 0,
                answered: false,
            }),
            freed: tokio::sync::Notify::new(),
            most,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HostState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a place under the limit.
    async fn enter(self: &Arc<Self>) -> HostSlot {
        loop {
            // Listening before looking: a place freed in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut state = self.state();
                if state.open < state.limit {
                    state.open += 1;
                    return HostSlot(Arc::clone(self));
                }
            }
            freed.await;
        }
    }
}

impl HostSlot {
    /// The host refused a session or cut one short: fewer at once from now on.
    fn throttled(&self) -> Pace {
        let mut state = self.0.state();
        state.limit = state.limit.min(state.open).saturating_sub(1).max(1);
        state.ended_well = 0;
        if state.open > 1 {
            Pace::AfterOurOthers
        } else {
            Pace::Backoff
        }
    }

    fn answered(&self) {
        self.0.state().answered = true;
    }

    fn host_has_answered(&self) -> bool {
        self.0.state().answered
    }

    /// The session ended well: after enough of those, one more at once.
    fn ended_well(&self) {
        let mut state = self.0.state();
        state.ended_well += 1;
        if state.ended_well >= SESSIONS_TO_RECOVER && state.limit < self.0.most {
            state.limit += 1;
            state.ended_well = 0;
        }
    }
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        self.0.state().open -= 1;
        self.0.freed.notify_waiters();
    }
}

/// The waits between a group's attempts at a throttling host.
struct Retries {
    left: usize,
    wait: Duration,
}

impl Retries {
    /// A caller waiting on an answer gets one retry; a bulk run, every one.
    fn new(settings: &Settings, mode: Mode) -> Self {
        Retries {
            left: match mode {
                Mode::Sync => settings.throttle_retries.min(1),
                Mode::Bulk => settings.throttle_retries,
            },
            wait: settings.throttle_backoff,
        }
    }

    /// Takes a retry, waiting first unless the host's own limit paces it (half to one and a
    /// half times the current wait, so that groups refused together do not come back
    /// together); false when the retries are spent or the wait would pass `deadline`.
    async fn again(&mut self, pace: Pace, deadline: Instant) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        if pace == Pace::AfterOurOthers {
            return true;
        }
        let wait = self.wait.mul_f64(rand::rng().random_range(0.5..1.5));
        if Instant::now() + wait >= deadline {
            return false;
        }
        tokio::time::sleep(wait).await;
        self.wait = (self.wait * 2).min(MAX_THROTTLE_BACKOFF);
        true
    }
}

impl Verifier {
    pub fn new(settings: Settings) -> Result<Self, SetupError> {
        let dns = Dns::new(settings.dns_server, settings.timeout)?;
        let (lists, providers) = match &settings.lists_dir {
            Some(dir) => (
                Lists::with_operator_lists(dir)?,
                Providers::with_operator_file(dir)?,
            ),
            None => (Lists::default(), Providers::default()),
        };
        Ok(Verifier {
            dns,
            lists,
            providers,
            greeting: Greeting {
                helo_name: settings.helo_name.clone(),
                probe_from: settings.probe_from.clone(),
                timeout: settings.timeout,
            },
            sessions: Arc::new(Semaphore::new(settings.max_sessions.max(1))),
            hosts: Mutex::new(HashMap::new()),
            catch_all: Mutex::new(HashMap::new()),
            settings,
        })
    }

    /// The one spelling of the mailbox `address` reaches (see [`Providers::canonical`]).
    pub fn canonical(&self, address: &Address) -> String {
        self.providers.canonical(address)
    }

    pub async fn verify(&self, email: &str, options: Options) -> Verification {
        let started = (Instant::now(), OffsetDateTime::now_utc());
        let mut pending = [self.parse(email)];
        self.check(&mut pending, options).await;
        let [entry] = pending;
        finish(entry, started)
    }

    /// Verifies every address; the results come in the order of `emails`.
    pub async fn verify_many(&self, emails: &[String], options: Options) -> Vec<Verification> {
        let started = (Instant::now(), OffsetDateTime::now_utc());
        let mut pending: Vec<Pending> = emails.iter().map(|email| self.parse(email)).collect();
        self.check(&mut pending, options).await;
        pending
            .into_iter()
            .map(|entry| finish(entry, started))
            .collect()
    }

    async fn check(&self, pending: &mut [Pending], options: Options) {
        self.look_up_domains(pending).await;
        for entry in pending.iter_mut() {
            if let Some(address) = &entry.address {
                entry.classification = self.lists.classify(address);
            }
        }
        if options.smtp {
            self.probe_all(pending, options.mode).await;
        } else {
            for entry in pending.iter_mut().filter(|entry| entry.dns.accepts_mail) {
                entry.smtp_reason = Some(Reason::SmtpNotChecked);
            }
        }
    }

    fn parse(&self, email: &str) -> Pending {
        let (address, syntax) = match syntax::parse(email) {
            Ok(address) => {
                let syntax = SyntaxReport {
                    valid: true,
                    reason: None,
                    local_part: Some(address.local_part().to_owned()),
                    domain: Some(address.domain().to_owned()),
                };
                (Some(address), syntax)
            }
            Err(reason) => (
                None,
                SyntaxReport {
                    valid: false,
                    reason: Some(reason),
                    local_part: None,
                    domain: None,
                },
            ),
        };
        Pending {
            email: email.to_owned(),
            canonical: address
                .as_ref()
                .map(|address| self.providers.canonical(address)),
            address,
            syntax,
            dns: DnsReport::not_checked(),
            classification: Classification::default(),
            smtp: SmtpReport::not_checked(),
            smtp_reason: None,
        }
    }

    /// Each distinct domain is looked up once, many at a time.
    async fn look_up_domains(&self, pending: &mut [Pending]) {
        // Owned names: a stream of borrowed ones makes the future too general to be `Send`.
        let mut domains: Vec<String> = pending
            .iter()
            .filter_map(|entry| entry.address.as_ref().map(|a| a.domain().to_owned()))
            .collect();
        domains.sort_unstable();
        domains.dedup();
        let reports: HashMap<String, DnsReport> = futures::stream::iter(domains)
            .map(|domain| async move {
                let report = self.dns.mail_hosts(&domain).await;
                (domain, report)
            })
            .buffer_unordered(64)
            .collect()
            .await;
        for entry in pending {
            if let Some(address) = &entry.address
                && let Some(report) = reports.get(address.domain())
            {
                entry.dns = report.clone();
            }
        }
    }

    async fn probe_all(&self, pending: &mut [Pending], mode: Mode) {
        let mut due: Vec<usize> = (0..pending.len())
            .filter(|&index| pending[index].dns.accepts_mail)
            .collect();
        let mut rounds_left = match mode {
            Mode::Sync => 0,
            Mode::Bulk => self.settings.greylist_retries,
        };
        loop {
            let probed = self.probe_round(pending, &due, mode).await;
            let mut again = Vec::new();
            for (index, probed) in probed {
                let greylisted = self.record(&mut pending[index], probed);
                if greylisted {
                    again.push(index);
                }
            }
            if again.is_empty() || rounds_left == 0 {
                break;
            }
            rounds_left -= 1;
            tokio::time::sleep(self.settings.greylist_retry_after).await;
            due = again;
        }
    }

    /// Probes the addresses at `due`, sharing sessions among those with the same mail hosts.
    async fn probe_round(
        &self,
        pending: &[Pending],
        due: &[usize],
        mode: Mode,
    ) -> Vec<(usize, Probed)> {
        let mut groups: HashMap<&[MailHost], Vec<(usize, &Address)>> = HashMap::new();
        for &index in due {
            if let Some(address) = &pending[index].address {
                groups
                    .entry(pending[index].dns.mx.as_slice())
                    .or_default()
                    .push((index, address));
            }
        }
        let per_session = self.settings.rcpts_per_session.max(1);
        let mut sessions: FuturesUnordered<_> = groups
            .iter()
            .flat_map(|(hosts, addresses)| {
                addresses
                    .chunks(per_session)
                    .map(move |chunk| self.probe_session(hosts, chunk, mode))
            })
            .collect();
        let mut probed = Vec::with_capacity(due.len());
        while let Some(results) = sessions.next().await {
            probed.extend(results);
        }
        probed
    }

    /// Asks the first host that answers about every address of `chunk`; a session that breaks
    /// midway is opened again for the addresses still unasked. A host that refuses the
    /// session or cuts it short is given fewer sessions, and the addresses still unasked are
    /// tried again after a wait, until the retries are spent.
    async fn probe_session(
        &self,
        hosts: &[MailHost],
        chunk: &[(usize, &Address)],
        mode: Mode,
    ) -> Vec<(usize, Probed)> {
        let mut results = Vec::with_capacity(chunk.len());
        let mut rest = chunk;
        let deadline = Instant::now() + self.settings.session_deadline;
        let mut retries = Retries::new(&self.settings, mode);
        // The host's last reply before it cut a session short, if it gave one.
        let mut last_refusal: Option<Reply> = None;
        while !rest.is_empty() {
            if Instant::now() >= deadline {
                let host = hosts.first().map_or("", |first| first.host.as_str());
                results.extend(all_failed(rest, host, &Failure::Timeout));
                return results;
            }
            let Opened {
                host,
                mut session,
                slot,
                _engine,
            } = match self.open_session(hosts).await {
                Ok(opened) => opened,
                Err(unusable) => {
                    if let Some(pace) = unusable.throttled {
                        if let Failure::Throttled(Some(reply)) = &unusable.failure {
                            last_refusal = Some(reply.clone());
                        }
                        if retries.again(pace, deadline).await {
                            continue;
                        }
                    }
                    results.extend(all_failed(rest, &unusable.host, &unusable.failure));
                    return results;
                }
            };
            let mut in_transaction = 0;
            let mut asked = 0;
            let mut broken = None;
            for &(index, address) in rest {
                if Instant::now() >= deadline {
                    break;
                }
                if in_transaction == self.settings.rcpts_per_transaction.max(1) {
                    if let Err(error) = session.reset().await {
                        broken = Some(error);
                        break;
                    }
                    in_transaction = 0;
                }
                if !address.local_part().is_ascii() && !session.takes_utf8() {
                    // RFC 6531: such an address may only be given to a server that says it
                    // takes them.
                    results.push((index, Probed::at(&host, Err(Failure::NoSmtpUtf8))));
                    asked += 1;
                    continue;
                }
                in_transaction += 1;
                match session.rcpt(&address.normalized()).await {
                    // RFC 5321 §3.8: the server is closing the session.
                    Ok(reply) if reply.code == 421 => {
                        broken = Some(SessionError::Refused(reply));
                        break;
                    }
                    Ok(reply) => {
                        results.push((index, Probed::at(&host, Ok(reply))));
                        asked += 1;
                    }
                    Err(error) => {
                        broken = Some(error);
                        break;
                    }
                }
            }
            match broken {
                None => {
                    let out_of_time = Instant::now() >= deadline;
                    let limit_reached =
                        in_transaction >= self.settings.rcpts_per_transaction.max(1);
                    // A host that accepts everyone has nothing to tell by accepting a stranger.
                    let worth_asking = !self.providers.hides_mailboxes(&host);
                    if worth_asking
                        && !out_of_time
                        && (!limit_reached || session.reset().await.is_ok())
                    {
                        self.test_catch_all(&mut session, rest, &results).await;
                    }
                    session.quit().await;
                    slot.ended_well();
                }
                // Not the address's doing: it is asked again, in a later session.
                Some(error) if error.cut_short() => {
                    let pace = slot.throttled();
                    if let SessionError::Refused(reply) = &error {
                        last_refusal = Some(reply.clone());
                    }
                    drop((session, slot, _engine));
                    if !retries.again(pace, deadline).await {
                        let failure = Failure::Throttled(last_refusal);
                        results.extend(all_failed(&rest[asked..], &host, &failure));
                        return results;
                    }
                }
                // The address the session broke on is reported as it broke.
                Some(error) => {
                    if let Some(&(index, _)) = rest.get(asked) {
                        results.push((index, Probed::at(&host, Err(Failure::from(&error)))));
                        asked += 1;
                    }
                }
            }
            // A pass asks at least one address unless out of time or cut short, when the next
            // pass reports the rest as timed out or waits out a retry (of which there are
            // few): so this ends, and no address goes unanswered.
            rest = &rest[asked..];
        }
        results
    }

    /// Tries the hosts in preference order, each of their addresses in turn.
    async fn open_session(&self, hosts: &[MailHost]) -> Result<Opened, Unusable> {
        let mut last = Unusable {
            host: String::new(),
            failure: Failure::Unreachable,
            throttled: None,
        };
        // Throttling by any of the hosts outweighs the others' failures: it passes.
        let mut throttled: Option<Unusable> = None;
        let mut tried = 0;
        for host in hosts {
            if tried >= MX_ADDRESSES_TRIED {
                break;
            }
            let Ok(addresses) = self.dns.addresses(&host.host).await else {
                last.host.clone_from(&host.host);
                last.failure = Failure::Unreachable;
                continue;
            };
            for ip in addresses {
                if tried >= MX_ADDRESSES_TRIED {
                    break;
                }
                tried += 1;
                if !self.settings.probe_private_networks && !mailroom_core::network::is_public(ip) {
                    tracing::debug!(host = %host.host, %ip, "mail host not on a public network: not probed");
                    last.host.clone_from(&host.host);
                    last.failure = Failure::NotPublic;
                    continue;
                }
                let slot = self.host_limit(ip).enter().await;
                let Ok(engine) = Arc::clone(&self.sessions).acquire_owned().await else {
                    continue;
                };
                let address = SocketAddr::new(ip, self.settings.smtp_port);
                let proxy = self.settings.proxies.for_host(&host.host);
                match Session::open(address, proxy, &self.greeting).await {
                    Ok(session) => {
                        slot.answered();
                        return Ok(Opened {
                            host: host.host.clone(),
                            session,
                            slot,
                            _engine: engine,
                        });
                    }
                    Err(error) => {
                        if let SessionError::Proxy(_) = &error {
                            // The operator's to fix, not the mail host's.
                            tracing::warn!(host = %host.host, %ip, %error, "probe proxy failed");
                        } else {
                            tracing::debug!(host = %host.host, %ip, %error, "mail host unusable");
                        }
                        last.host.clone_from(&host.host);
                        // A host that has answered us before and now refuses the connection,
                        // or refuses the session for now, takes no more of ours at once.
                        if error.cut_short()
                            || (error.connection_refused() && slot.host_has_answered())
                        {
                            let pace = slot.throttled();
                            throttled = Some(Unusable {
                                host: host.host.clone(),
                                failure: Failure::Throttled(match error {
                                    SessionError::Refused(reply) => Some(reply),
                                    _ => None,
                                }),
                                throttled: Some(pace),
                            });
                        } else {
                            last.failure = Failure::from(&error);
                        }
                    }
                }
            }
        }
        Err(throttled.unwrap_or(last))
    }

    fn host_limit(&self, ip: IpAddr) -> Arc<HostLimit> {
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if hosts.len() > REMEMBERED_HOSTS {
            hosts.retain(|_, limit| Arc::strong_count(limit) > 1);
        }
        Arc::clone(
            hosts.entry(ip).or_insert_with(|| {
                Arc::new(HostLimit::new(self.settings.sessions_per_host.max(1)))
            }),
        )
    }

    /// For each domain of `chunk` that accepted an address here and whose answer is not
    /// remembered, asks for a random address that cannot exist.
    async fn test_catch_all(
        &self,
        session: &mut Session,
        chunk: &[(usize, &Address)],
        results: &[(usize, Probed)],
    ) {
        let accepted: Vec<&str> = chunk
            .iter()
            .filter(|(index, _)| {
                results.iter().any(|(probed, result)| {
                    probed == index
                        && matches!(&result.outcome, Ok(reply) if smtp::classify(reply) == Answer::Accepted)
                })
            })
            .map(|(_, address)| address.domain())
            .collect();
        for domain in accepted {
            if self.remembered_catch_all(domain).is_some() {
                continue;
            }
            let probe = format!(
                "mailroom-probe-{:016x}@{domain}",
                rand::rng().random::<u64>()
            );
            // A temporary answer says nothing; it is not remembered.
            match session
                .rcpt(&probe)
                .await
                .map(|reply| smtp::classify(&reply))
            {
                Ok(Answer::Accepted) => self.remember_catch_all(domain, true),
                Ok(Answer::Refused(_)) => self.remember_catch_all(domain, false),
                _ => {}
            }
        }
    }

    fn remembered_catch_all(&self, domain: &str) -> Option<bool> {
        let known = self
            .catch_all
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        known
            .get(domain)
            .filter(|(_, at)| at.elapsed() < CATCH_ALL_TTL)
            .map(|(catch_all, _)| *catch_all)
    }

    fn remember_catch_all(&self, domain: &str, catch_all: bool) {
        let mut known = self
            .catch_all
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.len() > REMEMBERED_HOSTS {
            known.retain(|_, (_, at)| at.elapsed() < CATCH_ALL_TTL);
        }
        known.insert(domain.to_owned(), (catch_all, Instant::now()));
    }

    /// Writes what the probe learned into the entry; true when it was greylisted.
    fn record(&self, entry: &mut Pending, probed: Probed) -> bool {
        entry.smtp = SmtpReport {
            checked: true,
            host: Some(probed.host),
            ..SmtpReport::not_checked()
        };
        let reply = match probed.outcome {
            Ok(reply) => reply,
            Err(failure) => {
                entry.smtp_reason = Some(match failure {
                    Failure::Throttled(reply) => {
                        if let Some(reply) = reply {
                            entry.smtp.code = Some(reply.code);
                            entry.smtp.enhanced_code = reply.enhanced;
                            entry.smtp.message = Some(reply.text);
                        }
                        Reason::SmtpThrottled
                    }
                    Failure::Timeout => Reason::SmtpTimeout,
                    Failure::Unreachable => Reason::SmtpUnreachable,
                    Failure::Refused(code) if code >= 500 => Reason::SmtpBlocked,
                    Failure::Refused(_) => Reason::SmtpTemporaryFailure,
                    Failure::NotPublic => Reason::MailHostNotPublic,
                    Failure::NoSmtpUtf8 => Reason::Smtputf8Unsupported,
                });
                return false;
            }
        };
        let answer = smtp::classify(&reply);
        entry.smtp.code = Some(reply.code);
        entry.smtp.enhanced_code = reply.enhanced;
        entry.smtp.message = Some(reply.text);
        entry.smtp_reason = None;
        let domain = entry
            .address
            .as_ref()
            .map(Address::domain)
            .unwrap_or_default();
        let host = entry.smtp.host.as_deref().unwrap_or_default();
        match answer {
            Answer::Accepted if self.providers.hides_mailboxes(host) => {
                entry.smtp_reason = Some(Reason::ProviderHidesMailboxes);
            }
            Answer::Accepted => {
                entry.smtp.mailbox = Mailbox::Exists;
                entry.smtp.catch_all = self.remembered_catch_all(domain);
                if entry.smtp.catch_all.is_none() {
                    // Accepted, but whether the domain accepts anything is not known.
                    entry.smtp_reason = Some(Reason::CatchAllUnknown);
                }
            }
            Answer::Refused(mailbox) => {
                entry.smtp.mailbox = mailbox;
                // A domain that refuses an address takes mail for some addresses only.
                entry.smtp.catch_all = Some(false);
                if mailbox == Mailbox::Unknown {
                    // Refused for a reason the reply does not name: never "deliverable".
                    entry.smtp_reason = Some(Reason::SmtpRejected);
                }
            }
            Answer::Temporary { greylisted } => {
                entry.smtp_reason = Some(if greylisted {
                    Reason::Greylisted
                } else {
                    Reason::SmtpTemporaryFailure
                });
                return greylisted;
            }
            Answer::Blocked => entry.smtp_reason = Some(Reason::SmtpBlocked),
        }
        false
    }
}

/// The verdict from everything the checks found.
fn finish(entry: Pending, (started, checked_at): (Instant, OffsetDateTime)) -> Verification {
    let reasons = report::reasons(
        &entry.syntax,
        &entry.dns,
        &entry.classification,
        &entry.smtp,
        entry.smtp_reason,
    );
    Verification {
        normalized: entry.address.as_ref().map(Address::normalized),
        canonical: entry.canonical,
        email: entry.email,
        verdict: verdict_of(&reasons),
        reasons,
        syntax: entry.syntax,
        dns: entry.dns,
        classification: entry.classification,
        smtp: entry.smtp,
        cached: false,
        checked_at,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host's limit falls below the sessions open when it throttles us (never below one),
    /// and climbs back one at a time, after enough sessions end well, to the setting and no
    /// further.
    #[tokio::test]
    async fn a_host_limit_falls_at_once_and_recovers_slowly() {
        let limit = Arc::new(HostLimit::new(3));
        let limit_now = || limit.state().limit;
        let (a, b, c) = (
            limit.enter().await,
            limit.enter().await,
            limit.enter().await,
        );
        assert_eq!(c.throttled(), Pace::AfterOurOthers);
        assert_eq!(limit_now(), 2);
        drop(c);
        assert_eq!(b.throttled(), Pace::AfterOurOthers);
        assert_eq!(limit_now(), 1);
        drop(b);
        assert_eq!(
            a.throttled(),
            Pace::Backoff,
            "alone: the host's own reasons"
        );
        assert_eq!(limit_now(), 1, "never below one");
        for _ in 0..SESSIONS_TO_RECOVER - 1 {
            a.ended_well();
        }
        assert_eq!(limit_now(), 1);
        a.ended_well();
        assert_eq!(limit_now(), 2);
        for _ in 0..SESSIONS_TO_RECOVER * 4 {
            a.ended_well();
        }
        assert_eq!(limit_now(), 3, "the setting is the most");
        drop(a);
        assert_eq!(limit.state().open, 0);
    }

    /// A place freed while another waits for one is taken up at once.
    #[tokio::test]
    async fn a_freed_place_wakes_a_waiter() {
        let limit = Arc::new(HostLimit::new(1));
        let held = limit.enter().await;
        let waiter = tokio::spawn({
            let limit = Arc::clone(&limit);
            async move { limit.enter().await.0.most }
        });
        drop(held);
        assert_eq!(waiter.await.unwrap(), 1);
    }
}
