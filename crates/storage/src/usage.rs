//! The usage ledger (docs/security.md#key-rate-limits): charges against a quota per organization, metric and
//! period. A charge runs in a serializable transaction (retried on conflict), so that however
//! many race, the quota is never exceeded; its idempotency key makes a retried request free.

use std::collections::HashSet;

use futures::FutureExt;
use mailroom_core::OrgId;
use mailroom_core::usage::Metric;
use time::OffsetDateTime;

use crate::accounts::ms;
use crate::group_commit::Statements;
use crate::teams::Plan;
use crate::tx::{Inner, Tenancy};
use crate::{Database, StorageError, Tx, on_backend};

/// Keys per statement: well under either backend's bound-value limit.
const BATCH: usize = 500;

/// Charges to make together: `amount` for each idempotency key, all or none.
#[derive(Clone, Debug)]
pub struct Charge<'a> {
    pub org_id: OrgId,
    pub metric: Metric,
    pub amount: i64,
    /// The same key again is the same charge: counted once.
    pub idempotency_keys: &'a [String],
    pub quota: i64,
    pub period_start: OffsetDateTime,
}

/// What became of a charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charged {
    /// Counted: `fresh[i]` says whether key `i` was charged now (else it was charged before
    /// and counts nothing); `used` of the quota, these charges included.
    Done { used: i64, fresh: Vec<bool> },
    /// The fresh keys would exceed the quota; nothing was counted.
    QuotaExceeded { used: i64 },
}

/// Metered use against the plan's quotas. Reached through [`Database::usage`].
#[derive(Clone, Copy)]
pub struct Usage<'a> {
    pub(crate) db: &'a Database,
}

impl Usage<'_> {
    pub async fn charge(
        &self,
        charge: &Charge<'_>,
        now: OffsetDateTime,
    ) -> Result<Charged, StorageError> {
        let (org_id, metric, period_start) = (charge.org_id, charge.metric, charge.period_start);
        let (amount, quota) = (charge.amount, charge.quota);
        let keys = charge.idempotency_keys.to_vec();
        self.db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                let keys = keys.clone();
                async move {
                    let mut ledger = Ledger::open(tx, org_id, metric, period_start, &keys).await?;
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    Ok(match ledger.charge(&keys, amount, quota, now) {
                        Some(fresh) => {
                            ledger.write(tx).await?;
                            Charged::Done {
                                used: ledger.used,
                                fresh,
                            }
                        }
                        None => Charged::QuotaExceeded { used: ledger.used },
                    })
                }
                .boxed()
            })
            .await
    }
}

/// An organization's account of one metric in one period, inside a transaction: read once,
/// charged in memory as often as needed, written once.
pub(crate) struct Ledger {
    org_id: OrgId,
    metric: Metric,
    period_start: i64,
    /// The organization's plan's quota of the metric.
    pub plan_quota: i64,
    /// Used in the period, the charges made here included.
    pub used: i64,
    added: i64,
    /// Keys charged before or here: charged again, they count nothing.
    taken: HashSet<String>,
    new_keys: Vec<NewCharge>,
}

impl Ledger {
    /// Reads the plan's quota, the period's use, and which of `keys` were charged before.
    pub async fn open(
        tx: &mut impl Statements,
        org_id: OrgId,
        metric: Metric,
        period_start: OffsetDateTime,
        keys: &[String],
    ) -> Result<Self, StorageError> {
        let (plan_quota, used) = tx.quota_and_use(org_id, metric, period_start).await?;
        Ok(Ledger {
            org_id,
            metric,
            period_start: ms(period_start),
            plan_quota,
            used,
            added: 0,
            taken: tx.charged_keys(org_id, keys).await?,
            new_keys: Vec::new(),
        })
    }

    /// Charges `amount` for each of `keys` not charged before, all of them or (when they
    /// would exceed `quota`) none: says of each whether it was charged now.
    pub fn charge(
        &mut self,
        keys: &[&str],
        amount: i64,
        quota: i64,
        now: OffsetDateTime,
    ) -> Option<Vec<bool>> {
        // A key twice in one charge counts once, too.
        let mut seen = HashSet::new();
        let fresh: Vec<bool> = keys
            .iter()
            .map(|key| !self.taken.contains(*key) && seen.insert(*key))
            .collect();
        let count = i64::try_from(seen.len()).unwrap_or(i64::MAX);
        let total = amount.saturating_mul(count);
        if count > 0 && self.used.saturating_add(total) > quota {
            return None;
        }
        self.used += total;
        self.added += total;
        for key in seen {
            self.taken.insert(key.to_owned());
            self.new_keys.push(NewCharge {
                key: key.to_owned(),
                amount,
                at: ms(now),
            });
        }
        Some(fresh)
    }

