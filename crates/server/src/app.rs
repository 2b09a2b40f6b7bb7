//! The composition root: [`App`] builds the state, the router behind the edge and the
//! workers from a [`crate::Config`], and serves until the shutdown signal.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use anyhow::Context;
use axum::Router;
use axum::http::HeaderValue;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use mailroom_storage::Database;
use mailroom_storage::queue::JobKind;
use mailroom_verify::Verifier;
use secrecy::ExposeSecret;
use url::Url;

use crate::auth::passwords::PasswordWork;
use crate::auth::tokens::TokenKeys;
use crate::config::{Config, HEADER_READ_TIMEOUT};
use crate::metrics::Metrics;
use crate::rate_limit::Limiter;
use crate::rate_limit::auth::AuthLimiter;
use crate::state::{AppState, Shared};
use crate::verification::Verifications;
use crate::{edge, router, tls};
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// A mailroom server: database opened and migrated, socket bound, routes built. Nothing is
/// served until [`App::run_until`].
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    public_url: Url,
    router: Router,
    database: Database,
    auth_limiter: AuthLimiter,
    /// For the background workers.
    state: AppState,
    tls: Option<RustlsConfig>,
    shutdown_timeout: std::time::Duration,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let tls = config
            .tls
            .as_ref()
            .map(tls::server_config)
            .transpose()?
            .map(RustlsConfig::from_config);
        let (database, root_key) = config.open_database().await?;

        let listener = TcpListener::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let public_url = match &config.public_url {
            Some(url) => url.clone(),
            None => default_public_url(local_addr, tls.is_some())?,
        };

        let mail = config.system_mail()?;
        let limiter = match &config.redis_url {
            Some(url) => Limiter::redis(
                url.expose_secret(),
                &config.redis_key_prefix,
                config.redis_failure,
            )
            .context("--redis-url")?,
            None => Limiter::in_memory(),
        };
        let auth_limiter = AuthLimiter::new(limiter.clone(), config.auth_rate_limit);
        let state = AppState::new(Shared {
            database: database.clone(),
            metrics: Metrics::new(),
            trusted_proxies: config.trusted_proxies.clone(),
            metrics_allow: config.metrics_allow.clone(),
            x_xss_protection: HeaderValue::from_str(&config.x_xss_protection)
                .context("--http-x-xss-protection is not a valid header value")?,
            public_origin: public_url.origin().ascii_serialization(),
            mail_accounts_ca_file: config.mail_accounts_ca_file.clone(),
            mail,
            passwords: PasswordWork::new()?,
            auth_limiter: auth_limiter.clone(),
            limiter,
            key_uses: Default::default(),
            tokens: TokenKeys::new(&root_key, public_url.origin().ascii_serialization()),
            code_key: root_key.derive(b"mailroom/email-code/hmac/v1"),
            backup_code_key: root_key.derive(b"mailroom/backup-code/hmac/v1"),
            queue: crate::work_queue::Runner::new(config.jobs),
            verifications: Verifications::new(
                Verifier::new(config.verify.clone()).context("cannot set up the verifier")?,
            ),
            identity_providers: crate::identity_providers::IdentityProviders::new(
                &config.oidc,
                &root_key,
            )?,
            public_url: public_url.clone(),
            webhooks: crate::webhook_sender::WebhookSender::new(config.webhooks)
                .context("cannot set up the webhook client")?,
            smtp_senders: Default::default(),
            send_slots: Default::default(),
        });
        let router = edge::harden(router::router(&state), state.clone());
        Ok(Self {
            listener,
            local_addr,
            public_url,
            router,
            database,
            auth_limiter,
            state,
            tls,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The address the server is bound to (the real port when the configured one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// With no account yet: a fresh one-time link that creates the first super-admin.
    pub async fn setup_link(&self) -> anyhow::Result<Option<Url>> {
        Ok(crate::application::installation::setup_link(&self.database, &self.public_url).await?)
    }

    /// Where users reach this server.
    pub fn public_url(&self) -> &Url {
        &self.public_url
    }

    /// The database, as the app opened it (unlocked): what a test reads the queue through.
    pub fn database(&self) -> Database {
        self.database.clone()
    }

    /// mailroom's own mail, to wait on ([`mailroom_mail::SystemMail::settled`]).
    pub fn system_mail(&self) -> mailroom_mail::SystemMail {
        self.state.mail.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting connections, lets in-flight
    /// requests finish (up to the shutdown timeout) and closes the database.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let maintenance = tokio::spawn(crate::workers::maintenance::run_periodically(
            self.database.clone(),
            self.auth_limiter.clone(),
        ));
        let settings = self.state.queue.settings;
        let queue_runners: Vec<_> = JobKind::ALL
            .into_iter()
            .filter(|_| settings.run_here)
            .flat_map(|kind| (0..settings.runners(kind)).map(move |_| kind))
            .map(|kind| tokio::spawn(crate::workers::queue::run(self.state.clone(), kind)))
            .collect();
        let handle = Handle::new();
        let grace = self.shutdown_timeout;
        let signal_handle = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            signal_handle.graceful_shutdown(Some(grace));
        });
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = match self.tls {
            Some(tls) => {
                let mut server = axum_server::from_tcp_rustls(self.listener, tls).handle(handle);
                limit_header_time(server.http_builder());
                server.serve(service).await
            }
            None => {
                let mut server = axum_server::from_tcp(self.listener).handle(handle);
                limit_header_time(server.http_builder());
                server.serve(service).await
            }
        };
        maintenance.abort();
        for runner in queue_runners {
            runner.abort();
        }
        self.database.close().await;
        served.context("serving HTTP")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Gives hyper a timer, without which it enforces no header-read timeout at all.
fn limit_header_time(builder: &mut hyper_util::server::conn::auto::Builder<TokioExecutor>) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
}

/// `http(s)://<bound address>`, with a wildcard address replaced by loopback: a URL that a
/// browser on this machine can open.
fn default_public_url(addr: SocketAddr, tls: bool) -> anyhow::Result<Url> {
    let ip = match addr.ip() {
        ip if ip == Ipv4Addr::UNSPECIFIED => Ipv4Addr::LOCALHOST.into(),
        ip if ip == Ipv6Addr::UNSPECIFIED => Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    let url = format!("{scheme}://{}", SocketAddr::new(ip, addr.port()));
    Url::parse(&url).with_context(|| format!("building the public URL {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_become_loopback_urls() {
        let url = default_public_url("0.0.0.0:8080".parse().unwrap(), false).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/");
        let url = default_public_url("[::]:443".parse().unwrap(), true).unwrap();
        assert_eq!(url.as_str(), "https://[::1]/");
    }
}
