//! mailroom's cryptography, behind small typed APIs: password hashing, the master key, the
//! root key and the keys derived from it, and envelope encryption with data keys (docs/security.md#master-key, #what-is-sealed, #data-key-rotation).
//! Knows nothing of HTTP or SQL: where keys are stored is the storage crate's business.

mod aead;
pub mod api_key;
pub mod backup_codes;
pub mod envelope;
pub mod master_key;
pub mod password;
pub mod root_key;
pub mod totp;
pub mod webhook;

/// Every symmetric key here is 256 bits.
pub const KEY_BYTES: usize = 32;
