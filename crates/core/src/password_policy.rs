//! Which passwords mailroom accepts (docs/security.md#password-hashing): 8 to 128 characters; not one of the 50,000 most
//! common passwords; not guessable by zxcvbn's estimate (score below 3); not containing the
//! account's email local part; and, where an organization asks for them, composition rules.
//! Every rule is checked on every password, so a rejection names the first rule broken.

use std::collections::HashSet;
use std::sync::LazyLock;

use thiserror::Error;

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 128;
/// zxcvbn scores 0 (trivial) to 4 (very strong); below this a password is refused.
pub const MIN_STRENGTH: u8 = 3;
/// A local part shorter than this says too little to be worth refusing (`a@x.test`).
const MIN_LOCAL_PART_CHECKED: usize = 3;

/// Mozilla's list of common passwords (see `data/README.md`), as a set: one lookup per check.
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .collect()
});

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PasswordRejection {
    #[error("the password must be at least {MIN_LENGTH} characters long")]
    TooShort,
    #[error("the password must be at most {MAX_LENGTH} characters long")]
    TooLong,
    #[error("the password is one of the most common passwords")]
    Common,
    #[error("the password is too easy to guess{}", hint.as_deref().map(|h| format!(": {h}")).unwrap_or_default())]
    Weak { hint: Option<String> },
    #[error("the password must not contain your email address")]
    ContainsEmail,
    #[error("the organization requires a password with {0}")]
    Composition(&'static str),
}

/// An organization's optional composition rules ("complexity requirements").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompositionRules {
    pub uppercase: bool,
    pub lowercase: bool,
    pub digit: bool,
    pub symbol: bool,
}

impl CompositionRules {
    const UPPERCASE: u8 = 1;
    const LOWERCASE: u8 = 2;
    const DIGIT: u8 = 4;
    const SYMBOL: u8 = 8;

    /// The rules as stored: one bit each.
    pub fn bits(self) -> u8 {
        [
            (self.uppercase, Self::UPPERCASE),
            (self.lowercase, Self::LOWERCASE),
            (self.digit, Self::DIGIT),
            (self.symbol, Self::SYMBOL),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |bits, (_, bit)| bits | bit)
    }

    pub fn from_bits(bits: u8) -> Self {
        Self {
            uppercase: bits & Self::UPPERCASE != 0,
            lowercase: bits & Self::LOWERCASE != 0,
            digit: bits & Self::DIGIT != 0,
            symbol: bits & Self::SYMBOL != 0,
        }
    }
}

/// Whether `password` may be set for the account with this email address.
pub fn check(
    password: &str,
    email: &str,
    rules: CompositionRules,
) -> Result<(), PasswordRejection> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(PasswordRejection::TooShort);
    }
    if length > MAX_LENGTH {
        return Err(PasswordRejection::TooLong);
    }
    let lowered = password.to_lowercase();
    if COMMON.contains(lowered.as_str()) {
        return Err(PasswordRejection::Common);
    }
    let local_part = email.split('@').next().unwrap_or_default().to_lowercase();
    let local_names = [
        local_part.as_str(),
        local_part.split('+').next().unwrap_or_default(),
    ];
    if local_names
        .iter()
        .any(|name| name.chars().count() >= MIN_LOCAL_PART_CHECKED && lowered.contains(name))
    {
        return Err(PasswordRejection::ContainsEmail);
    }
    check_composition(password, rules)?;
    let estimate = zxcvbn::zxcvbn(password, &[local_part.as_str(), email, "mailroom"]);
    if u8::from(estimate.score()) < MIN_STRENGTH {
        let hint = estimate
            .feedback()
            .and_then(|feedback| feedback.warning())
            .map(|warning| warning.to_string());
        return Err(PasswordRejection::Weak { hint });
    }
    Ok(())
}

fn check_composition(password: &str, rules: CompositionRules) -> Result<(), PasswordRejection> {
    type CharTest = fn(char) -> bool;
    let has = |test: CharTest| password.chars().any(test);
    let required: [(bool, CharTest, &'static str); 4] = [
        (rules.uppercase, char::is_uppercase, "an uppercase letter"),
        (rules.lowercase, char::is_lowercase, "a lowercase letter"),
        (rules.digit, |c| c.is_ascii_digit(), "a digit"),
        (rules.symbol, |c| !c.is_alphanumeric(), "a symbol"),
    ];
    for (wanted, test, what) in required {
        if wanted && !has(test) {
            return Err(PasswordRejection::Composition(what));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: &str = "jane.doe+work@example.test";
    const NONE: CompositionRules = CompositionRules {
        uppercase: false,
        lowercase: false,
        digit: false,
        symbol: false,
    };

    fn verdict(password: &str) -> Result<(), PasswordRejection> {
        check(password, EMAIL, NONE)
    }

    #[test]
    fn the_list_is_bundled_in_full() {
        assert!(COMMON.len() >= 50_000, "{}", COMMON.len());
    }

    #[test]
    fn lengths_are_counted_in_characters() {
        assert_eq!(verdict("Tz9$kQ1"), Err(PasswordRejection::TooShort));
        assert_eq!(verdict(&"ab9$".repeat(33)), Err(PasswordRejection::TooLong));
        // Eight characters, more than eight bytes.
        assert_ne!(verdict("ünïcødé€"), Err(PasswordRejection::TooShort));
    }

    #[test]
    fn common_passwords_are_refused_in_any_case() {
        for common in ["password1", "PASSWORD123", "iloveyou2", "qwertyuiop"] {
            assert_eq!(verdict(common), Err(PasswordRejection::Common), "{common}");
        }
    }

    #[test]
    fn guessable_passwords_are_refused() {
        for weak in ["aaaaaaaaaaaa", "abcdefgh12", "Summer2024!"] {
            assert!(
                matches!(
                    verdict(weak),
                    Err(PasswordRejection::Weak { .. }) | Err(PasswordRejection::Common)
                ),
                "{weak}: {:?}",
                verdict(weak)
            );
        }
    }

    #[test]
    fn the_email_local_part_is_refused() {
        assert_eq!(
            verdict("xJane.Doe+work-Vq7#"),
            Err(PasswordRejection::ContainsEmail)
        );
        assert_eq!(
            verdict("Vq7#jane.doe-lumber"),
            Err(PasswordRejection::ContainsEmail)
        );
    }

    #[test]
    fn strong_passwords_pass() {
        for strong in [
            "correct horse battery staple",
            "Tz9$kQ1v!mLp",
            "vault-lumber-orchid-47",
        ] {
            assert_eq!(verdict(strong), Ok(()), "{strong}");
        }
    }

    #[test]
    fn rules_survive_their_stored_form() {
        for bits in 0..16 {
            assert_eq!(CompositionRules::from_bits(bits).bits(), bits);
        }
    }

    #[test]
    fn composition_rules_apply_only_when_asked() {
        let all = CompositionRules {
            uppercase: true,
            lowercase: true,
            digit: true,
            symbol: true,
        };
        assert_eq!(
            check("correct horse battery staple", EMAIL, all),
            Err(PasswordRejection::Composition("an uppercase letter"))
        );
        assert_eq!(
            check("Correct horse battery staple", EMAIL, all),
            Err(PasswordRejection::Composition("a digit"))
        );
        assert_eq!(check("Correct horse battery staple 7", EMAIL, all), Ok(()));
    }
}
