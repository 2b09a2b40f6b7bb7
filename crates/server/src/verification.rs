//! Verification as an organization buys it (VER-6, VER-7): dedup, the quota, the log. The
//! engine itself (`mailroom-verify`) knows none of this.
//!
//! A check of an address this organization had checked within the dedup window is answered
//! from the log, marked `cached` and not charged. Every other check is charged before any
//! network work, under an idempotency key made of the address and the day, so that racing
//! checks of one address — on this node or another — are charged once. On this node they also
//! share one run of the engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use mailroom_core::{OrgId, UserId};
use mailroom_storage::group_commit::{Claim, Claimed};
use mailroom_storage::jobs::{Job, RowResult};
use mailroom_storage::verifications::NewVerification;
use mailroom_storage::{Database, StorageError};
use mailroom_verify::{Mode, Options, Reason, Verification, Verifier, syntax};
use time::OffsetDateTime;
use uuid::Uuid;

/// VER-7's default dedup window.
pub const DEDUP_WINDOW: time::Duration = time::Duration::hours(24);

/// Who asks, for the log.
#[derive(Clone, Copy, Debug)]
pub struct Requester {
    pub org_id: OrgId,
    pub user_id: Option<UserId>,
    pub api_key_id: Option<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the organization's verification quota ({quota} a month) is used up")]
    QuotaExceeded { quota: i64, used: i64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

type Running = Shared<BoxFuture<'static, Option<Verification>>>;
type RunningTable = Arc<Mutex<HashMap<String, Running>>>;

pub struct Verifications {
    engine: Arc<Verifier>,
    running: RunningTable,
}

fn lock(table: &RunningTable) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One address of a request on its way to an answer.
struct Ask<'a> {
    email: &'a str,
    /// The normalized address, or the input when it does not parse: what dedup keys on.
    address: String,
    answer: Option<Verification>,
    /// Answered from the log, not by the engine.
    from_store: bool,
}

impl Verifications {
    pub fn new(engine: Verifier) -> Self {
        Verifications {
            engine: Arc::new(engine),
            running: Arc::default(),
        }
    }

    /// Verifies `emails` for `who` and logs each; the results come in the order asked.
    pub async fn check(
        &self,
        database: &Database,
        who: Requester,
        emails: &[String],
        smtp: bool,
    ) -> Result<Vec<Verification>, VerifyError> {
        let now = OffsetDateTime::now_utc();
        // The day, so that a key is reused only while dedup would have answered anyway.
        let day = now.unix_timestamp().div_euclid(86_400);
        let probe = if smtp { "smtp" } else { "dns" };
        let charge_key = |address: &str| format!("verify:{probe}:{day}:{address}");
        let answers = self
            .answer(database, who.org_id, emails, smtp, Mode::Sync, charge_key)
            .await?;
        let log: Vec<NewVerification> = answers
            .iter()
            .map(|(result, from_store)| log_entry(who, result, *from_store))
            .collect();
        database.record_verifications(who.org_id, log, now).await?;
        Ok(answers.into_iter().map(|(result, _)| result).collect())
    }

    /// Verifies a chunk of a bulk job's rows; the caller writes them, with the job's progress.
    /// A job's rows are charged under keys of the job, so that a chunk checked again after a
    /// crash is not charged again.
    pub async fn check_rows(
        &self,
        database: &Database,
        job: &Job,
        rows: Vec<(i64, String)>,
    ) -> Result<Vec<RowResult>, VerifyError> {
        let who = Requester {
            org_id: job.org(),
            user_id: job.user_id.map(UserId::from_uuid),
            api_key_id: job.api_key_id,
        };
        let charge_key = |address: &str| format!("job:{}:{address}", job.id);
        let (row_numbers, emails): (Vec<i64>, Vec<String>) = rows.into_iter().unzip();
        let answers = self
            .answer(
                database,
                who.org_id,
                &emails,
                job.smtp,
                Mode::Bulk,
                charge_key,
            )
            .await?;
        Ok(row_numbers
            .into_iter()
            .zip(answers)
            .map(|(row_no, (result, from_store))| RowResult {
                row_no,
                verification: log_entry(who, &result, from_store),
            })
            .collect())
    }

