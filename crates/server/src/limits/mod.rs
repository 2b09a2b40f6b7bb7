//! The rate limits in front of groups of routes, as layers: the auth routes per client IP,
//! the routes API keys may call per key, and a person's requests per user. The limiters
//! themselves, and the stores they count in, are [`crate::rate_limit`]'s.

pub mod accounts;
pub mod auth;
pub mod keys;
