//! Emailed one-time codes (docs/security.md#email-codes, #password-reset): six random digits, stored only as an HMAC under a
//! key derived from the root key, bound to their purpose and address, compared in constant
//! time. A million possible codes would fall to an offline search of a plain hash; without
//! the key, a copy of the database does not help.

use mailroom_core::EmailAddress;
use mailroom_core::accounts::CodePurpose;
use mailroom_crypto::root_key::DerivedKey;
use rand::Rng;
use subtle::ConstantTimeEq;

pub fn generate() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// The stored form of a code. Bound to purpose and address, so a code (or its hash) for one
/// cannot stand in for another.
pub fn hash(key: &DerivedKey, purpose: CodePurpose, email: &EmailAddress, code: &str) -> Vec<u8> {
    let mut message = Vec::new();
    for part in [purpose.as_str(), email.as_str(), code.trim()] {
        message.extend_from_slice(&(part.len() as u64).to_be_bytes());
        message.extend_from_slice(part.as_bytes());
    }
    key.mac(&message).to_vec()
}

pub fn matches(
    key: &DerivedKey,
    stored: &[u8],
    purpose: CodePurpose,
    email: &EmailAddress,
    code: &str,
) -> bool {
    stored.ct_eq(&hash(key, purpose, email, code)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let code = generate();
            assert_eq!(code.len(), 6);
            assert!(code.chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn hashes_bind_key_purpose_and_address() {
        let root = mailroom_crypto::root_key::RootKey::generate();
        let (key, other_key) = (root.derive(b"codes"), root.derive(b"other"));
        let jane = EmailAddress::parse("jane@example.test").unwrap();
        let john = EmailAddress::parse("john@example.test").unwrap();
        let stored = hash(&key, CodePurpose::Signup, &jane, "123456");
        assert!(matches(&key, &stored, CodePurpose::Signup, &jane, "123456"));
        assert!(!matches(
            &key,
            &stored,
            CodePurpose::Signup,
            &jane,
            "123457"
        ));
        assert!(!matches(
            &key,
            &stored,
            CodePurpose::Signup,
            &john,
            "123456"
        ));
        assert!(!matches(
            &key,
            &stored,
            CodePurpose::PasswordReset,
            &jane,
            "123456"
        ));
        assert!(!matches(
            &other_key,
            &stored,
            CodePurpose::Signup,
            &jane,
            "123456"
        ));
    }
}
