//! The verification log: every verification an organization ran, by whom and with
//! which key, kept 90 days. It is also the store that dedup answers from: a result of the
//! same address within the dedup window is given again instead of checking anew.

use std::collections::HashMap;

use futures::FutureExt;
use mailroom_core::{ApiKeyId, OrgId, UserId, VerificationId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::accounts::{from_ms, ms};
use crate::tx::{Inner, Tenancy};
use crate::{Database, StorageError, on_backend};

/// One verification to log.
#[derive(Clone, Debug)]
pub struct NewVerification {
    pub id: VerificationId,
    pub user_id: Option<UserId>,
    pub api_key_id: Option<ApiKeyId>,
    /// The normalized address, or the input as given when it does not parse.
    pub address: String,
    pub verdict: String,
    pub cached: bool,
    /// The whole result, as JSON.
    pub result: String,
}

/// A line of the log, without the full result.
#[derive(Clone, Debug)]
pub struct LoggedVerification {
    pub id: VerificationId,
    pub user_id: Option<UserId>,
    pub api_key_id: Option<ApiKeyId>,
    pub address: String,
    pub verdict: String,
    pub cached: bool,
    pub created_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct LoggedRow {
    id: Uuid,
    user_id: Option<Uuid>,
    api_key_id: Option<Uuid>,
    address: String,
    verdict: String,
    cached: bool,
    created_at: i64,
}

impl From<LoggedRow> for LoggedVerification {
    fn from(row: LoggedRow) -> Self {
        LoggedVerification {
            id: row.id.into(),
            user_id: row.user_id.map(UserId::from),
            api_key_id: row.api_key_id.map(ApiKeyId::from),
            address: row.address,
            verdict: row.verdict,
            cached: row.cached,
            created_at: from_ms(row.created_at),
        }
    }
}

/// Which lines of the log to read: newest first, after the `before` cursor.
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    pub before: Option<VerificationId>,
    pub verdict: Option<String>,
    pub api_key_id: Option<ApiKeyId>,
    pub limit: i64,
}

/// Rows per statement: well under either backend's bound-value limit.
pub(crate) const BATCH: usize = 500;

/// Logs verifications inside `tx` (acting for `org_id`), each with its time, many rows per
/// statement.
pub(crate) async fn insert<'e>(
    tx: &mut crate::Tx,
    org_id: OrgId,
    entries: impl IntoIterator<Item = (&'e NewVerification, OffsetDateTime)>,
) -> Result<(), StorageError> {
    let entries: Vec<_> = entries.into_iter().collect();
    for batch in entries.chunks(BATCH) {
        on_backend!(&mut tx.0, Inner, tx => {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO verifications (id, org_id, user_id, api_key_id, address, verdict, cached, result, created_at) ",
            );
            insert.push_values(batch, |mut row, (entry, at)| {
                row.push_bind(entry.id.as_uuid())
                    .push_bind(org_id.as_uuid())
                    .push_bind(entry.user_id.map(|id| id.as_uuid()))
                    .push_bind(entry.api_key_id.map(|id| id.as_uuid()))
                    .push_bind(&entry.address)
                    .push_bind(&entry.verdict)
                    .push_bind(entry.cached)
                    .push_bind(&entry.result)
                    .push_bind(ms(*at));
            });
            insert.build().execute(&mut **tx).await?;
        });
    }
    Ok(())
}

/// For each of `addresses` checked (not itself answered from the store) since `since`, its
/// latest result, as JSON, and when it was logged (ms).
pub(crate) async fn latest(
    tx: &mut crate::Tx,
    org_id: OrgId,
    addresses: &[String],
    since: OffsetDateTime,
) -> Result<HashMap<String, (String, i64)>, StorageError> {
    let mut latest: HashMap<String, (String, i64)> = HashMap::new();
    for batch in addresses.chunks(BATCH) {
        let rows: Vec<(String, String, i64)> = on_backend!(&mut tx.0, Inner, tx => {
            let mut query = sqlx::QueryBuilder::new(
                "SELECT address, result, created_at FROM verifications WHERE org_id = ",
            );
            query
                .push_bind(org_id.as_uuid())
                .push(" AND created_at >= ")
                .push_bind(ms(since))
                .push(" AND NOT cached AND address IN (");
            let mut list = query.separated(", ");
            for address in batch {
                list.push_bind(address);
            }
            query.push(")");
            query.build_query_as().fetch_all(&mut **tx).await?
        });
        for (address, result, at) in rows {
            match latest.get(&address) {
                Some((_, newer)) if *newer >= at => {}
                _ => {
                    latest.insert(address, (result, at));
                }
            }
        }
    }
    Ok(latest)
}

/// The verification log. Reached through [`Database::verifications`].
#[derive(Clone, Copy)]
pub struct VerificationLog<'a> {
    pub(crate) db: &'a Database,
}