    /// Answers each address from an earlier result or, charged first, from the engine; says
    /// of each whether it came from the log.
    async fn answer(
        &self,
        database: &Database,
        org_id: OrgId,
        emails: &[String],
        smtp: bool,
        mode: Mode,
        charge_key: impl Fn(&str) -> String,
    ) -> Result<Vec<(Verification, bool)>, VerifyError> {
        let now = OffsetDateTime::now_utc();
        let mut asks: Vec<Ask> = emails
            .iter()
            .map(|email| Ask {
                email,
                address: syntax::parse(email)
                    .map(|address| address.normalized())
                    .unwrap_or_else(|_| email.clone()),
                answer: None,
                from_store: false,
            })
            .collect();

        let mut addresses: Vec<(String, String)> = asks
            .iter()
            .map(|ask| (ask.address.clone(), charge_key(&ask.address)))
            .collect();
        addresses.sort_unstable();
        addresses.dedup();
        let claim = Claim {
            org_id,
            addresses,
            since: now - DEDUP_WINDOW,
            answers: Arc::new(move |json| {
                serde_json::from_str::<Verification>(json)
                    // A result without the SMTP probe does not answer a request for one.
                    .is_ok_and(|result| !(smtp && result.reasons.contains(&Reason::SmtpNotChecked)))
            }),
            now,
        };
        let (earlier, fresh) = match database.claim(claim).await? {
            Claimed::Done { earlier, fresh } => (earlier, fresh),
            Claimed::QuotaExceeded { quota, used } => {
                return Err(VerifyError::QuotaExceeded { quota, used });
            }
        };
        for ask in &mut asks {
            if let Some(result) = earlier
                .get(&ask.address)
                .and_then(|json| serde_json::from_str::<Verification>(json).ok())
            {
                ask.from_store = true;
                ask.answer = Some(Verification {
                    email: ask.email.to_owned(),
                    cached: true,
                    ..result
                });
            }
        }
        let mut unanswered: Vec<String> = fresh.keys().cloned().collect();
        unanswered.sort_unstable();

        let options = Options { smtp, mode };
        let mut results: HashMap<&str, Verification> = HashMap::new();
        if let ([address], Mode::Sync) = (unanswered.as_slice(), mode) {
            let email = asks
                .iter()
                .find(|ask| &ask.address == address)
                .map_or(address.as_str(), |ask| ask.email);
            let key = format!("{}:{smtp}:{address}", org_id.as_uuid());
            results.insert(address, self.run_once(key, email.to_owned(), options).await);
        } else if !unanswered.is_empty() {
            let verified = self.engine.verify_many(&unanswered, options).await;
            results.extend(unanswered.iter().map(String::as_str).zip(verified));
        }
        for ask in &mut asks {
            if ask.answer.is_none()
                && let Some(result) = results.get(ask.address.as_str())
            {
                ask.answer = Some(Verification {
                    email: ask.email.to_owned(),
                    // Charged by another request: this one is a repeat of it.
                    cached: !fresh.get(&ask.address).copied().unwrap_or(false),
                    ..result.clone()
                });
            }
        }
        Ok(asks
            .into_iter()
            .filter_map(|ask| ask.answer.map(|answer| (answer, ask.from_store)))
            .collect())
    }

    /// Runs the engine for one address, or joins the run already under way for it. The run is
    /// a task of its own, which ends (and leaves the table) whether or not anyone still waits:
    /// a run whose callers all went away never lingers for a later caller to join.
    async fn run_once(&self, key: String, email: String, options: Options) -> Verification {
        let running = {
            let mut table = lock(&self.running);
            table
                .entry(key.clone())
                .or_insert_with(|| {
                    let (engine, table) = (Arc::clone(&self.engine), Arc::clone(&self.running));
                    let email = email.clone();
                    let run = tokio::spawn(async move {
                        let result = engine.verify(&email, options).await;
                        lock(&table).remove(&key);
                        result
                    });
                    async move { run.await.ok() }.boxed().shared()
                })
                .clone()
        };
        match running.await {
            Some(result) => result,
            // The task was lost (the runtime is shutting down): run here instead.
            None => self.engine.verify(&email, options).await,
        }
    }
}

/// The log's line for a result. Only an answer from the log is logged as cached: a result the
/// engine made is one dedup may give again, even when its charge was another request's.
fn log_entry(who: Requester, result: &Verification, from_store: bool) -> NewVerification {
    NewVerification {
        id: Uuid::now_v7(),
        user_id: who.user_id,
        api_key_id: who.api_key_id,
        address: result
            .normalized
            .clone()
            .unwrap_or_else(|| result.email.clone()),
        verdict: result.verdict.as_str().to_owned(),
        cached: from_store,
        result: serde_json::to_string(result).unwrap_or_default(),
    }
}
