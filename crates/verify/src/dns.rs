//! Where does this domain take its mail?
//!
//! MX records in preference order; with none, the domain's own A/AAAA records (the implicit MX
//! of RFC 5321 §5.1); `MX 0 .` is RFC 7505's null MX, a domain that takes no mail. A domain
//! that does not exist (NXDOMAIN) is told apart from one that exists without mail records. The
//! resolver keeps one cache, positive and negative answers each for their TTL, that every
//! check shares; in front of it, the reports of domains with MX records, for the same TTL.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};
use serde::{Deserialize, Serialize};

/// Answers kept at once; beyond this the least recently used go.
const CACHE_ENTRIES: usize = 16_384;

#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    answers: Arc<Answers>,
}

/// The reports of domains with MX records, each until its records' TTL ends. A few domains
/// (the large mailbox providers) are asked about on most checks, and each answer from the
/// resolver's own cache still costs a name parsed, a lock and a lookup future, then the
/// report built again. Measured under load on `POST /v1/verify` without the SMTP probe, this
/// and running such checks without a task of their own (mailroom-server's `Verifications`)
/// took the server's CPU per request from about 150 to 125 µs.
#[derive(Default)]
struct Answers(Mutex<HashMap<String, (DnsReport, Instant)>>);

impl Answers {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (DnsReport, Instant)>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, domain: &str) -> Option<DnsReport> {
        self.entries()
            .get(domain)
            .filter(|(_, valid_until)| Instant::now() < *valid_until)
            .map(|(report, _)| report.clone())
    }

    fn keep(&self, domain: &str, report: &DnsReport, valid_until: Instant) {
        let mut entries = self.entries();
        // Past the bound it starts again: the hot domains come back at once.
        if entries.len() >= CACHE_ENTRIES {
            entries.clear();
        }
        entries.insert(domain.to_owned(), (report.clone(), valid_until));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainStatus {
    /// MX records name the hosts.
    Mx,
    /// No MX, but the domain has an address: it is its own mail host.
    ImplicitMx,
    /// `MX 0 .`: the domain says it takes no mail.
    NullMx,
    /// The domain exists but has neither MX nor address records.
    NoMailRecords,
    /// NXDOMAIN: there is no such domain.
    NotFound,
    /// The lookup itself failed (timeout, SERVFAIL): nothing is known.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MailHost {
    pub preference: u16,
    pub host: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsReport {
    pub checked: bool,
    pub status: Option<DomainStatus>,
    pub accepts_mail: bool,
    /// The hosts to try, most preferred first.
    pub mx: Vec<MailHost>,
}

impl DnsReport {
    pub fn not_checked() -> Self {
        DnsReport {
            checked: false,
            status: None,
            accepts_mail: false,
            mx: Vec::new(),
        }
    }

    fn of(status: DomainStatus, mx: Vec<MailHost>) -> Self {
        DnsReport {
            checked: true,
            status: Some(status),
            accepts_mail: matches!(status, DomainStatus::Mx | DomainStatus::ImplicitMx),
            mx,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the DNS resolver: {0}")]
pub struct DnsSetupError(#[from] ResolveError);

impl Dns {
    /// Asks `server` when given (tests, or a resolver of the operator's), else the system's
    /// resolvers from `/etc/resolv.conf`.
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> Result<Self, DnsSetupError> {
        let provider = TokioConnectionProvider::default();
        let mut builder = match server {
            Some(server) => TokioResolver::builder_with_config(
                ResolverConfig::from_parts(
                    None,
                    Vec::new(),
                    NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true),
                ),
                provider,
            ),
            None => TokioResolver::builder(provider)?,
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = timeout;
        options.attempts = 2;
        options.cache_size = CACHE_ENTRIES;
        // Names are looked up as given, never with a search domain appended.
        options.ndots = 0;
        Ok(Dns {
            resolver: builder.build(),
            answers: Arc::default(),
        })
    }

    /// `domain` is lowercase ASCII, as `syntax::parse` leaves it.
    pub async fn mail_hosts(&self, domain: &str) -> DnsReport {
        if let Some(report) = self.answers.get(domain) {
            return report;
        }
        let fqdn = format!("{domain}.");
        match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut mx: Vec<MailHost> = lookup
                    .iter()
                    .map(|record| MailHost {
                        preference: record.preference(),
                        host: record
                            .exchange()
                            .to_ascii()
                            .trim_end_matches('.')
                            .to_owned(),
                    })
                    .collect();
                if mx.iter().any(|host| host.host.is_empty()) {
                    return DnsReport::of(DomainStatus::NullMx, Vec::new());
                }
                // Equal preferences keep a stable order, so that bulk runs group alike.
                mx.sort_by(|a, b| (a.preference, &a.host).cmp(&(b.preference, &b.host)));
                mx.dedup();
                let report = DnsReport::of(DomainStatus::Mx, mx);
                self.answers.keep(domain, &report, lookup.valid_until());
                report
            }
            Err(error) if error.is_nx_domain() => DnsReport::of(DomainStatus::NotFound, Vec::new()),
            Err(error) if error.is_no_records_found() => match self.addresses(domain).await {
                Ok(addresses) if !addresses.is_empty() => DnsReport::of(
                    DomainStatus::ImplicitMx,
                    vec![MailHost {
                        preference: 0,
                        host: domain.to_owned(),
                    }],
                ),
                Ok(_) => DnsReport::of(DomainStatus::NoMailRecords, Vec::new()),
                Err(Lookup::NotFound) => DnsReport::of(DomainStatus::NotFound, Vec::new()),
                Err(Lookup::Failed) => DnsReport::of(DomainStatus::Failed, Vec::new()),
            },
            Err(error) => {
                tracing::debug!(%domain, %error, "MX lookup failed");
                DnsReport::of(DomainStatus::Failed, Vec::new())
            }
        }
    }

    /// The addresses of a mail host, IPv4 and IPv6; empty when it has none.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, Lookup> {
        let fqdn = format!("{host}.");
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(lookup) => Ok(lookup.iter().collect()),
            Err(error) if error.is_nx_domain() => Err(Lookup::NotFound),
            Err(error) if error.is_no_records_found() => Ok(Vec::new()),
            Err(error) => {
                tracing::debug!(%host, %error, "address lookup failed");
                Err(Lookup::Failed)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    NotFound,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> DnsReport {
        DnsReport::of(
            DomainStatus::Mx,
            vec![MailHost {
                preference: 10,
                host: "mx.example.com".to_owned(),
            }],
        )
    }

    #[test]
    fn an_answer_is_kept_until_its_records_expire() {
        let answers = Answers::default();
        answers.keep(
            "live.test",
            &report(),
            Instant::now() + Duration::from_secs(60),
        );
        answers.keep("gone.test", &report(), Instant::now());
        assert_eq!(answers.get("live.test"), Some(report()));
        assert_eq!(answers.get("gone.test"), None);
        assert_eq!(answers.get("never.test"), None);
    }

    #[test]
    fn past_its_bound_the_memo_starts_again() {
        let answers = Answers::default();
        let later = Instant::now() + Duration::from_secs(60);
        for n in 0..CACHE_ENTRIES {
            answers.keep(&format!("d{n}.test"), &report(), later);
        }
        answers.keep("one-more.test", &report(), later);
        assert_eq!(answers.entries().len(), 1);
        assert_eq!(answers.get("d0.test"), None);
        assert_eq!(answers.get("one-more.test"), Some(report()));
    }
}
