//! The master key (docs/security.md#master-key): 256 random bits that only ever wrap other keys — the
//! installation's root key (see [`crate::root_key`]) and each scope's data keys (see
//! [`crate::envelope`]). Rotating it therefore re-wraps a handful of rows and changes nothing
//! else. It comes from `<data-dir>/master.key` (owner-only, created on the first start of an
//! empty installation), `MAILROOM_MASTER_KEY`, or `--master-key-file`; the database keeps a
//! check value of it, so that a wrong key is refused at startup instead of producing garbage.

use std::io::Write;
use std::path::Path;

use hkdf::Hkdf;
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::KEY_BYTES;
use crate::aead::{self, KeyBytes};
/// Labels of the two keys the master key is expanded into: wrapping and checking never share
/// key material.
const WRAP_LABEL: &[u8] = b"mailroom/master-key/wrap/v1";
const CHECK_LABEL: &[u8] = b"mailroom/master-key/check-value/v1";

#[derive(Debug, Error)]
pub enum MasterKeyError {
    #[error("there is no master key at {path}")]
    Missing { path: String },
    #[error("reading the master key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("writing the master key {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the master key {origin} is not 64 hexadecimal characters")]
    Malformed { origin: String },
}

/// A wrapped key did not open: the wrong master key, or a damaged or moved row.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("a wrapped key does not open under this master key")]
pub struct UnwrapError;

/// The master key. Does not print, and is wiped from memory when dropped.
#[derive(Debug)]
pub struct MasterKey(KeyBytes);

impl MasterKey {
    pub fn generate() -> Self {
        Self(KeyBytes::random())
    }

    /// Reads a key file (64 hexadecimal characters; surrounding whitespace is ignored).
    pub fn read(path: &Path) -> Result<Self, MasterKeyError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_hex(Zeroizing::new(text).trim(), &shown),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(MasterKeyError::Missing { path: shown })
            }
            Err(source) => Err(MasterKeyError::Read {
                path: shown,
                source,
            }),
        }
    }

    /// Parses 64 hexadecimal characters; `origin` names where they came from in the error.
    pub fn from_hex(text: &str, origin: &str) -> Result<Self, MasterKeyError> {
        let malformed = || MasterKeyError::Malformed {
            origin: origin.to_owned(),
        };
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| malformed())?);
        let key: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| malformed())?;
        Ok(Self(KeyBytes(Zeroizing::new(key))))
    }

    /// Writes the key to a new file, owner-only; never over an existing one.
    pub fn write_new(&self, path: &Path) -> Result<(), MasterKeyError> {
        let text = Zeroizing::new(hex::encode(self.0.0.as_ref()));
        write_private(path, text.as_bytes()).map_err(|source| MasterKeyError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// A value that identifies this key without revealing it (a PRF output under a label of
    /// its own), stored beside the data to recognize the right key.
    pub fn check_value(&self) -> [u8; 16] {
        let expanded = self.expand(CHECK_LABEL);
        let mut value = [0u8; 16];
        value.copy_from_slice(&expanded[..16]);
        value
    }

    /// Encrypts a key under this one (AES-256-GCM, random nonce). `context` says what the key
    /// is and where it is stored; unwrapping under another context fails.
    pub fn wrap(&self, key: &[u8; KEY_BYTES], context: &[u8]) -> Vec<u8> {
        aead::seal(&self.expand(WRAP_LABEL), context, key)
    }

    pub fn unwrap(
        &self,
        wrapped: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_BYTES]>, UnwrapError> {
        let opened = aead::open(&self.expand(WRAP_LABEL), context, wrapped).ok_or(UnwrapError)?;
        let key: [u8; KEY_BYTES] = opened.as_slice().try_into().map_err(|_| UnwrapError)?;
        Ok(Zeroizing::new(key))
    }

    fn expand(&self, label: &[u8]) -> Zeroizing<[u8; KEY_BYTES]> {
        expand(self.0.0.as_ref(), label)
    }
}

/// HKDF-SHA256 of `key` under `label`: 32 bytes, independent for every label.
pub(crate) fn expand(key: &[u8], label: &[u8]) -> Zeroizing<[u8; KEY_BYTES]> {
    let mut out = Zeroizing::new([0u8; KEY_BYTES]);
    // HKDF-Expand cannot fail for a 32-byte output.
    let _ = Hkdf::<Sha256>::new(None, key).expand(label, out.as_mut());
    out
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
    fn written_private_read_back_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        assert!(matches!(
            MasterKey::read(&path),
            Err(MasterKeyError::Missing { .. })
        ));
        let key = MasterKey::generate();
        key.write_new(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let read = MasterKey::read(&path).unwrap();
        assert_eq!(read.check_value(), key.check_value());
        assert!(MasterKey::generate().write_new(&path).is_err());
        assert_eq!(
            MasterKey::read(&path).unwrap().check_value(),
            key.check_value()
        );
        assert_eq!(format!("{key:?}"), "MasterKey([redacted])");
    }

    #[test]
    fn a_damaged_key_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            MasterKey::read(&path),
            Err(MasterKeyError::Malformed { .. })
        ));
        assert!(MasterKey::from_hex(&"ab".repeat(31), "env").is_err());
    }

    #[test]
    fn wrapped_keys_open_only_under_their_master_key_and_context() {
        let (master, other) = (MasterKey::generate(), MasterKey::generate());
        let key = [7u8; KEY_BYTES];
        let wrapped = master.wrap(&key, b"scope a");
        assert_eq!(*master.unwrap(&wrapped, b"scope a").unwrap(), key);
        assert_eq!(master.unwrap(&wrapped, b"scope b"), Err(UnwrapError));
        assert_eq!(other.unwrap(&wrapped, b"scope a"), Err(UnwrapError));
        assert_eq!(master.unwrap(&wrapped[..10], b"scope a"), Err(UnwrapError));
        assert_ne!(master.check_value(), other.check_value());
    }
}
