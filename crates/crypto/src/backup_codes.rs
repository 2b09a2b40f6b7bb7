//! Backup codes (docs/security.md#backup-codes): ten single-use codes of ten characters from an alphabet without
//! look-alikes (about 49 bits each), written `xxxxx-xxxxx`. They are stored only as MACs.

use rand::Rng;

pub const COUNT: usize = 10;
const LENGTH: usize = 10;
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// A fresh set of codes, formatted for the user.
pub fn generate() -> Vec<String> {
    let mut rng = rand::rng();
    (0..COUNT)
        .map(|_| {
            let raw: String = (0..LENGTH)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect();
            format!("{}-{}", &raw[..LENGTH / 2], &raw[LENGTH / 2..])
        })
        .collect()
}

/// The code as typed, in the one form that is stored: lower case, without the dash or
/// spaces. `None` when it cannot be a code at all.
pub fn normalize(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (code.len() == LENGTH && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_survive_retyping() {
        let codes = generate();
        assert_eq!(codes.len(), COUNT);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), COUNT);
        for code in &codes {
            assert_eq!(code.len(), LENGTH + 1);
            let typed = code.to_uppercase().replace('-', " ");
            assert_eq!(normalize(&typed).unwrap(), code.replace('-', ""));
        }
        assert_eq!(normalize("short"), None);
        assert_eq!(normalize("0000000000"), None, "0 is not in the alphabet");
    }
}
