//! Group commit for the verification hot path: the claims (dedup and the
//! charge) and the log lines of concurrent requests, applied together in one transaction.
//!
//! Request by request, every `POST /v1/verify` would run two transactions of several
//! statements each, every statement a round trip to the database and every transaction a turn
//! at SQLite's single write lock. One task per node instead takes whatever queued while its
//! last transaction ran and applies all of it in one serializable transaction, with a few
//! statements per organization: the cost per request falls as the load grows, and a lone
//! request waits for no one. On PostgreSQL the task speaks through sqlx like the rest of the
//! crate; on SQLite through a connection of its own ([`sqlite`]), the same statements
//! ([`Statements`]) without sqlx's thread hops.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use futures::FutureExt;
use mailroom_core::OrgId;
use mailroom_core::usage::{Metric, month_of};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::accounts::ms;
use crate::tx::Tenancy;
use crate::usage::{self, Ledger, NewCharge, Period};
use crate::verifications::{self, NewVerification};
use crate::{Backend, Database, StorageError, Tx};

mod sqlite;

/// Requests one transaction takes at most; the rest wait for the next.
const MAX_BATCH: usize = 256;
/// Requests queued behind the running transaction before callers wait to queue.
const QUEUE: usize = 4096;

/// Which earlier results may answer a check (a result without the SMTP probe does not answer a
/// request for one): the caller's rule, over the result as logged.
pub type Answers = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The log lines of a claim that was charged, made from what became of it: the caller's rule.
/// It may be asked more than once (a transaction tried again); the last answer is committed.
pub type LogRule = Arc<dyn Fn(&Claimed) -> Vec<NewVerification> + Send + Sync>;

/// Checks of addresses for an organization: each address is answered by its latest logged
/// result within the dedup window, if `answers` takes it; the others are charged one
/// verification each, all or none.
#[derive(Clone)]
pub struct Claim {
    pub org_id: OrgId,
    /// Each address, with the idempotency key its charge goes under.
    pub addresses: Vec<(String, String)>,
    /// Results logged since then may answer.
    pub since: OffsetDateTime,
    pub answers: Answers,
    pub now: OffsetDateTime,
    /// Log lines to write in the claim's own transaction, when the results are known before
    /// the claim: charge and log are then one write, all or none, and one wait.
    pub log: Option<LogRule>,
}

/// What became of a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// `earlier`: the addresses answered by a logged result (its JSON). Every other address
    /// was charged; `fresh` says whether by this claim (false: its key was charged before).
    Done {
        earlier: HashMap<String, String>,
        fresh: HashMap<String, bool>,
    },
    /// The addresses to charge would exceed the quota; nothing was counted.
    QuotaExceeded { quota: i64, used: i64 },
}

/// The statements of claims and log lines, on either driver: sqlx's [`Tx`] (both backends,
/// each statement a round trip) or the group commit's own SQLite connection
/// (`rusqlite::Transaction`, each statement a call). Organization-scoped, like every tenant
/// query.
pub(crate) trait Statements {
    /// Says whom the rest of the transaction acts for (PostgreSQL's tenant policies).
    async fn act_for(&mut self, org_id: OrgId) -> Result<(), StorageError>;
    async fn insert_verifications(
        &mut self,
        org_id: OrgId,
        lines: &[(&NewVerification, OffsetDateTime)],
    ) -> Result<(), StorageError>;
    /// For each of `addresses` checked (not itself answered from the log) since `since`, its
    /// latest result, as JSON, and when it was logged (ms).
    async fn latest_verifications(
        &mut self,
        org_id: OrgId,
        addresses: &[String],
        since: OffsetDateTime,
    ) -> Result<HashMap<String, (String, i64)>, StorageError>;
    /// The plan's quota of `metric`, and how much of it the period used.
    async fn quota_and_use(
        &mut self,
        org_id: OrgId,
        metric: Metric,
        period_start: OffsetDateTime,
    ) -> Result<(i64, i64), StorageError>;
    async fn charged_keys(
        &mut self,
        org_id: OrgId,
        keys: &[String],
    ) -> Result<HashSet<String>, StorageError>;
    async fn add_use(&mut self, period: &Period, added: i64) -> Result<(), StorageError>;
    async fn insert_charges(
        &mut self,
        period: &Period,
        charges: &[NewCharge],
    ) -> Result<(), StorageError>;
}

impl Statements for Tx {
    async fn act_for(&mut self, org_id: OrgId) -> Result<(), StorageError> {
        Tx::act_for(self, &Tenancy::Org(org_id)).await
    }

