//! The API key format (docs/security.md#api-key-format): `mr_live_<prefix>_<secret>`, both parts base62. The prefix
//! (12 characters) is not secret: it finds the key's row. The secret (32 characters, about 190
//! bits) is never stored: the row keeps the SHA-256 of the whole key, compared in constant
//! time. A lost key cannot be recovered, only replaced.

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "mr_live_";
const ID_LENGTH: usize = 12;
const SECRET_LENGTH: usize = 32;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new key: the whole key for its owner (shown once), and what is stored of it.
pub struct NewApiKey {
    pub key: SecretString,
    pub id: String,
    pub hash: [u8; 32],
}

pub fn generate() -> NewApiKey {
    let mut rng = rand::rng();
    let mut random = |length: usize| -> String {
        (0..length)
            .map(|_| char::from(BASE62[rng.random_range(0..BASE62.len())]))
            .collect()
    };
    let id = random(ID_LENGTH);
    let key = format!("{PREFIX}{id}_{}", random(SECRET_LENGTH));
    let hash = hash(&key);
    NewApiKey {
        key: SecretString::from(key),
        id,
        hash,
    }
}

/// The lookup id of something shaped like a key; `None` for anything else (a JWT, say).
pub fn lookup_id(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    // BASE62 is exactly the ASCII letters and digits.
    let base62 = |part: &str, length| {
        part.len() == length && part.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    (base62(id, ID_LENGTH) && base62(secret, SECRET_LENGTH)).then_some(id)
}

/// Whether `presented` is the key whose hash is `stored`, in constant time.
pub fn matches(presented: &SecretString, stored: &[u8]) -> bool {
    bool::from(hash(presented.expose_secret()).as_slice().ct_eq(stored))
}

/// Whether a bearer credential is meant to be an API key (rather than an access token).
pub fn looks_like_key(presented: &str) -> bool {
    presented.starts_with(PREFIX)
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_their_shape_and_match_only_themselves() {
        let new = generate();
        let key = new.key.expose_secret();
        assert!(key.starts_with("mr_live_"));
        assert_eq!(key.len(), PREFIX.len() + ID_LENGTH + 1 + SECRET_LENGTH);
        assert_eq!(lookup_id(key), Some(new.id.as_str()));
        assert!(matches(&new.key, &new.hash));
        let other = generate();
        assert!(!matches(&other.key, &new.hash));
        assert_ne!(other.id, new.id);
        assert_eq!(lookup_id("mr_live_short_x"), None);
        assert_eq!(lookup_id("eyJhbGciOiJIUzI1NiJ9.e30.x"), None);
        let last = if key.ends_with('A') { 'B' } else { 'A' };
        let tampered = format!("{}{last}", &key[..key.len() - 1]);
        assert!(!matches(&SecretString::from(tampered), &new.hash));
    }

    /// `lookup_id` checks the alphabet as "ASCII letters and digits".
    #[test]
    fn the_alphabet_is_the_ascii_letters_and_digits() {
        let alphanumeric: Vec<u8> = (0..=u8::MAX).filter(u8::is_ascii_alphanumeric).collect();
        assert_eq!(BASE62, alphanumeric.as_slice());
        let key = generate().key.expose_secret().to_owned();
        let foreign = format!("{}-", &key[..key.len() - 1]);
        assert_eq!(lookup_id(&foreign), None);
    }
}
