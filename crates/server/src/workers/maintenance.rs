//! Housekeeping that runs hourly for as long as the server runs, on every node (each step is
//! safe to run concurrently): the audit retention purge (docs/security.md#audit-retention: not optional, not per
//! tenant) and the verification log's, the rows of failed and cancelled jobs after 7 days,
//! data-key rotation and re-encryption (docs/security.md#data-key-rotation), expired sign-in challenges and trusted
//! devices, the failed-sign-in counters of addresses quiet for 30 days, the work queue's
//! finished jobs (a day; dead ones 30 days), webhook events and their deliveries after 30 days,
//! the spent states of expired sign-in flows, and
//! trimming the rate limiter.

use std::time::Duration;

use mailroom_core::audit::RETENTION;
use mailroom_storage::Database;
use mailroom_storage::lockout::QUIET_COUNTERS_KEPT;
use time::OffsetDateTime;

use crate::rate_limit::auth::AuthLimiter;

const INTERVAL: Duration = Duration::from_secs(60 * 60);
/// How long a queued job is kept once done or cancelled (for `mailroom jobs list`), and once
/// dead (for an operator to look into, or retry).
const FINISHED_JOBS_KEPT: Duration = Duration::from_secs(24 * 60 * 60);
const DEAD_JOBS_KEPT: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// How long the uploaded rows of a job that failed or was cancelled are kept: long enough to
/// download what was checked, not the 90 days a finished job's results are.
const ENDED_JOB_ROWS_KEPT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

pub async fn run_periodically(database: Database, limiter: AuthLimiter) {
    let mut every = tokio::time::interval(INTERVAL);
    loop {
        every.tick().await;
        limiter.forget_idle();
        let now = OffsetDateTime::now_utc();
        match database.audit().purge_audit(now - RETENTION).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged audit entries past retention"),
            Err(error) => tracing::warn!(%error, "audit purge failed; retrying later"),
        }
        // The verification log is kept as long as the audit log.
        match database
            .verifications()
            .purge_verifications(now - RETENTION)
            .await
        {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged verification log past retention"),
            Err(error) => tracing::warn!(%error, "verification log purge failed; retrying later"),
        }
        match database.bulk_jobs().fail_abandoned(now).await {
            Ok(0) => {}
            Ok(failed) => {
                tracing::warn!(failed, "verification jobs whose queued job died are failed")
            }
            Err(error) => {
                tracing::warn!(%error, "failing abandoned verification jobs failed; retrying later")
            }
        }
        match database.identities().purge_spent_states(now).await {
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "purging spent sign-in states failed; retrying later")
            }
        }
        match database.emails().purge_content(now - RETENTION).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "emptied the content of messages past retention"),
            Err(error) => tracing::warn!(%error, "message content purge failed; retrying later"),
        }
        match database
            .webhooks()
            .purge_events(now - mailroom_storage::webhooks::EVENTS_KEPT)
            .await
        {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged webhook events past 30 days"),
            Err(error) => tracing::warn!(%error, "webhook event purge failed; retrying later"),
        }
        match database.emails().purge_expired_keys(now).await {
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "purging expired idempotency keys failed; retrying later")
            }
        }
        match database.bulk_jobs().purge_jobs(now - RETENTION).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged verification jobs past retention"),
            Err(error) => tracing::warn!(%error, "verification job purge failed; retrying later"),
        }
        match database
            .bulk_jobs()
            .purge_ended_job_rows(now - ENDED_JOB_ROWS_KEPT, now)
            .await
        {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged the rows of failed and cancelled jobs"),
            Err(error) => tracing::warn!(%error, "purging ended jobs' rows failed; retrying later"),
        }
        match database
            .queue()
            .purge_finished_jobs(FINISHED_JOBS_KEPT, DEAD_JOBS_KEPT)
            .await
        {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged finished jobs of the work queue"),
            Err(error) => tracing::warn!(%error, "purging the work queue failed; retrying later"),
        }
        match database
            .lockout()
            .purge_login_failures(now - QUIET_COUNTERS_KEPT, now)
            .await
        {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "forgot the failed sign-ins of quiet addresses"),
            Err(error) => tracing::warn!(%error, "purging failed sign-ins failed; retrying later"),
        }
        if let Err(error) = database
            .two_factor()
            .purge_expired_second_factor_state(now)
            .await
        {
            tracing::warn!(%error, "purging expired sign-in challenges failed; retrying later");
        }
        match database.rotate_data_keys(now).await {
            Ok(0) => {}
            Ok(rotated) => tracing::info!(rotated, "data keys past their age succeeded"),
            Err(error) => tracing::warn!(%error, "data key rotation failed; retrying later"),
        }
        match database.reseal_old_values(now).await {
            Ok(0) => {}
            Ok(moved) => tracing::info!(moved, "values re-sealed under current data keys"),
            Err(error) => tracing::warn!(%error, "re-encryption failed; retrying later"),
        }
    }
}
