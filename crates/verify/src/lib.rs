//! mailroom's email verification engine: is this address real and safe to send to?
//!
//! Syntax ([`syntax`]), the domain's mail hosts ([`dns`]), what the shipped lists say
//! ([`lists`]), and what the mail host itself answers ([`smtp`]) make one [`Verification`] with
//! a [`Verdict`]. The engine knows nothing of HTTP, tenants or quotas: the server and the CLI
//! both drive it through [`Verifier`].

pub mod dns;
mod engine;
pub mod lists;
pub mod providers;
pub mod proxy;
mod report;
pub mod smtp;
pub mod syntax;

pub use engine::{Mode, Options, Settings, SetupError, Verifier};
pub use proxy::{Proxies, Proxy, ProxyError};
pub use report::{Reason, SmtpReport, SyntaxReport, Verdict, Verification, verdict_of};
