//! Is this an address a real MTA would take in `RCPT TO`?
//!
//! The grammar is RFC 5321's `Mailbox` (with RFC 6531's UTF-8 in local parts), which is stricter
//! than RFC 5322's `addr-spec`: no comments, no folding whitespace, no obsolete forms. Domains are
//! host names (IDNs become punycode through UTS #46); address literals (`[192.0.2.1]`) are
//! refused, as public mail services refuse them. Every refusal names its reason.
//!
//! Written by hand: the crates that parse addresses either follow RFC 5322's looser grammar or
//! do not say why they refuse, and a reason per refusal is what callers need.

use serde::{Deserialize, Serialize};

/// RFC 5321 §4.5.3.1.1.
pub const MAX_LOCAL_PART: usize = 64;
/// RFC 5321 §4.5.3.1.2.
pub const MAX_DOMAIN: usize = 255;
/// RFC 5321 §4.5.3.1.3 (a 256-octet path, less its angle brackets).
pub const MAX_ADDRESS: usize = 254;
/// RFC 1035 §2.3.4.
pub const MAX_LABEL: usize = 63;

/// An address that passed the syntax check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    local: String,
    /// The domain as DNS knows it: lowercase ASCII, IDN labels in punycode.
    domain: String,
}

impl Address {
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain in ASCII (punycode for IDNs), lowercase.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The one spelling of this address: what dedup and the logs key on.
    pub fn normalized(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

/// Why an address was refused: a stable, machine-readable code each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum SyntaxError {
    #[error("the address is empty")]
    Empty,
    #[error("the address is longer than 254 octets")]
    TooLong,
    #[error("the address has no @")]
    NoAtSign,
    #[error("the part before the @ is empty")]
    LocalEmpty,
    #[error("the part before the @ is longer than 64 octets")]
    LocalTooLong,
    #[error("a dot starts or ends the part before the @, or two dots follow each other")]
    LocalDotMisplaced,
    #[error("the part before the @ has a character that must be quoted or may not appear")]
    LocalInvalidCharacter,
    #[error("a quoted part before the @ is not closed, or text follows its closing quote")]
    QuotedUnterminated,
    #[error("a quoted part before the @ has a control character")]
    QuotedInvalidCharacter,
    #[error("the domain is empty")]
    DomainEmpty,
    #[error("the domain is longer than 255 octets")]
    DomainTooLong,
    #[error("the domain has an empty label (a leading, trailing or doubled dot)")]
    LabelEmpty,
    #[error("a label of the domain is longer than 63 octets")]
    LabelTooLong,
    #[error("a label of the domain starts or ends with a hyphen")]
    LabelHyphenMisplaced,
    #[error("the domain has a character host names may not have")]
    DomainInvalidCharacter,
    #[error("the domain has a single label; mail on the internet needs a dot")]
    DomainNotFullyQualified,
    #[error("the top-level domain is all digits")]
    TldNumeric,
    #[error("address literals such as [192.0.2.1] are not accepted")]
    AddressLiteral,
    #[error("the domain is not a valid internationalized domain name")]
    InvalidIdn,
}

impl SyntaxError {
    pub fn code(self) -> &'static str {
        match self {
            SyntaxError::Empty => "empty",
            SyntaxError::TooLong => "too_long",
            SyntaxError::NoAtSign => "no_at_sign",
            SyntaxError::LocalEmpty => "local_empty",
            SyntaxError::LocalTooLong => "local_too_long",
            SyntaxError::LocalDotMisplaced => "local_dot_misplaced",
            SyntaxError::LocalInvalidCharacter => "local_invalid_character",
            SyntaxError::QuotedUnterminated => "quoted_unterminated",
            SyntaxError::QuotedInvalidCharacter => "quoted_invalid_character",
            SyntaxError::DomainEmpty => "domain_empty",
            SyntaxError::DomainTooLong => "domain_too_long",
            SyntaxError::LabelEmpty => "label_empty",
            SyntaxError::LabelTooLong => "label_too_long",
            SyntaxError::LabelHyphenMisplaced => "label_hyphen_misplaced",
            SyntaxError::DomainInvalidCharacter => "domain_invalid_character",
            SyntaxError::DomainNotFullyQualified => "domain_not_fully_qualified",
            SyntaxError::TldNumeric => "tld_numeric",
            SyntaxError::AddressLiteral => "address_literal",
            SyntaxError::InvalidIdn => "invalid_idn",
        }
    }
}

