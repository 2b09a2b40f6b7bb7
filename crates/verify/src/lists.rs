//! The lists that classify an address — disposable domains, free mailbox providers, role
//! local parts — and the popular domains that typo suggestions are measured against.
//!
//! They ship inside the binary (see `data/SOURCES.md` for where each comes from and its license)
//! and an operator extends them with files of the same names in `--verify-lists-dir`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::syntax::Address;

const DISPOSABLE: &str = include_str!("../data/disposable_domains.txt");
const FREE_PROVIDERS: &str = include_str!("../data/free_provider_domains.txt");
const ROLES: &str = include_str!("../data/role_local_parts.txt");
const POPULAR: &str = include_str!("../data/popular_domains.txt");

/// A domain this many edits or fewer from a popular one is taken for a typo of it…
const MAX_TYPO_DISTANCE: usize = 2;
/// …but a short popular domain is two edits from too many real ones (`sony.com`, `sky.com`):
/// up to this length, one edit only.
const SHORT_DOMAIN: usize = 8;
/// Shorter domains are too close to too many others for a guess to help.
const MIN_TYPO_LENGTH: usize = 6;

/// The shipped lists and the operator's additions, each searched in turn: the shipped ones,
/// over 100,000 entries, are read once per process and shared.
#[derive(Clone, Debug)]
pub struct Lists {
    shipped: &'static Entries,
    added: Entries,
    /// The typo verdict of each domain seen: edit distances to every popular domain cost more
    /// than the rest of a check without SMTP, and a domain comes back with each of its
    /// addresses. Emptied when full.
    typos: std::sync::Arc<std::sync::Mutex<HashMap<String, Option<String>>>>,
}

/// Domains whose typo verdict is remembered at most.
const TYPO_MEMORY: usize = 50_000;

#[derive(Clone, Debug, Default)]
struct Entries {
    disposable: HashSet<String>,
    free_providers: HashSet<String>,
    roles: HashSet<String>,
    popular: Vec<String>,
}

static SHIPPED: LazyLock<Entries> = LazyLock::new(|| Entries {
    disposable: entries(DISPOSABLE).collect(),
    free_providers: entries(FREE_PROVIDERS).collect(),
    roles: entries(ROLES).collect(),
    popular: entries(POPULAR).collect(),
});

/// What the lists say of one address. Every check runs, whatever another found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    pub disposable: bool,
    pub free_provider: bool,
    pub role_account: bool,
    /// The address the sender probably meant, when the domain looks like a typo.
    pub suggestion: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the list {path}: {source}")]
pub struct ListsError {
    path: String,
    source: std::io::Error,
}

impl ListsError {
    /// A file that was read but does not say what it should.
    pub(crate) fn unreadable(path: &Path, why: &str) -> Self {
        ListsError {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned()),
        }
    }
}

impl Default for Lists {
    fn default() -> Self {
        Lists {
            shipped: &SHIPPED,
            added: Entries::default(),
            typos: Default::default(),
        }
    }
}

fn entries(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_lowercase)
}

impl Lists {
    /// The shipped lists, each extended by the file of the same name in `dir` where there is
    /// one (one entry per line, `#` starts a comment line).
    pub fn with_operator_lists(dir: &Path) -> Result<Self, ListsError> {
        let mut lists = Lists::default();
        let added = &mut lists.added;
        let files: [(&str, &mut HashSet<String>); 3] = [
            ("disposable_domains.txt", &mut added.disposable),
            ("free_provider_domains.txt", &mut added.free_providers),
            ("role_local_parts.txt", &mut added.roles),
        ];
        for (name, set) in files {
            if let Some(text) = read_if_present(&dir.join(name))? {
                set.extend(entries(&text));
            }
        }
        if let Some(text) = read_if_present(&dir.join("popular_domains.txt"))? {
            added.popular.extend(entries(&text));
        }
        Ok(lists)
    }

    pub fn classify(&self, address: &Address) -> Classification {
        let domain = address.domain();
        Classification {
            disposable: self.is_disposable(domain),
            free_provider: self.is_free_provider(domain),
            role_account: self.is_role(address.local_part()),
            suggestion: self
                .remembered_typo_of(domain)
                .map(|meant| format!("{}@{meant}", address.local_part())),
        }
    }

    /// A disposable service's subdomains are disposable too (`x.mailinator.com`).
    fn is_disposable(&self, domain: &str) -> bool {
        let mut rest = domain;
        loop {
            if self.shipped.disposable.contains(rest) || self.added.disposable.contains(rest) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, parent)) if parent.contains('.') => rest = parent,
                _ => return false,
            }
        }
    }

    /// `sales+eu@` is still the sales team.
    fn is_role(&self, local: &str) -> bool {
        let local = local.split_once('+').map_or(local, |(base, _)| base);
        self.shipped.roles.contains(local) || self.added.roles.contains(local)
    }

    fn is_free_provider(&self, domain: &str) -> bool {
        self.shipped.free_providers.contains(domain) || self.added.free_providers.contains(domain)
    }

    fn popular(&self) -> impl Iterator<Item = &String> {
        self.shipped.popular.iter().chain(&self.added.popular)
    }

    fn remembered_typo_of(&self, domain: &str) -> Option<String> {
        let memory = || {
            self.typos
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        if let Some(meant) = memory().get(domain) {
            return meant.clone();
        }
        let meant = self.typo_of(domain).map(str::to_owned);
        let mut memory = memory();
        if memory.len() >= TYPO_MEMORY {
            memory.clear();
        }
        memory.insert(domain.to_owned(), meant.clone());
        meant
    }

    fn typo_of(&self, domain: &str) -> Option<&str> {
        if domain.len() < MIN_TYPO_LENGTH
            || self.is_free_provider(domain)
            || self.popular().any(|popular| popular == domain)
        {
            return None;
        }
        let length = domain.chars().count();
        let allowed = |popular: &str| {
            if popular.len() <= SHORT_DOMAIN {
                1
            } else {
                MAX_TYPO_DISTANCE
            }
        };
        self.popular()
            // The distance is at least the difference in length: most domains are ruled out
            // without computing it (it is on the path of every check).
            .filter(|popular| popular.chars().count().abs_diff(length) <= allowed(popular))
            .map(|popular| (strsim::osa_distance(domain, popular), popular))
            .filter(|(distance, popular)| *distance <= allowed(popular))
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, popular)| popular.as_str())
    }
}

