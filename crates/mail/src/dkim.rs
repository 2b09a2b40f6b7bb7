//! DKIM signatures (RFC 6376) on messages sent through an SMTP account that carries a key,
//! made by the `mail-auth` crate (ring's RSA and Ed25519). The key is the account's, sealed with
//! its credentials; its domain and selector say where receivers find the public key
//! (`<selector>._domainkey.<domain>`).

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use rustls_pki_types::PrivateKeyDer;

/// The headers signed: those a receiver shows, and those that tie the message to its thread.
const SIGNED_HEADERS: [&str; 11] = [
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
];

/// A private key, as PEM: PKCS#8 (RSA or Ed25519) or PKCS#1 (RSA).
enum Key {
    Rsa(RsaKey<Sha256>),
    Ed25519(Ed25519Key),
}

fn key(pem: &str) -> Result<Key, String> {
    use rustls_pki_types::pem::PemObject;
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| "the key is not a PEM private key".to_owned())?;
    if let Ok(key) = RsaKey::<Sha256>::from_key_der(der.clone_key()) {
        return Ok(Key::Rsa(key));
    }
    match &der {
        PrivateKeyDer::Pkcs8(pkcs8) => {
            Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der())
                .map(Key::Ed25519)
                .map_err(|_| "the key is neither RSA nor Ed25519".to_owned())
        }
        _ => Err("the key is neither RSA (PKCS#8 or PKCS#1) nor Ed25519 (PKCS#8)".to_owned()),
    }
}

/// Whether `pem` is a private key mailroom can sign with, and if not, why.
pub fn check_key(pem: &str) -> Result<(), String> {
    key(pem).map(|_| ())
}

/// `raw` with a `DKIM-Signature` header first, signed by `pem` for `domain` and `selector`.
pub fn sign(raw: &[u8], domain: &str, selector: &str, pem: &str) -> Result<Vec<u8>, String> {
    let header = match key(pem)? {
        Key::Rsa(key) => DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers(SIGNED_HEADERS)
            .sign(raw),
        Key::Ed25519(key) => DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers(SIGNED_HEADERS)
            .sign(raw),
    }
    .map_err(|error| error.to_string())?
    .to_header();
    let mut signed = header.into_bytes();
    signed.extend_from_slice(raw);
    Ok(signed)
}