    async fn insert_verifications(
        &mut self,
        org_id: OrgId,
        lines: &[(&NewVerification, OffsetDateTime)],
    ) -> Result<(), StorageError> {
        verifications::insert(self, org_id, lines.iter().copied()).await
    }

    async fn latest_verifications(
        &mut self,
        org_id: OrgId,
        addresses: &[String],
        since: OffsetDateTime,
    ) -> Result<HashMap<String, (String, i64)>, StorageError> {
        verifications::latest(self, org_id, addresses, since).await
    }

    async fn quota_and_use(
        &mut self,
        org_id: OrgId,
        metric: Metric,
        period_start: OffsetDateTime,
    ) -> Result<(i64, i64), StorageError> {
        let (plan, used) = usage::plan_and_use(self, org_id, metric, period_start).await?;
        Ok((plan.quota_of(metric), used))
    }

    async fn charged_keys(
        &mut self,
        org_id: OrgId,
        keys: &[String],
    ) -> Result<HashSet<String>, StorageError> {
        usage::charged_keys(self, org_id, keys).await
    }

    async fn add_use(&mut self, period: &Period, added: i64) -> Result<(), StorageError> {
        usage::add_use(self, period, added).await
    }

    async fn insert_charges(
        &mut self,
        period: &Period,
        charges: &[NewCharge],
    ) -> Result<(), StorageError> {
        usage::insert_charges(self, period, charges).await
    }
}

/// Log lines of one organization.
#[derive(Clone)]
struct LogLines {
    org_id: OrgId,
    entries: Vec<NewVerification>,
    now: OffsetDateTime,
}

#[derive(Clone)]
enum Request {
    Claim(Claim),
    Log(LogLines),
}

impl Request {
    fn org_id(&self) -> OrgId {
        match self {
            Request::Claim(claim) => claim.org_id,
            Request::Log(lines) => lines.org_id,
        }
    }
}

#[derive(Clone, Debug)]
enum Outcome {
    Claimed(Claimed),
    Logged,
}

type Reply = oneshot::Sender<Result<Outcome, StorageError>>;

/// The way into this node's group-commit task. Cheap to clone.
#[derive(Clone)]
pub(crate) struct GroupCommit(mpsc::Sender<(Request, Reply)>);

impl GroupCommit {
    /// Starts the task that applies `database`'s batches; it ends when the last sender goes.
    ///
    /// The task runs on the caller's runtime. On SQLite it has a connection of its own to
    /// `sqlite_file` (see [`sqlite`]); a database given as anything but a plain file (`None`)
    /// has no task, and each request commits alone, through sqlx.
    pub(crate) fn start(database: Database, sqlite_file: Option<&Path>) -> Self {
        let (sender, queue) = mpsc::channel::<(Request, Reply)>(QUEUE);
        match (database.backend(), sqlite_file) {
            (Backend::Postgres, _) => {
                tokio::spawn(async move { run(&mut &database, queue, 0).await });
            }
            (Backend::Sqlite, Some(file)) => {
                if let Err(error) = sqlite::start(file, &database, queue) {
                    tracing::warn!(%error, "no group commit: requests commit one by one");
                }
            }
            (Backend::Sqlite, None) => {}
        }
        GroupCommit(sender)
    }
}

/// What applies a batch in one transaction: sqlx's pool (both backends), or on SQLite the
/// group commit's own connection.
trait Committer {
    /// Applies `requests` in one transaction, and gives them back with the outcome.
    async fn transaction(
        &mut self,
        requests: Vec<Request>,
    ) -> (Vec<Request>, Result<Vec<Outcome>, StorageError>);
}

impl Committer for &Database {
    /// In one serializable transaction, retried on conflict.
    async fn transaction(
        &mut self,
        requests: Vec<Request>,
    ) -> (Vec<Request>, Result<Vec<Outcome>, StorageError>) {
        let requests = Arc::new(requests);
        let outcome = self
            .serializable_keeping_key_cache(|tx| {
                let requests = Arc::clone(&requests);
                async move { apply(tx, &requests).await }.boxed()
            })
            .await;
        (Arc::unwrap_or_clone(requests), outcome)
    }
}

