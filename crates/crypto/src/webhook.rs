//! Webhook signing by the Standard Webhooks specification (docs/security.md#webhooks): a
//! secret `whsec_<base64 of 32 random bytes>`, and each delivery signed
//! `v1,<base64 of HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`. Written here rather than
//! taken from a crate: it is one HMAC over one string, with the `hmac` crate doing the work.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

const PREFIX: &str = "whsec_";
const SECRET_BYTES: usize = 32;

/// A new endpoint's signing secret, as its owner is shown it once.
pub fn generate_secret() -> SecretString {
    let mut bytes = Zeroizing::new([0_u8; SECRET_BYTES]);
    rand::rng().fill_bytes(bytes.as_mut());
    SecretString::from(format!("{PREFIX}{}", STANDARD.encode(bytes.as_ref())))
}

/// The `webhook-signature` header of a delivery of `body` under `secret`; `None` for a secret
/// not of this module's making.
pub fn sign(secret: &SecretString, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let encoded = secret.expose_secret().strip_prefix(PREFIX)?;
    let key = Zeroizing::new(STANDARD.decode(encoded).ok()?);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_specifications_example() {
        // The Standard Webhooks specification's own test vector.
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned());
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(
            signature.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn secrets_are_random_and_of_the_expected_form() {
        let (one, two) = (generate_secret(), generate_secret());
        assert_ne!(one.expose_secret(), two.expose_secret());
        let encoded = one.expose_secret().strip_prefix(PREFIX).unwrap();
        assert_eq!(STANDARD.decode(encoded).unwrap().len(), SECRET_BYTES);
        assert!(sign(&SecretString::from("nope".to_owned()), "id", 1, b"").is_none());
    }
}
