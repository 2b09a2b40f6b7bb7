//! The JSON API's handlers, each module one concern. Handlers extract, authorize, call the
//! domain and respond; the edge ([`crate::edge`]) does everything that applies to all of them,
//! and [`crate::router`] puts them on their paths.

pub(crate) mod admin;
pub(crate) mod api_keys;
pub(crate) mod assets;
pub(crate) mod auth;
pub(crate) mod csp_report;
pub(crate) mod emails;
pub(crate) mod health;
pub(crate) mod mail_accounts;
pub(crate) mod me;
pub(crate) mod metrics;
pub(crate) mod org;
pub(crate) mod privacy;
pub(crate) mod setup;
pub(crate) mod team;
pub(crate) mod two_factor;
pub(crate) mod usage;
pub(crate) mod verify;
pub(crate) mod verify_jobs;
pub(crate) mod webhooks;
