use std::sync::Arc;

use axum::http::HeaderValue;
use ipnet::IpNet;
use mailroom_core::TrustedProxies;
use mailroom_storage::Database;

use mailroom_mail::SystemMail;

use crate::auth::passwords::PasswordWork;
use crate::auth::tokens::TokenKeys;
use crate::edge::rate_limit::AuthLimiter;
use crate::metrics::Metrics;

/// What handlers and edge layers share. Cheap to clone: everything is behind a handle.
#[derive(Clone)]
pub struct AppState {
    pub database: Database,
    pub metrics: Arc<Metrics>,
    pub trusted_proxies: Arc<TrustedProxies>,
    pub metrics_allow: Arc<[IpNet]>,
    pub x_xss_protection: HeaderValue,
    /// `scheme://host[:port]` of `--public-url`: what a same-origin request's `Origin` says.
    pub public_origin: Arc<str>,
    pub mail: SystemMail,
    pub passwords: PasswordWork,
    pub tokens: TokenKeys,
    /// Keys the hashes of emailed codes.
    pub code_key: mailroom_crypto::master_key::DerivedKey,
    pub auth_limiter: AuthLimiter,
}
