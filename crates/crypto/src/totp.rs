//! Time-based one-time passwords (RFC 6238; docs/security.md#totp): SHA-1, 6 digits, 30-second steps, one
//! step of clock drift either way — what every authenticator app speaks. The code arithmetic
//! is `totp-rs`'s; which step matched is returned so that the caller can refuse a replay of
//! the same step.

use rand::RngCore;
use subtle::ConstantTimeEq;
use thiserror::Error;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

const DIGITS: usize = 6;
const STEP_SECONDS: u64 = 30;
/// 160 bits, as RFC 4226 recommends.
const SECRET_BYTES: usize = 20;

#[derive(Debug, Error)]
#[error("the TOTP parameters were refused: {0}")]
pub struct TotpError(String);

/// A TOTP secret. Does not print, and is wiped from memory when dropped.
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret([redacted])")
    }
}

impl TotpSecret {
    pub fn generate() -> Self {
        let mut secret = Zeroizing::new(vec![0u8; SECRET_BYTES]);
        rand::rng().fill_bytes(&mut secret);
        Self(secret)
    }

    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret in base32, as authenticator apps take it when typed in.
    pub fn base32(&self) -> Zeroizing<String> {
        Zeroizing::new(
            self.totp("", "")
                .map(|t| t.get_secret_base32())
                .unwrap_or_default(),
        )
    }

    /// The `otpauth://totp/…` URI that a QR code carries.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Result<Zeroizing<String>, TotpError> {
        Ok(Zeroizing::new(self.totp(issuer, account)?.get_url()))
    }

    /// The step (Unix time / 30) whose code `code` is, among the current one and its two
    /// neighbours; `None` when it is none of them.
    pub fn matching_step(&self, code: &str, unix_time: u64) -> Option<u64> {
        let code = code.trim();
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let totp = self.totp("", "").ok()?;
        let now = unix_time / STEP_SECONDS;
        // Every candidate is compared, whatever matched, in constant time.
        let mut matched = None;
        for step in [now.saturating_sub(1), now, now + 1] {
            let expected = totp.generate(step * STEP_SECONDS);
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
                matched = Some(step);
            }
        }
        matched
    }

    /// The code of the step at `unix_time` (for tests, and for nothing else).
    pub fn code_at(&self, unix_time: u64) -> Option<String> {
        Some(self.totp("", "").ok()?.generate(unix_time))
    }

    fn totp(&self, issuer: &str, account: &str) -> Result<TOTP, TotpError> {
        TOTP::new(
            Algorithm::SHA1,
            DIGITS,
            1,
            STEP_SECONDS,
            self.0.to_vec(),
            (!issuer.is_empty()).then(|| issuer.to_owned()),
            account.to_owned(),
        )
        .map_err(|error| TotpError(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 (the last six digits of its eight-digit codes).
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = TotpSecret::from_bytes(Zeroizing::new(b"12345678901234567890".to_vec()));
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(secret.code_at(time).unwrap(), code, "at {time}");
        }
    }

    #[test]
    fn neighbouring_steps_match_and_say_which() {
        let secret = TotpSecret::generate();
        let now = 1_700_000_000;
        let step = now / 30;
        assert_eq!(
            secret.matching_step(&secret.code_at(now).unwrap(), now),
            Some(step)
        );
        assert_eq!(
            secret.matching_step(&secret.code_at(now - 30).unwrap(), now),
            Some(step - 1)
        );
        assert_eq!(
            secret.matching_step(&secret.code_at(now + 30).unwrap(), now),
            Some(step + 1)
        );
        assert_eq!(
            secret.matching_step(&secret.code_at(now - 90).unwrap(), now),
            None
        );
        assert_eq!(secret.matching_step("12345", now), None);
        assert_eq!(secret.matching_step("abcdef", now), None);
    }

    #[test]
    fn the_uri_names_issuer_and_account() {
        let secret = TotpSecret::generate();
        let uri = secret.otpauth_uri("mailroom", "jane@example.test").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/mailroom:jane%40example.test?"),
            "{}",
            *uri
        );
        assert!(uri.contains(&format!("secret={}", *secret.base32())));
        assert_eq!(format!("{secret:?}"), "TotpSecret([redacted])");
    }
}
