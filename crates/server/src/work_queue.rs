//! The work queue's runner on every node (`mailroom_storage::queue`): it claims the due jobs of
//! every kind it knows, one at a time, and runs each — finished as done, or failed and tried
//! again after its kind's backoff, dead after its last attempt. A job enqueued on this node
//! rings its bell; jobs enqueued elsewhere are found at the next poll.

use std::time::Duration;

use mailroom_core::JobId;
use mailroom_mail::queued::{MailMessage, QueuedMail};
use mailroom_storage::StorageError;
use mailroom_storage::queue::{ClaimedJob, JobKind, NewJob};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::state::AppState;

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

/// How long to wait after the database failed.
const BACKOFF: Duration = Duration::from_secs(5);

/// This node's runner: its name in leases, its settings, and a bell that an enqueue rings.
pub struct Runner {
    name: String,
    pub settings: Settings,
    bell: Notify,
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

/// Queues a system mail: once this returns, a crash loses it no more, and the runner sends it
/// (tried again on failure). A mail that cannot be queued is logged, never the request's
/// failure: the change that caused it stands.
pub async fn send_mail(state: &AppState, to: &str, message: MailMessage) {
    match state.database.enqueue(mail_job(to, message)).await {
        Ok(_) => state.queue.wake(),
        Err(error) => tracing::warn!(%error, "system mail could not be queued"),
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

pub async fn run(state: AppState) {
    let runner = &state.queue;
    let kinds = JobKind::ALL;
    loop {
        match state
            .database
            .claim_next_job(&runner.name, &kinds, runner.settings.lease)
            .await
        {
            Ok(Some(job)) => finish(&state, &job, work(&state, &job).await).await,
            Ok(None) => {
                let _ =
                    tokio::time::timeout(runner.settings.poll_every, runner.bell.notified()).await;
            }
            // The job was buried, never run: look for the next.
            Err(StorageError::Undecryptable) => {
                tracing::warn!("a queued job's payload did not open: it is dead, not run");
            }
            Err(error) => {
                tracing::warn!(%error, "claiming a queued job failed; retrying later");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

/// Runs one job; the error says why it failed, for the job's record (never a secret).
async fn work(state: &AppState, job: &ClaimedJob) -> Result<(), String> {
    match job.kind {
        JobKind::SystemMail => {
            let mail: QueuedMail = serde_json::from_slice(&job.payload)
                .map_err(|_| "the mail does not read back".to_owned())?;
            let to = mail
                .to
                .parse()
                .map_err(|_| "the recipient is not an address".to_owned())?;
            state
                .mail
                .send(&to, &mail.message.render())
                .await
                .map_err(|error| error.to_string())
        }
    }
}

async fn finish(state: &AppState, job: &ClaimedJob, outcome: Result<(), String>) {
    let database = &state.database;
    let recorded = match &outcome {
        Ok(()) => database.complete_job(job).await,
        Err(error) => {
            let backoff = job.kind.retry_policy().backoff(job.attempt);
            tracing::warn!(job = %job.id, kind = job.kind.as_str(), attempt = job.attempt, %error, "a queued job failed");
            database.fail_job(job, error, backoff).await
        }
    };
    match recorded {
        Ok(true) => {}
        // Cancelled meanwhile, or the lease ran out and another runner took it.
        Ok(false) => tracing::info!(job = %job.id, "a queued job's outcome came after its lease"),
        Err(error) => {
            tracing::warn!(job = %job.id, %error, "a queued job's outcome was not recorded")
        }
    }
}
