//! What is known of the big mail providers (`data/providers.toml`): the canonical form of
//! their addresses, which dedup keys on, and the mail hosts whose acceptances say nothing.

use std::path::Path;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::lists::ListsError;
use crate::syntax::Address;

const SHIPPED: &str = include_str!("../data/providers.toml");
/// The operator's additions, in `--verify-lists-dir`.
pub(crate) const FILE: &str = "providers.toml";

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Provider {
    #[serde(rename = "name")]
    _name: String,
    #[serde(default)]
    domains: Vec<String>,
    canonical_domain: Option<String>,
    #[serde(default)]
    ignores_dots: bool,
    tag_separator: Option<char>,
    #[serde(default)]
    mx_suffixes: Vec<String>,
    #[serde(default)]
    hides_mailboxes: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    #[serde(default)]
    provider: Vec<Provider>,
}

// The shipped file is part of the build: a test reads it, so it always parses.
static SHIPPED_PROVIDERS: LazyLock<Vec<Provider>> = LazyLock::new(|| {
    toml::from_str::<ProviderFile>(SHIPPED)
        .map(|file| file.provider)
        .unwrap_or_default()
});

/// The shipped providers and the operator's, theirs first.
#[derive(Clone, Debug, Default)]
pub struct Providers {
    added: Vec<Provider>,
}

impl Providers {
    /// The shipped providers, with the operator's file in `dir` where there is one.
    pub(crate) fn with_operator_file(dir: &Path) -> Result<Self, ListsError> {
        let path = dir.join(FILE);
        let Some(text) = crate::lists::read_if_present(&path)? else {
            return Ok(Providers::default());
        };
        let file: ProviderFile = toml::from_str(&text)
            .map_err(|error| ListsError::unreadable(&path, error.message()))?;
        Ok(Providers {
            added: file.provider,
        })
    }

    fn all(&self) -> impl Iterator<Item = &Provider> {
        self.added.iter().chain(SHIPPED_PROVIDERS.iter())
    }

    /// The one spelling of the mailbox an address reaches, by its provider's rules (Gmail:
    /// `A.B+news@googlemail.com` is `ab@gmail.com`); an address of no known provider is its
    /// normalized self.
    pub fn canonical(&self, address: &Address) -> String {
        let (local, domain) = (address.local_part(), address.domain());
        let Some(provider) = self
            .all()
            .find(|provider| provider.domains.iter().any(|known| known == domain))
        else {
            return address.normalized();
        };
        // A quoted local part is taken as it is.
        if local.starts_with('"') {
            return address.normalized();
        }
        let mut local = local.to_lowercase();
        if let Some(separator) = provider.tag_separator
            && let Some((base, _tag)) = local.split_once(separator)
        {
            local = base.to_owned();
        }
        if provider.ignores_dots {
            local.retain(|c| c != '.');
        }
        if local.is_empty() {
            return address.normalized();
        }
        let domain = provider.canonical_domain.as_deref().unwrap_or(domain);
        format!("{local}@{domain}")
    }

    /// Whether the mail host `mx` accepts every recipient while the session is open.
    pub fn hides_mailboxes(&self, mx: &str) -> bool {
        let mx = mx.trim_end_matches('.');
        self.all().any(|provider| {
            provider.hides_mailboxes
                && provider
                    .mx_suffixes
                    .iter()
                    .any(|suffix| crate::proxy::ends_with_labels(mx, suffix))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse;

    fn canonical(address: &str) -> String {
        Providers::default().canonical(&parse(address).unwrap())
    }

    #[test]
    fn the_shipped_file_reads_whole() {
        let file: ProviderFile = toml::from_str(SHIPPED).unwrap();
        assert_eq!(file.provider.len(), SHIPPED_PROVIDERS.len());
        assert!(SHIPPED_PROVIDERS.len() >= 4);
    }

    #[test]
    fn canonical_forms_follow_each_providers_rules() {
        assert_eq!(canonical("A.B+x@googlemail.com"), "ab@gmail.com");
        assert_eq!(canonical("ab@gmail.com"), "ab@gmail.com");
        assert_eq!(
            canonical("Jane.Doe+news@Outlook.com"),
            "jane.doe@outlook.com"
        );
        assert_eq!(canonical("jane-shop@yahoo.com"), "jane@yahoo.com");
        assert_eq!(canonical("jane+shop@yahoo.com"), "jane+shop@yahoo.com");
        // Elsewhere, a dot or a tag may well name another mailbox.
        assert_eq!(canonical("A.B+x@example.com"), "a.b+x@example.com");
        assert_eq!(canonical("+x@gmail.com"), "+x@gmail.com");
    }

    #[test]
    fn microsoft_365_and_yahoo_hide_their_mailboxes() {
        let providers = Providers::default();
        assert!(providers.hides_mailboxes("contoso-com.mail.protection.outlook.com"));
        assert!(providers.hides_mailboxes("mta5.am0.yahoodns.net."));
        assert!(!providers.hides_mailboxes("gmail-smtp-in.l.google.com"));
        assert!(!providers.hides_mailboxes("hotmail-com.olc.protection.outlook.com"));
    }

    #[test]
    fn operators_add_providers_of_their_own() {
        let dir = crate::lists::tests::scratch_dir("providers");
        std::fs::write(
            dir.join(FILE),
            "[[provider]]\nname = \"Ours\"\ndomains = [\"mail.example\"]\n\
             tag_separator = \"_\"\nmx_suffixes = [\"hides.example\"]\nhides_mailboxes = true\n",
        )
        .unwrap();
        let providers = Providers::with_operator_file(&dir).unwrap();
        std::fs::write(dir.join(FILE), "[[provider]]\nnmae = \"typo\"\n").unwrap();
        let broken = Providers::with_operator_file(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let address = parse("jane_x@mail.example").unwrap();
        assert_eq!(providers.canonical(&address), "jane@mail.example");
        assert!(providers.hides_mailboxes("mx1.hides.example"));
        assert!(
            providers.hides_mailboxes("mta5.am0.yahoodns.net"),
            "the shipped stay"
        );
        assert!(broken.unwrap_err().to_string().contains("nmae"));
    }
}
