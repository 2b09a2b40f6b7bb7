//! Bulk verification jobs as stored: a job and its rows in upload order. A bulk job runs on
//! the work queue ([`crate::queue`]) as a job of kind [`JobKind::BulkVerification`] with the
//! same id, enqueued in the transaction that stores it; the queue claims, leases and retries
//! it. Checked rows point at their result in the verification log; a chunk of results, the
//! rows' pointers and the job's counters are written in one transaction, and only under the
//! queue's claim that started the job last (`worker`, its fence) — so a row is never lost (an
//! unchecked row is found again after a crash) nor written twice (a runner whose claim was
//! taken over writes nothing).

use futures::FutureExt;
use mailroom_core::usage::Metric;
use mailroom_core::webhook::EventType;
use mailroom_core::{ApiKeyId, JobId, OrgId, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::accounts::{from_ms, ms};
use crate::queue::{ClaimedJob, JobKind, PreparedJob};
use crate::tx::{Inner, Tenancy};
use crate::verifications::NewVerification;
use crate::{Database, StorageError, on_backend};

/// Rows per INSERT when a job is created: well under either backend's bound-value limit.
const INSERT_BATCH: usize = 1000;

pub struct NewBulkJob {
    pub id: JobId,
    pub user_id: Option<UserId>,
    pub api_key_id: Option<ApiKeyId>,
    pub smtp: bool,
    pub emails: Vec<String>,
}

/// Where a bulk job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// The state a stored value names; only this crate writes them, so another is a failed job.
    fn stored(value: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == value)
            .unwrap_or(JobState::Failed)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug)]
pub struct BulkJob {
    pub id: JobId,
    pub org_id: Uuid,
    pub user_id: Option<Uuid>,
    pub api_key_id: Option<ApiKeyId>,
    pub status: JobState,
    pub error: Option<String>,
    pub smtp: bool,
    pub total: i64,
    pub done: i64,
    pub deliverable: i64,
    pub undeliverable: i64,
    pub risky: i64,
    pub unknown: i64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

impl BulkJob {
    pub fn org(&self) -> OrgId {
        OrgId::from_uuid(self.org_id)
    }

    pub fn created_at(&self) -> OffsetDateTime {
        from_ms(self.created_at)
    }

    pub fn finished_at(&self) -> Option<OffsetDateTime> {
        self.finished_at.map(from_ms)
    }

    /// Whether the job will still change.
    pub fn is_open(&self) -> bool {
        matches!(self.status, JobState::Queued | JobState::Running)
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    org_id: Uuid,
    user_id: Option<Uuid>,
    api_key_id: Option<Uuid>,
    status: String,
    error: Option<String>,
    smtp: bool,
    total: i64,
    done: i64,
    deliverable: i64,
    undeliverable: i64,
    risky: i64,
    unknown: i64,
    created_at: i64,
    finished_at: Option<i64>,
}

impl From<JobRow> for BulkJob {
    fn from(row: JobRow) -> Self {
        BulkJob {
            id: JobId::from_uuid(row.id),
            org_id: row.org_id,
            user_id: row.user_id,
            api_key_id: row.api_key_id.map(ApiKeyId::from),
            status: JobState::stored(&row.status),
            error: row.error,
            smtp: row.smtp,
            total: row.total,
            done: row.done,
            deliverable: row.deliverable,
            undeliverable: row.undeliverable,
            risky: row.risky,
            unknown: row.unknown,
            created_at: row.created_at,
            finished_at: row.finished_at,
        }
    }
}

const JOB_COLUMNS: &str = "id, org_id, user_id, api_key_id, status, error, smtp, total, done, deliverable, undeliverable, risky, unknown, \
     created_at, finished_at";

/// A row's result, to write.
pub struct RowResult {
    pub row_no: i64,
    pub verification: NewVerification,
}

/// Whether a job was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Queued,
    /// More rows than the month's quota has left, after what is used and what the
    /// organization's open jobs have yet to check; nothing was stored.
    QuotaExceeded {
        quota: i64,
        committed: i64,
    },
    /// The organization already has as many jobs queued or running as its plan allows.
    TooManyJobs {
        limit: i32,
    },
}

/// How a job ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Done,
    Failed(&'static str),
}

/// Bulk verification jobs and their rows. Reached through [`Database::bulk_jobs`].
#[derive(Clone, Copy)]
pub struct BulkJobs<'a> {
    pub(crate) db: &'a Database,
}

