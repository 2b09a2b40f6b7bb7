//! The events an organization's webhook endpoints may subscribe to (docs/security.md#webhooks).

use serde::{Deserialize, Serialize};

/// What happened, as a webhook tells it (`type` of the payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// Every recipient still to be tried got the message (some may have failed before).
    #[serde(rename = "email.sent")]
    EmailSent,
    /// A try was refused for now or broke off: another is scheduled.
    #[serde(rename = "email.delivery_delayed")]
    EmailDeliveryDelayed,
    /// No recipient got the message, for good.
    #[serde(rename = "email.failed")]
    EmailFailed,
    /// One recipient was refused for good (and, if it bounced, suppressed).
    #[serde(rename = "email.recipient_failed")]
    EmailRecipientFailed,
    /// The message was canceled before it went.
    #[serde(rename = "email.canceled")]
    EmailCanceled,
    /// A bulk verification job ended, done or failed.
    #[serde(rename = "verify.job.completed")]
    VerifyJobCompleted,
    /// Sent on request to one endpoint, whatever it subscribed to.
    #[serde(rename = "webhook.test")]
    WebhookTest,
}

impl EventType {
    /// The events an endpoint may subscribe to.
    pub const SUBSCRIBABLE: [EventType; 6] = [
        EventType::EmailSent,
        EventType::EmailDeliveryDelayed,
        EventType::EmailFailed,
        EventType::EmailRecipientFailed,
        EventType::EmailCanceled,
        EventType::VerifyJobCompleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::EmailSent => "email.sent",
            EventType::EmailDeliveryDelayed => "email.delivery_delayed",
            EventType::EmailFailed => "email.failed",
            EventType::EmailRecipientFailed => "email.recipient_failed",
            EventType::EmailCanceled => "email.canceled",
            EventType::VerifyJobCompleted => "verify.job.completed",
            EventType::WebhookTest => "webhook.test",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        Self::SUBSCRIBABLE
            .into_iter()
            .chain([EventType::WebhookTest])
            .find(|event| event.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error, StrDeserializer};

    use super::*;

    #[test]
    fn names_round_trip_and_are_serdes_too() {
        for event in EventType::SUBSCRIBABLE
            .into_iter()
            .chain([EventType::WebhookTest])
        {
            assert_eq!(EventType::parse(event.as_str()), Some(event));
            let name: StrDeserializer<'_, Error> = event.as_str().into_deserializer();
            assert_eq!(EventType::deserialize(name).unwrap(), event);
        }
        assert_eq!(EventType::parse("email.bounced"), None);
    }
}
