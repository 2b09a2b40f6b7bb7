//! The work queue's runners on this node, [`Settings::runners`] of each kind: each claims a
//! due job of its kind under a lease on the database's clock, renews the lease while the job
//! runs, runs it through its operation in the application layer, and records the outcome
//! (done, or failed and tried again after the kind's backoff, or dead after its last attempt).
//!
//! [`Settings::runners`]: crate::work_queue::Settings::runners

use std::time::Duration;

use futures::FutureExt;

use mailroom_storage::StorageError;
use mailroom_storage::queue::{ClaimedJob, JobKind};

use crate::application;
use crate::error::DomainError;
use crate::state::AppState;
use crate::work_queue::{Lease, Ran};

/// How long to wait after the database failed.
const BACKOFF: Duration = Duration::from_secs(5);

pub async fn run(state: AppState, kind: JobKind) {
    let runner = &state.queue;
    loop {
        // Each claim holds under a name of its own: a claim never shares its fence with an
        // earlier one of the same job on this node, whatever its attempt count says.
        let holder = format!("{}/{}", runner.name, uuid::Uuid::new_v4());
        match state
            .database
            .queue()
            .claim_next_job(&holder, &[kind], runner.settings.lease)
            .await
        {
            Ok(Some(job)) => run_one(&state, &job).await,
            Ok(None) => {
                let _ =
                    tokio::time::timeout(runner.settings.poll_every, runner.bell(kind).notified())
                        .await;
            }
            // The job was buried, never run: look for the next.
            Err(StorageError::Undecryptable) => {
                tracing::warn!("a queued job's payload did not open: it is dead, not run");
            }
            Err(error) => {
                tracing::warn!(%error, kind = kind.as_str(), "claiming a queued job failed; retrying later");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

async fn run_one(state: &AppState, job: &ClaimedJob) {
    let lease = Lease::default();
    let renewal = tokio::spawn(renew(state.clone(), job.clone(), lease.clone()));
    let work = async {
        match job.kind {
            JobKind::SystemMail => application::system_mail::deliver(state, &job.payload)
                .await
                .map(|()| Ran::Done),
            JobKind::BulkVerification => application::verify::work_job(state, job, &lease)
                .await
                .map(|()| Ran::Done),
            JobKind::SendEmail => application::emails::deliver(state, job, &lease).await,
            JobKind::DeliverWebhook => application::webhooks::deliver(state, job)
                .await
                .map(|()| Ran::Done),
        }
    };
    // A job that panics is a failed attempt, not a runner gone with its lease renewed forever.
    let outcome = std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(DomainError::internal(anyhow::anyhow!("the job panicked"))));
    renewal.abort();
    finish(state, job, outcome).await;
}

/// Keeps the job's lease while it runs; says when it is lost.
async fn renew(state: AppState, job: ClaimedJob, lease: Lease) {
    let settings = state.queue.settings;
    let mut every = tokio::time::interval(settings.renew_every());
    every.tick().await;
    loop {
        every.tick().await;
        match state
            .database
            .queue()
            .renew_job_lease(&job, settings.lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                lease.lose();
                return;
            }
            Err(error) => tracing::warn!(job = %job.id, %error, "renewing a job's lease failed"),
        }
    }
}

async fn finish(state: &AppState, job: &ClaimedJob, outcome: Result<Ran, DomainError>) {
    let database = &state.database;
    let recorded = match &outcome {
        Ok(Ran::Done) => database.queue().complete_job(job).await,
        Ok(Ran::Postponed { why, delay }) => database.queue().postpone_job(job, why, *delay).await,
        Err(error) => {
            // Why, for the job's record: the whole chain of causes, never a secret.
            let error = format!("{error:#}");
            let backoff = job.kind.retry_policy().backoff(job.attempt);
            tracing::warn!(job = %job.id, kind = job.kind.as_str(), attempt = job.attempt, %error, "a queued job failed");
            database.queue().fail_job(job, &error, backoff).await
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