impl VerificationLog<'_> {
    pub async fn verification_log(
        &self,
        org_id: OrgId,
        query: &LogQuery,
    ) -> Result<Vec<LoggedVerification>, StorageError> {
        let query = query.clone();
        self.db.transaction_for(&Tenancy::Org(org_id), |tx| {
            async move {
                let rows: Vec<LoggedRow> = on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query_as(
                        "SELECT id, user_id, api_key_id, address, verdict, cached, created_at FROM verifications \
                         WHERE org_id = $1 AND ($2 IS NULL OR id < $2) AND ($3 IS NULL OR verdict = $3) \
                         AND ($4 IS NULL OR api_key_id = $4) ORDER BY id DESC LIMIT $5",
                    )
                    .bind(org_id.as_uuid())
                    .bind(query.before.map(|id| id.as_uuid()))
                    .bind(query.verdict.as_deref())
                    .bind(query.api_key_id.map(|id| id.as_uuid()))
                    .bind(query.limit)
                    .fetch_all(&mut **tx)
                    .await?
                });
                Ok(rows.into_iter().map(LoggedVerification::from).collect())
            }
            .boxed()
        })
        .await
    }

    /// Deletes the log older than `before`, of every organization (the retention is not
    /// per tenant).
    pub async fn purge_verifications(&self, before: OffsetDateTime) -> Result<u64, StorageError> {
        self.purge_older_than("verifications", before).await
    }

    /// Deletes the rows of `table` (a constant of the caller's, with a `created_at` column
    /// and `retention` policies on PostgreSQL) older than `before`, of every organization.
    pub(crate) async fn purge_older_than(
        &self,
        table: &'static str,
        before: OffsetDateTime,
    ) -> Result<u64, StorageError> {
        let sql = format!("DELETE FROM {table} WHERE created_at < $1");
        self.db
            .transaction_for(&Tenancy::PurgeBefore(ms(before)), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(&sql)
                            .bind(ms(before))
                            .execute(&mut **tx)
                            .await?
                            .rows_affected()
                    }))
                }
                .boxed()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use mailroom_testkit::both_backends;

    use super::*;
    use crate::group_commit::Claimed;
    use crate::test_support::org;

    fn entry(address: &str, verdict: &str) -> NewVerification {
        NewVerification {
            id: VerificationId::generate(),
            user_id: None,
            api_key_id: None,
            address: address.to_owned(),
            verdict: verdict.to_owned(),
            cached: false,
            result: format!("{{\"email\":\"{address}\"}}"),
        }
    }

    both_backends! {
        async fn the_log_is_the_organizations_own_and_expires(test_db) {
            let db = crate::test_support::connect(&test_db).await;
            db.migrate().await.unwrap();
            let (a, b) = (org(&db).await, org(&db).await);
            let now = OffsetDateTime::now_utc();
            let old = now - time::Duration::days(91);
            db.record_verifications(a, vec![entry("old@example.com", "deliverable")], old).await.unwrap();
            db.record_verifications(a, vec![entry("x@example.com", "deliverable"), entry("y@example.com", "risky")], now)
                .await
                .unwrap();

            let claim = |org_id| crate::group_commit::Claim {
                org_id,
                addresses: ["x@example.com", "old@example.com", "z@example.com"].map(|a| (a.to_owned(), format!("key:{a}"))).to_vec(),
                since: now - time::Duration::hours(24),
                answers: std::sync::Arc::new(|_| true),
                now,
                log: None,
            };
            let Claimed::Done { earlier, .. } = db.claim(claim(a)).await.unwrap() else { panic!("charged") };
            assert_eq!(earlier.len(), 1, "old@ is outside the window, z@ was never checked: {earlier:?}");
            assert_eq!(earlier["x@example.com"], "{\"email\":\"x@example.com\"}");
            let Claimed::Done { earlier, .. } = db.claim(claim(b)).await.unwrap() else { panic!("charged") };
            assert!(earlier.is_empty(), "never another organization's");

            let risky = LogQuery { verdict: Some("risky".to_owned()), limit: 10, ..LogQuery::default() };
            let log = db.verifications().verification_log(a, &risky).await.unwrap();
            assert_eq!(log.iter().map(|line| line.address.as_str()).collect::<Vec<_>>(), ["y@example.com"]);
            let everything = LogQuery { limit: 10, ..LogQuery::default() };
            assert!(db.verifications().verification_log(b, &everything).await.unwrap().is_empty());

            assert_eq!(db.verifications().purge_verifications(now - time::Duration::days(90)).await.unwrap(), 1);
            assert_eq!(db.verifications().verification_log(a, &everything).await.unwrap().len(), 2);
        }
    }
}
