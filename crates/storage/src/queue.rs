//! The durable work queue (migration 0038): every background job, of every kind, in one table.
//! A job is enqueued (inside the transaction of the change that causes it, where there is
//! one: the outbox pattern), claimed by one runner under a lease, renewed while it runs, and
//! finished as done, or failed: queued again after a backoff, or dead after its last attempt.
//! Every time compared is the database's clock, never a node's.

use std::time::Duration;

use futures::FutureExt;
use mailroom_core::{JobId, OrgId};
use mailroom_crypto::envelope::Binding;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::tx::{Inner, Tenancy};
use crate::{Database, StorageError, Tx, on_backend};

/// What a job does. Each kind has its own retry policy and payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Mail of the platform's own to a person: a code, an alert, an invitation.
    SystemMail,
    /// An organization's bulk verification job ([`crate::bulk_jobs`]), of the same id.
    BulkVerification,
    /// A message an organization sends ([`crate::emails`]), of the same id.
    SendEmail,
    /// An event told to one of an organization's webhook endpoints ([`crate::webhooks`]).
    DeliverWebhook,
}

impl JobKind {
    pub const ALL: [JobKind; 4] = [
        JobKind::SystemMail,
        JobKind::BulkVerification,
        JobKind::SendEmail,
        JobKind::DeliverWebhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::SystemMail => "system_mail",
            JobKind::BulkVerification => "bulk_verification",
            JobKind::SendEmail => "send_email",
            JobKind::DeliverWebhook => "deliver_webhook",
        }
    }

    pub fn parse(text: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// Whether its payloads hold secrets (a code, a link's token): then they are sealed at
    /// rest under the keyring, bound to their job, and a payload that does not open — one
    /// not sealed by a holder of the keyring, for this job — is never run.
    pub fn sealed(self) -> bool {
        match self {
            JobKind::SystemMail => true,
            // Its payload is empty: the job is its id (the message is sealed in its row).
            // Ids only: the event and the endpoint's secret are in their rows.
            JobKind::BulkVerification | JobKind::SendEmail | JobKind::DeliverWebhook => false,
        }
    }

    /// How many times a job of this kind is tried, and how long it waits between tries.
    pub fn retry_policy(self) -> RetryPolicy {
        match self {
            // Eight tries span about ten minutes: longer than a code lives (five), and a relay
            // down for longer is an operator's alarm (`mailroom_jobs_dead`), not a retry's.
            JobKind::SystemMail => RetryPolicy {
                max_attempts: 8,
                first_backoff: Duration::from_secs(5),
                max_backoff: Duration::from_secs(300),
            },
            // A job resumes at its first unchecked row, so a try is never wasted; every node
            // killed under it (a deploy, say) costs one, hence many.
            JobKind::BulkVerification => RetryPolicy {
                max_attempts: 20,
                first_backoff: Duration::from_secs(5),
                max_backoff: Duration::from_secs(300),
            },
            // A message is tried for about three days: a minute, doubling to an hour, then
            // hourly (as mail servers queue), before it fails.
            JobKind::SendEmail => RetryPolicy {
                max_attempts: 78,
                first_backoff: Duration::from_secs(60),
                max_backoff: Duration::from_secs(3600),
            },
            // An event is tried for about a day: five seconds, doubling to an hour, then
            // hourly (the delivery gives up on an event older than a day whatever the count).
            JobKind::DeliverWebhook => RetryPolicy {
                max_attempts: 34,
                first_backoff: Duration::from_secs(5),
                max_backoff: Duration::from_secs(3600),
            },
        }
    }
}

/// How a kind's failed jobs are tried again: exponential backoff with jitter, up to a cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1 for the first): the first backoff, doubled
    /// for each attempt since, capped, and spread by half either way so that jobs that failed
    /// together are not tried together.
    pub fn backoff(self, attempt: u32) -> Duration {
        use rand::Rng;
        let doubled = self
            .first_backoff
            .saturating_mul(1_u32 << attempt.saturating_sub(1).min(20));
        doubled
            .min(self.max_backoff)
            .mul_f64(rand::rng().random_range(0.5..1.5))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Dead,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Done,
        JobStatus::Dead,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Dead => "dead",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<JobStatus> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub id: JobId,
    /// The organization it works for; `None` for the platform's own.
    pub org_id: Option<OrgId>,
    pub kind: JobKind,
    pub payload: Vec<u8>,
    /// Enqueueing another job under the same key (for the same organization) does nothing.
    pub idempotency_key: Option<String>,
    /// How long after now it is due.
    pub delay: Duration,
}

/// A job ready to be written inside another operation's transaction: its payload sealed
/// already (sealing may add a data key, which takes a transaction of its own).
#[derive(Clone, Debug)]
pub struct PreparedJob {
    job: NewJob,
    stored: Vec<u8>,
}

impl PreparedJob {
    /// A job of a kind whose payload is not sealed, as it is stored.
    pub(crate) fn unsealed(job: NewJob) -> Result<PreparedJob, StorageError> {
        if job.kind.sealed() {
            return Err(StorageError::Internal(
                "a sealed kind's payload left unsealed",
            ));
        }
        let stored = job.payload.clone();
        Ok(PreparedJob { job, stored })
    }
}