pub(crate) fn read_if_present(path: &Path) -> Result<Option<String>, ListsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ListsError {
            path: path.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::syntax::parse;

    /// An empty directory of this test's own.
    pub(crate) fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mailroom-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn classify(lists: &Lists, address: &str) -> Classification {
        lists.classify(&parse(address).unwrap())
    }

    #[test]
    fn one_check_never_hides_another() {
        let lists = Lists::default();
        let found = classify(&lists, "postmaster@mailinator.com");
        assert!(found.disposable && found.role_account, "{found:?}");
        let found = classify(&lists, "sales+eu@gmail.com");
        assert!(found.free_provider && found.role_account && !found.disposable);
        assert_eq!(found.suggestion, None);
        assert!(classify(&lists, "a@inbox.mailinator.com").disposable);
        assert_eq!(
            classify(&lists, "jane@example.com"),
            Classification::default()
        );
    }

    #[test]
    fn typos_of_popular_domains_are_suggested() {
        let lists = Lists::default();
        for (typo, meant) in [
            ("jane@gmial.com", "jane@gmail.com"),
            ("jane@gmail.con", "jane@gmail.com"),
            ("jane@hotmial.com", "jane@hotmail.com"),
            ("jane@yaho.com", "jane@yahoo.com"),
        ] {
            assert_eq!(
                classify(&lists, typo).suggestion.as_deref(),
                Some(meant),
                "{typo}"
            );
        }
        assert_eq!(classify(&lists, "jane@example.org").suggestion, None);
        // Remembered by domain: a second address there keeps its own local part.
        assert_eq!(
            classify(&lists, "john@gmial.com").suggestion.as_deref(),
            Some("john@gmail.com")
        );
        assert_eq!(classify(&lists, "john@example.org").suggestion, None);
    }

    #[test]
    fn popular_domains_and_their_typos_are_not_disposable() {
        // A slip of the keyboard is answered with a suggestion, not with "disposable".
        // Cheap tests first: one edit apart, two strings differ in length by one at most and in
        // two adjacent places at most, so all but two characters match from one end or the other
        // (the lists are ASCII).
        fn matching(a: impl Iterator<Item = u8>, b: impl Iterator<Item = u8>) -> usize {
            a.zip(b).take_while(|(x, y)| x == y).count()
        }
        let shared = |a: &str, b: &str| {
            matching(a.bytes(), b.bytes()) + matching(a.bytes().rev(), b.bytes().rev())
        };
        for domain in &SHIPPED.disposable {
            for popular in &SHIPPED.popular {
                if popular.len().abs_diff(domain.len()) > 1
                    || shared(domain, popular) + 2 < domain.len().min(popular.len())
                {
                    continue;
                }
                assert!(
                    strsim::osa_distance(domain, popular) > 1,
                    "{domain} is listed as disposable, one edit from {popular}"
                );
            }
        }
        let found = classify(&Lists::default(), "jane@gmial.com");
        assert!(!found.disposable, "{found:?}");
        assert_eq!(found.suggestion.as_deref(), Some("jane@gmail.com"));
    }

    #[test]
    fn only_mailboxes_a_group_reads_are_role_accounts() {
        let lists = Lists::default();
        // Generic words: more likely someone's own address than a team's.
        for personal in [
            "user@example.com",
            "user+tag@example.com",
            "nobody@example.com",
        ] {
            assert!(!classify(&lists, personal).role_account, "{personal}");
        }
        for role in [
            "info@example.com",
            "sales+eu@example.com",
            "postmaster@example.com",
            "abuse@example.com",
            "noreply@example.com",
        ] {
            assert!(classify(&lists, role).role_account, "{role}");
        }
    }

    #[test]
    fn every_mailbox_name_of_rfc_2142_is_a_role_account() {
        // The list was reviewed against RFC 2142: none of its names may be lost.
        let lists = Lists::default();
        for name in [
            "info",
            "marketing",
            "sales",
            "support",
            "abuse",
            "noc",
            "security",
            "postmaster",
            "hostmaster",
            "usenet",
            "news",
            "webmaster",
            "www",
            "uucp",
            "ftp",
            "list-request",
        ] {
            let address = format!("{name}@example.com");
            assert!(classify(&lists, &address).role_account, "{address}");
        }
    }

    #[test]
    fn operators_extend_the_lists() {
        let dir = scratch_dir("lists");
        std::fs::write(
            dir.join("disposable_domains.txt"),
            "# ours\nthrowaway.example\n",
        )
        .unwrap();
        std::fs::write(dir.join("role_local_parts.txt"), "Payroll\n").unwrap();
        let lists = Lists::with_operator_lists(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(classify(&lists, "x@throwaway.example").disposable);
        assert!(classify(&lists, "payroll@example.com").role_account);
        assert!(
            classify(&lists, "x@mailinator.com").disposable,
            "shipped entries stay"
        );
    }
}
