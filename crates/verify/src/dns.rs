//! VER-2: where does this domain take its mail?
//!
//! MX records in preference order; with none, the domain's own A/AAAA records (the implicit MX
//! of RFC 5321 §5.1); `MX 0 .` is RFC 7505's null MX, a domain that takes no mail. A domain
//! that does not exist (NXDOMAIN) is told apart from one that exists without mail records. The
//! resolver keeps one cache, positive and negative answers each for their TTL, that every
//! check shares.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};
use serde::{Deserialize, Serialize};

/// Answers kept at once; beyond this the least recently used go.
const CACHE_ENTRIES: usize = 16_384;

#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
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
        })
    }

    /// `domain` is lowercase ASCII, as `syntax::parse` leaves it.
    pub async fn mail_hosts(&self, domain: &str) -> DnsReport {
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
                DnsReport::of(DomainStatus::Mx, mx)
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
