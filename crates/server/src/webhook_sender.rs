//! Posting webhooks to the endpoints organizations name (docs/security.md#webhooks): only to
//! `https://` URLs without credentials in them, and only to public addresses — the verifier's
//! guard ([`mailroom_core::network::is_public`]) — unless the operator allows otherwise.
//!
//! The guard holds where the connection is made, not only where the URL is checked: every
//! name is resolved by [`PublicOnly`], which hands the client public addresses alone, so a
//! name that resolves elsewhere later (DNS rebinding) still reaches nothing inward. No
//! redirect is followed and no proxy is used.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// The longest URL an endpoint may have.
const MAX_URL: usize = 2048;

/// Where webhook endpoints may be, and how long one has to answer
/// (docs/security.md#webhooks).
#[derive(Clone, Copy, Debug)]
pub struct WebhookSettings {
    /// `http://` endpoints too, not only `https://`.
    pub allow_http: bool,
    /// Endpoints on loopback, private and other non-public networks.
    pub allow_private_networks: bool,
    /// How long an endpoint has to answer a delivery.
    pub timeout: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow_http: false,
            allow_private_networks: false,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a URL cannot be an endpoint's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlRefusal {
    NotAUrl,
    /// Not `https://` (nor `http://`, where the operator allows it).
    Scheme {
        http_allowed: bool,
    },
    /// A user name or password in the URL: it would be stored and shown as it is.
    Credentials,
    /// On loopback, a private network or another address that is not public.
    NotPublic,
}

impl UrlRefusal {
    pub fn describe(self) -> &'static str {
        match self {
            UrlRefusal::NotAUrl => {
                "The endpoint is not an absolute URL of at most 2048 characters."
            }
            UrlRefusal::Scheme { http_allowed: true } => {
                "The endpoint must be an https:// or http:// URL."
            }
            UrlRefusal::Scheme {
                http_allowed: false,
            } => "The endpoint must be an https:// URL.",
            UrlRefusal::Credentials => {
                "The endpoint URL may not carry a user name or password: check the signature instead."
            }
            UrlRefusal::NotPublic => {
                "The endpoint is on loopback, a private network or another address that is not public."
            }
        }
    }
}

/// The client every webhook goes out through.
pub struct WebhookSender {
    client: reqwest::Client,
    pub settings: WebhookSettings,
}

/// What an endpoint answered a delivery: its status, or why there was none.
pub type Answer = Result<u16, String>;

impl WebhookSender {
    pub fn new(settings: WebhookSettings) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .dns_resolver(Arc::new(PublicOnly {
                allow_private_networks: settings.allow_private_networks,
            }))
            .user_agent(concat!("mailroom-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookSender { client, settings })
    }

    /// `text` as an endpoint's URL, or why it cannot be one: its form, and where its host is
    /// now (a name that does not resolve yet is let through; its deliveries will fail).
    pub async fn check(&self, text: &str) -> Result<Url, UrlRefusal> {
        let url = self.checked(text)?;
        if let Some(Host::Domain(name)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            if let Ok(addresses) = tokio::net::lookup_host((name, port)).await {
                for address in addresses {
                    self.allowed(address.ip())?;
                }
            }
        }
        Ok(url)
    }

    /// Posts `body`, signed by `headers`, to `url`.
    pub async fn post(&self, url: &str, headers: &[(&str, String)], body: String) -> Answer {
        let url = self
            .checked(url)
            .map_err(|refusal| refusal.describe().to_owned())?;
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.body(body).send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(error) if error.is_timeout() => Err(format!(
                "no answer within {} s",
                self.settings.timeout.as_secs()
            )),
            Err(error) => Err(describe(error)),
        }
    }

    /// The URL if its form is an endpoint's and its host, when an address, may be reached. A
    /// name reaches only public addresses through the resolver; an address literal never
    /// meets it, so it is judged here.
    fn checked(&self, text: &str) -> Result<Url, UrlRefusal> {
        if text.len() > MAX_URL {
            return Err(UrlRefusal::NotAUrl);
        }
        let url = Url::parse(text).map_err(|_| UrlRefusal::NotAUrl)?;
        match url.scheme() {
            "https" => {}
            "http" if self.settings.allow_http => {}
            _ => {
                return Err(UrlRefusal::Scheme {
                    http_allowed: self.settings.allow_http,
                });
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRefusal::Credentials);
        }
        match url.host() {
            None => return Err(UrlRefusal::NotAUrl),
            Some(Host::Ipv4(ip)) => self.allowed(IpAddr::V4(ip))?,
            Some(Host::Ipv6(ip)) => self.allowed(IpAddr::V6(ip))?,
            Some(Host::Domain(_)) => {}
        }
        Ok(url)
    }

    fn allowed(&self, ip: IpAddr) -> Result<(), UrlRefusal> {
        if self.settings.allow_private_networks || mailroom_core::network::is_public(ip) {
            Ok(())
        } else {
            Err(UrlRefusal::NotPublic)
        }
    }
}

/// A transport error's chain of causes, without the URL (it is the endpoint's record already).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// Resolves names as the system does, and keeps the public addresses alone (all of them
/// where private networks are allowed).
struct PublicOnly {
    allow_private_networks: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private_networks = self.allow_private_networks;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|address| {
                    allow_private_networks || mailroom_core::network::is_public(address.ip())
                })
                .collect();
            if found.is_empty() {
                return Err(format!("{} has no public address", name.as_str()).into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}
