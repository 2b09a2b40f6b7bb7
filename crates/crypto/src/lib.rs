//! mailroom's cryptography, behind small typed APIs: password hashing now; data keys and
//! envelope encryption (ENC-1..3) later. Knows nothing of HTTP or SQL.

pub mod master_key;
pub mod password;
