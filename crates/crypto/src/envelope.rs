//! Envelope encryption of secrets stored in rows (docs/security.md#master-key): each key scope (an organization,
//! or the `system` scope for user-level secrets such as TOTP) has data keys, AES-256-GCM,
//! versioned, stored only wrapped by the master key.
//!
//! A sealed value is self-describing, so that any version of any scope's key can be found to
//! open it, and bound to where it is stored, so that it opens nowhere else:
//!
//! ```text
//! format (1 byte, = 1) | scope (16, a UUID) | key version (4, big-endian) | nonce (12) | ciphertext + tag
//! ```
//!
//! The associated data is the header plus the table, column and row id the value belongs to:
//! copying a ciphertext to another row, column, table or organization makes it fail to open.

use thiserror::Error;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::KEY_BYTES;
use crate::aead::{self, KeyBytes};

const FORMAT: u8 = 1;
const HEADER_BYTES: usize = 1 + 16 + 4;
const AAD_LABEL: &[u8] = b"mailroom/envelope/v1";

/// A key scope's id for secrets that belong to users rather than to an organization.
pub const SYSTEM_SCOPE: Uuid = Uuid::nil();

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("not a sealed value of a format this version knows")]
    Format,
    /// Deliberately one error for a wrong key, a tampered byte and a moved value: which one
    /// it was is nothing a caller can act on differently.
    #[error("the sealed value does not open here: damaged, moved, or under another key")]
    Open,
}

/// Which key sealed a value: its scope and the version of the scope's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyId {
    pub scope: Uuid,
    pub version: u32,
}

impl KeyId {
    /// The key a sealed value names in its header.
    pub fn of(sealed: &[u8]) -> Result<Self, EnvelopeError> {
        let header = sealed.get(..HEADER_BYTES).ok_or(EnvelopeError::Format)?;
        if header[0] != FORMAT {
            return Err(EnvelopeError::Format);
        }
        let scope = Uuid::from_slice(&header[1..17]).map_err(|_| EnvelopeError::Format)?;
        let version = u32::from_be_bytes(
            header[17..21]
                .try_into()
                .map_err(|_| EnvelopeError::Format)?,
        );
        Ok(Self { scope, version })
    }

    fn header(self) -> [u8; HEADER_BYTES] {
        let mut header = [0u8; HEADER_BYTES];
        header[0] = FORMAT;
        header[1..17].copy_from_slice(self.scope.as_bytes());
        header[17..21].copy_from_slice(&self.version.to_be_bytes());
        header
    }

    /// What a data key is wrapped under, besides the master key: its own identity, so that a
    /// wrapped key copied to another scope or version does not unwrap.
    pub fn wrap_context(self) -> Vec<u8> {
        [b"mailroom/data-key/v1".as_slice(), &self.header()].concat()
    }
}

/// Where a sealed value is stored.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row: Uuid,
}

impl Binding<'_> {
    fn aad(&self, header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64 + self.table.len() + self.column.len());
        for part in [
            AAD_LABEL,
            header,
            self.table.as_bytes(),
            self.column.as_bytes(),
            self.row.as_bytes(),
        ] {
            // Length-prefixed: ("ab", "c") and ("a", "bc") must not bind alike.
            aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad
    }
}

/// A data key. Does not print, and is wiped from memory when dropped.
#[derive(Debug)]
pub struct DataKey(KeyBytes);

impl DataKey {
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

    /// Seals `plaintext` as the value at `binding`; `id` is this key's identity.
    pub fn seal(&self, id: KeyId, binding: &Binding<'_>, plaintext: &[u8]) -> Vec<u8> {
        let header = id.header();
        let sealed = aead::seal(self.expose(), &binding.aad(&header), plaintext);
        [header.as_slice(), &sealed].concat()
    }

    /// Opens a value sealed under this key for `binding`.
    pub fn open(
        &self,
        binding: &Binding<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        KeyId::of(sealed)?;
        let (header, rest) = sealed.split_at(HEADER_BYTES);
        aead::open(self.expose(), &binding.aad(header), rest).ok_or(EnvelopeError::Open)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ROW: Uuid = Uuid::from_u128(42);

    fn binding(row: Uuid) -> Binding<'static> {
        Binding {
            table: "mfa_totp",
            column: "secret",
            row,
        }
    }

    fn id() -> KeyId {
        KeyId {
            scope: Uuid::from_u128(7),
            version: 3,
        }
    }

    #[test]
    fn the_header_names_the_key() {
        let sealed = DataKey::generate().seal(id(), &binding(ROW), b"secret");
        assert_eq!(KeyId::of(&sealed), Ok(id()));
        assert_eq!(KeyId::of(b"short"), Err(EnvelopeError::Format));
    }

    #[test]
    fn a_value_opens_only_where_it_was_sealed() {
        let key = DataKey::generate();
        let sealed = key.seal(id(), &binding(ROW), b"secret");
        assert_eq!(
            key.open(&binding(ROW), &sealed).unwrap().as_slice(),
            b"secret"
        );
        let elsewhere = [
            binding(Uuid::from_u128(43)),
            Binding {
                table: "smtp_relays",
                ..binding(ROW)
            },
            Binding {
                column: "password",
                ..binding(ROW)
            },
        ];
        for other in elsewhere {
            assert_eq!(key.open(&other, &sealed), Err(EnvelopeError::Open));
        }
        assert_eq!(
            DataKey::generate().open(&binding(ROW), &sealed),
            Err(EnvelopeError::Open)
        );
    }

    #[test]
    fn another_scope_in_the_header_does_not_open() {
        let key = DataKey::generate();
        let mut sealed = key.seal(id(), &binding(ROW), b"secret");
        // Claim another organization's scope: the header is authenticated.
        sealed[1] ^= 1;
        assert_eq!(key.open(&binding(ROW), &sealed), Err(EnvelopeError::Open));
    }

    proptest! {
        #[test]
        fn seal_then_open_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..512), row in any::<u128>()) {
            let key = DataKey::generate();
            let sealed = key.seal(id(), &binding(Uuid::from_u128(row)), &plaintext);
            let opened = key.open(&binding(Uuid::from_u128(row)), &sealed).unwrap();
            prop_assert_eq!(opened.as_slice(), plaintext.as_slice());
        }

        #[test]
        fn any_flipped_bit_fails(plaintext in proptest::collection::vec(any::<u8>(), 0..64), bit in any::<prop::sample::Index>()) {
            let key = DataKey::generate();
            let mut sealed = key.seal(id(), &binding(ROW), &plaintext);
            let bit = bit.index(sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(key.open(&binding(ROW), &sealed).is_err());
        }
    }
}
