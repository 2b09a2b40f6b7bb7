//! Group commit for the verification hot path (VER-6, VER-7): the claims (dedup and the
//! charge) and the log lines of concurrent requests, applied together in one transaction.
//!
//! Request by request, every `POST /v1/verify` would run two transactions of several
//! statements each, every statement a round trip to the database (on SQLite, to its
//! connection's thread) and every transaction a turn at SQLite's single write lock. One task
//! per node instead takes whatever queued while its last transaction ran and applies all of it
//! in one serializable transaction, with a few statements per organization: the cost per
//! request falls as the load grows, and a lone request waits for no one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use mailroom_core::OrgId;
use mailroom_core::usage::{Metric, month_of};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::accounts::ms;
use crate::tx::Tenancy;
use crate::usage::Ledger;
use crate::verifications::{self, NewVerification};
use crate::{Backend, Database, StorageError, Tx};

/// Requests one transaction takes at most; the rest wait for the next.
const MAX_BATCH: usize = 256;
/// Requests queued behind the running transaction before callers wait to queue.
const QUEUE: usize = 4096;

/// Which earlier results may answer a check (a result without the SMTP probe does not answer a
/// request for one): the caller's rule, over the result as logged.
pub type Answers = Arc<dyn Fn(&str) -> bool + Send + Sync>;

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
    /// On SQLite the task has a thread of its own: each statement of a batch is a round trip
    /// to a connection's thread, whose answer, on the request threads, would wait its turn
    /// behind the requests' own work — and every request waits on the batches (measured: a
    /// fifth more throughput). Without that thread, each request commits alone. PostgreSQL's
    /// connections are sockets of the runtime that opened them, so there the task stays on
    /// the caller's runtime.
    pub(crate) fn start(database: Database) -> Self {
        let (sender, queue) = mpsc::channel::<(Request, Reply)>(QUEUE);
        let backend = database.backend();
        let work = run(database, queue);
        if backend == Backend::Postgres {
            tokio::spawn(work);
            return GroupCommit(sender);
        }
        let started = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .and_then(|runtime| {
                std::thread::Builder::new()
                    .name("group-commit".to_owned())
                    .spawn(move || runtime.block_on(work))
            });
        if let Err(error) = started {
            tracing::warn!(%error, "no thread for the group commit: requests commit one by one");
        }
        GroupCommit(sender)
    }
}

async fn run(database: Database, mut queue: mpsc::Receiver<(Request, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        database.commit(std::mem::take(&mut batch)).await;
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

    /// Logs verifications (VER-7), together with whatever else is queued.
    pub async fn record_verifications(
        &self,
        org_id: OrgId,
        entries: &[NewVerification],
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let lines = LogLines {
            org_id,
            entries: entries.to_vec(),
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
        // No task takes requests (this is the task, it could not start, or its runtime ended):
        // this caller applies its own, as a batch of one.
        if let Err(mpsc::error::SendError(alone)) = queued {
            self.commit(vec![alone]).await;
        }
        answer
            .await
            .map_err(|_| StorageError::Internal("the group commit stopped"))?
    }

    /// Applies a batch in one transaction and answers each request. When the batch fails as
    /// a whole, each request is tried alone, so that one bad request fails only itself.
    fn commit(&self, batch: Vec<(Request, Reply)>) -> BoxFuture<'_, ()> {
        async move {
            let (requests, replies): (Vec<Request>, Vec<Reply>) = batch.into_iter().unzip();
            let requests = Arc::new(requests);
            match self
                .serializable_keeping_key_cache(|tx| apply(tx, Arc::clone(&requests)))
                .await
            {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        // A caller that went away has nothing to hear.
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(error) if replies.len() == 1 => {
                    if let Some(reply) = replies.into_iter().next() {
                        let _ = reply.send(Err(error));
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "a batch failed; its requests go one by one");
                    let requests = Arc::unwrap_or_clone(requests);
                    for pair in requests.into_iter().zip(replies) {
                        self.commit(vec![pair]).await;
                    }
                }
            }
        }
        .boxed()
    }
}

/// Applies `requests` inside `tx`, organization by organization (the tenant setting is one per
/// organization): its log lines first, so that a claim in the same batch finds them, then its
/// claims in the order they came.
fn apply(
    tx: &mut Tx,
    requests: Arc<Vec<Request>>,
) -> BoxFuture<'_, Result<Vec<Outcome>, StorageError>> {
    async move {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; requests.len()];
        let mut orgs: Vec<OrgId> = Vec::new();
        for request in requests.iter() {
            if !orgs.contains(&request.org_id()) {
                orgs.push(request.org_id());
            }
        }
        for org_id in orgs {
            tx.act_for(&Tenancy::Org(org_id)).await?;
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
            verifications::insert(tx, org_id, lines).await?;
            if !claims.is_empty() {
                let claimed = claim_all(tx, org_id, claims.iter().map(|(_, claim)| *claim)).await?;
                for ((i, _), claimed) in claims.iter().zip(claimed) {
                    outcomes[*i] = Some(Outcome::Claimed(claimed));
                }
            }
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.ok_or(StorageError::Internal("a request left unapplied")))
            .collect()
    }
    .boxed()
}

