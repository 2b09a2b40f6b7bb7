//! The group commit's own SQLite connection.
//!
//! sqlx runs each SQLite statement on its connection's worker thread and hands the answer
//! back through a channel: a batch of eight statements was eight round trips between threads,
//! and under load those hops, not SQLite, took most of a batch's time (perf under
//! `POST /v1/verify`: sqlx's SQLite threads and the kernel's context switches, two thirds of
//! the CPU). So the group-commit task holds a connection of its own, through rusqlite over the
//! same SQLite library, and calls SQLite directly: the charged verify route went from 11,400
//! to about 24,000 requests a second on the same machine.
//!
//! The statements run on the runtime worker that polls the task, which is busy for a batch's
//! time (a few hundred microseconds under load; the WAL's checkpoints, which wait for the disk,
//! are a thread's of their own, see [`checkpoint`]) while the runtime's other workers take its
//! queue. A thread of its own measured slower:
//! it cannot gather a batch from the requests running beside it (see `GATHERING_TURNS`), and
//! waking it and being woken by it cost more than its statements (with them left out, 31,600
//! requests a second against 49,500 for a task). The connection takes the same writer turn
//! as sqlx's transactions (`Database::sqlite_writer`). Every other statement stays with sqlx.
//!
//! The task runs on the runtime that connected, which must go on polling it while the
//! database is in use (the server's runtime does; a runtime that ends takes the task with it,
//! and then each request commits alone, through sqlx).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use futures::FutureExt;
use mailroom_core::OrgId;
use mailroom_core::org::PlanId;
use mailroom_core::usage::Metric;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, named_params};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::{Committer, NewCharge, Outcome, Period, Reply, Request, Statements, apply, run};
use crate::accounts::ms;
use crate::teams::Plan;
use crate::tx::Retries;
use crate::usage::{ADD_USE, PLAN_AND_USE};
use crate::verifications::NewVerification;
use crate::{Database, SQLITE_BUSY_TIMEOUT, StorageError};

mod checkpoint;

/// Opens the connection and starts the task that applies `queue`'s batches, on the caller's
/// runtime; it ends when the last sender goes.
pub(super) fn start(
    file: &Path,
    database: &Database,
    queue: mpsc::Receiver<(Request, Reply)>,
) -> Result<(), StorageError> {
    // The file exists: sqlx's pool opened it, in WAL mode, which the file keeps.
    let connection = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Busy is answered at once, and waited out off the worker (see `transaction`).
    connection.busy_timeout(std::time::Duration::ZERO)?;
    // The hot path's writes land in the log's and the ledger's indexes at random (by address):
    // a page cache that holds them saves a read from the file for each (SQLite's default is
    // 2 MiB).
    connection.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;",
    )?;
    // Checkpoints are the checkpointer's (see `checkpoint`).
    connection.pragma_update(None, "wal_autocheckpoint", 0)?;
    let writer = Arc::clone(&database.sqlite_writer);
    let committed = checkpoint::start(file, Arc::clone(&writer), checkpoint::RESTART_FRAMES)?;
    let mut direct = Direct {
        connection,
        writer,
        committed: Some(committed),
    };
    tokio::spawn(async move { run(&mut direct, queue, GATHERING_TURNS).await });
    Ok(())
}

/// Turns of the scheduler a batch waits for more requests. A commit writes the same pages
/// (the log's and the ledger's newest) however many requests it carries: letting the requests
/// already running on this worker queue theirs first made batches four times larger and the
/// route a tenth faster.
const GATHERING_TURNS: usize = 8;

/// The connection, the writer turn it shares with sqlx's transactions, and the checkpointer
/// it tells of its commits (none when it checkpoints for itself).
struct Direct {
    connection: Connection,
    writer: Arc<tokio::sync::Mutex<()>>,
    committed: Option<checkpoint::Committed>,
}

impl Committer for Direct {
    /// In one transaction, which takes SQLite's write lock up front (as
    /// `Database::serializable` does on SQLite) and is rolled back, when it fails, as it
    /// drops. Its statements are calls into SQLite that never wait on the runtime: the worker
    /// running them is busy for a batch's time, no longer. Writes outside the writer turn (a
    /// single statement through sqlx, another process) can still hold the lock: then the
    /// transaction is tried again after a backoff, as `Database::serializable` does, rather
    /// than waited for in SQLite's busy handler, which would hold the worker.
    async fn transaction(
        &mut self,
        requests: Vec<Request>,
    ) -> (Vec<Request>, Result<Vec<Outcome>, StorageError>) {
        let outcome = self.retried(&requests).await;
        (requests, outcome)
    }
}

impl Direct {
    async fn retried(&mut self, requests: &[Request]) -> Result<Vec<Outcome>, StorageError> {
        let mut retries = Retries::default();
        loop {
            let turn = tokio::time::timeout(SQLITE_BUSY_TIMEOUT, self.writer.lock())
                .await
                .map_err(|_| StorageError::Timeout)?;
            let outcome = attempt(&mut self.connection, requests);
            // A rollback that failed as the transaction dropped would keep the write lock.
            if !self.connection.is_autocommit() {
                let _ = self.connection.execute_batch("ROLLBACK");
            }
            drop(turn);
            match outcome {
                Err(error) => retries.after(error).await?,
                done => {
                    self.tell_checkpointer();
                    return done;
                }
            }
        }
    }

