//! The application layer: every operation mailroom offers, apart from how it is asked for.
//! Operations take typed inputs and return typed outcomes or a [`crate::error::DomainError`]; the JSON
//! routes, the pages, the CLI and the background workers are adapters over them.

pub mod accounts;
pub mod actor;
pub mod admin;
pub mod api_tokens;
pub mod emails;
pub mod identities;
pub mod installation;
pub mod keys;
pub mod lockout;
pub mod mail_accounts;
pub mod org;
pub mod provider_flow;
pub mod second_factor;
pub mod system_mail;
pub mod teams;
pub mod two_factor;
pub mod verify;
pub mod webhooks;
