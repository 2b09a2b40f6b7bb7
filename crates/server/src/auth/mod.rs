//! The mechanisms of who is asking, with no request and no state of their own: password
//! hashing, emailed codes, session tokens and cookies, access tokens.

pub mod codes;
pub mod key_uses;
pub mod oauth_flow;
pub mod passwords;
pub mod session;
pub mod tokens;