    /// Tells the checkpointer of a commit; when its thread is gone, the connection goes back
    /// to checkpointing for itself, as SQLite does by default.
    fn tell_checkpointer(&mut self) {
        if let Some(committed) = &self.committed
            && !committed.tell()
        {
            tracing::warn!("the checkpoint thread ended; the group commit checkpoints itself");
            self.committed = None;
            if let Err(error) = self
                .connection
                .pragma_update(None, "wal_autocheckpoint", 1000)
            {
                tracing::warn!(%error, "the group commit cannot checkpoint either");
            }
        }
    }
}

fn attempt(
    connection: &mut Connection,
    requests: &[Request],
) -> Result<Vec<Outcome>, StorageError> {
    let mut tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcomes = apply(&mut tx, requests)
        .now_or_never()
        .unwrap_or(Err(StorageError::Internal("a SQLite statement waited")))?;
    tx.commit()?;
    Ok(outcomes)
}

/// Every statement is prepared once per connection and kept: the same few run all day.
impl Statements for rusqlite::Transaction<'_> {
    /// SQLite has no row policies: the organization is in every statement's `WHERE`.
    async fn act_for(&mut self, _org_id: OrgId) -> Result<(), StorageError> {
        Ok(())
    }

    async fn insert_verifications(
        &mut self,
        org_id: OrgId,
        lines: &[(&NewVerification, OffsetDateTime)],
    ) -> Result<(), StorageError> {
        let mut insert = self.prepare_cached(
            "INSERT INTO verifications \
             (id, org_id, user_id, api_key_id, address, verdict, cached, result, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let org = org_id.as_uuid();
        for (entry, at) in lines {
            let (user, key) = (
                entry.user_id.map(|id| id.as_uuid()),
                entry.api_key_id.map(|id| id.as_uuid()),
            );
            insert.execute(rusqlite::params![
                entry.id.as_uuid().as_bytes().as_slice(),
                org.as_bytes().as_slice(),
                user.as_ref().map(|id| id.as_bytes().as_slice()),
                key.as_ref().map(|id| id.as_bytes().as_slice()),
                entry.address,
                entry.verdict,
                entry.cached,
                entry.result,
                ms(*at),
            ])?;
        }
        Ok(())
    }

    async fn latest_verifications(
        &mut self,
        org_id: OrgId,
        addresses: &[String],
        since: OffsetDateTime,
    ) -> Result<HashMap<String, (String, i64)>, StorageError> {
        let mut latest = self.prepare_cached(
            "SELECT result, created_at FROM verifications \
             WHERE org_id = ?1 AND address = ?2 AND created_at >= ?3 AND NOT cached \
             ORDER BY created_at DESC LIMIT 1",
        )?;
        let org = org_id.as_uuid();
        let mut found = HashMap::new();
        for address in addresses {
            let row = latest
                .query_row(
                    rusqlite::params![org.as_bytes().as_slice(), address, ms(since)],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            if let Some(row) = row {
                found.insert(address.clone(), row);
            }
        }
        Ok(found)
    }

    async fn quota_and_use(
        &mut self,
        org_id: OrgId,
        metric: Metric,
        period_start: OffsetDateTime,
    ) -> Result<(i64, i64), StorageError> {
        let org = org_id.as_uuid();
        let (plan, used) = self.prepare_cached(PLAN_AND_USE)?.query_row(
            named_params! {
                "$1": org.as_bytes().as_slice(),
                "$2": metric.as_str(),
                "$3": ms(period_start),
            },
            |row| {
                let plan = Plan {
                    id: PlanId::from(row.get::<_, String>("id")?),
                    name: row.get("name")?,
                    team: row.get("team")?,
                    member_limit: row.get("member_limit")?,
                    verifications_per_month: row.get("verifications_per_month")?,
                    emails_per_month: row.get("emails_per_month")?,
                    key_requests_per_minute: row.get("key_requests_per_minute")?,
                    key_requests_per_day: row.get("key_requests_per_day")?,
                    max_open_jobs: row.get("max_open_jobs")?,
                    user_requests_per_minute: row.get("user_requests_per_minute")?,
                    user_requests_per_day: row.get("user_requests_per_day")?,
                };
                Ok((plan, row.get("used")?))
            },
        )?;
        Ok((plan.quota_of(metric), used))
    }

    async fn charged_keys(
        &mut self,
        org_id: OrgId,
        keys: &[String],
    ) -> Result<HashSet<String>, StorageError> {
        let mut charged = self.prepare_cached(
            "SELECT 1 FROM usage_charges WHERE org_id = ?1 AND idempotency_key = ?2",
        )?;
        let org = org_id.as_uuid();
        let mut taken = HashSet::new();
        for key in keys {
            if charged.exists(rusqlite::params![org.as_bytes().as_slice(), key])? {
                taken.insert(key.clone());
            }
        }
        Ok(taken)
    }

    async fn add_use(&mut self, period: &Period, added: i64) -> Result<(), StorageError> {
        let org = period.org_id.as_uuid();
        self.prepare_cached(ADD_USE)?.execute(named_params! {
            "$1": org.as_bytes().as_slice(),
            "$2": period.metric.as_str(),
            "$3": period.start,
            "$4": added,
        })?;
        Ok(())
    }

    async fn insert_charges(
        &mut self,
        period: &Period,
        charges: &[NewCharge],
    ) -> Result<(), StorageError> {
        let mut insert = self.prepare_cached(
            "INSERT INTO usage_charges \
             (org_id, idempotency_key, metric, amount, period_start, charged_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let org = period.org_id.as_uuid();
        for charge in charges {
            insert.execute(rusqlite::params![
                org.as_bytes().as_slice(),
                charge.key,
                period.metric.as_str(),
                charge.amount,
                period.start,
                charge.at,
            ])?;
        }
        Ok(())
    }
}
