//! The server's integration tests, one module per capability, in one binary: each test spawns
//! the real app on port 0 over a database of its own, on SQLite and on PostgreSQL. One binary
//! links the server once, where a file per suite linked it once each.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly, by design

mod common;

mod accounts;
mod api_keys;
mod architecture;
mod browser;
mod edge;
mod emails;
mod google_accounts;
mod identities;
mod mail_accounts;
mod privacy;
mod rate_limits;
mod teams;
mod tenancy;
mod two_factor;
mod verify;
mod webhooks;