    /// Writes what was charged since [`Ledger::open`].
    pub async fn write(&self, tx: &mut impl Statements) -> Result<(), StorageError> {
        if self.added == 0 {
            return Ok(());
        }
        let period = Period {
            org_id: self.org_id,
            metric: self.metric,
            start: self.period_start,
        };
        tx.add_use(&period, self.added).await?;
        tx.insert_charges(&period, &self.new_keys).await
    }
}

/// An organization's account of a metric in one period.
pub(crate) struct Period {
    pub org_id: OrgId,
    pub metric: Metric,
    /// Milliseconds since the epoch.
    pub start: i64,
}

/// A charge under an idempotency key, at `at` (ms).
pub(crate) struct NewCharge {
    pub key: String,
    pub amount: i64,
    pub at: i64,
}

/// Which of `keys` were charged before.
pub(crate) async fn charged_keys(
    tx: &mut Tx,
    org_id: OrgId,
    keys: &[String],
) -> Result<HashSet<String>, StorageError> {
    let mut taken = HashSet::new();
    for batch in keys.chunks(BATCH) {
        let found: Vec<String> = on_backend!(&mut tx.0, Inner, tx => {
            let mut query = sqlx::QueryBuilder::new(
                "SELECT idempotency_key FROM usage_charges WHERE org_id = ",
            );
            query.push_bind(org_id.as_uuid()).push(" AND idempotency_key IN (");
            let mut list = query.separated(", ");
            for key in batch {
                list.push_bind(key);
            }
            query.push(")");
            query.build_query_scalar().fetch_all(&mut **tx).await?
        });
        taken.extend(found);
    }
    Ok(taken)
}

/// Adds `$4` to organization `$1`'s use of metric `$2` in the period starting at `$3` (ms).
pub(crate) const ADD_USE: &str = "INSERT INTO usage_periods (org_id, metric, period_start, used) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (org_id, metric, period_start) DO UPDATE SET used = usage_periods.used + $4";

/// Adds `added` to the period's use.
pub(crate) async fn add_use(tx: &mut Tx, period: &Period, added: i64) -> Result<(), StorageError> {
    on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(ADD_USE)
            .bind(period.org_id.as_uuid())
            .bind(period.metric.as_str())
            .bind(period.start)
            .bind(added)
            .execute(&mut **tx)
            .await?;
    });
    Ok(())
}

/// Records charges by their idempotency keys, many rows per statement.
pub(crate) async fn insert_charges(
    tx: &mut Tx,
    period: &Period,
    charges: &[NewCharge],
) -> Result<(), StorageError> {
    let (org, metric) = (period.org_id.as_uuid(), period.metric.as_str());
    for batch in charges.chunks(BATCH) {
        on_backend!(&mut tx.0, Inner, tx => {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO usage_charges (org_id, idempotency_key, metric, amount, period_start, charged_at) ",
            );
            insert.push_values(batch, |mut row, charge| {
                row.push_bind(org)
                    .push_bind(&charge.key)
                    .push_bind(metric)
                    .push_bind(charge.amount)
                    .push_bind(period.start)
                    .push_bind(charge.at);
            });
            insert.build().execute(&mut **tx).await?;
        });
    }
    Ok(())
}

/// The plan of organization `$1` (its columns) and its use of metric `$2` in the period
/// starting at `$3` (ms), as `used`.
pub(crate) const PLAN_AND_USE: &str = "SELECT p.*, COALESCE((SELECT u.used FROM usage_periods u \
     WHERE u.org_id = o.id AND u.metric = $2 AND u.period_start = $3), 0) AS used \
     FROM orgs o JOIN plans p ON p.id = o.plan_id WHERE o.id = $1";

/// The organization's plan, and how much of `metric` it used in the period starting at
/// `period_start`: one statement.
pub(crate) async fn plan_and_use(
    tx: &mut Tx,
    org_id: OrgId,
    metric: Metric,
    period_start: OffsetDateTime,
) -> Result<(Plan, i64), StorageError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        plan: Plan,
        used: i64,
    }
    let row: Row = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_as(PLAN_AND_USE)
        .bind(org_id.as_uuid())
        .bind(metric.as_str())
        .bind(ms(period_start))
        .fetch_one(&mut **tx)
        .await?
    });
    Ok((row.plan, row.used))
}

