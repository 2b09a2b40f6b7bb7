//! Emailed one-time codes (AUTH-1, AUTH-4): six random digits, stored only as a hash bound to
//! their purpose and address, compared in constant time.

use mailroom_core::EmailAddress;
use mailroom_core::accounts::CodePurpose;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub fn generate() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// The stored form of a code. Bound to purpose and address, so a code (or its hash) for one
/// cannot stand in for another. A six-digit code has little entropy: the hash keeps it out of
/// sight, and the guess budget and expiry are what protect it.
pub fn hash(purpose: CodePurpose, email: &EmailAddress, code: &str) -> Vec<u8> {
    let mut digest = Sha256::new();
    for part in [purpose.as_str(), email.as_str(), code.trim()] {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    digest.finalize().to_vec()
}

pub fn matches(stored: &[u8], purpose: CodePurpose, email: &EmailAddress, code: &str) -> bool {
    stored.ct_eq(&hash(purpose, email, code)).into()
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
    fn hashes_bind_purpose_and_address() {
        let jane = EmailAddress::parse("jane@example.test").unwrap();
        let john = EmailAddress::parse("john@example.test").unwrap();
        let stored = hash(CodePurpose::Signup, &jane, "123456");
        assert!(matches(&stored, CodePurpose::Signup, &jane, "123456"));
        assert!(!matches(&stored, CodePurpose::Signup, &jane, "123457"));
        assert!(!matches(&stored, CodePurpose::Signup, &john, "123456"));
        assert!(!matches(
            &stored,
            CodePurpose::PasswordReset,
            &jane,
            "123456"
        ));
    }
}
