//! What every key here shares: 256 secret bits that do not print and are wiped on drop, and
//! AES-256-GCM with a random 96-bit nonce carried in front of the ciphertext.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::KEY_BYTES;

const NONCE_BYTES: usize = 12;

/// 256 secret bits.
pub(crate) struct KeyBytes(pub(crate) Zeroizing<[u8; KEY_BYTES]>);

impl KeyBytes {
    pub(crate) fn random() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        rand::rng().fill_bytes(key.as_mut());
        Self(key)
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `nonce || ciphertext || tag` of `message` under `key`, authenticating `aad` too.
pub(crate) fn seal(key: &[u8; KEY_BYTES], aad: &[u8], message: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    let sealed = Aes256Gcm::new(key.into())
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: message, aad })
        .unwrap_or_else(|_| unreachable!("AES-GCM encrypts messages far below its limit"));
    [nonce.as_slice(), &sealed].concat()
}

/// The message of [`seal`]'s output, if `key` and `aad` are the ones it was sealed with and
/// not a bit changed.
pub(crate) fn open(key: &[u8; KEY_BYTES], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (nonce, ciphertext) = sealed.split_at_checked(NONCE_BYTES)?;
    Aes256Gcm::new(key.into())
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}
