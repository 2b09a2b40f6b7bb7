//! Verification as an organization buys it: dedup, the quota, the log. The
//! engine itself (`mailroom-verify`) knows none of this.
//!
//! A check of an address this organization had checked within the dedup window is answered
//! from the log, marked `cached` and not charged. Every other check is charged under an
//! idempotency key made of the address and the day, so that racing checks of one address — on
//! this node or another — are charged once; on this node, those with the SMTP probe also share
//! one run of the engine. A check that asks mail hosts (the SMTP probe) is charged before any
//! host is asked, so that no host hears from a check the log answers or the quota does not
//! cover, and logged after it; so is a bulk job's chunk, whose rows the job writes. A check
//! without the probe runs first, and is charged and logged in one transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use mailroom_core::{ApiKeyId, OrgId, UserId, VerificationId};
use mailroom_storage::bulk_jobs::{BulkJob, RowResult};
use mailroom_storage::group_commit::{Claim, Claimed};
use mailroom_storage::verifications::NewVerification;
use mailroom_storage::{Database, StorageError};
use mailroom_verify::{Mode, Options, Reason, Verification, Verifier, syntax};
use time::OffsetDateTime;

/// The default dedup window.
pub const DEDUP_WINDOW: time::Duration = time::Duration::hours(24);

/// Who asks, for the log.
#[derive(Clone, Copy, Debug)]
pub struct Requester {
    pub org_id: OrgId,
    pub user_id: Option<UserId>,
    pub api_key_id: Option<ApiKeyId>,
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

/// A check's answer, with its JSON as logged: the API sends those same bytes.
pub struct Answer {
    pub result: Verification,
    pub json: String,
}

/// One address of a request on its way to an answer.
struct Ask {
    email: String,
    /// The canonical address, or the input when it does not parse: what dedup keys on.
    address: String,
    /// The address as asked, normalized: an answer given for another spelling of the same
    /// mailbox still says this one.
    normalized: Option<String>,
}

/// A request's addresses, and what each check is charged under.
struct Asked {
    asks: Vec<Ask>,
    claim: Claim,
    options: Options,
}

impl Verifications {
    pub fn new(engine: Verifier) -> Self {
        Verifications {
            engine: Arc::new(engine),
            running: Arc::default(),
        }
    }

    /// Verifies `emails` for `who` and logs each; the answers come in the order asked.
    ///
    /// A check that asks mail hosts is charged before it runs and logged after. A check that
    /// does not (syntax, DNS and the lists, which answer from memory and caches) runs first,
    /// and is charged and logged in one transaction: all or none, and one wait for the
    /// database instead of two.
    pub async fn check(
        &self,
        database: &Database,
        who: Requester,
        emails: &[String],
        smtp: bool,
    ) -> Result<Vec<Answer>, VerifyError> {
        let now = OffsetDateTime::now_utc();
        // The day, so that a key is reused only while dedup would have answered anyway.
        let day = now.unix_timestamp().div_euclid(86_400);
        let probe = if smtp { "smtp" } else { "dns" };
        let charge_key = |address: &str| format!("verify:{probe}:{day}:{address}");
        let asked = asked(
            &self.engine,
            who.org_id,
            emails,
            smtp,
            Mode::Sync,
            charge_key,
            now,
        );
        if !smtp {
            return self.run_then_claim(database, who, asked).await;
        }
        let answers = self.claim_then_run(database, asked).await?;
        let lines = log_lines(who, &answers);
        let answers = as_logged(answers, &lines);
        database
            .record_verifications(who.org_id, lines, now)
            .await?;
        Ok(answers)
    }

