//! What a connected mail account does (send, read), and the Gmail scopes that grant it.

use serde::{Deserialize, Serialize};

/// One thing an account may be connected for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Send,
    Read,
}

/// What an account is connected for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub send: bool,
    pub read: bool,
}

/// Gmail's scope to send as the account, and no more (no reading, no drafts).
pub const GMAIL_SEND: &str = "https://www.googleapis.com/auth/gmail.send";
/// Gmail's scope to read the mailbox, and change nothing.
pub const GMAIL_READONLY: &str = "https://www.googleapis.com/auth/gmail.readonly";

impl Capabilities {
    /// `None` when nothing is asked.
    pub fn of(asked: &[Capability]) -> Option<Self> {
        let capabilities = Self {
            send: asked.contains(&Capability::Send),
            read: asked.contains(&Capability::Read),
        };
        capabilities.any().then_some(capabilities)
    }

    pub fn any(self) -> bool {
        self.send || self.read
    }

    pub fn names(self) -> Vec<&'static str> {
        [(self.send, "send"), (self.read, "read")]
            .into_iter()
            .filter_map(|(has, name)| has.then_some(name))
            .collect()
    }

    /// The least Gmail scopes that grant these capabilities.
    pub fn gmail_scopes(self) -> Vec<String> {
        [(self.send, GMAIL_SEND), (self.read, GMAIL_READONLY)]
            .into_iter()
            .filter(|(has, _)| *has)
            .map(|(_, scope)| scope.to_owned())
            .collect()
    }

    /// What `granted` (the scopes a token answer names) allows of these capabilities: a user
    /// may untick a scope on Google's consent screen.
    pub fn granted_by<S: AsRef<str>>(self, granted: &[S]) -> Self {
        let has = |scope: &str| granted.iter().any(|given| given.as_ref() == scope);
        Self {
            send: self.send && has(GMAIL_SEND),
            read: self.read && has(GMAIL_READONLY),
        }
    }
}

/// How fast an account may send: messages a minute and a day (rolling windows), and
/// messages at once. A message over a rate waits for the window to free, and is never dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendLimits {
    #[serde(default)]
    pub per_minute: Option<u32>,
    #[serde(default)]
    pub per_day: Option<u32>,
    pub concurrency: u32,
}

impl SendLimits {
    /// Gmail's own: 2,000 messages a day (a Workspace user's; a consumer account's is 500),
    /// and 150 a minute (the Gmail API's per-user quota of 250 units a second, of which a
    /// `messages.send` costs 100).
    pub const GMAIL: SendLimits = SendLimits {
        per_minute: Some(150),
        per_day: Some(2000),
        concurrency: 4,
    };
    /// An SMTP server's rate is its own to enforce (a 421 or 451 defers the message).
    pub const SMTP: SendLimits = SendLimits {
        per_minute: None,
        per_day: None,
        concurrency: 8,
    };
    /// The most any limit may be.
    pub const CEILING: u32 = 10_000_000;

    /// Whether every limit is positive and within [`Self::CEILING`] (concurrency at most 100).
    pub fn is_valid(self) -> bool {
        let rate = |limit: Option<u32>| limit.is_none_or(|n| (1..=Self::CEILING).contains(&n));
        rate(self.per_minute) && rate(self.per_day) && (1..=100).contains(&self.concurrency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_scopes_are_asked_and_only_granted_ones_count() {
        let both = Capabilities::of(&[Capability::Read, Capability::Send]).unwrap_or_default();
        assert_eq!(both.gmail_scopes(), [GMAIL_SEND, GMAIL_READONLY]);
        let send = Capabilities::of(&[Capability::Send]).unwrap_or_default();
        assert_eq!(send.gmail_scopes(), [GMAIL_SEND]);
        assert_eq!(Capabilities::of(&[]), None);
        let granted = both.granted_by(&["openid", GMAIL_SEND]);
        assert_eq!(granted, send);
        assert!(!both.granted_by(&["openid", "email"]).any());
        assert_eq!(both.names(), ["send", "read"]);
    }
}
