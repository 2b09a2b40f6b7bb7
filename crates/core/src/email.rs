//! Account email addresses: parsed once, normalized, valid from then on.
//!
//! This is the address of a person who signs in, not the verification engine's full RFC 5321
//! analysis: it refuses what no mailbox we would send a code to can look like, and normalizes
//! case so that one person cannot hold two accounts as `Jane@X.test` and `jane@x.test`.

use std::fmt;

use thiserror::Error;

const MAX_LENGTH: usize = 254;
const MAX_LOCAL_LENGTH: usize = 64;
const MAX_DOMAIN_LENGTH: usize = 253;

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum EmailError {
    #[error("an email address looks like name@example.com")]
    Shape,
    #[error("the email address is too long")]
    TooLong,
}

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let address = raw.trim().to_lowercase();
        if address.chars().count() > MAX_LENGTH {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = address.rsplit_once('@').ok_or(EmailError::Shape)?;
        if local.len() > MAX_LOCAL_LENGTH || domain.len() > MAX_DOMAIN_LENGTH {
            return Err(EmailError::TooLong);
        }
        let local_ok = !local.is_empty()
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if local_ok && domain_ok {
            Ok(Self(address))
        } else {
            Err(EmailError::Shape)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(local, _)| local)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_space() {
        let email = EmailAddress::parse("  Jane.Doe+Work@Example.TEST ").unwrap();
        assert_eq!(email.as_str(), "jane.doe+work@example.test");
        assert_eq!(email.local_part(), "jane.doe+work");
    }

    #[test]
    fn refuses_what_is_not_a_mailbox() {
        for bad in [
            "",
            "jane",
            "@example.test",
            "jane@",
            "jane@localhost",
            "jane@@example.test",
            "ja ne@example.test",
            ".jane@example.test",
            "ja..ne@example.test",
            "jane@-example.test",
            "jane@example..test",
            "jane@exa mple.test",
            "jane\r\n@example.test",
            "\"quoted\"@example.test",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long_local = format!("{}@example.test", "a".repeat(65));
        assert_eq!(EmailAddress::parse(&long_local), Err(EmailError::TooLong));
    }

    #[test]
    fn accepts_ordinary_and_international_addresses() {
        for good in [
            "a@b.co",
            "o'brien@example.test",
            "user_1-x@sub.example.test",
            "josé@exämple.test",
        ] {
            assert!(EmailAddress::parse(good).is_ok(), "{good} refused");
        }
    }
}
