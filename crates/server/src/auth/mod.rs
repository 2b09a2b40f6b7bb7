//! Who is asking: passwords, emailed codes, session cookies, and the [`Principal`] extractor
//! that every authenticated handler takes.

pub mod caller;
pub mod codes;
pub mod lockout;
pub mod passwords;
pub mod principal;
pub mod second_factor;
pub mod session;
pub mod tokens;

pub use principal::Principal;