impl Usage<'_> {
    /// The organization's plan, and how much of `metric` it used in the period starting at
    /// `period_start`, for `GET /v1/usage` on every call.
    pub async fn quota(
        &self,
        org_id: OrgId,
        metric: Metric,
        period_start: OffsetDateTime,
    ) -> Result<(Plan, i64), StorageError> {
        self.db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                plan_and_use(tx, org_id, metric, period_start).boxed()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mailroom_testkit::both_backends;

    use super::*;
    use crate::test_support::org;

    both_backends! {
        async fn two_hundred_racing_charges_against_a_quota_of_one_hundred_grant_exactly_one_hundred(test_db) {
            let db = Arc::new(crate::test_support::connect(&test_db).await);
            db.migrate().await.unwrap();
            let org_id = org(&db).await;
            let period_start = OffsetDateTime::now_utc();
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let db = Arc::clone(&db);
                    tokio::spawn(async move {
                        let keys = [format!("request-{i}")];
                        let charge = Charge { org_id, metric: Metric::Verifications, amount: 1, idempotency_keys: &keys, quota: 100, period_start };
                        db.usage().charge(&charge, OffsetDateTime::now_utc()).await.unwrap()
                    })
                })
                .collect();
            let mut granted = 0;
            for task in tasks {
                if matches!(task.await.unwrap(), Charged::Done { .. }) {
                    granted += 1;
                }
            }
            assert_eq!(granted, 100);
            assert_eq!(db.usage().quota(org_id, Metric::Verifications, period_start).await.unwrap().1, 100);
        }

        async fn a_repeated_idempotency_key_is_charged_once(test_db) {
            let db = crate::test_support::connect(&test_db).await;
            db.migrate().await.unwrap();
            let org_id = org(&db).await;
            let period_start = OffsetDateTime::now_utc();
            let keys = ["job-7-row-1".to_owned()];
            let charge = Charge { org_id, metric: Metric::Verifications, amount: 3, idempotency_keys: &keys, quota: 10, period_start };
            let now = OffsetDateTime::now_utc();
            assert_eq!(db.usage().charge(&charge, now).await.unwrap(), Charged::Done { used: 3, fresh: vec![true] });
            assert_eq!(db.usage().charge(&charge, now).await.unwrap(), Charged::Done { used: 3, fresh: vec![false] });
            let another = ["another".to_owned()];
            let big = Charge { amount: 8, idempotency_keys: &another, ..charge.clone() };
            assert_eq!(db.usage().charge(&big, now).await.unwrap(), Charged::QuotaExceeded { used: 3 });
            // Another organization's key space is its own.
            let other = Charge { org_id: org(&db).await, ..charge.clone() };
            assert_eq!(db.usage().charge(&other, now).await.unwrap(), Charged::Done { used: 3, fresh: vec![true] });
        }

        async fn a_batch_is_charged_for_its_new_keys_all_or_none(test_db) {
            let db = crate::test_support::connect(&test_db).await;
            db.migrate().await.unwrap();
            let org_id = org(&db).await;
            let period_start = OffsetDateTime::now_utc();
            let now = OffsetDateTime::now_utc();
            let keys: Vec<String> = ["a", "b", "a", "c"].iter().map(|k| k.to_string()).collect();
            let charge = Charge { org_id, metric: Metric::Verifications, amount: 1, idempotency_keys: &keys[..2], quota: 4, period_start };
            assert_eq!(db.usage().charge(&charge, now).await.unwrap(), Charged::Done { used: 2, fresh: vec![true, true] });
            let all = Charge { idempotency_keys: &keys, ..charge.clone() };
            assert_eq!(db.usage().charge(&all, now).await.unwrap(), Charged::Done { used: 3, fresh: vec![false, false, false, true] });
            let more: Vec<String> = ["d", "e"].iter().map(|k| k.to_string()).collect();
            let over = Charge { idempotency_keys: &more, ..charge.clone() };
            assert_eq!(db.usage().charge(&over, now).await.unwrap(), Charged::QuotaExceeded { used: 3 }, "both or neither");
        }
    }
}