/// One organization's claims, in order: one read of the log and one of the ledger for all of
/// them, then one write of the ledger.
async fn claim_all<'c>(
    tx: &mut Tx,
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
    let logged = verifications::latest(tx, org_id, &addresses, since).await?;

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
        }
    }

    fn line(address: &str, result: &str) -> NewVerification {
        NewVerification {
            id: Uuid::now_v7(),
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

    both_backends! {
        async fn a_logged_result_answers_and_the_rest_is_charged_once(test_db) {
            let db = Database::connect(test_db.url()).await.unwrap();
            db.migrate().await.unwrap();
            let org_id = org(&db).await;
            let now = OffsetDateTime::now_utc();
            db.record_verifications(org_id, &[line("old@example.com", "{\"ok\":1}"), line("no@example.com", "unwanted")], now)
                .await
                .unwrap();
            let claimed = db.claim(claim(org_id, &["old@example.com", "no@example.com", "new@example.com"])).await.unwrap();
            let Claimed::Done { earlier, .. } = &claimed else { panic!("{claimed:?}") };
            assert_eq!(earlier.keys().collect::<Vec<_>>(), ["old@example.com"], "a result the rule refuses does not answer");
            assert_eq!(fresh(&claimed), [("new@example.com".to_owned(), true), ("no@example.com".to_owned(), true)]);
            let again = db.claim(claim(org_id, &["new@example.com"])).await.unwrap();
            assert_eq!(fresh(&again), [("new@example.com".to_owned(), false)], "the same key is charged once");
            let (_, used) = db.quota(org_id, Metric::Verifications, month_of(now).0).await.unwrap();
            assert_eq!(used, 2);
            // Another organization's log answers nothing here.
            let other = org(&db).await;
            let theirs = db.claim(claim(other, &["old@example.com"])).await.unwrap();
            assert_eq!(fresh(&theirs), [("old@example.com".to_owned(), true)]);
        }

        async fn racing_claims_against_a_quota_grant_exactly_the_quota(test_db) {
            let db = Database::connect(test_db.url()).await.unwrap();
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
            let (_, used) = db.quota(org_id, Metric::Verifications, month_of(OffsetDateTime::now_utc()).0).await.unwrap();
            assert_eq!(used, 100);
        }

        async fn a_claim_over_the_quota_charges_none_of_its_addresses(test_db) {
            let db = Database::connect(test_db.url()).await.unwrap();
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

        async fn a_bad_request_in_a_batch_fails_only_itself(test_db) {
            let db = Database::connect(test_db.url()).await.unwrap();
            db.migrate().await.unwrap();
            let org_id = org(&db).await;
            // A log line of an organization that does not exist breaks its foreign key.
            let missing = OrgId::from_uuid(Uuid::now_v7());
            let now = OffsetDateTime::now_utc();
            let lines = [line("x@example.com", "{}")];
            let (bad, good, claimed) = tokio::join!(
                db.record_verifications(missing, &lines, now),
                db.record_verifications(org_id, &lines, now),
                db.claim(claim(org_id, &["y@example.com"])),
            );
            assert!(bad.is_err());
            good.unwrap();
            assert!(matches!(claimed.unwrap(), Claimed::Done { .. }));
        }
    }
}