/// Applies `queue`'s batches until the last sender goes. Before each batch the task yields
/// `gathering_turns` times, so that the requests running beside it on its worker queue theirs
/// too (see `sqlite::GATHERING_TURNS`).
async fn run(
    committer: &mut impl Committer,
    mut queue: mpsc::Receiver<(Request, Reply)>,
    gathering_turns: usize,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        for _ in 0..gathering_turns {
            tokio::task::yield_now().await;
            while batch.len() < MAX_BATCH {
                let Ok(request) = queue.try_recv() else { break };
                batch.push(request);
            }
        }
        commit(committer, std::mem::take(&mut batch)).await;
    }
}

/// Applies a batch in one transaction and answers each request; see [`settle`].
async fn commit(committer: &mut impl Committer, batch: Vec<(Request, Reply)>) {
    let (requests, replies): (Vec<Request>, Vec<Reply>) = batch.into_iter().unzip();
    let (requests, outcome) = committer.transaction(requests).await;
    for (request, reply) in settle(outcome, requests, replies) {
        let (alone, outcome) = committer.transaction(vec![request]).await;
        settle(outcome, alone, vec![reply]);
    }
}

impl Database {
    /// Claims `claim`'s addresses (see [`Claim`]), together with whatever else is queued.
    pub async fn claim(&self, claim: Claim) -> Result<Claimed, StorageError> {
        match self.submit(Request::Claim(claim)).await? {
            Outcome::Claimed(claimed) => Ok(claimed),
            Outcome::Logged => Err(StorageError::Internal("a claim answered as a log")),
        }
    }

    /// Logs verifications, together with whatever else is queued.
    pub async fn record_verifications(
        &self,
        org_id: OrgId,
        entries: Vec<NewVerification>,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let lines = LogLines {
            org_id,
            entries,
            now,
        };
        self.submit(Request::Log(lines)).await.map(drop)
    }

    async fn submit(&self, request: Request) -> Result<Outcome, StorageError> {
        let (reply, answer) = oneshot::channel();
        let queued = match &self.group_commit {
            Some(GroupCommit(queue)) => queue.send((request, reply)).await,
            None => Err(mpsc::error::SendError((request, reply))),
        };
        // No task takes requests (there is none, or it ended): this caller applies its own,
        // as a batch of one, through sqlx.
        if let Err(mpsc::error::SendError(alone)) = queued {
            commit(&mut &*self, vec![alone]).await;
        }
        answer
            .await
            .map_err(|_| StorageError::Internal("the group commit stopped"))?
    }
}

/// Answers each request of a batch with its outcome. When the batch failed as a whole, its
/// requests are handed back to be tried one by one, so that one bad request fails only itself
/// — unless the database was busy, which trying each alone would only prolong.
fn settle(
    outcome: Result<Vec<Outcome>, StorageError>,
    requests: Vec<Request>,
    replies: Vec<Reply>,
) -> Vec<(Request, Reply)> {
    match outcome {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // A caller that went away has nothing to hear.
                let _ = reply.send(Ok(outcome));
            }
            Vec::new()
        }
        Err(error) if replies.len() > 1 && !error.is_busy() => {
            tracing::debug!(%error, "a batch failed; its requests go one by one");
            requests.into_iter().zip(replies).collect()
        }
        Err(error) => {
            let mut replies = replies.into_iter();
            if let Some(reply) = replies.next() {
                let _ = reply.send(Err(error));
            }
            for reply in replies {
                let _ = reply.send(Err(StorageError::Timeout));
            }
            Vec::new()
        }
    }
}

/// Applies `requests` inside `tx`, organization by organization (the tenant setting is one per
/// organization): its log lines first, so that a claim in the same batch finds them, then its
/// claims in the order they came, then the lines those that charged made.
async fn apply(
    tx: &mut impl Statements,
    requests: &[Request],
) -> Result<Vec<Outcome>, StorageError> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; requests.len()];
    let mut orgs: Vec<OrgId> = Vec::new();
    for request in requests {
        if !orgs.contains(&request.org_id()) {
            orgs.push(request.org_id());
        }
    }
    for org_id in orgs {
        tx.act_for(org_id).await?;
        let mut claims = Vec::new();
        let mut lines = Vec::new();
        for (i, request) in requests.iter().enumerate() {
            match request {
                Request::Log(log) if log.org_id == org_id => {
                    lines.extend(log.entries.iter().map(|entry| (entry, log.now)));
                    outcomes[i] = Some(Outcome::Logged);
                }
                Request::Claim(claim) if claim.org_id == org_id => claims.push((i, claim)),
                _ => {}
            }
        }
        tx.insert_verifications(org_id, &lines).await?;
        if !claims.is_empty() {
            let claimed = claim_all(tx, org_id, claims.iter().map(|(_, claim)| *claim)).await?;
            let mut logged = Vec::new();
            for ((i, claim), claimed) in claims.iter().zip(claimed) {
                if let (Some(log), Claimed::Done { .. }) = (&claim.log, &claimed) {
                    logged.extend(log(&claimed).into_iter().map(|line| (line, claim.now)));
                }
                outcomes[*i] = Some(Outcome::Claimed(claimed));
            }
            let logged: Vec<_> = logged.iter().map(|(line, at)| (line, *at)).collect();
            tx.insert_verifications(org_id, &logged).await?;
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.ok_or(StorageError::Internal("a request left unapplied")))
        .collect()
}

