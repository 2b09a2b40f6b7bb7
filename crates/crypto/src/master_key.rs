//! The master key: 256 random bits in `<data-dir>/master.key` (owner-only), generated on first
//! start. Every other key is derived from it (HKDF-SHA256, one label per purpose), so that
//! several nodes sharing the key file agree on every derived key.
//!
//! Issue 4's keyring builds on this file: per-org data keys wrapped by it, key check values,
//! rotation, and `MAILROOM_MASTER_KEY` / `--master-key-file`.

use std::io::Write;
use std::path::Path;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

const KEY_BYTES: usize = 32;

#[derive(Debug, Error)]
pub enum MasterKeyError {
    #[error("reading the master key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("writing a new master key {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the master key {path} is not 64 hexadecimal characters")]
    Malformed { path: String },
}

/// The master key. Does not print, and is wiped from memory when dropped.
pub struct MasterKey(Zeroizing<[u8; KEY_BYTES]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// Reads the key file, or creates it (mode 0600) when there is none.
    pub fn load_or_create(path: &Path) -> Result<Self, MasterKeyError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(text.trim()).ok_or(MasterKeyError::Malformed { path: shown }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; KEY_BYTES]);
                rand::rng().fill_bytes(key.as_mut());
                write_private(path, hex::encode(key.as_ref()).as_bytes()).map_err(|source| {
                    MasterKeyError::Write {
                        path: shown.clone(),
                        source,
                    }
                })?;
                tracing::warn!(
                    path = %shown,
                    "generated a new master key: back it up; without it encrypted data and \
                     issued tokens cannot be read"
                );
                Ok(Self(key))
            }
            Err(source) => Err(MasterKeyError::Read {
                path: shown,
                source,
            }),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let bytes = Zeroizing::new(hex::decode(text).ok()?);
        let key: [u8; KEY_BYTES] = bytes.as_slice().try_into().ok()?;
        Some(Self(Zeroizing::new(key)))
    }

    /// A key for one purpose, e.g. `b"mailroom/jwt/v1"`: independent of every other label's.
    pub fn derive(&self, label: &[u8]) -> DerivedKey {
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        // HKDF-Expand cannot fail for a 32-byte output.
        let _ = Hkdf::<Sha256>::new(None, self.0.as_ref()).expand(label, key.as_mut());
        DerivedKey(key)
    }
}

/// A key derived from the master key for one purpose.
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
}

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DerivedKey([redacted])")
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let first = MasterKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(
            first.derive(b"a").as_bytes(),
            second.derive(b"a").as_bytes()
        );
        assert_ne!(first.derive(b"a").as_bytes(), first.derive(b"b").as_bytes());
        assert_eq!(format!("{first:?}"), "MasterKey([redacted])");
    }

    #[test]
    fn a_damaged_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(MasterKeyError::Malformed { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not hex");
    }
}
