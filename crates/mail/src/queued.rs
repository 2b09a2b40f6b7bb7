//! A system mail as the work queue keeps it until it is sent: to whom, and what to say, in
//! words the templates render when the mail goes out. It may hold a code or a link's token:
//! the queue seals it at rest, and it has no `Debug`, so that no log can show it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::templates::{self, Rendered};

#[derive(Clone, Serialize, Deserialize)]
pub struct QueuedMail {
    pub to: String,
    pub message: MailMessage,
}

/// What a system mail says: one variant per template.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "template", rename_all = "snake_case")]
pub enum MailMessage {
    /// A one-time code (sign-up, sign-in, password reset).
    Code {
        purpose: String,
        code: String,
        valid_minutes: u32,
    },
    /// A sign-in from a device not seen before.
    NewSignIn { ip: String, user_agent: String },
    /// The account is locked until then.
    AccountLocked {
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
    /// An invitation to an organization, with its link.
    Invitation {
        org_name: String,
        role: String,
        link: String,
        valid_days: u32,
    },
    /// A connected account's grant was refused: connect it again there.
    AccountNeedsReconnect { address: String, link: String },
    /// A webhook endpoint failed for days and was disabled: enable it again there.
    WebhookDisabled {
        url: String,
        days: u32,
        link: String,
    },
}

impl MailMessage {
    pub fn render(&self) -> Rendered {
        match self {
            MailMessage::Code {
                purpose,
                code,
                valid_minutes,
            } => templates::verification_code(purpose, code, *valid_minutes),
            MailMessage::NewSignIn { ip, user_agent } => templates::new_sign_in(ip, user_agent),
            MailMessage::AccountLocked { until } => templates::account_locked(*until),
            MailMessage::Invitation {
                org_name,
                role,
                link,
                valid_days,
            } => templates::invitation(org_name, role, link, *valid_days),
            MailMessage::AccountNeedsReconnect { address, link } => {
                templates::account_needs_reconnect(address, link)
            }
            MailMessage::WebhookDisabled { url, days, link } => {
                templates::webhook_disabled(url, *days, link)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_mail_reads_back_as_it_was_written() {
        let mail = QueuedMail {
            to: "jane@example.test".into(),
            message: MailMessage::Code {
                purpose: "sign-up".into(),
                code: "123456".into(),
                valid_minutes: 15,
            },
        };
        let bytes = serde_json::to_vec(&mail).unwrap();
        let back: QueuedMail = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.to, "jane@example.test");
        let rendered = back.message.render();
        assert!(rendered.text.contains("123456"));
        let locked = MailMessage::AccountLocked {
            until: OffsetDateTime::UNIX_EPOCH,
        };
        let json = serde_json::to_string(&locked).unwrap();
        assert!(json.contains("\"template\":\"account_locked\""), "{json}");
    }
}