impl BulkJobs<'_> {
    /// Stores a job and all its rows, and enqueues it on the work queue, or nothing: nothing
    /// when the organization has as many jobs open as its plan allows, or when the job has
    /// more rows than the quota of the period starting at `period_start` has left once the
    /// organization's open jobs are checked (decided in the same serializable transaction, so
    /// racing uploads cannot together pass it).
    pub async fn create_job(
        &self,
        org_id: OrgId,
        job: &NewBulkJob,
        period_start: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Admission, StorageError> {
        let (id, user_id, api_key_id, smtp) = (job.id, job.user_id, job.api_key_id, job.smtp);
        let queued = PreparedJob::unsealed(crate::queue::NewJob {
            id,
            org_id: Some(org_id),
            kind: JobKind::BulkVerification,
            // The job is its id: its rows and state are here.
            payload: Vec::new(),
            idempotency_key: None,
            delay: std::time::Duration::ZERO,
        })?;
        // Shared, not copied, by each attempt of the transaction.
        let emails = std::sync::Arc::new(job.emails.clone());
        self.db.serializable_for(&Tenancy::Org(org_id), |tx| {
            let (emails, queued) = (std::sync::Arc::clone(&emails), queued.clone());
            async move {
            let total = i64::try_from(emails.len()).unwrap_or(i64::MAX);
            let (plan, used) =
                crate::usage::plan_and_use(tx, org_id, Metric::Verifications, period_start).await?;
            // PostgreSQL sums BIGINTs as NUMERIC: cast back.
            let (open, unchecked): (i64, i64) = on_backend!(&mut tx.0, Inner, tx => {
                sqlx::query_as(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(total - done), 0) AS BIGINT) FROM verify_jobs \
                     WHERE org_id = $1 AND status IN ('queued', 'running')",
                )
                .bind(org_id.as_uuid())
                .fetch_one(&mut **tx)
                .await?
            });
            if open >= i64::from(plan.max_open_jobs) {
                return Ok(Admission::TooManyJobs { limit: plan.max_open_jobs });
            }
            let quota = plan.quota_of(Metric::Verifications);
            let committed = used.saturating_add(unchecked);
            if committed.saturating_add(total) > quota {
                return Ok(Admission::QuotaExceeded { quota, committed });
            }
            on_backend!(&mut tx.0, Inner, tx => {
                sqlx::query(
                    "INSERT INTO verify_jobs (id, org_id, user_id, api_key_id, status, smtp, total, created_at) \
                     VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7)",
                )
                .bind(id.as_uuid())
                .bind(org_id.as_uuid())
                .bind(user_id.map(|id| id.as_uuid()))
                .bind(api_key_id.map(|id| id.as_uuid()))
                .bind(smtp)
                .bind(total)
                .bind(ms(now))
                .execute(&mut **tx)
                .await?;
                for (batch_no, batch) in emails.chunks(INSERT_BATCH).enumerate() {
                    let first = batch_no * INSERT_BATCH;
                    let mut insert = sqlx::QueryBuilder::new(
                        "INSERT INTO verify_job_rows (job_id, row_no, org_id, email) ",
                    );
                    insert.push_values(batch.iter().enumerate(), |mut row, (n, email)| {
                        row.push_bind(id.as_uuid())
                            .push_bind(i64::try_from(first + n).unwrap_or(i64::MAX))
                            .push_bind(org_id.as_uuid())
                            .push_bind(email);
                    });
                    insert.build().execute(&mut **tx).await?;
                }
            });
            crate::queue::enqueue_in(tx, &queued).await?;
            Ok(Admission::Queued)
            }
            .boxed()
        })
        .await
    }

    pub async fn job(&self, org_id: OrgId, id: JobId) -> Result<Option<BulkJob>, StorageError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM verify_jobs WHERE org_id = $1 AND id = $2");
        self.db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    let row: Option<JobRow> = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&sql)
                            .bind(org_id.as_uuid())
                            .bind(id.as_uuid())
                            .fetch_optional(&mut **tx)
                            .await?
                    });
                    Ok(row.map(BulkJob::from))
                }
                .boxed()
            })
            .await
    }

    /// The organization's newest jobs.
    pub async fn jobs(&self, org_id: OrgId, limit: i64) -> Result<Vec<BulkJob>, StorageError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM verify_jobs WHERE org_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        self.db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    let rows: Vec<JobRow> = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&sql)
                            .bind(org_id.as_uuid())
                            .bind(limit)
                            .fetch_all(&mut **tx)
                            .await?
                    });
                    Ok(rows.into_iter().map(BulkJob::from).collect())
                }
                .boxed()
            })
            .await
    }

    /// Cancels a job that has not ended, and its job on the queue with it; false when there
    /// is none such. A runner holding it loses its claim: it charges nothing more.
    pub async fn cancel_job(
        &self,
        org_id: OrgId,
        id: JobId,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        self.db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    let cancelled = cancel_in(tx, org_id, id, now).await?;
                    if cancelled {
                        crate::queue::cancel_in(tx, org_id, id).await?;
                    }
                    Ok(cancelled)
                }
                .boxed()
            })
            .await
    }

    /// Fails the open jobs whose job on the queue is dead (its lease ran out on its last
    /// attempt, or its last attempt failed before it could say so), each as its organization:
    /// an abandoned job would otherwise hold its organization's open-job slot and quota.
    /// Returns how many.
    pub async fn fail_abandoned(&self, now: OffsetDateTime) -> Result<u64, StorageError> {
        let dead = self.db.queue().dead_jobs(JobKind::BulkVerification).await?;
        let mut failed = 0;
        for (id, org_id) in dead {
            let Some(org_id) = org_id else { continue };
            failed += self
                .db
                .transaction_for(&Tenancy::Org(org_id), |tx| {
                    async move {
                        Ok(on_backend!(&mut tx.0, Inner, tx => {
                            sqlx::query(
                                "UPDATE verify_jobs SET status = 'failed', error = 'internal_error', \
                                 finished_at = $3, worker = NULL \
                                 WHERE org_id = $1 AND id = $2 AND status IN ('queued', 'running')",
                            )
                            .bind(org_id.as_uuid())
                            .bind(id.as_uuid())
                            .bind(ms(now))
                            .execute(&mut **tx)
                            .await?
                            .rows_affected()
                        }))
                    }
                    .boxed()
                })
                .await?;
        }
        Ok(failed)
    }

    /// Starts (or resumes) the bulk job that `claim` of the queue holds: it is running, and
    /// its rows are written only under this claim from now on. `None` when the job ended
    /// meanwhile (cancelled, say): there is nothing to do.
    pub async fn start_bulk_job(
        &self,
        claim: &ClaimedJob,
    ) -> Result<Option<BulkJob>, StorageError> {
        let org_id = claim
            .org_id
            .ok_or(StorageError::Internal("a bulk job of no organization"))?;
        let (id, fence) = (claim.id, claim.fence());
        let sql = format!(
            "UPDATE verify_jobs SET status = 'running', worker = $3 \
             WHERE org_id = $1 AND id = $2 AND status IN ('queued', 'running') RETURNING {JOB_COLUMNS}"
        );
        self.db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                let (sql, fence) = (sql.clone(), fence.clone());
                async move {
                    let row: Option<JobRow> = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&sql)
                            .bind(org_id.as_uuid())
                            .bind(id.as_uuid())
                            .bind(&fence)
                            .fetch_optional(&mut **tx)
                            .await?
                    });
                    Ok(row.map(BulkJob::from))
                }
                .boxed()
            })
            .await
    }

    /// The job's first unchecked rows, in order: `(row_no, email)`.
    pub async fn unchecked_rows(
        &self,
        job: &BulkJob,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, StorageError> {
        let (org_id, id) = (job.org(), job.id);
        self.db.transaction_for(&Tenancy::Org(org_id), |tx| {
            async move {
                Ok(on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query_as(
                        "SELECT row_no, email FROM verify_job_rows WHERE job_id = $1 AND org_id = $2 \
                         AND verification_id IS NULL ORDER BY row_no LIMIT $3",
                    )
                    .bind(id.as_uuid())
                    .bind(org_id.as_uuid())
                    .bind(limit)
                    .fetch_all(&mut **tx)
                    .await?
                }))
            }
            .boxed()
        })
        .await
    }

    /// Writes checked rows: their results into the log, the rows' pointers, the job's
    /// counters — all or nothing, and nothing unless `claim` is still the one the job runs
    /// under (a job cancelled while its runner checked a chunk still gets that chunk: it was
    /// charged). Returns whether it was written.
    pub async fn record_rows(
        &self,
        job: &BulkJob,
        claim: &ClaimedJob,
        rows: &[RowResult],
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let (org_id, id, fence) = (job.org(), job.id, claim.fence());
        let count = |verdict: &str| {
            i64::try_from(
                rows.iter()
                    .filter(|row| row.verification.verdict == verdict)
                    .count(),
            )
            .unwrap_or(0)
        };
        let counts = [
            i64::try_from(rows.len()).unwrap_or(0),
            count("deliverable"),
            count("undeliverable"),
            count("risky"),
            count("unknown"),
        ];
        let rows: Vec<(i64, NewVerification)> = rows
            .iter()
            .map(|row| (row.row_no, row.verification.clone()))
            .collect();
        // Retried as a whole on a conflict (a cancel of the same job, say): the chunk was
        // already probed and charged, and must not be thrown away.
        self.db.serializable_for(&Tenancy::Org(org_id), |tx| {
            let (rows, fence) = (rows.clone(), fence.clone());
            async move {
            let held = on_backend!(&mut tx.0, Inner, tx => {
                sqlx::query(
                    "UPDATE verify_jobs SET done = done + $4, deliverable = deliverable + $5, \
                     undeliverable = undeliverable + $6, risky = risky + $7, unknown = unknown + $8 \
                     WHERE org_id = $1 AND id = $2 AND worker = $3 AND status IN ('running', 'cancelled')",
                )
                .bind(org_id.as_uuid())
                .bind(id.as_uuid())
                .bind(&fence)
                .bind(counts[0])
                .bind(counts[1])
                .bind(counts[2])
                .bind(counts[3])
                .bind(counts[4])
                .execute(&mut **tx)
                .await?
                .rows_affected() == 1
            });
            if !held {
                return Ok(false);
            }
            let entries = rows.iter().map(|(_, verification)| (verification, now));
            crate::verifications::insert(tx, org_id, entries).await?;
            for batch in rows.chunks(crate::verifications::BATCH) {
                on_backend!(&mut tx.0, Inner, tx => {
                    let mut update = sqlx::QueryBuilder::new("WITH checked (row_no, verification_id) AS (");
                    update.push_values(batch, |mut pair, (row_no, verification)| {
                        pair.push_bind(*row_no).push_bind(verification.id.as_uuid());
                    });
                    update
                        .push(
                            ") UPDATE verify_job_rows SET verification_id = checked.verification_id FROM checked \
                             WHERE verify_job_rows.job_id = ",
                        )
                        .push_bind(id.as_uuid())
                        .push(" AND verify_job_rows.row_no = checked.row_no AND verify_job_rows.verification_id IS NULL");
                    update.build().execute(&mut **tx).await?;
                });
            }
            Ok::<bool, StorageError>(true)
            }
            .boxed()
        })
        .await
    }

    /// Ends the job that `claim` runs; nothing when another claim took it over.
    pub async fn end_job(
        &self,
        job: &BulkJob,
        claim: &ClaimedJob,
        ending: Ending,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let (org_id, id, fence) = (job.org(), job.id, claim.fence());
        let (status, error) = match ending {
            Ending::Done => (JobState::Done.as_str(), None),
            Ending::Failed(code) => (JobState::Failed.as_str(), Some(code)),
        };
        self.db.transaction_for(&Tenancy::Org(org_id), |tx| {
            async move {
                let ended = on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query(
                        "UPDATE verify_jobs SET status = $4, error = $5, finished_at = $6, worker = NULL \
                         WHERE org_id = $1 AND id = $2 AND worker = $3 AND status = 'running'",
                    )
                    .bind(org_id.as_uuid())
                    .bind(id.as_uuid())
                    .bind(&fence)
                    .bind(status)
                    .bind(error)
                    .bind(ms(now))
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
                }) == 1;
                if !ended {
                    return Ok(());
                }
                let event = EventType::VerifyJobCompleted;
                let endpoints = crate::webhooks::subscribers(tx, org_id, event).await?;
                if !endpoints.is_empty() {
                    let counts: (i64, i64, i64, i64, i64, i64) = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT total, done, deliverable, undeliverable, risky, unknown \
                             FROM verify_jobs WHERE org_id = $1 AND id = $2",
                        )
                        .bind(org_id.as_uuid())
                        .bind(id.as_uuid())
                        .fetch_one(&mut **tx)
                        .await?
                    });
                    let (total, done, deliverable, undeliverable, risky, unknown) = counts;
                    let data = serde_json::json!({
                        "job_id": id,
                        "status": status,
                        "error": error,
                        "total": total,
                        "checked": done,
                        "deliverable": deliverable,
                        "undeliverable": undeliverable,
                        "risky": risky,
                        "unknown": unknown,
                    });
                    crate::webhooks::emit_to(tx, org_id, event, &endpoints, data, now).await?;
                }
                Ok(())
            }
            .boxed()
        })
        .await
    }

    /// A page of the job's rows in upload order after `after` (a row number): each row's
    /// input and its result as JSON, `None` while unchecked.
    pub async fn job_results(
        &self,
        org_id: OrgId,
        id: JobId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Option<String>)>, StorageError> {
        self.db.transaction_for(&Tenancy::Org(org_id), |tx| {
            async move {
                Ok(on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query_as(
                        "SELECT r.row_no, r.email, v.result FROM verify_job_rows r \
                         LEFT JOIN verifications v ON v.id = r.verification_id AND v.org_id = r.org_id \
                         WHERE r.job_id = $1 AND r.org_id = $2 AND r.row_no > $3 ORDER BY r.row_no LIMIT $4",
                    )
                    .bind(id.as_uuid())
                    .bind(org_id.as_uuid())
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&mut **tx)
                    .await?
                }))
            }
            .boxed()
        })
        .await
    }

    /// Deletes jobs older than `before` with their rows, of every organization.
    pub async fn purge_jobs(&self, before: OffsetDateTime) -> Result<u64, StorageError> {
        self.db
            .verifications()
            .purge_older_than("verify_jobs", before)
            .await
    }

    /// Deletes the rows of every job that failed or was cancelled before `before`, each job's
    /// as its organization; the jobs stay, with their counts. Returns the rows deleted.
    pub async fn purge_ended_job_rows(
        &self,
        before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<u64, StorageError> {
        let jobs: Vec<(Uuid, Uuid)> = self.db
            .transaction_for(&Tenancy::PurgeEndedJobsBefore(ms(before)), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT id, org_id FROM verify_jobs WHERE status IN ('failed', 'cancelled') \
                             AND rows_purged_at IS NULL AND finished_at < $1",
                        )
                        .bind(ms(before))
                        .fetch_all(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        let mut deleted = 0;
        for (id, org) in jobs {
            let org_id = OrgId::from_uuid(org);
            deleted += self.db
                .serializable_for(&Tenancy::Org(org_id), |tx| {
                    async move {
                        Ok(on_backend!(&mut tx.0, Inner, tx => {
                            let rows = sqlx::query("DELETE FROM verify_job_rows WHERE job_id = $1 AND org_id = $2")
                                .bind(id)
                                .bind(org_id.as_uuid())
                                .execute(&mut **tx)
                                .await?
                                .rows_affected();
                            sqlx::query("UPDATE verify_jobs SET rows_purged_at = $1 WHERE id = $2 AND org_id = $3")
                                .bind(ms(now))
                                .bind(id)
                                .bind(org_id.as_uuid())
                                .execute(&mut **tx)
                                .await?;
                            rows
                        }))
                    }
                    .boxed()
                })
                .await?;
        }
        Ok(deleted)
    }
}

/// Cancels the job inside `tx` (acting for `org_id`); false when it had ended.
pub(crate) async fn cancel_in(
    tx: &mut crate::Tx,
    org_id: OrgId,
    id: JobId,
    now: OffsetDateTime,
) -> Result<bool, StorageError> {
    Ok(on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(
            "UPDATE verify_jobs SET status = 'cancelled', finished_at = $3 \
             WHERE org_id = $1 AND id = $2 AND status IN ('queued', 'running')",
        )
        .bind(org_id.as_uuid())
        .bind(id.as_uuid())
        .bind(ms(now))
        .execute(&mut **tx)
        .await?
        .rows_affected()
            == 1
    }))
}

