//! The bulk job workers, `Settings::workers` on every node. Each claims one job at a time under a
//! lease it renews while it lives, and works it a chunk of rows at a time: charge, check, then
//! write the chunk's results and progress in one transaction. A node that dies mid-job leaves
//! its lease to run out; another node (or this one, restarted) claims the job and resumes at its
//! first unchecked row. The charges are keyed by job and address, so a chunk checked twice is
//! charged once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mailroom_storage::jobs::{Ending, Job, JobState};
use time::OffsetDateTime;

use crate::state::AppState;
use crate::verification::VerifyError;

/// How often an idle worker looks for jobs queued on other nodes.
const IDLE_POLL: Duration = Duration::from_secs(2);
/// How long to wait after the database failed.
const BACKOFF: Duration = Duration::from_secs(5);

pub async fn run(state: AppState) {
    let worker = &state.job_worker;
    loop {
        let now = OffsetDateTime::now_utc();
        match state
            .database
            .claim_job(&worker.name, now, now + worker.settings.lease)
            .await
        {
            Ok(Some(job)) => {
                tracing::info!(job = %job.id, org = %job.org_id, rows = job.total, done = job.done, "working a verification job");
                work(&state, &job).await;
            }
            Ok(None) => {
                let _ = tokio::time::timeout(IDLE_POLL, worker.bell.notified()).await;
            }
            Err(error) => {
                tracing::warn!(%error, "claiming a verification job failed; retrying later");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

async fn work(state: &AppState, job: &Job) {
    let name = &state.job_worker.name;
    let lost = Arc::new(AtomicBool::new(false));
    let renewal = tokio::spawn(renew(state.clone(), job.clone(), Arc::clone(&lost)));
    let ending = loop {
        if lost.load(Ordering::Relaxed) {
            break None;
        }
        // Cancelled since the last chunk: nothing more is charged.
        match state.database.job(job.org(), job.id).await {
            Ok(Some(now)) if now.status == JobState::Running => {}
            Ok(_) => break None,
            Err(error) => {
                tracing::warn!(job = %job.id, %error, "reading a job failed; retrying");
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        }
        let chunk = state.job_worker.settings.chunk;
        let rows = match state.database.unchecked_rows(job, chunk).await {
            Ok(rows) if rows.is_empty() => break Some(Ending::Done),
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(job = %job.id, %error, "reading a job's rows failed; retrying");
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        };
        let results = match state
            .verifications
            .check_rows(&state.database, job, rows)
            .await
        {
            Ok(results) => results,
            Err(VerifyError::QuotaExceeded { .. }) => break Some(Ending::Failed("quota_exceeded")),
            Err(VerifyError::Storage(error)) => {
                tracing::warn!(job = %job.id, %error, "checking a chunk failed; retrying");
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        };
        match state
            .database
            .record_rows(job, name, &results, OffsetDateTime::now_utc())
            .await
        {
            Ok(true) => {}
            // Cancelled, or the lease went to another node: it is theirs now.
            Ok(false) => break None,
            Err(error) => {
                tracing::warn!(job = %job.id, %error, "writing a chunk failed; retrying");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    };
    renewal.abort();
    if let Some(ending) = ending {
        match state
            .database
            .end_job(job, name, ending, OffsetDateTime::now_utc())
            .await
        {
            Ok(()) => tracing::info!(job = %job.id, ?ending, "verification job ended"),
            Err(error) => tracing::warn!(job = %job.id, %error, "ending a job failed"),
        }
    }
}

/// Keeps the lease while the job is worked; says when it is lost.
async fn renew(state: AppState, job: Job, lost: Arc<AtomicBool>) {
    let settings = state.job_worker.settings;
    let mut every = tokio::time::interval(settings.renew_every);
    every.tick().await;
    loop {
        every.tick().await;
        let until = OffsetDateTime::now_utc() + settings.lease;
        match state
            .database
            .renew_lease(&job, &state.job_worker.name, until)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(error) => tracing::warn!(job = %job.id, %error, "renewing a job's lease failed"),
        }
    }
}