/// Parses `input` exactly as given: surrounding whitespace is an error like any other.
pub fn parse(input: &str) -> Result<Address, SyntaxError> {
    if input.is_empty() {
        return Err(SyntaxError::Empty);
    }
    // The local part may itself hold a quoted "@", so the domain is what follows the last one.
    let (local, domain) = input.rsplit_once('@').ok_or(SyntaxError::NoAtSign)?;
    let local = parse_local_part(local)?;
    // Lowercasing can lengthen (`İ` is two octets, `i̇` three): the limit holds for the result.
    if local.len() > MAX_LOCAL_PART {
        return Err(SyntaxError::LocalTooLong);
    }
    let domain = parse_domain(domain)?;
    let address = Address { local, domain };
    if address.local.len() + 1 + address.domain.len() > MAX_ADDRESS {
        return Err(SyntaxError::TooLong);
    }
    Ok(address)
}

/// RFC 5321 `atext` (RFC 5322 §3.2.3), widened by RFC 6531 to UTF-8 beyond ASCII.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// Returns the local part in its normal form: a dot-atom in lowercase (no mail service tells
/// `Bob` from `bob`), a quoted string unquoted when it needs no quotes (RFC 5321 §4.1.2 asks for
/// the simplest form), else as given.
fn parse_local_part(local: &str) -> Result<String, SyntaxError> {
    if local.is_empty() {
        return Err(SyntaxError::LocalEmpty);
    }
    if local.len() > MAX_LOCAL_PART {
        return Err(SyntaxError::LocalTooLong);
    }
    if let Some(quoted) = local.strip_prefix('"') {
        let content = parse_quoted(quoted)?;
        return Ok(if is_dot_atom(&content).is_ok() {
            content.to_lowercase()
        } else {
            local.to_owned()
        });
    }
    is_dot_atom(local)?;
    Ok(local.to_lowercase())
}

fn is_dot_atom(text: &str) -> Result<(), SyntaxError> {
    if text.is_empty() {
        return Err(SyntaxError::LocalEmpty);
    }
    for atom in text.split('.') {
        if atom.is_empty() {
            return Err(SyntaxError::LocalDotMisplaced);
        }
        if !atom.chars().all(is_atext) {
            return Err(SyntaxError::LocalInvalidCharacter);
        }
    }
    Ok(())
}

/// `quoted` is what follows the opening quote; returns the content with quoted pairs resolved.
fn parse_quoted(quoted: &str) -> Result<String, SyntaxError> {
    let mut content = String::new();
    let mut chars = quoted.chars();
    loop {
        match chars.next() {
            None => return Err(SyntaxError::QuotedUnterminated),
            Some('"') => break,
            // quoted-pairSMTP: a backslash before any printable ASCII character or space.
            Some('\\') => match chars.next() {
                Some(c) if (' '..='~').contains(&c) => content.push(c),
                Some(_) => return Err(SyntaxError::QuotedInvalidCharacter),
                None => return Err(SyntaxError::QuotedUnterminated),
            },
            // qtextSMTP: printable ASCII and space but `"` and `\`, and UTF-8 (RFC 6531).
            Some(c) if (' '..='~').contains(&c) || !c.is_ascii() => content.push(c),
            Some(_) => return Err(SyntaxError::QuotedInvalidCharacter),
        }
    }
    if chars.next().is_some() {
        return Err(SyntaxError::QuotedUnterminated);
    }
    Ok(content)
}

