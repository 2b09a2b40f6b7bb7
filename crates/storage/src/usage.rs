//! The usage ledger (VER-7, KEY-3): charges against a quota per organization, metric and
//! period. A charge runs in a serializable transaction (retried on conflict), so that however
//! many race, the quota is never exceeded; its idempotency key makes a retried request free.

use futures::FutureExt;
use mailroom_core::OrgId;
use mailroom_core::usage::Metric;
use time::OffsetDateTime;

use crate::accounts::ms;
use crate::teams::Plan;
use crate::tx::{Inner, Tenancy};
use crate::{Database, StorageError, on_backend};

/// One charge to make.
#[derive(Clone, Debug)]
pub struct Charge<'a> {
    pub org_id: OrgId,
    pub metric: Metric,
    pub amount: i64,
    /// The same key again is the same charge: counted once.
    pub idempotency_key: &'a str,
    pub quota: i64,
    pub period_start: OffsetDateTime,
}

/// What became of a charge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charged {
    /// Counted; `used` of the quota, this charge included.
    Done { used: i64 },
    /// This idempotency key was charged before; nothing was counted now.
    Repeated { used: i64 },
    /// It would exceed the quota; nothing was counted.
    QuotaExceeded { used: i64 },
}

impl Database {
    pub async fn charge(
        &self,
        charge: &Charge<'_>,
        now: OffsetDateTime,
    ) -> Result<Charged, StorageError> {
        let org = charge.org_id.as_uuid();
        let metric = charge.metric.as_str();
        let period = ms(charge.period_start);
        let (amount, quota) = (charge.amount, charge.quota);
        let key = charge.idempotency_key.to_owned();
        let tenancy = Tenancy::Org(charge.org_id);
        self.serializable(|tx| {
            let (key, tenancy) = (key.clone(), tenancy.clone());
            async move {
                tx.act_for(&tenancy).await?;
                on_backend!(&mut tx.0, Inner, tx => {
                    let used: Option<i64> = sqlx::query_scalar(
                        "SELECT used FROM usage_periods WHERE org_id = $1 AND metric = $2 AND period_start = $3",
                    )
                    .bind(org)
                    .bind(metric)
                    .bind(period)
                    .fetch_optional(&mut **tx)
                    .await?;
                    let used = used.unwrap_or(0);
                    let repeated: Option<i64> = sqlx::query_scalar(
                        "SELECT amount FROM usage_charges WHERE org_id = $1 AND idempotency_key = $2",
                    )
                    .bind(org)
                    .bind(&key)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if repeated.is_some() {
                        return Ok(Charged::Repeated { used });
                    }
                    if used + amount > quota {
                        return Ok(Charged::QuotaExceeded { used });
                    }
                    sqlx::query(
                        "INSERT INTO usage_periods (org_id, metric, period_start, used) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (org_id, metric, period_start) DO UPDATE SET used = usage_periods.used + $4",
                    )
                    .bind(org)
                    .bind(metric)
                    .bind(period)
                    .bind(amount)
                    .execute(&mut **tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO usage_charges (org_id, idempotency_key, metric, amount, period_start, charged_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(org)
                    .bind(&key)
                    .bind(metric)
                    .bind(amount)
                    .bind(period)
                    .bind(ms(now))
                    .execute(&mut **tx)
                    .await?;
                    Ok(Charged::Done { used: used + amount })
                })
            }
            .boxed()
        })
        .await
    }

    /// The organization's plan, and how much of `metric` it used in the period starting at
    /// `period_start`: one statement, for `GET /v1/usage` on every call.
    pub async fn quota(
        &self,
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
        let row: Row = self
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT p.*, COALESCE((SELECT u.used FROM usage_periods u WHERE u.org_id = o.id \
                             AND u.metric = $2 AND u.period_start = $3), 0) AS used \
                             FROM orgs o JOIN plans p ON p.id = o.plan_id WHERE o.id = $1",
                        )
                        .bind(org_id.as_uuid())
                        .bind(metric.as_str())
                        .bind(ms(period_start))
                        .fetch_one(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok((row.plan, row.used))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mailroom_testkit::both_backends;

    use super::*;
    use crate::accounts::{NewAccount, PlatformRole};

    async fn org(db: &Database) -> OrgId {
        let account = NewAccount {
            email: format!("{}@example.test", uuid::Uuid::now_v7()),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            platform_role: PlatformRole::User,
        };
        db.create_account(&account, OffsetDateTime::now_utc())
            .await
            .unwrap()
            .org_id
    }

    both_backends! {
        async fn two_hundred_racing_charges_against_a_quota_of_one_hundred_grant_exactly_one_hundred(test_db) {
            let db = Arc::new(Database::connect(test_db.url()).await.unwrap());
            db.migrate().await.unwrap();
            let org_id = org(&db).await;
            let period_start = OffsetDateTime::now_utc();
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let db = Arc::clone(&db);
                    tokio::spawn(async move {
                        let key = format!("request-{i}");
                        let charge = Charge { org_id, metric: Metric::Verifications, amount: 1, idempotency_key: &key, quota: 100, period_start };
                        db.charge(&charge, OffsetDateTime::now_utc()).await.unwrap()
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
            assert_eq!(db.quota(org_id, Metric::Verifications, period_start).await.unwrap().1, 100);
        }

        async fn a_repeated_idempotency_key_is_charged_once(test_db) {
            let db = Database::connect(test_db.url()).await.unwrap();
            db.migrate().await.unwrap();
            let org_id = org(&db).await;
            let period_start = OffsetDateTime::now_utc();
            let charge = Charge { org_id, metric: Metric::Verifications, amount: 3, idempotency_key: "job-7-row-1", quota: 10, period_start };
            let now = OffsetDateTime::now_utc();
            assert_eq!(db.charge(&charge, now).await.unwrap(), Charged::Done { used: 3 });
            assert_eq!(db.charge(&charge, now).await.unwrap(), Charged::Repeated { used: 3 });
            let big = Charge { amount: 8, idempotency_key: "another", ..charge.clone() };
            assert_eq!(db.charge(&big, now).await.unwrap(), Charged::QuotaExceeded { used: 3 });
            // Another organization's key space is its own.
            let other = Charge { org_id: org(&db).await, ..charge.clone() };
            assert_eq!(db.charge(&other, now).await.unwrap(), Charged::Done { used: 3 });
        }
    }
}
