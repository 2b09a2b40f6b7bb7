//! The identifier every request carries through responses, logs and audit entries (docs/security.md#request-ids).

use std::fmt;

use uuid::Uuid;

/// A server-generated UUIDv7: unique, and sortable by the time it was made, so log lines and
/// audit entries of one request are easy to find and order. Never taken from a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(Uuid);

impl RequestId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_7_and_distinct() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 36);
    }
}