/// A job claimed by one runner, until its lease runs out.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub id: JobId,
    pub org_id: Option<OrgId>,
    pub kind: JobKind,
    /// Opened, when it was sealed.
    pub payload: Vec<u8>,
    /// This is attempt `attempt` of `max_attempts`.
    pub attempt: u32,
    pub max_attempts: u32,
    lease_holder: String,
}

impl ClaimedJob {
    /// This claim, as a record the job's own rows may be fenced with: another claim of the
    /// same job (after this one's lease ran out) is another attempt, so another fence.
    pub(crate) fn fence(&self) -> String {
        format!("{}#{}", self.lease_holder, self.attempt)
    }
}

/// A job as `mailroom jobs list` shows it: never its payload.
#[derive(Clone, Debug)]
pub struct JobSummary {
    pub id: JobId,
    pub org_id: Option<OrgId>,
    pub kind: String,
    pub status: JobStatus,
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at: OffsetDateTime,
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
}

/// The queue by kind, for `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindDepth {
    pub kind: JobKind,
    pub queued: i64,
    pub running: i64,
    pub dead: i64,
    /// Attempts made by the jobs not yet finished.
    pub attempts: i64,
    /// How long the oldest due job has waited, by the database's clock (ms).
    pub oldest_due_ms: i64,
}

/// Which jobs to list.
#[derive(Clone, Copy, Debug, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub kind: Option<JobKind>,
    pub limit: i64,
}

/// The database's clock, in milliseconds, as SQL of each backend.
pub(crate) fn now_sql(backend: crate::Backend) -> &'static str {
    match backend {
        crate::Backend::Postgres => "mailroom_now_ms()",
        crate::Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn binding(id: JobId) -> Binding<'static> {
    Binding {
        table: "jobs",
        column: "payload",
        row: id.as_uuid(),
    }
}

/// Sealed payloads of platform jobs go under the system scope's key; an organization's under
/// its own.
fn scope_of(org_id: Option<OrgId>) -> Uuid {
    org_id.map_or(Uuid::nil(), |org| org.as_uuid())
}

const SUMMARY_COLUMNS: &str =
    "id, org_id, kind, status, attempts, max_attempts, run_at, last_error, created_at";

type SummaryRow = (
    Uuid,
    Option<Uuid>,
    String,
    String,
    i32,
    i32,
    i64,
    Option<String>,
    i64,
);

fn summary(
    (id, org, kind, status, attempts, max, run_at, error, created): SummaryRow,
) -> JobSummary {
    JobSummary {
        id: JobId::from_uuid(id),
        org_id: org.map(OrgId::from_uuid),
        kind,
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Dead),
        attempts: u32::try_from(attempts).unwrap_or(0),
        max_attempts: u32::try_from(max).unwrap_or(0),
        run_at: crate::accounts::from_ms(run_at),
        last_error: error,
        created_at: crate::accounts::from_ms(created),
    }
}

/// The durable work queue. Reached through [`Database::queue`].
#[derive(Clone, Copy)]
pub struct Queue<'a> {
    pub(crate) db: &'a Database,
}

