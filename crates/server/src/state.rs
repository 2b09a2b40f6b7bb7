use std::sync::Arc;

use axum::http::HeaderValue;
use ipnet::IpNet;
use mailroom_core::TrustedProxies;
use mailroom_storage::Database;

use crate::metrics::Metrics;

/// What handlers and edge layers share. Cheap to clone: everything is behind a handle.
#[derive(Clone)]
pub struct AppState {
    pub database: Database,
    pub metrics: Arc<Metrics>,
    pub trusted_proxies: Arc<TrustedProxies>,
    pub metrics_allow: Arc<[IpNet]>,
    pub x_xss_protection: HeaderValue,
}