    /// Verifies a chunk of a bulk job's rows; the caller writes them, with the job's progress.
    /// A job's rows are charged under keys of the job, so that a chunk checked again after a
    /// crash is not charged again.
    pub async fn check_rows(
        &self,
        database: &Database,
        job: &BulkJob,
        rows: Vec<(i64, String)>,
    ) -> Result<Vec<RowResult>, VerifyError> {
        let who = Requester {
            org_id: job.org(),
            user_id: job.user_id.map(UserId::from_uuid),
            api_key_id: job.api_key_id,
        };
        let charge_key = |address: &str| format!("job:{}:{address}", job.id);
        let (row_numbers, emails): (Vec<i64>, Vec<String>) = rows.into_iter().unzip();
        let now = OffsetDateTime::now_utc();
        let asked = asked(
            &self.engine,
            who.org_id,
            &emails,
            job.smtp,
            Mode::Bulk,
            charge_key,
            now,
        );
        let answers = self.claim_then_run(database, asked).await?;
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
    async fn claim_then_run(
        &self,
        database: &Database,
        asked: Asked,
    ) -> Result<Vec<(Verification, bool)>, VerifyError> {
        let org_id = asked.claim.org_id;
        let claimed = database.claim(asked.claim).await?;
        let decided = decided(&claimed)?;
        let unanswered = distinct(
            asked
                .asks
                .iter()
                .filter(|ask| decided.fresh.contains_key(&ask.address)),
        );
        let results = self.run(org_id, &unanswered, asked.options).await;
        Ok(assemble(&asked.asks, decided, &results))
    }

    /// Answers each address from the engine, then, in one transaction, from an earlier result
    /// where the log has one, charging and logging the rest.
    async fn run_then_claim(
        &self,
        database: &Database,
        who: Requester,
        mut asked: Asked,
    ) -> Result<Vec<Answer>, VerifyError> {
        let everything = distinct(asked.asks.iter());
        let results = Arc::new(self.run(who.org_id, &everything, asked.options).await);
        let asks = Arc::new(asked.asks);
        // The answers and lines of the usual outcome, every address charged by this claim, are
        // made here: the group commit's task runs every claim's rule in turn, and a rule that
        // only copies its lines keeps that task (which all requests wait on) short. The
        // answers' JSON is the lines'.
        let charged: HashMap<String, bool> =
            asks.iter().map(|ask| (ask.address.clone(), true)).collect();
        let earlier = HashMap::new();
        let decided_if_charged = Decided {
            earlier: &earlier,
            fresh: &charged,
        };
        let if_charged = assemble(&asks, decided_if_charged, &results);
        let lines_if_charged = Arc::new(log_lines(who, &if_charged));
        asked.claim.log = Some(Arc::new({
            let (asks, results) = (Arc::clone(&asks), Arc::clone(&results));
            let lines_if_charged = Arc::clone(&lines_if_charged);
            move |claimed| match decided(claimed) {
                Ok(decided) if decided.all_charged_here() => lines_if_charged.to_vec(),
                Ok(decided) => log_lines(who, &assemble(&asks, decided, &results)),
                Err(_) => Vec::new(),
            }
        }));
        let claimed = database.claim(asked.claim).await?;
        let decided = decided(&claimed)?;
        if decided.all_charged_here() {
            return Ok(as_logged(if_charged, &lines_if_charged));
        }
        Ok(assemble(&asks, decided, &results)
            .into_iter()
            .map(|(result, _)| Answer {
                json: to_json(&result),
                result,
            })
            .collect())
    }

    /// The engine's results for `asks` (each a distinct address).
    async fn run(
        &self,
        org_id: OrgId,
        asks: &[&Ask],
        options: Options,
    ) -> HashMap<String, Verification> {
        match (asks, options.mode) {
            ([], _) => HashMap::new(),
            // Without the probe a run asks nothing of anyone that a cache would not answer:
            // racing runs cost less than sharing one (a task, its table and its wake-ups).
            ([ask], Mode::Sync) if !options.smtp => {
                let result = self.engine.verify(&ask.email, options).await;
                HashMap::from([(ask.address.clone(), result)])
            }
            ([ask], Mode::Sync) => {
                // Only runs with the probe are shared (see the arm above).
                let key = format!("{}:{}", org_id.as_uuid(), ask.address);
                let result = self.run_once(key, ask.email.clone(), options).await;
                HashMap::from([(ask.address.clone(), result)])
            }
            _ => {
                let emails: Vec<String> = asks.iter().map(|ask| ask.email.clone()).collect();
                let verified = self.engine.verify_many(&emails, options).await;
                asks.iter()
                    .map(|ask| ask.address.clone())
                    .zip(verified)
                    .collect()
            }
        }
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

/// `emails` as asks, and their claim: each distinct address, with the key its charge goes
/// under. An address is known by its canonical form, so that the spellings of one mailbox
/// (`A.B+x@googlemail.com`, `ab@gmail.com`) are checked and charged once.
fn asked(
    engine: &Verifier,
    org_id: OrgId,
    emails: &[String],
    smtp: bool,
    mode: Mode,
    charge_key: impl Fn(&str) -> String,
    now: OffsetDateTime,
) -> Asked {
    let asks: Vec<Ask> = emails
        .iter()
        .map(|email| match syntax::parse(email) {
            Ok(address) => Ask {
                email: email.clone(),
                address: engine.canonical(&address),
                normalized: Some(address.normalized()),
            },
            Err(_) => Ask {
                email: email.clone(),
                address: email.clone(),
                normalized: None,
            },
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
        log: None,
    };
    Asked {
        asks,
        claim,
        options: Options { smtp, mode },
    }
}

/// One ask of each address.
fn distinct<'a>(asks: impl Iterator<Item = &'a Ask>) -> Vec<&'a Ask> {
    let mut distinct: Vec<&Ask> = asks.collect();
    // Stable: the first ask of an address is the one run.
    distinct.sort_by(|a, b| a.address.cmp(&b.address));
    distinct.dedup_by(|a, b| a.address == b.address);
    distinct
}

/// What a claim that charged decided (see [`Claimed::Done`]).
#[derive(Clone, Copy)]
struct Decided<'c> {
    /// The addresses answered from the log, with the logged result (JSON).
    earlier: &'c HashMap<String, String>,
    /// The addresses charged: by this claim (true) or before it.
    fresh: &'c HashMap<String, bool>,
}

impl Decided<'_> {
    /// Whether every address was charged by this claim.
    fn all_charged_here(&self) -> bool {
        self.earlier.is_empty() && self.fresh.values().all(|fresh| *fresh)
    }
}

fn decided(claimed: &Claimed) -> Result<Decided<'_>, VerifyError> {
    match claimed {
        Claimed::Done { earlier, fresh } => Ok(Decided { earlier, fresh }),
        Claimed::QuotaExceeded { quota, used } => Err(VerifyError::QuotaExceeded {
            quota: *quota,
            used: *used,
        }),
    }
}