impl Queue<'_> {
    /// Seals the payload if it holds a secret, outside any transaction.
    pub async fn prepare_job(&self, job: NewJob) -> Result<PreparedJob, StorageError> {
        let stored = if job.kind.sealed() {
            let now = OffsetDateTime::now_utc();
            self.db
                .seal(scope_of(job.org_id), &binding(job.id), &job.payload, now)
                .await?
        } else {
            job.payload.clone()
        };
        Ok(PreparedJob { job, stored })
    }

    /// Enqueues a job on its own; false when its idempotency key was taken.
    pub async fn enqueue(&self, job: NewJob) -> Result<bool, StorageError> {
        let prepared = self.prepare_job(job).await?;
        self.db
            .serializable(|tx| {
                let prepared = prepared.clone();
                async move { enqueue_in(tx, &prepared).await }.boxed()
            })
            .await
    }

    /// Claims a job of `kinds` that is due — queued and due, or running under a lease that ran
    /// out — for `holder`, under a lease of `lease` from now by the database's clock: of the
    /// organizations with the fewest jobs of its kind under way, the one due longest, so that
    /// one organization's backlog does not starve the others'. A job whose lease ran out on
    /// its last attempt is dead instead.
    pub async fn claim_next_job(
        &self,
        holder: &str,
        kinds: &[JobKind],
        lease: Duration,
    ) -> Result<Option<ClaimedJob>, StorageError> {
        let runner = Tenancy::JobQueue(self.db.upkeep()?);
        let holder = holder.to_owned();
        let kinds: Vec<&'static str> = kinds.iter().map(|kind| kind.as_str()).collect();
        let claimed = self.db
            .serializable_for(&runner, |tx| {
                let (holder, kinds) = (holder.clone(), kinds.clone());
                async move {
                    let now = now_sql(tx.backend());
                    let (lock, same_org) = match &tx.0 {
                        Inner::Postgres(_) => (" FOR UPDATE OF due SKIP LOCKED", "IS NOT DISTINCT FROM"),
                        Inner::Sqlite(_) => ("", "IS"),
                    };
                    // `kinds` are the `as_str` of kinds, never input; placeholders follow the
                    // two of the claim.
                    let listed = (0..kinds.len())
                        .map(|n| format!("${}", n + 3))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let expire = format!(
                        "UPDATE jobs SET status = 'dead', finished_at = {now}, lease_holder = NULL, \
                         last_error = 'its lease ran out on its last attempt' \
                         WHERE status = 'running' AND lease_until <= {now} AND attempts >= max_attempts"
                    );
                    // Each organization's jobs under way are counted once, not once a due job:
                    // a backlog of thousands is sorted, not thousands of counts.
                    let claim = format!(
                        "UPDATE jobs SET status = 'running', attempts = attempts + 1, \
                         lease_holder = $1, lease_until = {now} + $2 \
                         WHERE id = (SELECT due.id FROM jobs due LEFT JOIN \
                         (SELECT org_id, kind, COUNT(*) AS n FROM jobs WHERE status = 'running' \
                         AND lease_until > {now} GROUP BY org_id, kind) busy \
                         ON busy.org_id {same_org} due.org_id AND busy.kind = due.kind \
                         WHERE due.kind IN ({listed}) \
                         AND ((due.status = 'queued' AND due.run_at <= {now}) \
                         OR (due.status = 'running' AND due.lease_until <= {now})) \
                         ORDER BY COALESCE(busy.n, 0), due.run_at, due.id LIMIT 1{lock}) \
                         RETURNING id, org_id, kind, payload, attempts, max_attempts"
                    );
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(&expire).execute(&mut **tx).await?;
                        let mut query = sqlx::query_as::<_, (Uuid, Option<Uuid>, String, Vec<u8>, i32, i32)>(&claim)
                            .bind(holder.as_str())
                            .bind(millis(lease));
                        for kind in &kinds {
                            query = query.bind(*kind);
                        }
                        query.fetch_optional(&mut **tx).await?
                    }))
                }
                .boxed()
            })
            .await?;
        let Some((id, org, kind, stored, attempts, max)) = claimed else {
            return Ok(None);
        };
        let (id, org_id) = (JobId::from_uuid(id), org.map(OrgId::from_uuid));
        let kind = JobKind::parse(&kind).ok_or(StorageError::Internal("a job of no known kind"))?;
        let mut job = ClaimedJob {
            id,
            org_id,
            kind,
            payload: Vec::new(),
            attempt: u32::try_from(attempts).unwrap_or(0),
            max_attempts: u32::try_from(max).unwrap_or(0),
            lease_holder: holder,
        };
        job.payload = if kind.sealed() {
            match self.db.open(scope_of(org_id), &binding(id), &stored).await {
                Ok(opened) => opened.to_vec(),
                Err(StorageError::Undecryptable) => {
                    // Forged, or moved from another job: never run.
                    self.held_job_update(&job, Held::Bury("its payload does not open"))
                        .await?;
                    return Err(StorageError::Undecryptable);
                }
                Err(error) => return Err(error),
            }
        } else {
            stored
        };
        Ok(Some(job))
    }

    /// Extends the lease of a job still held; false when it was lost (ran out and taken by
    /// another runner, or cancelled).
    pub async fn renew_job_lease(
        &self,
        job: &ClaimedJob,
        lease: Duration,
    ) -> Result<bool, StorageError> {
        self.held_job_update(job, Held::Renew(lease)).await
    }

    /// The job is done; false when its lease was lost first.
    pub async fn complete_job(&self, job: &ClaimedJob) -> Result<bool, StorageError> {
        self.held_job_update(job, Held::Done).await
    }

    /// The attempt failed with `error`: the job is queued again after `backoff`, or dead when
    /// that was its last attempt. False when its lease was lost first.
    pub async fn fail_job(
        &self,
        job: &ClaimedJob,
        error: &str,
        backoff: Duration,
    ) -> Result<bool, StorageError> {
        self.held_job_update(job, Held::Failed { error, backoff })
            .await
    }

    /// The job could not run yet (a limit it must wait for): it is due again after `delay`,
    /// and the attempt does not count. False when its lease was lost first.
    pub async fn postpone_job(
        &self,
        job: &ClaimedJob,
        why: &str,
        delay: Duration,
    ) -> Result<bool, StorageError> {
        self.held_job_update(job, Held::Postponed { why, delay })
            .await
    }

    async fn held_job_update(
        &self,
        job: &ClaimedJob,
        update: Held<'_>,
    ) -> Result<bool, StorageError> {
        let runner = Tenancy::JobQueue(self.db.upkeep()?);
        let now = now_sql(self.db.backend());
        // $1..$3 fence the update to this runner's claim of this attempt (`HELD`).
        let (sql, value, error) = match update {
            Held::Renew(lease) => (
                format!("UPDATE jobs SET lease_until = {now} + $4 WHERE {HELD}"),
                Some(millis(lease)),
                None,
            ),
            Held::Done => (
                format!(
                    "UPDATE jobs SET status = 'done', finished_at = {now}, lease_holder = NULL, \
                     lease_until = NULL WHERE {HELD}"
                ),
                None,
                None,
            ),
            Held::Failed { error, backoff } => (
                format!(
                    "UPDATE jobs SET last_error = $5, lease_holder = NULL, lease_until = NULL, \
                     status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
                     finished_at = CASE WHEN attempts >= max_attempts THEN {now} END, \
                     run_at = {now} + $4 WHERE {HELD}"
                ),
                Some(millis(backoff)),
                Some(error.to_owned()),
            ),
            Held::Postponed { why, delay } => (
                format!(
                    "UPDATE jobs SET status = 'queued', attempts = attempts - 1, last_error = $5, \
                     lease_holder = NULL, lease_until = NULL, run_at = {now} + $4 WHERE {HELD}"
                ),
                Some(millis(delay)),
                Some(why.to_owned()),
            ),
            Held::Bury(why) => (
                format!(
                    "UPDATE jobs SET status = 'dead', last_error = $4, finished_at = {now}, \
                     lease_holder = NULL, lease_until = NULL WHERE {HELD}"
                ),
                None,
                Some(why.to_owned()),
            ),
        };
        let (id, holder, attempt) = (job.id.as_uuid(), job.lease_holder.clone(), job.attempt);
        self.db
            .serializable_for(&runner, |tx| {
                let (sql, holder, error) = (sql.clone(), holder.clone(), error.clone());
                async move {
                    let done = on_backend!(&mut tx.0, Inner, tx => {
                        let mut query = sqlx::query(&sql)
                            .bind(id)
                            .bind(holder.as_str())
                            .bind(i64::from(attempt));
                        if let Some(value) = value {
                            query = query.bind(value);
                        }
                        if let Some(error) = error {
                            query = query.bind(error);
                        }
                        query.execute(&mut **tx).await?.rows_affected()
                    });
                    Ok(done == 1)
                }
                .boxed()
            })
            .await
    }

    /// The jobs `filter` asks for, newest first, without their payloads.
    pub async fn list_jobs(&self, filter: JobFilter) -> Result<Vec<JobSummary>, StorageError> {
        let upkeep = self.db.upkeep()?;
        let rows: Vec<SummaryRow> = self
            .db
            .transaction_for(&Tenancy::JobQueue(upkeep), |tx| {
                async move {
                    let sql = format!(
                        "SELECT {SUMMARY_COLUMNS} FROM jobs \
                         WHERE ($1 = '' OR status = $1) AND ($2 = '' OR kind = $2) \
                         ORDER BY created_at DESC, id DESC LIMIT $3"
                    );
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&sql)
                            .bind(filter.status.map_or("", JobStatus::as_str))
                            .bind(filter.kind.map_or("", JobKind::as_str))
                            .bind(filter.limit.clamp(1, 1000))
                            .fetch_all(&mut **tx)
                            .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(rows.into_iter().map(summary).collect())
    }

    /// A dead or cancelled job, queued again with its attempts afresh; false when there is no
    /// such job in either state. A bulk verification job that failed of our failure is opened
    /// again for its organization in the same transaction, to resume where it stopped; one its
    /// organization cancelled stays cancelled.
    pub async fn retry_job(&self, id: JobId) -> Result<bool, StorageError> {
        self.job_by_operator(id, BulkFollows::Reopen, |now| {
            format!(
                "UPDATE jobs SET status = 'queued', attempts = 0, run_at = {now}, finished_at = NULL \
                 WHERE id = $1 AND status IN ('dead', 'cancelled') RETURNING kind, org_id"
            )
        })
        .await
    }

    /// A queued or running job, never to run (again); false when there is no such job in
    /// either state. A runner holding it loses its lease and its outcome with it. A bulk
    /// verification job is cancelled for its organization too, in the same transaction, as
    /// its own cancel does.
    pub async fn cancel_job_by_id(&self, id: JobId) -> Result<bool, StorageError> {
        let set = cancelled(self.db.backend());
        self.job_by_operator(id, BulkFollows::Cancel, |_| {
            format!(
                "UPDATE jobs SET {set} WHERE id = $1 AND status IN ('queued', 'running') \
                 RETURNING kind, org_id"
            )
        })
        .await
    }

    /// The dead jobs of `kind`, with the organization each worked for.
    pub(crate) async fn dead_jobs(
        &self,
        kind: JobKind,
    ) -> Result<Vec<(JobId, Option<OrgId>)>, StorageError> {
        let runner = Tenancy::JobQueue(self.db.upkeep()?);
        let rows: Vec<(Uuid, Option<Uuid>)> = self
            .db
            .transaction_for(&runner, |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as("SELECT id, org_id FROM jobs WHERE kind = $1 AND status = 'dead'")
                            .bind(kind.as_str())
                            .fetch_all(&mut **tx)
                            .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, org)| (JobId::from_uuid(id), org.map(OrgId::from_uuid)))
            .collect())
    }

    async fn job_by_operator(
        &self,
        id: JobId,
        bulk: BulkFollows,
        sql: impl Fn(&'static str) -> String,
    ) -> Result<bool, StorageError> {
        let runner = Tenancy::JobQueue(self.db.upkeep()?);
        let sql = sql(now_sql(self.db.backend()));
        self.db
            .serializable_for(&runner, |tx| {
                let sql = sql.clone();
                async move {
                    let changed: Option<(String, Option<Uuid>)> = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&sql).bind(id.as_uuid()).fetch_optional(&mut **tx).await?
                    });
                    let Some((kind, org)) = changed else {
                        return Ok(false);
                    };
                    if let (Some(JobKind::BulkVerification), Some(org)) = (JobKind::parse(&kind), org) {
                        // As its organization too, for the rest of this transaction.
                        let org = OrgId::from_uuid(org);
                        tx.act_for(&Tenancy::Org(org)).await?;
                        let now = OffsetDateTime::now_utc();
                        match bulk {
                            BulkFollows::Cancel => {
                                crate::bulk_jobs::cancel_in(tx, org, id, now).await?;
                            }
                            BulkFollows::Reopen => crate::bulk_jobs::reopen_in(tx, org, id).await?,
                        }
                    }
                    Ok(true)
                }
                .boxed()
            })
            .await
    }

    /// Deletes the jobs done or cancelled more than `finished_for` ago, and the dead ones
    /// more than `dead_for` ago, by the database's clock; returns how many. A done job's
    /// payload is of no use to anyone, and may have held a code.
    pub async fn purge_finished_jobs(
        &self,
        finished_for: Duration,
        dead_for: Duration,
    ) -> Result<u64, StorageError> {
        let runner = Tenancy::JobQueue(self.db.upkeep()?);
        let now = now_sql(self.db.backend());
        let sql = format!(
            "DELETE FROM jobs WHERE (status IN ('done', 'cancelled') AND finished_at <= {now} - $1) \
             OR (status = 'dead' AND finished_at <= {now} - $2)"
        );
        self.db
            .serializable_for(&runner, |tx| {
                let sql = sql.clone();
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(&sql)
                            .bind(millis(finished_for))
                            .bind(millis(dead_for))
                            .execute(&mut **tx)
                            .await?
                            .rows_affected()
                    }))
                }
                .boxed()
            })
            .await
    }

    /// The queue's depth by kind: what `/metrics` shows.
    pub async fn job_depths(&self) -> Result<Vec<KindDepth>, StorageError> {
        let upkeep = self.db.upkeep()?;
        let rows: Vec<(String, i64, i64, i64, i64, Option<i64>)> = self.db
            .transaction_for(&Tenancy::JobQueue(upkeep), |tx| {
                async move {
                    let now = now_sql(tx.backend());
                    let sql = format!(
                        "SELECT kind, \
                         COALESCE(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0), \
                         COALESCE(SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END), 0), \
                         COALESCE(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END), 0), \
                         COALESCE(SUM(CASE WHEN status IN ('queued', 'running') THEN attempts ELSE 0 END), 0), \
                         MAX(CASE WHEN status = 'queued' AND run_at <= {now} THEN {now} - run_at END) \
                         FROM jobs GROUP BY kind ORDER BY kind"
                    );
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&sql).fetch_all(&mut **tx).await?
                    }))
                }
                .boxed()
            })
            .await?;
        // Kinds this build does not know (a newer node's) are not its to count.
        Ok(rows
            .into_iter()
            .filter_map(|(kind, queued, running, dead, attempts, oldest)| {
                Some(KindDepth {
                    kind: JobKind::parse(&kind)?,
                    queued,
                    running,
                    dead,
                    attempts,
                    oldest_due_ms: oldest.unwrap_or(0),
                })
            })
            .collect())
    }
}

