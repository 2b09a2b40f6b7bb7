//! The installation's root key: random, generated once, stored only wrapped by the master key.
//! Every MAC and signing key (audit chain, email codes, access tokens) is derived from it
//! (HKDF-SHA256, one label per purpose), so that all nodes agree on them and a master-key
//! rotation, which re-wraps the root key, changes none of them.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::KEY_BYTES;
use crate::aead::KeyBytes;
use crate::master_key::expand;

#[derive(Debug)]
pub struct RootKey(KeyBytes);

impl RootKey {
    pub fn generate() -> Self {
        Self(KeyBytes::random())
    }

    pub fn from_bytes(bytes: Zeroizing<[u8; KEY_BYTES]>) -> Self {
        Self(KeyBytes(bytes))
    }

    /// The raw key, for wrapping under the master key.
    pub fn expose(&self) -> &[u8; KEY_BYTES] {
        &self.0.0
    }

    /// A key for one purpose, e.g. `b"mailroom/access-token/hs256/v1"`: independent of every
    /// other label's.
    pub fn derive(&self, label: &[u8]) -> DerivedKey {
        DerivedKey(expand(self.0.0.as_ref(), label))
    }
}

/// A key derived from the root key for one purpose.
#[derive(Clone)]
pub struct DerivedKey(Zeroizing<[u8; KEY_BYTES]>);

impl DerivedKey {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_ref()
    }

    /// HMAC-SHA256 of `data` under this key.
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// `message` sealed under this key (AES-256-GCM), bound to `aad`: for state a client
    /// carries and must neither read nor change (a sign-in flow's cookie).
    pub fn seal(&self, aad: &[u8], message: &[u8]) -> Vec<u8> {
        crate::aead::seal(&self.0, aad, message)
    }

    /// The message [`DerivedKey::seal`] sealed, if it was this key, this `aad`, and not a
    /// bit was changed.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        crate::aead::open(&self.0, aad, sealed)
    }
}

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DerivedKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_give_independent_keys_and_nothing_prints() {
        let root = RootKey::generate();
        assert_ne!(root.derive(b"a").as_bytes(), root.derive(b"b").as_bytes());
        assert_eq!(root.derive(b"a").as_bytes(), root.derive(b"a").as_bytes());
        let again = RootKey::from_bytes(Zeroizing::new(*root.expose()));
        assert_eq!(root.derive(b"a").as_bytes(), again.derive(b"a").as_bytes());
        assert_eq!(format!("{root:?}"), "RootKey([redacted])");
        assert_eq!(format!("{:?}", root.derive(b"a")), "DerivedKey([redacted])");
    }
}