fn parse_domain(domain: &str) -> Result<String, SyntaxError> {
    if domain.is_empty() {
        return Err(SyntaxError::DomainEmpty);
    }
    if domain.starts_with('[') {
        return Err(SyntaxError::AddressLiteral);
    }
    // Checked on the text as given, before UTS #46 mapping could hide a fault (it drops a
    // trailing dot, for one) or refuse it with a vaguer reason.
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(SyntaxError::LabelEmpty);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(SyntaxError::LabelHyphenMisplaced);
        }
        if label
            .chars()
            .any(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(SyntaxError::DomainInvalidCharacter);
        }
    }
    // An ASCII label may still be punycode (`xn--…`), which must decode to a valid IDN.
    let punycode = domain.split('.').any(|label| {
        label
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
    });
    let ascii = if domain.is_ascii() && !punycode {
        domain.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii_strict(domain).map_err(|_| SyntaxError::InvalidIdn)?
    };
    if ascii.len() > MAX_DOMAIN {
        return Err(SyntaxError::DomainTooLong);
    }
    if ascii.split('.').any(|label| label.len() > MAX_LABEL) {
        return Err(SyntaxError::LabelTooLong);
    }
    let Some((_, tld)) = ascii.rsplit_once('.') else {
        return Err(SyntaxError::DomainNotFullyQualified);
    };
    if tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SyntaxError::TldNumeric);
    }
    Ok(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(input: &str) -> SyntaxError {
        match parse(input) {
            Ok(address) => panic!("{input:?} was accepted as {address:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn ordinary_addresses_normalize_to_lowercase() {
        let address = parse("Jane.Doe+news@Example.COM").unwrap();
        assert_eq!(address.normalized(), "jane.doe+news@example.com");
        assert_eq!(address.domain(), "example.com");
    }

    #[test]
    fn quoted_local_parts_keep_their_quotes_only_when_needed() {
        assert_eq!(
            parse("\"John\"@example.com").unwrap().normalized(),
            "john@example.com"
        );
        assert_eq!(
            parse("\"john doe\"@example.com").unwrap().normalized(),
            "\"john doe\"@example.com"
        );
        assert_eq!(
            parse("\"a@b\"@example.com").unwrap().local_part(),
            "\"a@b\""
        );
        assert_eq!(
            refused("\"unterminated@example.com"),
            SyntaxError::QuotedUnterminated
        );
        assert_eq!(
            refused("\"a\"b@example.com"),
            SyntaxError::QuotedUnterminated
        );
        assert_eq!(
            refused("\"tab\there\"@example.com"),
            SyntaxError::QuotedInvalidCharacter
        );
    }

    #[test]
    fn idn_domains_become_punycode() {
        let address = parse("info@bücher.example").unwrap();
        assert_eq!(address.domain(), "xn--bcher-kva.example");
        let address = parse("почта@пример.рф").unwrap();
        assert_eq!(address.domain(), "xn--e1afmkfd.xn--p1ai");
        assert_eq!(address.local_part(), "почта");
    }

    #[test]
    fn the_length_limit_holds_after_lowercasing() {
        // 32 × `İ` is 64 octets as typed and 96 once lowercased.
        let local = "İ".repeat(32);
        assert_eq!(local.len(), 64);
        assert_eq!(
            refused(&format!("{local}@example.com")),
            SyntaxError::LocalTooLong
        );
    }

    #[test]
    fn limits_are_counted_in_octets() {
        let local = "a".repeat(64);
        assert!(parse(&format!("{local}@example.com")).is_ok());
        assert_eq!(
            refused(&format!("{local}a@example.com")),
            SyntaxError::LocalTooLong
        );
        let label = "b".repeat(63);
        assert!(parse(&format!("a@{label}.com")).is_ok());
        assert_eq!(
            refused(&format!("a@{label}b.com")),
            SyntaxError::LabelTooLong
        );
        // 4 labels of 63 and dots: 255 octets of domain, but the address would exceed 254.
        let domain = [label.as_str(); 4].join(".");
        assert_eq!(refused(&format!("a@{domain}")), SyntaxError::TooLong);
        let domain = [label.as_str(); 5].join(".");
        assert_eq!(refused(&format!("a@{domain}")), SyntaxError::DomainTooLong);
    }

    #[test]
    fn every_refusal_names_its_reason() {
        let cases = [
            ("", SyntaxError::Empty),
            ("plainaddress", SyntaxError::NoAtSign),
            ("@example.com", SyntaxError::LocalEmpty),
            (".a@example.com", SyntaxError::LocalDotMisplaced),
            ("a.@example.com", SyntaxError::LocalDotMisplaced),
            ("a..b@example.com", SyntaxError::LocalDotMisplaced),
            ("a b@example.com", SyntaxError::LocalInvalidCharacter),
            ("a(comment)@example.com", SyntaxError::LocalInvalidCharacter),
            ("a@", SyntaxError::DomainEmpty),
            ("a@example..com", SyntaxError::LabelEmpty),
            ("a@example.com.", SyntaxError::LabelEmpty),
            ("a@-example.com", SyntaxError::LabelHyphenMisplaced),
            ("a@exa_mple.com", SyntaxError::DomainInvalidCharacter),
            ("a@localhost", SyntaxError::DomainNotFullyQualified),
            ("a@example.123", SyntaxError::TldNumeric),
            ("a@[192.0.2.1]", SyntaxError::AddressLiteral),
            ("a@xn--zz.example", SyntaxError::InvalidIdn),
            (" a@example.com", SyntaxError::LocalInvalidCharacter),
            ("a@example.com ", SyntaxError::DomainInvalidCharacter),
        ];
        for (input, reason) in cases {
            assert_eq!(refused(input), reason, "{input:?}");
        }
    }
}
