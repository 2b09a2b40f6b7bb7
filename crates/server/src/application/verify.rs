//! Address verification as an organization asks for it: one address or a batch now, or a
//! bulk job for the workers, within the month's quota.

use mailroom_core::OrgId;
use mailroom_core::api_keys::Scope;
use mailroom_core::usage::Metric;
use mailroom_core::usage::month_of;
use mailroom_storage::jobs::{Admission, Job, NewJob};
use mailroom_storage::teams::Plan;
use mailroom_storage::verifications::{LogQuery, LoggedVerification};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::application::actor::Caller;
use crate::error::{Conflict, DomainError};
use crate::state::AppState;
use crate::verification::{Answer, Requester, VerifyError};

/// The longest input taken as an address: longer is no address by any standard.
const MAX_INPUT: usize = 1024;
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
    if let Some(why) = emails.iter().find_map(|email| unusable(email)) {
        return Err(DomainError::invalid(field, why));
    }
    state
        .verifications
        .check(&state.database, requester(caller), &emails, smtp)
        .await
        .map_err(|error| match error {
            VerifyError::QuotaExceeded { quota, used } => {
                DomainError::QuotaExceeded { quota, used }
            }
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
) -> Result<(Uuid, usize), DomainError> {
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
    let job = NewJob {
        id: Uuid::now_v7(),
        user_id: who.user_id,
        api_key_id: who.api_key_id,
        smtp,
        emails,
    };
    let admission = state
        .database
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
    state.job_worker.wake();
    Ok((job.id, job.emails.len()))
}

/// The organization's newest bulk jobs, `limit` of them.
pub async fn jobs(state: &AppState, caller: &Caller, limit: i64) -> Result<Vec<Job>, DomainError> {
    caller.require(Scope::Verify, false)?;
    Ok(state.database.jobs(caller.org_id(), limit).await?)
}

/// A page of the organization's verification log.
pub async fn log(
    state: &AppState,
    caller: &Caller,
    query: &LogQuery,
) -> Result<Vec<LoggedVerification>, DomainError> {
    caller.require(Scope::Verify, false)?;
    Ok(state
        .database
        .verification_log(caller.org_id(), query)
        .await?)
}

/// The organization's plan and the verifications it used in the period from `start`.
pub async fn usage(
    state: &AppState,
    org_id: OrgId,
    start: OffsetDateTime,
) -> Result<(Plan, i64), DomainError> {
    Ok(state
        .database
        .quota(org_id, Metric::Verifications, start)
        .await?)
}
