//! Password hashing (docs/security.md#password-hashing): Argon2id with OWASP's parameters (m = 19 MiB, t = 2, p = 1) in
//! PHC strings. Hashes imported from other systems — scrypt (`$scrypt$`, PHC, as passlib
//! writes it) and PBKDF2-SHA256 (`$pbkdf2-sha256$`, passlib's format) — verify too, and are
//! reported as needing a rehash so that the caller upgrades them on the next sign-in.
//!
//! Hashing is deliberately slow (tens of milliseconds of CPU): callers run it off the async
//! executor, with bounded concurrency.

use argon2::Argon2;
use password_hash::{PasswordHasher, PasswordVerifier};
use secrecy::{ExposeSecret, SecretString};
use thiserror::Error;

/// Every hash written today starts with this: a stored hash that does not is upgraded.
const CURRENT_PREFIX: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PasswordHashError {
    #[error("the stored password hash is in a format mailroom cannot verify")]
    UnsupportedFormat,
    #[error("the stored password hash is malformed")]
    Malformed,
    #[error("password hashing failed")]
    Hashing,
}

/// A password hash as stored: a PHC (or imported MCF) string. Holds no secret a reader could
/// use directly, but is still kept out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a hash read from storage.
    pub fn from_stored(stored: impl Into<String>) -> Self {
        Self(stored.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, PartialEq, Eq)]
pub enum Verification {
    /// It matches. `rehash`: the stored hash uses an older algorithm or weaker parameters
    /// and should be replaced by [`hash`] of the same password.
    Match {
        rehash: bool,
    },
    Mismatch,
}

/// Hashes a password with Argon2id and a fresh random salt.
pub fn hash(password: &SecretString) -> Result<PasswordHash, PasswordHashError> {
    let hashed = Argon2::default()
        .hash_password(password.expose_secret().as_bytes())
        .map_err(|_| PasswordHashError::Hashing)?;
    Ok(PasswordHash(hashed.to_string()))
}

/// Checks a password against a stored hash, in constant time with respect to the secret.
pub fn verify(
    password: &SecretString,
    stored: &PasswordHash,
) -> Result<Verification, PasswordHashError> {
    let password = password.expose_secret().as_bytes();
    let stored = stored.as_str();
    let outcome = if stored.starts_with("$argon2") {
        let parsed = password_hash::phc::PasswordHash::new(stored)
            .map_err(|_| PasswordHashError::Malformed)?;
        Argon2::default().verify_password(password, &parsed)
    } else if stored.starts_with("$scrypt$") {
        let parsed =
            scrypt::phc::PasswordHash::new(stored).map_err(|_| PasswordHashError::Malformed)?;
        scrypt::Scrypt::default().verify_password(password, &parsed)
    } else if stored.starts_with("$pbkdf2-sha256$") {
        let parsed =
            pbkdf2::mcf::PasswordHashRef::new(stored).map_err(|_| PasswordHashError::Malformed)?;
        pbkdf2::Pbkdf2::default().verify_password(password, parsed)
    } else {
        return Err(PasswordHashError::UnsupportedFormat);
    };
    match outcome {
        Ok(()) => Ok(Verification::Match {
            rehash: !stored.starts_with(CURRENT_PREFIX),
        }),
        Err(password_hash::Error::PasswordInvalid) => Ok(Verification::Mismatch),
        Err(_) => Err(PasswordHashError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "correct horse battery staple";

    fn secret(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    #[test]
    fn argon2id_with_owasp_parameters_round_trips() {
        let hashed = hash(&secret(PASSWORD)).unwrap();
        assert!(
            hashed.as_str().starts_with(CURRENT_PREFIX),
            "{}",
            hashed.as_str()
        );
        assert_eq!(
            verify(&secret(PASSWORD), &hashed).unwrap(),
            Verification::Match { rehash: false }
        );
        assert_eq!(
            verify(&secret("wrong"), &hashed).unwrap(),
            Verification::Mismatch
        );
        // A fresh salt every time.
        assert_ne!(hash(&secret(PASSWORD)).unwrap(), hashed);
    }

    /// Made by another implementation: Python's passlib 1.7.4, `scrypt.hash` and
    /// `pbkdf2_sha256.hash`, with the salt bytes 0..15 (and checked with Python's hashlib).
    #[test]
    fn imported_passlib_hashes_verify_and_ask_for_an_upgrade() {
        for stored in [
            "$scrypt$ln=16,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$1a0ZQtnx0oHhn48xj8fOQ5+iE1AgsBClgPgQyKBBRRw",
            "$pbkdf2-sha256$29000$AAECAwQFBgcICQoLDA0ODw$m/kLywdyNwK9GV2kWntRGvZzmeiVsuqehNWlLst2eWY",
        ] {
            let stored = PasswordHash::from_stored(stored);
            assert_eq!(
                verify(&secret(PASSWORD), &stored).unwrap(),
                Verification::Match { rehash: true },
                "{stored:?}"
            );
            assert_eq!(
                verify(&secret("Correct horse battery staple"), &stored).unwrap(),
                Verification::Mismatch
            );
        }
    }

    #[test]
    fn weaker_argon2_parameters_ask_for_an_upgrade() {
        let params = argon2::Params::new(8192, 1, 1, None).unwrap();
        let weak = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(PASSWORD.as_bytes())
            .unwrap()
            .to_string();
        assert_eq!(
            verify(&secret(PASSWORD), &PasswordHash::from_stored(weak)).unwrap(),
            Verification::Match { rehash: true }
        );
    }

    #[test]
    fn unknown_and_broken_hashes_are_errors_not_matches() {
        for (stored, error) in [
            ("$1$abc$def", PasswordHashError::UnsupportedFormat),
            ("plaintext", PasswordHashError::UnsupportedFormat),
            ("$argon2id$v=19$garbage", PasswordHashError::Malformed),
            ("$scrypt$ln=16$", PasswordHashError::Malformed),
        ] {
            assert_eq!(
                verify(&secret(PASSWORD), &PasswordHash::from_stored(stored)),
                Err(error),
                "{stored}"
            );
        }
    }

    #[test]
    fn hashes_do_not_print() {
        let hashed = hash(&secret(PASSWORD)).unwrap();
        assert_eq!(format!("{hashed:?}"), "PasswordHash([redacted])");
    }
}