/// Each ask's answer, in order: an earlier result from the log (`earlier`, as JSON) or the
/// engine's, and whether it came from the log.
fn assemble(
    asks: &[Ask],
    decided: Decided<'_>,
    results: &HashMap<String, Verification>,
) -> Vec<(Verification, bool)> {
    asks.iter()
        .filter_map(|ask| {
            if let Some(result) = decided
                .earlier
                .get(&ask.address)
                .and_then(|json| serde_json::from_str::<Verification>(json).ok())
            {
                let answer = Verification {
                    email: ask.email.clone(),
                    normalized: ask.normalized.clone(),
                    cached: true,
                    ..result
                };
                return Some((answer, true));
            }
            let result = results.get(&ask.address)?;
            let answer = Verification {
                email: ask.email.clone(),
                normalized: ask.normalized.clone(),
                // Charged by another request: this one is a repeat of it.
                cached: !decided.fresh.get(&ask.address).copied().unwrap_or(false),
                ..result.clone()
            };
            Some((answer, false))
        })
        .collect()
}

/// The log's line for a result. Only an answer from the log is logged as cached: a result the
/// engine made is one dedup may give again, even when its charge was another request's.
fn log_entry(who: Requester, result: &Verification, from_store: bool) -> NewVerification {
    NewVerification {
        id: VerificationId::generate(),
        user_id: who.user_id,
        api_key_id: who.api_key_id,
        address: result
            .canonical
            .clone()
            .or_else(|| result.normalized.clone())
            .unwrap_or_else(|| result.email.clone()),
        verdict: result.verdict.as_str().to_owned(),
        cached: from_store,
        result: to_json(result),
    }
}

/// The log's lines for `answers`.
fn log_lines(who: Requester, answers: &[(Verification, bool)]) -> Vec<NewVerification> {
    answers
        .iter()
        .map(|(result, from_store)| log_entry(who, result, *from_store))
        .collect()
}

/// `answers`, each with its JSON as its line in `lines` logged it.
fn as_logged(answers: Vec<(Verification, bool)>, lines: &[NewVerification]) -> Vec<Answer> {
    answers
        .into_iter()
        .zip(lines)
        .map(|((result, _), line)| Answer {
            result,
            json: line.result.clone(),
        })
        .collect()
}

/// A result as the log keeps it and the API sends it.
fn to_json(result: &Verification) -> String {
    serde_json::to_string(result).unwrap_or_default()
}
