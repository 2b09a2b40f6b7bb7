//! This node's bulk verification workers, as the state holds them: their settings, their name
//! in leases, and the bell a new job rings. The workers themselves are [`crate::workers::bulk_jobs`].

use std::time::Duration;

use tokio::sync::Notify;
use uuid::Uuid;

/// How the workers go about it; the defaults are production's, and tests choose their own.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Jobs a node works at once: one tenant's big job does not hold up everyone else's.
    pub workers: usize,
    /// How long a claim holds without renewal: how soon a dead node's job is taken up.
    pub lease: Duration,
    pub renew_every: Duration,
    /// Rows checked and written together: enough to keep every host's sessions full, few
    /// enough that a crash re-probes little (it never charges twice).
    pub chunk: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            workers: 2,
            lease: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            chunk: 2000,
        }
    }
}

/// This node's worker: its name in leases, its settings, and a bell that a new job rings.
pub struct JobWorker {
    pub(crate) name: String,
    pub settings: Settings,
    pub(crate) bell: Notify,
}

impl JobWorker {
    pub fn new(settings: Settings) -> Self {
        JobWorker {
            name: format!("node-{}", Uuid::new_v4()),
            settings,
            bell: Notify::new(),
        }
    }

    /// A job was queued: look now rather than at the next poll.
    pub fn wake(&self) {
        self.bell.notify_one();
    }
}
