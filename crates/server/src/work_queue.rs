//! The work queue as the state holds it (`mailroom_storage::queue`): the runner's settings,
//! its name in leases and the bell an enqueue on this node rings, and a system mail as a job.
//! The runner itself is [`crate::workers::queue`].

use std::time::Duration;

use mailroom_core::JobId;
use mailroom_mail::queued::{MailMessage, QueuedMail};
use mailroom_storage::queue::{JobKind, NewJob};
use tokio::sync::Notify;
use uuid::Uuid;

/// How the runner goes about it; the defaults are production's, and tests choose their own.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Whether this node runs the queue's jobs at all (a node may only answer HTTP).
    pub run_here: bool,
    /// How long a claim holds: how soon a dead node's job is taken up by another.
    pub lease: Duration,
    /// How often an idle runner looks for jobs enqueued on other nodes.
    pub poll_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            run_here: true,
            lease: Duration::from_secs(60),
            poll_every: Duration::from_secs(1),
        }
    }
}

/// This node's runner: its name in leases, its settings, and a bell that an enqueue rings.
pub struct Runner {
    pub(crate) name: String,
    pub settings: Settings,
    pub(crate) bell: Notify,
}

impl Runner {
    pub fn new(settings: Settings) -> Self {
        Runner {
            name: format!("node-{}", Uuid::new_v4()),
            settings,
            bell: Notify::new(),
        }
    }

    /// A job was enqueued: look now rather than at the next poll.
    pub fn wake(&self) {
        self.bell.notify_one();
    }
}

/// A system mail as a job of the queue, ready to be prepared and queued inside the
/// transaction of the change that causes it (the outbox pattern).
pub fn mail_job(to: &str, message: MailMessage) -> NewJob {
    let mail = QueuedMail {
        to: to.to_owned(),
        message,
    };
    NewJob {
        id: JobId::generate(),
        org_id: None,
        kind: JobKind::SystemMail,
        // Strings and numbers only: it always serializes.
        payload: serde_json::to_vec(&mail).unwrap_or_default(),
        idempotency_key: None,
        delay: Duration::ZERO,
    }
}
