//! Address verification as an organization asks for it: one address or a batch now, or a
//! bulk job for the work queue, within the month's quota; and the work of a bulk job, as the
//! queue's runner asks for it.

use mailroom_core::api_keys::Scope;
use mailroom_core::usage::Metric;
use mailroom_core::usage::month_of;
use mailroom_core::{JobId, OrgId};
use mailroom_storage::StorageError;
use mailroom_storage::bulk_jobs::{Admission, BulkJob, Ending, JobState, NewBulkJob};
use mailroom_storage::queue::{ClaimedJob, JobKind};
use mailroom_storage::teams::Plan;
use mailroom_storage::verifications::{LogQuery, LoggedVerification};
use mailroom_verify::Verdict;
use time::OffsetDateTime;

use crate::application::actor::Caller;
use crate::error::{Conflict, DomainError};
use crate::state::AppState;
use crate::verification::{Answer, Requester, VerifyError};
use crate::work_queue::Lease;

/// The longest input taken as an address: longer is no address by any standard.
const MAX_INPUT: usize = 1024;
/// The most addresses checked by one request.
pub const MAX_BATCH: usize = 1000;
/// The most addresses a bulk job holds.
pub const MAX_ROWS: usize = 100_000;

pub async fn check(
    state: &AppState,
    caller: &Caller,
    emails: Vec<String>,
    smtp: bool,
    field: &'static str,
) -> Result<Vec<Answer>, DomainError> {
    caller.require(Scope::Verify, false)?;
    if emails.is_empty() || emails.len() > MAX_BATCH {
        return Err(DomainError::invalid(
            field,
            format!("{field} must hold 1 to {MAX_BATCH} addresses"),
        ));
    }
    if let Some(why) = emails.iter().find_map(|email| unusable(email)) {
        return Err(DomainError::invalid(field, why));
    }
    state
        .verifications
        .check(&state.database, requester(caller), &emails, smtp)
        .await
        .map_err(|error| match error {
            VerifyError::QuotaExceeded { quota, used } => DomainError::QuotaExceeded {
                metric: mailroom_core::usage::Metric::Verifications,
                quota,
                used,
            },
            VerifyError::Storage(error) => DomainError::internal(error),
        })
}

/// Why `email` is refused before it is even checked: it is no address by any standard, and
/// it would reach the log and the ledger as it is.
fn unusable(email: &str) -> Option<String> {
    if email.len() > MAX_INPUT {
        Some(format!("an address may be at most {MAX_INPUT} bytes"))
    } else if email.chars().any(char::is_control) {
        Some("an address may not contain control characters".to_owned())
    } else {
        None
    }
}

fn requester(caller: &Caller) -> Requester {
    match caller {
        Caller::Account(principal) => Requester {
            org_id: principal.user.org_id,
            user_id: Some(principal.user.id),
            api_key_id: None,
        },
        Caller::Key(key) => Requester {
            org_id: key.org_id,
            user_id: None,
            api_key_id: Some(key.key_id),
        },
    }
}

/// Checks an upload and queues it as a job for `caller`'s organization: its id and size.
pub async fn queue(
    state: &AppState,
    caller: &Caller,
    emails: Vec<String>,
    smtp: bool,
) -> Result<(JobId, usize), DomainError> {
    caller.require(Scope::Verify, false)?;
    if emails.is_empty() || emails.len() > MAX_ROWS {
        return Err(DomainError::InvalidUpload(format!(
            "a job holds 1 to {MAX_ROWS} addresses"
        )));
    }
    if let Some((row, why)) = emails
        .iter()
        .enumerate()
        .find_map(|(row, email)| unusable(email).map(|why| (row, why)))
    {
        return Err(DomainError::InvalidUpload(format!(
            "row {}: {why}",
            row + 1
        )));
    }
    let org_id = caller.org_id();
    let now = OffsetDateTime::now_utc();
    let who = requester(caller);
    let job = NewBulkJob {
        id: JobId::generate(),
        user_id: who.user_id,
        api_key_id: who.api_key_id,
        smtp,
        emails,
    };
    let admission = state
        .database
        .bulk_jobs()
        .create_job(org_id, &job, month_of(now).0, now)
        .await?;
    match admission {
        Admission::Queued => {}
        // Refused whole, so that an upload cannot store rows the quota will never check.
        Admission::QuotaExceeded { quota, committed } => {
            return Err(DomainError::JobOverQuota {
                quota,
                committed,
                requested: job.emails.len(),
            });
        }
        Admission::TooManyJobs { limit } => {
            return Err(DomainError::Conflict(Conflict::TooManyJobs { limit }));
        }
    }
    state.queue.wake(JobKind::BulkVerification);
    Ok((job.id, job.emails.len()))
}

