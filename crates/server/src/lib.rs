//! mailroom's HTTP server: the hardened edge every request passes through, the JSON API and the
//! server-rendered pages. This is the only crate that knows HTTP.
//!
//! [`App::build`] turns a [`Config`] into a bound, migrated, ready-to-run server; the binary and
//! the tests both start mailroom through it.

mod app;
mod application;
mod audit;
mod auth;
pub mod config;
mod edge;
mod error;
mod extract;
mod identity_providers;
mod json;
mod limits;
mod listing;
mod metrics;
mod pages;
mod problem;
pub mod rate_limit;
mod router;
mod routes;
pub mod shutdown;
mod state;
pub mod telemetry;
mod tls;
mod verification;
mod views;
mod webhook_sender;
mod work_queue;
mod workers;

pub use app::App;
/// The operator's operations, for the CLI.
pub use application::installation;
pub use auth::passwords::PasswordWork;
pub use config::Config;
pub use error::DomainError;
pub use json::ApiJson;
pub use problem::ApiError;