/// What an operator's change of a bulk verification job does to the job itself.
#[derive(Clone, Copy)]
enum BulkFollows {
    Cancel,
    Reopen,
}

/// What a runner does to the job it holds.
enum Held<'a> {
    Renew(Duration),
    Done,
    Failed {
        error: &'a str,
        backoff: Duration,
    },
    /// Dead at once, never to be tried again.
    Bury(&'static str),
    /// Not tried: due again after `delay`, the attempt given back.
    Postponed {
        why: &'a str,
        delay: Duration,
    },
}

/// Cancels, inside `tx` (acting for `org_id`), that organization's job `id` if it is queued
/// or running: a runner holding it loses its lease and its outcome with it.
pub(crate) async fn cancel_in(tx: &mut Tx, org_id: OrgId, id: JobId) -> Result<(), StorageError> {
    let sql = format!(
        "UPDATE jobs SET {} WHERE org_id = $1 AND id = $2 AND status IN ('queued', 'running')",
        cancelled(tx.backend())
    );
    on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(&sql)
            .bind(org_id.as_uuid())
            .bind(id.as_uuid())
            .execute(&mut **tx)
            .await?;
    });
    Ok(())
}

/// What a cancelled job's row becomes, as the SET of an UPDATE.
fn cancelled(backend: crate::Backend) -> String {
    let now = now_sql(backend);
    format!("status = 'cancelled', finished_at = {now}, lease_holder = NULL, lease_until = NULL")
}

