//! Who is asking, as handlers take it from a request: the [`Principal`] (a session cookie's
//! owner or a bearer access token's), and the [`caller::Caller`] of the routes API keys may call.

pub mod caller;
pub mod principal;

pub use crate::application::actor::Principal;
pub use principal::SuperAdmin;
