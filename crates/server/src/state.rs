//! [`AppState`]: what handlers, layers, operations and workers share, cheap to clone.

use std::sync::Arc;

use axum::http::HeaderValue;
use ipnet::IpNet;
use mailroom_core::TrustedProxies;
use mailroom_storage::Database;

use mailroom_mail::SystemMail;

use crate::auth::passwords::PasswordWork;
use crate::auth::tokens::TokenKeys;
use crate::metrics::Metrics;
use crate::rate_limit::Limiter;
use crate::rate_limit::auth::AuthLimiter;

/// What handlers and edge layers share: one reference-counted handle, because every
/// middleware and `State` extractor clones it on every request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub database: Database,
    pub metrics: Metrics,
    pub trusted_proxies: TrustedProxies,
    pub metrics_allow: Vec<IpNet>,
    pub x_xss_protection: HeaderValue,
    /// `scheme://host[:port]` of `--http-public-url`: what a same-origin request's `Origin` says.
    pub public_origin: String,
    pub mail: SystemMail,
    /// A CA trusted for connected mail accounts' servers, besides the public roots.
    pub mail_accounts_ca_file: Option<std::path::PathBuf>,
    pub passwords: PasswordWork,
    pub tokens: TokenKeys,
    /// Keys the hashes of emailed codes.
    pub code_key: mailroom_crypto::root_key::DerivedKey,
    /// Keys the MACs of backup codes.
    pub backup_code_key: mailroom_crypto::root_key::DerivedKey,
    /// The verification engine, with dedup, quota and log.
    pub verifications: crate::verification::Verifications,
    /// This node's runner of the work queue.
    pub queue: crate::work_queue::Runner,
    pub auth_limiter: AuthLimiter,
    /// Per-key limits, in process or shared through Redis.
    pub limiter: Limiter,
    pub key_uses: crate::auth::key_uses::KeyUses,
    /// OpenID providers to sign in with (and Google, to connect Gmail accounts).
    pub identity_providers: crate::identity_providers::IdentityProviders,
    /// Where users reach this server: the base of every redirect URI.
    pub public_url: url::Url,
    /// Where webhooks go out.
    pub webhooks: crate::webhook_sender::WebhookSender,
    /// Connected SMTP accounts' senders, their connections reused from message to message.
    pub smtp_senders: mailroom_mail::outgoing::SmtpSenders,
    /// The messages each account sends at once on this node.
    pub send_slots: mailroom_mail::outgoing::SendSlots,
}