/// The fence of every update by a runner: the job is still running under this runner's claim
/// of this attempt.
const HELD: &str = "id = $1 AND status = 'running' AND lease_holder = $2 AND attempts = $3";

/// Writes a prepared job inside `tx` (acting for its organization, if it has one); false
/// when its idempotency key was taken.
pub(crate) async fn enqueue_in(tx: &mut Tx, prepared: &PreparedJob) -> Result<bool, StorageError> {
    let job = &prepared.job;
    if let Some(org) = job.org_id {
        tx.act_for(&Tenancy::Org(org)).await?;
    }
    let now = now_sql(tx.backend());
    let policy = job.kind.retry_policy();
    // No RETURNING: a platform job is not the enqueuer's to read back.
    let sql = format!(
        "INSERT INTO jobs (id, org_id, kind, payload, idempotency_key, status, run_at, attempts, \
         max_attempts, created_at) VALUES ($1, $2, $3, $4, $5, 'queued', {now} + $6, 0, $7, {now}) \
         ON CONFLICT DO NOTHING"
    );
    let inserted = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(&sql)
            .bind(job.id.as_uuid())
            .bind(job.org_id.map(|org| org.as_uuid()))
            .bind(job.kind.as_str())
            .bind(prepared.stored.as_slice())
            .bind(job.idempotency_key.as_deref())
            .bind(millis(job.delay))
            .bind(i64::from(policy.max_attempts))
            .execute(&mut **tx)
            .await?
            .rows_affected()
    });
    Ok(inserted == 1)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mailroom_testkit::both_backends;

    use super::*;
    use crate::test_support::{org, unlocked};

    const LEASE: Duration = Duration::from_secs(60);
    const KINDS: &[JobKind] = &[JobKind::SystemMail];

    fn mail(payload: &str) -> NewJob {
        NewJob {
            id: JobId::generate(),
            org_id: None,
            kind: JobKind::SystemMail,
            payload: payload.as_bytes().to_vec(),
            idempotency_key: None,
            delay: Duration::ZERO,
        }
    }

    async fn claim(db: &Database, holder: &str, lease: Duration) -> Option<ClaimedJob> {
        db.queue()
            .claim_next_job(holder, KINDS, lease)
            .await
            .unwrap()
    }

    /// The stored payload of a job, as the database holds it.
    async fn stored(db: &Database, id: JobId) -> Vec<u8> {
        let upkeep = db.upkeep().unwrap();
        db.transaction_for(&Tenancy::JobQueue(upkeep), |tx| {
            async move {
                Ok(on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query_scalar("SELECT payload FROM jobs WHERE id = $1")
                        .bind(id.as_uuid()).fetch_one(&mut **tx).await?
                }))
            }
            .boxed()
        })
        .await
        .unwrap()
    }

    both_backends! {
        async fn a_job_is_claimed_once_run_and_done_its_secret_sealed_at_rest(test_db) {
            let db = Arc::new(unlocked(&test_db).await);
            let job = mail("the code is 123456");
            let id = job.id;
            assert!(db.queue().enqueue(job).await.unwrap());
            assert!(!String::from_utf8_lossy(&stored(&db, id).await).contains("123456"));
            // Racing runners: one gets it.
            let racers: Vec<_> = (0..8)
                .map(|n| {
                    let db = Arc::clone(&db);
                    tokio::spawn(async move { claim(&db, &format!("node-{n}"), LEASE).await })
                })
                .collect();
            let mut claimed = Vec::new();
            for racer in racers {
                claimed.extend(racer.await.unwrap());
            }
            let [job] = <[ClaimedJob; 1]>::try_from(claimed).unwrap();
            assert_eq!((job.id, job.attempt, job.max_attempts), (id, 1, 8));
            assert_eq!(job.payload, b"the code is 123456");
            assert!(db.queue().renew_job_lease(&job, LEASE).await.unwrap());
            assert!(db.queue().complete_job(&job).await.unwrap());
            assert!(claim(&db, "node-9", LEASE).await.is_none());
            let listed = db.queue().list_jobs(JobFilter { limit: 10, ..JobFilter::default() }).await.unwrap();
            assert_eq!((listed[0].id, listed[0].status), (id, JobStatus::Done));
        }

        async fn a_lease_that_ran_out_passes_the_job_on_and_fences_its_old_holder(test_db) {
            let db = unlocked(&test_db).await;
            assert!(db.queue().enqueue(mail("x")).await.unwrap());
            // A lease of nothing has run out at once, by the database's clock.
            let first = claim(&db, "slow-node", Duration::ZERO).await.unwrap();
            let second = claim(&db, "live-node", LEASE).await.unwrap();
            assert_eq!((second.id, second.attempt), (first.id, 2));
            assert!(!db.queue().complete_job(&first).await.unwrap(), "the old holder is fenced out");
            assert!(!db.queue().renew_job_lease(&first, LEASE).await.unwrap());
            // A live lease is not taken over, whatever a node's clock says.
            assert!(claim(&db, "fast-clock-node", LEASE).await.is_none());
            assert!(db.queue().complete_job(&second).await.unwrap());
        }

        async fn a_failed_job_is_tried_again_then_dead_and_visible(test_db) {
            let db = unlocked(&test_db).await;
            assert!(db.queue().enqueue(mail("x")).await.unwrap());
            for attempt in 1..=8 {
                let job = claim(&db, "node", LEASE).await.unwrap();
                assert_eq!(job.attempt, attempt);
                assert!(db.queue().fail_job(&job, "the relay said no", Duration::ZERO).await.unwrap());
            }
            assert!(claim(&db, "node", LEASE).await.is_none(), "dead after its last attempt");
            let dead = db.queue().list_jobs(JobFilter { status: Some(JobStatus::Dead), limit: 10, ..JobFilter::default() }).await.unwrap();
            assert_eq!(dead.len(), 1);
            assert_eq!(dead[0].last_error.as_deref(), Some("the relay said no"));
            let depths = db.queue().job_depths().await.unwrap();
            assert_eq!((depths[0].kind.as_str(), depths[0].dead, depths[0].queued), ("system_mail", 1, 0));
            // The operator tries it again; a backoff keeps a failed job back until due.
            assert!(db.queue().retry_job(dead[0].id).await.unwrap());
            let job = claim(&db, "node", LEASE).await.unwrap();
            assert_eq!(job.attempt, 1);
            assert!(db.queue().fail_job(&job, "again", Duration::from_secs(3600)).await.unwrap());
            assert!(claim(&db, "node", LEASE).await.is_none(), "not due for an hour");
            assert!(db.queue().cancel_job_by_id(job.id).await.unwrap());
            assert!(!db.queue().cancel_job_by_id(job.id).await.unwrap());
            // Finished jobs are kept a while, then go.
            let day = Duration::from_secs(86_400);
            assert_eq!(db.queue().purge_finished_jobs(day, day).await.unwrap(), 0);
            assert_eq!(db.queue().purge_finished_jobs(Duration::ZERO, day).await.unwrap(), 1, "the cancelled one");
            assert_eq!(db.queue().list_jobs(JobFilter { limit: 10, ..JobFilter::default() }).await.unwrap().len(), 0);
        }

        async fn one_idempotency_key_makes_one_job_per_organization(test_db) {
            let db = unlocked(&test_db).await;
            let (a, b) = (org(&db).await, org(&db).await);
            let keyed = |org_id| NewJob {
                org_id: Some(org_id),
                idempotency_key: Some("invite:1".into()),
                ..mail("x")
            };
            assert!(db.queue().enqueue(keyed(a)).await.unwrap());
            assert!(!db.queue().enqueue(keyed(a)).await.unwrap());
            assert!(db.queue().enqueue(keyed(b)).await.unwrap(), "another organization's key");
            let platform = || NewJob { idempotency_key: Some("invite:1".into()), ..mail("x") };
            assert!(db.queue().enqueue(platform()).await.unwrap());
            assert!(!db.queue().enqueue(platform()).await.unwrap());
            let all = db.queue().list_jobs(JobFilter { limit: 10, ..JobFilter::default() }).await.unwrap();
            assert_eq!(all.len(), 3);
        }

        async fn a_payload_sealed_for_another_job_is_never_run(test_db) {
            let db = unlocked(&test_db).await;
            let (real, forged) = (mail("real"), mail("forged"));
            let (real_id, forged_id) = (real.id, forged.id);
            assert!(db.queue().enqueue(real).await.unwrap());
            assert!(db.queue().enqueue(forged).await.unwrap());
            // The forged job's payload is swapped for the real one's, sealed for another row.
            let payload = stored(&db, real_id).await;
            let upkeep = db.upkeep().unwrap();
            db.transaction_for(&Tenancy::JobQueue(upkeep), |tx| {
                async move {
                    on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query("UPDATE jobs SET payload = $1, run_at = 0 WHERE id = $2")
                            .bind(payload).bind(forged_id.as_uuid()).execute(&mut **tx).await?;
                    });
                    Ok(())
                }
                .boxed()
            })
            .await
            .unwrap();
            assert!(matches!(db.queue().claim_next_job("node", KINDS, LEASE).await, Err(StorageError::Undecryptable)));
            let dead = db.queue().list_jobs(JobFilter { status: Some(JobStatus::Dead), limit: 10, ..JobFilter::default() }).await.unwrap();
            assert_eq!(dead[0].id, forged_id);
            assert_eq!(claim(&db, "node", LEASE).await.unwrap().id, real_id);
        }
    }

    both_backends! {
        async fn an_invitations_mail_is_queued_with_it_or_not_at_all(test_db) {
            use crate::teams::NewInvitation;
            use mailroom_core::org::OrgRole;
            let db = unlocked(&test_db).await;
            let now = OffsetDateTime::now_utc();
            let inviter = crate::test_support::account(&db, "inviter@example.test", now).await;
            let event = crate::test_support::event(inviter.org_id, mailroom_core::audit::Action::InvitationCreated);
            let invitation = NewInvitation {
                id: mailroom_core::InvitationId::generate(),
                email: "guest@example.test".into(),
                role: OrgRole::Member,
                token_hash: vec![7; 32],
                invited_by: inviter.id,
                expires_at: now + time::Duration::days(1),
            };
            let first = db.queue().prepare_job(mail("the link")).await.unwrap();
            db.teams().create_invitation(inviter.org_id, &invitation, Some(&first), &event, now).await.unwrap();
            let queued = claim(&db, "node", LEASE).await.unwrap();
            assert_eq!(queued.payload, b"the link");
            // The same invitation again fails whole: no second mail.
            let again = db.queue().prepare_job(mail("the link, twice")).await.unwrap();
            assert!(db.teams().create_invitation(inviter.org_id, &invitation, Some(&again), &event, now).await.is_err());
            assert!(claim(&db, "node", LEASE).await.is_none());
        }
    }

    both_backends! {
        async fn a_codes_mail_is_queued_only_with_a_code_issued(test_db) {
            use mailroom_core::accounts::CodePurpose;
            let db = unlocked(&test_db).await;
            let now = OffsetDateTime::now_utc();
            let address = mailroom_core::EmailAddress::parse("reset@example.test").unwrap();
            let mut issued = 0;
            // Five codes an hour an address: the sixth is not issued, and not mailed.
            for n in 0..6 {
                let mail = db.queue().prepare_job(mail(&format!("code {n}"))).await.unwrap();
                let expires = now + time::Duration::minutes(15);
                let code = [n; 32];
                issued += usize::from(db.accounts().save_code(CodePurpose::PasswordReset, &address, &code, expires, Some(&mail), now).await.unwrap());
            }
            assert_eq!(issued, 5);
            let queued = db.queue().list_jobs(JobFilter { limit: 10, ..JobFilter::default() }).await.unwrap();
            assert_eq!(queued.len(), 5);
        }

        async fn a_new_devices_alert_is_queued_with_its_sign_in_and_only_for_a_new_device(test_db) {
            use mailroom_core::SessionId;
            use mailroom_core::audit::Action;
            use crate::accounts::{NewDevice, NewSession};
            let db = unlocked(&test_db).await;
            let now = OffsetDateTime::now_utc();
            let user = crate::test_support::account(&db, "devices@example.test", now).await;
            let signed_in = mailroom_core::audit::AuditEvent {
                actor: Some(user.id),
                ..crate::test_support::event(user.org_id, Action::SigninSucceeded)
            };
            // Twice from one device, then from another: two alerts, each with its sign-in.
            let mut new_devices = Vec::new();
            for (n, ip) in ["192.0.2.1", "192.0.2.1", "198.51.100.7"].into_iter().enumerate() {
                let session = NewSession {
                    id: SessionId::generate(),
                    token_hash: format!("session {n}").into_bytes(),
                    ip: ip.into(),
                    user_agent: Some("Firefox".into()),
                    expires_at: now + time::Duration::days(30),
                };
                let alert = db.queue().prepare_job(mail(&format!("alert {n}"))).await.unwrap();
                let NewDevice(new) = db.accounts().create_session(user.id, &session, &signed_in, Some(&alert), now).await.unwrap();
                new_devices.push(new);
            }
            assert_eq!(new_devices, [true, false, true]);
            let queued = db.queue().list_jobs(JobFilter { limit: 10, ..JobFilter::default() }).await.unwrap();
            assert_eq!(queued.len(), 2, "one alert per new device");
        }

        async fn a_locks_alert_is_queued_with_the_lock_it_describes(test_db) {
            use crate::lockout::LockAlert;
            let db = unlocked(&test_db).await;
            let now = OffsetDateTime::now_utc();
            let address = mailroom_core::EmailAddress::parse("locked@example.test").unwrap();
            let first = now + mailroom_core::accounts::lockout_duration(0);
            // An alert for another lock than the one made is not queued: the caller mails after.
            let wrong = LockAlert { until: first + time::Duration::seconds(1), mail: db.queue().prepare_job(mail("wrong")).await.unwrap() };
            let lock = db.lockout().lock_address(&address, Some(&wrong), now).await.unwrap();
            assert!(lock.just_now && !lock.alert_queued && lock.until == first);
            // Once it has ended, the next lock is longer, and its alert goes with it.
            let later = first + time::Duration::seconds(1);
            let second = later + mailroom_core::accounts::lockout_duration(1);
            let right = LockAlert { until: second, mail: db.queue().prepare_job(mail("right")).await.unwrap() };
            let lock = db.lockout().lock_address(&address, Some(&right), later).await.unwrap();
            assert!(lock.just_now && lock.alert_queued && lock.until == second);
            // Already locked: nothing made now, nothing queued.
            let again = LockAlert { until: second, mail: db.queue().prepare_job(mail("again")).await.unwrap() };
            let lock = db.lockout().lock_address(&address, Some(&again), later).await.unwrap();
            assert!(!lock.just_now && !lock.alert_queued);
            let queued = db.queue().list_jobs(JobFilter { limit: 10, ..JobFilter::default() }).await.unwrap();
            assert_eq!(queued.len(), 1);
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_spread_by_half() {
        let policy = JobKind::SystemMail.retry_policy();
        for (attempt, middle) in [(1, 5), (2, 10), (3, 20), (10, 300)] {
            let wait = policy.backoff(attempt).as_secs_f64();
            let middle = f64::from(middle);
            assert!(
                wait >= middle * 0.5 && wait <= middle * 1.5,
                "{attempt}: {wait}"
            );
        }
    }
}