/// One organization's claims, in order: one read of the log and one of the ledger for all of
/// them, then one write of the ledger.
async fn claim_all<'c>(
    tx: &mut impl Statements,
    org_id: OrgId,
    claims: impl Iterator<Item = &'c Claim> + Clone,
) -> Result<Vec<Claimed>, StorageError> {
    let mut addresses: Vec<String> = claims
        .clone()
        .flat_map(|claim| claim.addresses.iter().map(|(address, _)| address.clone()))
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    let since = claims
        .clone()
        .map(|claim| claim.since)
        .min()
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let logged = tx.latest_verifications(org_id, &addresses, since).await?;

    // Each claim's answers from the log, and the keys of the rest.
    let answered: Vec<HashMap<String, String>> = claims
        .clone()
        .map(|claim| {
            claim
                .addresses
                .iter()
                .filter_map(|(address, _)| {
                    let (result, at) = logged.get(address)?;
                    (*at >= ms(claim.since) && (claim.answers)(result))
                        .then(|| (address.clone(), result.clone()))
                })
                .collect()
        })
        .collect();
    let keys: Vec<String> = claims
        .clone()
        .zip(&answered)
        .flat_map(|(claim, earlier)| {
            claim
                .addresses
                .iter()
                .filter(|(address, _)| !earlier.contains_key(address))
                .map(|(_, key)| key.clone())
        })
        .collect();

    let mut ledgers: HashMap<i64, Ledger> = HashMap::new();
    let mut outcomes = Vec::new();
    for (claim, earlier) in claims.zip(answered) {
        let period_start = month_of(claim.now).0;
        let ledger = match ledgers.entry(ms(period_start)) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(
                Ledger::open(tx, org_id, Metric::Verifications, period_start, &keys).await?,
            ),
        };
        let mut seen = HashSet::new();
        let charges: Vec<(&str, &str)> = claim
            .addresses
            .iter()
            .filter(|(address, _)| !earlier.contains_key(address) && seen.insert(address))
            .map(|(address, key)| (address.as_str(), key.as_str()))
            .collect();
        let keys: Vec<&str> = charges.iter().map(|(_, key)| *key).collect();
        outcomes.push(
            match ledger.charge(&keys, 1, ledger.plan_quota, claim.now) {
                Some(fresh) => Claimed::Done {
                    earlier,
                    fresh: charges
                        .iter()
                        .zip(fresh)
                        .map(|((address, _), fresh)| ((*address).to_owned(), fresh))
                        .collect(),
                },
                None => Claimed::QuotaExceeded {
                    quota: ledger.plan_quota,
                    used: ledger.used,
                },
            },
        );
    }
    for ledger in ledgers.values() {
        ledger.write(tx).await?;
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use mailroom_testkit::both_backends;
    use uuid::Uuid;

    use super::*;
    use crate::test_support::org;
    use crate::{Pool, on_backend};

    fn claim(org_id: OrgId, addresses: &[&str]) -> Claim {
        let now = OffsetDateTime::now_utc();
        Claim {
            org_id,
            addresses: addresses
                .iter()
                .map(|address| ((*address).to_owned(), format!("key:{address}")))
                .collect(),
            since: now - time::Duration::hours(24),
            answers: Arc::new(|result| !result.contains("unwanted")),
            now,
            log: None,
        }
    }

    fn line(address: &str, result: &str) -> NewVerification {
        NewVerification {
            id: mailroom_core::VerificationId::generate(),
            user_id: None,
            api_key_id: None,
            address: address.to_owned(),
            verdict: "deliverable".to_owned(),
            cached: false,
            result: result.to_owned(),
        }
    }

    fn fresh(claimed: &Claimed) -> Vec<(String, bool)> {
        let Claimed::Done { fresh, .. } = claimed else {
            panic!("not charged: {claimed:?}");
        };
        let mut fresh: Vec<_> = fresh.clone().into_iter().collect();
        fresh.sort();
        fresh
    }

    async fn set_quota(db: &Database, quota: i64) {
        on_backend!(&db.pool, Pool, pool => {
            sqlx::query("UPDATE plans SET verifications_per_month = $1")
                .bind(quota)
                .execute(pool)
                .await
                .unwrap();
        });
    }

    /// A write outside the writer turn (here another process's, holding SQLite's write lock)
    /// makes the group commit wait off the runtime's workers and try again, not fail.
    #[tokio::test]
    async fn a_lock_held_outside_the_writer_turn_is_waited_out() {
        let test_db = mailroom_testkit::TestDatabase::sqlite().await;
        let db = crate::test_support::connect(&test_db).await;
        db.migrate().await.unwrap();
        let org_id = org(&db).await;
        let file = test_db.url().trim_start_matches("sqlite://").to_owned();
        let other = rusqlite::Connection::open(file).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            other.execute_batch("COMMIT").unwrap();
        });
        let claimed = db.claim(claim(org_id, &["a@x.test"])).await.unwrap();
        assert_eq!(fresh(&claimed), [("a@x.test".to_owned(), true)]);
        release.await.unwrap();
    }

    /// An in-memory database has no group-commit task: each request commits alone, through sqlx.
    #[tokio::test]
    async fn an_in_memory_database_claims_without_the_task() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let org_id = org(&db).await;
        let now = OffsetDateTime::now_utc();
        db.record_verifications(org_id, vec![line("old@example.com", "{}")], now)
            .await
            .unwrap();
        let claimed = db
            .claim(claim(org_id, &["old@example.com", "new@example.com"]))
            .await
            .unwrap();
        let Claimed::Done { earlier, .. } = &claimed else {
            panic!("{claimed:?}")
        };
        assert!(earlier.contains_key("old@example.com"));
        assert_eq!(fresh(&claimed), [("new@example.com".to_owned(), true)]);
    }

    both_backends! {
        async fn a_logged_result_answers_and_the_rest_is_charged_once(test_db) {
            let db = crate::test_support::connect(&test_db).await;
            db.migrate().await.unwrap();
            let org_id = org(&db).await;
            let now = OffsetDateTime::now_utc();
            db.record_verifications(org_id, vec![line("old@example.com", "{\"ok\":1}"), line("no@example.com", "unwanted")], now)
                .await
                .unwrap();
            let claimed = db.claim(claim(org_id, &["old@example.com", "no@example.com", "new@example.com"])).await.unwrap();
            let Claimed::Done { earlier, .. } = &claimed else { panic!("{claimed:?}") };
            assert_eq!(earlier.keys().collect::<Vec<_>>(), ["old@example.com"], "a result the rule refuses does not answer");
            assert_eq!(fresh(&claimed), [("new@example.com".to_owned(), true), ("no@example.com".to_owned(), true)]);
            let again = db.claim(claim(org_id, &["new@example.com"])).await.unwrap();
            assert_eq!(fresh(&again), [("new@example.com".to_owned(), false)], "the same key is charged once");
            let (_, used) = db.usage().quota(org_id, Metric::Verifications, month_of(now).0).await.unwrap();
            assert_eq!(used, 2);
            // Another organization's log answers nothing here.
            let other = org(&db).await;
            let theirs = db.claim(claim(other, &["old@example.com"])).await.unwrap();
            assert_eq!(fresh(&theirs), [("old@example.com".to_owned(), true)]);
        }

        async fn racing_claims_against_a_quota_grant_exactly_the_quota(test_db) {
            let db = crate::test_support::connect(&test_db).await;
            db.migrate().await.unwrap();
            let org_id = org(&db).await;
            set_quota(&db, 100).await;
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let db = db.clone();
                    tokio::spawn(async move { db.claim(claim(org_id, &[&format!("u{i}@example.com")])).await.unwrap() })
                })
                .collect();
            let mut granted = 0;
            for task in tasks {
                match task.await.unwrap() {
                    Claimed::Done { .. } => granted += 1,
                    Claimed::QuotaExceeded { quota, used } => assert_eq!((quota, used), (100, 100)),
                }
            }
            assert_eq!(granted, 100);
            let (_, used) = db.usage().quota(org_id, Metric::Verifications, month_of(OffsetDateTime::now_utc()).0).await.unwrap();
            assert_eq!(used, 100);
        }

        async fn a_claim_over_the_quota_charges_none_of_its_addresses(test_db) {
            let db = crate::test_support::connect(&test_db).await;
            db.migrate().await.unwrap();
            let org_id = org(&db).await;
            set_quota(&db, 2).await;
            assert!(matches!(db.claim(claim(org_id, &["a@x.test"])).await.unwrap(), Claimed::Done { .. }));
            assert_eq!(
                db.claim(claim(org_id, &["b@x.test", "c@x.test"])).await.unwrap(),
                Claimed::QuotaExceeded { quota: 2, used: 1 },
                "both or neither"
            );
            assert_eq!(fresh(&db.claim(claim(org_id, &["b@x.test", "b@x.test"])).await.unwrap()), [("b@x.test".to_owned(), true)]);
        }

        async fn a_claim_charged_logs_its_lines_and_one_refused_logs_none(test_db) {
            let db = crate::test_support::connect(&test_db).await;
            db.migrate().await.unwrap();
            let org_id = org(&db).await;
            set_quota(&db, 1).await;
            let logging = |address: &str| Claim {
                log: Some(Arc::new(|claimed: &Claimed| {
                    let Claimed::Done { fresh, .. } = claimed else { return Vec::new() };
                    fresh.keys().map(|address| line(address, "{}")).collect()
                })),
                ..claim(org_id, &[address])
            };
            assert_eq!(fresh(&db.claim(logging("a@x.test")).await.unwrap()), [("a@x.test".to_owned(), true)]);
            assert_eq!(db.claim(logging("b@x.test")).await.unwrap(), Claimed::QuotaExceeded { quota: 1, used: 1 });
            let everything = crate::verifications::LogQuery { limit: 10, ..Default::default() };
            let log = db.verifications().verification_log(org_id, &everything).await.unwrap();
            assert_eq!(log.iter().map(|line| line.address.as_str()).collect::<Vec<_>>(), ["a@x.test"]);
            // The line is the log's like any other: it answers the next claim.
            let Claimed::Done { earlier, .. } = db.claim(claim(org_id, &["a@x.test"])).await.unwrap() else {
                panic!("answered from the log")
            };
            assert!(earlier.contains_key("a@x.test"));
        }

        async fn claims_and_charges_by_the_other_driver_share_one_quota(test_db) {
            // On SQLite the claims go through the group commit's own connection and the
            // charges through sqlx's: both take the same writer turn and read the same ledger.
            let db = crate::test_support::connect(&test_db).await;
            db.migrate().await.unwrap();
            let org_id = org(&db).await;
            set_quota(&db, 100).await;
            let period_start = month_of(OffsetDateTime::now_utc()).0;
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let db = db.clone();
                    tokio::spawn(async move {
                        if i % 2 == 0 {
                            return matches!(
                                db.claim(claim(org_id, &[&format!("u{i}@example.com")])).await.unwrap(),
                                Claimed::Done { .. }
                            );
                        }
                        let keys = [format!("charge:{i}")];
                        let charge = crate::usage::Charge {
                            org_id,
                            metric: Metric::Verifications,
                            amount: 1,
                            idempotency_keys: &keys,
                            quota: 100,
                            period_start,
                        };
                        matches!(
                            db.usage().charge(&charge, OffsetDateTime::now_utc()).await.unwrap(),
                            crate::usage::Charged::Done { .. }
                        )
                    })
                })
                .collect();
            let mut granted = 0;
            for task in tasks {
                granted += usize::from(task.await.unwrap());
            }
            assert_eq!(granted, 100);
            let (_, used) = db.usage().quota(org_id, Metric::Verifications, period_start).await.unwrap();
            assert_eq!(used, 100);
        }

        async fn a_bad_request_in_a_batch_fails_only_itself(test_db) {
            let db = crate::test_support::connect(&test_db).await;
            db.migrate().await.unwrap();
            let org_id = org(&db).await;
            // A log line of an organization that does not exist breaks its foreign key.
            let missing = OrgId::from_uuid(Uuid::now_v7());
            let now = OffsetDateTime::now_utc();
            let lines = [line("x@example.com", "{}")];
            let (bad, good, claimed) = tokio::join!(
                db.record_verifications(missing, lines.to_vec(), now),
                db.record_verifications(org_id, lines.to_vec(), now),
                db.claim(claim(org_id, &["y@example.com"])),
            );
            assert!(bad.is_err());
            good.unwrap();
            assert!(matches!(claimed.unwrap(), Claimed::Done { .. }));
        }
    }
}
