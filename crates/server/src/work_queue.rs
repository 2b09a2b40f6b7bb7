//! The work queue as the state holds it (`mailroom_storage::queue`): the runners' settings,
//! their name in leases and the bells an enqueue on this node rings, and a system mail as a
//! job. The runners themselves are [`crate::workers::queue`].

use std::time::Duration;

use mailroom_core::JobId;
use mailroom_mail::queued::{MailMessage, QueuedMail};
use mailroom_storage::queue::{JobKind, NewJob};
use tokio::sync::Notify;
use uuid::Uuid;

/// How the runners go about it; the defaults are production's, and tests choose their own.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Whether this node runs the queue's jobs at all (a node may only answer HTTP).
    pub run_here: bool,
    /// How long a claim holds without renewal: how soon a dead node's job is taken up by
    /// another. A runner renews it three times a lease while the job runs.
    pub lease: Duration,
    /// How often an idle runner looks for jobs enqueued on other nodes.
    pub poll_every: Duration,
    /// Bulk verification jobs a node works at once: one tenant's big job does not hold up
    /// everyone else's.
    pub bulk_runners: usize,
    /// Messages a node delivers at once.
    pub send_runners: usize,
    /// Rows of a bulk job checked and written together: enough to keep every host's sessions
    /// full, few enough that a crash re-probes little (it never charges twice).
    pub bulk_chunk: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            run_here: true,
            lease: Duration::from_secs(15),
            poll_every: Duration::from_secs(1),
            bulk_runners: 2,
            send_runners: 8,
            bulk_chunk: 2000,
        }
    }
}

impl Settings {
    /// Jobs of `kind` a node runs at once. Each kind has runners of its own, so that a long
    /// job of one kind never holds up a short one of another (a code behind a bulk job).
    pub fn runners(&self, kind: JobKind) -> usize {
        match kind {
            JobKind::SystemMail => 2,
            JobKind::BulkVerification => self.bulk_runners,
            JobKind::SendEmail => self.send_runners,
            JobKind::DeliverWebhook => 4,
        }
    }

    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }
}

/// This node's runners: their name in leases, their settings, and a bell per kind that an
/// enqueue rings.
pub struct Runner {
    pub(crate) name: String,
    pub settings: Settings,
    bells: [Notify; JobKind::ALL.len()],
}

impl Runner {
    pub fn new(settings: Settings) -> Self {
        Runner {
            name: format!("node-{}", Uuid::new_v4()),
            settings,
            bells: std::array::from_fn(|_| Notify::new()),
        }
    }

    /// A job of `kind` was enqueued: a runner of it looks now rather than at the next poll.
    pub fn wake(&self, kind: JobKind) {
        self.bell(kind).notify_one();
    }

    pub(crate) fn bell(&self, kind: JobKind) -> &Notify {
        let index = JobKind::ALL
            .iter()
            .position(|known| *known == kind)
            .unwrap_or_default();
        &self.bells[index]
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

/// What a job's run came to when it did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ran {
    Done,
    /// It could not run yet (a limit it waits for): due again after `delay`, the attempt
    /// not counted.
    Postponed {
        why: String,
        delay: Duration,
    },
}

/// A runner's hold on the job it runs: lost when a renewal finds the lease gone (ran out and
/// taken by another runner, or the job cancelled). A long job looks at it between steps.
#[derive(Clone, Debug, Default)]
pub struct Lease(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Lease {
    pub fn is_lost(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn lose(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