/// Works the bulk job that `claim` of the queue holds, a chunk of rows at a time: charge,
/// check, then write the chunk's results and progress in one transaction, under the claim.
/// A runner that dies mid-job leaves its lease to run out; the next claim resumes at the
/// first unchecked row. The charges are keyed by job and address, so a chunk checked twice is
/// charged once. A failure is the queue's to try again; on the last try the job ends failed,
/// with what it checked.
pub async fn work_job(
    state: &AppState,
    claim: &ClaimedJob,
    lease: &Lease,
) -> Result<(), DomainError> {
    let database = &state.database;
    let Some(job) = database.bulk_jobs().start_bulk_job(claim).await? else {
        // Cancelled, or ended, since it was queued: nothing to do.
        return Ok(());
    };
    tracing::info!(job = %job.id, org = %job.org_id, rows = job.total, done = job.done, attempt = claim.attempt, "working a verification job");
    let ending = match work_chunks(state, claim, &job, lease).await {
        Ok(Some(ending)) => ending,
        // Cancelled, or its claim went to another runner: it is theirs now.
        Ok(None) => return Ok(()),
        Err(error) if claim.attempt < claim.max_attempts => return Err(error.into()),
        Err(error) => {
            tracing::warn!(job = %job.id, %error, "a verification job failed its last try");
            database
                .bulk_jobs()
                .end_job(
                    &job,
                    claim,
                    Ending::Failed("internal_error"),
                    OffsetDateTime::now_utc(),
                )
                .await?;
            return Err(error.into());
        }
    };
    database
        .bulk_jobs()
        .end_job(&job, claim, ending, OffsetDateTime::now_utc())
        .await?;
    crate::application::webhooks::events_emitted(state);
    tracing::info!(job = %job.id, ?ending, "verification job ended");
    Ok(())
}

/// Checks the job's unchecked rows, chunk after chunk, until none is left (the job's
/// ending) or the job is no longer this claim's to work (`None`).
async fn work_chunks(
    state: &AppState,
    claim: &ClaimedJob,
    job: &BulkJob,
    lease: &Lease,
) -> Result<Option<Ending>, StorageError> {
    let database = &state.database;
    loop {
        if lease.is_lost() {
            return Ok(None);
        }
        // Cancelled since the last chunk: nothing more is charged.
        match database.bulk_jobs().job(job.org(), job.id).await? {
            Some(now) if now.status == JobState::Running => {}
            _ => return Ok(None),
        }
        let rows = database
            .bulk_jobs()
            .unchecked_rows(job, state.queue.settings.bulk_chunk)
            .await?;
        if rows.is_empty() {
            return Ok(Some(Ending::Done));
        }
        let results = match state.verifications.check_rows(database, job, rows).await {
            Ok(results) => results,
            Err(VerifyError::QuotaExceeded { .. }) => {
                return Ok(Some(Ending::Failed("quota_exceeded")));
            }
            Err(VerifyError::Storage(error)) => return Err(error),
        };
        if !database
            .bulk_jobs()
            .record_rows(job, claim, &results, OffsetDateTime::now_utc())
            .await?
        {
            return Ok(None);
        }
    }
}

/// One of the organization's bulk jobs.
pub async fn job(state: &AppState, caller: &Caller, id: JobId) -> Result<BulkJob, DomainError> {
    caller.require(Scope::Verify, false)?;
    state
        .database
        .bulk_jobs()
        .job(caller.org_id(), id)
        .await?
        .ok_or(DomainError::NotFound)
}

/// Cancels one of the organization's bulk jobs that has not ended: it charges nothing more,
/// and the rows checked so far stay.
pub async fn cancel_job(state: &AppState, caller: &Caller, id: JobId) -> Result<(), DomainError> {
    let job = job(state, caller, id).await?;
    let now = OffsetDateTime::now_utc();
    if state
        .database
        .bulk_jobs()
        .cancel_job(job.org(), id, now)
        .await?
    {
        Ok(())
    } else {
        Err(DomainError::Conflict(Conflict::JobEnded {
            status: job.status,
        }))
    }
}

/// A page of `job`'s rows in upload order after row `after`: each row's input and its
/// result as JSON, `None` while unchecked. The job was found for its caller first.
pub async fn job_results(
    state: &AppState,
    job: &BulkJob,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, String, Option<String>)>, DomainError> {
    Ok(state
        .database
        .bulk_jobs()
        .job_results(job.org(), job.id, after, limit)
        .await?)
}

/// The organization's newest bulk jobs, `limit` of them.
pub async fn jobs(
    state: &AppState,
    caller: &Caller,
    limit: i64,
) -> Result<Vec<BulkJob>, DomainError> {
    caller.require(Scope::Verify, false)?;
    Ok(state
        .database
        .bulk_jobs()
        .jobs(caller.org_id(), limit)
        .await?)
}

/// A page of the organization's verification log.
pub async fn log(
    state: &AppState,
    caller: &Caller,
    query: &LogQuery,
) -> Result<Vec<LoggedVerification>, DomainError> {
    caller.require(Scope::Verify, false)?;
    if let Some(verdict) = &query.verdict
        && Verdict::parse(verdict).is_none()
    {
        return Err(DomainError::invalid(
            "verdict",
            "verdict must be deliverable, undeliverable, risky or unknown",
        ));
    }
    Ok(state
        .database
        .verifications()
        .verification_log(caller.org_id(), query)
        .await?)
}

/// The organization's plan and how much of `metric` it used in the period from `start`.
pub async fn usage(
    state: &AppState,
    org_id: OrgId,
    metric: Metric,
    start: OffsetDateTime,
) -> Result<(Plan, i64), DomainError> {
    Ok(state.database.usage().quota(org_id, metric, start).await?)
}