/// Opens again, inside `tx` (acting for `org_id`), a job that failed of our failure, to
/// resume at its first unchecked row.
pub(crate) async fn reopen_in(
    tx: &mut crate::Tx,
    org_id: OrgId,
    id: JobId,
) -> Result<(), StorageError> {
    on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(
            "UPDATE verify_jobs SET status = 'queued', error = NULL, finished_at = NULL \
             WHERE org_id = $1 AND id = $2 AND status = 'failed' AND error = 'internal_error'",
        )
        .bind(org_id.as_uuid())
        .bind(id.as_uuid())
        .execute(&mut **tx)
        .await?;
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mailroom_testkit::both_backends;

    use super::*;
    use crate::queue::{JobFilter, JobStatus};
    use crate::test_support::org;

    const LEASE: Duration = Duration::from_secs(60);

    fn job_of(rows: usize) -> NewBulkJob {
        NewBulkJob {
            id: JobId::generate(),
            user_id: None,
            api_key_id: None,
            smtp: false,
            emails: (0..rows).map(|n| format!("a{n}@example.com")).collect(),
        }
    }

    async fn rows_of(db: &Database, org_id: OrgId) -> i64 {
        db.transaction_for(&Tenancy::Org(org_id), |tx| {
            async move {
                Ok(on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM verify_job_rows WHERE org_id = $1")
                        .bind(org_id.as_uuid()).fetch_one(&mut **tx).await?
                }))
            }
            .boxed()
        })
        .await
        .unwrap()
    }

    async fn queue(db: &Database, org_id: OrgId, at: OffsetDateTime) -> JobId {
        let job = job_of(1);
        let admitted = db
            .bulk_jobs()
            .create_job(org_id, &job, at, at)
            .await
            .unwrap();
        assert_eq!(admitted, Admission::Queued);
        job.id
    }

    async fn claim(db: &Database, holder: &str, lease: Duration) -> Option<ClaimedJob> {
        db.queue()
            .claim_next_job(holder, &[JobKind::BulkVerification], lease)
            .await
            .unwrap()
    }

    fn checked(row_no: i64) -> RowResult {
        RowResult {
            row_no,
            verification: NewVerification {
                id: mailroom_core::VerificationId::generate(),
                user_id: None,
                api_key_id: None,
                address: format!("a{row_no}@example.com"),
                verdict: "deliverable".to_owned(),
                cached: false,
                result: "{}".to_owned(),
            },
        }
    }

    both_backends! {
        async fn a_job_is_refused_whole_past_the_quota_or_the_open_job_cap(test_db) {
            let db = std::sync::Arc::new(crate::test_support::unlocked(&test_db).await);
            let org_id = org(&db).await;
            let now = OffsetDateTime::now_utc();
            // The free plan: 1,000 verifications a month, 5 jobs open at once.
            let refused = db.bulk_jobs().create_job(org_id, &job_of(1001), now, now).await.unwrap();
            assert_eq!(refused, Admission::QuotaExceeded { quota: 1000, committed: 0 });
            assert_eq!(rows_of(&db, org_id).await, 0, "nothing of a refused job is stored");
            let listed = db.queue().list_jobs(JobFilter { limit: 10, ..JobFilter::default() }).await.unwrap();
            assert!(listed.is_empty(), "nor queued");
            // Open jobs' unchecked rows count against what is left: ten racing uploads of 300
            // rows, three fit.
            let uploads: Vec<_> = (0..10)
                .map(|_| {
                    let db = std::sync::Arc::clone(&db);
                    tokio::spawn(async move { db.bulk_jobs().create_job(org_id, &job_of(300), now, now).await.unwrap() })
                })
                .collect();
            let mut queued = 0;
            for upload in uploads {
                match upload.await.unwrap() {
                    Admission::Queued => queued += 1,
                    Admission::QuotaExceeded { quota: 1000, committed } => assert!(committed >= 900),
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(queued, 3);
            assert_eq!(rows_of(&db, org_id).await, 900);
            let listed = db.queue().list_jobs(JobFilter { limit: 10, ..JobFilter::default() }).await.unwrap();
            assert_eq!(listed.len(), 3, "each stored job is queued with it");
            assert!(listed.iter().all(|job| job.kind == "bulk_verification" && job.org_id == Some(org_id)));
            db.bulk_jobs().create_job(org_id, &job_of(1), now, now).await.unwrap();
            assert_eq!(db.bulk_jobs().create_job(org_id, &job_of(1), now, now).await.unwrap(), Admission::Queued);
            assert_eq!(
                db.bulk_jobs().create_job(org_id, &job_of(1), now, now).await.unwrap(),
                Admission::TooManyJobs { limit: 5 }
            );
        }

        async fn the_rows_of_failed_and_cancelled_jobs_go_after_a_week(test_db) {
            let db = crate::test_support::unlocked(&test_db).await;
            let (a, b) = (org(&db).await, org(&db).await);
            let now = OffsetDateTime::now_utc();
            let long_ago = now - time::Duration::days(8);
            let cancelled = queue(&db, a, long_ago).await;
            assert!(db.bulk_jobs().cancel_job(a, cancelled, long_ago).await.unwrap());
            let recent = queue(&db, a, now).await;
            assert!(db.bulk_jobs().cancel_job(a, recent, now).await.unwrap());
            let open = queue(&db, b, long_ago).await;
            let deleted = db.bulk_jobs().purge_ended_job_rows(now - time::Duration::days(7), now).await.unwrap();
            assert_eq!(deleted, 1);
            assert_eq!(rows_of(&db, a).await, 1, "the recently cancelled job keeps its rows");
            assert_eq!(rows_of(&db, b).await, 1, "an open job keeps its rows");
            assert!(db.bulk_jobs().job(a, cancelled).await.unwrap().is_some(), "the job itself stays");
            assert!(db.bulk_jobs().job(b, open).await.unwrap().is_some());
            assert_eq!(db.bulk_jobs().purge_ended_job_rows(now - time::Duration::days(7), now).await.unwrap(), 0);
        }

        async fn an_organization_with_a_job_under_way_waits_behind_one_without(test_db) {
            let db = crate::test_support::unlocked(&test_db).await;
            let (a, b) = (org(&db).await, org(&db).await);
            let now = OffsetDateTime::now_utc();
            let first = queue(&db, a, now).await;
            let second = queue(&db, a, now).await;
            let other = queue(&db, b, now).await;
            let claimed = claim(&db, "node-1", LEASE).await.unwrap();
            assert_eq!(claimed.id, first, "the oldest first");
            let claimed = claim(&db, "node-2", LEASE).await.unwrap();
            assert_eq!(claimed.id, other, "then the organization with none under way");
            let claimed = claim(&db, "node-3", LEASE).await.unwrap();
            assert_eq!(claimed.id, second);
            // A job under a live lease is nobody else's.
            assert!(claim(&db, "node-4", LEASE).await.is_none());
        }

        async fn a_claim_taken_over_writes_nothing_and_a_cancel_ends_the_queued_job(test_db) {
            let db = crate::test_support::unlocked(&test_db).await;
            let a = org(&db).await;
            let now = OffsetDateTime::now_utc();
            let id = queue(&db, a, now).await;
            // A lease of nothing has run out at once, by the database's clock: a runner that
            // died mid-job.
            let dead = claim(&db, "dead-node", Duration::ZERO).await.unwrap();
            let job = db.bulk_jobs().start_bulk_job(&dead).await.unwrap().unwrap();
            assert_eq!((job.id, job.status), (id, JobState::Running));
            let live = claim(&db, "live-node", LEASE).await.unwrap();
            assert_eq!((live.id, live.attempt), (id, 2));
            let job = db.bulk_jobs().start_bulk_job(&live).await.unwrap().unwrap();
            assert!(!db.bulk_jobs().record_rows(&job, &dead, &[checked(0)], now).await.unwrap(), "the old claim is fenced out");
            assert!(db.bulk_jobs().record_rows(&job, &live, &[checked(0)], now).await.unwrap());
            assert_eq!(db.bulk_jobs().job(a, id).await.unwrap().unwrap().done, 1);
            assert!(db.bulk_jobs().unchecked_rows(&job, 10).await.unwrap().is_empty());

            // A cancel by the organization ends its job on the queue: the runner loses it.
            assert!(db.bulk_jobs().cancel_job(a, id, now).await.unwrap());
            assert!(!db.queue().renew_job_lease(&live, LEASE).await.unwrap());
            assert!(db.bulk_jobs().start_bulk_job(&live).await.unwrap().is_none());
            let listed = db.queue().list_jobs(JobFilter { limit: 10, ..JobFilter::default() }).await.unwrap();
            assert_eq!((listed[0].id, listed[0].status), (id, JobStatus::Cancelled));

            // An operator's cancel on the queue (`mailroom jobs cancel`) ends the bulk job too,
            // and a retry leaves a job its organization cancelled cancelled.
            let other = queue(&db, a, now).await;
            assert!(db.queue().cancel_job_by_id(other).await.unwrap());
            assert_eq!(db.bulk_jobs().job(a, other).await.unwrap().unwrap().status, JobState::Cancelled);
            assert!(db.queue().retry_job(other).await.unwrap());
            assert_eq!(db.bulk_jobs().job(a, other).await.unwrap().unwrap().status, JobState::Cancelled);
        }

        async fn a_job_whose_queued_job_died_fails_and_a_retry_resumes_it(test_db) {
            let db = crate::test_support::unlocked(&test_db).await;
            let a = org(&db).await;
            let now = OffsetDateTime::now_utc();
            let id = queue(&db, a, now).await;
            // Every attempt's lease runs out (a node killed each time): the last makes it dead.
            let attempts = JobKind::BulkVerification.retry_policy().max_attempts;
            for _ in 0..attempts {
                let claim = claim(&db, "dying-node", Duration::ZERO).await.unwrap();
                db.bulk_jobs().start_bulk_job(&claim).await.unwrap().unwrap();
            }
            assert!(claim(&db, "next-node", LEASE).await.is_none(), "dead, not claimed again");
            assert_eq!(db.bulk_jobs().job(a, id).await.unwrap().unwrap().status, JobState::Running);
            // The upkeep fails it, so that it holds no slot and no quota.
            assert_eq!(db.bulk_jobs().fail_abandoned(now).await.unwrap(), 1);
            let failed = db.bulk_jobs().job(a, id).await.unwrap().unwrap();
            assert_eq!((failed.status, failed.error.as_deref()), (JobState::Failed, Some("internal_error")));
            assert_eq!(db.bulk_jobs().fail_abandoned(now).await.unwrap(), 0);
            // An operator's retry opens it again, and a runner resumes it.
            assert!(db.queue().retry_job(id).await.unwrap());
            assert_eq!(db.bulk_jobs().job(a, id).await.unwrap().unwrap().status, JobState::Queued);
            let claim = claim(&db, "live-node", LEASE).await.unwrap();
            let resumed = db.bulk_jobs().start_bulk_job(&claim).await.unwrap().unwrap();
            assert_eq!(resumed.status, JobState::Running);
            assert!(db.bulk_jobs().record_rows(&resumed, &claim, &[checked(0)], now).await.unwrap());
        }
    }
}
