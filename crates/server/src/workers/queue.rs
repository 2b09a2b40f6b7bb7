//! The work queue's runner on this node: claims a due job of any kind under a lease on the
//! database's clock, runs it, and records the outcome (done, or failed and tried again after
//! the kind's backoff, or dead after its last attempt).

use std::time::Duration;

use mailroom_mail::queued::QueuedMail;
use mailroom_storage::StorageError;
use mailroom_storage::queue::{ClaimedJob, JobKind};

use crate::state::AppState;

/// How long to wait after the database failed.
const BACKOFF: Duration = Duration::from_secs(5);

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
